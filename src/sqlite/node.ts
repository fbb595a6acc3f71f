/**
 * The node engine: the `node:sqlite` module built into Deno. Needs no
 * `--allow-ffi`, only read/write permission on the database path.
 *
 * `node:sqlite` does not always report result codes; where it does not, this
 * engine infers SQLite's primary code from the message, and it cuts text at an embedded NUL when
 * reading it back (the registry refuses such text before it is written).
 *
 * @module
 */
// `backup` through the namespace: a named import of an export an older Deno lacks would fail at link time, before the
// registry's Deno version check could say which version is needed.
import * as nodeSqlite from "node:sqlite";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { RegistryError } from "../errors.ts";
import type {
  BackupProgress,
  Engine,
  EngineBackupOptions,
  EngineOpenOptions,
  Row,
  RunResult,
  SqlValue,
  Statement,
} from "./engine.ts";
import { databaseFile } from "./_database_file.ts";
import { claimFile } from "./_file_owners.ts";
import { checkStatement, scanSql } from "./_sql_text.ts";
import { runTransaction } from "./_transaction.ts";
import { checkPagesPerStep, closedError } from "./ffi.ts";

/** SQLite's fixed messages (`sqlite3_errstr`) and the primary codes they stand for. */
const MESSAGE_CODES: readonly (readonly [string, number])[] = [
  ["database is locked", 5],
  ["database table is locked", 6],
  ["attempt to write a readonly database", 8],
  ["disk I/O error", 10],
  ["database disk image is malformed", 11],
  ["database or disk is full", 13],
  ["unable to open database file", 14],
  ["constraint failed", 19],
  ["file is not a database", 26],
];

/** An open connection through `node:sqlite`. */
export class NodeEngine implements Engine {
  readonly name = "node" as const;
  readonly path: string;
  readonly sqliteVersion: string;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, NodeStatement>();
  #open = true;
  readonly #release: () => void;
  readonly #busyTimeoutMs: number;
  readonly #readOnly: boolean;

