/**
 * `StateRegistry`: oxide-k's Global State Registry. Module metadata and
 * system-wide configuration in one SQLite database.
 *
 * @module
 */
import {
  CompactedError,
  ConfigNotFoundError,
  ConflictError,
  CryptoError,
  KernelError,
  KeyRequiredError,
  OtherError,
  RegistryError,
  SerializationError,
  UnknownModuleError,
} from "../errors.ts";
import { encodeJson } from "../json.ts";
import { checkValueSize } from "../limits.ts";
import { checkText } from "../_text.ts";
import type { ModuleMetadata, ModuleRecord, ModuleState } from "../module.ts";
import { checkRegistryShape, migrateRegistry, recordedVersion } from "../schema.ts";
import { repairRevisionSchema } from "../store/sqlite/_revision_repair.ts";
import type { Engine, EngineName } from "../sqlite/engine.ts";
import { closedError } from "../sqlite/ffi.ts";
import { MEMORY_PATH, openEngine, type OpenEngineOptions } from "../sqlite/open.ts";
import { nowTimestamp, parseTimestamp } from "../time.ts";
import type {
  Awaitable,
  Compare,
  Entry,
  Operation,
  RangeRequest,
  RangeResult,
  Store,
  TxnRequest,
  TxnResult,
} from "../store/store.ts";
import { SqliteStore } from "../store/sqlite/store.ts";
import { bindStore } from "./_store_of.ts";
import { type EtcdOptions, isEtcdAddress } from "../store/etcd/address.ts";
import { keyFromEnv, type RegistryKey } from "../sealing/key.ts";
import {
  openSealing,
  type RekeyOptions,
  type ResealOptions,
  sealedScheme,
  type Sealing,
  type SealingInfo,
  type SealingOptions,
} from "../sealing/sealing.ts";
import { describe } from "../_describe.ts";
import { moduleRecordOf, parseConfig, parsePlainConfig, storedText } from "./_records.ts";
import { checkOptions, checkState } from "./_validate.ts";
import {
  checkCount,
  checkOptionNames,
  type ConfigEntry,
  decodeCursor,
  DEFAULT_UPDATE_TRIES,
  encodeCursor,
  ifVersionOf,
  type ListConfigOptions,
  type Page,
  pause,
  type SkippedRow,
  toPage,
  type UpdateOptions,
  type WriteOptions,
} from "./entries.ts";
import {
  Batch,
  type BatchCheck,
  batchFailure,
  batchRequest,
  type BatchResult,
  type BatchWrite,
  moduleFields,
} from "./batch.ts";
import { backupDatabase, type BackupOptions, type BackupResult } from "../ops/backup.ts";
import { verifyRegistry, type VerifyReport } from "../ops/verify.ts";
import {
  type ExportOptions,
  exportRegistry,
  type ImportOptions,
  importRegistry,
  type ImportResult,
  type RegistryExport,
  type TransferTarget,
} from "../ops/export.ts";
import { DecisionLog } from "../ext/decision_log.ts";
import { checkAdoptOption, checkNoFileModes, checkRegistryFile } from "./_open_checks.ts";
import { checkDenoVersion } from "../_deno_version.ts";
import { type InferSchemaOutput, readWithSchema, type StandardSchemaV1 } from "../typed_config.ts";
import { retentionOf, type RetentionOptions } from "../store/sqlite/history.ts";
import { isSealedText, type ValueDecoder } from "./_decode.ts";
import { type ConfigHistoryOptions, type ConfigVersion, decodeHistory } from "./history.ts";
import { RegistryWatch, type WatchIterator, type WatchOptions } from "./watch.ts";

/**
 * Options for {@linkcode StateRegistry.inMemory} and {@linkcode StateRegistry.connect}.
 *
 * @example
 * ```ts
 * import { type RegistryOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: RegistryOptions = { engine: "node", busyTimeoutMs: 1000 };
 * await using reg = await StateRegistry.inMemory(options);
 * assert.equal(reg.engine, "node");
 * assert.equal(reg.db.prepare("PRAGMA busy_timeout").get()?.timeout, 1000);
 * ```
 */
export interface RegistryOptions extends OpenEngineOptions {
  /**
   * Let the registry add its tables to a database that holds other tables but
   * none of the registry's (without it, such a file is refused: a mistyped
   * path must not turn another application's database into a registry).
   * Default `false`.
   */
  adopt?: boolean | undefined;
  /**
   * Fleet mode: how to reach the etcd cluster when the path is an `etcd://` address (endpoints, namespace, TLS,
   * user and password, deadlines, compaction). See docs/fleet.md.
   */
  etcd?: EtcdOptions | undefined;
  /** How much history and change feed the file keeps (see {@linkcode RetentionOptions}). */
  retention?: RetentionOptions | undefined;
}

/**
 * Options for {@linkcode StateRegistry.openEncrypted}: the engine settings plus the sealing scheme.
 *
 * @example
 * ```ts
 * import { type EncryptedRegistryOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: EncryptedRegistryOptions = { engine: "node", scheme: "oxide-k" };
 * await using reg = await StateRegistry.openEncrypted(":memory:", "correct horse battery staple", options);
 * assert.equal(reg.engine, "node");
 * assert.equal(reg.sealing?.scheme, "oxide-k");
 * ```
 */
export interface EncryptedRegistryOptions extends RegistryOptions, SealingOptions {}

/**
 * Options for {@linkcode StateRegistry.listModules}.
 *
 * @example Skipping a row another program wrote
 * ```ts
 * import { type ListModulesOptions, SerializationError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
 * // A row another program wrote, with a kind this package does not know.
 * reg.db.prepare("INSERT INTO modules (id, name, version, kind, state, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
 *   .run("py", "Py", "1.0", "python", "loaded", "2026-01-01T00:00:00+00:00");
 * await assert.rejects(reg.listModules(), SerializationError);
 * const options: ListModulesOptions = { invalid: "skip" };
 * assert.deepEqual((await reg.listModules(options)).map((m) => m.id), ["echo"]);
 * ```
 */
export interface ListModulesOptions {
  /** Only modules whose id starts with this. */
  prefix?: string | undefined;
  /** At most this many records per page (a positive integer); absent: all. */
  limit?: number | undefined;
  /** The `cursor` of the previous page: the next page, read at the same revision. Pass the same prefix. */
  cursor?: string | undefined;
  /**
   * What to do with a row that cannot be read (written by another program
   * with an unknown kind, bad JSON, a bad timestamp): `"throw"` (default)
   * fails with an error naming every such row; `"skip"` leaves them out and lists them in the page's `skipped`.
   */
  invalid?: "throw" | "skip" | undefined;
}

/**
 * The kernel's persistent registry of module metadata and configuration.
 *
 * Every method that touches storage is async, as in oxide-k, so that sealed
 * registries (which use WebCrypto) share one API with plain ones.
 *
 * @example Register a module and read configuration
 * ```ts
 * import { StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
 * await reg.setModuleState("echo", "running");
 * assert.equal((await reg.getModule("echo"))?.state, "running");
 *
 * await reg.setConfig("kernel.greeting", "Hello, agent.");
 * assert.equal(await reg.getConfig<string>("kernel.greeting"), "Hello, agent.");
 * ```
 */
export class StateRegistry implements AsyncDisposable, Disposable {
  /** Where the values live: every read and write of the API goes through it. */
  readonly #store: Store;
  /** The SQLite connection (`reg.db`, sealing, extensions, backup); `undefined` on a store of another backend. */
  readonly #db: Engine | undefined;
  /** Set by `openEncrypted`: seals and opens config values. */
  #sealing: Sealing | undefined;
  /** A keyless handle's config writes compare this: "the registry is not sealed" (none on a private memory db). */
  readonly #plainGuard: readonly Compare[];
  /** Set by `[Symbol.dispose]`: calls in flight fail (a sealed read must not return plaintext after it). */
  #disposed = false;
  /**
   * A keyless handle on a file: the scheme the registry is sealed with (its `oxide_sealing` table, or values a Rust
   * kernel sealed, with no table), `null` when plain, `undefined` until the first write looks (see
   * `#sealedForKeylessWrite`), so that `connect()` costs the same whatever the number of keys.
   */
  #sealedScheme: string | null | undefined = null;
  /** Set by `close()`: new calls are refused while the calls in flight finish. */
  #closing = false;
  /** Calls started and not yet settled. */
  #inFlight = 0;
  /** Resolved when the last call in flight settles after `close()` began. */
  #idle: PromiseWithResolvers<void> | undefined;
  /** How many versions of a config key history keeps (`retention.historyVersions`). */
  #historyVersions = 10;

  private constructor(store: Store, db: Engine | undefined) {
    this.#store = store;
    bindStore(this, store);
    this.#db = db;
    // A private in-memory database cannot be sealed by anyone else: it needs no guard.
    this.#plainGuard = db?.path === MEMORY_PATH ? NO_COMPARES : NOT_SEALED;
  }

