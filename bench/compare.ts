// `deno task bench:compare`: every contender on one workload, in interleaved rounds, written to bench/RESULTS.md.
//
// Contenders: the C floor (bench/c_floor.c, built here with the machine's C compiler), the raw Deno FFI binding
// (src/sqlite/ffi.ts with no registry above it), raw `node:sqlite`, Deno KV, and the registry on each engine, plain
// and sealed. Workload, the same for every contender: 1,000 config keys and 1,000 modules prefilled, reads and writes
// cycling through the keys, short JSON values, each write its own transaction, file databases in WAL at
// synchronous=FULL (the registry's default durability). Each round runs every contender once per operation, in
// turn, so a noisy neighbour slows all of them alike; the tables show the median of the rounds and the spread
// ((max - min) / median). Open times and peak memory are measured in fresh subprocesses (bench/_probe.ts).
/// <reference lib="deno.unstable" />
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { encodeJson, type ModuleMetadata, StateRegistry } from "@oxide/registry";
import { CONFIG_TABLE_SQL, MODULES_TABLE_SQL, REGISTRY_MIGRATIONS, REGISTRY_SQL } from "../src/schema.ts";
import { FfiEngine } from "../src/sqlite/ffi.ts";
import { rangeQuery } from "../src/store/sqlite/store.ts";
import { nowTimestamp } from "../src/time.ts";
import { measureWatchLatency, WATCH_WORKLOAD } from "./watch_latency.ts";
import { deriveKek, generateDataKey, openEnvelope, sealEnvelope } from "../src/sealing/envelope.ts";
import { hasSyncTwin, loadNodeCrypto } from "../src/sealing/_aes_gcm.ts";

const DIR = "./data/bench";
const RESULTS = "./bench/RESULTS.md";
const ARGS = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { ops: { type: "string" }, storage: { type: "string" } },
});
const ROUNDS = Number(ARGS.positionals[0] ?? 5);
/**
 * A quick run (`--ops=setConfig,upsertModule`, `--storage=memory`): only those rows, no fresh-process probes, sealed
 * first reads or crypto rounds; the report is printed and bench/RESULTS.md left as it is.
 */
const QUICK = ARGS.values.ops !== undefined || ARGS.values.storage !== undefined;
const KEYS = 1000;
const MODULES = 1000;
const SYNCHRONOUS = "FULL";
const KEY_NAMES = Array.from({ length: KEYS }, (_, i) => `bench.key.${String(i).padStart(4, "0")}`);
const MODULE_IDS = Array.from({ length: MODULES }, (_, i) => `module-${String(i).padStart(4, "0")}`);
const META: Omit<ModuleMetadata, "id"> = {
  name: "Echo",
  version: "0.1.0",
  kind: "native",
  description: "Demo module that echoes Ping commands.",
};
const RAW_KEY = new Uint8Array(32).fill(7);

type Storage = "file" | "memory";
type Op = "getConfig" | "setConfig" | "upsertModule" | "listModules" | "listModules, registry SQL";
/** `--ops=listModules` also runs the raw bindings' "listModules, registry SQL" (what the registry's list is compared with). */
const OPS: readonly Op[] = (
  ["getConfig", "setConfig", "upsertModule", "listModules", "listModules, registry SQL"] as const
).filter((op) => ARGS.values.ops === undefined || ARGS.values.ops.split(",").includes(op.replace(/, .*/, "")));
/** The four operations of the report; the raw bindings also run the registry's own list SQL (its revision join). */
const REPORTED_OPS = ["getConfig", "setConfig", "upsertModule", "listModules"] as const;
const STORAGES: readonly Storage[] = (["memory", "file"] as const).filter((storage) =>
  ARGS.values.storage === undefined || ARGS.values.storage === storage
);
if (OPS.length === 0 || STORAGES.length === 0) {
  throw new TypeError(`--ops takes getConfig,setConfig,upsertModule,listModules and --storage memory or file`);
}

/** How many calls one round makes, per operation and storage (file writes wait for fsync). */
const CALLS: Record<Storage, Record<Op, number>> = {
  memory: {
    getConfig: 20_000,
    setConfig: 5_000,
    upsertModule: 5_000,
    listModules: 40,
    "listModules, registry SQL": 40,
  },
  file: { getConfig: 20_000, setConfig: 400, upsertModule: 400, listModules: 40, "listModules, registry SQL": 40 },
};

function value(n: number): { retries: number; url: string } {
  return { retries: n, url: "https://example.com" };
}

