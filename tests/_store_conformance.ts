/**
 * The store-level conformance suite: one set of behaviours every backend of
 * `src/store/store.ts` must have, run unchanged against each (etcd here; the
 * SQLite store once it is on main). Revisions are compared relative to each
 * other, never as absolute numbers: an etcd cluster's revision is shared by
 * every namespace on it.
 */

import assert from "node:assert/strict";
import { CompactedError, KernelError } from "../src/errors.ts";
import type { ChangeEvent, ModuleFields, Operation, Store } from "../src/store/store.ts";
import { take as takeWithin, within } from "./_watchdog.ts";

/** Parts of the interface a backend may not have yet (its tests are then skipped, with the reason printed). */
export type StoreFeature = "watch" | "compact" | "meta writes";

/** How the suite gets stores. */
export interface StoreFactory {
  /** What this backend does not do yet; a test of the backend's own proves each is still missing. */
  readonly lacks?: readonly StoreFeature[];
  /** A label for test names (`"etcd"`, `"sqlite (ffi)"`). */
  readonly name: string;
  /** A fresh, empty store. */
  open(): Promise<Store>;
  /** A fresh store no other test shares a revision space with (compaction is cluster-wide on etcd). */
  openIsolated?(): Promise<{ store: Store; [Symbol.asyncDispose](): Promise<void> }>;
  /** Registers a test (lets a backend skip or fail tests it cannot run here). */
  test(name: string, fn: (t: Deno.TestContext) => Promise<void>): void;
}

const NOW = "2026-12-01T10:00:00.000000000+00:00";
const LATER = "2026-12-01T10:00:01.000000000+00:00";

const ECHO: ModuleFields = {
  name: "Echo",
  version: "0.1.0",
  kind: '"native"',
  state: '"loaded"',
  description: null,
};

function put(key: string, value: string): Operation {
  return { op: "put", space: "config", key, value };
}

async function closeStore(store: Store): Promise<void> {
  await store.close();
}

/** Collects `n` events from a watch, each within the watchdog's deadline, then stops it. */
async function take(iter: AsyncIterableIterator<ChangeEvent>, n: number): Promise<ChangeEvent[]> {
  try {
    return await takeWithin(iter, n, "the store's watch");
  } finally {
    await within(Promise.resolve(iter.return?.()), "the end of the store's watch after return()");
  }
}

