/**
 * Entries, compare-and-set options and pages: the revision data the registry
 * shows beside its values (etcd's `version`, `create_revision`,
 * `mod_revision`).
 *
 * @module
 */
import { RegistryError } from "../errors.ts";
import { describe } from "../_describe.ts";

/**
 * A config value with its revision data, from `getConfigEntry` and `listConfig`.
 *
 * @example
 * ```ts
 * import { type ConfigEntry, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * await reg.setConfig("max_threads", 16);
 * const entry: ConfigEntry<number> | undefined = await reg.getConfigEntry<number>("max_threads");
 * assert.equal(entry?.value, 16);
 * assert.equal(entry?.version, 2);
 * assert.equal(entry?.createRevision, 1);
 * assert.equal(entry?.modRevision, 2);
 * assert.ok(entry?.updatedAt instanceof Date);
 * ```
 */
export interface ConfigEntry<T = unknown> {
  /** The config key. */
  readonly key: string;
  /** The value (opened, when the registry is sealed). */
  readonly value: T;
  /** Writes since the key was created (1 after the first); a delete ends it, and the next write starts at 1. */
  readonly version: number;
  /** The revision of the write that created the key. */
  readonly createRevision: number;
  /** The revision of the latest write to the key. */
  readonly modRevision: number;
  /** When the value was last written. */
  readonly updatedAt: Date;
}

/**
 * Compare-and-set: the version a write expects the key (or module) to be at.
 *
 * @example
 * ```ts
 * import { ConflictError, StateRegistry, type WriteOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const create: WriteOptions = { ifVersion: 0 }; // Only if it does not exist yet.
 * await reg.setConfig("leader", "node-a", create);
 * await assert.rejects(reg.setConfig("leader", "node-b", create), ConflictError);
 * await reg.setConfig("leader", "node-b", { ifVersion: 1 });
 * assert.equal(await reg.getConfig("leader"), "node-b");
 * ```
 */
export interface WriteOptions {
  /**
   * Write only if the key's current version is this (`0`: only if it does
   * not exist). Otherwise nothing is written and the call fails with a
   * `ConflictError` carrying the current version. Absent: write whatever the
   * version.
   */
  ifVersion?: number | undefined;
}

/**
 * Options of `update`.
 *
 * @example
 * ```ts
 * import { StateRegistry, type UpdateOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const options: UpdateOptions = { tries: 3 };
 * const entry = await reg.update<string[]>("peers", (peers) => [...(peers ?? []), "node-a"], options);
 * assert.deepEqual(entry?.value, ["node-a"]);
 * ```
 */
export interface UpdateOptions {
  /** How many times to read, apply and compare-and-set before giving up with a `ConflictError` (default 16). */
  tries?: number | undefined;
}

/** The default of {@linkcode UpdateOptions.tries}. */
export const DEFAULT_UPDATE_TRIES = 16;

/** A short random pause before try `attempt` + 1 of an update, growing with the attempts (at most 50 ms). */
export function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2 ** attempt, 50)));
}

/**
 * Options of `listConfig`.
 *
 * @example Two pages read at one revision
 * ```ts
 * import { type ListConfigOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * for (const key of ["net.a", "net.b", "net.c", "other"]) await reg.setConfig(key, key);
 * const options: ListConfigOptions = { prefix: "net.", limit: 2 };
 * const first = await reg.listConfig(options);
 * assert.deepEqual(first.map((e) => e.key), ["net.a", "net.b"]);
 * await reg.deleteConfig("net.c"); // After the first page: the second still sees it.
 * const second = await reg.listConfig({ ...options, cursor: first.cursor });
 * assert.deepEqual(second.map((e) => e.key), ["net.c"]);
 * assert.equal(second.cursor, undefined);
 * assert.equal(second.revision, first.revision);
 * ```
 */
export interface ListConfigOptions {
  /** Only keys starting with this. */
  prefix?: string | undefined;
  /** At most this many entries per page (a positive integer); absent: all. */
  limit?: number | undefined;
  /** The `cursor` of the previous page: the next page, read at the same revision. Pass the same prefix and order. */
  cursor?: string | undefined;
  /** Descending key order. */
  reverse?: boolean | undefined;
  /**
   * What to do with a value that cannot be read (not JSON, written by another program; sealed, on a handle opened
   * without a key; tampered): `"throw"` (default) fails at the first; `"skip"` leaves them out of the page and lists
   * them in its `skipped`.
   */
  invalid?: "throw" | "skip" | undefined;
}

/**
 * A row a listing with `invalid: "skip"` left out: its key or id, and why.
 *
 * @example
 * ```ts
 * import { KeyRequiredError, type SkippedRow, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const path = `${await Deno.makeTempDir()}/registry.db`;
 * {
 *   await using sealed = await StateRegistry.openEncrypted(path, new Uint8Array(32).fill(1));
 *   await sealed.setConfig("api.token", "s3cr3t");
 * }
 * await using keyless = await StateRegistry.connect(path);
 * const page = await keyless.listConfig({ invalid: "skip" });
 * const [row]: readonly SkippedRow[] = page.skipped ?? [];
 * assert.equal(page.length, 0);
 * assert.equal(row?.key, "api.token");
 * assert.ok(row?.error instanceof KeyRequiredError);
 * ```
 */
