// Sealed registries end to end: StateRegistry.openEncrypted over real SQLite
// files, both schemes, tampering by raw SQL, the bytes on disk, rekey and
// rotation (with failures injected by SQLite triggers and a killed process),
// interop with independent WebCrypto code, and the permission-scoped example.
// Every test that touches a database runs once per engine (engineTest), raw SQL
// and child processes included, on that one engine (node:sqlite's DatabaseSync
// forges Rust-made files and is closed before a registry opens them); two tests
// move one sealed file from one engine to the other.

import assert from "node:assert/strict";
import {
  CryptoError,
  type EngineName,
  KeyRequiredError,
  OtherError,
  RegistryError,
  SealedValueError,
  StateRegistry,
  WrongKeyError,
} from "@oxide/registry";
import { ENGINES, engineTest, OXIDE_K_SCHEMA, rawSqlite, runDeno, tempDir } from "./_helpers.ts";
import {
  copyDatabase,
  filesContaining,
  rawKeyIds,
  rawValue,
  setRawValue,
  snapshotFiles,
  withRawDb,
} from "./_sealing_helpers.ts";

const RAW_KEY = new Uint8Array(32).fill(0x5a);
const OTHER_KEY = new Uint8Array(32).fill(0xa5);
const PASSPHRASE = "correct horse battery staple";

/** One value of every JSON type, and some awkward ones. */
const JSON_VALUES: readonly [string, unknown][] = [
  ["null", null],
  ["true", true],
  ["false", false],
  ["zero", 0],
  ["negative", -42],
  ["fraction", 3.141592653589793],
  ["large", 1e300],
  ["max safe integer", Number.MAX_SAFE_INTEGER],
  ["empty string", ""],
  ["unicode", "héllo ✓ 𝄞 \u2028"],
  ["escapes", 'quote " backslash \\ newline \n tab \t nul \u0000'],
  ["looks sealed", "$oxide1$AAAAAAAAAAA$AAAA"],
  ["empty array", []],
  ["array", [1, "two", null, true, [3], { four: 4 }]],
  ["empty object", {}],
  ["object", { url: "https://example.com", retries: 3, nested: { list: [1.5, "x"], none: null } }],
];

// ---------------------------------------------------------------------------
// Independent oxide-k code: the byte layout from the issue, nothing of ours.
// ---------------------------------------------------------------------------

async function independentOxideKKey(passphrase: string): Promise<CryptoKey> {
  const raw = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(passphrase));
  return await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function independentOxideKSeal(passphrase: string, json: string): Promise<string> {
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce },
      await independentOxideKKey(passphrase),
      new TextEncoder().encode(json),
    ),
  );
  const blob = new Uint8Array(12 + sealed.length);
  blob.set(nonce);
  blob.set(sealed, 12);
  return blob.toBase64({ alphabet: "base64url" }); // padded, as base64ct's Base64Url
}

async function independentOxideKOpen(passphrase: string, stored: string): Promise<string> {
  assert.equal(stored.length % 4, 0, "padded base64");
  const blob = Uint8Array.fromBase64(stored, { alphabet: "base64url", lastChunkHandling: "strict" });
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: blob.subarray(0, 12) },
    await independentOxideKKey(passphrase),
    blob.subarray(12),
  );
  return new TextDecoder().decode(plain);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async function setAll(reg: StateRegistry, values: readonly [string, unknown][]): Promise<void> {
  for (const [key, value] of values) await reg.setConfig(key, value);
}

async function assertAll(reg: StateRegistry, values: readonly [string, unknown][]): Promise<void> {
  for (const [key, value] of values) assert.deepEqual(await reg.getConfig(key), value, key);
}

const ECHO = { id: "echo", name: "Echo", version: "0.1.0", kind: "native", description: "Echoes." } as const;

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

for (const scheme of ["envelope", "oxide-k"] as const) {
  engineTest(`every JSON type round-trips across reopen (${scheme} scheme)`, async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
      assert.equal(reg.sealing?.scheme, scheme);
      await setAll(reg, JSON_VALUES);
      await assertAll(reg, JSON_VALUES);
    }
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
    assert.equal(reg.sealing?.scheme, scheme, "the scheme is remembered");
    await assertAll(reg, JSON_VALUES);
    for (const [key] of JSON_VALUES) {
      // Through the registry's own connection: a second connection must use the same engine (see withRawDb).
      const stored = String(reg.db.prepare("SELECT value FROM config WHERE key = ?").get(key)?.value);
      if (scheme === "envelope") assert.match(stored, /^\$oxide1\$/);
      else assert.match(stored, /^[A-Za-z0-9_-]+={0,2}$/);
    }
  });
}

engineTest("a passphrase, 32 raw key bytes and a CryptoKey each seal and reopen a registry", async (engine) => {
  await using dir = await tempDir();
  const cryptoKey = await crypto.subtle.importKey("raw", OTHER_KEY, "AES-GCM", false, ["wrapKey", "unwrapKey"]);
  const keys: [string, string | Uint8Array | CryptoKey, string][] = [
    ["passphrase", PASSPHRASE, "pbkdf2-sha256"],
    ["raw", RAW_KEY, "raw"],
    ["cryptokey", cryptoKey, "raw"],
  ];
  for (const [name, key, kdf] of keys) {
    const path = dir.file(`${name}.db`);
    {
      await using reg = await StateRegistry.openEncrypted(path, key, { engine });
      assert.equal(reg.sealing?.kdf, kdf);
      await reg.setConfig("secret", { name });
    }
    await using reg = await StateRegistry.openEncrypted(path, key, { engine });
    assert.deepEqual(await reg.getConfig("secret"), { name });
  }
});

engineTest("a passphrase registry stores PBKDF2 parameters of at least 600,000 iterations", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { iterations: 650_000, engine });
    assert.equal(reg.sealing?.iterations, 650_000);
  }
  const row = await withRawDb(
    path,
    engine,
    (db) => db.prepare("SELECT kdf, iterations, salt FROM oxide_sealing").get(),
  );
  assert.equal(row?.kdf, "pbkdf2-sha256");
  assert.equal(row?.iterations, 650_000);
  assert.equal(Uint8Array.fromBase64(String(row?.salt), { alphabet: "base64url" }).length, 16);
  await assert.rejects(
    StateRegistry.openEncrypted(dir.file("weak.db"), PASSPHRASE, { iterations: 1000, engine }),
    RangeError,
  );
  // Lowering the stored count by hand does not weaken anything: the key no longer opens.
  await withRawDb(path, engine, (db) => db.exec("UPDATE oxide_sealing SET iterations = 1000"));
  await assert.rejects(StateRegistry.openEncrypted(path, PASSPHRASE, { engine }), /below the minimum 600000/);
  // Nor can a huge stored count make the open hang: it is refused before any derivation.
  await withRawDb(path, engine, (db) => db.exec("UPDATE oxide_sealing SET iterations = 4000000000"));
  await assert.rejects(StateRegistry.openEncrypted(path, PASSPHRASE, { engine }), (err: unknown) => {
    assert.ok(err instanceof CryptoError);
    assert.match(err.message, /field iterations\): stored PBKDF2 iteration count 4000000000 is above the maximum/);
    return true;
  });
  await assert.rejects(
    StateRegistry.openEncrypted(dir.file("slow.db"), PASSPHRASE, { iterations: 10_000_001, engine }),
    RangeError,
  );
});

