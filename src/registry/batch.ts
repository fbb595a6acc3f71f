/**
 * Atomic batches: checks plus config and module writes and deletes, committed
 * all or nothing as one revision (etcd's Txn, Deno KV's `atomic()`).
 *
 * @module
 */
import { ConflictError, type KernelError, KeyRequiredError, RegistryError, UnknownModuleError } from "../errors.ts";
import { encodeJson } from "../json.ts";
import { checkValueSize } from "../limits.ts";
import type { ModuleMetadata, ModuleState } from "../module.ts";
import type { Compare, Entry, ModuleFields, Operation, TxnRequest } from "../store/store.ts";
import { describe } from "../_describe.ts";
import { checkCount, ifVersionOf, type WriteOptions } from "./entries.ts";
import { checkText } from "../_text.ts";
import { checkKind, checkState } from "./_validate.ts";

/** One write of a batch, validated and encoded. */
export type BatchWrite =
  | { readonly kind: "setConfig"; readonly key: string; readonly json: string; readonly ifVersion?: number }
  | { readonly kind: "deleteConfig"; readonly key: string; readonly ifVersion?: number }
  | { readonly kind: "upsertModule"; readonly key: string; readonly fields: ModuleFields; readonly ifVersion?: number }
  | { readonly kind: "setModuleState"; readonly key: string; readonly state: string; readonly ifVersion?: number }
  | { readonly kind: "deleteModule"; readonly key: string; readonly ifVersion?: number };

/** A check of a batch: the key (or module) must be at this version (0: must not exist). */
export interface BatchCheck {
  readonly space: "config" | "modules";
  readonly key: string;
  readonly version: number;
}

/**
 * What a committed batch did.
 *
 * @example
 * ```ts
 * import { type BatchResult, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const result: BatchResult = await reg.batch().setConfig("a", 1).setConfig("b", 2).commit();
 * assert.equal(result.revision, 1); // One revision for both.
 * assert.equal((await reg.getConfigEntry("b"))?.modRevision, 1);
 * ```
 */
export interface BatchResult {
  /** The revision of the batch (the store's revision when it changed nothing). */
  readonly revision: number;
}

/**
 * A batch under construction, from `reg.batch()`. Each method validates and
 * encodes its arguments at once (a bad value throws there) and returns the
 * batch; `commit()` applies everything or nothing. A key (or module) may be
 * written once per batch.
 *
 * @example Move a module and its config together, or not at all
 * ```ts
 * import { ConflictError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
 * await reg.setConfig("echo.port", 8080);
 * const port = await reg.getConfigEntry<number>("echo.port");
 * await reg.batch()
 *   .check("echo.port", port!.version)
 *   .setConfig("echo.port", 9090)
 *   .setModuleState("echo", "stopped")
 *   .commit();
 * assert.equal(await reg.getConfig("echo.port"), 9090);
 *
 * // A failed check: nothing of the batch is written.
 * const stale = reg.batch().check("echo.port", port!.version).deleteModule("echo");
 * await assert.rejects(stale.commit(), ConflictError);
 * assert.equal((await reg.getModule("echo"))?.state, "stopped");
 * ```
 */
export class Batch {
  readonly #commit: (checks: readonly BatchCheck[], writes: readonly BatchWrite[]) => Promise<BatchResult>;
  readonly #checks: BatchCheck[] = [];
  readonly #writes: BatchWrite[] = [];
  readonly #written = new Set<string>();
  #committed = false;

  /** @internal Use `reg.batch()`. */
  constructor(commit: (checks: readonly BatchCheck[], writes: readonly BatchWrite[]) => Promise<BatchResult>) {
    this.#commit = commit;
  }

  /**
   * Requires a config key to be at `version` (0: not to exist) when the batch commits.
   *
   * @param key The config key.
   * @param version The expected version, as `getConfigEntry` reported it (0: must not exist).
   * @returns This batch.
   * @throws {TypeError} when `key` is not a string or `version` is not a non-negative integer.
   */
  check(key: string, version: number): this {
    this.#checks.push({ space: "config", key: checkText("config key", key), version: checkCount("version", version) });
    return this;
  }