/** One way of doing (some of) the four operations; `sync` ones are called without `await`. */
interface Contender {
  name: string;
  family:
    | "c"
    | "raw-ffi"
    | "raw-node"
    | "raw-ffi-norev"
    | "raw-node-norev"
    | "kv"
    | "registry-ffi"
    | "registry-node"
    | "sealed-ffi"
    | "sealed-node"
    | "before-ffi"
    | "before-node";
  storage: Storage;
  sync: boolean;
  ops: Partial<Record<Op, (i: number) => unknown>>;
  close(): void | Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// Contenders

/**
 * The tables the raw contenders write: the registry's own (oxide-k's tables plus the revision log its triggers keep),
 * so "vs raw" compares the same SQL doing the same work; without the log, oxide-k's tables alone (the write cost of
 * revisions).
 */
function schemaSql(revisions: boolean): string {
  // The registry's migrations after oxide-k's tables (1): the revision schema as a registry file has it now.
  const revisionSql = REGISTRY_MIGRATIONS.slice(1).map((migration) => {
    if (typeof migration.up !== "string") throw new Error(`migration ${migration.version} is not SQL text`);
    return migration.up;
  });
  return [MODULES_TABLE_SQL, CONFIG_TABLE_SQL, ...(revisions ? revisionSql : [])].join(";\n");
}

function filePath(name: string, storage: Storage): string {
  return storage === "memory" ? ":memory:" : `${DIR}/${name}.db`;
}

/**
 * The raw FFI binding: our engine's statements with the registry's SQL and nothing more (rows as the binding returns
 * them, values not parsed), so "vs raw" is all the registry does above the binding.
 */
function rawFfi(storage: Storage, revisions = true): Contender {
  const db = new FfiEngine({ path: filePath(`raw-ffi${revisions ? "" : "-norev"}`, storage) });
  if (storage === "file") db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${SYNCHRONOUS}`);
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec(schemaSql(revisions));
  return rawContender(revisions ? "raw FFI binding" : "raw FFI binding, no revision log", {
    family: revisions ? "raw-ffi" : "raw-ffi-norev",
    storage,
    revisions,
    prepare: (sql) => db.prepare(sql),
    close: () => db.close(),
  });
}

/** A prepared statement of either raw binding: all the raw contenders call. */
interface RawStatement {
  get(...params: never[]): unknown;
  run(...params: never[]): unknown;
  all(): unknown;
}

/** The raw contenders' shared workload on the registry's SQL, prepared once through `prepare`. */
function rawContender(
  name: string,
  raw: {
    family: Contender["family"];
    storage: Storage;
    revisions: boolean;
    prepare(sql: string): RawStatement;
    close(): void;
  },
): Contender {
  // The binding's own parameter types differ; the workload passes strings only.
  type Call = (...params: string[]) => unknown;
  const get = raw.prepare(REGISTRY_SQL.getConfig);
  const set = raw.prepare(REGISTRY_SQL.setConfig);
  const upsert = raw.prepare(REGISTRY_SQL.upsertModule);
  const list = raw.prepare(REGISTRY_SQL.listModules);
  // What listModules() runs since revisions: oxide-k's columns and each module's newest log row (versions).
  const registryList = raw.revisions
    ? raw.prepare(rangeQuery("modules", { space: "modules" }, undefined, true).sql)
    : undefined;
  const contender: Contender = {
    name,
    family: raw.family,
    storage: raw.storage,
    sync: true,
    ops: {
      getConfig: (i) => ((get.get as Call)(KEY_NAMES[i % KEYS]!) as { value: unknown }).value,
      setConfig: (i) => (set.run as Call)(KEY_NAMES[i % KEYS]!, JSON.stringify(value(i)), nowTimestamp()),
      upsertModule: (i) =>
        (upsert.run as Call)(
          MODULE_IDS[i % MODULES]!,
          META.name,
          META.version,
          `"${META.kind}"`,
          i % 2 === 0 ? '"stopped"' : '"running"',
          META.description!,
          nowTimestamp(),
        ),
      listModules: () => list.all(),
      "listModules, registry SQL": () => registryList!.all(),
    },
    close: raw.close,
  };
  if (!raw.revisions) {
    // Only the writes differ without the log.
    delete contender.ops.getConfig;
    delete contender.ops.listModules;
    delete contender.ops["listModules, registry SQL"];
  }
  prefill(contender);
  return contender;
}

/** Raw `node:sqlite`: the registry's SQL and pragmas, prepared once, rows as it returns them, nothing more. */
function rawNode(storage: Storage, revisions = true): Contender {
  const db = new DatabaseSync(filePath(`raw-node${revisions ? "" : "-norev"}`, storage), { timeout: 5000 });
  if (storage === "file") db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${SYNCHRONOUS}`);
  db.exec(schemaSql(revisions));
  return rawContender(revisions ? "raw node:sqlite" : "raw node:sqlite, no revision log", {
    family: revisions ? "raw-node" : "raw-node-norev",
    storage,
    revisions,
    prepare: (sql) => db.prepare(sql),
    close: () => db.close(),
  });
}

/** Deno KV: the equivalent keys and records (KV serializes values itself), each write its own atomic commit. */
async function kv(storage: Storage): Promise<Contender> {
  const store = await Deno.openKv(storage === "memory" ? ":memory:" : `${DIR}/kv.sqlite`);
  const contender: Contender = {
    name: "Deno KV",
    family: "kv",
    storage,
    sync: false,
    ops: {
      getConfig: async (i) => (await store.get<{ value: unknown }>(["config", KEY_NAMES[i % KEYS]!])).value?.value,
      setConfig: (i) => store.set(["config", KEY_NAMES[i % KEYS]!], { value: value(i), updatedAt: nowTimestamp() }),
      upsertModule: (i) =>
        store.set(["modules", MODULE_IDS[i % MODULES]!], {
          ...META,
          id: MODULE_IDS[i % MODULES],
          state: i % 2 === 0 ? "stopped" : "running",
          updatedAt: nowTimestamp(),
        }),
      listModules: async () => {
        const records = [];
        for await (const entry of store.list({ prefix: ["modules"] })) records.push(entry.value);
        return records;
      },
    },
    close: () => store.close(),
  };
  await prefillAsync(contender);
  return contender;
}

