/**
 * Finding the etcd clusters tests run against: `OXIDE_ETCD_ENDPOINTS` (a
 * 3-member cluster) and `OXIDE_ETCD_TLS_*` (one TLS member with auth), which
 * `.ci/run` and `deno task etcd:dev` start. A test that needs etcd and finds
 * none fails under `CI=true` and is skipped with a printed reason elsewhere.
 */

import { EtcdStore } from "../src/store/etcd/store.ts";
import type { EtcdOptions } from "../src/store/etcd/address.ts";
import { type EtcdCluster, startCluster, type StartClusterOptions } from "../scripts/etcd_cluster.ts";

const CI = Deno.env.get("CI") === "true";

/** The plain cluster's endpoints, or `undefined`. */
export function etcdEndpoints(): string[] | undefined {
  const e = Deno.env.get("OXIDE_ETCD_ENDPOINTS");
  return e ? e.split(",") : undefined;
}

/** A TLS member's endpoint and credentials (`auth`: OXIDE_ETCD_TLS_*, `mtls`: OXIDE_ETCD_MTLS_*), or `undefined`. */
export function etcdTlsEnv(kind: "auth" | "mtls"):
  | { endpoint: string; ca: string; cert: string; key: string; user: string | undefined; password: string | undefined }
  | undefined {
  const prefix = kind === "auth" ? "OXIDE_ETCD_TLS" : "OXIDE_ETCD_MTLS";
  const get = (n: string) => Deno.env.get(`${prefix}_${n}`);
  const endpoint = get("ENDPOINTS");
  const ca = get("CA"), cert = get("CERT"), key = get("KEY"), user = get("USER"), password = get("PASSWORD");
  if (!endpoint || !ca || !cert || !key) return undefined;
  if (kind === "auth" && (!user || !password)) return undefined;
  return { endpoint, ca, cert, key, user, password };
}

/** Whether the `etcd` binary is on PATH (for tests that start a cluster of their own). */
export function etcdBinary(): boolean {
  try {
    return new Deno.Command("etcd", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

const reported = new Set<string>();

/**
 * Registers a test that needs etcd. `need`: "cluster" (OXIDE_ETCD_ENDPOINTS),
 * "tls" (OXIDE_ETCD_TLS_*), or "binary" (starts its own members).
 */
export function etcdTest(
  name: string,
  need: "cluster" | "tls" | "mtls" | "binary",
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  const present = need === "cluster"
    ? etcdEndpoints() !== undefined
    : need === "tls"
    ? etcdTlsEnv("auth") !== undefined
    : need === "mtls"
    ? etcdTlsEnv("mtls") !== undefined
    : etcdBinary();
  if (present) {
    Deno.test(name, fn);
    return;
  }
  const reason = need === "cluster"
    ? "OXIDE_ETCD_ENDPOINTS is not set (start a cluster: deno task etcd:dev)"
    : need === "tls"
    ? "OXIDE_ETCD_TLS_ENDPOINTS/CA/CERT/KEY/USER/PASSWORD are not set (.ci/run starts a TLS member)"
    : need === "mtls"
    ? "OXIDE_ETCD_MTLS_ENDPOINTS/CA/CERT/KEY are not set (.ci/run starts a client-certificate member)"
    : "the etcd binary is not on PATH (apt-get install etcd-server)";
  if (CI) {
    Deno.test(name, () => {
      throw new Error(`this test needs etcd and CI=true: ${reason}`);
    });
    return;
  }
  if (!reported.has(reason)) {
    reported.add(reason);
    console.log(`skipping etcd tests: ${reason}`);
  }
  Deno.test({ name, ignore: true, fn });
}

/** A fresh namespace, so tests sharing the cluster never see each other's keys. */
export function freshNamespace(): string {
  return `t-${crypto.randomUUID()}`;
}

/** Opens a store on the shared cluster in a fresh namespace. */
export function openEtcdStore(options: EtcdOptions = {}): Promise<EtcdStore> {
  const endpoints = etcdEndpoints();
  if (!endpoints) throw new Error("OXIDE_ETCD_ENDPOINTS is not set");
  return EtcdStore.open(`etcd://${endpoints.map((e) => new URL(e).host).join(",")}/${freshNamespace()}`, options);
}

/** Starts a cluster of the test's own (for tests that kill members or compact the whole cluster). */
export function ownCluster(options: StartClusterOptions = {}): Promise<EtcdCluster> {
  return startCluster(options);
}

/** The etcd address of a cluster's endpoints. */
export function addressOf(endpoints: readonly string[], namespace = freshNamespace()): string {
  return `etcd://${endpoints.map((e) => new URL(e).host).join(",")}/${namespace}`;
}
