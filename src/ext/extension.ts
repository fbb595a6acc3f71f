/**
 * The extension point: how code beside the registry (the decision log, a
 * third party's audit trail, ...) owns tables in the registry's database.
 *
 * An extension has a name and numbered migrations. {@linkcode openExtension}
 * applies the ones not yet recorded for that name, in order, in one
 * `BEGIN IMMEDIATE` transaction, and records each in `oxide_migrations`, so
 * each runs exactly once per database even when several processes open the
 * same file at the same moment (the second waits for the write lock, then
 * re-reads the record inside its transaction and finds nothing to do).
 *
 * The rule: an extension never alters the registry's own tables (`modules`,
 * `config`, `oxide_migrations`, and every name starting with `oxide_`).
 * While a migration runs, temporary triggers refuse any write to them; their
 * schema (columns, indexes, triggers, in the file and the connection's
 * temporary schema) is compared before and after; a new or changed trigger
 * on any table whose SQL writes one of them is refused (SQLite's parser
 * finds the references: see `registryWritingTriggers`); and the connection's settings (`PRAGMA secure_delete`,
 * `foreign_keys`, `journal_mode`, `synchronous`, `busy_timeout`, ...) are
 * compared and restored. Any violation rolls the whole open back with an
 * {@linkcode ExtensionError}. The check catches mistakes, not malice: the
 * extension's own code holds the same connection afterwards.
 *
 * @module
 */

import { KernelError, RegistryError } from "../errors.ts";
import type { StateRegistry } from "../registry/registry.ts";
import { applyMigrations, type Migration, recordedVersion, REGISTRY_TABLES } from "../schema.ts";
import type { Engine, SqlValue } from "../sqlite/engine.ts";
import { describe } from "../_describe.ts";

export type { Migration };

/**
 * What {@linkcode defineExtension} takes.
 *
 * @example
 * ```ts
 * import { defineExtension, type ExtensionDefinition, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const definition: ExtensionDefinition = {
 *   name: "acme.audit",
 *   migrations: [{ version: 1, name: "events table", up: "CREATE TABLE acme_audit_events (what TEXT NOT NULL)" }],
 * };
 * await using reg = await StateRegistry.inMemory();
 * await openExtension(reg, defineExtension(definition));
 * reg.db.prepare("INSERT INTO acme_audit_events (what) VALUES (?)").run("login");
 * assert.throws(() => defineExtension({ ...definition, name: "registry" }), RangeError);
 * ```
 */
export interface ExtensionDefinition {
  /**
   * The extension's name: lowercase letters, digits, `_`, `.` and `-`,
   * starting with a letter, at most 64 characters (e.g. `"xai"`,
   * `"acme.audit"`). Its migrations are recorded under this name, so it must
   * never change. By convention its tables start with it (`xai_decisions`).
   */
  name: string;
  /**
   * The migrations, numbered 1, 2, 3, ... in order. Once released, a
   * migration is never edited: later changes are new migrations. Keep them
   * additive (new tables, new columns with defaults, new indexes) so an older
   * program sharing the file keeps working.
   */
  migrations: readonly Migration[];
}

/**
 * A validated, frozen extension, ready for {@linkcode openExtension}.
 *
 * @example
 * ```ts
 * import { defineExtension, type Extension, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const tags: Extension = defineExtension({
 *   name: "tags",
 *   migrations: [{ version: 1, name: "names", up: "CREATE TABLE tags_names (name TEXT PRIMARY KEY)" }],
 * });
 * assert.equal(tags.latestVersion, 1);
 * assert.ok(Object.isFrozen(tags));
 * await using reg = await StateRegistry.inMemory();
 * assert.equal((await openExtension(reg, tags)).version, tags.latestVersion);
 * ```
 */
export interface Extension {
  /** The extension's name. */
  readonly name: string;
  /** Its migrations, in version order. */
  readonly migrations: readonly Readonly<Migration>[];
  /** The highest version this code knows (0 when it has no migrations). */
  readonly latestVersion: number;
}