// ---------------------------------------------------------------------------
// Wrong keys, tampering, missing keys
// ---------------------------------------------------------------------------

engineTest(
  "a wrong key fails at openEncrypted before anything is read or written (envelope scheme)",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
      await reg.setConfig("api_token", "s3cr3t");
    }
    const before = await snapshotFiles(path);
    const cases: [string, string | Uint8Array, RegExp][] = [
      ["another passphrase", "wrong passphrase", /^wrong key: the key does not unwrap this registry's data key/],
      ["raw key bytes", RAW_KEY, /^wrong key: this registry is sealed with a passphrase/],
    ];
    for (const [name, key, message] of cases) {
      const err = await StateRegistry.openEncrypted(path, key, { engine }).catch((e) => e);
      assert.ok(err instanceof WrongKeyError, `${name}: ${err}`);
      assert.match(err.message, message);
    }
    assert.deepEqual(await snapshotFiles(path), before, "the files are byte for byte unchanged");
  },
);

engineTest(
  "a wrong key fails at openEncrypted once an oxide-k registry holds a value, before anything is written",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine });
      await reg.upsertModule(ECHO, "running");
      await reg.setConfig("api_token", "s3cr3t");
    }
    const check = async (what: string) => {
      const before = await snapshotFiles(path);
      const err = await StateRegistry.openEncrypted(path, "wrong passphrase", { scheme: "oxide-k", engine }).catch((
        e,
      ) => e);
      assert.ok(err instanceof WrongKeyError, `${what}: ${err}`);
      assert.match(
        err.message,
        /^wrong key: the key opens none of the oxide-k sealed values of .* config key 'api_token'/,
      );
      assert.deepEqual(await snapshotFiles(path), before, `${what}: nothing written`);
    };
    await check("with oxide_sealing");
    // A file a Rust kernel made has no oxide_sealing row: its values are the key check.
    await withRawDb(path, engine, (db) => db.exec("DELETE FROM oxide_sealing"));
    await check("without oxide_sealing");
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine });
    assert.equal(reg.sealing?.scheme, "oxide-k");
    assert.equal(await reg.getConfig("api_token"), "s3cr3t");
  },
);

engineTest(
  "a wrong key opens an oxide-k registry that holds no value yet (nothing to check it against)",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    (await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine })).close();
    await using reg = await StateRegistry.openEncrypted(path, "wrong passphrase", { scheme: "oxide-k", engine });
    assert.equal(reg.sealing?.scheme, "oxide-k");
  },
);

engineTest("one altered oxide-k value does not lock out the right key, and reads as altered", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine });
    await reg.setConfig("a", "first");
    await reg.setConfig("b", "second");
  }
  const stored = await rawValue(path, engine, "a");
  await setRawValue(path, engine, "a", (stored[0] === "A" ? "B" : "A") + stored.slice(1));
  await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine });
  assert.equal(await reg.getConfig("b"), "second");
  const err = await reg.getConfig("a").catch((e) => e);
  assert.ok(err instanceof SealedValueError);
  assert.equal(err.reason, "wrong_key_or_tampered");
  assert.match(err.message, /^config decrypt: value of config key 'a' cannot be opened: wrong key/);
});

engineTest("a sealed value copied onto another config key by raw SQL fails, naming both keys", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await reg.setConfig("admin.password", "hunter2");
  await reg.setConfig("guest.password", "guest");
  await setRawValue(path, engine, "guest.password", await rawValue(path, engine, "admin.password"));
  const err = await reg.getConfig("guest.password").catch((e) => e);
  assert.ok(err instanceof SealedValueError);
  assert.equal(err.reason, "moved");
  assert.equal(err.key, "guest.password");
  assert.match(err.message, /'guest.password' cannot be opened: it was sealed for config key 'admin.password'/);
  // Copied under a new name with the source since deleted: still refused.
  await setRawValue(path, engine, "elsewhere", await rawValue(path, engine, "admin.password"));
  await reg.deleteConfig("admin.password");
  await assert.rejects(reg.getConfig("elsewhere"), /'elsewhere' cannot be opened: it failed authentication/);
});

engineTest("a copied value is named by its source among many config keys", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  for (let i = 0; i < 80; i++) await reg.setConfig(`k${String(i).padStart(2, "0")}`, i);
  await setRawValue(path, engine, "k00", await rawValue(path, engine, "k79")); // The source sorts last, beyond the trial bound.
  const err = await reg.getConfig("k00").catch((e) => e);
  assert.ok(err instanceof SealedValueError);
  assert.equal(err.reason, "moved");
  assert.match(err.message, /it was sealed for config key 'k79'/);
});

engineTest(
  "the oxide-k scheme cannot detect a value copied to another key (the envelope scheme can)",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine });
    await reg.setConfig("admin.password", "hunter2");
    await reg.setConfig("guest.password", "guest");
    await setRawValue(path, engine, "guest.password", await rawValue(path, engine, "admin.password"));
    assert.equal(await reg.getConfig("guest.password"), "hunter2");
  },
);

for (const scheme of ["envelope", "oxide-k"] as const) {
  engineTest(`any flipped or cut character of a stored value fails to open (${scheme} scheme)`, async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
    await reg.setConfig("api_token", "my-super-secret-token");
    const stored = await rawValue(path, engine, "api_token");
    const start = scheme === "envelope" ? stored.lastIndexOf("$") + 1 : 0;
    for (let i = start; i < stored.length && stored[i] !== "="; i++) {
      const flipped = stored.slice(0, i) + (stored[i] === "A" ? "B" : "A") + stored.slice(i + 1);
      await setRawValue(path, engine, "api_token", flipped);
      const err = await reg.getConfig("api_token").catch((e) => e);
      assert.ok(err instanceof SealedValueError, `index ${i}: ${err}`);
      assert.equal(err.key, "api_token");
    }
    for (const length of [0, 10, start + 20, stored.length - 4]) {
      await setRawValue(path, engine, "api_token", stored.slice(0, length));
      await assert.rejects(reg.getConfig("api_token"), CryptoError, `cut to ${length}`);
    }
    await setRawValue(path, engine, "api_token", stored);
    assert.equal(await reg.getConfig("api_token"), "my-super-secret-token");
  });
}

for (const scheme of ["envelope", "oxide-k"] as const) {
  engineTest(
    `a registry opened without a key lists modules and refuses sealed values (${scheme} scheme)`,
    async (engine) => {
      await using dir = await tempDir();
      const path = dir.file("r.db");
      {
        await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
        await reg.upsertModule(ECHO, "running");
        await reg.setConfig("api_token", "my-super-secret-token");
      }
      await using plain = await StateRegistry.connect(path, { engine });
      assert.deepEqual((await plain.listModules()).map((m) => [m.id, m.state]), [["echo", "running"]]);
      for (const read of [() => plain.getConfig("api_token"), () => plain.tryGetConfig("api_token")]) {
        const err = await read().catch((e) => e);
        assert.ok(err instanceof KeyRequiredError, String(err));
        assert.equal(
          err.message,
          `value of config key 'api_token' is sealed (${scheme} scheme); open the registry with openEncrypted`,
        );
      }
      assert.equal(plain.sealing, undefined);
      await assert.rejects(plain.rotateDataKey(), /rotateDataKey\(\) needs a registry opened with openEncrypted/);
    },
  );
}