function registryOps(reg: StateRegistry, sealed: boolean): Contender["ops"] {
  const ops: Contender["ops"] = {
    getConfig: (i) => reg.getConfig(KEY_NAMES[i % KEYS]!),
    setConfig: (i) => reg.setConfig(KEY_NAMES[i % KEYS]!, value(i)),
  };
  if (sealed) return ops; // Module metadata is never sealed: the plain rows are the sealed registry's too.
  return {
    ...ops,
    upsertModule: (i) =>
      reg.upsertModule({ ...META, id: MODULE_IDS[i % MODULES]! }, i % 2 === 0 ? "stopped" : "running"),
    listModules: () => reg.listModules(),
  };
}

async function registry(engine: "ffi" | "node", storage: Storage, sealed: boolean): Promise<Contender> {
  const path = filePath(`registry-${engine}${sealed ? "-sealed" : ""}`, storage);
  const options = { engine, durability: "full" } as const;
  const reg = sealed
    ? await StateRegistry.openEncrypted(path, RAW_KEY, options)
    : storage === "memory"
    ? await StateRegistry.inMemory(options)
    : await StateRegistry.connect(path, options);
  const contender: Contender = {
    name: `${sealed ? "sealed " : ""}registry, ${engine}`,
    family: `${sealed ? "sealed" : "registry"}-${engine}`,
    storage,
    sync: false,
    ops: registryOps(reg, sealed),
    close: () => reg.close(),
  };
  await prefillAsync(contender);
  return contender;
}

/**
 * The last commit before the revision log (registry migration 2, commit 642cf8e): issue 9's "today" for the write
 * cost of revisions. Its mod.ts and src/ are copied out of git into DIR (`git show`), so it runs beside the current
 * code in the same rounds.
 */
const BEFORE_REVISIONS = "677343a";

/** The registry class at {@linkcode BEFORE_REVISIONS}, or why it could not be loaded. */
async function beforeRevisions(): Promise<typeof StateRegistry | string> {
  const decoder = new TextDecoder();
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", { args, stdout: "piped", stderr: "piped" }).output();
    if (!out.success) throw new Error(`git ${args.join(" ")}: ${decoder.decode(out.stderr).trim()}`);
    return decoder.decode(out.stdout);
  };
  try {
    const dir = `${DIR}/before-revisions`;
    const files = (await git("ls-tree", "-r", "--name-only", BEFORE_REVISIONS)).split("\n")
      .filter((file) => file === "mod.ts" || file.startsWith("src/"));
    for (const file of files) {
      await Deno.mkdir(`${dir}/${file}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${file}`, await git("show", `${BEFORE_REVISIONS}:${file}`));
    }
    const module = await import(new URL(`../${dir}/mod.ts`, import.meta.url).href);
    return module.StateRegistry as typeof StateRegistry;
  } catch (error) {
    return `the registry before revisions (commit ${BEFORE_REVISIONS}) was not measured: ${(error as Error).message}`;
  }
}

/** The registry before revisions on one engine: plain setConfig and upsertModule, the writes revisions changed. */
async function before(Registry: typeof StateRegistry, engine: "ffi" | "node", storage: Storage): Promise<Contender> {
  const options = { engine, durability: "full" } as const;
  const reg = storage === "memory"
    ? await Registry.inMemory(options)
    : await Registry.connect(filePath(`before-${engine}`, storage), options);
  const all = registryOps(reg, false);
  const contender: Contender = {
    name: `registry before revisions (${BEFORE_REVISIONS}), ${engine}`,
    family: `before-${engine}`,
    storage,
    sync: false,
    ops: { setConfig: all.setConfig!, upsertModule: all.upsertModule! },
    close: () => reg.close(),
  };
  await prefillAsync({ ...contender, ops: all });
  return contender;
}

function prefill(contender: Contender): void {
  for (let i = 0; i < KEYS; i++) contender.ops.setConfig!(i);
  for (let i = 0; i < MODULES; i++) contender.ops.upsertModule?.(i);
}

