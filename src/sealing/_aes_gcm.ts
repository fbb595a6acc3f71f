/**
 * AES-256-GCM for config values, with two implementations of the same cipher:
 *
 * - WebCrypto (`crypto.subtle`): every call is a promise settled on another thread, about 15-40 us for a short value
 *   (more under load, as each hop waits for the event loop).
 * - `node:crypto` (`createCipheriv`, built into Deno): synchronous, about 10 us on the same machine, and no event
 *   loop hop. Used for values when available.
 *
 * Key derivation (PBKDF2) and wrapping stay on WebCrypto only: they run once per open, where a promise costs nothing.
 *
 * Loading `node:crypto` costs about 35 ms, so it is not imported with the module (a plain registry never needs it): the
 * first key imported here starts loading it in the background, and values are sealed and opened with WebCrypto until
 * it has loaded. Each key imported here gets a `node:crypto` twin (a `KeyObject` of the same 32 bytes, as
 * non-extractable from JS as the `CryptoKey`); a `CryptoKey` made elsewhere (a caller's own) has none and always goes
 * through WebCrypto. Both give the same bytes for the same key, nonce, plaintext and associated data
 * (tests/crypto_test.ts checks both ways).
 *
 * Private to `src/sealing/`.
 *
 * @module
 */

type NodeCrypto = typeof import("node:crypto");
type KeyObject = import("node:crypto").KeyObject;

const TAG_BYTES = 16;

let nodeCrypto: NodeCrypto | undefined;
let loading: Promise<NodeCrypto | undefined> | undefined;

/** The `node:crypto` twin of each key imported by {@linkcode importAesGcmKey}. */
const twins = new WeakMap<CryptoKey, KeyObject>();

/**
 * Starts loading `node:crypto` (once per process).
 *
 * @returns Resolves with the module, or `undefined` when this runtime has no usable one (values then stay on WebCrypto).
 */
export function loadNodeCrypto(): Promise<NodeCrypto | undefined> {
  loading ??= import("node:crypto").then(
    (module) => {
      // A runtime whose node:crypto lacks AES-GCM keeps WebCrypto for values.
      if (typeof module.createSecretKey !== "function" || !module.getCiphers().includes("aes-256-gcm")) {
        return undefined;
      }
      nodeCrypto = module;
      return module;
    },
    () => undefined,
  );
  return loading;
}

/**
 * Imports 32 raw bytes as a non-extractable AES-GCM key (or an extractable one, for a data key about to be wrapped
 * again) and gives it a `node:crypto` twin, now or once `node:crypto` has loaded. The caller may zero `raw` after the
 * promise settles: the twin is made from a copy.
 *
 * @param raw The key bytes.
 * @param extractable Whether WebCrypto may export the key (to wrap it under another key-encryption key).
 * @returns The WebCrypto key, usable for `encrypt` and `decrypt`.
 */
export async function importAesGcmKey(raw: Uint8Array, extractable = false): Promise<CryptoKey> {
  const copy = Uint8Array.from(raw);
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey("raw", copy, "AES-GCM", extractable, ["encrypt", "decrypt"]);
  } catch (error) {
    copy.fill(0);
    throw error;
  }
  if (nodeCrypto !== undefined) {
    attachTwin(nodeCrypto, key, copy);
  } else {
    void loadNodeCrypto().then((module) => attachTwin(module, key, copy));
  }
  return key;
}

/** Gives `key` its twin made of `raw` (`createSecretKey` copies the bytes), then zeroes `raw`. */
function attachTwin(module: NodeCrypto | undefined, key: CryptoKey, raw: Uint8Array): void {
  try {
    if (module !== undefined) twins.set(key, module.createSecretKey(raw));
  } finally {
    raw.fill(0);
  }
}

/**
 * Whether `key` has a `node:crypto` twin, so {@linkcode sealAesGcm} and {@linkcode openAesGcm} answer synchronously.
 *
 * @param key A key.
 * @returns `true` once the twin exists.
 */
export function hasSyncTwin(key: CryptoKey): boolean {
  return twins.has(key);
}

/**
 * Seals `plaintext`: the ciphertext followed by the 16-byte tag, as WebCrypto's `encrypt` returns it.
 *
 * @param key The AES-256-GCM key.
 * @param nonce 12 bytes, never reused with this key.
 * @param plaintext The bytes to seal.
 * @param additionalData Bytes the tag authenticates beside the ciphertext, if any.
 * @returns The sealed bytes; synchronously when the key has a `node:crypto` twin, else a promise.
 */
