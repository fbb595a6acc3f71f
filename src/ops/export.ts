/**
 * Export of a registry to a JSON document and import from one: modules,
 * config (sealed values stay sealed unless plaintext is asked for) and the
 * decision log. Import checks the whole document before it writes, then
 * writes everything in one transaction, or nothing.
 *
 * @module
 */
import { CryptoError, KeyRequiredError, SerializationError } from "../errors.ts";
import { isModuleKind, isModuleState, type ModuleKind, type ModuleState } from "../module.ts";
import { applyMigrations } from "../schema.ts";
import { BATCH_END_SQL, CURRENT_REVISION_SQL, REWRITE_BEGIN_SQL } from "../store/sqlite/_revision_sql.ts";
import { sealedScheme, type Sealing, SEALING_MIGRATIONS } from "../sealing/sealing.ts";
import { jsonProblemText, jsonTextProblem, looksSealed } from "./verify.ts";
import { isEnvelopeSealed } from "../sealing/envelope.ts";
import type { Engine, Row, SqlValue } from "../sqlite/engine.ts";
import { formatTimestamp, parseTimestamp } from "../time.ts";
import { describe } from "../_describe.ts";
import { loneSurrogate } from "../_text.ts";

/** The `format` of every export document. */
export const EXPORT_FORMAT = "oxide-registry-export";

/**
 * A registry as a JSON document: what {@linkcode StateRegistry.exportData} returns and
 * {@linkcode StateRegistry.importData} reads. Stored text is kept exactly (config values as their JSON text, so
 * integers beyond 2^53 survive; timestamps as written).
 *
 * @example
 * ```ts
 * import { type RegistryExport, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * const doc: RegistryExport = await reg.exportData();
 * assert.equal(doc.format, "oxide-registry-export");
 * assert.deepEqual(doc.config.map((c) => [c.key, c.json]), [["max_threads", "8"]]);
 * ```
 */
export interface RegistryExport {
  /** Always `"oxide-registry-export"`. */
  format: typeof EXPORT_FORMAT;
  /** The document's format version: 2 (import also reads 1, which has no revisions). */
  version: 2;
  /** When it was made (RFC 3339). */
  exportedAt: string;
  /** The store revision the document is a snapshot of; `null` for a file without a change log (never opened writable). */
  revision: number | null;
  /** The revision below which compaction dropped history (0: none dropped); `null` without a change log. */
  compactedRevision: number | null;
  /** The sealing parameters (table `oxide_sealing`) when sealed values are kept sealed; else `null`. */
  sealing: ExportedSealing | null;
  /** Every module, by id. */
  modules: ExportedModule[];
  /** Every config value, by key. */
  config: ExportedConfig[];
  /** The decision log (`xai_decisions`), oldest first; `null` when the registry has none. */
  decisions: ExportedDecision[] | null;
  /**
   * The change log (every kept change of every key, oldest first: config history, module history, deletes), from
   * which an import into a new registry restores revisions, versions and history exactly; `null` without a change
   * log or when left out (`history: false`).
   */
  changes: ExportedChange[] | null;
}

/**
 * A key's revisions, as the store keeps them (etcd's, as on `ConfigEntry`).
 *
 * @example
 * ```ts
 * import { type ExportedRevisions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * await reg.setConfig("max_threads", 16);
 * const revisions: ExportedRevisions | null | undefined = (await reg.exportData()).config[0]?.revisions;
 * assert.deepEqual(revisions, { version: 2, createRevision: 1, modRevision: 2 });
 * ```
 */
export interface ExportedRevisions {
  /** Writes since the key was created (1 for a create). */
  version: number;
  /** The revision that created the key (its current life). */
  createRevision: number;
  /** The revision of its last write. */
  modRevision: number;
}

/**
 * One change-log row: a put (with the stored value) or a delete of one key, at one revision. Config values as in
 * {@linkcode ExportedConfig} (`json`, or `sealed` as stored); module columns as stored (`kind` and `state` as their
 * JSON text, as oxide-k writes them).
 *
 * @example
 * ```ts
 * import { type ExportedChange, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * await reg.deleteConfig("max_threads");
 * const changes: ExportedChange[] | null = (await reg.exportData()).changes;
 * assert.deepEqual(changes?.map((c) => [c.revision, c.type, c.key, c.json]), [
 *   [1, "put", "max_threads", "8"],
 *   [2, "delete", "max_threads", undefined],
 * ]);
 * ```
 */
export interface ExportedChange {
  /** The revision of the change. */
  revision: number;
  /** Which key space: `"config"`, `"modules"` or `"meta"` (the registry's own records). */
  space: "config" | "modules" | "meta";
  /** The config key, module id or meta key. */
  key: string;
  /** `"put"` or `"delete"`. */
  type: "put" | "delete";
  /** The key's version after the change (0 for a delete). */
  version: number;
  /** The revision that created the key's life this change belongs to. */
  createRevision: number;
  /** A config put's value as JSON text. */
  json?: string;
  /** A config put's value as sealed text, as stored. */
  sealed?: string;
  /** A module put's columns, as stored. */
  module?: { name: string; version: string; kind: string; state: string; description: string | null };
  /** The row's stored `updated_at` (`null` for a delete or a meta change). */
  updatedAt: string | null;
  /** When the change was logged (Unix seconds). */
  changedAt: number;
}

/** A module row. */
export interface ExportedModule {
  /** Module id. */
  id: string;
  /** Display name. */
  name: string;
  /** Version text. */
  version: string;
  /** `"native"` or `"wasm"`. */
  kind: ModuleKind;
  /** Lifecycle state. */
  state: ModuleState;
  /** Description, or `null`. */
  description: string | null;
  /** The stored `updated_at` text. */
  updatedAt: string;
  /** The record's version and revisions; `null` in a file without a change log (or for a document of version 1). */
  revisions?: ExportedRevisions | null;
}

