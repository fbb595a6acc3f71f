/**
 * The etcd store: the conformance suite on the 3-member cluster, plus what
 * only etcd has (addresses, TLS with auth, failover, settling writes whose
 * outcome is unknown).
 */

import { EtcdStore } from "../src/store/etcd/store.ts";
import { storeConformance } from "./_store_conformance.ts";
import { addressOf, etcdTest, openEtcdStore, ownCluster } from "./_etcd.ts";

storeConformance({
  name: "etcd",
  open: () => openEtcdStore(),
  openIsolated: async () => {
    const cluster = await ownCluster({ members: 1 });
    const store = await EtcdStore.open(addressOf(cluster.endpoints));
    return {
      store,
      async [Symbol.asyncDispose]() {
        store.close();
        await cluster.stop();
      },
    };
  },
  test: (name, fn) => etcdTest(name, name.includes("compact()") ? "binary" : "cluster", fn),
});

import assert from "node:assert/strict";
import { KernelError } from "../src/errors.ts";
import { parseEtcdAddress } from "../src/store/etcd/address.ts";
import { etcdEndpoints, etcdTlsEnv, freshNamespace } from "./_etcd.ts";
import { FaultProxy } from "./_fault_proxy.ts";
import type { Operation } from "../src/store/store.ts";
import { within } from "./_watchdog.ts";

const NOW = "2026-12-01T10:00:00.000000000+00:00";
const put = (key: string, value: string): Operation => ({ op: "put", space: "config", key, value });

Deno.test("parseEtcdAddress() reads hosts and namespace, and options override them", () => {
  const c = parseEtcdAddress("etcd://127.0.0.1:2379,[::1]:2380/fleet-1");
  assert.deepEqual(c.endpoints, ["http://127.0.0.1:2379", "http://[::1]:2380"]);
  assert.equal(c.namespace, "fleet-1");
  assert.equal(parseEtcdAddress("etcd://h:1").namespace, "default");
  const o = parseEtcdAddress("etcd:///x", { endpoints: ["https://a:1"], namespace: "y", callTimeoutMs: 5 });
  assert.deepEqual(o.endpoints, ["https://a:1"]);
  assert.equal(o.namespace, "y");
  assert.equal(o.callTimeoutMs, 5);
  assert.deepEqual(parseEtcdAddress("etcd://h:1/n", { tls: {} }).endpoints, ["https://h:1"]);
  assert.deepEqual(parseEtcdAddress("etcd://h:1").autoCompact, { retainRevisions: 10_000, every: 1_000 });
  assert.equal(parseEtcdAddress("etcd://h:1", { autoCompact: false }).autoCompact, false);
});

Deno.test("parseEtcdAddress() refuses malformed addresses and options with a message naming them", async (t) => {
  for (
    const [address, options, pattern] of [
      ["./registry.db", {}, /Not an etcd address/],
      ["etcd://", {}, /No etcd endpoints/],
      ["etcd://host/ns", {}, /Malformed etcd endpoint "host"/],
      ["etcd://h:1/bad ns", {}, /Malformed etcd namespace "bad ns"/],
      ["etcd://h:1/a/b", {}, /Malformed etcd namespace "a\/b"/],
      ["etcd://h:1", { user: "root" }, /user and password go together/],
      ["etcd://h:1", { callTimeoutMs: -1 }, /callTimeoutMs must be a positive number/],
      ["etcd://h:1", { endpoints: ["ftp://x:1"] }, /Malformed etcd endpoint "ftp:\/\/x:1"/],
      ["etcd://h:1", { tls: { cert: "x" } }, /tls.cert and tls.key go together/],
    ] as const
  ) {
    await t.step(address + " " + JSON.stringify(options), () => {
      assert.throws(() => parseEtcdAddress(address, options), pattern);
    });
  }
});

