// Config history and retention, on real files and both engines: exactly N versions kept, restore of an older version
// (plain and sealed), sealed history under rotateDataKey, and compaction's clear error.
import assert from "node:assert/strict";
import { CompactedError, KeyRequiredError, OtherError, StateRegistry } from "@oxide/registry";
import { envelopeKeyId, isEnvelopeSealed } from "../src/sealing/envelope.ts";
import { engineTest, tempDir } from "./_helpers.ts";
import { SEALED_TEST_KEY, variantTest } from "./_variants.ts";
import { within } from "./_watchdog.ts";

const FIXTURE = new URL("./fixtures/compaction_probe.ts", import.meta.url).pathname;

function revision(reg: StateRegistry): number {
  return Number(reg.db.prepare("SELECT max(revision) AS r FROM oxide_changes").get()?.r ?? 0);
}

function loggedValues(reg: StateRegistry, key: string): string[] {
  return reg.db.prepare("SELECT value FROM oxide_changes WHERE space = 'config' AND key = ?1 ORDER BY seq")
    .all(key).map((row) => row.value as string);
}

for (const [versions, writes] of [[3, 5], [10, 12], [1, 3]] as const) {
  engineTest(
    `configHistory() keeps exactly ${versions} versions of ${writes} writes`,
    async (engine) => {
      await using dir = await tempDir();
      await using reg = await StateRegistry.connect(dir.file("registry.db"), {
        engine,
        retention: { historyVersions: versions },
      });
      for (let i = 1; i <= writes; i++) await reg.setConfig("level", i);
      await reg.setConfig("other", "x");
      const expected = Array.from({ length: versions }, (_, i) => writes - i);
      const history = await reg.configHistory("level");
      assert.deepEqual(history.map((v) => v.value), expected);
      assert.deepEqual(history.map((v) => v.version), expected);
      // Compacting to the oldest kept version drops the older ones from the file: it holds exactly N.
      await reg.compact(history.at(-1)!.revision);
      assert.deepEqual((await reg.configHistory("level")).map((v) => v.value), expected);
      assert.deepEqual(loggedValues(reg, "level"), expected.toReversed().map(String));
      assert.deepEqual((await reg.configHistory("level", { limit: 1 })).map((v) => v.value), [writes]);
    },
  );
}

engineTest("default retention keeps 10 versions; historyVersions 0 turns history off", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    for (let i = 1; i <= 12; i++) await reg.setConfig("n", i);
    assert.equal((await reg.configHistory("n")).length, 10);
  }
  await using off = await StateRegistry.connect(path, { engine, retention: { historyVersions: 0 } });
  assert.deepEqual(await off.configHistory("n"), []);
  await off.compact(revision(off));
  assert.deepEqual(loggedValues(off, "n"), ["12"]); // Only the current entry.
  assert.equal(await off.getConfig("n"), 12);
});

engineTest(
  "history spans a delete: a deleted key can be restored until compaction passes the delete",
  async (engine) => {
    await using dir = await tempDir();
    await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
    await reg.setConfig("gone", "first");
    await reg.setConfig("gone", "second");
    await reg.deleteConfig("gone");
    const history = await reg.configHistory("gone");
    assert.deepEqual(history.map((v) => v.value), ["second", "first"]);
    await reg.restoreConfig("gone", history[0]!.revision);
    assert.equal(await reg.getConfig("gone"), "second");
    const [restored] = await reg.configHistory("gone");
    assert.equal(restored!.version, 1); // A new life of the key.
    assert.notEqual(restored!.createRevision, history[0]!.createRevision);

    await reg.deleteConfig("gone");
    await reg.setConfig("x", 1);
    await reg.compact(revision(reg));
    assert.deepEqual(await reg.configHistory("gone"), []); // Its delete was compacted: its history went with it.
  },
);

variantTest("restoreConfig() writes an older version as a new one", async (engine, variant) => {
  await using dir = await tempDir();
  await using reg = await variant.connect(dir.file("registry.db"), { engine });
  await reg.setConfig("endpoint", { url: "https://a.example", retries: 3 });
  await reg.setConfig("endpoint", { url: "https://b.example", retries: 1 });
  const [, first] = await reg.configHistory("endpoint");
  assert.equal(first!.sealed, variant.name === "sealed");
  await reg.restoreConfig("endpoint", first!.revision);
  assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://a.example", retries: 3 });
  const history = await reg.configHistory("endpoint");
  assert.deepEqual(history.map((v) => [v.version, (v.value as { url: string }).url]), [
    [3, "https://a.example"],
    [2, "https://b.example"],
    [1, "https://a.example"],
  ]);
  await assert.rejects(reg.restoreConfig("endpoint", 999), OtherError);
  await assert.rejects(reg.restoreConfig("endpoint", 0), RangeError);
  await assert.rejects(reg.restoreConfig("nothing", first!.revision), /has no version written at revision/);
});

