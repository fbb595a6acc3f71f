// Many callers at once: 1,000 overlapping async calls in one process, several processes writing one file, and
// close() while calls are in flight. Every test runs on both engines, plain and sealed.
import assert from "node:assert/strict";
import {
  type EngineName,
  KernelError,
  MODULE_KINDS,
  MODULE_STATES,
  type ModuleMetadata,
  type ModuleRecord,
  type ModuleState,
  RegistryError,
  type RetentionOptions,
  StateRegistry,
} from "@oxide/registry";
import { REGISTRY_MIGRATIONS } from "../src/schema.ts";
import { SEALING_MIGRATIONS } from "../src/sealing/sealing.ts";
import { tempDir } from "./_helpers.ts";
import { type RegistryVariant, VARIANTS, variantTest } from "./_variants.ts";
import { Worker } from "./_subprocess.ts";

// --- one process, many callers -------------------------------------------------------------------------------------

type Call =
  | { op: "setConfig"; key: string; value: unknown }
  | { op: "getConfig"; key: string }
  | { op: "tryGetConfig"; key: string }
  | { op: "deleteConfig"; key: string }
  | { op: "upsertModule"; meta: ModuleMetadata; state: ModuleState }
  | { op: "setModuleState"; id: string; state: ModuleState }
  | { op: "getModule"; id: string }
  | { op: "listModules" };

/** What a call gave: its value, or its error's class and message. */
type Outcome = { value: unknown } | { error: string };

const KEYS = Array.from({ length: 12 }, (_, i) => `key.${i}`);
const IDS = Array.from({ length: 6 }, (_, i) => `module-${i}`);

/** mulberry32: the same seed gives the same calls on every run. */
function random(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * below);
  };
}

function makeCalls(count: number, seed: number): Call[] {
  const next = random(seed);
  const calls: Call[] = [];
  for (let i = 0; i < count; i++) {
    const key = KEYS[next(KEYS.length)]!;
    const id = IDS[next(IDS.length)]!;
    const state = MODULE_STATES[next(MODULE_STATES.length)]!;
    switch (next(10)) {
      case 0:
      case 1:
      case 2: // A value large enough to span pages, with a checksum-like echo of itself: a torn value cannot pass.
        calls.push({ op: "setConfig", key, value: { call: i, body: "v".repeat(next(3000)), tail: [i, { call: i }] } });
        break;
      case 3:
        calls.push({ op: "getConfig", key });
        break;
      case 4:
        calls.push({ op: "tryGetConfig", key });
        break;
      case 5:
        calls.push({ op: "deleteConfig", key });
        break;
      case 6: {
        const kind = MODULE_KINDS[next(MODULE_KINDS.length)]!;
        calls.push({ op: "upsertModule", meta: { id, name: `name ${i}`, version: `${i}.0.0`, kind }, state });
        break;
      }
      case 7:
        calls.push({ op: "setModuleState", id, state });
        break;
      case 8:
        calls.push({ op: "getModule", id });
        break;
      default:
        calls.push({ op: "listModules" });
    }
  }
  return calls;
}

/** A module record without `updatedAt`, which differs between two runs of the same calls. */
function withoutTime(record: ModuleRecord | undefined): unknown {
  if (record === undefined) return undefined;
  const { updatedAt, ...rest } = record;
  assert.ok(updatedAt instanceof Date && !Number.isNaN(updatedAt.getTime()));
  return rest;
}

function perform(reg: StateRegistry, call: Call): Promise<unknown> {
  switch (call.op) {
    case "setConfig":
      return reg.setConfig(call.key, call.value);
    case "getConfig":
      return reg.getConfig(call.key);
    case "tryGetConfig":
      return reg.tryGetConfig(call.key);
    case "deleteConfig":
      return reg.deleteConfig(call.key);
    case "upsertModule":
      return reg.upsertModule(call.meta, call.state);
    case "setModuleState":
      return reg.setModuleState(call.id, call.state);
    case "getModule":
      return reg.getModule(call.id);
    case "listModules":
      return reg.listModules();
  }
}

