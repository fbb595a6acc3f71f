/**
 * The store conformance suite on the SQLite store, both engines, on a file
 * (the suite the etcd store runs, unchanged).
 */

import assert from "node:assert/strict";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { openEngine } from "../src/sqlite/open.ts";
import { checkRegistryShape, migrateRegistry } from "../src/schema.ts";
import type { Store } from "../src/store/store.ts";
import { storeConformance } from "./_store_conformance.ts";

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
        return () => {
          if (closed) return;
          closed = true;
          db.close();
          Deno.removeSync(dir, { recursive: true });
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** What the SQLite store does not do yet (issue 9): the conformance tests needing it are skipped, and said so. */
const SQLITE_LACKS = ["watch", "compact", "meta writes"] as const;

Deno.test("the SQLite store still lacks watch(), compact() and meta writes (else drop them from SQLITE_LACKS)", async () => {
  const store = await openSqliteStore("node");
  try {
    assert.throws(() => store.watch({ spaces: ["config"] }), /watch\(\) is not available/);
    assert.throws(() => store.compact(1), /compact\(\) is not available/);
    assert.throws(
      () => store.txn({ compares: [], success: [{ op: "put", space: "meta", key: "m", value: "x" }], updatedAt: "x" }),
      /is not written through the store/,
    );
  } finally {
    await store.close();
  }
});

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