Deno.test("EtcdStore.open() on an address where nothing listens fails with a RegistryError in the deadline", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const err = await EtcdStore.open(`etcd://127.0.0.1:${port}/x`, { callTimeoutMs: 500 }).catch((e) => e);
  assert.ok(err instanceof KernelError, String(err));
  assert.match(err.message, /cannot open the registry at etcd:\/\/127\.0\.0\.1:\d+\/x/);
});

etcdTest("an etcd store fails over past a member that refuses connections", "cluster", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  await using store = await EtcdStore.open("etcd:///" + freshNamespace(), { endpoints: [dead, ...etcdEndpoints()!] });
  const r = await store.txn({ compares: [], success: [put("a", "1")], updatedAt: NOW });
  assert.equal(r.succeeded, true);
  assert.equal((await store.get("config", "a"))?.version, 1);
});

etcdTest("TLS with etcd auth: a CA and a password open it; the token is renewed after it expires", "tls", async () => {
  const env = etcdTlsEnv("auth")!;
  const address = addressOf([env.endpoint]);
  const tls = { caCert: await Deno.readTextFile(env.ca) };
  await using store = await EtcdStore.open(address, { tls, user: env.user, password: env.password });
  await store.txn({ compares: [], success: [put("a", "1")], updatedAt: NOW });
  // .ci/run starts this member with --auth-token-ttl 2: wait past it, and the next calls authenticate again.
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal((await store.get("config", "a"))?.value, "1");
  const w = await store.txn({ compares: [], success: [put("a", "2")], updatedAt: NOW });
  assert.equal(w.succeeded, true);
});

etcdTest("TLS with etcd auth: a wrong password, no password, or no CA fail with clear errors", "tls", async (t) => {
  const env = etcdTlsEnv("auth")!;
  const address = addressOf([env.endpoint]);
  const tls = { caCert: await Deno.readTextFile(env.ca) };
  for (
    const [name, options, pattern] of [
      [
        "wrong password",
        { tls, user: env.user, password: "wrong" },
        /authentication failed.*invalid user ID or password/,
      ],
      ["no password", { tls }, /user name is empty/],
      ["no CA", { tls: {}, user: env.user, password: env.password, callTimeoutMs: 1500 }, /cannot open the registry/],
    ] as const
  ) {
    await t.step(name, async () => {
      const err = await EtcdStore.open(address, options).catch((e) => e);
      assert.ok(err instanceof KernelError, String(err));
      assert.match(err.message, pattern);
    });
  }
});

etcdTest("mutual TLS: a client certificate opens it; without one the handshake fails", "mtls", async () => {
  const env = etcdTlsEnv("mtls")!;
  const address = addressOf([env.endpoint]);
  const caCert = await Deno.readTextFile(env.ca);
  const tls = { caCert, cert: await Deno.readTextFile(env.cert), key: await Deno.readTextFile(env.key) };
  {
    await using store = await EtcdStore.open(address, { tls });
    assert.equal((await store.txn({ compares: [], success: [put("m", "1")], updatedAt: NOW })).succeeded, true);
  }
  const err = await EtcdStore.open(address, { tls: { caCert }, callTimeoutMs: 1500 }).catch((e) => e);
  assert.ok(err instanceof KernelError, String(err));
  assert.match(err.message, /cannot open the registry/);
});

/** A store whose first endpoint is a fault proxy in front of the cluster's first member. */
async function behindProxy(alsoDirect: boolean, options: Record<string, unknown> = {}) {
  const endpoints = etcdEndpoints()!;
  const proxy = new FaultProxy(endpoints[0]!);
  const ns = freshNamespace();
  const store = await EtcdStore.open(`etcd:///${ns}`, {
    endpoints: alsoDirect ? [proxy.url, ...endpoints] : [proxy.url],
    ...options,
  });
  const direct = await EtcdStore.open(`etcd:///${ns}`, { endpoints });
  return {
    proxy,
    store,
    direct,
    async [Symbol.asyncDispose]() {
      store.close();
      direct.close();
      await proxy.close();
    },
  };
}

