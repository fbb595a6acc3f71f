/**
 * The registry conformance suite (`tests/_registry_conformance.ts`) on every
 * backend: SQLite with the ffi and the node engine (a file, two handles), and
 * etcd (a namespace of the 3-member cluster, two handles; compaction on a
 * 1-member cluster of its own).
 */

import { StateRegistry } from "@oxide/registry";
import { registryConformance } from "./_registry_conformance.ts";
import { addressOf, etcdEndpoints, etcdTest, ownCluster } from "./_etcd.ts";

for (const engine of ["ffi", "node"] as const) {
  const open = async () => {
    const dir = await Deno.makeTempDir({ prefix: "oxide-conformance-" });
    const path = `${dir}/registry.db`;
    return {
      path,
      async [Symbol.asyncDispose]() {
        await Deno.remove(dir, { recursive: true });
      },
    };
  };
  registryConformance({
    name: engine,
    async pair() {
      const file = await open();
      const a = await StateRegistry.connect(file.path, { engine });
      const b = await StateRegistry.connect(file.path, { engine });
      return {
        a,
        b,
        async [Symbol.asyncDispose]() {
          await a.close();
          await b.close();
          await file[Symbol.asyncDispose]();
        },
      };
    },
    async isolated() {
      const file = await open();
      const reg = await StateRegistry.connect(file.path, { engine });
      return {
        reg,
        async [Symbol.asyncDispose]() {
          await reg.close();
          await file[Symbol.asyncDispose]();
        },
      };
    },
    test: (name, _isolated, fn) => Deno.test(name, fn),
  });
}

registryConformance({
  name: "etcd",
  async pair() {
    const address = addressOf(etcdEndpoints()!);
    const a = await StateRegistry.connect(address);
    const b = await StateRegistry.connect(address);
    return {
      a,
      b,
      async [Symbol.asyncDispose]() {
        await a.close();
        await b.close();
      },
    };
  },
  async isolated() {
    const cluster = await ownCluster({ members: 1 });
    const reg = await StateRegistry.connect(addressOf(cluster.endpoints), { etcd: { autoCompact: false } });
    return {
      reg,
      async [Symbol.asyncDispose]() {
        await reg.close();
        await cluster.stop();
      },
    };
  },
  test: (name, isolated, fn) => etcdTest(name, isolated ? "binary" : "cluster", fn),
});
