/**
 * The storage engine interface: exactly what the registry and its extensions
 * need from SQLite, implemented once over our FFI binding (`ffi.ts`) and once
 * over `node:sqlite` (`node.ts`).
 *
 * @module
 */

/** A value SQLite stores: NULL, INTEGER (number, or bigint beyond 2^53), REAL, TEXT, BLOB. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/** A result row, keyed by column name. */
export type Row = Record<string, SqlValue>;

/** What a write statement reports. */
export interface RunResult {
  /** Rows inserted, updated or deleted by this statement. */
  changes: number;
  /** The rowid of the last inserted row on this connection. */
  lastInsertRowid: number | bigint;
}

/** Names of the engines. */
export type EngineName = "ffi" | "node";

/**
 * A prepared statement. Prepared once by {@linkcode Engine.prepare}, reused
 * for every call, finalized when the engine closes. Parameters are positional
 * (`?` or `?1`).
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
}

/**
 * An open SQLite connection. Every failure is a `RegistryError` carrying
 * SQLite's extended result code and message.
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
  /** Finalizes every statement and closes the connection. Safe to call twice. */
  close(): void;
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
}
