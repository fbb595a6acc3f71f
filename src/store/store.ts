/**
 * The store interface: what `StateRegistry` needs from a backend, in etcd's
 * terms (its KV service: Range, Txn with compares, DeleteRange, Compact, and
 * Watch from a revision). The registry speaks only this; JSON, validation and
 * sealing stay above it, so every backend (SQLite now, etcd in fleet mode)
 * runs one conformance suite.
 *
 * Values are stored text, exactly as oxide-k writes it: a config value is
 * compact JSON or a sealed string; a module's fields are the column texts of
 * oxide-k's `modules` table (`kind` and `state` as JSON strings, with the
 * quotes). `updatedAt` is the RFC 3339 text of `updated_at`.
 *
 * Calls return `Awaitable`: the SQLite backend answers synchronously (no
 * microtask on the hot path), the etcd backend with promises. Callers that
 * need a promise wrap the result; callers on a hot path test for `then`.
 *
 * This file is the contract between backends. Refine it with the registry,
 * but keep it free of SQL, of etcd's wire format and of JSON values.
 *
 * @module
 */

/** A value now, or a promise of it. */
export type Awaitable<T> = T | Promise<T>;

/**
 * The key spaces of a registry. `meta` holds the registry's own records: key `"sealing"` is the sealing
 * parameters, a JSON object (it exists once the registry is sealed, so a keyless writer compares its version with 0;
 * every change of keys is a put, so its version is the key generation + 1), and key `"sealing.seals"` counts the
 * values sealed under the current data key (a JSON object, written without changing `"sealing"`). On SQLite both are
 * the table `oxide_sealing` (see `src/store/sqlite/_sealing_sql.ts`); on etcd they are ordinary meta keys.
 */
export type Space = "config" | "modules" | "meta";

/** The stored fields of a module: oxide-k's `modules` columns other than `id` and `updated_at`, as text. */
export interface ModuleFields {
  readonly name: string;
  readonly version: string;
  /** JSON string text, e.g. `"native"` with the quotes. */
  readonly kind: string;
  /** JSON string text, e.g. `"running"` with the quotes. */
  readonly state: string;
  readonly description: string | null;
}

/** What a key holds in each space. */
export interface SpaceValue {
  readonly config: string;
  readonly modules: ModuleFields;
  readonly meta: string;
}

/** One key's current (or past) entry, with etcd's per-key revision data. */
export interface Entry<S extends Space = Space> {
  readonly space: S;
  readonly key: string;
  readonly value: SpaceValue[S];
  /** RFC 3339 text of the write's `updated_at` (as oxide-k stores it); `""` in `meta`. */
  readonly updatedAt: string;
  /** Writes since the key was created; a delete ends it (the next put starts again at 1). */
  readonly version: number;
  /** Revision of the write that created the key. */
  readonly createRevision: number;
  /** Revision of the latest write to the key. */
  readonly modRevision: number;
}

/** A range: one key, or every key with a prefix, from a cursor, at one revision. */
export interface RangeRequest {
  readonly space: Space;
  /** Exactly this key. Excludes `prefix`. */
  readonly key?: string | undefined;
  /** Every key starting with this (`""`: all keys). Excludes `key`. */
  readonly prefix?: string | undefined;
  /** Keys strictly after this one (before it with `reverse`): the next page. */
  readonly after?: string | undefined;
  /** At most this many entries (0 or absent: no limit). */
  readonly limit?: number | undefined;
  /** Descending key order. */
  readonly reverse?: boolean | undefined;
  /** Read as of this revision (absent: now). Below the compacted revision: a `CompactedError`. */
  readonly revision?: number | undefined;
}

/** The answer to a range. */
export interface RangeResult<S extends Space = Space> {
  readonly entries: readonly Entry<S>[];
  /** Whether more keys match past the last one returned. */
  readonly more: boolean;
  /** The revision the range was read at (the store's revision when none was asked). */
  readonly revision: number;
}

