/**
 * Key sources for sealed registries: what a key may be, and reading one from
 * the `OXIDE_REGISTRY_KEY` environment variable.
 *
 * @module
 */

import { OtherError } from "../errors.ts";

/**
 * A key that opens a sealed registry: a passphrase, 32 raw key bytes, or an
 * AES-GCM 256-bit `CryptoKey`.
 *
 * - A passphrase is stretched with PBKDF2-SHA256 (envelope scheme) or hashed
 *   once with SHA-256 (oxide-k scheme, as the Rust kernel does).
 * - Raw bytes and a `CryptoKey` are used as the key itself: the key-encryption
 *   key (envelope scheme) or the value key (oxide-k scheme). A `CryptoKey`
 *   needs the usages `wrapKey` and `unwrapKey` for the envelope scheme and
 *   `encrypt` and `decrypt` for the oxide-k scheme.
 *
 * @example
 * ```ts
 * import { type RegistryKey, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const raw: RegistryKey = crypto.getRandomValues(new Uint8Array(32));
 * const cryptoKey: RegistryKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
 *   "wrapKey",
 *   "unwrapKey",
 * ]);
 * for (const key of [raw, cryptoKey]) {
 *   await using reg = await StateRegistry.openEncrypted(":memory:", key);
 *   assert.equal(reg.sealing?.kdf, "raw");
 * }
 * await assert.rejects(StateRegistry.openEncrypted(":memory:", new Uint8Array(16)), RangeError);
 * ```
 */
export type RegistryKey = string | Uint8Array | CryptoKey;

/**
 * The environment variable {@linkcode keyFromEnv} reads.
 *
 * @example
 * ```ts
 * import { KEY_ENV_VAR, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(KEY_ENV_VAR, "OXIDE_REGISTRY_KEY");
 * if (!Deno.env.has(KEY_ENV_VAR)) {
 *   assert.throws(() => StateRegistry.keyFromEnv(), new RegExp(KEY_ENV_VAR));
 * }
 * ```
 */
export const KEY_ENV_VAR = "OXIDE_REGISTRY_KEY";

/** Length of a raw key: AES-256. */
export const RAW_KEY_BYTES = 32;

/**
 * Checks that `key` has the shape of a {@linkcode RegistryKey}.
 *
 * @param key The value to check.
 * @param usages For a `CryptoKey`, the usages it must allow.
 * @throws {TypeError} When `key` is not a non-empty, well-formed (no lone surrogate) string, a `Uint8Array` or an
 * AES-GCM 256-bit `CryptoKey` with `usages`.
 * @throws {RangeError} When raw key bytes are not exactly 32 bytes long.
 *
 * @example
 * ```ts
 * import { checkRegistryKey } from "./key.ts";
 * import assert from "node:assert/strict";
 *
 * checkRegistryKey("correct horse battery staple", []);
 * assert.throws(() => checkRegistryKey(new Uint8Array(16), []), RangeError);
 * assert.throws(() => checkRegistryKey("", []), TypeError);
 * ```
 */
export function checkRegistryKey(
  key: unknown,
  usages: readonly KeyUsage[],
): asserts key is RegistryKey {
  if (typeof key === "string") {
    if (key.length === 0) {
      throw new TypeError("Registry key must not be an empty passphrase");
    }
    if (!key.isWellFormed()) {
      // UTF-8 encoding would turn every lone surrogate into U+FFFD: two different passphrases, one key.
      throw new TypeError("Registry passphrase must be well-formed Unicode: it contains a lone surrogate");
    }
    return;
  }
  if (key instanceof Uint8Array) {
    if (key.length !== RAW_KEY_BYTES) {
      throw new RangeError(
        `Raw registry key must be ${RAW_KEY_BYTES} bytes: got ${key.length} bytes`,
      );
    }
    return;
  }
  if (key instanceof CryptoKey) {
    const algorithm = key.algorithm as Partial<AesKeyAlgorithm>;
    if (algorithm.name !== "AES-GCM" || algorithm.length !== 256) {
      throw new TypeError(
        `Registry CryptoKey must be an AES-GCM 256-bit key: got ${algorithm.name} ${algorithm.length ?? ""}`.trimEnd(),
      );
    }
    for (const usage of usages) {
      if (!key.usages.includes(usage)) {
        throw new TypeError(
          `Registry CryptoKey must allow the usage "${usage}"`,
        );
      }
    }
    return;
  }
  throw new TypeError(
    "Registry key must be a passphrase string, 32 raw key bytes (Uint8Array) or an AES-GCM CryptoKey",
  );
}

/**
 * Reads the registry key from the `OXIDE_REGISTRY_KEY` environment variable,
 * as oxide-k's `key_from_env`.
 *
 * @returns The variable's value, a passphrase.
 * @throws {OtherError} When the variable is unset or empty, or reading it is
 * not permitted (the message names `--allow-env=OXIDE_REGISTRY_KEY`).
 *
 * @example
 * ```ts
 * import { keyFromEnv } from "./key.ts";
 * import assert from "node:assert/strict";
 *
 * // Fall back to a development key only when the variable is absent.
 * const key = Deno.env.has("OXIDE_REGISTRY_KEY") ? keyFromEnv() : "dev-only-key";
 * assert.equal(typeof key, "string");
 * ```
 */
export function keyFromEnv(): string {
  let value: string | undefined;
  try {
    value = Deno.env.get(KEY_ENV_VAR);
  } catch (error) {
    if (
      error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.PermissionDenied
    ) {
      throw new OtherError(
        `${KEY_ENV_VAR} env var cannot be read: environment access is not permitted; run with --allow-env=${KEY_ENV_VAR}`,
        { cause: error },
      );
    }
    throw error;
  }
  if (value === undefined) {
    throw new OtherError(
      `${KEY_ENV_VAR} env var not set; set it or call openEncrypted with an explicit key`,
    );
  }
  if (value.length === 0) {
    throw new OtherError(
      `${KEY_ENV_VAR} env var is empty; set it or call openEncrypted with an explicit key`,
    );
  }
  return value;
}
