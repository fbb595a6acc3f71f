/**
 * StateRegistry on etcd (fleet mode): the registry API over the etcd store,
 * on the 3-member cluster, two handles standing for two machines. What is
 * SQLite-only fails with a clear error.
 */

import assert from "node:assert/strict";
import {
  ConflictError,
  defineExtension,
  KernelError,
  openExtension,
  RegistryError,
  StateRegistry,
} from "@oxide/registry";
import { addressOf, etcdEndpoints, etcdTest } from "./_etcd.ts";

const ECHO = { id: "echo", name: "Echo", version: "0.1.0", kind: "native" as const, description: "Echoes." };

/** Two handles on one fresh namespace: two kernels on two machines. */
async function pair() {
  const address = addressOf(etcdEndpoints()!);
  const a = await StateRegistry.connect(address);
  const b = await StateRegistry.connect(address);
  return {
    address,
    a,
    b,
    async [Symbol.asyncDispose]() {
      await a.close();
      await b.close();
    },
  };
}

etcdTest(
  "StateRegistry.connect() opens an etcd address; modules written on one handle are read on another",
  "cluster",
  async () => {
    await using p = await pair();
    assert.equal(p.a.location, p.address.replace(/\/t-/, "/t-"));
    await p.a.upsertModule(ECHO, "loaded");
    await p.a.setModuleState("echo", "running");
    const m = await p.b.getModule("echo");
    assert.equal(m?.state, "running");
    assert.equal(m?.description, "Echoes.");
    assert.ok(m?.updatedAt instanceof Date);
    await p.b.upsertModule({ id: "mirror", name: "Mirror", version: "1.0.0", kind: "wasm" }, "stopped");
    assert.deepEqual((await p.a.listModules()).map((x) => [x.id, x.state]), [["echo", "running"], [
      "mirror",
      "stopped",
    ]]);
    assert.equal(await p.a.deleteModule("mirror"), true);
    assert.equal(await p.b.getModule("mirror"), undefined);
    const err = await p.a.setModuleState("ghost", "running").catch((e) => e);
    assert.ok(err instanceof KernelError);
    assert.equal(err.kind, "unknown_module");
  },
);

etcdTest(
  "config on etcd: JSON values exact, entries with etcd's versions, delete, missing key errors",
  "cluster",
  async () => {
    await using p = await pair();
    await p.a.setConfig("kernel.greeting", "Hello, agent.");
    await p.a.setConfig("limits", { threads: 8, big: 9_007_199_254_740_993n, list: [1, "two", null] });
    assert.equal(await p.b.getConfig("kernel.greeting"), "Hello, agent.");
    assert.deepEqual(await p.b.getConfig("limits"), {
      threads: 8,
      big: 9_007_199_254_740_993n,
      list: [1, "two", null],
    });
    await p.b.setConfig("kernel.greeting", "Hi.");
    const e = await p.a.getConfigEntry("kernel.greeting");
    assert.equal(e?.value, "Hi.");
    assert.equal(e?.version, 2);
    assert.ok(e!.modRevision > e!.createRevision);
    assert.equal(await p.a.deleteConfig("kernel.greeting"), true);
    assert.equal(await p.a.deleteConfig("kernel.greeting"), false);
    assert.equal(await p.b.tryGetConfig("kernel.greeting"), undefined);
    const err = await p.b.getConfig("kernel.greeting").catch((x) => x);
    assert.ok(err instanceof KernelError);
    assert.equal(err.kind, "config_not_found");
  },
);

etcdTest(
  "compare-and-set on etcd: ifVersion applies once, the other handle gets a ConflictError",
  "cluster",
  async () => {
    await using p = await pair();
    await p.a.setConfig("leader", "a", { ifVersion: 0 });
    const err = await p.b.setConfig("leader", "b", { ifVersion: 0 }).catch((x) => x);
    assert.ok(err instanceof ConflictError, String(err));
    assert.equal(err.actual, 1);
    assert.equal(await p.b.getConfig("leader"), "a");
    await p.b.setConfig("leader", "b", { ifVersion: 1 });
    assert.equal(await p.a.getConfig("leader"), "b");
  },
);

