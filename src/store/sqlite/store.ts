/**
 * The SQLite backend of the store interface: oxide-k's `modules` and
 * `config` tables for the current values, and the revision schema
 * (`_revision_sql.ts`: the change log `oxide_changes`, kept by triggers) for
 * revisions, versions and past values.
 *
 * Every call is synchronous (the interface allows a plain value): no promise
 * and no microtask on the hot path, statements prepared once per connection.
 *
 * @module
 */
import { CompactedError, RegistryError } from "../../errors.ts";
import { REGISTRY_SQL } from "../../schema.ts";
import type { Engine, Row, SqlValue, Statement } from "../../sqlite/engine.ts";
import { MEMORY_PATH } from "../../sqlite/open.ts";
import { retryWhileBusy } from "../../sqlite/_transaction.ts";
import type {
  ChangeEvent,
  Compare,
  Entry,
  ModuleFields,
  Operation,
  RangeRequest,
  RangeResult,
  Space,
  SpaceValue,
  StoreLimits,
  TxnRequest,
  TxnResult,
  WatchRequest,
} from "../store.ts";
import type { Store } from "../store.ts";
import { BATCH_BEGIN_SQL, BATCH_END_SQL, CURRENT_REVISION_SQL, REWRITE_BEGIN_SQL } from "./_revision_sql.ts";
import { readSealing, readSeals, SEALING_KEY, SEALS_KEY, writeSealing, writeSeals } from "./_sealing_sql.ts";
import { SqliteChangeFeed } from "./feed.ts";
import type { RetentionOptions } from "./history.ts";

/** A key's newest log row: its version, create and mod revisions. */
const NEWEST = (space: string, key: string) =>
  `oxide_changes l ON l.seq = (SELECT max(seq) FROM oxide_changes WHERE space = '${space}' AND key = ${key})`;

/** A file opened `readonly` before the revision schema was added: no log, every key at version 1. */
const NO_LOG = "(SELECT NULL AS version, NULL AS create_revision, NULL AS revision) l ON 1";

const CONFIG_COLUMNS = "c.key AS key, c.value AS value, c.updated_at AS updated_at";
const MODULE_COLUMNS =
  "m.id AS key, m.name AS name, m.version AS module_version, m.kind AS kind, m.state AS state, m.description AS description, m.updated_at AS updated_at";
const REVISION_COLUMNS = "l.version AS log_version, l.create_revision AS create_revision, l.revision AS mod_revision";

const VERSIONED_SQL = {
  ...REGISTRY_SQL,
  revision: CURRENT_REVISION_SQL,
  compacted: "SELECT compacted FROM oxide_revision WHERE id = 1",
  batchBegin: BATCH_BEGIN_SQL,
  batchEnd: BATCH_END_SQL,
  batchRevision: "SELECT revision FROM oxide_batch",
  configEntry: `SELECT ${CONFIG_COLUMNS}, ${REVISION_COLUMNS} FROM config c LEFT JOIN ${NEWEST("config", "c.key")}
    WHERE c.key = ?1`,
  moduleEntry: `SELECT ${MODULE_COLUMNS}, ${REVISION_COLUMNS} FROM modules m LEFT JOIN ${NEWEST("modules", "m.id")}
    WHERE m.id = ?1`,
  deleteModule: "DELETE FROM modules WHERE id = ?1",
  sealingExists: "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_sealing'",
  history: `SELECT * FROM oxide_changes WHERE space = ?1 AND key = ?2 AND type = 'put' ORDER BY seq DESC LIMIT ?3`,
  metaExists: "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_meta'",
  begin: "BEGIN",
  commit: "COMMIT",
  rollback: "ROLLBACK",
} as const;

/** The statements on a file without the revision schema (opened `readonly`): nothing to join, nothing to write. */
const UNVERSIONED_SQL: { readonly [K in keyof typeof VERSIONED_SQL]: string } = {
  ...VERSIONED_SQL,
  revision: "SELECT 0 AS revision",
  compacted: "SELECT 0 AS compacted",
  batchBegin: "SELECT 1",
  batchEnd: "SELECT 1",
  batchRevision: "SELECT 0 AS revision",
  configEntry: VERSIONED_SQL.configEntry.replace(NEWEST("config", "c.key"), NO_LOG),
  moduleEntry: VERSIONED_SQL.moduleEntry.replace(NEWEST("modules", "m.id"), NO_LOG),
  history: "SELECT NULL WHERE 0",
};