/** Registers every conformance test for one backend. */
export function storeConformance(f: StoreFactory): void {
  const lacking = (needs: readonly StoreFeature[], name: string): boolean => {
    const missing = needs.filter((n) => f.lacks?.includes(n));
    if (missing.length === 0) return false;
    console.log(
      `store conformance (${f.name}): skipping "${name}": the ${f.name} store has no ${missing.join(", ")} yet`,
    );
    Deno.test({ name: `store conformance (${f.name}): ${name}`, ignore: true, fn() {} });
    return true;
  };
  const test = (
    name: string,
    fn: (store: Store, t: Deno.TestContext) => Promise<void>,
    needs: readonly StoreFeature[] = [],
  ) =>
    lacking(needs, name) || f.test(`store conformance (${f.name}): ${name}`, async (t) => {
      const store = await f.open();
      try {
        await fn(store, t);
      } finally {
        await closeStore(store);
      }
    });

  test("get() of a missing key is undefined; a put creates version 1 at the transaction's revision", async (s) => {
    assert.equal(await s.get("config", "a"), undefined);
    const before = await s.revision();
    const r = await s.txn({ compares: [], success: [put("a", '"x"')], updatedAt: NOW });
    assert.equal(r.succeeded, true);
    assert.ok(r.revision > before, `revision ${r.revision} after ${before}`);
    assert.deepEqual(r.changed, [true]);
    const e = await s.get("config", "a");
    assert.deepEqual(e, {
      space: "config",
      key: "a",
      value: '"x"',
      updatedAt: NOW,
      version: 1,
      createRevision: r.revision,
      modRevision: r.revision,
    });
    assert.ok(await s.revision() >= r.revision);
  });

  test("a second put increments version and keeps createRevision; delete then put starts again at 1", async (s) => {
    const r1 = await s.txn({ compares: [], success: [put("k", "1")], updatedAt: NOW });
    const r2 = await s.txn({ compares: [], success: [put("k", "2")], updatedAt: LATER });
    const e = await s.get("config", "k");
    assert.equal(e?.version, 2);
    assert.equal(e?.createRevision, r1.revision);
    assert.equal(e?.modRevision, r2.revision);
    assert.equal(e?.updatedAt, LATER);
    const d = await s.txn({ compares: [], success: [{ op: "delete", space: "config", key: "k" }], updatedAt: LATER });
    assert.deepEqual(d.changed, [true]);
    assert.equal(await s.get("config", "k"), undefined);
    const r3 = await s.txn({ compares: [], success: [put("k", "3")], updatedAt: LATER });
    const again = await s.get("config", "k");
    assert.equal(again?.version, 1);
    assert.equal(again?.createRevision, r3.revision);
  });

  test("a delete of a missing key changes nothing and says so", async (s) => {
    const r = await s.txn({
      compares: [],
      success: [{ op: "delete", space: "config", key: "ghost" }, put("real", "1")],
      updatedAt: NOW,
    });
    assert.equal(r.succeeded, true);
    assert.deepEqual(r.changed, [false, true]);
  });

  test("spaces are separate: the same key in config, modules and meta", async (s) => {
    await s.txn({
      compares: [],
      success: [
        put("same", '"c"'),
        { op: "put", space: "modules", key: "same", value: ECHO },
        { op: "put", space: "meta", key: "same", value: "m" },
      ],
      updatedAt: NOW,
    });
    assert.equal((await s.get("config", "same"))?.value, '"c"');
    assert.deepEqual((await s.get("modules", "same"))?.value, ECHO);
    const meta = await s.get("meta", "same");
    assert.equal(meta?.value, "m");
    const metaCompare = await s.txn({
      compares: [{ space: "meta", key: "same", target: "value", equals: "m" }],
      success: [{ op: "put", space: "meta", key: "same", value: "m2" }],
      updatedAt: NOW,
    });
    assert.equal(metaCompare.succeeded, true, "a value compare in meta");
    await s.txn({ compares: [], success: [{ op: "delete", space: "config", key: "same" }], updatedAt: NOW });
    assert.ok(await s.get("modules", "same"));
    assert.ok(await s.get("meta", "same"));
  }, ["meta writes"]);

  test("meta: a put creates version 1 at the transaction's revision, puts count up, a delete ends it", async (s) => {
    const meta = (key: string, value: string): Operation => ({ op: "put", space: "meta", key, value });
    const before = await s.revision();
    const r1 = await s.txn({ compares: [], success: [meta("params", "v1")], updatedAt: NOW });
    assert.ok(r1.revision > before, `a meta write takes a revision: ${r1.revision} after ${before}`);
    assert.deepEqual(r1.changed, [true]);
    assert.deepEqual(await s.get("meta", "params"), {
      space: "meta",
      key: "params",
      value: "v1",
      updatedAt: "",
      version: 1,
      createRevision: r1.revision,
      modRevision: r1.revision,
    });
    assert.equal(await s.getValue("meta", "params"), "v1");
    const r2 = await s.txn({ compares: [], success: [meta("params", "v1")], updatedAt: LATER });
    const e2 = await s.get("meta", "params");
    assert.equal(e2?.version, 2, "a put of the same value is still a write");
    assert.equal(e2?.createRevision, r1.revision);
    assert.equal(e2?.modRevision, r2.revision);
    assert.equal(e2?.updatedAt, "", "meta keeps no updatedAt");
    const d = await s.txn({ compares: [], success: [{ op: "delete", space: "meta", key: "params" }], updatedAt: NOW });
    assert.deepEqual(d.changed, [true]);
    assert.equal(await s.get("meta", "params"), undefined);
    assert.equal(await s.getValue("meta", "params"), undefined);
    const gone = await s.txn({
      compares: [],
      success: [{ op: "delete", space: "meta", key: "params" }],
      updatedAt: NOW,
    });
    assert.deepEqual(gone.changed, [false], "a delete of a missing meta key changes nothing");
    await s.txn({ compares: [], success: [meta("params", "v3")], updatedAt: NOW });
    assert.equal((await s.get("meta", "params"))?.version, 1, "created again: version 1");
  }, ["meta writes"]);

  test("meta: compare-and-set on version, with config writes in the same transaction (one revision)", async (s) => {
    const meta = (value: string): Operation => ({ op: "put", space: "meta", key: "gen", value });
    const created = await s.txn({
      compares: [{ space: "meta", key: "gen", target: "version", equals: 0 }],
      success: [meta("g0")],
      updatedAt: NOW,
    });
    assert.equal(created.succeeded, true, "must-not-exist holds for a missing meta key");
    const again = await s.txn({
      compares: [{ space: "meta", key: "gen", target: "version", equals: 0 }],
      success: [meta("other")],
      updatedAt: NOW,
    });
    assert.equal(again.succeeded, false, "must-not-exist fails once it exists");
    assert.equal(again.current?.[0]?.version, 1);
    assert.equal(again.current?.[0]?.value, "g0");
    assert.equal((await s.get("meta", "gen"))?.value, "g0", "nothing written");
    const both = await s.txn({
      compares: [{ space: "meta", key: "gen", target: "version", equals: 1 }],
      success: [meta("g1"), put("sealed", '"s"')],
      updatedAt: NOW,
    });
    assert.equal(both.succeeded, true);
    const [m, c] = [await s.get("meta", "gen"), await s.get("config", "sealed")];
    assert.equal(m?.version, 2);
    assert.equal(m?.modRevision, both.revision);
    assert.equal(c?.modRevision, both.revision, "the config write shares the meta write's revision");
    const stale = await s.txn({
      compares: [{ space: "meta", key: "gen", target: "version", equals: 1 }],
      success: [meta("g2"), put("sealed", '"t"')],
      updatedAt: NOW,
    });
    assert.equal(stale.succeeded, false, "a stale version applies nothing");
    assert.equal((await s.get("meta", "gen"))?.value, "g1");
    assert.equal(await s.getValue("config", "sealed"), '"s"');
    const byRevision = await s.txn({
      compares: [{ space: "meta", key: "gen", target: "modRevision", equals: both.revision }],
      success: [{ op: "delete", space: "meta", key: "gen" }],
      updatedAt: NOW,
    });
    assert.equal(byRevision.succeeded, true, "a modRevision compare on a meta key");
    assert.equal(await s.get("meta", "gen"), undefined);
  }, ["meta writes"]);

  test("text round-trips: empty, non-ASCII, astral, quotes, newlines, in keys and values", async (s, t) => {
    for (const [key, value] of [["", ""], ["ключ/π", "значение ✓"], ["emoji 🦀", "🦀\n\t\"'\\"], ["a/b/c", "{}"]]) {
      await t.step(JSON.stringify(key), async () => {
        await s.txn({ compares: [], success: [put(key!, value!)], updatedAt: NOW });
        assert.equal((await s.get("config", key!))?.value, value);
      });
    }
    const mod: ModuleFields = { ...ECHO, name: "Écho ✓", description: "línea\nnueva" };
    await s.txn({ compares: [], success: [{ op: "put", space: "modules", key: "é", value: mod }], updatedAt: NOW });
    assert.deepEqual((await s.get("modules", "é"))?.value, mod);
  });

  test("setState changes only a module's state and updated_at; on a missing module nothing is written", async (s) => {
    await s.txn({ compares: [], success: [{ op: "put", space: "modules", key: "echo", value: ECHO }], updatedAt: NOW });
    const r = await s.txn({
      compares: [],
      success: [{ op: "setState", space: "modules", key: "echo", state: '"running"' }],
      updatedAt: LATER,
    });
    assert.equal(r.succeeded, true);
    const e = await s.get("modules", "echo");
    assert.deepEqual(e?.value, { ...ECHO, state: '"running"' });
    assert.equal(e?.updatedAt, LATER);
    assert.equal(e?.version, 2);
    const miss = await s.txn({
      compares: [],
      success: [put("side", "1"), { op: "setState", space: "modules", key: "ghost", state: '"running"' }],
      updatedAt: LATER,
    });
    assert.equal(miss.succeeded, true);
    assert.deepEqual(miss.changed, [true, false]);
    assert.equal((await s.get("config", "side"))?.value, "1");
    assert.equal(await s.get("modules", "ghost"), undefined, "a missing module is not created");
    const guarded = await s.txn({
      compares: [{ space: "modules", key: "ghost", target: "version", equals: 0, result: "notEqual" }],
      success: [put("side", "2"), { op: "setState", space: "modules", key: "ghost", state: '"running"' }],
      updatedAt: LATER,
    });
    assert.equal(guarded.succeeded, false, "the exists compare makes the transaction depend on the module");
    assert.equal((await s.get("config", "side"))?.value, "1");
  });

  test("getValue() reads the stored value alone", async (s) => {
    assert.equal(await s.getValue("config", "gv"), undefined);
    await s.txn({
      compares: [],
      success: [put("gv", '{"a":1}'), { op: "put", space: "modules", key: "gm", value: ECHO }],
      updatedAt: NOW,
    });
    assert.equal(await s.getValue("config", "gv"), '{"a":1}');
    assert.deepEqual(await s.getValue("modules", "gm"), ECHO);
  });

  test("compare results: notEqual, greater and less on version and modRevision", async (s, t) => {
    const w = await s.txn({ compares: [], success: [put("n", "1")], updatedAt: NOW });
    await s.txn({ compares: [], success: [put("n", "2")], updatedAt: NOW }); // version 2
    for (
      const [result, equals, holds] of [
        ["equal", 2, true],
        ["notEqual", 2, false],
        ["notEqual", 0, true],
        ["greater", 1, true],
        ["greater", 2, false],
        ["less", 3, true],
        ["less", 2, false],
      ] as const
    ) {
      await t.step(`version ${result} ${equals}`, async () => {
        const r = await s.txn({
          compares: [{ space: "config", key: "n", target: "version", equals, result }],
          success: [],
          updatedAt: NOW,
        });
        assert.equal(r.succeeded, holds);
      });
    }
    const byRev = await s.txn({
      compares: [{ space: "config", key: "n", target: "modRevision", equals: w.revision, result: "greater" }],
      success: [],
      updatedAt: NOW,
    });
    assert.equal(byRev.succeeded, true);
    const missing = await s.txn({
      compares: [{ space: "config", key: "none", target: "version", equals: 0, result: "notEqual" }],
      success: [put("none", "made")],
      updatedAt: NOW,
    });
    assert.equal(missing.succeeded, false);
    assert.equal(await s.get("config", "none"), undefined);
  });

  test("value compares: equal and notEqual, and a missing key fails all but notEqual", async (s, t) => {
    await s.txn({
      compares: [],
      success: [put("v", '"on"')],
      updatedAt: NOW,
    });
    for (
      const [space, key, result, equals, holds] of [
        ["config", "v", "equal", '"on"', true],
        ["config", "v", "equal", '"off"', false],
        ["config", "v", "notEqual", '"off"', true],
        ["config", "v", "notEqual", '"on"', false],
        ["config", "missing", "equal", "", false],
        ["config", "missing", "notEqual", "", true],
      ] as const
    ) {
      await t.step(`${space}/${key} ${result} ${JSON.stringify(equals)}`, async () => {
        const r = await s.txn({
          compares: [{ space, key, target: "value", equals, result }],
          success: [put("vout", `${key}-${result}-${equals}`)],
          updatedAt: NOW,
        });
        assert.equal(r.succeeded, holds);
        assert.equal((await s.get("config", "vout"))?.value === `${key}-${result}-${equals}`, holds);
      });
    }
  });

  test("a failed transaction reports each compared key's entry, in compare order", async (s) => {
    const w = await s.txn({ compares: [], success: [put("x1", "1")], updatedAt: NOW });
    const r = await s.txn({
      compares: [
        { space: "config", key: "x1", target: "version", equals: 1 },
        { space: "config", key: "x2", target: "version", equals: 1 },
      ],
      success: [put("x3", "never")],
      updatedAt: NOW,
    });
    assert.equal(r.succeeded, false);
    assert.equal(r.current?.length, 2);
    assert.equal(r.current?.[0]?.value, "1");
    assert.equal(r.current?.[0]?.modRevision, w.revision);
    assert.equal(r.current?.[1], undefined);
    assert.equal(await s.get("config", "x3"), undefined);
  });

  test("compare-and-set: a matching version applies, a stale one applies nothing", async (s) => {
    await s.txn({ compares: [], success: [put("cas", "1")], updatedAt: NOW });
    const ok = await s.txn({
      compares: [{ space: "config", key: "cas", target: "version", equals: 1 }],
      success: [put("cas", "2"), put("other", "x")],
      updatedAt: NOW,
    });
    assert.equal(ok.succeeded, true);
    const stale = await s.txn({
      compares: [{ space: "config", key: "cas", target: "version", equals: 1 }],
      success: [put("cas", "3"), put("other", "y")],
      updatedAt: NOW,
    });
    assert.equal(stale.succeeded, false);
    assert.deepEqual(stale.changed, []);
    assert.equal((await s.get("config", "cas"))?.value, "2");
    assert.equal((await s.get("config", "other"))?.value, "x");
  });

  test("compare on modRevision and on absence (version 0)", async (s) => {
    const create = await s.txn({
      compares: [{ space: "config", key: "once", target: "version", equals: 0 }],
      success: [put("once", "1")],
      updatedAt: NOW,
    });
    assert.equal(create.succeeded, true);
    const again = await s.txn({
      compares: [{ space: "config", key: "once", target: "version", equals: 0 }],
      success: [put("once", "2")],
      updatedAt: NOW,
    });
    assert.equal(again.succeeded, false);
    const byRev = await s.txn({
      compares: [{ space: "config", key: "once", target: "modRevision", equals: create.revision }],
      success: [put("once", "3")],
      updatedAt: NOW,
    });
    assert.equal(byRev.succeeded, true);
    assert.equal((await s.get("config", "once"))?.value, "3");
  });

  test("the failure branch runs when a compare fails", async (s) => {
    const r = await s.txn({
      compares: [{ space: "config", key: "flag", target: "version", equals: 5 }],
      success: [put("branch", "success")],
      failure: [put("branch", "failure"), { op: "delete", space: "config", key: "nothing" }],
      updatedAt: NOW,
    });
    assert.equal(r.succeeded, false);
    assert.deepEqual(r.changed, [true, false]);
    assert.equal((await s.get("config", "branch"))?.value, "failure");
  });

  test("a batch is one revision: every key written shares the modRevision", async (s) => {
    const ops = Array.from({ length: 10 }, (_, i) => put(`b${i}`, String(i)));
    const r = await s.txn({ compares: [], success: ops, updatedAt: NOW });
    const { entries } = await s.range({ space: "config", prefix: "b" });
    assert.equal(entries.length, 10);
    for (const e of entries) assert.equal(e.modRevision, r.revision);
  });

  test("a transaction over the backend's limits is refused before anything is written", async (s) => {
    const max = s.limits.maxTxnOperations;
    if (!Number.isFinite(max)) return;
    const ops = Array.from({ length: max + 1 }, (_, i) => put(`over${i}`, "1"));
    const err = await Promise.resolve().then(() => s.txn({ compares: [], success: ops, updatedAt: NOW })).catch((e) =>
      e
    );
    assert.ok(err instanceof KernelError, String(err));
    assert.match(err.message, /too large|at most/);
    assert.equal((await s.range({ space: "config", prefix: "over" })).entries.length, 0);
    // At the limit it goes through.
    const fits = await s.txn({ compares: [], success: ops.slice(0, max), updatedAt: NOW });
    assert.equal(fits.succeeded, true);
    const bytes = s.limits.maxTxnBytes;
    if (Number.isFinite(bytes)) {
      const big = "x".repeat(Math.floor(bytes / 2) + 1);
      const err2 = await Promise.resolve().then(() =>
        s.txn({ compares: [], success: [put("big1", big), put("big2", big)], updatedAt: NOW })
      ).catch((e) => e);
      assert.ok(err2 instanceof KernelError, String(err2));
      assert.equal(await s.get("config", "big1"), undefined);
      const fitsBig = await s.txn({ compares: [], success: [put("big3", "x".repeat(bytes - 10))], updatedAt: NOW });
      assert.equal(fitsBig.succeeded, true);
    }
  });

  test("range(): prefix, key order, limit with more, cursor, reverse", async (s) => {
    await s.txn({
      compares: [],
      success: ["a1", "a2", "a3", "b1", "a10"].map((k) => put(k, `"${k}"`)),
      updatedAt: NOW,
    });
    const all = await s.range({ space: "config", prefix: "a" });
    assert.deepEqual(all.entries.map((e) => e.key), ["a1", "a10", "a2", "a3"]);
    assert.equal(all.more, false);
    const page1 = await s.range({ space: "config", prefix: "a", limit: 2 });
    assert.deepEqual(page1.entries.map((e) => e.key), ["a1", "a10"]);
    assert.equal(page1.more, true);
    const page2 = await s.range({ space: "config", prefix: "a", limit: 2, after: "a10", revision: page1.revision });
    assert.deepEqual(page2.entries.map((e) => e.key), ["a2", "a3"]);
    assert.equal(page2.more, false);
    const rev = await s.range({ space: "config", prefix: "a", reverse: true, limit: 3 });
    assert.deepEqual(rev.entries.map((e) => e.key), ["a3", "a2", "a10"]);
    const revAfter = await s.range({ space: "config", prefix: "a", reverse: true, after: "a2" });
    assert.deepEqual(revAfter.entries.map((e) => e.key), ["a10", "a1"]);
    const one = await s.range({ space: "config", key: "b1" });
    assert.deepEqual(one.entries.map((e) => e.value), ['"b1"']);
    const everything = await s.range({ space: "config", prefix: "" });
    assert.equal(everything.entries.length, 5);
    assert.equal((await s.range({ space: "modules", prefix: "" })).entries.length, 0);
    const past = await s.range({ space: "config", prefix: "a", after: "zzz" });
    assert.equal(past.entries.length, 0);
  });

  test("range() at a past revision sees the values of then", async (s) => {
    const r1 = await s.txn({ compares: [], success: [put("p", "1")], updatedAt: NOW });
    await s.txn({ compares: [], success: [put("p", "2"), put("q", "new")], updatedAt: NOW });
    const then = await s.range({ space: "config", prefix: "", revision: r1.revision });
    assert.deepEqual(then.entries.map((e) => [e.key, e.value]), [["p", "1"]]);
    assert.equal(then.revision, r1.revision);
  });

  test("history(): newest first, with versions, across a delete, bounded by limit", async (s) => {
    const revs: number[] = [];
    for (const v of ["1", "2"]) {
      revs.push((await s.txn({ compares: [], success: [put("h", v)], updatedAt: NOW })).revision);
    }
    await s.txn({ compares: [], success: [{ op: "delete", space: "config", key: "h" }], updatedAt: NOW });
    for (const v of ["3", "4"]) {
      revs.push((await s.txn({ compares: [], success: [put("h", v)], updatedAt: LATER })).revision);
    }
    const h = await s.history("config", "h");
    assert.deepEqual(h.map((e) => [e.value, e.version, e.modRevision]), [
      ["4", 2, revs[3]],
      ["3", 1, revs[2]],
      ["2", 2, revs[1]],
      ["1", 1, revs[0]],
    ]);
    assert.equal(h[0]!.createRevision, revs[2]);
    assert.equal(h[3]!.createRevision, revs[0]);
    assert.equal(h[0]!.updatedAt, LATER);
    assert.deepEqual((await s.history("config", "h", 2)).map((e) => e.value), ["4", "3"]);
    assert.deepEqual(await s.history("config", "never"), []);
    await s.txn({ compares: [], success: [{ op: "put", space: "modules", key: "m", value: ECHO }], updatedAt: NOW });
    await s.txn({
      compares: [],
      success: [{ op: "setState", space: "modules", key: "m", state: '"running"' }],
      updatedAt: NOW,
    });
    assert.deepEqual((await s.history("modules", "m")).map((e) => e.value.state), ['"running"', '"loaded"']);
  });

  test("pastEntries() pages through past config values, of live and deleted keys, with each write's revision", async (s) => {
    const r1 = await s.txn({ compares: [], success: [put("r", '"a1"')], updatedAt: NOW });
    const r2 = await s.txn({ compares: [], success: [put("r", '"a2"')], updatedAt: NOW });
    const g = await s.txn({ compares: [], success: [put("gone", '"g"')], updatedAt: NOW });
    await s.txn({ compares: [], success: [{ op: "delete", space: "config", key: "gone" }], updatedAt: NOW });
    const past = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await s.pastEntries("config", { cursor, limit: 1 });
      past.push(...page.entries);
      cursor = page.cursor;
      pages++;
    } while (cursor !== undefined && pages < 50);
    const found = new Map(past.map((e) => [`${e.key}=${e.value}`, e.modRevision]));
    assert.equal(found.get('r="a1"'), r1.revision);
    assert.equal(found.get('r="a2"'), r2.revision);
    assert.equal(found.get('gone="g"'), g.revision, "a deleted key's past value");
    assert.ok(pages >= 3, `one entry a page: ${pages} pages`);
  });

  test("rewrite: a config value replaced only where it still holds 'from', live or past, keeping updatedAt", async (s) => {
    const r1 = await s.txn({ compares: [], success: [put("r", '"a1"')], updatedAt: NOW });
    await s.txn({ compares: [], success: [put("r", '"a2"')], updatedAt: NOW });
    const g = await s.txn({ compares: [], success: [put("gone", '"g"')], updatedAt: NOW });
    await s.txn({ compares: [], success: [{ op: "delete", space: "config", key: "gone" }], updatedAt: NOW });
    const rewrite = (key: string, from: string, value: string, revision?: number): Operation => ({
      op: "rewrite",
      space: "config",
      key,
      value,
      from,
      ...(revision === undefined ? {} : { revision }),
    });
    const stale = await s.txn({ compares: [], success: [rewrite("r", '"other"', '"A2"')], updatedAt: LATER });
    assert.deepEqual(stale.changed, [false]);
    assert.equal(await s.getValue("config", "r"), '"a2"', "a value that changed is left as it is");
    const live = await s.txn({ compares: [], success: [rewrite("r", '"a2"', '"A2"')], updatedAt: LATER });
    assert.deepEqual(live.changed, [true]);
    const entry = await s.get("config", "r");
    assert.equal(entry?.value, '"A2"');
    assert.equal(entry?.updatedAt, NOW, "a rewrite keeps the value's updated_at");
    const pastOnes = await s.txn({
      compares: [],
      success: [
        rewrite("r", '"a1"', '"A1"', r1.revision),
        rewrite("gone", '"g"', '"G"', g.revision),
        rewrite("r", '"a1"', '"X"', g.revision), // No write of "r" at that revision.
      ],
      updatedAt: LATER,
    });
    assert.deepEqual(pastOnes.changed, [true, true, false]);
    const history = (await s.history("config", "r")).map((e) => e.value);
    assert.ok(history.includes('"A1"') && !history.includes('"a1"'), JSON.stringify(history));
    assert.equal(await s.get("config", "gone"), undefined, "a past rewrite brings no deleted key back");
    assert.deepEqual((await s.history("config", "gone")).map((e) => e.value), ['"G"']);
    // The compare guards the rewrites as any write.
    const guarded = await s.txn({
      compares: [{ space: "config", key: "r", target: "version", equals: 99 }],
      success: [rewrite("r", '"A2"', '"B2"')],
      updatedAt: LATER,
    });
    assert.equal(guarded.succeeded, false);
    assert.equal(await s.getValue("config", "r"), '"A2"');
  });

  test("history() of a key does not include a key that extends its name", async (s) => {
    await s.txn({ compares: [], success: [put("x", "1"), put("x/y", "2"), put("xy", "3")], updatedAt: NOW });
    assert.deepEqual((await s.history("config", "x")).map((e) => e.value), ["1"]);
  });

  test("watch(): every change once, in revision order, with deletes and previous entries", async (s) => {
    const from = (await s.revision()) + 1;
    const r1 = await s.txn({ compares: [], success: [put("w", "1")], updatedAt: NOW });
    const r2 = await s.txn({ compares: [], success: [put("w", "2"), put("w2", "x")], updatedAt: NOW });
    const r3 = await s.txn({ compares: [], success: [{ op: "delete", space: "config", key: "w" }], updatedAt: NOW });
    const events = await take(s.watch({ spaces: ["config"], fromRevision: from }), 4);
    assert.deepEqual(events.map((e) => [e.type, e.entry.key, e.entry.value, e.entry.modRevision]), [
      ["put", "w", "1", r1.revision],
      ["put", "w", "2", r2.revision],
      ["put", "w2", "x", r2.revision],
      ["delete", "w", "2", r3.revision],
    ]);
    assert.equal(events[3]!.entry.version, 0);
    // `previous` is optional (SQLite's change log keeps each change once; etcd sets it on deletes): when there, exact.
    for (const [i, before] of [[1, "1"], [3, "2"]] as const) {
      if (events[i]!.previous !== undefined) assert.equal(events[i]!.previous!.value, before);
    }
  }, ["watch"]);

  test("watch(): filters by space, key and prefix, and sees changes made after it started", async (s) => {
    const ac = new AbortController();
    const onlyKey = s.watch({ spaces: ["config"], keys: ["target"], signal: ac.signal });
    const byPrefix = s.watch({ spaces: ["config", "modules"], prefix: "p/" });
    const first = take(onlyKey, 2);
    const second = take(byPrefix, 2);
    // A watch that starts "now" may miss writes made before its stream is open: give it a moment, then write.
    await new Promise((r) => setTimeout(r, 300));
    await s.txn({ compares: [], success: [put("noise", "1"), put("p/a", "1")], updatedAt: NOW });
    await s.txn({ compares: [], success: [{ op: "put", space: "modules", key: "p/m", value: ECHO }], updatedAt: NOW });
    await s.txn({ compares: [], success: [put("target", "1")], updatedAt: NOW });
    await s.txn({ compares: [], success: [put("target", "2")], updatedAt: NOW });
    assert.deepEqual((await first).map((e) => e.entry.value), ["1", "2"]);
    assert.deepEqual((await second).map((e) => [e.entry.space, e.entry.key]), [["config", "p/a"], ["modules", "p/m"]]);
    ac.abort();
  }, ["watch"]);

  test("watch(): aborting the signal ends the iteration", async (s) => {
    const ac = new AbortController();
    const iter = s.watch({ spaces: ["config"], signal: ac.signal });
    const done = iter.next();
    setTimeout(() => ac.abort(), 100);
    const r = await within(done, "the end of the watch after abort()");
    assert.equal(r.done, true);
  }, ["watch"]);

  test("close() is idempotent and later calls fail with a KernelError", async (s) => {
    await s.close();
    await s.close();
    const err = await Promise.resolve().then(() => s.get("config", "a")).catch((e) => e);
    assert.ok(err instanceof KernelError, String(err));
    assert.match(err.message, /closed/);
  });

  const compactName = "compact() drops old revisions; reads below fail, history keeps the live value";
  if (f.openIsolated && !lacking(["compact", "watch"], compactName)) {
    const openIsolated = f.openIsolated;
    f.test(
      `store conformance (${f.name}): ${compactName}`,
      async () => {
        await using iso = await openIsolated();
        const s = iso.store;
        const r1 = await s.txn({ compares: [], success: [put("c", "1")], updatedAt: NOW });
        const r2 = await s.txn({ compares: [], success: [put("c", "2")], updatedAt: NOW });
        await s.txn({ compares: [], success: [put("d", "1")], updatedAt: NOW });
        await s.compact(r2.revision);
        assert.ok(await s.compactedRevision() >= r2.revision);
        const err = await Promise.resolve().then(() => s.range({ space: "config", prefix: "", revision: r1.revision }))
          .catch((e) => e);
        assert.ok(err instanceof CompactedError, String(err));
        assert.equal(err.revision, r1.revision);
        assert.equal(err.compactedRevision, await s.compactedRevision());
        const h = await s.history("config", "c");
        assert.equal(h[0]?.value, "2");
        assert.ok(!h.some((e) => e.modRevision < r2.revision), "history below the compacted revision is gone");
        const werr = await take(s.watch({ spaces: ["config"], fromRevision: r1.revision }), 1).catch((e) => e);
        assert.ok(werr instanceof CompactedError, String(werr));
        assert.equal(werr.revision, r1.revision);
        assert.equal(werr.compactedRevision, await s.compactedRevision());
        assert.match(werr.message, /^required revision \d+ has been compacted: the oldest available revision is \d+$/);
        await s.close();
      },
    );
  }
}
