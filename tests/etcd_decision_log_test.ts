/**
 * The decision log on etcd: its queries as key ranges of the registry's meta
 * space, answering exactly what the SQLite log answers for the same decisions.
 */

import assert from "node:assert/strict";
import { type Decision, DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
import { addressOf, etcdEndpoints, etcdTest } from "./_etcd.ts";

const BASE = Date.parse("2026-11-28T09:00:00Z");

/** 30 decisions by 3 actors and 2 actions, a second apart, in a shuffled order. */
function decisions(): Decision[] {
  const out = Array.from(
    { length: 30 },
    (_, i) =>
      newDecision(["healer", "planner", "agent-7"][i % 3]!, i % 2 ? "heal" : "sync", `step ${i}`, {
        inputs: { i, big: 9_007_199_254_740_993n },
        output: i % 5 ? null : ["ok", i],
        confidence: (i % 10) / 10,
        timestamp: new Date(BASE + i * 1000),
      }),
  );
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

async function allPages(log: DecisionLog, query: Parameters<DecisionLog["query"]>[0]): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await log.query({ ...query, cursor });
    seen.push(...page.decisions.map((d) => d.rationale));
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return seen;
}

etcdTest(
  "DecisionLog on etcd answers recent, byActor, count and every query as the SQLite log does",
  "cluster",
  async (t) => {
    await using sqlite = await StateRegistry.inMemory();
    await using etcd = await StateRegistry.connect(addressOf(etcdEndpoints()!));
    const logs = { sqlite: await DecisionLog.open(sqlite), etcd: await DecisionLog.open(etcd) };
    const all = decisions();
    for (const d of all) {
      assert.equal(await logs.sqlite.log(d), d.id);
      assert.equal(await logs.etcd.log(d), d.id);
    }
    const both = async <T>(f: (log: DecisionLog) => Promise<T>) => {
      const [a, b] = [await f(logs.sqlite), await f(logs.etcd)];
      assert.deepEqual(b, a);
      return b;
    };
    await t.step("count", async () => assert.equal(await both((l) => l.count()), 30));
    await t.step("recent", async () => {
      const recent = await both((l) => l.recent(5));
      assert.deepEqual(recent.map((d) => d.rationale), ["step 29", "step 28", "step 27", "step 26", "step 25"]);
      assert.deepEqual(recent[0]!.inputs, { i: 29, big: 9_007_199_254_740_993n });
      assert.deepEqual(await both((l) => l.recent(0)), []);
    });
    await t.step("byActor", async () => assert.equal((await both((l) => l.byActor("planner"))).length, 10));
    const since = new Date(BASE + 7_000);
    const until = new Date(BASE + 23_000);
    for (
      const query of [
        {},
        { actor: "healer" },
        { action: "heal" },
        { actor: "agent-7", action: "sync" },
        { since },
        { until },
        { since, until, action: "sync" },
        { actor: "nobody" },
      ]
    ) {
      await t.step(`query ${JSON.stringify(query)} in pages of 4`, async () => {
        const pages = await both((l) => allPages(l, { ...query, limit: 4 }));
        assert.deepEqual(pages, await both((l) => allPages(l, { ...query, limit: 1000 })));
      });
    }
    await t.step("a decision is logged once", async () => {
      const again = all[0]!;
      await assert.rejects(logs.etcd.log(again), /is already logged \(the log is insert-only\)/);
      assert.equal(await logs.etcd.count(), 30);
    });
  },
);
