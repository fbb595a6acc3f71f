/**
 * Strict JSON, exact against serde_json: only values that read back unchanged
 * are accepted, so nothing is silently dropped or altered on write; integers a
 * double cannot hold exactly are read as `bigint`.
 *
 * @module
 */
import { SerializationError } from "./errors.ts";
import { loneSurrogate } from "./_text.ts";

/**
 * A configuration value (and a decision's `inputs` and `output`) as the
 * registry reads it: JSON, where an integer outside ±(2^53 - 1)
 * (`Number.MAX_SAFE_INTEGER`) is a `bigint` holding its exact value (a Rust
 * kernel's `u64::MAX` is `18446744073709551615n`) and every other number a
 * `number`. Writes take the same shapes; a `bigint` is written as a plain JSON
 * integer, and must fit a Rust `i64` or `u64`. A `number` beyond 2^53 is
 * always an integer: it is written as the exact digits of its value (which
 * serde_json reads exactly, up to `u64::MAX`), so it reads back as a `bigint`
 * of the same value.
 */
export type JsonValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** The smallest integer serde_json reads exactly (`i64::MIN`). */
const MIN_JSON_INTEGER = -(2n ** 63n);
/** The largest integer serde_json reads exactly (`u64::MAX`). */
const MAX_JSON_INTEGER = 2n ** 64n - 1n;

/**
 * Serializes `value` to compact JSON (as serde_json writes it), refusing what
 * JSON cannot carry faithfully: `undefined`, functions, symbols, NaN,
 * Infinity, cycles, sparse arrays, strings (and property names) with a lone
 * UTF-16 surrogate, a `bigint` outside `i64::MIN` to `u64::MAX`, and objects
 * other than plain objects and arrays (a `Date`, `Map` or class instance would
 * come back as something else). A `bigint` is written as a plain integer.
 *
 * @param value The value to store.
 * @returns Its JSON text.
 * @throws {SerializationError} naming the offending value and where it is (`$.a[2]`).
 *
 * @example
 * ```ts
 * import { encodeJson, SerializationError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodeJson({ url: "https://example.com", retries: 3 }), '{"url":"https://example.com","retries":3}');
 * assert.equal(encodeJson({ id: 18446744073709551615n }), '{"id":18446744073709551615}');
 * assert.throws(() => encodeJson({ when: new Date() }), SerializationError);
 * assert.throws(() => encodeJson("\ud800"), SerializationError);
 * ```
 */
export function encodeJson(value: unknown): string {
  switch (typeof value) {
    case "string":
      if (value.isWellFormed()) return JSON.stringify(value);
      break;
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (Number.isFinite(value) && !isUnsafeInteger(value)) return JSON.stringify(value);
  }
  if (value === null) return "null";
  // The common value (plain objects and arrays of strings, finite numbers, booleans and null) needs one quick walk
  // and JSON.stringify; anything else takes the careful walk below, which names what it refuses.
  if (typeof value === "object" && isPlainJson(value, 0)) return JSON.stringify(value);
  const seen = { raw: false };
  checkJson(value, [], [], seen);
  return seen.raw ? JSON.stringify(value, exactIntegerText) : JSON.stringify(value);
}

/**
 * Whether `value` (an object `depth` objects deep) is JSON that `JSON.stringify` writes exactly as serde_json reads
 * it: plain objects and arrays, well-formed strings and keys, safe or fractional finite numbers, booleans and null,
 * nested less than {@linkcode MAX_JSON_DEPTH} deep. `false` for anything else (a bigint, an unsafe integer, a hole,
 * a cycle, which ends at the depth limit): {@linkcode checkJson} then decides, and names the problem.
 */
function isPlainJson(value: object, depth: number): boolean {
  if (depth >= MAX_JSON_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      // A hole reads as undefined: refused here, named by the careful walk.
      if (!isPlainJsonItem(value[i], depth)) return false;
    }
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  // for-in allocates no key array; an inherited enumerable property (JSON.stringify skips it) is only looked at more.
  for (const key in value) {
    if (!key.isWellFormed() || !isPlainJsonItem((value as Record<string, unknown>)[key], depth)) return false;
  }
  return true;
}

function isPlainJsonItem(item: unknown, depth: number): boolean {
  switch (typeof item) {
    case "string":
      return item.isWellFormed();
    case "number":
      return Number.isFinite(item) && !isUnsafeInteger(item);
    case "boolean":
      return true;
    case "object":
      return item === null || isPlainJson(item, depth + 1);
    default:
      return false;
  }
}

/**
 * A double beyond 2^53 that `JSON.stringify` writes as integer digits (below 1e21), where it writes the shortest
 * digits that round-trip as a double (`2 ** 64` as `18446744073709552000`): serde_json, and our reader, would take
 * those digits for an exact integer, a different one.
 */
function isUnsafeInteger(value: number): boolean {
  return Number.isInteger(value) && !Number.isSafeInteger(value) && Math.abs(value) < 1e21;
}

/** `JSON.rawJSON` (ES2025): a value `JSON.stringify` writes as the given text. Not yet in TypeScript's lib. */
const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/** Writes a bigint, and a double that is an integer beyond 2^53, as the exact digits of its value. */
function exactIntegerText(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return rawJson(value.toString());
  if (typeof value === "number" && isUnsafeInteger(value)) return rawJson(BigInt(value).toString());
  return value;
}

