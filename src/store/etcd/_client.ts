/**
 * A small etcd v3 client over etcd's own JSON gateway (`/v3/kv/*`,
 * `/v3/watch`, `/v3/auth/authenticate`) and `fetch`: failover across
 * endpoints, per-attempt and per-call deadlines, auth token refresh. It knows
 * nothing of the registry; the store above it settles writes whose outcome is
 * unknown.
 *
 * @module
 */

import { RegistryError } from "../../errors.ts";
import type { ResolvedEtcdConfig } from "./address.ts";

/** A key-value as the gateway sends it (int64 as decimal strings, bytes as base64). */
export interface RawKv {
  readonly key: string;
  readonly value?: string;
  readonly create_revision?: string;
  readonly mod_revision?: string;
  readonly version?: string;
}

/** The header every gateway answer carries. */
export interface RawHeader {
  readonly revision?: string;
  readonly member_id?: string;
}

/** Why a call failed, as far as the client can tell. */
export type EtcdFailureKind =
  /** Not sent, or refused before it could change anything: safe to retry. */
  | "unavailable"
  /** Sent; whether a write applied is unknown. */
  | "unknown"
  /** The revision asked for has been compacted. */
  | "compacted"
  /** etcd answered with a definite error (permission denied, request too large, ...). */
  | "rejected";

/** A failed call, with what the store needs to decide what to do. */
export class EtcdCallError extends RegistryError {
  /** See {@linkcode EtcdFailureKind}. */
  readonly failure: EtcdFailureKind;
  /** etcd's gRPC code, when etcd answered. */
  readonly grpcCode: number | undefined;

  constructor(failure: EtcdFailureKind, detail: string, grpcCode?: number, options?: ErrorOptions) {
    super(detail, options ?? {});
    this.failure = failure;
    this.grpcCode = grpcCode;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Base64 of a string's UTF-8 bytes. */
export function b64(text: string): string {
  return bytesToB64(encoder.encode(text));
}

/** Base64 of bytes. */
export function bytesToB64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/** The text of base64'd UTF-8 bytes. */
export function unb64(data: string | undefined): string {
  if (data === undefined || data === "") return "";
  return decoder.decode(Uint8Array.fromBase64(data));
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const bytes = encoder.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]! += 1;
      return bytesToB64(end);
    }
  }
  return btoa("\0");
}

// Errors after which nothing was applied: another member may serve the call.
const NOT_APPLIED = [
  "etcdserver: no leader",
  "etcdserver: too many requests",
  "etcdserver: not capable",
  "etcdserver: server stopped",
];
// Errors after which a write may or may not have been applied.
const MAYBE_APPLIED = [
  "etcdserver: leader changed",
  "etcdserver: request timed out",
  "etcdserver: request timed out, possibly due to previous leader failure",
  "etcdserver: request timed out, possibly due to connection lost",
  "etcdserver: request timed out, waiting for the applied index took too long",
  "etcdserver: timeout",
  "context deadline exceeded",
  "context canceled",
];
const AUTH_EXPIRED = ["etcdserver: invalid auth token", "etcdserver: user name is empty"];

/** Whether `err` (from fetch) means the connection was never made, so nothing was sent. */
function neverSent(err: unknown): boolean {
  const text = String(err instanceof Error ? `${err.message} ${String(err.cause ?? "")}` : err);
  return /Connection refused|ECONNREFUSED|os error 111|dns error|failed to lookup/i.test(text);
}

