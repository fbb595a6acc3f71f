// The registry API: oxide-k's own tests, ported, plus compatibility with oxide-k's
// stored format and bad input. Every test runs against both engines.
import assert from "node:assert/strict";
import {
  ConfigNotFoundError,
  type KernelError,
  MODULE_KINDS,
  MODULE_STATES,
  type ModuleMetadata,
  OtherError,
  RegistryError,
  SerializationError,
  StateRegistry,
  UnknownModuleError,
} from "@oxide/registry";
import { engineTest, OXIDE_K_SCHEMA, rawSqlite, tempDir } from "./_helpers.ts";

function sampleMeta(id: string): ModuleMetadata {
  return { id, name: `Module ${id}`, version: "0.1.0", kind: "native", description: "test module" };
}

/**
 * Reads a table straight from the file with node:sqlite, bypassing our API. Only once every registry on `path` is
 * closed: node:sqlite is a second SQLite library, and closing it drops the ffi engine's locks on the file and deletes
 * its -wal and -shm files under it.
 */
function rawRows(path: string, sql: string): Record<string, unknown>[] {
  const db = rawSqlite(path);
  try {
    return db.prepare(sql).all().map((row) => ({ ...row }));
  } finally {
    db.close();
  }
}

// --- oxide-k's tests, ported -------------------------------------------------------------------

engineTest("in-memory registry runs migrations", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  assert.deepEqual(await reg.listModules(), []);
  assert.equal(reg.engine, engine);
});

engineTest("upsertModule() and getModule()", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const meta = sampleMeta("mirror");
  await reg.upsertModule(meta, "loaded");
  const rec = await reg.getModule("mirror");
  assert.ok(rec);
  assert.equal(rec.id, "mirror");
  assert.equal(rec.kind, "native");
  assert.equal(rec.state, "loaded");
  assert.equal(rec.description, "test module");
  await reg.upsertModule(meta, "running");
  assert.equal((await reg.getModule("mirror"))?.state, "running");
});

engineTest("setModuleState() updates only the state", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const meta = sampleMeta("compress");
  await reg.upsertModule(meta, "loaded");
  const before = await reg.getModule("compress");
  await reg.setModuleState("compress", "running");
  const rec = await reg.getModule("compress");
  assert.equal(rec?.state, "running");
  assert.deepEqual({ ...rec, state: "loaded", updatedAt: undefined, recordVersion: 1, modRevision: 1 }, {
    ...before,
    updatedAt: undefined,
  });
  assert.deepEqual([rec.recordVersion, rec.modRevision], [2, 2], "a write: a new version and revision");
  assert.ok(rec!.updatedAt >= before!.updatedAt);
});

engineTest("setModuleState() of an unknown module throws UnknownModuleError", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const err = await reg.setModuleState("missing", "running").catch((e) => e);
  assert.ok(err instanceof UnknownModuleError);
  assert.equal(err.kind, "unknown_module");
  assert.equal(err.message, "unknown module: missing");
  assert.equal(await reg.getModule("missing"), undefined, "nothing was created");
});

engineTest("config round trip and overwrite", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.setConfig("max_threads", 8);
  assert.equal(await reg.getConfig<number>("max_threads"), 8);
  await reg.setConfig("max_threads", 16);
  assert.equal(await reg.getConfig<number>("max_threads"), 16);
});

engineTest("a missing config key: getConfig() throws, tryGetConfig() returns undefined", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const err = await reg.getConfig("missing").catch((e) => e);
  assert.ok(err instanceof ConfigNotFoundError);
  assert.equal(err.message, "configuration key not found: missing");
  assert.equal(err.key, "missing");
  assert.equal(await reg.tryGetConfig("missing"), undefined);
});

engineTest("deleteConfig() returns whether a value was removed", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.setConfig("key", "value");
  assert.equal(await reg.deleteConfig("key"), true);
  assert.equal(await reg.deleteConfig("key"), false);
  assert.equal(await reg.tryGetConfig("key"), undefined);
});

