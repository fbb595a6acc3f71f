/**
 * The `KernelError` family: oxide-k's error kinds and display texts, plus the
 * kinds this port can say more about.
 *
 * @module
 */

/**
 * Every value of {@linkcode KernelError.kind}.
 *
 * @example
 * ```ts
 * import { KernelError, type KernelErrorKind, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const err = await reg.setModuleState("ghost", "running").catch((e) => e);
 * assert.ok(err instanceof KernelError);
 * const kind: KernelErrorKind = err.kind;
 * assert.equal(kind, "unknown_module");
 * ```
 */
export type KernelErrorKind =
  | "module"
  | "bus"
  | "registry"
  | "config_not_found"
  | "duplicate_module"
  | "unknown_module"
  | "serde"
  | "denied"
  | "crypto"
  | "extension"
  | "conflict"
  | "compacted"
  | "other";

/**
 * The base of every error this module throws on purpose. `kind` mirrors the
 * oxide-k `KernelError` variant; `message` is its display text.
 *
 * @example Telling errors apart
 * ```ts
 * import { KernelError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const err = await reg.getConfig("missing").catch((e) => e);
 * assert.ok(err instanceof KernelError);
 * assert.equal(err.kind, "config_not_found");
 * ```
 */
export class KernelError extends Error {
  /** Which oxide-k variant this error is. */
  readonly kind: KernelErrorKind;

  /**
   * Creates an error of the given kind.
   *
   * @param kind The variant.
   * @param message The full display text.
   * @param options `cause`: the lower-level error, if any.
   */
  constructor(kind: KernelErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }

  /** The class name, so stack traces and `String(err)` say which error it is. */
  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * A module failed (`module error: ...`).
 *
 * @example
 * ```ts
 * import { ModuleError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new ModuleError("start hook failed").message, "module error: start hook failed");
 * ```
 */
export class ModuleError extends KernelError {
  /**
   * Creates the error.
   *
   * @param detail What went wrong.
   * @param options `cause`, if any.
   */
  constructor(detail: string, options?: ErrorOptions) {
    super("module", `module error: ${detail}`, options);
  }
}

/**
 * The message bus failed (`bus error: ...`).
 *
 * @example
 * ```ts
 * import { BusError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new BusError("closed").message, "bus error: closed");
 * ```
 */
export class BusError extends KernelError {
  /**
   * Creates the error.
   *
   * @param detail What went wrong.
   * @param options `cause`, if any.
   */
  constructor(detail: string, options?: ErrorOptions) {
    super("bus", `bus error: ${detail}`, options);
  }
}

/**
 * Options of {@linkcode RegistryError}.
 *
 * @example
 * ```ts
 * import { RegistryError, type RegistryErrorOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: RegistryErrorOptions = { code: 517, path: "/var/lib/oxide/registry.db", cause: new Error("locked") };
 * const err = new RegistryError("database is locked", options);
 * assert.equal(err.message, "registry error: database is locked");
 * assert.equal(err.codeName, "SQLITE_BUSY"); // 517 is SQLITE_BUSY_SNAPSHOT
 * assert.equal(err.path, options.path);
 * assert.equal(err.cause, options.cause);
 * ```
 */
export interface RegistryErrorOptions extends ErrorOptions {
  /** SQLite's extended result code, when SQLite reported the failure. */
  code?: number;
  /** The database file the failure concerns, when known. */
  path?: string;
}

/**
 * The storage layer failed (`registry error: ...`): SQLite reported an error,
 * the library could not be loaded, the file is not a database, the registry
 * is closed.
 *
 * @example Reading SQLite's result code
 * ```ts
 * import { RegistryError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * assert.throws(() => reg.db.exec("SELEC 1"), (err: unknown) => {
 *   assert.ok(err instanceof RegistryError);
 *   assert.equal(err.code, 1); // SQLITE_ERROR
 *   assert.equal(err.codeName, "SQLITE_ERROR");
 *   return true;
 * });
 * ```
 */
export class RegistryError extends KernelError {
  /** SQLite's extended result code, or `undefined` when SQLite did not report this failure. */
  readonly code: number | undefined;
  /** The database file the failure concerns, when known. */
  readonly path: string | undefined;

  /**
   * Creates the error.
   *
   * @param detail What went wrong; the message is `registry error: ${detail}`.
   * @param options `code`, `path`, `cause`.
   */
  constructor(detail: string, options: RegistryErrorOptions = {}) {
    super("registry", `registry error: ${detail}`, options);
    this.code = options.code;
    this.path = options.path;
  }

