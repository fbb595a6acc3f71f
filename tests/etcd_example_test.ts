/**
 * examples/fleet.ts runs with exactly the permission `deno task example:fleet`
 * names (--allow-net for the cluster's members), in a real `deno run`, and
 * names what it is denied.
 */

import assert from "node:assert/strict";
import { addressOf, etcdEndpoints, etcdTest } from "./_etcd.ts";

const ROOT = new URL("../", import.meta.url);
const EXAMPLE = new URL("examples/fleet.ts", ROOT).pathname;

async function run(flags: string[], address: string): Promise<{ code: number; stdout: string; stderr: string }> {
  // An empty folder: the example must not need (or write) anything where it runs.
  const cwd = await Deno.makeTempDir({ prefix: "oxide-fleet-example-" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, EXAMPLE, address],
    cwd,
    env: { NO_COLOR: "1" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const left = [...Deno.readDirSync(cwd)].map((e) => e.name);
  await Deno.remove(cwd, { recursive: true });
  assert.deepEqual(left, [], "the example wrote nothing where it ran");
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("deno task example:fleet grants --allow-net for the etcd:dev members and nothing else", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  assert.equal(
    tasks["example:fleet"].command,
    "deno run --allow-net=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 examples/fleet.ts",
  );
});

etcdTest(
  "examples/fleet.ts runs with --allow-net for the members only; a second run finds the first's state",
  "cluster",
  async () => {
    const endpoints = etcdEndpoints()!;
    const hosts = endpoints.map((e) => new URL(e).host);
    const address = addressOf(endpoints);
    const flags = [`--allow-net=${hosts.join(",")}`];
    const first = await run(flags, address);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      /^registry: etcd:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/t-[0-9a-f-]+$/m,
    );
    assert.match(first.stdout, /^example\.runs = 1 \(version 1\)$/m);
    assert.match(first.stdout, /^echo is running$/m);
    assert.match(first.stdout, /^other permissions: read: no, write: no, env: no, ffi: no, run: no, sys: no$/m);
    const second = await run(flags, address);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /^example\.runs = 2 \(version 2\)$/m);
  },
);

etcdTest("examples/fleet.ts without --allow-net for a member fails naming it", "cluster", async () => {
  const endpoints = etcdEndpoints()!;
  const hosts = endpoints.map((e) => new URL(e).host);
  const address = addressOf(endpoints);
  const none = await run([], address);
  assert.equal(none.code, 1);
  assert.match(none.stderr, new RegExp(`Requires net access to "${RegExp.escape(hosts[0]!)}"`));
  // Only the first member allowed: the calls still go there, so it works; the others are for failover.
  const one = await run([`--allow-net=${hosts[0]}`], address);
  assert.equal(one.code, 0, one.stderr);
});
