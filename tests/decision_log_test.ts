// The decision log: oxide-k's own xai tests, ported; the stored format and rows oxide-k writes (raw SQL, as its sqlx
// code binds them); ordering across timestamp spellings; filters and cursor paging; and EXPLAIN QUERY PLAN of every
// statement it runs.
import assert from "node:assert/strict";
import {
  type Decision,
  DecisionLog,
  extensionVersion,
  formatTimestamp,
  newDecision,
  OtherError,
  RegistryError,
  SerializationError,
  StateRegistry,
} from "@oxide/registry";
import { DECISION_SQL, INDEX_SQL, type QueryShape, querySql, TABLE_SQL } from "../src/ext/_decision_sql.ts";
import { engineTest, rawSqlite, tempDir } from "./_helpers.ts";

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The statement oxide-k's `DecisionLog::log` runs, without our column. */
const OXIDE_K_INSERT = `INSERT INTO xai_decisions
    (id, timestamp, actor, action, rationale, inputs, output, confidence)
   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`;

interface RawRow {
  id?: string;
  timestamp: string;
  actor?: string;
  action?: string;
  rationale?: string;
  inputs?: string;
  output?: string;
  confidence?: number;
}

/** Inserts a row as a Rust oxide-k process would (chrono text, f32 widened to f64, serde_json text). */
function oxideKInsert(db: { prepare(sql: string): { run(...p: (string | number)[]): unknown } }, row: RawRow): string {
  const id = row.id ?? crypto.randomUUID();
  db.prepare(OXIDE_K_INSERT).run(
    id,
    row.timestamp,
    row.actor ?? "oxide-k",
    row.action ?? "act",
    row.rationale ?? "because",
    row.inputs ?? "null",
    row.output ?? "null",
    row.confidence ?? 1,
  );
  return id;
}

function at(iso: string): Date {
  return new Date(iso);
}

// --- oxide-k's tests, ported ---------------------------------------------------------------------

engineTest("log() and recent() round-trip a decision (oxide-k's log_and_retrieve_decision)", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const d = newDecision("healer", "rewrite-selector", "AX role match found", {
    inputs: { css: ".primary" },
    output: { role: "button" },
    confidence: 0.85,
  });
  assert.equal(await log.log(d), d.id);
  assert.equal(await log.count(), 1);
  const recent = await log.recent(10);
  assert.equal(recent.length, 1);
  assert.equal(recent[0]!.actor, "healer");
  assert.equal(recent[0]!.confidence, 0.85);
  assert.deepEqual(recent[0]!.inputs, { css: ".primary" });
  assert.deepEqual(recent[0], d);
});

engineTest("byActor() filters by actor (oxide-k's by_actor_filters)", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await log.log(newDecision("a", "do", "r1"));
  await log.log(newDecision("b", "do", "r2"));
  await log.log(newDecision("a", "do", "r3"));
  assert.equal((await log.byActor("a")).length, 2);
  assert.equal((await log.byActor("b")).length, 1);
  assert.equal((await log.byActor("c")).length, 0);
});

Deno.test("newDecision() clamps confidence to [0, 1] (oxide-k's confidence_is_clamped)", () => {
  assert.equal(newDecision("x", "y", "z", { confidence: 2.5 }).confidence, 1);
  assert.equal(newDecision("x", "y", "z", { confidence: -1 }).confidence, 0);
  assert.equal(newDecision("x", "y", "z", { confidence: Infinity }).confidence, 1);
  assert.equal(newDecision("x", "y", "z", { confidence: -Infinity }).confidence, 0);
});

// --- construction ------------------------------------------------------------------------------------

Deno.test("newDecision() gives a fresh v4 id, the current time, null inputs and output, confidence 1", () => {
  const before = Date.now();
  const d = newDecision("agent", "plan", "why");
  const after = Date.now();
  assert.match(d.id, UUID_V4);
  assert.notEqual(newDecision("agent", "plan", "why").id, d.id);
  assert.ok(d.timestamp instanceof Date);
  assert.ok(d.timestamp.getTime() >= before && d.timestamp.getTime() <= after);
  assert.deepEqual({ ...d, id: "", timestamp: null }, {
    id: "",
    timestamp: null,
    actor: "agent",
    action: "plan",
    rationale: "why",
    inputs: null,
    output: null,
    confidence: 1,
  });
});

