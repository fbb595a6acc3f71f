/**
 * Fleet-mode benchmark: the etcd store against the raw client (etcd's JSON
 * gateway over fetch, the same transport) doing the same operations, in one
 * run, on a 1-member and a 3-member cluster of its own (127.0.0.1, temporary
 * folders). Prints a markdown table of medians and the ratio raw/ours
 * (1.0 = as fast as raw; the goal is >= 0.8).
 *
 * Run: deno task bench:etcd [iterations]
 *
 * @module
 */

import { EtcdStore } from "../src/store/etcd/store.ts";
import { StateRegistry } from "../mod.ts";
import { startCluster } from "../scripts/etcd_cluster.ts";
import type { ChangeEvent } from "../src/store/store.ts";

const ITERATIONS = Number(Deno.args[0] ?? 200);
const enc = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
const NOW = "2026-12-01T10:00:00.000000000+00:00";

/** The raw client: one fetch per operation, nothing else. */
class Raw {
  #i = 0;
  constructor(readonly endpoints: string[]) {}
  async post(path: string, body: unknown): Promise<Record<string, unknown>> {
    const r = await fetch(this.endpoints[this.#i++ % 1]! + path, { method: "POST", body: JSON.stringify(body) });
    const j = await r.json();
    if (r.status !== 200) throw new Error(JSON.stringify(j));
    return j;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function time(n: number, f: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    out.push(performance.now() - t);
  }
  return out;
}

async function rawWatchLatency(raw: Raw, key: string, n: number): Promise<number[]> {
  const ac = new AbortController();
  const r = await fetch(raw.endpoints[0]! + "/v3/watch", {
    method: "POST",
    body: JSON.stringify({ create_request: { key: enc(key) } }),
    signal: ac.signal,
  });
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const nextEvent = async () => {
    while (true) {
      let nl: number;
      while ((nl = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.includes('"events"')) return;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("watch ended");
      buffer += value;
    }
  };
  // Wait for etcd's "created" message, so no put is made before the watch exists.
  while (!buffer.includes('"created":true')) {
    const { value, done } = await reader.read();
    if (done) throw new Error("watch ended");
    buffer += value;
  }
  buffer = buffer.slice(buffer.indexOf("\n") + 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const seen = nextEvent();
    await raw.post("/v3/kv/put", { key: enc(key), value: enc(String(i)) });
    await seen;
    out.push(performance.now() - t);
  }
  ac.abort();
  await reader.cancel().catch(() => {});
  return out;
}

/** Watch latency through the store; the writes are the same raw puts as on the raw side, so only the watch differs. */
async function storeWatchLatency(store: EtcdStore, raw: Raw, ns: string, n: number): Promise<number[]> {
  const ac = new AbortController();
  const iter = store.watch({
    spaces: ["config"],
    keys: ["watched"],
    fromRevision: await store.revision() + 1,
    signal: ac.signal,
  });
  await new Promise((r) => setTimeout(r, 100));
  const key = enc(`/oxide/registry/${ns}/k/c/watched`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const seen: Promise<IteratorResult<ChangeEvent>> = iter.next();
    await raw.post("/v3/kv/put", { key, value: enc(JSON.stringify({ value: String(i), updated_at: NOW })) });
    await seen;
    out.push(performance.now() - t);
  }
  ac.abort();
  await iter.return?.();
  return out;
}

async function run(members: number): Promise<string[]> {
  // Under ./data, so the task's --allow-read/--allow-write name one folder (a temporary one would need all of /tmp).
  const dir = `./data/bench-etcd/${members}-members`;
  await Deno.remove(dir, { recursive: true }).catch(() => {}); // a run that was killed may have left its members' data
  const cluster = await startCluster({ members, dir });
  const rows: string[] = [];
  try {
    const raw = new Raw(cluster.endpoints);
    const ns = `bench-${crypto.randomUUID().slice(0, 8)}`;
    const store = await EtcdStore.open(`etcd:///${ns}`, { endpoints: cluster.endpoints, autoCompact: false });
    const rawKey = (k: string) => enc(`/raw/${ns}/${k}`);
    await store.txn({
      compares: [],
      success: [{ op: "put", space: "config", key: "g", value: '"v"' }],
      updatedAt: NOW,
    });
    await raw.post("/v3/kv/put", { key: rawKey("g"), value: enc('"v"') });
    const reg = await StateRegistry.connect(`etcd:///${ns}-reg`, {
      etcd: { endpoints: cluster.endpoints, autoCompact: false },
    });
    await reg.setConfig("g", "v");
    type Op = (i: number) => Promise<unknown>;
    const regOps: Record<string, Op> = {
      "get": () => reg.getConfig("g"),
      "set": (i) => reg.setConfig("s", i),
      "compare-and-set": async (i) => {
        const entry = await reg.getConfigEntry("c");
        await reg.setConfig("c", i, { ifVersion: entry?.version ?? 0 });
      },
      "10-key batch": (i) => {
        const batch = reg.batch();
        for (let k = 0; k < 10; k++) batch.setConfig(`b${k}`, i);
        return batch.commit();
      },
    };
    const ops: [string, Op, Op][] = [
      ["get", () => raw.post("/v3/kv/range", { key: rawKey("g") }), () => store.get("config", "g")],
      [
        "set",
        (i) => raw.post("/v3/kv/put", { key: rawKey("s"), value: enc(String(i)) }),
        (i) =>
          store.txn({
            compares: [],
            success: [{ op: "put", space: "config", key: "s", value: String(i) }],
            updatedAt: NOW,
          }),
      ],
      [
        "set, raw doing the store's etcd txn (key + history record + receipt)",
        (i) =>
          raw.post("/v3/kv/txn", {
            compare: [{ target: "VERSION", key: rawKey(`x/${i}-${Math.random()}`), result: "EQUAL", version: "0" }],
            success: [
              { request_put: { key: rawKey("s2"), value: enc(JSON.stringify({ value: String(i), updated_at: NOW })) } },
              {
                request_put: {
                  key: rawKey(`h/s2/${i}-${Math.random()}`),
                  value: enc(JSON.stringify({ t: "p", x: JSON.stringify({ value: String(i), updated_at: NOW }) })),
                },
              },
              { request_put: { key: rawKey(`x/${i}-${Math.random()}`), value: enc("s") } },
            ],
          }),
        (i) =>
          store.txn({
            compares: [],
            success: [{ op: "put", space: "config", key: "s2", value: String(i) }],
            updatedAt: NOW,
          }),
      ],
      [
        "compare-and-set",
        async (i) => {
          const cur = await raw.post("/v3/kv/range", { key: rawKey("c") }) as { kvs?: { version: string }[] };
          await raw.post("/v3/kv/txn", {
            compare: [{ target: "VERSION", key: rawKey("c"), result: "EQUAL", version: cur.kvs?.[0]?.version ?? "0" }],
            success: [{ request_put: { key: rawKey("c"), value: enc(String(i)) } }],
          });
        },
        async (i) => {
          const cur = await store.get("config", "c");
          await store.txn({
            compares: [{ space: "config", key: "c", target: "version", equals: cur?.version ?? 0 }],
            success: [{ op: "put", space: "config", key: "c", value: String(i) }],
            updatedAt: NOW,
          });
        },
      ],
      [
        "10-key batch",
        (i) =>
          raw.post("/v3/kv/txn", {
            success: Array.from(
              { length: 10 },
              (_, k) => ({ request_put: { key: rawKey(`b${k}`), value: enc(String(i)) } }),
            ),
          }),
        (i) =>
          store.txn({
            compares: [],
            success: Array.from(
              { length: 10 },
              (_, k) => ({ op: "put" as const, space: "config" as const, key: `b${k}`, value: String(i) }),
            ),
            updatedAt: NOW,
          }),
      ],
    ];
    for (const [name, rawOp, ours] of ops) {
      // Alternate blocks so drift on a shared machine hits every side alike.
      const r: number[] = [];
      const o: number[] = [];
      const g: number[] = [];
      const registryOp = regOps[name];
      for (let block = 0; block < 4; block++) {
        r.push(...await time(ITERATIONS / 4, rawOp));
        o.push(...await time(ITERATIONS / 4, ours));
        if (registryOp) g.push(...await time(ITERATIONS / 4, registryOp));
      }
      rows.push(row(members, name, median(r), median(o), registryOp ? median(g) : undefined));
      console.error(rows.at(-1));
    }
    const wr = await rawWatchLatency(raw, `/raw/${ns}/w`, ITERATIONS / 2);
    const wo = await storeWatchLatency(store, raw, ns, ITERATIONS / 2);
    rows.push(row(members, "watch latency (put to event)", median(wr), median(wo), undefined));
    store.close();
    await reg.close();
  } finally {
    await cluster.stop();
  }
  return rows;
}

function row(members: number, op: string, raw: number, ours: number, registry: number | undefined): string {
  const reg = registry === undefined ? "| — | —" : `| ${registry.toFixed(2)} ms | ${(raw / registry).toFixed(2)}x`;
  return `| ${members} | ${op} | ${raw.toFixed(2)} ms | ${ours.toFixed(2)} ms | ${(raw / ours).toFixed(2)}x ${reg} |`;
}

const lines = [
  "| members | operation | raw gateway | etcd store | raw/store | registry on etcd | raw/registry |",
  "|---|---|---|---|---|---|---|",
];
for (const members of [1, 3]) lines.push(...await run(members));
console.log(lines.join("\n"));
