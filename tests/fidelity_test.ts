// Fidelity with a Rust oxide-k kernel: integers beyond 2^53 read and written exactly (as bigint), lone UTF-16
// surrogates refused wherever text enters, and decisions logged at a leap second found by every query.
import assert from "node:assert/strict";
import {
  DecisionLog,
  decodeJson,
  encodeJson,
  type JsonValue,
  newDecision,
  SerializationError,
  StateRegistry,
} from "@oxide/registry";
import { engineTest, rawSqlite, tempDir } from "./_helpers.ts";
import { variantTest } from "./_variants.ts";

const U64_MAX = 18446744073709551615n;
const I64_MIN = -9223372036854775808n;
const TWO_53_PLUS_1 = 9007199254740993n;

/** What a Rust kernel stores (serde_json's compact text) and what we read it as. */
const BIG: { text: string; value: JsonValue }[] = [
  { text: "9007199254740993", value: TWO_53_PLUS_1 },
  { text: "18446744073709551615", value: U64_MAX },
  { text: "-9223372036854775808", value: I64_MIN },
  { text: "-9007199254740993", value: -TWO_53_PLUS_1 },
  {
    text:
      '{"id":18446744073709551615,"nested":{"list":[9007199254740993,-9223372036854775808,1,2.5]},"safe":9007199254740991}',
    value: { id: U64_MAX, nested: { list: [TWO_53_PLUS_1, I64_MIN, 1, 2.5] }, safe: 9007199254740991 },
  },
  { text: '[[18446744073709551615],{"a":[-9223372036854775808]}]', value: [[U64_MAX], { a: [I64_MIN] }] },
  // An exponent is a float to serde_json, and stays a number here.
  { text: "[1e+300,-1e+21]", value: [1e300, -1e21] },
  // A long digit run inside a string is text.
  { text: '"12345678901234567890"', value: "12345678901234567890" },
];

Deno.test("decodeJson() reads integers beyond 2^53 as exact bigints and encodeJson() writes them back as the same text", async (t) => {
  for (const { text, value } of BIG) {
    await t.step(text, () => {
      assert.deepEqual(decodeJson(text), value);
      assert.equal(encodeJson(value), text);
    });
  }
  await t.step("a fraction is a float to serde_json, and stays a number", () => {
    assert.deepEqual(decodeJson("[12345678901234567.5,18446744073709551615.0,1.8446744073709552e19]"), [
      12345678901234567.5,
      18446744073709551615.0,
      1.8446744073709552e19,
    ]);
  });
  await t.step("a number beyond 2^53 is an integer: written as its digits, it reads back as that exact bigint", () => {
    assert.equal(encodeJson(2 ** 64), "18446744073709551616");
    assert.equal(decodeJson(encodeJson(2 ** 64)), 2n ** 64n);
    assert.equal(decodeJson(encodeJson(-(2 ** 60))), -(2n ** 60n));
  });
  await t.step("a bigint a double holds exactly reads back as a number", () => {
    assert.equal(encodeJson(42n), "42");
    assert.equal(decodeJson(encodeJson(-9007199254740991n)), -9007199254740991);
  });
});

variantTest(
  "config values with integers beyond 2^53 round-trip exactly, nested in objects and arrays",
  async (engine, variant) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    {
      await using reg = await variant.connect(path, { engine });
      for (const [i, { value }] of BIG.entries()) await reg.setConfig(`big.${i}`, value);
      for (const [i, { value }] of BIG.entries()) assert.deepEqual(await reg.getConfig(`big.${i}`), value);
    }
    await using again = await variant.connect(path, { engine });
    for (const [i, { value }] of BIG.entries()) assert.deepEqual(await again.getConfig(`big.${i}`), value);
  },
);

