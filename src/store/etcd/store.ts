/**
 * The etcd backend of the store interface (fleet mode): one registry as keys
 * under a namespace prefix of an etcd v3 cluster, reached through etcd's JSON
 * gateway with `fetch` (so `--allow-net` is the only permission).
 *
 * Key layout under `/oxide/registry/<namespace>/`:
 *
 * - `k/<c|m|s>/<key>`: the live entries of the config, modules and meta
 *   spaces. Their etcd `version`, `create_revision` and `mod_revision` are the
 *   entry's.
 * - `h/<c|m|s>/<key length>/<key>/<txn id>.<n>`: one history record per
 *   write, written in the write's own transaction (so history outlives etcd's
 *   compaction of old revisions); its `create_revision` is the write's.
 * - `x/<txn id>`: the receipt of a write transaction, written in it. After a
 *   failure whose outcome is unknown the store reads the receipt (or fences
 *   it) instead of guessing, so nothing is applied twice.
 *
 * @module
 */

import { CompactedError, RegistryError } from "../../errors.ts";
import type {
  ChangeEvent,
  Compare,
  Entry,
  ModuleFields,
  Operation,
  RangeRequest,
  RangeResult,
  Space,
  SpaceValue,
  Store,
  StoreLimits,
  TxnRequest,
  TxnResult,
  WatchRequest,
} from "../store.ts";
import { type EtcdOptions, parseEtcdAddress, type ResolvedEtcdConfig } from "./address.ts";
import { b64, EtcdCallError, EtcdClient, prefixEnd, type RawHeader, type RawKv, unb64 } from "./_client.ts";

const SPACE_CODE: Record<Space, string> = { config: "c", modules: "m", meta: "s" };
const CODE_SPACE: Record<string, Space> = { c: "config", m: "modules", s: "meta" };
const SPACES: readonly Space[] = ["config", "modules", "meta"];
const encoder = new TextEncoder();

interface RangeAnswer {
  readonly header?: RawHeader;
  readonly kvs?: readonly RawKv[];
  readonly more?: boolean;
  readonly count?: string;
}
interface TxnAnswer {
  readonly header?: RawHeader;
  readonly succeeded?: boolean;
  readonly responses?: readonly {
    readonly response_range?: RangeAnswer;
    readonly response_txn?: TxnAnswer;
    readonly response_delete_range?: { readonly deleted?: string };
  }[];
}

/** A write planned for one branch: etcd request ops and what the caller gets back. */
interface Plan {
  readonly ops: Record<string, unknown>[];
  readonly changed: boolean[];
  readonly bytes: number;
}

function num(text: string | undefined): number {
  return text === undefined ? 0 : Number(text);
}

function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/** The stored text of a live value (JSON with `updated_at`). */
function encodeValue(space: Space, value: string | ModuleFields, updatedAt: string): string {
  if (space === "modules") {
    const f = value as ModuleFields;
    return JSON.stringify({
      name: f.name,
      version: f.version,
      kind: f.kind,
      state: f.state,
      description: f.description,
      updated_at: updatedAt,
    });
  }
  return JSON.stringify({ value, updated_at: updatedAt });
}

function decodeValue<S extends Space>(space: S, text: string): { value: SpaceValue[S]; updatedAt: string } {
  const o = JSON.parse(text) as Record<string, unknown>;
  const updatedAt = space === "meta" ? "" : String(o["updated_at"] ?? "");
  if (space === "modules") {
    const fields: ModuleFields = {
      name: String(o["name"]),
      version: String(o["version"]),
      kind: String(o["kind"]),
      state: String(o["state"]),
      description: o["description"] === null || o["description"] === undefined ? null : String(o["description"]),
    };
    return { value: fields as SpaceValue[S], updatedAt };
  }
  return { value: String(o["value"]) as SpaceValue[S], updatedAt };
}