engineTest(
  "sealed history stays sealed in the file; a keyless handle sees it sealed and cannot restore it",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    let revisionOfFirst: number;
    {
      await using reg = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
      await reg.setConfig("api_token", "first-secret-token");
      await reg.setConfig("api_token", "second-secret-token");
      for (const stored of loggedValues(reg, "api_token")) {
        assert.ok(isEnvelopeSealed(stored), `a history row is not sealed: ${stored}`);
        assert.ok(!stored.includes("secret"));
      }
      revisionOfFirst = (await reg.configHistory("api_token"))[1]!.revision;
    }
    await using keyless = await StateRegistry.connect(path, { engine });
    const history = await keyless.configHistory("api_token");
    assert.deepEqual(history.map((v) => [v.sealed, v.value]), [[true, undefined], [true, undefined]]);
    await assert.rejects(keyless.restoreConfig("api_token", revisionOfFirst), KeyRequiredError);
  },
);

engineTest("after rotateDataKey() every history row is sealed under the new data key and opens", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.openEncrypted(dir.file("registry.db"), SEALED_TEST_KEY, { engine });
  for (let i = 1; i <= 4; i++) await reg.setConfig("api_token", `token-${i}`);
  await reg.setConfig("short_lived", "bye");
  await reg.deleteConfig("short_lived"); // Its history stays until compaction passes the delete.
  const oldKeyId = reg.sealing!.keyId!;
  await reg.rotateDataKey();
  const newKeyId = reg.sealing!.keyId!;
  assert.notEqual(newKeyId, oldKeyId);
  const rows = reg.db.prepare("SELECT key, value FROM oxide_changes WHERE space = 'config' AND value IS NOT NULL")
    .all();
  assert.equal(rows.length, 5);
  for (const row of rows) {
    assert.equal(envelopeKeyId(row.key as string, row.value as string), newKeyId, `${row.key} kept the old key`);
  }
  const history = await reg.configHistory("api_token");
  assert.deepEqual(history.map((v) => v.value), ["token-4", "token-3", "token-2", "token-1"]);
  assert.ok(history.every((v) => v.error === undefined));
  assert.deepEqual((await reg.configHistory("short_lived")).map((v) => v.value), ["bye"]);
  await reg.restoreConfig("api_token", history[3]!.revision);
  assert.equal(await reg.getConfig("api_token"), "token-1");
});

engineTest("sealPlainValues() seals the plain history too", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using plain = await StateRegistry.connect(path, { engine });
    await plain.setConfig("api_token", "plain-1");
    await plain.setConfig("api_token", "plain-2");
  }
  await using reg = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
  assert.equal(await reg.sealPlainValues(), 1);
  for (const stored of loggedValues(reg, "api_token")) assert.ok(isEnvelopeSealed(stored), stored);
  assert.deepEqual((await reg.configHistory("api_token")).map((v) => v.value), ["plain-2", "plain-1"]);
});

engineTest("a compacted revision is a CompactedError naming the oldest available one", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine, retention: { historyVersions: 1 } });
  for (let i = 1; i <= 5; i++) await reg.setConfig("n", i);
  const history = await reg.configHistory("n");
  await reg.compact(4);
  assert.equal(await reg.compactedRevision(), 4);
  const watch = reg.watch({ fromRevision: 2 });
  const error = await within(watch.next(), "the CompactedError of watch({ fromRevision: 2 })").catch((e) => e);
  assert.ok(error instanceof CompactedError);
  assert.equal(error.compactedRevision, 4);
  assert.equal(error.message, "required revision 2 has been compacted: the oldest available revision is 4");
  assert.equal((await watch.next()).done, true); // The watch ended with the error.
  await assert.rejects(reg.restoreConfig("n", 2), CompactedError);
  assert.equal(history.length, 1);
  // Watching from the compacted revision itself works.
  const from4 = reg.watch({ fromRevision: 4 });
  assert.equal((await within(from4.next(), "the first event of watch({ fromRevision: 4 })")).value?.revision, 4);
  await from4.return();
  await assert.rejects(reg.compact(99), /in the future/);
});