engineTest(
  "a value a Rust kernel stored with u64::MAX, i64::MIN and 2^53+1 reads exactly, and writing it back stores the same text",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    { // A file as oxide-k leaves it.
      await using _created = await StateRegistry.connect(path, { engine });
    }
    const raw = rawSqlite(path);
    for (const [i, { text }] of BIG.entries()) {
      raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, '2026-11-28T09:15:02+00:00')").run(
        `rust.${i}`,
        text,
      );
    }
    raw.close();
    {
      await using reg = await StateRegistry.connect(path, { engine });
      for (const [i, { value }] of BIG.entries()) {
        const read = await reg.getConfig(`rust.${i}`);
        assert.deepEqual(read, value);
        await reg.setConfig(`rust.${i}`, read); // The read-modify-write that used to store the wrong number.
      }
    }
    const check = rawSqlite(path);
    const rows = check.prepare("SELECT key, value FROM config ORDER BY key").all() as { key: string; value: string }[];
    check.close();
    assert.deepEqual(rows.map((r) => r.value), BIG.map((b) => b.text));
  },
);

engineTest("decision inputs and outputs keep integers beyond 2^53, ours and a Rust kernel's", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  const log = await DecisionLog.open(reg);
  const inputs = { seq: U64_MAX, offsets: [I64_MIN, TWO_53_PLUS_1] };
  const d = newDecision("healer", "count", "exact", { inputs, output: TWO_53_PLUS_1 });
  await log.log(d);
  const stored = reg.db.prepare("SELECT inputs, output FROM xai_decisions WHERE id = ?").get(d.id);
  assert.deepEqual(stored, {
    inputs: '{"seq":18446744073709551615,"offsets":[-9223372036854775808,9007199254740993]}',
    output: "9007199254740993",
  });
  reg.db.prepare(
    `INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence)
     VALUES ('6f1d6c1e-8a43-4f5e-9a51-3a1b2c3d4e5f', '2026-11-28T09:15:02.123456789+00:00', 'rust', 'a', 'r', ?, ?, 1)`,
  ).run('[18446744073709551615,{"n":-9223372036854775808}]', "9007199254740993");
  const rust = (await log.byActor("rust"))[0];
  const ours = (await log.byActor("healer"))[0];
  assert.deepEqual(rust?.inputs, [U64_MAX, { n: I64_MIN }]);
  assert.equal(rust?.output, TWO_53_PLUS_1);
  assert.deepEqual(ours?.inputs, inputs);
  assert.equal(ours?.output, TWO_53_PLUS_1);
});

engineTest("a bigint outside i64::MIN to u64::MAX is refused before anything is written", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  for (const value of [U64_MAX + 1n, I64_MIN - 1n, { a: [2n ** 70n] }]) {
    await assert.rejects(reg.setConfig("too.big", value), (error: Error) => {
      assert.ok(error instanceof SerializationError);
      assert.match(error.message, /bigint -?\d+n at \$(\.a\[0\])? is outside i64::MIN to u64::MAX/);
      return true;
    });
  }
  assert.equal(await reg.tryGetConfig("too.big"), undefined);
});

// --- lone surrogates ------------------------------------------------------------------------------

/** Every table a refused call could have written to, as rows. */
function snapshot(reg: StateRegistry): unknown {
  return ["modules", "config", "xai_decisions"].map((table) =>
    reg.db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).all()
  );
}

