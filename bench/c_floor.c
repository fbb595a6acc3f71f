/*
 * The C floor: the registry's getConfig / setConfig / upsertModule / listModules SQL run straight against
 * libsqlite3 with reused prepared statements, on a WAL file and on :memory:. No JSON, no timestamp formatted per
 * call: what SQLite itself costs, the least any binding can take.
 *
 * The workload of `deno task bench:compare` (bench/compare.ts, which builds and runs this once per round):
 * 1,000 config keys and 1,000 modules prefilled; reads and writes cycle through the keys; short JSON values;
 * each write its own (autocommit) transaction; listModules reads all 1,000 rows, every column copied out.
 *
 *   c_floor <dir> <synchronous: NORMAL|FULL> <reads> <writes> <lists>
 *   deno task bench:c      (builds it, then runs one round on ./data)
 *
 * Prints one line per operation and storage: "op storage ns_per_op ops", and "sqlite <version>" first.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS 1000
#define MODULES 1000

static const char *MODULES_SQL =
    "CREATE TABLE IF NOT EXISTS modules (id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,"
    " kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL)";
static const char *CONFIG_SQL =
    "CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)";
static const char *UPSERT_MODULE_SQL =
    "INSERT INTO modules (id, name, version, kind, state, description, updated_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
    " version = excluded.version, kind = excluded.kind, state = excluded.state,"
    " description = excluded.description, updated_at = excluded.updated_at";
static const char *LIST_MODULES_SQL =
    "SELECT id, name, version, kind, state, description, updated_at FROM modules ORDER BY id";
static const char *SET_CONFIG_SQL =
    "INSERT INTO config (key, value, updated_at) VALUES (?1, ?2, ?3)"
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
static const char *GET_CONFIG_SQL = "SELECT value FROM config WHERE key = ?1";
static const char *TIMESTAMP = "2026-11-28T09:15:02.123+00:00";

static char key_names[KEYS][32];
static char module_ids[MODULES][32];

static void check(sqlite3 *db, int rc, int expected, const char *what) {
  if (rc != expected) {
    fprintf(stderr, "%s: %s (%d)\n", what, sqlite3_errmsg(db), rc);
    exit(1);
  }
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *stmt = NULL;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL), SQLITE_OK, sql);
  return stmt;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void step_done(sqlite3 *db, sqlite3_stmt *stmt, const char *what) {
  check(db, sqlite3_step(stmt), SQLITE_DONE, what);
  sqlite3_reset(stmt);
}

static void set_config(sqlite3 *db, sqlite3_stmt *stmt, const char *key, long n) {
  char value[64];
  snprintf(value, sizeof value, "{\"retries\":%ld,\"url\":\"https://example.com\"}", n);
  sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 2, value, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 3, TIMESTAMP, -1, SQLITE_TRANSIENT);
  step_done(db, stmt, "setConfig");
}

static size_t get_config(sqlite3 *db, sqlite3_stmt *stmt, const char *key) {
  sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
  check(db, sqlite3_step(stmt), SQLITE_ROW, "getConfig");
  /* Copy the text out, as a binding must. */
  char buffer[256];
  int length = sqlite3_column_bytes(stmt, 0);
  memcpy(buffer, sqlite3_column_text(stmt, 0), (size_t)length < sizeof buffer ? (size_t)length : sizeof buffer);
  sqlite3_reset(stmt);
  return (size_t)length + (size_t)buffer[0];
}

static void upsert_module(sqlite3 *db, sqlite3_stmt *stmt, const char *id, const char *state) {
  sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 2, "Echo", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 3, "0.1.0", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 4, "\"native\"", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 5, state, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 6, "Demo module that echoes Ping commands.", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 7, TIMESTAMP, -1, SQLITE_TRANSIENT);
  step_done(db, stmt, "upsertModule");
}

static size_t list_modules(sqlite3 *db, sqlite3_stmt *stmt) {
  /* Every column copied out of SQLite, as a binding must: a binding cannot keep SQLite's pointers. */
  static char copy[512];
  size_t bytes = 0;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    for (int i = 0; i < 7; i++) {
      const unsigned char *text = sqlite3_column_text(stmt, i);
      if (text == NULL) continue;
      size_t length = (size_t)sqlite3_column_bytes(stmt, i);
      memcpy(copy, text, length < sizeof copy ? length : sizeof copy);
      bytes += length + (size_t)copy[0];
    }
  }
  check(db, rc, SQLITE_DONE, "listModules");
  sqlite3_reset(stmt);
  return bytes;
}

