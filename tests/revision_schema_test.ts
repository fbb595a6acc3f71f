// The revision schema (registry migration 2): triggers keep revisions and the change log for every writer, including
// oxide-k's statements run verbatim on the migrated file by another program.
import { type Engine, StateRegistry } from "@oxide/registry";
import assert from "node:assert/strict";
import type { DatabaseSync } from "node:sqlite";
import {
  BATCH_BEGIN_SQL,
  BATCH_END_SQL,
  CURRENT_REVISION_SQL,
  REVISION_INDEXES_SQL,
  REWRITE_BEGIN_SQL,
} from "../src/store/sqlite/_revision_sql.ts";
import { engineTest, OXIDE_K_SCHEMA, rawSqlite, tempDir } from "./_helpers.ts";

/** oxide-k 0.3.0's statements, byte for byte as registry.rs sends them (raw strings keep their indentation). */
const OXIDE_K = {
  upsertModule: `
            INSERT INTO modules (id, name, version, kind, state, description, updated_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
            ON CONFLICT(id) DO UPDATE SET
                name        = excluded.name,
                version     = excluded.version,
                kind        = excluded.kind,
                state       = excluded.state,
                description = excluded.description,
                updated_at  = excluded.updated_at
            `,
  setModuleState: "UPDATE modules SET state = ?1, updated_at = ?2 WHERE id = ?3",
  getModule: "SELECT id, name, version, kind, state, description, updated_at FROM modules WHERE id = ?1",
  listModules: "SELECT id, name, version, kind, state, description, updated_at FROM modules ORDER BY id",
  setConfig: `
            INSERT INTO config (key, value, updated_at)
            VALUES (?1, ?2, ?3)
            ON CONFLICT(key) DO UPDATE SET
                value      = excluded.value,
                updated_at = excluded.updated_at
            `,
  getConfig: "SELECT value FROM config WHERE key = ?1",
  deleteConfig: "DELETE FROM config WHERE key = ?1",
} as const;

const T1 = "2026-12-01T10:00:00.123456789+00:00";
const T2 = "2026-12-01T10:00:01+00:00";

type Db = Pick<DatabaseSync, "prepare"> | Engine;

function revision(db: Db): number {
  return Number(db.prepare(CURRENT_REVISION_SQL).get()!.revision);
}

function changes(db: Db): Record<string, unknown>[] {
  return db.prepare(
    `SELECT revision, space, key, type, version, create_revision, value, name, module_version, kind, state,
       description, updated_at FROM oxide_changes ORDER BY seq`,
  ).all().map((row) => ({ ...row }));
}

/** A registry file created and migrated by us, then closed: what a Rust kernel opens beside us. */
async function migratedFile(path: string, engine: "ffi" | "node"): Promise<void> {
  await using _reg = await StateRegistry.connect(path, { engine });
}

engineTest("oxide-k's verbatim statements on a migrated file bump the revision and are logged", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await migratedFile(path, engine);
  const db = rawSqlite(path);
  try {
    assert.equal(revision(db), 0);
    db.prepare(OXIDE_K.upsertModule).run("echo", "Echo", "0.1.0", '"native"', '"loaded"', "Demo", T1);
    db.prepare(OXIDE_K.upsertModule).run("echo", "Echo", "0.2.0", '"native"', '"running"', null, T2);
    assert.equal(db.prepare(OXIDE_K.setModuleState).run('"stopped"', T2, "echo").changes, 1);
    assert.equal(db.prepare(OXIDE_K.setModuleState).run('"stopped"', T2, "nobody").changes, 0);
    db.prepare(OXIDE_K.setConfig).run("kernel.greeting", '"Hello, agent."', T1);
    db.prepare(OXIDE_K.setConfig).run("kernel.greeting", '"Hi"', T2);
    assert.equal(db.prepare(OXIDE_K.deleteConfig).run("kernel.greeting").changes, 1);
    assert.equal(db.prepare(OXIDE_K.deleteConfig).run("kernel.greeting").changes, 0);
    db.prepare(OXIDE_K.setConfig).run("kernel.greeting", '"again"', T2);
    // oxide-k's reads still see exactly its rows.
    assert.deepEqual({ ...db.prepare(OXIDE_K.getModule).get("echo") }, {
      id: "echo",
      name: "Echo",
      version: "0.2.0",
      kind: '"native"',
      state: '"stopped"',
      description: null,
      updated_at: T2,
    });
    assert.equal(db.prepare(OXIDE_K.listModules).all().length, 1);
    assert.equal(db.prepare(OXIDE_K.getConfig).get("kernel.greeting")?.value, '"again"');

    assert.equal(revision(db), 7);
    const module = { value: null, description: null };
    assert.deepEqual(changes(db), [
      {
        revision: 1,
        space: "modules",
        key: "echo",
        type: "put",
        version: 1,
        create_revision: 1,
        ...module,
        name: "Echo",
        module_version: "0.1.0",
        kind: '"native"',
        state: '"loaded"',
        description: "Demo",
        updated_at: T1,
      },
      {
        revision: 2,
        space: "modules",
        key: "echo",
        type: "put",
        version: 2,
        create_revision: 1,
        ...module,
        name: "Echo",
        module_version: "0.2.0",
        kind: '"native"',
        state: '"running"',
        updated_at: T2,
      },
      {
        revision: 3,
        space: "modules",
        key: "echo",
        type: "put",
        version: 3,
        create_revision: 1,
        ...module,
        name: "Echo",
        module_version: "0.2.0",
        kind: '"native"',
        state: '"stopped"',
        updated_at: T2,
      },
      ...[
        [4, "put", 1, '"Hello, agent."', T1],
        [5, "put", 2, '"Hi"', T2],
        [6, "delete", 0, null, T2],
        [7, "put", 1, '"again"', T2],
      ].map(([rev, type, version, value, updated]) => ({
        revision: rev,
        space: "config",
        key: "kernel.greeting",
        type,
        version,
        create_revision: rev === 7 ? 7 : 4,
        value,
        name: null,
        module_version: null,
        kind: null,
        state: null,
        description: null,
        updated_at: updated,
      })),
    ]);
  } finally {
    db.close();
  }
});

