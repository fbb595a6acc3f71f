// The extension point: definitions are validated, migrations run once and in order (also when several processes
// open at once), a failed open keeps nothing, and an extension can never write to or alter the registry's tables.
import assert from "node:assert/strict";
import {
  defineExtension,
  type Extension,
  type ExtensionDefinition,
  ExtensionError,
  extensionVersion,
  listExtensions,
  type Migration,
  openExtension,
  RegistryError,
  StateRegistry,
} from "@oxide/registry";
import { engineTest, tempDir } from "./_helpers.ts";

const NOTES_V1: Migration = {
  version: 1,
  name: "notes table",
  // No IF NOT EXISTS: running it twice would fail, so "applied once" is checked by the SQL itself.
  up: "CREATE TABLE notes_items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
};
const NOTES_V2: Migration = {
  version: 2,
  name: "tag column",
  up: "ALTER TABLE notes_items ADD COLUMN tag TEXT NOT NULL DEFAULT ''",
};

function notes(...migrations: Migration[]): Extension {
  return defineExtension({ name: "notes", migrations });
}

/** Everything in the main schema, to compare before and after. */
function schema(reg: StateRegistry): unknown[] {
  return reg.db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").all();
}

function tempTriggers(reg: StateRegistry): unknown[] {
  return reg.db.prepare("SELECT name FROM sqlite_temp_master").all();
}

// --- definitions ---------------------------------------------------------------------------------

Deno.test("defineExtension() rejects malformed definitions", async (t) => {
  const ok: Migration = { version: 1, name: "m", up: "CREATE TABLE x_t (a)" };
  const cases: { name: string; definition: unknown; error: typeof TypeError | typeof RangeError; words: string }[] = [
    { name: "not an object", definition: "notes", error: TypeError, words: "takes { name, migrations }" },
    { name: "null", definition: null, error: TypeError, words: "takes { name, migrations }" },
    { name: "name not a string", definition: { name: 5, migrations: [] }, error: TypeError, words: "number 5" },
    { name: "empty name", definition: { name: "", migrations: [] }, error: RangeError, words: "lowercase" },
    { name: "uppercase name", definition: { name: "Notes", migrations: [] }, error: RangeError, words: "'Notes'" },
    { name: "name with a space", definition: { name: "my notes", migrations: [] }, error: RangeError, words: "'my" },
    {
      name: "name of 65 characters",
      definition: { name: "a".repeat(65), migrations: [] },
      error: RangeError,
      words: "64",
    },
    { name: "reserved name", definition: { name: "registry", migrations: [] }, error: RangeError, words: "reserved" },
    {
      name: "the sealing owner",
      definition: { name: "sealing", migrations: [] },
      error: RangeError,
      words: "reserved",
    },
    { name: "an oxide name", definition: { name: "oxide.keys", migrations: [] }, error: RangeError, words: "reserved" },
    { name: "migrations not an array", definition: { name: "n", migrations: {} }, error: TypeError, words: "array" },
    {
      name: "migration not an object",
      definition: { name: "n", migrations: ["SQL"] },
      error: TypeError,
      words: "position 1",
    },
    {
      name: "numbering from 0",
      definition: { name: "n", migrations: [{ ...ok, version: 0 }] },
      error: RangeError,
      words: "found number 0 at position 1",
    },
    {
      name: "a gap",
      definition: { name: "n", migrations: [ok, { ...ok, version: 3 }] },
      error: RangeError,
      words: "found number 3 at position 2",
    },
    {
      name: "out of order",
      definition: { name: "n", migrations: [{ ...ok, version: 2 }, ok] },
      error: RangeError,
      words: "1, 2, 3",
    },
    {
      name: "version as a string",
      definition: { name: "n", migrations: [{ ...ok, version: "1" }] },
      error: RangeError,
      words: "'1'",
    },
    {
      name: "missing migration name",
      definition: { name: "n", migrations: [{ version: 1, up: "SELECT 1" }] },
      error: TypeError,
      words: "needs a name",
    },
    { name: "empty up", definition: { name: "n", migrations: [{ ...ok, up: "" }] }, error: TypeError, words: "'up'" },
    { name: "up a number", definition: { name: "n", migrations: [{ ...ok, up: 1 }] }, error: TypeError, words: "'up'" },
    {
      name: "up an async function",
      definition: { name: "n", migrations: [{ ...ok, up: async () => {} }] },
      error: TypeError,
      words: "migration 1 of 'n' has an async 'up': it must be a synchronous function",
    },
    {
      name: "up an async generator function",
      definition: { name: "n", migrations: [{ ...ok, up: async function* () {} }] },
      error: TypeError,
      words: "has an async generator 'up'",
    },
    {
      name: "up a generator function",
      definition: { name: "n", migrations: [{ ...ok, up: function* () {} }] },
      error: TypeError,
      words: "has a generator 'up'",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(
        () => defineExtension(c.definition as ExtensionDefinition),
        (err: Error) => err.constructor === c.error && err.message.includes(c.words),
      );
    });
  }
});