  /**
   * Opens a new registry in memory, private to this handle. Suitable for
   * tests and development.
   *
   * @param options Engine choice and connection settings.
   * @returns An open, empty registry.
   * @throws {RegistryError} when no engine can be opened (e.g. `engine: "ffi"` without `--allow-ffi`).
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * assert.deepEqual(await reg.listModules(), []);
   * ```
   */
  static inMemory(options: RegistryOptions = {}): Promise<StateRegistry> {
    return StateRegistry.#open(MEMORY_PATH, options);
  }

  /**
   * Opens the registry file at `path`, creating it (and oxide-k's tables) if
   * missing. The file can be shared with other processes and with a Rust
   * oxide-k kernel.
   *
   * @param path File path. The folder must exist.
   * @param options Engine choice and connection settings.
   * @returns The open registry.
   * @throws {TypeError} when `path` is not a non-empty string.
   * @throws {RegistryError} naming the path when it cannot be opened, is not a SQLite database, is read-only, holds
   * `modules`/`config` tables of another shape or without their primary keys, holds another application's tables and
   * none of the registry's (unless `adopt`), or (with `create: false` or `readonly`) does not exist or is not a registry.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * {
   *   await using reg = await StateRegistry.connect(`${dir}/registry.db`);
   *   await reg.setConfig("max_threads", 8);
   * }
   * await using again = await StateRegistry.connect(`${dir}/registry.db`);
   * assert.equal(await again.getConfig("max_threads"), 8);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static connect(
    path: string,
    options: RegistryOptions = {},
  ): Promise<StateRegistry> {
    if (typeof path !== "string" || path === "" || path === MEMORY_PATH) {
      return Promise.reject(
        new TypeError(`connect() needs a file path, got ${describe(path)}`),
      );
    }
    return StateRegistry.#open(path, options).then((registry) => {
      // On etcd nothing is sealed yet: openEncrypted refuses etcd addresses until sealing runs over the store.
      if (registry.#db === undefined) return registry;
      registry.#sealedScheme = undefined; // Looked up by the first write.
      return registry;
    });
  }

  /**
   * Opens or creates a registry whose config values are sealed with
   * AES-256-GCM (module metadata stays plain). Sealing is transparent: the
   * config API is unchanged.
   *
   * The scheme: `"envelope"` for a new registry (a random data key wrapped by
   * a key derived from `key`; each value bound to its config key), or
   * `"oxide-k"` when the registry already holds oxide-k sealed values or
   * `options.scheme` asks for it (readable by a Rust oxide-k kernel given the
   * same passphrase). A wrong key fails here, before anything is read or
   * written (oxide-k scheme: once the registry holds a value to check it
   * against). An envelope registry refuses oxide-k values it meets (not bound
   * to their config key); only `convertToEnvelope` reads them.
   *
   * @param path File path (the folder must exist), or `":memory:"`.
   * @param key A passphrase, 32 raw key bytes, or an AES-GCM 256-bit `CryptoKey`
   * (usages `wrapKey`/`unwrapKey` for the envelope scheme, `encrypt`/`decrypt` for oxide-k).
   * @param options Engine settings, `scheme`, and PBKDF2 `iterations` for a new passphrase registry.
   * @returns The open registry.
   * @throws {TypeError} when `path` or `key` has the wrong shape.
   * @throws {RangeError} when raw key bytes are not 32 bytes, or `iterations` is outside 600,000 to 10,000,000.
   * @throws {WrongKeyError} when the key does not open the registry.
   * @throws {CryptoError} when `options.scheme` differs from the scheme the registry uses.
   * @throws {RegistryError} when the file cannot be opened.
   *
   * @example Sealed configuration, transparent to the config API
   * ```ts
   * import { KeyRequiredError, StateRegistry, WrongKeyError } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * const path = `${dir}/registry.db`;
   * {
   *   await using reg = await StateRegistry.openEncrypted(path, "correct horse battery staple");
   *   await reg.setConfig("api_token", "my-super-secret-token");
   *   assert.equal(reg.sealing?.scheme, "envelope");
   * }
   * await using again = await StateRegistry.openEncrypted(path, "correct horse battery staple");
   * assert.equal(await again.getConfig("api_token"), "my-super-secret-token");
   * await assert.rejects(StateRegistry.openEncrypted(path, "wrong passphrase"), WrongKeyError);
   * await using plain = await StateRegistry.connect(path);
   * await assert.rejects(plain.getConfig("api_token"), KeyRequiredError);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async openEncrypted(
    path: string,
    key: RegistryKey,
    options: EncryptedRegistryOptions = {},
  ): Promise<StateRegistry> {
    if (typeof path !== "string" || path === "") {
      throw new TypeError(`openEncrypted() needs a file path or ":memory:", got ${describe(path)}`);
    }
    const registry = await StateRegistry.#open(path, options);
    try {
      const db = registry.#db;
      // SQLite: freed pages (old ciphertexts, old wrapped keys) are zeroed, and the WAL's old page images dropped
      // after each re-sealing.
      db?.exec("PRAGMA secure_delete = ON");
      registry.#sealing = await openSealing(registry.#store, key, options, {
        afterReseal: db === undefined ? undefined : () => void truncateWal(db),
      });
    } catch (error) {
      await registry.#store.close();
      registry.#db?.close();
      throw error;
    }
    return registry;
  }

  /**
   * Reads the registry key from the `OXIDE_REGISTRY_KEY` environment variable
   * (oxide-k's `key_from_env`), for {@linkcode StateRegistry.openEncrypted}.
   *
   * @returns The variable's value, used as a passphrase.
   * @throws {OtherError} when the variable is unset or empty, or environment access is not permitted (the message
   * names `--allow-env=OXIDE_REGISTRY_KEY`).
   *
   * @example
   * ```ts
   * import { OtherError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * if (!Deno.env.has("OXIDE_REGISTRY_KEY")) {
   *   assert.throws(() => StateRegistry.keyFromEnv(), OtherError);
   * }
   * ```
   */
  static keyFromEnv(): string {
    return keyFromEnv();
  }