/** The outcome of `call`: one `then` on the call's own promise, so outcomes settle in the calls' completion order. */
function outcomeOf(call: Call, promise: Promise<unknown>): Promise<Outcome> {
  return promise.then(
    (value) => ({
      value: call.op === "getModule"
        ? withoutTime(value as ModuleRecord | undefined)
        : call.op === "listModules"
        ? (value as ModuleRecord[]).map(withoutTime)
        : value,
    }),
    (error) => {
      assert.ok(error instanceof KernelError, `every failure is a KernelError: ${error}`);
      return { error: `${error.name}: ${error.message}` };
    },
  );
}

/** Every config value and module, for comparing two registries. */
async function snapshot(reg: StateRegistry): Promise<unknown> {
  const config: Record<string, unknown> = {};
  for (const key of KEYS) config[key] = await reg.tryGetConfig(key);
  return { config, modules: (await reg.listModules()).map(withoutTime) };
}

variantTest(
  "1,000 calls started together end in the state a serial replay in completion order gives",
  async (engine, variant) => {
    await using dir = await tempDir();
    const calls = makeCalls(1000, 0x5eed);
    await using reg = await variant.connect(dir.file("registry.db"), { engine, durability: "normal" });
    const order: number[] = [];
    const outcomes: Outcome[] = [];
    // Started together, in one synchronous loop; each outcome is recorded the moment its promise settles.
    await Promise.all(calls.map((call, i) =>
      outcomeOf(call, perform(reg, call)).then((outcome) => {
        order.push(i);
        outcomes[i] = outcome;
      })
    ));
    assert.equal(order.length, calls.length);

    // The same calls, one at a time, in the order they completed.
    await using replay = await variant.inMemory({ engine });
    // Each key's values, in the replay's order; `undefined` while it is absent.
    const history = new Map<string, unknown[]>(KEYS.map((key) => [key, [undefined]]));
    const readOf = (call: Call & { op: "getConfig" | "tryGetConfig" }, held: unknown): Outcome =>
      held !== undefined || call.op === "tryGetConfig"
        ? { value: held }
        : { error: `ConfigNotFoundError: configuration key not found: ${call.key}` };
    for (const i of order) {
      const call = calls[i]!;
      const expected = await outcomeOf(call, perform(replay, call));
      const got = outcomes[i]!;
      if (call.op === "getConfig" || call.op === "tryGetConfig") {
        const held = history.get(call.key)!;
        assert.deepEqual(expected, readOf(call, held.at(-1)), "the replay reads the last value");
        // A read takes its value when it starts, so calls that completed before it may have changed the key since:
        // it must see a whole value the key held at some point up to its completion, never a torn or later one.
        assert.ok(
          held.some((value) => isDeepEqual(got, readOf(call, value))),
          `call ${i} (${call.op} '${call.key}') saw ${JSON.stringify(got).slice(0, 200)}, never held by the key`,
        );
      } else {
        assert.deepEqual(got, expected, `call ${i} (${call.op}) differs from the serial replay`);
      }
      if (call.op === "setConfig") history.get(call.key)!.push(call.value);
      if (call.op === "deleteConfig") history.get(call.key)!.push(undefined);
    }
    assert.deepEqual(await snapshot(reg), await snapshot(replay));
  },
);

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

// --- close() while busy --------------------------------------------------------------------------------------------