Deno.test("defineExtension() freezes a copy: changing the definition afterwards changes nothing", () => {
  const migrations = [{ ...NOTES_V1 }];
  const definition = { name: "notes", migrations };
  const ext = defineExtension(definition);
  migrations[0]!.up = "DROP TABLE modules";
  migrations.push(NOTES_V2);
  definition.name = "other";
  assert.equal(ext.name, "notes");
  assert.equal(ext.latestVersion, 1);
  assert.equal(ext.migrations.length, 1);
  assert.equal(ext.migrations[0]!.up, NOTES_V1.up);
  assert.ok(Object.isFrozen(ext) && Object.isFrozen(ext.migrations) && Object.isFrozen(ext.migrations[0]));
});

Deno.test("defineExtension() accepts names with digits, '_', '.' and '-', and no migrations", () => {
  for (const name of ["xai", "acme.audit", "a1_b-c"]) {
    assert.equal(defineExtension({ name, migrations: [] }).name, name);
  }
  assert.equal(defineExtension({ name: "empty", migrations: [] }).latestVersion, 0);
});

// --- applying ----------------------------------------------------------------------------------------

engineTest("openExtension() applies the migrations once, in order, and records each", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const order: number[] = [];
  const ext = defineExtension({
    name: "notes",
    migrations: [
      { ...NOTES_V1, up: (db) => (order.push(1), db.exec(NOTES_V1.up as string)) },
      { ...NOTES_V2, up: (db) => (order.push(2), db.exec(NOTES_V2.up as string)) },
    ],
  });
  assert.deepEqual(await openExtension(reg, ext), { name: "notes", version: 2, applied: [1, 2] });
  assert.deepEqual(await openExtension(reg, ext), { name: "notes", version: 2, applied: [] });
  assert.deepEqual(order, [1, 2]);
  const records = reg.db.prepare(
    "SELECT version, name, applied_at FROM oxide_migrations WHERE owner = 'notes' ORDER BY version",
  ).all();
  assert.deepEqual(records.map((r) => [r.version, r.name]), [[1, "notes table"], [2, "tag column"]]);
  for (const r of records) assert.match(String(r.applied_at), /^\d{4}-\d{2}-\d{2}T[\d:.]+\+00:00$/);
  reg.db.prepare("INSERT INTO notes_items (body) VALUES (?)").run("hi");
  assert.deepEqual(reg.db.prepare("SELECT body, tag FROM notes_items").all(), [{ body: "hi", tag: "" }]);
});

engineTest("openExtension() runs a function migration inside the transaction", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  let inTransaction: boolean | undefined;
  await openExtension(
    reg,
    defineExtension({
      name: "probe",
      migrations: [{ version: 1, name: "probe", up: (db) => void (inTransaction = db.inTransaction) }],
    }),
  );
  assert.equal(inTransaction, true);
  assert.equal(reg.db.inTransaction, false);
});

