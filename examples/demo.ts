/**
 * oxide-k's demo flow on an embedded default: a registry file under ./data.
 *
 *   deno task demo
 *
 * Registers the `echo` module, sets `kernel.greeting`, reads it back, moves
 * `echo` to running and then stopped, and prints the module table and the
 * configuration. A second run finds the first run's state.
 */
import { StateRegistry } from "@oxide/registry";

const DATA_DIR = "./data";
const path = `${DATA_DIR}/registry.db`;

await Deno.mkdir(DATA_DIR, { recursive: true });
await using reg = await StateRegistry.connect(path);

const runs = (await reg.tryGetConfig<number>("demo.runs")) ?? 0;
console.log(
  `registry: ${path} (engine: ${reg.engine}, previous runs: ${runs})`,
);

await reg.upsertModule({
  id: "echo",
  name: "Echo",
  version: "0.1.0",
  kind: "native",
  description: "Demo module that echoes Ping commands.",
}, "loaded");
await reg.setConfig("kernel.greeting", "Hello, agent.");
console.log(
  `kernel.greeting = ${JSON.stringify(await reg.getConfig<string>("kernel.greeting"))}`,
);

await reg.setModuleState("echo", "running");
console.log(`echo is ${(await reg.getModule("echo"))?.state}`);
await reg.setModuleState("echo", "stopped");
await reg.setConfig("demo.runs", runs + 1);

console.log("\nmodules:");
console.table(
  (await reg.listModules()).map((m) => ({
    id: m.id,
    name: m.name,
    version: m.version,
    kind: m.kind,
    state: m.state,
    updated_at: m.updatedAt.toISOString(),
  })),
);
console.log("config:");
const config = reg.db.prepare("SELECT key FROM config ORDER BY key").all();
for (const { key } of config) {
  console.log(`  ${key} = ${JSON.stringify(await reg.getConfig(String(key)))}`);
}