export function sealAesGcm(
  key: CryptoKey,
  nonce: Uint8Array<ArrayBuffer>,
  plaintext: Uint8Array<ArrayBuffer>,
  additionalData?: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> | Promise<Uint8Array<ArrayBuffer>> {
  const twin = twins.get(key);
  if (twin !== undefined) return sealWithNodeCrypto(twin, nonce, plaintext, additionalData);
  return sealWithWebCrypto(key, nonce, plaintext, additionalData);
}

/**
 * Opens bytes sealed by {@linkcode sealAesGcm} (ciphertext followed by the tag).
 *
 * @param key The AES-256-GCM key.
 * @param nonce The 12-byte nonce they were sealed with.
 * @param sealed Ciphertext and tag.
 * @param additionalData The associated data they were sealed with, if any.
 * @returns The plaintext; synchronously when the key has a `node:crypto` twin, else a promise.
 * @throws {Error} when authentication fails (wrong key, other associated data, altered bytes) or `sealed` is shorter
 * than a tag: thrown synchronously or as a rejection, so callers `await` inside a `try`.
 */
export function openAesGcm(
  key: CryptoKey,
  nonce: Uint8Array<ArrayBuffer>,
  sealed: Uint8Array<ArrayBuffer>,
  additionalData?: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> | Promise<Uint8Array<ArrayBuffer>> {
  const twin = twins.get(key);
  if (twin !== undefined) return openWithNodeCrypto(twin, nonce, sealed, additionalData);
  return openWithWebCrypto(key, nonce, sealed, additionalData);
}

/** {@linkcode sealAesGcm} on WebCrypto. */
export async function sealWithWebCrypto(
  key: CryptoKey,
  nonce: Uint8Array<ArrayBuffer>,
  plaintext: Uint8Array<ArrayBuffer>,
  additionalData?: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const params: AesGcmParams = additionalData === undefined
    ? { name: "AES-GCM", iv: nonce }
    : { name: "AES-GCM", iv: nonce, additionalData };
  return new Uint8Array(await crypto.subtle.encrypt(params, key, plaintext));
}

/** {@linkcode openAesGcm} on WebCrypto. */
export async function openWithWebCrypto(
  key: CryptoKey,
  nonce: Uint8Array<ArrayBuffer>,
  sealed: Uint8Array<ArrayBuffer>,
  additionalData?: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const params: AesGcmParams = additionalData === undefined
    ? { name: "AES-GCM", iv: nonce }
    : { name: "AES-GCM", iv: nonce, additionalData };
  return new Uint8Array(await crypto.subtle.decrypt(params, key, sealed));
}

/** {@linkcode sealAesGcm} on `node:crypto`, with a key from {@linkcode nodeKey}. */
export function sealWithNodeCrypto(
  key: KeyObject,
  nonce: Uint8Array<ArrayBuffer>,
  plaintext: Uint8Array<ArrayBuffer>,
  additionalData?: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> {
  const cipher = nodeCrypto!.createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  if (additionalData !== undefined) cipher.setAAD(additionalData);
  const body = cipher.update(plaintext);
  const tail = cipher.final();
  const out = new Uint8Array(body.length + tail.length + TAG_BYTES);
  out.set(body, 0);
  out.set(tail, body.length);
  out.set(cipher.getAuthTag(), body.length + tail.length);
  return out;
}

/** {@linkcode openAesGcm} on `node:crypto`, with a key from {@linkcode nodeKey}. */
export function openWithNodeCrypto(
  key: KeyObject,
  nonce: Uint8Array<ArrayBuffer>,
  sealed: Uint8Array<ArrayBuffer>,
  additionalData?: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> {
  if (sealed.length < TAG_BYTES) throw new Error("the sealed bytes are shorter than a GCM tag");
  const decipher = nodeCrypto!.createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  if (additionalData !== undefined) decipher.setAAD(additionalData);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const body = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
  const tail = decipher.final(); // Throws when the tag does not authenticate.
  const out = new Uint8Array(body.length + tail.length);
  out.set(body, 0);
  out.set(tail, body.length);
  body.fill(0);
  return out;
}

/**
 * A `node:crypto` key of 32 raw bytes (tests and benchmarks: the registry's keys get theirs from
 * {@linkcode importAesGcmKey}).
 *
 * @param raw The key bytes.
 * @returns The key, once `node:crypto` has loaded; `undefined` when this runtime has none.
 */
export async function nodeKey(raw: Uint8Array): Promise<KeyObject | undefined> {
  return (await loadNodeCrypto())?.createSecretKey(Uint8Array.from(raw));
}