variantTest("close() waits for the calls in flight, and calls after it throw", async (engine, variant) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  const reg = await variant.connect(path, { engine });
  await reg.upsertModule({ id: "m", name: "M", version: "1", kind: "native" }, "loaded");
  const writes = Array.from({ length: 50 }, (_, i) => reg.setConfig(`key.${i}`, { i, body: "x".repeat(2000) }));
  const reads = Array.from({ length: 10 }, () => reg.getModule("m"));
  const closing = reg.close();
  assert.equal(reg.isOpen, false, "closed to new calls at once");
  const late: Promise<unknown>[] = [
    reg.setConfig("late", 1),
    reg.getConfig("key.0"),
    reg.upsertModule({ id: "late", name: "L", version: "1", kind: "native" }, "loaded"),
    reg.listModules(),
  ].map((call) => call.then(() => "resolved", (error) => error));
  await closing;
  await Promise.all([...writes, ...reads]); // Every call in flight completed.
  for (const outcome of await Promise.all(late)) {
    assert.ok(outcome instanceof RegistryError && /is closed/.test(outcome.message), String(outcome));
  }
  for (const call of [reg.deleteConfig("key.0"), reg.setModuleState("m", "running"), reg.tryGetConfig("key.1")]) {
    await assert.rejects(call, (error: unknown) => error instanceof RegistryError && /is closed/.test(error.message));
  }
  await reg.close(); // Idempotent.
  await using again = await variant.connect(path, { engine });
  for (let i = 0; i < 50; i++) assert.deepEqual(await again.getConfig(`key.${i}`), { i, body: "x".repeat(2000) });
  assert.equal(await again.tryGetConfig("late"), undefined);
  assert.equal(await again.getModule("late"), undefined);
});

variantTest("disposing with `using` while calls are in flight fails them whole", async (engine, variant) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  const value = (i: number) => ({ i, body: "y".repeat(5000) });
  const settled: { i: number; ok: boolean }[] = [];
  const calls: Promise<void>[] = [];
  {
    using reg = await variant.connect(path, { engine });
    for (let i = 0; i < 50; i++) {
      calls.push(
        reg.setConfig(`key.${i}`, value(i)).then(
          () => void settled.push({ i, ok: true }),
          (error) => {
            assert.ok(error instanceof RegistryError && /is closed/.test(error.message), String(error));
            settled.push({ i, ok: false });
          },
        ),
      );
    }
  } // Closed here, at once.
  await Promise.all(calls);
  assert.equal(settled.length, 50);
  await using again = await variant.connect(path, { engine });
  assert.deepEqual(await again.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }]);
  for (const { i, ok } of settled) {
    // A call that succeeded is there whole; one that failed left nothing.
    assert.deepEqual(await again.tryGetConfig(`key.${i}`), ok ? value(i) : undefined, `key.${i}`);
  }
  if (variant.name === "plain") {
    // A plain registry does its work synchronously inside each call: none is ever in flight, so all succeeded.
    assert.ok(settled.every((s) => s.ok), "plain calls complete before the block ends");
  } else {
    assert.ok(settled.some((s) => !s.ok), "the sealed calls were in flight when the registry closed");
  }
});

// --- several processes ---------------------------------------------------------------------------------------------

/** Records every write to `config` and `modules` in commit order: triggers run inside the writing transaction. */
const WRITE_LOG_SQL = `
CREATE TABLE write_log (n INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE TRIGGER write_log_config_insert AFTER INSERT ON config
  BEGIN INSERT INTO write_log (tbl, key, value) VALUES ('config', NEW.key, NEW.value); END;
CREATE TRIGGER write_log_config_update AFTER UPDATE ON config
  BEGIN INSERT INTO write_log (tbl, key, value) VALUES ('config', NEW.key, NEW.value); END;
CREATE TRIGGER write_log_modules_insert AFTER INSERT ON modules
  BEGIN INSERT INTO write_log (tbl, key, value) VALUES ('modules', NEW.id, NEW.name || ':' || NEW.version); END;
CREATE TRIGGER write_log_modules_update AFTER UPDATE ON modules
  BEGIN INSERT INTO write_log (tbl, key, value) VALUES ('modules', NEW.id, NEW.name || ':' || NEW.version); END;
`;

interface Write {
  table: string;
  key: string;
  writer: number;
  seq: number;
}

