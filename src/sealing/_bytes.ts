/**
 * Byte helpers for the sealing formats: UTF-8 and strict URL-safe base64.
 * Private to `src/sealing/`.
 *
 * @module
 */

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder("utf-8", { fatal: true });

/**
 * Any character outside URL-safe base64's alphabet. A search for one character, never a pattern with a repeated
 * group: V8's regular expressions backtrack on those and overflow the stack on values of a few MiB.
 */
const NOT_BASE64URL = /[^A-Za-z0-9_-]/;

/**
 * Encodes text as UTF-8.
 *
 * @param text Any string (lone surrogates become U+FFFD; passphrases with one are refused before they get here).
 * @returns Its UTF-8 bytes.
 */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return ENCODER.encode(text);
}

/**
 * Decodes UTF-8, refusing invalid sequences.
 *
 * @param bytes UTF-8 bytes.
 * @returns The text, or `undefined` when the bytes are not valid UTF-8.
 */
export function fromUtf8(bytes: Uint8Array): string | undefined {
  try {
    return DECODER.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Encodes bytes as URL-safe base64.
 *
 * @param bytes The bytes.
 * @param padded Whether to pad with `=` to a multiple of 4 characters.
 * @returns The text.
 */
export function toBase64Url(bytes: Uint8Array, padded: boolean): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: !padded });
}

/**
 * Decodes URL-safe base64 strictly: the alphabet `A-Z a-z 0-9 - _`, padding
 * exactly as `padded` says, no whitespace, canonical final bits (so each byte
 * string has one encoding, as base64ct requires).
 *
 * @param text The encoded text.
 * @param padded Whether `=` padding is required (`true`) or forbidden (`false`).
 * @returns The bytes, or `undefined` when `text` is not such an encoding.
 */
export function fromBase64Url(
  text: string,
  padded: boolean,
): Uint8Array<ArrayBuffer> | undefined {
  let body = text;
  if (padded) {
    if (text.length % 4 !== 0) return undefined;
    body = text.endsWith("==") ? text.slice(0, -2) : text.endsWith("=") ? text.slice(0, -1) : text;
  } else if (text.length % 4 === 1) {
    return undefined;
  }
  if (NOT_BASE64URL.test(body)) return undefined;
  const bytes = Uint8Array.fromBase64(body, { alphabet: "base64url" });
  // Non-zero bits after the last byte decode loosely; re-encoding catches them.
  return toBase64Url(bytes, padded) === text ? bytes : undefined;
}

/**
 * Joins byte arrays.
 *
 * @param parts The arrays, in order.
 * @returns One new array holding them all.
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