/** The meta space's statements (registry migration 3: table `oxide_meta`). */
const META_SQL = {
  entry: `SELECT m.key AS key, m.value AS value, '' AS updated_at, ${REVISION_COLUMNS} FROM oxide_meta m
    LEFT JOIN ${NEWEST("meta", "m.key")} WHERE m.key = ?1`,
  put: "INSERT INTO oxide_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  delete: "DELETE FROM oxide_meta WHERE key = ?1",
} as const;

/**
 * A config put guarded by the sealing generation, in one statement: it changes no row when another process changed
 * the keys (the generation moved on). Prepared when first used: the table exists only in a sealed registry.
 */
const SEALED_PUT_SQL = `INSERT INTO config (key, value, updated_at)
SELECT ?1, ?2, ?3 WHERE (SELECT generation FROM oxide_sealing WHERE id = 1) = ?4
ON CONFLICT(key) DO UPDATE SET
    value      = excluded.value,
    updated_at = excluded.updated_at`;

/** Re-sealing: a live value rewritten in place, with the change log's copies of its old text; a past value. */
const REWRITE_SQL = {
  live: "UPDATE config SET value = ?1 WHERE key = ?2 AND value = ?3",
  logged: "UPDATE oxide_changes SET value = ?1 WHERE space = 'config' AND key = ?2 AND value = ?3",
  past: `UPDATE oxide_changes SET value = ?1
    WHERE space = 'config' AND key = ?2 AND revision = ?3 AND type = 'put' AND value = ?4`,
  pastPage: `SELECT seq, key, value, revision, version, create_revision, updated_at FROM oxide_changes
    WHERE space = 'config' AND type = 'put' AND seq > ?1 ORDER BY seq LIMIT ?2`,
} as const;

/** Rows of a {@linkcode SqliteStore.pastEntries} page when the caller names no limit. */
const PAST_PAGE = 1000;

/** The limits of a SQLite registry: SQLite's own (1 GB strings by default), no per-transaction cap. */
const LIMITS: StoreLimits = { maxTxnOperations: Infinity, maxTxnBytes: Infinity, maxValueBytes: 1_000_000_000 };

/**
 * A registry's SQLite storage behind the {@linkcode Store} interface. It does
 * not own the connection: the registry opens, migrates and closes it.
 */
export class SqliteStore implements Store {
  readonly backend = "sqlite" as const;
  readonly limits: StoreLimits = LIMITS;
  readonly #db: Engine;
  readonly #sql: { readonly [K in keyof typeof VERSIONED_SQL]: Statement };
  /** Whether the file has the revision schema (every registry does, except one opened `readonly` before it). */
  readonly #versioned: boolean;
  /** A private in-memory database has no other writer: an autocommit write and a read after it are exact. */
  readonly #private: boolean;
  /** The meta space's statements; `undefined` on a file opened `readonly` before registry migration 3. */
  readonly #meta: { readonly [K in keyof typeof META_SQL]: Statement } | undefined;
  /** Watch and retention over the change log (`undefined` without the revision schema). */
  readonly #feed: SqliteChangeFeed | undefined;