etcdTest(
  "a write whose answer is lost is settled from its receipt: applied once, reported as applied",
  "cluster",
  async () => {
    await using h = await behindProxy(true);
    h.proxy.mode = "drop-answers";
    const batch = Array.from({ length: 10 }, (_, i) => put(`b${i}`, String(i)));
    const r = await h.store.txn({ compares: [], success: batch, updatedAt: NOW });
    assert.ok(h.proxy.cuts >= 1, "the proxy cut the answer");
    assert.equal(r.succeeded, true);
    for (let i = 0; i < 10; i++) {
      const e = await h.direct.get("config", `b${i}`);
      assert.equal(e?.version, 1, `b${i} applied once`);
      assert.equal(e?.modRevision, r.revision);
    }
  },
);

etcdTest("a compare-and-set whose answer is lost is not reported as a false conflict", "cluster", async () => {
  await using h = await behindProxy(true);
  await h.direct.txn({ compares: [], success: [put("cas", "1")], updatedAt: NOW });
  h.proxy.mode = "drop-answers";
  const r = await h.store.txn({
    compares: [{ space: "config", key: "cas", target: "version", equals: 1 }],
    success: [put("cas", "2")],
    updatedAt: NOW,
  });
  assert.ok(h.proxy.cuts >= 1);
  assert.equal(r.succeeded, true);
  const e = await h.direct.get("config", "cas");
  assert.equal(e?.value, "2");
  assert.equal(e?.version, 2);
});

etcdTest(
  "a request etcd receives twice (resent on a fresh connection) applies once; the caller gets the first copy's outcome",
  "cluster",
  async (t) => {
    await using h = await behindProxy(false);
    await h.direct.txn({ compares: [], success: [put("cas", "1"), put("gone", "1")], updatedAt: NOW });
    h.proxy.mode = "deliver-twice";
    await t.step("a blind batch", async () => {
      const r = await h.store.txn({ compares: [], success: [put("x", "1"), put("y", "1")], updatedAt: NOW });
      assert.equal(r.succeeded, true);
      assert.equal((await h.direct.get("config", "x"))?.version, 1);
      assert.equal((await h.direct.get("config", "x"))?.modRevision, r.revision);
    });
    await t.step("a compare-and-set (no false conflict)", async () => {
      const r = await h.store.txn({
        compares: [{ space: "config", key: "cas", target: "version", equals: 1 }],
        success: [put("cas", "2")],
        updatedAt: NOW,
      });
      assert.equal(r.succeeded, true);
      assert.equal((await h.direct.get("config", "cas"))?.version, 2);
    });
    await t.step("a delete (a transaction that reads first)", async () => {
      const r = await h.store.txn({
        compares: [],
        success: [{ op: "delete", space: "config", key: "gone" }, put("after", "1")],
        updatedAt: NOW,
      });
      assert.deepEqual([r.succeeded, r.changed], [true, [true, true]]);
      assert.equal(await h.direct.get("config", "gone"), undefined);
      assert.equal((await h.direct.get("config", "after"))?.version, 1, "applied once, not planned again");
    });
    assert.ok(h.proxy.cuts >= 3, "every request went twice");
  },
);

etcdTest("a write whose request is lost is fenced, then run again: applied exactly once", "cluster", async () => {
  await using h = await behindProxy(true);
  h.proxy.mode = "drop-requests";
  const r = await h.store.txn({
    compares: [{ space: "config", key: "once", target: "version", equals: 0 }],
    success: [put("once", "1")],
    updatedAt: NOW,
  });
  assert.ok(h.proxy.cuts >= 1);
  assert.equal(r.succeeded, true);
  assert.equal(h.store.settled.applied, 0);
  assert.ok(h.store.settled.fenced >= 1, "fenced, then run again");
  assert.equal((await h.direct.get("config", "once"))?.version, 1);
  assert.equal((await h.direct.history("config", "once")).length, 1);
});

