/**
 * SQL text of oxide-k's tables, and numbered, additive migrations recorded in
 * `oxide_migrations` so each runs once, in order, even when several
 * processes open the same file at once.
 *
 * @module
 */
import { RegistryError } from "./errors.ts";
import type { Engine } from "./sqlite/engine.ts";
import { formatTimestamp } from "./time.ts";
import { INDEX_MIGRATION_SQL, META_MIGRATION_SQL, REVISION_MIGRATION_SQL } from "./store/sqlite/_revision_sql.ts";

/** oxide-k's `modules` table, verbatim, so a Rust kernel can share the file. */
export const MODULES_TABLE_SQL = `CREATE TABLE IF NOT EXISTS modules (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    description TEXT,
    updated_at  TEXT NOT NULL
)`;

/** oxide-k's `config` table, verbatim. */
export const CONFIG_TABLE_SQL = `CREATE TABLE IF NOT EXISTS config (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
)`;

/** The statements of `StateRegistry`, oxide-k's SQL verbatim (benchmarks run the same text raw). */
export const REGISTRY_SQL = {
  upsertModule: `INSERT INTO modules (id, name, version, kind, state, description, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT(id) DO UPDATE SET
    name        = excluded.name,
    version     = excluded.version,
    kind        = excluded.kind,
    state       = excluded.state,
    description = excluded.description,
    updated_at  = excluded.updated_at`,
  setModuleState: "UPDATE modules SET state = ?1, updated_at = ?2 WHERE id = ?3",
  getModule: "SELECT id, name, version, kind, state, description, updated_at FROM modules WHERE id = ?1",
  listModules: "SELECT id, name, version, kind, state, description, updated_at FROM modules ORDER BY id",
  setConfig: `INSERT INTO config (key, value, updated_at)
VALUES (?1, ?2, ?3)
ON CONFLICT(key) DO UPDATE SET
    value      = excluded.value,
    updated_at = excluded.updated_at`,
  // A keyless handle's write to a file: refused (no row changed) once any connection sealed the registry. Checked
  // inside the statement, so no other process can seal between a check and the write.
  setConfigUnsealed: `INSERT INTO config (key, value, updated_at)
SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'oxide_sealing')
ON CONFLICT(key) DO UPDATE SET
    value      = excluded.value,
    updated_at = excluded.updated_at`,
  getConfig: "SELECT value FROM config WHERE key = ?1",
  deleteConfig: "DELETE FROM config WHERE key = ?1",
} as const;

