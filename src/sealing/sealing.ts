/**
 * Sealed registries: the state behind `StateRegistry.openEncrypted`. Chooses
 * the scheme, keeps the keys, and re-seals values for `rekey`,
 * `rotateDataKey`, `sealPlainValues` and `convertToEnvelope`. It speaks only
 * the store interface (`src/store/store.ts`), so it works the same on every
 * backend: the parameters are the meta key `"sealing"` (a JSON object; on
 * SQLite the table `oxide_sealing`), the seal counts the meta key
 * `"sealing.seals"`, values are read with ranges and written with
 * transactions.
 *
 * Concurrency. In one process, sealed writes and re-sealing run one at a time
 * in call order (an async lock). Across processes, every change of keys is a
 * put of `"sealing"`, whose version is the key generation + 1: every sealed
 * write carries a compare on it in its own transaction, and when it fails the
 * writer follows the new keys and seals again. Nothing is ever sealed under a
 * stale key and nothing is lost.
 *
 * Re-sealing under a new key (rotateDataKey, convertToEnvelope, rekey in the
 * oxide-k scheme) is resumable, and every value is readable at every point:
 * first the new key is stored as *pending* beside the active one (one
 * compare-and-set; from then on every handle opens values under either key
 * and seals new ones under the pending key), then values are re-sealed in
 * transactions of at most the store's limit, each a conditional rewrite
 * guarded by the generation, and the last one makes the pending key active.
 * A process that dies half-way leaves both keys readable; running the
 * operation again finishes it. On SQLite (no transaction limit) that is two
 * transactions: the pending key, then every value with the switch.
 *
 * @module
 */

import { CryptoError, KeyRequiredError, SealedValueError, SerializationError, WrongKeyError } from "../errors.ts";
import { describe } from "../_describe.ts";
import type { Engine } from "../sqlite/engine.ts";
import {
  SEALING_MIGRATIONS,
  SEALING_TABLE_SQL,
  sealingColumns,
  sealingTableExists,
} from "../store/sqlite/_sealing_sql.ts";
import type { Compare, Entry, Operation, Store, TxnResult } from "../store/store.ts";
import { fromBase64Url, toBase64Url } from "./_bytes.ts";
import { checkRegistryKey, type RegistryKey } from "./key.ts";
import { importOxideKKey, looksOxideKSealed, openOxideK, sealOxideK } from "./oxide_k.ts";
import {
  type DataKey,
  decodeSalt,
  deriveKek,
  ENVELOPE_VERSION,
  envelopeKeyId,
  generateDataKey,
  isEnvelopeSealed,
  type KdfParams,
  KEY_ID_SHAPE,
  newKdfParams,
  openEnvelope,
  PBKDF2_SALT_BYTES,
  sealedForKey,
  sealEnvelope,
  unwrapDataKey,
  wrapDataKey,
  type WrappedDataKey,
} from "./envelope.ts";

/**
 * How config values are sealed: `"envelope"` (the default for new registries) or `"oxide-k"` (Rust-compatible).
 *
 * @example
 * ```ts
 * import { type SealingScheme, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const scheme: SealingScheme = "oxide-k";
 * await using reg = await StateRegistry.openEncrypted(":memory:", "correct horse battery staple", { scheme });
 * await reg.setConfig("api_token", "s3cr3t");
 * assert.equal(reg.sealing?.scheme, scheme);
 * assert.equal(await reg.getConfig("api_token"), "s3cr3t");
 * ```
 */
export type SealingScheme = "envelope" | "oxide-k";

/**
 * Sealing options of `StateRegistry.openEncrypted`.
 *
 * @example
 * ```ts
 * import { MIN_PBKDF2_ITERATIONS, type SealingOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: SealingOptions = { scheme: "envelope", iterations: MIN_PBKDF2_ITERATIONS };
 * await using reg = await StateRegistry.openEncrypted(":memory:", "correct horse battery staple", options);
 * assert.equal(reg.sealing?.kdf, "pbkdf2-sha256");
 * assert.equal(reg.sealing?.iterations, MIN_PBKDF2_ITERATIONS);
 * ```
 */
export interface SealingOptions {
  /**
   * The scheme. Default: `"envelope"`. The oxide-k scheme is used only when
   * asked for: a registry in the oxide-k scheme (its parameters, or values a
   * Rust kernel sealed) opened without `scheme: "oxide-k"` is refused, so a
   * file rewritten to look like oxide-k (a downgrade) never opens as one.
   * Asking for the other scheme than the registry uses is an error.
   */
  scheme?: SealingScheme | undefined;
  /** PBKDF2 iterations when a new envelope registry is created from a passphrase (600,000 to 10,000,000; default 600,000). */
  iterations?: number | undefined;
  /**
   * How many config keys' plaintext a handle keeps, so that reading a value it opened before needs no decryption
   * (default 10,000; at most 8 Mi UTF-16 code units of JSON in all; values over 64 Ki code units are never kept).
   * `0` keeps none: every read decrypts. See docs/performance.md.
   */
  readCache?: number | undefined;
}

/**
 * Options of `rekey` and `convertToEnvelope`.
 *
 * @example
 * ```ts
 * import { type RekeyOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32).fill(1));
 * assert.equal(reg.sealing?.kdf, "raw");
 * const options: RekeyOptions = { iterations: 700_000 };
 * await reg.rekey("new passphrase", options);
 * assert.equal(reg.sealing?.kdf, "pbkdf2-sha256");
 * assert.equal(reg.sealing?.iterations, 700_000);
 * ```
 */
export interface RekeyOptions extends ResealOptions {
  /** PBKDF2 iterations for a new passphrase (600,000 to 10,000,000; default 600,000). */
  iterations?: number | undefined;
}

/**
 * Options of every re-sealing: `rotateDataKey`, `sealPlainValues`, `rekey` and `convertToEnvelope`.
 *
 * @example
 * ```ts
 * import { type ResealOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32).fill(1));
 * for (let i = 0; i < 3; i++) await reg.setConfig(`k.${i}`, i);
 * const seen: [number, number][] = [];
 * const options: ResealOptions = { onProgress: (done, total) => seen.push([done, total]) };
 * assert.equal(await reg.rotateDataKey(options), 3);
 * assert.deepEqual(seen.at(-1), [6, 6]); // 3 values and the change log's 3 copies
 * ```
 */
export interface ResealOptions {
  /**
   * Called with how many values (history's past values included) were rewritten so far of how many, before the
   * first transaction of rewrites and after each one (a store with transaction limits, such as etcd, takes several;
   * SQLite takes one). `done` never decreases and the last call has `done === total`; `total` can grow when values
   * written meanwhile must be re-sealed too. A rekey in the envelope scheme rewrites no value: one call, `(0, 0)`.
   */
  onProgress?: ((done: number, total: number) => void) | undefined;
}