engineTest("openExtension() refuses an 'up' that returns a promise and keeps nothing", async (engine) => {
  for (const settles of ["rejects", "resolves", "thenable"] as const) {
    await using reg = await StateRegistry.inMemory({ engine });
    await reg.setConfig("keep", 1);
    const before = schema(reg);
    const promising = defineExtension({
      name: "promising",
      migrations: [
        NOTES_V1,
        {
          version: 2,
          name: "looks synchronous",
          // A plain function (not `async`, which defineExtension refuses) handing back a promise.
          up: (db) => {
            db.exec("CREATE TABLE promising_t (a)");
            if (settles === "thenable") return { then: (resolve: () => void) => resolve() } as unknown as void;
            return (settles === "rejects" ? Promise.reject(new Error("late")) : Promise.resolve()) as unknown as void;
          },
        },
      ],
    });
    const err = await openExtension(reg, promising).catch((e) => e);
    assert.ok(err instanceof ExtensionError, `${settles}: ${err}`);
    assert.equal(err.kind, "extension");
    assert.equal(err.version, 2);
    assert.match(err.message, /^extension 'promising' migration 2: 'up' returned a promise: a migration must be sync/);
    assert.deepEqual(schema(reg), before, `${settles}: migrations 1 and 2 rolled back`);
    assert.equal(extensionVersion(reg, "promising"), 0);
    assert.equal(reg.db.inTransaction, false);
    assert.deepEqual(tempTriggers(reg), []);
    assert.equal(await reg.getConfig("keep"), 1);
    // The rejection was swallowed: the test's sanitizer fails it otherwise.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
});

engineTest("openExtension() of a newer definition applies only the new migrations", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  assert.deepEqual((await openExtension(reg, notes(NOTES_V1))).applied, [1]);
  assert.deepEqual(await openExtension(reg, notes(NOTES_V1, NOTES_V2)), { name: "notes", version: 2, applied: [2] });
});

engineTest("openExtension() of an older definition accepts a database a newer program migrated", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await openExtension(reg, notes(NOTES_V1, NOTES_V2));
  assert.deepEqual(await openExtension(reg, notes(NOTES_V1)), { name: "notes", version: 2, applied: [] });
});

engineTest("openExtension() keeps nothing when a migration fails, and names it", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const before = schema(reg);
  const broken = notes(NOTES_V1, { version: 2, name: "typo", up: "ALTER TABLE notes_items ADD COLUMN" });
  const err = await openExtension(reg, broken).catch((e) => e);
  assert.ok(err instanceof RegistryError, String(err));
  assert.match(err.message, /migration 2 \('typo'\) of 'notes' failed: /);
  assert.equal(extensionVersion(reg, "notes"), 0);
  assert.deepEqual(schema(reg), before, "migration 1's table was rolled back too");
  assert.equal(reg.db.inTransaction, false);
  assert.deepEqual(tempTriggers(reg), []);
  assert.deepEqual((await openExtension(reg, notes(NOTES_V1))).applied, [1], "the registry is usable afterwards");
});

engineTest("openExtension() names what a migration threw, also when it is not an Error", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  for (const [thrown, shown] of [["boom", "boom"], [42, "42"], [{ toString: () => "custom" }, "custom"]] as const) {
    const ext = notes({
      version: 1,
      name: "throws",
      up: () => {
        throw thrown;
      },
    });
    const err = await openExtension(reg, ext).catch((e) => e);
    assert.ok(err instanceof RegistryError, String(err));
    assert.equal(err.message, `registry error: migration 1 ('throws') of 'notes' failed: ${shown}`);
    assert.equal(err.cause, thrown);
  }
  assert.equal(extensionVersion(reg, "notes"), 0);
});

engineTest("openExtension() rejects an extension defineExtension() did not make", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const fake = { name: "fake", migrations: [NOTES_V1], latestVersion: 1 };
  await assert.rejects(openExtension(reg, fake), TypeError);
  await assert.rejects(openExtension(reg, null as unknown as Extension), TypeError);
  assert.equal(extensionVersion(reg, "fake"), 0);
});