engineTest("config supports complex types", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const endpoint = { url: "https://example.com", retries: 3 };
  await reg.setConfig("endpoint", endpoint);
  assert.deepEqual(await reg.getConfig("endpoint"), endpoint);
});

// --- beyond the original ----------------------------------------------------------------------

engineTest("every JSON type round-trips", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const values: [string, unknown][] = [
    ["null", null],
    ["true", true],
    ["false", false],
    ["zero", 0],
    ["negative float", -12.5],
    ["large safe integer", Number.MAX_SAFE_INTEGER],
    ["empty string", ""],
    ["unicode string", "Grüße, агент 🦕 \u0000 inside"],
    ["empty array", []],
    ["nested", { a: [1, { b: null, c: ["x"] }], "key with spaces": { "": "" } }],
  ];
  for (const [key, value] of values) {
    await reg.setConfig(key, value);
    assert.deepEqual(await reg.getConfig(key), value, key);
  }
  await reg.setConfig("null prototype", Object.assign(Object.create(null), { x: 1 }));
  assert.deepEqual(await reg.getConfig("null prototype"), { x: 1 });
});

engineTest("listModules() is ordered by id and returns every field", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  for (const id of ["zeta", "alpha", "mid"]) await reg.upsertModule(sampleMeta(id), "loaded");
  await reg.upsertModule({ id: "bare", name: "Bare", version: "2.0.0", kind: "wasm" }, "failed");
  const list = await reg.listModules();
  assert.deepEqual(list.map((m) => m.id), ["alpha", "bare", "mid", "zeta"]);
  const bare = list[1]!;
  assert.equal(bare.description, undefined);
  assert.equal(bare.kind, "wasm");
  assert.equal(bare.state, "failed");
  assert.ok(bare.updatedAt instanceof Date && !Number.isNaN(bare.updatedAt.getTime()));
});

engineTest("a description can be removed by upserting without one", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.upsertModule(sampleMeta("m"), "loaded");
  await reg.upsertModule({ ...sampleMeta("m"), description: undefined }, "loaded");
  assert.equal((await reg.getModule("m"))?.description, undefined);
});

engineTest("every kind and state is accepted and read back", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  for (const kind of MODULE_KINDS) {
    for (const state of MODULE_STATES) {
      const id = `${kind}-${state}`;
      await reg.upsertModule({ ...sampleMeta(id), kind }, state);
      const rec = await reg.getModule(id);
      assert.equal(rec?.kind, kind);
      assert.equal(rec?.state, state);
    }
  }
});

engineTest("connect() persists across reopen", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.upsertModule(sampleMeta("echo"), "running");
    await reg.setConfig("kernel.greeting", "Hello, agent.");
  }
  await using reg = await StateRegistry.connect(path, { engine });
  assert.equal((await reg.getModule("echo"))?.state, "running");
  assert.equal(await reg.getConfig("kernel.greeting"), "Hello, agent.");
});

engineTest("in-memory registries are private to their handle", async (engine) => {
  await using a = await StateRegistry.inMemory({ engine });
  await using b = await StateRegistry.inMemory({ engine });
  await a.setConfig("x", 1);
  assert.equal(await b.tryGetConfig("x"), undefined);
});

engineTest("the db handle lets extensions keep their own tables", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  reg.db.exec("CREATE TABLE ext_notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  reg.db.prepare("INSERT INTO ext_notes (body) VALUES (?)").run("hello");
  assert.deepEqual(reg.db.prepare("SELECT body FROM ext_notes").all(), [{ body: "hello" }]);
});