static void report(const char *what, const char *storage, double start, long n) {
  double ns = (now_ns() - start) / (double)n;
  printf("%s %s %.1f %ld\n", what, storage, ns, n);
}

static void run(const char *path, const char *storage, const char *synchronous, long reads, long writes,
                long lists) {
  sqlite3 *db = NULL;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  check(db, sqlite3_open_v2(path, &db, flags, NULL), SQLITE_OK, path);
  check(db, sqlite3_exec(db, "PRAGMA busy_timeout = 5000", NULL, NULL, NULL), SQLITE_OK, "busy_timeout");
  if (strcmp(path, ":memory:") != 0) {
    char pragmas[128];
    snprintf(pragmas, sizeof pragmas, "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s", synchronous);
    check(db, sqlite3_exec(db, pragmas, NULL, NULL, NULL), SQLITE_OK, "pragmas");
  }
  check(db, sqlite3_exec(db, MODULES_SQL, NULL, NULL, NULL), SQLITE_OK, "modules");
  check(db, sqlite3_exec(db, CONFIG_SQL, NULL, NULL, NULL), SQLITE_OK, "config");
  sqlite3_stmt *get = prepare(db, GET_CONFIG_SQL);
  sqlite3_stmt *set = prepare(db, SET_CONFIG_SQL);
  sqlite3_stmt *upsert = prepare(db, UPSERT_MODULE_SQL);
  sqlite3_stmt *list = prepare(db, LIST_MODULES_SQL);

  check(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK, "begin");
  for (int i = 0; i < KEYS; i++) set_config(db, set, key_names[i], i);
  for (int i = 0; i < MODULES; i++) upsert_module(db, upsert, module_ids[i], "\"running\"");
  check(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK, "commit");

  volatile size_t sink = 0;
  double start = now_ns();
  for (long i = 0; i < reads; i++) sink += get_config(db, get, key_names[i % KEYS]);
  report("getConfig", storage, start, reads);

  start = now_ns();
  for (long i = 0; i < writes; i++) set_config(db, set, key_names[i % KEYS], i);
  report("setConfig", storage, start, writes);

  start = now_ns();
  for (long i = 0; i < writes; i++) {
    upsert_module(db, upsert, module_ids[i % MODULES], i % 2 == 0 ? "\"stopped\"" : "\"running\"");
  }
  report("upsertModule", storage, start, writes);

  start = now_ns();
  for (long i = 0; i < lists; i++) sink += list_modules(db, list);
  report("listModules", storage, start, lists);
  (void)sink;

  sqlite3_finalize(get);
  sqlite3_finalize(set);
  sqlite3_finalize(upsert);
  sqlite3_finalize(list);
  sqlite3_close_v2(db);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  const char *synchronous = argc > 2 ? argv[2] : "FULL";
  long reads = argc > 3 ? atol(argv[3]) : 200000;
  long writes = argc > 4 ? atol(argv[4]) : 5000;
  long lists = argc > 5 ? atol(argv[5]) : 500;
  if (strcmp(synchronous, "NORMAL") != 0 && strcmp(synchronous, "FULL") != 0) {
    fprintf(stderr, "synchronous must be NORMAL or FULL, got %s\n", synchronous);
    return 2;
  }
  for (int i = 0; i < KEYS; i++) snprintf(key_names[i], sizeof key_names[i], "bench.key.%04d", i);
  for (int i = 0; i < MODULES; i++) snprintf(module_ids[i], sizeof module_ids[i], "module-%04d", i);
  char path[4096];
  snprintf(path, sizeof path, "%s/c_floor.db", dir);
  static const char *SUFFIXES[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < sizeof SUFFIXES / sizeof SUFFIXES[0]; i++) {
    char file[4200];
    snprintf(file, sizeof file, "%s%s", path, SUFFIXES[i]);
    remove(file); /* A fresh database each run. */
  }
  printf("sqlite %s\n", sqlite3_libversion());
  run(path, "file", synchronous, reads, writes, lists);
  run(":memory:", "memory", synchronous, reads, writes, lists);
  return 0;
}
