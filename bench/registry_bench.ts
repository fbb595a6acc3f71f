// The registry's hot paths against the floors beneath them, one group per operation so `deno bench` prints ratios:
//
//   deno task bench     (deno bench --unstable-kv --allow-ffi --allow-read=./data --allow-write=./data ...)
//   deno task bench:c   (the same SQL from C against libsqlite3: the floor)
//
// Contenders: our registry on the ffi and the node engine; raw `node:sqlite` running the registry's SQL through
// prepared statements with the same pragmas (baseline); Deno KV doing the equivalent get/set/list. File databases
// use WAL and synchronous=FULL, as the registry does by default (every write waits for fsync); the in-memory rows
// show the cost of the code above SQLite without the disk.
/// <reference lib="deno.unstable" />
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { formatTimestamp, type ModuleMetadata, StateRegistry } from "@oxide/registry";
import { CONFIG_TABLE_SQL, MODULES_TABLE_SQL, REGISTRY_SQL } from "../src/schema.ts";

const DIR = "./data/bench";
const MODULES = 100;
const VALUE = { url: "https://example.com", retries: 3 };
const META: ModuleMetadata = {
  id: "echo",
  name: "Echo",
  version: "0.1.0",
  kind: "native",
  description: "Demo module that echoes Ping commands.",
};

// The registry's own statements, so the raw rows run exactly the same SQL.
const SQL = { modules: MODULES_TABLE_SQL, config: CONFIG_TABLE_SQL, ...REGISTRY_SQL };

/** One way of doing the four operations. */
interface Contender {
  name: string;
  /** Its calls return plain values: benched without `await`, so the raw rows carry no promise overhead. */
  sync?: boolean;
  getConfig(key: string): Promise<unknown> | unknown;
  setConfig(key: string, value: unknown): Promise<unknown> | unknown;
  upsertModule(metadata: ModuleMetadata, state: string): Promise<unknown> | unknown;
  listModules(): Promise<unknown[]> | unknown[];
}

function registry(name: string, reg: StateRegistry): Contender {
  return {
    name,
    getConfig: (key) => reg.getConfig(key),
    setConfig: (key, value) => reg.setConfig(key, value),
    upsertModule: (metadata, state) => reg.upsertModule(metadata, state as "running"),
    listModules: () => reg.listModules(),
  };
}

/** node:sqlite directly: the registry's SQL and pragmas, prepared once; values decoded as the registry decodes them. */
function rawNode(name: string, path: string): Contender {
  const db = new DatabaseSync(path);
  if (path !== ":memory:") db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000");
  db.exec(`${SQL.modules}; ${SQL.config}`);
  const statements = Object.fromEntries(
    (["upsertModule", "listModules", "setConfig", "getConfig"] as const).map((k) => [k, db.prepare(SQL[k])]),
  ) as Record<"upsertModule" | "listModules" | "setConfig" | "getConfig", StatementSync>;
  return {
    name,
    sync: true,
    getConfig(key) {
      const row = statements.getConfig.get(key);
      return row === undefined ? undefined : JSON.parse(row.value as string);
    },
    setConfig: (key, value) => statements.setConfig.run(key, JSON.stringify(value), formatTimestamp(new Date())),
    upsertModule: (m, state) =>
      statements.upsertModule.run(
        m.id,
        m.name,
        m.version,
        `"${m.kind}"`,
        `"${state}"`,
        m.description ?? null,
        formatTimestamp(new Date()),
      ),
    listModules: () =>
      statements.listModules.all().map((row) => ({
        id: row.id,
        name: row.name,
        version: row.version,
        kind: JSON.parse(row.kind as string),
        state: JSON.parse(row.state as string),
        description: row.description ?? undefined,
        updatedAt: new Date(row.updated_at as string),
      })),
  };
}

/** Deno KV on a file: the equivalent keys and records (KV serializes values itself). */
function kv(name: string, store: Deno.Kv): Contender {
  return {
    name,
    getConfig: async (key) => (await store.get<{ value: unknown }>(["config", key])).value?.value,
    setConfig: (key, value) => store.set(["config", key], { value, updatedAt: formatTimestamp(new Date()) }),
    upsertModule: (m, state) => store.set(["modules", m.id], { ...m, state, updatedAt: formatTimestamp(new Date()) }),
    listModules: async () => {
      const records = [];
      for await (const entry of store.list({ prefix: ["modules"] })) records.push(entry.value);
      return records;
    },
  };
}

await Deno.remove(DIR, { recursive: true }).catch(() => {});
await Deno.mkdir(DIR, { recursive: true });

const kvStore = await Deno.openKv(`${DIR}/kv.sqlite`);
const contenders: Contender[] = [
  rawNode("node:sqlite raw, file", `${DIR}/raw.db`),
  registry("registry ffi, file", await StateRegistry.connect(`${DIR}/ffi.db`, { engine: "ffi" })),
  registry("registry node, file", await StateRegistry.connect(`${DIR}/node.db`, { engine: "node" })),
  kv("Deno KV, file", kvStore),
  rawNode("node:sqlite raw, memory", ":memory:"),
  // The same calls behind `await`, as the registry's async API must be: how much of the gap is the promise.
  { ...rawNode("node:sqlite raw awaited, memory", ":memory:"), sync: false },
  registry("registry ffi, memory", await StateRegistry.inMemory({ engine: "ffi" })),
  registry("registry node, memory", await StateRegistry.inMemory({ engine: "node" })),
];

// The same starting state everywhere: one config key to read, MODULES modules to list.
for (const contender of contenders) {
  await contender.setConfig("endpoint", VALUE);
  for (let i = 0; i < MODULES; i++) {
    await contender.upsertModule({ ...META, id: `module-${String(i).padStart(3, "0")}` }, "running");
  }
  const listed = await contender.listModules();
  if (listed.length !== MODULES) throw new Error(`${contender.name}: listed ${listed.length} modules, not ${MODULES}`);
  const value = await contender.getConfig("endpoint");
  if (JSON.stringify(value) !== JSON.stringify(VALUE)) throw new Error(`${contender.name}: read back ${value}`);
}

let counter = 0;
const operations: [group: string, run: (c: Contender) => unknown][] = [
  ["getConfig", (c) => c.getConfig("endpoint")],
  ["setConfig", (c) => c.setConfig("max_threads", ++counter)],
  ["upsertModule", (c) => c.upsertModule(META, ++counter % 2 === 0 ? "running" : "stopped")],
  [`listModules (${MODULES})`, (c) => c.listModules()],
];
for (const [operation, run] of operations) {
  for (const contender of contenders) {
    // One group per operation and storage, each with raw node:sqlite as its baseline.
    const storage = contender.name.endsWith("memory") ? "memory" : "file";
    const group = `${operation}, ${storage}`;
    const options = { group, baseline: contender.name === `node:sqlite raw, ${storage}` };
    if (contender.sync) {
      Deno.bench(`${operation}: ${contender.name}`, options, () => {
        run(contender);
      });
    } else {
      Deno.bench(`${operation}: ${contender.name}`, options, async () => {
        await run(contender);
      });
    }
  }
}