engineTest("openExtension() on a closed registry throws RegistryError", async (engine) => {
  const reg = await StateRegistry.inMemory({ engine });
  await reg.close();
  await assert.rejects(openExtension(reg, notes(NOTES_V1)), RegistryError);
});

engineTest(
  "extensionVersion() and listExtensions() report what is recorded, without the registry's own",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    assert.deepEqual(listExtensions(reg), []);
    await openExtension(reg, notes(NOTES_V1, NOTES_V2));
    await openExtension(
      reg,
      defineExtension({
        name: "acme.audit",
        migrations: [{ version: 1, name: "t", up: "CREATE TABLE acme_audit (x)" }],
      }),
    );
    assert.deepEqual(listExtensions(reg), [{ name: "acme.audit", version: 1 }, { name: "notes", version: 2 }]);
    assert.equal(extensionVersion(reg, "notes"), 2);
    assert.equal(extensionVersion(reg, "unknown"), 0);
  },
);

// --- the rule: never alter the registry's tables -----------------------------------------------------

const VIOLATIONS: { name: string; up: Migration["up"]; words: string }[] = [
  {
    name: "insert into config",
    up: "INSERT INTO config VALUES ('k2', '1', 'x')",
    words: "write to registry table 'config'",
  },
  { name: "update modules", up: "UPDATE modules SET state = '\"failed\"'", words: "write to registry table 'modules'" },
  {
    name: "delete from modules after its own table",
    up: "CREATE TABLE rogue_t (x); DELETE FROM modules",
    words: "write to registry table 'modules'",
  },
  {
    name: "replace into config from a function",
    up: (db) => db.prepare("INSERT OR REPLACE INTO config VALUES (?, ?, ?)").run("k", '"x"', "t"),
    words: "write to registry table 'config'",
  },
  { name: "forge a migration record", up: "DELETE FROM oxide_migrations", words: "'oxide_migrations'" },
  { name: "add a column to config", up: "ALTER TABLE config ADD COLUMN owner TEXT", words: "changed table 'config'" },
  {
    name: "index modules (name in another case)",
    up: "CREATE INDEX rogue_idx ON MODULES(name)",
    words: "created index 'rogue_idx' on 'modules'",
  },
  {
    name: "trigger on config",
    up: "CREATE TRIGGER rogue_trg AFTER INSERT ON config BEGIN SELECT 1; END",
    words: "created trigger 'rogue_trg' on 'config'",
  },
  { name: "drop modules", up: "DROP TABLE modules", words: "dropped table 'modules'" },
  { name: "rename config", up: "ALTER TABLE config RENAME TO rogue_config", words: "dropped table 'config'" },
  { name: "a table in the oxide_ namespace", up: "CREATE TABLE oxide_rogue (x)", words: "created table 'oxide_rogue'" },
  {
    name: "temp trigger on main.config",
    up: "CREATE TEMP TRIGGER rogue_spy AFTER INSERT ON main.config BEGIN SELECT 1; END",
    words: "created temp trigger 'rogue_spy' on 'config'",
  },
  {
    name: "temp table shadowing config",
    up: "CREATE TEMP TABLE config (key TEXT PRIMARY KEY, value TEXT, updated_at TEXT)",
    words: "created temp table 'config' on 'config'",
  },
  {
    name: "trigger on its own table that deletes from config",
    up: "CREATE TABLE rogue_t (a); CREATE TRIGGER rogue_wipe AFTER INSERT ON rogue_t BEGIN DELETE FROM config; END",
    words: "created trigger 'rogue_wipe' on 'rogue_t' whose body writes registry table 'config'",
  },
  {
    name: "trigger writing a quoted modules (other case)",
    up: `CREATE TABLE rogue_t (a); CREATE TRIGGER rogue_trg AFTER UPDATE ON rogue_t BEGIN
      SELECT 'no DELETE FROM config here'; -- nor UPDATE config here
      INSERT OR REPLACE INTO "Modules" VALUES ('x', 'x', '1', 'native', 'loaded', NULL, 't'); END`,
    words: "created trigger 'rogue_trg' on 'rogue_t' whose body writes registry table 'modules'",
  },
  {
    name: "temp trigger on its own table updating oxide_migrations",
    up:
      "CREATE TABLE rogue_t (a); CREATE TEMP TRIGGER rogue_trg BEFORE DELETE ON rogue_t BEGIN UPDATE OR IGNORE [oxide_migrations] SET name = 'x'; END",
    words: "created temp trigger 'rogue_trg' on 'rogue_t' whose body writes registry table 'oxide_migrations'",
  },
  // Quoted names with no space before them: SQLite's parser, not a pattern, says what the body writes.
  ...[
    ['DELETE FROM"config"', "config"],
    ["DELETE FROM[config]", "config"],
    ["INSERT INTO`config`(key, value, updated_at) VALUES ('k', '1', 't')", "config"],
    ["UPDATE\"oxide_migrations\"SET name = 'x'", "oxide_migrations"],
    ["DELETE/**/FROM/**/[config]", "config"],
    ['REPLACE INTO"modules" SELECT * FROM modules', "modules"],
  ].map(([body, table]) => ({
    name: `trigger writing a registry table through ${body}`,
    up: `CREATE TABLE rogue_t (a);
      CREATE TRIGGER rogue_q AFTER INSERT ON rogue_t BEGIN ${body}; END`,
    words: `created trigger 'rogue_q' on 'rogue_t' whose body writes registry table '${table}'`,
  })),
  {
    // oxide_sealing appears once the registry is sealed: a trigger written for it would perform the downgrade then.
    name: "trigger writing oxide_sealing before the registry has it",
    up: `CREATE TABLE rogue_t (a);
      CREATE TRIGGER rogue_q AFTER INSERT ON rogue_t BEGIN UPDATE"oxide_sealing"SET scheme = 'oxide-k'; END`,
    words: "created a schema SQLite cannot check for writes to registry table 'config' (registry error: error in " +
      "trigger rogue_q: no such table: main.oxide_sealing)",
  },
  {
    name: "a view's INSTEAD OF trigger that writes config",
    up: `CREATE VIEW rogue_v AS SELECT key FROM config;
      CREATE TRIGGER rogue_io INSTEAD OF DELETE ON rogue_v BEGIN DELETE FROM"config" WHERE key = old.key; END`,
    words: "created trigger 'rogue_io' on 'rogue_v' whose body writes registry table 'config'",
  },
];

