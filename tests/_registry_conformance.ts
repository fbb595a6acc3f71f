/**
 * The registry-level conformance suite: the `StateRegistry` features every
 * backend must have, run unchanged on the SQLite backend (ffi and node
 * engines, a file shared by two handles) and on etcd (a namespace shared by
 * two handles). Revisions are compared relative to each other: an etcd
 * cluster's revision counter is shared by every namespace on it.
 */

import assert from "node:assert/strict";
import {
  CompactedError,
  type ConfigChange,
  ConflictError,
  KernelError,
  MAX_CONFIG_VALUE_BYTES,
  OtherError,
  type StateRegistry,
  type WatchEvent,
} from "@oxide/registry";
import { storeOf } from "../src/registry/_store_of.ts";

/** Two handles on one fresh registry (two processes, or two machines). */
export interface RegistryPair extends AsyncDisposable {
  readonly a: StateRegistry;
  readonly b: StateRegistry;
}

/** How the suite gets registries. */
export interface RegistryFactory {
  /** A label for test names (`"ffi"`, `"node"`, `"etcd"`). */
  readonly name: string;
  /** Two handles on a fresh, empty registry. */
  pair(): Promise<RegistryPair>;
  /** One handle on a registry no other test shares revisions with (compaction is cluster-wide on etcd). */
  isolated(): Promise<{ reg: StateRegistry } & AsyncDisposable>;
  /** Registers a test (a backend may skip or fail tests it cannot run here). */
  test(name: string, needsIsolated: boolean, fn: () => Promise<void>): void;
}

const ECHO = { id: "echo", name: "Echo", version: "0.1.0", kind: "native" as const, description: "Echoes." };
const MIRROR = { id: "mirror", name: "Mirror", version: "1.0.0", kind: "wasm" as const };