function compareBytes(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A rewrite of a past value (a history record), as opposed to the live one. */
function isPastRewrite(op: Operation): op is Extract<Operation, { op: "rewrite" }> & { readonly revision: number } {
  return op.op === "rewrite" && op.revision !== undefined;
}

/** Tells past rewrites apart: one record per key and revision. */
function pastId(op: Extract<Operation, { op: "rewrite" }>): string {
  return `${op.space}\0${op.key}\0${op.revision}`;
}

/**
 * A {@linkcode Store} on an etcd v3 cluster.
 *
 * @example
 * ```ts ignore
 * import { EtcdStore } from "./store.ts";
 * await using store = await EtcdStore.open("etcd://127.0.0.1:2379/demo");
 * ```
 */
export class EtcdStore implements Store, AsyncDisposable {
  readonly backend = "etcd" as const;
  readonly location: string;
  readonly limits: StoreLimits;
  readonly #config: ResolvedEtcdConfig;
  readonly #client: EtcdClient;
  readonly #root: string;
  readonly #watches = new Set<AbortController>();
  #writes = 0;
  readonly #settled = { applied: 0, fenced: 0 };
  #closed = false;

  private constructor(config: ResolvedEtcdConfig, location: string) {
    this.#config = config;
    this.#client = new EtcdClient(config);
    this.#root = `/oxide/registry/${config.namespace}/`;
    this.location = location;
    // Each write is two etcd operations (the key and its history record), plus one receipt per transaction.
    const writes = Math.floor((config.maxTxnOps - 1) / 2);
    // Written twice (the key and its history record, JSON-escaped): leave room for escapes and framing.
    const bytes = Math.floor((config.maxRequestBytes - 16_384) / 2.2);
    this.limits = { maxTxnOperations: writes, maxTxnBytes: bytes, maxValueBytes: bytes };
  }

  /**
   * Connects to a cluster and checks that it answers.
   *
   * @param address `etcd://host:port[,host:port]/namespace`.
   * @param options Endpoints, namespace, TLS, user/password, deadlines, compaction.
   * @returns The open store.
   * @throws {RegistryError} When no member answers within the call deadline.
   */
  static async open(address: string, options: EtcdOptions = {}): Promise<EtcdStore> {
    const config = parseEtcdAddress(address, options);
    const location = `etcd://${config.endpoints.map((e) => new URL(e).host).join(",")}/${config.namespace}`;
    const store = new EtcdStore(config, location);
    try {
      await store.revision();
    } catch (err) {
      store.close();
      throw new RegistryError(
        `cannot open the registry at ${location}: ${(err as Error).message.replace(/^registry error: /, "")}`,
        {
          cause: err,
        },
      );
    }
    return store;
  }

  #live(space: Space, key: string): string {
    return `${this.#root}k/${SPACE_CODE[space]}/${key}`;
  }

  #historyPrefix(space: Space, key: string): string {
    return `${this.#root}h/${SPACE_CODE[space]}/${byteLength(key)}/${key}/`;
  }

  #receipt(id: string): string {
    return `${this.#root}x/${id}`;
  }

  #check(): void {
    if (this.#closed) throw new RegistryError(`the registry at ${this.location} is closed`);
  }

  #toEntry<S extends Space>(space: S, kv: RawKv, prefixLength: number): Entry<S> {
    const key = unb64(kv.key).slice(prefixLength);
    const { value, updatedAt } = decodeValue(space, unb64(kv.value));
    return {
      space,
      key,
      value,
      updatedAt,
      version: num(kv.version),
      createRevision: num(kv.create_revision),
      modRevision: num(kv.mod_revision),
    };
  }

  #fail(err: unknown, what: string): never {
    if (err instanceof EtcdCallError && err.failure === "compacted") {
      throw new RegistryError(`${what}: the revision asked for has been compacted`, { cause: err });
    }
    if (err instanceof RegistryError) throw err;
    throw new RegistryError(`${what}: ${String(err)}`, { cause: err });
  }

  async get<S extends Space>(space: S, key: string): Promise<Entry<S> | undefined> {
    this.#check();
    const full = this.#live(space, key);
    let answer: RangeAnswer;
    try {
      answer = await this.#client.call<RangeAnswer>("/v3/kv/range", { key: b64(full) }, { write: false });
    } catch (err) {
      this.#fail(err, `etcd get of ${space} key "${key}"`);
    }
    const kv = answer.kvs?.[0];
    return kv ? this.#toEntry(space, kv, full.length - key.length) : undefined;
  }

  /** Writes whose outcome was unknown, settled so far: found applied (from the receipt), or fenced and run again. */
  get settled(): { readonly applied: number; readonly fenced: number } {
    return { ...this.#settled };
  }

  async getValue<S extends Space>(space: S, key: string): Promise<SpaceValue[S] | undefined> {
    return (await this.get(space, key))?.value;
  }

  async range<S extends Space>(request: RangeRequest & { readonly space: S }): Promise<RangeResult<S>> {
    this.#check();
    const { space } = request;
    if (request.key !== undefined && request.prefix !== undefined) {
      throw new TypeError("range() takes key or prefix, not both");
    }
    const spacePrefix = this.#live(space, "");
    let start: string;
    let end: string | undefined;
    if (request.key !== undefined) {
      start = b64(spacePrefix + request.key);
    } else {
      const p = spacePrefix + (request.prefix ?? "");
      start = b64(p);
      end = prefixEnd(p);
      if (request.after !== undefined) {
        const after = spacePrefix + request.after;
        if (after.startsWith(p)) {
          if (request.reverse) end = b64(after);
          else start = b64(after + "\0");
        } else if ((compareBytes(after, p) < 0) === (request.reverse === true)) {
          end = start; // the cursor is past every key of the prefix: nothing left
        }
      }
    }
    const body: Record<string, unknown> = { key: start };
    if (end !== undefined) body["range_end"] = end;
    if (request.limit) body["limit"] = request.limit;
    if (request.revision !== undefined) body["revision"] = request.revision;
    if (request.reverse) {
      body["sort_order"] = "DESCEND";
      body["sort_target"] = "KEY";
    }
    let answer: RangeAnswer;
    try {
      answer = end === start
        ? { header: { revision: String(await this.revision()) }, kvs: [] }
        : await this.#client.call<RangeAnswer>("/v3/kv/range", body, { write: false });
    } catch (err) {
      if (err instanceof EtcdCallError && err.failure === "compacted" && request.revision !== undefined) {
        throw new CompactedError(request.revision, await this.compactedRevision());
      }
      this.#fail(err, `etcd range of ${space}`);
    }
    const entries = (answer.kvs ?? []).map((kv) => this.#toEntry(space, kv, spacePrefix.length));
    return {
      entries,
      more: answer.more === true,
      revision: request.revision ?? num(answer.header?.revision),
    };
  }

  async revision(): Promise<number> {
    this.#check();
    try {
      const answer = await this.#client.call<RangeAnswer>("/v3/kv/range", {
        key: b64(this.#root),
        count_only: true,
      }, { write: false });
      return num(answer.header?.revision);
    } catch (err) {
      this.#fail(err, "etcd revision");
    }
  }

  // ---- writes --------------------------------------------------------------------------------------------------

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#check();
    const failure = request.failure ?? [];
    this.#checkKeys(request.success);
    this.#checkKeys(failure);
    for (const c of request.compares) {
      if (c.target === "value" && c.space === "modules") {
        throw new TypeError("value compares apply to the config and meta spaces; compare a module's version");
      }
    }
    // Deletes and state changes need the key's current entry, and value compares are decided on it (the stored
    // text carries updated_at, so etcd cannot compare the value itself): read those keys, and guard the write on
    // them not changing since.
    const readKeys = [
      ...new Set([
        ...[...request.success, ...failure].filter((op) => op.op !== "put" && !isPastRewrite(op)).map((op) =>
          this.#live(op.space, op.key)
        ),
        ...request.compares.filter((c) => c.target === "value").map((c) => this.#live(c.space, c.key)),
      ]),
    ];
    // A past value's rewrite reads the history record its write left (by the write's revision).
    const pastReads = [...request.success, ...failure].filter(isPastRewrite).map((op) => ({
      id: pastId(op),
      prefix: this.#historyPrefix(op.space, op.key),
      revision: op.revision,
    }));
    const deadline = this.#client.deadline();
    for (let round = 0;; round++) {
      const snapshot = new Map<string, RawKv | undefined>();
      const past = new Map<string, RawKv | undefined>();
      if (readKeys.length > 0 || pastReads.length > 0) {
        const answer = await this.#readTxn(readKeys, deadline, pastReads);
        readKeys.forEach((key, i) => snapshot.set(key, answer[i]));
        pastReads.forEach((read, i) => past.set(read.id, answer[readKeys.length + i]));
      }
      const id = randomId();
      const receiptKey = b64(this.#receipt(id));
      const sPlan = this.#plan(request.success, request.updatedAt, snapshot, id, past);
      const fPlan = this.#plan(failure, request.updatedAt, snapshot, id, past);
      const guards = [
        ...[...snapshot].map(([key, kv]) =>
          kv
            ? { target: "MOD", key: b64(key), result: "EQUAL", mod_revision: kv.mod_revision }
            : { target: "VERSION", key: b64(key), result: "EQUAL", version: "0" }
        ),
        ...[...past.values()].flatMap((kv) =>
          kv ? [{ target: "MOD", key: kv.key, result: "EQUAL", mod_revision: kv.mod_revision }] : []
        ),
      ];
      const receiptAbsent = { target: "VERSION", key: receiptKey, result: "EQUAL", version: "0" };
      const userCompares = request.compares.map((c) => this.#compare(c, snapshot, receiptKey));
      // On failure, the compared keys' entries as the compares saw them (TxnResult.current).
      const compareRanges = request.compares.map((c) => ({ request_range: { key: b64(this.#live(c.space, c.key)) } }));
      const receipt = (branch: string) => ({ request_put: { key: receiptKey, value: b64(branch) } });
      // A failed compare answer may be for a copy of this very request that reached etcd after the first one had
      // applied (a request can reach etcd twice when its connection breaks mid-call): read the receipt too.
      const receiptRange = { request_range: { key: receiptKey } };
      const nested = guards.length > 0 || failure.length > 0;
      // A failure branch that writes nothing needs no receipt: run again, it decides the same way.
      const fOps = fPlan.ops.length > 0 ? [...fPlan.ops, receipt("f")] : [];
      const body: Record<string, unknown> = nested
        ? {
          compare: [receiptAbsent, ...guards],
          success: [{
            request_txn: {
              compare: userCompares,
              success: [...sPlan.ops, receipt("s")],
              failure: [...compareRanges, ...fOps],
            },
          }],
          failure: [receiptRange],
        }
        : {
          compare: [receiptAbsent, ...userCompares],
          success: [...sPlan.ops, receipt("s")],
          failure: [receiptRange, ...compareRanges],
        };
      const text = JSON.stringify(body);
      // etcd's count (checkTxnRequest): a transaction's own operations are the most of its compares, success and
      // failure ops; a nested transaction gets what its parent leaves of --max-txn-ops.
      const ops = nested
        ? {
          outer: 1 + guards.length,
          inner: Math.max(userCompares.length, sPlan.ops.length + 1, compareRanges.length + fOps.length),
        }
        : { outer: Math.max(1 + userCompares.length, sPlan.ops.length + 1, 1 + compareRanges.length), inner: 0 };
      this.#checkLimits(text, request, ops.outer + ops.inner, guards.length);
      let answer: TxnAnswer;
      try {
        answer = await this.#client.call<TxnAnswer>("/v3/kv/txn", text, { write: true, deadline });
      } catch (err) {
        if (!(err instanceof EtcdCallError) || err.failure !== "unknown") this.#fail(err, "etcd transaction");
        const settled = await this.#settle(id, deadline, err);
        this.#settled[settled === undefined ? "fenced" : "applied"]++;
        if (settled === undefined) continue; // fenced: it never applied and never will; run it again
        await this.#afterWrite(settled.revision);
        if (settled.branch === "s") return { succeeded: true, revision: settled.revision, changed: sPlan.changed };
        return {
          succeeded: false,
          revision: settled.revision,
          changed: fPlan.changed,
          current: await this.#currentAt(request.compares, settled.revision),
        };
      }
      const revision = num(answer.header?.revision);
      const receiptKv = answer.succeeded === true ? undefined : answer.responses?.[0]?.response_range?.kvs?.[0];
      if (receiptKv) {
        // Applied by an earlier copy of this request: report that, never apply it again.
        const branch = unb64(receiptKv.value);
        const at = num(receiptKv.mod_revision);
        this.#settled.applied++;
        await this.#afterWrite(at);
        if (branch === "s") return { succeeded: true, revision: at, changed: sPlan.changed };
        return {
          succeeded: false,
          revision: at,
          changed: fPlan.changed,
          current: await this.#currentAt(request.compares, at),
        };
      }
      let outcome: TxnAnswer | undefined = answer;
      if (nested) {
        if (answer.succeeded !== true) {
          if (round > 50 || Date.now() > deadline) {
            throw new RegistryError("etcd transaction: the keys it reads kept changing; gave up, nothing was written");
          }
          continue; // a key read for the plan changed before the write: plan again
        }
        outcome = answer.responses?.[0]?.response_txn;
      }
      if (outcome?.succeeded === true) {
        await this.#afterWrite(revision);
        return { succeeded: true, revision, changed: sPlan.changed };
      }
      if (fOps.length > 0) await this.#afterWrite(revision);
      const skip = nested ? 0 : 1; // the flat failure branch reads the receipt first
      const current = request.compares.map((c, i) => {
        const kv = outcome?.responses?.[i + skip]?.response_range?.kvs?.[0];
        return kv ? this.#toEntry(c.space, kv, this.#live(c.space, "").length) : undefined;
      });
      return { succeeded: false, revision, changed: fPlan.changed, current };
    }
  }

  /** The compared keys' entries at a revision (or now, when it has been compacted). */
  async #currentAt(compares: readonly Compare[], revision: number): Promise<(Entry | undefined)[]> {
    return await Promise.all(compares.map(async (c) => {
      const r = await this.range({ space: c.space, key: c.key, revision }).catch(() =>
        this.range({ space: c.space, key: c.key })
      );
      return r.entries[0];
    }));
  }

  #checkKeys(ops: readonly Operation[]): void {
    const seen = new Set<string>();
    for (const op of ops) {
      if (!SPACES.includes(op.space)) throw new TypeError(`Unknown space "${op.space}"`);
      const k = isPastRewrite(op) ? pastId(op) : `${op.space}\0${op.key}`;
      if (seen.has(k)) {
        throw new RegistryError(`an etcd transaction cannot write ${op.space} key "${op.key}" twice`);
      }
      seen.add(k);
    }
  }

  /**
   * Refuses, before anything is sent, a transaction etcd would refuse: `ops` is what etcd counts against
   * `--max-txn-ops` (the outer transaction's operations plus what the nested one takes of the rest), `guards` the
   * compares that keep the keys a delete, state change or value compare read from changing since.
   */
  #checkLimits(text: string, request: TxnRequest, ops: number, guards: number): void {
    const max = this.#config.maxTxnOps;
    if (ops > max) {
      const writes = Math.max(request.success.length, request.failure?.length ?? 0);
      throw new RegistryError(
        `transaction too large for etcd: ${writes} writes and ${request.compares.length} compares, ` +
          `at most ${this.limits.maxTxnOperations} writes (etcd --max-txn-ops ${max}; each write also ` +
          `writes a history record` +
          (guards > 0
            ? `, and each delete, state change or value compare also guards the key it read (${guards})`
            : "") +
          `); nothing was written`,
      );
    }
    let userBytes = 0;
    for (const op of [...request.success, ...(request.failure ?? [])]) {
      const value = op.op === "put" ? (op.space === "modules" ? JSON.stringify(op.value) : op.value) : "";
      const size = byteLength(op.key) + byteLength(value);
      if (byteLength(value) > this.limits.maxValueBytes) {
        throw new RegistryError(
          `value of ${op.space} key "${op.key}" too large for etcd: ${byteLength(value)} bytes, at most ` +
            `${this.limits.maxValueBytes}; nothing was written`,
        );
      }
      userBytes += size;
    }
    if (userBytes > this.limits.maxTxnBytes) {
      throw new RegistryError(
        `transaction too large for etcd: ${userBytes} bytes of keys and values, at most ${this.limits.maxTxnBytes} ` +
          `(etcd --max-request-bytes ${this.#config.maxRequestBytes}; values are written twice, live and history); ` +
          `nothing was written`,
      );
    }
    // base64 in JSON is 4/3 of the bytes etcd counts; estimate what etcd receives.
    const bytes = Math.ceil(text.length * 3 / 4);
    if (bytes > this.#config.maxRequestBytes - 1024) {
      throw new RegistryError(
        `transaction too large for etcd: about ${bytes} bytes, at most ${this.#config.maxRequestBytes - 4096} ` +
          `(etcd --max-request-bytes ${this.#config.maxRequestBytes}; values are written twice, live and history); ` +
          `nothing was written`,
      );
    }
  }

  #compare(c: Compare, snapshot: Map<string, RawKv | undefined>, receiptKey: string): Record<string, unknown> {
    const key = b64(this.#live(c.space, c.key));
    const result = c.result === "notEqual"
      ? "NOT_EQUAL"
      : c.result === "greater"
      ? "GREATER"
      : c.result === "less"
      ? "LESS"
      : "EQUAL";
    switch (c.target) {
      case "version":
        return { target: "VERSION", key, result, version: String(c.equals) };
      case "modRevision":
        return { target: "MOD", key, result, mod_revision: String(c.equals) };
      case "value": {
        // Decided on the snapshot (guarded by the key's mod_revision), sent as a compare that always holds or
        // never does: this transaction's receipt does not exist yet.
        const kv = snapshot.get(this.#live(c.space, c.key));
        const holds = kv === undefined
          ? c.result === "notEqual"
          : (decodeValue(c.space, unb64(kv.value)).value === c.equals) === (c.result !== "notEqual");
        return { target: "VERSION", key: receiptKey, result: holds ? "EQUAL" : "GREATER", version: "0" };
      }
    }
  }

  #plan(
    ops: readonly Operation[],
    updatedAt: string,
    snapshot: Map<string, RawKv | undefined>,
    id: string,
    past: Map<string, RawKv | undefined> = new Map(),
  ): Plan {
    const out: Record<string, unknown>[] = [];
    const changed: boolean[] = [];
    let bytes = 0;
    let n = 0;
    const record = (op: Operation, data: Record<string, unknown>) => {
      const key = `${this.#historyPrefix(op.space, op.key)}${id}.${n++}`;
      const value = JSON.stringify(data);
      bytes += key.length + value.length;
      out.push({ request_put: { key: b64(key), value: b64(value) } });
    };
    for (const op of ops) {
      const live = this.#live(op.space, op.key);
      if (op.op === "rewrite") {
        if (op.revision !== undefined) {
          // A past value: its history record, rewritten in place (it keeps its create revision, so its order).
          const kv = past.get(pastId(op));
          const data = kv === undefined ? undefined : JSON.parse(unb64(kv.value)) as { t?: string; x?: string };
          const was = data?.t === "p" && data.x !== undefined ? decodeValue("config", data.x) : undefined;
          if (kv === undefined || was === undefined || was.value !== op.from) {
            changed.push(false);
            continue;
          }
          const text = JSON.stringify({ t: "p", x: encodeValue("config", op.value, was.updatedAt) });
          bytes += kv.key.length + text.length;
          out.push({ request_put: { key: kv.key, value: b64(text) } });
          changed.push(true);
          continue;
        }
        // The live value: etcd cannot rewrite a key in place, so it is a new version with the same value (and its
        // history record), keeping the value's updated_at.
        const kv = snapshot.get(live);
        const was = kv === undefined ? undefined : decodeValue("config", unb64(kv.value));
        if (was === undefined || was.value !== op.from) {
          changed.push(false);
          continue;
        }
        const text = encodeValue("config", op.value, was.updatedAt);
        bytes += live.length + text.length;
        out.push({ request_put: { key: b64(live), value: b64(text) } });
        record(op, { t: "p", x: text });
        changed.push(true);
        continue;
      }
      if (op.op === "put") {
        const text = encodeValue(op.space, op.value, op.space === "meta" ? "" : updatedAt);
        bytes += live.length + text.length;
        out.push({ request_put: { key: b64(live), value: b64(text) } });
        record(op, { t: "p", x: text });
        changed.push(true);
      } else if (op.op === "setState") {
        const kv = snapshot.get(live);
        if (!kv) {
          changed.push(false); // a missing module is not created
          continue;
        }
        const current = decodeValue("modules", unb64(kv.value));
        const text = encodeValue("modules", { ...current.value, state: op.state }, updatedAt);
        bytes += live.length + text.length;
        out.push({ request_put: { key: b64(live), value: b64(text) } });
        record(op, { t: "p", x: text });
        changed.push(true);
      } else {
        const kv = snapshot.get(live);
        if (!kv) {
          changed.push(false);
          continue;
        }
        out.push({ request_delete_range: { key: b64(live) } });
        record(op, { t: "d", v: num(kv.version), c: num(kv.create_revision) });
        changed.push(true);
      }
    }
    return { ops: out, changed, bytes };
  }

  /** Reads several keys at one revision (a read-only etcd txn). */
  async #readTxn(
    keys: readonly string[],
    deadline: number,
    past: readonly { readonly prefix: string; readonly revision: number }[] = [],
  ): Promise<(RawKv | undefined)[]> {
    try {
      const answer = await this.#client.call<TxnAnswer>("/v3/kv/txn", {
        compare: [],
        success: [
          ...keys.map((k) => ({ request_range: { key: b64(k) } })),
          // The history record a write at `revision` left: created by that revision, under the key's prefix.
          ...past.map((p) => ({
            request_range: {
              key: b64(p.prefix),
              range_end: prefixEnd(p.prefix),
              min_create_revision: String(p.revision),
              max_create_revision: String(p.revision),
              limit: 1,
            },
          })),
        ],
      }, { write: false, deadline });
      return [...keys, ...past].map((_, i) => answer.responses?.[i]?.response_range?.kvs?.[0]);
    } catch (err) {
      this.#fail(err, "etcd read");
    }
  }

  /**
   * Settles a transaction whose outcome is unknown: its receipt says it
   * applied (and which branch); no receipt, then a fence (writing the receipt
   * ourselves) makes sure it never will. `undefined`: fenced, never applied.
   */
  async #settle(
    id: string,
    deadline: number,
    cause: unknown,
  ): Promise<{ branch: string; revision: number } | undefined> {
    const key = b64(this.#receipt(id));
    let last: unknown = cause;
    // Give the settling at least one attempt timeout even when the call's deadline has passed.
    const settleBy = Math.max(deadline, Date.now() + this.#config.attemptTimeoutMs * 2);
    while (Date.now() < settleBy) {
      try {
        const answer = await this.#client.call<TxnAnswer>("/v3/kv/txn", {
          compare: [{ target: "VERSION", key, result: "EQUAL", version: "0" }],
          success: [{ request_put: { key, value: b64("fenced") } }],
          failure: [{ request_range: { key } }],
        }, { write: true, deadline: settleBy });
        if (answer.succeeded) return undefined;
        const kv = answer.responses?.[0]?.response_range?.kvs?.[0];
        const branch = unb64(kv?.value);
        if (branch === "fenced") return undefined; // our own fence, from an attempt whose answer was lost
        return { branch, revision: num(kv?.mod_revision) };
      } catch (err) {
        last = err;
        if (err instanceof EtcdCallError && err.failure === "rejected") break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new RegistryError(
      `etcd write outcome unknown: the cluster did not answer in time, so whether the transaction applied ` +
        `cannot be known (its receipt ${this.#receipt(id)} tells later): ${String((last as Error)?.message ?? last)}`,
      { cause: last },
    );
  }

  async #afterWrite(revision: number): Promise<void> {
    const ac = this.#config.autoCompact;
    if (ac === false) return;
    this.#writes++;
    if (this.#writes % ac.every !== 0) return;
    const target = revision - ac.retainRevisions;
    if (target > 1) {
      try {
        await this.compact(target);
      } catch {
        // Compaction is housekeeping: a write that applied must not report a failure because of it.
      }
    }
  }

  // ---- history, watch, compaction -------------------------------------------------------------------------------

  async pastEntries(
    space: "config",
    options: { readonly cursor?: string | undefined; readonly limit?: number | undefined } = {},
  ): Promise<{ readonly entries: readonly Entry<"config">[]; readonly cursor: string | undefined }> {
    this.#check();
    const prefix = `${this.#root}h/${SPACE_CODE[space]}/`;
    const limit = options.limit ?? 500;
    let answer: RangeAnswer;
    try {
      answer = await this.#client.call<RangeAnswer>("/v3/kv/range", {
        key: b64(options.cursor === undefined ? prefix : `${options.cursor}\0`),
        range_end: prefixEnd(prefix),
        limit,
      }, { write: false });
    } catch (err) {
      this.#fail(err, `etcd history of ${space}`);
    }
    const kvs = answer.kvs ?? [];
    const entries: Entry<"config">[] = [];
    for (const kv of kvs) {
      const full = unb64(kv.key);
      const rest = full.slice(prefix.length);
      const slash = rest.indexOf("/");
      const bytes = encoder.encode(rest.slice(slash + 1));
      const key = new TextDecoder().decode(bytes.subarray(0, Number(rest.slice(0, slash))));
      const data = JSON.parse(unb64(kv.value)) as { t?: string; x?: string };
      if (data.t !== "p" || data.x === undefined) continue;
      const { value, updatedAt } = decodeValue("config", data.x);
      const revision = num(kv.create_revision);
      entries.push({ space, key, value, updatedAt, version: 0, createRevision: 0, modRevision: revision });
    }
    const last = kvs.at(-1);
    return { entries, cursor: answer.more === true && last !== undefined ? unb64(last.key) : undefined };
  }

  async history<S extends Space>(space: S, key: string, limit = 100): Promise<readonly Entry<S>[]> {
    this.#check();
    const live = this.#live(space, key);
    const prefix = this.#historyPrefix(space, key);
    const out: Entry<S>[] = [];
    let maxCreate: number | undefined;
    let version = 0;
    let createRevision = 0;
    let liveMod = Infinity;
    let first = true;
    while (out.length < limit) {
      const range: Record<string, unknown> = {
        key: b64(prefix),
        range_end: prefixEnd(prefix),
        sort_order: "DESCEND",
        sort_target: "CREATE",
        limit: limit + 8,
      };
      if (maxCreate !== undefined) range["max_create_revision"] = String(maxCreate);
      let answer: TxnAnswer;
      try {
        answer = await this.#client.call<TxnAnswer>("/v3/kv/txn", {
          compare: [],
          success: [{ request_range: { key: b64(live) } }, { request_range: range }],
        }, { write: false });
      } catch (err) {
        this.#fail(err, `etcd history of ${space} key "${key}"`);
      }
      if (first) {
        first = false;
        const kv = answer.responses?.[0]?.response_range?.kvs?.[0];
        if (kv) {
          // The live entry is always the newest, even when its record was compacted away.
          out.push(this.#toEntry(space, kv, live.length - key.length));
          version = num(kv.version) - 1;
          createRevision = num(kv.create_revision);
          liveMod = num(kv.mod_revision);
        }
      }
      const records = answer.responses?.[1]?.response_range;
      const kvs = records?.kvs ?? [];
      for (const kv of kvs) {
        const rev = num(kv.create_revision);
        maxCreate = rev - 1;
        if (rev >= liveMod) continue;
        const data = JSON.parse(unb64(kv.value)) as { t: string; x?: string; v?: number; c?: number };
        if (data.t === "d") {
          version = data.v ?? 0;
          createRevision = data.c ?? 0;
          continue;
        }
        if (version <= 0) continue; // before a trimmed delete record: version unknown
        const { value, updatedAt } = decodeValue(space, data.x ?? "{}");
        out.push({ space, key, value, updatedAt, version, createRevision, modRevision: rev });
        version--;
        if (out.length >= limit) break;
      }
      if (records?.more !== true || kvs.length === 0) break;
    }
    return out;
  }

  watch(request: WatchRequest): AsyncIterableIterator<ChangeEvent> {
    this.#check();
    const controller = new AbortController();
    this.#watches.add(controller);
    const onAbort = () => controller.abort();
    request.signal?.addEventListener("abort", onAbort, { once: true });
    const cleanup = () => {
      request.signal?.removeEventListener("abort", onAbort);
      this.#watches.delete(controller);
      controller.abort();
    };
    if (request.signal?.aborted) controller.abort();
    // "Changes after the call": etcd picks a watch's start when its stream opens, after writes this handle may make
    // before the first next(). Start after the newest revision this handle has seen instead (at least its open).
    const from = request.fromRevision ?? this.#client.revisionSeen + 1;
    const generator = this.#watch({ ...request, fromRevision: from }, controller.signal);
    const iterator: AsyncIterableIterator<ChangeEvent> = {
      next: async () => {
        try {
          const r = await generator.next();
          if (r.done) cleanup();
          return r;
        } catch (err) {
          cleanup();
          throw err;
        }
      },
      return: async (value?: unknown) => {
        cleanup();
        await generator.return(undefined);
        return { done: true, value };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  async *#watch(request: WatchRequest, signal: AbortSignal): AsyncGenerator<ChangeEvent, void, undefined> {
    const spaces = new Set(request.spaces);
    const keys = request.keys ? new Set(request.keys) : undefined;
    const livePrefix = `${this.#root}k/`;
    let start: string;
    let end: string;
    if (spaces.size === 1 && request.prefix !== undefined) {
      const only = [...spaces][0]!;
      start = this.#live(only, request.prefix);
      end = prefixEnd(start);
      start = b64(start);
    } else if (spaces.size === 1) {
      const p = this.#live([...spaces][0]!, "");
      start = b64(p);
      end = prefixEnd(p);
    } else {
      start = b64(livePrefix);
      end = prefixEnd(livePrefix);
    }
    let next = request.fromRevision;
    let failures = 0;
    while (!signal.aborted) {
      // No prev_kv: it costs etcd a read per event; a delete's last value is read on its own below.
      const create: Record<string, unknown> = { key: start, range_end: end };
      if (next !== undefined) create["start_revision"] = String(next);
      try {
        for await (const result of this.#client.watchStream(create, signal)) {
          failures = 0;
          const header = result["header"] as RawHeader | undefined;
          if (result["created"] === true && next === undefined) next = num(header?.revision) + 1;
          if (result["canceled"] === true) {
            const compact = num(result["compact_revision"] as string | undefined);
            // etcd's ErrCompacted, as the SQLite store reports it: the revision asked for and the oldest kept.
            if (compact > 0) throw new CompactedError(next ?? compact, compact);
            throw new EtcdCallError("unavailable", `etcd canceled the watch: ${String(result["cancel_reason"])}`);
          }
          const events = (result["events"] as readonly Record<string, unknown>[] | undefined) ?? [];
          for (const ev of events) {
            const kv = ev["kv"] as RawKv;
            const rev = num(kv.mod_revision);
            if (next !== undefined && rev < next) continue; // already delivered before a reconnect
            const full = unb64(kv.key);
            const code = full.slice(livePrefix.length, livePrefix.length + 1);
            const space = CODE_SPACE[code];
            const key = full.slice(livePrefix.length + 2);
            if (space === undefined || !spaces.has(space)) continue;
            if (keys && !keys.has(key)) continue;
            if (request.prefix !== undefined && !key.startsWith(request.prefix)) continue;
            const isDelete = ev["type"] === "DELETE";
            const prev = isDelete ? await this.#before(kv.key, rev) : undefined;
            const previous = prev ? this.#toEntry(space, prev, full.length - key.length) : undefined;
            const entry: Entry = isDelete
              ? {
                space,
                key,
                value: previous?.value ??
                  (space === "modules" ? { name: "", version: "", kind: "", state: "", description: null } : ""),
                updatedAt: previous?.updatedAt ?? "",
                version: 0,
                createRevision: previous?.createRevision ?? 0,
                modRevision: rev,
              }
              : this.#toEntry(space, kv, full.length - key.length);
            yield previous ? { type: isDelete ? "delete" : "put", entry, previous } : {
              type: isDelete ? "delete" : "put",
              entry,
            };
          }
          // etcd sends every event of a revision in one message: resume after the last one seen.
          const last = events.at(-1)?.["kv"] as RawKv | undefined;
          if (last) next = num(last.mod_revision) + 1;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof EtcdCallError && err.failure === "unavailable") {
          failures++;
          await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** Math.min(failures, 5), 1000)));
          continue; // resume from `next` on the next member
        }
        throw err;
      }
    }
  }

  /** A key's entry just before a revision (`undefined` when it did not exist or that revision is compacted). */
  async #before(key: string, revision: number): Promise<RawKv | undefined> {
    try {
      const answer = await this.#client.call<RangeAnswer>("/v3/kv/range", { key, revision: String(revision - 1) }, {
        write: false,
      });
      return answer.kvs?.[0];
    } catch {
      return undefined;
    }
  }

  async compact(revision: number): Promise<void> {
    this.#check();
    if (!Number.isInteger(revision) || revision < 1) throw new RangeError(`Bad revision ${revision}`);
    try {
      await this.#client.call("/v3/kv/compaction", { revision: String(revision) }, { write: false });
    } catch (err) {
      // Already compacted past it (by another registry of the cluster, or etcd's own auto-compaction): fine.
      if (!(err instanceof EtcdCallError && err.failure === "compacted")) this.#fail(err, "etcd compaction");
    }
    // Drop history records and receipts older than the revision, a page at a time.
    for (const area of ["h/", "x/"]) {
      const prefix = this.#root + area;
      while (true) {
        let answer: RangeAnswer;
        try {
          answer = await this.#client.call<RangeAnswer>("/v3/kv/range", {
            key: b64(prefix),
            range_end: prefixEnd(prefix),
            keys_only: true,
            max_create_revision: String(revision - 1),
            limit: 1000,
          }, { write: false });
        } catch (err) {
          this.#fail(err, "etcd compaction");
        }
        const kvs = answer.kvs ?? [];
        if (kvs.length === 0) break;
        const batch = this.#config.maxTxnOps;
        for (let i = 0; i < kvs.length; i += batch) {
          const ops = kvs.slice(i, i + batch).map((kv) => ({ request_delete_range: { key: kv.key } }));
          try {
            // Deleting a record twice is harmless, so a retry after an unknown outcome is too.
            await this.#client.call("/v3/kv/txn", { compare: [], success: ops }, { write: false });
          } catch (err) {
            this.#fail(err, "etcd compaction");
          }
        }
        if (answer.more !== true && kvs.length < 1000) break;
      }
    }
  }

  async compactedRevision(): Promise<number> {
    this.#check();
    // etcd does not report its compacted revision; a read below it fails, so search for the oldest that works.
    const current = await this.revision();
    const works = async (rev: number) => {
      try {
        await this.#client.call("/v3/kv/range", { key: b64(this.#root), count_only: true, revision: String(rev) }, {
          write: false,
        });
        return true;
      } catch (err) {
        if (err instanceof EtcdCallError && err.failure === "compacted") return false;
        this.#fail(err, "etcd compacted revision");
      }
    };
    if (await works(1)) return 0;
    let lo = 1; // fails
    let hi = current; // works
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await works(mid)) hi = mid;
      else lo = mid;
    }
    return hi;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#watches) w.abort();
    this.#watches.clear();
    this.#client.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