engineTest(
  "openExtension() refuses a migration that writes to or alters a registry table, keeping nothing",
  async (engine) => {
    for (const violation of VIOLATIONS) {
      await using reg = await StateRegistry.inMemory({ engine });
      await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
      await reg.setConfig("k", 1);
      const modules = await reg.listModules();
      const before = schema(reg);
      const rogue = defineExtension({
        name: "rogue",
        migrations: [
          { version: 1, name: "harmless", up: "CREATE TABLE rogue_ok (x)" },
          { version: 2, name: violation.name, up: violation.up },
        ],
      });
      const err = await openExtension(reg, rogue).catch((e) => e);
      assert.ok(err instanceof ExtensionError, `${violation.name}: ${err}`);
      assert.equal(err.kind, "extension");
      assert.equal(err.extension, "rogue");
      assert.equal(err.version, 2);
      assert.ok(err.message.startsWith("extension 'rogue' migration 2: "), err.message);
      assert.ok(err.message.includes(violation.words), `${violation.name}: ${err.message}`);
      assert.deepEqual(schema(reg), before, `${violation.name}: schema restored`);
      assert.deepEqual(await reg.listModules(), modules, `${violation.name}: modules untouched`);
      assert.equal(await reg.getConfig("k"), 1);
      assert.equal(extensionVersion(reg, "rogue"), 0);
      assert.deepEqual(tempTriggers(reg), [], `${violation.name}: guards removed`);
      // The guards are gone: the registry itself can still write.
      await reg.setConfig("after", true);
      await reg.setModuleState("echo", "stopped");
    }
  },
);

