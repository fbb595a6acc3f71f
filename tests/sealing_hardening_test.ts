// What an attack on the sealing found (issue 13), each on both engines: a downgrade to the oxide-k scheme, plaintext
// left in the file, the AES-GCM nonce bound, a damaged oxide_sealing table and non-text rows, reads in flight when a
// registry is disposed.
import assert from "node:assert/strict";
import { CryptoError, RegistryError, SerializationError, StateRegistry } from "@oxide/registry";
import { setSealLimitsForTesting } from "../src/sealing/sealing.ts";
import { engineTest, tempDir } from "./_helpers.ts";
import { filesContaining, rawValue, snapshotFiles, withRawDb } from "./_sealing_helpers.ts";

const KEY = new Uint8Array(32).fill(0x42);
const PASSPHRASE = "correct horse battery staple";

// ---------------------------------------------------------------------------
// Downgrade
// ---------------------------------------------------------------------------

engineTest(
  "an envelope registry rewritten to look like oxide-k fails at open unless the caller asks for oxide-k",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
      await reg.setConfig("api_token", "s3cr3t");
    }
    // The attack: delete the values (they would give it away) and rewrite the parameters as oxide-k writes them.
    await withRawDb(
      path,
      engine,
      (db) =>
        db.exec(`DELETE FROM config; UPDATE oxide_sealing SET scheme = 'oxide-k', kdf = NULL, iterations = NULL,
        salt = NULL, key_id = NULL, wrapped_key = NULL`),
    );
    const before = await snapshotFiles(path);
    for (const key of [PASSPHRASE, "any passphrase at all"]) {
      for (const scheme of [undefined, "envelope"] as const) {
        const err = await StateRegistry.openEncrypted(path, key, { engine, scheme }).catch((e) => e);
        assert.ok(err instanceof CryptoError, String(err));
        assert.match(err.message, /table oxide_sealing, field scheme\) say the oxide-k scheme/);
        assert.match(err.message, /someone who can write the file downgraded it; refusing to open/);
      }
    }
    assert.deepEqual(await snapshotFiles(path), before, "nothing written");
  },
);

engineTest(
  "an envelope registry whose parameters were replaced by planted oxide-k values fails at open",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
      await reg.setConfig("api_token", "s3cr3t");
    }
    // What a Rust kernel would leave: no oxide_sealing, values sealed under SHA-256 of the attacker's passphrase.
    let planted: string;
    {
      await using oxide = await StateRegistry.openEncrypted(":memory:", "attacker", { engine, scheme: "oxide-k" });
      await oxide.setConfig("x", 1);
      planted = String(oxide.db.prepare("SELECT value FROM config").get()?.value);
    }
    await withRawDb(path, engine, (db) => {
      db.exec("DROP TABLE oxide_sealing; DELETE FROM oxide_migrations WHERE owner = 'sealing'; DELETE FROM config");
      db.prepare("INSERT INTO config VALUES ('x', ?, '2026-01-01T00:00:00+00:00')").run(planted);
    });
    const before = await snapshotFiles(path);
    const err = await StateRegistry.openEncrypted(path, "attacker", { engine }).catch((e) => e);
    assert.ok(err instanceof CryptoError, String(err));
    assert.match(err.message, /holds values sealed with the oxide-k scheme .* \{ scheme: "oxide-k" \}/);
    assert.deepEqual(await snapshotFiles(path), before, "nothing written");
  },
);

// ---------------------------------------------------------------------------
// Plaintext left on disk
// ---------------------------------------------------------------------------

/** Secrets of varied lengths, rewritten often while plain: page splits and deletes leave copies behind. */
function secrets(count: number): [string, string][] {
  return Array.from({ length: count }, (_, i) => [`k${i}`, `plain-secret-${i}-${"s".repeat(i % 97)}-end`]);
}

async function assertNoneOnDisk(path: string, texts: readonly string[], what: string): Promise<void> {
  const left: string[] = [];
  for (const text of texts) if ((await filesContaining(path, text)).length > 0) left.push(text);
  assert.deepEqual(left.length, 0, `${what}: ${left.length} of ${texts.length} still in the db or its WAL`);
}

engineTest("sealPlainValues() leaves no plaintext in the database, its WAL or its free pages", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  const values = secrets(290);
  {
    await using plain = await StateRegistry.connect(path, { engine });
    for (const [key, value] of values) await plain.setConfig(key, `${value}-draft`);
    for (const [key, value] of values) await plain.setConfig(key, value);
    for (const [key] of values.slice(0, 40)) await plain.deleteConfig(key);
  }
  const kept = values.slice(40);
  await using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
  assert.equal(await reg.sealPlainValues(), kept.length);
  for (const [key, value] of kept) assert.equal(await reg.getConfig(key), value);
  // Still open: the WAL is there, and must not hold them either.
  await assertNoneOnDisk(path, values.map(([, value]) => value), "sealPlainValues");
});

