// Watch across processes, on real files: a watcher process sees every change that writer processes on both engines
// and oxide-k's own SQL make, in revision order, exactly once, across a SIGKILL and a restart resumed from the last
// revision it printed; an idle watcher process uses next to no CPU.
import assert from "node:assert/strict";
import { type EngineName, StateRegistry } from "@oxide/registry";
import { ENGINES, rawSqlite, tempDir } from "./_helpers.ts";
import { Worker } from "./_subprocess.ts";
import { within } from "./_watchdog.ts";

interface SeenEvent {
  space: "config" | "modules";
  type: "put" | "delete";
  key: string;
  revision: number;
  version: number;
  value: unknown;
}

interface Ack {
  table: string;
  key: string;
  writer: number;
  seq: number;
  op?: string;
}

/** Reads a worker's lines until `done` says stop, into `events`. Fails on an error line, an early end, or silence. */
async function readEvents(
  worker: Worker,
  events: SeenEvent[],
  done: () => boolean,
): Promise<void> {
  while (!done()) {
    // A missed event fails, not hangs, the test.
    const line = await within(worker.nextLine(), `the watcher's event ${events.length + 1}`);
    if (line === undefined) {
      const { status, stderr } = await worker.finish();
      throw new Error(`the watcher ended early (exit code ${status.code}, ${events.length} events): ${stderr}`);
    }
    const message = JSON.parse(line);
    if (message.error) throw new Error(`the watcher failed: ${JSON.stringify(message.error)}`);
    if (message.event) events.push(message.event);
  }
}

async function startWatcher(path: string, folder: string, engine: EngineName, fromRevision?: number): Promise<Worker> {
  const watcher = new Worker(
    "watcher.ts",
    [JSON.stringify({ path, engine, variant: "plain", ...(fromRevision === undefined ? {} : { fromRevision }) })],
    { folders: [folder] },
  );
  const ready = await within(watcher.nextLine(), "the watcher's ready line");
  if (ready !== JSON.stringify({ ready: true })) {
    throw new Error(`the watcher did not start (${ready}): ${(await watcher.finish()).stderr}`);
  }
  return watcher;
}

/** Collects a writer's acks until its done line. */
async function collectAcks(worker: Worker, acks: Ack[]): Promise<void> {
  for (let line = await worker.nextLine(); line !== undefined; line = await worker.nextLine()) {
    const message = JSON.parse(line);
    if (message.error) throw new Error(`a writer failed: ${JSON.stringify(message.error)}`);
    if (message.ack) acks.push(message.ack);
    if (message.done) return;
  }
  throw new Error(`a writer ended early: ${(await worker.finish()).stderr}`);
}

