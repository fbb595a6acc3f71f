// Stored entries to the registry's values: JSON parsed, sealed values opened on a keyed registry, module rows checked.
// Shared by watch and history, on every backend.
import type { KernelError } from "../errors.ts";
import type { ModuleRecord } from "../module.ts";
import { refuseSealedValue } from "../sealing/sealing.ts";
import type { Entry } from "../store/store.ts";
import { parseTimestamp } from "../time.ts";

/** How the registry reads stored values: JSON, sealing and module records stay above the store. */
export interface ValueDecoder {
  /** Whether `stored` is a sealed value. */
  isSealed(stored: string): boolean;
  /** Whether the registry can open sealed values. */
  readonly keyed: boolean;
  /** The value of a config key (opening it when sealed). */
  config(key: string, stored: string): Promise<unknown> | unknown;
  /** The record of a module. */
  module(entry: Entry<"modules">): ModuleRecord;
}

/** A config entry's decoded value; a value that cannot be read gives `error`, not an exception. */
export interface DecodedConfig {
  readonly value: unknown;
  readonly sealed: boolean;
  readonly updatedAt: Date | undefined;
  readonly error?: KernelError | undefined;
}

/** Decodes a config entry's value: opened when sealed and keyed; `undefined` (with `sealed`) when keyless. */
export async function decodeConfig(decoder: ValueDecoder, entry: Entry<"config">): Promise<DecodedConfig> {
  const stored = entry.value;
  const sealed = typeof stored === "string" && decoder.isSealed(stored);
  const updatedAt = parseTimestamp(entry.updatedAt);
  if (sealed && !decoder.keyed) return { value: undefined, sealed, updatedAt };
  try {
    return { value: await decoder.config(entry.key, stored), sealed, updatedAt };
  } catch (error) {
    return { value: undefined, sealed, updatedAt, error: error as KernelError };
  }
}

/** Whether stored text is a sealed value (of either scheme). */
export function isSealedText(stored: string): boolean {
  try {
    refuseSealedValue("", stored);
    return false;
  } catch {
    return true;
  }
}
