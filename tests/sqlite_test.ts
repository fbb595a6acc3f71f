// The engine layer: both engines behind one interface, tested against real SQLite.
import assert from "node:assert/strict";
import { RegistryError, type SqlValue } from "@oxide/registry";
import { openEngine } from "../src/sqlite/open.ts";
import { ENGINES, engineTest, tempDir } from "./_helpers.ts";

engineTest("values round-trip exactly, in the same storage class", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (v)"); // No type: the storage class is whatever was bound.
  const values: [string, SqlValue, string][] = [
    ["empty text", "", "text"],
    ["ASCII text", "hello", "text"],
    ["non-ASCII text", "héllo wörld ✓ 日本語 🦕", "text"],
    ["long text", "x".repeat(100_000), "text"],
    ["ASCII at the hand-copy limit", "a".repeat(256), "text"],
    ["ASCII past the hand-copy limit", "b".repeat(257), "text"],
    ["non-ASCII after ASCII at the limit", `${"c".repeat(255)}é`, "text"],
    ["long non-ASCII text", "ж".repeat(50_000), "text"],
    ["zero", 0, "integer"],
    ["negative zero", -0, "real"],
    ["negative", -42, "integer"],
    ["above 2^31", 2 ** 31 + 7, "integer"],
    ["largest safe integer", Number.MAX_SAFE_INTEGER, "integer"],
    ["smallest safe integer", Number.MIN_SAFE_INTEGER, "integer"],
    ["bigint above 2^53", 2n ** 53n + 1n, "integer"],
    ["largest int64", 2n ** 63n - 1n, "integer"],
    ["smallest int64", -(2n ** 63n), "integer"],
    ["double", 1.5, "real"],
    ["integral double beyond 2^53", 2 ** 60, "real"],
    ["tiny double", 5e-324, "real"],
    ["huge double", 1.7976931348623157e308, "real"],
    ["null", null, "null"],
    ["empty blob", new Uint8Array(), "blob"],
    ["blob with zeros", new Uint8Array([0, 1, 0, 255, 0]), "blob"],
  ];
  const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  const select = db.prepare("SELECT v, typeof(v) AS type FROM t WHERE rowid = ?");
  for (const [what, value, type] of values) {
    const { lastInsertRowid } = insert.run(value);
    const row = select.get(lastInsertRowid);
    assert.deepEqual(row?.v, value, what);
    assert.equal(row?.type, type, `${what}: storage class`);
  }
});

Deno.test("text with an embedded NUL round-trips [ffi]", () => {
  using db = openEngine(":memory:", { engine: "ffi" });
  const row = db.prepare("SELECT ? AS v, length(CAST(? AS BLOB)) AS n").get(
    "a\0b",
    "a\0b",
  );
  assert.equal(row?.v, "a\0b");
  assert.equal(row?.n, 3);
});

engineTest(
  "prepare() returns the same statement for the same SQL",
  (engine) => {
    using db = openEngine(":memory:", { engine });
    assert.equal(db.prepare("SELECT 1 AS one"), db.prepare("SELECT 1 AS one"));
    assert.notEqual(
      db.prepare("SELECT 1 AS one"),
      db.prepare("SELECT 2 AS two"),
    );
  },
);

engineTest("a statement is reusable after an error", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  const insert = db.prepare("INSERT INTO t (id) VALUES (?)");
  insert.run(1);
  assert.throws(() => insert.run(1), RegistryError);
  insert.run(2);
  assert.deepEqual(db.prepare("SELECT id FROM t ORDER BY id").all(), [
    { id: 1 },
    { id: 2 },
  ]);
});

engineTest(
  "all() returns every row in order, get() the first or undefined",
  (engine) => {
    using db = openEngine(":memory:", { engine });
    db.exec(
      "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, NULL)",
    );
    assert.deepEqual(db.prepare("SELECT a, b FROM t ORDER BY a").all(), [
      { a: 1, b: "x" },
      { a: 2, b: "y" },
      { a: 3, b: null },
    ]);
    assert.deepEqual(
      db.prepare("SELECT a FROM t WHERE a > ? ORDER BY a").get(1),
      { a: 2 },
    );
    assert.equal(db.prepare("SELECT a FROM t WHERE a > ?").get(99), undefined);
    assert.deepEqual(db.prepare("SELECT a FROM t WHERE a > ?").all(99), []);
  },
);