engineTest("openExtension() refuses a migration that ends the transaction", async (engine) => {
  for (
    const sql of [
      "COMMIT",
      "ROLLBACK",
      "END",
      "COMMIT; BEGIN",
      "ROLLBACK; BEGIN IMMEDIATE",
      "RELEASE oxide_extension_migration",
    ]
  ) {
    await using reg = await StateRegistry.inMemory({ engine });
    const err = await openExtension(
      reg,
      defineExtension({ name: "rogue", migrations: [{ version: 1, name: "end", up: sql }] }),
    ).catch((e) => e);
    assert.ok(err instanceof ExtensionError, `${sql}: ${err}`);
    assert.match(err.message, /ended the migration's transaction/);
    assert.equal(extensionVersion(reg, "rogue"), 0);
    assert.equal(reg.db.inTransaction, false);
    assert.deepEqual(tempTriggers(reg), []);
  }
});

engineTest("openExtension() allows triggers on its own tables that only read the registry's", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.setConfig("k", 1);
  const status = await openExtension(
    reg,
    defineExtension({
      name: "echoes",
      migrations: [{
        version: 1,
        name: "table and trigger",
        up: `CREATE TABLE echoes_t (a, n); CREATE TABLE echoes_log (msg);
          CREATE TRIGGER echoes_trg AFTER INSERT ON echoes_t BEGIN
            -- copies, never DELETE FROM config
            INSERT INTO echoes_log VALUES ('not UPDATE config: ' || (SELECT count(*) FROM config));
          END`,
      }],
    }),
  );
  assert.deepEqual(status.applied, [1]);
  reg.db.exec("INSERT INTO echoes_t VALUES (1, 2)");
  assert.deepEqual(reg.db.prepare("SELECT msg FROM echoes_log").all(), [{ msg: "not UPDATE config: 1" }]);
});

/** Reads a connection setting. */
function pragma(reg: StateRegistry, name: string): unknown {
  return Object.values(reg.db.prepare(`PRAGMA ${name}`).get() ?? {})[0];
}

engineTest(
  "openExtension() refuses a migration that changes connection settings, and restores them",
  async (engine) => {
    await using dir = await tempDir();
    await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
    const cases: [string, (before: unknown) => string][] = [
      ["secure_delete", (v) => `PRAGMA secure_delete = ${v === 1 ? "OFF" : "ON"}`],
      ["busy_timeout", () => "PRAGMA busy_timeout = 1"],
      ["recursive_triggers", () => "PRAGMA recursive_triggers = ON"],
      ["trusted_schema", (v) => `PRAGMA trusted_schema = ${v === 1 ? "OFF" : "ON"}`],
      ["query_only", () => "PRAGMA query_only = ON"],
    ];
    for (const [name, set] of cases) {
      const before = pragma(reg, name);
      const err = await openExtension(
        reg,
        defineExtension({
          name: "rogue",
          migrations: [{ version: 1, name: "settings", up: `CREATE TABLE rogue_t (a); ${set(before)}` }],
        }),
      ).catch((e) => e);
      assert.ok(err instanceof ExtensionError, `${name}: ${err}`);
      assert.ok(
        err.message.startsWith(
          `extension 'rogue' migration 1: may not change the connection's settings: it set PRAGMA ${name} from ${before} to `,
        ),
        err.message,
      );
      assert.ok(err.message.endsWith("(restored)"), err.message);
      assert.equal(pragma(reg, name), before, `${name} restored`);
      assert.equal(extensionVersion(reg, "rogue"), 0);
    }
    // journal_mode and synchronous only change outside a transaction: after a COMMIT, refused too; both come back.
    assert.equal(pragma(reg, "journal_mode"), "wal");
    const synchronous = pragma(reg, "synchronous");
    assert.notEqual(synchronous, 0);
    const err = await openExtension(
      reg,
      defineExtension({
        name: "rogue",
        migrations: [{
          version: 1,
          name: "journal",
          up: "COMMIT; PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF",
        }],
      }),
    ).catch((e) => e);
    assert.ok(err instanceof ExtensionError, String(err));
    assert.match(err.message, /ended the migration's transaction/);
    assert.equal(pragma(reg, "journal_mode"), "wal");
    assert.equal(pragma(reg, "synchronous"), synchronous);
    await reg.setConfig("still", "writable");
  },
);

engineTest("openExtension() allows an extension to read the registry's tables", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
  const status = await openExtension(
    reg,
    defineExtension({
      name: "census",
      migrations: [{ version: 1, name: "snapshot", up: "CREATE TABLE census_ids AS SELECT id FROM modules" }],
    }),
  );
  assert.deepEqual(status.applied, [1]);
  assert.deepEqual(reg.db.prepare("SELECT id FROM census_ids").all(), [{ id: "echo" }]);
});