/** How a compare relates the key's current field to `equals` (etcd's `CompareResult`); absent: `"equal"`. */
export type CompareResult = "equal" | "notEqual" | "greater" | "less";

/**
 * A condition of a transaction, on one key's current entry. etcd's `Compare`.
 * `version: 0` means "does not exist" (so `{ target: "version", equals: 0, result: "notEqual" }` means "exists").
 * A missing key has version 0 and modRevision 0, and fails every `value` compare except `notEqual`.
 */
export type Compare =
  | {
    readonly space: Space;
    readonly key: string;
    readonly target: "version";
    readonly equals: number;
    readonly result?: CompareResult | undefined;
  }
  | {
    readonly space: Space;
    readonly key: string;
    readonly target: "modRevision";
    readonly equals: number;
    readonly result?: CompareResult | undefined;
  }
  | {
    readonly space: Space;
    readonly key: string;
    readonly target: "value";
    readonly equals: string;
    readonly result?: "equal" | "notEqual" | undefined;
  };

/** A write inside a transaction. */
export type Operation =
  | { readonly op: "put"; readonly space: "config" | "meta"; readonly key: string; readonly value: string }
  | { readonly op: "put"; readonly space: "modules"; readonly key: string; readonly value: ModuleFields }
  /**
   * Changes only a module's `state` (and `updated_at`). A missing module is not created (`changed` is false): add
   * the compare `{ target: "version", equals: 0, result: "notEqual" }` to make the transaction depend on it.
   */
  | { readonly op: "setState"; readonly space: "modules"; readonly key: string; readonly state: string }
  | { readonly op: "delete"; readonly space: Space; readonly key: string }
  /**
   * Replaces a config value's stored text by an equivalent one (the same plaintext, re-sealed), only where it still
   * holds `from` (`changed` says whether it did), keeping its `updatedAt`. Without `revision`: the live value. With
   * it: the past value that key's write at `revision` left in history (see {@linkcode Store.pastEntries}).
   * SQLite rewrites in place (no new revision or version; the change log's copies of `from` for the key follow the
   * live value). etcd cannot rewrite a live key in place: a live rewrite is a new version with the same value (its
   * revision is the transaction's, watchers see a put); a past one rewrites the history record.
   */
  | {
    readonly op: "rewrite";
    readonly space: "config";
    readonly key: string;
    readonly value: string;
    readonly from: string;
    readonly revision?: number | undefined;
  };

/** A transaction: if every compare holds, apply `success`, else `failure` (etcd's Txn). One revision for all. */
export interface TxnRequest {
  readonly compares: readonly Compare[];
  readonly success: readonly Operation[];
  /** Usually empty: the caller re-reads what it needs after a failed compare. */
  readonly failure?: readonly Operation[] | undefined;
  /** `updated_at` text for every put in the transaction (one clock reading per transaction). */
  readonly updatedAt: string;
  /**
   * `false`: the caller does not read the result's `revision` (a write that returns nothing), so a backend that
   * needs a query for it may skip that query; reading `revision` of such a result throws. Default `true`.
   */
  readonly wantRevision?: boolean | undefined;
}

/** What a transaction did. */
export interface TxnResult {
  /** Whether every compare held (so `success` ran). */
  readonly succeeded: boolean;
  /** The store's revision after the transaction (unchanged when nothing was written). */
  readonly revision: number;
  /** For each operation that ran, in order: whether it changed a key (a delete of a missing key did not). */
  readonly changed: readonly boolean[];
  /**
   * When `succeeded` is false: each compared key's entry as the compares saw it (`undefined`: missing), in
   * compare order, so the caller can say which compare failed and what the key holds (etcd: ranges in the
   * failure branch).
   */
  readonly current?: readonly (Entry | undefined)[] | undefined;
}

