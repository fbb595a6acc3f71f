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
