/**
 * The least-privilege deployment: a registry under ./data with read and write
 * permission on ./data and nothing else.
 *
 *   deno task example:least-privilege
 *
 * which runs `deno run --allow-read=./data --allow-write=./data
 * examples/least_privilege.ts`. Without `--allow-ffi`, `engine: "auto"` (the
 * default) picks the node engine: the `node:sqlite` module built into Deno.
 * A second run finds the first run's state.
 */
import { KernelError, StateRegistry } from "@oxide/registry";

const DATA_DIR = "./data";
const path = `${DATA_DIR}/least_privilege.db`;

try {
  await Deno.mkdir(DATA_DIR, { recursive: true });
  await using reg = await StateRegistry.connect(path);

  const ffi = Deno.permissions.querySync({ name: "ffi" }).state;
  console.log(`registry: ${path}`);
  console.log(
    `engine: ${reg.engine} (SQLite ${reg.db.sqliteVersion}${
      reg.engine === "node" ? ", bundled in Deno" : ""
    }; chosen by "auto", --allow-ffi is ${ffi === "granted" ? "granted" : "not granted"})`,
  );
  const others = (["ffi", "env", "net", "run", "sys"] as const)
    .map((name) => `${name}: ${Deno.permissions.querySync({ name }).state === "granted" ? "granted" : "no"}`);
  console.log(`other permissions: ${others.join(", ")}`);

  const runs = (await reg.tryGetConfig<number>("example.runs")) ?? 0;
  await reg.upsertModule({
    id: "sandbox",
    name: "Sandbox",
    version: "0.1.0",
    kind: "wasm",
    description: "A module that runs with no more permission than its registry file.",
  }, "running");
  await reg.setConfig("sandbox.limits", { memoryMb: 64, cpuMs: 500 });
  await reg.setConfig("example.runs", runs + 1);

  const sandbox = await reg.getModule("sandbox");
  console.log(`module sandbox: ${sandbox?.kind}, ${sandbox?.state}`);
  console.log(`config sandbox.limits = ${JSON.stringify(await reg.getConfig("sandbox.limits"))}`);
  console.log(`runs: ${runs + 1}`);
} catch (error) {
  // Our errors name what failed (a missing permission names its flag); anything else keeps its stack trace.
  if (!(error instanceof KernelError)) throw error;
  console.error(`error: ${error.message}`);
  Deno.exit(1);
}