engineTest("close() is idempotent and every call afterwards throws", async (engine) => {
  const reg = await StateRegistry.inMemory({ engine });
  await reg.close();
  await reg.close();
  assert.equal(reg.isOpen, false);
  for (
    const call of [
      () => reg.getConfig("x"),
      () => reg.setConfig("x", 1),
      () => reg.tryGetConfig("x"),
      () => reg.deleteConfig("x"),
      () => reg.listModules(),
      () => reg.getModule("x"),
      () => reg.upsertModule(sampleMeta("x"), "loaded"),
      () => reg.setModuleState("x", "running"),
    ]
  ) {
    await assert.rejects(call(), (error: unknown) => error instanceof RegistryError && /is closed/.test(error.message));
  }
});

// --- compatibility with oxide-k's stored format --------------------------------------------------

engineTest("writes exactly oxide-k's text encodings", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.upsertModule({ ...sampleMeta("echo"), kind: "wasm" }, "running");
    await reg.upsertModule({ id: "plain", name: "P", version: "1", kind: "native" }, "stopped");
    await reg.setConfig("endpoint", { url: "https://example.com", retries: 3 });
    await reg.setConfig("greeting", "Hello, agent.");
    await reg.setConfig("n", 16);
  }
  const modules = rawRows(path, "SELECT * FROM modules ORDER BY id");
  assert.equal(modules[0]!.kind, '"wasm"');
  assert.equal(modules[0]!.state, '"running"');
  assert.equal(modules[0]!.description, "test module");
  assert.equal(modules[1]!.kind, '"native"');
  assert.equal(modules[1]!.state, '"stopped"');
  assert.equal(modules[1]!.description, null);
  const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?\+00:00$/;
  for (const row of modules) assert.match(String(row.updated_at), rfc3339);
  const config = rawRows(path, "SELECT key, value, updated_at FROM config ORDER BY key");
  assert.deepEqual(config.map((row) => [row.key, row.value]), [
    ["endpoint", '{"url":"https://example.com","retries":3}'],
    ["greeting", '"Hello, agent."'],
    ["n", "16"],
  ]);
  for (const row of config) assert.match(String(row.updated_at), rfc3339);
  // The tables are oxide-k's, column for column.
  assert.deepEqual(rawRows(path, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('modules')"), [
    { name: "id", type: "TEXT", notnull: 0, pk: 1 },
    { name: "name", type: "TEXT", notnull: 1, pk: 0 },
    { name: "version", type: "TEXT", notnull: 1, pk: 0 },
    { name: "kind", type: "TEXT", notnull: 1, pk: 0 },
    { name: "state", type: "TEXT", notnull: 1, pk: 0 },
    { name: "description", type: "TEXT", notnull: 0, pk: 0 },
    { name: "updated_at", type: "TEXT", notnull: 1, pk: 0 },
  ]);
  assert.deepEqual(rawRows(path, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('config')"), [
    { name: "key", type: "TEXT", notnull: 0, pk: 1 },
    { name: "value", type: "TEXT", notnull: 1, pk: 0 },
    { name: "updated_at", type: "TEXT", notnull: 1, pk: 0 },
  ]);
});

/** A registry file made the way oxide-k makes it: its own DDL and rows, no API of ours. */
function writeOxideKFile(path: string): void {
  const db = rawSqlite(path);
  db.exec(OXIDE_K_SCHEMA);
  db.exec(`
    INSERT INTO modules VALUES ('echo', 'Echo', '0.1.0', '"native"', '"running"',
      'Demo module that echoes Ping commands.', '2026-11-28T09:15:02.123456789+00:00');
    INSERT INTO modules VALUES ('wasm-mod', 'W', '1.2.3', '"wasm"', '"stopped"', NULL, '2026-11-28T09:15:02+00:00');
    INSERT INTO modules VALUES ('zulu', 'Z', '1', '"native"', '"failed"', NULL, '2026-11-28T09:15:02.123456Z');
    INSERT INTO config VALUES ('kernel.greeting', '"Hello, agent."', '2026-11-28T09:15:02.123456789+00:00');
    INSERT INTO config VALUES ('endpoint', '{"url":"https://example.com","retries":3}', '2026-11-28T09:15:02.5+00:00');
    INSERT INTO config VALUES ('max_threads', '16', '2026-11-28T09:15:02+00:00');
  `);
  db.close();
}

