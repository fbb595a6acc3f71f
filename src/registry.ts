/**
 * `StateRegistry`: oxide-k's Global State Registry. Module metadata and
 * system-wide configuration in one SQLite database.
 *
 * @module
 */
import { ConfigNotFoundError, OtherError, RegistryError, SerializationError, UnknownModuleError } from "./errors.ts";
import { encodeJson } from "./json.ts";
import {
  isModuleKind,
  isModuleState,
  MODULE_KINDS,
  MODULE_STATES,
  type ModuleKind,
  type ModuleMetadata,
  type ModuleRecord,
  type ModuleState,
} from "./module.ts";
import { migrateRegistry } from "./schema.ts";
import type { Engine, EngineName, Row } from "./sqlite/engine.ts";
import { MEMORY_PATH, openEngine, type OpenEngineOptions } from "./sqlite/open.ts";
import { formatTimestamp, parseTimestamp } from "./time.ts";

/** Options for {@linkcode StateRegistry.inMemory} and {@linkcode StateRegistry.connect}. */
export interface RegistryOptions extends OpenEngineOptions {}

/** Options for {@linkcode StateRegistry.listModules}. */
export interface ListModulesOptions {
  /**
   * What to do with a row that cannot be read (written by another program
   * with an unknown kind, bad JSON, a bad timestamp): `"throw"` (default)
   * fails with an error naming every such row; `"skip"` leaves them out.
   */
  invalid?: "throw" | "skip" | undefined;
}