/** One change in the feed. */
export interface ChangeEvent<S extends Space = Space> {
  readonly type: "put" | "delete";
  /** The entry after the change; for a delete, `value` is the last value and `version` is 0. */
  readonly entry: Entry<S>;
  /** The entry before the change, when the backend keeps it (SQLite: never, its change log keeps each change once; etcd: on deletes). */
  readonly previous?: Entry<S> | undefined;
}

/** A page of {@linkcode Store.pastEntries}. */
export interface PastEntriesOptions {
  /** The `cursor` of the previous page. */
  readonly cursor?: string | undefined;
  /** At most this many entries (default: the backend's page size). */
  readonly limit?: number | undefined;
}

/** What a watch follows. */
export interface WatchRequest {
  readonly spaces: readonly Space[];
  /** Only these keys (exact), or every key with `prefix`. Neither: every key of the spaces. */
  readonly keys?: readonly string[] | undefined;
  readonly prefix?: string | undefined;
  /** Events with a revision at or after this one; absent: only changes after the watch starts. */
  readonly fromRevision?: number | undefined;
  /** Aborting ends the iteration and releases every timer, handle and listener. */
  readonly signal?: AbortSignal | undefined;
}

/** A backend's limits, for checks before anything is sent (etcd: 128 operations, 1.5 MiB request). */
export interface StoreLimits {
  /**
   * Most writes in one transaction; `Infinity` when unbounded. A `rewrite` counts as two (a backend may read and
   * guard what it rewrites in the same transaction).
   */
  readonly maxTxnOperations: number;
  /** Most bytes of keys plus values in one transaction; `Infinity` when unbounded. */
  readonly maxTxnBytes: number;
  /** Largest stored value in bytes. */
  readonly maxValueBytes: number;
}

/**
 * A registry's storage. Every call is atomic; every write is one transaction
 * and one revision. Failures are `KernelError`s (`RegistryError` with the
 * backend's error as `cause`); a write whose outcome cannot be known is an
 * error that says so.
 */
export interface Store extends Disposable {
  /** `"sqlite"` or `"etcd"`. */
  readonly backend: "sqlite" | "etcd";
  /** A path or an address, for messages. */
  readonly location: string;
  readonly limits: StoreLimits;

  /** One key's entry, or `undefined`. */
  get<S extends Space>(space: S, key: string): Awaitable<Entry<S> | undefined>;
  /** One key's stored value alone (no revision data), or `undefined`. The hot path of `getConfig`: keep it cheap. */
  getValue<S extends Space>(space: S, key: string): Awaitable<SpaceValue[S] | undefined>;
  range<S extends Space>(request: RangeRequest & { readonly space: S }): Awaitable<RangeResult<S>>;
  txn(request: TxnRequest): Awaitable<TxnResult>;
  /** The current revision (0 for a store never written). */
  revision(): Awaitable<number>;

  /** Past entries of one key, newest first, at most `limit` (as retention kept them). */
  history<S extends Space>(space: S, key: string, limit?: number): Awaitable<readonly Entry<S>[]>;
  /**
   * Every past value of the config space that history keeps, live keys' and deleted keys' alike, a page at a time:
   * what a re-sealing must rewrite so that no history row stays under a retired key. Each entry's `modRevision` is
   * the write that stored it (the `revision` of a `rewrite` operation). The order is the backend's; pass `cursor` of
   * one page to get the next (`undefined`: the last page).
   */
  pastEntries(
    space: "config",
    options?: PastEntriesOptions,
  ): Awaitable<{ readonly entries: readonly Entry<"config">[]; readonly cursor: string | undefined }>;
  /** Changes in revision order, none missed, none repeated, resumable from a revision. */
  watch(request: WatchRequest): AsyncIterableIterator<ChangeEvent>;
  /** Drops change-feed and history data below `revision`. */
  compact(revision: number): Awaitable<void>;
  /** The oldest revision the change feed can still serve. */
  compactedRevision(): Awaitable<number>;

  /** Idempotent. Watches end; later calls throw a `RegistryError`. */
  close(): Awaitable<void>;
}