// --- several processes ---------------------------------------------------------------------------------

Deno.test("openExtension() from several processes at once applies each migration exactly once", async () => {
  await using dir = await tempDir();
  const db = dir.file("registry.db");
  // Create the registry first so the race is about the extension, not the file. Each child connects, then waits
  // for the others: opening the registry takes the write lock briefly and would otherwise serialize them.
  (await StateRegistry.connect(db)).close();
  const modUrl = new URL("../mod.ts", import.meta.url).href;
  const child = (n: number) =>
    `import { defineExtension, openExtension, StateRegistry } from ${JSON.stringify(modUrl)};
const dir = ${JSON.stringify(dir.path)};
await using reg = await StateRegistry.connect(dir + "/registry.db", { busyTimeoutMs: 30000 });
await Deno.writeTextFile(dir + "/ready-${n}", "");
while (true) { try { await Deno.stat(dir + "/go"); break; } catch { await new Promise((r) => setTimeout(r, 5)); } }
const hold = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const ext = defineExtension({ name: "race", migrations: [
  { version: 1, name: "table", up: (db) => { hold(200); db.exec("CREATE TABLE race_log (who INTEGER NOT NULL)"); db.prepare("INSERT INTO race_log VALUES (?)").run(${n}); } },
  { version: 2, name: "second", up: (db) => db.prepare("INSERT INTO race_log VALUES (?)").run(${n}) },
] });
console.log(JSON.stringify(await openExtension(reg, ext)));`;
  const processes = [1, 2, 3].map((n) =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", child(n)],
      stdout: "piped",
      stderr: "piped",
    }).output()
  );
  // Start them together once all three are ready.
  for (const n of [1, 2, 3]) {
    while (true) {
      try {
        await Deno.stat(dir.file(`ready-${n}`));
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
  await Deno.writeTextFile(dir.file("go"), "");
  const outputs = await Promise.all(processes);
  const decoder = new TextDecoder();
  const statuses = outputs.map((o) => {
    assert.equal(o.code, 0, decoder.decode(o.stderr));
    return JSON.parse(decoder.decode(o.stdout));
  });
  assert.deepEqual(statuses.map((s) => s.version), [2, 2, 2]);
  assert.deepEqual(statuses.map((s) => s.applied).sort(), [[], [], [1, 2]]);
  const winner = statuses.findIndex((s) => s.applied.length === 2) + 1;
  await using reg = await StateRegistry.connect(db);
  assert.deepEqual(reg.db.prepare("SELECT who FROM race_log").all(), [{ who: winner }, { who: winner }]);
  assert.equal(reg.db.prepare("SELECT count(*) AS n FROM oxide_migrations WHERE owner = 'race'").get()?.n, 2);
});