async function prefillAsync(contender: Contender): Promise<void> {
  for (let i = 0; i < KEYS; i++) await contender.ops.setConfig!(i);
  for (let i = 0; i < MODULES; i++) await contender.ops.upsertModule?.(i);
  const listed = await contender.ops.listModules?.(0) as unknown[] | undefined;
  if (listed !== undefined && listed.length !== MODULES) {
    throw new Error(`${contender.name}: listed ${listed.length} modules, not ${MODULES}`);
  }
  const read = await contender.ops.getConfig!(5);
  if (JSON.stringify(read) !== JSON.stringify(value(5))) throw new Error(`${contender.name}: read back ${read}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring

/** Nanoseconds per call, one sample per round: `samples[key]` where key = `${family}|${storage}|${op}`. */
const samples = new Map<string, number[]>();

/** Off during the warm-up round, which lets the JIT settle before anything is recorded. */
let recording = false;

function record(family: string, storage: Storage, op: string, ns: number): void {
  if (!recording) return;
  const key = `${family}|${storage}|${op}`;
  const list = samples.get(key) ?? [];
  list.push(ns);
  samples.set(key, list);
}

async function measure(contender: Contender, op: Op, offset: number): Promise<void> {
  const run = contender.ops[op];
  if (run === undefined) return;
  const calls = CALLS[contender.storage][op];
  let start: number;
  if (contender.sync) {
    start = performance.now();
    for (let i = 0; i < calls; i++) run(offset + i);
  } else {
    start = performance.now();
    for (let i = 0; i < calls; i++) await run(offset + i);
  }
  record(contender.family, contender.storage, op, ((performance.now() - start) * 1e6) / calls);
}

// ---------------------------------------------------------------------------------------------------------------
// The C floor

interface CFloor {
  binary: string | undefined;
  compiler: string | undefined;
  note: string;
  version: string | undefined;
}

async function buildCFloor(): Promise<CFloor> {
  const binary = `${DIR}/c_floor`;
  const tried: string[] = [];
  for (const compiler of ["cc", "gcc"]) {
    try {
      const out = await new Deno.Command(compiler, {
        args: ["-O2", "-Wall", "-Wextra", "-o", binary, "bench/c_floor.c", "-lsqlite3"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (out.success) {
        const version = new TextDecoder().decode(
          (await new Deno.Command(compiler, { args: ["--version"], stdout: "piped" }).output()).stdout,
        ).split("\n")[0];
        return { binary, compiler: `${compiler} (${version})`, note: "", version: undefined };
      }
      tried.push(`${compiler}: ${new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join(" ")}`);
    } catch (error) {
      tried.push(`${compiler}: ${error instanceof Deno.errors.NotFound ? "not installed" : (error as Error).message}`);
    }
  }
  return {
    binary: undefined,
    compiler: undefined,
    note: `no C floor: no C compiler built bench/c_floor.c against libsqlite3 (${
      tried.join("; ")
    }). Install one (e.g. \`apt-get install gcc libsqlite3-dev\`) and run again; ratios to C are left out.`,
    version: undefined,
  };
}

async function runCFloor(floor: CFloor): Promise<void> {
  if (floor.binary === undefined) return;
  // One process runs both storages; its call counts are the Deno contenders' (file writes: the file counts).
  const out = await new Deno.Command(floor.binary, {
    args: [
      DIR,
      SYNCHRONOUS,
      String(CALLS.memory.getConfig),
      String(CALLS.file.setConfig),
      String(CALLS.file.listModules),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`c_floor failed: ${new TextDecoder().decode(out.stderr)}`);
  for (const line of new TextDecoder().decode(out.stdout).trim().split("\n")) {
    const [op, storage, ns] = line.split(" ");
    if (op === "sqlite") floor.version = storage;
    else record("c", storage as Storage, op!, Number(ns));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sealed reads of values this handle has not read before, and the cost of one encrypt / decrypt

/**
 * Another handle on the same file rewrites every key (new ciphertexts, not timed), then the reader reads each once:
 * each read meets a ciphertext it has never opened.
 */
async function sealedUnreadRound(engine: "ffi" | "node"): Promise<void> {
  const path = filePath(`sealed-unread-${engine}`, "file");
  await using writer = await StateRegistry.openEncrypted(path, RAW_KEY, { engine, durability: "normal" });
  await using reader = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  for (let i = 0; i < KEYS; i++) await writer.setConfig(KEY_NAMES[i]!, value(i + 1));
  const start = performance.now();
  for (let i = 0; i < KEYS; i++) await reader.getConfig(KEY_NAMES[i]!);
  record(`sealed-${engine}`, "file", "getConfig (not read before)", ((performance.now() - start) * 1e6) / KEYS);
}

/**
 * One AES-256-GCM seal and open of a short value in the envelope format, as the registry does them (a data key with
 * its node:crypto twin: synchronous) and through an awaited WebCrypto call (a key with no twin), for reference.
 */
async function cryptoRound(): Promise<void> {
  await loadNodeCrypto();
  const { dataKey } = await generateDataKey(await deriveKek(RAW_KEY, { kdf: "raw" }));
  await Promise.resolve(); // The twin is attached once node:crypto has loaded.
  if (!hasSyncTwin(dataKey.key)) throw new Error("the data key has no node:crypto twin");
  const webKey = await crypto.subtle.importKey("raw", RAW_KEY, "AES-GCM", false, ["encrypt", "decrypt"]);
  const webDataKey = { keyId: dataKey.keyId, key: webKey };
  const json = encodeJson(value(3));
  const n = 2000;
  for (const [name, key] of [["node:crypto, as the registry", dataKey], ["WebCrypto, awaited", webDataKey]] as const) {
    const stored: string[] = new Array(n);
    let start = performance.now();
    for (let i = 0; i < n; i++) stored[i] = await sealEnvelope(key, KEY_NAMES[i % KEYS]!, json);
    record("crypto", "memory", `seal (${name})`, ((performance.now() - start) * 1e6) / n);
    start = performance.now();
    for (let i = 0; i < n; i++) await openEnvelope(key, KEY_NAMES[i % KEYS]!, stored[i]!);
    record("crypto", "memory", `open (${name})`, ((performance.now() - start) * 1e6) / n);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Fresh processes: open times, first call, peak memory

interface ProbeResult {
  [name: string]: number;
}

async function probe(mode: string, path: string): Promise<ProbeResult> {
  const out = await new Deno.Command("deno", {
    args: [
      "run",
      "--allow-ffi",
      `--allow-read=${DIR}`,
      `--allow-write=${DIR}`,
      "bench/_probe.ts",
      mode,
      path,
      path.includes("100k") ? "bench.key.000000" : KEY_NAMES[0]!,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`probe ${mode} failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** A registry file with `count` plain config keys, written fast through node:sqlite after the registry created it. */
async function bigRegistry(name: string, count: number, sealed: "plain" | "passphrase" | "raw"): Promise<string> {
  const path = `${DIR}/${name}.db`;
  if (sealed === "plain") await (await StateRegistry.connect(path, { engine: "node" })).close();
  else {
    const key = sealed === "raw" ? RAW_KEY : "correct horse battery staple";
    const reg = await StateRegistry.openEncrypted(path, key, { engine: "node" });
    for (let i = 0; i < Math.min(count, KEYS); i++) await reg.setConfig(KEY_NAMES[i]!, value(i));
    await reg.close();
    return path;
  }
  const db = new DatabaseSync(path);
  db.exec("BEGIN");
  const insert = db.prepare(REGISTRY_SQL.setConfig);
  const now = nowTimestamp();
  const names = count > KEYS ? (i: number) => `bench.key.${String(i).padStart(6, "0")}` : (i: number) => KEY_NAMES[i]!;
  for (let i = 0; i < count; i++) insert.run(names(i), JSON.stringify(value(i)), now);
  db.exec("COMMIT");
  db.close();
  // The first open after the prefill compacts its 100,000 logged inserts (retention): a one-time cost, not timed.
  await (await StateRegistry.connect(path, { engine: "node" })).close();
  return path;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function ns(family: string, storage: Storage, op: string): number | undefined {
  const list = samples.get(`${family}|${storage}|${op}`);
  return list === undefined ? undefined : median(list);
}

function spread(family: string, storage: Storage, op: string): string {
  const list = samples.get(`${family}|${storage}|${op}`);
  if (list === undefined || list.length < 2) return "";
  return `${Math.round(((Math.max(...list) - Math.min(...list)) / median(list)) * 100)}%`;
}

function opsPerSecond(nsPerOp: number | undefined): string {
  if (nsPerOp === undefined) return "—";
  const ops = 1e9 / nsPerOp;
  return ops >= 100_000
    ? `${Math.round(ops / 1000).toLocaleString("en-US")}k`
    : Math.round(ops).toLocaleString("en-US");
}

/** `a` as a fraction of `b`'s speed: b's time over a's. */
function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : b / a;
}

function x(value: number | undefined): string {
  return value === undefined ? "—" : `${value.toFixed(2)}x`;
}

interface Verdict {
  target: string;
  actual: string;
  met: boolean | undefined;
}

function verdict(target: string, value: number | undefined, threshold: number, format = x): Verdict {
  return { target, actual: format(value), met: value === undefined ? undefined : value >= threshold };
}

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ]
    .join("\n");
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return `${cpu}, ${navigator.hardwareConcurrency} logical cores, ${Deno.build.os} ${Deno.osRelease()} (${Deno.build.arch}); Deno ${Deno.version.deno} (V8 ${Deno.version.v8})`;
}

// ---------------------------------------------------------------------------------------------------------------

await Deno.remove(DIR, { recursive: true }).catch(() => {});
await Deno.mkdir(DIR, { recursive: true });
/** The 1-minute load average when the run starts: other work on the machine, which the spread reflects. */
const loadAtStart = Deno.loadavg()[0] ?? NaN;

console.log("building the C floor ...");
const floor = await buildCFloor();
if (floor.note !== "") console.log(floor.note);

console.log("opening and prefilling the contenders ...");
const Before = await beforeRevisions();
if (typeof Before === "string") console.log(Before);
const contenders: Contender[] = [];
for (const storage of STORAGES) {
  contenders.push(
    rawFfi(storage),
    rawNode(storage),
    rawFfi(storage, false),
    rawNode(storage, false),
    await kv(storage),
  );
  for (const engine of ["ffi", "node"] as const) {
    contenders.push(await registry(engine, storage, false), await registry(engine, storage, true));
    if (typeof Before !== "string") contenders.push(await before(Before, engine, storage));
  }
}

for (let round = -1; round < ROUNDS; round++) {
  recording = round >= 0;
  console.log(round < 0 ? "warm-up round ..." : `round ${round + 1} of ${ROUNDS} ...`);
  await runCFloor(floor);
  for (const op of OPS) {
    for (const contender of contenders) await measure(contender, op, (round + 1) * 7919);
  }
  if (QUICK) continue;
  for (const engine of ["ffi", "node"] as const) await sealedUnreadRound(engine);
  await cryptoRound();
}
for (const contender of contenders) await contender.close();

console.log("fresh processes: open times and memory ...");
const small = QUICK ? "" : await bigRegistry("open-1k", KEYS, "plain");
const large = QUICK ? "" : await bigRegistry("open-100k", 100_000, "plain");
const passphrase = QUICK ? "" : await bigRegistry("open-passphrase", KEYS, "passphrase");
const rawKeyed = QUICK ? "" : await bigRegistry("open-raw-key", KEYS, "raw");
const probes: Record<string, ProbeResult[]> = {};
const PROBES: [string, string, string][] = [
  ["import", "import", small],
  ["raw node:sqlite, 1,000 keys", "raw-node", small],
  ["raw node:sqlite, 100,000 keys", "raw-node", large],
  ["connect(), ffi, 1,000 keys", "connect-ffi", small],
  ["connect(), ffi, 100,000 keys", "connect-ffi", large],
  ["connect(), node, 1,000 keys", "connect-node", small],
  ["connect(), node, 100,000 keys", "connect-node", large],
  ["openEncrypted(), passphrase (PBKDF2, 600,000 iterations)", "open-passphrase", passphrase],
  ["openEncrypted(), 32 raw key bytes", "open-raw-key", rawKeyed],
  ["holds 100,000 keys (connect, one read)", "hold", large],
  ["reads all 100,000 keys", "read-all", large],
];
for (let round = 0; round < (QUICK ? 0 : ROUNDS); round++) {
  for (const [name, mode, path] of PROBES) (probes[name] ??= []).push(await probe(mode, path));
}

// ---------------------------------------------------------------------------------------------------------------

const C = "c";
/** The raw bindings' operation a registry operation is compared with: the same SQL. */
function rawOp(op: Op): Op {
  return op === "listModules" ? "listModules, registry SQL" : op;
}
const rows: string[][] = [];
const verdicts: [string, Verdict][] = [];
for (const storage of ["memory", "file"] as const) {
  for (const op of OPS) {
    const c = ns(C, storage, op);
    for (
      const [family, raw] of [
        ["raw-ffi", undefined],
        ["registry-ffi", "raw-ffi"],
        ["sealed-ffi", "raw-ffi"],
        ["before-ffi", undefined],
        [
          "raw-node",
          undefined,
        ],
        ["registry-node", "raw-node"],
        ["sealed-node", "raw-node"],
        ["before-node", undefined],
        ["kv", undefined],
      ] as const
    ) {
      const t = ns(family, storage, op);
      if (t === undefined) continue;
      const name = contenders.find((k) => k.family === family)!.name;
      rows.push([
        `${op}, ${storage}`,
        name,
        opsPerSecond(t),
        x(ratio(t, c)),
        raw === undefined ? "" : x(ratio(t, ns(raw, storage, rawOp(op)))),
        spread(family, storage, op),
      ]);
    }
  }
}

for (const storage of ["memory", "file"] as const) {
  for (const op of REPORTED_OPS) {
    const single = op !== "listModules";
    const same = single ? "" : " (the registry's SQL)";
    verdicts.push([
      `${op}, ${storage}, ffi engine`,
      verdict(
        single ? ">= 0.90x the raw FFI binding" : `>= 0.80x the raw FFI binding${same}`,
        ratio(ns("registry-ffi", storage, op), ns("raw-ffi", storage, rawOp(op))),
        single ? 0.9 : 0.8,
      ),
    ]);
    verdicts.push([
      `${op}, ${storage}, node engine`,
      verdict(
        `>= 0.90x raw node:sqlite${same}`,
        ratio(ns("registry-node", storage, op), ns("raw-node", storage, rawOp(op))),
        0.9,
      ),
    ]);
  }
}
verdicts.push([
  "listModules, memory: the raw binding's multi-column row read",
  verdict(
    "> 0.44x C (the ratio before this work)",
    ratio(ns("raw-ffi", "memory", "listModules"), ns(C, "memory", "listModules")),
    0.44001,
  ),
]);
// Issue 9: what revisions may cost a plain write, against the registry before them (same run, same rounds).
for (const storage of ["memory", "file"] as const) {
  for (const op of ["setConfig", "upsertModule"] as const) {
    for (const engine of ["ffi", "node"] as const) {
      verdicts.push([
        `${op}, ${storage}, ${engine}: against the registry before revisions`,
        verdict(
          storage === "memory" ? "at most 1.3x its time (>= 0.77x its speed)" : "unchanged within noise (>= 0.90x)",
          ratio(ns(`registry-${engine}`, storage, op), ns(`before-${engine}`, storage, op)),
          storage === "memory" ? 1 / 1.3 : 0.9,
        ),
      ]);
    }
  }
}
/** The AES-GCM open and seal the registry does (node:crypto with the data key's twin): "one decrypt/encrypt". */
const webcryptoOpen = ns("crypto", "memory", "open (node:crypto, as the registry)");
const webcryptoSeal = ns("crypto", "memory", "seal (node:crypto, as the registry)");
for (const engine of ["ffi", "node"] as const) {
  for (const storage of ["memory", "file"] as const) {
    verdicts.push([
      `sealed getConfig of a key read before, ${engine}, ${storage}`,
      verdict(
        ">= 0.80x plain getConfig",
        ratio(ns(`sealed-${engine}`, storage, "getConfig"), ns(`registry-${engine}`, storage, "getConfig")),
        0.8,
      ),
    ]);
    const plainSet = ns(`registry-${engine}`, storage, "setConfig");
    verdicts.push([
      `sealed setConfig, ${engine}, ${storage}`,
      verdict(
        ">= 0.95x (plain set + one encrypt)",
        ratio(
          ns(`sealed-${engine}`, storage, "setConfig"),
          plainSet === undefined || webcryptoSeal === undefined ? undefined : plainSet + webcryptoSeal,
        ),
        0.95,
      ),
    ]);
  }
  const plainGet = ns(`registry-${engine}`, "file", "getConfig");
  verdicts.push([
    `sealed getConfig of a key not read before, ${engine}, file`,
    verdict(
      "plain time + one decrypt, nothing more (>= 0.90x of that sum)",
      ratio(
        ns(`sealed-${engine}`, "file", "getConfig (not read before)"),
        plainGet === undefined || webcryptoOpen === undefined ? undefined : plainGet + webcryptoOpen,
      ),
      0.9,
    ),
  ]);
}
verdicts.push([
  "getConfig, file WAL, ffi: against C",
  verdict(">= 0.80x the C floor", ratio(ns("registry-ffi", "file", "getConfig"), ns(C, "file", "getConfig")), 0.8),
]);
verdicts.push([
  "getConfig, file WAL, ffi: against Deno KV",
  verdict(">= 20x Deno KV", ratio(ns("registry-ffi", "file", "getConfig"), ns("kv", "file", "getConfig")), 20),
]);

function probeMedian(name: string, field: string): number | undefined {
  const list = probes[name]?.map((p) => p[field]).filter((v): v is number => typeof v === "number");
  return list === undefined || list.length === 0 ? undefined : median(list);
}
function probeSpread(name: string, field: string): string {
  const list = probes[name]?.map((p) => p[field]).filter((v): v is number => typeof v === "number") ?? [];
  if (list.length < 2) return "";
  return `${Math.round(((Math.max(...list) - Math.min(...list)) / median(list)) * 100)}%`;
}
const ms = (value: number | undefined) => (value === undefined ? "—" : `${value.toFixed(2)} ms`);
const mb = (value: number | undefined) => (value === undefined ? "—" : `${(value / 1024).toFixed(1)} MiB`);

for (const engine of ["ffi", "node"] as const) {
  const big = probeMedian(`connect(), ${engine}, 100,000 keys`, "open");
  const little = probeMedian(`connect(), ${engine}, 1,000 keys`, "open");
  const raw = probeMedian("raw node:sqlite, 100,000 keys", "open");
  verdicts.push([
    `connect() of an existing file, ${engine}, 100,000 keys`,
    {
      target: "within 2x raw node:sqlite, and independent of the number of keys",
      actual: `${ms(big)} (raw ${ms(raw)}, ${
        x(big && raw ? big / raw : undefined).replace("x", "x raw")
      }; 1,000 keys: ${ms(little)})`,
      met: big === undefined || raw === undefined || little === undefined
        ? undefined
        : big <= 2 * raw && big <= 1.5 * little + 0.2,
    },
  ]);
}

const openRows = PROBES.filter(([, mode]) => mode !== "hold" && mode !== "read-all" && mode !== "import").map((
  [name],
) => [name, ms(probeMedian(name, "open")), ms(probeMedian(name, "first")), probeSpread(name, "open")]);
const memoryRows = ["import", "holds 100,000 keys (connect, one read)", "reads all 100,000 keys"].map((name) => [
  name,
  mb(probeMedian(name, "peakKib")),
  probeSpread(name, "peakKib"),
]);

const cryptoRows = [
  "seal (node:crypto, as the registry)",
  "open (node:crypto, as the registry)",
  "seal (WebCrypto, awaited)",
  "open (WebCrypto, awaited)",
].map((op) => [
  op,
  `${((ns("crypto", "memory", op) ?? NaN) / 1000).toFixed(1)} us`,
  spread("crypto", "memory", op),
]);

// Watch latency runs after the rounds, alone: its writer and watcher are processes of their own.
const watchRows = QUICK ? [] : await measureWatchLatency();
const missed = verdicts.filter(([, v]) => v.met === false);
const loadAtEnd = Deno.loadavg()[0] ?? NaN;
/** Whether other jobs competed for the CPU: a load average at or above the number of cores says so. */
function loadNote(): string {
  const cores = cpus().length;
  return Math.max(loadAtStart, loadAtEnd) >= cores
    ? `: at or above the number of cores (${cores}), other jobs were competing for the CPU`
    : ` (below the number of cores, ${cores})`;
}
const report = `# Benchmark results

Written by \`deno task bench:compare\` (bench/compare.ts) on ${new Date().toISOString().slice(0, 16)}Z. Do not edit by
hand: run the task again. What the numbers mean, and why a target is missed: [docs/performance.md](../docs/performance.md).

- Machine: ${machine()}. Load average (1 min) ${loadAtStart.toFixed(1)} at the start, ${
  loadAtEnd.toFixed(1)
} at the end${loadNote()}.
- SQLite: system libsqlite3 ${floor.version ?? "(C floor not built)"} for C and the FFI engine; node:sqlite's bundled
  ${new DatabaseSync(":memory:").prepare("SELECT sqlite_version() AS v").get()!.v} for the node engine.
- C floor: ${floor.compiler ?? floor.note}.
- Workload: ${KEYS.toLocaleString("en-US")} config keys and ${
  MODULES.toLocaleString("en-US")
} modules prefilled; keys cycling; short JSON values (\`{"retries":n,"url":"https://example.com"}\`); each write its
  own transaction; files in WAL at synchronous=${SYNCHRONOUS} (Deno KV: its own settings). Sealed: envelope scheme,
  raw 32-byte key.
- ${ROUNDS} interleaved rounds; each figure is the median of the rounds, spread = (max - min) / median. Two shared,
  noisy cores: compare ratios within one run, not single numbers across runs.

## Targets

${
  table(
    ["what", "target", "measured", "met"],
    verdicts.map((
      [what, v],
    ) => [what, v.target, v.actual, v.met === undefined ? "not measured" : v.met ? "yes" : "**no**"]),
  )
}

${
  missed.length === 0
    ? "Every target is met."
    : `${missed.length} target(s) missed: see docs/performance.md for why and what would close each.`
}

## Operations

ops/s per contender; "vs C" is the contender's speed as a fraction of the C floor's, "vs raw" as a fraction of the raw
binding under it (raw FFI binding for the ffi engine, raw node:sqlite for the node engine).

${table(["operation", "contender", "ops/s", "vs C", "vs raw", "spread"], rows)}

Sealed getConfig of keys not read before (another handle rewrote every key first; each read opens a new ciphertext):

${
  table(
    ["engine", "ops/s", "plain getConfig + one open (node:crypto), ops/s", "spread"],
    (["ffi", "node"] as const).map((engine) => {
      const plain = ns(`registry-${engine}`, "file", "getConfig");
      return [
        engine,
        opsPerSecond(ns(`sealed-${engine}`, "file", "getConfig (not read before)")),
        opsPerSecond(plain === undefined || webcryptoOpen === undefined ? undefined : plain + webcryptoOpen),
        spread(`sealed-${engine}`, "file", "getConfig (not read before)"),
      ];
    }),
  )
}

## Revisions

The registry's writes also append to the revision log (\`oxide_changes\`, kept by SQLite triggers, so writes by a Rust
kernel are logged too). Its cost, measured on the raw bindings (the same SQL, with and without the log's triggers):

${
  table(
    ["write", "binding", "without the log, ops/s", "with it, ops/s", "with / without"],
    (["memory", "file"] as const).flatMap((storage) =>
      (["setConfig", "upsertModule"] as const).flatMap((op) =>
        (["ffi", "node"] as const).map((engine) => {
          const without = ns(`raw-${engine}-norev`, storage, op);
          const withLog = ns(`raw-${engine}`, storage, op);
          return [
            `${op}, ${storage}`,
            engine === "ffi" ? "raw FFI binding" : "raw node:sqlite",
            opsPerSecond(without),
            opsPerSecond(withLog),
            x(ratio(withLog, without)),
          ];
        })
      )
    ),
  )
}

Watch latency, from a write's commit in another process to the event in a watcher process (${WATCH_WORKLOAD}; issue 9's
goal: a median under 20 ms):

${
  table(
    ["watcher", "median", "p99", "max", "events"],
    watchRows.map((
      row,
    ) => [
      row.name,
      `${row.median.toFixed(2)} ms`,
      `${row.p99.toFixed(2)} ms`,
      `${row.max.toFixed(2)} ms`,
      String(row.events),
    ]),
  )
}

One AES-256-GCM operation on a short value, alone:

${table(["operation", "time", "spread"], cryptoRows)}

## Opening

Fresh process per sample: the time of the open call itself, then of the first answered \`getConfig\`. Import of the
module (\`mod.ts\`): ${ms(probeMedian("import", "import"))} (spread ${probeSpread("import", "import")}).

${table(["open", "open", "first getConfig", "spread"], openRows)}

## Peak memory

Largest resident set of a fresh Deno process, sampled after opening, after the first read and every 1,000 reads.

${table(["process", "peak RSS", "spread"], memoryRows)}
`;
if (QUICK) {
  console.log(report);
  Deno.exit(0);
}
await Deno.writeTextFile(RESULTS, report);
// Formatted as the repository's other markdown is, so `deno fmt --check` passes on the committed file.
await new Deno.Command("deno", { args: ["fmt", "--quiet", RESULTS], stdout: "null" }).output();
console.log(`wrote ${RESULTS}`);
if (missed.length > 0) {
  console.log(
    `${missed.length} target(s) missed:\n${missed.map(([w, v]) => `  ${w}: ${v.actual} (${v.target})`).join("\n")}`,
  );
}
