/**
 * Config history at the registry level: the newest versions of a key,
 * decoded (and opened on a keyed registry), over any backend's history.
 *
 * @module
 */
import type { KernelError } from "../errors.ts";
import type { Entry } from "../store/store.ts";
import { decodeConfig, type ValueDecoder } from "./_decode.ts";

/**
 * Options for {@linkcode StateRegistry.configHistory}.
 *
 * @example
 * ```ts
 * import { type ConfigHistoryOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * for (const level of ["info", "debug", "trace"]) await reg.setConfig("log.level", level);
 * const options: ConfigHistoryOptions = { limit: 2 };
 * assert.deepEqual((await reg.configHistory("log.level", options)).map((v) => v.value), ["trace", "debug"]);
 * ```
 */
export interface ConfigHistoryOptions {
  /** At most this many versions (default and most: the registry's `retention.historyVersions`). */
  limit?: number | undefined;
}

/**
 * One kept version of a config key.
 *
 * @example
 * ```ts
 * import { type ConfigVersion, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * await reg.setConfig("max_threads", 16);
 * const [newest, older]: ConfigVersion[] = await reg.configHistory("max_threads");
 * assert.deepEqual([newest?.value, newest?.version], [16, 2]);
 * assert.deepEqual([older?.value, older?.version], [8, 1]);
 * assert.equal(newest!.revision > older!.revision, true);
 * ```
 */
export interface ConfigVersion {
  /** The config key. */
  readonly key: string;
  /** The value (opened on a keyed registry); `undefined` when sealed and the registry has no key, or on `error`. */
  readonly value: unknown;
  /** Whether the stored value is sealed (history keeps sealed values sealed). */
  readonly sealed: boolean;
  /** The key's version this was (1 for a create). */
  readonly version: number;
  /** The revision that wrote it: pass it to `restoreConfig`. */
  readonly revision: number;
  /** The revision that created the key's life this version belongs to (a delete ends a life). */
  readonly createRevision: number;
  /** When it was written. */
  readonly updatedAt: Date | undefined;
  /** Set when the stored value cannot be read (not JSON, sealed under another key, ...). */
  readonly error?: KernelError | undefined;
}

/** Decodes history entries, newest first. */
export function decodeHistory(decoder: ValueDecoder, entries: readonly Entry<"config">[]): Promise<ConfigVersion[]> {
  return Promise.all(entries.map(async (entry) => ({
    key: entry.key,
    version: entry.version,
    revision: entry.modRevision,
    createRevision: entry.createRevision,
    ...await decodeConfig(decoder, entry),
  })));
}