engineTest("reads a file oxide-k wrote, chrono timestamps included", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("oxide-k.db");
  writeOxideKFile(path);
  {
    await using reg = await StateRegistry.connect(path, { engine });
    const echo = await reg.getModule("echo");
    assert.deepEqual(echo, {
      id: "echo",
      name: "Echo",
      version: "0.1.0",
      kind: "native",
      state: "running",
      description: "Demo module that echoes Ping commands.",
      updatedAt: new Date("2026-11-28T09:15:02.123Z"),
      // Rows that predate the revision schema were created at revision 1, the migration's.
      recordVersion: 1,
      createRevision: 1,
      modRevision: 1,
    });
    const list = await reg.listModules();
    assert.deepEqual(list.map((m) => [m.id, m.kind, m.state, m.updatedAt.toISOString()]), [
      ["echo", "native", "running", "2026-11-28T09:15:02.123Z"],
      ["wasm-mod", "wasm", "stopped", "2026-11-28T09:15:02.000Z"],
      ["zulu", "native", "failed", "2026-11-28T09:15:02.123Z"],
    ]);
    assert.equal(await reg.getConfig("kernel.greeting"), "Hello, agent.");
    assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://example.com", retries: 3 });
    assert.equal(await reg.getConfig("max_threads"), 16);
  }
  // Opening it added only our bookkeeping table; oxide-k's rows are untouched. Read with node:sqlite once the registry
  // is closed: a second SQLite library must not open a file this process has open through the ffi engine.
  assert.deepEqual(rawRows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"), [
    { name: "config" },
    { name: "modules" },
    { name: "oxide_batch" },
    { name: "oxide_changes" },
    { name: "oxide_meta" },
    { name: "oxide_migrations" },
    { name: "oxide_revision" },
  ]);
  assert.equal(
    rawRows(path, "SELECT updated_at FROM modules WHERE id = 'echo'")[0]!.updated_at,
    "2026-11-28T09:15:02.123456789+00:00",
  );
});

// --- bad input ----------------------------------------------------------------------------------

engineTest("values JSON cannot carry faithfully are refused and nothing is written", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.setConfig("k", "original");
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const sparse = [1, , 3];
  const cases: [string, unknown, RegExp][] = [
    ["undefined", undefined, /undefined at \$ has no JSON form/],
    ["undefined property", { a: undefined }, /undefined at \$\.a/],
    ["undefined in array", [1, undefined], /undefined at \$\[1\]/],
    ["function", () => 1, /function at \$/],
    ["symbol", Symbol("s"), /symbol at \$/],
    ["bigint beyond u64::MAX", 2n ** 64n, /bigint 18446744073709551616n at \$ is outside i64::MIN to u64::MAX/],
    ["lone surrogate", { a: "\uDC00" }, /the string at \$\.a has a lone surrogate \(U\+DC00 at index 0\)/],
    ["NaN", NaN, /NaN at \$ is not a finite number/],
    ["Infinity", { x: [Infinity] }, /Infinity at \$\.x\[0\]/],
    ["-Infinity", -Infinity, /-Infinity/],
    ["cycle", cyclic, /refers to itself/],
    ["sparse array", sparse, /hole at index 1/],
    ["Date", new Date(0), /Date at \$ is not a plain object/],
    ["Map", new Map(), /Map at \$/],
    ["class instance", new (class Point {})(), /Point at \$/],
    // Inside plain values, where the quick walk of the common case must hand over to the careful one.
    ["lone surrogate in a nested property name", { a: [{ "\uD800": 1 }] }, /property name at \$\.a\[0\]\./],
    ["nested Date", { a: [1, new Date(0)] }, /Date at \$\.a\[1\] is not a plain object/],
    ["toJSON method", { toJSON: () => 1 }, /function at \$\.toJSON has no JSON form/],
    ["nested hole", { a: { b: sparse } }, /the array at \$\.a\.b has a hole at index 1/],
    ["nested NaN", [{ a: NaN }], /NaN at \$\[0\]\.a is not a finite number/],
    ["nested cycle", { list: [cyclic] }, /refers to itself/],
  ];
  for (const [what, value, message] of cases) {
    const err = await reg.setConfig("k", value).catch((e) => e);
    assert.ok(err instanceof SerializationError, what);
    assert.equal(err.kind, "serde");
    assert.match(err.message, /^serialization error: /);
    assert.match(err.message, message, what);
    assert.equal(await reg.getConfig("k"), "original", `${what}: nothing written`);
  }
  assert.equal(await reg.tryGetConfig("new"), undefined);
});

