/**
 * scripts/etcd_cluster.ts: `start --detach` then `stop --dir`, as .ci/run and developers use them, in real
 * subprocesses with real etcd members. `stop` once said "stopped" while the members still ran (its kill failed
 * for want of --allow-run and was taken for "already gone").
 */

import assert from "node:assert/strict";
import { running } from "../scripts/etcd_cluster.ts";
import { etcdTest } from "./_etcd.ts";

const SCRIPT = new URL("../scripts/etcd_cluster.ts", import.meta.url).pathname;
// The flags .ci/run starts clusters with.
const START_FLAGS = [
  "--allow-run=etcd,openssl",
  "--allow-net=127.0.0.1",
  "--allow-read",
  "--allow-write",
  "--allow-env=OXIDE_ETCD_BIN",
];

// What stop needs: Deno.kill of a bare pid asks for --allow-run for everything.
const STOP_FLAGS = ["--allow-run", "--allow-read", "--allow-write", "--allow-env=OXIDE_ETCD_BIN"];

async function script(flags: readonly string[], ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

etcdTest(
  "etcd_cluster.ts stop --dir stops each member by pid and returns only once every one has exited",
  "binary",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "oxide-etcd-stop-" });
    const sleeper = new Deno.Command("sleep", { args: ["60"], stdout: "null", stderr: "null" }).spawn();
    let pids: number[] = [];
    try {
      const started = await script(START_FLAGS, "start", "--detach", "--members", "2", "--dir", dir);
      assert.equal(started.code, 0, started.stderr);
      pids = started.stdout.match(/^OXIDE_ETCD_PIDS=(.*)$/m)![1]!.split(",").map(Number);
      assert.equal(pids.length, 2);
      assert.ok(pids.every(running), "both members run");
      // A stale pid file whose pid now belongs to another process: left alone.
      await Deno.writeTextFile(`${dir}/m9.pid`, `${sleeper.pid}\n`);

      // Without --allow-run, Deno may not signal a pid: a clear failure, never "stopped".
      const refused = await script(START_FLAGS, "stop", "--dir", dir);
      assert.notEqual(refused.code, 0, refused.stdout);
      assert.match(refused.stderr, /needs --allow-run/);
      assert.doesNotMatch(refused.stdout, /stopped/);
      assert.ok(pids.every(running), "the members still run, and stop said so");

      const stopped = await script(STOP_FLAGS, "stop", "--dir", dir);
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(stopped.stdout, new RegExp(`^stopped 2 etcd member\\(s\\): ${pids.join(" ")}`, "m"));
      assert.match(stopped.stderr, new RegExp(`pid ${sleeper.pid} of .*m9\\.pid is no longer etcd member m9`));
      assert.ok(!pids.some(running), "every member had exited when stop returned");
      assert.ok(running(sleeper.pid), "the process that reused a pid was not touched");

      const again = await script(STOP_FLAGS, "stop", "--dir", dir);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /^stopped 0 etcd member\(s\)/m);
    } finally {
      for (const pid of pids) if (running(pid)) Deno.kill(pid, "SIGKILL");
      try {
        sleeper.kill("SIGKILL");
      } catch {
        // It exited: the assertions above say why.
      }
      await sleeper.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
);

etcdTest(
  "deno task bench:etcd runs with exactly its task's permissions (read and write ./data only)",
  "binary",
  async () => {
    const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).tasks;
    const [deno, run, ...rest] = (tasks["bench:etcd"].command as string).split(" ");
    assert.deepEqual([deno, run], ["deno", "run"]);
    const flags = rest.filter((a) => a.startsWith("--"));
    assert.ok(flags.includes("--allow-read=./data") && flags.includes("--allow-write=./data"), flags.join(" "));
    assert.ok(!flags.some((f) => f === "--allow-read" || f === "--allow-write" || f === "-A"), flags.join(" "));
    // From a folder of its own, so its ./data is not the project's.
    const cwd = await Deno.makeTempDir({ prefix: "oxide-bench-etcd-" });
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", ...flags, new URL("../bench/etcd_compare.ts", import.meta.url).pathname, "8"],
        cwd,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.match(stdout, /^\| members \| operation \| raw gateway \|/m);
      assert.match(stdout, /^\| 3 \| watch latency/m);
    } finally {
      await Deno.remove(cwd, { recursive: true });
    }
  },
);