Deno.test("newDecision() keeps confidence as an f32, written as its shortest decimal", () => {
  const cases: [number, number][] = [[0.85, 0.85], [0.1, 0.1], [1 / 3, 0.33333334], [0.123456789, 0.12345679], [0, 0]];
  for (const [given, kept] of cases) {
    const confidence = newDecision("x", "y", "z", { confidence: given }).confidence;
    assert.equal(confidence, kept);
    assert.equal(Math.fround(confidence), Math.fround(given), "the same f32");
  }
});

Deno.test("newDecision() rejects arguments of the wrong type", async (t) => {
  const cases: [string, () => unknown, typeof TypeError | typeof RangeError | typeof SerializationError][] = [
    ["actor not a string", () => newDecision(1 as unknown as string, "a", "r"), TypeError],
    ["action not a string", () => newDecision("x", null as unknown as string, "r"), TypeError],
    ["rationale not a string", () => newDecision("x", "a", undefined as unknown as string), TypeError],
    ["NUL in actor", () => newDecision("x\0y", "a", "r"), SerializationError],
    ["confidence a string", () => newDecision("x", "a", "r", { confidence: "0.5" as unknown as number }), TypeError],
    ["confidence NaN", () => newDecision("x", "a", "r", { confidence: NaN }), RangeError],
    ["timestamp a string", () => newDecision("x", "a", "r", { timestamp: "now" as unknown as Date }), TypeError],
    ["timestamp invalid", () => newDecision("x", "a", "r", { timestamp: new Date("nope") }), TypeError],
  ];
  for (const [name, call, error] of cases) {
    await t.step(name, () => assert.throws(call, error));
  }
});

// --- schema and stored format --------------------------------------------------------------------------

engineTest("DecisionLog.open() creates oxide-k's xai_decisions table and idx_xai_actor_time", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await DecisionLog.open(reg);
  const columns = reg.db.prepare("SELECT name, type, \"notnull\" AS nn, pk FROM pragma_table_info('xai_decisions')")
    .all();
  assert.deepEqual(columns, [
    { name: "id", type: "TEXT", nn: 0, pk: 1 },
    { name: "timestamp", type: "TEXT", nn: 1, pk: 0 },
    { name: "actor", type: "TEXT", nn: 1, pk: 0 },
    { name: "action", type: "TEXT", nn: 1, pk: 0 },
    { name: "rationale", type: "TEXT", nn: 1, pk: 0 },
    { name: "inputs", type: "TEXT", nn: 1, pk: 0 },
    { name: "output", type: "TEXT", nn: 1, pk: 0 },
    { name: "confidence", type: "REAL", nn: 1, pk: 0 },
    { name: "timestamp_utc", type: "TEXT", nn: 0, pk: 0 },
  ]);
  const index = reg.db.prepare("SELECT sql FROM sqlite_master WHERE name = 'idx_xai_actor_time'").get();
  assert.equal(index?.sql, "CREATE INDEX idx_xai_actor_time ON xai_decisions(actor, timestamp DESC)");
  const keys = reg.db.prepare("SELECT name, desc FROM pragma_index_xinfo('idx_xai_actor_time') WHERE key = 1").all();
  assert.deepEqual(keys, [{ name: "actor", desc: 0 }, { name: "timestamp", desc: 1 }]);
  assert.equal(extensionVersion(reg, "xai"), 3);
});

engineTest("log() stores a decision as oxide-k does", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const d = newDecision("healer", "heal", "role match", {
    inputs: { css: ".primary", n: [1, 2] },
    confidence: 0.85,
    timestamp: at("2026-11-28T09:15:02.120Z"),
  });
  await log.log(d);
  const row = reg.db.prepare("SELECT * FROM xai_decisions").get();
  assert.deepEqual(row, {
    id: d.id,
    timestamp: "2026-11-28T09:15:02.120+00:00",
    actor: "healer",
    action: "heal",
    rationale: "role match",
    inputs: '{"css":".primary","n":[1,2]}',
    output: "null",
    confidence: 0.8500000238418579,
    timestamp_utc: "2026-11-28T09:15:02.120000000Z",
  });
  assert.equal(row?.timestamp, formatTimestamp(d.timestamp), "the core's timestamp format");
});