export interface SkippedRow {
  /** The config key or module id. */
  readonly key: string;
  /** Why it could not be read. */
  readonly error: Error;
  /** When the row was last written, when its `updated_at` reads as a timestamp. */
  readonly updatedAt: Date | undefined;
}

/**
 * A page of a listing: the items, plus where the next page starts and the
 * revision every page of the listing is read at.
 *
 * @example
 * ```ts
 * import { type ConfigEntry, type Page, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("a", 1);
 * const page: Page<ConfigEntry> = await reg.listConfig();
 * assert.equal(page.length, 1);
 * assert.equal(page.cursor, undefined); // The last page.
 * assert.equal(page.revision, 1);
 * ```
 */
export type Page<T> = T[] & {
  /** Pass it as `cursor` for the next page; `undefined` on the last page. */
  readonly cursor: string | undefined;
  /** The store revision the listing is read at. */
  readonly revision: number;
  /** The rows left out, in listing order; only with `invalid: "skip"`. */
  readonly skipped?: readonly SkippedRow[] | undefined;
};

/** Makes an array a page (non-enumerable extras, so it still compares equal to a plain array). */
export function toPage<T>(
  items: T[],
  cursor: string | undefined,
  revision: number,
  skipped?: readonly SkippedRow[],
): Page<T> {
  Object.defineProperty(items, "cursor", { value: cursor });
  Object.defineProperty(items, "revision", { value: revision });
  if (skipped !== undefined) Object.defineProperty(items, "skipped", { value: skipped });
  return items as Page<T>;
}

/** What a cursor was made for: the listing it continues. A cursor passed to another listing is refused. */
export interface CursorScope {
  /** `"config"` or `"modules"`. */
  space: string;
  /** The listing's prefix (`""`: none). */
  prefix: string;
  /** Whether the listing is in descending key order. */
  reverse: boolean;
}

/** A cursor: the last key of a page, the revision of the listing and what it lists, as opaque text. */
export function encodeCursor(lastKey: string, revision: number, scope: CursorScope): string {
  const fields = [revision, lastKey, scope.space, scope.prefix, scope.reverse];
  return new TextEncoder().encode(JSON.stringify(fields)).toBase64({ alphabet: "base64url" });
}

/**
 * The last key and revision a cursor carries, checked against the listing it is passed to.
 *
 * @throws {RegistryError} when it is not a cursor a listing returned, or one of another listing (space, prefix or
 * order).
 */
export function decodeCursor(cursor: unknown, scope: CursorScope): { after: string; revision: number } {
  if (typeof cursor !== "string") throw new TypeError(`cursor must be a string, got ${describe(cursor)}`);
  let fields: unknown;
  try {
    fields = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(cursor, { alphabet: "base64url" })));
  } catch {
    // Reported below.
  }
  const [revision, after, space, prefix, reverse] = Array.isArray(fields) ? fields : [];
  if (
    typeof after !== "string" || !Number.isSafeInteger(revision) || (revision as number) < 0 ||
    typeof space !== "string" || typeof prefix !== "string" || typeof reverse !== "boolean"
  ) {
    throw new RegistryError(`cursor ${describe(cursor)} is not one a listing returned`);
  }
  if (space !== scope.space || prefix !== scope.prefix || reverse !== scope.reverse) {
    const listing = (s: CursorScope) =>
      `${s.space}${s.prefix === "" ? "" : ` with prefix ${describe(s.prefix)}`} in ${
        s.reverse ? "descending" : "ascending"
      } order`;
    throw new RegistryError(
      `this cursor continues a listing of ${listing({ space, prefix, reverse })}, not of ${
        listing(scope)
      }: pass the same prefix and reverse as for its first page`,
    );
  }
  return { after, revision: revision as number };
}

/**
 * Refuses an option name `options` should not have (a typo such as `ifVersoin` would otherwise be ignored, and turn a
 * compare-and-set into a plain write).
 *
 * @throws {TypeError} naming the unknown option and the known ones.
 */
export function checkOptionNames(what: string, options: object, known: readonly string[]): void {
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw new TypeError(
        `unknown option ${describe(name)} in the options of ${what} (known: ${known.map((k) => `'${k}'`).join(", ")})`,
      );
    }
  }
}

/** Checks `ifVersion` and `limit`-like counts: a non-negative safe integer. */
export function checkCount(what: string, value: unknown, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new TypeError(`${what} must be an integer of at least ${min}, got ${describe(value)}`);
  }
  return value;
}

/** The `ifVersion` of the write options of `what` (for the message), checked; `undefined` when absent. */
export function ifVersionOf(what: string, options: WriteOptions | undefined): number | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  checkOptionNames(what, options, ["ifVersion"]);
  return options.ifVersion === undefined ? undefined : checkCount("ifVersion", options.ifVersion);
}