engineTest("run() reports changes and the last rowid", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (a)");
  assert.deepEqual(db.prepare("INSERT INTO t VALUES (?)").run(1), {
    changes: 1,
    lastInsertRowid: 1,
  });
  db.prepare("INSERT INTO t VALUES (?)").run(2);
  assert.equal(db.prepare("UPDATE t SET a = a + 1").run().changes, 2);
  assert.equal(db.prepare("DELETE FROM t WHERE a > ?").run(100).changes, 0);
});

engineTest("a SQL error carries SQLite's code and message", (engine) => {
  using db = openEngine(":memory:", { engine });
  const syntax = assert.throws(() => db.exec("SELEC 1"), (error: unknown) => {
    assert.ok(error instanceof RegistryError);
    assert.equal(error.code, 1);
    assert.equal(error.codeName, "SQLITE_ERROR");
    assert.match(error.message, /^registry error: .*syntax error/);
    return true;
  });
  assert.equal(syntax, undefined);
  db.exec("CREATE TABLE t (id PRIMARY KEY)");
  db.prepare("INSERT INTO t VALUES (?)").run(1);
  assert.throws(
    () => db.prepare("INSERT INTO t VALUES (?)").run(1),
    (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.equal(error.codeName, "SQLITE_CONSTRAINT");
      // The FFI engine has the extended code: SQLITE_CONSTRAINT_PRIMARYKEY.
      if (engine === "ffi") assert.equal(error.code, 1555);
      assert.match(error.message, /UNIQUE constraint failed: t\.id/);
      return true;
    },
  );
});

engineTest("prepare() of bad SQL throws a RegistryError", (engine) => {
  using db = openEngine(":memory:", { engine });
  assert.throws(() => db.prepare("SELECT * FROM nowhere"), (error: unknown) => {
    assert.ok(error instanceof RegistryError);
    assert.match(error.message, /no such table: nowhere/);
    return true;
  });
});

engineTest("parameters of the wrong shape are refused", (engine) => {
  using db = openEngine(":memory:", { engine });
  const statement = db.prepare("SELECT ? AS v");
  assert.throws(() => statement.get(), RangeError);
  assert.throws(() => statement.get(1, 2), RangeError);
  assert.throws(() => statement.get(2n ** 64n), RangeError);
  assert.throws(() => statement.get(true as unknown as SqlValue), TypeError);
  assert.throws(
    () => statement.get(undefined as unknown as SqlValue),
    TypeError,
  );
  assert.deepEqual(statement.get(7), { v: 7 }, "the statement still works");
});

engineTest(
  "transaction() commits, and rolls back when the function throws",
  (engine) => {
    using db = openEngine(":memory:", { engine });
    db.exec("CREATE TABLE t (a)");
    const insert = db.prepare("INSERT INTO t VALUES (?)");
    assert.equal(db.transaction(() => (insert.run(1), "done")), "done");
    assert.throws(() =>
      db.transaction(() => {
        insert.run(2);
        throw new Error("boom");
      }), /boom/);
    assert.equal(db.inTransaction, false);
    assert.deepEqual(db.prepare("SELECT a FROM t").all(), [{ a: 1 }]);
  },
);

engineTest("a nested transaction() rolls back only its own part", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (a)");
  const insert = db.prepare("INSERT INTO t VALUES (?)");
  db.transaction(() => {
    insert.run(1);
    assert.throws(() =>
      db.transaction(() => {
        insert.run(2);
        throw new Error("inner");
      }), /inner/);
    assert.equal(db.inTransaction, true);
    insert.run(3);
  });
  assert.deepEqual(db.prepare("SELECT a FROM t ORDER BY a").all(), [{ a: 1 }, {
    a: 3,
  }]);
});

engineTest(
  "transaction() refuses an async function and keeps nothing of it",
  (engine) => {
    using db = openEngine(":memory:", { engine });
    db.exec("CREATE TABLE t (a)");
    assert.throws(
      () =>
        db.transaction(async () => {
          db.prepare("INSERT INTO t VALUES (1)").run();
          await Promise.resolve();
        }),
      TypeError,
    );
    assert.equal(db.inTransaction, false);
    assert.deepEqual(db.prepare("SELECT a FROM t").all(), []);
  },
);

engineTest(
  "close() is idempotent and every call afterwards throws",
  (engine) => {
    const db = openEngine(":memory:", { engine });
    const statement = db.prepare("SELECT 1 AS one");
    db.close();
    db.close();
    assert.equal(db.isOpen, false);
    for (
      const call of [
        () => statement.get(),
        () => statement.run(),
        () => db.exec("SELECT 1"),
        () => db.prepare("SELECT 2"),
      ]
    ) {
      assert.throws(
        call,
        (error: unknown) => error instanceof RegistryError && /is closed/.test(error.message),
      );
    }
  },
);

