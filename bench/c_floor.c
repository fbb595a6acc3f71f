/*
 * The C floor: the registry's getConfig / setConfig / upsertModule / listModules SQL run straight against
 * libsqlite3, with the registry's pragmas (WAL, synchronous=FULL, busy_timeout) on a file and on :memory:.
 * No JSON, no timestamps formatted per call: this is what SQLite itself costs, the least any binding can take.
 *
 *   deno task bench:c          (gcc -O2 bench/c_floor.c -lsqlite3, then runs it on ./data)
 *
 * Prints one line per operation and storage: ns/op and ops/s.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULES 100

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
static const char *VALUE = "{\"url\":\"https://example.com\",\"retries\":3}";

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

static void set_config(sqlite3 *db, sqlite3_stmt *stmt, const char *key, const char *value) {
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
  size_t bytes = 0;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    for (int i = 0; i < 7; i++) {
      const unsigned char *text = sqlite3_column_text(stmt, i);
      if (text != NULL) bytes += (size_t)sqlite3_column_bytes(stmt, i);
    }
  }
  check(db, rc, SQLITE_DONE, "listModules");
  sqlite3_reset(stmt);
  return bytes;
}

static void report(const char *what, const char *storage, double start, long n) {
  double ns = (now_ns() - start) / (double)n;
  printf("%-13s %-7s %12.1f ns/op %12.0f ops/s  (%ld ops)\n", what, storage, ns, 1e9 / ns, n);
}

static void run(const char *path, const char *storage, long reads, long writes, long lists) {
  sqlite3 *db = NULL;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  check(db, sqlite3_open_v2(path, &db, flags, NULL), SQLITE_OK, path);
  check(db, sqlite3_exec(db, "PRAGMA busy_timeout = 5000", NULL, NULL, NULL), SQLITE_OK, "busy_timeout");
  if (strcmp(path, ":memory:") != 0) {
    check(db, sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL", NULL, NULL, NULL), SQLITE_OK,
          "pragmas");
  }
  check(db, sqlite3_exec(db, MODULES_SQL, NULL, NULL, NULL), SQLITE_OK, "modules");
  check(db, sqlite3_exec(db, CONFIG_SQL, NULL, NULL, NULL), SQLITE_OK, "config");
  sqlite3_stmt *get = prepare(db, GET_CONFIG_SQL);
  sqlite3_stmt *set = prepare(db, SET_CONFIG_SQL);
  sqlite3_stmt *upsert = prepare(db, UPSERT_MODULE_SQL);
  sqlite3_stmt *list = prepare(db, LIST_MODULES_SQL);

  set_config(db, set, "endpoint", VALUE);
  char id[32];
  for (int i = 0; i < MODULES; i++) {
    snprintf(id, sizeof id, "module-%03d", i);
    upsert_module(db, upsert, id, "\"running\"");
  }

  volatile size_t sink = 0;
  double start = now_ns();
  for (long i = 0; i < reads; i++) sink += get_config(db, get, "endpoint");
  report("getConfig", storage, start, reads);

  char value[32];
  start = now_ns();
  for (long i = 0; i < writes; i++) {
    snprintf(value, sizeof value, "%ld", i);
    set_config(db, set, "max_threads", value);
  }
  report("setConfig", storage, start, writes);

  start = now_ns();
  for (long i = 0; i < writes; i++) upsert_module(db, upsert, "echo", i % 2 == 0 ? "\"running\"" : "\"stopped\"");
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
  char path[4096];
  snprintf(path, sizeof path, "%s/c_floor.db", dir);
  static const char *SUFFIXES[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < sizeof SUFFIXES / sizeof SUFFIXES[0]; i++) {
    char file[4200];
    snprintf(file, sizeof file, "%s%s", path, SUFFIXES[i]);
    remove(file); /* A fresh database each run. */
  }
  printf("SQLite %s, 2 noisy cores: compare runs, not single numbers\n", sqlite3_libversion());
  run(path, "file", 200000, 5000, 5000);
  run(":memory:", "memory", 1000000, 500000, 10000);
  return 0;
}