engineTest(
  "a registry opened without a key refuses to write into a sealed registry; nothing is written",
  async (engine) => {
    await using dir = await tempDir();
    const message = (key: string, scheme: string) =>
      `cannot write config key '${key}' without the key: this registry is sealed (${scheme} scheme); open it with openEncrypted`;
    const assertRefused = async (reg: StateRegistry, scheme: string) => {
      const err = await reg.setConfig("api_token", "PLAINTEXT-SECRET").catch((e) => e);
      assert.ok(err instanceof KeyRequiredError, String(err));
      assert.equal(err.message, message("api_token", scheme));
    };

    // Sealed before this handle opened.
    {
      const path = dir.file("sealed.db");
      {
        await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
        await reg.setConfig("api_token", "s3cr3t");
      }
      const stored = await rawValue(path, engine, "api_token");
      {
        await using plain = await StateRegistry.connect(path, { engine });
        await assertRefused(plain, "envelope");
        // Metadata and deletes stay allowed: they write no secret.
        await plain.upsertModule(ECHO, "running");
      }
      assert.equal(await rawValue(path, engine, "api_token"), stored);
      assert.deepEqual(await filesContaining(path, "PLAINTEXT-SECRET"), []);
    }

    // Sealed by another connection after this handle opened: the check runs inside the write.
    {
      const path = dir.file("later.db");
      await using plain = await StateRegistry.connect(path, { engine });
      await plain.setConfig("before", 1);
      {
        await using sealed = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
        assert.equal(await sealed.sealPlainValues(), 1);
      }
      await assertRefused(plain, "envelope");
      assert.deepEqual(await filesContaining(path, "PLAINTEXT-SECRET"), []);
    }

    // A file a Rust kernel sealed (oxide-k values, no oxide_sealing table).
    {
      const path = dir.file("rust.db");
      const db = rawSqlite(path);
      try {
        db.exec(OXIDE_K_SCHEMA);
        db.prepare("INSERT INTO config VALUES ('k', ?, '2026-11-28T09:15:02+00:00')").run(
          await independentOxideKSeal(PASSPHRASE, "1"),
        );
      } finally {
        db.close();
      }
      await using plain = await StateRegistry.connect(path, { engine });
      await assertRefused(plain, "oxide-k");
    }
  },
);

engineTest("an encrypted registry refuses a value stored unsealed until sealPlainValues() seals it", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await setRawValue(path, engine, "api_token", '"planted"');
  const err = await reg.getConfig("api_token").catch((e) => e);
  assert.ok(err instanceof SealedValueError);
  assert.equal(err.reason, "unsealed");
  assert.match(err.message, /sealPlainValues\(\)/);
  assert.equal(await reg.sealPlainValues(), 1);
  assert.equal(await reg.getConfig("api_token"), "planted");
});

engineTest("openEncrypted() refuses the scheme the registry does not use", async (engine) => {
  await using dir = await tempDir();
  const envelopePath = dir.file("envelope.db");
  const oxidePath = dir.file("oxide.db");
  (await StateRegistry.openEncrypted(envelopePath, RAW_KEY, { engine })).close();
  {
    await using reg = await StateRegistry.openEncrypted(oxidePath, PASSPHRASE, { scheme: "oxide-k", engine });
    await reg.setConfig("k", 1);
  }
  await assert.rejects(
    StateRegistry.openEncrypted(envelopePath, RAW_KEY, { scheme: "oxide-k", engine }),
    /sealed with the envelope scheme, not the oxide-k scheme: a Rust oxide-k kernel cannot read it/,
  );
  for (const scheme of ["envelope", undefined] as const) {
    await assert.rejects(
      StateRegistry.openEncrypted(oxidePath, PASSPHRASE, { scheme, engine }),
      /say the oxide-k scheme, which is opened only when asked for with \{ scheme: "oxide-k" \}.*convertToEnvelope\(\)/,
    );
  }
  // An oxide-k file whose parameter table was never written (made by a Rust kernel) is detected by its values.
  await withRawDb(
    oxidePath,
    engine,
    (db) => db.exec("DROP TABLE oxide_sealing; DELETE FROM oxide_migrations WHERE owner = 'sealing'"),
  );
  await assert.rejects(
    StateRegistry.openEncrypted(oxidePath, PASSPHRASE, { engine }),
    /holds values sealed with the oxide-k scheme and no sealing parameters .* asked for with \{ scheme: "oxide-k" \}/,
  );
  await using reg = await StateRegistry.openEncrypted(oxidePath, PASSPHRASE, { scheme: "oxide-k", engine });
  assert.equal(reg.sealing?.scheme, "oxide-k");
  assert.equal(await reg.getConfig("k"), 1);
});

engineTest(
  "openEncrypted() refuses an envelope registry whose scheme field was changed to oxide-k",
  async (engine, t) => {
    const tamperings: [string, string, RegExp][] = [
      [
        "scheme only",
        "UPDATE oxide_sealing SET scheme = 'oxide-k'",
        /table oxide_sealing\): scheme 'oxide-k' with an envelope wrapped_key '.+': the scheme field was altered/,
      ],
      [
        "scheme and every envelope field",
        "UPDATE oxide_sealing SET scheme = 'oxide-k', kdf = NULL, iterations = NULL, salt = NULL, key_id = NULL, " +
        "wrapped_key = NULL",
        /say scheme 'oxide-k', but config key 'api_token' holds an envelope-sealed value: the scheme field was altered/,
      ],
    ];
    for (const [name, sql, message] of tamperings) {
      await t.step(name, async () => {
        await using dir = await tempDir();
        const path = dir.file("r.db");
        {
          await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
          await reg.setConfig("api_token", "s3cr3t");
        }
        await withRawDb(path, engine, (db) => db.exec(sql));
        const before = await snapshotFiles(path);
        for (const key of ["wrong passphrase", PASSPHRASE]) {
          const err = await StateRegistry.openEncrypted(path, key, { engine }).catch((e) => e);
          assert.ok(err instanceof CryptoError, String(err));
          assert.match(err.message, message);
        }
        assert.deepEqual(await snapshotFiles(path), before, "nothing written");
      });
    }
  },
);

