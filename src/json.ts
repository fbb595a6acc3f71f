/**
 * Strict JSON: only values that `JSON.parse(JSON.stringify(v))` gives back
 * unchanged are accepted, so nothing is silently dropped or altered on write.
 *
 * @module
 */
import { SerializationError } from "./errors.ts";

/**
 * Serializes `value` to compact JSON (as serde_json writes it), refusing what
 * JSON cannot carry faithfully: `undefined`, functions, symbols, bigint, NaN,
 * Infinity, cycles, sparse arrays, and objects other than plain objects and
 * arrays (a `Date`, `Map` or class instance would come back as something else).
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
 * assert.throws(() => encodeJson({ when: new Date() }), SerializationError);
 * ```
 */
export function encodeJson(value: unknown): string {
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (Number.isFinite(value)) return JSON.stringify(value);
  }
  if (value === null) return "null";
  checkJson(value, [], []);
  return JSON.stringify(value);
}

/** serde_json (oxide-k's reader) refuses JSON nested deeper than this; so do we, before writing it. */
export const MAX_JSON_DEPTH = 127;

/**
 * Walks `value` depth first. `ancestors` are the objects above it (for cycles and depth), `keys` the property
 * names and indexes leading to it: the path in a message is built from them only when something is refused.
 */
function checkJson(value: unknown, ancestors: object[], keys: (string | number)[]): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) refuse(`${value} at ${pathOf(keys)} is not a finite number`);
      return;
    case "undefined":
      return refuse(`undefined at ${pathOf(keys)} has no JSON form`);
    case "bigint":
      return refuse(`bigint ${value}n at ${pathOf(keys)} has no JSON form; store it as a string`);
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
      checkJson(object[i], ancestors, keys);
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
      checkJson((object as Record<string, unknown>)[key], ancestors, keys);
      keys.pop();
    }
  }
  ancestors.pop();
}

/** `$.a[2]`: where a value sits, for messages. */
function pathOf(keys: readonly (string | number)[]): string {
  return "$" + keys.map((key) => typeof key === "number" ? `[${key}]` : `.${key}`).join("");
}

function refuse(detail: string): never {
  throw new SerializationError(detail);
}