engineTest(
  "a file database uses WAL, durable commits and a busy timeout",
  async (engine) => {
    await using dir = await tempDir();
    {
      using db = openEngine(dir.file("a.db"), { engine });
      assert.equal(
        db.prepare("PRAGMA journal_mode").get()?.journal_mode,
        "wal",
      );
      assert.equal(db.prepare("PRAGMA synchronous").get()?.synchronous, 2); // FULL
      assert.equal(db.prepare("PRAGMA busy_timeout").get()?.timeout, 5000);
    }
    using db = openEngine(dir.file("b.db"), {
      engine,
      durability: "normal",
      busyTimeoutMs: 250,
    });
    assert.equal(db.prepare("PRAGMA synchronous").get()?.synchronous, 1); // NORMAL
    assert.equal(db.prepare("PRAGMA busy_timeout").get()?.timeout, 250);
  },
);

engineTest(
  "opening a file that is not a database names the file",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("notes.txt");
    const text = "these are notes, not a database\n".repeat(64);
    await Deno.writeTextFile(path, text);
    assert.throws(() => openEngine(path, { engine }), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.equal(error.codeName, "SQLITE_NOTADB");
      assert.equal(error.path, path);
      assert.ok(error.message.includes(`'${path}'`), error.message);
      return true;
    });
    assert.equal(await Deno.readTextFile(path), text, "the file is untouched");
  },
);

engineTest(
  "opening a file in a missing folder names the file",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("missing/registry.db");
    assert.throws(() => openEngine(path, { engine }), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.equal(error.codeName, "SQLITE_CANTOPEN");
      assert.ok(error.message.includes(`'${path}'`), error.message);
      return true;
    });
  },
);

Deno.test("open options of the wrong shape are refused", () => {
  assert.throws(
    () => openEngine(":memory:", { busyTimeoutMs: -1 }),
    RangeError,
  );
  assert.throws(
    () => openEngine(":memory:", { durability: "fast" as "full" }),
    TypeError,
  );
  assert.throws(
    () => openEngine(":memory:", { engine: "rust" as "ffi" }),
    TypeError,
  );
});

Deno.test("a library that does not load gives an error saying what to do", () => {
  assert.throws(
    () =>
      openEngine(":memory:", {
        engine: "ffi",
        libPath: "/nowhere/libsqlite3.so",
      }),
    (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.match(
        error.message,
        /could not load the SQLite library: tried '\/nowhere\/libsqlite3\.so'/,
      );
      assert.match(error.message, /OXIDE_SQLITE_PATH/);
      return true;
    },
  );
});

Deno.test("auto falls back to node when the library does not load", () => {
  using db = openEngine(":memory:", { libPath: "/nowhere/libsqlite3.so" });
  assert.equal(db.name, "node");
});

Deno.test("both engines report their SQLite version", () => {
  for (const engine of ENGINES) {
    using db = openEngine(":memory:", { engine });
    assert.match(db.sqliteVersion, /^3\.\d+\.\d+$/);
    assert.equal(
      db.prepare("SELECT sqlite_version() AS v").get()?.v,
      db.sqliteVersion,
    );
  }
});

Deno.test({
  name: "without --allow-ffi, engine ffi fails naming the flag and auto picks node",
  permissions: { ffi: false, read: true, write: true, env: true },
  fn() {
    assert.throws(
      () => openEngine(":memory:", { engine: "ffi" }),
      (error: unknown) => {
        assert.ok(error instanceof RegistryError);
        assert.match(error.message, /needs --allow-ffi/);
        return true;
      },
    );
    using db = openEngine(":memory:");
    assert.equal(db.name, "node");
  },
});

Deno.test("a file open through one engine is refused by the other in the same process", async () => {
  await using dir = await tempDir();
  const path = dir.file("shared.db");
  for (const [first, second] of [["ffi", "node"], ["node", "ffi"]] as const) {
    const a = openEngine(path, { engine: first });
    const same = openEngine(`${dir.path}/./shared.db`, { engine: first }); // Same library: fine, shares locks.
    assert.throws(() => openEngine(path, { engine: second }), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.match(error.message, new RegExp(`has it open with the ${first} engine`));
      assert.ok(error.message.includes(`'${path}'`), error.message);
      return true;
    });
    a.close();
    assert.throws(() => openEngine(path, { engine: second }), RegistryError, "still open through `same`");
    same.close();
    openEngine(path, { engine: second }).close(); // Every handle closed: the other engine may open it.
  }
});