/** A config row: exactly one of `json` (the value's JSON text) and `sealed` (the stored sealed text). */
export interface ExportedConfig {
  /** Config key. */
  key: string;
  /** The value as JSON text, when plain (or exported as plaintext). */
  json?: string;
  /** The sealed text as stored, when kept sealed. */
  sealed?: string;
  /** The stored `updated_at` text. */
  updatedAt: string;
  /** The key's version and revisions; `null` in a file without a change log (or for a document of version 1). */
  revisions?: ExportedRevisions | null;
}

/** The stored sealing parameters, column by column (no key material: the data key is stored wrapped). */
export interface ExportedSealing {
  /** `"envelope"` or `"oxide-k"`. */
  scheme: string;
  /** Format version. */
  version: number;
  /** Key derivation (`"pbkdf2-sha256"`, `"raw"`), or `null` (oxide-k scheme). */
  kdf: string | null;
  /** PBKDF2 iterations, or `null`. */
  iterations: number | null;
  /** PBKDF2 salt, or `null`. */
  salt: string | null;
  /** Data key id, or `null`. */
  keyId: string | null;
  /** The wrapped data key, or `null`. */
  wrappedKey: string | null;
  /** Key generation. */
  generation: number;
}

/** A decision-log row, column by column (`inputs` and `output` as their JSON text). */
export interface ExportedDecision {
  /** UUID. */
  id: string;
  /** Stored RFC 3339 text. */
  timestamp: string;
  /** Who decided. */
  actor: string;
  /** What was done. */
  action: string;
  /** Why. */
  rationale: string;
  /** JSON text. */
  inputs: string;
  /** JSON text. */
  output: string;
  /** As stored (the f32 widened to f64). */
  confidence: number;
}

/**
 * Options for {@linkcode StateRegistry.exportData}.
 *
 * @example
 * ```ts
 * import { type ExportOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.openEncrypted(":memory:", new Uint8Array(32).fill(3));
 * await reg.setConfig("api_token", "s3cr3t");
 * const options: ExportOptions = { plaintext: true };
 * const doc = await reg.exportData(options);
 * assert.equal(doc.config[0]?.json, '"s3cr3t"');
 * assert.equal(doc.sealing, null);
 * ```
 */
export interface ExportOptions {
  /** Open sealed values and export their plaintext (needs a registry opened with a key). Default `false`. */
  plaintext?: boolean | undefined;
  /**
   * Include the change log (`changes`: every kept version of every key; with `plaintext`, old values opened too).
   * Default `true`. Without it an import cannot restore revisions; each row still carries its own.
   */
  history?: boolean | undefined;
  /** Called as rows are exported. */
  onProgress?: ((done: number, total: number) => void) | undefined;
}

/**
 * Options for {@linkcode StateRegistry.importData}.
 *
 * @example
 * ```ts
 * import { type ImportOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using source = await StateRegistry.inMemory();
 * await source.setConfig("max_threads", 8);
 * await using target = await StateRegistry.inMemory();
 * let calls = 0;
 * const options: ImportOptions = { onProgress: () => calls++ };
 * await target.importData(await source.exportData(), options);
 * assert.ok(calls > 0);
 * ```
 */
export interface ImportOptions {
  /** Called as values are prepared (sealed). */
  onProgress?: ((done: number, total: number) => void) | undefined;
}

/**
 * What {@linkcode StateRegistry.importData} wrote.
 *
 * @example
 * ```ts
 * import { type ImportResult, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using source = await StateRegistry.inMemory();
 * await source.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
 * await using target = await StateRegistry.inMemory();
 * const result: ImportResult = await target.importData(await source.exportData());
 * assert.deepEqual(result, { modules: 1, config: 0, decisions: 0, revisionsRestored: true });
 * ```
 */
export interface ImportResult {
  /** Modules written. */
  modules: number;
  /** Config values written. */
  config: number;
  /** Decisions written (decisions already logged with the same content are skipped). */
  decisions: number;
  /**
   * Whether the document's revisions, versions and history were restored exactly (`changes` imported into a new,
   * empty registry, values stored as they are); otherwise every row was written as a new change.
   */
  revisionsRestored: boolean;
  /** Why they were not (`"this registry is not new and empty"`, ...); absent when they were. */
  revisionsSkipped?: string;
}

/** What export and import need of the registry. */
export interface TransferTarget {
  /** The registry's connection. */
  db: Engine;
  /** The registry's sealing, when opened with a key. */
  sealing: Sealing | undefined;
  /** Creates the decision log's table when missing (`DecisionLog.open`). */
  openDecisionLog(): Promise<unknown>;
}