/**
 * What {@linkcode openExtension} reports.
 *
 * @example
 * ```ts
 * import {
 *   defineExtension,
 *   type ExtensionStatus,
 *   type Migration,
 *   openExtension,
 *   StateRegistry,
 * } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const v1: Migration = { version: 1, name: "names", up: "CREATE TABLE tags_names (name TEXT PRIMARY KEY)" };
 * const v2: Migration = { version: 2, name: "colour", up: "ALTER TABLE tags_names ADD COLUMN colour TEXT" };
 * await using reg = await StateRegistry.inMemory();
 * await openExtension(reg, defineExtension({ name: "tags", migrations: [v1] }));
 * const status: ExtensionStatus = await openExtension(reg, defineExtension({ name: "tags", migrations: [v1, v2] }));
 * assert.deepEqual(status, { name: "tags", version: 2, applied: [2] });
 * ```
 */
export interface ExtensionStatus {
  /** The extension's name. */
  name: string;
  /**
   * The version recorded in the database after opening. Higher than
   * {@linkcode Extension.latestVersion} when a newer program has migrated the
   * file; that is accepted, because migrations are additive.
   */
  version: number;
  /** The versions this call applied; empty when the database was up to date. */
  applied: number[];
}

/**
 * An extension broke the extension rule (it wrote to or altered a registry
 * table, or ended the migration's transaction), or its definition collides
 * with the registry's own. The open was rolled back: nothing of it is kept.
 *
 * @example
 * ```ts
 * import { defineExtension, ExtensionError, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const rogue = defineExtension({
 *   name: "rogue",
 *   migrations: [{ version: 1, name: "grab config", up: "ALTER TABLE config ADD COLUMN owner TEXT" }],
 * });
 * const err = await openExtension(reg, rogue).catch((e) => e);
 * assert.ok(err instanceof ExtensionError);
 * assert.equal(err.extension, "rogue");
 * assert.equal(err.version, 1);
 * ```
 */
export class ExtensionError extends KernelError {
  /** The extension's name. */
  readonly extension: string;
  /** The migration at fault, when one is. */
  readonly version: number | undefined;

  /**
   * Creates the error for one extension (and one of its migrations).
   *
   * @param extension The extension's name.
   * @param version The migration at fault, if any.
   * @param detail What it did wrong.
   * @param options `cause`, if any.
   */
  constructor(
    extension: string,
    version: number | undefined,
    detail: string,
    options?: ErrorOptions,
  ) {
    const where = version === undefined ? "" : ` migration ${version}`;
    super("extension", `extension '${extension}'${where}: ${detail}`, options);
    this.extension = extension;
    this.version = version;
  }
}

const NAME_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;

/**
 * Owners of migrations that belong to the registry itself (`src/schema.ts`,
 * `src/sealing/sealing.ts`): an extension may not take these names, nor any starting
 * with `oxide`, kept for the registry's future bookkeeping.
 */
const RESERVED_NAMES: readonly string[] = ["registry", "sealing"];

/** Functions that would not run their body, or all of it, when called: `Object.prototype.toString` tags. */
const NOT_SYNCHRONOUS: ReadonlyMap<string, string> = new Map([
  ["[object AsyncFunction]", "an async"],
  ["[object AsyncGeneratorFunction]", "an async generator"],
  ["[object GeneratorFunction]", "a generator"],
]);

/** The savepoint that tells whether a migration's SQL ended the transaction. */
const MARKER = "oxide_extension_migration";

/** Releases a savepoint; false when it no longer exists. */
function release(db: Engine, name: string): boolean {
  try {
    db.exec(`RELEASE ${name}`);
    return true;
  } catch (error) {
    if (error instanceof RegistryError && /no such savepoint/.test(error.message)) return false;
    throw error;
  }
}

/** Marks the errors our write guards raise, so they can be told from others. */
const GUARD_MARK = "oxide extension guard";

