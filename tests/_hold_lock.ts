// Test fixture, run as a subprocess: opens the registry at Deno.args[0] with engine Deno.args[1], takes the write lock
// (BEGIN IMMEDIATE), writes config key "holder", prints "locked", and commits when its stdin closes.
import { type EngineName, StateRegistry } from "@oxide/registry";

const [path, engine] = Deno.args as [string, EngineName];
await using reg = await StateRegistry.connect(path, { engine });
reg.db.exec("BEGIN IMMEDIATE");
await reg.setConfig("holder", reg.engine);
console.log("locked");
for await (const _ of Deno.stdin.readable) {
  // Wait for the parent to close stdin.
}
reg.db.exec("COMMIT");