  /**
   * Requires a module to be at `recordVersion` (0: not to exist) when the batch commits.
   *
   * @param id The module id.
   * @param recordVersion The expected record version, as `getModule` reported it (0: must not exist).
   * @returns This batch.
   * @throws {TypeError} when `id` is not a string or `recordVersion` is not a non-negative integer.
   */
  checkModule(id: string, recordVersion: number): this {
    this.#checks.push({
      space: "modules",
      key: checkText("module id", id),
      version: checkCount("recordVersion", recordVersion),
    });
    return this;
  }

  /**
   * Stores a config value (sealed first, on a sealed registry).
   *
   * @param key The config key.
   * @param value Any value JSON carries faithfully.
   * @param options `ifVersion`: compare-and-set.
   * @returns This batch.
   * @throws {SerializationError} when `value` has no faithful JSON form, or its JSON is larger than
   * `MAX_CONFIG_VALUE_BYTES`.
   * @throws {TypeError} when `key` is not a string, or is already written in this batch.
   */
  setConfig(key: string, value: unknown, options?: WriteOptions): this {
    const k = checkText("config key", key);
    return this.#add("config", { kind: "setConfig", key: k, json: checkValueSize(k, encodeJson(value)) }, options);
  }

  /**
   * Deletes a config value (a missing key is no error, unless `ifVersion` says it must exist).
   *
   * @param key The config key.
   * @param options `ifVersion`: compare-and-set.
   * @returns This batch.
   * @throws {TypeError} when `key` is not a string, or is already written in this batch.
   */
  deleteConfig(key: string, options?: WriteOptions): this {
    return this.#add("config", { kind: "deleteConfig", key: checkText("config key", key) }, options);
  }

  /**
   * Inserts or updates a module.
   *
   * @param metadata The module's id, name, version, kind and optional description.
   * @param state Its lifecycle state.
   * @param options `ifVersion`: compare-and-set on the module's record version.
   * @returns This batch.
   * @throws {TypeError} when a field is not a string, or the module is already written in this batch.
   * @throws {SerializationError} for an unknown kind or state.
   */
  upsertModule(metadata: ModuleMetadata, state: ModuleState, options?: WriteOptions): this {
    const fields = moduleFields(metadata, state);
    return this.#add("modules", { kind: "upsertModule", key: metadata.id, fields }, options);
  }

  /**
   * Changes a module's state; the batch fails with `UnknownModuleError` when the module does not exist.
   *
   * @param id The module id.
   * @param state The new state.
   * @param options `ifVersion`: compare-and-set on the module's record version.
   * @returns This batch.
   * @throws {TypeError} when `id` is not a string, or the module is already written in this batch.
   * @throws {SerializationError} for an unknown state.
   */
  setModuleState(id: string, state: ModuleState, options?: WriteOptions): this {
    const key = checkText("module id", id);
    return this.#add("modules", { kind: "setModuleState", key, state: checkState(state) }, options);
  }

  /**
   * Deletes a module (a missing one is no error, unless `ifVersion` says it must exist).
   *
   * @param id The module id.
   * @param options `ifVersion`: compare-and-set on the module's record version.
   * @returns This batch.
   * @throws {TypeError} when `id` is not a string, or the module is already written in this batch.
   */
  deleteModule(id: string, options?: WriteOptions): this {
    return this.#add("modules", { kind: "deleteModule", key: checkText("module id", id) }, options);
  }

  /**
   * Applies the batch: every check holds and every write lands, in one
   * transaction and one revision, or nothing is written. Sealed values are
   * sealed before the transaction begins.
   *
   * @returns The batch's revision.
   * @throws {ConflictError} when a check or an `ifVersion` does not hold (naming the first that failed).
   * @throws {UnknownModuleError} when `setModuleState` names a module that does not exist.
   * @throws {KeyRequiredError} when a keyless handle writes config to a sealed registry.
   * @throws {TypeError} when the batch was already committed.
   */
  commit(): Promise<BatchResult> {
    if (this.#committed) return Promise.reject(new TypeError("this batch was already committed"));
    this.#committed = true;
    return this.#commit(this.#checks, this.#writes);
  }

  /** Adds a write whose key and value are checked: its options are checked, then its key is claimed (only then). */
  #add(space: "config" | "modules", write: BatchWrite, options: WriteOptions | undefined): this {
    const ifVersion = ifVersionOf(`batch().${write.kind}()`, options);
    // Claimed last: a write refused for its value, state or options leaves its key free for a later write.
    const name = `${space}\0${write.key}`;
    if (this.#written.has(name)) {
      throw new TypeError(
        `a batch writes each ${space === "config" ? "config key" : "module"} once: ${
          describe(write.key)
        } is already in it`,
      );
    }
    this.#written.add(name);
    this.#writes.push(ifVersion === undefined ? write : { ...write, ifVersion });
    return this;
  }
}