etcdTest("update() on etcd: concurrent read-modify-write from two handles loses no increment", "cluster", async () => {
  await using p = await pair();
  await p.a.setConfig("counter", 0);
  const bump = (reg: StateRegistry) => reg.update<number>("counter", (n) => (n ?? 0) + 1, { tries: 100 });
  await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 ? p.a : p.b)));
  assert.equal(await p.a.getConfig("counter"), 20);
});

etcdTest(
  "batches on etcd: all or nothing in one revision; over etcd's limit refused before anything is sent",
  "cluster",
  async () => {
    await using p = await pair();
    const batch = p.a.batch();
    for (let i = 0; i < 10; i++) batch.setConfig(`b${i}`, i);
    batch.upsertModule(ECHO, "loaded");
    const { revision } = await batch.commit();
    for (let i = 0; i < 10; i++) assert.equal((await p.b.getConfigEntry(`b${i}`))?.modRevision, revision);
    const stale = p.b.batch().setConfig("b0", "x", { ifVersion: 7 }).setConfig("fresh", 1);
    assert.ok((await stale.commit().catch((e) => e)) instanceof ConflictError);
    assert.equal(await p.a.tryGetConfig("fresh"), undefined);
    const big = p.a.batch();
    for (let i = 0; i < 64; i++) big.setConfig(`big${i}`, i);
    const err = await big.commit().catch((e) => e);
    assert.ok(err instanceof RegistryError, String(err));
    assert.match(err.message, /too large for etcd.*at most 63 writes.*nothing was written/);
    assert.equal((await p.a.listConfig({ prefix: "big" })).length, 0);
  },
);

etcdTest("listing on etcd: prefix, pages with a cursor at one revision, reverse", "cluster", async () => {
  await using p = await pair();
  for (const k of ["app.a", "app.b", "app.c", "other"]) await p.a.setConfig(k, k);
  const first = await p.b.listConfig({ prefix: "app.", limit: 2 });
  assert.deepEqual(first.map((e) => e.key), ["app.a", "app.b"]);
  await p.a.setConfig("app.d", "late");
  const second = await p.b.listConfig({ prefix: "app.", limit: 2, cursor: first.cursor });
  assert.deepEqual(second.map((e) => e.key), ["app.c"], "the next page reads at the first page's revision");
  assert.deepEqual((await p.b.listConfig({ prefix: "app.", reverse: true })).map((e) => e.key), [
    "app.d",
    "app.c",
    "app.b",
    "app.a",
  ]);
});

etcdTest(
  "SQLite-only parts on etcd fail clearly: reg.db, the extension point, backup, verify, export",
  "cluster",
  async () => {
    await using p = await pair();
    assert.throws(() => p.a.db, /reg\.db is SQLite-only: this registry is stored on etcd/);
    const notes = defineExtension({
      name: "notes",
      migrations: [{ version: 1, name: "t", up: "CREATE TABLE notes (x)" }],
    });
    await assert.rejects(openExtension(p.a, notes), /reg\.db is SQLite-only: this registry is stored on etcd/);
    const sqliteOnly = /reg\.db is SQLite-only: this registry is stored on etcd/;
    assert.throws(() => p.a.engine, sqliteOnly);
    await assert.rejects(p.a.backup("./never-written.db"), sqliteOnly);
    await assert.rejects(p.a.verify(), sqliteOnly);
    await assert.rejects(p.a.exportData(), sqliteOnly);
    await assert.rejects(p.a.rotateDataKey(), /needs a registry opened with openEncrypted/);
  },
);

Deno.test("StateRegistry.connect() on an etcd address where nothing listens fails with a RegistryError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const err = await StateRegistry.connect(`etcd://127.0.0.1:${port}/x`, { etcd: { callTimeoutMs: 300 } }).catch((e) =>
    e
  );
  assert.ok(err instanceof RegistryError, String(err));
  assert.match(err.message, /cannot open the registry at etcd:\/\/127\.0\.0\.1:\d+\/x/);
});