engineTest("log() stores the f32 of every confidence and reads the same number back", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const given = [
    0,
    1,
    0.5,
    0.85,
    0.1,
    0.7,
    0.999,
    1e-7,
    ...Array.from({ length: 40 }, (_, i) => ((i * 7919) % 1000) / 997),
  ];
  for (const [i, confidence] of given.entries()) {
    await log.log(newDecision("f32", "check", String(i), { confidence, timestamp: new Date(i * 1000) }));
  }
  const stored = reg.db.prepare("SELECT rationale, confidence FROM xai_decisions").all();
  const back = new Map((await log.byActor("f32")).map((d) => [d.rationale, d.confidence]));
  for (const [i, confidence] of given.entries()) {
    const expected = newDecision("x", "y", "z", { confidence }).confidence;
    assert.equal(stored.find((r) => r.rationale === String(i))?.confidence, Math.fround(expected));
    assert.equal(back.get(String(i)), expected);
  }
});

engineTest("log() stores an uppercase id in lowercase and returns it", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const d = newDecision("a", "b", "c");
  assert.equal(await log.log({ ...d, id: d.id.toUpperCase() }), d.id);
  assert.equal((await log.recent(1))[0]?.id, d.id);
});

// --- rows oxide-k wrote ------------------------------------------------------------------------------------

Deno.test("DecisionLog.open() adopts a file where oxide-k created the table, and reads oxide-k's rows", async () => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  // What a Rust oxide-k kernel leaves behind: its registry tables, its xai table, index and rows, no oxide_migrations.
  const raw = rawSqlite(path);
  raw.exec(
    "CREATE TABLE IF NOT EXISTS modules (id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL)",
  );
  raw.exec("CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)");
  raw.exec(TABLE_SQL);
  raw.exec(INDEX_SQL);
  const older = oxideKInsert(raw, {
    timestamp: "2026-11-28T09:15:02.123456789+00:00",
    actor: "healer",
    action: "rewrite-selector",
    rationale: "AX role match found",
    inputs: '{"css":".primary"}',
    output: '{"role":"button"}',
    confidence: Math.fround(0.85),
  });
  const newer = oxideKInsert(raw, { timestamp: "2026-11-28T09:15:03+00:00", actor: "healer" });
  raw.close();

  await using reg = await StateRegistry.connect(path);
  const log = await DecisionLog.open(reg);
  assert.equal(extensionVersion(reg, "xai"), 3);
  assert.equal(await log.count(), 2);
  const [first, second] = await log.byActor("healer");
  assert.equal(first?.id, newer);
  assert.deepEqual(second, {
    id: older,
    timestamp: at("2026-11-28T09:15:02.123Z"),
    actor: "healer",
    action: "rewrite-selector",
    rationale: "AX role match found",
    inputs: { css: ".primary" },
    output: { role: "button" },
    confidence: 0.85,
  });
  const keys = reg.db.prepare("SELECT timestamp_utc FROM xai_decisions ORDER BY rowid").all();
  assert.deepEqual(keys.map((r) => r.timestamp_utc), [
    "2026-11-28T09:15:02.123456789Z",
    "2026-11-28T09:15:03.000000000Z",
  ]);
});

engineTest("rows oxide-k inserts after open get their sort key from the trigger", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const id = oxideKInsert(reg.db, { timestamp: "2026-11-28T09:15:02.123456+00:00" });
  const key = () => reg.db.prepare("SELECT timestamp_utc AS k FROM xai_decisions WHERE id = ?").get(id)?.k;
  assert.equal(key(), "2026-11-28T09:15:02.123456000Z");
  reg.db.prepare("UPDATE xai_decisions SET timestamp = ? WHERE id = ?").run("2026-11-28T10:00:00-02:00", id);
  assert.equal(key(), "2026-11-28T12:00:00.000000000Z", "an edited timestamp is re-keyed");
  assert.equal((await log.recent(1))[0]?.timestamp.toISOString(), "2026-11-28T12:00:00.000Z");
});