for (const watcherEngine of ENGINES) {
  Deno.test(
    `a watcher process sees every change of writers on both engines and oxide-k's SQL, in order, once, across a restart [watcher ${watcherEngine}]`,
    async () => {
      await using dir = await tempDir();
      const path = dir.file("registry.db");
      {
        await using reg = await StateRegistry.connect(path, { engine: "ffi" });
        await reg.setConfig("before.watch", "not watched: older than the watch");
      }
      let watcher = await startWatcher(path, dir.path, watcherEngine);
      const seen: SeenEvent[] = [];
      const writes = 60;
      const writers = [
        new Worker("writer.ts", [JSON.stringify({ path, engine: "ffi", variant: "plain", writer: 0, writes })], {
          folders: [dir.path],
        }),
        new Worker("writer.ts", [JSON.stringify({ path, engine: "node", variant: "plain", writer: 1, writes })], {
          folders: [dir.path],
        }),
        new Worker("oxide_k_writer.ts", [JSON.stringify({ path, writer: 2, writes })], { folders: [dir.path] }),
      ];
      try {
        for (const writer of writers) assert.equal(await writer.nextLine(), JSON.stringify("ready"));
        for (const writer of writers) await writer.send("go\n");
        const acks: Ack[] = [];
        const writing = Promise.all(writers.map((writer) => collectAcks(writer, acks)));
        writing.catch(() => {}); // Awaited below; a failure before that must not become an unhandled rejection.

        // Kill the watcher mid-way, then resume from the last revision it printed.
        await readEvents(watcher, seen, () => seen.length >= 40);
        watcher.child.kill("SIGKILL");
        await watcher.finish();
        const resumeFrom = seen.at(-1)!.revision + 1;
        watcher = await startWatcher(path, dir.path, watcherEngine, resumeFrom);

        await writing;
        await readEvents(watcher, seen, () => seen.length >= acks.length);
        await watcher.send("stop\n");
        const rest = await watcher.finish();
        assert.equal(rest.status.code, 0, rest.stderr);
        for (const line of rest.lines) {
          const message = JSON.parse(line);
          if (message.event) seen.push(message.event);
        }

        // In revision order, none repeated.
        for (let i = 1; i < seen.length; i++) {
          assert.ok(seen[i]!.revision > seen[i - 1]!.revision, `event ${i} out of order or repeated`);
        }
        // None missed: exactly the change log's rows since the watch began (the file's own record).
        for (const writer of writers) assert.equal((await writer.finish()).status.code, 0);
        const db = rawSqlite(path);
        db.exec("PRAGMA busy_timeout = 5000");
        const logged = db.prepare(
          "SELECT revision, space, key, type, version FROM oxide_changes WHERE key <> 'before.watch' ORDER BY seq",
        ).all().map((row) => ({ ...row }));
        db.close();
        assert.deepEqual(
          seen.map(({ revision, space, key, type, version }) => ({ revision, space, key, type, version })),
          logged,
        );
        // And each acknowledged write is among them, with its value: config values are {writer, seq}.
        assert.equal(seen.length, acks.length);
        for (const ack of acks) {
          const match = seen.filter((event) =>
            event.key === ack.key &&
            (ack.op === "delete"
              ? event.type === "delete"
              : ack.table === "config"
              ? JSON.stringify(event.value) === JSON.stringify({ writer: ack.writer, seq: ack.seq })
              : event.value === String(ack.seq))
          );
          assert.ok(match.length >= 1, `no event for ${JSON.stringify(ack)}`);
        }
        const byWriter = (w: number) =>
          seen.filter((e) => String(JSON.stringify(e.value)).includes(`"writer":${w}`)).length;
        assert.ok(byWriter(0) > 0 && byWriter(1) > 0 && byWriter(2) > 0, "every writer's changes were seen");
        assert.ok(seen.some((e) => e.key.startsWith("rust.") && e.type === "delete"), "oxide-k's deletes were seen");
      } finally {
        for (const writer of writers) await writer[Symbol.asyncDispose]();
        await watcher[Symbol.asyncDispose]();
      }
    },
  );
}

/**
 * User plus system CPU time of a process, in clock ticks (Linux `/proc/<pid>/stat`, fields 14 and 15). Deno asks for
 * --allow-all to read /proc itself, which the test task does not grant, so `cat` (--allow-run) reads it.
 */
async function cpuTicks(pid: number): Promise<number> {
  const output = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stdout: "piped", stderr: "piped" })
    .output();
  const stat = new TextDecoder().decode(output.stdout);
  assert.ok(output.success, `cannot read /proc/${pid}/stat: ${new TextDecoder().decode(output.stderr)}`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

for (const mode of ["folder watch", "polling fallback"] as const) {
  Deno.test({
    name: `an idle watcher process uses next to no CPU [${mode}]`,
    ignore: Deno.build.os !== "linux", // /proc/<pid>/stat
    fn: async () => {
      await using dir = await tempDir();
      const path = dir.file("registry.db");
      {
        await using reg = await StateRegistry.connect(path, { engine: "ffi" });
        await reg.setConfig("a", 1);
      }
      // Without read access to the folder the registry cannot watch it, and polls data_version instead.
      const folders = mode === "folder watch" ? [dir.path] : [path, `${path}-wal`, `${path}-shm`];
      await using watcher = new Worker("watcher.ts", [JSON.stringify({ path, engine: "ffi", variant: "plain" })], {
        folders,
      });
      assert.equal(await within(watcher.nextLine(), "the watcher's ready line"), JSON.stringify({ ready: true }));
      await new Promise((resolve) => setTimeout(resolve, 500)); // Past start-up work (compilation, GC).
      const before = await cpuTicks(watcher.child.pid);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const used = await cpuTicks(watcher.child.pid) - before;
      // 2 s of one core is 200 ticks (at 100 Hz); a busy loop uses all of them, a 1 ms poll about 20.
      assert.ok(used <= 10, `an idle watcher used ${used} clock ticks of CPU in 2 s`);
      await watcher.send("stop\n");
      const { status } = await within(watcher.finish(), "the idle watcher's exit on stop");
      assert.equal(status.code, 0);
    },
  });
}