engineTest("a lone surrogate is refused wherever text enters, and nothing is written", async (engine, t) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("r.db"), { engine });
  const log = await DecisionLog.open(reg);
  await reg.upsertModule({ id: "echo", name: "Echo", version: "1", kind: "native" }, "loaded");
  await reg.setConfig("a\uFFFD", "the key U+FFFD");
  const good = newDecision("actor", "action", "why");
  const lone = ["\uD800", "x\uDC00y", "\uDBFF", "pair \uD83D\uDE00 then lone \uDE00"];
  const before = snapshot(reg);
  const calls: [string, (s: string) => Promise<unknown>, RegExp][] = [
    ["setConfig key", (s) => reg.setConfig(s, 1), /config key must not contain a lone surrogate/],
    ["setConfig string value", (s) => reg.setConfig("k", s), /the string at \$ has a lone surrogate/],
    [
      "setConfig nested value",
      (s) => reg.setConfig("k", { a: [1, s] }),
      /the string at \$\.a\[1\] has a lone surrogate/,
    ],
    [
      "setConfig property name",
      (s) => reg.setConfig("k", { [s]: 1 }),
      /the property name at \$\..* has a lone surrogate/,
    ],
    ["getConfig key", (s) => reg.getConfig(s), /config key must not contain a lone surrogate/],
    ["tryGetConfig key", (s) => reg.tryGetConfig(s), /config key must not contain a lone surrogate/],
    ["deleteConfig key", (s) => reg.deleteConfig(s), /config key must not contain a lone surrogate/],
    ["module id", (s) => reg.upsertModule({ id: s, name: "n", version: "1", kind: "native" }, "loaded"), /module id/],
    [
      "module name",
      (s) => reg.upsertModule({ id: "echo", name: s, version: "1", kind: "native" }, "running"),
      /module name/,
    ],
    [
      "module version",
      (s) => reg.upsertModule({ id: "echo", name: "n", version: s, kind: "native" }, "running"),
      /module version/,
    ],
    [
      "module description",
      (s) => reg.upsertModule({ id: "echo", name: "n", version: "1", kind: "native", description: s }, "running"),
      /module description/,
    ],
    ["setModuleState id", (s) => reg.setModuleState(s, "running"), /module id/],
    ["getModule id", (s) => reg.getModule(s), /module id/],
    ["decision actor", (s) => log.log({ ...good, actor: s }), /actor must not contain a lone surrogate/],
    ["decision action", (s) => log.log({ ...good, action: s }), /action must not contain a lone surrogate/],
    ["decision rationale", (s) => log.log({ ...good, rationale: s }), /rationale must not contain a lone surrogate/],
    ["decision inputs", (s) => log.log({ ...good, inputs: { s } }), /decision '.*' inputs: the string at \$\.s has/],
    ["decision output", (s) => log.log({ ...good, output: [s] }), /decision '.*' output: the string at \$\[0\] has/],
    ["newDecision", (s) => Promise.resolve().then(() => newDecision(s, "a", "r")), /actor must not contain/],
    ["byActor", (s) => log.byActor(s), /actor must not contain a lone surrogate/],
    ["query actor", (s) => log.query({ actor: s }), /actor must not contain a lone surrogate/],
  ];
  for (const [what, call, message] of calls) {
    await t.step(what, async () => {
      for (const s of lone) {
        await assert.rejects(call(s), (error: Error) => {
          assert.ok(error instanceof SerializationError, String(error)); // In a key as in a value.
          assert.match(error.message, message);
          assert.match(error.message, /U\+D[89A-F][0-9A-F]{2} at index \d+/);
          assert.ok(error.message.isWellFormed(), "the message itself is well formed");
          return true;
        });
      }
      assert.deepEqual(snapshot(reg), before);
    });
  }
  // The key that used to collide with "a\uD800" is untouched, and a well-formed pair is fine.
  assert.equal(await reg.getConfig("a\uFFFD"), "the key U+FFFD");
  await reg.setConfig("emoji \uD83D\uDE00", "\uD83D\uDE00");
  assert.equal(await reg.getConfig("emoji \uD83D\uDE00"), "\uD83D\uDE00");
});

// --- leap seconds ---------------------------------------------------------------------------------

