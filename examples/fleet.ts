/**
 * Fleet mode: one registry on an etcd cluster, shared by kernels on several
 * machines, with `--allow-net` for the cluster's members and nothing else.
 *
 *   deno task etcd:dev        # in another terminal: 3 members on 127.0.0.1:2379, 22379, 32379
 *   deno task example:fleet   # deno run --allow-net=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 examples/fleet.ts
 *
 * An address as the first argument overrides the dev cluster's. Each run
 * counts itself with a compare-and-set loop (safe when kernels on other
 * machines run it at the same time) and marks the echo module running.
 */
import { KernelError, StateRegistry } from "@oxide/registry";

const address = Deno.args[0] ?? "etcd://127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379/example";

try {
  await using reg = await StateRegistry.connect(address);
  console.log(`registry: ${reg.location}`);
  const runs = await reg.update<number>("example.runs", (n) => (n ?? 0) + 1);
  console.log(`example.runs = ${runs?.value} (version ${runs?.version})`);
  await reg.upsertModule(
    { id: "echo", name: "Echo", version: "0.1.0", kind: "native", description: "Echoes Ping commands." },
    "loaded",
  );
  await reg.setModuleState("echo", "running");
  const echo = await reg.getModule("echo");
  console.log(`echo is ${echo?.state}`);
  const others = (["read", "write", "env", "ffi", "run", "sys"] as const)
    .map((name) => `${name}: ${Deno.permissions.querySync({ name }).state === "granted" ? "granted" : "no"}`);
  console.log(`other permissions: ${others.join(", ")}`);
} catch (error) {
  if (!(error instanceof KernelError) && !(error instanceof Deno.errors.NotCapable)) throw error;
  console.error(`example:fleet failed: ${error.message}`);
  Deno.exit(1);
}