  /**
   * Wraps an open, migrated connection.
   *
   * @param db The registry's connection.
   * @param options How much change data the file keeps.
   */
  constructor(db: Engine, options: { readonly retention?: RetentionOptions | undefined } = {}) {
    this.#db = db;
    this.#versioned = db.prepare(
      "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_changes'",
    ).get() !== undefined;
    const sql = this.#versioned ? VERSIONED_SQL : UNVERSIONED_SQL;
    this.#sql = lazyStatements(db, sql);
    this.#private = db.path === MEMORY_PATH;
    this.#meta = this.#versioned && this.#sql.metaExists.get() !== undefined ? lazyStatements(db, META_SQL) : undefined;
    this.#feed = this.#versioned ? new SqliteChangeFeed(db, { retention: options.retention }) : undefined;
    this.#feed?.checkRetention();
  }

  /** The database path, or `":memory:"`. */
  get location(): string {
    return this.#db.path;
  }

  getValue<S extends Space>(space: S, key: string): SpaceValue[S] | undefined {
    if (space === "config") return this.#sql.getConfig.value(key) as SpaceValue[S] | undefined;
    if (space === "modules") {
      // REGISTRY_SQL.getModule: id, name, version, kind, state, description, updated_at.
      const row = this.#sql.getModule.getArray(key);
      return row === undefined ? undefined : moduleFields(row, 1) as SpaceValue[S];
    }
    return this.get(space, key)?.value;
  }

  get<S extends Space>(space: S, key: string): Entry<S> | undefined {
    if (space === "meta") return this.#metaEntry(key) as Entry<S> | undefined;
    const row = (space === "config" ? this.#sql.configEntry : this.#sql.moduleEntry).getArray(key);
    return row === undefined ? undefined : liveEntry(space, row) as unknown as Entry<S>;
  }

  revision(): number {
    return Number(this.#sql.revision.get()!.revision);
  }

  range<S extends Space>(request: RangeRequest & { readonly space: S }): RangeResult<S> {
    const { space } = request;
    if (space === "meta") throw new RangeError("range() does not list the meta space");
    if (request.key !== undefined && request.prefix !== undefined) {
      throw new TypeError("range() takes a key or a prefix, not both");
    }
    // Two statements, one snapshot: a read transaction (unless the caller's transaction already is one).
    const own = !this.#db.inTransaction;
    if (own) this.#sql.begin.run();
    try {
      const current = this.revision();
      const revision = request.revision ?? current;
      if (revision > current) {
        throw new RegistryError(`revision ${revision} is in the future: the store is at revision ${current}`, {
          path: this.#db.path,
        });
      }
      const compacted = Number(this.#sql.compacted.get()?.compacted ?? 0);
      if (revision < current && revision < compacted) {
        throw new CompactedError(revision, compacted);
      }
      const live = revision === current;
      const { sql, params } = rangeQuery(space, request, live ? undefined : revision, this.#versioned);
      const statement = this.#db.prepare(sql);
      const rows: (SqlValue[] | Row)[] = live ? statement.allArrays(...params) : statement.all(...params);
      const limit = request.limit ?? 0;
      const more = limit > 0 && rows.length > limit;
      const count = more ? limit : rows.length;
      const entries: Entry<S>[] = new Array(count);
      for (let i = 0; i < count; i++) {
        entries[i] = (live
          ? liveEntry(space as "config" | "modules", rows[i] as SqlValue[])
          : logEntry(space, rows[i] as Row)) as unknown as Entry<S>;
      }
      return { entries, more, revision };
    } finally {
      if (own && this.#db.inTransaction) this.#sql.commit.run();
    }
  }

  txn(request: TxnRequest): TxnResult {
    const result = this.#txn(request);
    // Wakes this connection's watchers (data_version does not change for its own commits) and runs retention.
    if (result.changed.includes(true)) this.#feed?.committed();
    return result;
  }

  #txn(request: TxnRequest): TxnResult {
    const { compares, success } = request;
    const failure = request.failure ?? [];
    if ([...success, ...failure].some((op) => op.op === "rewrite")) return this.#rewriteTxn(request);
    // One write and no compare (or only the keyless writer's "not sealed" compare): one statement.
    if (success.length === 1 && failure.length === 0 && (this.#private || this.#db.inTransaction)) {
      const only = success[0]!;
      if (compares.length === 0) return this.#result(request, true, [this.#apply(only, request.updatedAt)]);
    }
    if (
      success.length === 1 && compares.length === 1 && failure.length === 0 && isNotSealedCompare(compares[0]!) &&
      success[0]!.op === "put" && success[0]!.space === "config" && !this.#db.inTransaction
    ) {
      const put = success[0] as { readonly key: string; readonly value: string };
      const write = (): TxnResult => {
        // Checked inside the statement, so no other process can seal between a check and the write.
        if (this.#sql.setConfigUnsealed.run(put.key, put.value, request.updatedAt).changes === 0) {
          return this.#result(request, false, [], [this.#metaEntry("sealing")]);
        }
        return this.#result(request, true, [true]);
      };
      // The statement is a transaction of its own; a revision read after it needs one around both.
      return request.wantRevision === false ? retryWhileBusy(this.#db, write) : this.#db.transaction(write);
    }
    if (
      success.length === 1 && compares.length === 1 && failure.length === 0 && isSealingCompare(compares[0]!) &&
      success[0]!.op === "put" && success[0]!.space === "config" && !this.#db.inTransaction
    ) {
      const put = success[0] as { readonly key: string; readonly value: string };
      const generation = (compares[0] as { readonly equals: number }).equals - 1;
      // A sealed write: the generation is checked inside the statement, so no other process can change the keys
      // between the check and the write. A private database needs no transaction for an exact revision.
      const write = (): TxnResult => {
        if (this.#db.prepare(SEALED_PUT_SQL).run(put.key, put.value, request.updatedAt, generation).changes === 0) {
          return this.#result(request, false, [], [this.#metaEntry("sealing")]);
        }
        return this.#result(request, true, [true]);
      };
      return this.#private ? write() : this.#db.transaction(write);
    }
    return this.#db.transaction((): TxnResult => {
      const current = compares.map((compare) => this.get(compare.space, compare.key));
      const succeeded = compares.every((compare, i) => holds(compare, current[i]));
      const operations = succeeded ? success : failure;
      if (operations.length === 0) return this.#result(request, succeeded, [], succeeded ? undefined : current);
      if (operations.length === 1) {
        // One write: its trigger takes the next revision by itself, no batch marker needed.
        const changed = [this.#apply(operations[0]!, request.updatedAt)];
        return this.#result(request, succeeded, changed, succeeded ? undefined : current);
      }
      this.#sql.batchBegin.run();
      const revision = Number(this.#sql.batchRevision.get()!.revision);
      const changed = operations.map((operation) => this.#apply(operation, request.updatedAt));
      this.#sql.batchEnd.run();
      return {
        succeeded,
        revision: changed.includes(true) ? revision : revision - 1,
        changed,
        ...(succeeded ? {} : { current }),
      };
    });
  }

  /** A transaction's result; its revision read only when the caller wants it (`wantRevision`). */
  #result(
    request: TxnRequest,
    succeeded: boolean,
    changed: readonly boolean[],
    current?: readonly (Entry | undefined)[],
  ): TxnResult {
    if (request.wantRevision === false) return new UnreadRevisionResult(succeeded, changed, current);
    const revision = this.revision();
    return current === undefined ? { succeeded, revision, changed } : { succeeded, revision, changed, current };
  }

  /**
   * A transaction with rewrites (re-sealing): a rewrite in place, so the triggers log nothing and no revision or
   * version moves. Besides rewrites it may write only meta keys (the sealing parameters and counts), which are real
   * changes and logged as such.
   */
  #rewriteTxn(request: TxnRequest): TxnResult {
    const operations = [...request.success, ...(request.failure ?? [])];
    if (operations.some((op) => op.op !== "rewrite" && op.space !== "meta")) {
      throw new TypeError("a transaction with rewrites writes nothing else but meta keys");
    }
    return this.#db.transaction((): TxnResult => {
      const current = request.compares.map((compare) => this.get(compare.space, compare.key));
      const succeeded = request.compares.every((compare, i) => holds(compare, current[i]));
      const ops = succeeded ? request.success : request.failure ?? [];
      if (ops.length === 0) {
        return { succeeded, revision: this.revision(), changed: [], ...(succeeded ? {} : { current }) };
      }
      this.#db.prepare(REWRITE_BEGIN_SQL).run();
      const changed = ops.map((op) => {
        if (op.op !== "rewrite") return this.#apply(op, request.updatedAt);
        if (op.revision === undefined) {
          if (this.#db.prepare(REWRITE_SQL.live).run(op.value, op.key, op.from).changes === 0) return false;
          if (this.#versioned) this.#db.prepare(REWRITE_SQL.logged).run(op.value, op.key, op.from);
          return true;
        }
        if (!this.#versioned) return false;
        return this.#db.prepare(REWRITE_SQL.past).run(op.value, op.key, op.revision, op.from).changes > 0;
      });
      this.#sql.batchEnd.run();
      return { succeeded, revision: this.revision(), changed, ...(succeeded ? {} : { current }) };
    });
  }

  pastEntries(
    _space: "config",
    options: { readonly cursor?: string | undefined; readonly limit?: number | undefined } = {},
  ): { readonly entries: readonly Entry<"config">[]; readonly cursor: string | undefined } {
    if (!this.#versioned) return { entries: [], cursor: undefined };
    const after = options.cursor === undefined ? 0 : Number(options.cursor);
    if (!Number.isSafeInteger(after)) throw new TypeError(`not a cursor of pastEntries(): '${options.cursor}'`);
    const limit = options.limit ?? PAST_PAGE;
    const rows = this.#db.prepare(REWRITE_SQL.pastPage).all(after, limit);
    const entries = rows.filter((row) => typeof row.value === "string").map((row) => logEntry("config", row));
    const last = rows.at(-1);
    return { entries, cursor: rows.length < limit || last === undefined ? undefined : String(last.seq) };
  }

  /** Past entries of a config key or module. The meta space keeps no past values on SQLite: always empty there. */
  history<S extends Space>(space: S, key: string, limit = 0): readonly Entry<S>[] {
    if (space === "meta") return [];
    return this.#sql.history.all(space, key, limit > 0 ? limit : -1).map((row) => logEntry(space, row));
  }

  watch(request: WatchRequest): AsyncIterableIterator<ChangeEvent> {
    if (this.#feed === undefined) {
      throw new RegistryError("watch() needs the revision schema: this file was opened readonly before it had one", {
        path: this.#db.path,
      });
    }
    return this.#feed.watch(request);
  }

  compact(revision: number): void {
    if (this.#feed === undefined) {
      throw new RegistryError("compact() needs the revision schema: this file was opened readonly before it had one", {
        path: this.#db.path,
      });
    }
    this.#feed.compact(revision);
  }

  compactedRevision(): number {
    return Number(this.#sql.compacted.get()?.compacted ?? 0);
  }

  /** Ends every watch and stops their notifier; the registry closes the connection. */
  close(): Promise<void> {
    return this.#feed?.close() ?? Promise.resolve();
  }

  [Symbol.dispose](): void {
    void this.close();
  }

  /** Runs one write; whether it changed a row. */
  #apply(operation: Operation, updatedAt: string): boolean {
    const sql = this.#sql;
    switch (operation.op) {
      case "put":
        if (operation.space === "config") {
          return sql.setConfig.run(operation.key, operation.value, updatedAt).changes > 0;
        }
        if (operation.space === "modules") {
          const m = operation.value;
          return sql.upsertModule.run(operation.key, m.name, m.version, m.kind, m.state, m.description, updatedAt)
            .changes > 0;
        }
        if (operation.key === SEALING_KEY) return writeSealing(this.#db, operation.value);
        if (operation.key === SEALS_KEY) return writeSeals(this.#db, operation.value);
        return this.#metaStatements(operation.key).put.run(operation.key, operation.value).changes > 0;
      case "rewrite":
        throw new TypeError("a rewrite runs in a transaction of rewrites"); // See #rewriteTxn.
      case "setState":
        return sql.setModuleState.run(operation.state, updatedAt, operation.key).changes > 0;
      case "delete":
        if (operation.space === "config") return sql.deleteConfig.run(operation.key).changes > 0;
        if (operation.space === "modules") return sql.deleteModule.run(operation.key).changes > 0;
        return this.#metaStatements(operation.key).delete.run(operation.key).changes > 0;
    }
  }

  /** The meta space's statements, for a write of `key`. */
  #metaStatements(key: string): { readonly [K in keyof typeof META_SQL]: Statement } {
    if (key === SEALING_KEY || key === SEALS_KEY) {
      throw new RegistryError(
        `the meta key '${key}' is the oxide_sealing table on SQLite: it cannot be deleted through the store`,
        { path: this.#db.path },
      );
    }
    if (this.#meta === undefined) {
      throw new RegistryError(
        "this file has no meta space (table oxide_meta): it was opened readonly before it had one",
        {
          path: this.#db.path,
        },
      );
    }
    return this.#meta;
  }

  /**
   * A meta key's entry: table `oxide_meta`, except `"sealing"` and `"sealing.seals"`, which exist once the
   * `oxide_sealing` table does (see `_sealing_sql.ts`). The version of `"sealing"` is the sealing generation + 1
   * (creation is version 1, every change of keys or scheme one more), so a version compare on it is the sealing
   * layer's generation check. A table without its row, or with a generation that is not a non-negative integer, is
   * version 1: still sealed.
   */
  #metaEntry(key: string): Entry<"meta"> | undefined {
    if (key === SEALING_KEY || key === SEALS_KEY) {
      if (this.#sql.sealingExists.get() === undefined) return undefined;
      let value = "";
      let version = 1;
      try {
        if (key === SEALS_KEY) {
          value = readSeals(this.#db) ?? "";
        } else {
          const found = readSealing(this.#db);
          value = found?.value ?? "";
          const generation = found?.generation;
          if (typeof generation === "number" && Number.isSafeInteger(generation) && generation >= 0) {
            version = generation + 1;
          }
        }
      } catch {
        // A table altered by hand: the sealing layer names the damage when it opens; here it is just sealed.
      }
      return { space: "meta", key, value, updatedAt: "", version, createRevision: 0, modRevision: 0 };
    }
    const row = this.#meta?.entry.getArray(key);
    return row === undefined ? undefined : liveEntry("meta", row);
  }
}

/** The result of a transaction run with `wantRevision: false`: no query ran for its revision. */
class UnreadRevisionResult implements TxnResult {
  readonly succeeded: boolean;
  readonly changed: readonly boolean[];
  readonly current?: readonly (Entry | undefined)[];

  constructor(succeeded: boolean, changed: readonly boolean[], current: readonly (Entry | undefined)[] | undefined) {
    this.succeeded = succeeded;
    this.changed = changed;
    if (current !== undefined) this.current = current;
  }

  get revision(): number {
    throw new Error("this transaction ran with wantRevision: false, so its revision was not read");
  }
}

/**
 * The statements named in `sql`, each prepared when first used: an open prepares only what it runs. A write statement
 * carries the revision triggers compiled into it (0.5 to 2 ms to prepare each), and a handle that only reads never
 * needs them. Once prepared, a name is a plain property holding the statement.
 */
function lazyStatements<T extends Readonly<Record<string, string>>>(
  db: Engine,
  sql: T,
): { readonly [K in keyof T]: Statement } {
  const statements: Record<string, Statement> = {};
  for (const [name, text] of Object.entries(sql)) {
    Object.defineProperty(statements, name, {
      configurable: true,
      enumerable: true,
      get(): Statement {
        const statement = db.prepare(text);
        Object.defineProperty(statements, name, { value: statement, enumerable: true });
        return statement;
      },
    });
  }
  return statements as { readonly [K in keyof T]: Statement };
}

/** The keyless writer's compare: the registry is not sealed (meta key `"sealing"` does not exist). */
function isNotSealedCompare(compare: Compare): boolean {
  return compare.space === "meta" && compare.key === "sealing" && compare.target === "version" &&
    compare.equals === 0 && (compare.result ?? "equal") === "equal";
}

/** A sealed writer's compare: the meta key `"sealing"` at the version (generation + 1) its value was sealed under. */
function isSealingCompare(compare: Compare): boolean {
  return compare.space === "meta" && compare.key === SEALING_KEY && compare.target === "version" &&
    compare.equals >= 1 && Number.isSafeInteger(compare.equals) && (compare.result ?? "equal") === "equal";
}

/** Whether a compare holds for the key's current entry. */
function holds(compare: Compare, entry: Entry | undefined): boolean {
  const result = compare.result ?? "equal";
  if (compare.target === "value") {
    if (entry === undefined || typeof entry.value !== "string") return result === "notEqual";
    return (entry.value === compare.equals) === (result === "equal");
  }
  const actual = entry === undefined ? 0 : compare.target === "version" ? entry.version : entry.modRevision;
  switch (result) {
    case "equal":
      return actual === compare.equals;
    case "notEqual":
      return actual !== compare.equals;
    case "greater":
      return actual > compare.equals;
    case "less":
      return actual < compare.equals;
  }
}

/** A log row's module fields. */
function logModuleFields(row: Row): ModuleFields {
  // As stored: another program may have stored other types; the registry checks them.
  return {
    name: row.name as string,
    version: (row.module_version ?? row.version) as string,
    kind: row.kind as string,
    state: row.state as string,
    description: row.description as string | null,
  };
}

/** The module fields of a live row read by index: name, version, kind, state, description from column `at` on. */
function moduleFields(row: SqlValue[], at: number): ModuleFields {
  // As stored: another program may have stored other types; the registry checks them.
  return {
    name: row[at] as string,
    version: row[at + 1] as string,
    kind: row[at + 2] as string,
    state: row[at + 3] as string,
    description: row[at + 4] as string | null,
  };
}

/**
 * An entry from a live row joined with its newest log row, read by index: `MODULE_COLUMNS` or `CONFIG_COLUMNS`
 * (the meta space's columns are laid out as config's), then `REVISION_COLUMNS`. A row with no log row (triggers
 * dropped) is version 1.
 */
function liveEntry<S extends Space>(space: S, row: SqlValue[]): Entry<S> {
  const modules = space === "modules";
  const log = modules ? 7 : 3;
  const logVersion = row[log];
  const logged = typeof logVersion === "number" && logVersion > 0;
  return {
    space,
    key: row[0] as string,
    value: (modules ? moduleFields(row, 1) : row[1]) as SpaceValue[S],
    updatedAt: row[modules ? 6 : 2] as string,
    version: logged ? logVersion : 1,
    createRevision: logged ? Number(row[log + 1]) : 0,
    modRevision: logged ? Number(row[log + 2]) : 0,
  };
}

/** An entry from a log row (a put). */
function logEntry<S extends Space>(space: S, row: Row): Entry<S> {
  return {
    space,
    key: row.key as string,
    value: (space === "modules" ? logModuleFields(row) : row.value) as SpaceValue[S],
    updatedAt: row.updated_at as string,
    version: Number(row.version),
    createRevision: Number(row.create_revision),
    modRevision: Number(row.mod_revision ?? row.revision),
  };
}

/** The smallest string greater than every string starting with `prefix` (UTF-8 byte order), or undefined. */
export function prefixEnd(prefix: string): string | undefined {
  const chars = [...prefix];
  while (chars.length > 0) {
    const last = chars.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return chars.join("") + String.fromCodePoint(next);
    }
  }
  return undefined;
}

/**
 * The SQL of a range: live rows at the current revision, else each key's newest log row at or below `revision`.
 * Exported for bench/compare.ts, whose raw contenders run the registry's own list SQL.
 */
export function rangeQuery(
  space: "config" | "modules",
  request: RangeRequest,
  revision: number | undefined,
  versioned: boolean,
): { sql: string; params: SqlValue[] } {
  const params: SqlValue[] = [];
  const where: string[] = [];
  const live = revision === undefined;
  const keyColumn = live ? (space === "config" ? "c.key" : "m.id") : "key";
  if (request.key !== undefined) {
    where.push(`${keyColumn} = ?`);
    params.push(request.key);
  } else if (request.prefix !== undefined && request.prefix !== "") {
    where.push(`${keyColumn} >= ?`);
    params.push(request.prefix);
    const end = prefixEnd(request.prefix);
    if (end !== undefined) {
      where.push(`${keyColumn} < ?`);
      params.push(end);
    }
  }
  if (request.after !== undefined) {
    where.push(`${keyColumn} ${request.reverse ? "<" : ">"} ?`);
    params.push(request.after);
  }
  const order = `ORDER BY key ${request.reverse ? "DESC" : "ASC"}`;
  const limit = request.limit !== undefined && request.limit > 0 ? `LIMIT ${Math.floor(request.limit) + 1}` : "";
  if (live) {
    const join = (table: string, key: string) => versioned ? NEWEST(table, key) : NO_LOG;
    const from = space === "config"
      ? `SELECT ${CONFIG_COLUMNS}, ${REVISION_COLUMNS} FROM config c LEFT JOIN ${join("config", "c.key")}`
      : `SELECT ${MODULE_COLUMNS}, ${REVISION_COLUMNS} FROM modules m LEFT JOIN ${join("modules", "m.id")}`;
    return { sql: `${from} ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""} ${order} ${limit}`, params };
  }
  where.unshift("space = ?", "revision <= ?");
  params.unshift(space, revision!);
  return {
    sql: `SELECT * FROM oxide_changes WHERE seq IN (SELECT max(seq) FROM oxide_changes WHERE ${
      where.join(" AND ")
    } GROUP BY key) AND type = 'put' ${order} ${limit}`,
    params,
  };
}