  /**
   * The symbolic name of {@linkcode RegistryError.code}'s primary code
   * (`"SQLITE_BUSY"`), or `undefined`.
   */
  get codeName(): string | undefined {
    return this.code === undefined ? undefined : SQLITE_CODE_NAMES[this.code & 0xff];
  }
}

/** Names of SQLite's primary result codes, by number. */
const SQLITE_CODE_NAMES: Readonly<Record<number, string>> = {
  1: "SQLITE_ERROR",
  2: "SQLITE_INTERNAL",
  3: "SQLITE_PERM",
  4: "SQLITE_ABORT",
  5: "SQLITE_BUSY",
  6: "SQLITE_LOCKED",
  7: "SQLITE_NOMEM",
  8: "SQLITE_READONLY",
  9: "SQLITE_INTERRUPT",
  10: "SQLITE_IOERR",
  11: "SQLITE_CORRUPT",
  12: "SQLITE_NOTFOUND",
  13: "SQLITE_FULL",
  14: "SQLITE_CANTOPEN",
  15: "SQLITE_PROTOCOL",
  16: "SQLITE_EMPTY",
  17: "SQLITE_SCHEMA",
  18: "SQLITE_TOOBIG",
  19: "SQLITE_CONSTRAINT",
  20: "SQLITE_MISMATCH",
  21: "SQLITE_MISUSE",
  22: "SQLITE_NOLFS",
  23: "SQLITE_AUTH",
  24: "SQLITE_FORMAT",
  25: "SQLITE_RANGE",
  26: "SQLITE_NOTADB",
};

/**
 * A configuration key does not exist (`configuration key not found: key`).
 *
 * @example
 * ```ts
 * import { ConfigNotFoundError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await assert.rejects(reg.getConfig("nope"), ConfigNotFoundError);
 * ```
 */
export class ConfigNotFoundError extends KernelError {
  /** The key that was not found. */
  readonly key: string;

  /**
   * Creates the error.
   *
   * @param key The missing key.
   */
  constructor(key: string) {
    super("config_not_found", `configuration key not found: ${key}`);
    this.key = key;
  }
}

/**
 * A module id is already registered (`module already registered: id`).
 *
 * @example
 * ```ts
 * import { DuplicateModuleError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new DuplicateModuleError("echo").message, "module already registered: echo");
 * ```
 */
export class DuplicateModuleError extends KernelError {
  /** The duplicate id. */
  readonly id: string;

  /**
   * Creates the error.
   *
   * @param id The duplicate id.
   */
  constructor(id: string) {
    super("duplicate_module", `module already registered: ${id}`);
    this.id = id;
  }
}

/**
 * No module has this id (`unknown module: id`).
 *
 * @example
 * ```ts
 * import { StateRegistry, UnknownModuleError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await assert.rejects(reg.setModuleState("ghost", "running"), UnknownModuleError);
 * ```
 */
export class UnknownModuleError extends KernelError {
  /** The unknown id. */
  readonly id: string;

  /**
   * Creates the error.
   *
   * @param id The unknown id.
   */
  constructor(id: string) {
    super("unknown_module", `unknown module: ${id}`);
    this.id = id;
  }
}

/**
 * A compare-and-set found another version than the one it expected, so nothing
 * was written (`conflict: ...`). `expected` and `actual` are versions: 0 means
 * "does not exist". Re-read and try again, or let `reg.update()` do it.
 *
 * @example
 * ```ts
 * import { ConflictError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("n", 1);
 * const err = await reg.setConfig("n", 2, { ifVersion: 0 }).catch((e) => e);
 * assert.ok(err instanceof ConflictError);
 * assert.equal(err.message, "conflict: config key 'n' is at version 1, not 0 (expected it not to exist); nothing was written");
 * assert.deepEqual([err.space, err.key, err.expected, err.actual], ["config", "n", 0, 1]);
 * ```
 */
export class ConflictError extends KernelError {
  /** `"config"` for a config key, `"modules"` for a module id. */
  readonly space: "config" | "modules";
  /** The config key or module id. */
  readonly key: string;
  /** The version the write expected (0: must not exist). */
  readonly expected: number;
  /** The version found (0: does not exist). */
  readonly actual: number;

