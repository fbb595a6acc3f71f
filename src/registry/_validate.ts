// Argument checks of the registry's API, and the stored texts of kinds and states.
import { SerializationError } from "../errors.ts";
import { MODULE_KINDS, MODULE_STATES } from "../module.ts";
import { describe } from "../_describe.ts";

/** Kinds and states as stored: JSON strings, with the quotes. */
const TEXT_OF_KIND: ReadonlyMap<unknown, string> = new Map(MODULE_KINDS.map((kind) => [kind, `"${kind}"`]));
const TEXT_OF_STATE: ReadonlyMap<unknown, string> = new Map(MODULE_STATES.map((state) => [state, `"${state}"`]));

/** The stored text of `kind`, or a `SerializationError` when it is not a kind. */
export function checkKind(kind: unknown): string {
  const text = TEXT_OF_KIND.get(kind);
  if (text === undefined) {
    throw new SerializationError(
      `unknown module kind ${describe(kind)}: expected one of ${MODULE_KINDS.map((k) => `'${k}'`).join(", ")}`,
    );
  }
  return text;
}

/** The stored text of `state`, or a `SerializationError` when it is not a state. */
export function checkState(state: unknown): string {
  const text = TEXT_OF_STATE.get(state);
  if (text === undefined) {
    throw new SerializationError(
      `unknown module state ${describe(state)}: expected one of ${MODULE_STATES.map((s) => `'${s}'`).join(", ")}`,
    );
  }
  return text;
}

/** Options objects may be omitted (`undefined`), not replaced by something else. */
export function checkOptions(options: unknown): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
}