const SQL = {
  modules: "SELECT id, name, version, kind, state, description, updated_at FROM modules ORDER BY id",
  config: "SELECT key, value, updated_at FROM config ORDER BY key",
  sealingTable: "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_sealing'",
  sealing: "SELECT scheme, version, kdf, iterations, salt, key_id, wrapped_key, generation FROM oxide_sealing",
  decisionsTable: "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'xai_decisions'",
  decisions:
    "SELECT id, timestamp, actor, action, rationale, inputs, output, confidence FROM xai_decisions ORDER BY rowid",
  upsertModule: `INSERT INTO modules (id, name, version, kind, state, description, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT(id) DO UPDATE SET name = excluded.name, version = excluded.version, kind = excluded.kind,
    state = excluded.state, description = excluded.description, updated_at = excluded.updated_at`,
  upsertConfig: `INSERT INTO config (key, value, updated_at) VALUES (?1, ?2, ?3)
ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
  insertSealing:
    `INSERT INTO oxide_sealing (id, scheme, version, kdf, iterations, salt, key_id, wrapped_key, generation,
    updated_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`,
  decision: "SELECT timestamp, actor, action, rationale, inputs, output, confidence FROM xai_decisions WHERE id = ?1",
  insertDecision: `INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`,
  configCount: "SELECT count(*) AS n FROM config",
  moduleCount: "SELECT count(*) AS n FROM modules",
  changesTable: "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_changes'",
  changes: `SELECT revision, space, key, type, version, create_revision, value, name, module_version, kind, state,
    description, updated_at, changed_at FROM oxide_changes ORDER BY seq`,
  revision: CURRENT_REVISION_SQL,
  compacted: "SELECT compacted FROM oxide_revision WHERE id = 1",
  insertChange: `INSERT INTO oxide_changes (revision, space, key, type, version, create_revision, value, name,
    module_version, kind, state, description, updated_at, changed_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)`,
  setCompacted: "UPDATE oxide_revision SET compacted = ?1 WHERE id = 1",
  // Each key's current entry: its newest log row (a put, unless the key was deleted).
  current: `SELECT space, key, type, version, create_revision, revision FROM oxide_changes
    WHERE seq IN (SELECT max(seq) FROM oxide_changes GROUP BY space, key)`,
} as const;

/**
 * Exports the registry (see `StateRegistry.exportData`). Every row is read in one transaction, so the document is
 * one consistent state even while other processes write.
 *
 * @throws {CryptoError} when `plaintext` is asked for and the registry holds sealed values but was opened without a
 * key.
 * @throws {SerializationError} naming the row when a row cannot be read (`verify` lists them all).
 * @throws {SealedValueError} when `plaintext` is asked for and a sealed value does not open.
 */
export async function exportRegistry(target: TransferTarget, options: ExportOptions = {}): Promise<RegistryExport> {
  checkOptions(options);
  const plaintext = options.plaintext ?? false;
  if (typeof plaintext !== "boolean") throw new TypeError(`plaintext must be a boolean, got ${describe(plaintext)}`);
  const history = options.history ?? true;
  if (typeof history !== "boolean") throw new TypeError(`history must be a boolean, got ${describe(history)}`);
  const { db, sealing } = target;
  // One snapshot of every table (the write lock is held only for these reads).
  const snapshot = db.transaction(() => {
    const logged = db.prepare(SQL.changesTable).get() !== undefined;
    return {
      modules: db.prepare(SQL.modules).all(),
      config: db.prepare(SQL.config).all(),
      sealing: db.prepare(SQL.sealingTable).get() === undefined ? undefined : db.prepare(SQL.sealing).get(),
      decisions: db.prepare(SQL.decisionsTable).get() === undefined ? undefined : db.prepare(SQL.decisions).all(),
      revision: logged ? Number(db.prepare(SQL.revision).get()?.revision ?? 0) : null,
      compacted: logged ? Number(db.prepare(SQL.compacted).get()?.compacted ?? 0) : null,
      current: logged ? db.prepare(SQL.current).all() : [],
      changes: logged && history ? db.prepare(SQL.changes).all() : undefined,
    };
  });
  const total = snapshot.modules.length + snapshot.config.length + (snapshot.decisions?.length ?? 0) +
    (snapshot.changes?.length ?? 0);
  let done = 0;
  const progress = () => options.onProgress?.(++done, total);
  const current = new Map<string, Row>();
  for (const row of snapshot.current) {
    if (row.type === "put") current.set(`${String(row.space)}\0${String(row.key)}`, row);
  }
  const revisionsOf = (space: string, key: string): { revisions: ExportedRevisions | null } => {
    const row = current.get(`${space}\0${key}`);
    // No log entry: a file without a change log (never opened writable by this package).
    if (row === undefined) return { revisions: null };
    return {
      revisions: {
        version: Number(row.version),
        createRevision: Number(row.create_revision),
        modRevision: Number(row.revision),
      },
    };
  };

  const modules = snapshot.modules.map((row) => {
    const module = exportedModule(row, revisionsOf);
    progress();
    return module;
  });
  const config: ExportedConfig[] = [];
  let keptSealed = false;
  const oxideK = oxideKSealed(snapshot.sealing, snapshot.config);
  for (const row of snapshot.config) {
    const key = text(row.key, "config", "key", String(row.key));
    const stored = text(row.value, "config", "value", key);
    const updatedAt = text(row.updated_at, "config", "updated_at", key);
    if (!isEnvelopeSealed(stored) && looksSealed(stored) && !oxideK) {
      // Text only oxide-k's scheme would have sealed, in a registry that is not oxide-k-sealed: a bad row, not a
      // sealed one (kept as sealed, it would make the document unrestorable).
      throw unreadable(
        "config",
        key,
        "its value is not JSON and this registry is not sealed in the oxide-k scheme, so it is no sealed value either",
      );
    }
    if (looksSealed(stored)) {
      if (!plaintext) {
        keptSealed = true;
        config.push({ key, sealed: stored, updatedAt, ...revisionsOf("config", key) });
      } else {
        config.push({ key, json: await openPlaintext(sealing, key, stored), updatedAt, ...revisionsOf("config", key) });
      }
    } else {
      checkJson(stored, `config key '${key}'`);
      config.push({ key, json: stored, updatedAt, ...revisionsOf("config", key) });
    }
    progress();
  }
  const decisions = snapshot.decisions?.map((row) => {
    const decision = exportedDecision(row);
    progress();
    return decision;
  }) ?? null;
  let changes: ExportedChange[] | null = null;
  if (snapshot.changes !== undefined) {
    changes = [];
    for (const row of snapshot.changes) {
      const change = exportedChange(row);
      if (change.space === "config" && change.type === "put") {
        // Stored as the config row was: JSON text, or sealed text (opened for a plaintext export).
        const stored = change.json!;
        delete change.json;
        if (!looksSealed(stored)) change.json = stored;
        else if (plaintext) change.json = await openPlaintext(sealing, change.key, stored);
        else {
          keptSealed = true;
          change.sealed = stored;
        }
      }
      changes.push(change);
      progress();
    }
  }
  const sealingRow = snapshot.sealing;
  return {
    format: EXPORT_FORMAT,
    version: 2,
    exportedAt: formatTimestamp(new Date()),
    revision: snapshot.revision,
    compactedRevision: snapshot.compacted,
    sealing: keptSealed || (!plaintext && sealingRow !== undefined)
      ? (sealingRow === undefined ? oxideKSealing() : exportedSealing(sealingRow))
      : null,
    modules,
    config,
    decisions,
    changes,
  };
}

async function openPlaintext(sealing: Sealing | undefined, key: string, stored: string): Promise<string> {
  if (sealing === undefined) {
    throw new CryptoError(
      `cannot export config key '${key}' as plaintext: it is sealed and the registry was opened without a key`,
    );
  }
  return await sealing.open(key, stored);
}

/**
 * Imports a document (see `StateRegistry.importData`).
 *
 * @throws {SerializationError} listing what is wrong when the document is not a valid export; nothing is written.
 * @throws {KeyRequiredError} when plain values would go into a sealed registry opened without a key.
 * @throws {CryptoError} when sealed values would go into a registry sealed under another key.
 */
export async function importRegistry(
  target: TransferTarget,
  document: unknown,
  options: ImportOptions = {},
): Promise<ImportResult> {
  checkOptions(options);
  const doc = checkDocument(document);
  const { db, sealing } = target;
  const sealedEntries = doc.config.filter((entry) => entry.sealed !== undefined);
  const plainEntries = doc.config.filter((entry) => entry.json !== undefined);
  // Revisions come back exactly only into a new, empty registry, with every value stored as it is in the document.
  const skipped = doc.changesDiffer !== undefined
    ? `the document's change log does not match its rows: ${doc.changesDiffer}`
    : doc.changes === null
    ? "the document has no change log"
    : sealing !== undefined && plainEntries.length > 0
    ? "plain values are sealed on the way in"
    : !isEmptyRegistry(db)
    ? "this registry is not new and empty"
    : undefined;
  const restore = skipped === undefined;
  const sealedChanges = restore && doc.changes!.some((change) => change.sealed !== undefined);
  const installSealing = (sealedEntries.length > 0 || sealedChanges) &&
    checkSealedImport(db, sealing, doc, plainEntries.length > 0);
  if (plainEntries.length > 0 && sealing === undefined) {
    // The registry's own keyless-write detection: the `oxide_sealing` table, or values sealed by a Rust kernel.
    const sealedAs = sealedScheme(db);
    if (sealedAs !== undefined) throw new KeyRequiredError(plainEntries[0]!.key, sealedAs, "write");
  }
  if (sealing !== undefined) {
    // Sealed values are copied as they are: check that each opens here before anything is written.
    for (const entry of sealedEntries) await sealing.open(entry.key, entry.sealed!);
  }
  if (doc.decisions !== null && doc.decisions.length > 0) await target.openDecisionLog();

  const total = doc.config.length;
  let done = 0;
  const writeAll = (stored: ReadonlyMap<string, string>): ImportResult => {
    if (installSealing) writeSealing(db, doc.sealing!);
    const upsertModule = db.prepare(SQL.upsertModule);
    for (const m of doc.modules) {
      upsertModule.run(m.id, m.name, m.version, `"${m.kind}"`, `"${m.state}"`, m.description, m.updatedAt);
    }
    const upsertConfig = db.prepare(SQL.upsertConfig);
    for (const entry of doc.config) {
      upsertConfig.run(entry.key, stored.get(entry.key) ?? entry.sealed ?? entry.json!, entry.updatedAt);
    }
    let decisions = 0;
    for (const d of doc.decisions ?? []) {
      const existing = db.prepare(SQL.decision).get(d.id);
      const values: SqlValue[] = [d.timestamp, d.actor, d.action, d.rationale, d.inputs, d.output, d.confidence];
      if (existing !== undefined) {
        if (Object.values(existing).every((value, i) => value === values[i])) continue;
        throw new SerializationError(`decision '${d.id}' is already logged with other content: nothing was imported`);
      }
      db.prepare(SQL.insertDecision).run(d.id, ...values);
      decisions++;
    }
    if (restore) {
      const insertChange = db.prepare(SQL.insertChange);
      for (const c of doc.changes!) {
        const m = c.module;
        insertChange.run(
          c.revision,
          c.space,
          c.key,
          c.type,
          c.version,
          c.createRevision,
          c.json ?? c.sealed ?? null,
          m?.name ?? null,
          m?.version ?? null,
          m?.kind ?? null,
          m?.state ?? null,
          m?.description ?? null,
          c.updatedAt,
          c.changedAt,
        );
      }
      db.prepare(SQL.setCompacted).run(doc.compactedRevision ?? 0);
    }
    return {
      modules: doc.modules.length,
      config: doc.config.length,
      decisions,
      revisionsRestored: restore,
      ...(skipped === undefined ? {} : { revisionsSkipped: skipped }),
    };
  };

  if (sealing !== undefined && plainEntries.length > 0) {
    let result: ImportResult | undefined;
    const values = plainEntries.map((entry) => {
      options.onProgress?.(++done, total);
      return [entry.key, entry.json!] as const;
    });
    await sealing.writeMany(values, (stored, guard) =>
      db.transaction(() => {
        // The sealing layer's guard, checked in this transaction: the keys the values were sealed under are current.
        const row = db.prepare("SELECT generation FROM oxide_sealing WHERE id = 1").get();
        const version = typeof row?.generation === "number" ? row.generation + 1 : 0;
        const current = [{
          space: "meta" as const,
          key: "sealing",
          value: "",
          updatedAt: "",
          version,
          createRevision: 0,
          modRevision: 0,
        }];
        if (guard.target !== "version" || version !== guard.equals) {
          return { succeeded: false, revision: 0, changed: [], current };
        }
        result = writeAll(stored);
        return { succeeded: true, revision: 0, changed: [] };
      }));
    return result!;
  }
  const result = db.transaction(() => {
    // A rewrite in place: the triggers log nothing, and the document's own change log is copied in instead.
    if (restore) db.exec(REWRITE_BEGIN_SQL);
    const written = writeAll(new Map());
    if (restore) db.exec(BATCH_END_SQL);
    return written;
  });
  options.onProgress?.(total, total);
  return result;
}

/** A registry with a change log and nothing in it yet (revision 0): the only place revisions can be restored. */
function isEmptyRegistry(db: Engine): boolean {
  if (db.prepare(SQL.changesTable).get() === undefined) return false;
  return Number(db.prepare(SQL.revision).get()?.revision ?? 0) === 0 &&
    Number(db.prepare(SQL.moduleCount).get()?.n ?? 0) === 0 &&
    Number(db.prepare(SQL.configCount).get()?.n ?? 0) === 0;
}

/**
 * Whether the sealed values of `doc` may be copied into this registry as they are: into a registry sealed under the
 * same data key (or, opened with the key, under the same oxide-k key: each value is then opened to check), or into
 * one that is not sealed and holds no config value, which then takes the document's sealing parameters.
 *
 * @returns Whether the document's sealing parameters must be installed.
 */
function checkSealedImport(
  db: Engine,
  sealing: Sealing | undefined,
  doc: CheckedDocument,
  hasPlain: boolean,
): boolean {
  const docSealing = doc.sealing;
  if (docSealing === null) {
    throw new SerializationError("the document holds sealed values but no sealing parameters: it is not an export");
  }
  const here = db.prepare(SQL.sealingTable).get() === undefined ? undefined : db.prepare(SQL.sealing).get();
  if (here !== undefined) {
    if (here.scheme === "envelope" && docSealing.scheme === "envelope" && here.key_id === docSealing.keyId) {
      return false;
    }
    if (here.scheme === "oxide-k" && docSealing.scheme === "oxide-k" && sealing !== undefined) return false;
    throw new CryptoError(
      `the document's values are sealed under another key than this registry's (data key ${
        docSealing.keyId ?? "oxide-k"
      }, here ${String(here.key_id ?? here.scheme)}): export them as plaintext, or import into a new registry`,
    );
  }
  if (hasPlain) {
    throw new CryptoError(
      "the document mixes sealed and plain values: import it into a registry opened with its key, or export it again",
    );
  }
  if (Number(db.prepare(SQL.configCount).get()?.n ?? 0) > 0) {
    throw new CryptoError(
      "the document's values are sealed, and this registry already holds config values: import it into a new registry",
    );
  }
  return true;
}

function writeSealing(db: Engine, s: ExportedSealing): void {
  applyMigrations(db, "sealing", SEALING_MIGRATIONS);
  db.prepare(SQL.insertSealing).run(
    s.scheme,
    s.version,
    s.kdf,
    s.iterations,
    s.salt,
    s.keyId,
    s.wrappedKey,
    s.generation,
    formatTimestamp(new Date()),
  );
}

function oxideKSealing(): ExportedSealing {
  return {
    scheme: "oxide-k",
    version: 1,
    kdf: null,
    iterations: null,
    salt: null,
    keyId: null,
    wrappedKey: null,
    generation: 0,
  };
}

function exportedSealing(row: Row): ExportedSealing {
  return {
    scheme: String(row.scheme),
    version: Number(row.version),
    kdf: row.kdf === null ? null : String(row.kdf),
    iterations: row.iterations === null ? null : Number(row.iterations),
    salt: row.salt === null ? null : String(row.salt),
    keyId: row.key_id === null ? null : String(row.key_id),
    wrappedKey: row.wrapped_key === null ? null : String(row.wrapped_key),
    generation: Number(row.generation),
  };
}

function exportedChange(row: Row): ExportedChange {
  const revision = Number(row.revision);
  const name = `${String(row.space)} '${String(row.key)}' at revision ${revision}`;
  const space = row.space;
  if (space !== "config" && space !== "modules" && space !== "meta") {
    throw unreadable("change", name, `space ${describe(space)} is not config, modules or meta`);
  }
  if (row.type !== "put" && row.type !== "delete") {
    throw unreadable("change", name, `type ${describe(row.type)} is not put or delete`);
  }
  const change: ExportedChange = {
    revision,
    space,
    key: text(row.key, "change", "key", name),
    type: row.type,
    version: Number(row.version),
    createRevision: Number(row.create_revision),
    updatedAt: row.updated_at === null ? null : text(row.updated_at, "change", "updated_at", name),
    changedAt: Number(row.changed_at),
  };
  if (row.type === "put" && space === "config") change.json = text(row.value, "change", "value", name);
  if (row.type === "put" && space === "modules") {
    change.module = {
      name: text(row.name, "change", "name", name),
      version: text(row.module_version, "change", "module_version", name),
      kind: text(row.kind, "change", "kind", name),
      state: text(row.state, "change", "state", name),
      description: row.description === null ? null : text(row.description, "change", "description", name),
    };
  }
  return change;
}

function exportedModule(
  row: Row,
  revisionsOf: (space: string, key: string) => { revisions: ExportedRevisions | null },
): ExportedModule {
  const id = text(row.id, "module", "id", `rowid ${String(row.id)}`);
  const kind = decodeJsonText(row.kind);
  const state = decodeJsonText(row.state);
  if (!isModuleKind(kind)) throw unreadable("module", id, `kind ${describe(row.kind)} is not a module kind`);
  if (!isModuleState(state)) throw unreadable("module", id, `state ${describe(row.state)} is not a module state`);
  const updatedAt = text(row.updated_at, "module", "updated_at", id);
  if (parseTimestamp(updatedAt) === undefined) {
    throw unreadable("module", id, `updated_at ${describe(updatedAt)} is not an RFC 3339 timestamp`);
  }
  return {
    id,
    name: text(row.name, "module", "name", id),
    version: text(row.version, "module", "version", id),
    kind,
    state,
    description: row.description === null ? null : text(row.description, "module", "description", id),
    updatedAt,
    ...revisionsOf("modules", id),
  };
}

function exportedDecision(row: Row): ExportedDecision {
  const id = text(row.id, "decision", "id", String(row.id));
  const decision = {
    id,
    timestamp: text(row.timestamp, "decision", "timestamp", id),
    actor: text(row.actor, "decision", "actor", id),
    action: text(row.action, "decision", "action", id),
    rationale: text(row.rationale, "decision", "rationale", id),
    inputs: text(row.inputs, "decision", "inputs", id),
    output: text(row.output, "decision", "output", id),
    confidence: typeof row.confidence === "number" ? row.confidence : Number.NaN,
  };
  if (Number.isNaN(decision.confidence)) throw unreadable("decision", id, "confidence is not a number");
  return decision;
}

function decodeJsonText(stored: SqlValue | undefined): unknown {
  if (typeof stored !== "string") return undefined;
  try {
    return JSON.parse(stored);
  } catch {
    return undefined;
  }
}

function text(value: SqlValue | undefined, what: string, column: string, name: string): string {
  if (typeof value !== "string") throw unreadable(what, name, `${column} is not text: ${describe(value)}`);
  return value;
}

function unreadable(what: string, name: string, detail: string): SerializationError {
  return new SerializationError(`cannot export ${what} '${name}': ${detail} (run verify to list every bad row)`);
}

function checkJson(json: string, what: string): void {
  const problem = jsonTextProblem(json);
  if (problem !== undefined) {
    throw new SerializationError(`${jsonProblemText(what, problem)} (run verify to list every bad row)`);
  }
}

/**
 * Whether text that looks oxide-k-sealed is sealed: in a registry whose `oxide_sealing` table names the oxide-k
 * scheme, or, in a file without that table (as a Rust oxide-k kernel seals it), when no config value is plain JSON
 * (oxide-k seals every value of an encrypted registry).
 */
function oxideKSealed(sealingRow: Row | undefined, rows: readonly Row[]): boolean {
  if (sealingRow !== undefined) return sealingRow.scheme === "oxide-k";
  return rows.length > 0 && rows.every((row) => typeof row.value === "string" && looksSealed(row.value));
}

function checkOptions(options: unknown): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
}