engineTest(
  "openEncrypted() refuses every hostile oxide_sealing row with a CryptoError naming the field",
  async (engine, t) => {
    const cases: [string, string, RegExp][] = [
      ["salt not base64", "salt = '!!!'", /field 'salt' is '!!!': not padded URL-safe base64 of 16 bytes/],
      ["empty salt", "salt = ''", /field 'salt' is '': not padded/],
      ["15-byte salt", "salt = 'AAAAAAAAAAAAAAAAAAAA'", /field 'salt' is 'AAAAAAAAAAAAAAAAAAAA'/],
      ["unpadded salt", "salt = rtrim(salt, '=')", /field 'salt'/],
      ["salt as a blob", "salt = x'00'", /field 'salt' is '<1-byte blob>'/],
      ["NULL salt", "salt = NULL", /field 'salt' is NULL/],
      ["unknown kdf", "kdf = 'scrypt'", /field 'kdf' is 'scrypt': an unknown key derivation/],
      ["NULL kdf", "kdf = NULL", /field 'kdf' is NULL/],
      ["iterations as text", "iterations = 'many'", /field 'iterations' is 'many': not an integer/],
      ["iterations as a blob", "iterations = x'00'", /field 'iterations' is '<1-byte blob>'/],
      ["fractional iterations", "iterations = 600000.5", /field 'iterations' is '600000.5'/],
      ["NULL iterations", "iterations = NULL", /field 'iterations' is NULL/],
      ["generation as text", "generation = 'abc'", /field 'generation' is 'abc': not a non-negative integer/],
      ["negative generation", "generation = -1", /field 'generation' is '-1'/],
      ["fractional generation", "generation = 1.5", /field 'generation' is '1.5'/],
      ["newer version", "version = 2", /field 'version' is '2': this library reads format version 1/],
      ["version as text", "version = 'one'", /field 'version' is 'one'/],
      ["unknown scheme", "scheme = 'rot13'", /field 'scheme' is 'rot13': an unknown scheme/],
      ["empty key id", "key_id = ''", /field 'key_id' is '': not a data key id/],
      ["key id with a dollar", "key_id = 'a$b'", /field 'key_id' is 'a\$b'/],
      ["NULL wrapped key", "wrapped_key = NULL", /field 'wrapped_key' is NULL: not text/],
      ["short wrapped key", "wrapped_key = 'zz'", /\(table oxide_sealing, field wrapped_key\) is malformed/],
    ];
    // One PBKDF2 derivation makes the file; every case alters its own copy.
    await using dir = await tempDir();
    const template = dir.file("template.db");
    {
      await using reg = await StateRegistry.openEncrypted(template, PASSPHRASE, { engine });
      await reg.setConfig("a", 1);
    }
    for (const [index, [name, assignment, message]] of cases.entries()) {
      await t.step(name, async () => {
        const path = dir.file(`case${index}.db`);
        await copyDatabase(template, path);
        await withRawDb(path, engine, (db) => db.exec(`UPDATE oxide_sealing SET ${assignment}`));
        const before = await snapshotFiles(path);
        const err = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine }).catch((e) => e);
        assert.ok(err instanceof CryptoError, `${name}: ${err}`);
        assert.match(err.message, /table oxide_sealing/);
        assert.match(err.message, message);
        assert.deepEqual(await snapshotFiles(path), before, "nothing written");
      });
    }
  },
);

engineTest("openEncrypted() refuses keys and options of the wrong shape", async (engine, t) => {
  await using dir = await tempDir();
  const cases: [string, () => Promise<unknown>, typeof TypeError | typeof RangeError][] = [
    ["an empty passphrase", () => StateRegistry.openEncrypted(dir.file("a.db"), "", { engine }), TypeError],
    ["16 key bytes", () => StateRegistry.openEncrypted(dir.file("b.db"), new Uint8Array(16), { engine }), RangeError],
    ["a number", () => StateRegistry.openEncrypted(dir.file("c.db"), 42 as unknown as string, { engine }), TypeError],
    [
      "an unknown scheme",
      () =>
        StateRegistry.openEncrypted(dir.file("d.db"), RAW_KEY, { scheme: "rot13" as unknown as "envelope", engine }),
      TypeError,
    ],
    ["an empty path", () => StateRegistry.openEncrypted("", RAW_KEY, { engine }), TypeError],
    [
      "a passphrase with a lone surrogate",
      () => StateRegistry.openEncrypted(dir.file("e.db"), "pass\ud800", { engine }),
      TypeError,
    ],
  ];
  for (const [name, open, errorClass] of cases) {
    await t.step(name, () => assert.rejects(open(), errorClass));
  }
});

// ---------------------------------------------------------------------------
// What reaches the disk
// ---------------------------------------------------------------------------

for (const scheme of ["envelope", "oxide-k"] as const) {
  engineTest(
    `a secret's bytes appear nowhere in the database file, WAL or journal (${scheme} scheme)`,
    async (engine) => {
      await using dir = await tempDir();
      const path = dir.file("r.db");
      const secret = `s3cr3t-${crypto.randomUUID()}`;
      const reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
      try {
        await reg.setConfig("api_token", secret);
        await reg.setConfig("nested", { deep: [secret] });
        assert.equal(await reg.getConfig("api_token"), secret);
        assert.ok((await Deno.stat(`${path}-wal`)).size > 0, "the values are in the WAL now");
        assert.deepEqual(await filesContaining(path, secret), [], "while open");
        assert.deepEqual(await filesContaining(path, PASSPHRASE), [], "the passphrase is never stored");
      } finally {
        await reg.close();
      }
      assert.deepEqual(await filesContaining(path, secret), [], "after close and checkpoint");
      // The scan itself works: a plain registry's file shows the secret.
      {
        await using plain = await StateRegistry.connect(dir.file("plain.db"), { engine });
        await plain.setConfig("api_token", secret);
      }
      assert.equal((await filesContaining(dir.file("plain.db"), secret)).length, 1);
    },
  );
}

engineTest(
  "sealPlainValues() seals an existing plain registry and leaves no plaintext in its files",
  async (engine) => {
    // The system libsqlite3 (ffi) has secure_delete on by default; the node engine's SQLite does not, so there this
    // test fails unless sealing turns secure_delete on itself.
    await using dir = await tempDir();
    const path = dir.file("r.db");
    const id = crypto.randomUUID();
    const current = `s3cr3t-current-${id}`;
    const big = `s3cr3t-big-${id}-${"b".repeat(6000)}`; // Larger than a 4 KiB page: overflow pages.
    {
      await using plain = await StateRegistry.connect(path, { engine });
      await plain.upsertModule(ECHO, "loaded");
      for (let i = 0; i < 40; i++) await plain.setConfig(`filler${i}`, "f".repeat(200));
      await plain.setConfig("api_token", `s3cr3t-old-${id}`);
      await plain.setConfig("big", big);
      await plain.setConfig("api_token", current); // Overwritten: the old text lingers in free space.
      await plain.setConfig("retries", 3);
    }
    for (const secret of [current, big.slice(0, 60)]) {
      assert.notDeepEqual(await filesContaining(path, secret), [], `the scan finds '${secret.slice(0, 20)}' before`);
    }
    {
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
      assert.equal(await reg.sealPlainValues(), 43);
      assert.equal(await reg.sealPlainValues(), 0, "idempotent");
      assert.equal(await reg.getConfig("api_token"), current);
      assert.equal(await reg.getConfig("big"), big);
      for (const secret of [current, big.slice(0, 60)]) {
        assert.deepEqual(await filesContaining(path, secret), [], "old plain text overwritten, WAL truncated");
      }
    }
    for (const secret of [current, big.slice(0, 60)]) assert.deepEqual(await filesContaining(path, secret), []);
    await using again = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
    assert.equal(await again.getConfig("retries"), 3);
    assert.equal((await again.getModule("echo"))?.name, "Echo");
  },
);