engineTest(
  "the migration leaves oxide-k's tables byte-identical and logs existing rows at revision 1",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    // A file a Rust oxide-k kernel made and filled, before any revision schema.
    const before = rawSqlite(path);
    before.exec(OXIDE_K_SCHEMA);
    before.prepare(OXIDE_K.setConfig).run("b", "2", T1);
    before.prepare(OXIDE_K.setConfig).run("a", "1", T1);
    before.prepare(OXIDE_K.upsertModule).run("echo", "Echo", "0.1.0", '"native"', '"loaded"', null, T1);
    const tables = "SELECT name, sql FROM sqlite_master WHERE name IN ('modules', 'config') ORDER BY name";
    const texts = before.prepare(tables).all().map((row) => ({ ...row }));
    before.close();

    await migratedFile(path, engine);
    const db = rawSqlite(path);
    try {
      assert.deepEqual(db.prepare(tables).all().map((row) => ({ ...row })), texts);
      assert.equal(revision(db), 1);
      assert.deepEqual(
        changes(db).map(({ revision, space, key, type, version, create_revision }) => [
          revision,
          space,
          key,
          type,
          version,
          create_revision,
        ]),
        [[1, "config", "a", "put", 1, 1], [1, "config", "b", "put", 1, 1], [1, "modules", "echo", "put", 1, 1]],
      );
      db.prepare(OXIDE_K.setConfig).run("a", "10", T2);
      assert.deepEqual(changes(db).at(-1)?.version, 2);
      assert.equal(revision(db), 2);
    } finally {
      db.close();
    }
  },
);

engineTest(
  "a batch marker gives every change of one transaction one revision; rollback logs nothing",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    const db = reg.db;
    const set = db.prepare(OXIDE_K.setConfig);
    set.run("solo", "0", T1);
    db.transaction(() => {
      db.prepare(BATCH_BEGIN_SQL).run();
      set.run("a", "1", T1);
      set.run("b", "2", T1);
      db.prepare(OXIDE_K.upsertModule).run("echo", "Echo", "0.1.0", '"native"', '"loaded"', null, T1);
      db.prepare(OXIDE_K.deleteConfig).run("solo");
      db.prepare(BATCH_END_SQL).run();
    });
    assert.equal(revision(db), 2);
    assert.deepEqual(changes(db).map((c) => [c.revision, c.key, c.type]), [
      [1, "solo", "put"],
      [2, "a", "put"],
      [2, "b", "put"],
      [2, "echo", "put"],
      [2, "solo", "delete"],
    ]);
    assert.equal(db.prepare("SELECT count(*) AS n FROM oxide_batch").get()?.n, 0);

    // A batch that changes nothing uses no revision; one that rolls back leaves no row and no revision.
    db.transaction(() => {
      db.prepare(BATCH_BEGIN_SQL).run();
      db.prepare(OXIDE_K.deleteConfig).run("missing");
      db.prepare(BATCH_END_SQL).run();
    });
    assert.throws(() =>
      db.transaction(() => {
        db.prepare(BATCH_BEGIN_SQL).run();
        set.run("c", "3", T1);
        throw new Error("abort");
      }), /abort/);
    assert.equal(revision(db), 2);
    assert.equal(db.prepare("SELECT count(*) AS n FROM oxide_batch").get()?.n, 0);
    set.run("c", "3", T1);
    assert.equal(revision(db), 3);
  },
);

engineTest("a rewrite in place (re-sealing) logs nothing and keeps versions", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const db = reg.db;
  db.prepare(OXIDE_K.setConfig).run("token", '"sealed-1"', T1);
  db.transaction(() => {
    db.prepare(REWRITE_BEGIN_SQL).run();
    db.prepare("UPDATE config SET value = ?1 WHERE key = ?2").run('"sealed-2"', "token");
    db.prepare(BATCH_END_SQL).run();
  });
  assert.equal(revision(db), 1);
  assert.equal(changes(db).length, 1);
  db.prepare(OXIDE_K.setConfig).run("token", '"sealed-3"', T2);
  assert.deepEqual(changes(db).map((c) => [c.revision, c.version]), [[1, 1], [2, 2]]);
});

