// Text that enters the registry: checked once, the same way, wherever it comes in.
import { describe } from "./_describe.ts";
import { SerializationError } from "./errors.ts";

/**
 * Where `text` holds a lone UTF-16 surrogate, as `U+D800 at index 3`, or `undefined` when it is well formed.
 * Such a string has no UTF-8 form: SQLite would store U+FFFD in its place (so two keys would become one row), and
 * JSON would carry it as an escape that serde_json, and so oxide-k, refuses.
 */
export function loneSurrogate(text: string): string | undefined {
  if (text.isWellFormed()) return undefined;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdfff) continue;
    const next = text.charCodeAt(i + 1);
    if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      i++;
      continue;
    }
    return `U+${code.toString(16).toUpperCase()} at index ${i}`;
  }
  return undefined;
}

/**
 * Checks a text argument (an id, a name, a config key, a decision field): a string, without NUL (`node:sqlite`
 * cuts text at a NUL when reading it back) and without lone surrogates (see {@linkcode loneSurrogate}).
 *
 * Not a string is misuse of the argument's shape: a `TypeError`. A string whose text the registry cannot store
 * faithfully is a `SerializationError`, as the same text inside a value is: one error for one problem, wherever the
 * text comes in.
 *
 * @throws {TypeError} naming `what`, when `value` is not a string.
 * @throws {SerializationError} naming `what`, when it holds a NUL or a lone surrogate.
 */
export function checkText(what: string, value: unknown): string {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string, got ${describe(value)}`);
  if (value.includes("\0")) {
    throw new SerializationError(`${what} must not contain a NUL character: ${describe(value)}`);
  }
  const lone = loneSurrogate(value);
  if (lone !== undefined) {
    throw new SerializationError(
      `${what} must not contain a lone surrogate, which has no UTF-8 form: ${lone} of ${
        describe(value.toWellFormed())
      }`,
    );
  }
  return value;
}
