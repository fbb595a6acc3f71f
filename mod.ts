/**
 * `@oxide/registry`: the kernel-owned state registry of the Oxide agent-native
 * OS. Module metadata and system-wide configuration in one embedded SQLite
 * file that a Rust oxide-k 0.3.0 kernel can share.
 *
 * Two storage engines: `ffi` (our binding to the system libsqlite3, needs
 * `--allow-ffi`) and `node` (the `node:sqlite` module built into Deno, needs
 * only read/write permission on the file). `engine: "auto"` picks `ffi` when
 * it may.
 *
 * @example Quick start
 * ```ts
 * import { StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.upsertModule(
 *   { id: "echo", name: "Echo", version: "0.1.0", kind: "native", description: "Demo module that echoes Ping commands." },
 *   "loaded",
 * );
 * await reg.setConfig("kernel.greeting", "Hello, agent.");
 * assert.equal(await reg.getConfig("kernel.greeting"), "Hello, agent.");
 * await reg.setModuleState("echo", "running");
 * assert.deepEqual((await reg.listModules()).map((m) => [m.id, m.state]), [["echo", "running"]]);
 * ```
 *
 * @module
 */
export {
  type EncryptedRegistryOptions,
  type ListModulesOptions,
  type RegistryOptions,
  StateRegistry,
} from "./src/registry/registry.ts";
export type { ConfigChange, ModuleChange, WatchEvent, WatchIterator, WatchOptions } from "./src/registry/watch.ts";
export type { ConfigHistoryOptions, ConfigVersion } from "./src/registry/history.ts";
export type { RetentionOptions } from "./src/store/sqlite/history.ts";
export type {
  ConfigEntry,
  ListConfigOptions,
  Page,
  SkippedRow,
  UpdateOptions,
  WriteOptions,
} from "./src/registry/entries.ts";
export { Batch, type BatchResult } from "./src/registry/batch.ts";
export type { RekeyOptions, ResealOptions, SealingInfo, SealingOptions, SealingScheme } from "./src/sealing/sealing.ts";
export { KEY_ENV_VAR, type RegistryKey } from "./src/sealing/key.ts";
export {
  type EtcdOptions,
  type EtcdTlsOptions,
  isEtcdAddress,
  parseEtcdAddress,
  type ResolvedEtcdConfig,
} from "./src/store/etcd/address.ts";
export { MIN_PBKDF2_ITERATIONS } from "./src/sealing/envelope.ts";
export {
  isModuleKind,
  isModuleState,
  MODULE_KINDS,
  MODULE_STATES,
  type ModuleKind,
  type ModuleMetadata,
  type ModuleRecord,
  type ModuleState,
} from "./src/module.ts";
export {
  BusError,
  CompactedError,
  ConfigNotFoundError,
  ConflictError,
  CryptoError,
  DeniedError,
  DuplicateModuleError,
  KernelError,
  type KernelErrorKind,
  KeyRequiredError,
  ModuleError,
  OtherError,
  RegistryError,
  type RegistryErrorOptions,
  SealedValueError,
  type SealedValueErrorReason,
  SerializationError,
  UnknownModuleError,
  WrongKeyError,
} from "./src/errors.ts";
export type {
  BackupProgress,
  Engine,
  EngineBackupOptions,
  EngineName,
  Row,
  RunResult,
  SqlValue,
  Statement,
} from "./src/sqlite/engine.ts";
export type { BackupOptions, BackupResult } from "./src/ops/backup.ts";
export type { VerifyCheck, VerifyProblem, VerifyReport } from "./src/ops/verify.ts";
export {
  EXPORT_FORMAT,
  type ExportedChange,
  type ExportedConfig,
  type ExportedDecision,
  type ExportedModule,
  type ExportedRevisions,
  type ExportedSealing,
  type ExportOptions,
  type ImportOptions,
  type ImportResult,
  type RegistryExport,
} from "./src/ops/export.ts";
export type { Durability, EngineChoice, OpenEngineOptions } from "./src/sqlite/open.ts";
export { decodeJson, encodeJson, type JsonValue } from "./src/json.ts";
export {
  ConfigSchemaError,
  type InferSchemaOutput,
  type StandardSchemaIssue,
  type StandardSchemaProps,
  type StandardSchemaResult,
  type StandardSchemaTypes,
  type StandardSchemaV1,
} from "./src/typed_config.ts";
export { MAX_CONFIG_VALUE_BYTES } from "./src/limits.ts";
export { formatTimestamp, parseTimestamp } from "./src/time.ts";
export {
  defineExtension,
  type Extension,
  type ExtensionDefinition,
  ExtensionError,
  type ExtensionStatus,
  extensionVersion,
  listExtensions,
  type Migration,
  openExtension,
} from "./src/ext/extension.ts";
export {
  type Decision,
  DecisionLog,
  type DecisionPage,
  type DecisionQuery,
  type DecisionReadOptions,
  newDecision,
  type NewDecisionOptions,
} from "./src/ext/decision_log.ts";
export {
  loadManifest,
  MANIFEST_FILE_NAME,
  ManifestError,
  manifestMetadata,
  manifestToJson,
  type ModuleManifest,
  parseManifest,
  registerModuleFromManifest,
  type ResolvedManifest,
} from "./src/ext/manifest.ts";