engineTest("automatic compaction bounds the change feed by revisions", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"), {
    engine,
    retention: { revisions: 50, historyVersions: 2 },
  });
  for (let i = 0; i < 400; i++) await reg.setConfig(`k.${i % 20}`, i);
  const compacted = await reg.compactedRevision();
  assert.ok(compacted > 300, `compacted only to ${compacted}`);
  const rows = Number(reg.db.prepare("SELECT count(*) AS n FROM oxide_changes").get()?.n);
  // At most: the feed's window (50 + a tenth, plus one batch of checks) and 2 versions of each of 20 keys.
  assert.ok(rows <= 50 + 5 + 128 + 40, `${rows} log rows kept`);
  assert.equal((await reg.configHistory("k.7")).length, 2);
});

engineTest("automatic compaction at open never waits for a write lock another connection holds", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await using holder = await StateRegistry.connect(path, { engine, retention: { revisions: Infinity } });
  for (let i = 0; i < 300; i++) await holder.setConfig(`k.${i % 10}`, i);
  holder.db.exec("BEGIN IMMEDIATE");
  const probe = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", `--allow-read=${dir.path}`, `--allow-write=${dir.path}`, FIXTURE, path, engine],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    // Before the fix the probe's compaction waited for this lock for its whole busy timeout (24 days).
    const output = await within(probe.output(), "the probe's open beside a held write lock");
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), { compacted: 0 }, "skipped: lock busy");
  } finally {
    holder.db.exec("ROLLBACK");
    try {
      probe.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await probe.status;
  }
  // Once the lock is free, an open compacts (at most 2,000 revisions per step: here all of them but the last 10).
  await using reg = await StateRegistry.connect(path, { engine, retention: { revisions: 10 } });
  assert.equal(await reg.compactedRevision(), 300 - 10 + 1);
});

Deno.test("retention options are checked before the file is opened", async (t) => {
  for (const retention of [{ historyVersions: -1 }, { revisions: 0 }, { maxAgeSeconds: 0 }, { historyVersions: 1.5 }]) {
    await t.step(JSON.stringify(retention), async () => {
      await assert.rejects(StateRegistry.inMemory({ retention }), RangeError);
    });
  }
});

/**
 * Compaction's definition as window functions over the whole log: the rows below ?1 go, except the log's newest row
 * and each key's newest row below ?1 when it is a put that no put at ?1 replaced (the key's entry at ?1, as etcd
 * keeps it). The faster statement must drop exactly these rows.
 */
const REFERENCE_COMPACT_SQL = `DELETE FROM oxide_changes WHERE revision < ?1
  AND seq <> (SELECT max(seq) FROM oxide_changes)
  AND seq NOT IN (
    SELECT seq FROM (
      SELECT seq, type, space, key, row_number() OVER (PARTITION BY space, key ORDER BY seq DESC) AS age
      FROM oxide_changes WHERE revision < ?1
    ) AS below WHERE age = 1 AND type = 'put' AND NOT EXISTS (
      SELECT 1 FROM oxide_changes AS at WHERE at.space = below.space AND at.key = below.key AND at.revision = ?1
        AND at.type = 'put'
    )
  )`;

engineTest("compaction drops exactly the rows the window-function definition drops", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine, retention: { revisions: Infinity } });
  // A seeded mix: puts, deletes, renames by raw SQL, modules and meta-free batches, keys shared across spaces.
  let seed = 7;
  const next = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let i = 0; i < 600; i++) {
    const key = `k.${next(40)}`;
    switch (next(6)) {
      case 0:
        await reg.deleteConfig(key);
        break;
      case 1:
        reg.db.prepare("UPDATE config SET key = ?1 WHERE key = ?2").run(`k.${next(40)}.moved`, key);
        break;
      case 2:
        await reg.upsertModule({ id: key, name: "m", version: "1", kind: "native" }, "loaded");
        break;
      case 3:
        await reg.deleteModule(key);
        break;
      case 4:
        await reg.batch().setConfig(key, i).setConfig(`${key}.b`, i).commit();
        break;
      default:
        await reg.setConfig(key, i);
    }
  }
  const seqs = () => reg.db.prepare("SELECT seq FROM oxide_changes ORDER BY seq").all().map((row) => row.seq);
  const head = revision(reg);
  for (const target of [1, Math.floor(head / 3), Math.floor(head / 2), head - 1, head]) {
    reg.db.exec("SAVEPOINT reference");
    reg.db.prepare(REFERENCE_COMPACT_SQL).run(target);
    const expected = seqs();
    reg.db.exec("ROLLBACK TO reference; RELEASE reference");
    await reg.compact(target);
    assert.deepEqual(seqs(), expected, `compaction to ${target}`);
  }
  assert.ok(seqs().length < 600, "the mix left rows to drop");
});