/** Spawns `engines.length` writers on `path`, releases them together, and returns each one's acknowledged writes. */
async function runWriters(
  path: string,
  folder: string,
  engines: readonly EngineName[],
  variant: RegistryVariant,
  writes: number,
  connect: { busyTimeoutMs?: number; retention?: RetentionOptions } = {},
): Promise<Write[][]> {
  const workers = engines.map((engine, writer) =>
    new Worker("writer.ts", [JSON.stringify({ path, engine, variant: variant.name, writer, writes, ...connect })], {
      folders: [folder],
    })
  );
  try {
    for (const worker of workers) assert.equal(await worker.nextLine(), '"ready"');
    await Promise.all(workers.map((worker) => worker.send("go\n")));
    const results = await Promise.all(workers.map((worker) => worker.finish()));
    return results.map(({ status, lines, stderr }, writer) => {
      const parsed = lines.map((line) => JSON.parse(line));
      const failure = parsed.find((line) => line.error !== undefined);
      assert.equal(failure, undefined, `writer ${writer} failed: ${JSON.stringify(failure)}\n${stderr}`);
      assert.doesNotMatch(stderr, /database is locked|SQLITE_BUSY/i, `writer ${writer}`);
      assert.equal(status.code, 0, `writer ${writer} exited with ${status.code}: ${stderr}`);
      assert.deepEqual(parsed.at(-1), { done: true }, `writer ${writer} finished`);
      return parsed.filter((line) => line.ack !== undefined).map((line) => line.ack as Write);
    });
  } finally {
    for (const worker of workers) await worker[Symbol.asyncDispose]();
  }
}

/**
 * Decodes the logged config values (plain or sealed) through the registry API, on a copy of the file: each is put
 * back as its key's stored value and read with getConfig.
 */
async function decodeLog(
  path: string,
  engine: EngineName,
  variant: RegistryVariant,
  log: { tbl: string; key: string; value: string }[],
): Promise<Write[]> {
  const copy = `${path}.decode`;
  await Deno.copyFile(path, copy);
  await using reg = await variant.connect(copy, { engine, durability: "normal" });
  const put = reg.db.prepare("UPDATE config SET value = ?1 WHERE key = ?2");
  const decoded: Write[] = [];
  for (const { tbl, key, value } of log) {
    if (tbl === "config") {
      put.run(value, key);
      const { writer, seq } = await reg.getConfig<{ writer: number; seq: number }>(key);
      decoded.push({ table: tbl, key, writer, seq });
    } else {
      const [, writer, seq] = /^w(\d+):(\d+)$/.exec(value)!;
      decoded.push({ table: tbl, key, writer: Number(writer), seq: Number(seq) });
    }
  }
  return decoded;
}

variantTest(
  "4 processes writing one file at once: every acknowledged write is there, the last commit wins, none sees SQLITE_BUSY",
  async (engine, variant) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await variant.connect(path, { engine });
      reg.db.exec(WRITE_LOG_SQL);
    }
    const WRITES = 240;
    const acked = await runWriters(path, dir.path, [engine, engine, engine, engine], variant, WRITES);
    for (const writes of acked) assert.equal(writes.length, WRITES);

    await using reg = await variant.connect(path, { engine });
    assert.deepEqual(reg.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }]);
    const raw = reg.db.prepare("SELECT tbl, key, value FROM write_log ORDER BY n").all() as {
      tbl: string;
      key: string;
      value: string;
    }[];
    const committed = await decodeLog(path, engine, variant, raw);

    // Exactly the acknowledged writes were committed, each once.
    const id = (w: Write) => `${w.table} ${w.key} ${w.writer} ${w.seq}`;
    assert.deepEqual(committed.map(id).sort(), acked.flat().map(id).sort());
    // Each process's writes committed in the order it made them.
    for (let writer = 0; writer < acked.length; writer++) {
      const seqs = committed.filter((w) => w.writer === writer).map((w) => w.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `writer ${writer} in order`);
    }
    // Per key, the value left is the last one committed; the shared keys really were contended.
    const last = new Map<string, Write>();
    for (const write of committed) last.set(`${write.table} ${write.key}`, write);
    for (const [where, write] of last) {
      if (write.table === "config") {
        assert.deepEqual(await reg.getConfig(write.key), { writer: write.writer, seq: write.seq }, where);
      } else {
        const record = await reg.getModule(write.key);
        assert.deepEqual([record?.name, record?.version], [`w${write.writer}`, String(write.seq)], where);
      }
    }
    const sharedWriters = new Set(committed.filter((w) => w.key.startsWith("shared")).map((w) => w.writer));
    assert.equal(sharedWriters.size, 4);
  },
);