/** Where applied migrations are recorded: one row per owner and version. */
export const MIGRATIONS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS oxide_migrations (
    owner      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (owner, version)
)`;

/** The tables the registry owns; extensions must never alter them. */
export const REGISTRY_TABLES: readonly string[] = [
  "modules",
  "config",
  "oxide_migrations",
  "oxide_changes",
  "oxide_batch",
  "oxide_revision",
  "oxide_meta",
];

/** The columns each table the registry uses must have, when it exists. */
const REQUIRED_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  oxide_migrations: ["owner", "version", "name", "applied_at"],
  modules: [
    "id",
    "name",
    "version",
    "kind",
    "state",
    "description",
    "updated_at",
  ],
  config: ["key", "value", "updated_at"],
  oxide_changes: ["seq", "revision", "space", "key", "type", "version", "create_revision", "value", "updated_at"],
  oxide_batch: ["id", "revision", "rewrite"],
  oxide_revision: ["id", "compacted"],
  oxide_meta: ["key", "value"],
};

/**
 * One numbered schema change.
 *
 * @example
 * ```ts
 * import { defineExtension, type Migration, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const seed: Migration = {
 *   version: 1,
 *   name: "colours table, seeded",
 *   up: (db) => {
 *     db.exec("CREATE TABLE paint_colours (name TEXT PRIMARY KEY)");
 *     for (const name of ["red", "green"]) db.prepare("INSERT INTO paint_colours (name) VALUES (?)").run(name);
 *   },
 * };
 * await using reg = await StateRegistry.inMemory();
 * await openExtension(reg, defineExtension({ name: "paint", migrations: [seed] }));
 * assert.equal(reg.db.prepare("SELECT count(*) AS n FROM paint_colours").get()?.n, 2);
 * ```
 */
export interface Migration {
  /** 1, 2, 3, ...: applied in this order, each exactly once. */
  version: number;
  /** What it does, recorded beside the version. */
  name: string;
  /** SQL to run, or a function that runs it on the connection (inside the migration's transaction). */
  up: string | ((db: Engine) => void);
}

/** The registry's own migrations. Additive only: oxide-k's tables are never altered. */
export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "oxide-k modules and config tables",
    up: `${MODULES_TABLE_SQL}; ${CONFIG_TABLE_SQL}`,
  },
  {
    version: 2,
    name: "revisions: change log oxide_changes kept by triggers on modules and config",
    up: REVISION_MIGRATION_SQL,
  },
  {
    version: 3,
    name: "meta space: oxide_meta, its changes logged in oxide_changes",
    up: META_MIGRATION_SQL,
  },
  {
    version: 4,
    name: "revisions: change log index by key, covering what the triggers read",
    up: INDEX_MIGRATION_SQL,
  },
];

/**
 * Applies the migrations of `owner` that are not yet recorded, in version
 * order, in one `BEGIN IMMEDIATE` transaction: a second process opening at
 * the same time waits, then finds them recorded and applies nothing.
 *
 * @returns The versions applied now.
 * @throws {RangeError} when versions are not 1, 2, 3, ... in order.
 * @throws {RegistryError} when a migration fails; nothing of it is kept.
 */
export function applyMigrations(
  db: Engine,
  owner: string,
  migrations: readonly Migration[],
): number[] {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new RangeError(
        `migrations of '${owner}' must be numbered 1, 2, 3, ... in order: found ${migration.version} at position ${
          index + 1
        }`,
      );
    }
  });
  if (migrations.length === 0) return [];
  if (recordedVersion(db, owner) >= migrations.length) return [];
  return db.transaction(() => {
    db.exec(MIGRATIONS_TABLE_SQL);
    const applied: number[] = [];
    for (const migration of migrations.slice(recordedVersion(db, owner))) {
      try {
        if (typeof migration.up === "string") db.exec(migration.up);
        else migration.up(db);
      } catch (error) {
        throw new RegistryError(
          `migration ${migration.version} ('${migration.name}') of '${owner}' failed: ${
            error instanceof Error ? error.message : String(error)
          }`,
          { cause: error, path: db.path },
        );
      }
      db.prepare(
        "INSERT INTO oxide_migrations (owner, version, name, applied_at) VALUES (?, ?, ?, ?)",
      ).run(
        owner,
        migration.version,
        migration.name,
        formatTimestamp(new Date()),
      );
      applied.push(migration.version);
    }
    return applied;
  });
}

/** The highest version of `owner` recorded, 0 when none (or no record table yet). */
export function recordedVersion(db: Engine, owner: string): number {
  const table = db.prepare(
    "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_migrations'",
  )
    .get();
  if (table === undefined) return 0;
  const row = db.prepare(
    "SELECT max(version) AS version FROM oxide_migrations WHERE owner = ?",
  ).get(owner);
  return Number(row?.version ?? 0);
}

/**
 * Checks, without writing, that the tables the registry uses are absent or
 * have the columns it reads, so a file of another shape is refused before
 * anything is written to it.
 *
 * @throws {RegistryError} naming the table when it has the wrong shape, or is a view or index.
 */
export function checkRegistryShape(db: Engine): void {
  // One statement for every table: an open reads the schema once, however many tables the registry has.
  const names = Object.keys(REQUIRED_COLUMNS);
  const rows = db.prepare(
    `SELECT m.name AS name, m.type AS type, c.name AS column FROM sqlite_master m
      LEFT JOIN pragma_table_info(m.name) c ON m.type = 'table'
      WHERE m.type IN ('table', 'view', 'index') AND lower(m.name) IN (${names.map((name) => `'${name}'`).join(", ")})`,
  ).allArrays();
  const found = new Map<string, { type: string; columns: Set<unknown> }>();
  for (const [name, type, column] of rows) {
    const table = String(name).toLowerCase();
    let entry = found.get(table);
    if (entry === undefined) found.set(table, entry = { type: String(type), columns: new Set() });
    if (column !== null) entry.columns.add(column);
  }
  for (const [table, required] of Object.entries(REQUIRED_COLUMNS)) {
    const entry = found.get(table);
    if (entry === undefined) continue;
    if (entry.type !== "table") {
      throw new RegistryError(`its '${table}' is a ${entry.type}, not a table: not an oxide-k registry`, {
        path: db.path,
      });
    }
    const missing = required.filter((column) => !entry.columns.has(column));
    if (missing.length > 0) {
      throw new RegistryError(
        `it has a '${table}' table without the column(s) ${missing.join(", ")}: not an oxide-k registry`,
        { path: db.path },
      );
    }
  }
}

/**
 * Checks the shape of the tables (see {@linkcode checkRegistryShape}), then
 * creates or upgrades the registry's schema.
 *
 * @throws {RegistryError} naming the table when a table has the wrong shape; nothing is written then.
 */
export function migrateRegistry(db: Engine, options: { readonly shapeChecked?: boolean } = {}): void {
  if (options.shapeChecked !== true) checkRegistryShape(db);
  // Up to date: read only, so opening beside a busy writer does not wait for (or fail on) its write lock.
  if (isUpToDate(db)) return;
  // oxide-k's own bootstrap; ours must also accept a file oxide-k created.
  db.transaction(() => {
    db.exec(`${MODULES_TABLE_SQL}; ${CONFIG_TABLE_SQL}`);
    applyMigrations(db, "registry", REGISTRY_MIGRATIONS);
  });
}

function isUpToDate(db: Engine): boolean {
  const tables = db.prepare(
    "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ('modules', 'config')",
  ).get();
  return tables?.n === 2 && recordedVersion(db, "registry") >= REGISTRY_MIGRATIONS.length;
}