// ---------------------------------------------------------------------------
// rekey and rotateDataKey
// ---------------------------------------------------------------------------

engineTest("rekey() re-wraps the data key: the old key is refused, the new one opens every value", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  const values: [string, unknown][] = [["a", 1], ["b", { c: "d" }]];
  let keyId: string | undefined;
  {
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
    await setAll(reg, values);
    keyId = reg.sealing?.keyId;
    const before = await rawValue(path, engine, "a");
    await reg.rekey("a brand new passphrase", { iterations: 700_000 });
    assert.equal(await rawValue(path, engine, "a"), before, "values are not rewritten");
    assert.equal(reg.sealing?.iterations, 700_000);
    await assertAll(reg, values);
    await reg.rekey(RAW_KEY);
    assert.equal(reg.sealing?.kdf, "raw");
  }
  await assert.rejects(StateRegistry.openEncrypted(path, PASSPHRASE, { engine }), WrongKeyError);
  await assert.rejects(StateRegistry.openEncrypted(path, "a brand new passphrase", { engine }), WrongKeyError);
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  assert.equal(reg.sealing?.keyId, keyId, "same data key");
  await assertAll(reg, values);
});

engineTest("rekey() in the oxide-k scheme re-seals every value, readable by independent code", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.openEncrypted(path, "old-key", { scheme: "oxide-k", engine });
    await setAll(reg, JSON_VALUES);
    await reg.rekey("new-key");
    await assertAll(reg, JSON_VALUES);
  }
  for (const [key, value] of JSON_VALUES) {
    assert.deepEqual(JSON.parse(await independentOxideKOpen("new-key", await rawValue(path, engine, key))), value);
  }
  await assert.rejects(StateRegistry.openEncrypted(path, "old-key", { scheme: "oxide-k", engine }), WrongKeyError);
});

engineTest("rotateDataKey() re-seals every value under a fresh data key id", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await setAll(reg, JSON_VALUES);
  const first = reg.sealing!.keyId!;
  assert.deepEqual(await rawKeyIds(path, engine), new Set([first]));
  assert.equal(await reg.rotateDataKey(), JSON_VALUES.length);
  const second = reg.sealing!.keyId!;
  assert.notEqual(second, first);
  assert.deepEqual(await rawKeyIds(path, engine), new Set([second]));
  await assertAll(reg, JSON_VALUES);
  await using again = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await assertAll(again, JSON_VALUES);
});

engineTest("rotateDataKey() is refused in the oxide-k scheme", async (engine) => {
  await using reg = await StateRegistry.openEncrypted(":memory:", PASSPHRASE, { scheme: "oxide-k", engine });
  await assert.rejects(
    reg.rotateDataKey(),
    /the oxide-k scheme has no data key; use rekey\(\) or convertToEnvelope\(\)/,
  );
});

engineTest("rotateDataKey() failing part-way leaves every value readable under the old data key", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  const values: [string, unknown][] = Array.from({ length: 10 }, (_, i) => [`k${i}`, { i }]);
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await setAll(reg, values);
  const keyId = reg.sealing!.keyId;
  // A failure in the middle of the rewrite: the sixth row refuses its update.
  await withRawDb(
    path,
    engine,
    (db) =>
      db.exec(`CREATE TRIGGER fail_mid_rotation BEFORE UPDATE ON config WHEN old.key = 'k5'
      BEGIN SELECT RAISE(ABORT, 'injected failure'); END`),
  );
  const err = await reg.rotateDataKey().catch((e) => e);
  assert.ok(err instanceof RegistryError, String(err));
  assert.match(err.message, /injected failure/);
  assert.equal(reg.sealing?.keyId, keyId);
  assert.deepEqual(await rawKeyIds(path, engine), new Set([keyId]), "no row moved to the new key");
  await assertAll(reg, values);
  {
    await using fresh = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    await assertAll(fresh, values);
  }
  await withRawDb(path, engine, (db) => db.exec("DROP TRIGGER fail_mid_rotation"));
  await reg.rotateDataKey();
  assert.notEqual(reg.sealing?.keyId, keyId);
  await assertAll(reg, values);
});

engineTest("rekey() failing part-way leaves the old key working (both schemes)", async (engine, t) => {
  for (const scheme of ["envelope", "oxide-k"] as const) {
    await t.step(scheme, async () => {
      await using dir = await tempDir();
      const path = dir.file("r.db");
      const values: [string, unknown][] = Array.from({ length: 6 }, (_, i) => [`k${i}`, `v${i}`]);
      {
        await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
        await setAll(reg, values);
        await withRawDb(path, engine, (db) =>
          db.exec(`CREATE TRIGGER fail_rekey BEFORE UPDATE ON oxide_sealing
            BEGIN SELECT RAISE(ABORT, 'injected failure'); END`));
        await assert.rejects(reg.rekey("new passphrase"), /injected failure/);
        await assertAll(reg, values);
      }
      await withRawDb(path, engine, (db) => db.exec("DROP TRIGGER fail_rekey"));
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme, engine });
      await assertAll(reg, values);
      if (scheme === "oxide-k") {
        for (const [key, value] of values) {
          assert.equal(JSON.parse(await independentOxideKOpen(PASSPHRASE, await rawValue(path, engine, key))), value);
        }
      }
    });
  }
});

engineTest("a process killed during data key rotations leaves every value under exactly one key", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  const values: [string, unknown][] = Array.from({ length: 40 }, (_, i) => [`k${i}`, { i, pad: "x".repeat(i * 50) }]);
  {
    await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    await setAll(reg, values);
  }
  const script = dir.file("rotate_forever.ts");
  await Deno.writeTextFile(
    script,
    `import { StateRegistry } from ${JSON.stringify(import.meta.resolve("../mod.ts"))};
const key = new Uint8Array(32).fill(0x5a);
const reg = await StateRegistry.openEncrypted(Deno.args[0], key, { engine: ${JSON.stringify(engine)} });
const line = new TextEncoder().encode("rotated\\n");
while (true) { await reg.rotateDataKey(); await Deno.stdout.write(line); }`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, path],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while ((seen.match(/rotated/g) ?? []).length < 3) {
    const { value, done } = await reader.read();
    assert.ok(!done, `child exited early: ${seen}`);
    seen += value;
  }
  child.kill("SIGKILL");
  await reader.cancel();
  assert.equal((await child.status).signal, "SIGKILL");
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await assertAll(reg, values);
  assert.deepEqual(await rawKeyIds(path, engine), new Set([reg.sealing!.keyId!]));
});

