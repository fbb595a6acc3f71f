// The slice of the SQLite C API the FFI engine binds. C parameter names in comments.

/**
 * Symbols loaded from libsqlite3 when a connection opens. Deno compiles a call stub for each symbol when the library
 * is opened (about 0.3 ms a symbol here), so the ones only some calls need come in groups of their own, loaded on
 * first use: {@linkcode TEXT_SYMBOLS}, {@linkcode BACKUP_SYMBOLS}.
 */
export const SYMBOLS = {
  sqlite3_libversion: { parameters: [], result: "pointer" },
  // (const char *filename, sqlite3 **ppDb, int flags, const char *zVfs)
  sqlite3_open_v2: {
    parameters: ["buffer", "buffer", "i32", "pointer"],
    result: "i32",
  },
  // (sqlite3 *db)
  sqlite3_close_v2: { parameters: ["pointer"], result: "i32" },
  // (sqlite3 *db, const char *sql, int (*callback)(void*,int,char**,char**), void *arg, char **errmsg)
  sqlite3_exec: {
    parameters: ["pointer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  // (sqlite3 *db)
  sqlite3_errmsg: { parameters: ["pointer"], result: "pointer" },
  // (int rc)
  sqlite3_errstr: { parameters: ["i32"], result: "pointer" },
  // (sqlite3 *db)
  sqlite3_extended_errcode: { parameters: ["pointer"], result: "i32" },
  // (sqlite3 *db, int id, int newVal)
  sqlite3_limit: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  // (sqlite3 *db)
  sqlite3_get_autocommit: { parameters: ["pointer"], result: "i32" },
  // (sqlite3 *db)
  sqlite3_changes: { parameters: ["pointer"], result: "i32" },
  // (sqlite3 *db)
  sqlite3_last_insert_rowid: { parameters: ["pointer"], result: "i64" },
  // (sqlite3 *db, const char *zDbName)
  sqlite3_db_readonly: { parameters: ["pointer", "buffer"], result: "i32" },
  // (sqlite3 *db, const char *zSql, int nByte, unsigned int prepFlags, sqlite3_stmt **ppStmt, const char **pzTail)
  sqlite3_prepare_v3: {
    parameters: ["pointer", "buffer", "i32", "u32", "buffer", "buffer"],
    result: "i32",
  },
  // (sqlite3_stmt *pStmt)
  sqlite3_step: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_stmt *pStmt)
  sqlite3_reset: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_stmt *pStmt)
  sqlite3_finalize: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_stmt *pStmt, int op, int resetFlg)
  sqlite3_stmt_status: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  // (sqlite3_stmt *pStmt)
  sqlite3_bind_parameter_count: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_stmt *pStmt, int i, const char *zData, int nData, void (*xDel)(void*)); xDel = SQLITE_TRANSIENT (-1)
  sqlite3_bind_text: {
    parameters: ["pointer", "i32", "buffer", "i32", "isize"],
    result: "i32",
  },
  // (sqlite3_stmt *pStmt, int i, const void *zData, int nData, void (*xDel)(void*))
  sqlite3_bind_blob: {
    parameters: ["pointer", "i32", "buffer", "i32", "isize"],
    result: "i32",
  },
  // (sqlite3_stmt *pStmt, int i, int iValue)
  sqlite3_bind_int: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  // (sqlite3_stmt *pStmt, int i, sqlite3_int64 iValue)
  sqlite3_bind_int64: { parameters: ["pointer", "i32", "i64"], result: "i32" },
  // (sqlite3_stmt *pStmt, int i, double rValue)
  sqlite3_bind_double: { parameters: ["pointer", "i32", "f64"], result: "i32" },
  // (sqlite3_stmt *pStmt, int i)
  sqlite3_bind_null: { parameters: ["pointer", "i32"], result: "i32" },
  // (sqlite3_stmt *pStmt)
  sqlite3_column_count: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_name: { parameters: ["pointer", "i32"], result: "pointer" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_type: { parameters: ["pointer", "i32"], result: "i32" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_int64: { parameters: ["pointer", "i32"], result: "i64" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_double: { parameters: ["pointer", "i32"], result: "f64" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_text: { parameters: ["pointer", "i32"], result: "pointer" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_blob: { parameters: ["pointer", "i32"], result: "pointer" },
  // (sqlite3_stmt *pStmt, int iCol)
  sqlite3_column_bytes: { parameters: ["pointer", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The dynamic string `all()` gathers a batch of rows' text in, loaded with its first `all()`. */
export const TEXT_SYMBOLS = {
  // One read from JS per batch of rows, not one per column.
  // SQLite 3.25+; optional: without them `all()` reads each column on its own.
  // (sqlite3 *db)
  sqlite3_str_new: { parameters: ["pointer"], result: "pointer", optional: true },
  // (sqlite3_str *p, const char *zIn, int N)
  sqlite3_str_append: { parameters: ["pointer", "pointer", "i32"], result: "void", optional: true },
  // (sqlite3_str *p)
  sqlite3_str_value: { parameters: ["pointer"], result: "pointer", optional: true },
  // (sqlite3_str *p)
  sqlite3_str_errcode: { parameters: ["pointer"], result: "i32", optional: true },
  // (sqlite3_str *p)
  sqlite3_str_reset: { parameters: ["pointer"], result: "void", optional: true },
  // (sqlite3_str *p)
  sqlite3_str_finish: { parameters: ["pointer"], result: "pointer", optional: true },
  // (void *p): frees what sqlite3_str_finish returns.
  sqlite3_free: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The online backup API, loaded with the first `backup()`. */
export const BACKUP_SYMBOLS = {
  // (sqlite3 *pDest, const char *zDestName, sqlite3 *pSource, const char *zSourceName)
  sqlite3_backup_init: { parameters: ["pointer", "buffer", "pointer", "buffer"], result: "pointer" },
  // (sqlite3_backup *p, int nPage)
  sqlite3_backup_step: { parameters: ["pointer", "i32"], result: "i32" },
  // (sqlite3_backup *p)
  sqlite3_backup_remaining: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_backup *p)
  sqlite3_backup_pagecount: { parameters: ["pointer"], result: "i32" },
  // (sqlite3_backup *p)
  sqlite3_backup_finish: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's symbols. */
export type Sqlite3 = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
/** The text-gathering symbols (each `null` when the library is older than SQLite 3.25). */
export type Sqlite3Text = Deno.DynamicLibrary<typeof TEXT_SYMBOLS>["symbols"];
/** The backup symbols. */
export type Sqlite3Backup = Deno.DynamicLibrary<typeof BACKUP_SYMBOLS>["symbols"];

// Result codes and flags from sqlite3.h.
/** `sqlite3_limit` category: the most databases ATTACH may add. */
export const SQLITE_LIMIT_ATTACHED = 7;
export const SQLITE_OK = 0;
export const SQLITE_ROW = 100;
export const SQLITE_DONE = 101;
export const SQLITE_BUSY = 5;
export const SQLITE_LOCKED = 6;
export const SQLITE_INTEGER = 1;
export const SQLITE_FLOAT = 2;
export const SQLITE_TEXT = 3;
export const SQLITE_BLOB = 4;
export const SQLITE_NULL = 5;
export const SQLITE_OPEN_READONLY = 0x00000001;
export const SQLITE_OPEN_READWRITE = 0x00000002;
export const SQLITE_OPEN_CREATE = 0x00000004;
export const SQLITE_OPEN_MEMORY = 0x00000080;
export const SQLITE_OPEN_NOMUTEX = 0x00008000;
export const SQLITE_OPEN_EXRESCODE = 0x02000000;
export const SQLITE_PREPARE_PERSISTENT = 0x01;
export const SQLITE_STMTSTATUS_REPREPARE = 5;
/** `SQLITE_TRANSIENT`: SQLite copies bound data before the bind call returns. */
export const SQLITE_TRANSIENT = -1n;
