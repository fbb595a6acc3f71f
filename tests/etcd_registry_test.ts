/**
 * StateRegistry on etcd (fleet mode), what only etcd has: config values and
 * entries through two handles, etcd's transaction limits, and the SQLite-only
 * parts failing with a clear error. What every backend does is in the
 * registry conformance suite (tests/registry_conformance_test.ts).
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
import { storeOf } from "../src/registry/_store_of.ts";

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

etcdTest(
  "a batch of deletes is refused before anything is sent when its guards would take it over etcd's --max-txn-ops",
  "cluster",
  async () => {
    await using p = await pair();
    const seed = p.a.batch();
    for (let i = 0; i < 60; i++) seed.setConfig(`d${i}`, i);
    await seed.commit();
    const before = await storeOf(p.a)!.revision();
    // 60 writes are within the 63 a batch may hold, but each delete also guards the key it read, and etcd counts a
    // nested transaction's operations against what its parent leaves.
    const tooMany = p.a.batch();
    for (let i = 0; i < 60; i++) tooMany.deleteConfig(`d${i}`);
    const err = await tooMany.commit().catch((e) => e);
    assert.ok(err instanceof RegistryError, String(err));
    assert.match(err.message, /too large for etcd: 60 writes.*guards the key it read \(60\).*nothing was written/);
    assert.equal((await p.a.listConfig({ prefix: "d" })).length, 60);
    assert.equal(await storeOf(p.a)!.revision(), before);
    // What fits goes through in one revision.
    const fits = p.a.batch();
    for (let i = 0; i < 40; i++) fits.deleteConfig(`d${i}`);
    const { revision } = await fits.commit();
    assert.equal(revision, before + 1);
    assert.equal((await p.a.listConfig({ prefix: "d" })).length, 20);
  },
);

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