engineTest(
  "a process killed during oxide-k rekeys leaves every value readable under exactly one key",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    const keys = ["rekey-a", "rekey-b"];
    // Every rekey re-seals every value in the oxide-k scheme: a real window to be killed in.
    const values: [string, unknown][] = Array.from(
      { length: 800 },
      (_, i) => [`k${i}`, { i, pad: "x".repeat(i % 200) }],
    );
    {
      await using reg = await StateRegistry.openEncrypted(path, keys[0]!, { scheme: "oxide-k", engine });
      await setAll(reg, values);
    }
    const script = dir.file("rekey_forever.ts");
    await Deno.writeTextFile(
      script,
      `import { StateRegistry } from ${JSON.stringify(import.meta.resolve("../mod.ts"))};
const keys = ${JSON.stringify(keys)};
const reg = await StateRegistry.openEncrypted(Deno.args[0], keys[0], { scheme: "oxide-k", engine: ${
        JSON.stringify(engine)
      } });
const line = new TextEncoder().encode("rekeyed\\n");
for (let i = 1; ; i++) { await reg.rekey(keys[i % 2]); await Deno.stdout.write(line); }`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, path],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    const times: number[] = [];
    while ((seen.match(/rekeyed/g) ?? []).length < 3) {
      const { value, done } = await reader.read();
      assert.ok(!done, `child exited early: ${seen}`);
      seen += value;
      times.push(performance.now());
    }
    // Kill at a random point of a rekey (sealing, or writing the new values), not always at its start.
    const cycle = times.at(-1)! - times.at(-2)!;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * cycle));
    child.kill("SIGKILL");
    await reader.cancel();
    assert.equal((await child.status).signal, "SIGKILL");
    const opened: string[] = [];
    for (const key of keys) {
      try {
        await using reg = await StateRegistry.openEncrypted(path, key, { scheme: "oxide-k", engine });
        await assertAll(reg, values);
        opened.push(key);
      } catch (error) {
        assert.ok(error instanceof WrongKeyError, String(error));
      }
    }
    assert.equal(opened.length, 1, `exactly one key opens the registry: ${opened}`);
    for (const [key, value] of values) {
      assert.deepEqual(
        JSON.parse(await independentOxideKOpen(opened[0]!, await rawValue(path, engine, key))),
        value,
        key,
      );
    }
  },
);

engineTest(
  "writer processes racing a rotating process lose nothing and seal nothing under a stale key",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
      await reg.setConfig("init", 0);
    }
    const script = dir.file("worker.ts");
    await Deno.writeTextFile(
      script,
      `import { StateRegistry } from ${JSON.stringify(import.meta.resolve("../mod.ts"))};
const [path, role, count] = Deno.args;
const key = new Uint8Array(32).fill(0x5a);
const reg = await StateRegistry.openEncrypted(path, key, { engine: ${JSON.stringify(engine)} });
const out = new TextEncoder();
for (let i = 0; i < Number(count); i++) {
  if (role === "rotator") {
    await reg.rotateDataKey();
    if (i % 4 === 0) await reg.rekey(key);
  } else {
    await reg.setConfig(role + "-" + (i % 10), i);
    await Deno.stdout.write(out.encode(role + "-" + (i % 10) + "=" + i + "\\n"));
  }
}
await reg.close();`,
    );
    const spawn = (role: string, count: number) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", script, path, role, String(count)],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
    const outputs = await Promise.all([spawn("rotator", 12), spawn("w1", 80), spawn("w2", 80)]);
    const last = new Map<string, number>();
    for (const output of outputs) {
      assert.ok(output.success, new TextDecoder().decode(output.stderr));
      for (const line of new TextDecoder().decode(output.stdout).split("\n").filter(Boolean)) {
        const [key, value] = line.split("=");
        last.set(key!, Number(value));
      }
    }
    assert.equal(last.size, 20);
    await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    for (const [key, value] of last) assert.equal(await reg.getConfig(key), value, key);
    assert.deepEqual(
      await rawKeyIds(path, engine),
      new Set([reg.sealing!.keyId!]),
      "every value under the current data key",
    );
    assert.ok(reg.sealing!.generation >= 12, "the rotations happened");
  },
);

engineTest(
  "setConfig() calls racing rotateDataKey() in one process are neither lost nor sealed under a stale key",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    const pending: Promise<unknown>[] = [];
    for (let round = 1; round <= 4; round++) {
      for (let i = 0; i < 8; i++) pending.push(reg.setConfig(`k${i}`, { round }));
      pending.push(reg.rotateDataKey());
      pending.push(reg.setConfig(`late${round}`, round));
    }
    await Promise.all(pending);
    for (let i = 0; i < 8; i++) assert.deepEqual(await reg.getConfig(`k${i}`), { round: 4 }, `k${i}`);
    for (let round = 1; round <= 4; round++) assert.equal(await reg.getConfig(`late${round}`), round);
    assert.deepEqual(await rawKeyIds(path, engine), new Set([reg.sealing!.keyId!]));
    await using again = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    assert.deepEqual(await again.getConfig("k7"), { round: 4 });
  },
);

engineTest(
  "writers on another connection racing rotations are neither lost nor sealed under a stale key",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using rotator = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    await using writer = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    for (let i = 0; i < 10; i++) await writer.setConfig(`k${i}`, 0);
    const pending: Promise<unknown>[] = [];
    for (let round = 1; round <= 3; round++) {
      pending.push(rotator.rotateDataKey());
      for (let i = 0; i < 10; i++) pending.push(writer.setConfig(`k${i}`, round));
    }
    await Promise.all(pending);
    const keyIds = await rawKeyIds(path, engine);
    assert.equal(keyIds.size, 1, "one data key");
    assert.ok(keyIds.has(rotator.sealing!.keyId!));
    for (let i = 0; i < 10; i++) {
      assert.equal(await writer.getConfig(`k${i}`), 3);
      assert.equal(await rotator.getConfig(`k${i}`), 3);
    }
  },
);

engineTest("a handle opened before another process rotated writes under the new data key", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await using a = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
  await using b = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
  await a.setConfig("x", "from a");
  await a.rotateDataKey();
  await b.setConfig("y", "from b");
  assert.deepEqual(await rawKeyIds(path, engine), new Set([a.sealing!.keyId!]));
  assert.equal(b.sealing?.keyId, a.sealing?.keyId, "b followed the rotation");
  assert.equal(await b.getConfig("x"), "from a");
  assert.equal(await a.getConfig("y"), "from b");
});

engineTest(
  "a write sealed under a data key another process just retired is refused by its compare and redone",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using a = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
    await using b = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
    // b's first write reserves seals under generation 0, so its next write does not read the generation before it
    // seals: only the write's compare on the meta key "sealing" (version = generation + 1) can notice the rotation.
    await b.setConfig("early", "from b");
    await a.rotateDataKey();
    await b.setConfig("y", "from b");
    assert.deepEqual(await rawKeyIds(path, engine), new Set([a.sealing!.keyId!]), "nothing stays under the old key");
    assert.equal(b.sealing?.generation, a.sealing?.generation, "b followed the rotation");
    assert.equal(b.sealing?.keyId, a.sealing?.keyId);
    assert.equal(await a.getConfig("y"), "from b");
  },
);