/** Checks the options of a re-sealing `what`: an object of known names (a typo is refused), `onProgress` a function. */
function checkResealOptions(what: string, options: unknown, known: readonly string[]): ResealOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`the options of ${what} must be an object, got ${describe(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw new TypeError(
        `unknown option ${describe(name)} in the options of ${what} (known: ${known.map((k) => `'${k}'`).join(", ")})`,
      );
    }
  }
  const onProgress = (options as ResealOptions).onProgress;
  if (onProgress !== undefined && typeof onProgress !== "function") {
    throw new TypeError(`onProgress of ${what} must be a function, got ${describe(onProgress)}`);
  }
  return options as ResealOptions;
}

/**
 * What a sealed registry says about its sealing. Key material is never exposed.
 *
 * @example
 * ```ts
 * import { type SealingInfo, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32).fill(1));
 * const before: SealingInfo | undefined = reg.sealing;
 * assert.equal(before?.scheme, "envelope");
 * assert.equal(before?.generation, 0);
 * assert.equal(before?.pending, undefined);
 * await reg.rotateDataKey();
 * assert.ok(reg.sealing!.generation > 0);
 * assert.notEqual(reg.sealing?.keyId, before?.keyId);
 * ```
 */
export interface SealingInfo {
  /** The scheme values are written in. */
  readonly scheme: SealingScheme;
  /** Envelope scheme: the id of the current data key (changes with `rotateDataKey`). */
  readonly keyId: string | undefined;
  /** Envelope scheme: how the key-encryption key is derived. */
  readonly kdf: "pbkdf2-sha256" | "raw" | undefined;
  /** Envelope scheme with a passphrase: the PBKDF2 iteration count. */
  readonly iterations: number | undefined;
  /** Bumped by every change of keys or scheme, in any process (a re-sealing under a new key makes two). */
  readonly generation: number;
  /**
   * The re-sealing under way, when one is: a new key stored beside the active one (values open under either, new
   * ones are sealed under it) by an operation that has not finished, here or in a process that stopped half-way.
   * Running that operation again finishes it.
   */
  readonly pending: "rotateDataKey" | "convertToEnvelope" | "rekey" | undefined;
  /**
   * How many values were sealed under the current key (data key, or the oxide-k key), by this library in any
   * process, as last seen by this handle. AES-GCM with random nonces allows 2^32 per key: the envelope scheme rotates
   * its data key at 2^31; a write that would pass 2^32 is refused (oxide-k scheme: call rekey() or
   * convertToEnvelope()).
   */
  readonly sealCount: number;
}

export { SEALING_MIGRATIONS, SEALING_TABLE_SQL };

/**
 * NIST SP 800-38D (section 8.3) allows at most 2^32 AES-GCM encryptions with random 96-bit nonces per key. Every
 * value sealed under a key is counted in the meta key `"sealing.seals"` (reserved `reserve` at a time); the envelope
 * scheme rotates its data key once the count reaches `rotateAt`, and a write that would pass `refuseAt` is refused.
 */
const SEAL_LIMITS = { rotateAt: 2 ** 31, refuseAt: 2 ** 32, reserve: 1024 };

/**
 * Lowers the seal limits, for tests of what happens at the bound (2^32 seals cannot be made in a test).
 *
 * @internal Not part of the public API.
 * @param limits The count at which the data key is rotated, the count a write may never pass, and how many seals a
 * handle reserves at a time.
 * @returns A handle that restores the defaults when disposed.
 */
export function setSealLimitsForTesting(
  limits: { rotateAt: number; refuseAt: number; reserve: number },
): Disposable {
  const saved = { ...SEAL_LIMITS };
  Object.assign(SEAL_LIMITS, limits);
  return { [Symbol.dispose]: () => void Object.assign(SEAL_LIMITS, saved) };
}

/** How many values of a sealed shape `sealedScheme` looks at (plain JSON can have the shape: a long number). */
const SEALED_CANDIDATES = 64;

/** How many stored oxide-k values the key check at open tries before it calls the key wrong. */
const KEY_CHECK_VALUES = 16;

/** How many other config keys a failed read tries as the value's origin, after a key holding the same text. */
const ORIGIN_CANDIDATES = 32;

/** How often a write or re-sealing starts over when other writers keep changing the registry. */
const MAX_ATTEMPTS = 16;

/** Config entries read per range when sealing scans the values. */
const SCAN_PAGE = 500;

/** The read cache's bounds: config keys remembered, and UTF-16 code units of plaintext JSON over all of them. */
export const READ_CACHE_ENTRIES = 10_000;
const READ_CACHE_CHARS = 8 * 1024 * 1024;
/** Values longer than this are opened on every read, never cached: one large value must not push out the rest. */
const READ_CACHE_VALUE_CHARS = 64 * 1024;

/** The meta keys of the sealing state (see `Space` in `src/store/store.ts`). */
const SEALING_KEY = "sealing";
const SEALS_KEY = "sealing.seals";

/** SQL of {@linkcode sealedScheme}, the keyless check of a SQLite file (a Rust kernel seals values without a table). */
const KEYLESS_SQL = {
  scheme: "SELECT scheme FROM oxide_sealing WHERE id = 1",
  // Values of either sealed shape, in one pass (checked again in code): what a keyless writer looks for.
  sealedValues: `SELECT value FROM config WHERE substr(value, 1, 6) = '$oxide' OR (length(value) >= 40
    AND length(value) % 4 = 0 AND substr(value, 1, 40) NOT GLOB '*[^-A-Za-z0-9_=]*') LIMIT ?1`,
} as const;

/** The re-sealings that move values to a new key, and so leave a pending key while they run. */
type KeyChange = "rotateDataKey" | "convertToEnvelope" | "rekey";

/** A new key stored beside the active one while a re-sealing runs, as stored. */
type PendingRecord =
  | { readonly operation: "rotateDataKey"; readonly wrapped: WrappedDataKey }
  | {
    readonly operation: "convertToEnvelope";
    readonly kdf: KdfParams;
    readonly wrapped: WrappedDataKey;
    /** The raw data key sealed under the oxide-k key, so every oxide-k handle can read and write under it. */
    readonly byCurrent: string;
  }
  | {
    readonly operation: "rekey";
    /** The new oxide-k key, sealed under the old one, so every handle with the old key can use it. */
    readonly byCurrent: string;
  };

/** The stored sealing parameters. */
interface SealingRow {
  scheme: SealingScheme;
  kdf: KdfParams | undefined;
  wrapped: WrappedDataKey | undefined;
  generation: number;
  pending: PendingRecord | undefined;
}

/** The envelope scheme's keys, as this handle holds them. */
interface EnvelopeKeys {
  kdf: KdfParams;
  kek: CryptoKey;
  /** `false` once another process rekeyed: values still open, but this handle cannot rekey or rotate. */
  kekCurrent: boolean;
  dataKey: DataKey;
  wrapped: WrappedDataKey;
}

/** A pending key as this handle holds it: what new values are sealed under while a re-sealing runs. */
interface PendingKeys {
  readonly record: PendingRecord;
  /** Envelope data key (rotation, conversion). */
  readonly dataKey: DataKey | undefined;
  /** oxide-k key (rekey in the oxide-k scheme). */
  readonly oxideKKey: CryptoKey | undefined;
}

/** The seal counts: of the active key, how many it began with, and of the pending key. */
interface Seals {
  count: number;
  start: number;
  pending: number;
}

/** Which form a stored `config.value` has. */
type StoredForm = "envelope" | "oxide-k" | "plain";

/**
 * Tells a stored value's form: envelope-sealed (`$oxide` prefix), oxide-k
 * sealed (padded URL-safe base64 that is not JSON), or plain JSON text.
 */
function storedForm(stored: string): StoredForm {
  if (isEnvelopeSealed(stored)) return "envelope";
  if (looksOxideKSealed(stored) && !isJson(stored)) return "oxide-k";
  return "plain";
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * For a registry opened without a key: refuses a stored value that is sealed,
 * so ciphertext is never returned as if it were the value.
 *
 * @param configKey The config key.
 * @param stored The stored text.
 * @throws {KeyRequiredError} When the value is sealed under either scheme.
 *
 * @example
 * ```ts
 * import { refuseSealedValue } from "./sealing.ts";
 * import { KeyRequiredError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * refuseSealedValue("greeting", '"Hello, agent."');
 * assert.throws(() => refuseSealedValue("api.token", "$oxide1$AAAAAAAAAAA$AAAA"), KeyRequiredError);
 * ```
 */
export function refuseSealedValue(configKey: string, stored: string): void {
  const form = storedForm(stored);
  if (form !== "plain") throw new KeyRequiredError(configKey, form);
}

/**
 * Tells whether a SQLite registry file is sealed, for a handle opened without a key: its `oxide_sealing` table
 * exists (created with its row by `openEncrypted`), or it holds sealed values (a file a Rust oxide-k kernel sealed
 * has no table). On every backend the store's meta key `"sealing"` says it too; this also sees a Rust kernel's file.
 *
 * @param db The registry's connection.
 * @returns The scheme (`"unknown"` when the table has no row), or `undefined` for a plain registry.
 *
 * @example
 * ```ts
 * import { sealedScheme } from "./sealing.ts";
 * import { StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using plain = await StateRegistry.inMemory();
 * assert.equal(sealedScheme(plain.db), undefined);
 * await using sealed = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32));
 * assert.equal(sealedScheme(sealed.db), "envelope");
 * ```
 */
export function sealedScheme(db: Engine): string | undefined {
  if (sealingTableExists(db)) {
    if (!sealingColumns(db).has("scheme")) return "unknown"; // Damaged: still sealed, so a keyless write is refused.
    const row = db.prepare(KEYLESS_SQL.scheme).get();
    return row === undefined ? "unknown" : String(row.scheme);
  }
  // One scan of the table; the registry runs it once per keyless handle, at its first write (not at open).
  for (const row of db.prepare(KEYLESS_SQL.sealedValues).all(SEALED_CANDIDATES)) {
    const form = typeof row.value === "string" ? storedForm(row.value) : "plain";
    if (form !== "plain") return form;
  }
  return undefined;
}

/** A first-in, first-out async lock. */
class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/** Housekeeping a backend wants after a re-sealing (SQLite: drop old page images from the WAL). */
export interface SealingHooks {
  /** Called after every re-sealing that committed. Best effort: it must not throw. */
  readonly afterReseal?: (() => void) | undefined;
}

/** Where the parameters live, for messages: the SQLite table, or the meta key of other backends. */
function whereOf(store: Store): string {
  return store.backend === "sqlite" ? "table oxide_sealing" : `meta key '${SEALING_KEY}'`;
}

/** A store answer as a promise. */
async function settle<T>(value: T | Promise<T>): Promise<T> {
  return await value;
}

/** Every config entry, a page at a time, in key order. */
async function* configEntries(store: Store): AsyncGenerator<Entry<"config">> {
  let after: string | undefined;
  while (true) {
    const page = await settle(store.range({ space: "config", prefix: "", after, limit: SCAN_PAGE }));
    yield* page.entries;
    const last = page.entries.at(-1);
    if (!page.more || last === undefined) return;
    after = last.key;
  }
}

/** Every past config value history keeps, a page at a time. */
async function* pastEntries(store: Store): AsyncGenerator<Entry<"config">> {
  let cursor: string | undefined;
  while (true) {
    const page = await settle(store.pastEntries("config", { cursor, limit: SCAN_PAGE }));
    yield* page.entries;
    if (page.cursor === undefined) return;
    cursor = page.cursor;
  }
}

/**
 * Opens the sealing of a registry: reads its parameters and checks the key
 * (envelope scheme: unwraps the data key, so a wrong key fails here, before
 * any value is read or written), or chooses a scheme and records it.
 *
 * @param store The registry's store.
 * @param key The key.
 * @param options The scheme to use and PBKDF2 iterations for a new registry.
 * @param hooks Housekeeping of the backend.
 * @returns The sealing state for the registry's value hooks.
 * @throws {TypeError} When `key` or an option has the wrong shape.
 * @throws {RangeError} When raw key bytes are not 32 bytes, or `iterations` is outside 600,000 to 10,000,000.
 * @throws {WrongKeyError} When the key does not open the registry (envelope scheme).
 * @throws {CryptoError} When `scheme` differs from the scheme the registry uses, or its parameters are damaged.
 */
export async function openSealing(
  store: Store,
  key: RegistryKey,
  options: SealingOptions = {},
  hooks: SealingHooks = {},
): Promise<Sealing> {
  checkRegistryKey(key, []);
  const asked = options.scheme;
  if (asked !== undefined && asked !== "envelope" && asked !== "oxide-k") {
    throw new TypeError(`scheme must be "envelope" or "oxide-k", got '${String(asked)}'`);
  }
  if (options.iterations !== undefined) newKdfParams("", { iterations: options.iterations });
  const cache = options.readCache ?? READ_CACHE_ENTRIES;
  if (!Number.isSafeInteger(cache) || cache < 0) {
    throw new RangeError(`readCache must be a non-negative integer (config keys), got ${String(cache)}`);
  }
  const path = store.location;
  const where = whereOf(store);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const entry = await settle(store.get("meta", SEALING_KEY));
    const row = readRow(path, where, entry);
    if (row !== undefined) {
      if (row.scheme === "oxide-k") {
        if (row.pending?.operation !== "convertToEnvelope") await refuseEnvelopeValues(store, where);
        else if (asked !== "oxide-k") {
          throw new CryptoError(
            `a convertToEnvelope() of '${path}' stopped half-way: it is still an oxide-k registry; open it with its oxide-k key and { scheme: "oxide-k" }, and run convertToEnvelope() again to finish it`,
          );
        }
        if (asked !== "oxide-k") throw oxideKNotAsked(path, "parameters", where);
        const oxideKKey = await importOxideKKey(key);
        // A pending key sealed under another key: this may be the key a stopped rekey was moving to; the values
        // decide (the key check below).
        const pending = await openPending(row, oxideKKey, undefined).catch((error) => {
          if (error instanceof SealedValueError) return undefined;
          throw error;
        });
        await checkOxideKKey(store, oxideKKey, pending?.oxideKKey);
        if (row.pending !== undefined && pending === undefined) {
          // Typically the new key of a stopped rekey: it opens the values already moved, not the others.
          throw new WrongKeyError(
            `a ${row.pending.operation}() of '${path}' stopped half-way, and its new key is sealed under another key than this one: open it with the key it started from and run ${row.pending.operation}() again to finish it`,
          );
        }
        const seals = await readSeals(store, where);
        return new Sealing(store, "oxide-k", row.generation, oxideKKey, undefined, pending, seals, cache, hooks);
      }
      if (asked === "oxide-k") throw schemeMismatch(path);
      const kdf = row.kdf!;
      const kek = await deriveKek(key, kdf);
      const dataKey = await unwrapDataKey(kek, row.wrapped!);
      const envelope = { kdf, kek, kekCurrent: true, dataKey, wrapped: row.wrapped! };
      const pending = await openPending(row, undefined, kek);
      const seals = await readSeals(store, where);
      return new Sealing(store, "envelope", row.generation, undefined, envelope, pending, seals, cache, hooks);
    }
    const forms = await countForms(store);
    if (forms.envelope > 0) {
      throw new CryptoError(
        `'${path}' holds ${forms.envelope} envelope-sealed value(s) but no sealing parameters (${where}): they were deleted, and the values cannot be opened`,
      );
    }
    if (forms["oxide-k"] > 0 && asked !== "oxide-k") throw oxideKNotAsked(path, "values", where);
    const scheme: SealingScheme = asked ?? "envelope";
    let envelope: EnvelopeKeys | undefined;
    if (scheme === "envelope") {
      const kdf = newKdfParams(key, options);
      const kek = await deriveKek(key, kdf);
      const { dataKey, wrapped } = await generateDataKey(kek);
      envelope = { kdf, kek, kekCurrent: true, dataKey, wrapped };
    }
    const oxideKKey = scheme === "oxide-k" ? await importOxideKKey(key) : undefined;
    // Stored oxide-k values make this an oxide-k registry only for a key that opens them.
    if (oxideKKey !== undefined) await checkOxideKKey(store, oxideKKey, undefined);
    // Created once: another process may create it first (then the compare fails and its parameters are read).
    const seals: Seals = { count: 0, start: 0, pending: 0 };
    const result = await settle(store.txn({
      compares: [{ space: "meta", key: SEALING_KEY, target: "version", equals: entry?.version ?? 0 }],
      success: [
        {
          op: "put",
          space: "meta",
          key: SEALING_KEY,
          value: JSON.stringify(paramsRecord(scheme, envelope, undefined)),
        },
        { op: "put", space: "meta", key: SEALS_KEY, value: JSON.stringify(seals) },
      ],
      updatedAt: formatNow(),
    }));
    if (result.succeeded) {
      const generation = (entry?.version ?? 1) - 1;
      return new Sealing(store, scheme, generation, oxideKKey, envelope, undefined, seals, cache, hooks);
    }
  }
  throw new CryptoError(`cannot open sealing of '${path}': its parameters kept changing`);
}

/** `updated_at` text for the sealing layer's own transactions (meta keys keep none; config rewrites keep theirs). */
function formatNow(): string {
  return new Date().toISOString();
}

/**
 * The sealing state of one open registry. Created by {@linkcode openSealing};
 * the registry calls {@linkcode Sealing.writeMany} and {@linkcode Sealing.open}
 * from its value hooks.
 */
export class Sealing {
  readonly #store: Store;
  readonly #where: string;
  readonly #hooks: SealingHooks;
  #scheme: SealingScheme;
  #generation: number;
  /** oxide-k scheme: seals and opens values. `undefined` in the envelope scheme, which never opens oxide-k values. */
  #oxideKKey: CryptoKey | undefined;
  #envelope: EnvelopeKeys | undefined;
  /** The new key of a re-sealing under way (in this process or another): new values are sealed under it. */
  #pending: PendingKeys | undefined;
  /** The seal count of the key values are sealed under now (the pending key's while one is), as last seen. */
  #sealCount = 0;
  /** Why the last automatic rotation at the seal limit failed, if it did. */
  #rotationFailure: unknown;
  /** The seal count a new key started with (the values re-sealed under it), as this handle saw it. */
  #keyStartCount = 0;
  /** Seals this handle reserved and has not made yet, under the keys of `#reservedGeneration`. */
  #reserved = 0;
  #reservedGeneration = -1;
  readonly #mutex = new Mutex();
  /**
   * The read cache: per config key, the last stored text this handle opened or wrote, and its plaintext JSON. A
   * stored text always opens to the same plaintext (AES-GCM authenticates it, bound to its config key), so an entry
   * stays true whoever writes the registry: a changed value has another stored text and misses. Bounded by
   * {@linkcode READ_CACHE_ENTRIES} (or the `readCache` option) and {@linkcode READ_CACHE_CHARS}; the oldest entry
   * goes first. Emptied when this handle re-seals (rekey, rotation, conversion, sealing plain values) and on close.
   */
  readonly #opened = new Map<string, { stored: string; json: string }>();
  #openedChars = 0;
  readonly #cacheEntries: number;

  /** @internal Use {@linkcode openSealing}. */
  constructor(
    store: Store,
    scheme: SealingScheme,
    generation: number,
    oxideKKey: CryptoKey | undefined,
    envelope: EnvelopeKeys | undefined,
    pending: PendingKeys | undefined,
    seals: Seals,
    cacheEntries: number,
    hooks: SealingHooks,
  ) {
    this.#store = store;
    this.#where = whereOf(store);
    this.#hooks = hooks;
    this.#scheme = scheme;
    this.#generation = generation;
    this.#oxideKKey = oxideKKey;
    this.#envelope = envelope;
    this.#pending = pending;
    this.#cacheEntries = cacheEntries;
    this.#noteSeals(seals);
  }

  /**
   * The plaintext JSON of `stored` when this handle already opened (or wrote) exactly this stored text for
   * `configKey`: no decryption, no await.
   *
   * @param configKey The config key.
   * @param stored The stored text just read.
   * @returns The value's JSON text, or `undefined` when it must be opened.
   */
  cached(configKey: string, stored: string): string | undefined {
    const entry = this.#opened.get(configKey);
    return entry !== undefined && entry.stored === stored ? entry.json : undefined;
  }

  /** Empties the read cache (close, and every re-sealing): no plaintext outlives its use. */
  forget(): void {
    this.#opened.clear();
    this.#openedChars = 0;
  }

  #remember(configKey: string, stored: string, json: string): void {
    if (this.#cacheEntries === 0) return;
    const previous = this.#opened.get(configKey);
    if (previous !== undefined) {
      this.#opened.delete(configKey);
      this.#openedChars -= previous.json.length;
    }
    if (json.length > READ_CACHE_VALUE_CHARS) return;
    this.#opened.set(configKey, { stored, json });
    this.#openedChars += json.length;
    while (this.#opened.size > this.#cacheEntries || this.#openedChars > READ_CACHE_CHARS) {
      const [oldest, entry] = this.#opened.entries().next().value!;
      this.#opened.delete(oldest);
      this.#openedChars -= entry.json.length;
    }
  }

  /** What this registry's sealing is, without key material. */
  get info(): SealingInfo {
    const kdf = this.#envelope?.kdf;
    return {
      scheme: this.#scheme,
      keyId: this.#envelope?.dataKey.keyId,
      kdf: kdf?.kdf,
      iterations: kdf?.kdf === "pbkdf2-sha256" ? kdf.iterations : undefined,
      generation: this.#generation,
      pending: this.#pending?.record.operation,
      sealCount: this.#sealCount,
    };
  }

  /** The compare every sealed write carries: the keys it was sealed under are still the registry's. */
  #guard(generation: number): Compare {
    return { space: "meta", key: SEALING_KEY, target: "version", equals: generation + 1 };
  }

  /**
   * Seals `json` for `configKey` under the current key and writes it in one
   * store transaction guarded by the key generation; when another process
   * changed the keys since, follows the change and seals again.
   *
   * @param configKey The config key.
   * @param json The value's JSON text.
   * @param updatedAt The row's `updated_at` text.
   * @throws {WrongKeyError} When another process changed the key so that this handle cannot follow.
   * @throws {CryptoError} When the current key sealed as many values as AES-GCM allows (see {@linkcode SealingInfo.sealCount}).
   */
  async write(configKey: string, json: string, updatedAt: string): Promise<void> {
    await this.writeMany([[configKey, json]], (stored, guard) =>
      this.#store.txn({
        compares: [guard],
        success: [{ op: "put", space: "config", key: configKey, value: stored.get(configKey)! }],
        updatedAt,
      }));
  }

  /**
   * Seals several values under the current key and hands them to `txn`,
   * which writes them in one store transaction that carries `guard` as its
   * last compare: all are written, or none. When `guard` failed (another
   * process changed the keys), this follows the change and calls `txn` again
   * with values sealed under the new keys.
   *
   * @param values Config keys and their JSON text.
   * @param txn Runs the write transaction, given the stored text by config key and the guard to append.
   * @returns The transaction's result; when it failed, `current` without the guard's entry.
   * @throws {WrongKeyError} When another process changed the key so that this handle cannot follow.
   */
  writeMany(
    values: readonly (readonly [configKey: string, json: string])[],
    txn: (stored: ReadonlyMap<string, string>, guard: Compare) => TxnResult | Promise<TxnResult>,
  ): Promise<TxnResult> {
    return this.#mutex.run(async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const generation = this.#generation; // The keys values are sealed under (a read may follow a change).
        const reserved = await this.#reserve(generation, values.length);
        if (reserved === "rekeyed") {
          await this.#refresh();
          continue;
        }
        if (reserved === "limit") {
          if (await this.#rotatedBelowLimit()) continue;
          throw this.#limitError(values.length === 1 ? `config key '${values[0]![0]}'` : `${values.length} value(s)`);
        }
        const stored = new Map<string, string>();
        for (const [configKey, json] of values) stored.set(configKey, await this.#seal(configKey, json));
        const result = await settle(txn(stored, this.#guard(generation)));
        if (result.succeeded) {
          this.#reserved -= values.length;
          for (const [configKey, json] of values) this.#remember(configKey, stored.get(configKey)!, json);
          if (this.#rotationDue()) await this.#rotateAtLimit();
          return result;
        }
        const current = result.current ?? [];
        if (current.at(-1)?.version === generation + 1) return { ...result, current: current.slice(0, -1) };
        await this.#refresh();
      }
      throw new CryptoError(
        `config encrypt: cannot write ${values.length} value(s): other processes kept changing the registry's keys`,
      );
    });
  }

  /**
   * Opens a stored value.
   *
   * @param configKey The config key.
   * @param stored The stored text.
   * @returns The value's JSON text.
   * @throws {SealedValueError} Naming the key and the reason: altered, moved
   * from another key, sealed under the other scheme or another key, unsealed.
   */
  async open(configKey: string, stored: string): Promise<string> {
    let json: string;
    switch (storedForm(stored)) {
      case "envelope":
        json = await this.#openEnvelope(configKey, stored);
        this.#remember(configKey, stored, json);
        return json;
      case "oxide-k":
        json = await this.#openOxideK(configKey, stored);
        this.#remember(configKey, stored, json);
        return json;
      case "plain":
        throw new SealedValueError(
          configKey,
          "unsealed",
          "it is stored unsealed in an encrypted registry (written without a key, or altered); seal plain values with sealPlainValues()",
        );
    }
  }

  /**
   * Changes the key. Envelope scheme: re-wraps the data key (values are not
   * touched), one transaction. oxide-k scheme: re-seals every value under
   * the new key, resumable (see the module doc).
   *
   * @param newKey The new key.
   * @param options PBKDF2 iterations for a new passphrase.
   * @returns How many values were re-sealed.
   */
  rekey(newKey: RegistryKey, options: RekeyOptions = {}): Promise<number> {
    checkRegistryKey(newKey, []);
    const { onProgress } = checkResealOptions("rekey()", options, ["iterations", "onProgress"]);
    const kdf = newKdfParams(newKey, options);
    return this.#mutex.run(async () => {
      if (this.#scheme === "oxide-k") {
        const raw = await oxideKRawKey(newKey);
        const oxideKKey = await importRawAesKey(raw);
        return await this.#reseal("rekey", async () => {
          const pending = this.#pending;
          if (pending !== undefined) {
            if (pending.record.operation !== "rekey") throw this.#otherPending("rekey", pending.record.operation);
            // Resuming: only with the key the stopped rekey was moving to.
            const theirs = await crypto.subtle.exportKey("raw", pending.oxideKKey!).catch(() => undefined);
            if (theirs === undefined || !sameBytes(new Uint8Array(theirs), raw)) {
              throw new CryptoError(
                `rekey(): a rekey() of '${this.#store.location}' to another key is under way (stopped half-way); run rekey() again with that key to finish it first`,
              );
            }
            return { keys: pending, record: undefined, select: oxideKSelect(pending.oxideKKey!) };
          }
          const byCurrent = await sealOxideK(this.#oxideKKey!, JSON.stringify(toBase64Url(raw, false)));
          const record: PendingRecord = { operation: "rekey", byCurrent };
          const keys: PendingKeys = { record, dataKey: undefined, oxideKKey };
          return { keys, record, select: oxideKSelect(oxideKKey) };
        }, onProgress);
      }
      const kek = await deriveKek(newKey, kdf);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        await this.#refresh();
        const generation = this.#generation;
        const current = this.#currentEnvelope("rekey");
        const exportable = await unwrapDataKey(current.kek, current.wrapped, true);
        const wrapped = await wrapDataKey(kek, current.dataKey.keyId, exportable.key);
        const envelope = { kdf, kek, kekCurrent: true, dataKey: current.dataKey, wrapped };
        // A rotation under way keeps its pending data key, wrapped by the new key too.
        let pending = this.#pending;
        if (pending !== undefined) {
          if (pending.record.operation !== "rotateDataKey") throw this.#otherPending("rekey", pending.record.operation);
          const old = pending.record.wrapped;
          const rewrapped = await wrapDataKey(kek, old.keyId, (await unwrapDataKey(current.kek, old, true)).key);
          pending = { ...pending, record: { operation: "rotateDataKey", wrapped: rewrapped } };
        }
        // Values stay under the same data key (and its seal count): only the wrapped data key changes. Values are
        // not read at all, so a damaged one never blocks a rekey.
        const result = await settle(this.#store.txn({
          compares: [this.#guard(generation)],
          success: [{
            op: "put",
            space: "meta",
            key: SEALING_KEY,
            value: JSON.stringify(paramsRecord("envelope", envelope, pending?.record)),
          }],
          updatedAt: formatNow(),
        }));
        if (!result.succeeded) continue;
        this.#envelope = envelope;
        this.#pending = pending;
        this.#generation = generation + 1;
        this.#afterReseal();
        onProgress?.(0, 0);
        return 0;
      }
      throw new CryptoError(`cannot rekey '${this.#store.location}': other writers kept changing its keys; try again`);
    });
  }

  /**
   * Envelope scheme: re-seals every sealed value (and history's past values) under a fresh data key; resumable.
   *
   * @returns How many values were re-sealed.
   * @throws {CryptoError} In the oxide-k scheme, which has no data key.
   */
  rotateDataKey(options: ResealOptions = {}): Promise<number> {
    const { onProgress } = checkResealOptions("rotateDataKey()", options, ["onProgress"]);
    return this.#mutex.run(() => this.#rotate(onProgress));
  }

  /** {@linkcode Sealing.rotateDataKey}, inside the lock. */
  #rotate(onProgress?: ResealOptions["onProgress"]): Promise<number> {
    if (this.#scheme === "oxide-k") {
      throw new CryptoError(
        "rotateDataKey() needs the envelope scheme: the oxide-k scheme has no data key; use rekey() or convertToEnvelope()",
      );
    }
    return this.#reseal("rotateDataKey", async () => {
      const current = this.#currentEnvelope("rotateDataKey");
      let keys = this.#pending;
      let record: PendingRecord | undefined;
      if (keys !== undefined) {
        if (keys.record.operation !== "rotateDataKey") {
          throw this.#otherPending("rotateDataKey", keys.record.operation);
        }
      } else {
        const { dataKey, wrapped } = await generateDataKey(current.kek);
        record = { operation: "rotateDataKey", wrapped };
        keys = { record, dataKey, oxideKKey: undefined };
      }
      const keyId = keys.dataKey!.keyId;
      return {
        keys,
        record,
        // oxide-k values met here are foreign (not bound to their config key): left as they are, still refused.
        select: (configKey: string, stored: string, form: StoredForm) =>
          form === "envelope" && envelopeKeyId(configKey, stored) !== keyId,
      };
    }, onProgress);
  }

  /**
   * Whether the data key is due for rotation: its count reached the threshold, and at least as many seals were made
   * under it as a rotation makes (it re-seals every value and the change log's), so rotations never chase each other.
   */
  #rotationDue(): boolean {
    return this.#scheme === "envelope" && this.#pending === undefined && this.#sealCount >= SEAL_LIMITS.rotateAt &&
      this.#sealCount >= 2 * this.#keyStartCount;
  }

  /** At the hard limit: rotates once, and says whether that brought the count below it. */
  async #rotatedBelowLimit(): Promise<boolean> {
    if (this.#scheme !== "envelope" || !await this.#rotateAtLimit()) return false;
    if (this.#sealCount < SEAL_LIMITS.refuseAt) return true;
    this.#rotationFailure = new CryptoError(
      `re-sealing every value and the change log's past values alone takes ${this.#sealCount} seals`,
    );
    return false;
  }

  /**
   * The seal count reached the rotation threshold: rotates the data key. Best effort: when rotation fails (a value
   * that cannot be opened, a key changed elsewhere), writes go on until the hard limit, then are refused, naming why.
   */
  async #rotateAtLimit(): Promise<boolean> {
    try {
      await this.#rotate();
      this.#rotationFailure = undefined;
      return true;
    } catch (error) {
      this.#rotationFailure = error;
      return false;
    }
  }

  /** Takes in stored seal counts: the count of the key values are sealed under now. */
  #noteSeals(seals: Seals): void {
    this.#sealCount = this.#pending !== undefined ? seals.pending : seals.count;
    this.#keyStartCount = this.#pending !== undefined ? 0 : seals.start;
  }

  /**
   * Reserves seals in `"sealing.seals"` before making them, in blocks (one small transaction per block, not one per
   * write): the count is an upper bound of the seals made, since a reservation a handle does not use up (it closes,
   * or the keys change) stays counted.
   */
  async #reserve(generation: number, needed: number): Promise<"reserved" | "rekeyed" | "limit"> {
    if (this.#reservedGeneration === generation && this.#reserved >= needed) return "reserved";
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await settle(this.#store.get("meta", SEALS_KEY));
      const seals = parseSeals(this.#store.location, this.#where, entry?.value);
      this.#noteSeals(seals);
      const field = this.#pending !== undefined ? "pending" : "count";
      const count = seals[field];
      const kept = this.#reservedGeneration === generation ? this.#reserved : 0;
      const block = Math.min(Math.max(SEAL_LIMITS.reserve, needed - kept), SEAL_LIMITS.refuseAt - count);
      if (kept + block < needed) return "limit";
      const next = { ...seals, [field]: count + block };
      const result = await settle(this.#store.txn({
        compares: [
          this.#guard(generation),
          { space: "meta", key: SEALS_KEY, target: "value", equals: entry?.value ?? "" },
        ],
        success: [{ op: "put", space: "meta", key: SEALS_KEY, value: JSON.stringify(next) }],
        updatedAt: formatNow(),
      }));
      if (result.succeeded) {
        this.#sealCount = count + block;
        this.#reserved = kept + block;
        this.#reservedGeneration = generation;
        return "reserved";
      }
      if (result.current?.[0]?.version !== generation + 1) return "rekeyed";
      // Another handle reserved meanwhile: read the count again.
    }
    throw new CryptoError(`config encrypt: cannot count seals of '${this.#store.location}': it kept changing`);
  }

  #limitError(what: string): CryptoError {
    const bound = `the most AES-GCM with random nonces allows under one key (NIST SP 800-38D: 2^32)`;
    const cause = this.#rotationFailure;
    const remedy = this.#scheme === "oxide-k"
      ? "call rekey() or convertToEnvelope() to seal under a new key"
      : cause === undefined
      ? "call rotateDataKey()"
      : `rotating the data key failed (${(cause as Error).message}); fix that and call rotateDataKey()`;
    const field = this.#store.backend === "sqlite"
      ? "table oxide_sealing, field seal_count"
      : `meta key '${SEALS_KEY}'`;
    return new CryptoError(
      `config encrypt: cannot write ${what}: ${this.#sealCount} values were sealed under the current key of '${this.#store.location}' (${field}), ${bound}; ${remedy}`,
      cause === undefined ? undefined : { cause },
    );
  }

  /**
   * Seals every value stored plain (written before the registry was sealed,
   * or by a process without the key), history's past values included.
   *
   * @returns How many values were sealed.
   * @throws {SerializationError} When a plain value is not JSON; nothing is written.
   */
  sealPlainValues(options: ResealOptions = {}): Promise<number> {
    const { onProgress } = checkResealOptions("sealPlainValues()", options, ["onProgress"]);
    return this.#mutex.run(() =>
      this.#reseal("sealPlainValues", () => ({
        keys: undefined,
        record: undefined,
        select: (_configKey: string, _stored: string, form: StoredForm) => form === "plain",
      }), onProgress)
    );
  }

  /**
   * oxide-k scheme: re-seals every value (and seals plain ones) in the
   * envelope scheme under `key`; resumable. A Rust oxide-k kernel cannot read
   * the registry afterwards.
   *
   * @param key The envelope scheme's key: the same passphrase, or a new key.
   * @param options PBKDF2 iterations for a passphrase.
   * @returns How many values were converted.
   * @throws {CryptoError} When the registry already uses the envelope scheme.
   */
  convertToEnvelope(key: RegistryKey, options: RekeyOptions = {}): Promise<number> {
    checkRegistryKey(key, []);
    const { onProgress } = checkResealOptions("convertToEnvelope()", options, ["iterations", "onProgress"]);
    const kdf = newKdfParams(key, options);
    return this.#mutex.run(() =>
      this.#reseal("convertToEnvelope", async () => {
        if (this.#scheme === "envelope") {
          throw new CryptoError(`convertToEnvelope(): '${this.#store.location}' already uses the envelope scheme`);
        }
        const pending = this.#pending;
        if (pending !== undefined) {
          if (pending.record.operation !== "convertToEnvelope") {
            throw this.#otherPending("convertToEnvelope", pending.record.operation);
          }
          // Resuming: the key must unwrap the pending data key (the stored salt and iterations, not new ones).
          const kek = await deriveKek(key, pending.record.kdf);
          try {
            await unwrapDataKey(kek, pending.record.wrapped);
          } catch (error) {
            throw new CryptoError(
              `convertToEnvelope(): a convertToEnvelope() of '${this.#store.location}' with another key is under way (stopped half-way); run it again with that key to finish it first`,
              { cause: error },
            );
          }
          return {
            keys: pending,
            record: undefined,
            select: (_configKey: string, _stored: string, form: StoredForm) => form !== "envelope",
            activate: { kdf: pending.record.kdf, kek },
          };
        }
        const kek = await deriveKek(key, kdf);
        const { dataKey, wrapped } = await generateDataKey(kek);
        const raw = new Uint8Array(
          await crypto.subtle.exportKey("raw", (await unwrapDataKey(kek, wrapped, true)).key),
        );
        const byCurrent = await sealOxideK(this.#oxideKKey!, JSON.stringify(toBase64Url(raw, false)));
        raw.fill(0);
        const record: PendingRecord = { operation: "convertToEnvelope", kdf, wrapped, byCurrent };
        return {
          keys: { record, dataKey, oxideKKey: undefined },
          record,
          select: (_configKey: string, _stored: string, form: StoredForm) => form !== "envelope",
          activate: { kdf, kek },
        };
      }, onProgress)
    );
  }

  #otherPending(operation: string, pending: string): CryptoError {
    return new CryptoError(
      `${operation}(): a ${pending}() of '${this.#store.location}' is under way (or stopped half-way): its new key is stored beside the active one; run ${pending}() again to finish it first`,
    );
  }

  #afterReseal(): void {
    try {
      this.#hooks.afterReseal?.();
    } catch {
      // Housekeeping only.
    }
  }

  // ---------------------------------------------------------------------------

  #seal(configKey: string, json: string): Promise<string> {
    const pending = this.#pending;
    if (pending !== undefined) {
      if (pending.dataKey !== undefined) return sealEnvelope(pending.dataKey, configKey, json);
      return sealOxideK(pending.oxideKKey!, json);
    }
    if (this.#scheme === "envelope") {
      return sealEnvelope(this.#envelope!.dataKey, configKey, json);
    }
    return sealOxideK(this.#oxideKKey!, json);
  }

  /** The data key a value names, among the active and the pending one. */
  #dataKeyFor(keyId: string): DataKey | undefined {
    if (this.#envelope?.dataKey.keyId === keyId) return this.#envelope.dataKey;
    if (this.#pending?.dataKey?.keyId === keyId) return this.#pending.dataKey;
    return undefined;
  }

  async #openEnvelope(configKey: string, stored: string): Promise<string> {
    const keyId = envelopeKeyId(configKey, stored);
    if (this.#dataKeyFor(keyId) === undefined) await this.#refresh();
    const dataKey = this.#dataKeyFor(keyId) ?? this.#envelope?.dataKey ?? this.#pending?.dataKey;
    if (dataKey === undefined) {
      throw new SealedValueError(
        configKey,
        "wrong_scheme",
        "it is sealed under the envelope scheme, but this registry uses the oxide-k scheme and has no envelope parameters",
      );
    }
    try {
      return await openEnvelope(dataKey, configKey, stored);
    } catch (error) {
      // Only an authentication failure (it has a cause) can be a value sealed for another key.
      if (!(error instanceof SealedValueError && error.reason === "tampered" && error.cause)) {
        throw error;
      }
      const origin = await this.#originOf(dataKey, configKey, stored);
      if (origin === undefined) throw error;
      throw new SealedValueError(
        configKey,
        "moved",
        `it was sealed for config key '${origin}': copied or moved here by someone who can write the file`,
      );
    }
  }

  async #openOxideK(configKey: string, stored: string): Promise<string> {
    if (this.#oxideKKey === undefined) {
      // Not bound to its config key: an old oxide-k ciphertext copied here would read back as this key's value.
      throw new SealedValueError(
        configKey,
        "wrong_scheme",
        "it is sealed under the oxide-k scheme, which this envelope-scheme registry does not read (oxide-k values are not bound to their config key: it was written by a Rust kernel after the conversion, or planted)",
      );
    }
    try {
      return await openOxideK(this.#oxideKKey, configKey, stored);
    } catch (error) {
      // A rekey under way: the value may be under the new key already (values name no key in this scheme).
      if (!(error instanceof SealedValueError && error.reason === "wrong_key_or_tampered")) throw error;
      if (this.#pending?.oxideKKey === undefined) await this.#refresh();
      const next = this.#pending?.oxideKKey;
      if (next === undefined) throw error;
      return await openOxideK(next, configKey, stored).catch(() => {
        throw error;
      });
    }
  }

  /**
   * Which config key a value that failed to open was sealed for: a key that
   * stores the very same text (a copy), else a trial of at most
   * {@linkcode ORIGIN_CANDIDATES} other keys, so a failed read costs a
   * bounded number of decryptions, not one per config key.
   */
  async #originOf(dataKey: DataKey, configKey: string, stored: string): Promise<string | undefined> {
    const others: string[] = [];
    for await (const entry of configEntries(this.#store)) {
      if (entry.key === configKey) continue;
      if (entry.value === stored) {
        if (await sealedForKey(dataKey, stored, [entry.key]) !== undefined) return entry.key;
      }
      if (others.length < ORIGIN_CANDIDATES) others.push(entry.key);
    }
    return await sealedForKey(dataKey, stored, others);
  }

  #currentEnvelope(operation: string): EnvelopeKeys {
    const envelope = this.#envelope!;
    if (!envelope.kekCurrent) {
      throw new WrongKeyError(
        `${operation}(): another process changed this registry's key since it was opened; reopen it with the new key`,
      );
    }
    return envelope;
  }

  /** Follows a change of keys made by another process (or connection). */
  async #refresh(): Promise<void> {
    const path = this.#store.location;
    const entry = await settle(this.#store.get("meta", SEALING_KEY));
    const row = readRow(path, this.#where, entry);
    if (row === undefined) {
      throw new CryptoError(`the sealing parameters of '${path}' (${this.#where}) were deleted`);
    }
    if (row.generation === this.#generation) return;
    if (row.scheme !== this.#scheme) {
      throw new WrongKeyError(
        `another process converted '${path}' to the ${row.scheme} scheme; reopen it with openEncrypted`,
      );
    }
    if (row.scheme === "oxide-k") {
      // A rekey started elsewhere is followed (its new key is sealed under ours); a finished one cannot be.
      // A re-sealing started elsewhere is followed (its new key is sealed under ours); a finished rekey cannot be.
      if (row.pending === undefined) {
        throw new WrongKeyError(
          `another process rekeyed '${path}' since it was opened; reopen it with the new key`,
        );
      }
      const pending = await openPending(row, this.#oxideKKey, undefined).catch((error) => {
        throw new WrongKeyError(
          `another process rekeyed '${path}' and started another re-sealing; reopen it with the new key`,
          { cause: error },
        );
      });
      if (row.generation > this.#generation) {
        this.#pending = pending;
        this.#generation = row.generation;
      }
      return;
    }
    const current = this.#envelope!;
    const wrapped = row.wrapped!;
    let next: EnvelopeKeys;
    try {
      const unwrapped = await unwrapDataKey(current.kek, wrapped);
      const dataKey = this.#dataKeyFor(wrapped.keyId) ?? unwrapped;
      next = { ...current, kdf: row.kdf!, kekCurrent: true, dataKey, wrapped };
    } catch (error) {
      if (!(error instanceof WrongKeyError)) throw error;
      const known = this.#dataKeyFor(wrapped.keyId);
      if (known === undefined) {
        throw new WrongKeyError(
          `another process changed the key of '${path}' and rotated its data key; reopen it with the new key`,
          { cause: error },
        );
      }
      // Rekeyed elsewhere: the data key is one this handle holds, so values still open and writes stay correct;
      // only rekey and rotation need the new key.
      next = { ...current, kekCurrent: false, dataKey: known, wrapped };
    }
    let pending: PendingKeys | undefined;
    if (row.pending !== undefined) {
      const record = row.pending;
      const known = record.operation === "rotateDataKey" ? this.#dataKeyFor(record.wrapped.keyId) : undefined;
      pending = known !== undefined ? { record, dataKey: known, oxideKKey: undefined } : await openPending(
        row,
        undefined,
        current.kek,
      ).catch((error) => {
        throw new WrongKeyError(
          `another process changed the key of '${path}' and started a data key rotation; reopen it with the new key`,
          { cause: error },
        );
      });
    }
    if (row.generation > this.#generation) {
      this.#envelope = next;
      this.#pending = pending;
      this.#generation = row.generation;
    }
  }

  /**
   * Re-seals the values a plan selects: live values and history's past values. Resumable and safe at every point:
   *
   * 1. Every selected value is opened and sealed under the target key first, so a value that cannot be opened (or
   *    plain text that is not JSON) fails the operation before anything is written.
   * 2. A change of key stores the new key as pending beside the active one (a compare-and-set on `"sealing"`);
   *    from then on every handle opens values under either key and seals new ones under the pending key, so the
   *    values under the old key can only become fewer.
   * 3. Values are rewritten in transactions of at most the store's limits; each rewrite applies only where the
   *    value is still the text that was read, and each transaction carries the generation compare.
   * 4. When the values left to rewrite fit in one transaction, that transaction also makes the pending key active.
   *
   * When the keys change meanwhile (another process), the plan is made again from the new keys.
   */
  async #reseal(
    operation: KeyChange | "sealPlainValues",
    makePlan: () => ResealPlan | Promise<ResealPlan>,
    onProgress?: ResealOptions["onProgress"],
  ): Promise<number> {
    // Progress over every pass and attempt: `done` never goes back, `total` grows by what a pass finds anew.
    let progressDone = 0;
    let progressTotal = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await this.#refresh();
      let generation = this.#generation;
      const plan = await makePlan();
      const changesKey = plan.keys !== undefined;
      const target = plan.keys;
      const sealUnder = (configKey: string, json: string): Promise<string> =>
        target === undefined
          ? this.#seal(configKey, json)
          : target.dataKey !== undefined
          ? sealEnvelope(target.dataKey, configKey, json)
          : sealOxideK(target.oxideKKey!, json);
      // Sealed texts by config key and old text: a live value and history's copies of it get one seal.
      const sealed = new Map<string, string>();
      let fresh = 0;
      const scan = async (): Promise<Rewrite[]> => {
        const found: Rewrite[] = [];
        const take = async (entry: Entry<"config">, past: boolean) => {
          const stored = past ? entry.value : checkStored(operation, entry.key, entry.value);
          if (typeof stored !== "string") return;
          const form = storedForm(stored);
          if (!await plan.select(entry.key, stored, form)) return;
          const id = `${entry.key}\0${stored}`;
          let to = sealed.get(id);
          if (to === undefined) {
            const json = form === "plain"
              ? checkPlainJson(operation, entry.key, stored)
              : await this.open(entry.key, stored);
            to = await sealUnder(entry.key, json);
            sealed.set(id, to);
            fresh++;
          }
          found.push({
            op: "rewrite",
            space: "config",
            key: entry.key,
            value: to,
            from: stored,
            ...(past ? { revision: entry.modRevision } : {}),
          });
        };
        for await (const entry of configEntries(this.#store)) await take(entry, false);
        for await (const entry of pastEntries(this.#store)) await take(entry, true);
        return found;
      };
      // 1. Everything opens and seals before anything is written.
      await scan();
      let restart = false;
      // 2. The new key, pending, with the seals just made counted under it.
      if (plan.record !== undefined) {
        const seals = await this.#readSealsEntry();
        const result = await settle(this.#store.txn({
          compares: [
            this.#guard(generation),
            { space: "meta", key: SEALS_KEY, target: "value", equals: seals.text },
          ],
          success: [
            {
              op: "put",
              space: "meta",
              key: SEALING_KEY,
              value: JSON.stringify(this.#activeRecord(plan.record)),
            },
            {
              op: "put",
              space: "meta",
              key: SEALS_KEY,
              value: JSON.stringify({ ...seals.seals, pending: fresh }),
            },
          ],
          updatedAt: formatNow(),
        }));
        if (!result.succeeded) continue;
        generation++;
        this.#generation = generation;
        this.#pending = plan.keys;
        this.#sealCount = fresh;
        this.#keyStartCount = 0;
        this.#reservedGeneration = -1;
        this.#reserved = 0;
        fresh = 0;
      } else if (changesKey) {
        // Resuming: the key is pending already; what was sealed just now is counted under it.
        if (fresh > 0 && !await this.#count(generation, fresh)) continue;
        fresh = 0;
      } else if (fresh > 0) {
        if (!await this.#count(generation, fresh)) continue;
        fresh = 0;
      }
      // 3. and 4. Rewrites, in transactions the store can take; the last one switches the key.
      let total = 0;
      for (let pass = 0; pass < MAX_ATTEMPTS && !restart; pass++) {
        // Read again: values written since the first scan (by handles that had not seen the pending key yet) or
        // since the last pass; what was sealed before is reused.
        const rewrites = await scan();
        if (fresh > 0 && !await this.#count(generation, fresh)) {
          restart = true;
          break;
        }
        fresh = 0;
        const chunks = this.#chunks(rewrites, changesKey ? 2 : 0);
        const base = progressDone;
        progressTotal = Math.max(progressTotal, base + rewrites.length);
        let passDone = 0;
        const report = (count: number) => {
          passDone += count;
          progressDone = Math.max(progressDone, base + passDone);
          onProgress?.(progressDone, progressTotal);
        };
        if (rewrites.length > 0) onProgress?.(progressDone, progressTotal);
        if (chunks.length <= 1) {
          const outcome = await this.#commit(generation, chunks[0] ?? [], changesKey ? plan : undefined);
          if (outcome === undefined) {
            restart = true;
            break;
          }
          total += outcome;
          report(rewrites.length);
          if (changesKey) {
            this.#activate(plan);
            this.#generation = generation + 1;
          }
          this.forget(); // The old stored texts are gone; their plaintexts need not stay.
          this.#afterReseal();
          return total;
        }
        for (const chunk of chunks) {
          const outcome = await this.#commit(generation, chunk, undefined);
          if (outcome === undefined) {
            restart = true;
            break;
          }
          total += outcome;
          report(chunk.length);
        }
        if (!changesKey && !restart) {
          this.forget();
          this.#afterReseal();
          return total;
        }
      }
    }
    throw new CryptoError(`cannot re-seal '${this.#store.location}': other writers kept changing it; try again`);
  }

  /** Counts seals made by a re-sealing under the key it seals under (the pending one while a key changes). */
  async #count(generation: number, seals: number): Promise<boolean> {
    const reserved = await this.#reserve(generation, seals);
    if (reserved === "rekeyed") return false;
    if (reserved === "limit") throw this.#limitError(`${seals} re-sealed value(s)`);
    this.#reserved -= seals;
    return true;
  }

  /** Splits rewrites into transactions the store's limits allow, with room for `extra` writes in the last one. */
  #chunks(rewrites: readonly Rewrite[], extra: number): Rewrite[][] {
    const limits = this.#store.limits;
    // A rewrite counts as two writes: a backend may need to read and guard what it rewrites (etcd: a compare per
    // rewritten key in the same transaction), and the switch of keys writes `extra` meta keys.
    const maxOps = Math.max(1, Math.floor((limits.maxTxnOperations - 2 - extra) / 2));
    const maxBytes = limits.maxTxnBytes / 2;
    const chunks: Rewrite[][] = [];
    let chunk: Rewrite[] = [];
    let bytes = 0;
    for (const rewrite of rewrites) {
      const size = (rewrite.key.length + rewrite.value.length) * 2;
      if (chunk.length > 0 && (chunk.length + 1 > maxOps || bytes + size > maxBytes)) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(rewrite);
      bytes += size;
    }
    if (chunk.length > 0) chunks.push(chunk);
    // The last transaction also carries the switch of keys: it must leave room for it.

    return chunks;
  }

  /**
   * Commits one transaction of rewrites, guarded by the generation; with `plan`, it also makes the pending key
   * active (with its seal count). Returns how many live values it re-sealed, or `undefined` when the keys changed.
   */
  async #commit(generation: number, rewrites: readonly Rewrite[], plan: ResealPlan | undefined): Promise<
    number | undefined
  > {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const success: Operation[] = [...rewrites];
      const compares: Compare[] = [this.#guard(generation)];
      if (plan !== undefined) {
        const seals = await this.#readSealsEntry();
        compares.push({ space: "meta", key: SEALS_KEY, target: "value", equals: seals.text });
        success.push(
          { op: "put", space: "meta", key: SEALING_KEY, value: JSON.stringify(this.#targetRecord(plan)) },
          {
            op: "put",
            space: "meta",
            key: SEALS_KEY,
            value: JSON.stringify({ count: seals.seals.pending, start: seals.seals.pending, pending: 0 }),
          },
        );
      }
      if (success.length === 0) return 0;
      const result = await settle(this.#store.txn({ compares, success, updatedAt: formatNow() }));
      if (result.succeeded) {
        if (plan !== undefined) {
          const seals = JSON.parse((success.at(-1) as { value: string }).value) as Seals;
          this.#sealCount = seals.count;
          this.#keyStartCount = seals.start;
          this.#reservedGeneration = -1;
          this.#reserved = 0;
        }
        return rewrites.filter((rewrite, i) => rewrite.revision === undefined && result.changed[i]).length;
      }
      if (result.current?.[0]?.version !== generation + 1) return undefined;
      // Only the seal count moved (another handle reserved): read it again.
    }
    return undefined;
  }

  /** The parameters with `pending` beside the active keys. */
  #activeRecord(pending: PendingRecord | undefined): Record<string, unknown> {
    return paramsRecord(this.#scheme, this.#envelope, pending);
  }

  /** The parameters once the plan's pending key is active. */
  #targetRecord(plan: ResealPlan): Record<string, unknown> {
    const record = plan.keys!.record;
    switch (record.operation) {
      case "rotateDataKey":
        return paramsRecord("envelope", { ...this.#envelope!, wrapped: record.wrapped }, undefined);
      case "convertToEnvelope":
        return paramsRecord("envelope", { kdf: record.kdf, wrapped: record.wrapped }, undefined);
      case "rekey":
        return paramsRecord("oxide-k", undefined, undefined);
    }
  }

  /** Takes the plan's pending key as the active one, after the switch committed. */
  #activate(plan: ResealPlan): void {
    const keys = plan.keys!;
    switch (keys.record.operation) {
      case "rotateDataKey":
        this.#envelope = { ...this.#envelope!, dataKey: keys.dataKey!, wrapped: keys.record.wrapped };
        break;
      case "convertToEnvelope":
        this.#scheme = "envelope";
        this.#envelope = {
          kdf: keys.record.kdf,
          kek: plan.activate!.kek,
          kekCurrent: true,
          dataKey: keys.dataKey!,
          wrapped: keys.record.wrapped,
        };
        this.#oxideKKey = undefined;
        break;
      case "rekey":
        this.#oxideKKey = keys.oxideKKey;
        break;
    }
    this.#pending = undefined;
  }

  async #readSealsEntry(): Promise<{ text: string; seals: Seals }> {
    const entry = await settle(this.#store.get("meta", SEALS_KEY));
    return { text: entry?.value ?? "", seals: parseSeals(this.#store.location, this.#where, entry?.value) };
  }
}

/** A re-sealing's rewrite of one stored value. */
type Rewrite = Extract<Operation, { op: "rewrite" }>;

/** What a re-sealing does; see `Sealing.#reseal`. */
interface ResealPlan {
  /** The key values move to (stored as pending while they move); `undefined`: the current one (sealPlainValues). */
  keys: PendingKeys | undefined;
  /** The pending key to store first; `undefined` when none or when it is stored already (resuming). */
  record: PendingRecord | undefined;
  /** Which stored values to re-seal. */
  select(configKey: string, stored: string, form: StoredForm): boolean | Promise<boolean>;
  /** convertToEnvelope: the key-encryption key of the envelope parameters it switches to. */
  activate?: { kdf: KdfParams; kek: CryptoKey } | undefined;
}

/** oxide-k rekey: values not yet under the new key (values name no key in this scheme: a trial decryption). */
function oxideKSelect(next: CryptoKey): ResealPlan["select"] {
  return async (configKey, stored, form) => {
    if (form !== "oxide-k") return false;
    try {
      await openOxideK(next, configKey, stored);
      return false;
    } catch {
      return true;
    }
  };
}

/** The raw bytes of an oxide-k key (the SHA-256 of a passphrase, or the bytes), so it can be shared sealed. */
async function oxideKRawKey(key: RegistryKey): Promise<Uint8Array> {
  await importOxideKKey(key); // Checks the key's shape and usages.
  if (typeof key === "string") {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  }
  if (key instanceof Uint8Array) return Uint8Array.from(key);
  if (!key.extractable) {
    throw new CryptoError(
      "rekey() of an oxide-k registry needs a passphrase, raw key bytes or an extractable CryptoKey: other handles get the new key, sealed under the old one, while values are re-sealed",
    );
  }
  return new Uint8Array(await crypto.subtle.exportKey("raw", key));
}

async function importRawAesKey(raw: Uint8Array): Promise<CryptoKey> {
  return await crypto.subtle.importKey("raw", Uint8Array.from(raw), "AES-GCM", false, ["encrypt", "decrypt"]);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * The pending key of `row` as a handle can use it: unwrapped by the key-encryption key (rotation), or opened with the
 * oxide-k key it was sealed under (conversion, oxide-k rekey).
 */
async function openPending(
  row: SealingRow,
  oxideKKey: CryptoKey | undefined,
  kek: CryptoKey | undefined,
): Promise<PendingKeys | undefined> {
  const record = row.pending;
  if (record === undefined) return undefined;
  if (record.operation === "rotateDataKey") {
    return { record, dataKey: await unwrapDataKey(kek!, record.wrapped), oxideKKey: undefined };
  }
  const json = await openOxideK(oxideKKey!, SEALING_KEY, record.byCurrent);
  const raw = typeof JSON.parse(json) === "string" ? fromBase64Url(JSON.parse(json) as string, false) : undefined;
  if (raw === undefined || raw.length !== 32) {
    throw new CryptoError(
      `the pending key of the sealing parameters is malformed: the sealing parameters were altered`,
    );
  }
  try {
    const key = await importRawAesKey(raw);
    if (record.operation === "rekey") {
      // Extractable only to compare it with the key a resumed rekey names.
      const extractable = await crypto.subtle.importKey("raw", raw, "AES-GCM", true, ["encrypt", "decrypt"]);
      return { record, dataKey: undefined, oxideKKey: extractable };
    }
    return { record, dataKey: { keyId: record.wrapped.keyId, key }, oxideKKey: undefined };
  } finally {
    raw.fill(0);
  }
}

/** The stored parameters as the JSON object of the meta key `"sealing"` (field names: `oxide_sealing`'s columns). */
function paramsRecord(
  scheme: SealingScheme,
  envelope: Pick<EnvelopeKeys, "kdf" | "wrapped"> | undefined,
  pending: PendingRecord | undefined,
): Record<string, unknown> {
  const kdf = envelope?.kdf;
  return {
    scheme,
    version: ENVELOPE_VERSION,
    kdf: kdf?.kdf ?? null,
    iterations: kdf?.kdf === "pbkdf2-sha256" ? kdf.iterations : null,
    salt: kdf?.kdf === "pbkdf2-sha256" ? kdf.salt.toBase64({ alphabet: "base64url" }) : null,
    key_id: envelope?.wrapped.keyId ?? null,
    wrapped_key: envelope?.wrapped.wrapped ?? null,
    pending: pending === undefined ? null : pendingJson(pending),
  };
}

function pendingJson(pending: PendingRecord): Record<string, unknown> {
  switch (pending.operation) {
    case "rotateDataKey":
      return { operation: pending.operation, key_id: pending.wrapped.keyId, wrapped_key: pending.wrapped.wrapped };
    case "convertToEnvelope": {
      const kdf = pending.kdf;
      return {
        operation: pending.operation,
        kdf: kdf.kdf,
        iterations: kdf.kdf === "pbkdf2-sha256" ? kdf.iterations : null,
        salt: kdf.kdf === "pbkdf2-sha256" ? kdf.salt.toBase64({ alphabet: "base64url" }) : null,
        key_id: pending.wrapped.keyId,
        wrapped_key: pending.wrapped.wrapped,
        by_current: pending.byCurrent,
      };
    }
    case "rekey":
      return { operation: pending.operation, by_current: pending.byCurrent };
  }
}

/** The seal counts from the meta key `"sealing.seals"` (absent: none counted yet). */
function parseSeals(path: string, where: string, text: string | undefined): Seals {
  if (text === undefined || text === "") return { count: 0, start: 0, pending: 0 };
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CryptoError(`seal counts of '${path}' (${where}) are damaged: not JSON`);
  }
  const fields = { count: "seal_count", start: "seal_start", pending: "pending_seal_count" } as const;
  const out: Seals = { count: 0, start: 0, pending: 0 };
  for (const [name, column] of Object.entries(fields) as [keyof Seals, string][]) {
    const value = o[name] ?? 0;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw badField(path, where, column, value, "not a non-negative integer");
    }
    out[name] = value;
  }
  return out;
}

async function readSeals(store: Store, where: string): Promise<Seals> {
  return parseSeals(store.location, where, (await settle(store.get("meta", SEALS_KEY)))?.value);
}

/**
 * The sealing parameters from the meta key `"sealing"`: `undefined` when there are none (no key, or a SQLite table
 * without its row). Checks every field: a damaged or hostile record is a CryptoError naming the field.
 */
function readRow(path: string, where: string, entry: Entry | undefined): SealingRow | undefined {
  if (entry === undefined || entry.value === "") return undefined;
  let row: Record<string, unknown>;
  try {
    row = JSON.parse(entry.value as string) as Record<string, unknown>;
  } catch {
    throw new CryptoError(`sealing parameters of '${path}' (${where}) are damaged: not a JSON object`);
  }
  const missing = Array.isArray(row.$missing) ? row.$missing.map(String) : [];
  if (missing.length > 0) {
    throw new CryptoError(
      `sealing parameters of '${path}' (${where}) are damaged: column(s) ${
        missing.map((c) => `'${c}'`).join(", ")
      } missing; refusing to open`,
    );
  }
  const scheme = row.scheme;
  if (scheme !== "envelope" && scheme !== "oxide-k") throw badField(path, where, "scheme", scheme, "an unknown scheme");
  const generation = "generation" in row
    ? readGeneration(path, where, row.generation)
    : readGeneration(path, where, entry.version - 1);
  if (row.version !== ENVELOPE_VERSION) {
    throw badField(path, where, "version", row.version, `this library reads format version ${ENVELOPE_VERSION}`);
  }
  const pending = readPending(path, where, scheme, row.pending);
  if (scheme === "oxide-k") {
    // A downgrade: an envelope registry whose scheme field was changed would accept any key and seal new
    // values under one SHA-256 of the passphrase. An oxide-k row never holds envelope parameters.
    for (const field of ["wrapped_key", "key_id", "kdf", "salt", "iterations"] as const) {
      if (row[field] !== null && row[field] !== undefined) {
        throw new CryptoError(
          `sealing parameters of '${path}' (${where}): scheme 'oxide-k' with an envelope ${field} ${
            quote(row[field])
          }: the scheme field was altered; refusing to open`,
        );
      }
    }
    return { scheme, kdf: undefined, wrapped: undefined, generation, pending };
  }
  return {
    scheme,
    kdf: readKdf(path, where, row),
    wrapped: readWrapped(path, where, row),
    generation,
    pending,
  };
}

function readPending(
  path: string,
  where: string,
  scheme: SealingScheme,
  value: unknown,
): PendingRecord | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw badField(path, where, "pending", value, "not a JSON object");
  }
  const p = value as Record<string, unknown>;
  const op = p.operation;
  const byCurrent = () => {
    if (typeof p.by_current !== "string") throw badField(path, where, "pending.by_current", p.by_current, "not text");
    return p.by_current;
  };
  if (op === "rotateDataKey" && scheme === "envelope") {
    return { operation: op, wrapped: readWrapped(path, where, p) };
  }
  if (op === "convertToEnvelope" && scheme === "oxide-k") {
    return {
      operation: op,
      kdf: readKdf(path, where, p),
      wrapped: readWrapped(path, where, p),
      byCurrent: byCurrent(),
    };
  }
  if (op === "rekey" && scheme === "oxide-k") return { operation: op, byCurrent: byCurrent() };
  throw badField(path, where, "pending.operation", op, `not a re-sealing of the ${scheme} scheme`);
}

/** A CryptoError naming where the parameters live, the field and its stored value. */
function badField(path: string, where: string, field: string, value: unknown, why: string): CryptoError {
  return new CryptoError(
    `sealing parameters of '${path}' (${where}) are damaged: field '${field}' is ${quote(value)}: ${why}`,
  );
}

function readGeneration(path: string, where: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw badField(path, where, "generation", value, "not a non-negative integer");
  }
  return value;
}

function readKdf(path: string, where: string, row: Record<string, unknown>): KdfParams {
  if (row.kdf === "raw") return { kdf: "raw" };
  if (row.kdf !== "pbkdf2-sha256") throw badField(path, where, "kdf", row.kdf, "an unknown key derivation");
  const salt = typeof row.salt === "string" ? decodeSalt(row.salt) : undefined;
  if (salt === undefined) {
    throw badField(path, where, "salt", row.salt, `not padded URL-safe base64 of ${PBKDF2_SALT_BYTES} bytes`);
  }
  if (typeof row.iterations !== "number" || !Number.isSafeInteger(row.iterations)) {
    throw badField(path, where, "iterations", row.iterations, "not an integer");
  }
  return { kdf: "pbkdf2-sha256", iterations: row.iterations, salt };
}

function readWrapped(path: string, where: string, row: Record<string, unknown>): WrappedDataKey {
  if (typeof row.key_id !== "string" || !KEY_ID_SHAPE.test(row.key_id)) {
    throw badField(path, where, "key_id", row.key_id, "not a data key id");
  }
  if (typeof row.wrapped_key !== "string") throw badField(path, where, "wrapped_key", row.wrapped_key, "not text");
  return { keyId: row.key_id, wrapped: row.wrapped_key };
}

/**
 * The oxide-k scheme's key check, at open: when the registry holds oxide-k
 * values, one of them must open with `oxideKKey` (or with the new key of a
 * rekey under way), or the key is wrong. Tries up to
 * {@linkcode KEY_CHECK_VALUES} values, so one altered value does not lock
 * the registry; an empty registry has nothing to check against.
 *
 * @throws {WrongKeyError} When no value opens and at least one fails authentication.
 */
async function checkOxideKKey(store: Store, oxideKKey: CryptoKey, next: CryptoKey | undefined): Promise<void> {
  let failed: SealedValueError | undefined;
  let tried = 0;
  for await (const entry of configEntries(store)) {
    if (tried >= KEY_CHECK_VALUES) break;
    if (typeof entry.value !== "string" || storedForm(entry.value) !== "oxide-k") continue;
    tried++;
    for (const key of next === undefined ? [oxideKKey] : [oxideKKey, next]) {
      try {
        await openOxideK(key, entry.key, entry.value);
        return;
      } catch (error) {
        if (!(error instanceof SealedValueError)) throw error;
        if (error.reason === "wrong_key_or_tampered") failed ??= error;
      }
    }
  }
  if (failed !== undefined) {
    throw new WrongKeyError(
      `the key opens none of the oxide-k sealed values of '${store.location}' (tried ${tried}, first config key '${failed.key}')`,
      { cause: failed },
    );
  }
}

/**
 * An oxide-k registry holds no envelope-sealed value (except under the pending key of a conversion): one there means
 * the scheme was changed by hand (a downgrade), so the registry is refused.
 */
async function refuseEnvelopeValues(store: Store, where: string): Promise<void> {
  for await (const entry of configEntries(store)) {
    if (typeof entry.value === "string" && isEnvelopeSealed(entry.value)) {
      throw new CryptoError(
        `sealing parameters of '${store.location}' (${where}) say scheme 'oxide-k', but config key '${entry.key}' holds an envelope-sealed value: the scheme field was altered; refusing to open`,
      );
    }
  }
}

/** A stored field, quoted and shortened for a message. */
function quote(value: unknown): string {
  if (value === null) return "NULL";
  const blob = typeof value === "object" && value !== null && "blob" in value
    ? (value as { blob: unknown }).blob
    : undefined;
  const text = typeof value === "string"
    ? value
    : value instanceof Uint8Array
    ? `<${value.length}-byte blob>`
    : typeof blob === "number"
    ? `<${blob}-byte blob>`
    : typeof value === "object"
    ? JSON.stringify(value)
    : String(value);
  return `'${text.length > 40 ? `${text.slice(0, 40)}...` : text}'`;
}

async function countForms(store: Store): Promise<Record<StoredForm, number>> {
  const counts: Record<StoredForm, number> = { envelope: 0, "oxide-k": 0, plain: 0 };
  for await (const entry of configEntries(store)) {
    if (typeof entry.value === "string") counts[storedForm(entry.value)]++;
  }
  return counts;
}

/**
 * The oxide-k scheme opens with any key while the registry holds no value to check it against, and seals under one
 * SHA-256 of the passphrase: it is used only when the caller asks for it. Otherwise, anyone who can write the file
 * could downgrade an envelope registry (delete its values, rewrite `oxide_sealing`) and have the next secrets sealed
 * under a key a dictionary recovers.
 */
function oxideKNotAsked(path: string, found: "parameters" | "values", where: string): CryptoError {
  const what = found === "parameters"
    ? `its sealing parameters (${where}, field scheme) say the oxide-k scheme`
    : `it holds values sealed with the oxide-k scheme and no sealing parameters (${where})`;
  return new CryptoError(
    `'${path}': ${what}, which is opened only when asked for with { scheme: "oxide-k" }: if this registry was created with the envelope scheme, someone who can write the file downgraded it; refusing to open. A registry shared with a Rust oxide-k kernel is opened with { scheme: "oxide-k" } (then convertToEnvelope() moves it to the envelope scheme)`,
  );
}

function schemeMismatch(path: string): CryptoError {
  return new CryptoError(
    `'${path}' is sealed with the envelope scheme, not the oxide-k scheme: a Rust oxide-k kernel cannot read it, and it cannot be converted back`,
  );
}

/** A stored value a re-sealing must read is text, or the re-sealing stops before writing anything. */
function checkStored(operation: string, configKey: string, stored: unknown): string {
  if (typeof stored !== "string") {
    throw new CryptoError(
      `${operation}(): config key '${configKey}' (table config, field value) holds ${
        stored instanceof Uint8Array ? "a BLOB" : stored === null ? "NULL" : `a ${typeof stored}`
      }, not text: it cannot be sealed or re-sealed; rewrite or delete it; nothing was changed`,
    );
  }
  return stored;
}

function checkPlainJson(operation: string, configKey: string, stored: string): string {
  if (!isJson(stored)) {
    throw new SerializationError(
      `value of config key '${configKey}' is not valid JSON, so ${operation}() cannot seal it; nothing was changed`,
    );
  }
  return stored;
}
