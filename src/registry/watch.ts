/**
 * Watch at the registry level: the store's change feed turned into config
 * and module events, values decoded (and opened on a keyed registry). Speaks
 * only the store interface, so every backend serves it.
 *
 * @module
 */
import type { KernelError } from "../errors.ts";
import type { ModuleRecord } from "../module.ts";
import type { ChangeEvent, Entry, WatchRequest } from "../store/store.ts";
import { decodeConfig, type ValueDecoder } from "./_decode.ts";

/**
 * What {@linkcode StateRegistry.watch} follows, and from where.
 *
 * @example Follow one prefix of config keys
 * ```ts
 * import { StateRegistry, type WatchOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const options: WatchOptions = { prefix: "net." };
 * const watch = reg.watch(options);
 * await reg.setConfig("log.level", "debug"); // Not followed.
 * await reg.setConfig("net.port", 8080);
 * const { value: event } = await watch.next();
 * assert.equal(event?.space === "config" && event.key, "net.port");
 * await watch.return();
 * ```
 */
export interface WatchOptions {
  /** What to follow: config keys (default), modules, or both. */
  spaces?: readonly ("config" | "modules")[] | undefined;
  /** Only these exact config keys or module ids. Excludes `prefix`. */
  keys?: readonly string[] | undefined;
  /** Only keys (and ids) starting with this. Excludes `keys`. Neither: everything in `spaces`. */
  prefix?: string | undefined;
  /**
   * Deliver changes from this revision on (inclusive): resume after a restart
   * with the last revision seen plus 1. Absent: only changes committed after
   * the call. Below the oldest revision retention kept: a `CompactedError`.
   */
  fromRevision?: number | undefined;
  /** Aborting ends the iteration (a pending `next()` resolves `done`) and releases everything. */
  signal?: AbortSignal | undefined;
}

/**
 * A change of a config key.
 *
 * @example
 * ```ts
 * import { type ConfigChange, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const watch = reg.watch();
 * await reg.setConfig("max_threads", 8);
 * const change = (await watch.next()).value as ConfigChange;
 * assert.equal(change.type, "put");
 * assert.equal(change.key, "max_threads");
 * assert.equal(change.value, 8);
 * assert.equal(change.version, 1);
 * await watch.return();
 * ```
 */
export interface ConfigChange {
  /** Which key space changed: a config key. */
  readonly space: "config";
  /** `put`: set (created or changed); `delete`: removed. */
  readonly type: "put" | "delete";
  /** The config key. */
  readonly key: string;
  /** The revision of the write. Events arrive in revision order; one batch is one revision. */
  readonly revision: number;
  /** The key's version after the write; 0 after a delete. */
  readonly version: number;
  /**
   * The new value (a put), opened when the registry is keyed. `undefined` for a delete, for a sealed value on a
   * registry opened without its key (`sealed` says so), and when `error` is set.
   */
  readonly value: unknown;
  /** Whether the stored value is sealed (`false` for a delete, which carries no value). */
  readonly sealed: boolean;
  /** When the value was written (`undefined` for a delete). */
  readonly updatedAt: Date | undefined;
  /** Set when the stored value cannot be read (not JSON, sealed under another key, ...): the watch goes on. */
  readonly error?: KernelError | undefined;
}

/**
 * A change of a module record.
 *
 * @example
 * ```ts
 * import { type ModuleChange, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const watch = reg.watch({ spaces: ["modules"] });
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
 * const change = (await watch.next()).value as ModuleChange;
 * assert.equal(change.id, "echo");
 * assert.equal(change.module?.state, "loaded");
 * await watch.return();
 * ```
 */
export interface ModuleChange {
  /** Which key space changed: a module record. */
  readonly space: "modules";
  /** `put`: upserted or its state set; `delete`: removed (`deleteModule`). */
  readonly type: "put" | "delete";
  /** The module id. */
  readonly id: string;
  /** The revision of the write. */
  readonly revision: number;
  /** The record's version after the write; 0 after a delete. */
  readonly version: number;
  /** The record after a put; `undefined` after a delete, or when `error` is set. */
  readonly module: ModuleRecord | undefined;
  /** Set when the stored row cannot be read (written by another program with an unknown kind, ...). */
  readonly error?: KernelError | undefined;
}

/**
 * One event of a watch.
 *
 * @example
 * ```ts
 * import { StateRegistry, type WatchEvent } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const watch = reg.watch({ spaces: ["config", "modules"] });
 * await reg.setConfig("a", 1);
 * await reg.deleteConfig("a");
 * const seen: string[] = [];
 * for await (const event of watch) {
 *   const name = event.space === "config" ? event.key : event.id;
 *   seen.push(`${event.revision - seen.length}:${event.type} ${name}`);
 *   if (seen.length === 2) break; // Ends the watch.
 * }
 * assert.equal(seen[0]!.endsWith(":put a"), true);
 * assert.equal(seen[1]!.endsWith(":delete a"), true);
 * ```
 */
export type WatchEvent = ConfigChange | ModuleChange;

/**
 * What {@linkcode StateRegistry.watch} returns: an async iterator of events
 * whose `return()` always exists (ending the watch).
 *
 * @example
 * ```ts
 * import { StateRegistry, type WatchIterator } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const watch: WatchIterator = reg.watch();
 * const pending = watch.next();
 * await watch.return(); // Ends the watch: the pending next() resolves done.
 * assert.equal((await pending).done, true);
 * ```
 */
export interface WatchIterator extends AsyncIterableIterator<WatchEvent> {
  /**
   * The next event, waiting for one.
   *
   * @returns The event, or `done` once the watch ended.
   */
  next(): Promise<IteratorResult<WatchEvent>>;
  /**
   * Ends the watch and releases what it holds; a pending `next()` resolves `done`.
   *
   * @returns `done`.
   */
  return(): Promise<IteratorResult<WatchEvent>>;
  /** The iterator itself. */
  [Symbol.asyncIterator](): WatchIterator;
}

/** The registry's watch iterator over a store's watch. */
export class RegistryWatch implements WatchIterator {
  readonly #inner: AsyncIterableIterator<ChangeEvent>;
  readonly #decoder: ValueDecoder;

  constructor(
    store: { watch(request: WatchRequest): AsyncIterableIterator<ChangeEvent> },
    decoder: ValueDecoder,
    options: WatchOptions,
  ) {
    this.#inner = store.watch({
      spaces: options.spaces ?? ["config"],
      keys: options.keys,
      prefix: options.prefix,
      fromRevision: options.fromRevision,
      signal: options.signal,
    });
    this.#decoder = decoder;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    const result = await this.#inner.next();
    if (result.done) return { done: true, value: undefined };
    return { done: false, value: await this.#decode(result.value) };
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    await this.#inner.return?.();
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<WatchEvent>> {
    await this.#inner.return?.();
    throw error;
  }

  async #decode(event: ChangeEvent): Promise<WatchEvent> {
    const { entry, type } = event;
    const revision = entry.modRevision;
    const version = type === "delete" ? 0 : entry.version;
    if (entry.space === "modules") {
      const base = { space: "modules", type, id: entry.key, revision, version } as const;
      if (type === "delete") return { ...base, module: undefined };
      try {
        return { ...base, module: this.#decoder.module(entry as Entry<"modules">) };
      } catch (error) {
        return { ...base, module: undefined, error: error as KernelError };
      }
    }
    const base = { space: "config", type, key: entry.key, revision, version } as const;
    if (type === "delete") {
      return { ...base, value: undefined, sealed: false, updatedAt: undefined };
    }
    return { ...base, ...await decodeConfig(this.#decoder, entry as Entry<"config">) };
  }
}