engineTest(
  "after another process rekeys, a handle keeps reading and writing but cannot rekey or rotate",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await using a = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    await using b = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
    await a.setConfig("x", 1);
    await a.rekey(OTHER_KEY);
    await b.setConfig("y", 2);
    assert.equal(await b.getConfig("x"), 1);
    assert.equal(await a.getConfig("y"), 2);
    await assert.rejects(b.rotateDataKey(), /another process changed this registry's key since it was opened/);
    await assert.rejects(b.rekey(PASSPHRASE), WrongKeyError);
    // And after a rekey plus a rotation elsewhere, the stale handle stops clearly.
    await a.rotateDataKey();
    await assert.rejects(
      b.setConfig("z", 3),
      /changed the key of .* and rotated its data key; reopen it with the new key/,
    );
    await using c = await StateRegistry.openEncrypted(path, OTHER_KEY, { engine });
    assert.equal(await c.getConfig("y"), 2);
  },
);

// ---------------------------------------------------------------------------
// One file, both engines (one after the other: never open through both at once)
// ---------------------------------------------------------------------------

for (const writer of ENGINES) {
  const reader: EngineName = writer === "ffi" ? "node" : "ffi";
  Deno.test(`a registry sealed through the ${writer} engine reads, rotates and rekeys through the ${reader} engine`, async () => {
    await using dir = await tempDir();
    const envelopePath = dir.file("envelope.db");
    const oxidePath = dir.file("oxide.db");
    {
      await using reg = await StateRegistry.openEncrypted(envelopePath, RAW_KEY, { engine: writer });
      await setAll(reg, JSON_VALUES);
      await reg.upsertModule(ECHO, "running");
    }
    {
      await using reg = await StateRegistry.openEncrypted(oxidePath, "oxide-key-1", {
        scheme: "oxide-k",
        engine: writer,
      });
      await setAll(reg, JSON_VALUES);
    }
    let keyId: string | undefined;
    {
      await using reg = await StateRegistry.openEncrypted(envelopePath, RAW_KEY, { engine: reader });
      assert.equal(reg.engine, reader);
      await assertAll(reg, JSON_VALUES);
      assert.equal((await reg.getModule("echo"))?.state, "running");
      assert.equal(await reg.rotateDataKey(), JSON_VALUES.length);
      await reg.rekey(OTHER_KEY);
      keyId = reg.sealing?.keyId;
    }
    {
      await using reg = await StateRegistry.openEncrypted(oxidePath, "oxide-key-1", {
        scheme: "oxide-k",
        engine: reader,
      });
      assert.equal(reg.sealing?.scheme, "oxide-k");
      await assertAll(reg, JSON_VALUES);
      await reg.rekey("oxide-key-2");
    }
    await assert.rejects(StateRegistry.openEncrypted(envelopePath, RAW_KEY, { engine: writer }), WrongKeyError);
    await assert.rejects(
      StateRegistry.openEncrypted(oxidePath, "oxide-key-1", { scheme: "oxide-k", engine: writer }),
      WrongKeyError,
    );
    {
      await using reg = await StateRegistry.openEncrypted(envelopePath, OTHER_KEY, { engine: writer });
      assert.equal(reg.sealing?.keyId, keyId, "the rotated data key");
      await assertAll(reg, JSON_VALUES);
      assert.deepEqual(await rawKeyIds(envelopePath, writer), new Set([keyId]));
    }
    await using reg = await StateRegistry.openEncrypted(oxidePath, "oxide-key-2", {
      scheme: "oxide-k",
      engine: writer,
    });
    await assertAll(reg, JSON_VALUES);
  });
}

// ---------------------------------------------------------------------------
// oxide-k interop and conversion
// ---------------------------------------------------------------------------

engineTest("an oxide-k file made with raw SQL and independent WebCrypto reads back", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("rust.db");
  const values: [string, unknown][] = JSON_VALUES.map(([key, value]) => [`cfg.${key}`, value]);
  // What a Rust oxide-k kernel with the `encrypted` feature leaves behind.
  const rows: [string, string][] = [];
  for (const [key, value] of values) rows.push([key, await independentOxideKSeal("s3cr3t-key", JSON.stringify(value))]);
  // node:sqlite, not our engines; closed before any registry opens the file.
  const db = rawSqlite(path);
  try {
    db.exec(OXIDE_K_SCHEMA);
    db.prepare(
      `INSERT INTO modules VALUES ('echo', 'Echo', '0.1.0', '"native"', '"running"', NULL, '2026-11-28T09:15:02.123456789+00:00')`,
    ).run();
    const insert = db.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)");
    for (const [key, stored] of rows) insert.run(key, stored, "2026-11-28T09:15:02.123456789+00:00");
  } finally {
    db.close();
  }
  await using reg = await StateRegistry.openEncrypted(path, "s3cr3t-key", { scheme: "oxide-k", engine });
  assert.equal(reg.sealing?.scheme, "oxide-k");
  await assertAll(reg, values);
  assert.equal((await reg.getModule("echo"))?.state, "running");
});

engineTest("values written in the oxide-k scheme decrypt with independent WebCrypto code", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("shared.db");
  {
    await using reg = await StateRegistry.openEncrypted(path, "s3cr3t-key", { scheme: "oxide-k", engine });
    await setAll(reg, JSON_VALUES);
  }
  for (const [key, value] of JSON_VALUES) {
    const stored = await rawValue(path, engine, key);
    assert.deepEqual(JSON.parse(await independentOxideKOpen("s3cr3t-key", stored)), value, key);
    // Exactly nonce[12] ++ ciphertext ++ tag[16], padded URL-safe base64.
    const json = new TextEncoder().encode(JSON.stringify(value));
    assert.equal(Uint8Array.fromBase64(stored, { alphabet: "base64url" }).length, 12 + json.length + 16);
  }
});

engineTest(
  "an envelope registry refuses an old oxide-k ciphertext replayed under another key, even after rotation",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    let oldAdmin: string;
    {
      await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { scheme: "oxide-k", engine });
      await reg.setConfig("admin.password", "root-pw");
      await reg.setConfig("guest.password", "guest-pw");
      oldAdmin = await rawValue(path, engine, "admin.password"); // An attacker's old backup.
      assert.equal(await reg.convertToEnvelope(PASSPHRASE), 2);
    }
    await setRawValue(path, engine, "guest.password", oldAdmin);
    // A value a Rust kernel would write with the same passphrase: not bound to its key either.
    await setRawValue(path, engine, "rust.written", await independentOxideKSeal(PASSPHRASE, '"from rust"'));
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
    const assertRefused = async () => {
      for (const key of ["guest.password", "rust.written"]) {
        const err = await reg.getConfig(key).catch((e) => e);
        assert.ok(err instanceof SealedValueError, `${key}: ${err}`);
        assert.equal(err.reason, "wrong_scheme");
        assert.match(err.message, new RegExp(`'${key}' cannot be opened: it is sealed under the oxide-k scheme`));
      }
    };
    await assertRefused();
    assert.equal(await reg.getConfig("admin.password"), "root-pw");
    // Re-sealing does not launder them into bound values.
    assert.equal(await reg.rotateDataKey(), 1);
    await reg.rekey(RAW_KEY);
    await assertRefused();
    assert.equal(await rawValue(path, engine, "guest.password"), oldAdmin, "left as it was");
  },
);