/**
 * Parses JSON text as serde_json reads it, without losing integers: one a
 * double cannot hold exactly (outside ±`Number.MAX_SAFE_INTEGER`) becomes a
 * `bigint` with the exact value of its digits. Numbers with a fraction or an
 * exponent stay numbers, as serde_json reads them as `f64`.
 *
 * @param text JSON text.
 * @returns The value, typed as {@linkcode JsonValue}.
 * @throws {SyntaxError} when `text` is not JSON.
 *
 * @example
 * ```ts
 * import { decodeJson } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeJson('{"n":9007199254740993,"f":1.5}'), { n: 9007199254740993n, f: 1.5 });
 * assert.equal(decodeJson("9007199254740991"), 9007199254740991);
 * ```
 */
export function decodeJson(text: string): JsonValue {
  // An integer beyond 2^53 has at least 16 digits: without such a run, no reviver is needed (the common case).
  return SIXTEEN_DIGITS.test(text) ? JSON.parse(text, exactIntegers) : JSON.parse(text);
}

const SIXTEEN_DIGITS = /\d{16}/;
const INTEGER_LITERAL = /^-?\d+$/;

function exactIntegers(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value !== "number" || Number.isSafeInteger(value)) return value;
  const source = context?.source;
  return source !== undefined && INTEGER_LITERAL.test(source) ? BigInt(source) : value;
}

/** serde_json (oxide-k's reader) refuses JSON nested deeper than this; so do we, before writing it. */
export const MAX_JSON_DEPTH = 127;

/**
 * Walks `value` depth first. `ancestors` are the objects above it (for cycles and depth), `keys` the property
 * names and indexes leading to it: the path in a message is built from them only when something is refused.
 */
function checkJson(
  value: unknown,
  ancestors: object[],
  keys: (string | number)[],
  seen: { raw: boolean },
): void {
  switch (typeof value) {
    case "string": {
      const lone = loneSurrogate(value);
      if (lone !== undefined) {
        refuse(`the string at ${pathOf(keys)} has a lone surrogate (${lone}), which JSON cannot carry to oxide-k`);
      }
      return;
    }
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) refuse(`${value} at ${pathOf(keys)} is not a finite number`);
      if (isUnsafeInteger(value)) seen.raw = true;
      return;
    case "undefined":
      return refuse(`undefined at ${pathOf(keys)} has no JSON form`);
    case "bigint":
      if (value < MIN_JSON_INTEGER || value > MAX_JSON_INTEGER) {
        refuse(
          `bigint ${value}n at ${
            pathOf(keys)
          } is outside i64::MIN to u64::MAX, which oxide-k cannot read exactly; store it as a string`,
        );
      }
      seen.raw = true;
      return;
    case "function":
    case "symbol":
      return refuse(`a ${typeof value} at ${pathOf(keys)} has no JSON form`);
  }
  if (value === null) return;
  const object = value as object;
  if (ancestors.includes(object)) refuse(`the value at ${pathOf(keys)} refers to itself (a cycle)`);
  if (ancestors.length >= MAX_JSON_DEPTH) {
    refuse(`the value at ${pathOf(keys)} is nested deeper than ${MAX_JSON_DEPTH} levels, which oxide-k cannot read`);
  }
  ancestors.push(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      keys.push(i);
      if (!(i in object)) refuse(`the array at ${pathOf(keys.slice(0, -1))} has a hole at index ${i}`);
      checkJson(object[i], ancestors, keys, seen);
      keys.pop();
    }
  } else {
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      const name = (object.constructor as { name?: string } | undefined)?.name ?? "object";
      refuse(`a ${name} at ${pathOf(keys)} is not a plain object; convert it first (a Date with toISOString())`);
    }
    for (const key of Object.keys(object)) {
      keys.push(key);
      const lone = loneSurrogate(key);
      if (lone !== undefined) {
        refuse(
          `the property name at ${pathOf(keys)} has a lone surrogate (${lone}), which JSON cannot carry to oxide-k`,
        );
      }
      checkJson((object as Record<string, unknown>)[key], ancestors, keys, seen);
      keys.pop();
    }
  }
  ancestors.pop();
}

/**
 * Where a parsed JSON value holds a string or property name with a lone UTF-16 surrogate (which serde_json refuses),
 * as `the string at $.a[1] has a lone surrogate (U+D800 at index 0)`, or `undefined` when it holds none.
 */
export function findLoneSurrogate(value: unknown, keys: (string | number)[] = []): string | undefined {
  if (typeof value === "string") {
    const lone = loneSurrogate(value);
    return lone === undefined ? undefined : `the string at ${pathOf(keys)} has a lone surrogate (${lone})`;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((item, i) => [i, item])
    : Object.entries(value);
  for (const [key, item] of entries) {
    keys.push(key);
    const lone = typeof key === "string" ? loneSurrogate(key) : undefined;
    const found = lone === undefined
      ? findLoneSurrogate(item, keys)
      : `the property name at ${pathOf(keys)} has a lone surrogate (${lone})`;
    keys.pop();
    if (found !== undefined) return found;
  }
  return undefined;
}

/** `$.a[2]`: where a value sits, for messages. */
function pathOf(keys: readonly (string | number)[]): string {
  return "$" + keys.map((key) => typeof key === "number" ? `[${key}]` : `.${key.toWellFormed()}`).join("");
}

function refuse(detail: string): never {
  throw new SerializationError(detail);
}
