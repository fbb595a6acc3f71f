// Not named test.ts: `deno test` would take such a file for a test module and run it (and so itself).
// `deno task test`: every test, with the etcd clusters the fleet-mode tests need. When OXIDE_ETCD_ENDPOINTS is set
// (`.ci/run` and `deno task etcd:dev` users set it), the tests use those clusters. Otherwise, when the `etcd` binary is
// on PATH, this starts the same three `.ci/run` starts (3 members; one TLS member with etcd auth; one that requires
// client certificates) on 127.0.0.1 in a temporary folder, runs the tests against them, and stops each member by its
// pid. Without etcd the fleet-mode tests are skipped with a printed reason, or fail under CI=true (tests/_etcd.ts).
// Arguments are passed to `deno test` (a file, `--filter ...`).
import { clusterEnv, type EtcdCluster, startCluster } from "./etcd_cluster.ts";

const TEST_FLAGS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-net=127.0.0.1",
  "--doc",
  "--parallel",
];

function etcdOnPath(): boolean {
  try {
    return new Deno.Command(Deno.env.get("OXIDE_ETCD_BIN") ?? "etcd", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .outputSync().success;
  } catch {
    return false;
  }
}

const clusters: EtcdCluster[] = [];
const env: Record<string, string> = {};
if (Deno.env.get("OXIDE_ETCD_ENDPOINTS") === undefined && etcdOnPath()) {
  try {
    for (
      const [prefix, options] of [
        ["OXIDE_ETCD", { members: 3 }],
        ["OXIDE_ETCD_TLS", { tls: "auth", authTokenTtl: 2 }],
        ["OXIDE_ETCD_MTLS", { tls: "mtls" }],
      ] as const
    ) {
      const cluster = await startCluster(options);
      clusters.push(cluster);
      Object.assign(env, clusterEnv(cluster, prefix));
    }
    console.error(`etcd: started ${clusters.length} clusters for the fleet-mode tests (stopped when the tests end)`);
  } catch (error) {
    console.error(`etcd: could not start a cluster for the fleet-mode tests: ${error}`);
  }
}

let code = 1;
try {
  const child = new Deno.Command(Deno.execPath(), { args: ["test", ...TEST_FLAGS, ...Deno.args], env }).spawn();
  const stop = () => child.kill("SIGINT");
  Deno.addSignalListener("SIGINT", stop);
  code = (await child.status).code;
  Deno.removeSignalListener("SIGINT", stop);
} finally {
  for (const cluster of clusters) await cluster.stop();
}
Deno.exit(code);
