// Stored text to values: config values and module rows read back exactly as oxide-k's deserializers would.
import { OtherError, SerializationError } from "../errors.ts";
import { decodeJson } from "../json.ts";
import { MODULE_KINDS, MODULE_STATES, type ModuleKind, type ModuleRecord, type ModuleState } from "../module.ts";
import type { ModuleFields } from "../store/store.ts";
import { parseTimestamp } from "../time.ts";
import { refuseSealedValue } from "../sealing/sealing.ts";
import { describe } from "../_describe.ts";

/** The stored `config.value`, which must be text. */
export function storedText(key: string, stored: unknown): string {
  if (typeof stored !== "string") {
    throw new SerializationError(`value of config key '${key}' is not text: ${describe(stored)}`);
  }
  return stored;
}

/** Parses a value read without a key. Sealed text is never JSON, so only a failed parse needs a closer look. */
export function parsePlainConfig<T>(key: string, stored: string): T {
  try {
    return decodeJson(stored) as T;
  } catch {
    refuseSealedValue(key, stored); // Sealed: says it needs a key, never returns ciphertext.
    return parseConfig<T>(key, stored); // Throws the SerializationError.
  }
}

export function parseConfig<T>(key: string, json: string): T {
  try {
    return decodeJson(json) as T;
  } catch (error) {
    throw new SerializationError(`value of config key '${key}' is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Builds a module record from a stored module's columns, checking them as oxide-k's deserializer would: one object
 * per module, nothing else allocated on the way (beside the `Date`).
 */
export function moduleRecordOf(
  id: unknown,
  fields: ModuleFields,
  updatedAtText: unknown,
  recordVersion: number,
  createRevision: number,
  modRevision: number,
): ModuleRecord {
  // SQLite lets another program store NULL, a number or a blob in a TEXT PRIMARY KEY; oxide-k cannot read them.
  if (typeof id !== "string") {
    throw new SerializationError(`a module row has an id that is not text: ${describe(id)}`);
  }
  const { name, version, description } = fields;
  // The stored forms oxide-k writes are looked up; anything else takes the checking path.
  const kind = KIND_BY_TEXT.get(fields.kind) ?? decodeEnumText(id, "kind", fields.kind, KIND_BY_TEXT);
  const state = STATE_BY_TEXT.get(fields.state) ?? decodeEnumText(id, "state", fields.state, STATE_BY_TEXT);
  const updatedAt = typeof updatedAtText === "string" ? parseTimestamp(updatedAtText) : undefined;
  if (updatedAt === undefined) {
    throw new OtherError(
      `invalid updated_at: module '${id}' has ${describe(updatedAtText)}, not an RFC 3339 timestamp`,
    );
  }
  if (typeof name !== "string") throw notText(id, "name", name);
  if (typeof version !== "string") throw notText(id, "version", version);
  if (description !== null && typeof description !== "string") {
    throw new SerializationError(
      `module '${id}' has a description that is not text: ${describe(description)}`,
    );
  }
  return {
    id,
    name,
    version,
    kind,
    state,
    description: description ?? undefined,
    updatedAt,
    recordVersion,
    createRevision,
    modRevision,
  };
}

/** Kinds and states are stored as JSON strings (`"native"`, with the quotes): stored text to value. */
const KIND_BY_TEXT: ReadonlyMap<unknown, ModuleKind> = new Map(MODULE_KINDS.map((kind) => [`"${kind}"`, kind]));
const STATE_BY_TEXT: ReadonlyMap<unknown, ModuleState> = new Map(MODULE_STATES.map((state) => [`"${state}"`, state]));

/** Reads a stored kind or state exactly as serde would: the JSON string of a snake_case variant. */
export function decodeEnumText<T extends string>(
  id: string,
  column: string,
  stored: unknown,
  byText: ReadonlyMap<unknown, T>,
): T {
  const value = byText.get(stored);
  if (value !== undefined) return value;
  // serde_json also accepts JSON escapes and surrounding whitespace; so do we, on the slow path.
  if (typeof stored === "string") {
    try {
      const parsed: unknown = JSON.parse(stored);
      const found = byText.get(`"${parsed}"`);
      if (typeof parsed === "string" && found !== undefined) return found;
    } catch {
      // Reported below.
    }
  }
  const valid = [...byText.keys()].map((text) => `'${text}'`).join(", ");
  throw new SerializationError(`module '${id}' has ${column} ${describe(stored)}, expected one of ${valid}`);
}

function notText(id: string, column: string, value: unknown): SerializationError {
  return new SerializationError(`module '${id}' has a ${column} that is not text: ${describe(value)}`);
}
