/**
 * Sealed registries: the state behind `StateRegistry.openEncrypted`. Chooses
 * the scheme, keeps the keys, stores the sealing parameters in the additive
 * table `oxide_sealing`, and re-seals values atomically for `rekey`,
 * `rotateDataKey`, `sealPlainValues` and `convertToEnvelope`.
 *
 * Concurrency. In one process, sealed writes and re-sealing run one at a time
 * in call order (an async lock). Across processes (or connections), every
 * change of keys bumps `oxide_sealing.generation`: a writer checks the
 * generation inside its write transaction and re-seals under the new key when
 * it changed; a re-sealing checks, inside its transaction, that no value
 * changed since it read them, and starts over when one did. Nothing is ever
 * sealed under a stale key and nothing is lost.
 *
 * @module
 */

import {
  CryptoError,
  KeyRequiredError,
  RegistryError,
  SealedValueError,
  SerializationError,
  WrongKeyError,
} from "../errors.ts";
import { applyMigrations, type Migration } from "../schema.ts";
import type { Engine, Row, Statement } from "../sqlite/engine.ts";
import { BATCH_END_SQL, REWRITE_BEGIN_SQL } from "../store/sqlite/_revision_sql.ts";
import { SqliteStore } from "../store/sqlite/store.ts";
import type { Store, TxnResult } from "../store/store.ts";
import { formatTimestamp } from "../time.ts";
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
export interface RekeyOptions {
  /** PBKDF2 iterations for a new passphrase (600,000 to 10,000,000; default 600,000). */
  iterations?: number | undefined;
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
 * await reg.rotateDataKey();
 * assert.equal(reg.sealing?.generation, 1);
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
  /** Bumped by every change of keys or scheme, in any process. */
  readonly generation: number;
  /**
   * How many values were sealed under the current key (data key, or the oxide-k key), by this library in any
   * process, as last seen by this handle. AES-GCM with random nonces allows 2^32 per key: the envelope scheme rotates
   * its data key at 2^31; a write that would pass 2^32 is refused (oxide-k scheme: call rekey() or
   * convertToEnvelope()).
   */
  readonly sealCount: number;
}

/** The additive table of sealing parameters: at most one row, `id = 1`. */
export const SEALING_TABLE_SQL = `CREATE TABLE IF NOT EXISTS oxide_sealing (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    scheme      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    kdf         TEXT,
    iterations  INTEGER,
    salt        TEXT,
    key_id      TEXT,
    wrapped_key TEXT,
    generation  INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
)`;

/** The columns of `oxide_sealing` this library reads: a table without one of them is damaged. */
const SEALING_COLUMNS = [
  "id",
  "scheme",
  "version",
  "kdf",
  "iterations",
  "salt",
  "key_id",
  "wrapped_key",
  "generation",
  "updated_at",
] as const;

/** Migrations of the `sealing` owner, run through the registry's migration runner. */
export const SEALING_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: "oxide_sealing parameters table", up: SEALING_TABLE_SQL },
  {
    version: 2,
    name: "oxide_sealing.seal_count and seal_start: values sealed under the current key, and how many it began with",
    up: (db) => {
      const columns = sealingColumns(db);
      if (!columns.has("seal_start")) {
        db.exec("ALTER TABLE oxide_sealing ADD COLUMN seal_start INTEGER NOT NULL DEFAULT 0");
      }
      if (columns.has("seal_count")) return;
      // Seals made before the count existed are unknown: the values stored now are a lower bound.
      db.exec(`ALTER TABLE oxide_sealing ADD COLUMN seal_count INTEGER NOT NULL DEFAULT 0;
        UPDATE oxide_sealing SET seal_count = (SELECT count(*) FROM config)`);
    },
  },
];

/**
 * NIST SP 800-38D (section 8.3) allows at most 2^32 AES-GCM encryptions with random 96-bit nonces per key. Every
 * value sealed under the current key is counted in `oxide_sealing.seal_count` (reserved `reserve` at a time); the
 * envelope scheme rotates its data key once the count reaches `rotateAt`, and a write that would pass `refuseAt` is
 * refused.
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

/** The read cache's bounds: config keys remembered, and UTF-16 code units of plaintext JSON over all of them. */
export const READ_CACHE_ENTRIES = 10_000;
const READ_CACHE_CHARS = 8 * 1024 * 1024;
/** Values longer than this are opened on every read, never cached: one large value must not push out the rest. */
const READ_CACHE_VALUE_CHARS = 64 * 1024;