engineTest("recent() orders by instant across every RFC 3339 spelling, where text order does not", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  // Inserted out of order; names give the true chronological order.
  const rows: [string, string][] = [
    ["t3", "2026-11-28T09:15:02.123456789+00:00"], // chrono, 9 digits
    ["t6", "2026-11-28T09:15:03Z"], // Z: sorts after every "+00:00" text of the same second... and of later ones
    ["t1", "2026-11-28T09:15:02+00:00"], // chrono, no fraction
    ["t4", "2026-11-28T09:15:02.5Z"], // one digit, Z
    ["t7", "2026-11-28T04:15:03.5-05:00"], // another offset: 09:15:03.5 UTC
    ["t2", "2026-11-28T09:15:02.123+00:00"], // chrono, 3 digits
    ["t8", "2026-11-28 09:15:04.000001+00:00"], // space for T
  ];
  const ids = new Map<string, string>();
  for (const [name, timestamp] of rows) ids.set(oxideKInsert(reg.db, { timestamp, rationale: name }), name);
  // Ours, logged between t4 and t6 (02.9).
  await log.log(newDecision("oxide", "act", "t5", { timestamp: at("2026-11-28T09:15:02.900Z") }));
  const expected = ["t8", "t7", "t6", "t5", "t4", "t3", "t2", "t1"];
  assert.deepEqual((await log.recent(100)).map((d) => d.rationale), expected);
  assert.deepEqual((await log.recent(3)).map((d) => d.rationale), expected.slice(0, 3));
  const textOrder = reg.db.prepare("SELECT rationale FROM xai_decisions ORDER BY timestamp DESC").all();
  assert.notDeepEqual(
    textOrder.map((r) => r.rationale),
    expected,
    "the text order is wrong, so this test means something",
  );
  assert.deepEqual((await log.query({ limit: 3 })).decisions.map((d) => d.rationale), expected.slice(0, 3));
});

engineTest("rows that cannot be read give errors naming the decision", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const badTime = oxideKInsert(reg.db, { timestamp: "yesterday", actor: "t" });
  let err = await log.byActor("t").catch((e) => e);
  assert.ok(err instanceof SerializationError, String(err));
  assert.equal(
    err.message,
    `serialization error: 1 decision row(s) cannot be read (read past them with { invalid: "skip" }): ` +
      `bad timestamp: decision '${badTime}' has 'yesterday', not an RFC 3339 timestamp`,
  );
  assert.ok(err.cause instanceof OtherError, String(err.cause));
  const badJson = oxideKInsert(reg.db, { timestamp: "2026-01-01T00:00:00+00:00", actor: "j", output: "{oops" });
  err = await log.byActor("j").catch((e) => e);
  assert.ok(err instanceof SerializationError, String(err));
  assert.ok(err.message.includes(`decision '${badJson}' has output that is not valid JSON`), err.message);
  assert.ok(err.cause instanceof SerializationError, String(err.cause));
});

engineTest(
  "rows whose id is not a UUID are refused as oxide-k would ('bad uuid'), its other spellings read",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    const log = await DecisionLog.open(reg);
    const uuid = "0f8e3c2a-1b4d-4e5f-8a9b-0c1d2e3f4a5b";
    const spellings = [uuid.toUpperCase(), uuid.replaceAll("-", ""), `{${uuid}}`, `urn:uuid:${uuid}`];
    for (const [i, id] of spellings.entries()) {
      oxideKInsert(reg.db, { id, timestamp: `2026-01-01T00:00:0${i}Z`, actor: "ok" });
    }
    assert.deepEqual((await log.byActor("ok")).map((d) => d.id), [uuid, uuid, uuid, uuid]);
    const insert = reg.db.prepare(
      "INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence) VALUES (?, '2026-01-01T00:00:00Z', 'bad', 'a', 'r', 'null', 'null', 1)",
    );
    const bad: [unknown, string][] = [
      ["not-a-uuid", "'not-a-uuid'"],
      ["", "''"],
      [`${uuid}x`, `'${uuid}x'`],
      [`{${uuid.replaceAll("-", "")}}`, `'{${uuid.replaceAll("-", "")}}'`],
      [null, "null"],
      [new Uint8Array(16), "a 16-byte blob"],
    ];
    for (const [id] of bad) insert.run(id as string);
    const err = await log.byActor("bad").catch((e) => e);
    assert.ok(err instanceof SerializationError, String(err));
    assert.ok(err.message.includes(`${bad.length} decision row(s) cannot be read`), err.message);
    const rowids = reg.db.prepare("SELECT rowid AS r FROM xai_decisions WHERE actor = 'bad' ORDER BY rowid").all();
    for (const [i, [, shown]] of bad.entries()) {
      const expected = `bad uuid: decision at rowid ${rowids[i]?.r} has id ${shown}, not a UUID`;
      assert.ok(err.message.includes(expected), `${expected}\n${err.message}`);
    }
    assert.ok(err.cause instanceof OtherError);
    assert.deepEqual(await log.byActor("bad", { invalid: "skip" }), []);
  },
);

