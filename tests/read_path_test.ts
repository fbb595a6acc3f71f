// The engines' read paths: all() (which on the ffi engine gathers a batch of rows' text inside SQLite and reads it
// out at once) returns exactly what get() returns row by row, for every kind of value and across batch boundaries.
import assert from "node:assert/strict";
import { parseTimestamp, type SqlValue } from "@oxide/registry";
import { openEngine } from "../src/sqlite/open.ts";
import { engineTest } from "./_helpers.ts";

/** Row `i`'s values: text of every shape (ASCII, empty, non-ASCII, embedded NUL on ffi), numbers, NULL, blobs. */
function rowValues(i: number, engine: string): SqlValue[] {
  const texts = [
    `ascii-${i}`,
    i % 7 === 0 ? "" : `name ${i}`,
    i % 50 === 13 ? `héllo ${i} ✓ 日本語 🦕` : `plain ${i}`,
    // node:sqlite cuts text at a NUL (tests/engines_test.ts); the ffi engine keeps it.
    engine === "ffi" && i % 40 === 3 ? `a\0b${i}` : `ab${i}`,
    // About 2 KB a row: 1,000 rows cross the ffi engine's 1 MiB batch several times, mid-row.
    "x".repeat(2000 + (i % 17)),
  ];
  return [
    ...texts,
    i % 5 === 0 ? null : i,
    i % 11 === 0 ? 2n ** 60n + BigInt(i) : i + 0.5,
    i % 9 === 0 ? new Uint8Array() : new Uint8Array([0, i & 0xff, 0]),
  ];
}

const COLUMNS = ["t1", "t2", "t3", "t4", "t5", "n", "r", "b"];

engineTest("all() returns every row exactly as get() does, across batches of gathered text", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, ${COLUMNS.join(", ")})`);
  const insert = db.prepare(`INSERT INTO t (id, ${COLUMNS.join(", ")}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  db.transaction(() => {
    for (let i = 0; i < 1000; i++) insert.run(i, ...rowValues(i, engine));
  });
  const rows = db.prepare(`SELECT ${COLUMNS.join(", ")} FROM t ORDER BY id`).all();
  assert.equal(rows.length, 1000);
  const one = db.prepare(`SELECT ${COLUMNS.join(", ")} FROM t WHERE id = ?`);
  for (let i = 0; i < 1000; i++) {
    const expected = Object.fromEntries(COLUMNS.map((column, k) => [column, rowValues(i, engine)[k]!]));
    assert.deepEqual(rows[i], expected, `row ${i} from all()`);
    assert.deepEqual(one.get(i), expected, `row ${i} from get()`);
  }
});

engineTest("allArrays(), getArray() and value() read by column index exactly what all() and get() read", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, ${COLUMNS.join(", ")})`);
  const insert = db.prepare(`INSERT INTO t (id, ${COLUMNS.join(", ")}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  db.transaction(() => {
    for (let i = 0; i < 1000; i++) insert.run(i, ...rowValues(i, engine));
  });
  const every = db.prepare(`SELECT ${COLUMNS.join(", ")} FROM t ORDER BY id`);
  const arrays = every.allArrays();
  assert.equal(arrays.length, 1000);
  const one = db.prepare(`SELECT ${COLUMNS.join(", ")} FROM t WHERE id = ?`);
  for (let i = 0; i < 1000; i++) {
    const expected = rowValues(i, engine);
    assert.deepEqual(arrays[i], expected, `row ${i} from allArrays()`);
    assert.deepEqual(one.getArray(i), expected, `row ${i} from getArray()`);
    assert.deepEqual(one.value(i), expected[0], `row ${i} from value()`);
  }
  // The same statement serves both shapes, one after the other.
  assert.deepEqual(every.all()[999], Object.fromEntries(COLUMNS.map((c, k) => [c, rowValues(999, engine)[k]!])));
  assert.deepEqual(every.allArrays()[999], rowValues(999, engine));
  for (let i = 0; i < 1000; i += 7) {
    assert.deepEqual(db.prepare(`SELECT t5, n FROM t WHERE id = ?`).getArray(i), [
      rowValues(i, engine)[4],
      rowValues(i, engine)[5],
    ]);
  }
});

engineTest("value(), getArray() and allArrays() of no row, no column and duplicate column names", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (v)");
  assert.equal(db.prepare("SELECT v FROM t").value(), undefined);
  assert.equal(db.prepare("SELECT v FROM t").getArray(), undefined);
  assert.deepEqual(db.prepare("SELECT v FROM t").allArrays(), []);
  assert.equal(db.prepare("INSERT INTO t VALUES (NULL)").value(), undefined, "no result column");
  assert.equal(db.prepare("SELECT v FROM t").value(), null, "SQL NULL is null, not undefined");
  assert.deepEqual(db.prepare("SELECT 1 AS a, 'x' AS a, 2.5 AS a").getArray(), [1, "x", 2.5]);
  assert.deepEqual(db.prepare("SELECT 1 AS a, 'x' AS a FROM t").allArrays(), [[1, "x"]]);
  assert.deepEqual(db.prepare("SELECT *, 'x' AS v FROM t").allArrays(), [[null, "x"]], "a * statement too");
  assert.equal(db.prepare("SELECT ?1 * 2").value(2n ** 40n), 2 ** 41);
  assert.equal(db.prepare("SELECT ?1 * 2").value(2n ** 60n), 2n ** 61n);
});