for (const variant of VARIANTS) {
  Deno.test(
    `6 processes on both engines creating one new file at once all open it and write [${variant.name}]`,
    async () => {
      await using dir = await tempDir();
      const path = dir.file("fresh.db");
      const engines: EngineName[] = ["ffi", "node", "ffi", "node", "ffi", "node"];
      const acked = await runWriters(path, dir.path, engines, variant, 8);
      await using reg = await variant.connect(path);
      assert.deepEqual(reg.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }]);
      assert.equal(reg.db.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
      for (const writes of acked) {
        for (const write of writes.filter((w) => w.key.startsWith("own."))) {
          assert.deepEqual(await reg.getConfig(write.key), { writer: write.writer, seq: write.seq });
        }
      }
      const migrations = reg.db.prepare("SELECT owner, version FROM oxide_migrations ORDER BY owner").all();
      assert.deepEqual(
        migrations,
        variant.name === "sealed"
          ? [...registryVersions(), ...SEALING_MIGRATIONS.map(({ version }) => ({ owner: "sealing", version }))]
          : registryVersions(),
        "each migration applied once",
      );
    },
  );
}

function registryVersions(): { owner: string; version: number }[] {
  return REGISTRY_MIGRATIONS.map(({ version }) => ({ owner: "registry", version }));
}

Deno.test(
  "6 processes writing back to back with a 1 s busy timeout and compaction every 128 writes: none fails with SQLITE_BUSY",
  async () => {
    // SQLite's busy handler polls with sleeps of up to 100 ms, and a writer in a loop takes the lock again within
    // microseconds of its commit: a waiter missed every gap for a whole timeout (before: most writers failed here).
    // A short timeout makes that near certain, and retention of 16 revisions makes each writer's automatic compaction
    // take the write lock too: a write waits while others commit, and compaction never makes one fail.
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    const engines: EngineName[] = ["ffi", "node", "ffi", "node", "ffi", "node"];
    const WRITES = 500;
    const acked = await runWriters(path, dir.path, engines, VARIANTS[0]!, WRITES, {
      busyTimeoutMs: 1000,
      retention: { revisions: 16 },
    });
    for (const writes of acked) assert.equal(writes.length, WRITES);
    await using reg = await StateRegistry.connect(path, { retention: { revisions: Infinity } });
    assert.deepEqual(reg.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }]);
    assert.ok(await reg.compactedRevision() > 0, "the writers compacted the log");
    for (const [writer, writes] of acked.entries()) {
      const last = new Map(writes.filter((w) => w.key.startsWith("own.")).map((w) => [w.key, w]));
      for (const write of last.values()) {
        assert.deepEqual(await reg.getConfig(write.key), { writer, seq: write.seq }, write.key);
      }
    }
  },
);

for (const engine of ["ffi", "node"] as const) {
  Deno.test(`a write fails with SQLITE_BUSY when one transaction holds the lock for a whole busy timeout [${engine}]`, async () => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    await using holder = await StateRegistry.connect(path, { engine });
    await holder.setConfig("k", "before");
    await using waiter = await StateRegistry.connect(path, { engine, busyTimeoutMs: 30 });
    holder.db.exec("BEGIN IMMEDIATE");
    try {
      await assert.rejects(waiter.setConfig("k", "blocked"), (error: unknown) => {
        assert.ok(error instanceof RegistryError, String(error));
        assert.equal(error.codeName, "SQLITE_BUSY");
        return true;
      });
    } finally {
      holder.db.exec("ROLLBACK");
    }
    await waiter.setConfig("k", "after");
    assert.equal(await holder.getConfig("k"), "after");
  });
}
