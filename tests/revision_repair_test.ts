// A dropped revision trigger or index (another tool, a bad migration, a hostile file) must not turn compare-and-set
// off: a writable open recreates it and logs what was missed; a readonly open refuses the file untouched.
import assert from "node:assert/strict";
import { ConflictError, type ModuleMetadata, RegistryError, StateRegistry } from "@oxide/registry";
import { META_TRIGGERS_SQL, REVISION_INDEXES_SQL, REVISION_TRIGGERS_SQL } from "../src/store/sqlite/_revision_sql.ts";
import { engineTest, rawSqlite, tempDir } from "./_helpers.ts";

const ECHO: ModuleMetadata = { id: "echo", name: "Echo", version: "0.1.0", kind: "native" };
const AT = "2026-12-01T00:00:00+00:00";

/** A registry file with config `n`, `gone`, `old` and modules `echo`, `ghost`, `was`, each at version 1. */
async function seed(path: string, engine: "ffi" | "node"): Promise<void> {
  await using reg = await StateRegistry.connect(path, { engine });
  for (const key of ["n", "gone", "old"]) await reg.setConfig(key, 1);
  for (const id of ["echo", "ghost", "was"]) await reg.upsertModule({ ...ECHO, id }, "loaded");
}

/** Every kind of write another program can make, in raw SQL (each may or may not be logged by a trigger). */
function writeRaw(path: string, drop: string): void {
  const db = rawSqlite(path);
  try {
    db.exec("INSERT INTO oxide_meta (key, value) VALUES ('m.gone', '{}')"); // Logged: every trigger is still there.
    db.exec(drop);
    db.exec("INSERT INTO oxide_meta (key, value) VALUES ('m.fresh', '{}')");
    db.exec("DELETE FROM oxide_meta WHERE key = 'm.gone'");
    db.prepare("UPDATE config SET value = '5', updated_at = ? WHERE key = 'n'").run(AT);
    db.prepare("INSERT INTO config (key, value, updated_at) VALUES ('fresh', '7', ?)").run(AT);
    db.exec("DELETE FROM config WHERE key = 'gone'");
    db.exec("UPDATE config SET key = 'renamed' WHERE key = 'old'");
    db.prepare(`UPDATE modules SET state = '"running"', updated_at = ? WHERE id = 'echo'`).run(AT);
    db.prepare(`INSERT INTO modules (id, name, version, kind, state, updated_at)
      VALUES ('new', 'N', '1', '"native"', '"loaded"', ?)`).run(AT);
    db.exec("DELETE FROM modules WHERE id = 'ghost'");
    db.exec("UPDATE modules SET id = 'is' WHERE id = 'was'");
  } finally {
    db.close();
  }
}

/** The type of the newest log row of `key` in `space` (`undefined`: never logged). */
function logged(reg: StateRegistry, space: string, key: string): unknown {
  return reg.db.prepare("SELECT type FROM oxide_changes WHERE space = ? AND key = ? ORDER BY seq DESC LIMIT 1")
    .get(space, key)?.type;
}

const PARTS: [name: string, drop: string][] = [
  ...Object.keys({ ...REVISION_TRIGGERS_SQL, ...META_TRIGGERS_SQL }).map((
    name,
  ): [string, string] => [name, `DROP TRIGGER ${name}`]),
  ...Object.keys(REVISION_INDEXES_SQL).map((name): [string, string] => [name, `DROP INDEX ${name}`]),
];

for (const [name, drop] of PARTS) {
  engineTest(`a dropped ${name} is recreated on open: compare-and-set and versions work again`, async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await seed(path, engine);
    writeRaw(path, drop);
    await using reg = await StateRegistry.connect(path, { engine });
    const present = reg.db.prepare("SELECT 1 AS found FROM sqlite_master WHERE name = ?").get(name);
    assert.equal(present?.found, 1, `${name} is back`);

    // What was written while it was missing is logged: the versions show every change.
    const n = await reg.getConfigEntry<number>("n");
    assert.deepEqual([n?.value, n?.version], [5, 2]);
    assert.equal((await reg.getConfigEntry("fresh"))?.version, 1);
    assert.deepEqual([logged(reg, "config", "fresh"), logged(reg, "modules", "new")], ["put", "put"]);
    assert.equal((await reg.getConfigEntry("renamed"))?.version, 1);
    assert.equal(logged(reg, "config", "gone"), "delete");
    assert.equal(logged(reg, "config", "old"), "delete");
    assert.equal((await reg.getModule("echo"))?.recordVersion, 2);
    assert.equal((await reg.getModule("is"))?.recordVersion, 1);
    assert.equal(logged(reg, "modules", "ghost"), "delete");
    assert.equal(logged(reg, "modules", "was"), "delete");
    assert.deepEqual([logged(reg, "meta", "m.fresh"), logged(reg, "meta", "m.gone")], ["put", "delete"]);

    // A stale ifVersion is a conflict, and versions move.
    await reg.setConfig("n", 6, { ifVersion: 2 });
    await assert.rejects(reg.setConfig("n", 7, { ifVersion: 2 }), ConflictError);
    assert.deepEqual([await reg.getConfig("n"), (await reg.getConfigEntry("n"))?.version], [6, 3]);
    await reg.setModuleState("echo", "stopped", { ifVersion: 2 });
    await assert.rejects(reg.setModuleState("echo", "loaded", { ifVersion: 2 }), ConflictError);
    assert.equal((await reg.getModule("echo"))?.recordVersion, 3);
    await reg.deleteConfig("renamed");
    await assert.rejects(reg.setConfig("renamed", 1, { ifVersion: 1 }), ConflictError);
  });
}

engineTest("an open with every revision trigger in place logs nothing", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await seed(path, engine);
  const count = (reg: StateRegistry) => reg.db.prepare("SELECT count(*) AS n FROM oxide_changes").get()?.n;
  let before: unknown;
  {
    await using reg = await StateRegistry.connect(path, { engine });
    before = count(reg);
  }
  await using reg = await StateRegistry.connect(path, { engine });
  assert.equal(count(reg), before);
});

engineTest(
  "a readonly open of a file with a dropped revision trigger refuses it and writes nothing",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    await seed(path, engine);
    writeRaw(path, "DROP TRIGGER oxide_config_update");
    const bytes = await Deno.readFile(path);
    await assert.rejects(
      StateRegistry.connect(path, { engine, readonly: true }),
      (error: unknown) =>
        error instanceof RegistryError && error.message.includes(path) &&
        error.message.includes("oxide_config_update") && error.message.includes("without readonly"),
    );
    assert.deepEqual(await Deno.readFile(path), bytes);
    // A writable open repairs it; readonly opens then work.
    {
      await using _ = await StateRegistry.connect(path, { engine });
    }
    await using reg = await StateRegistry.connect(path, { engine, readonly: true });
    assert.equal((await reg.getConfigEntry("n"))?.version, 2);
  },
);

engineTest("a file whose change log table was dropped is refused, naming the table", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await seed(path, engine);
  const db = rawSqlite(path);
  db.exec("DROP TABLE oxide_changes");
  db.close();
  for (const readonly of [false, true]) {
    await assert.rejects(
      StateRegistry.connect(path, { engine, readonly }),
      (error: unknown) => error instanceof RegistryError && /oxide_changes are missing/.test(error.message),
    );
  }
});