engineTest("an unknown kind or state is refused and nothing is written", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.upsertModule(sampleMeta("m"), "loaded");
  const badKind = await reg.upsertModule({ ...sampleMeta("m"), kind: "Native" as "native" }, "running").catch((e) => e);
  assert.ok(badKind instanceof SerializationError);
  assert.match(badKind.message, /unknown module kind 'Native': expected one of 'native', 'wasm'/);
  const badState = await reg.upsertModule(sampleMeta("m"), "Running" as "running").catch((e) => e);
  assert.ok(badState instanceof SerializationError);
  assert.match(badState.message, /unknown module state 'Running'/);
  const badSet = await reg.setModuleState("m", "paused" as "running").catch((e) => e);
  assert.ok(badSet instanceof SerializationError);
  assert.equal((await reg.getModule("m"))?.state, "loaded");
  await assert.rejects(reg.upsertModule(sampleMeta("new"), "bogus" as "loaded"), SerializationError);
  assert.equal(await reg.getModule("new"), undefined);
});

engineTest("arguments of the wrong shape are TypeErrors and nothing is written", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const bad = <T>(value: unknown) => value as T;
  const calls: [string, () => Promise<unknown>, RegExp][] = [
    ["numeric id", () => reg.upsertModule({ ...sampleMeta("x"), id: bad(42) }, "loaded"), /module id must be a string/],
    ["null name", () => reg.upsertModule({ ...sampleMeta("x"), name: bad(null) }, "loaded"), /module name/],
    ["missing version", () => reg.upsertModule(bad({ id: "x", name: "x", kind: "native" }), "loaded"), /version/],
    [
      "numeric description",
      () => reg.upsertModule({ ...sampleMeta("x"), description: bad(1) }, "loaded"),
      /description/,
    ],
    ["metadata not an object", () => reg.upsertModule(bad("x"), "loaded"), /metadata must be an object/],
    ["numeric key", () => reg.setConfig(bad(1), 1), /config key must be a string/],
    ["object key", () => reg.getConfig(bad({})), /config key/],
    ["undefined key", () => reg.deleteConfig(bad(undefined)), /config key/],
    ["numeric module id", () => reg.setModuleState(bad(1), "loaded"), /module id/],
    ["getModule of a number", () => reg.getModule(bad(1)), /module id/],
  ];
  for (const [what, call, message] of calls) {
    await assert.rejects(call(), (error: unknown) => error instanceof TypeError && message.test(error.message), what);
  }
  assert.deepEqual(await reg.listModules(), []);
});

