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
printTable(
  ["id", "name", "version", "kind", "state", "updated_at"],
  (await reg.listModules()).map((m) => [m.id, m.name, m.version, m.kind, m.state, m.updatedAt.toISOString()]),
);

console.log("\nconfig:");
printTable(["key", "value"], (await reg.listConfig()).map((entry) => [entry.key, JSON.stringify(entry.value)]));

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd();
  console.log(line(header));
  console.log(line(widths.map((width) => "-".repeat(width))));
  for (const row of rows) console.log(line(row));
}