  /**
   * Creates the error.
   *
   * @param space `"config"` or `"modules"`.
   * @param key The config key or module id.
   * @param expected The version the write expected (0: must not exist).
   * @param actual The version found (0: does not exist).
   * @param options `cause`, if any.
   */
  constructor(space: "config" | "modules", key: string, expected: number, actual: number, options?: ErrorOptions) {
    const what = space === "config" ? `config key '${key}'` : `module '${key}'`;
    const found = actual === 0 ? "does not exist" : `is at version ${actual}`;
    const wanted = expected === 0 ? "0 (expected it not to exist)" : String(expected);
    super(
      "conflict",
      actual === 0
        ? `conflict: ${what} ${found} (expected version ${expected}); nothing was written`
        : `conflict: ${what} ${found}, not ${wanted}; nothing was written`,
      options,
    );
    this.space = space;
    this.key = key;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A value could not be turned into JSON faithfully, or stored text is not the
 * JSON it should be (`serialization error: ...`).
 *
 * @example
 * ```ts
 * import { SerializationError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await assert.rejects(reg.setConfig("n", NaN), SerializationError);
 * ```
 */
export class SerializationError extends KernelError {
  /**
   * Creates the error.
   *
   * @param detail What is wrong; the message is `serialization error: ${detail}`.
   * @param options `cause`, if any.
   */
  constructor(detail: string, options?: ErrorOptions) {
    super("serde", `serialization error: ${detail}`, options);
  }
}

/**
 * A publisher lacks a capability (``access denied: `publisher` lacks capability `capability` ``).
 *
 * @example
 * ```ts
 * import { DeniedError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new DeniedError("agent", "config.write");
 * assert.equal(err.message, "access denied: `agent` lacks capability `config.write`");
 * ```
 */
export class DeniedError extends KernelError {
  /** Who asked. */
  readonly publisher: string;
  /** What they lacked. */
  readonly capability: string;

  /**
   * Creates the error.
   *
   * @param publisher Who asked.
   * @param capability What they lacked.
   */
  constructor(publisher: string, capability: string) {
    super(
      "denied",
      `access denied: \`${publisher}\` lacks capability \`${capability}\``,
    );
    this.publisher = publisher;
    this.capability = capability;
  }
}

/**
 * Sealing or opening a configuration value failed: a wrong or missing key, a
 * value sealed under another scheme, a tampered value.
 *
 * @example
 * ```ts
 * import { CryptoError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new CryptoError("config decrypt: wrong key");
 * assert.equal(err.kind, "crypto");
 * ```
 */
export class CryptoError extends KernelError {
  /**
   * Creates the error.
   *
   * @param message The full message, e.g. `config decrypt: ...`.
   * @param options `cause`, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("crypto", message, options);
  }
}

/**
 * The key given to `openEncrypted` or `rekey` does not open the registry: it
 * cannot unwrap the stored data key, or it is the wrong sort of key (a
 * passphrase where the registry was sealed with raw key bytes, or the other
 * way round). Thrown at open, before anything is read or written.
 *
 * @example
 * ```ts
 * import { CryptoError, WrongKeyError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new WrongKeyError("the key does not unwrap the data key");
 * assert.ok(err instanceof CryptoError);
 * assert.equal(err.message, "wrong key: the key does not unwrap the data key");
 * ```
 */
export class WrongKeyError extends CryptoError {
  /**
   * Creates the error.
   *
   * @param detail Why the key was refused; the message is `wrong key: ${detail}`.
   * @param options `cause`, if any.
   */
  constructor(detail: string, options?: ErrorOptions) {
    super(`wrong key: ${detail}`, options);
  }
}

/**
 * A sealed configuration value was read from a registry opened without a key,
 * or a registry opened without a key was asked to write into a sealed one
 * (the value would be stored in plain text).
 *
 * @example
 * ```ts
 * import { KeyRequiredError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new KeyRequiredError("api.token", "envelope");
 * assert.equal(
 *   err.message,
 *   "value of config key 'api.token' is sealed (envelope scheme); open the registry with openEncrypted",
 * );
 * assert.equal(
 *   new KeyRequiredError("api.token", "envelope", "write").message,
 *   "cannot write config key 'api.token' without the key: this registry is sealed (envelope scheme); open it with openEncrypted",
 * );
 * ```
 */
export class KeyRequiredError extends CryptoError {
  /** The config key whose value is sealed. */
  readonly key: string;

  /**
   * Creates the error.
   *
   * @param key The config key whose value is sealed.
   * @param scheme The scheme it is sealed under, `"envelope"` or `"oxide-k"`.
   * @param operation `"read"` (default): the value is sealed; `"write"`: the registry is sealed, so a keyless write is refused.
   */
  constructor(key: string, scheme: string, operation: "read" | "write" = "read") {
    super(
      operation === "write"
        ? `cannot write config key '${key}' without the key: this registry is sealed (${scheme} scheme); open it with openEncrypted`
        : `value of config key '${key}' is sealed (${scheme} scheme); open the registry with openEncrypted`,
    );
    this.key = key;
  }
}

/**
 * Every value of {@linkcode SealedValueError.reason}.
 *
 * @example
 * ```ts
 * import { SealedValueError, type SealedValueErrorReason, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32).fill(1));
 * await reg.setConfig("api.token", "s3cr3t");
 * // Copy the sealed value to another config key behind the registry's back.
 * reg.db.exec("INSERT INTO config (key, value, updated_at) SELECT 'db.url', value, updated_at FROM config");
 * const err = await reg.getConfig("db.url").catch((e) => e);
 * assert.ok(err instanceof SealedValueError);
 * const reason: SealedValueErrorReason = err.reason;
 * assert.equal(reason, "moved");
 * ```
 */
export type SealedValueErrorReason =
  | "tampered"
  | "moved"
  | "wrong_key_or_tampered"
  | "wrong_scheme"
  | "unsealed"
  | "malformed"
  | "unsupported_version";

/**
 * One stored configuration value cannot be opened: it was altered or
 * truncated, copied from another config key, sealed under another scheme or
 * key, or stored unsealed in an encrypted registry. The message names the
 * config key and the reason.
 *
 * @example
 * ```ts
 * import { SealedValueError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new SealedValueError("db.url", "moved", "it was sealed for config key 'api.token'");
 * assert.equal(err.reason, "moved");
 * assert.equal(
 *   err.message,
 *   "config decrypt: value of config key 'db.url' cannot be opened: it was sealed for config key 'api.token'",
 * );
 * ```
 */
export class SealedValueError extends CryptoError {
  /** The config key whose value failed. */
  readonly key: string;
  /** Why it failed, as a stable code. */
  readonly reason: SealedValueErrorReason;

  /**
   * Creates the error.
   *
   * @param key The config key whose value failed.
   * @param reason Why, as a stable code.
   * @param detail Why, in words, for the message.
   * @param options `cause`, if any.
   */
  constructor(
    key: string,
    reason: SealedValueErrorReason,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(
      `config decrypt: value of config key '${key}' cannot be opened: ${detail}`,
      options,
    );
    this.key = key;
    this.reason = reason;
  }
}

/**
 * Any other failure; the message is the inner message, as oxide-k's `Other`.
 *
 * @example
 * ```ts
 * import { OtherError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new OtherError("invalid updated_at: x").kind, "other");
 * ```
 */
export class OtherError extends KernelError {
  /**
   * Creates the error.
   *
   * @param message The full message.
   * @param options `cause`, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("other", message, options);
  }
}

/**
 * A revision asked of the change feed or of history is older than what
 * retention kept (etcd's `ErrCompacted`): `required revision 5 has been
 * compacted: the oldest available revision is 120`. Resume from
 * `compactedRevision` (missing what lay between), or re-read the current
 * state and watch from there.
 *
 * @example
 * ```ts
 * import { CompactedError, KernelError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new CompactedError(5, 120);
 * assert.ok(err instanceof KernelError);
 * assert.equal(err.kind, "compacted");
 * assert.equal(err.compactedRevision, 120);
 * assert.equal(err.message, "required revision 5 has been compacted: the oldest available revision is 120");
 * ```
 */
export class CompactedError extends KernelError {
  /** The revision that was asked for. */
  readonly revision: number;
  /** The oldest revision still available. */
  readonly compactedRevision: number;

  /**
   * Creates the error.
   *
   * @param revision The revision asked for.
   * @param compactedRevision The oldest revision still available.
   */
  constructor(revision: number, compactedRevision: number) {
    super(
      "compacted",
      `required revision ${revision} has been compacted: the oldest available revision is ${compactedRevision}`,
    );
    this.revision = revision;
    this.compactedRevision = compactedRevision;
  }
}