engineTest(
  "recent(), byActor() and query() name every unreadable row, or skip them with { invalid: 'skip' }",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    const log = await DecisionLog.open(reg);
    const good: string[] = [];
    for (let i = 0; i < 4; i++) {
      good.push(await log.log(newDecision("a", "act", `#${i}`, { timestamp: second(10 * i) })));
    }
    // What an older version of this module wrote for year 10000, and another program's bad JSON, between ours.
    const far = oxideKInsert(reg.db, { timestamp: "+010000-01-01T00:00+00:00", actor: "a", action: "act" });
    const json = oxideKInsert(reg.db, {
      timestamp: "1970-01-01T00:00:15+00:00",
      actor: "a",
      action: "act",
      inputs: "{",
    });
    const reads: [string, (invalid?: "throw" | "skip") => Promise<Decision[]>][] = [
      ["recent", (invalid) => log.recent(10, { invalid })],
      ["byActor", (invalid) => log.byActor("a", { invalid })],
      ["query", async (invalid) => (await log.query({ action: "act", invalid })).decisions],
    ];
    for (const [name, read] of reads) {
      for (const invalid of [undefined, "throw"] as const) {
        const err = await read(invalid).catch((e) => e);
        assert.ok(err instanceof SerializationError, `${name}: ${err}`);
        assert.ok(err.message.startsWith("serialization error: 2 decision row(s) cannot be read"), err.message);
        assert.ok(err.message.includes(`decision '${far}' has '+010000-01-01T00:00+00:00'`), err.message);
        assert.ok(err.message.includes(`decision '${json}' has inputs that is not valid JSON`), err.message);
      }
      assert.deepEqual((await read("skip")).map((d) => d.rationale), ["#3", "#2", "#1", "#0"], name);
      await assert.rejects(read("bogus" as "skip"), TypeError);
    }
    // Paging with "skip": a page may hold fewer decisions than its limit, and the cursor goes past the bad rows.
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await log.query({ limit: 2, cursor, invalid: "skip" });
      seen.push(...names(page));
      cursor = page.nextCursor;
    } while (cursor !== undefined);
    assert.deepEqual(seen, ["#3", "#2", "#1", "#0"]);
    assert.equal(good.length, 4);
  },
);

engineTest(
  "log() and newDecision() refuse a timestamp outside years 0000 to 9999; both ends read back",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    const log = await DecisionLog.open(reg);
    const good = newDecision("a", "b", "c");
    for (
      const date of [
        new Date(Date.UTC(10000, 0, 1)),
        new Date(Date.UTC(-5, 0, 1)),
        new Date("-000001-12-31T23:59:59.999Z"),
      ]
    ) {
      const err = await log.log({ ...good, timestamp: date }).catch((e) => e);
      assert.ok(err instanceof RangeError, String(err));
      assert.equal(err.message, `decision timestamp must be within years 0000 to 9999, got ${date.toISOString()}`);
      assert.throws(() => newDecision("a", "b", "c", { timestamp: date }), RangeError);
      assert.throws(
        () => formatTimestamp(date),
        new RegExp(`^RangeError: ${date.toISOString().replace("+", "\\+")} is outside`),
      );
    }
    assert.equal(await log.count(), 0, "nothing written");
    const ends = [new Date("0000-01-01T00:00:00.000Z"), new Date("9999-12-31T23:59:59.999Z")];
    for (const timestamp of ends) await log.log(newDecision("ends", "b", timestamp.toISOString(), { timestamp }));
    assert.deepEqual((await log.byActor("ends")).map((d) => d.timestamp.toISOString()), [
      "9999-12-31T23:59:59.999Z",
      "0000-01-01T00:00:00.000Z",
    ]);
    assert.deepEqual(reg.db.prepare("SELECT timestamp FROM xai_decisions ORDER BY timestamp").all(), [
      { timestamp: "0000-01-01T00:00:00+00:00" },
      { timestamp: "9999-12-31T23:59:59.999+00:00" },
    ]);
  },
);

