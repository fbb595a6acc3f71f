/**
 * The FFI engine: our own binding to the system libsqlite3 through
 * `Deno.dlopen`. Needs `--allow-ffi`.
 *
 * @module
 */
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
import {
  BACKUP_SYMBOLS,
  type Sqlite3,
  type Sqlite3Text,
  SQLITE_BLOB,
  SQLITE_BUSY,
  SQLITE_DONE,
  SQLITE_FLOAT,
  SQLITE_INTEGER,
  SQLITE_LIMIT_ATTACHED,
  SQLITE_LOCKED,
  SQLITE_OK,
  SQLITE_OPEN_CREATE,
  SQLITE_OPEN_EXRESCODE,
  SQLITE_OPEN_NOMUTEX,
  SQLITE_OPEN_READONLY,
  SQLITE_OPEN_READWRITE,
  SQLITE_PREPARE_PERSISTENT,
  SQLITE_ROW,
  SQLITE_STMTSTATUS_REPREPARE,
  SQLITE_TEXT,
  SQLITE_TRANSIENT,
  TEXT_SYMBOLS,
} from "./_ffi_symbols.ts";
import { databaseFile } from "./_database_file.ts";
import { claimFile } from "./_file_owners.ts";
import { loadSqlite, loadSqliteGroup } from "./_library.ts";
import { checkStatement, scanSql } from "./_sql_text.ts";
import { runTransaction } from "./_transaction.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAX_INT64 = 2n ** 63n - 1n;
const MIN_INT64 = -(2n ** 63n);

/** Bound text is encoded here first; SQLITE_TRANSIENT makes SQLite copy it, so one buffer serves every bind. */
let scratch = new Uint8Array(4096);
const SHORT_TEXT = 256; // <= scratch's initial length, so the ASCII copy never needs to grow it.

function encodeToScratch(text: string): number {
  const length = text.length;
  // Short ASCII text (ids, names, timestamps, most JSON) is copied by hand: TextEncoder's call costs more.
  if (length <= SHORT_TEXT) {
    let i = 0;
    for (; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) break;
      scratch[i] = code;
    }
    if (i === length) return length;
  }
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  if (length * 3 > scratch.length) scratch = new Uint8Array(length * 3);
  return encoder.encodeInto(text, scratch).written;
}

/** The most scratch memory kept between binds; a larger buffer (one big value) is dropped once SQLite copied it. */
const MAX_KEPT_SCRATCH = 1024 * 1024;

/** After a bind: lets a buffer grown for one large value go (a 64 MiB value would keep 192 MiB alive). */
function shrinkScratch(): void {
  if (scratch.length > MAX_KEPT_SCRATCH) scratch = new Uint8Array(4096);
}

/**
 * libsqlite3 opens files itself, out of reach of Deno's permission checks, so the engine checks them: the same
 * `--allow-read` and `--allow-write` on the database path that the node engine needs.
 */
function checkFilePermissions(file: string, readOnly: boolean, path: string): void {
  if (file === ":memory:") return;
  for (const name of readOnly ? ["read"] as const : ["read", "write"] as const) {
    if (Deno.permissions.querySync({ name, path: file }).state !== "granted") {
      const resolved = databaseFile(path) === path ? "" : ` (resolved: '${file}')`;
      throw new RegistryError(
        `the "ffi" engine needs --allow-${name} for '${path}'${resolved} (libsqlite3 opens the file itself, ` +
          `so the registry checks Deno's permissions for it)`,
        { path },
      );
    }
  }
}

function cString(text: string): Uint8Array {
  return encoder.encode(`${text}\0`);
}

/** An open connection through libsqlite3. */
export class FfiEngine implements Engine {
  readonly name = "ffi" as const;
  readonly path: string;
  readonly sqliteVersion: string;
  readonly #lib: Sqlite3;
  #db: Deno.PointerValue;
  readonly #statements = new Map<string, FfiStatement>();
  readonly #out = new BigUint64Array(1);
  readonly #release: () => void;
  readonly #libPath: string | undefined;
  readonly #busyTimeoutMs: number;
  readonly #readOnly: boolean;
  /** The `sqlite3_str` that `all()` gathers text in; created on first use, freed by `close()`. */
  #text: Deno.PointerValue = null;
  /** Its symbols, loaded with the first `all()`. */
  #textLib: Sqlite3Text | undefined;