  static #open(path: string, options: RegistryOptions): Promise<StateRegistry> {
    if (typeof path === "string" && isEtcdAddress(path)) {
      let historyVersions: number;
      try {
        checkDenoVersion();
        checkOptions(options);
        checkAdoptOption(options);
        checkNoFileModes(path, options);
        historyVersions = retentionOf(options.retention).historyVersions; // The rest of retention is SQLite's.
      } catch (error) {
        return Promise.reject(error);
      }
      // The etcd client is loaded for fleet mode only: a registry on a file never imports it.
      return import("../store/etcd/store.ts").then(({ EtcdStore }) => EtcdStore.open(path, options.etcd ?? {})).then((
        store,
      ) => {
        const registry = new StateRegistry(store, undefined);
        registry.#historyVersions = historyVersions;
        return registry;
      });
    }
    try {
      checkDenoVersion();
      checkOptions(options);
      checkAdoptOption(options);
      retentionOf(options.retention); // Checked before anything is opened.
      const db = openEngine(path, options, (engine) => {
        checkRegistryShape(engine);
        checkRegistryFile(engine, options);
      });
      try {
        if (options.readonly !== true) migrateRegistry(db, { shapeChecked: true }); // Checked inside the open.
        repairRevisionSchema(db, recordedVersion(db, "registry"), options.readonly === true);
        const registry = new StateRegistry(new SqliteStore(db, { retention: options.retention }), db);
        registry.#historyVersions = retentionOf(options.retention).historyVersions;
        return Promise.resolve(registry);
      } catch (error) {
        db.close();
        throw error instanceof RegistryError && !error.message.includes(path) &&
            path !== MEMORY_PATH
          ? new RegistryError(
            `cannot open '${path}': ${error.message.replace(/^registry error: /, "")}`,
            {
              path,
              cause: error,
              ...(error.code === undefined ? {} : { code: error.code }),
            },
          )
          : error;
      }
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The database connection, for in-kernel extensions that keep their own
   * tables beside the registry's (oxide-k's `pool()`). Never alter the
   * `modules` or `config` table, or any `oxide_*` table (`oxide_migrations`,
   * `oxide_sealing`), through it.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * reg.db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
   * reg.db.prepare("INSERT INTO notes (body) VALUES (?)").run("hi");
   * assert.equal(reg.db.prepare("SELECT count(*) AS n FROM notes").get()?.n, 1);
   * ```
   */
  get db(): Engine {
    if (this.#db === undefined) {
      throw new RegistryError(`reg.db is SQLite-only: this registry is stored on ${this.#store.backend}`);
    }
    return this.#db;
  }

  /**
   * Which engine is in use: `"ffi"` or `"node"`.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory({ engine: "node" });
   * assert.equal(reg.engine, "node");
   * ```
   */
  get engine(): EngineName {
    return this.db.name;
  }

  /**
   * The database path, or `":memory:"`.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * assert.equal(reg.path, ":memory:");
   * ```
   */
  get path(): string {
    return this.location;
  }

  /**
   * `false` once the registry is closed.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const reg = await StateRegistry.inMemory();
   * await reg.close();
   * assert.equal(reg.isOpen, false);
   * ```
   */
  get isOpen(): boolean {
    return !this.#closing && (this.#db?.isOpen ?? true);
  }

  // ---------------------------------------------------------------------------
  // Module metadata
  // ---------------------------------------------------------------------------

  /**
   * Inserts or updates a module's metadata and state.
   *
   * @param metadata The module's id, name, version, kind and optional description.
   * @param state Its lifecycle state.
   * @param options `ifVersion`: write only if the module's `recordVersion` is this (0: only if it does not exist).
   * @throws {TypeError} when a field is not a string.
   * @throws {SerializationError} when a field contains a NUL character or a lone surrogate.
   * @throws {SerializationError} for an unknown kind or state; nothing is written.
   * @throws {ConflictError} when `ifVersion` does not match; nothing is written.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const meta = { id: "mirror", name: "Mirror", version: "0.1.0", kind: "wasm" } as const;
   * await reg.upsertModule(meta, "loaded");
   * await reg.upsertModule(meta, "running", { ifVersion: 1 });
   * assert.equal((await reg.getModule("mirror"))?.state, "running");
   * assert.equal((await reg.getModule("mirror"))?.recordVersion, 2);
   * ```
   */
  upsertModule(metadata: ModuleMetadata, state: ModuleState, options?: WriteOptions): Promise<void> {
    try {
      this.#checkOpen();
      const fields = moduleFields(metadata, state);
      const ifVersion = ifVersionOf("upsertModule()", options);
      const id = metadata.id;
      return this.#write(
        "modules",
        id,
        ifVersion,
        { op: "put", space: "modules", key: id, value: fields },
        () => RESOLVED,
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Updates only a module's state (and its `updated_at`).
   *
   * @param id The module id.
   * @param state The new state.
   * @param options `ifVersion`: write only if the module's `recordVersion` is this.
   * @throws {UnknownModuleError} when no module has this id.
   * @throws {SerializationError} for an unknown state.
   * @throws {ConflictError} when `ifVersion` does not match; nothing is written.
   *
   * @example
   * ```ts
   * import { StateRegistry, UnknownModuleError } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.upsertModule({ id: "compress", name: "Compress", version: "1.0.0", kind: "native" }, "loaded");
   * await reg.setModuleState("compress", "stopped");
   * assert.equal((await reg.getModule("compress"))?.state, "stopped");
   * await assert.rejects(reg.setModuleState("missing", "running"), UnknownModuleError);
   * ```
   */
  setModuleState(id: string, state: ModuleState, options?: WriteOptions): Promise<void> {
    try {
      this.#checkOpen();
      const key = checkText("module id", id);
      const stateText = checkState(state);
      const ifVersion = ifVersionOf("setModuleState()", options);
      return this.#write("modules", key, ifVersion, { op: "setState", space: "modules", key, state: stateText }, (
        changed,
      ) => changed ? RESOLVED : Promise.reject(new UnknownModuleError(key)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Deletes a module's record.
   *
   * @param id The module id.
   * @param options `ifVersion`: delete only if the module's `recordVersion` is this.
   * @returns Whether a module was removed.
   * @throws {ConflictError} when `ifVersion` does not match; nothing is deleted.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "stopped");
   * assert.equal(await reg.deleteModule("echo"), true);
   * assert.equal(await reg.deleteModule("echo"), false);
   * assert.equal(await reg.getModule("echo"), undefined);
   * ```
   */
  deleteModule(id: string, options?: WriteOptions): Promise<boolean> {
    try {
      this.#checkOpen();
      const key = checkText("module id", id);
      const ifVersion = ifVersionOf("deleteModule()", options);
      return this.#write(
        "modules",
        key,
        ifVersion,
        { op: "delete", space: "modules", key },
        (changed) => Promise.resolve(changed),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Fetches one module's record.
   *
   * @param id The module id.
   * @returns The record, or `undefined` when no module has this id.
   * @throws {SerializationError} or {@linkcode OtherError} (`invalid updated_at: ...`) when the stored row is not
   * one oxide-k could read; the message names the row.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * assert.equal(await reg.getModule("nobody"), undefined);
   * ```
   */
  getModule(id: string): Promise<ModuleRecord | undefined> {
    try {
      this.#checkOpen();
      return settle(
        this.#store.get("modules", checkText("module id", id)),
        (entry) => entry === undefined ? undefined : moduleRecord(entry),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Lists modules, ordered by id: every module (no options, as oxide-k), or
   * those whose id starts with `prefix`, in pages of `limit` read at one
   * revision (pass the page's `cursor` for the next one).
   *
   * @param options `prefix`, `limit`, `cursor`; `invalid`: what to do with rows that cannot be read (default
   * `"throw"`).
   * @returns The records: a {@linkcode Page} (an array with `cursor` and `revision`).
   * @throws {SerializationError} when a row cannot be read and `invalid` is `"throw"`; the message names every
   * such row.
   * @throws {CompactedError} when the cursor's revision was compacted away.
   * @throws {RegistryError} when the cursor is not a cursor.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * for (const id of ["b", "a", "net.dns", "net.dhcp"]) {
   *   await reg.upsertModule({ id, name: id, version: "1", kind: "native" }, "loaded");
   * }
   * assert.deepEqual((await reg.listModules()).map((m) => m.id), ["a", "b", "net.dhcp", "net.dns"]);
   * const page = await reg.listModules({ prefix: "net.", limit: 1 });
   * assert.deepEqual(page.map((m) => m.id), ["net.dhcp"]);
   * const next = await reg.listModules({ prefix: "net.", limit: 1, cursor: page.cursor });
   * assert.deepEqual(next.map((m) => m.id), ["net.dns"]);
   * ```
   */
  listModules(options: ListModulesOptions = {}): Promise<Page<ModuleRecord>> {
    try {
      this.#checkOpen();
      checkOptions(options);
      const invalid = options.invalid ?? "throw";
      if (invalid !== "throw" && invalid !== "skip") {
        throw new TypeError(
          `invalid must be "throw" or "skip", got ${describe(invalid)}`,
        );
      }
      const request = rangeRequest("modules", options);
      return settle(this.#store.range(request), (result) => {
        const records: ModuleRecord[] = [];
        const failures: Error[] = [];
        const skipped: SkippedRow[] = [];
        for (const entry of result.entries) {
          try {
            records.push(moduleRecord(entry));
          } catch (error) {
            failures.push(error as Error);
            skipped.push({ key: entry.key, error: error as Error, updatedAt: skippedTime(entry.updatedAt) });
          }
        }
        if (failures.length > 0 && invalid === "throw") {
          throw new SerializationError(
            `${failures.length} module row(s) cannot be read (list them with { invalid: "skip" } to get the rest): ${
              failures.map((error) => error.message).join("; ")
            }`,
            { cause: failures[0] },
          );
        }
        return pageOf(records, result, request, invalid === "skip" ? skipped : undefined);
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // ---------------------------------------------------------------------------
  // Configuration
  // ---------------------------------------------------------------------------

  /**
   * Stores a configuration value as compact JSON, replacing any previous one.
   *
   * @param key The configuration key.
   * @param value Any value JSON carries faithfully.
   * @param options `ifVersion`: write only if the key is at this version (0: only if it does not exist).
   * @throws {TypeError} when `key` is not a string.
   * @throws {SerializationError} when `value` has no faithful JSON form (`undefined`, NaN, a cycle, a Date, ...), or
   * its JSON is larger than `MAX_CONFIG_VALUE_BYTES` (64 MiB); nothing is written.
   * @throws {KeyRequiredError} when the registry was opened without a key and is sealed (by `openEncrypted` in any
   * process, or by a Rust kernel): the value would be stored in plain text; nothing is written.
   * @throws {ConflictError} when `ifVersion` does not match; nothing is written.
   * @throws {RegistryError} when a sealed registry is written inside `reg.db.transaction()` (sealing is
   * asynchronous: the write would land after the transaction); use {@linkcode StateRegistry.batch}.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.setConfig("endpoint", { url: "https://example.com", retries: 3 });
   * assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://example.com", retries: 3 });
   * ```
   */
  setConfig(key: string, value: unknown, options?: WriteOptions): Promise<void> {
    // Sealed: async (WebCrypto), written in a transaction that checks the keys did not change meanwhile.
    if (this.#sealing !== undefined) return this.#setSealed(this.#sealing, key, value, options);
    try {
      this.#checkOpen();
      checkText("config key", key);
      const ifVersion = options === undefined ? undefined : ifVersionOf("setConfig()", options);
      // A keyless write into a sealed registry would store the value in plain text.
      const sealed = this.#sealedForKeylessWrite();
      if (sealed !== undefined) throw new KeyRequiredError(key, sealed, "write");
      const put: Operation = { op: "put", space: "config", key, value: checkValueSize(key, encodeJson(value)) };
      if (ifVersion === undefined) {
        const result = this.#store.txn({
          compares: this.#plainGuard,
          success: [put],
          updatedAt: nowTimestamp(),
          wantRevision: false,
        });
        if (result instanceof Promise) return result.then((r) => this.#checkPlainWrite(key, r));
        this.#checkPlainWrite(key, result);
        return RESOLVED;
      }
      return this.#write("config", key, ifVersion, put, () => RESOLVED, this.#plainGuard);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Reads a configuration value. Without a schema, the type parameter is not checked at run time; with one (any
   * Standard Schema v1 validator: zod, valibot, arktype, or hand-written), the value is validated and the schema's
   * output returned.
   *
   * @param key The configuration key.
   * @param schema Optional: a {@linkcode StandardSchemaV1} validator for the value.
   * @returns The stored value (with a schema: the schema's output).
   * @throws {ConfigNotFoundError} when the key does not exist.
   * @throws {SerializationError} when the stored text is not JSON (written by another program).
   * @throws {ConfigSchemaError} when the value does not match `schema`, naming the key and the path inside the value.
   *
   * @example
   * ```ts
   * import { ConfigNotFoundError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.setConfig("max_threads", 16);
   * assert.equal(await reg.getConfig<number>("max_threads"), 16);
   * await assert.rejects(reg.getConfig("missing"), ConfigNotFoundError);
   * ```
   */
  getConfig<T = unknown>(key: string): Promise<T>;
  /** Reads a configuration value and validates it with `schema`; see the overload above. */
  getConfig<S extends StandardSchemaV1>(key: string, schema: S): Promise<InferSchemaOutput<S>>;
  getConfig(key: string, schema?: StandardSchemaV1): Promise<unknown> {
    const read = this.#readConfig(key, true);
    return schema === undefined ? read : readWithSchema(key, read, schema, this.#sealing !== undefined);
  }

  /**
   * Reads a configuration value, or `undefined` when the key does not exist; with a schema, a value that exists is
   * validated as in {@linkcode StateRegistry.getConfig}.
   *
   * @param key The configuration key.
   * @param schema Optional: a {@linkcode StandardSchemaV1} validator for the value.
   * @returns The stored value (with a schema: the schema's output), or `undefined`.
   * @throws {SerializationError} when the stored text is not JSON.
   * @throws {ConfigSchemaError} when the value does not match `schema`.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * assert.equal(await reg.tryGetConfig("missing"), undefined);
   * ```
   */
  tryGetConfig<T = unknown>(key: string): Promise<T | undefined>;
  /** Reads a configuration value, if any, and validates it with `schema`; see the overload above. */
  tryGetConfig<S extends StandardSchemaV1>(key: string, schema: S): Promise<InferSchemaOutput<S> | undefined>;
  tryGetConfig(key: string, schema?: StandardSchemaV1): Promise<unknown> {
    const read = this.#readConfig(key, false);
    return schema === undefined ? read : readWithSchema(key, read, schema, this.#sealing !== undefined);
  }

  /**
   * Reads a configuration value with its version, revisions and `updatedAt`.
   *
   * @param key The configuration key.
   * @returns The entry, or `undefined` when the key does not exist.
   * @throws {SerializationError} when the stored text is not JSON.
   * @throws {KeyRequiredError} when the value is sealed and the registry was opened without a key.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * assert.equal(await reg.getConfigEntry("missing"), undefined);
   * await reg.setConfig("greeting", "hi");
   * const entry = await reg.getConfigEntry<string>("greeting");
   * assert.equal(entry?.value, "hi");
   * assert.equal(entry?.version, 1);
   * ```
   */
  getConfigEntry<T = unknown>(key: string): Promise<ConfigEntry<T> | undefined> {
    try {
      this.#checkOpen();
      checkText("config key", key);
      return settle(this.#store.get("config", key), (entry) => entry === undefined ? undefined : this.#decode<T>(entry))
        .then((entry) => entry);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Lists config entries ordered by key (or the reverse), optionally those
   * starting with `prefix`, in pages of `limit` read at one revision (pass the
   * page's `cursor` for the next one).
   *
   * @param options `prefix`, `limit`, `cursor`, `reverse`; `invalid`: what to do with values that cannot be read
   * (default `"throw"`; `"skip"` leaves them out and lists them in the page's `skipped`).
   * @returns The entries: a {@linkcode Page} (an array with `cursor` and `revision`).
   * @throws {SerializationError} when a stored value is not JSON (and `invalid` is `"throw"`).
   * @throws {KeyRequiredError} when a value is sealed and the registry was opened without a key (and `invalid` is
   * `"throw"`).
   * @throws {CompactedError} when the cursor's revision was compacted away.
   * @throws {RegistryError} when the cursor is not a cursor.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * for (const [key, value] of [["kernel.a", 1], ["kernel.b", 2], ["net.c", 3]] as const) {
   *   await reg.setConfig(key, value);
   * }
   * const kernel = await reg.listConfig({ prefix: "kernel." });
   * assert.deepEqual(kernel.map((e) => [e.key, e.value]), [["kernel.a", 1], ["kernel.b", 2]]);
   * const last = await reg.listConfig({ reverse: true, limit: 1 });
   * assert.deepEqual(last.map((e) => e.key), ["net.c"]);
   * ```
   */
  listConfig<T = unknown>(options: ListConfigOptions = {}): Promise<Page<ConfigEntry<T>>> {
    try {
      this.#checkOpen();
      checkOptions(options);
      const invalid = options.invalid ?? "throw";
      if (invalid !== "throw" && invalid !== "skip") {
        throw new TypeError(`invalid must be "throw" or "skip", got ${describe(invalid)}`);
      }
      const request = rangeRequest("config", options);
      return settle(this.#store.range(request), async (result) => {
        const entries: ConfigEntry<T>[] = [];
        if (invalid === "throw") {
          for (const entry of result.entries) entries.push(await this.#decode<T>(entry));
          return pageOf(entries, result, request);
        }
        const skipped: SkippedRow[] = [];
        for (const entry of result.entries) {
          try {
            entries.push(await this.#decode<T>(entry));
          } catch (error) {
            // Closed meanwhile: that is no bad row.
            if (!(error instanceof KernelError) || this.#disposed) throw error;
            skipped.push({ key: entry.key, error, updatedAt: skippedTime(entry.updatedAt) });
          }
        }
        return pageOf(entries, result, request, skipped);
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Deletes a configuration value.
   *
   * @param key The configuration key.
   * @param options `ifVersion`: delete only if the key is at this version.
   * @returns Whether a value was removed.
   * @throws {ConflictError} when `ifVersion` does not match; nothing is deleted.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.setConfig("key", "value");
   * assert.equal(await reg.deleteConfig("key"), true);
   * assert.equal(await reg.deleteConfig("key"), false);
   * ```
   */
  deleteConfig(key: string, options?: WriteOptions): Promise<boolean> {
    try {
      this.#checkOpen();
      checkText("config key", key);
      const ifVersion = ifVersionOf("deleteConfig()", options);
      return this.#write(
        "config",
        key,
        ifVersion,
        { op: "delete", space: "config", key },
        (changed) => Promise.resolve(changed),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Read-modify-write without lost updates (Kubernetes' `GuaranteedUpdate`):
   * reads the key, calls `fn` with its value, writes the result only if the
   * key is still at the version read, and on a conflict reads again and
   * retries, up to `tries` times (with a short random pause between tries).
   *
   * @param key The configuration key.
   * @param fn Gets the current value (`undefined` when missing) and entry; returns the new value, or `undefined`
   * to write nothing. May be async; may run more than once.
   * @param options `tries` (default 16).
   * @returns The entry written (or the current one when `fn` returned `undefined`).
   * @throws {ConflictError} when every try met a concurrent write.
   * @throws {SerializationError} when the value `fn` returns has no faithful JSON form.
   *
   * @example A counter that several processes increment
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await Promise.all(Array.from({ length: 5 }, () => reg.update<number>("hits", (n) => (n ?? 0) + 1)));
   * assert.equal(await reg.getConfig("hits"), 5);
   * ```
   */
  async update<T = unknown>(
    key: string,
    fn: (current: T | undefined, entry: ConfigEntry<T> | undefined) => T | undefined | Promise<T | undefined>,
    options: UpdateOptions = {},
  ): Promise<ConfigEntry<T> | undefined> {
    checkOptions(options);
    checkOptionNames("update()", options, ["tries"]);
    if (typeof fn !== "function") throw new TypeError(`update() needs a function, got ${describe(fn)}`);
    const tries = options.tries === undefined ? DEFAULT_UPDATE_TRIES : checkCount("tries", options.tries, 1);
    let conflict: ConflictError | undefined;
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt > 0) await pause(attempt);
      const entry = await this.getConfigEntry<T>(key);
      const next = await fn(entry?.value, entry);
      if (next === undefined) return entry;
      const version = entry?.version ?? 0;
      try {
        const updatedAt = nowTimestamp();
        const revision = await this.#setConfigAt(key, next, version, updatedAt);
        return {
          key,
          value: next,
          version: version + 1,
          createRevision: entry?.createRevision ?? revision,
          modRevision: revision,
          updatedAt: parseTimestamp(updatedAt)!,
        };
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        conflict = error;
      }
    }
    throw new ConflictError("config", key, conflict!.expected, conflict!.actual, {
      cause: new RegistryError(`update() of config key '${key}' met a concurrent write on each of its ${tries} tries`),
    });
  }

  /**
   * Starts an atomic batch: checks plus config and module writes and deletes,
   * committed all or nothing as one revision (sealed values are sealed first,
   * then written in one synchronous transaction).
   *
   * @returns An empty batch; add to it and call `commit()`.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const { revision } = await reg.batch()
   *   .setConfig("a", 1)
   *   .setConfig("b", 2)
   *   .upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded")
   *   .commit();
   * assert.equal((await reg.getConfigEntry("a"))?.modRevision, revision);
   * assert.equal((await reg.getModule("echo"))?.modRevision, revision);
   * ```
   */
  batch(): Batch {
    return new Batch((checks, writes) => this.#commitBatch(checks, writes));
  }

  /**
   * Reads a config value; `required` decides between `ConfigNotFoundError` and `undefined`. A plain registry
   * answers synchronously (nothing to track for close()); a sealed one awaits WebCrypto as a call in flight.
   */
  #readConfig<T>(key: string, required: boolean): Promise<T | undefined> {
    try {
      this.#checkOpen();
      checkText("config key", key);
      const value = this.#store.getValue("config", key);
      if (value instanceof Promise) return value.then((v) => this.#parseStored<T>(key, v, required));
      return this.#parseStored<T>(key, value, required);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #parseStored<T>(key: string, value: string | undefined, required: boolean): Promise<T | undefined> {
    if (value === undefined) {
      if (required) throw new ConfigNotFoundError(key);
      return RESOLVED;
    }
    const stored = storedText(key, value);
    const sealing = this.#sealing;
    if (sealing !== undefined) {
      // A stored text this handle opened before answers at once, without decrypting or awaiting.
      const json = sealing.cached(key, stored);
      if (json !== undefined) return Promise.resolve(parseConfig<T>(key, json));
      return this.#openSealed<T>(sealing, key, stored);
    }
    return Promise.resolve(parsePlainConfig<T>(key, stored));
  }

  async #openSealed<T>(sealing: Sealing, key: string, stored: string): Promise<T> {
    using _call = this.#begin();
    const json = await sealing.open(key, stored);
    // Disposed with `using` meanwhile: calls in flight fail, so a read never outlives its handle.
    if (this.#disposed) throw closedError(this.location);
    return parseConfig<T>(key, json);
  }

  /** A config entry from the store: the value parsed (opened, when sealed). */
  async #decode<T>(entry: Entry<"config">): Promise<ConfigEntry<T>> {
    const stored = storedText(entry.key, entry.value);
    const value = this.#sealing !== undefined
      ? await this.#openSealed<T>(this.#sealing, entry.key, stored)
      : parsePlainConfig<T>(entry.key, stored);
    return {
      key: entry.key,
      value,
      version: entry.version,
      createRevision: entry.createRevision,
      modRevision: entry.modRevision,
      updatedAt: parseTimestamp(entry.updatedAt) ?? new Date(NaN),
    };
  }

  async #setSealed(sealing: Sealing, key: string, value: unknown, options: WriteOptions | undefined): Promise<void> {
    using _call = this.#begin();
    checkText("config key", key);
    const ifVersion = ifVersionOf("setConfig()", options);
    const json = checkValueSize(key, encodeJson(value));
    this.#refuseInTransaction("setConfig");
    if (ifVersion === undefined) return await sealing.write(key, json, nowTimestamp());
    const result = await sealing.writeMany([[key, json]], (stored, guard) => {
      const put: Operation = { op: "put", space: "config", key, value: stored.get(key)! };
      return this.#store.txn(txnOf("config", key, ifVersion, put, nowTimestamp(), [guard]));
    });
    this.#applySync(result, "config", key, ifVersion);
  }

  /** setConfig with `ifVersion`, for `update()`: the revision written. */
  async #setConfigAt(key: string, value: unknown, ifVersion: number, updatedAt: string): Promise<number> {
    const json = checkValueSize(key, encodeJson(value));
    if (this.#sealing !== undefined) {
      using _call = this.#begin();
      this.#refuseInTransaction("update");
      const result = await this.#sealing.writeMany([[key, json]], (stored, guard) => {
        const put: Operation = { op: "put", space: "config", key, value: stored.get(key)! };
        return this.#store.txn(txnOf("config", key, ifVersion, put, updatedAt, [guard]));
      });
      return this.#applySync(result, "config", key, ifVersion).revision;
    }
    this.#checkOpen();
    const sealed = this.#sealedForKeylessWrite();
    if (sealed !== undefined) throw new KeyRequiredError(key, sealed, "write");
    const put: Operation = { op: "put", space: "config", key, value: json };
    const result = await this.#store.txn(txnOf("config", key, ifVersion, put, updatedAt, this.#plainGuard));
    return this.#applySync(result, "config", key, ifVersion).revision;
  }

  /**
   * One write through the store, compare-and-set when `ifVersion` is given; `then` gets whether it changed a key.
   */
  #write<R>(
    space: "config" | "modules",
    key: string,
    ifVersion: number | undefined,
    operation: Operation,
    then: (changed: boolean) => Promise<R>,
    guard: readonly Compare[] = NO_COMPARES,
  ): Promise<R> {
    const result = this.#store.txn(txnOf(space, key, ifVersion, operation, nowTimestamp(), guard, false));
    if (result instanceof Promise) {
      return result.then((r) => then(this.#applySync(r, space, key, ifVersion).changed[0] ?? false));
    }
    return then(this.#applySync(result, space, key, ifVersion).changed[0] ?? false);
  }

  /** Turns a failed transaction into the error it means. */
  #applySync(result: TxnResult, space: "config" | "modules", key: string, ifVersion: number | undefined): TxnResult {
    if (result.succeeded) return result;
    const current = result.current ?? [];
    // The keyless guard comes last: the registry was sealed by another process.
    const guard = current.length > (ifVersion === undefined ? 0 : 1) ? current.at(-1) : undefined;
    if (guard !== undefined && guard.space === "meta") {
      throw new KeyRequiredError(
        key,
        this.#db === undefined ? schemeOf(guard) : sealedScheme(this.#db) ?? "unknown",
        "write",
      );
    }
    throw new ConflictError(space, key, ifVersion ?? 0, current[0]?.version ?? 0);
  }

  #checkPlainWrite(key: string, result: TxnResult): undefined {
    if (!result.succeeded) {
      throw new KeyRequiredError(
        key,
        this.#db === undefined ? schemeOf(result.current?.[0]) : sealedScheme(this.#db) ?? "unknown",
        "write",
      );
    }
    return undefined;
  }

  /** An async sealed write cannot join a synchronous `reg.db.transaction()`: it would commit after it. */
  #refuseInTransaction(operation: string): void {
    if (this.#db?.inTransaction) {
      throw new RegistryError(
        `${operation}() on a sealed registry inside reg.db.transaction(): sealing is asynchronous, so the value would be written after the transaction ended (and kept if it rolled back); write sealed values atomically with reg.batch()`,
        { path: this.#db.path },
      );
    }
  }

  async #commitBatch(checks: readonly BatchCheck[], writes: readonly BatchWrite[]): Promise<BatchResult> {
    using _call = this.#begin();
    const sealing = this.#sealing;
    const values = writes.flatMap((w) => w.kind === "setConfig" ? [{ key: w.key, json: w.json }] : []);
    const sealed = sealing === undefined && values.length > 0 ? this.#sealedForKeylessWrite() : undefined;
    if (sealed !== undefined) {
      throw new KeyRequiredError(values[0]!.key, sealed, "write");
    }
    const guard = sealing === undefined ? this.#plainGuard : NO_COMPARES;
    const scheme = () => this.#db === undefined ? "unknown" : sealedScheme(this.#db) ?? "unknown";
    const outcome = (result: TxnResult, meanings: Parameters<typeof batchFailure>[1]): BatchResult => {
      if (!result.succeeded) throw batchFailure(result.current ?? [], meanings, scheme);
      return { revision: result.revision };
    };
    if (sealing !== undefined && values.length > 0) {
      this.#refuseInTransaction("batch().commit");
      let meanings: Parameters<typeof batchFailure>[1] = [];
      const result = await sealing.writeMany(values.map((v) => [v.key, v.json] as const), (stored, sealed) => {
        const texts = values.map((v) => stored.get(v.key)!);
        const built = batchRequest(checks, writes, texts, nowTimestamp(), [sealed]);
        meanings = built.meanings;
        return this.#store.txn(built.request);
      });
      return outcome(result, meanings);
    }
    const { request, meanings } = batchRequest(checks, writes, values.map((v) => v.json), nowTimestamp(), guard);
    return outcome(await this.#store.txn(request), meanings);
  }

  /**
   * For a keyless handle on a file: the scheme its registry is sealed with, else `undefined`. The first call scans
   * the config table once (a Rust kernel seals values without an `oxide_sealing` table); later writes reuse the
   * answer, and the store's guard inside each write still sees a registry sealed afterwards.
   */
  #sealedForKeylessWrite(): string | undefined {
    if (this.#sealedScheme === undefined) {
      this.#sealedScheme = this.#db === undefined ? null : sealedScheme(this.#db) ?? null;
    }
    return this.#sealedScheme ?? undefined;
  }

  /** Throws the closed error once `close()` began; synchronous calls need nothing more (they cannot be in flight). */
  #checkOpen(): void {
    if (this.#closing) throw closedError(this.location);
  }

  // ---------------------------------------------------------------------------
  // Operations (src/ops/)
  // ---------------------------------------------------------------------------

  /**
   * Copies the registry into a new file at `dest` while other connections and
   * processes keep writing: one consistent snapshot (every write committed
   * before the call is in it; none that commits during it is half there),
   * through SQLite's online backup API on either engine. The copy is a
   * registry of its own: it opens with the same key and passes
   * {@linkcode StateRegistry.verify}. It is written beside `dest` first and
   * moved into place when complete, so a failure leaves nothing at `dest`.
   *
   * The ffi engine needs `--allow-read` and `--allow-write` for `dest`'s
   * folder, as for the database; the node engine the same, checked by Deno.
   *
   * @param dest The file to write. Its folder must exist.
   * @param options `overwrite` an existing file (default: refuse), `onProgress`, `pagesPerStep`.
   * @returns The path, page count and size of the copy.
   * @throws {TypeError} when `dest` is not a file path.
   * @throws {RegistryError} when `dest` exists (without `overwrite`) or is the registry itself, permission for it is
   * missing, or SQLite fails; the message names `dest`.
   *
   * @example
   * ```ts
   * import { RegistryError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * await using reg = await StateRegistry.connect(`${dir}/registry.db`);
   * await reg.setConfig("max_threads", 8);
   * await reg.backup(`${dir}/backup.db`);
   * await assert.rejects(reg.backup(`${dir}/backup.db`), RegistryError); // Exists: refused.
   * {
   *   await using copy = await StateRegistry.connect(`${dir}/backup.db`);
   *   assert.equal(await copy.getConfig("max_threads"), 8);
   * }
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  backup(dest: string, options: BackupOptions = {}): Promise<BackupResult> {
    return this.#track(() => backupDatabase(this.db, dest, options));
  }

  /**
   * Checks the registry end to end, writing nothing: SQLite's
   * `PRAGMA integrity_check`; the shape of the registry's own tables
   * (`modules`, `config`, `oxide_migrations`, and `oxide_sealing` and the
   * decision log's `xai_decisions` when present); that every module and config
   * row reads as oxide-k would read it; that every sealed value opens (when
   * the registry was opened with a key; otherwise they are counted in
   * `sealedUnchecked`); and that every decision row is well formed.
   *
   * @returns A report naming each bad row; `ok` when there is none.
   * @throws {RegistryError} when the database cannot be read at all.
   *
   * @example A row another program broke
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
   * assert.equal((await reg.verify()).ok, true);
   * reg.db.exec(`UPDATE modules SET kind = '"Native"' WHERE id = 'echo'`); // oxide-k cannot read it.
   * const report = await reg.verify();
   * assert.equal(report.ok, false);
   * assert.deepEqual(report.problems.map((p) => [p.table, p.row]), [["modules", "echo"]]);
   * ```
   */
  verify(): Promise<VerifyReport> {
    return this.#track(() =>
      verifyRegistry({
        db: this.db,
        keyed: this.#sealing !== undefined,
        getModule: (id) => this.getModule(id),
        getConfig: (key) => this.getConfig(key),
      })
    );
  }

  /**
   * Exports the registry as a JSON-ready document: every module, config value
   * and decision (the `xai_decisions` log), each module and config row with
   * its version and revisions, the store revision, and the change log (every
   * kept version of every key, deletes too; `history: false` leaves it out),
   * read in one transaction so it is one consistent state. Stored text is
   * kept exactly: config values as their JSON text, timestamps as written.
   * Sealed values stay sealed (with the sealing parameters, which hold no key
   * material: the data key is stored wrapped) unless `plaintext` is asked
   * for, which needs a registry opened with its key.
   *
   * @param options `plaintext`, `history`, `onProgress`.
   * @returns The document; `JSON.stringify` it to write it out.
   * @throws {CryptoError} when `plaintext` is asked for without a key and sealed values exist.
   * @throws {SerializationError} naming the row when a row cannot be read (`verify()` lists every one).
   *
   * @example Export, then import into a new registry
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using source = await StateRegistry.inMemory();
   * await source.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
   * await source.setConfig("endpoint", { url: "https://example.com", retries: 3 });
   * const text = JSON.stringify(await source.exportData());
   *
   * await using target = await StateRegistry.inMemory();
   * await target.importData(JSON.parse(text));
   * assert.equal((await target.getModule("echo"))?.state, "running");
   * assert.deepEqual(await target.getConfig("endpoint"), { url: "https://example.com", retries: 3 });
   * ```
   */
  exportData(options: ExportOptions = {}): Promise<RegistryExport> {
    return this.#track(() => exportRegistry(this.#transferTarget(), options));
  }

  /**
   * Imports a document made by {@linkcode StateRegistry.exportData}. The
   * whole document is checked first (every field of every row); then
   * everything is written in one transaction, or nothing. Modules and config
   * values with the same id or key are replaced, their stored timestamps
   * kept; decisions are added (one already logged with the same content is
   * skipped). Plain values are sealed when the registry is opened with a key;
   * sealed values are copied as they are into a registry sealed under the
   * same data key, or into a new (unsealed, empty) registry, which takes the
   * document's sealing: reopen it with `openEncrypted` and the same key.
   * Into a new, empty registry, with values stored as they are, the
   * document's change log is restored as it is: revisions, versions and
   * history come back exactly (`revisionsRestored`). Anywhere else each row
   * is written as a new change (`revisionsSkipped` says why).
   *
   * @param document The parsed JSON document.
   * @param options `onProgress`.
   * @returns How many modules, config values and decisions were written.
   * @throws {SerializationError} listing the problems when the document is not a valid export; nothing is written.
   * @throws {KeyRequiredError} when plain values would be written into a sealed registry opened without a key.
   * @throws {CryptoError} when sealed values cannot be copied here (another key, or config values already present).
   *
   * @example A bad document writes nothing
   * ```ts
   * import { SerializationError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const doc = await reg.exportData();
   * doc.config.push({ key: "ok", json: "1", updatedAt: doc.exportedAt });
   * doc.config.push({ key: "bad", json: "{not json", updatedAt: doc.exportedAt });
   * await assert.rejects(reg.importData(doc), SerializationError);
   * assert.equal(await reg.tryGetConfig("ok"), undefined);
   * ```
   */
  importData(document: unknown, options: ImportOptions = {}): Promise<ImportResult> {
    return this.#track(() => importRegistry(this.#transferTarget(), document, options));
  }

  #transferTarget(): TransferTarget {
    return { db: this.db, sealing: this.#sealing, openDecisionLog: () => DecisionLog.open(this) };
  }

  // ---------------------------------------------------------------------------
  // Sealing
  // ---------------------------------------------------------------------------

  /**
   * How config values are sealed, or `undefined` for a registry opened without
   * a key. Never exposes key material.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using plain = await StateRegistry.inMemory();
   * assert.equal(plain.sealing, undefined);
   * await using sealed = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32));
   * assert.equal(sealed.sealing?.scheme, "envelope");
   * assert.equal(sealed.sealing?.kdf, "raw");
   * ```
   */
  get sealing(): SealingInfo | undefined {
    return this.#sealing?.info;
  }

  /**
   * Changes the registry's key. Envelope scheme: re-wraps the data key under
   * the new key (values are not rewritten; a new random PBKDF2 salt for a
   * passphrase; `iterations` can be raised), one transaction. oxide-k scheme:
   * re-seals every value (history's too), resumable as
   * {@linkcode StateRegistry.rotateDataKey} is: a failure or a crash
   * part-way leaves every value readable with the old key, and running the
   * same rekey again from a handle opened with it finishes.
   *
   * Other processes that hold the registry open keep reading and writing
   * (envelope scheme: the data key did not change) but cannot rekey or rotate
   * until they reopen with the new key.
   *
   * @param newKey The new passphrase, 32 raw key bytes, or `CryptoKey`.
   * @param options `iterations` for a new passphrase; `onProgress(done, total)`, as for
   * {@linkcode StateRegistry.rotateDataKey} (envelope scheme: no value is rewritten, one call with `(0, 0)`).
   * @throws {CryptoError} when the registry was opened without a key.
   * @throws {WrongKeyError} when another process changed the key since this one opened it.
   * @throws {SealedValueError} (oxide-k scheme) when a stored value cannot be opened; nothing is written.
   * @throws {TypeError} for an unknown option name or an `onProgress` that is not a function.
   *
   * @example
   * ```ts
   * import { StateRegistry, WrongKeyError } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * const path = `${dir}/registry.db`;
   * {
   *   await using reg = await StateRegistry.openEncrypted(path, "old passphrase");
   *   await reg.setConfig("api_token", "s3cr3t");
   *   await reg.rekey("new passphrase");
   * }
   * await assert.rejects(StateRegistry.openEncrypted(path, "old passphrase"), WrongKeyError);
   * await using reg = await StateRegistry.openEncrypted(path, "new passphrase");
   * assert.equal(await reg.getConfig("api_token"), "s3cr3t");
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async rekey(newKey: RegistryKey, options: RekeyOptions = {}): Promise<void> {
    using _call = this.#begin();
    await this.#requireSealing("rekey").rekey(newKey, options);
  }

  /**
   * Envelope scheme: re-seals every sealed value, history's past values
   * included, under a fresh random data key. The new key is stored as
   * pending first, and values move in transactions of the store's limit (a
   * file: one; etcd: about 30 values each), the last one making it active; a
   * failure or a crash part-way leaves every value readable (under the old or
   * the new key), `sealing.pending` says so, and calling this again finishes
   * it. Writes from this and other processes during the rotation are neither
   * lost nor sealed under the old key.
   *
   * @param options `onProgress(done, total)`: values rewritten so far, before the first transaction and after each.
   * @returns How many values were re-sealed.
   * @throws {CryptoError} when the registry was opened without a key or uses the oxide-k scheme, or another
   * re-sealing (a conversion) is pending.
   * @throws {SealedValueError} when a stored value cannot be opened; nothing is written.
   * @throws {TypeError} for an unknown option name or an `onProgress` that is not a function.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32).fill(7));
   * await reg.setConfig("api_token", "s3cr3t");
   * const before = reg.sealing?.keyId;
   * const progress: number[] = [];
   * assert.equal(await reg.rotateDataKey({ onProgress: (done) => progress.push(done) }), 1);
   * assert.deepEqual(progress, [0, 2]); // the value and the change log's copy of it
   * assert.notEqual(reg.sealing?.keyId, before);
   * assert.equal(await reg.getConfig("api_token"), "s3cr3t");
   * ```
   */
  rotateDataKey(options: ResealOptions = {}): Promise<number> {
    return this.#track(() => this.#requireSealing("rotateDataKey").rotateDataKey(options));
  }

  /**
   * Seals every config value stored plain: the way to seal an existing plain
   * registry (open it with `openEncrypted`, then call this), history's past
   * plain values included. On a file one transaction (etcd: several, each
   * safe on its own); the old plain text is overwritten in the file (`secure_delete`) and the
   * WAL is truncated when no other connection is reading.
   *
   * @param options `onProgress(done, total)`, as for {@linkcode StateRegistry.rotateDataKey}.
   * @returns How many values were sealed.
   * @throws {CryptoError} when the registry was opened without a key.
   * @throws {SerializationError} when a plain value is not JSON; nothing is written.
   * @throws {TypeError} for an unknown option name or an `onProgress` that is not a function.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * const path = `${dir}/registry.db`;
   * {
   *   await using plain = await StateRegistry.connect(path);
   *   await plain.setConfig("api_token", "s3cr3t");
   * }
   * await using reg = await StateRegistry.openEncrypted(path, "correct horse battery staple");
   * assert.equal(await reg.sealPlainValues(), 1);
   * assert.equal(await reg.getConfig("api_token"), "s3cr3t");
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  sealPlainValues(options: ResealOptions = {}): Promise<number> {
    return this.#track(() => this.#requireSealing("sealPlainValues").sealPlainValues(options));
  }

  /**
   * Converts an oxide-k scheme registry to the envelope scheme: every value is
   * re-sealed (plain ones sealed) under a fresh data key wrapped by `key`,
   * resumable as {@linkcode StateRegistry.rotateDataKey} is (run it again with
   * the same key). A Rust oxide-k kernel cannot read the registry afterwards.
   *
   * @param key The envelope scheme's key: the same passphrase, or a new key.
   * @param options `iterations` for a passphrase; `onProgress(done, total)`, as for
   * {@linkcode StateRegistry.rotateDataKey}.
   * @returns How many values were converted.
   * @throws {CryptoError} when the registry was opened without a key or already uses the envelope scheme, or a
   * stopped conversion with another key is pending.
   * @throws {SealedValueError} when a stored value cannot be opened; nothing is written.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.openEncrypted(":memory:", "s3cr3t-key", { scheme: "oxide-k" });
   * await reg.setConfig("api_token", "my-super-secret-token");
   * assert.equal(await reg.convertToEnvelope("s3cr3t-key"), 1);
   * assert.equal(reg.sealing?.scheme, "envelope");
   * assert.equal(await reg.getConfig("api_token"), "my-super-secret-token");
   * ```
   */
  convertToEnvelope(key: RegistryKey, options: RekeyOptions = {}): Promise<number> {
    return this.#track(() => this.#requireSealing("convertToEnvelope").convertToEnvelope(key, options));
  }

  #requireSealing(operation: string): Sealing {
    if (this.#sealing === undefined) {
      throw new CryptoError(`${operation}() needs a registry opened with openEncrypted`);
    }
    return this.#sealing;
  }

  // ---------------------------------------------------------------------------
  // Change: watch, history, retention
  // ---------------------------------------------------------------------------

  /**
   * Watches config keys and/or modules: an async iterable of their changes,
   * in revision order, none missed and none repeated, whoever wrote them
   * (this handle, another process on either engine, a Rust oxide-k kernel
   * writing the file). Values arrive decoded, opened on a keyed registry.
   * Resume after a restart with `fromRevision`: the last revision seen + 1.
   *
   * Breaking out of the loop, `return()`, the `signal`, or closing the
   * registry ends the watch and releases its timer, file watch and
   * listeners. An idle watch costs next to no CPU: it sleeps on a watch of
   * the database's folder (when the process may read the folder) and a slow
   * poll of SQLite's `data_version`.
   *
   * @param options What to follow (default: every config key) and from which revision.
   * @returns The events, as an async iterator.
   * @throws {TypeError} when the options have the wrong shape (`keys` and `prefix` together, a non-string key, ...).
   * @throws {RangeError} when `fromRevision` is not a positive integer, or `keys` is empty.
   * @throws {RegistryError} when the registry is closed.
   * @throws {CompactedError} (from `next()`) when `fromRevision` is below what retention kept.
   *
   * @example React to a change made elsewhere
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const controller = new AbortController();
   * const seen: unknown[] = [];
   * const watching = (async () => {
   *   for await (const event of reg.watch({ keys: ["kernel.greeting"], signal: controller.signal })) {
   *     if (event.space === "config") seen.push(event.value);
   *     if (seen.length === 2) controller.abort();
   *   }
   * })();
   * await reg.setConfig("kernel.greeting", "Hello");
   * await reg.setConfig("kernel.other", 1); // Not followed.
   * await reg.setConfig("kernel.greeting", "Hello, agent.");
   * await watching;
   * assert.deepEqual(seen, ["Hello", "Hello, agent."]);
   * ```
   */
  watch(options: WatchOptions = {}): WatchIterator {
    this.#checkOpen();
    checkOptions(options);
    return new RegistryWatch(this.#store, this.#decoder(), options);
  }

  /**
   * The newest versions of a config key, newest first, the current one
   * included: at most `retention.historyVersions` (default 10, as Vault's
   * `max_versions`). Sealed values stay sealed in the file and are opened
   * here on a keyed registry. Versions of a deleted key stay (until
   * compaction passes them), so a deleted key can be restored.
   *
   * @param key The config key.
   * @param options `limit`.
   * @returns The versions (empty when the key never had one, or history is off).
   * @throws {TypeError} when `key` is not a string.
   * @throws {RangeError} when `limit` is not a non-negative integer.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.setConfig("api.url", "https://a.example");
   * await reg.setConfig("api.url", "https://b.example");
   * const history = await reg.configHistory("api.url");
   * assert.deepEqual(history.map((v) => [v.version, v.value]), [[2, "https://b.example"], [1, "https://a.example"]]);
   * ```
   */
  async configHistory(key: string, options: ConfigHistoryOptions = {}): Promise<ConfigVersion[]> {
    using _call = this.#begin();
    checkText("config key", key);
    checkOptions(options);
    const limit = options.limit ?? this.#historyVersions;
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new RangeError(`limit must be a non-negative integer, got ${describe(limit)}`);
    }
    const kept = Math.min(limit, this.#historyVersions);
    if (kept === 0) return [];
    return await decodeHistory(this.#decoder(), await this.#store.history("config", key, kept));
  }

  /**
   * Writes an older version of a config key again, as a new version (the
   * key's history is not rewritten). Sealed versions are opened and sealed
   * again under the current key.
   *
   * @param key The config key.
   * @param revision The `revision` of the version to restore (from {@linkcode StateRegistry.configHistory}).
   * @throws {TypeError} when `key` is not a string.
   * @throws {RangeError} when `revision` is not a positive integer.
   * @throws {OtherError} when the key's history has no version written at `revision`.
   * @throws {CompactedError} when compaction dropped `revision`.
   * @throws {KeyRequiredError} when the version is sealed and the registry was opened without its key.
   *
   * @example Undo a change
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * await reg.setConfig("max_threads", 8);
   * await reg.setConfig("max_threads", 1000); // A mistake.
   * const [, good] = await reg.configHistory("max_threads");
   * await reg.restoreConfig("max_threads", good!.revision);
   * assert.equal(await reg.getConfig("max_threads"), 8);
   * assert.equal((await reg.configHistory("max_threads"))[0]?.version, 3);
   * ```
   */
  async restoreConfig(key: string, revision: number): Promise<void> {
    const value = await this.#track(() => this.#versionAt(key, revision));
    await this.setConfig(key, value);
  }

  /** The decoded value of `key`'s version written at `revision`, for `restoreConfig`. */
  async #versionAt(key: string, revision: number): Promise<unknown> {
    checkText("config key", key);
    if (!Number.isSafeInteger(revision) || revision < 1) {
      throw new RangeError(`revision must be a positive integer, got ${describe(revision)}`);
    }
    const kept = await this.#store.history("config", key, this.#historyVersions);
    const entry = this.#historyVersions === 0 ? undefined : kept.find((version) => version.modRevision === revision);
    if (entry === undefined) {
      const compacted = await this.#store.compactedRevision();
      if (revision < compacted) throw new CompactedError(revision, compacted);
      throw new OtherError(`config key '${key}' has no version written at revision ${revision} in its history`);
    }
    const [version] = await decodeHistory(this.#decoder(), [entry]);
    if (version!.error !== undefined) throw version!.error;
    if (version!.sealed && this.#sealing === undefined) {
      throw new KeyRequiredError(key, (this.#db && sealedScheme(this.#db)) ?? "unknown", "read");
    }
    return version!.value;
  }

  /**
   * Drops change-feed and history data below `revision` now (automatic
   * compaction does it by `retention`). Watches behind it fail with a
   * `CompactedError`; each live key keeps its current entry (its history
   * below `revision` goes, as in etcd).
   *
   * @param revision The oldest revision to keep.
   * @throws {RangeError} when `revision` is not a non-negative integer.
   * @throws {OtherError} when `revision` is above the current revision.
   *
   * @example
   * ```ts
   * import { CompactedError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * for (let i = 1; i <= 3; i++) await reg.setConfig("n", i);
   * await reg.compact(3);
   * assert.equal(await reg.compactedRevision(), 3);
   * await assert.rejects(reg.watch({ fromRevision: 1 }).next(), CompactedError);
   * ```
   */
  compact(revision: number): Promise<void> {
    try {
      this.#checkOpen();
      return settle(this.#store.compact(revision), () => undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The oldest revision the change feed still serves (0 when nothing was compacted).
   *
   * @returns The revision.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * assert.equal(await reg.compactedRevision(), 0);
   * ```
   */
  compactedRevision(): Promise<number> {
    try {
      this.#checkOpen();
      return settle(this.#store.compactedRevision(), (revision) => revision);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** How watch and history read stored values on this handle. */
  #decoder(): ValueDecoder {
    const sealing = this.#sealing;
    return {
      isSealed: isSealedText,
      keyed: sealing !== undefined,
      config: sealing === undefined
        ? (key, stored) => parsePlainConfig(key, storedText(key, stored))
        : async (key, stored) => parseConfig(key, await sealing.open(key, storedText(key, stored))),
      module: moduleRecord,
    };
  }

  // ---------------------------------------------------------------------------
  // Lifecycle
  // ---------------------------------------------------------------------------

  /**
   * Closes the registry: refuses new calls at once, waits for the calls in
   * flight to finish (each either completes or fails whole; none is cut
   * short), then finalizes every statement and closes the database. Safe to
   * call twice; any call afterwards rejects with a `RegistryError`
   * (`database '...' is closed`). `using` (`[Symbol.dispose]`) closes at once
   * instead: calls in flight then fail with that error, and nothing of them
   * is written.
   *
   * @example
   * ```ts
   * import { RegistryError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * const reg = await StateRegistry.inMemory();
   * await reg.close();
   * await reg.close();
   * await assert.rejects(reg.getConfig("x"), RegistryError);
   * ```
   */
  close(): Promise<void> {
    this.#closing = true;
    if (this.#inFlight === 0) return this.#closeNow();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise.then(() => this.#closeNow());
  }

  /** Closes the store (its watches end) and the database; resolves once the watches' file watch ended. */
  #closeNow(): Promise<void> {
    this.#sealing?.forget();
    const result = this.#store.close();
    this.#db?.close();
    return result instanceof Promise ? result.catch(() => {}) : Promise.resolve();
  }

  /** The database path or store address, for messages. */
  get location(): string {
    return this.#db?.path ?? this.#store.location;
  }

  /** Closes the registry at the end of an `await using` block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Closes the registry at the end of a `using` block, at once: calls in flight fail with the closed error. */
  [Symbol.dispose](): void {
    this.#closing = true;
    this.#disposed = true;
    void this.#closeNow();
  }

  /** Counts a call as in flight until the returned handle is disposed; refuses calls once `close()` began. */
  #begin(): Disposable {
    if (this.#closing) throw closedError(this.location);
    this.#inFlight++;
    return {
      [Symbol.dispose]: () => {
        if (--this.#inFlight === 0) this.#idle?.resolve();
      },
    };
  }

  /** Runs `work` as one call in flight (see {@linkcode StateRegistry.close}). */
  async #track<T>(work: () => Promise<T>): Promise<T> {
    using _call = this.#begin();
    return await work();
  }
}

/** One resolved promise serves every synchronous call that returns nothing. */
const RESOLVED: Promise<undefined> = Promise.resolve(undefined);

/**
 * Drops old page images (old ciphertexts, old wrapped keys, plain values) from the WAL after a re-sealing. Best
 * effort: it works only when no other connection is reading.
 */
function truncateWal(db: Engine): boolean {
  if (db.path === MEMORY_PATH) return true;
  try {
    // Its row says whether the checkpoint was blocked: busy = 1 when another connection is reading.
    return db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get()?.busy === 0;
  } catch {
    return false; // Locked: the WAL is reset by a later checkpoint.
  }
}

/** The scheme the meta key "sealing" names (its value is the sealing parameters, a JSON object), for messages. */
function schemeOf(entry: Entry | undefined): string {
  try {
    const scheme = (JSON.parse(String(entry?.value)) as { scheme?: unknown }).scheme;
    return typeof scheme === "string" ? scheme : "unknown";
  } catch {
    return "unknown";
  }
}

/** No compare: a write whatever the key holds. */
const NO_COMPARES: readonly Compare[] = [];

/** The keyless writer's guard: the registry is not sealed (meta key "sealing" does not exist). */
const NOT_SEALED: readonly Compare[] = [{ space: "meta", key: "sealing", target: "version", equals: 0 }];

/** Applies `fn` to a value now or later; a synchronous throw becomes a rejection. */
function settle<T, R>(value: Awaitable<T>, fn: (value: T) => R | Promise<R>): Promise<R> {
  if (value instanceof Promise) return value.then(fn);
  try {
    return Promise.resolve(fn(value));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The store transaction of one write: `ifVersion` as a version compare, then the guard. */
function txnOf(
  space: "config" | "modules",
  key: string,
  ifVersion: number | undefined,
  operation: Operation,
  updatedAt: string,
  guard: readonly Compare[] = NO_COMPARES,
  wantRevision = true,
): TxnRequest {
  const compares: readonly Compare[] = ifVersion === undefined
    ? guard
    : [{ space, key, target: "version", equals: ifVersion }, ...guard];
  return { compares, success: [operation], updatedAt, wantRevision };
}

/** The range of a listing's options, checked. */
function rangeRequest<S extends "config" | "modules">(
  space: S,
  options: ListConfigOptions | ListModulesOptions,
): RangeRequest & { readonly space: S } {
  checkOptionNames(
    space === "config" ? "listConfig()" : "listModules()",
    options,
    space === "config" ? ["prefix", "limit", "cursor", "reverse", "invalid"] : ["prefix", "limit", "cursor", "invalid"],
  );
  const { prefix, limit, cursor } = options;
  const reverse = (options as ListConfigOptions).reverse;
  if (prefix !== undefined) checkText("prefix", prefix);
  if (limit !== undefined) checkCount("limit", limit, 1);
  if (reverse !== undefined && typeof reverse !== "boolean") {
    throw new TypeError(`reverse must be a boolean, got ${describe(reverse)}`);
  }
  const page = cursor === undefined
    ? undefined
    : decodeCursor(cursor, { space, prefix: prefix ?? "", reverse: reverse ?? false });
  return {
    space,
    prefix: prefix ?? "",
    ...(limit === undefined ? {} : { limit }),
    ...(reverse === undefined ? {} : { reverse }),
    ...(page === undefined ? {} : { after: page.after, revision: page.revision }),
  };
}

/** A page of `items` from a range: a cursor when more keys follow. */
function pageOf<T>(items: T[], result: RangeResult, request: RangeRequest, skipped?: readonly SkippedRow[]): Page<T> {
  const last = result.entries.at(-1);
  const scope = { space: request.space, prefix: request.prefix ?? "", reverse: request.reverse ?? false };
  return toPage(
    items,
    result.more && last !== undefined ? encodeCursor(last.key, result.revision, scope) : undefined,
    result.revision,
    skipped,
  );
}

/** A module record from a store entry, checked as oxide-k's deserializer would, with its revision data. */
function moduleRecord(entry: Entry<"modules">): ModuleRecord {
  return moduleRecordOf(
    entry.key,
    entry.value,
    entry.updatedAt,
    entry.version,
    entry.createRevision,
    entry.modRevision,
  );
}

/** The time of a row a listing skipped, when its `updated_at` reads as one. */
function skippedTime(updatedAt: unknown): Date | undefined {
  return typeof updatedAt === "string" ? parseTimestamp(updatedAt) : undefined;
}