engineTest(
  "text a key, id or field cannot hold is a SerializationError, as in a value; nothing is written",
  async (engine) => {
    // A string argument has the right shape; a NUL (node:sqlite cuts text there) or a lone surrogate (no UTF-8 form)
    // is a problem of its content, the same one a value with it has: one error class for both.
    await using reg = await StateRegistry.inMemory({ engine });
    const calls: [string, () => Promise<unknown>, RegExp][] = [
      ["NUL in a module id", () => reg.upsertModule(sampleMeta("a\0b"), "loaded"), /module id must not contain a NUL/],
      ["NUL in a config key", () => reg.setConfig("a\0b", 1), /config key must not contain a NUL/],
      ["lone surrogate in a config key", () => reg.setConfig("a\ud800", 1), /config key must not contain a lone surr/],
      ["lone surrogate in a value", () => reg.setConfig("k", "a\ud800"), /the string at \$ has a lone surrogate/],
      ["lone surrogate in a read", () => reg.getConfig("\udc00"), /config key must not contain a lone surrogate/],
      ["lone surrogate in a batch key", () => Promise.resolve().then(() => reg.batch().deleteConfig("\ud800")), /key/],
    ];
    for (const [what, call, message] of calls) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof SerializationError, `${what}: ${error}`);
        assert.equal(error.kind, "serde");
        assert.match(error.message, message);
        return true;
      }, what);
    }
    assert.deepEqual(await reg.listModules(), []);
    assert.equal((await reg.listConfig()).length, 0);
  },
);

engineTest("a path in a missing folder gives an error naming it", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("nope/registry.db");
  const err = await StateRegistry.connect(path, { engine }).catch((e) => e);
  assert.ok(err instanceof RegistryError);
  assert.ok(err.message.includes(`'${path}'`), err.message);
});

engineTest("a file that is not a database gives an error naming it and is not modified", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("notes.db");
  const text = "not a database\n".repeat(100);
  await Deno.writeTextFile(path, text);
  const err = await StateRegistry.connect(path, { engine }).catch((e) => e);
  assert.ok(err instanceof RegistryError);
  assert.ok(err.message.includes(`'${path}'`), err.message);
  assert.match(err.message, /file is not a database/);
  assert.equal(await Deno.readTextFile(path), text);
});

engineTest("tables of the wrong shape give an error naming the file and table", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("other.db");
  const raw = rawSqlite(path);
  raw.exec("CREATE TABLE config (k TEXT, v TEXT)");
  raw.close();
  const err = await StateRegistry.connect(path, { engine }).catch((e) => e);
  assert.ok(err instanceof RegistryError);
  assert.ok(err.message.includes(`'${path}'`), err.message);
  assert.match(err.message, /'config' table without the column\(s\) key, value, updated_at/);
});

engineTest("connect() needs a file path", async (engine) => {
  await assert.rejects(StateRegistry.connect("", { engine }), TypeError);
  await assert.rejects(StateRegistry.connect(":memory:", { engine }), TypeError);
  await assert.rejects(StateRegistry.connect(undefined as unknown as string, { engine }), TypeError);
});

/** Opens a file, then damages one row by raw SQL, as another program might. */
async function withDamagedRow(
  engine: "ffi" | "node",
  damage: string,
  check: (reg: StateRegistry) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.upsertModule(sampleMeta("good"), "running");
    await reg.upsertModule(sampleMeta("bad"), "running");
    await reg.setConfig("good", 1);
    await reg.setConfig("bad", 1);
  }
  const raw = rawSqlite(path);
  raw.exec(damage);
  raw.close();
  await using reg = await StateRegistry.connect(path, { engine });
  await check(reg);
}