// --- log() refusals ---------------------------------------------------------------------------------

engineTest("log() refuses a malformed decision and writes nothing", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const good = newDecision("a", "b", "c");
  // deno-lint-ignore no-explicit-any
  type ErrorClass = new (...args: any[]) => Error;
  const cases: [string, unknown, ErrorClass][] = [
    ["not an object", "decision", TypeError],
    ["null", null, TypeError],
    ["id not a UUID", { ...good, id: "42" }, TypeError],
    ["id missing", { ...good, id: undefined }, TypeError],
    ["timestamp a string", { ...good, timestamp: "2026-01-01" }, TypeError],
    ["timestamp invalid", { ...good, timestamp: new Date(NaN) }, TypeError],
    ["actor a number", { ...good, actor: 1 }, TypeError],
    ["rationale with NUL", { ...good, rationale: "a\0b" }, SerializationError],
    ["confidence a string", { ...good, confidence: "1" }, TypeError],
    ["confidence above 1", { ...good, confidence: 1.5 }, RangeError],
    ["confidence NaN", { ...good, confidence: NaN }, RangeError],
    ["inputs undefined", { ...good, inputs: undefined }, SerializationError],
    ["inputs with NaN", { ...good, inputs: { score: NaN } }, SerializationError],
    ["output a Date", { ...good, output: new Date() }, SerializationError],
    ["output a bigint beyond u64::MAX", { ...good, output: [2n ** 64n] }, SerializationError],
    ["rationale with a lone surrogate", { ...good, rationale: "a\uD800" }, SerializationError],
  ];
  for (const [name, decision, error] of cases) {
    const err = await log.log(decision as Decision).catch((e) => e);
    assert.ok(err instanceof error, `${name}: ${err}`);
  }
  assert.equal(await log.count(), 0);
  const err = await log.log({ ...good, inputs: { a: [1, undefined] } }).catch((e) => e);
  assert.ok(err.message.startsWith(`serialization error: decision '${good.id}' inputs: `), err.message);
  assert.ok(err.message.includes("$.a[1]"), err.message);
});

engineTest("log() refuses to log the same decision twice (insert-only)", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const d = newDecision("a", "b", "c");
  await log.log(d);
  const err = await log.log({ ...d, rationale: "rewritten" }).catch((e) => e);
  assert.ok(err instanceof RegistryError, String(err));
  assert.equal(err.codeName, "SQLITE_CONSTRAINT");
  assert.equal(err.message, `registry error: decision '${d.id}' is already logged (the log is insert-only)`);
  assert.equal(await log.count(), 1);
  assert.equal((await log.recent(1))[0]?.rationale, "c");
});

engineTest("recent() takes a non-negative integer limit", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await log.log(newDecision("a", "b", "c"));
  assert.deepEqual(await log.recent(0), []);
  for (const bad of [-1, 1.5, NaN, "3"]) await assert.rejects(log.recent(bad as number), RangeError);
  await assert.rejects(log.byActor(7 as unknown as string), TypeError);
});

engineTest("a decision log on a closed registry throws RegistryError", async (engine) => {
  const reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await reg.close();
  await assert.rejects(log.log(newDecision("a", "b", "c")), RegistryError);
  await assert.rejects(log.count(), RegistryError);
  await assert.rejects(DecisionLog.open(reg), RegistryError);
});