/** Rows around the leap second at the end of 2016, spelled as chrono and other writers spell them, in time order. */
const AROUND_LEAP = [
  { id: "00000000-0000-4000-8000-000000000001", timestamp: "2016-12-31T23:59:59.900+00:00" },
  { id: "00000000-0000-4000-8000-000000000002", timestamp: "2016-12-31T18:59:60.250-05:00" },
  { id: "00000000-0000-4000-8000-000000000003", timestamp: "2016-12-31T23:59:60.500+00:00" },
  { id: "00000000-0000-4000-8000-000000000004", timestamp: "2016-12-31T23:59:60Z" },
  { id: "00000000-0000-4000-8000-000000000005", timestamp: "2017-01-01T00:00:00.100+00:00" },
];
// 23:59:60Z (no fraction) sorts before 60.250: put the expected order right.
const LEAP_ORDER = [0, 3, 1, 2, 4].map((i) => AROUND_LEAP[i]!.id);

function insertAroundLeap(reg: StateRegistry): void {
  for (const row of AROUND_LEAP) {
    reg.db.prepare(
      `INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence)
       VALUES (?, ?, 'clock', 'tick', 'leap', 'null', 'null', 1)`,
    ).run(row.id, row.timestamp);
  }
}

async function assertFoundByEveryQuery(log: DecisionLog): Promise<void> {
  const newestFirst = [...LEAP_ORDER].reverse();
  const ids = (ds: { id: string }[]) => ds.map((d) => d.id);
  assert.deepEqual(ids(await log.recent(10)), newestFirst);
  assert.deepEqual(ids(await log.byActor("clock")), newestFirst);
  assert.deepEqual(ids((await log.query({})).decisions), newestFirst);
  assert.deepEqual(ids((await log.query({ actor: "clock" })).decisions), newestFirst);
  assert.deepEqual(ids((await log.query({ action: "tick" })).decisions), newestFirst);
  const range = { since: new Date("2016-12-31T23:59:59.999Z"), until: new Date("2017-01-01T00:00:00Z") };
  assert.deepEqual(ids((await log.query(range)).decisions), newestFirst.slice(1, 4));
  assert.deepEqual(
    ids((await log.query({ ...range, actor: "clock", action: "tick" })).decisions),
    newestFirst.slice(1, 4),
  );
  const paged: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await log.query({ limit: 2, ...(cursor === undefined ? {} : { cursor }) });
    paged.push(...ids(page.decisions));
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  assert.deepEqual(paged, newestFirst);
  assert.equal(await log.count(), AROUND_LEAP.length);
  // Read back as the last millisecond of its minute, as parseTimestamp reads a leap second.
  const leap = (await log.recent(10)).find((d) => d.id === AROUND_LEAP[2]!.id);
  assert.equal(leap?.timestamp.toISOString(), "2016-12-31T23:59:59.999Z");
}

engineTest(
  "a decision logged at a leap second (23:59:60.500+00:00, as chrono writes it) is found by every query",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    const log = await DecisionLog.open(reg);
    insertAroundLeap(reg);
    await assertFoundByEveryQuery(log);
  },
);

engineTest("opening a log whose rows an older version keyed '' at a leap second re-keys them", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await DecisionLog.open(reg);
  }
  // What the version before migration 3 left: triggers that key a leap second '', and rows keyed so.
  const raw = rawSqlite(path);
  raw.exec(`DROP TRIGGER xai_decisions_utc_insert;
    CREATE TRIGGER xai_decisions_utc_insert AFTER INSERT ON xai_decisions WHEN NEW.timestamp_utc IS NULL
    BEGIN UPDATE xai_decisions SET timestamp_utc = '' WHERE rowid = NEW.rowid; END;
    DELETE FROM oxide_migrations WHERE owner = 'xai' AND version = 3`);
  for (const row of AROUND_LEAP) {
    raw.prepare(
      `INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence)
       VALUES (?, ?, 'clock', 'tick', 'leap', 'null', 'null', 1)`,
    ).run(row.id, row.timestamp);
  }
  raw.exec("UPDATE xai_decisions SET timestamp_utc = '' WHERE substr(timestamp, 18, 2) = '60'");
  raw.close();
  await using reg = await StateRegistry.connect(path, { engine });
  const log = await DecisionLog.open(reg);
  await assertFoundByEveryQuery(log);
  // And the trigger now keys rows a Rust kernel inserts at a leap second.
  reg.db.prepare(
    `INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence)
     VALUES ('00000000-0000-4000-8000-000000000009', '2016-12-31T23:59:60.999+00:00', 'rust', 'tick', 'r', 'null', 'null', 1)`,
  ).run();
  const key = reg.db.prepare("SELECT timestamp_utc FROM xai_decisions WHERE actor = 'rust'").get();
  assert.deepEqual(key, { timestamp_utc: "2016-12-31T23:59:60.999000000Z" });
});