engineTest("rows oxide-k would reject give errors naming the row", async (engine) => {
  const cases: [string, string, RegExp, abstract new (...args: never[]) => KernelError][] = [
    [
      "capitalised kind",
      `UPDATE modules SET kind = '"Native"' WHERE id = 'bad'`,
      /module 'bad' has kind/,
      SerializationError,
    ],
    [
      "bare state",
      `UPDATE modules SET state = 'running' WHERE id = 'bad'`,
      /module 'bad' has state 'running'/,
      SerializationError,
    ],
    [
      "bad timestamp",
      `UPDATE modules SET updated_at = 'yesterday' WHERE id = 'bad'`,
      /^invalid updated_at: module 'bad'/,
      OtherError,
    ],
    [
      "numeric name",
      `UPDATE modules SET name = x'00' WHERE id = 'bad'`,
      /module 'bad' has a name that is not text/,
      SerializationError,
    ],
  ];
  for (const [what, damage, message, type] of cases) {
    await withDamagedRow(engine, damage, async (reg) => {
      const err = await reg.getModule("bad").catch((e) => e);
      assert.ok(err instanceof type, what);
      assert.match(err.message, message, what);
      assert.equal((await reg.getModule("good"))?.state, "running", `${what}: other rows still read`);
      const listErr = await reg.listModules().catch((e) => e);
      assert.ok(listErr instanceof SerializationError, what);
      assert.match(listErr.message, /1 module row\(s\) cannot be read/);
      assert.ok(listErr.message.includes("'bad'"), what);
      assert.deepEqual((await reg.listModules({ invalid: "skip" })).map((m) => m.id), ["good"], what);
    });
  }
});

engineTest("a config value that is not JSON gives an error naming the key", async (engine) => {
  await withDamagedRow(engine, `UPDATE config SET value = '{oops' WHERE key = 'bad'`, async (reg) => {
    const err = await reg.getConfig("bad").catch((e) => e);
    assert.ok(err instanceof SerializationError);
    assert.match(err.message, /^serialization error: value of config key 'bad' is not valid JSON/);
    assert.equal(await reg.getConfig("good"), 1);
  });
  await withDamagedRow(engine, `UPDATE config SET value = x'00ff' WHERE key = 'bad'`, async (reg) => {
    await assert.rejects(reg.getConfig("bad"), /value of config key 'bad' is not text: a 2-byte blob/);
  });
});

engineTest("listModules() refuses an unknown option value", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await assert.rejects(reg.listModules({ invalid: "ignore" as "skip" }), TypeError);
});

engineTest("opening an up-to-date file does not wait for another connection's write lock", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.setConfig("k", "before");
  }
  await using writer = await StateRegistry.connect(path, { engine });
  writer.db.exec("BEGIN IMMEDIATE");
  writer.db.prepare("UPDATE config SET value = ? WHERE key = ?").run('"uncommitted"', "k");
  try {
    await using reader = await StateRegistry.connect(path, { engine, busyTimeoutMs: 0 });
    assert.equal(await reader.getConfig("k"), "before");
    await assert.rejects(reader.setConfig("k", "blocked"), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.equal(error.codeName, "SQLITE_BUSY");
      return true;
    });
  } finally {
    writer.db.exec("ROLLBACK");
  }
  assert.equal(await writer.getConfig("k"), "before");
});

engineTest("options that are not objects are TypeErrors naming them", async (engine) => {
  const bad = null as unknown as { engine: typeof engine };
  await assert.rejects(StateRegistry.inMemory(bad), /options must be an object, got null/);
  await assert.rejects(StateRegistry.connect("x.db", bad), /options must be an object, got null/);
  await using reg = await StateRegistry.inMemory({ engine });
  await assert.rejects(reg.listModules(bad as never), /options must be an object, got null/);
  await assert.rejects(reg.setModuleState("m", undefined as never), /unknown module state undefined:/);
});

engineTest("values nested deeper than serde_json reads are refused, shallower ones round-trip", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const nest = (depth: number): unknown => {
    let value: unknown = "leaf";
    for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { v: value };
    return value;
  };
  await reg.setConfig("deep", nest(127));
  assert.deepEqual(await reg.getConfig("deep"), nest(127));
  for (const depth of [128, 100_000]) {
    await assert.rejects(reg.setConfig("deep", nest(depth)), (error: unknown) => {
      assert.ok(error instanceof SerializationError);
      assert.match(error.message, /nested deeper than 127 levels/);
      return true;
    });
  }
  assert.deepEqual(await reg.getConfig("deep"), nest(127), "nothing written");
});
