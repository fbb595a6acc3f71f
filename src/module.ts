/**
 * Module types shared by every layer: kinds, lifecycle states, metadata and
 * the stored record.
 *
 * @module
 */

/**
 * Every valid {@linkcode ModuleKind}, in oxide-k's order.
 *
 * @example
 * ```ts
 * import { MODULE_KINDS, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(MODULE_KINDS, ["native", "wasm"]);
 * await using reg = await StateRegistry.inMemory();
 * for (const kind of MODULE_KINDS) {
 *   await reg.upsertModule({ id: `${kind}-demo`, name: "Demo", version: "1.0.0", kind }, "loaded");
 * }
 * assert.deepEqual((await reg.listModules()).map((m) => m.kind), ["native", "wasm"]);
 * ```
 */
export const MODULE_KINDS = ["native", "wasm"] as const;

/**
 * Where a module executes: natively or in the WebAssembly layer.
 *
 * @example
 * ```ts
 * import { isModuleKind, type ModuleKind, SerializationError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const kind: ModuleKind = "wasm";
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "mirror", name: "Mirror", version: "0.1.0", kind }, "loaded");
 * assert.equal((await reg.getModule("mirror"))?.kind, "wasm");
 * assert.equal(isModuleKind("python"), false);
 * const bad = { id: "py", name: "Py", version: "1", kind: "python" as ModuleKind };
 * await assert.rejects(reg.upsertModule(bad, "loaded"), SerializationError);
 * ```
 */
export type ModuleKind = typeof MODULE_KINDS[number];

/**
 * Every valid {@linkcode ModuleState}, in the order the module manager drives
 * them (`failed` last: a start or stop hook failed).
 *
 * @example
 * ```ts
 * import { MODULE_STATES, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(MODULE_STATES, ["loaded", "starting", "running", "stopping", "stopped", "failed"]);
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
 * for (const state of MODULE_STATES) {
 *   await reg.setModuleState("echo", state);
 *   assert.equal((await reg.getModule("echo"))?.state, state);
 * }
 * ```
 */
export const MODULE_STATES = [
  "loaded",
  "starting",
  "running",
  "stopping",
  "stopped",
  "failed",
] as const;

/**
 * A module's last reported lifecycle state. The registry does not enforce transitions.
 *
 * @example
 * ```ts
 * import { type ModuleState, SerializationError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
 * const state: ModuleState = "stopped";
 * await reg.setModuleState("echo", state);
 * assert.equal((await reg.getModule("echo"))?.state, "stopped");
 * await assert.rejects(reg.setModuleState("echo", "paused" as ModuleState), SerializationError);
 * ```
 */
export type ModuleState = typeof MODULE_STATES[number];

/**
 * What a module says about itself when it registers.
 *
 * @example
 * ```ts
 * import { type ModuleMetadata, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const echo: ModuleMetadata = { id: "echo", name: "Echo", version: "0.1.0", kind: "native", description: "Echoes" };
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule(echo, "loaded");
 * const { state, updatedAt: _, recordVersion: _v, createRevision: _c, modRevision: _m, ...stored } =
 *   (await reg.getModule("echo"))!;
 * assert.equal(state, "loaded");
 * assert.deepEqual(stored, echo);
 * ```
 */
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

/**
 * A row of the `modules` table: the metadata plus state and last update.
 *
 * @example
 * ```ts
 * import { type ModuleRecord, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
 * const record: ModuleRecord | undefined = await reg.getModule("echo");
 * assert.equal(record?.state, "running");
 * assert.equal(record?.description, undefined);
 * assert.ok(record?.updatedAt instanceof Date);
 * ```
 */
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
  /** Writes since the module was created (1 after the first; a delete ends it): `ifVersion` compares this. */
  recordVersion: number;
  /** The revision of the write that created the module. */
  createRevision: number;
  /** The revision of the latest write to the module. */
  modRevision: number;
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