engineTest("an UPDATE that renames a key logs a delete and a put; NULL keys are not logged", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const db = reg.db;
  db.prepare(OXIDE_K.setConfig).run("old", "1", T1);
  db.prepare(OXIDE_K.setConfig).run("old", "2", T1);
  db.prepare("UPDATE config SET key = 'new' WHERE key = 'old'").run();
  const log = changes(db).map((c) => [c.key, c.type, c.version, c.create_revision]);
  // Both triggers fire for one row, in SQLite's order: compare as a set.
  assert.deepEqual(log.slice(2).map(String).sort(), ["new,put,1,3", "old,delete,0,1"]);
  assert.equal(log.length, 4);
  // SQLite lets another program store a NULL key in a TEXT PRIMARY KEY: written, never logged.
  db.prepare("INSERT INTO config (key, value, updated_at) VALUES (NULL, '1', ?)").run(T1);
  assert.equal(changes(db).length, 4);
  // INSERT OR REPLACE over an existing key is an update: version 2.
  db.prepare("INSERT OR REPLACE INTO config (key, value, updated_at) VALUES ('new', '9', ?)").run(T2);
  assert.deepEqual(changes(db).at(-1), {
    ...changes(db).at(-1),
    key: "new",
    type: "put",
    version: 2,
    create_revision: 3,
  });
});

engineTest(
  "migration 4 upgrades a file made at migration 3: versions go on, the triggers read the new index",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    // Made by the registry at migration 3 (tests/fixtures/make_registry_migration_3.ts says how).
    await Deno.copyFile(new URL("./fixtures/registry_migration_3.db", import.meta.url), path);
    let before: Record<string, unknown>[];
    {
      const raw = rawSqlite(path);
      assert.deepEqual(raw.prepare("SELECT max(version) AS v FROM oxide_migrations").get()?.v, 3);
      before = changes(raw);
      raw.close();
    }
    {
      await using reg = await StateRegistry.connect(path, { engine });
      const index = reg.db.prepare("SELECT sql FROM sqlite_master WHERE name = 'oxide_changes_key'").get()?.sql;
      assert.equal(index, REVISION_INDEXES_SQL.oxide_changes_key);
      assert.deepEqual(
        reg.db.prepare("SELECT version FROM oxide_migrations WHERE owner = 'registry' ORDER BY version").all()
          .map((row) => row.version),
        [1, 2, 3, 4],
      );
      assert.deepEqual(changes(reg.db), before, "the log is untouched");
      // Entries and history as migration 3 left them.
      const level = await reg.getConfigEntry<number>("kernel.level");
      assert.deepEqual([level?.value, level?.version, level?.createRevision, level?.modRevision], [12, 12, 1, 12]);
      assert.deepEqual((await reg.configHistory("kernel.level")).map((v) => v.value), [
        12,
        11,
        10,
        9,
        8,
        7,
        6,
        5,
        4,
        3,
      ]);
      assert.equal(await reg.getConfigEntry("gone"), undefined);
      const echo = await reg.getModule("echo");
      assert.deepEqual([echo?.state, echo?.recordVersion, echo?.modRevision], ["running", 2, 17]);
      assert.equal((await reg.getModule("mirror"))?.modRevision, 18);
      // Writes go on from there, through the registry and through oxide-k's verbatim SQL.
      await reg.setConfig("kernel.level", 13);
      const after = await reg.getConfigEntry<number>("kernel.level");
      assert.deepEqual([after?.version, after?.createRevision, after?.modRevision], [13, 1, 19]);
      await reg.setConfig("gone", "again");
      const reborn = await reg.getConfigEntry("gone");
      assert.deepEqual([reborn?.version, reborn?.createRevision], [1, 20], "a deleted key starts a new life");
      // The triggers' and the entries' look-ups of a key's newest row are answered by the index alone.
      for (
        const sql of [
          "SELECT CASE type WHEN 'put' THEN version + 1 END FROM oxide_changes WHERE space = 'config' AND key = ?1 ORDER BY seq DESC LIMIT 1",
          "SELECT max(seq) FROM oxide_changes WHERE space = 'config' AND key = ?1",
        ]
      ) {
        const plan = reg.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all("x").map((row) => String(row.detail)).join("; ");
        assert.match(plan, /USING COVERING INDEX oxide_changes_key \(key=\? AND space=\?\)/, sql);
      }
    }
    const raw = rawSqlite(path);
    try {
      raw.prepare(OXIDE_K.setConfig).run("kernel.level", "14", T1);
      raw.prepare(OXIDE_K.deleteConfig).run("kernel.greeting");
      const rows = raw.prepare("SELECT key, type, version, revision FROM oxide_changes ORDER BY seq DESC LIMIT 2").all()
        .map((row) => ({ ...row }));
      assert.deepEqual(rows, [
        { key: "kernel.greeting", type: "delete", version: 0, revision: 22 },
        { key: "kernel.level", type: "put", version: 14, revision: 21 },
      ]);
      assert.equal(raw.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
    } finally {
      raw.close();
    }
  },
);
