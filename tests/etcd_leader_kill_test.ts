/**
 * Killing the etcd leader mid-run: two writer processes and a watcher on a
 * 3-member cluster of the test's own; `kill -9` the leader while they write.
 * Every acknowledged write is there afterwards, nothing is applied twice, and
 * the watcher saw every change once, in revision order. The stall is printed.
 */

import assert from "node:assert/strict";
import { EtcdStore } from "../src/store/etcd/store.ts";
import type { ChangeEvent } from "../src/store/store.ts";
import { addressOf, etcdTest, freshNamespace, ownCluster } from "./_etcd.ts";

const WRITES = 150;
const WRITER = new URL("./fixtures/etcd_writer.ts", import.meta.url).pathname;

interface WriterLog {
  acked: Map<number, number>; // i -> revision
  unknown: number[];
  slowestMs: number;
  settled: [number, number];
  done: boolean;
}

/** Reads a writer's stdout line by line into `log`, calling `onAck` after each acknowledgement. */
async function follow(child: Deno.ChildProcess, log: WriterLog, onAck: () => void): Promise<void> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      const [word, a, b, c] = line.split(" ");
      if (word === "ack") {
        log.acked.set(Number(a), Number(b));
        log.slowestMs = Math.max(log.slowestMs, Number(c));
        onAck();
      } else if (word === "unknown") {
        log.unknown.push(Number(a));
      } else if (word === "settled") {
        log.settled = [Number(a), Number(b)];
      } else if (word === "done") {
        log.done = true;
      }
    }
  }
}

etcdTest(
  "killing the etcd leader mid-run loses no acknowledged write, applies none twice, and the watch sees each once in order",
  "binary",
  async () => {
    await using cluster = await ownCluster({ members: 3 });
    const leader = await cluster.leader();
    // Everyone talks to the leader first, so the kill cuts their connections mid-call.
    const byLeader = [...cluster.members].sort((a, b) => (a.name === leader ? -1 : b.name === leader ? 1 : 0));
    const address = addressOf(byLeader.map((m) => m.clientUrl), freshNamespace());
    await using watcherStore = await EtcdStore.open(address);
    const from = await watcherStore.revision() + 1;

    const seen: ChangeEvent[] = [];
    const ac = new AbortController();
    const watching = (async () => {
      for await (const ev of watcherStore.watch({ spaces: ["config"], fromRevision: from, signal: ac.signal })) {
        seen.push(ev);
      }
    })();

    const logs: WriterLog[] = [0, 1].map(() => ({
      acked: new Map(),
      unknown: [],
      slowestMs: 0,
      settled: [0, 0],
      done: false,
    }));
    let killedAt = 0;
    let ackedAtKill = 0;
    let killed: string | undefined;
    const children = [0, 1].map((id) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-net=127.0.0.1", WRITER, address, String(id), String(WRITES)],
        stdout: "piped",
        stderr: "inherit",
      }).spawn()
    );
    const following = children.map((child, id) =>
      follow(child, logs[id]!, () => {
        if (killed === undefined && logs[0]!.acked.size >= WRITES / 3) {
          killed = leader;
          killedAt = performance.now();
          ackedAtKill = logs[0]!.acked.size + logs[1]!.acked.size;
          cluster.kill(leader);
        }
      })
    );
    const statuses = await Promise.all(children.map((c) => c.status));
    await Promise.all(following);
    for (const s of statuses) assert.equal(s.code, 0, "writers exit cleanly");
    assert.ok(killed, "the leader was killed mid-run");
    assert.ok(logs.every((l) => l.done));
    const newLeader = await cluster.leader();
    console.log(
      `leader ${killed} killed after ${ackedAtKill} acknowledged writes; new leader ${newLeader}; ` +
        `slowest write (the stall): writer 0 ${logs[0]!.slowestMs} ms, writer 1 ${logs[1]!.slowestMs} ms; ` +
        `outcome unknown: ${logs[0]!.unknown.length + logs[1]!.unknown.length}; ` +
        `answers lost and settled: ${
          logs.map((l) => `${l.settled[0]} found applied, ${l.settled[1]} fenced`).join(" / ")
        }; ` +
        `${Math.round(performance.now() - killedAt)} ms from the kill to the end`,
    );

    // Every acknowledged write is there, written once (version 1, one history record), at its acknowledged revision.
    const check = await EtcdStore.open(address);
    try {
      const keys = new Map<string, number>();
      for (const [id, log] of logs.entries()) {
        for (let i = 0; i < WRITES; i++) {
          const key = `w${id}/${String(i).padStart(4, "0")}`;
          const e = await check.get("config", key);
          if (log.acked.has(i)) {
            assert.ok(e, `acknowledged ${key} is there`);
            assert.equal(e.modRevision, log.acked.get(i), `${key} at its acknowledged revision`);
          }
          if (e) {
            assert.equal(e.version, 1, `${key} applied once`);
            assert.equal((await check.history("config", key)).length, 1, `${key} has one history record`);
            keys.set(key, e.modRevision);
          } else {
            assert.ok(log.unknown.includes(i), `${key} missing only when its outcome was reported unknown`);
          }
        }
        const last = await check.get("config", `last/${id}`);
        const applied = [...keys.keys()].filter((k) => k.startsWith(`w${id}/`)).length;
        assert.equal(last?.version ?? 0, applied, `last/${id} written once per applied batch`);
      }

      // The watcher: every write key once, in revision order.
      const until = Date.now() + 30_000;
      const wanted = keys.size * 2; // each batch also writes last/<id>
      while (seen.length < wanted && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      ac.abort();
      await watching;
      const revisions = seen.map((e) => e.entry.modRevision);
      assert.deepEqual(revisions, [...revisions].sort((a, b) => a - b), "events in revision order");
      const writeEvents = seen.filter((e) => e.entry.key.startsWith("w"));
      assert.equal(new Set(writeEvents.map((e) => e.entry.key)).size, writeEvents.length, "no event repeated");
      assert.deepEqual(
        new Map(writeEvents.map((e) => [e.entry.key, e.entry.modRevision])),
        keys,
        "every write seen, none missed",
      );
      assert.equal(seen.length, wanted, "nothing else and nothing more");
    } finally {
      check.close();
    }
  },
);