engineTest("convertToEnvelope() moves an oxide-k registry to the envelope scheme in one step", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.openEncrypted(path, "s3cr3t-key", { scheme: "oxide-k", engine });
    await setAll(reg, JSON_VALUES);
    await assert.rejects(reg.rotateDataKey(), CryptoError);
    assert.equal(await reg.convertToEnvelope(PASSPHRASE), JSON_VALUES.length);
    assert.equal(reg.sealing?.scheme, "envelope");
    await assertAll(reg, JSON_VALUES);
    await assert.rejects(reg.convertToEnvelope(PASSPHRASE), /already uses the envelope scheme/);
  }
  assert.equal((await rawKeyIds(path, engine)).size, 1);
  await assert.rejects(StateRegistry.openEncrypted(path, "s3cr3t-key", { engine }), WrongKeyError);
  await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
  assert.equal(reg.sealing?.scheme, "envelope");
  await assertAll(reg, JSON_VALUES);
});

// ---------------------------------------------------------------------------
// Keys from the environment, and the permission-scoped example
// ---------------------------------------------------------------------------

const EXAMPLE = new URL("../examples/encrypted.ts", import.meta.url).pathname;
const EXAMPLE_FLAGS = [
  "--allow-ffi",
  "--allow-read=./data",
  "--allow-write=./data",
  "--allow-env=OXIDE_REGISTRY_KEY",
];

Deno.test("the example:encrypted task names exactly the permissions the example is tested with", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(config.tasks["example:encrypted"].command, `deno run ${EXAMPLE_FLAGS.join(" ")} examples/encrypted.ts`);
});

Deno.test("the encrypted example works with exactly --allow-ffi, read/write on ./data and OXIDE_REGISTRY_KEY", async () => {
  await using dir = await tempDir();
  const env = { OXIDE_REGISTRY_KEY: PASSPHRASE, PATH: Deno.env.get("PATH") ?? "" };
  const first = await runDeno(["run", ...EXAMPLE_FLAGS, EXAMPLE], { cwd: dir.path, env, clearEnv: true });
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /scheme: envelope, .*previous runs: 0/);
  const second = await runDeno(["run", ...EXAMPLE_FLAGS, EXAMPLE], { cwd: dir.path, env, clearEnv: true });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /previous runs: 1/);
  const wrong = await runDeno(["run", ...EXAMPLE_FLAGS, EXAMPLE], {
    cwd: dir.path,
    env: { ...env, OXIDE_REGISTRY_KEY: "another passphrase" },
    clearEnv: true,
  });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /error: wrong key/);
  assert.deepEqual(await filesContaining(`${dir.path}/data/encrypted.db`, "tok_example_not_a_real_secret"), []);
});

Deno.test("without --allow-env the encrypted example says which permission is missing", async () => {
  await using dir = await tempDir();
  const flags = EXAMPLE_FLAGS.filter((flag) => !flag.startsWith("--allow-env"));
  const result = await runDeno(["run", ...flags, EXAMPLE], {
    cwd: dir.path,
    env: { OXIDE_REGISTRY_KEY: PASSPHRASE, PATH: Deno.env.get("PATH") ?? "" },
    clearEnv: true,
  });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /environment access is not permitted; run with --allow-env=OXIDE_REGISTRY_KEY/);
});

Deno.test(
  "StateRegistry.keyFromEnv() names --allow-env when it is not granted",
  { permissions: { env: false } },
  () => {
    assert.throws(() => StateRegistry.keyFromEnv(), (err: unknown) => {
      assert.ok(err instanceof OtherError);
      assert.match(err.message, /--allow-env=OXIDE_REGISTRY_KEY/);
      return true;
    });
  },
);

/** Checks onProgress calls: `done` never decreases, never passes `total`, and the last call is `(total, total)`. */
function assertProgress(calls: readonly [number, number][], total: number): void {
  assert.ok(calls.length > 0, "onProgress was called");
  let previous: [number, number] = [0, 0];
  for (const [done, of] of calls) {
    assert.ok(done <= of, `${done} of ${of}`);
    assert.ok(done >= previous[0] && of >= previous[1], `went back: ${JSON.stringify(calls)}`);
    previous = [done, of];
  }
  assert.deepEqual(calls.at(-1), [total, total]);
}

engineTest(
  "onProgress of rotateDataKey, sealPlainValues, rekey and convertToEnvelope counts up to every value rewritten",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using plain = await StateRegistry.connect(path, { engine });
      let batch = plain.batch();
      for (let i = 0; i < 40; i++) batch = batch.setConfig(`p${i}`, i);
      await batch.commit();
      await plain.setConfig("p0", "changed"); // One past value in the change log.
    }
    await using reg = await StateRegistry.openEncrypted(path, PASSPHRASE, { engine });
    const calls: [number, number][] = [];
    const onProgress = (done: number, total: number) => calls.push([done, total]);
    assert.equal(await reg.sealPlainValues({ onProgress }), 40);
    // SQLite takes any number of rewrites in one transaction: one call before it, one after; the change log's 41
    // copies are rewritten too (81 in all).
    assert.deepEqual(calls, [[0, 81], [81, 81]]);
    calls.length = 0;
    assert.equal(await reg.rotateDataKey({ onProgress }), 40);
    assertProgress(calls, 81);
    calls.length = 0;
    await reg.rekey(RAW_KEY, { onProgress });
    assert.deepEqual(calls, [[0, 0]], "the envelope scheme re-wraps the data key: no value rewritten");
    calls.length = 0;
    assert.equal(await reg.sealPlainValues({ onProgress }), 0);
    assert.deepEqual(calls, [[0, 0]]);
    // oxide-k: rekey re-seals every value; convertToEnvelope too.
    await using oxide = await StateRegistry.openEncrypted(dir.file("k.db"), PASSPHRASE, { engine, scheme: "oxide-k" });
    for (let i = 0; i < 25; i++) await oxide.setConfig(`k${i}`, i);
    calls.length = 0;
    await oxide.rekey("another passphrase", { onProgress });
    assertProgress(calls, 50);
    calls.length = 0;
    assert.equal(await oxide.convertToEnvelope("another passphrase", { onProgress }), 25);
    assertProgress(calls, 50);
    // Misuse of the option's shape: TypeErrors, nothing changed.
    const keyId = reg.sealing?.keyId;
    // deno-lint-ignore no-explicit-any -- wrong shapes on purpose.
    const bad = (options: any) => assert.rejects(async () => await reg.rotateDataKey(options), TypeError);
    await bad({ onProgress: 1 });
    await bad({ onPorgress: onProgress });
    await bad(null);
    await assert.rejects(
      async () => await reg.rekey("x", { onProgress: "no" } as never),
      /onProgress of rekey\(\) must be a function/,
    );
    await assert.rejects(
      async () => await reg.sealPlainValues({ iterations: 1 } as never),
      /unknown option 'iterations'/,
    );
    assert.equal(reg.sealing?.keyId, keyId);
  },
);