const SQL = {
  tableExists: "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_sealing'",
  row: "SELECT scheme, version, kdf, iterations, salt, key_id, wrapped_key, generation FROM oxide_sealing WHERE id = 1",
  generation: "SELECT generation FROM oxide_sealing WHERE id = 1",
  sealCount: "SELECT seal_count, seal_start FROM oxide_sealing WHERE id = 1",
  setSeals: "UPDATE oxide_sealing SET seal_count = ?1 WHERE id = 1",
  newKeySeals: "UPDATE oxide_sealing SET seal_count = ?1, seal_start = ?1 WHERE id = 1",
  columns: "SELECT name FROM pragma_table_info('oxide_sealing')",
  scheme: "SELECT scheme FROM oxide_sealing WHERE id = 1",
  insert:
    `INSERT INTO oxide_sealing (id, scheme, version, kdf, iterations, salt, key_id, wrapped_key, generation, updated_at)
VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)`,
  update: `UPDATE oxide_sealing SET scheme = ?1, version = ?2, kdf = ?3, iterations = ?4, salt = ?5,
    key_id = ?6, wrapped_key = ?7, generation = generation + 1, updated_at = ?8 WHERE id = 1`,
  values: "SELECT key, value FROM config ORDER BY key",
  // The shape of oxide-k values (padded URL-safe base64, at least 40 characters), checked in full in code. Only the
  // first 40 characters go through GLOB: its leading '*' costs seconds on a value of tens of MiB.
  oxideKCandidates: `SELECT key, value FROM config WHERE length(value) >= 40 AND length(value) % 4 = 0
    AND substr(value, 1, 40) NOT GLOB '*[^-A-Za-z0-9_=]*' ORDER BY key LIMIT ?1`,
  envelopeValue: "SELECT key FROM config WHERE substr(value, 1, 6) = '$oxide' LIMIT 1",
  // Values of either sealed shape, in one pass (checked again in code): what a keyless writer looks for.
  sealedValues: `SELECT value FROM config WHERE substr(value, 1, 6) = '$oxide' OR (length(value) >= 40
    AND length(value) % 4 = 0 AND substr(value, 1, 40) NOT GLOB '*[^-A-Za-z0-9_=]*') LIMIT ?1`,
  otherKeys: "SELECT key FROM config WHERE key <> ?1 ORDER BY key LIMIT ?2",
  sameValue: "SELECT key FROM config WHERE value = ?1 AND key <> ?2 LIMIT 1",
  reseal: "UPDATE config SET value = ?1 WHERE key = ?2",
  resealLogged: "UPDATE oxide_changes SET value = ?1 WHERE space = 'config' AND key = ?2 AND value = ?3",
  loggedValues:
    "SELECT seq, key, value FROM oxide_changes WHERE space = 'config' AND type = 'put' AND value IS NOT NULL ORDER BY seq",
  resealPast: "UPDATE oxide_changes SET value = ?1 WHERE seq = ?2",
} as const;

