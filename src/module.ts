/**
 * Module types shared by every layer: kinds, lifecycle states, metadata and
 * the stored record.
 *
 * @module
 */

/** Every valid {@linkcode ModuleKind}, in oxide-k's order. */
export const MODULE_KINDS = ["native", "wasm"] as const;

/** Where a module executes: natively or in the WebAssembly layer. */
export type ModuleKind = typeof MODULE_KINDS[number];

/**
 * Every valid {@linkcode ModuleState}, in the order the module manager drives
 * them (`failed` last: a start or stop hook failed).
 */
export const MODULE_STATES = [
  "loaded",
  "starting",
  "running",
  "stopping",
  "stopped",
  "failed",
] as const;

/** A module's last reported lifecycle state. The registry does not enforce transitions. */
export type ModuleState = typeof MODULE_STATES[number];

/** What a module says about itself when it registers. */
export interface ModuleMetadata {
  /** Unique id, the primary key. */
  id: string;
  /** Human-readable name. */
  name: string;
  /** Version string, free-form (oxide-k does not parse it). */
  version: string;
  /** Execution layer. */
  kind: ModuleKind;
  /** Optional description. */
  description?: string | undefined;
}

/** A row of the `modules` table: the metadata plus state and last update. */
export interface ModuleRecord {
  /** Unique id. */
  id: string;
  /** Human-readable name. */
  name: string;
  /** Version string. */
  version: string;
  /** Execution layer. */
  kind: ModuleKind;
  /** Last reported lifecycle state. */
  state: ModuleState;
  /** Description, or `undefined` when none was given. */
  description: string | undefined;
  /** When the row was last written (millisecond precision; the stored text keeps more). */
  updatedAt: Date;
}

/**
 * Whether `value` is a valid {@linkcode ModuleKind}.
 *
 * @param value Anything.
 * @returns `true` for `"native"` and `"wasm"`.
 *
 * @example
 * ```ts
 * import { isModuleKind } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isModuleKind("wasm"));
 * assert.ok(!isModuleKind("Native"));
 * ```
 */
export function isModuleKind(value: unknown): value is ModuleKind {
  return (MODULE_KINDS as readonly unknown[]).includes(value);
}

/**
 * Whether `value` is a valid {@linkcode ModuleState}.
 *
 * @param value Anything.
 * @returns `true` for the six snake_case states.
 *
 * @example
 * ```ts
 * import { isModuleState } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isModuleState("running"));
 * assert.ok(!isModuleState("Running"));
 * ```
 */
export function isModuleState(value: unknown): value is ModuleState {
  return (MODULE_STATES as readonly unknown[]).includes(value);
}