/**
 * Validates an extension's definition and freezes a copy of it.
 *
 * @param definition The name and migrations.
 * @returns The frozen extension.
 * @throws {TypeError} When the definition, the name or a migration has the wrong shape (including an `up` that is
 * an `async` or generator function: migrations are synchronous).
 * @throws {RangeError} When the name breaks the naming rule or is reserved (`"registry"`, `"sealing"`, `oxide...`), or the migrations are
 * not numbered 1, 2, 3, ... in order.
 *
 * @example Defining and opening an extension
 * ```ts
 * import { defineExtension, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const notes = defineExtension({
 *   name: "notes",
 *   migrations: [
 *     { version: 1, name: "notes table", up: "CREATE TABLE notes_items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)" },
 *     {
 *       version: 2,
 *       name: "tag column",
 *       up: (db) => db.exec("ALTER TABLE notes_items ADD COLUMN tag TEXT NOT NULL DEFAULT ''"),
 *     },
 *   ],
 * });
 * assert.equal(notes.latestVersion, 2);
 *
 * await using reg = await StateRegistry.inMemory();
 * assert.deepEqual(await openExtension(reg, notes), { name: "notes", version: 2, applied: [1, 2] });
 * assert.deepEqual(await openExtension(reg, notes), { name: "notes", version: 2, applied: [] });
 * ```
 */
export function defineExtension(definition: ExtensionDefinition): Extension {
  if (typeof definition !== "object" || definition === null) {
    throw new TypeError(
      `defineExtension() takes { name, migrations }, got ${describe(definition)}`,
    );
  }
  const { name, migrations } = definition;
  if (typeof name !== "string") {
    throw new TypeError(
      `extension name must be a string, got ${describe(name)}`,
    );
  }
  if (!NAME_PATTERN.test(name)) {
    throw new RangeError(
      `extension name ${
        describe(name)
      } must be lowercase letters, digits, '_', '.' or '-', starting with a letter, at most 64 characters`,
    );
  }
  if (RESERVED_NAMES.includes(name) || name.startsWith("oxide")) {
    throw new RangeError(`extension name '${name}' is reserved for the registry's own migrations`);
  }
  if (!Array.isArray(migrations)) {
    throw new TypeError(
      `migrations of '${name}' must be an array, got ${describe(migrations)}`,
    );
  }
  const frozen = migrations.map((migration: unknown, index) => {
    if (typeof migration !== "object" || migration === null) {
      throw new TypeError(
        `migration at position ${index + 1} of '${name}' must be an object, got ${describe(migration)}`,
      );
    }
    const { version, name: what, up } = migration as Partial<Migration>;
    if (version !== index + 1) {
      throw new RangeError(
        `migrations of '${name}' must be numbered 1, 2, 3, ... in order: found ${describe(version)} at position ${
          index + 1
        }`,
      );
    }
    if (typeof what !== "string" || what === "") {
      throw new TypeError(
        `migration ${version} of '${name}' needs a name (a non-empty string), got ${describe(what)}`,
      );
    }
    if (!(typeof up === "function" || (typeof up === "string" && up !== ""))) {
      throw new TypeError(
        `migration ${version} of '${name}' needs 'up': SQL text or a function (db) => void, got ${describe(up)}`,
      );
    }
    const flavour = typeof up === "function" ? NOT_SYNCHRONOUS.get(Object.prototype.toString.call(up)) : undefined;
    if (flavour !== undefined) {
      throw new TypeError(
        `migration ${version} of '${name}' has ${flavour} 'up': it must be a synchronous function (db) => void, ` +
          "because a migration runs inside one synchronous transaction",
      );
    }
    return Object.freeze({ version, name: what, up });
  });
  return Object.freeze({
    name,
    migrations: Object.freeze(frozen),
    latestVersion: frozen.length,
  });
}

