/**
 * Fleet-mode addresses: `etcd://host:port,host:port/namespace` and the options
 * that go with them.
 *
 * @module
 */

/**
 * TLS material for an etcd cluster that serves `https`. PEM text, not paths:
 * the caller reads the files (so the store needs no `--allow-read`).
 *
 * @example
 * ```ts
 * import type { EtcdTlsOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const tls: EtcdTlsOptions = { caCert: "-----BEGIN CERTIFICATE-----\n..." };
 * assert.ok(tls.caCert?.startsWith("-----BEGIN"));
 * ```
 */
export interface EtcdTlsOptions {
  /** The CA certificate that signed the members' certificates (PEM). */
  readonly caCert?: string | undefined;
  /** A client certificate (PEM), for clusters started with `--client-cert-auth`. Needs `key`. */
  readonly cert?: string | undefined;
  /** The client certificate's private key (PEM). */
  readonly key?: string | undefined;
}

/**
 * How to reach and use an etcd cluster. Every field is optional when an
 * address names the endpoints.
 *
 * @example
 * ```ts
 * import type { EtcdOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: EtcdOptions = { namespace: "staging", callTimeoutMs: 5_000 };
 * assert.equal(options.namespace, "staging");
 * ```
 */
export interface EtcdOptions {
  /** Client URLs of the members (`http://127.0.0.1:2379`); overrides the address's hosts. */
  readonly endpoints?: readonly string[] | undefined;
  /** Key prefix of this registry inside the cluster, so several registries can share one. Default `default`. */
  readonly namespace?: string | undefined;
  /** TLS material; with it, endpoints given as `host:port` use `https`. */
  readonly tls?: EtcdTlsOptions | undefined;
  /** etcd user (the cluster has `auth enable`d). Needs `password`. */
  readonly user?: string | undefined;
  /** The etcd user's password. */
  readonly password?: string | undefined;
  /** Deadline of one call, retries and failover included. Default 15,000 ms. */
  readonly callTimeoutMs?: number | undefined;
  /** Deadline of one attempt on one member before trying the next. Default 5,000 ms. */
  readonly attemptTimeoutMs?: number | undefined;
  /**
   * Automatic compaction: every `every` writes of this handle, compact (etcd's
   * MVCC, this registry's history and write receipts) below the current
   * revision minus `retainRevisions`. `false` turns it off. Default
   * `{ retainRevisions: 10_000, every: 1_000 }`.
   */
  readonly autoCompact?: { readonly retainRevisions: number; readonly every: number } | false | undefined;
  /** The cluster's `--max-txn-ops` (default 128, etcd's default). */
  readonly maxTxnOps?: number | undefined;
  /** The cluster's `--max-request-bytes` (default 1,572,864, etcd's default). */
  readonly maxRequestBytes?: number | undefined;
}

/**
 * An address and its options resolved: every default filled in, endpoints as
 * URL origins. What {@linkcode parseEtcdAddress} returns.
 *
 * @example
 * ```ts
 * import { parseEtcdAddress, type ResolvedEtcdConfig } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const config: ResolvedEtcdConfig = parseEtcdAddress("etcd://127.0.0.1:2379");
 * assert.equal(config.namespace, "default");
 * assert.equal(config.maxTxnOps, 128);
 * ```
 */
export interface ResolvedEtcdConfig {
  /** Members' client URLs (origins), in the order calls try them. */
  readonly endpoints: readonly string[];
  /** Key prefix of the registry inside the cluster. */
  readonly namespace: string;
  /** TLS material, when the cluster serves https. */
  readonly tls: EtcdTlsOptions | undefined;
  /** etcd user, when the cluster has auth enabled. */
  readonly user: string | undefined;
  /** The user's password. */
  readonly password: string | undefined;
  /** Deadline of one call, retries and failover included (ms). */
  readonly callTimeoutMs: number;
  /** Deadline of one attempt on one member (ms). */
  readonly attemptTimeoutMs: number;
  /** Automatic compaction, or `false`. */
  readonly autoCompact: { readonly retainRevisions: number; readonly every: number } | false;
  /** The cluster's `--max-txn-ops`. */
  readonly maxTxnOps: number;
  /** The cluster's `--max-request-bytes`. */
  readonly maxRequestBytes: number;
}

const ETCD_SCHEME = "etcd://";