const SQL = {
  upsertModule: `INSERT INTO modules (id, name, version, kind, state, description, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT(id) DO UPDATE SET
    name        = excluded.name,
    version     = excluded.version,
    kind        = excluded.kind,
    state       = excluded.state,
    description = excluded.description,
    updated_at  = excluded.updated_at`,
  setModuleState: "UPDATE modules SET state = ?1, updated_at = ?2 WHERE id = ?3",
  getModule: "SELECT id, name, version, kind, state, description, updated_at FROM modules WHERE id = ?1",
  listModules: "SELECT id, name, version, kind, state, description, updated_at FROM modules ORDER BY id",
  setConfig: `INSERT INTO config (key, value, updated_at)
VALUES (?1, ?2, ?3)
ON CONFLICT(key) DO UPDATE SET
    value      = excluded.value,
    updated_at = excluded.updated_at`,
  getConfig: "SELECT value FROM config WHERE key = ?1",
  deleteConfig: "DELETE FROM config WHERE key = ?1",
} as const;

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
  readonly #db: Engine;

  private constructor(db: Engine) {
    this.#db = db;
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
   * @throws {RegistryError} naming the path when it cannot be opened, is not a SQLite database, is read-only, or
   * holds `modules`/`config` tables of another shape.
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
    return StateRegistry.#open(path, options);
  }

  static #open(path: string, options: RegistryOptions): Promise<StateRegistry> {
    try {
      const db = openEngine(path, options);
      try {
        migrateRegistry(db);
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
      return Promise.resolve(new StateRegistry(db));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The database connection, for in-kernel extensions that keep their own
   * tables beside the registry's (oxide-k's `pool()`). Never alter the
   * `modules`, `config` or `oxide_migrations` tables through it.
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
    return this.#db.name;
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
    return this.#db.path;
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
    return this.#db.isOpen;
  }

  // ---------------------------------------------------------------------------
  // Module metadata
  // ---------------------------------------------------------------------------

  /**
   * Inserts or updates a module's metadata and state.
   *
   * @param metadata The module's id, name, version, kind and optional description.
   * @param state Its lifecycle state.
   * @throws {TypeError} when a field is not a string (or contains a NUL character).
   * @throws {SerializationError} for an unknown kind or state; nothing is written.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const meta = { id: "mirror", name: "Mirror", version: "0.1.0", kind: "wasm" } as const;
   * await reg.upsertModule(meta, "loaded");
   * await reg.upsertModule(meta, "running");
   * assert.equal((await reg.getModule("mirror"))?.state, "running");
   * ```
   */
  upsertModule(metadata: ModuleMetadata, state: ModuleState): Promise<void> {
    try {
      if (typeof metadata !== "object" || metadata === null) {
        throw new TypeError(
          `module metadata must be an object, got ${describe(metadata)}`,
        );
      }
      const id = checkText("module id", metadata.id);
      const name = checkText("module name", metadata.name);
      const version = checkText("module version", metadata.version);
      const kind = checkKind(metadata.kind);
      const stateText = checkState(state);
      const description = metadata.description === undefined || metadata.description === null
        ? null
        : checkText("module description", metadata.description);
      this.#db.prepare(SQL.upsertModule).run(
        id,
        name,
        version,
        kind,
        stateText,
        description,
        formatTimestamp(new Date()),
      );
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Updates only a module's state (and its `updated_at`).
   *
   * @param id The module id.
   * @param state The new state.
   * @throws {UnknownModuleError} when no module has this id.
   * @throws {SerializationError} for an unknown state.
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
  setModuleState(id: string, state: ModuleState): Promise<void> {
    try {
      const key = checkText("module id", id);
      const stateText = checkState(state);
      const { changes } = this.#db.prepare(SQL.setModuleState).run(
        stateText,
        formatTimestamp(new Date()),
        key,
      );
      if (changes === 0) throw new UnknownModuleError(key);
      return Promise.resolve();
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
      const row = this.#db.prepare(SQL.getModule).get(
        checkText("module id", id),
      );
      return Promise.resolve(
        row === undefined ? undefined : rowToModuleRecord(row),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Lists every module, ordered by id.
   *
   * @param options `invalid`: what to do with rows that cannot be read (default `"throw"`).
   * @returns The records.
   * @throws {SerializationError} when a row cannot be read and `invalid` is `"throw"`; the message names every
   * such row.
   *
   * @example
   * ```ts
   * import { StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * for (const id of ["b", "a"]) {
   *   await reg.upsertModule({ id, name: id, version: "1", kind: "native" }, "loaded");
   * }
   * assert.deepEqual((await reg.listModules()).map((m) => m.id), ["a", "b"]);
   * ```
   */
  listModules(options: ListModulesOptions = {}): Promise<ModuleRecord[]> {
    try {
      const invalid = options.invalid ?? "throw";
      if (invalid !== "throw" && invalid !== "skip") {
        throw new TypeError(
          `invalid must be "throw" or "skip", got ${describe(invalid)}`,
        );
      }
      const records: ModuleRecord[] = [];
      const failures: Error[] = [];
      for (const row of this.#db.prepare(SQL.listModules).all()) {
        try {
          records.push(rowToModuleRecord(row));
        } catch (error) {
          failures.push(error as Error);
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
      return Promise.resolve(records);
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
   * @throws {TypeError} when `key` is not a string.
   * @throws {SerializationError} when `value` has no faithful JSON form (`undefined`, NaN, a cycle, a Date, ...);
   * nothing is written.
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
  async setConfig(key: string, value: unknown): Promise<void> {
    checkText("config key", key);
    const stored = await this.#encodeValue(key, encodeJson(value));
    this.#db.prepare(SQL.setConfig).run(
      key,
      stored,
      formatTimestamp(new Date()),
    );
  }

  /**
   * Reads a configuration value. The type parameter is not checked at run time.
   *
   * @param key The configuration key.
   * @returns The stored value.
   * @throws {ConfigNotFoundError} when the key does not exist.
   * @throws {SerializationError} when the stored text is not JSON (written by another program).
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
  async getConfig<T = unknown>(key: string): Promise<T> {
    const value = await this.#readConfig<T>(key);
    if (value === NOT_FOUND) throw new ConfigNotFoundError(key);
    return value;
  }

  /**
   * Reads a configuration value, or `undefined` when the key does not exist.
   *
   * @param key The configuration key.
   * @returns The stored value, or `undefined`.
   * @throws {SerializationError} when the stored text is not JSON.
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
  async tryGetConfig<T = unknown>(key: string): Promise<T | undefined> {
    const value = await this.#readConfig<T>(key);
    return value === NOT_FOUND ? undefined : value;
  }

  /**
   * Deletes a configuration value.
   *
   * @param key The configuration key.
   * @returns Whether a value was removed.
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
  deleteConfig(key: string): Promise<boolean> {
    try {
      const { changes } = this.#db.prepare(SQL.deleteConfig).run(
        checkText("config key", key),
      );
      return Promise.resolve(changes > 0);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #readConfig<T>(key: string): Promise<T | typeof NOT_FOUND> {
    checkText("config key", key);
    const row = this.#db.prepare(SQL.getConfig).get(key);
    if (row === undefined) return NOT_FOUND;
    const json = await this.#decodeValue(key, row.value);
    try {
      return JSON.parse(json) as T;
    } catch (error) {
      throw new SerializationError(
        `value of config key '${key}' is not valid JSON: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  }

  /** Turns a value's JSON into the text stored in `config.value`. */
  #encodeValue(_key: string, json: string): string | Promise<string> {
    return json;
  }

  /** Turns the stored `config.value` back into JSON text. */
  #decodeValue(key: string, stored: unknown): string | Promise<string> {
    if (typeof stored !== "string") {
      throw new SerializationError(
        `value of config key '${key}' is not text: ${describe(stored)}`,
      );
    }
    return stored;
  }

  // ---------------------------------------------------------------------------
  // Lifecycle
  // ---------------------------------------------------------------------------

  /**
   * Closes the registry: finalizes every statement and closes the database.
   * Safe to call twice; any call afterwards throws a `RegistryError`.
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
    this.#db.close();
    return Promise.resolve();
  }

  /** Closes the registry at the end of an `await using` block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Closes the registry at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.#db.close();
  }
}

const NOT_FOUND = Symbol("not found");

/** Builds a record from a `modules` row, checking it as oxide-k's deserializer would. */
function rowToModuleRecord(row: Row): ModuleRecord {
  const id = String(row.id);
  const kind = decodeEnumText(id, "kind", row.kind, isModuleKind, MODULE_KINDS);
  const state = decodeEnumText(
    id,
    "state",
    row.state,
    isModuleState,
    MODULE_STATES,
  );
  const updatedAt = typeof row.updated_at === "string" ? parseTimestamp(row.updated_at) : undefined;
  if (updatedAt === undefined) {
    throw new OtherError(
      `invalid updated_at: module '${id}' has ${describe(row.updated_at)}, not an RFC 3339 timestamp`,
    );
  }
  for (const column of ["name", "version"] as const) {
    if (typeof row[column] !== "string") {
      throw new SerializationError(
        `module '${id}' has a ${column} that is not text: ${describe(row[column])}`,
      );
    }
  }
  if (row.description !== null && typeof row.description !== "string") {
    throw new SerializationError(
      `module '${id}' has a description that is not text: ${describe(row.description)}`,
    );
  }
  return {
    id,
    name: row.name as string,
    version: row.version as string,
    kind,
    state,
    description: row.description ?? undefined,
    updatedAt,
  };
}

/** Kinds and states are stored as JSON strings (`"native"`, with the quotes). */
function decodeEnumText<T extends string>(
  id: string,
  column: string,
  stored: unknown,
  isValid: (value: unknown) => value is T,
  valid: readonly string[],
): T {
  if (
    typeof stored === "string" && stored.length > 2 && stored.startsWith('"') &&
    stored.endsWith('"')
  ) {
    try {
      const value: unknown = JSON.parse(stored);
      if (isValid(value)) return value;
    } catch {
      // Reported below.
    }
  }
  throw new SerializationError(
    `module '${id}' has ${column} ${describe(stored)}, expected one of ${valid.map((v) => `'"${v}"'`).join(", ")}`,
  );
}

function checkText(what: string, value: unknown): string {
  if (typeof value !== "string") {
    throw new TypeError(`${what} must be a string, got ${describe(value)}`);
  }
  if (value.includes("\0")) {
    throw new TypeError(
      `${what} must not contain a NUL character: ${describe(value)}`,
    );
  }
  return value;
}

function checkKind(kind: unknown): string {
  if (!isModuleKind(kind)) {
    throw new SerializationError(
      `unknown module kind ${describe(kind)}: expected one of ${MODULE_KINDS.map((k) => `'${k}'`).join(", ")}`,
    );
  }
  return `"${kind}"`;
}

function checkState(state: unknown): string {
  if (!isModuleState(state)) {
    throw new SerializationError(
      `unknown module state ${describe(state)}: expected one of ${MODULE_STATES.map((s) => `'${s}'`).join(", ")}`,
    );
  }
  return `"${state}"`;
}

/** A short, quoted description of any value for error messages. */
function describe(value: unknown): string {
  if (typeof value === "string") {
    return `'${value.length > 80 ? `${value.slice(0, 80)}...` : value}'`;
  }
  if (value instanceof Uint8Array) return `a ${value.length}-byte blob`;
  if (value === null) return "null";
  if (typeof value === "object") {
    return `a ${(value.constructor as { name?: string } | undefined)?.name ?? "object"}`;
  }
  return `${typeof value} ${String(value)}`;
}

export type { ModuleKind };