engineTest(
  "importData() refuses a document with a lone surrogate in a key, a value or a decision, and writes nothing",
  async (engine, t) => {
    await using source = await StateRegistry.inMemory({ engine });
    await source.upsertModule({ id: "echo", name: "Echo", version: "1", kind: "native" }, "loaded");
    await source.setConfig("greeting", { text: "hi" });
    await DecisionLog.open(source).then((log) => log.log(newDecision("actor", "action", "why")));
    const text = JSON.stringify(await source.exportData());
    // Each case edits the exported JSON text: "\ud800" there is an escape JSON.parse turns into a lone surrogate.
    const cases: [string, (doc: Record<string, Record<string, unknown>[]>) => void, RegExp][] = [
      ["config key", (doc) => doc.config![0]!.key = "greeting\ud800", /key must not contain a lone surrogate/],
      ["module name", (doc) => doc.modules![0]!.name = "\udc00", /name must not contain a lone surrogate/],
      ["decision actor", (doc) => doc.decisions![0]!.actor = "a\ud800", /actor must not contain a lone surrogate/],
      [
        "config value",
        (doc) => doc.config![0]!.json = '{"text":"\\ud800"}',
        /json: the string at \$\.text has a lone surrogate \(U\+D800 at index 0\), which oxide-k cannot read/,
      ],
      ["decision inputs", (doc) => doc.decisions![0]!.inputs = '{"\\udfff":1}', /inputs: the property name at/],
    ];
    for (const [what, edit, message] of cases) {
      await t.step(what, async () => {
        await using target = await StateRegistry.inMemory({ engine });
        await DecisionLog.open(target);
        const before = snapshot(target);
        const doc = JSON.parse(text);
        edit(doc);
        await assert.rejects(target.importData(doc), (error: Error) => {
          assert.ok(error instanceof SerializationError, String(error));
          assert.match(error.message, message);
          return true;
        });
        assert.deepEqual(snapshot(target), before);
      });
    }
  },
);

engineTest(
  "an integer a Rust kernel stored beyond u64::MAX reads as an exact bigint, and writing it back is refused (documented)",
  async (engine) => {
    await using dir = await tempDir();
    await using reg = await StateRegistry.connect(dir.file("r.db"), { engine });
    await reg.setConfig("counter", 0);
    // As serde_json with arbitrary_precision (or any other writer) may leave it: digits no i64 or u64 holds.
    reg.db.prepare("UPDATE config SET value = ?1 WHERE key = 'counter'").run('{"n":1,"huge":18446744073709551616}');
    assert.deepEqual(await reg.getConfig("counter"), { n: 1, huge: 2n ** 64n });
    // A default serde_json (oxide-k) would read it as an f64; writing the bigint would claim an exactness oxide-k does
    // not have, so it is refused, and an update() that keeps it fails the same way, with nothing written.
    await assert.rejects(
      reg.update<{ n: number; huge: bigint }>("counter", (value) => ({ ...value!, n: value!.n + 1 })),
      (error: unknown) => error instanceof SerializationError && /outside i64::MIN to u64::MAX/.test(error.message),
    );
    const stored = reg.db.prepare("SELECT value FROM config WHERE key = 'counter'").get()?.value;
    assert.equal(stored, '{"n":1,"huge":18446744073709551616}', "nothing was written");
  },
);
