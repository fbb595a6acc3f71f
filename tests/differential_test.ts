// Differential test: one seeded pseudo-random sequence of registry calls, applied to both engines on real files,
// must give identical results (values, or error class and message) and leave identical tables. A small model of
// the expected state also checks that both engines are right, not merely alike.
//
// Reproduce a failure with the seed its message prints: OXIDE_DIFF_SEED=<seed> deno task test tests/differential_test.ts
import assert from "node:assert/strict";
import { openEngine } from "../src/sqlite/open.ts";
import {
  ConfigNotFoundError,
  type EngineName,
  KernelError,
  MODULE_KINDS,
  MODULE_STATES,
  type ModuleMetadata,
  type ModuleRecord,
  SerializationError,
  StateRegistry,
  UnknownModuleError,
} from "@oxide/registry";
import { ENGINES, tempDir } from "./_helpers.ts";

/** Operations per sequence. */
const OPERATIONS = 400;
/** Fixed seeds run every time; one more seed is fresh on each run (printed on failure), or taken from OXIDE_DIFF_SEED. */
const FIXED_SEEDS = [1, 2, 0xdecaf];
/** chrono's `to_rfc3339()` in UTC, as the registry writes `updated_at`. */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?\+00:00$/;

/** mulberry32: a small, fast PRNG with a 32-bit seed; the same seed gives the same sequence everywhere. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

class Random {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = prng(seed);
  }
  int(below: number): number {
    return Math.floor(this.#next() * below);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

// Pools small enough that ids and keys collide often: overwrites, deletes of present keys, updates of known modules.
const IDS = ["echo", "mirror", "compress", "a", "B", "ünïcode", "🦕", "", "with space", `quote'"\\`, "x".repeat(300)];
const KEYS = ["kernel.greeting", "max_threads", "endpoint", "", "ключ", "emoji 🦕", "k'\"\\", "a.b.c", "y".repeat(500)];
const TEXTS = [
  "",
  "plain",
  "Grüße, агент 🦕",
  "line\nbreak\ttab",
  'quote " and \\ backslash',
  "\u2028\u2029",
  "z".repeat(2000),
];
const BAD_KINDS = ["Native", "python", "", "WASM"];
const BAD_STATES = ["Running", "paused", "", "loaded "];

/** A value JSON carries faithfully, of bounded depth. */
function jsonValue(rnd: Random, depth = 0): unknown {
  switch (rnd.int(depth >= 3 ? 6 : 8)) {
    case 0:
      return null;
    case 1:
      return rnd.chance(0.5);
    case 2:
      return rnd.pick([
        0,
        -0,
        1,
        -1,
        42,
        2 ** 31,
        -(2 ** 31) - 1,
        Number.MAX_SAFE_INTEGER,
        -Number.MAX_SAFE_INTEGER,
        2n ** 53n + 1n,
        2n ** 64n - 1n,
        -(2n ** 63n),
      ]);
    case 3:
      return rnd.pick([0.1, -12.5, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, Math.PI]);
    case 4:
      return rnd.pick([...TEXTS, "nul \u0000 inside", "</script>"]);
    case 5:
      return rnd.int(1_000_000) - 500_000;
    case 6:
      return Array.from({ length: rnd.int(5) }, () => jsonValue(rnd, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = rnd.int(5); i > 0; i--) {
        object[rnd.pick(["a", "b", "url", "", "ü", "__proto__x", "0"])] = jsonValue(rnd, depth + 1);
      }
      return object;
    }
  }
}

/** A value the registry must refuse with a SerializationError, before writing anything. */
function badValue(rnd: Random): unknown {
  const cycle: Record<string, unknown> = { name: "loop" };
  cycle.self = cycle;
  return rnd.pick<() => unknown>([
    () => undefined,
    () => NaN,
    () => -Infinity,
    () => 2n ** 64n,
    () => ({ text: "\uD800" }),
    () => () => 1,
    () => Symbol("s"),
    () => new Date(0),
    () => new Map([["a", 1]]),
    () => cycle,
    () => [1, , 3], // sparse
    () => ({ ok: 1, nested: { bad: undefined } }),
    () => [1, [2, [Infinity]]],
  ])();
}

function text(rnd: Random): string {
  return rnd.chance(0.03) ? "nul\0inside" : rnd.pick(TEXTS);
}