etcdTest("when no member answers, a write's outcome is reported as unknown, never guessed", "cluster", async () => {
  await using h = await behindProxy(false, { callTimeoutMs: 1500, attemptTimeoutMs: 300 });
  h.proxy.mode = "drop-answers";
  const err = await h.store.txn({ compares: [], success: [put("u", "1")], updatedAt: NOW }).catch((e) => e);
  assert.ok(err instanceof KernelError, String(err));
  assert.match(err.message, /write outcome unknown/);
  // It did apply (the proxy forwarded the request): once.
  assert.equal((await h.direct.get("config", "u"))?.version, 1);
});

etcdTest("a watch resumes after its connection is cut: every change once, in order", "cluster", async () => {
  await using h = await behindProxy(true);
  const from = await h.direct.revision() + 1;
  const watch = h.store.watch({ spaces: ["config"], fromRevision: from });
  const seen: string[] = [];
  async function writeAndSee(first: number, end: number): Promise<void> {
    for (let i = first; i < end; i++) {
      await h.direct.txn({ compares: [], success: [put("w", String(i))], updatedAt: NOW });
    }
    while (seen.length < end) {
      const next = await within(watch.next(), `event ${seen.length + 1} of the resumed watch`);
      assert.ok(!next.done, "the watch ended early");
      seen.push(next.value.entry.value as string);
    }
  }
  // Three changes through the proxy, then every later answer on that connection is dropped: the stream is cut at
  // the next change, whichever way etcd batches the events, and the watch must resume on another member.
  await writeAndSee(0, 3);
  h.proxy.mode = "drop-answers";
  await writeAndSee(3, 20);
  await watch.return?.();
  assert.ok(h.proxy.cuts >= 1, "the watch stream was cut");
  assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => String(i)));
});

Deno.test({
  name: "EtcdStore.open() without --allow-net fails at once, naming the host:port to allow",
  permissions: { net: false },
  async fn() {
    const err = await EtcdStore.open("etcd://127.0.0.1:2379,127.0.0.1:22379/x", { callTimeoutMs: 60_000 }).catch((
      e,
    ) => e);
    assert.ok(err instanceof KernelError, String(err));
    assert.match(
      err.message,
      /etcd at 127\.0\.0\.1:2379 needs --allow-net=127\.0\.0\.1:2379 \(one host:port per member\)/,
    );
  },
});

etcdTest(
  "automatic compaction: every `every` writes, etcd and the history keep `retainRevisions`",
  "binary",
  async () => {
    await using cluster = await ownCluster({ members: 1 });
    await using store = await EtcdStore.open(addressOf(cluster.endpoints), {
      autoCompact: { retainRevisions: 5, every: 10 },
    });
    assert.equal(await store.compactedRevision(), 0);
    let last = 0;
    for (let i = 0; i < 30; i++) {
      last = (await store.txn({ compares: [], success: [put("k", String(i))], updatedAt: NOW })).revision;
    }
    const compacted = await store.compactedRevision();
    assert.ok(compacted >= last - 5 - 10 && compacted <= last - 5, `compacted at ${compacted}, last write ${last}`);
    const history = await store.history("config", "k", 100);
    assert.equal(history[0]!.value, "29");
    assert.ok(history.length < 30, `history pruned to ${history.length}`);
    assert.ok(history.every((e) => e.modRevision >= compacted), "no history below the compacted revision");
    // Off: nothing is compacted.
    await using manual = await EtcdStore.open(addressOf(cluster.endpoints), { autoCompact: false });
    for (let i = 0; i < 30; i++) await manual.txn({ compares: [], success: [put("m", String(i))], updatedAt: NOW });
    assert.equal(await manual.compactedRevision(), compacted);
    assert.equal((await manual.history("config", "m", 100)).length, 30);
  },
);
