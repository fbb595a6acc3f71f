/**
 * The storage engine interface: exactly what the registry and its extensions
 * need from SQLite, implemented once over our FFI binding (`ffi.ts`) and once
 * over `node:sqlite` (`node.ts`).
 *
 * @module
 */

/**
 * A value SQLite stores: NULL, INTEGER (number, or bigint beyond 2^53), REAL, TEXT, BLOB.
 *
 * @example Every kind of value round-trips exactly
 * ```ts
 * import { type SqlValue, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * reg.db.exec("CREATE TABLE cells (v)");
 * const values: SqlValue[] = [null, 42, 2n ** 60n, 1.5, "héllo", new Uint8Array([0, 255])];
 * for (const v of values) reg.db.prepare("INSERT INTO cells (v) VALUES (?)").run(v);
 * const back = reg.db.prepare("SELECT v FROM cells ORDER BY rowid").all().map((row) => row.v);
 * assert.deepEqual(back, values);
 * ```
 */
export type SqlValue = null | number | bigint | string | Uint8Array;

/**
 * A result row, keyed by column name.
 *
 * @example
 * ```ts
 * import { type Row, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * const row: Row | undefined = reg.db.prepare("SELECT key, value FROM config WHERE key = ?").get("max_threads");
 * assert.deepEqual(row, { key: "max_threads", value: "8" });
 * ```
 */
export type Row = Record<string, SqlValue>;

/**
 * What a write statement reports.
 *
 * @example
 * ```ts
 * import { type RunResult, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * reg.db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
 * const insert: RunResult = reg.db.prepare("INSERT INTO notes (body) VALUES (?)").run("first");
 * assert.deepEqual(insert, { changes: 1, lastInsertRowid: 1 });
 * reg.db.prepare("INSERT INTO notes (body) VALUES (?)").run("second");
 * assert.equal(reg.db.prepare("UPDATE notes SET body = upper(body)").run().changes, 2);
 * ```
 */
export interface RunResult {
  /** Rows inserted, updated or deleted by this statement. */
  changes: number;
  /** The rowid of the last inserted row on this connection. */
  lastInsertRowid: number | bigint;
}

/**
 * Names of the engines.
 *
 * @example
 * ```ts
 * import { type EngineName, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const names: EngineName[] = ["ffi", "node"];
 * for (const engine of names) {
 *   await using reg = await StateRegistry.inMemory({ engine });
 *   assert.equal(reg.engine, engine);
 *   assert.equal(reg.db.name, engine);
 * }
 * ```
 */
export type EngineName = "ffi" | "node";

/**
 * A prepared statement. Prepared once by {@linkcode Engine.prepare}, reused
 * for every call, finalized when the engine closes. Parameters are positional
 * (`?` or `?1`).
 *
 * @example
 * ```ts
 * import { type Statement, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const sum: Statement = reg.db.prepare("SELECT ?1 + ?2 AS total");
 * assert.equal(sum.sql, "SELECT ?1 + ?2 AS total");
 * assert.equal(sum.get(2, 3)?.total, 5);
 * assert.deepEqual(sum.all(1, 1), [{ total: 2 }]);
 * assert.equal(sum.value(4, 5), 9); // The first column of the first row.
 * assert.deepEqual(reg.db.prepare("SELECT 1 AS a, 'x' AS a").allArrays(), [[1, "x"]]); // Rows by column index.
 * assert.equal(reg.db.prepare("SELECT ?1 + ?2 AS total"), sum); // Prepared once, cached by SQL text.
 * ```
 */
export interface Statement {
  /** The SQL text it was prepared from. */
  readonly sql: string;
  /**
   * Runs the statement to completion.
   *
   * @param params Positional parameters.
   * @returns How many rows changed and the last inserted rowid.
   */
  run(...params: SqlValue[]): RunResult;
  /**
   * Runs the statement and returns its first row.
   *
   * @param params Positional parameters.
   * @returns The first row, or `undefined` when there is none.
   */
  get(...params: SqlValue[]): Row | undefined;
  /**
   * Runs the statement and returns every row.
   *
   * @param params Positional parameters.
   * @returns All rows, in the order SQLite yields them.
   */
  all(...params: SqlValue[]): Row[];
  /**
   * Runs the statement and returns the first column of its first row: the read of one value, with no row object.
   *
   * @param params Positional parameters.
   * @returns The value (`null` for SQL NULL), or `undefined` when there is no row (or no column).
   */
  value(...params: SqlValue[]): SqlValue | undefined;
  /**
   * Runs the statement and returns its first row as an array, in column order (duplicate names kept apart).
   *
   * @param params Positional parameters.
   * @returns The row's values, or `undefined` when there is none.
   */
  getArray(...params: SqlValue[]): SqlValue[] | undefined;
  /**
   * Runs the statement and returns every row as an array, in column order: what `all()` returns, without an object
   * per row.
   *
   * @param params Positional parameters.
   * @returns All rows, in the order SQLite yields them.
   */
  allArrays(...params: SqlValue[]): SqlValue[][];
}