/** One call on the registry, described so it can be printed in a failure message. */
interface Operation {
  label: string;
  method: string;
  args: unknown[];
  /** setConfig: the value is one the registry must refuse. */
  bad?: boolean;
  apply(reg: StateRegistry): Promise<unknown>;
}

function operation(rnd: Random): Operation {
  const roll = rnd.int(100);
  if (roll < 20) {
    const id = rnd.chance(0.02) ? "bad\0id" : rnd.pick(IDS);
    const metadata = {
      id,
      name: text(rnd),
      version: rnd.pick(["0.1.0", "1.0.0-beta.1", "", "2"]),
      kind: rnd.chance(0.08) ? rnd.pick(BAD_KINDS) : rnd.pick(MODULE_KINDS),
      ...(rnd.chance(0.5) ? { description: text(rnd) } : {}),
    } as ModuleMetadata;
    const state = rnd.chance(0.08) ? rnd.pick(BAD_STATES) : rnd.pick(MODULE_STATES);
    return {
      label: `upsertModule(${show(metadata)}, ${show(state)})`,
      method: "upsertModule",
      args: [metadata, state],
      apply: (reg) => reg.upsertModule(metadata, state as ModuleRecord["state"]),
    };
  }
  if (roll < 32) {
    const id = rnd.chance(0.25) ? `unknown-${rnd.int(5)}` : rnd.pick(IDS);
    const state = rnd.chance(0.08) ? rnd.pick(BAD_STATES) : rnd.pick(MODULE_STATES);
    return {
      label: `setModuleState(${show(id)}, ${show(state)})`,
      method: "setModuleState",
      args: [id, state],
      apply: (reg) => reg.setModuleState(id, state as ModuleRecord["state"]),
    };
  }
  if (roll < 40) {
    const id = rnd.chance(0.2) ? `unknown-${rnd.int(5)}` : rnd.pick(IDS);
    return call("getModule", [id], (reg) => reg.getModule(id));
  }
  if (roll < 45) return call("listModules", [], (reg) => reg.listModules());
  const key = rnd.chance(0.02) ? "bad\0key" : rnd.pick(KEYS);
  if (roll < 68) {
    const bad = rnd.chance(0.15);
    const value = bad ? badValue(rnd) : jsonValue(rnd);
    return {
      label: `setConfig(${show(key)}, ${bad ? `<bad ${describeBad(value)}>` : show(value)})`,
      method: "setConfig",
      args: [key, value],
      bad,
      apply: (reg) => reg.setConfig(key, value),
    };
  }
  if (roll < 80) return call("getConfig", [key], (reg) => reg.getConfig(key));
  if (roll < 88) return call("tryGetConfig", [key], (reg) => reg.tryGetConfig(key));
  if (roll < 97) return call("deleteConfig", [key], (reg) => reg.deleteConfig(key));
  return call("reopen", [], () => Promise.resolve());
}

function call(method: string, args: unknown[], apply: Operation["apply"]): Operation {
  return { label: `${method}(${args.map((a) => show(a)).join(", ")})`, method, args, apply };
}

/** JSON text for labels and messages; a bigint as `123n`. */
function show(value: unknown): string {
  return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? `${v}n` : v);
}

/** What a value reads back as: a copy, as JSON gives it (-0 reads as 0). */
function jsonCopy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(jsonCopy);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonCopy(v)]));
  }
  return Object.is(value, -0) ? 0 : value;
}

function describeBad(value: unknown): string {
  if (typeof value === "object" && value !== null) return value.constructor?.name ?? "object";
  return typeof value === "bigint" ? "bigint" : String(value);
}

/** What an operation gave, in a form two engines can be compared on: `updatedAt` is checked, then left out. */
type Outcome = { value: unknown } | { error: string; kind?: string; errorClass: unknown };

async function outcome(op: Operation, reg: StateRegistry): Promise<Outcome> {
  try {
    return { value: normalize(await op.apply(reg)) };
  } catch (error) {
    assert.ok(error instanceof Error, `${op.label} threw a non-Error: ${String(error)}`);
    return {
      error: `${error.constructor.name}: ${error.message}`,
      errorClass: error.constructor,
      ...(error instanceof KernelError ? { kind: error.kind } : {}),
    };
  }
}

