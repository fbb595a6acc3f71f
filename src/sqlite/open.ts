/**
 * Chooses an engine and opens a connection configured the way the registry
 * needs it: WAL, a busy timeout, durable commits.
 *
 * @module
 */
import { describe } from "../_describe.ts";
import { RegistryError } from "../errors.ts";
import type { Engine } from "./engine.ts";
import { FfiEngine } from "./ffi.ts";
import { databaseFile } from "./_database_file.ts";
import { fileOwner } from "./_file_owners.ts";
import { loadSqlite } from "./_library.ts";
import { NodeEngine } from "./node.ts";

/**
 * Which engine to open: `auto` picks `ffi` when `--allow-ffi` is granted and the library loads, else `node`.
 *
 * @example
 * ```ts
 * import { type EngineChoice, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const choice: EngineChoice = "auto";
 * await using reg = await StateRegistry.inMemory({ engine: choice });
 * const ffi = await Deno.permissions.query({ name: "ffi" });
 * assert.equal(reg.engine, ffi.state === "granted" ? "ffi" : "node");
 * ```
 */
export type EngineChoice = "auto" | "ffi" | "node";

/**
 * How hard a commit tries to reach the disk.
 *
 * - `full` (default): `synchronous=FULL`. A commit that returned survives a
 *   process crash and a power loss.
 * - `normal`: `synchronous=NORMAL`. Survives a process crash; a power loss or
 *   OS crash may roll back the last commits (never corrupts the file).
 *
 * @example
 * ```ts
 * import { type Durability, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const durability: Durability = "normal";
 * {
 *   await using reg = await StateRegistry.connect(`${dir}/registry.db`, { durability });
 *   assert.equal(reg.db.prepare("PRAGMA synchronous").get()?.synchronous, 1); // NORMAL
 * }
 * await using again = await StateRegistry.connect(`${dir}/registry.db`);
 * assert.equal(again.db.prepare("PRAGMA synchronous").get()?.synchronous, 2); // FULL, the default
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export type Durability = "full" | "normal";

/**
 * Options for {@linkcode openEngine}.
 *
 * @example
 * ```ts
 * import { type OpenEngineOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: OpenEngineOptions = { engine: "ffi", busyTimeoutMs: 250 };
 * await using reg = await StateRegistry.inMemory(options);
 * assert.equal(reg.engine, "ffi");
 * assert.equal(reg.db.prepare("PRAGMA busy_timeout").get()?.timeout, 250);
 * await assert.rejects(StateRegistry.inMemory({ busyTimeoutMs: -1 }), RangeError);
 * ```
 */
export interface OpenEngineOptions {
  /** Engine to use. Default `"auto"`. */
  engine?: EngineChoice | undefined;
  /** FFI engine: the SQLite library to load (else `OXIDE_SQLITE_PATH`, else the OS's usual names). */
  libPath?: string | undefined;
  /**
   * How long a write waits for another connection's lock while nobody commits, in milliseconds. Default 5000. A
   * write keeps waiting while other connections commit (so back-to-back writers cannot starve it) and fails with
   * `SQLITE_BUSY` only when one transaction held the lock for the whole timeout; 0 fails at once.
   */
  busyTimeoutMs?: number | undefined;
  /** Commit durability for file databases. Default `"full"`. */
  durability?: Durability | undefined;
  /**
   * Open the file read-only: it must exist, nothing is ever written to it (no
   * migration, no switch to WAL), and every write fails with `SQLITE_READONLY`.
   * Needs only `--allow-read` for the file. Default `false`.
   */
  readonly?: boolean | undefined;
  /**
   * Whether a missing file is created as a new, empty registry. With
   * `create: false`, a path that does not exist (a typo) or a database that is
   * not yet a registry is an error instead. Default `true`.
   */
  create?: boolean | undefined;
}

/** The in-memory path. */
export const MEMORY_PATH = ":memory:";

/**
 * Opens `path` (creating it if missing) with the chosen engine and applies
 * the connection settings.
 *
 * Nothing is written to an existing file before it has been found usable: a
 * read-only file is refused before its first read (SQLite would otherwise
 * create `-wal`/`-shm` files beside it), and `check` runs before the switch to
 * WAL (which rewrites the file header).
 *
 * @param path File path, or `":memory:"`.
 * @param options Engine choice and connection settings.
 * @param check Read-only checks of the file's content, run before anything is written; throw to refuse the file.
 * @throws {RegistryError} naming the path when the file cannot be opened, is read-only, is not a database, or
 * `check` refuses it.
 */