// --- checking a document -------------------------------------------------------------------------------------------

type CheckedDocument = Omit<RegistryExport, "decisions" | "version"> & {
  version: 1 | 2;
  decisions: ExportedDecision[] | null;
  /** Why the change log cannot be restored (it does not end in the document's rows), set by the check. */
  changesDiffer?: string;
};

/** Checks every field of a document and collects every problem, so one message lists them (up to 10). */
function checkDocument(document: unknown): CheckedDocument {
  const problems: string[] = [];
  const fail = (where: string, what: string) => problems.push(`${where}: ${what}`);
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new SerializationError(`import needs an export document (a JSON object), got ${describe(document)}`);
  }
  const doc = document as Record<string, unknown>;
  if (doc.format !== EXPORT_FORMAT) {
    throw new SerializationError(`not an export document: format is ${describe(doc.format)}, not '${EXPORT_FORMAT}'`);
  }
  if (doc.version !== 1 && doc.version !== 2) {
    throw new SerializationError(
      `export format version ${describe(doc.version)} is not supported (this reads 1 and 2)`,
    );
  }
  const list = (name: string, nullable: boolean): Record<string, unknown>[] => {
    const value = doc[name];
    if (nullable && value === null) return [];
    if (!Array.isArray(value)) {
      fail(name, `expected an array, got ${describe(value)}`);
      return [];
    }
    return value.map((item, i) => {
      if (typeof item !== "object" || item === null || Array.isArray(item)) {
        fail(`${name}[${i}]`, `expected an object, got ${describe(item)}`);
        return {};
      }
      return item as Record<string, unknown>;
    });
  };
  const str = (where: string, item: Record<string, unknown>, field: string) => {
    const value = item[field];
    if (typeof value !== "string") fail(where, `${field} must be a string, got ${describe(value)}`);
    else if (value.includes("\0")) fail(where, `${field} must not contain a NUL character`);
    else if (loneSurrogate(value) !== undefined) {
      fail(where, `${field} must not contain a lone surrogate (${loneSurrogate(value)}), which has no UTF-8 form`);
    }
  };
  const time = (where: string, item: Record<string, unknown>, field: string) => {
    str(where, item, field);
    if (typeof item[field] === "string" && parseTimestamp(item[field] as string) === undefined) {
      fail(where, `${field} ${describe(item[field])} is not an RFC 3339 timestamp`);
    }
  };
  const json = (where: string, item: Record<string, unknown>, field: string) => {
    str(where, item, field);
    if (typeof item[field] === "string") {
      // The registry's own rules: a lone surrogate escape (`"\ud800"`) or `1e400` is JSON to JavaScript, but
      // serde_json (so oxide-k) refuses it, and `1e400` would read back as Infinity, written on as `null`.
      const problem = jsonTextProblem(item[field] as string);
      if (problem !== undefined) fail(where, jsonProblemText(field, problem));
    }
  };
  const unique = (name: string, items: Record<string, unknown>[], field: string) => {
    const seen = new Set<unknown>();
    for (const item of items) {
      if (seen.has(item[field])) fail(name, `${field} ${describe(item[field])} appears twice`);
      seen.add(item[field]);
    }
  };

  const modules = list("modules", false);
  modules.forEach((m, i) => {
    const where = `modules[${i}]${typeof m.id === "string" ? ` ('${m.id}')` : ""}`;
    for (const field of ["id", "name", "version"]) str(where, m, field);
    if (!isModuleKind(m.kind)) fail(where, `kind ${describe(m.kind)} is not 'native' or 'wasm'`);
    if (!isModuleState(m.state)) fail(where, `state ${describe(m.state)} is not a module state`);
    if (m.description !== null && m.description !== undefined) str(where, m, "description");
    time(where, m, "updatedAt");
  });
  unique("modules", modules, "id");

  const config = list("config", false);
  config.forEach((c, i) => {
    const where = `config[${i}]${typeof c.key === "string" ? ` ('${c.key}')` : ""}`;
    str(where, c, "key");
    time(where, c, "updatedAt");
    if ((c.json === undefined) === (c.sealed === undefined)) fail(where, "needs exactly one of json and sealed");
    else if (c.json !== undefined) json(where, c, "json");
    else {
      str(where, c, "sealed");
      if (typeof c.sealed === "string" && !looksSealed(c.sealed)) fail(where, "sealed is not sealed text");
    }
  });
  unique("config", config, "key");

  const decisions = doc.decisions === null ? null : list("decisions", true);
  decisions?.forEach((d, i) => {
    const where = `decisions[${i}]${typeof d.id === "string" ? ` ('${d.id}')` : ""}`;
    for (const field of ["id", "actor", "action", "rationale"]) str(where, d, field);
    time(where, d, "timestamp");
    json(where, d, "inputs");
    json(where, d, "output");
    if (typeof d.confidence !== "number" || !(d.confidence >= 0 && d.confidence <= 1)) {
      fail(where, `confidence ${describe(d.confidence)} is not a number in [0, 1]`);
    }
  });
  if (decisions !== null) unique("decisions", decisions, "id");

  const sealing = doc.sealing;
  if (sealing !== null) {
    if (typeof sealing !== "object" || Array.isArray(sealing)) fail("sealing", "expected an object or null");
    else {
      const s = sealing as Record<string, unknown>;
      if (s.scheme !== "envelope" && s.scheme !== "oxide-k") fail("sealing", `unknown scheme ${describe(s.scheme)}`);
      if (!Number.isSafeInteger(s.version)) fail("sealing", "version must be an integer");
      if (!Number.isSafeInteger(s.generation)) fail("sealing", "generation must be an integer");
      if (s.scheme === "envelope") {
        for (const field of ["kdf", "keyId", "wrappedKey"]) str("sealing", s, field);
      }
    }
  }
  // Version 1 had no revisions.
  const revisions: Revisions = doc.version === 2
    ? checkRevisions(doc, modules, config, fail)
    : { revision: null, compactedRevision: null, changes: null };
  if (problems.length > 0) {
    const shown = problems.slice(0, 10).join("; ");
    throw new SerializationError(
      `the import document has ${problems.length} problem(s), nothing was imported: ${shown}${
        problems.length > 10 ? "; ..." : ""
      }`,
    );
  }
  return { ...(document as CheckedDocument), ...revisions };
}

