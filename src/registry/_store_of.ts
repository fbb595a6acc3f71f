/**
 * The store behind a registry handle, for the layers above the registry that
 * keep data of their own in it (the decision log on etcd). Not exported by
 * mod.ts.
 *
 * @module
 */

import type { Store } from "../store/store.ts";

const stores = new WeakMap<object, Store>();

/** Records the store of a registry handle (its constructor calls this). */
export function bindStore(registry: object, store: Store): void {
  stores.set(registry, store);
}

/** The store of a registry handle. */
export function storeOf(registry: object): Store | undefined {
  return stores.get(registry);
}