export function openEngine(
  path: string,
  options: OpenEngineOptions = {},
  check?: (engine: Engine) => void,
): Engine {
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    // A NUL would end the path early in C: libsqlite3 would open another file than the one permissions were checked for.
    throw new TypeError(
      `the database path must be a non-empty string without NUL characters, got ${JSON.stringify(path)}`,
    );
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  if (
    !Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0 ||
    busyTimeoutMs > 2 ** 31 - 1
  ) {
    throw new RangeError(
      `busyTimeoutMs must be a non-negative integer, got ${busyTimeoutMs}`,
    );
  }
  const durability = options.durability ?? "full";
  if (durability !== "full" && durability !== "normal") {
    throw new TypeError(
      `durability must be "full" or "normal", got '${durability}'`,
    );
  }
  for (const name of ["readonly", "create"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "boolean") {
      throw new TypeError(`${name} must be a boolean, got ${describe(options[name])}`);
    }
  }
  const readonly = options.readonly === true;
  if (path === MEMORY_PATH && (readonly || options.create === false)) {
    throw new TypeError("an in-memory registry is always new and writable: readonly and create: false need a file");
  }
  if (path !== MEMORY_PATH && (readonly || options.create === false) && !fileExists(path)) {
    throw new RegistryError(
      `cannot open '${path}': no such file (${
        readonly ? "a readonly registry is never created" : "create: false"
      }; check the path)`,
      { path, code: SQLITE_CANTOPEN },
    );
  }
  const engine = createEngine(path, { ...options, busyTimeoutMs });
  try {
    if (path !== MEMORY_PATH && !readonly && openedReadOnly(engine)) {
      throw new RegistryError(
        "attempt to write a readonly database: the file is read-only",
        { path, code: SQLITE_READONLY },
      );
    }
    // Foreign keys on, as node:sqlite's default and sqlx's (oxide-k's driver): one SQL dialect on both engines.
    engine.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON`);
    check?.(engine);
    if (path !== MEMORY_PATH && !readonly) {
      const mode = engine.prepare("PRAGMA journal_mode = WAL").get()?.journal_mode;
      if (mode !== "wal") {
        throw new RegistryError(`it stays in journal mode '${String(mode)}' instead of WAL`, { path });
      }
      engine.exec(`PRAGMA synchronous = ${durability.toUpperCase()}`);
    }
  } catch (error) {
    engine.close();
    throw openError(path, error);
  }
  return engine;
}

function createEngine(path: string, options: OpenEngineOptions): Engine {
  const choice = options.engine ?? "auto";
  const engineOptions = {
    path,
    libPath: options.libPath,
    busyTimeoutMs: options.busyTimeoutMs,
    readOnly: options.readonly === true,
  };
  switch (choice) {
    case "ffi":
      return withOpenError(path, () => new FfiEngine(engineOptions));
    case "node":
      return withOpenError(path, () => new NodeEngine(engineOptions));
    case "auto":
      return withOpenError(path, () => {
        // A file this process already has open stays with its engine (two SQLite libraries must not share it).
        const engine = fileOwner(databaseFile(path)) ?? (ffiAvailable(options.libPath) ? "ffi" : "node");
        return engine === "ffi" ? new FfiEngine(engineOptions) : new NodeEngine(engineOptions);
      });
    default:
      throw new TypeError(
        `engine must be "auto", "ffi" or "node", got '${choice}'`,
      );
  }
}

/** Whether `path` exists; only a definite "not found" counts as missing (a permission error is the open's to report). */
function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}

const SQLITE_READONLY = 8;
const SQLITE_CANTOPEN = 14;

/**
 * Whether SQLite fell back to opening the file read-only (it does so silently
 * when the file is write-protected). The FFI engine asks SQLite; `node:sqlite`
 * cannot say, so the node engine tries to open the file for writing (it
 * already needs `--allow-write` on it).
 */
function openedReadOnly(engine: Engine): boolean {
  if (engine instanceof FfiEngine) return engine.readonly;
  try {
    Deno.openSync(engine.path, { read: true, write: true }).close();
    return false;
  } catch (error) {
    return error instanceof Deno.errors.PermissionDenied ||
      (error as { code?: unknown }).code === "EROFS";
  }
}

function ffiAvailable(libPath: string | undefined): boolean {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return false;
  }
  try {
    loadSqlite(libPath);
    return true;
  } catch {
    return false;
  }
}

function withOpenError(path: string, open: () => Engine): Engine {
  try {
    return open();
  } catch (error) {
    throw openError(path, error);
  }
}

function openError(path: string, error: unknown): RegistryError {
  if (!(error instanceof RegistryError)) {
    return new RegistryError(`cannot open '${path}': ${String(error)}`, {
      path,
      cause: error,
    });
  }
  if (error.path === undefined) return error; // Library loading: nothing about this path.
  const detail = error.message.replace(/^registry error: /, "") + openHint(error.code);
  return new RegistryError(`cannot open '${path}': ${detail}`, {
    path,
    cause: error,
    ...(error.code === undefined ? {} : { code: error.code }),
  });
}

/** What to do about the failures SQLite's messages leave vague. */
function openHint(code: number | undefined): string {
  switch (code === undefined ? undefined : code & 0xff) {
    case SQLITE_READONLY:
      return " (the registry needs write access to the file and to its folder, where SQLite keeps the -wal and -shm files)";
    case SQLITE_CANTOPEN:
      return " (check that the folder exists and that this process may create files in it)";
    default:
      return "";
  }
}