engineTest(
  "DecisionLog.open() recreates dropped indexes and triggers, and keys rows inserted without them",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    await DecisionLog.open(reg);
    const objects = () =>
      reg.db.prepare(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'xai_decisions' AND type != 'table' AND sql IS NOT NULL ORDER BY name",
      ).all();
    const before = objects();
    assert.equal(before.length, 6);
    for (const row of before) reg.db.exec(`DROP ${row.type} ${row.name}`);
    // Another program's insert while the triggers are gone: no sort key.
    const orphan = oxideKInsert(reg.db, { timestamp: "2026-01-01T00:00:05Z", rationale: "orphan" });
    assert.equal(reg.db.prepare("SELECT timestamp_utc FROM xai_decisions").get()?.timestamp_utc, null);
    const log = await DecisionLog.open(reg);
    assert.deepEqual(objects(), before, "the same indexes and triggers, with the same SQL");
    await log.log(newDecision("a", "b", "ours", { timestamp: second(1) }));
    assert.deepEqual((await log.recent(5)).map((d) => d.rationale), ["orphan", "ours"]);
    assert.equal((await log.query({ since: second(3) })).decisions[0]?.id, orphan);
    oxideKInsert(reg.db, { timestamp: "2026-01-01T00:00:09Z", rationale: "later" });
    assert.equal((await log.recent(1))[0]?.rationale, "later", "the insert trigger is back");
  },
);

engineTest("DecisionLog.open() refuses an xai_decisions table of another shape and keeps nothing", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  reg.db.exec("CREATE TABLE xai_decisions (id TEXT PRIMARY KEY, note TEXT)");
  const err = await DecisionLog.open(reg).catch((e) => e);
  assert.ok(err instanceof RegistryError, String(err));
  assert.match(err.message, /migration 1 .* of 'xai' failed/);
  assert.equal(extensionVersion(reg, "xai"), 0);
});

// --- query(): filters and paging ---------------------------------------------------------------------

/** Logs `n` decisions a second apart from 2026-01-01T00:00:00Z, alternating actors and actions. */
async function seed(log: DecisionLog, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await log.log(newDecision(i % 2 ? "odd" : "even", i % 3 ? "act" : "check", `#${i}`, {
      timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
    }));
  }
}

const second = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, i));
const names = (page: { decisions: Decision[] }) => page.decisions.map((d) => d.rationale);

engineTest("query() filters by actor, action and time range (since inclusive, until exclusive)", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await seed(log, 12);
  assert.deepEqual(names(await log.query({ actor: "odd", limit: 3 })), ["#11", "#9", "#7"]);
  assert.deepEqual(names(await log.query({ action: "check" })), ["#9", "#6", "#3", "#0"]);
  assert.deepEqual(names(await log.query({ since: second(8) })), ["#11", "#10", "#9", "#8"]);
  assert.deepEqual(names(await log.query({ until: second(2) })), ["#1", "#0"]);
  assert.deepEqual(names(await log.query({ since: second(3), until: second(6) })), ["#5", "#4", "#3"]);
  assert.deepEqual(names(await log.query({ actor: "even", action: "check", since: second(1) })), ["#6"]);
  assert.deepEqual(names(await log.query({ actor: "nobody" })), []);
  assert.deepEqual(names(await log.query({ since: second(6), until: second(6) })), []);
  assert.equal((await log.query()).decisions.length, 12);
});

engineTest("query() pages through every matching decision exactly once, ties newest-inserted first", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  // 30 decisions over 4 instants: many share a timestamp, so paging must break ties.
  const logged: string[] = [];
  for (let i = 0; i < 30; i++) {
    const d = newDecision(i % 2 ? "odd" : "even", "act", `#${i}`, { timestamp: second(Math.floor(i / 8)) });
    await log.log(d);
    logged.push(d.rationale);
  }
  const expected = logged.map((name, i) => ({ name, t: Math.floor(i / 8), i }))
    .sort((a, b) => b.t - a.t || b.i - a.i).map((x) => x.name);
  for (const filter of [{}, { actor: "odd" }, { since: second(1), until: second(3) }]) {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await log.query({ ...filter, limit: 7, cursor });
      seen.push(...names(page));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== undefined);
    const want = expected.filter((name) => {
      const i = Number(name.slice(1));
      const t = Math.floor(i / 8);
      return ("actor" in filter ? i % 2 === 1 : true) && ("since" in filter ? t >= 1 && t < 3 : true);
    });
    assert.deepEqual(seen, want, JSON.stringify(filter));
    assert.equal(pages, Math.max(1, Math.ceil(want.length / 7)), "no empty last page");
  }
});

