/**
 * The envelope sealing scheme: a random 256-bit data key seals config values;
 * a key-encryption key wraps the data key.
 *
 * - The key-encryption key is PBKDF2-SHA256 of a passphrase (at least
 *   600,000 iterations, a random 16-byte salt; both stored so they can be
 *   raised later), or 32 raw key bytes, or an AES-GCM `CryptoKey`.
 * - The data key is wrapped with AES-256-GCM, bound by associated data to its
 *   key id. Its GCM tag is the key check: a wrong key fails to unwrap it, at
 *   open, before any value is read or written.
 * - A value is stored as `$oxide1$<key id>$<nonce ++ ciphertext ++ tag>` (the
 *   last part unpadded URL-safe base64). It is sealed with AES-256-GCM whose
 *   associated data binds the format version, the key id and the config key
 *   name, so a value copied to another config key fails to open. `$` starts
 *   neither JSON nor base64, so a sealed value is never taken for a plain one
 *   or for an oxide-k one.
 *
 * @module
 */

import { CryptoError, SealedValueError, WrongKeyError } from "../errors.ts";
import { concatBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from "./_bytes.ts";
import { checkRegistryKey, type RegistryKey } from "./key.ts";
import { importAesGcmKey, openAesGcm, sealAesGcm } from "./_aes_gcm.ts";

/** The format version written in each value's prefix and associated data. */
export const ENVELOPE_VERSION = 1;
/** The prefix of every value this library seals in the envelope scheme. */
export const ENVELOPE_PREFIX: string = `$oxide${ENVELOPE_VERSION}$`;
/**
 * The fewest PBKDF2 iterations accepted, for new and stored parameters alike.
 *
 * @example
 * ```ts
 * import { MIN_PBKDF2_ITERATIONS, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MIN_PBKDF2_ITERATIONS, 600_000);
 * const iterations = MIN_PBKDF2_ITERATIONS - 1;
 * await assert.rejects(StateRegistry.openEncrypted(":memory:", "passphrase", { iterations }), RangeError);
 * ```
 */
export const MIN_PBKDF2_ITERATIONS = 600_000;
/**
 * The most PBKDF2 iterations accepted, for new and stored parameters alike: a
 * count written into the file by someone else cannot make an open hang.
 */
export const MAX_PBKDF2_ITERATIONS = 10_000_000;
/** Bytes of a new PBKDF2 salt. */
export const PBKDF2_SALT_BYTES = 16;

/** The shape of a data key id, as stored in `oxide_sealing.key_id` and in each value's prefix. */
export const KEY_ID_SHAPE: RegExp = /^[A-Za-z0-9_-]{1,64}$/;

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_BYTES = 8;
const ENVELOPE_SHAPE = /^\$oxide([0-9]{1,4})\$([A-Za-z0-9_-]{1,64})\$(.*)$/s;
const KEK_USAGES: readonly KeyUsage[] = ["wrapKey", "unwrapKey"];

/** PBKDF2-SHA256 parameters of a passphrase-derived key-encryption key. */
export interface Pbkdf2Params {
  /** The derivation. */
  readonly kdf: "pbkdf2-sha256";
  /** Iterations, at least {@linkcode MIN_PBKDF2_ITERATIONS}. */
  readonly iterations: number;
  /** The per-registry random salt. */
  readonly salt: Uint8Array;
}

/** The key-encryption key is the given key itself (32 raw bytes or a `CryptoKey`). */
export interface RawKeyParams {
  /** The derivation: none. */
  readonly kdf: "raw";
}

/** How a registry's key-encryption key comes from the caller's key. */
export type KdfParams = Pbkdf2Params | RawKeyParams;

/** Options of {@linkcode newKdfParams}. */
export interface KdfOptions {
  /** PBKDF2 iterations for a passphrase; default and minimum {@linkcode MIN_PBKDF2_ITERATIONS}. */
  iterations?: number | undefined;
}

/** An unwrapped data key and its id. */
export interface DataKey {
  /** The id stored in front of every value the key seals. */
  readonly keyId: string;
  /** The AES-GCM key. */
  readonly key: CryptoKey;
}

/** A data key wrapped by a key-encryption key, as stored. */
export interface WrappedDataKey {
  /** The data key's id. */
  readonly keyId: string;
  /** Unpadded URL-safe base64 of nonce ++ wrapped key ++ tag. */
  readonly wrapped: string;
}

/**
 * Chooses key-derivation parameters for a new key: PBKDF2-SHA256 with a fresh
 * random salt for a passphrase, none for raw bytes or a `CryptoKey`.
 *
 * @param key The new key.
 * @param options `iterations` for a passphrase.
 * @returns The parameters to store.
 * @throws {RangeError} When `iterations` is not an integer from 600,000 to 10,000,000.
 *
 * @example
 * ```ts
 * import { newKdfParams } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * const params = newKdfParams("correct horse battery staple");
 * assert.equal(params.kdf, "pbkdf2-sha256");
 * assert.deepEqual(newKdfParams(new Uint8Array(32)), { kdf: "raw" });
 * ```
 */
export function newKdfParams(key: RegistryKey, options: KdfOptions = {}): KdfParams {
  const iterations = options.iterations ?? MIN_PBKDF2_ITERATIONS;
  if (
    !Number.isSafeInteger(iterations) || iterations < MIN_PBKDF2_ITERATIONS || iterations > MAX_PBKDF2_ITERATIONS
  ) {
    throw new RangeError(
      `PBKDF2 iterations must be an integer from ${MIN_PBKDF2_ITERATIONS} to ${MAX_PBKDF2_ITERATIONS}: got ${iterations}`,
    );
  }
  if (typeof key !== "string") return { kdf: "raw" };
  const salt = crypto.getRandomValues(new Uint8Array(PBKDF2_SALT_BYTES));
  return { kdf: "pbkdf2-sha256", iterations, salt };
}

/**
 * Decodes a stored PBKDF2 salt strictly: padded URL-safe base64 of exactly
 * {@linkcode PBKDF2_SALT_BYTES} bytes, as {@linkcode newKdfParams}' salt is stored.
 *
 * @param text The stored text.
 * @returns The salt, or `undefined` when `text` is not such an encoding.
 *
 * @example
 * ```ts
 * import { decodeSalt } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(decodeSalt("AAAAAAAAAAAAAAAAAAAAAA==")?.length, 16);
 * assert.equal(decodeSalt("!!!"), undefined);
 * assert.equal(decodeSalt("AAAA"), undefined);
 * ```
 */
export function decodeSalt(text: string): Uint8Array<ArrayBuffer> | undefined {
  const salt = fromBase64Url(text, true);
  return salt?.length === PBKDF2_SALT_BYTES ? salt : undefined;
}

/**
 * Derives or imports the key-encryption key.
 *
 * @param key The caller's key.
 * @param params The registry's stored parameters.
 * @returns A non-extractable AES-GCM key that wraps and unwraps data keys.
 * @throws {TypeError} When `key` is not a usable key (a `CryptoKey` needs `wrapKey` and `unwrapKey`).
 * @throws {RangeError} When raw key bytes are not 32 bytes long.
 * @throws {WrongKeyError} When the sort of key does not match the parameters
 * (a passphrase for a raw-key registry or the other way round).
 * @throws {CryptoError} When the stored iteration count is below the minimum or above the maximum.
 *
 * @example
 * ```ts
 * import { deriveKek, newKdfParams } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * const key = new Uint8Array(32);
 * const kek = await deriveKek(key, newKdfParams(key));
 * assert.deepEqual(kek.usages.toSorted(), ["unwrapKey", "wrapKey"]);
 * ```
 */
export async function deriveKek(key: RegistryKey, params: KdfParams): Promise<CryptoKey> {
  checkRegistryKey(key, KEK_USAGES);
  if (params.kdf === "raw") {
    if (typeof key === "string") {
      throw new WrongKeyError(
        "this registry is sealed with 32 raw key bytes or a CryptoKey, not a passphrase",
      );
    }
    if (key instanceof CryptoKey) return key;
    return await crypto.subtle.importKey("raw", Uint8Array.from(key), "AES-GCM", false, [
      ...KEK_USAGES,
    ]);
  }
  if (typeof key !== "string") {
    throw new WrongKeyError(
      "this registry is sealed with a passphrase, not raw key bytes or a CryptoKey",
    );
  }
  if (!Number.isSafeInteger(params.iterations) || params.iterations < MIN_PBKDF2_ITERATIONS) {
    throw new CryptoError(
      `sealing parameters: stored PBKDF2 iteration count ${params.iterations} is below the minimum ${MIN_PBKDF2_ITERATIONS}`,
    );
  }
  if (params.iterations > MAX_PBKDF2_ITERATIONS) {
    throw new CryptoError(
      `sealing parameters (table oxide_sealing, field iterations): stored PBKDF2 iteration count ${params.iterations} is above the maximum ${MAX_PBKDF2_ITERATIONS}`,
    );
  }
  const material = await crypto.subtle.importKey("raw", utf8(key), "PBKDF2", false, [
    "deriveKey",
  ]);
  return await crypto.subtle.deriveKey(
    {
      name: "PBKDF2",
      hash: "SHA-256",
      salt: Uint8Array.from(params.salt),
      iterations: params.iterations,
    },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    [...KEK_USAGES],
  );
}

/**
 * Makes a fresh random data key with a fresh id, and wraps it.
 *
 * @param kek The key-encryption key.
 * @returns The usable key and its stored, wrapped form.
 *
 * @example
 * ```ts
 * import { deriveKek, generateDataKey, newKdfParams } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * const key = new Uint8Array(32);
 * const { dataKey, wrapped } = await generateDataKey(await deriveKek(key, newKdfParams(key)));
 * assert.equal(dataKey.keyId, wrapped.keyId);
 * assert.equal(dataKey.key.extractable, false);
 * ```
 */
export async function generateDataKey(
  kek: CryptoKey,
): Promise<{ dataKey: DataKey; wrapped: WrappedDataKey }> {
  const keyId = toBase64Url(crypto.getRandomValues(new Uint8Array(KEY_ID_BYTES)), false);
  const raw = crypto.getRandomValues(new Uint8Array(32));
  try {
    const exportable = await crypto.subtle.importKey("raw", raw, "AES-GCM", true, [
      "encrypt",
      "decrypt",
    ]);
    const key = await importAesGcmKey(raw);
    return { dataKey: { keyId, key }, wrapped: await wrapDataKey(kek, keyId, exportable) };
  } finally {
    raw.fill(0);
  }
}

/**
 * Unwraps a stored data key. This is the key check: a wrong key-encryption
 * key fails here.
 *
 * @param kek The key-encryption key.
 * @param wrapped The stored data key.
 * @param extractable Whether the result may be wrapped again (for a rekey).
 * @returns The data key.
 * @throws {WrongKeyError} When `kek` does not unwrap it (or the stored key was altered).
 *
 * @example
 * ```ts
 * import { deriveKek, generateDataKey, newKdfParams, unwrapDataKey } from "./envelope.ts";
 * import { WrongKeyError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const right = new Uint8Array(32).fill(1);
 * const wrong = new Uint8Array(32).fill(2);
 * const { wrapped } = await generateDataKey(await deriveKek(right, { kdf: "raw" }));
 * const dataKey = await unwrapDataKey(await deriveKek(right, { kdf: "raw" }), wrapped);
 * assert.equal(dataKey.keyId, wrapped.keyId);
 * await assert.rejects(unwrapDataKey(await deriveKek(wrong, { kdf: "raw" }), wrapped), WrongKeyError);
 * ```
 */
export async function unwrapDataKey(
  kek: CryptoKey,
  wrapped: WrappedDataKey,
  extractable = false,
): Promise<DataKey> {
  const blob = fromBase64Url(wrapped.wrapped, false);
  if (blob === undefined || blob.length !== NONCE_BYTES + 32 + TAG_BYTES) {
    throw new WrongKeyError(
      `the stored data key '${wrapped.keyId}' (table oxide_sealing, field wrapped_key) is malformed: the sealing parameters were altered`,
    );
  }
  let unwrapped: CryptoKey;
  try {
    const params: AesGcmParams = {
      name: "AES-GCM",
      iv: blob.subarray(0, NONCE_BYTES),
      additionalData: dataKeyAd(wrapped.keyId),
    };
    // Unwrapped extractable for a moment, for its bytes: the key handed out is imported again (non-extractable unless
    // asked) with its node:crypto twin, and the bytes are zeroed.
    unwrapped = await crypto.subtle.unwrapKey(
      "raw",
      blob.subarray(NONCE_BYTES),
      kek,
      params,
      "AES-GCM",
      true,
      ["encrypt", "decrypt"],
    );
  } catch (error) {
    throw new WrongKeyError(
      "the key does not unwrap this registry's data key (or the stored data key was altered)",
      { cause: error },
    );
  }
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", unwrapped));
  try {
    return { keyId: wrapped.keyId, key: await importAesGcmKey(raw, extractable) };
  } finally {
    raw.fill(0);
  }
}

/**
 * Wraps an extractable data key under a key-encryption key.
 *
 * @param kek The key-encryption key.
 * @param keyId The data key's id, bound as associated data.
 * @param dataKey An extractable AES-GCM data key.
 * @returns The stored form.
 *
 * @example
 * ```ts
 * import { deriveKek, generateDataKey, unwrapDataKey, wrapDataKey } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * const oldKek = await deriveKek(new Uint8Array(32).fill(1), { kdf: "raw" });
 * const newKek = await deriveKek(new Uint8Array(32).fill(2), { kdf: "raw" });
 * const { wrapped } = await generateDataKey(oldKek);
 * const exportable = await unwrapDataKey(oldKek, wrapped, true);
 * const rewrapped = await wrapDataKey(newKek, wrapped.keyId, exportable.key);
 * assert.equal((await unwrapDataKey(newKek, rewrapped)).keyId, wrapped.keyId);
 * ```
 */
export async function wrapDataKey(
  kek: CryptoKey,
  keyId: string,
  dataKey: CryptoKey,
): Promise<WrappedDataKey> {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const params: AesGcmParams = { name: "AES-GCM", iv: nonce, additionalData: dataKeyAd(keyId) };
  const body = await crypto.subtle.wrapKey("raw", dataKey, kek, params);
  return { keyId, wrapped: toBase64Url(concatBytes(nonce, new Uint8Array(body)), false) };
}

/**
 * Seals a config value's JSON text, bound to its config key.
 *
 * @param dataKey The registry's current data key.
 * @param configKey The config key the value is stored under.
 * @param plaintext The JSON text.
 * @returns `$oxide1$<key id>$<base64url>`.
 *
 * @example
 * ```ts
 * import { deriveKek, generateDataKey, openEnvelope, sealEnvelope } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * const { dataKey } = await generateDataKey(await deriveKek(new Uint8Array(32), { kdf: "raw" }));
 * const stored = await sealEnvelope(dataKey, "api.token", '"s3cr3t"');
 * assert.ok(stored.startsWith("$oxide1$"));
 * assert.equal(await openEnvelope(dataKey, "api.token", stored), '"s3cr3t"');
 * ```
 */
export async function sealEnvelope(
  dataKey: DataKey,
  configKey: string,
  plaintext: string,
): Promise<string> {
  const data = utf8(plaintext);
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const sealed = await sealAesGcm(dataKey.key, nonce, data, valueAd(dataKey.keyId, configKey));
  data.fill(0);
  return `${ENVELOPE_PREFIX}${dataKey.keyId}$${toBase64Url(concatBytes(nonce, sealed), false)}`;
}

/**
 * Tells whether stored text is an envelope-sealed value (by its `$oxide` prefix).
 *
 * @param stored The stored text.
 * @returns `true` when it is sealed in the envelope scheme, of any version.
 *
 * @example
 * ```ts
 * import { isEnvelopeSealed } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isEnvelopeSealed("$oxide1$AAAAAAAAAAA$AAAA"), true);
 * assert.equal(isEnvelopeSealed('"$oxide1$"'), false);
 * ```
 */
export function isEnvelopeSealed(stored: string): boolean {
  return stored.startsWith("$oxide");
}

/**
 * Reads the data key id of an envelope-sealed value without opening it.
 *
 * @param configKey The config key, for messages.
 * @param stored The stored text.
 * @returns The key id.
 * @throws {SealedValueError} When the value is malformed or of a newer format version.
 *
 * @example
 * ```ts
 * import { envelopeKeyId } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(envelopeKeyId("k", "$oxide1$abcDEF_-123$AAAA"), "abcDEF_-123");
 * ```
 */
export function envelopeKeyId(configKey: string, stored: string): string {
  return matchEnvelope(configKey, stored)[2]!;
}

/**
 * Opens an envelope-sealed value.
 *
 * @param dataKey The data key whose id the value names.
 * @param configKey The config key the value is stored under.
 * @param stored The stored text.
 * @returns The JSON text.
 * @throws {SealedValueError} When the value is malformed, of a newer version,
 * names another data key, is truncated, or fails authentication (altered, or
 * sealed for another config key: see {@linkcode sealedForKey}).
 *
 * @example
 * ```ts
 * import { deriveKek, generateDataKey, openEnvelope, sealEnvelope } from "./envelope.ts";
 * import { SealedValueError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const { dataKey } = await generateDataKey(await deriveKek(new Uint8Array(32), { kdf: "raw" }));
 * const stored = await sealEnvelope(dataKey, "api.token", '"s3cr3t"');
 * await assert.rejects(openEnvelope(dataKey, "db.password", stored), SealedValueError);
 * ```
 */
export async function openEnvelope(
  dataKey: DataKey,
  configKey: string,
  stored: string,
): Promise<string> {
  const { keyId, blob } = parseEnvelope(configKey, stored);
  if (keyId !== dataKey.keyId) {
    throw new SealedValueError(
      configKey,
      "tampered",
      `it names data key '${keyId}' but the registry's data key is '${dataKey.keyId}': it was restored from an older copy or copied from another registry`,
    );
  }
  let plain: Uint8Array;
  try {
    plain = await openAesGcm(
      dataKey.key,
      blob.subarray(0, NONCE_BYTES),
      blob.subarray(NONCE_BYTES),
      valueAd(keyId, configKey),
    );
  } catch (error) {
    throw new SealedValueError(
      configKey,
      "tampered",
      "it failed authentication: it was altered, or sealed for another config key",
      { cause: error },
    );
  }
  const text = fromUtf8(plain);
  plain.fill(0);
  if (text === undefined) {
    throw new SealedValueError(configKey, "malformed", "its plaintext is not UTF-8");
  }
  return text;
}

/**
 * Finds which config key a value that failed to open was sealed for, by
 * trying each candidate name as associated data. For error messages only:
 * costs one decryption per candidate.
 *
 * @param dataKey The data key the value names.
 * @param stored The stored text.
 * @param candidates Config key names to try.
 * @returns The config key the value was sealed for, or `undefined`.
 *
 * @example
 * ```ts
 * import { deriveKek, generateDataKey, sealEnvelope, sealedForKey } from "./envelope.ts";
 * import assert from "node:assert/strict";
 *
 * const { dataKey } = await generateDataKey(await deriveKek(new Uint8Array(32), { kdf: "raw" }));
 * const stored = await sealEnvelope(dataKey, "api.token", '"s3cr3t"');
 * assert.equal(await sealedForKey(dataKey, stored, ["db.url", "api.token"]), "api.token");
 * ```
 */
export async function sealedForKey(
  dataKey: DataKey,
  stored: string,
  candidates: Iterable<string>,
): Promise<string | undefined> {
  const match = ENVELOPE_SHAPE.exec(stored);
  if (!match || match[2] !== dataKey.keyId) return undefined;
  const blob = fromBase64Url(match[3]!, false);
  if (!blob || blob.length < NONCE_BYTES + TAG_BYTES) return undefined;
  for (const candidate of candidates) {
    try {
      (await openAesGcm(
        dataKey.key,
        blob.subarray(0, NONCE_BYTES),
        blob.subarray(NONCE_BYTES),
        valueAd(dataKey.keyId, candidate),
      )).fill(0);
      return candidate;
    } catch {
      // Not this one.
    }
  }
  return undefined;
}

function parseEnvelope(
  configKey: string,
  stored: string,
): { keyId: string; blob: Uint8Array<ArrayBuffer> } {
  const match = matchEnvelope(configKey, stored);
  const blob = fromBase64Url(match[3]!, false);
  if (blob === undefined) {
    throw new SealedValueError(configKey, "tampered", "its body is not URL-safe base64");
  }
  if (blob.length < NONCE_BYTES + TAG_BYTES) {
    throw new SealedValueError(
      configKey,
      "tampered",
      `it is truncated: ${blob.length} bytes, shorter than a nonce and tag`,
    );
  }
  return { keyId: match[2]!, blob };
}

function matchEnvelope(configKey: string, stored: string): RegExpExecArray {
  const match = ENVELOPE_SHAPE.exec(stored);
  if (!match) {
    throw new SealedValueError(configKey, "malformed", "its envelope prefix is malformed");
  }
  const version = Number(match[1]);
  if (version !== ENVELOPE_VERSION) {
    throw new SealedValueError(
      configKey,
      "unsupported_version",
      `it is sealed with envelope format version ${version}; this library reads version ${ENVELOPE_VERSION}`,
    );
  }
  return match;
}

/** Associated data of a value: domain, format version, key id, config key. */
function valueAd(keyId: string, configKey: string): Uint8Array<ArrayBuffer> {
  return utf8(`oxide-seal\0v${ENVELOPE_VERSION}\0value\0${keyId}\0${configKey}`);
}

/** Associated data of a wrapped data key. */
function dataKeyAd(keyId: string): Uint8Array<ArrayBuffer> {
  return utf8(`oxide-seal\0v${ENVELOPE_VERSION}\0data-key\0${keyId}`);
}