/** The stored sealing parameters. */
interface SealingRow {
  scheme: SealingScheme;
  kdf: KdfParams | undefined;
  wrapped: WrappedDataKey | undefined;
  generation: number;
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
 * Tells whether a registry is sealed, for a handle opened without a key: its
 * `oxide_sealing` table exists (created with its row by `openEncrypted`), or
 * it holds sealed values (a file a Rust oxide-k kernel sealed has no table).
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
  if (db.prepare(SQL.tableExists).get() !== undefined) {
    if (!sealingColumns(db).has("scheme")) return "unknown"; // Damaged: still sealed, so a keyless write is refused.
    const row = db.prepare(SQL.scheme).get();
    return row === undefined ? "unknown" : String(row.scheme);
  }
  // One scan of the table; the registry runs it once per keyless handle, at its first write (not at open).
  for (const row of db.prepare(SQL.sealedValues).all(SEALED_CANDIDATES)) {
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

/**
 * Opens the sealing of a registry: reads its parameters and checks the key
 * (envelope scheme: unwraps the data key, so a wrong key fails here, before
 * any value is read or written), or chooses a scheme and records it.
 *
 * @param db The registry's connection, already migrated.
 * @param key The key.
 * @param options The scheme to use and PBKDF2 iterations for a new registry.
 * @param store The registry's store over `db` (sealed writes go through it); default: a store over `db`.
 * @returns The sealing state for the registry's value hooks.
 * @throws {TypeError} When `key` or an option has the wrong shape.
 * @throws {RangeError} When raw key bytes are not 32 bytes, or `iterations` is outside 600,000 to 10,000,000.
 * @throws {WrongKeyError} When the key does not open the registry (envelope scheme).
 * @throws {CryptoError} When `scheme` differs from the scheme the registry uses, or its parameters are damaged.
 */
export async function openSealing(
  db: Engine,
  key: RegistryKey,
  options: SealingOptions = {},
  store: Store = new SqliteStore(db),
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
  db.exec("PRAGMA secure_delete = ON");
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const row = readRow(db);
    if (row !== undefined) {
      if (row.scheme === "oxide-k") {
        refuseEnvelopeValues(db);
        if (asked !== "oxide-k") throw oxideKNotAsked(db.path, "parameters");
        const oxideKKey = await importOxideKKey(key);
        await checkOxideKKey(db, oxideKKey);
        migrateSealing(db);
        return new Sealing(db, store, "oxide-k", row.generation, oxideKKey, undefined, cache);
      }
      if (asked === "oxide-k") throw schemeMismatch(db.path);
      const kdf = row.kdf!;
      const kek = await deriveKek(key, kdf);
      const dataKey = await unwrapDataKey(kek, row.wrapped!);
      // Only a key that opened the registry writes anything: the migrations, after the key check.
      migrateSealing(db);
      const envelope = { kdf, kek, kekCurrent: true, dataKey, wrapped: row.wrapped! };
      return new Sealing(db, store, "envelope", row.generation, undefined, envelope, cache);
    }
    const forms = countForms(db);
    if (forms.envelope > 0) {
      throw new CryptoError(
        `'${db.path}' holds ${forms.envelope} envelope-sealed value(s) but no sealing parameters (table oxide_sealing): they were deleted, and the values cannot be opened`,
      );
    }
    if (forms["oxide-k"] > 0 && asked !== "oxide-k") throw oxideKNotAsked(db.path, "values");
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
    if (oxideKKey !== undefined) await checkOxideKKey(db, oxideKKey);
    const created = db.transaction(() => {
      applyMigrations(db, "sealing", SEALING_MIGRATIONS);
      if (readRow(db) !== undefined) return false; // Another process created it first.
      db.prepare(SQL.insert).run(...rowParams(scheme, envelope));
      return true;
    });
    if (created) return new Sealing(db, store, scheme, 0, oxideKKey, envelope, cache);
  }
  throw new CryptoError(`cannot open sealing of '${db.path}': its parameters kept changing`);
}

/**
 * The sealing state of one open registry. Created by {@linkcode openSealing};
 * the registry calls {@linkcode Sealing.write} and {@linkcode Sealing.open}
 * from its value hooks.
 */
export class Sealing {
  readonly #db: Engine;
  /** The registry's store: sealed writes go through it, guarded by a compare on the meta key `"sealing"`. */
  readonly #store: Store;
  #scheme: SealingScheme;
  #generation: number;
  /** oxide-k scheme: seals and opens values. `undefined` in the envelope scheme, which never opens oxide-k values. */
  #oxideKKey: CryptoKey | undefined;
  #envelope: EnvelopeKeys | undefined;
  /** `oxide_sealing.seal_count` as last read or written by this handle. */
  #sealCount = 0;
  /** Why the last automatic rotation at the seal limit failed, if it did. */
  #rotationFailure: unknown;
  /** The seal count a new key started with (the values re-sealed under it), as this handle saw it. */
  #keyStartCount = 0;
  /** Seals this handle reserved in `seal_count` and has not made yet, under the keys of `#reservedGeneration`. */
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
    db: Engine,
    store: Store,
    scheme: SealingScheme,
    generation: number,
    oxideKKey: CryptoKey | undefined,
    envelope: EnvelopeKeys | undefined,
    cacheEntries: number = READ_CACHE_ENTRIES,
  ) {
    this.#db = db;
    this.#store = store;
    this.#scheme = scheme;
    this.#generation = generation;
    this.#oxideKKey = oxideKKey;
    this.#envelope = envelope;
    this.#cacheEntries = cacheEntries;
    this.#sealCount = this.#storedSealCount();
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
      sealCount: this.#sealCount,
    };
  }

  /**
   * Seals `json` for `configKey` under the current key and writes it in one
   * statement that changes nothing when another process changed the keys
   * since (the stored generation moved on); then follows the change and
   * seals again.
   *
   * @param configKey The config key.
   * @param json The value's JSON text.
   * @param updatedAt The row's `updated_at` text.
   * @throws {WrongKeyError} When another process changed the key so that this handle cannot follow.
   * @throws {CryptoError} When the current key sealed as many values as AES-GCM allows (see {@linkcode SealingInfo.sealCount}).
   */
  write(configKey: string, json: string, updatedAt: string): Promise<void> {
    return this.#mutex.run(async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const generation = this.#generation; // The keys `stored` is sealed under (a read may follow a change meanwhile).
        const reserved = this.#reserve(generation, 1);
        if (reserved === "rekeyed") {
          await this.#refresh();
          continue;
        }
        if (reserved === "limit") {
          if (await this.#rotatedBelowLimit()) continue;
          throw this.#limitError(`config key '${configKey}'`);
        }
        const stored = await this.#seal(configKey, json);
        // The generation check is a compare on the meta key "sealing", whose version is the generation + 1.
        const txn = this.#store.txn({
          compares: [{ space: "meta", key: "sealing", target: "version", equals: generation + 1 }],
          success: [{ op: "put", space: "config", key: configKey, value: stored }],
          updatedAt,
        });
        const result: TxnResult = txn instanceof Promise ? await txn : txn;
        if (result.succeeded) {
          this.#reserved--;
          this.#remember(configKey, stored, json);
          if (this.#rotationDue()) await this.#rotateAtLimit();
          return;
        }
        await this.#refresh();
      }
      throw new CryptoError(
        `config encrypt: cannot write config key '${configKey}': other processes kept changing the registry's keys`,
      );
    });
  }

  /**
   * Seals several values under the current key and hands them to
   * `writeRows` inside one transaction, as {@linkcode Sealing.write} does for
   * one: all are written, or none (an import).
   *
   * @param values Config keys and their JSON text.
   * @param writeRows Writes every row (synchronously, in the transaction), given the stored text by config key.
   * @throws {WrongKeyError} When another process changed the key so that this handle cannot follow.
   */
  writeMany(
    values: readonly (readonly [configKey: string, json: string])[],
    writeRows: (stored: ReadonlyMap<string, string>) => void,
  ): Promise<void> {
    return this.#mutex.run(async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const generation = this.#generation;
        const reserved = this.#reserve(generation, values.length);
        if (reserved === "rekeyed") {
          await this.#refresh();
          continue;
        }
        if (reserved === "limit") {
          if (await this.#rotatedBelowLimit()) continue;
          throw this.#limitError(`${values.length} value(s)`);
        }
        const stored = new Map<string, string>();
        for (const [configKey, json] of values) stored.set(configKey, await this.#seal(configKey, json));
        const written = this.#db.transaction(() => {
          if (this.#storedGeneration() !== generation) return false;
          writeRows(stored);
          return true;
        });
        if (written) {
          this.#reserved -= values.length;
          if (this.#rotationDue()) await this.#rotateAtLimit();
          return;
        }
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
   * touched). oxide-k scheme: re-seals every value. One transaction.
   *
   * @param newKey The new key.
   * @param options PBKDF2 iterations for a new passphrase.
   * @returns How many values were re-sealed.
   */
  rekey(newKey: RegistryKey, options: RekeyOptions = {}): Promise<number> {
    checkRegistryKey(newKey, []);
    const kdf = newKdfParams(newKey, options);
    return this.#mutex.run(async () => {
      if (this.#scheme === "oxide-k") {
        const oxideKKey = await importOxideKKey(newKey);
        return await this.#reseal(() => ({
          operation: "rekey",
          seal: (_configKey, json) => sealOxideK(oxideKKey, json),
          select: (form) => form === "oxide-k",
          commit: (sealed) => {
            sealingStatement(this.#db, SQL.update).run(...rowParams("oxide-k", undefined));
            return sealed; // A new key: its count starts with the values just sealed.
          },
          apply: () => {
            this.#oxideKKey = oxideKKey;
          },
        }));
      }
      const kek = await deriveKek(newKey, kdf);
      return await this.#reseal(async () => {
        const current = this.#currentEnvelope("rekey");
        const exportable = await unwrapDataKey(current.kek, current.wrapped, true);
        const wrapped = await wrapDataKey(kek, current.dataKey.keyId, exportable.key);
        const envelope = { kdf, kek, kekCurrent: true, dataKey: current.dataKey, wrapped };
        return {
          operation: "rekey",
          // Values stay under the same data key (and its seal count): only the wrapped data key changes. Values are
          // not read at all, so a damaged one never blocks a rekey.
          seal: (configKey, json) => sealEnvelope(current.dataKey, configKey, json),
          select: undefined,
          commit: () => {
            sealingStatement(this.#db, SQL.update).run(...rowParams("envelope", envelope));
            return undefined;
          },
          apply: () => {
            this.#envelope = envelope;
          },
        };
      });
    });
  }

  /**
   * Envelope scheme: re-seals every sealed value under a fresh data key, in
   * one transaction.
   *
   * @returns How many values were re-sealed.
   * @throws {CryptoError} In the oxide-k scheme, which has no data key.
   */
  rotateDataKey(): Promise<number> {
    return this.#mutex.run(() => this.#rotate());
  }

  /** {@linkcode Sealing.rotateDataKey}, inside the lock. */
  #rotate(): Promise<number> {
    if (this.#scheme === "oxide-k") {
      throw new CryptoError(
        "rotateDataKey() needs the envelope scheme: the oxide-k scheme has no data key; use rekey() or convertToEnvelope()",
      );
    }
    return this.#reseal(async () => {
      const current = this.#currentEnvelope("rotateDataKey");
      const { dataKey, wrapped } = await generateDataKey(current.kek);
      const envelope = { ...current, dataKey, wrapped };
      return {
        operation: "rotateDataKey",
        seal: (configKey, json) => sealEnvelope(dataKey, configKey, json),
        // oxide-k values met here are foreign (not bound to their config key): left as they are, still refused.
        select: (form) => form === "envelope",
        commit: (sealed) => {
          sealingStatement(this.#db, SQL.update).run(...rowParams("envelope", envelope));
          return sealed; // A fresh data key: its count starts with the values just sealed.
        },
        apply: () => {
          this.#envelope = envelope;
        },
      };
    });
  }

  /**
   * The seal count reached the rotation threshold: rotates the data key. Best effort: when rotation fails (a value
   * that cannot be opened, a key changed elsewhere), writes go on until the hard limit, then are refused, naming why.
   */
  /**
   * Whether the data key is due for rotation: its count reached the threshold, and at least as many seals were made
   * under it as a rotation makes (it re-seals every value and the change log's), so rotations never chase each other.
   */
  #rotationDue(): boolean {
    return this.#scheme === "envelope" && this.#sealCount >= SEAL_LIMITS.rotateAt &&
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

  /**
   * Reserves seals in `oxide_sealing.seal_count` before making them, in blocks (one small transaction per block, not
   * one per write): the count is an upper bound of the seals made, since a reservation a handle does not use up (it
   * closes, or the keys change) stays counted.
   */
  #reserve(generation: number, needed: number): "reserved" | "rekeyed" | "limit" {
    if (this.#reservedGeneration === generation && this.#reserved >= needed) return "reserved";
    return this.#db.transaction(() => {
      if (this.#storedGeneration() !== generation) return "rekeyed";
      const count = this.#storedSealCount();
      this.#sealCount = count;
      const kept = this.#reservedGeneration === generation ? this.#reserved : 0;
      const block = Math.min(Math.max(SEAL_LIMITS.reserve, needed - kept), SEAL_LIMITS.refuseAt - count);
      if (kept + block < needed) return "limit";
      sealingStatement(this.#db, SQL.setSeals).run(count + block);
      this.#sealCount = count + block;
      this.#reserved = kept + block;
      this.#reservedGeneration = generation;
      return "reserved";
    });
  }

  #limitError(what: string): CryptoError {
    const bound = `the most AES-GCM with random nonces allows under one key (NIST SP 800-38D: 2^32)`;
    const cause = this.#rotationFailure;
    const remedy = this.#scheme === "oxide-k"
      ? "call rekey() or convertToEnvelope() to seal under a new key"
      : cause === undefined
      ? "call rotateDataKey()"
      : `rotating the data key failed (${(cause as Error).message}); fix that and call rotateDataKey()`;
    return new CryptoError(
      `config encrypt: cannot write ${what}: ${this.#sealCount} values were sealed under the current key of '${this.#db.path}' (table oxide_sealing, field seal_count), ${bound}; ${remedy}`,
      cause === undefined ? undefined : { cause },
    );
  }

  /**
   * Seals every value stored plain (written before the registry was sealed,
   * or by a process without the key), in one transaction.
   *
   * @returns How many values were sealed.
   * @throws {SerializationError} When a plain value is not JSON; nothing is written.
   */
  sealPlainValues(): Promise<number> {
    return this.#mutex.run(() =>
      this.#reseal(() => ({
        operation: "sealPlainValues",
        seal: (configKey, json) => this.#seal(configKey, json),
        select: (form) => form === "plain",
        commit: (sealed) => {
          const count = this.#storedSealCount() + sealed;
          if (count > SEAL_LIMITS.refuseAt) {
            this.#sealCount = count - sealed;
            throw this.#limitError("the plain values");
          }
          return count;
        },
        apply: () => {},
      }))
    );
  }

  /**
   * oxide-k scheme: re-seals every value (and seals plain ones) in the
   * envelope scheme under `key`, in one transaction. A Rust oxide-k kernel
   * cannot read the registry afterwards.
   *
   * @param key The envelope scheme's key: the same passphrase, or a new key.
   * @param options PBKDF2 iterations for a passphrase.
   * @returns How many values were converted.
   * @throws {CryptoError} When the registry already uses the envelope scheme.
   */
  convertToEnvelope(key: RegistryKey, options: RekeyOptions = {}): Promise<number> {
    checkRegistryKey(key, []);
    const kdf = newKdfParams(key, options);
    return this.#mutex.run(async () => {
      const kek = await deriveKek(key, kdf);
      const { dataKey, wrapped } = await generateDataKey(kek);
      const envelope = { kdf, kek, kekCurrent: true, dataKey, wrapped };
      return await this.#reseal(() => {
        if (this.#scheme === "envelope") {
          throw new CryptoError(`convertToEnvelope(): '${this.#db.path}' already uses the envelope scheme`);
        }
        return {
          operation: "convertToEnvelope",
          seal: (configKey, json) => sealEnvelope(dataKey, configKey, json),
          select: (form) => form !== "envelope",
          commit: (sealed) => {
            sealingStatement(this.#db, SQL.update).run(...rowParams("envelope", envelope));
            return sealed;
          },
          apply: () => {
            this.#scheme = "envelope";
            this.#envelope = envelope;
            this.#oxideKKey = undefined;
          },
        };
      });
    });
  }

  // ---------------------------------------------------------------------------

  #seal(configKey: string, json: string): Promise<string> {
    if (this.#scheme === "envelope") {
      return sealEnvelope(this.#envelope!.dataKey, configKey, json);
    }
    return sealOxideK(this.#oxideKKey!, json);
  }

  async #openEnvelope(configKey: string, stored: string): Promise<string> {
    if (this.#envelope === undefined) {
      throw new SealedValueError(
        configKey,
        "wrong_scheme",
        "it is sealed under the envelope scheme, but this registry uses the oxide-k scheme and has no envelope parameters",
      );
    }
    if (envelopeKeyId(configKey, stored) !== this.#envelope.dataKey.keyId) await this.#refresh();
    const dataKey = this.#envelope.dataKey;
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
    return await openOxideK(this.#oxideKKey, configKey, stored);
  }

  /**
   * Which config key a value that failed to open was sealed for: a key that
   * stores the very same text (a copy; one query, one decryption), else a
   * trial of at most {@linkcode ORIGIN_CANDIDATES} other keys, so a failed
   * read costs a bounded number of decryptions, not one per config key.
   */
  async #originOf(dataKey: DataKey, configKey: string, stored: string): Promise<string | undefined> {
    const twin = this.#db.prepare(SQL.sameValue).get(stored, configKey);
    if (twin !== undefined && await sealedForKey(dataKey, stored, [String(twin.key)]) !== undefined) {
      return String(twin.key);
    }
    const others = this.#db.prepare(SQL.otherKeys).all(configKey, ORIGIN_CANDIDATES).map((row) => String(row.key));
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

  #storedGeneration(): number | undefined {
    const row = sealingStatement(this.#db, SQL.generation).get();
    return row === undefined ? undefined : readGeneration(this.#db.path, row.generation);
  }

  #storedSealCount(): number {
    const row = sealingStatement(this.#db, SQL.sealCount).get();
    for (const field of ["seal_count", "seal_start"] as const) {
      const value = row?.[field] ?? 0;
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
        throw badField(this.#db.path, field, value, "not a non-negative integer");
      }
    }
    this.#keyStartCount = Number(row?.seal_start ?? 0);
    return Number(row?.seal_count ?? 0);
  }

  /** Follows a change of keys made by another process (or connection). */
  async #refresh(): Promise<void> {
    const row = readRow(this.#db);
    if (row === undefined) {
      throw new CryptoError(
        `the sealing parameters of '${this.#db.path}' (table oxide_sealing) were deleted`,
      );
    }
    if (row.generation === this.#generation) return;
    if (row.scheme !== this.#scheme) {
      throw new WrongKeyError(
        `another process converted '${this.#db.path}' to the ${row.scheme} scheme; reopen it with openEncrypted`,
      );
    }
    if (row.scheme === "oxide-k") {
      throw new WrongKeyError(
        `another process rekeyed '${this.#db.path}' since it was opened; reopen it with the new key`,
      );
    }
    const current = this.#envelope!;
    const wrapped = row.wrapped!;
    let next: EnvelopeKeys;
    try {
      const unwrapped = await unwrapDataKey(current.kek, wrapped);
      const dataKey = wrapped.keyId === current.dataKey.keyId ? current.dataKey : unwrapped;
      next = { ...current, kdf: row.kdf!, kekCurrent: true, dataKey, wrapped };
    } catch (error) {
      if (!(error instanceof WrongKeyError)) throw error;
      if (wrapped.keyId !== current.dataKey.keyId) {
        throw new WrongKeyError(
          `another process changed the key of '${this.#db.path}' and rotated its data key; reopen it with the new key`,
          { cause: error },
        );
      }
      // Rekeyed elsewhere: the data key is unchanged, so values still open and
      // writes stay correct; only rekey and rotation need the new key.
      next = { ...current, kekCurrent: false };
    }
    if (row.generation > this.#generation) {
      this.#envelope = next;
      this.#generation = row.generation;
    }
  }

  /**
   * Re-seals the values a plan selects, in one transaction with the plan's
   * own writes. WebCrypto is async and a transaction is not, so: seal
   * everything first, then, in the transaction, check that every selected
   * row still holds what was sealed; when some changed (another writer), seal
   * just those and try again. When the keys changed (another process), follow
   * them and make a new plan.
   */
  async #reseal(makePlan: () => ResealPlan | Promise<ResealPlan>): Promise<number> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      await this.#refresh();
      const generation = this.#generation;
      const plan = await makePlan();
      const select = plan.select;
      const sealed = new Map<string, { from: string; to: string }>();
      // The change log's past values (history) move with the live ones: none stays under a retired key, or plain.
      const sealedLog = new Map<number, { from: string; to: string }>();
      for (let pass = 0; pass < MAX_ATTEMPTS; pass++) {
        if (select !== undefined) {
          for (const row of this.#db.prepare(SQL.values).all()) {
            const configKey = String(row.key);
            const stored = checkStored(plan.operation, configKey, row.value);
            const form = storedForm(stored);
            if (!select(form) || sealed.get(configKey)?.from === stored) continue;
            const json = form === "plain"
              ? checkPlainJson(plan.operation, configKey, stored)
              : await this.open(configKey, stored);
            sealed.set(configKey, { from: stored, to: await plan.seal(configKey, json) });
          }
        }
        for (const row of select === undefined ? [] : this.#db.prepare(SQL.loggedValues).all()) {
          const configKey = String(row.key);
          const seq = Number(row.seq);
          if (typeof row.value !== "string" || !select!(storedForm(row.value))) continue;
          if (sealed.get(configKey)?.from === row.value || sealedLog.get(seq)?.from === row.value) continue;
          const stored = row.value;
          const json = storedForm(stored) === "plain"
            ? checkPlainJson(plan.operation, configKey, stored)
            : await this.open(configKey, stored);
          sealedLog.set(seq, { from: stored, to: await plan.seal(configKey, json) });
        }
        const outcome = this.#db.transaction((): number | "changed" | "rekeyed" => {
          if (this.#storedGeneration() !== generation) return "rekeyed";
          const updates: [string, string, string][] = [];
          if (select !== undefined) {
            for (const row of this.#db.prepare(SQL.values).all()) {
              const configKey = String(row.key);
              // Not text: changed since the pass read it; the next pass names it.
              if (typeof row.value !== "string") return "changed";
              if (!select(storedForm(row.value))) continue;
              const entry = sealed.get(configKey);
              if (entry?.from !== row.value) return "changed";
              updates.push([entry.to, configKey, entry.from]);
            }
          }
          const logUpdates: [string, number][] = [];
          for (const row of select === undefined ? [] : this.#db.prepare(SQL.loggedValues).all()) {
            if (typeof row.value !== "string" || !select!(storedForm(row.value))) continue;
            if (sealed.get(String(row.key))?.from === row.value) continue; // Re-sealed with its live row below.
            const entry = sealedLog.get(Number(row.seq));
            if (entry?.from !== row.value) return "changed";
            logUpdates.push([entry.to, Number(row.seq)]);
          }
          // A rewrite in place: the values did not change, so no new revision or version; the change log's copies
          // of the same text are re-sealed with them.
          this.#db.prepare(REWRITE_BEGIN_SQL).run();
          const reseal = this.#db.prepare(SQL.reseal);
          const resealLogged = this.#db.prepare(SQL.resealLogged);
          for (const [stored, configKey, from] of updates) {
            reseal.run(stored, configKey);
            resealLogged.run(stored, configKey, from);
          }
          const resealPast = this.#db.prepare(SQL.resealPast);
          for (const [stored, seq] of logUpdates) resealPast.run(stored, seq);
          this.#db.prepare(BATCH_END_SQL).run();
          // Each re-sealed value, live or in the log, is one encryption under the key values are sealed under now.
          const count = plan.commit(updates.length + logUpdates.length);
          if (count !== undefined) {
            const newKey = plan.operation !== "sealPlainValues";
            sealingStatement(this.#db, newKey ? SQL.newKeySeals : SQL.setSeals).run(count);
            this.#sealCount = count;
            if (newKey) this.#keyStartCount = count;
          }
          return updates.length;
        });
        if (outcome === "rekeyed") break;
        if (outcome === "changed") continue;
        plan.apply();
        this.forget(); // The old stored texts are gone; their plaintexts need not stay.
        this.#generation = this.#storedGeneration() ?? this.#generation;
        truncateWal(this.#db);
        return outcome;
      }
    }
    throw new CryptoError(`cannot re-seal '${this.#db.path}': other writers kept changing it; try again`);
  }
}

/** What a re-sealing does; see `Sealing.#reseal`. */
interface ResealPlan {
  /** The public method, for messages. */
  operation: string;
  /** Seals a value's JSON in the target scheme and key. */
  seal(configKey: string, json: string): Promise<string>;
  /** Which stored forms to re-seal; `undefined` when none: values are then not read at all. */
  select: ((form: StoredForm) => boolean) | undefined;
  /**
   * Further writes in the same transaction (the sealing parameters).
   *
   * @param sealed How many values the transaction re-seals.
   * @returns The seal count of the key values are sealed under afterwards, or `undefined` when it is unchanged.
   */
  commit(sealed: number): number | undefined;
  /** Updates this handle's keys after the commit. */
  apply(): void;
}

function readRow(db: Engine): SealingRow | undefined {
  if (db.prepare(SQL.tableExists).get() === undefined) return undefined;
  const columns = sealingColumns(db);
  const missing = SEALING_COLUMNS.filter((column) => !columns.has(column));
  if (missing.length > 0) {
    throw new CryptoError(
      `sealing parameters of '${db.path}' (table oxide_sealing) are damaged: column(s) ${
        missing.map((c) => `'${c}'`).join(", ")
      } missing; refusing to open`,
    );
  }
  const row = db.prepare(SQL.row).get();
  if (row === undefined) return undefined;
  const path = db.path;
  const scheme = row.scheme;
  if (scheme !== "envelope" && scheme !== "oxide-k") throw badField(path, "scheme", scheme, "an unknown scheme");
  const generation = readGeneration(path, row.generation);
  if (row.version !== ENVELOPE_VERSION) {
    throw badField(path, "version", row.version, `this library reads format version ${ENVELOPE_VERSION}`);
  }
  if (scheme === "oxide-k") {
    // A downgrade: an envelope registry whose scheme field was changed would accept any key and seal new
    // values under one SHA-256 of the passphrase. An oxide-k row never holds envelope parameters.
    for (const field of ["wrapped_key", "key_id", "kdf", "salt", "iterations"] as const) {
      if (row[field] !== null) {
        throw new CryptoError(
          `sealing parameters of '${path}' (table oxide_sealing): scheme 'oxide-k' with an envelope ${field} ${
            quote(row[field])
          }: the scheme field was altered; refusing to open`,
        );
      }
    }
    return { scheme, kdf: undefined, wrapped: undefined, generation };
  }
  return { scheme, kdf: readKdf(path, row), wrapped: readWrapped(path, row), generation };
}

/** A CryptoError naming the table, the field and its stored value. */
function badField(path: string, field: string, value: unknown, why: string): CryptoError {
  return new CryptoError(
    `sealing parameters of '${path}' (table oxide_sealing) are damaged: field '${field}' is ${quote(value)}: ${why}`,
  );
}

function readGeneration(path: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw badField(path, "generation", value, "not a non-negative integer");
  }
  return value;
}

function readKdf(path: string, row: Row): KdfParams {
  if (row.kdf === "raw") return { kdf: "raw" };
  if (row.kdf !== "pbkdf2-sha256") throw badField(path, "kdf", row.kdf, "an unknown key derivation");
  const salt = typeof row.salt === "string" ? decodeSalt(row.salt) : undefined;
  if (salt === undefined) {
    throw badField(path, "salt", row.salt, `not padded URL-safe base64 of ${PBKDF2_SALT_BYTES} bytes`);
  }
  if (typeof row.iterations !== "number" || !Number.isSafeInteger(row.iterations)) {
    throw badField(path, "iterations", row.iterations, "not an integer");
  }
  return { kdf: "pbkdf2-sha256", iterations: row.iterations, salt };
}

function readWrapped(path: string, row: Row): WrappedDataKey {
  if (typeof row.key_id !== "string" || !KEY_ID_SHAPE.test(row.key_id)) {
    throw badField(path, "key_id", row.key_id, "not a data key id");
  }
  if (typeof row.wrapped_key !== "string") throw badField(path, "wrapped_key", row.wrapped_key, "not text");
  return { keyId: row.key_id, wrapped: row.wrapped_key };
}

/** The parameters of {@linkcode SQL.insert} and {@linkcode SQL.update}. */
function rowParams(
  scheme: SealingScheme,
  envelope: EnvelopeKeys | undefined,
): [string, number, string | null, number | null, string | null, string | null, string | null, string] {
  const now = formatTimestamp(new Date());
  if (envelope === undefined) return [scheme, ENVELOPE_VERSION, null, null, null, null, null, now];
  const kdf = envelope.kdf;
  return [
    scheme,
    ENVELOPE_VERSION,
    kdf.kdf,
    kdf.kdf === "pbkdf2-sha256" ? kdf.iterations : null,
    kdf.kdf === "pbkdf2-sha256" ? kdf.salt.toBase64({ alphabet: "base64url" }) : null,
    envelope.wrapped.keyId,
    envelope.wrapped.wrapped,
    now,
  ];
}

/**
 * The oxide-k scheme's key check, at open: when the registry holds oxide-k
 * values, one of them must open with `oxideKKey`, or the key is wrong. Tries
 * up to {@linkcode KEY_CHECK_VALUES} values, so one altered value does not
 * lock the registry; an empty registry has nothing to check against.
 *
 * @throws {WrongKeyError} When no value opens and at least one fails authentication.
 */
async function checkOxideKKey(db: Engine, oxideKKey: CryptoKey): Promise<void> {
  let failed: SealedValueError | undefined;
  let tried = 0;
  for (const row of db.prepare(SQL.oxideKCandidates).all(KEY_CHECK_VALUES)) {
    if (typeof row.value !== "string" || storedForm(row.value) !== "oxide-k") continue;
    tried++;
    try {
      await openOxideK(oxideKKey, String(row.key), row.value);
      return;
    } catch (error) {
      if (!(error instanceof SealedValueError)) throw error;
      if (error.reason === "wrong_key_or_tampered") failed ??= error;
    }
  }
  if (failed !== undefined) {
    throw new WrongKeyError(
      `the key opens none of the oxide-k sealed values of '${db.path}' (tried ${tried}, first config key '${failed.key}')`,
      { cause: failed },
    );
  }
}

/**
 * An oxide-k registry holds no envelope-sealed value: one there means the
 * scheme was changed by hand (a downgrade), so the registry is refused.
 */
function refuseEnvelopeValues(db: Engine): void {
  const row = db.prepare(SQL.envelopeValue).get();
  if (row !== undefined) {
    throw new CryptoError(
      `sealing parameters of '${db.path}' (table oxide_sealing) say scheme 'oxide-k', but config key '${
        String(row.key)
      }' holds an envelope-sealed value: the scheme field was altered; refusing to open`,
    );
  }
}

/** A stored field, quoted and shortened for a message. */
function quote(value: unknown): string {
  if (value === null) return "NULL";
  const text = typeof value === "string"
    ? value
    : value instanceof Uint8Array
    ? `<${value.length}-byte blob>`
    : String(value);
  return `'${text.length > 40 ? `${text.slice(0, 40)}...` : text}'`;
}

function countForms(db: Engine): Record<StoredForm, number> {
  const counts: Record<StoredForm, number> = { envelope: 0, "oxide-k": 0, plain: 0 };
  for (const row of db.prepare(SQL.values).all()) {
    if (typeof row.value === "string") counts[storedForm(row.value)]++;
  }
  return counts;
}

/**
 * The oxide-k scheme opens with any key while the registry holds no value to check it against, and seals under one
 * SHA-256 of the passphrase: it is used only when the caller asks for it. Otherwise, anyone who can write the file
 * could downgrade an envelope registry (delete its values, rewrite `oxide_sealing`) and have the next secrets sealed
 * under a key a dictionary recovers.
 */
function oxideKNotAsked(path: string, found: "parameters" | "values"): CryptoError {
  const what = found === "parameters"
    ? "its sealing parameters (table oxide_sealing, field scheme) say the oxide-k scheme"
    : "it holds values sealed with the oxide-k scheme and no sealing parameters (table oxide_sealing)";
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

/** The columns `oxide_sealing` has (none when it does not exist). */
function sealingColumns(db: Engine): Set<string> {
  return new Set(db.prepare(SQL.columns).all().map((row) => String(row.name)));
}

/** Applies the sealing migrations to an existing registry (they add columns with defaults). */
function migrateSealing(db: Engine): void {
  db.transaction(() => applyMigrations(db, "sealing", SEALING_MIGRATIONS));
}

/**
 * Prepares a statement on `oxide_sealing`: a table someone altered (a column dropped) fails with a CryptoError naming
 * the table, not a bare SQLite error.
 */
function sealingStatement(db: Engine, sql: string): Statement {
  try {
    return db.prepare(sql);
  } catch (error) {
    if (!(error instanceof RegistryError)) throw error;
    const missing = [...SEALING_COLUMNS, "seal_count", "seal_start"].filter((column) =>
      !sealingColumns(db).has(column)
    );
    throw new CryptoError(
      `sealing parameters of '${db.path}' (table oxide_sealing) are damaged: ${
        missing.length > 0 ? `column(s) ${missing.map((c) => `'${c}'`).join(", ")} missing` : error.message
      }`,
      { cause: error },
    );
  }
}

/**
 * Drops old page images (old ciphertexts, old wrapped keys, plain values) from
 * the WAL. Best effort: it works only when no other connection is reading.
 *
 * @returns Whether the WAL was truncated.
 */
function truncateWal(db: Engine): boolean {
  if (db.path === ":memory:") return true;
  try {
    // Its row says whether the checkpoint was blocked: busy = 1 when another connection is reading.
    const row = db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
    return row?.busy === 0;
  } catch {
    return false; // Locked: the WAL is reset by a later checkpoint.
  }
}