  /**
   * Opens (creating if missing) the database at `options.path`.
   *
   * @throws {RegistryError} when the library cannot be loaded or the file cannot be opened.
   */
  constructor(options: EngineOpenOptions) {
    this.#lib = loadSqlite(options.libPath);
    this.#libPath = options.libPath;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.#readOnly = options.readOnly === true;
    this.path = options.path;
    this.sqliteVersion = Deno.UnsafePointerView.getCString(
      this.#lib.sqlite3_libversion()!,
    );
    const flags = (options.readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    // Never a URI (no SQLITE_OPEN_URI, and an absolute path is never read as one): one resolved path for the
    // permission check, the guard and the open.
    const file = databaseFile(options.path);
    checkFilePermissions(file, options.readOnly === true, options.path);
    this.#release = claimFile(file, "ffi");
    const rc = this.#lib.sqlite3_open_v2(cString(file), this.#out, flags, null);
    this.#db = Deno.UnsafePointer.create(this.#out[0]!);
    if (rc !== SQLITE_OK) {
      const error = this.error(rc);
      if (this.#db !== null) this.#lib.sqlite3_close_v2(this.#db);
      this.#db = null;
      this.#release();
      throw error;
    }
    // As node:sqlite does without --allow-all: no ATTACH and no VACUUM INTO (both open files libsqlite3 chooses, out
    // of reach of the permission check). One dialect and one set of permissions on both engines.
    this.#lib.sqlite3_limit(this.#db, SQLITE_LIMIT_ATTACHED, 0);
  }

  get isOpen(): boolean {
    return this.#db !== null;
  }

  get inTransaction(): boolean {
    return this.#db !== null &&
      this.#lib.sqlite3_get_autocommit(this.#db) === 0;
  }

  /** The raw `sqlite3*` handle, for callers who bind more of the C API themselves. */
  get unsafeHandle(): Deno.PointerValue {
    return this.#db;
  }

  /** Whether the main database was opened read-only (e.g. the file is write-protected). */
  get readonly(): boolean {
    return this.#lib.sqlite3_db_readonly(this.#handle(), cString("main")) === 1;
  }

  exec(sql: string): void {
    const rc = this.#lib.sqlite3_exec(
      this.#handle(),
      cString(sql),
      null,
      null,
      null,
    );
    if (rc !== SQLITE_OK) throw this.error(rc);
  }

  prepare(sql: string): Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      checkStatement(sql, scanSql(sql));
      const bytes = encoder.encode(sql);
      const rc = this.#lib.sqlite3_prepare_v3(
        this.#handle(),
        bytes.length === 0 ? scratch : bytes,
        bytes.length,
        SQLITE_PREPARE_PERSISTENT,
        this.#out,
        null,
      );
      if (rc !== SQLITE_OK) throw this.error(rc);
      const handle = Deno.UnsafePointer.create(this.#out[0]!);
      if (handle === null) {
        throw new RangeError(`prepare() needs one SQL statement, got '${sql}'`);
      }
      statement = new FfiStatement(this, this.#lib, handle, sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  transaction<T>(fn: () => T): T {
    return runTransaction(this, fn);
  }

  async backup(dest: string, options: EngineBackupOptions = {}): Promise<void> {
    const db = this.#handle();
    const pagesPerStep = checkPagesPerStep(options.pagesPerStep);
    const destFile = databaseFile(dest);
    checkFilePermissions(destFile, false, dest);
    const lib = this.#lib;
    const backupLib = loadSqliteGroup(lib, BACKUP_SYMBOLS);
    // A private in-memory database has no second connection: it is copied from this one, in one step, so nothing
    // else can run on it meanwhile.
    const memory = this.path === ":memory:";
    const source = memory
      ? undefined
      : new FfiEngine({ path: this.path, libPath: this.#libPath, readOnly: this.#readOnly });
    const releaseDest = claimFile(destFile, "ffi");
    let destDb: Deno.PointerValue = null;
    let backup: Deno.PointerValue = null;
    let failure: { error: unknown } | undefined;
    try {
      if (source !== undefined) {
        source.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
        // One read transaction for the whole copy: one snapshot, so other processes' commits neither restart the
        // copy nor appear in it; in WAL mode they go on meanwhile.
        source.exec("BEGIN");
        source.prepare("SELECT count(*) AS n FROM sqlite_master").get();
      }
      const flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
      const rc = lib.sqlite3_open_v2(cString(destFile), this.#out, flags, null);
      destDb = Deno.UnsafePointer.create(this.#out[0]!);
      if (rc !== SQLITE_OK) throw backupError(lib, destDb, rc, dest);
      backup = backupLib.sqlite3_backup_init(
        destDb,
        cString("main"),
        source === undefined ? db : source.#handle(),
        cString("main"),
      );
      if (backup === null) throw backupError(lib, destDb, lib.sqlite3_extended_errcode(destDb!), dest);
      await this.#stepBackup(backup, destDb, dest, memory ? -1 : pagesPerStep, options.onProgress);
    } catch (error) {
      failure = { error };
    }
    if (backup !== null) {
      const rc = backupLib.sqlite3_backup_finish(backup);
      if (rc !== SQLITE_OK) failure ??= { error: backupError(lib, destDb, rc, dest) };
    }
    if (destDb !== null) lib.sqlite3_close_v2(destDb);
    releaseDest();
    source?.close(); // Ends its read transaction.
    if (failure !== undefined) throw failure.error;
  }

  async #stepBackup(
    backup: NonNullable<Deno.PointerValue>,
    destDb: Deno.PointerValue,
    dest: string,
    step: number,
    onProgress: ((progress: BackupProgress) => void) | undefined,
  ): Promise<void> {
    const lib = this.#lib;
    const backupLib = loadSqliteGroup(lib, BACKUP_SYMBOLS);
    for (let waited = 0;;) {
      const rc = backupLib.sqlite3_backup_step(backup, step);
      const primary = rc & 0xff;
      if (rc === SQLITE_OK || rc === SQLITE_DONE) {
        waited = 0;
        onProgress?.({
          totalPages: backupLib.sqlite3_backup_pagecount(backup),
          remainingPages: backupLib.sqlite3_backup_remaining(backup),
        });
        if (rc === SQLITE_DONE) return;
        await new Promise((resolve) => setTimeout(resolve, 0)); // Let the event loop run between steps.
      } else if ((primary === SQLITE_BUSY || primary === SQLITE_LOCKED) && waited < this.#busyTimeoutMs) {
        // Only the destination can be locked (the source is read in its own snapshot): another program opened it.
        waited += 10;
        await new Promise((resolve) => setTimeout(resolve, 10));
      } else {
        throw backupError(lib, destDb, rc, dest);
      }
    }
  }

  close(): void {
    if (this.#db === null) return;
    for (const statement of this.#statements.values()) statement.finalize();
    this.#statements.clear();
    if (this.#text !== null) {
      this.#textLib!.sqlite3_free(this.#textLib!.sqlite3_str_finish!(this.#text));
      this.#text = null;
    }
    const rc = this.#lib.sqlite3_close_v2(this.#db);
    const error = rc === SQLITE_OK ? undefined : this.error(rc);
    this.#db = null;
    this.#release();
    if (error !== undefined) throw error;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Changes and last rowid of the most recent write. */
  runResult(): RunResult {
    const db = this.#handle();
    const rowid = this.#lib.sqlite3_last_insert_rowid(db) as bigint;
    return {
      changes: this.#lib.sqlite3_changes(db),
      lastInsertRowid: toNumberIfSafe(rowid),
    };
  }

  /** A `RegistryError` for result code `rc`, with SQLite's message and extended code. */
  error(rc: number): RegistryError {
    const db = this.#db;
    const code = db === null ? rc : this.#lib.sqlite3_extended_errcode(db);
    const pointer = db === null ? this.#lib.sqlite3_errstr(rc) : this.#lib.sqlite3_errmsg(db);
    const message = pointer === null ? `SQLite result code ${rc}` : Deno.UnsafePointerView.getCString(pointer);
    return sqliteError(message, code, this.path);
  }

  #handle(): NonNullable<Deno.PointerValue> {
    if (this.#db === null) throw closedError(this.path);
    return this.#db;
  }

  /** Throws when the connection is closed. */
  assertOpen(): void {
    this.#handle();
  }

  /** The connection's text-gathering `sqlite3_str`, or `null` when the library lacks the `sqlite3_str` API. */
  textBuffer(): Deno.PointerValue {
    if (this.#text === null) {
      const textLib = this.#textLib ??= loadSqliteGroup(this.#lib, TEXT_SYMBOLS);
      if (textLib.sqlite3_str_new !== null) this.#text = textLib.sqlite3_str_new(this.#handle());
    }
    return this.#text;
  }

  /** The text-gathering symbols, once {@linkcode FfiEngine.textBuffer} returned a buffer. */
  get textSymbols(): Sqlite3Text {
    return this.#textLib!;
  }
}

/** A statement prepared on an {@linkcode FfiEngine}. */
class FfiStatement implements Statement {
  readonly sql: string;
  readonly #engine: FfiEngine;
  readonly #lib: Sqlite3;
  #handle: Deno.PointerValue;
  readonly #parameterCount: number;
  #columns: string[];
  #reprepares = 0;
  /**
   * Only a `*` in the SQL lets a re-prepare (after another connection changed the schema) change the result's
   * column names; the statements without one skip the check on every read.
   */
  readonly #watchColumns: boolean;

  constructor(
    engine: FfiEngine,
    lib: Sqlite3,
    handle: Deno.PointerObject,
    sql: string,
  ) {
    this.#engine = engine;
    this.#lib = lib;
    this.#handle = handle;
    this.sql = sql;
    this.#parameterCount = lib.sqlite3_bind_parameter_count(handle);
    this.#columns = this.#readColumns(handle);
    this.#watchColumns = sql.includes("*");
  }

  #readColumns(handle: Deno.PointerObject): string[] {
    const columns: string[] = [];
    const count = this.#lib.sqlite3_column_count(handle);
    for (let i = 0; i < count; i++) {
      columns.push(Deno.UnsafePointerView.getCString(this.#lib.sqlite3_column_name(handle, i)!));
    }
    return columns;
  }

  /**
   * After another connection changes the schema, SQLite re-prepares the statement inside step(): `SELECT *` may
   * then have other columns. Re-read the names whenever that happened, so rows are never labelled with stale ones.
   */
  #syncColumns(handle: Deno.PointerObject): void {
    if (!this.#watchColumns) return;
    const reprepares = this.#lib.sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_REPREPARE, 0);
    if (reprepares !== this.#reprepares) {
      this.#reprepares = reprepares;
      this.#columns = this.#readColumns(handle);
    }
  }

  run(...params: SqlValue[]): RunResult {
    const handle = this.#start(params);
    try {
      let rc;
      do rc = this.#lib.sqlite3_step(handle); while (rc === SQLITE_ROW);
      if (rc !== SQLITE_DONE) throw this.#engine.error(rc);
      return this.#engine.runResult();
    } finally {
      this.#lib.sqlite3_reset(handle);
    }
  }

  get(...params: SqlValue[]): Row | undefined {
    const handle = this.#start(params);
    try {
      const rc = this.#lib.sqlite3_step(handle);
      if (rc === SQLITE_ROW) {
        this.#syncColumns(handle);
        return this.#row(handle);
      }
      if (rc !== SQLITE_DONE) throw this.#engine.error(rc);
      return undefined;
    } finally {
      this.#lib.sqlite3_reset(handle);
    }
  }

  value(...params: SqlValue[]): SqlValue | undefined {
    const handle = this.#start(params);
    try {
      const rc = this.#lib.sqlite3_step(handle);
      if (rc === SQLITE_ROW) {
        this.#syncColumns(handle);
        if (this.#columns.length === 0) return undefined;
        return readValue(this.#lib, handle, 0, this.#lib.sqlite3_column_type(handle, 0));
      }
      if (rc !== SQLITE_DONE) throw this.#engine.error(rc);
      return undefined;
    } finally {
      this.#lib.sqlite3_reset(handle);
    }
  }

  getArray(...params: SqlValue[]): SqlValue[] | undefined {
    const handle = this.#start(params);
    try {
      const rc = this.#lib.sqlite3_step(handle);
      if (rc === SQLITE_ROW) {
        this.#syncColumns(handle);
        const lib = this.#lib;
        const width = this.#columns.length;
        const row: SqlValue[] = new Array(width);
        for (let i = 0; i < width; i++) row[i] = readValue(lib, handle, i, lib.sqlite3_column_type(handle, i));
        return row;
      }
      if (rc !== SQLITE_DONE) throw this.#engine.error(rc);
      return undefined;
    } finally {
      this.#lib.sqlite3_reset(handle);
    }
  }

  all(...params: SqlValue[]): Row[] {
    const arrays = this.#arrays(params);
    const columns = this.#columns;
    // Each row starts as a copy of one template with every column (one shape for all rows, copied in one step), so
    // filling it in changes no object's shape.
    const template: Row = {};
    for (let i = 0; i < columns.length; i++) template[columns[i]!] = null;
    const rows: Row[] = new Array(arrays.length);
    for (let r = 0; r < arrays.length; r++) {
      const values = arrays[r]!;
      const row: Row = { ...template };
      for (let i = 0; i < columns.length; i++) row[columns[i]!] = values[i]!;
      rows[r] = row;
    }
    return rows;
  }

  allArrays(...params: SqlValue[]): SqlValue[][] {
    return this.#arrays(params);
  }

  #arrays(params: SqlValue[]): SqlValue[][] {
    const handle = this.#start(params);
    const text = this.#engine.textBuffer();
    try {
      return text === null ? this.#allByColumn(handle) : this.#allGathered(handle, text);
    } finally {
      this.#lib.sqlite3_reset(handle);
    }
  }

  #allByColumn(handle: Deno.PointerObject): SqlValue[][] {
    const lib = this.#lib;
    const rows: SqlValue[][] = [];
    let rc;
    let first = true;
    while ((rc = lib.sqlite3_step(handle)) === SQLITE_ROW) {
      if (first) {
        this.#syncColumns(handle);
        first = false;
      }
      const width = this.#columns.length;
      const row: SqlValue[] = new Array(width);
      for (let i = 0; i < width; i++) row[i] = readValue(lib, handle, i, lib.sqlite3_column_type(handle, i));
      rows.push(row);
    }
    if (rc !== SQLITE_DONE) throw this.#engine.error(rc);
    return rows;
  }

  /**
   * Every row as an array, with the text of a batch of rows gathered in one `sqlite3_str` inside SQLite (one FFI
   * call per text column, no JS string per column) and read out with one call per batch, then cut into the columns'
   * strings. Reading a string out of C memory is the costly step of a row read; this pays it once per batch.
   */
  #allGathered(handle: Deno.PointerObject, text: NonNullable<Deno.PointerValue>): SqlValue[][] {
    const lib = this.#lib;
    const textLib = this.#engine.textSymbols;
    const append = textLib.sqlite3_str_append!;
    const rows: SqlValue[][] = [];
    const pending = this.#pending;
    let count = 0; // Text cells of the batch in `text`.
    let gathered = 0;
    let width = this.#columns.length;
    let rc;
    let first = true;
    try {
      while ((rc = lib.sqlite3_step(handle)) === SQLITE_ROW) {
        if (first) {
          this.#syncColumns(handle);
          width = this.#columns.length;
          first = false;
        }
        const row: SqlValue[] = new Array(width);
        for (let i = 0; i < width; i++) {
          const type = lib.sqlite3_column_type(handle, i);
          if (type === SQLITE_TEXT) {
            const pointer = lib.sqlite3_column_text(handle, i);
            const length = lib.sqlite3_column_bytes(handle, i);
            if (pointer === null || length === 0) {
              row[i] = "";
              continue;
            }
            append(text, pointer, length);
            if (count === pending.lengths.length) pending.grow();
            pending.rows[count] = row;
            pending.columns[count] = i;
            pending.lengths[count++] = length;
            gathered += length;
          } else {
            row[i] = readValue(lib, handle, i, type);
          }
        }
        rows.push(row);
        if (gathered >= GATHER_BYTES) {
          this.#readGathered(text, count, gathered);
          count = 0;
          gathered = 0;
        }
      }
      if (rc !== SQLITE_DONE) throw this.#engine.error(rc);
      if (gathered > 0) this.#readGathered(text, count, gathered);
    } finally {
      pending.release(count);
      textLib.sqlite3_str_reset!(text);
    }
    return rows;
  }

  /** Where each text cell of the gathered batch goes, reused from call to call. */
  readonly #pending = new PendingCells();

  /** Reads the gathered text out of `text` and puts each pending cell's string in its place. */
  #readGathered(text: NonNullable<Deno.PointerValue>, count: number, gathered: number): void {
    const lib = this.#engine.textSymbols;
    if (lib.sqlite3_str_errcode!(text) !== SQLITE_OK) throw this.#engine.error(lib.sqlite3_str_errcode!(text));
    const pointer = lib.sqlite3_str_value!(text)!;
    const { rows, columns, lengths } = this.#pending;
    // One string for the batch. ASCII without NUL (the usual case) reads in one call, and its byte offsets are its
    // character offsets; anything else is decoded cell by cell from the bytes.
    const all = Deno.UnsafePointerView.getCString(pointer);
    if (all.length === gathered) {
      for (let k = 0, at = 0; k < count; k++) {
        const length = lengths[k]!;
        rows[k]![columns[k]!] = all.substring(at, at + length);
        rows[k] = undefined;
        at += length;
      }
    } else {
      const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, gathered));
      for (let k = 0, at = 0; k < count; k++) {
        const length = lengths[k]!;
        rows[k]![columns[k]!] = decoder.decode(bytes.subarray(at, at + length));
        rows[k] = undefined;
        at += length;
      }
    }
    lib.sqlite3_str_reset!(text);
  }

  finalize(): void {
    if (this.#handle === null) return;
    this.#lib.sqlite3_finalize(this.#handle);
    this.#handle = null;
  }

  #start(params: SqlValue[]): Deno.PointerObject {
    const handle = this.#handle; // Finalized (null) exactly when the engine closed.
    if (handle === null) throw closedError(this.#engine.path);
    if (params.length !== this.#parameterCount) {
      throw new RangeError(
        `statement takes ${this.#parameterCount} parameter(s), got ${params.length}: '${this.sql}'`,
      );
    }
    for (let i = 0; i < params.length; i++) {
      this.#bind(handle, i + 1, params[i]!);
    }
    return handle;
  }

  #bind(handle: Deno.PointerObject, index: number, value: SqlValue): void {
    const lib = this.#lib;
    let rc: number;
    if (typeof value === "string") {
      const length = encodeToScratch(value); // May replace `scratch`: read it after.
      rc = lib.sqlite3_bind_text(handle, index, scratch, length, SQLITE_TRANSIENT);
      shrinkScratch(); // SQLITE_TRANSIENT: SQLite has its own copy.
    } else if (typeof value === "number") {
      // -0 goes to the REAL branch: as an integer it would come back as 0.
      if ((value | 0) === value && !Object.is(value, -0)) {
        rc = lib.sqlite3_bind_int(handle, index, value);
      } else if (Number.isSafeInteger(value) && !Object.is(value, -0)) {
        rc = lib.sqlite3_bind_int64(handle, index, BigInt(value));
      } else rc = lib.sqlite3_bind_double(handle, index, value);
    } else if (value === null) {
      rc = lib.sqlite3_bind_null(handle, index);
    } else if (typeof value === "bigint") {
      if (value > MAX_INT64 || value < MIN_INT64) {
        throw new RangeError(
          `parameter ${index} is outside SQLite's 64-bit integer range: ${value}`,
        );
      }
      rc = lib.sqlite3_bind_int64(handle, index, value);
    } else if (value instanceof Uint8Array) {
      // An empty buffer would reach C as NULL (an SQL NULL); a non-empty one with length 0 is an empty blob.
      rc = lib.sqlite3_bind_blob(
        handle,
        index,
        value.length === 0 ? scratch : value,
        value.length,
        SQLITE_TRANSIENT,
      );
    } else {
      throw new TypeError(
        `parameter ${index} cannot be bound to SQLite: ${typeof value}`,
      );
    }
    if (rc !== SQLITE_OK) throw this.#engine.error(rc);
  }

  #row(handle: Deno.PointerObject): Row {
    const lib = this.#lib;
    const row: Row = {};
    const columns = this.#columns;
    for (let i = 0; i < columns.length; i++) {
      row[columns[i]!] = readValue(lib, handle, i, lib.sqlite3_column_type(handle, i));
    }
    return row;
  }
}

/** Past this many bytes of gathered text, `all()` reads the batch out: the buffer stays small on long results. */
const GATHER_BYTES = 1 << 20;

const PENDING_CELLS = 1024;
const MAX_KEPT_PENDING = 16_384;

/** The text cells of a gathered batch: the row and column each goes to, and its byte length. */
class PendingCells {
  rows: (SqlValue[] | undefined)[] = new Array(PENDING_CELLS);
  columns: Int32Array = new Int32Array(PENDING_CELLS);
  lengths: Int32Array = new Int32Array(PENDING_CELLS);

  /** After a result: keeps no row of it alive, and lets the space grown for a long one go. */
  release(count: number): void {
    if (this.lengths.length > MAX_KEPT_PENDING) {
      this.rows = new Array(PENDING_CELLS);
      this.columns = new Int32Array(PENDING_CELLS);
      this.lengths = new Int32Array(PENDING_CELLS);
    } else {
      this.rows.fill(undefined, 0, count);
    }
  }

  grow(): void {
    const size = this.lengths.length * 2;
    const columns = new Int32Array(size);
    columns.set(this.columns);
    const lengths = new Int32Array(size);
    lengths.set(this.lengths);
    this.columns = columns;
    this.lengths = lengths;
    this.rows.length = size;
  }
}

function readValue(lib: Sqlite3, handle: Deno.PointerObject, column: number, type: number): SqlValue {
  switch (type) {
    case SQLITE_INTEGER:
      return toNumberIfSafe(lib.sqlite3_column_int64(handle, column) as bigint);
    case SQLITE_FLOAT:
      return lib.sqlite3_column_double(handle, column);
    case SQLITE_TEXT:
      return readText(lib, handle, column);
    case SQLITE_BLOB:
      return readBlob(lib, handle, column);
    default:
      return null;
  }
}

function readText(
  lib: Sqlite3,
  handle: Deno.PointerObject,
  column: number,
): string {
  const pointer = lib.sqlite3_column_text(handle, column);
  const length = lib.sqlite3_column_bytes(handle, column);
  if (pointer === null || length === 0) return "";
  // Fast path: for ASCII without NUL, C-string length equals byte length.
  const text = Deno.UnsafePointerView.getCString(pointer);
  if (text.length === length) return text;
  return decoder.decode(
    new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, length)),
  );
}

function readBlob(
  lib: Sqlite3,
  handle: Deno.PointerObject,
  column: number,
): Uint8Array {
  const pointer = lib.sqlite3_column_blob(handle, column);
  const length = lib.sqlite3_column_bytes(handle, column);
  const bytes = new Uint8Array(length);
  if (pointer !== null && length > 0) {
    new Deno.UnsafePointerView(pointer).copyInto(bytes);
  }
  return bytes;
}

function toNumberIfSafe(value: bigint): number | bigint {
  return value <= Number.MAX_SAFE_INTEGER && value >= Number.MIN_SAFE_INTEGER ? Number(value) : value;
}

/** A `RegistryError` for result code `rc` of connection `db` (which may be null), naming `path`. */
function backupError(lib: Sqlite3, db: Deno.PointerValue, rc: number, path: string): RegistryError {
  const code = db === null ? rc : lib.sqlite3_extended_errcode(db);
  const pointer = db === null ? lib.sqlite3_errstr(rc) : lib.sqlite3_errmsg(db);
  const message = pointer === null ? `SQLite result code ${rc}` : Deno.UnsafePointerView.getCString(pointer);
  return sqliteError(`backup into '${path}' failed: ${message}`, code, path);
}

/**
 * Checks `pagesPerStep` of a backup.
 *
 * @throws {RangeError} when it is not a positive integer.
 */
export function checkPagesPerStep(pagesPerStep: number | undefined): number {
  const pages = pagesPerStep ?? 256;
  if (!Number.isInteger(pages) || pages < 1 || pages > 2 ** 31 - 1) {
    throw new RangeError(`pagesPerStep must be a positive integer, got ${pages}`);
  }
  return pages;
}

/** A `RegistryError` from SQLite's message and extended result code. */
export function sqliteError(
  message: string,
  code: number,
  path: string,
): RegistryError {
  return new RegistryError(message, { code, path });
}

/** The error every call on a closed connection throws. */
export function closedError(path: string): RegistryError {
  return new RegistryError(`database '${path}' is closed`, { path });
}