/** A module's stored fields, checked. */
export function moduleFields(metadata: ModuleMetadata, state: ModuleState): ModuleFields {
  if (typeof metadata !== "object" || metadata === null) {
    throw new TypeError(`module metadata must be an object, got ${describe(metadata)}`);
  }
  checkText("module id", metadata.id);
  return {
    name: checkText("module name", metadata.name),
    version: checkText("module version", metadata.version),
    kind: checkKind(metadata.kind),
    state: checkState(state),
    description: metadata.description === undefined || metadata.description === null
      ? null
      : checkText("module description", metadata.description),
  };
}

/** What each compare of a batch's transaction stands for, to name the one that failed. */
export type CompareMeaning =
  | { readonly kind: "version"; readonly space: "config" | "modules"; readonly key: string; readonly expected: number }
  | { readonly kind: "exists"; readonly key: string }
  | { readonly kind: "notSealed"; readonly key: string };

/**
 * The store transaction of a batch: its checks, each write's `ifVersion`,
 * "the module exists" for each `setModuleState`, and `guard` (the keyless
 * writer's "not sealed") when it writes config.
 */
export function batchRequest(
  checks: readonly BatchCheck[],
  writes: readonly BatchWrite[],
  stored: readonly string[],
  updatedAt: string,
  guard: readonly Compare[],
): { request: TxnRequest; meanings: CompareMeaning[] } {
  const compares: Compare[] = [];
  const meanings: CompareMeaning[] = [];
  const version = (space: "config" | "modules", key: string, expected: number) => {
    compares.push({ space, key, target: "version", equals: expected });
    meanings.push({ kind: "version", space, key, expected });
  };
  for (const check of checks) version(check.space, check.key, check.version);
  const success: Operation[] = [];
  let sealedIndex = 0;
  for (const write of writes) {
    const space = write.kind === "setConfig" || write.kind === "deleteConfig" ? "config" : "modules";
    if (write.ifVersion !== undefined) version(space, write.key, write.ifVersion);
    switch (write.kind) {
      case "setConfig":
        success.push({ op: "put", space: "config", key: write.key, value: stored[sealedIndex++]! });
        break;
      case "deleteConfig":
        success.push({ op: "delete", space: "config", key: write.key });
        break;
      case "upsertModule":
        success.push({ op: "put", space: "modules", key: write.key, value: write.fields });
        break;
      case "setModuleState":
        compares.push({ space: "modules", key: write.key, target: "version", equals: 0, result: "notEqual" });
        meanings.push({ kind: "exists", key: write.key });
        success.push({ op: "setState", space: "modules", key: write.key, state: write.state });
        break;
      case "deleteModule":
        success.push({ op: "delete", space: "modules", key: write.key });
        break;
    }
  }
  const firstConfig = writes.find((w) => w.kind === "setConfig");
  if (firstConfig !== undefined) {
    for (const compare of guard) {
      compares.push(compare);
      meanings.push({ kind: "notSealed", key: firstConfig.key });
    }
  }
  return { request: { compares, success, updatedAt }, meanings };
}

/**
 * The error a failed batch transaction means: the first compare that did not hold.
 *
 * @param sealedScheme The scheme a keyless writer found the registry sealed with.
 */
export function batchFailure(
  current: readonly (Entry | undefined)[],
  meanings: readonly CompareMeaning[],
  sealedScheme: () => string,
): KernelError {
  for (const [i, meaning] of meanings.entries()) {
    const entry = current[i];
    switch (meaning.kind) {
      case "version":
        if ((entry?.version ?? 0) !== meaning.expected) {
          return new ConflictError(meaning.space, meaning.key, meaning.expected, entry?.version ?? 0);
        }
        break;
      case "exists":
        if (entry === undefined) return new UnknownModuleError(meaning.key);
        break;
      case "notSealed":
        if (entry !== undefined) return new KeyRequiredError(meaning.key, sealedScheme(), "write");
        break;
    }
  }
  return new RegistryError("the batch's transaction failed, but every compare holds now: commit it again");
}