/**
 * Whether `location` is a fleet-mode address (`etcd://...`).
 *
 * @param location A path or an address.
 * @returns `true` for `etcd://` addresses.
 * @example
 * ```ts
 * import { isEtcdAddress } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isEtcdAddress("etcd://127.0.0.1:2379/ns"), true);
 * assert.equal(isEtcdAddress("./data/registry.db"), false);
 * ```
 */
export function isEtcdAddress(location: string): boolean {
  return location.startsWith(ETCD_SCHEME);
}

const NAMESPACE_RE = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Parses `etcd://host:port[,host:port...][/namespace]` and merges the options.
 *
 * @param address The address; `etcd://` with no hosts needs `options.endpoints`.
 * @param options Options; they override what the address says.
 * @returns The resolved configuration.
 * @throws {TypeError} When the address or an option is malformed.
 * @example
 * ```ts
 * import { parseEtcdAddress } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const config = parseEtcdAddress("etcd://127.0.0.1:2379,127.0.0.1:2381/fleet");
 * assert.deepEqual(config.endpoints, ["http://127.0.0.1:2379", "http://127.0.0.1:2381"]);
 * assert.equal(config.namespace, "fleet");
 * ```
 */
export function parseEtcdAddress(address: string, options: EtcdOptions = {}): ResolvedEtcdConfig {
  if (typeof address !== "string" || !isEtcdAddress(address)) {
    throw new TypeError(`Not an etcd address: "${address}": expected etcd://host:port[,host:port]/namespace`);
  }
  if (options === null || typeof options !== "object") throw new TypeError("etcd options must be an object");
  const rest = address.slice(ETCD_SCHEME.length);
  const slash = rest.indexOf("/");
  const hostPart = slash === -1 ? rest : rest.slice(0, slash);
  const nsPart = slash === -1 ? "" : decodeURIComponent(rest.slice(slash + 1));
  const scheme = options.tls ? "https" : "http";
  const fromAddress = hostPart === "" ? [] : hostPart.split(",").map((h) => {
    if (!/^[A-Za-z0-9.-]+:\d{1,5}$/.test(h) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(h)) {
      throw new TypeError(`Malformed etcd endpoint "${h}" in "${address}": expected host:port`);
    }
    return `${scheme}://${h}`;
  });
  const endpoints = (options.endpoints ?? fromAddress).map((e) => {
    const url = /^[a-z]+:\/\//.test(e) ? e : `${scheme}://${e}`;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(`Malformed etcd endpoint "${e}": expected http(s)://host:port`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`Malformed etcd endpoint "${e}": expected http(s)://host:port`);
    }
    return parsed.origin;
  });
  if (endpoints.length === 0) throw new TypeError(`No etcd endpoints in "${address}" and none in options.endpoints`);
  const namespace = options.namespace ?? (nsPart === "" ? "default" : nsPart);
  if (!NAMESPACE_RE.test(namespace)) {
    throw new TypeError(`Malformed etcd namespace "${namespace}": 1 to 128 of A-Z a-z 0-9 . _ -`);
  }
  if ((options.user === undefined) !== (options.password === undefined)) {
    throw new TypeError("etcd user and password go together");
  }
  if (options.tls && (options.tls.cert === undefined) !== (options.tls.key === undefined)) {
    throw new TypeError("etcd tls.cert and tls.key go together");
  }
  const positive = (name: string, v: number | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new RangeError(`etcd option ${name} must be a positive number, got ${v}`);
    }
    return v;
  };
  const ac = options.autoCompact;
  const autoCompact = ac === false ? false : {
    retainRevisions: positive("autoCompact.retainRevisions", ac?.retainRevisions, 10_000),
    every: positive("autoCompact.every", ac?.every, 1_000),
  };
  return {
    endpoints,
    namespace,
    tls: options.tls,
    user: options.user,
    password: options.password,
    callTimeoutMs: positive("callTimeoutMs", options.callTimeoutMs, 15_000),
    attemptTimeoutMs: positive("attemptTimeoutMs", options.attemptTimeoutMs, 5_000),
    autoCompact,
    maxTxnOps: positive("maxTxnOps", options.maxTxnOps, 128),
    maxRequestBytes: positive("maxRequestBytes", options.maxRequestBytes, 1_572_864),
  };
}