/** The revisions of a checked document (the caller's document is never changed). */
type Revisions = Pick<CheckedDocument, "revision" | "compactedRevision" | "changes" | "changesDiffer">;

/**
 * Checks the revisions of a version 2 document: the store revision, each row's revisions and the change log, which
 * must end, for every key, in the row the document holds (an import restores the log as it is).
 */
function checkRevisions(
  doc: Record<string, unknown>,
  modules: Record<string, unknown>[],
  config: Record<string, unknown>[],
  fail: (where: string, what: string) => void,
): Revisions {
  const count = (value: unknown, min: number) => Number.isSafeInteger(value) && (value as number) >= min;
  const revision = doc.revision;
  const compacted = doc.compactedRevision;
  if (revision !== null && !count(revision, 0)) {
    fail("revision", `expected a revision or null, got ${describe(revision)}`);
  }
  if (compacted !== null && !count(compacted, 0)) {
    fail("compactedRevision", `expected a revision or null, got ${describe(compacted)}`);
  }
  if ((revision === null) !== (compacted === null)) fail("revision", "revision and compactedRevision go together");
  const rowRevisions = (where: string, item: Record<string, unknown>) => {
    const r = item.revisions;
    if (r === null || r === undefined) return;
    if (typeof r !== "object" || Array.isArray(r)) return fail(where, `revisions must be an object or null`);
    const { version, createRevision, modRevision } = r as Record<string, unknown>;
    if (!count(version, 1) || !count(createRevision, 1) || !count(modRevision, createRevision as number)) {
      return fail(where, "revisions need a version, createRevision and modRevision (positive, mod >= create)");
    }
    if (typeof revision === "number" && (modRevision as number) > revision) {
      fail(where, `modRevision ${modRevision} is past the document's revision ${revision}`);
    }
  };
  modules.forEach((m, i) => rowRevisions(`modules[${i}]`, m));
  config.forEach((c, i) => rowRevisions(`config[${i}]`, c));

  const revisions = (differ?: string): Revisions => ({
    revision: revision as number | null,
    compactedRevision: compacted as number | null,
    changes: differ === undefined ? changes as ExportedChange[] : null,
    ...(differ === undefined ? {} : { changesDiffer: differ }),
  });
  const changes = doc.changes;
  const none = { revision: revision as number | null, compactedRevision: compacted as number | null, changes: null };
  if (changes === null || changes === undefined) return none;
  if (!Array.isArray(changes)) {
    fail("changes", `expected an array or null, got ${describe(changes)}`);
    return none;
  }
  if (revision === null) {
    fail("changes", "a change log needs the document's revision");
    return none;
  }
  const newest = new Map<string, Record<string, unknown>>();
  let last = 0;
  let bad = false;
  changes.forEach((item: unknown, i) => {
    const where = `changes[${i}]`;
    const problems: string[] = [];
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      bad = true;
      fail(where, `expected an object, got ${describe(item)}`);
      return;
    }
    const c = item as Record<string, unknown>;
    if (!count(c.revision, 1)) problems.push(`revision ${describe(c.revision)} is not a positive integer`);
    else if ((c.revision as number) < last) problems.push(`revision ${c.revision} comes after ${last}`);
    else if ((c.revision as number) > (revision as number)) problems.push(`revision ${c.revision} is past ${revision}`);
    else last = c.revision as number;
    if (c.space !== "config" && c.space !== "modules" && c.space !== "meta") {
      problems.push(`space ${describe(c.space)} is not config, modules or meta`);
    }
    if (typeof c.key !== "string" || c.key.includes("\0") || !c.key.isWellFormed()) {
      problems.push(`key ${describe(c.key)} is not a key`);
    }
    const put = c.type === "put";
    if (!put && c.type !== "delete") problems.push(`type ${describe(c.type)} is not put or delete`);
    if (put ? !count(c.version, 1) : c.version !== 0) {
      problems.push(`version ${describe(c.version)} does not fit a ${c.type}`);
    }
    if (!count(c.createRevision, 1) || (c.createRevision as number) > (c.revision as number)) {
      problems.push(`createRevision ${describe(c.createRevision)} is not a revision up to ${describe(c.revision)}`);
    }
    if (c.updatedAt !== null && (typeof c.updatedAt !== "string" || !c.updatedAt.isWellFormed())) {
      problems.push(`updatedAt must be text or null`);
    }
    if (!Number.isSafeInteger(c.changedAt)) problems.push(`changedAt must be an integer`);
    const configPut = put && c.space === "config";
    if (configPut && (c.json === undefined) === (c.sealed === undefined)) {
      problems.push("needs exactly one of json and sealed");
    }
    if (!configPut && (c.json !== undefined || c.sealed !== undefined)) {
      problems.push(`a ${c.space} ${c.type} has no value`);
    }
    if (c.json !== undefined) {
      const problem = typeof c.json === "string" ? jsonTextProblem(c.json) : "is not text";
      if (problem !== undefined) problems.push(jsonProblemText("json", problem));
    }
    if (c.sealed !== undefined) {
      if (typeof c.sealed !== "string" || !looksSealed(c.sealed)) problems.push("sealed is not sealed text");
      if (doc.sealing === null) problems.push("a sealed value needs the document's sealing parameters");
    }
    const modulePut = put && c.space === "modules";
    if (modulePut !== (c.module !== undefined)) {
      problems.push(modulePut ? "a module put needs module" : "module is only for a module put");
    }
    if (modulePut && c.module !== undefined) {
      const m = c.module as Record<string, unknown> | null;
      const texts = typeof m === "object" && m !== null && ["name", "version", "kind", "state"].every((f) =>
        typeof m[f] === "string" && (m[f] as string).isWellFormed()
      ) && (m.description === null || (typeof m.description === "string" && m.description.isWellFormed()));
      if (!texts) {
        problems.push("module needs name, version, kind, state (text) and description (text or null)");
      }
    }
    if (problems.length > 0) {
      bad = true;
      fail(`${where} (${describe(c.space)} ${describe(c.key)})`, problems.join(", "));
      return;
    }
    newest.set(`${c.space}\0${c.key}`, c);
  });
  if (bad) return none;
  const differs = (what: string) => revisions(what);
  if (changes.length > 0 ? last !== revision : revision !== compacted) {
    return differs(`it ends at revision ${changes.length > 0 ? last : compacted}, not the document's ${revision}`);
  }
  // The log must end, for each key, in the row the document holds (a row edited by hand would leave its history
  // telling another story): otherwise the rows are imported as new changes.
  const matches = (
    space: string,
    item: Record<string, unknown>,
    key: unknown,
    same: (c: Record<string, unknown>) => boolean,
  ) => {
    const name = `${space}\0${String(key)}`;
    const c = newest.get(name);
    newest.delete(name);
    const r = item.revisions as Record<string, unknown> | null | undefined;
    if (c === undefined || c.type !== "put") return `it has no put of ${space} '${String(key)}'`;
    if (
      r === null || r === undefined || r.version !== c.version || r.createRevision !== c.createRevision ||
      r.modRevision !== c.revision || c.updatedAt !== item.updatedAt || !same(c)
    ) {
      return `${space} '${String(key)}' differs from its newest change (revision ${c.revision})`;
    }
    return undefined;
  };
  for (const m of modules) {
    const problem = matches("modules", m, m.id, (c) => {
      const s = c.module as Record<string, unknown>;
      return s.name === m.name && s.version === m.version && s.kind === `"${String(m.kind)}"` &&
        s.state === `"${String(m.state)}"` && s.description === (m.description ?? null);
    });
    if (problem !== undefined) return differs(problem);
  }
  for (const e of config) {
    const problem = matches("config", e, e.key, (c) => c.json === e.json && c.sealed === e.sealed);
    if (problem !== undefined) return differs(problem);
  }
  for (const [name, c] of newest) {
    if (c.type === "put" && c.space !== "meta") {
      return differs(`${String(c.space)} '${name.split("\0")[1]}' is live in it but has no row`);
    }
  }
  return revisions();
}