/** The next `n` events of a watch (it stays open). A watchdog fails the test instead of letting a lost event hang it. */
async function next(watch: AsyncIterator<WatchEvent>, n: number): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  while (out.length < n) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no event ${out.length + 1} of ${n} within 30 s`)), 30_000);
    });
    try {
      const r = await Promise.race([watch.next(), watchdog]);
      assert.ok(!r.done, `the watch ended after ${out.length} of ${n} events`);
      out.push(r.value);
    } finally {
      clearTimeout(timer);
    }
  }
  return out;
}

function describeEvent(e: WatchEvent): string {
  return e.space === "config"
    ? `config ${e.type} ${e.key}=${JSON.stringify(e.value)} v${e.version}`
    : `module ${e.type} ${e.id}=${e.module?.state ?? "-"} v${e.version}`;
}

/** Registers every registry conformance test for one backend. */
export function registryConformance(f: RegistryFactory): void {
  const test = (name: string, fn: (p: RegistryPair) => Promise<void>) =>
    f.test(`registry conformance (${f.name}): ${name}`, false, async () => {
      await using p = await f.pair();
      await fn(p);
    });

  test("modules: upsert, setModuleState, list, deleteModule; another handle sees each", async ({ a, b }) => {
    await a.upsertModule(ECHO, "loaded");
    await a.setModuleState("echo", "running");
    const m = await b.getModule("echo");
    assert.equal(m?.state, "running");
    assert.equal(m?.description, "Echoes.");
    assert.equal(m?.recordVersion, 2);
    await b.upsertModule(MIRROR, "stopped");
    assert.deepEqual((await a.listModules()).map((x) => [x.id, x.state]), [["echo", "running"], ["mirror", "stopped"]]);
    assert.equal(await a.deleteModule("mirror"), true);
    assert.equal(await b.deleteModule("mirror"), false, "a second delete finds nothing");
    assert.equal(await b.getModule("mirror"), undefined);
    const err = await b.setModuleState("mirror", "running").catch((e) => e);
    assert.ok(err instanceof KernelError, String(err));
    assert.equal(err.kind, "unknown_module");
    assert.equal(await b.getModule("mirror"), undefined, "setModuleState of a deleted module creates nothing");
  });

  test("compare-and-set on every write: a matching ifVersion applies, a stale one is a ConflictError and writes nothing", async ({ a, b }) => {
    const conflict = async (write: Promise<unknown>, actual: number) => {
      const err = await write.catch((e) => e);
      assert.ok(err instanceof ConflictError, String(err));
      assert.equal(err.actual, actual);
    };
    // setConfig
    await a.setConfig("leader", "a", { ifVersion: 0 });
    await conflict(b.setConfig("leader", "b", { ifVersion: 0 }), 1);
    await b.setConfig("leader", "b", { ifVersion: 1 });
    assert.equal(await a.getConfig("leader"), "b");
    // deleteConfig
    await conflict(a.deleteConfig("leader", { ifVersion: 1 }), 2);
    assert.equal(await a.getConfig("leader"), "b");
    assert.equal(await a.deleteConfig("leader", { ifVersion: 2 }), true);
    // upsertModule
    await a.upsertModule(ECHO, "loaded", { ifVersion: 0 });
    await conflict(b.upsertModule(ECHO, "failed", { ifVersion: 0 }), 1);
    await b.upsertModule(ECHO, "starting", { ifVersion: 1 });
    // setModuleState
    await conflict(a.setModuleState("echo", "running", { ifVersion: 1 }), 2);
    await a.setModuleState("echo", "running", { ifVersion: 2 });
    // deleteModule
    await conflict(b.deleteModule("echo", { ifVersion: 2 }), 3);
    assert.equal((await b.getModule("echo"))?.state, "running");
    assert.equal(await b.deleteModule("echo", { ifVersion: 3 }), true);
    assert.equal(await a.getModule("echo"), undefined);
  });

  test("update(): concurrent read-modify-write from two handles loses no increment", async ({ a, b }) => {
    await a.setConfig("counter", 0);
    const bump = (reg: StateRegistry) => reg.update<number>("counter", (n) => (n ?? 0) + 1, { tries: 200 });
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => bump(i % 2 ? a : b)));
    assert.equal(await a.getConfig("counter"), 16);
    assert.deepEqual(results.map((e) => e?.value).sort((x, y) => x! - y!), Array.from({ length: 16 }, (_, i) => i + 1));
    const entry = await b.getConfigEntry("counter");
    assert.equal(entry?.version, 17);
    // fn returning undefined writes nothing.
    assert.equal((await a.update("counter", () => undefined))?.version, 17);
  });

  test("batches: all or nothing in one revision; a stale check writes nothing", async ({ a, b }) => {
    const batch = a.batch();
    for (let i = 0; i < 10; i++) batch.setConfig(`b${i}`, i);
    batch.upsertModule(ECHO, "loaded");
    const { revision } = await batch.commit();
    for (let i = 0; i < 10; i++) assert.equal((await b.getConfigEntry(`b${i}`))?.modRevision, revision);
    assert.equal((await b.getModule("echo"))?.modRevision, revision);
    const before = await storeOf(a)!.revision();
    const stale = b.batch().setConfig("b0", "x", { ifVersion: 7 }).setConfig("fresh", 1).deleteModule("echo");
    const err = await stale.commit().catch((e) => e);
    assert.ok(err instanceof ConflictError, String(err));
    assert.equal(await a.tryGetConfig("fresh"), undefined);
    assert.equal(await a.getConfig("b0"), 0);
    assert.ok(await a.getModule("echo"));
    assert.equal(await storeOf(a)!.revision(), before, "a failed batch is no revision");
  });

  test("a batch over the backend's limits fails before anything is written", async ({ a }) => {
    const limits = storeOf(a)!.limits;
    const before = await storeOf(a)!.revision();
    // More writes than one transaction holds where the backend has a bound (etcd), else a value over the largest one.
    const err = await (async () => {
      const big = a.batch();
      if (Number.isFinite(limits.maxTxnOperations)) {
        for (let i = 0; i <= limits.maxTxnOperations; i++) big.setConfig(`big${i}`, i);
      } else {
        big.setConfig("big0", 0);
        big.setConfig("big1", "x".repeat(Math.min(limits.maxValueBytes, MAX_CONFIG_VALUE_BYTES) + 1));
      }
      return await big.commit();
    })().catch((e) => e);
    assert.ok(err instanceof KernelError, String(err));
    assert.match(err.message, /too large|larger than/);
    assert.match(err.message, /nothing was written/);
    assert.equal((await a.listConfig({ prefix: "big" })).length, 0);
    assert.equal(await storeOf(a)!.revision(), before);
  });

  test("listConfig and listModules: pages with a cursor read at the first page's revision", async ({ a, b }) => {
    for (const k of ["app.a", "app.b", "app.c", "other"]) await a.setConfig(k, k);
    const first = await b.listConfig({ prefix: "app.", limit: 2 });
    assert.deepEqual(first.map((e) => e.key), ["app.a", "app.b"]);
    assert.ok(first.cursor !== undefined);
    await a.setConfig("app.bb", "late");
    await a.setConfig("app.c", "changed");
    const second = await b.listConfig({ prefix: "app.", limit: 2, cursor: first.cursor });
    assert.deepEqual(second.map((e) => [e.key, e.value]), [["app.c", "app.c"]], "the value and keys of then");
    assert.equal(second.revision, first.revision);
    assert.equal(second.cursor, undefined);
    assert.deepEqual((await b.listConfig({ prefix: "app.", reverse: true })).map((e) => e.key), [
      "app.c",
      "app.bb",
      "app.b",
      "app.a",
    ]);
    for (const id of ["m1", "m2", "m3"]) await a.upsertModule({ ...ECHO, id }, "loaded");
    const mFirst = await b.listModules({ limit: 2 });
    assert.deepEqual(mFirst.map((m) => m.id), ["m1", "m2"]);
    await a.deleteModule("m3");
    await a.upsertModule({ ...ECHO, id: "m25" }, "loaded");
    const mSecond = await b.listModules({ limit: 2, cursor: mFirst.cursor });
    assert.deepEqual(mSecond.map((m) => m.id), ["m3"], "m3 was there at the first page's revision; m25 was not");
    assert.deepEqual((await b.listModules()).map((m) => m.id), ["m1", "m2", "m25"]);
  });

  test("watch(): every change from another handle once, in revision order, config and modules", async ({ a, b }) => {
    const from = (await storeOf(a)!.revision()) + 1;
    const watch = b.watch({ spaces: ["config", "modules"], fromRevision: from });
    await a.setConfig("w.a", 1);
    await a.upsertModule(ECHO, "loaded");
    await a.batch().setConfig("w.a", 2).setConfig("w.b", { x: [1] }).commit();
    await a.deleteConfig("w.a");
    await a.setModuleState("echo", "running");
    await a.deleteModule("echo");
    const events = await next(watch, 7);
    await watch.return();
    assert.deepEqual(events.map(describeEvent), [
      "config put w.a=1 v1",
      "module put echo=loaded v1",
      "config put w.a=2 v2",
      'config put w.b={"x":[1]} v1',
      "config delete w.a=undefined v0",
      "module put echo=running v2",
      "module delete echo=- v0",
    ]);
    const revisions = events.map((e) => e.revision);
    assert.ok(revisions.every((r, i) => i === 0 || r >= revisions[i - 1]!), `in order: ${revisions}`);
    assert.equal(revisions[2], revisions[3], "one batch, one revision");
    assert.ok(revisions[0]! >= from);
  });

  test("watch(): keys and prefix filter; without fromRevision it sees writes made after the call", async ({ a, b }) => {
    const byKey = b.watch({ keys: ["p.x"] });
    const byPrefix = b.watch({ prefix: "p." });
    const modules = b.watch({ spaces: ["modules"], prefix: "e" });
    await a.setConfig("noise", 1);
    await a.setConfig("p.y", 1);
    await a.setConfig("p.x", 2);
    await a.upsertModule(MIRROR, "loaded");
    await a.upsertModule(ECHO, "loaded");
    assert.deepEqual((await next(byKey, 1)).map(describeEvent), ["config put p.x=2 v1"]);
    assert.deepEqual((await next(byPrefix, 2)).map(describeEvent), ["config put p.y=1 v1", "config put p.x=2 v1"]);
    assert.deepEqual((await next(modules, 1)).map(describeEvent), ["module put echo=loaded v1"]);
    await byKey.return();
    await byPrefix.return();
    await modules.return();
  });

  test("watch(): resumed from a revision delivers the rest once; an aborted signal ends it", async ({ a, b }) => {
    const from = (await storeOf(a)!.revision()) + 1;
    for (let i = 0; i < 6; i++) await a.setConfig("r", i);
    const first = b.watch({ keys: ["r"], fromRevision: from });
    const seen = await next(first, 3);
    await first.return();
    const resumed = b.watch({ keys: ["r"], fromRevision: seen.at(-1)!.revision + 1 });
    const rest = await next(resumed, 3);
    await resumed.return();
    assert.deepEqual([...seen, ...rest].map((e) => (e as ConfigChange).value), [0, 1, 2, 3, 4, 5]);
    const controller = new AbortController();
    const stopped = b.watch({ keys: ["r"], signal: controller.signal });
    const pending = stopped.next();
    controller.abort();
    assert.equal((await pending).done, true);
  });

  test("configHistory(): newest first with versions and revisions, across a delete, bounded by limit", async ({ a, b }) => {
    await a.setConfig("h", "one");
    await a.setConfig("h", "two");
    await a.deleteConfig("h");
    await a.setConfig("h", "three");
    await a.setConfig("h.longer", "not h");
    const history = await b.configHistory("h");
    assert.deepEqual(history.map((v) => [v.value, v.version]), [["three", 1], ["two", 2], ["one", 1]]);
    assert.ok(history[0]!.revision > history[1]!.revision && history[1]!.revision > history[2]!.revision);
    assert.equal(history[1]!.createRevision, history[2]!.revision, "one life");
    assert.ok(history.every((v) => v.updatedAt instanceof Date && !v.sealed));
    assert.deepEqual((await b.configHistory("h", { limit: 2 })).map((v) => v.value), ["three", "two"]);
    assert.deepEqual(await b.configHistory("never"), []);
  });

  test("restoreConfig(): an older version written again as a new one; an unknown revision is an OtherError", async ({ a, b }) => {
    await a.setConfig("max_threads", 8);
    await a.setConfig("max_threads", 1000);
    const [, good] = await b.configHistory("max_threads");
    await b.restoreConfig("max_threads", good!.revision);
    assert.equal(await a.getConfig("max_threads"), 8);
    const history = await a.configHistory("max_threads");
    assert.deepEqual(history.map((v) => [v.value, v.version]), [[8, 3], [1000, 2], [8, 1]]);
    const err = await b.restoreConfig("max_threads", history[0]!.revision + 1000).catch((e) => e);
    assert.ok(err instanceof OtherError, String(err));
    assert.match(err.message, /has no version written at revision/);
  });

  f.test(
    `registry conformance (${f.name}): compaction: a watch, a restore and a listing below it are CompactedErrors naming the oldest revision`,
    true,
    async () => {
      await using iso = await f.isolated();
      const reg = iso.reg;
      await reg.setConfig("m", 1);
      await reg.setConfig("n", 1);
      const old = await reg.listConfig({ limit: 1 });
      await reg.setConfig("n", 2);
      const first = (await reg.configHistory("n"))[1]!;
      await reg.setConfig("n", 3);
      const head = await storeOf(reg)!.revision();
      await reg.compact(head);
      const compacted = await reg.compactedRevision();
      assert.ok(compacted === head, `compacted at ${compacted}, head ${head}`);
      const watchErr = await reg.watch({ fromRevision: first.revision }).next().catch((e) => e);
      assert.ok(watchErr instanceof CompactedError, String(watchErr));
      assert.equal(watchErr.compactedRevision, compacted);
      assert.equal(watchErr.revision, first.revision);
      assert.equal(
        watchErr.message,
        `required revision ${first.revision} has been compacted: the oldest available revision is ${compacted}`,
      );
      const restoreErr = await reg.restoreConfig("n", first.revision).catch((e) => e);
      assert.ok(restoreErr instanceof CompactedError, String(restoreErr));
      assert.equal(restoreErr.compactedRevision, compacted);
      const listErr = await reg.listConfig({ limit: 1, cursor: old.cursor }).catch((e) => e);
      assert.ok(listErr instanceof CompactedError, String(listErr));
      assert.equal(listErr.revision, old.revision);
      assert.equal(listErr.compactedRevision, compacted);
      assert.deepEqual((await reg.configHistory("n")).map((v) => v.value), [3], "history keeps the live value");
      // A watch from the compacted revision itself works.
      const watch = reg.watch({ fromRevision: compacted + 1 });
      await reg.setConfig("n", 4);
      assert.deepEqual((await next(watch, 1)).map(describeEvent), ["config put n=4 v4"]);
      await watch.return();
    },
  );
}