engineTest(
  "rotateDataKey(), rekey() and convertToEnvelope() leave no old ciphertext, wrapped key or plaintext on disk",
  async (engine) => {
    await using dir = await tempDir();
    const values = secrets(120);
    await using reg = await StateRegistry.openEncrypted(dir.file("e.db"), KEY, { engine });
    for (const [key, value] of values) await reg.setConfig(key, value);
    const storedOf = () =>
      values.map(([key]) => String(reg.db.prepare("SELECT value FROM config WHERE key = ?").get(key)?.value));
    const wrappedKey = () => String(reg.db.prepare("SELECT wrapped_key FROM oxide_sealing").get()?.wrapped_key);
    const old = storedOf();
    await reg.rotateDataKey();
    await assertNoneOnDisk(dir.file("e.db"), old.map((stored) => stored.slice(-40)), "rotateDataKey");
    const wrapped = wrappedKey();
    await reg.rekey(new Uint8Array(32).fill(7));
    await assertNoneOnDisk(dir.file("e.db"), [wrapped], "rekey (the old wrapped data key)");

    const oxidePath = dir.file("o.db");
    {
      await using plain = await StateRegistry.connect(oxidePath, { engine });
      for (const [key, value] of values.slice(0, 60)) await plain.setConfig(key, value);
    }
    await using oxide = await StateRegistry.openEncrypted(oxidePath, PASSPHRASE, { engine, scheme: "oxide-k" });
    for (const [key, value] of values.slice(60)) await oxide.setConfig(key, value);
    const oxideStored = await Promise.all(values.slice(60).map(([key]) => rawValue(oxidePath, engine, key)));
    assert.equal(await oxide.convertToEnvelope(KEY), values.length);
    await assertNoneOnDisk(
      oxidePath,
      [...values.map(([, value]) => value), ...oxideStored.map((stored) => stored.slice(0, 40))],
      "convertToEnvelope",
    );
  },
);

// ---------------------------------------------------------------------------
// AES-GCM random-nonce bound
// ---------------------------------------------------------------------------

/** How many config values the change log holds: a rotation re-seals each of them (the live ones with their rows). */
function loggedValues(reg: StateRegistry): number {
  return Number(
    reg.db.prepare("SELECT count(*) AS n FROM oxide_changes WHERE space = 'config' AND value IS NOT NULL").get()?.n,
  );
}

/** What a compaction of the change log leaves: each key's newest row (raw SQL: the SQLite store has no compaction yet). */
function compactHistory(reg: StateRegistry): void {
  reg.db.exec(`DELETE FROM oxide_changes WHERE seq NOT IN (SELECT max(seq) FROM oxide_changes GROUP BY space, key)`);
}

engineTest("the envelope scheme counts seals per data key and rotates it at the limit", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  using _limits = setSealLimitsForTesting({ rotateAt: 10, refuseAt: 1000, reserve: 1 });
  await using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
  for (const key of ["a", "b", "c"]) await reg.setConfig(key, key);
  assert.equal(reg.sealing?.sealCount, 3);
  const firstKey = reg.sealing?.keyId;
  for (let i = 0; i < 6; i++) await reg.setConfig("a", i);
  assert.equal(reg.sealing?.sealCount, 9);
  assert.equal(reg.sealing?.keyId, firstKey);
  await reg.setConfig("b", "tenth");
  const rotatedKey = reg.sealing?.keyId;
  assert.notEqual(rotatedKey, firstKey, "rotated at the 10th seal");
  // The new data key re-sealed the 3 values and the change log's 7 past ones.
  assert.equal(reg.sealing?.sealCount, loggedValues(reg), "the new key's count starts with what it re-sealed");
  assert.deepEqual([await reg.getConfig("a"), await reg.getConfig("b"), await reg.getConfig("c")], [5, "tenth", "c"]);
  const start = reg.sealing!.sealCount;
  // The count lives in the file: another handle (another process) sees and continues it.
  await using other = await StateRegistry.openEncrypted(path, KEY, { engine });
  assert.equal(other.sealing?.sealCount, start);
  await other.setConfig("d", 1);
  await reg.setConfig("e", 1);
  assert.equal(reg.sealing?.sealCount, start + 2);
  assert.equal(reg.sealing?.keyId, rotatedKey, "no second rotation before as many seals as the first one cost");
});

engineTest("a write that would pass the bound is refused when the data key cannot be rotated", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  using _limits = setSealLimitsForTesting({ rotateAt: 3, refuseAt: 5, reserve: 1 });
  await using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
  await reg.setConfig("a", 1);
  await reg.setConfig("b", 2);
  // A value rotation must read and cannot: rotation fails, writes go on up to the bound, then are refused.
  reg.db.prepare("INSERT INTO config VALUES ('blob', x'00', '2026-01-01T00:00:00+00:00')").run();
  await reg.setConfig("a", 3);
  await reg.setConfig("a", 4);
  await reg.setConfig("a", 5);
  assert.equal(reg.sealing?.sealCount, 5);
  const err = await reg.setConfig("a", 6).catch((e) => e);
  assert.ok(err instanceof CryptoError, String(err));
  assert.match(
    err.message,
    /5 values were sealed under the current key .*NIST SP 800-38D: 2\^32.*rotating the data key failed/,
  );
  assert.equal(await reg.getConfig("a"), 5, "nothing written");
  reg.db.prepare("DELETE FROM config WHERE key = 'blob'").run();
  compactHistory(reg); // Else re-sealing the change log's past values alone would reach the (tiny) bound.
  assert.equal(await reg.rotateDataKey(), 2);
  assert.equal(reg.sealing?.sealCount, 2);
  await reg.setConfig("a", 6);
  assert.equal(await reg.getConfig("a"), 6);
});