/**
 * Brings an extension's tables up to date in the registry's database: applies
 * the migrations not yet recorded for its name, in order, in one
 * `BEGIN IMMEDIATE` transaction, recording each. When the database is already
 * up to date it only reads (no write lock is taken). Safe to call from several
 * processes at once: exactly one applies each migration. Inside an open
 * transaction on `registry.db` it runs in a savepoint instead.
 *
 * @param registry The open registry.
 * @param extension An extension from {@linkcode defineExtension}.
 * @returns The recorded version after opening and the versions applied now.
 * @throws {ExtensionError} When a migration writes to or alters a registry table, creates a trigger that writes
 * one, changes a connection setting (restored), ends the transaction, or its `up` function returns a promise;
 * nothing of this call is kept.
 * @throws {RegistryError} When a migration's SQL fails (the message names the migration), the write lock is not
 * obtained within the busy timeout, or the registry is closed; nothing of this call is kept.
 * @throws {TypeError} When `extension` did not come from {@linkcode defineExtension}.
 *
 * @example A second open applies nothing
 * ```ts
 * import { defineExtension, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const counters = defineExtension({
 *   name: "counters",
 *   migrations: [{ version: 1, name: "table", up: "CREATE TABLE counters_values (k TEXT PRIMARY KEY, n INTEGER NOT NULL)" }],
 * });
 * await using reg = await StateRegistry.inMemory();
 * const first = await openExtension(reg, counters);
 * assert.deepEqual(first.applied, [1]);
 * const again = await openExtension(reg, counters);
 * assert.deepEqual(again.applied, []);
 * ```
 */