engineTest("query() cursors stay valid while decisions are added", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await seed(log, 6);
  const first = await log.query({ limit: 3 });
  assert.deepEqual(names(first), ["#5", "#4", "#3"]);
  await log.log(newDecision("even", "act", "late", { timestamp: second(100) }));
  await log.log(newDecision("even", "act", "backdated", { timestamp: second(1) }));
  const rest = await log.query({ limit: 10, cursor: first.nextCursor });
  assert.deepEqual(names(rest), ["#2", "backdated", "#1", "#0"]);
  assert.equal(rest.nextCursor, undefined);
});

engineTest("query() rejects bad limits, filters and cursors", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await seed(log, 3);
  const forged = new TextEncoder().encode('{"not":"a cursor"}').toBase64({ alphabet: "base64url" });
  const cases: [string, unknown, typeof Error][] = [
    ["limit 0", { limit: 0 }, RangeError],
    ["limit 10001", { limit: 10_001 }, RangeError],
    ["limit 2.5", { limit: 2.5 }, RangeError],
    ["actor a number", { actor: 1 }, TypeError],
    ["action null", { action: null }, TypeError],
    ["since a string", { since: "2026-01-01" }, TypeError],
    ["until invalid", { until: new Date(NaN) }, TypeError],
    ["since beyond year 9999", { since: new Date(Date.UTC(10000, 0, 1)) }, RangeError],
    ["cursor garbage", { cursor: "!!" }, TypeError],
    ["cursor of another shape", { cursor: forged }, TypeError],
    ["cursor a number", { cursor: 5 }, TypeError],
    ["options not an object", "all", TypeError],
  ];
  for (const [name, options, error] of cases) {
    const err = await log.query(options as Parameters<DecisionLog["query"]>[0]).catch((e) => e);
    assert.ok(err instanceof error, `${name}: ${err}`);
  }
});

// --- indexes --------------------------------------------------------------------------------------------

/** `EXPLAIN QUERY PLAN` details of `sql`, every parameter NULL (the plan does not depend on their values). */
function plan(reg: StateRegistry, sql: string): string[] {
  const numbered = Array.from(sql.matchAll(/\?(\d+)/g), (m) => Number(m[1]));
  const count = numbered.length > 0 ? Math.max(...numbered) : sql.split("?").length - 1;
  const params = Array.from({ length: count }, () => null);
  return reg.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params).map((row) => String(row.detail));
}

engineTest("every decision-log query reads through an index, never a full scan or a sort", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  await seed(log, 50);
  reg.db.exec("ANALYZE"); // The planner must keep its choice with statistics too.
  const check = (sql: string, index: string) => {
    const details = plan(reg, sql);
    assert.equal(details.length, 1, `${sql}\n${details.join("\n")}`);
    const detail = details[0]!;
    assert.match(detail, /^(SEARCH|SCAN) xai_decisions USING INDEX /, sql);
    assert.doesNotMatch(detail, /TEMP B-TREE/, sql);
    const used = detail.replace(/^(SEARCH|SCAN) xai_decisions USING INDEX (\w+).*$/, "$2");
    assert.equal(used, index, sql);
    if (sql.includes("WHERE")) assert.match(detail, /^SEARCH/, `${sql}: a filter must narrow the range`);
  };
  check(DECISION_SQL.recent, "idx_xai_time_utc");
  check(DECISION_SQL.byActor, "idx_xai_actor_time_utc");
  for (let bits = 0; bits < 32; bits++) {
    const shape: QueryShape = {
      actor: (bits & 1) !== 0,
      action: (bits & 2) !== 0,
      since: (bits & 4) !== 0,
      until: (bits & 8) !== 0,
      cursor: (bits & 16) !== 0,
    };
    const expected = shape.actor
      ? "idx_xai_actor_time_utc"
      : shape.action
      ? "idx_xai_action_time_utc"
      : "idx_xai_time_utc";
    check(querySql(shape), expected);
  }
});