engineTest("allArrays() and getArray() of a * statement follow a column another connection added", async (engine) => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.db`;
    using db = openEngine(path, { engine });
    db.exec("CREATE TABLE t (a); INSERT INTO t VALUES ('one')");
    const every = db.prepare("SELECT * FROM t");
    assert.deepEqual(every.allArrays(), [["one"]]);
    {
      using other = openEngine(path, { engine });
      other.exec("ALTER TABLE t ADD COLUMN b DEFAULT 'two'");
    }
    assert.deepEqual(every.allArrays(), [["one", "two"]]);
    assert.deepEqual(every.getArray(), ["one", "two"]);
    assert.deepEqual(every.all(), [{ a: "one", b: "two" }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

engineTest("all() of only non-ASCII text, and of only empty text, round-trips", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (a, b)");
  const insert = db.prepare("INSERT INTO t VALUES (?, ?)");
  for (let i = 0; i < 300; i++) insert.run(`ж${"日".repeat(i)}`, "");
  const rows = db.prepare("SELECT a, b FROM t ORDER BY rowid").all();
  assert.deepEqual(rows, Array.from({ length: 300 }, (_, i) => ({ a: `ж${"日".repeat(i)}`, b: "" })));
});

engineTest("an error in the middle of all() leaves no gathered text behind for the next read", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (i INTEGER, v TEXT)");
  const insert = db.prepare("INSERT INTO t VALUES (?, ?)");
  for (let i = 0; i < 100; i++) insert.run(i, `value-${i}`);
  // abs() of the smallest int64 overflows: a table scan (no sorting first) fails at row 50, after 50 rows of text
  // were gathered.
  const failing = db.prepare(
    "SELECT v, CASE WHEN i = 50 THEN abs(-9223372036854775807 - 1) ELSE i END AS n FROM t",
  );
  assert.throws(() => failing.all(), /integer overflow/);
  assert.throws(() => failing.allArrays(), /integer overflow/);
  assert.deepEqual(db.prepare("SELECT upper(v) AS v FROM t WHERE i < 3 ORDER BY i").allArrays(), [
    ["VALUE-0"],
    ["VALUE-1"],
    ["VALUE-2"],
  ]);
  assert.deepEqual(db.prepare("SELECT upper(v) AS v FROM t WHERE i < 3 ORDER BY i").all(), [
    { v: "VALUE-0" },
    { v: "VALUE-1" },
    { v: "VALUE-2" },
  ]);
  assert.throws(() => failing.all(), /integer overflow/, "the failing statement fails again the same way");
});

engineTest("all() of a statement with no result columns and of an empty result", (engine) => {
  using db = openEngine(":memory:", { engine });
  db.exec("CREATE TABLE t (v TEXT)");
  assert.deepEqual(db.prepare("SELECT v FROM t").all(), []);
  assert.deepEqual(db.prepare("INSERT INTO t VALUES ('a')").all(), []);
  assert.deepEqual(db.prepare("INSERT INTO t VALUES ('b') RETURNING v, length(v) AS n").all(), [{ v: "b", n: 1 }]);
  assert.deepEqual(db.prepare("SELECT v FROM t ORDER BY v").all(), [{ v: "a" }, { v: "b" }]);
});

Deno.test("parseTimestamp() reads the milliseconds of 0 to 9 fraction digits and refuses an empty fraction", async (t) => {
  const cases: [string, number | undefined][] = [
    ["2026-11-28T09:15:02+00:00", 0],
    ["2026-11-28T09:15:02.1+00:00", 100],
    ["2026-11-28T09:15:02.12Z", 120],
    ["2026-11-28T09:15:02.123+00:00", 123],
    ["2026-11-28T09:15:02.004+00:00", 4],
    ["2026-11-28T09:15:02.123456+00:00", 123],
    ["2026-11-28T09:15:02.987654321+00:00", 987],
    ["2026-11-28T09:15:02.+00:00", undefined],
    ["2026-11-28T09:15:02.12x+00:00", undefined],
  ];
  for (const [text, ms] of cases) {
    await t.step(text, () => {
      const date = parseTimestamp(text);
      assert.equal(date === undefined ? undefined : date.getTime() - Date.UTC(2026, 10, 28, 9, 15, 2), ms);
    });
  }
});

Deno.test("parseTimestamp() answers each text on its own: a repeated text, a changed Date, a bad text after a good one", () => {
  const text = "2026-11-28T09:15:02.123+00:00";
  const first = parseTimestamp(text)!;
  first.setTime(0); // The caller's Date is its own.
  const again = parseTimestamp(text)!;
  assert.notEqual(again, first);
  assert.equal(again.toISOString(), "2026-11-28T09:15:02.123Z");
  assert.equal(parseTimestamp(`${text.slice(0, 20)}124+00:00`)?.toISOString(), "2026-11-28T09:15:02.124Z");
  assert.equal(parseTimestamp("2026-11-28T09:15:02.123+00:0"), undefined);
  assert.equal(parseTimestamp(text)?.toISOString(), "2026-11-28T09:15:02.123Z");
  assert.equal(parseTimestamp("0099-01-01T00:00:00Z")?.getUTCFullYear(), 99);
  assert.equal(parseTimestamp("0099-01-01T00:00:00Z")?.getUTCFullYear(), 99);
  assert.equal(parseTimestamp(text)?.getTime(), Date.UTC(2026, 10, 28, 9, 15, 2, 123));
});