/** A missing --allow-net is not a network failure: no retry will help. */
function checkPermission(err: unknown, url: string): void {
  if (err instanceof Deno.errors.NotCapable || (err as Error)?.cause instanceof Deno.errors.NotCapable) {
    const host = new URL(url).host;
    throw new EtcdCallError(
      "rejected",
      `etcd at ${host} needs --allow-net=${host} (one host:port per member): ${(err as Error).message}`,
      undefined,
      { cause: err },
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Options of one call. */
export interface CallOptions {
  /** Whether the call can change state (then an ambiguous failure is `unknown`, not retried). */
  readonly write: boolean;
  /** Overall deadline (epoch ms); default: now plus the call timeout. */
  readonly deadline?: number | undefined;
}

/** The gateway client. */
export class EtcdClient {
  readonly #config: ResolvedEtcdConfig;
  readonly #http: Deno.HttpClient | undefined;
  #current = 0;
  #seen = 0;
  #token: string | undefined;
  #authenticating: Promise<void> | undefined;
  #closed = false;
  readonly #inflight = new Set<AbortController>();

  constructor(config: ResolvedEtcdConfig) {
    this.#config = config;
    const tls = config.tls;
    if (tls && (tls.caCert !== undefined || tls.cert !== undefined)) {
      const base: Deno.CreateHttpClientOptions = tls.caCert !== undefined ? { caCerts: [tls.caCert] } : {};
      this.#http = tls.cert !== undefined && tls.key !== undefined
        ? Deno.createHttpClient({ ...base, cert: tls.cert, key: tls.key })
        : Deno.createHttpClient(base);
    }
  }

  /** The newest cluster revision an answer carried: every change at or below it committed before that answer. */
  get revisionSeen(): number {
    return this.#seen;
  }

  /** The endpoint calls currently go to. */
  get endpoint(): string {
    return this.#config.endpoints[this.#current]!;
  }

  /** The call deadline for a call starting now. */
  deadline(): number {
    return Date.now() + this.#config.callTimeoutMs;
  }

  /** Moves to the next endpoint (after a failure on the current one). */
  rotate(from: number): void {
    if (this.#current === from) this.#current = (from + 1) % this.#config.endpoints.length;
  }

  /**
   * POSTs `body` to `path` on a member, failing over to the others until the
   * deadline. Reads retry on any transient failure; writes retry only when
   * nothing was sent, and otherwise fail with `unknown`.
   */
  async call<T>(path: string, body: unknown, options: CallOptions): Promise<T> {
    const deadline = options.deadline ?? this.deadline();
    const text = typeof body === "string" ? body : JSON.stringify(body);
    let lastError: EtcdCallError | undefined;
    let authRetried = false;
    for (let attempt = 0;; attempt++) {
      if (this.#closed) throw new RegistryError(`etcd client for ${this.#config.endpoints.join(",")} is closed`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw lastError ?? new EtcdCallError("unavailable", `etcd call ${path} timed out`);
      }
      if (attempt > 0 && attempt % this.#config.endpoints.length === 0) {
        await sleep(Math.min(50 * 2 ** Math.min(attempt / this.#config.endpoints.length, 4), remaining));
      }
      if (this.#config.user !== undefined && this.#token === undefined) {
        try {
          await this.#authenticate(deadline);
        } catch (err) {
          if (err instanceof EtcdCallError && (err.failure === "unavailable" || err.failure === "unknown")) {
            lastError = err;
            continue;
          }
          throw err;
        }
      }
      const index = this.#current;
      const url = this.#config.endpoints[index]! + path;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), Math.min(this.#config.attemptTimeoutMs, remaining));
      this.#inflight.add(controller);
      let status: number;
      let answer: string;
      try {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (this.#token !== undefined) headers["authorization"] = this.#token;
        const init: RequestInit & { client?: Deno.HttpClient } = {
          method: "POST",
          body: text,
          headers,
          signal: controller.signal,
        };
        if (this.#http) init.client = this.#http;
        const response = await fetch(url, init);
        status = response.status;
        answer = await response.text();
      } catch (err) {
        checkPermission(err, url);
        this.rotate(index);
        if (this.#closed) throw new RegistryError(`etcd client is closed`, { cause: err });
        const sent = !neverSent(err);
        const what = controller.signal.aborted ? "timed out" : "failed";
        lastError = new EtcdCallError(
          options.write && sent ? "unknown" : "unavailable",
          `etcd call ${path} to ${url} ${what}: ${err instanceof Error ? err.message : String(err)}`,
          undefined,
          { cause: err },
        );
        if (options.write && sent) throw lastError;
        continue;
      } finally {
        clearTimeout(timer);
        this.#inflight.delete(controller);
      }
      if (status === 200) {
        const result = JSON.parse(answer) as T & { header?: RawHeader };
        const revision = Number(result.header?.revision ?? 0);
        if (revision > this.#seen) this.#seen = revision;
        return result;
      }
      let parsed: { error?: string; message?: string; code?: number } = {};
      try {
        parsed = JSON.parse(answer);
      } catch {
        // Not etcd's JSON (a proxy's page?): keep the raw text.
      }
      const message = parsed.message ?? parsed.error ?? answer.slice(0, 200);
      const code = parsed.code;
      if (message.includes("required revision has been compacted")) {
        throw new EtcdCallError("compacted", `etcd: ${message}`, code);
      }
      if (AUTH_EXPIRED.some((m) => message.includes(m)) && this.#config.user !== undefined && !authRetried) {
        // The token expired (etcd's simple tokens live --auth-token-ttl seconds): checked before anything applies.
        authRetried = true;
        this.#token = undefined;
        continue;
      }
      if (NOT_APPLIED.some((m) => message.includes(m)) || status === 503 && !options.write) {
        this.rotate(index);
        lastError = new EtcdCallError("unavailable", `etcd call ${path} to ${url}: ${message}`, code);
        continue;
      }
      if (MAYBE_APPLIED.some((m) => message.includes(m)) || status >= 500 && code === undefined) {
        this.rotate(index);
        lastError = new EtcdCallError(
          options.write ? "unknown" : "unavailable",
          `etcd call ${path} to ${url}: ${message}`,
          code,
        );
        if (options.write) throw lastError;
        continue;
      }
      throw new EtcdCallError("rejected", `etcd refused ${path}: ${message}`, code);
    }
  }

  async #authenticate(deadline: number): Promise<void> {
    if (this.#authenticating) return await this.#authenticating;
    this.#authenticating = (async () => {
      const answer = await this.#callNoAuth<{ token?: string }>("/v3/auth/authenticate", {
        name: this.#config.user,
        password: this.#config.password,
      }, deadline);
      if (typeof answer.token !== "string") {
        throw new EtcdCallError("rejected", "etcd authentication returned no token (is auth enabled?)");
      }
      this.#token = answer.token;
    })();
    try {
      await this.#authenticating;
    } finally {
      this.#authenticating = undefined;
    }
  }

  async #callNoAuth<T>(path: string, body: unknown, deadline: number): Promise<T> {
    const saved = this.#config.user;
    // authenticate is a read for failover purposes; it never needs a token.
    const index = this.#current;
    const url = this.#config.endpoints[index]! + path;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(),
      Math.max(1, Math.min(this.#config.attemptTimeoutMs, deadline - Date.now())),
    );
    this.#inflight.add(controller);
    try {
      const init: RequestInit & { client?: Deno.HttpClient } = {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
        signal: controller.signal,
      };
      if (this.#http) init.client = this.#http;
      const response = await fetch(url, init);
      const answer = await response.text();
      if (response.status === 200) return JSON.parse(answer) as T;
      let message = answer;
      try {
        message = JSON.parse(answer).message ?? answer;
      } catch {
        // raw text
      }
      if (NOT_APPLIED.some((m) => message.includes(m)) || MAYBE_APPLIED.some((m) => message.includes(m))) {
        this.rotate(index);
        throw new EtcdCallError("unavailable", `etcd authentication at ${url}: ${message}`);
      }
      throw new EtcdCallError("rejected", `etcd authentication failed for user "${saved}": ${message}`);
    } catch (err) {
      if (err instanceof EtcdCallError) throw err;
      checkPermission(err, url);
      this.rotate(index);
      throw new EtcdCallError("unavailable", `etcd authentication at ${url} failed: ${String(err)}`, undefined, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
      this.#inflight.delete(controller);
    }
  }

  /**
   * Opens one watch stream on the current endpoint and yields each `result`
   * object. Ends (throws) when the stream breaks; the caller resumes.
   */
  async *watchStream(
    create: Record<string, unknown>,
    signal: AbortSignal,
  ): AsyncGenerator<Record<string, unknown>, void, undefined> {
    if (this.#config.user !== undefined && this.#token === undefined) await this.#authenticate(this.deadline());
    const index = this.#current;
    const url = this.#config.endpoints[index]! + "/v3/watch";
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.#inflight.add(controller);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      // A member cut off from the leader cancels the watch instead of going quiet (etcd's WithRequireLeader).
      "grpc-metadata-hasleader": "true",
    };
    if (this.#token !== undefined) headers["authorization"] = this.#token;
    const init: RequestInit & { client?: Deno.HttpClient } = {
      method: "POST",
      body: JSON.stringify({ create_request: create }),
      headers,
      signal: controller.signal,
    };
    if (this.#http) init.client = this.#http;
    let reader: ReadableStreamDefaultReader<string> | undefined;
    try {
      let response: Response;
      try {
        response = await fetch(url, init);
      } catch (err) {
        checkPermission(err, url);
        this.rotate(index);
        throw new EtcdCallError("unavailable", `etcd watch at ${url} failed: ${String(err)}`, undefined, {
          cause: err,
        });
      }
      if (response.status !== 200 || !response.body) {
        const text = await response.text();
        this.rotate(index);
        throw new EtcdCallError("unavailable", `etcd watch at ${url}: HTTP ${response.status} ${text.slice(0, 200)}`);
      }
      reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      while (true) {
        let chunk: ReadableStreamReadResult<string>;
        try {
          chunk = await reader.read();
        } catch (err) {
          this.rotate(index);
          throw new EtcdCallError("unavailable", `etcd watch at ${url} broke: ${String(err)}`, undefined, {
            cause: err,
          });
        }
        if (chunk.done) {
          this.rotate(index);
          throw new EtcdCallError("unavailable", `etcd watch at ${url} ended`);
        }
        buffer += chunk.value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) !== -1) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line === "") continue;
          const message = JSON.parse(line) as { result?: Record<string, unknown>; error?: Record<string, unknown> };
          if (message.error) {
            const text = String(message.error["message"] ?? JSON.stringify(message.error));
            if (AUTH_EXPIRED.some((m) => text.includes(m))) this.#token = undefined;
            this.rotate(index);
            throw new EtcdCallError("unavailable", `etcd watch at ${url}: ${text}`);
          }
          if (message.result) yield message.result;
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      controller.abort();
      this.#inflight.delete(controller);
      if (reader) await reader.cancel().catch(() => {});
    }
  }

  /** Ends in-flight calls and watches; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of this.#inflight) c.abort();
    this.#inflight.clear();
    this.#http?.close();
  }
}