function normalize(value: unknown): unknown {
  if (Array.isArray(value) && value.every(isRecord)) return value.map(normalize);
  if (isRecord(value)) {
    assert.ok(value.updatedAt instanceof Date && !Number.isNaN(value.updatedAt.getTime()), "updatedAt is a valid Date");
    return { ...value, updatedAt: "<checked>" };
  }
  return value;
}

function isRecord(value: unknown): value is ModuleRecord {
  return typeof value === "object" && value !== null && "updatedAt" in value && "state" in value;
}

/** The state both registries should be in, to check each outcome against. */
class Model {
  readonly modules = new Map<
    string,
    { metadata: ModuleMetadata; state: string; recordVersion: number; createRevision: number; modRevision: number }
  >();
  readonly config = new Map<string, unknown>();
  /** The store revision: every write that changes a row is one. */
  revision = 0;

  /** Checks `result` against what `op` should give in the model's state; applies successful writes to the model. */
  expect(op: Operation, result: Outcome): void {
    const args = op.args;
    switch (op.method) {
      case "upsertModule": {
        const [metadata, state] = args as [ModuleMetadata, string];
        // The registry checks id, name and version, then kind and state, then the description.
        if (hasNul(metadata.id, metadata.name)) return expectError(result, SerializationError);
        if (!isIn(metadata.kind, MODULE_KINDS) || !isIn(state, MODULE_STATES)) {
          return expectError(result, SerializationError);
        }
        if (hasNul(metadata.description ?? "")) return expectError(result, SerializationError);
        expectValue(result, undefined);
        const revision = ++this.revision;
        const before = this.modules.get(metadata.id);
        this.modules.set(metadata.id, {
          metadata,
          state,
          recordVersion: (before?.recordVersion ?? 0) + 1,
          createRevision: before?.createRevision ?? revision,
          modRevision: revision,
        });
        return;
      }
      case "setModuleState": {
        const [id, state] = args as [string, string];
        if (!isIn(state, MODULE_STATES)) return expectError(result, SerializationError);
        const module = this.modules.get(id);
        if (module === undefined) return expectError(result, UnknownModuleError);
        expectValue(result, undefined);
        module.state = state;
        module.recordVersion++;
        module.modRevision = ++this.revision;
        return;
      }
      case "getModule": {
        const [id] = args as [string];
        return expectValue(result, this.#record(id));
      }
      case "listModules":
        return expectValue(
          result,
          [...this.modules.keys()].sort(compareSqliteText).map((id) => this.#record(id)),
        );
      case "setConfig": {
        const [key, value] = args as [string, unknown];
        if (hasNul(key)) return expectError(result, SerializationError);
        if (op.bad) return expectError(result, SerializationError);
        expectValue(result, undefined);
        this.config.set(key, jsonCopy(value));
        this.revision++;
        return;
      }
      case "getConfig":
      case "tryGetConfig": {
        const [key] = args as [string];
        if (hasNul(key)) return expectError(result, SerializationError);
        if (!this.config.has(key)) {
          return op.method === "getConfig" ? expectError(result, ConfigNotFoundError) : expectValue(result, undefined);
        }
        return expectValue(result, this.config.get(key));
      }
      case "deleteConfig": {
        const [key] = args as [string];
        if (hasNul(key)) return expectError(result, SerializationError);
        const deleted = this.config.delete(key);
        expectValue(result, deleted);
        if (deleted) this.revision++;
        return;
      }
    }
    assert.fail(`the model does not know ${op.label}`);
  }

  #record(id: string): unknown {
    const module = this.modules.get(id);
    if (module === undefined) return undefined;
    const { metadata, state, recordVersion, createRevision, modRevision } = module;
    return {
      id: metadata.id,
      name: metadata.name,
      version: metadata.version,
      kind: metadata.kind,
      state,
      description: metadata.description,
      updatedAt: "<checked>",
      recordVersion,
      createRevision,
      modRevision,
    };
  }
}

function hasNul(...texts: string[]): boolean {
  return texts.some((t) => t.includes("\0"));
}

function isIn(value: unknown, list: readonly string[]): boolean {
  return typeof value === "string" && list.includes(value);
}

/** SQLite's default BINARY collation compares UTF-8 bytes. */
function compareSqliteText(a: string, b: string): number {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

function expectError(result: Outcome, errorClass: new (...args: never[]) => Error): void {
  assert.ok(
    "error" in result,
    `expected ${errorClass.name}, got ${show((result as { value: unknown }).value)}`,
  );
  assert.equal(result.errorClass, errorClass, `expected ${errorClass.name}, got ${result.error}`);
}

function expectValue(result: Outcome, value: unknown): void {
  assert.ok("value" in result, `expected a value, got ${"error" in result ? result.error : ""}`);
  assert.deepStrictEqual(result.value, value);
}

/**
 * Every table's rows and storage classes, read with SQL on a second connection to the file (through the same engine:
 * one process must not open a file through two SQLite libraries); `updated_at` format checked, then masked.
 */
function rawTables(path: string, engine: EngineName): Record<string, unknown> {
  const db = openEngine(path, { engine });
  try {
    const tables: Record<string, unknown> = {
      schema: db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name").all(),
    };
    const queries: Record<string, [string, string]> = {
      modules: ["SELECT *, typeof(description) AS description_type FROM modules ORDER BY id", "updated_at"],
      config: ["SELECT *, typeof(value) AS value_type FROM config ORDER BY key", "updated_at"],
      oxide_migrations: ["SELECT * FROM oxide_migrations ORDER BY owner, version", "applied_at"],
    };
    for (const [table, [sql, timeColumn]] of Object.entries(queries)) {
      tables[table] = db.prepare(sql).all().map((row) => {
        const time = row[timeColumn];
        assert.ok(typeof time === "string" && TIMESTAMP.test(time), `${table}.${timeColumn} '${String(time)}'`);
        return { ...row, [timeColumn]: "<checked>" };
      });
    }
    return tables;
  } finally {
    db.close();
  }
}

async function runSequence(seed: number): Promise<void> {
  await using dir = await tempDir();
  const paths = Object.fromEntries(ENGINES.map((engine) => [engine, dir.file(`${engine}.db`)])) as Record<
    EngineName,
    string
  >;
  const open = (engine: EngineName) => StateRegistry.connect(paths[engine], { engine });
  const regs = new Map<EngineName, StateRegistry>();
  for (const engine of ENGINES) regs.set(engine, await open(engine));
  const model = new Model();
  const rnd = new Random(seed);
  const history: string[] = [];
  const context = () =>
    `seed ${seed} (rerun with OXIDE_DIFF_SEED=${seed}), last operations:\n  ${history.slice(-5).join("\n  ")}`;
  try {
    for (let i = 0; i < OPERATIONS; i++) {
      const op = operation(rnd);
      history.push(`#${i} ${op.label.length > 200 ? `${op.label.slice(0, 200)}...` : op.label}`);
      if (op.method === "reopen") {
        for (const engine of ENGINES) {
          await regs.get(engine)!.close();
          regs.set(engine, await open(engine));
        }
        continue;
      }
      const [first, ...others] = await Promise.all(ENGINES.map((engine) => outcome(op, regs.get(engine)!)));
      for (const other of others) {
        assert.deepStrictEqual(other, first, `engines differ: ${context()}`);
      }
      try {
        model.expect(op, first!);
      } catch (error) {
        assert.fail(`both engines gave a wrong result: ${(error as Error).message}\n${context()}`);
      }
      if (i % 100 === 99 || i === OPERATIONS - 1) {
        const [base, ...rest] = ENGINES.map((engine) => rawTables(paths[engine], engine));
        for (const tables of rest) assert.deepStrictEqual(tables, base, `raw tables differ: ${context()}`);
      }
    }
  } finally {
    for (const reg of regs.values()) await reg.close();
  }
  // The sequence must have exercised what it claims to.
  assert.ok(model.config.size > 0 && model.modules.size > 0, `seed ${seed}: the sequence wrote nothing`);
}

function seeds(): number[] {
  const fromEnv = Deno.env.get("OXIDE_DIFF_SEED");
  if (fromEnv !== undefined && fromEnv !== "") return [Number(fromEnv)];
  return [...FIXED_SEEDS, Math.floor(Math.random() * 2 ** 32)];
}

for (const seed of seeds()) {
  Deno.test(`both engines give identical results and tables for a random sequence (seed ${seed})`, () =>
    runSequence(seed));
}
