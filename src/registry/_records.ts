// Stored text to values: config values and module rows read back exactly as oxide-k's deserializers would.
import { OtherError, SerializationError } from "../errors.ts";
import { decodeJson } from "../json.ts";
import { MODULE_KINDS, MODULE_STATES, type ModuleKind, type ModuleRecord, type ModuleState } from "../module.ts";
import type { Row } from "../sqlite/engine.ts";
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

/** Builds a record from a `modules` row, checking it as oxide-k's deserializer would. */
export function rowToModuleRecord(row: Row): Omit<ModuleRecord, "recordVersion" | "createRevision" | "modRevision"> {
  // SQLite lets another program store NULL, a number or a blob in a TEXT PRIMARY KEY; oxide-k cannot read them.
  if (typeof row.id !== "string") {
    throw new SerializationError(`a module row has an id that is not text: ${describe(row.id)}`);
  }
  const id = row.id;
  const kind = decodeEnumText(id, "kind", row.kind, KIND_BY_TEXT);
  const state = decodeEnumText(id, "state", row.state, STATE_BY_TEXT);
  const updatedAt = typeof row.updated_at === "string" ? parseTimestamp(row.updated_at) : undefined;
  if (updatedAt === undefined) {
    throw new OtherError(
      `invalid updated_at: module '${id}' has ${describe(row.updated_at)}, not an RFC 3339 timestamp`,
    );
  }
  if (typeof row.name !== "string") throw notText(id, "name", row.name);
  if (typeof row.version !== "string") throw notText(id, "version", row.version);
  if (row.description !== null && typeof row.description !== "string") {
    throw new SerializationError(
      `module '${id}' has a description that is not text: ${describe(row.description)}`,
    );
  }
  return {
    id,
    name: row.name as string,
    version: row.version as string,
    kind,
    state,
    description: row.description ?? undefined,
    updatedAt,
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
