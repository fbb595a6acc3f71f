/**
 * The store conformance suite on the SQLite store, both engines, on a file
 * (the suite the etcd store runs, unchanged).
 */

import assert from "node:assert/strict";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { openEngine } from "../src/sqlite/open.ts";
import { checkRegistryShape, migrateRegistry } from "../src/schema.ts";
import type { Store } from "../src/store/store.ts";
import { RegistryError } from "../src/errors.ts";
import { StateRegistry } from "../mod.ts";
import { storeConformance, type StoreFeature } from "./_store_conformance.ts";
import { take as takeWithin } from "./_watchdog.ts";

/** A store on a fresh registry file; closing it closes the connection and removes the folder. */
async function openSqliteStore(engine: "ffi" | "node"): Promise<Store> {
  const dir = await Deno.makeTempDir({ prefix: "oxide-store-" });
  const db = openEngine(`${dir}/registry.db`, { engine }, checkRegistryShape);
  migrateRegistry(db);
  const store = new SqliteStore(db);
  let closed = false;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === "close") {
        return async () => {
          if (closed) return;
          closed = true;
          await target.close(); // Ends its watches.
          db.close();
          Deno.removeSync(dir, { recursive: true });
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** What the SQLite store does not do: nothing any more; the conformance suite runs whole. */
const SQLITE_LACKS: readonly StoreFeature[] = [];

for (const engine of ["ffi", "node"] as const) {
  storeConformance({
    name: `sqlite (${engine})`,
    lacks: SQLITE_LACKS,
    open: () => openSqliteStore(engine),
    openIsolated: async () => {
      const store = await openSqliteStore(engine);
      return { store, [Symbol.asyncDispose]: () => Promise.resolve(store.close()) };
    },
    test: (name, fn) => Deno.test(name, fn),
  });
}

Deno.test("SQLite meta space: table oxide_meta, its log rows hold no value, and 'sealing' is the oxide_sealing table", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oxide-store-" });
  try {
    const db = openEngine(`${dir}/registry.db`, { engine: "node" }, checkRegistryShape);
    try {
      migrateRegistry(db);
      const store = new SqliteStore(db);
      const r = store.txn({
        compares: [],
        success: [{ op: "put", space: "meta", key: "params", value: "secret-ish" }],
        updatedAt: "t",
      });
      assert.deepEqual(db.prepare("SELECT key, value FROM oxide_meta").all(), [{ key: "params", value: "secret-ish" }]);
      assert.deepEqual(
        db.prepare("SELECT revision, space, key, type, version, value FROM oxide_changes WHERE space = 'meta'").all(),
        [{ revision: r.revision, space: "meta", key: "params", type: "put", version: 1, value: null }],
        "logged for its revision and version, without a copy of the value",
      );
      assert.deepEqual(store.history("meta", "params"), [], "no past values of meta keys on SQLite");
      // The meta key "sealing" is the oxide_sealing table: parameters it cannot hold fail the write (no scheme), and
      // its transaction writes nothing, not even the table.
      assert.throws(
        () =>
          store.txn({
            compares: [],
            success: [
              { op: "put", space: "config", key: "a", value: "1" },
              { op: "put", space: "meta", key: "sealing", value: "{}" },
            ],
            updatedAt: "t",
          }),
        (error) =>
          error instanceof RegistryError && /NOT NULL constraint failed: oxide_sealing\.scheme/.test(error.message),
      );
      assert.equal(store.get("config", "a"), undefined, "rolled back");
      assert.equal(store.get("meta", "sealing"), undefined, "not sealed: no oxide_sealing table");
      assert.equal(store.revision(), r.revision);
      // A second connection sees the meta write and its version (the same file, no cache).
      const other = openEngine(`${dir}/registry.db`, { engine: "node" }, checkRegistryShape);
      try {
        assert.equal(new SqliteStore(other).get("meta", "params")?.version, 1);
      } finally {
        other.close();
      }
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SQLite meta key 'sealing': version is the sealing generation + 1, so a compare on it is the generation check", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oxide-store-" });
  try {
    const path = `${dir}/registry.db`;
    {
      await using plain = await StateRegistry.connect(path, { engine: "node" });
      assert.equal(new SqliteStore(plain.db).get("meta", "sealing"), undefined, "a plain registry: no sealing key");
    }
    await using reg = await StateRegistry.openEncrypted(path, new Uint8Array(32).fill(7), { engine: "node" });
    const store = new SqliteStore(reg.db);
    assert.equal(store.get("meta", "sealing")?.version, 1, "created: generation 0");
    const guarded = (equals: number) =>
      store.txn({
        compares: [{ space: "meta", key: "sealing", target: "version", equals }],
        success: [{
          op: "put",
          space: "modules",
          key: `m${equals}`,
          value: { name: "M", version: "1", kind: '"native"', state: '"loaded"', description: null },
        }],
        updatedAt: "2026-12-01T10:00:00.000000000+00:00",
      });
    assert.equal(guarded(1).succeeded, true);
    await reg.rotateDataKey();
    // A rotation is two changes of keys: the new data key stored as pending, then made active.
    assert.equal(reg.sealing?.generation, 2);
    assert.equal(store.get("meta", "sealing")?.version, 3, "a change of keys moves the version");
    const stale = guarded(1);
    assert.equal(stale.succeeded, false, "a compare on the old generation fails");
    assert.equal(stale.current?.[0]?.version, 3);
    assert.equal(store.get("modules", "m1")?.version, 1, "the earlier write is there, the stale one wrote nothing");
    assert.equal(guarded(3).succeeded, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SQLite txn with wantRevision false writes the same and reads no revision", async (t) => {
  for (const engine of ["ffi", "node"] as const) {
    await t.step(engine, async () => {
      const store = await openSqliteStore(engine);
      try {
        const put = { op: "put", space: "config", key: "a", value: "1" } as const;
        // Each shape the store runs: one statement, a compare in a transaction, the keyless writer's guard.
        const requests = [
          { compares: [], success: [put], updatedAt: "2026-01-01T00:00:00.000+00:00" },
          {
            compares: [{ space: "config", key: "a", target: "version", equals: 1 }] as const,
            success: [put],
            updatedAt: "2026-01-01T00:00:00.000+00:00",
          },
          {
            compares: [{ space: "meta", key: "sealing", target: "version", equals: 0 }] as const,
            success: [put],
            updatedAt: "2026-01-01T00:00:00.000+00:00",
          },
        ];
        let version = 0;
        for (const request of requests) {
          const result = await store.txn({ ...request, wantRevision: false });
          assert.equal(result.succeeded, true);
          assert.deepEqual(result.changed, [true]);
          assert.throws(() => result.revision, /wantRevision: false/);
          const entry = await store.get("config", "a");
          assert.equal(entry?.version, ++version);
          assert.equal(entry?.modRevision, await store.revision());
        }
        // A failed compare still says what the key holds.
        const failed = await store.txn({ ...requests[1]!, wantRevision: false });
        assert.equal(failed.succeeded, false);
        assert.equal(failed.current?.[0]?.version, 3);
        // Without the flag, the revision is there.
        assert.equal((await store.txn(requests[0]!)).revision, await store.revision());
      } finally {
        await store.close();
      }
    });
  }
});

Deno.test("SQLite rewrite is in place: no new revision or version, and the change log's copies of the old text follow", () => {
  for (const engine of ["ffi", "node"] as const) {
    using db = openEngine(":memory:", { engine });
    migrateRegistry(db);
    const store = new SqliteStore(db);
    const updatedAt = "2026-12-01T10:00:00.000000000+00:00";
    store.txn({ compares: [], success: [{ op: "put", space: "config", key: "k", value: '"old"' }], updatedAt });
    const before = store.get("config", "k")!;
    const revision = store.revision();
    const result = store.txn({
      compares: [],
      success: [{ op: "rewrite", space: "config", key: "k", value: '"new"', from: '"old"' }],
      updatedAt: "2026-12-01T11:00:00.000000000+00:00",
    });
    assert.deepEqual(result.changed, [true]);
    assert.equal(store.revision(), revision, `${engine}: no revision taken`);
    assert.deepEqual(store.get("config", "k"), { ...before, value: '"new"' }, "same version, revisions, updatedAt");
    assert.deepEqual(store.history("config", "k").map((e) => e.value), ['"new"'], "the log's copy follows");
    assert.throws(
      () =>
        store.txn({
          compares: [],
          success: [
            { op: "rewrite", space: "config", key: "k", value: '"x"', from: '"new"' },
            { op: "put", space: "config", key: "other", value: "1" },
          ],
          updatedAt,
        }),
      TypeError,
      "a rewrite in place cannot share its transaction with a real write",
    );
    assert.equal(store.get("config", "other"), undefined);
  }
});

for (const engine of ["ffi", "node"] as const) {
  Deno.test(`compact(R) keeps each key's entry at R, as etcd: a read at R and a later delete's previous entry find it [${engine}]`, async () => {
    const store = await openSqliteStore(engine);
    try {
      const NOW = "2026-12-01T10:00:00.000000000+00:00";
      const put = (key: string, value: string) =>
        store.txn({ compares: [], success: [{ op: "put", space: "config", key, value }], updatedAt: NOW });
      const del = (key: string) =>
        store.txn({ compares: [], success: [{ op: "delete", space: "config", key }], updatedAt: NOW });
      const before = (await put("gone.later", '"kept"')).revision; // Replaced by nothing below R, deleted after R.
      await put("replaced", '"old"');
      await put("replaced", '"new"'); // A newer put below R: "old" goes.
      await put("gone.before", '"x"');
      await del("gone.before"); // Deleted below R: both rows go.
      const r = (await put("at.r", '"r"')).revision;
      const deleted = (await del("gone.later")).revision;
      await store.compact(r);
      assert.ok(before < r && deleted > r);
      const atR = await store.range({ space: "config", prefix: "", revision: r });
      assert.deepEqual(atR.entries.map((e) => [e.key, e.value]), [["at.r", '"r"'], ["gone.later", '"kept"'], [
        "replaced",
        '"new"',
      ]]);
      const [event] = await takeWithin(store.watch({ spaces: ["config"], fromRevision: deleted }), 1, "the delete");
      assert.equal(event?.type, "delete");
      assert.equal(event?.previous?.value, '"kept"', "the delete names the entry it removed");
      assert.deepEqual((await store.history("config", "replaced")).map((e) => e.value), ['"new"']);
      assert.deepEqual(await store.history("config", "gone.before"), []);
    } finally {
      await store.close();
    }
  });
}