export function openExtension(
  registry: StateRegistry,
  extension: Extension,
): Promise<ExtensionStatus> {
  try {
    if (
      typeof extension !== "object" || extension === null ||
      !Object.isFrozen(extension) || !Array.isArray(extension.migrations)
    ) {
      throw new TypeError(
        `openExtension() takes an extension made by defineExtension(), got ${describe(extension)}`,
      );
    }
    const db = registry.db;
    const guarded = extension.migrations.map((migration) => ({
      version: migration.version,
      name: migration.name,
      up: guard(extension.name, migration),
    }));
    let applied: number[];
    try {
      applied = applyMigrations(db, extension.name, guarded);
    } catch (error) {
      // The runner reports a failed migration as a RegistryError; keep ours as they are.
      if (
        error instanceof RegistryError && error.cause instanceof ExtensionError
      ) {
        throw error.cause;
      }
      throw error;
    }
    return Promise.resolve({
      name: extension.name,
      version: recordedVersion(db, extension.name),
      applied,
    });
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * The version of `name` recorded in the registry's database.
 *
 * @param registry The open registry.
 * @param name The extension's name.
 * @returns The highest applied migration, 0 when none is recorded.
 * @throws {RegistryError} When the registry is closed.
 *
 * @example
 * ```ts
 * import { defineExtension, extensionVersion, openExtension, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * assert.equal(extensionVersion(reg, "tags"), 0);
 * await openExtension(reg, defineExtension({
 *   name: "tags",
 *   migrations: [{ version: 1, name: "table", up: "CREATE TABLE tags_names (name TEXT PRIMARY KEY)" }],
 * }));
 * assert.equal(extensionVersion(reg, "tags"), 1);
 * ```
 */
export function extensionVersion(registry: StateRegistry, name: string): number {
  return recordedVersion(registry.db, name);
}

/**
 * Every extension recorded in the registry's database, with its version, by
 * name (the registry's own migrations are left out).
 *
 * @param registry The open registry.
 * @returns One entry per extension that has applied at least one migration.
 * @throws {RegistryError} When the registry is closed.
 *
 * @example
 * ```ts
 * import { DecisionLog, listExtensions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * assert.deepEqual(listExtensions(reg), []);
 * await DecisionLog.open(reg);
 * assert.deepEqual(listExtensions(reg).map((e) => e.name), ["xai"]);
 * ```
 */
export function listExtensions(
  registry: StateRegistry,
): { name: string; version: number }[] {
  const db = registry.db;
  const table = db.prepare(
    "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_migrations'",
  ).get();
  if (table === undefined) return [];
  const placeholders = RESERVED_NAMES.map(() => "?").join(", ");
  return db.prepare(
    `SELECT owner, max(version) AS version FROM oxide_migrations
     WHERE owner NOT IN (${placeholders}) AND owner NOT LIKE 'oxide%' GROUP BY owner ORDER BY owner`,
  ).all(...RESERVED_NAMES).map((row) => ({
    name: String(row.owner),
    version: Number(row.version),
  }));
}

/** Wraps a migration so it runs under the extension rule. */
function guard(
  extension: string,
  migration: Readonly<Migration>,
): (db: Engine) => void {
  return (db) => {
    const before = schemaSnapshot(db);
    const settings = readSettings(db);
    const tables = before.filter((row) => row.schema === "main" && row.type === "table" && isProtected(row))
      .map((row) => row.name);
    installWriteGuards(db, tables);
    // A marker: gone after the migration if its SQL ended the transaction, even if it began another one.
    db.exec(`SAVEPOINT ${MARKER}`);
    let changedSettings: string[] = [];
    try {
      if (typeof migration.up === "string") db.exec(migration.up);
      else refuseThenable(extension, migration.version, migration.up(db));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const marked = message.indexOf(GUARD_MARK);
      if (marked >= 0) {
        throw new ExtensionError(
          extension,
          migration.version,
          message.slice(marked + GUARD_MARK.length + 2),
          { cause: error },
        );
      }
      throw error;
    } finally {
      if (db.isOpen) {
        // Connection settings are not rolled back with the transaction: put them back whatever happened, first
        // (`query_only` would stop the guards' removal).
        changedSettings = restoreSettings(db, settings);
        removeWriteGuards(db, tables);
      }
    }
    if (!db.inTransaction || !release(db, MARKER)) {
      // A COMMIT committed the guards too: discard any transaction its SQL began (which would undo their removal),
      // then remove them for good.
      if (db.inTransaction) db.exec("ROLLBACK");
      removeWriteGuards(db, tables);
      throw new ExtensionError(
        extension,
        migration.version,
        "ended the migration's transaction (COMMIT, END, ROLLBACK or RELEASE in its SQL); what a COMMIT in it " +
          "committed stays",
      );
    }
    if (changedSettings.length > 0) {
      throw new ExtensionError(
        extension,
        migration.version,
        `may not change the connection's settings: it set ${changedSettings.join(", ")}`,
      );
    }
    const after = schemaSnapshot(db);
    const changed = [
      ...diffSchema(before.filter(isProtected), after.filter(isProtected)),
      ...registryWritingTriggers(db, before, after),
    ];
    if (changed.length > 0) {
      throw new ExtensionError(
        extension,
        migration.version,
        `may not alter the registry's tables: it ${changed.join(", ")}`,
      );
    }
  };
}

/**
 * Refuses what an `up` function returned when it is a promise (or any
 * thenable): the part after its first `await` would run after the
 * transaction ends, outside the guards. Its rejection is swallowed, so it
 * is not reported as unhandled.
 */
function refuseThenable(extension: string, version: number, result: unknown): void {
  if ((typeof result !== "object" && typeof result !== "function") || result === null) return;
  let then: unknown;
  try {
    then = (result as { then?: unknown }).then;
  } catch {
    return;
  }
  if (typeof then !== "function") return;
  try {
    Promise.resolve(result).catch(() => {});
  } catch {
    // A thenable whose then() throws: nothing to swallow.
  }
  throw new ExtensionError(
    extension,
    version,
    "'up' returned a promise: a migration must be synchronous (what runs after its first await would run after " +
      "the transaction, unguarded); the open is rolled back",
  );
}

interface SchemaRow {
  /** `main` or `temp`. */
  schema: string;
  type: string;
  name: string;
  table: string;
  sql: string | null;
}

/** Whether a table name belongs to the registry (its tables and the `oxide_` namespace). */
function isRegistryName(name: string): boolean {
  const lower = name.toLowerCase();
  return REGISTRY_TABLES.includes(lower) || lower.startsWith("oxide_");
}

/** Whether a schema object is on, or named like, a registry table. */
function isProtected(row: SchemaRow): boolean {
  return isRegistryName(row.name) || isRegistryName(row.table);
}

/**
 * Every schema object of the connection: the file's (`sqlite_master`) and the
 * connection's temporary ones (`sqlite_temp_master`), where a `TEMP TRIGGER`
 * on `main.config` or a `TEMP TABLE config` shadowing the registry's would
 * live.
 */
function schemaSnapshot(db: Engine): SchemaRow[] {
  return db.prepare(
    `SELECT 'main' AS schema, type, name, tbl_name, sql FROM sqlite_master
     UNION ALL SELECT 'temp', type, name, tbl_name, sql FROM sqlite_temp_master
     ORDER BY 1, 2, 3`,
  ).all()
    .map((row) => ({
      schema: String(row.schema),
      type: String(row.type),
      name: String(row.name),
      table: String(row.tbl_name),
      sql: row.sql === null ? null : String(row.sql),
    }))
    // An automatic index changes only with its table, which is reported itself.
    .filter((row) => !row.name.startsWith("sqlite_autoindex_"));
}

function describeRow(row: SchemaRow): string {
  return `${row.schema === "temp" ? "temp " : ""}${row.type} '${row.name}'`;
}

/** What changed between two snapshots, as phrases ("dropped table 'config'"). */
function diffSchema(before: SchemaRow[], after: SchemaRow[]): string[] {
  const old = new Map(before.map((row) => [describeRow(row), row]));
  const now = new Map(after.map((row) => [describeRow(row), row]));
  const changes: string[] = [];
  for (const [k, row] of old) {
    const next = now.get(k);
    if (next === undefined) changes.push(`dropped ${k}`);
    else if (next.sql !== row.sql || next.table !== row.table) {
      changes.push(`changed ${k}`);
    }
  }
  for (const [k, row] of now) {
    if (!old.has(k)) changes.push(`created ${k} on '${row.table}'`);
  }
  return changes;
}

/** The name a registry table is renamed to while SQLite says which triggers refer to it. */
const PROBE = "oxide_trigger_probe";

/**
 * New or changed triggers (on any table, in the file or temporary) whose body
 * writes a registry table: they would write it later, outside any migration.
 *
 * SQLite itself says which triggers refer to a table, however the name is
 * quoted (`"config"`, `[config]`, `` `config` ``, `main.config`, no space
 * before it): inside a savepoint that is rolled back, each registry table is
 * renamed (`ALTER TABLE ... RENAME`), and SQLite's own parser rewrites every
 * reference to it in every trigger as `"oxide_trigger_probe"`. A reference
 * right after `INTO`, `UPDATE [OR ...]` or `DELETE FROM` (comments and
 * string literals aside) is a write. A trigger SQLite cannot check (the
 * rename fails) is refused too.
 */
function registryWritingTriggers(db: Engine, before: SchemaRow[], after: SchemaRow[]): string[] {
  const old = new Map(before.map((row) => [describeRow(row), row.sql]));
  const fresh = after.filter((row) =>
    row.type === "trigger" && row.sql !== null && old.get(describeRow(row)) !== row.sql
  );
  if (fresh.length === 0) return [];
  const tables = after.filter((row) => row.schema === "main" && row.type === "table" && isRegistryName(row.name))
    .map((row) => row.name);
  const writes = new Map<string, Set<string>>();
  const problems: string[] = [];
  const legacy = db.prepare("PRAGMA legacy_alter_table").get()?.legacy_alter_table;
  db.exec("PRAGMA legacy_alter_table = OFF"); // ON would leave triggers unrewritten.
  try {
    for (const table of tables) {
      db.exec(`SAVEPOINT ${PROBE}`);
      try {
        db.exec(`ALTER TABLE main.${sqlIdent(table)} RENAME TO ${PROBE}`);
        const rewritten = new Map(schemaSnapshot(db).map((row) => [describeRow(row), row.sql]));
        for (const row of fresh) {
          const sql = rewritten.get(describeRow(row));
          if (sql === null || sql === undefined || sql === row.sql || !writesProbe(sql)) continue;
          const key = describeRow(row);
          writes.set(key, (writes.get(key) ?? new Set()).add(table.toLowerCase()));
        }
      } catch (error) {
        problems.push(
          `created a schema SQLite cannot check for writes to registry table '${table}' (${
            error instanceof Error ? error.message : String(error)
          })`,
        );
      } finally {
        db.exec(`ROLLBACK TO ${PROBE}; RELEASE ${PROBE}`);
      }
    }
  } finally {
    db.exec(`PRAGMA legacy_alter_table = ${legacy === 1 ? "ON" : "OFF"}`);
  }
  const found = [...problems];
  for (const row of fresh) {
    const targets = writes.get(describeRow(row));
    if (targets === undefined) continue;
    const verb = old.has(describeRow(row)) ? "changed" : "created";
    const names = [...targets].map((t) => `'${t}'`).join(", ");
    found.push(`${verb} ${describeRow(row)} on '${row.table}' whose body writes registry table ${names}`);
  }
  return found;
}

/** A write to the probe: `INTO`, `UPDATE [OR x]` or `DELETE FROM`, then `"oxide_trigger_probe"` (maybe qualified). */
const WRITES_PROBE = new RegExp(
  String.raw`\b(?:INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s*(?:(?:"(?:[^"]|"")*"|\w+)\s*\.\s*)?"${PROBE}"`,
  "i",
);

/** Whether SQL that SQLite rewrote (see {@linkcode registryWritingTriggers}) writes the probe table. */
function writesProbe(sql: string): boolean {
  // Left to right, so a quote inside a comment or an identifier does not start a string, and so on.
  const code = sql.replace(
    /"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|'(?:[^']|'')*'|--[^\n]*|\/\*[\s\S]*?(?:\*\/|$)/g,
    (token) => /^["`[]/.test(token) ? token : " ",
  );
  return WRITES_PROBE.test(code);
}

/**
 * Connection settings a migration could change for the rest of the
 * connection's life (a `PRAGMA` is not rolled back with the transaction):
 * the registry's durability and locking, and the safety switches.
 */
const SETTINGS: readonly string[] = [
  "busy_timeout",
  "foreign_keys",
  "ignore_check_constraints",
  "journal_mode",
  "locking_mode",
  "query_only",
  "recursive_triggers",
  "secure_delete",
  "synchronous",
  "trusted_schema",
  "writable_schema",
];

function readSettings(db: Engine): Map<string, SqlValue> {
  const values = new Map<string, SqlValue>();
  for (const name of SETTINGS) {
    const row = db.prepare(`PRAGMA ${name}`).get();
    const value = row === undefined ? undefined : Object.values(row)[0];
    if (value !== undefined) values.set(name, value);
  }
  return values;
}

/** Puts back every setting that changed; returns them as phrases ("secure_delete from 1 to 0 (restored)"). */
function restoreSettings(db: Engine, before: Map<string, SqlValue>): string[] {
  const now = readSettings(db);
  const changed: string[] = [];
  for (const [name, value] of before) {
    const current = now.get(name);
    if (current === value) continue;
    let outcome = "restored";
    try {
      db.exec(`PRAGMA ${name} = ${typeof value === "string" ? sqlString(value) : String(value)}`);
    } catch (error) {
      outcome = `could not restore it: ${error instanceof Error ? error.message : String(error)}`;
    }
    changed.push(`PRAGMA ${name} from ${String(value)} to ${String(current)} (${outcome})`);
  }
  return changed;
}

/** `CREATE TEMP TRIGGER`s that abort any write to the registry's tables. */
function installWriteGuards(db: Engine, tables: string[]): void {
  for (const table of tables) {
    const message = sqlString(
      `${GUARD_MARK}: may not write to registry table '${table}'`,
    );
    for (const op of ["INSERT", "UPDATE", "DELETE"]) {
      db.exec(
        `CREATE TEMP TRIGGER ${guardName(table, op)} BEFORE ${op} ON ${
          sqlIdent(table)
        } BEGIN SELECT RAISE(ABORT, ${message}); END`,
      );
    }
  }
}

function removeWriteGuards(db: Engine, tables: string[]): void {
  for (const table of tables) {
    for (const op of ["INSERT", "UPDATE", "DELETE"]) {
      db.exec(`DROP TRIGGER IF EXISTS temp.${guardName(table, op)}`);
    }
  }
}

function guardName(table: string, op: string): string {
  return sqlIdent(`oxide_guard_${table}_${op.toLowerCase()}`);
}

function sqlIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function sqlString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