engineTest("the oxide-k scheme refuses writes at the bound until rekey() seals under a new key", async (engine) => {
  using _limits = setSealLimitsForTesting({ rotateAt: 2, refuseAt: 3, reserve: 1 });
  await using reg = await StateRegistry.openEncrypted(":memory:", PASSPHRASE, { engine, scheme: "oxide-k" });
  for (const value of [1, 2, 3]) await reg.setConfig("a", value);
  await assert.rejects(reg.setConfig("a", 4), /call rekey\(\) or convertToEnvelope\(\)/);
  compactHistory(reg);
  await reg.rekey("a new passphrase");
  assert.equal(reg.sealing?.sealCount, 1);
  await reg.setConfig("a", 4);
  assert.equal(await reg.getConfig("a"), 4);
});

// ---------------------------------------------------------------------------
// Damaged parameters and rows
// ---------------------------------------------------------------------------

engineTest("a damaged oxide_sealing table fails with a CryptoError naming the table and column", async (engine, t) => {
  for (const column of ["wrapped_key", "generation", "scheme"]) {
    await t.step(column, async () => {
      await using dir = await tempDir();
      const path = dir.file("r.db");
      (await StateRegistry.openEncrypted(path, KEY, { engine })).close();
      await withRawDb(path, engine, (db) => db.exec(`ALTER TABLE oxide_sealing DROP COLUMN ${column}`));
      const err = await StateRegistry.openEncrypted(path, KEY, { engine }).catch((e) => e);
      assert.ok(err instanceof CryptoError, String(err));
      assert.match(err.message, new RegExp(`\\(table oxide_sealing\\) are damaged: column\\(s\\) '${column}' missing`));
      // Without a key the registry still counts as sealed: a keyless write is refused.
      await using plain = await StateRegistry.connect(path, { engine });
      await assert.rejects(plain.setConfig("x", 1), /without the key/);
    });
  }
});

engineTest(
  "a config row holding a BLOB blocks no rekey, and makes re-sealing fail naming it with nothing changed",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
    await reg.setConfig("api_token", "s3cr3t");
    reg.db.prepare("INSERT INTO config VALUES ('junk', x'01020304', '2026-01-01T00:00:00+00:00')").run();
    // rekey does not read values: it re-wraps the data key.
    await reg.rekey(PASSPHRASE);
    assert.equal(await reg.getConfig("api_token"), "s3cr3t");
    for (
      const [name, run] of [
        ["rotateDataKey", () => reg.rotateDataKey()],
        ["sealPlainValues", () => reg.sealPlainValues()],
      ] as const
    ) {
      const keyId = reg.sealing?.keyId;
      const before = await snapshotFiles(path);
      const err = await run().catch((e) => e);
      assert.ok(err instanceof CryptoError, `${name}: ${err}`);
      assert.match(
        err.message,
        new RegExp(
          `^config encrypt|${name}\\(\\): config key 'junk' \\(table config, field value\\) holds a BLOB, not text.*nothing was changed`,
        ),
      );
      assert.equal(reg.sealing?.keyId, keyId);
      assert.deepEqual(await snapshotFiles(path), before, `${name}: nothing written`);
    }
    assert.equal(await reg.getConfig("api_token"), "s3cr3t");
    await assert.rejects(reg.getConfig("junk"), SerializationError);
  },
);

// ---------------------------------------------------------------------------
// Disposal
// ---------------------------------------------------------------------------

engineTest(
  "sealed calls in flight when the registry is disposed with `using` reject and write nothing",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
      await reg.setConfig("api_token", "s3cr3t");
    }
    let calls: Promise<unknown>[];
    {
      using reg = await StateRegistry.openEncrypted(path, KEY, { engine });
      calls = [
        reg.getConfig("api_token"),
        reg.tryGetConfig("api_token"),
        reg.setConfig("written", "never"),
        reg.rotateDataKey(),
      ];
    }
    const outcomes = await Promise.allSettled(calls);
    for (const [i, outcome] of outcomes.entries()) {
      assert.equal(
        outcome.status,
        "rejected",
        `call ${i} resolved with ${JSON.stringify((outcome as { value?: unknown }).value)}`,
      );
      assert.ok(outcome.reason instanceof RegistryError, String(outcome.reason));
      assert.match(outcome.reason.message, /is closed/);
    }
    await using again = await StateRegistry.openEncrypted(path, KEY, { engine });
    assert.equal(await again.tryGetConfig("written"), undefined);
    assert.equal(await again.getConfig("api_token"), "s3cr3t");
  },
);
