/**
 * The oxide-k sealing scheme, byte for byte as the Rust crate oxide-k 0.3.0
 * writes it: key = SHA-256 of the UTF-8 key string, a random 12-byte nonce,
 * AES-256-GCM with no associated data, stored as padded URL-safe base64 of
 * nonce ++ ciphertext ++ tag.
 *
 * The scheme does not bind a value to its config key: anyone who can write
 * the file can swap two sealed values undetected. The envelope scheme
 * (`envelope.ts`) fixes that; this one exists so a Rust kernel and a Deno
 * process can share a file.
 *
 * @module
 */

import { SealedValueError } from "../errors.ts";
import { concatBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from "./_bytes.ts";
import { checkRegistryKey, type RegistryKey } from "./key.ts";
import { importAesGcmKey, openAesGcm, sealAesGcm } from "./_aes_gcm.ts";

/** Bytes of the random nonce in front of each sealed value. */
export const OXIDE_K_NONCE_BYTES = 12;
/** Bytes of the AES-GCM tag at the end of each sealed value. */
export const OXIDE_K_TAG_BYTES = 16;

/** Shortest stored form: an empty plaintext, 28 bytes, is 40 base64 characters. */
const MIN_STORED_LENGTH = 40;
const STORED_SHAPE = /^[A-Za-z0-9_-]+={0,2}$/;

/**
 * Imports the value key of the oxide-k scheme, once per registry.
 *
 * @param key A passphrase (hashed with SHA-256, as oxide-k does), 32 raw key
 * bytes, or an AES-GCM 256-bit `CryptoKey` allowing `encrypt` and `decrypt`.
 * @returns A non-extractable AES-GCM key.
 * @throws {TypeError} When `key` is not a usable key.
 * @throws {RangeError} When raw key bytes are not 32 bytes long.
 *
 * @example
 * ```ts
 * import { importOxideKKey } from "./oxide_k.ts";
 * import assert from "node:assert/strict";
 *
 * const key = await importOxideKKey("s3cr3t-key");
 * assert.equal(key.extractable, false);
 * ```
 */
export async function importOxideKKey(key: RegistryKey): Promise<CryptoKey> {
  checkRegistryKey(key, ["encrypt", "decrypt"]);
  if (key instanceof CryptoKey) return key;
  const raw = typeof key === "string"
    ? new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(key)))
    : Uint8Array.from(key);
  try {
    return await importAesGcmKey(raw);
  } finally {
    raw.fill(0);
  }
}

/**
 * Seals a config value's JSON text in the oxide-k scheme.
 *
 * @param key The value key from {@linkcode importOxideKKey}.
 * @param plaintext The JSON text.
 * @returns Padded URL-safe base64 of nonce ++ ciphertext ++ tag.
 *
 * @example
 * ```ts
 * import { importOxideKKey, openOxideK, sealOxideK } from "./oxide_k.ts";
 * import assert from "node:assert/strict";
 *
 * const key = await importOxideKKey("s3cr3t-key");
 * const stored = await sealOxideK(key, '"my-super-secret-token"');
 * assert.match(stored, /^[A-Za-z0-9_-]+={0,2}$/);
 * assert.equal(await openOxideK(key, "api_token", stored), '"my-super-secret-token"');
 * ```
 */
export async function sealOxideK(
  key: CryptoKey,
  plaintext: string,
): Promise<string> {
  const data = utf8(plaintext);
  const nonce = crypto.getRandomValues(new Uint8Array(OXIDE_K_NONCE_BYTES));
  const sealed = await sealAesGcm(key, nonce, data);
  data.fill(0);
  return toBase64Url(concatBytes(nonce, sealed), true);
}

/**
 * Opens a value sealed in the oxide-k scheme.
 *
 * @param key The value key from {@linkcode importOxideKKey}.
 * @param configKey The config key the value is stored under, for messages.
 * @param stored The stored text.
 * @returns The JSON text.
 * @throws {SealedValueError} When `stored` is not padded URL-safe base64
 * (`malformed`), is too short (`tampered`), or fails authentication
 * (`wrong_key_or_tampered`: the scheme cannot tell a wrong key from an altered value).
 *
 * @example
 * ```ts
 * import { importOxideKKey, openOxideK, sealOxideK } from "./oxide_k.ts";
 * import { SealedValueError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const stored = await sealOxideK(await importOxideKKey("right"), "42");
 * await assert.rejects(
 *   openOxideK(await importOxideKKey("wrong"), "answer", stored),
 *   SealedValueError,
 * );
 * ```
 */
export async function openOxideK(
  key: CryptoKey,
  configKey: string,
  stored: string,
): Promise<string> {
  const blob = fromBase64Url(stored, true);
  if (blob === undefined) {
    throw new SealedValueError(
      configKey,
      "malformed",
      "it is not padded URL-safe base64 (oxide-k scheme)",
    );
  }
  if (blob.length < OXIDE_K_NONCE_BYTES + OXIDE_K_TAG_BYTES) {
    throw new SealedValueError(
      configKey,
      "tampered",
      `it is truncated: ${blob.length} bytes, shorter than a nonce and tag (oxide-k scheme)`,
    );
  }
  let plain: Uint8Array;
  try {
    plain = await openAesGcm(key, blob.subarray(0, OXIDE_K_NONCE_BYTES), blob.subarray(OXIDE_K_NONCE_BYTES));
  } catch (error) {
    throw new SealedValueError(
      configKey,
      "wrong_key_or_tampered",
      "wrong key, or the value was altered (oxide-k scheme)",
      { cause: error },
    );
  }
  const text = fromUtf8(plain);
  plain.fill(0);
  if (text === undefined) {
    throw new SealedValueError(
      configKey,
      "malformed",
      "its plaintext is not UTF-8 (oxide-k scheme)",
    );
  }
  return text;
}

/**
 * Tells whether stored text has the shape of an oxide-k sealed value: URL-safe
 * base64 with padding, at least 40 characters. Plain JSON never has this shape
 * except for a number of 40 or more digits, so test for JSON first when a
 * plain value is possible.
 *
 * @param stored The stored text.
 * @returns `true` when it looks sealed in the oxide-k scheme.
 *
 * @example
 * ```ts
 * import { looksOxideKSealed } from "./oxide_k.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(looksOxideKSealed('"hello"'), false);
 * assert.equal(looksOxideKSealed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), true);
 * ```
 */
export function looksOxideKSealed(stored: string): boolean {
  return stored.length >= MIN_STORED_LENGTH && stored.length % 4 === 0 &&
    STORED_SHAPE.test(stored);
}