/**
 * An open SQLite connection. Every failure is a `RegistryError` carrying
 * SQLite's extended result code and message.
 *
 * @example A transaction that throws leaves nothing behind
 * ```ts
 * import { type Engine, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const db: Engine = reg.db;
 * db.exec("CREATE TABLE jobs (name TEXT NOT NULL)");
 * const add = db.prepare("INSERT INTO jobs (name) VALUES (?)");
 * function failHalfway(): void {
 *   add.run("half-done");
 *   throw new Error("abort");
 * }
 * assert.throws(() => db.transaction(failHalfway), /abort/); // Rolled back.
 * db.transaction(() => add.run("done"));
 * assert.deepEqual(db.prepare("SELECT name FROM jobs").all(), [{ name: "done" }]);
 * assert.equal(db.inTransaction, false);
 * ```
 */
export interface Engine extends Disposable {
  /** Which implementation this is. */
  readonly name: EngineName;
  /** The database path, or `":memory:"`. */
  readonly path: string;
  /** The version of the SQLite library in use, e.g. `"3.40.1"`. */
  readonly sqliteVersion: string;
  /** `false` once {@linkcode Engine.close} has run. */
  readonly isOpen: boolean;
  /** Whether a transaction is open on this connection. */
  readonly inTransaction: boolean;
  /**
   * Runs one or more SQL statements that take no parameters and return nothing.
   *
   * @param sql SQL text, statements separated by `;`.
   */
  exec(sql: string): void;
  /**
   * Returns the prepared statement for `sql`, preparing it on first use. The
   * same text returns the same statement for the connection's lifetime.
   *
   * @param sql One SQL statement.
   * @returns The cached prepared statement.
   */
  prepare(sql: string): Statement;
  /**
   * Runs `fn` inside `BEGIN IMMEDIATE` ... `COMMIT`, rolling back if it throws.
   * Nested calls use a savepoint. `fn` must be synchronous.
   *
   * @param fn The work; its return value is returned.
   * @returns What `fn` returned.
   */
  transaction<T>(fn: () => T): T;
  /**
   * Copies the whole database into a new file at `dest` with SQLite's online
   * backup API, as one consistent snapshot: a file database is read through a
   * private connection holding one read transaction, so writers (in this and
   * other processes) go on meanwhile and none of their later commits appears
   * half in the copy. Used by `StateRegistry.backup`, which adds the checks on
   * `dest` and the atomic move into place.
   *
   * @param dest Path of the file to write; it must not exist.
   * @param options Pages per step and a progress callback.
   * @returns When the copy is complete and closed.
   */
  backup(dest: string, options?: EngineBackupOptions): Promise<void>;
  /** Finalizes every statement and closes the connection. Safe to call twice. */
  close(): void;
}

/** Options of {@linkcode Engine.backup}. */
export interface EngineBackupOptions {
  /** Pages copied per step; between steps the event loop runs. Default 256. */
  pagesPerStep?: number | undefined;
  /** Called after every step. */
  onProgress?: ((progress: BackupProgress) => void) | undefined;
}

/**
 * How far a backup is, reported after each step (the shape `node:sqlite`'s `backup()` reports).
 *
 * @example
 * ```ts
 * import { type BackupProgress, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await using reg = await StateRegistry.connect(`${dir}/registry.db`);
 * await reg.setConfig("greeting", "hi");
 * const seen: BackupProgress[] = [];
 * await reg.backup(`${dir}/copy.db`, { onProgress: (p) => seen.push(p) });
 * assert.equal(seen.at(-1)?.remainingPages, 0);
 * assert.ok(seen.every((p) => p.totalPages > 0));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface BackupProgress {
  /** Pages in the database being copied. */
  totalPages: number;
  /** Pages still to copy. */
  remainingPages: number;
}

/** How an engine opens its database. */
export interface EngineOpenOptions {
  /** File path, or `":memory:"` for a private in-memory database. */
  path: string;
  /** FFI engine only: the SQLite library to load. */
  libPath?: string | undefined;
  /**
   * Node engine: the busy timeout in milliseconds, set as the connection opens, since its first statement (reading
   * the SQLite version) already loads the schema and can meet another process's lock. Default 5000.
   */
  busyTimeoutMs?: number | undefined;
  /** Open the file read-only (never created, never written). Default `false`. */
  readOnly?: boolean | undefined;
}