  /**
   * Opens (creating if missing) the database at `options.path`.
   *
   * @throws {RegistryError} when the file cannot be opened.
   */
  constructor(options: EngineOpenOptions) {
    this.path = options.path;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.#readOnly = options.readOnly === true;
    // The guard's key is the ffi engine's resolved path. node:sqlite checks permissions and opens the same path
    // itself (Deno resolves it, and never reads it as a URI), so it gets the caller's: its messages name that.
    this.#release = claimFile(databaseFile(options.path), "node");
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(options.path, {
        timeout: options.busyTimeoutMs ?? 5000,
        // As the system libsqlite3 the ffi engine loads: "abc" falls back to a string literal. One SQL dialect.
        enableDoubleQuotedStringLiterals: true,
        readOnly: options.readOnly === true,
      });
      this.sqliteVersion = bundledVersion();
      // node:sqlite allows ATTACH (and VACUUM INTO) under --allow-all only: never, on both engines.
      (db as DatabaseSync & { limits: { attach: number } }).limits.attach = 0;
    } catch (error) {
      db?.close();
      this.#release();
      throw nodeError(error, options.path);
    }
    this.#db = db;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  get inTransaction(): boolean {
    return this.#open && this.#db.isTransaction;
  }

  exec(sql: string): void {
    this.assertOpen();
    try {
      this.#db.exec(sql);
    } catch (error) {
      throw nodeError(error, this.path);
    }
  }

  prepare(sql: string): Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      this.assertOpen();
      const shape = scanSql(sql);
      checkStatement(sql, shape);
      let inner: StatementSync;
      try {
        inner = this.#db.prepare(sql);
      } catch (error) {
        throw nodeError(error, this.path);
      }
      inner.setReadBigInts(true);
      statement = new NodeStatement(this, inner, sql, shape.parameters);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  transaction<T>(fn: () => T): T {
    return runTransaction(this, fn);
  }

  async backup(dest: string, options: EngineBackupOptions = {}): Promise<void> {
    this.assertOpen();
    const rate = checkPagesPerStep(options.pagesPerStep);
    const memory = this.path === ":memory:";
    let source: DatabaseSync = this.#db;
    let releaseSource = () => {};
    const releaseDest = claimFile(databaseFile(dest), "node");
    try {
      if (!memory) {
        releaseSource = claimFile(databaseFile(this.path), "node");
        source = new DatabaseSync(databaseFile(this.path), { timeout: this.#busyTimeoutMs, readOnly: this.#readOnly });
        // One read transaction for the whole copy: one snapshot (see Engine.backup).
        source.exec("BEGIN");
        source.prepare("SELECT count(*) AS n FROM sqlite_master").get();
      }
      const onProgress = options.onProgress;
      let totalPages = 0;
      // Resolves with the page count (typed void).
      const pages: unknown = await nodeSqlite.backup(source, databaseFile(dest), {
        // A private in-memory database is copied in one step: nothing else may change it meanwhile.
        rate: memory ? 2 ** 31 - 1 : rate,
        progress: (progress: BackupProgress) => {
          totalPages = progress.totalPages;
          onProgress?.(progress);
        },
      });
      // node:sqlite reports the steps before the last; the last one is reported here.
      onProgress?.({ totalPages: typeof pages === "number" ? pages : totalPages, remainingPages: 0 });
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new RegistryError(`backup into '${dest}' needs --allow-read and --allow-write for it: ${error.message}`, {
          path: dest,
          cause: error,
        });
      }
      const wrapped = nodeError(error, dest);
      throw wrapped instanceof RegistryError
        ? new RegistryError(`backup into '${dest}' failed: ${wrapped.message}`, {
          path: dest,
          cause: error,
          ...(wrapped.code === undefined ? {} : { code: wrapped.code }),
        })
        : wrapped;
    } finally {
      if (source !== this.#db) source.close(); // Ends its read transaction.
      releaseSource();
      releaseDest();
    }
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#statements.clear();
    this.#db.close(); // Finalizes every statement it prepared.
    this.#release();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Throws when the connection is closed. */
  assertOpen(): void {
    if (!this.#open) throw closedError(this.path);
  }
}

let version: string | undefined;

/**
 * The version of the SQLite inside Deno, asked once of a private in-memory
 * database: asking the file's own connection would read the file (its schema,
 * and for a WAL file create the -wal and -shm files) before the caller has
 * checked it may write there.
 */
function bundledVersion(): string {
  if (version === undefined) {
    const memory = new DatabaseSync(":memory:");
    try {
      version = String(memory.prepare("SELECT sqlite_version() AS v").get()!.v);
    } finally {
      memory.close();
    }
  }
  return version;
}

class NodeStatement implements Statement {
  readonly sql: string;
  readonly #engine: NodeEngine;
  readonly #inner: StatementSync;
  readonly #parameterCount: number;
  /**
   * The result's column names, when rows come back as arrays: `node:sqlite` builds an array faster than an object,
   * and the row object is built here with the names read once. Only a `*` in the SQL lets another connection's
   * schema change alter the columns; such statements keep `node:sqlite`'s own row objects (`undefined` here).
   */
  readonly #columns: readonly string[] | undefined;

  constructor(engine: NodeEngine, inner: StatementSync, sql: string, parameterCount: number) {
    this.#engine = engine;
    this.#inner = inner;
    this.sql = sql;
    this.#parameterCount = parameterCount;
    const arrays = inner as StatementSync & { setReturnArrays?: (enabled: boolean) => void };
    if (!sql.includes("*") && typeof arrays.setReturnArrays === "function") {
      arrays.setReturnArrays(true);
      this.#columns = inner.columns().map((column) => column.name);
    }
  }

  /**
   * Checks the count (`node:sqlite` binds missing parameters as NULL) and binds integral numbers as INTEGER
   * (`node:sqlite` binds every number as REAL, so 5 would be stored as 5.0, and as '5.0' in a TEXT column): the
   * same storage classes as the FFI engine.
   */
  #params(params: SqlValue[]): SqlValue[] {
    this.#engine.assertOpen();
    if (params.length !== this.#parameterCount) {
      throw new RangeError(
        `statement takes ${this.#parameterCount} parameter(s), got ${params.length}: '${this.sql}'`,
      );
    }
    for (let i = 0; i < params.length; i++) {
      const value = params[i];
      if (typeof value === "number" && Number.isSafeInteger(value) && !Object.is(value, -0)) {
        params[i] = BigInt(value);
      }
    }
    return params;
  }

  run(...params: SqlValue[]): RunResult {
    const bound = this.#params(params);
    try {
      const result = this.#inner.run(...bound);
      return {
        changes: Number(result.changes),
        lastInsertRowid: toNumberIfSafe(result.lastInsertRowid),
      };
    } catch (error) {
      throw nodeError(error, this.#engine.path);
    }
  }

  get(...params: SqlValue[]): Row | undefined {
    if (this.#columns === undefined) {
      const { rows, names } = this.#readStar(params, true);
      return rows[0] === undefined ? undefined : arrayToRow(names, rows[0]);
    }
    const bound = this.#params(params);
    let row;
    try {
      row = this.#inner.get(...bound);
    } catch (error) {
      throw nodeError(error, this.#engine.path);
    }
    return row === undefined ? undefined : arrayToRow(this.#columns, row as unknown as SqlValue[]);
  }

  value(...params: SqlValue[]): SqlValue | undefined {
    const row = this.getArray(...params);
    return row === undefined || row.length === 0 ? undefined : row[0];
  }

  getArray(...params: SqlValue[]): SqlValue[] | undefined {
    if (this.#columns === undefined) return this.#readStar(params, true).rows[0];
    const bound = this.#params(params);
    let row;
    try {
      row = this.#inner.get(...bound);
    } catch (error) {
      throw nodeError(error, this.#engine.path);
    }
    return row === undefined ? undefined : normalizeArray(row as unknown as SqlValue[]);
  }

  allArrays(...params: SqlValue[]): SqlValue[][] {
    if (this.#columns === undefined) return this.#readStar(params, false).rows;
    const bound = this.#params(params);
    let rows;
    try {
      rows = this.#inner.all(...bound);
    } catch (error) {
      throw nodeError(error, this.#engine.path);
    }
    for (let i = 0; i < rows.length; i++) normalizeArray(rows[i] as unknown as SqlValue[]);
    return rows as unknown as SqlValue[][];
  }

  all(...params: SqlValue[]): Row[] {
    if (this.#columns === undefined) {
      const { rows, names } = this.#readStar(params, false);
      return rows.map((row) => arrayToRow(names, row));
    }
    const bound = this.#params(params);
    let rows;
    try {
      rows = this.#inner.all(...bound);
    } catch (error) {
      throw nodeError(error, this.#engine.path);
    }
    const columns = this.#columns;
    const out: Row[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = arrayToRow(columns, rows[i] as unknown as SqlValue[]);
    return out;
  }

  /**
   * Reads a statement with a `*` (its columns may change when another connection alters the schema) as arrays, with
   * the column names of this very read. `node:sqlite` sizes a row before the first step, where SQLite re-prepares the
   * statement for a changed schema: the first read after such a change comes back in the old shape. A `SELECT` is
   * then read again (a read can be repeated; a write with `RETURNING *` is not).
   */
  #readStar(params: SqlValue[], first: boolean): { rows: SqlValue[][]; names: string[] } {
    const bound = this.#params(params);
    const inner = this.#inner as StatementSync & { setReturnArrays?: (enabled: boolean) => void };
    const read = (): SqlValue[][] => {
      let rows: unknown[];
      try {
        if (typeof inner.setReturnArrays !== "function") {
          // An older node:sqlite without arrays: the objects' values, in column order.
          const objects = first ? [inner.get(...bound)].filter((row) => row !== undefined) : inner.all(...bound);
          return objects.map((row) => Object.values(row as Row));
        }
        inner.setReturnArrays(true);
        try {
          rows = first ? [inner.get(...bound)].filter((row) => row !== undefined) : inner.all(...bound);
        } finally {
          inner.setReturnArrays(false);
        }
      } catch (error) {
        throw nodeError(error, this.#engine.path);
      }
      return rows as SqlValue[][];
    };
    let rows = read();
    let names = inner.columns().map((column) => column.name);
    if (rows.length > 0 && rows[0]!.length !== names.length && this.#rereadable) {
      rows = read();
      names = inner.columns().map((column) => column.name);
    }
    for (const row of rows) normalizeArray(row);
    return { rows, names };
  }

  /** Whether the statement is a `SELECT` (reading it twice changes nothing). */
  get #rereadable(): boolean {
    return /^\s*SELECT\b/i.test(this.sql);
  }
}

/** A row read as an array, as an object keyed by the statement's column names (safe integers as numbers). */
function arrayToRow(columns: readonly string[], values: SqlValue[]): Row {
  const row: Row = {};
  for (let i = 0; i < columns.length; i++) {
    const value = values[i]!;
    row[columns[i]!] = typeof value === "bigint" ? toNumberIfSafe(value) : value;
  }
  return row;
}

/** A row read as an array, with safe integers as numbers, in place. */
function normalizeArray(values: SqlValue[]): SqlValue[] {
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (typeof value === "bigint") values[i] = toNumberIfSafe(value);
  }
  return values;
}

function toNumberIfSafe(value: number | bigint): number | bigint {
  return typeof value === "bigint" && value <= Number.MAX_SAFE_INTEGER &&
      value >= Number.MIN_SAFE_INTEGER
    ? Number(value)
    : value;
}

function nodeError(error: unknown, path: string): Error {
  if (
    !(error instanceof Error) ||
    (error as { code?: string }).code !== "ERR_SQLITE_ERROR"
  ) {
    // Misuse of an argument (a value that cannot be bound) keeps its own type.
    if (error instanceof TypeError && /too large/.test(error.message)) {
      return new RangeError(`a parameter is outside SQLite's 64-bit integer range: ${error.message}`);
    }
    if (error instanceof TypeError || error instanceof RangeError) return error;
    return new RegistryError(String((error as Error)?.message ?? error), {
      path,
      cause: error,
    });
  }
  const code = MESSAGE_CODES.find(([text]) => error.message.includes(text))?.[1] ?? 1;
  return new RegistryError(error.message, { code, path, cause: error });
}