Deno.test({
  name: "the ffi engine checks --allow-read and --allow-write itself, since libsqlite3 bypasses Deno",
  permissions: { ffi: true, read: true, write: false, env: true },
  fn() {
    const path = `${Deno.cwd()}/never_created_${crypto.randomUUID()}.db`;
    assert.throws(() => openEngine(path, { engine: "ffi" }), (error: unknown) => {
      assert.ok(error instanceof RegistryError);
      assert.match(error.message, /the "ffi" engine needs --allow-write for '.*never_created_/);
      return true;
    });
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "no file was created");
    using memory = openEngine(":memory:", { engine: "ffi" }); // No file, no file permission needed.
    assert.equal(memory.name, "ffi");
  },
});

engineTest("a path with a NUL character is a TypeError, before any file is touched", (engine) => {
  for (const path of ["./outside.db\0/../inside.db", "a\0"]) {
    assert.throws(() => openEngine(path, { engine }), TypeError);
  }
  assert.throws(() => openEngine("", { engine }), TypeError);
});

engineTest("both engines speak one SQL dialect: foreign keys on, double-quoted fallback literals", (engine) => {
  using db = openEngine(":memory:", { engine });
  assert.deepEqual(db.prepare("PRAGMA foreign_keys").get(), { foreign_keys: 1 });
  db.exec("CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (p INTEGER REFERENCES parent(id))");
  assert.throws(() => db.prepare("INSERT INTO child (p) VALUES (?)").run(7), /FOREIGN KEY constraint failed/);
  assert.deepEqual(db.prepare(`SELECT "no such column" AS v`).get(), { v: "no such column" });
  assert.deepEqual(db.prepare("SELECT ?2 - ?1 + ? AS v").get(1, 2, 3), { v: 4 });
  // Named parameters would bind differently on the two engines: both refuse them.
  for (const sql of ["SELECT :a AS v", "SELECT @a AS v", "SELECT $a AS v"]) {
    assert.throws(
      () => db.prepare(sql),
      (error: unknown) => error instanceof RangeError && /named/.test(error.message),
    );
  }
});

engineTest("prepare() takes exactly one statement", (engine) => {
  using db = openEngine(":memory:", { engine });
  for (const sql of ["", "  -- only a comment\n", "SELECT 1; SELECT 2", "SELECT 1; /* c */ SELECT 'a;b'"]) {
    assert.throws(() => db.prepare(sql), RangeError, JSON.stringify(sql));
  }
  assert.deepEqual(db.prepare("SELECT 'a;b' AS v; -- trailing comment").get(), { v: "a;b" });
  assert.deepEqual(db.prepare("SELECT 1 AS v;").get(), { v: 1 });
});

engineTest("a cached SELECT * follows another connection's schema change", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("schema.db");
  using a = openEngine(path, { engine });
  using b = openEngine(path, { engine });
  a.exec("CREATE TABLE t (a TEXT, b TEXT, c TEXT); INSERT INTO t VALUES ('A', 'B', 'C')");
  const select = a.prepare("SELECT * FROM t");
  assert.deepEqual(select.get(), { a: "A", b: "B", c: "C" });
  b.exec("ALTER TABLE t DROP COLUMN a");
  assert.deepEqual(select.get(), { b: "B", c: "C" }, "never labelled with a dropped column's name");
  b.exec("ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'D'");
  // node:sqlite sizes the first row read after the change in the old shape: the node engine reads a SELECT again.
  assert.deepEqual(select.all(), [{ b: "B", c: "C", d: "D" }]);
  assert.deepEqual(select.allArrays(), [["B", "C", "D"]]);
});

engineTest(
  "closing the last connection finalizes everything: the WAL and shared memory are removed",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("closed.db");
    const db = openEngine(path, { engine });
    db.exec("CREATE TABLE t (a)");
    for (let i = 0; i < 10; i++) db.prepare("INSERT INTO t VALUES (?)").run(i);
    db.prepare("SELECT count(*) AS n FROM t").get();
    assert.ok(await exists(`${path}-wal`), "the WAL exists while open");
    db.close();
    assert.equal(await exists(`${path}-wal`), false, "WAL removed: no statement kept the connection alive");
    assert.equal(await exists(`${path}-shm`), false);
  },
);

Deno.test("auto opens a file with the engine this process already has it open with", async () => {
  await using dir = await tempDir();
  const path = dir.file("held.db");
  using held = openEngine(path, { engine: "node" });
  using again = openEngine(path); // auto would pick ffi here; the file's engine wins.
  assert.equal(again.name, "node");
  assert.equal(held.name, "node");
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
