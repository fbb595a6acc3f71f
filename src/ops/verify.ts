/**
 * `StateRegistry.verify`: checks a registry file end to end and names each
 * bad row, without writing anything.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { KeyRequiredError } from "../errors.ts";
import { CONFIG_TABLE_SQL, MIGRATIONS_TABLE_SQL, MODULES_TABLE_SQL } from "../schema.ts";
import { SEALING_TABLE_SQL } from "../sealing/sealing.ts";
import { isEnvelopeSealed } from "../sealing/envelope.ts";
import { looksOxideKSealed } from "../sealing/oxide_k.ts";
import { TABLE_SQL as DECISIONS_TABLE_SQL } from "../ext/_decision_sql.ts";
import {
  META_TRIGGERS_SQL,
  REVISION_INDEXES_SQL,
  REVISION_TABLES_SQL,
  REVISION_TRIGGERS_SQL,
} from "../store/sqlite/_revision_sql.ts";
import type { Engine, Row } from "../sqlite/engine.ts";
import { parseTimestamp } from "../time.ts";
import { describe } from "../_describe.ts";
import { findLoneSurrogate, MAX_JSON_DEPTH } from "../json.ts";

/**
 * Which check found a problem: SQLite's `integrity_check`, the shape of a
 * table, or the rows of `modules`, `config` (its JSON, or its sealed value)
 * or the decision log.
 *
 * @example
 * ```ts
 * import { type VerifyCheck } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const check: VerifyCheck = "module";
 * assert.equal(check, "module");
 * ```
 */
export type VerifyCheck = "integrity" | "shape" | "module" | "config" | "sealed" | "decision";

/**
 * One problem {@linkcode StateRegistry.verify} found.
 *
 * @example
 * ```ts
 * import { StateRegistry, type VerifyProblem } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * reg.db.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)")
 *   .run("broken", "{not json", "2026-01-01T00:00:00+00:00");
 * const [problem]: VerifyProblem[] = (await reg.verify()).problems;
 * assert.equal(problem?.check, "config");
 * assert.equal(problem?.table, "config");
 * assert.equal(problem?.row, "broken");
 * ```
 */
export interface VerifyProblem {
  /** What found it. */
  check: VerifyCheck;
  /** The table, when the problem is in one. */
  table: string | undefined;
  /** The row's id or key (`rowid N` when it has none that is text), when the problem is in one row. */
  row: string | undefined;
  /** What is wrong. */
  message: string;
}

/**
 * What {@linkcode StateRegistry.verify} found.
 *
 * @example
 * ```ts
 * import { StateRegistry, type VerifyReport } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("max_threads", 8);
 * const report: VerifyReport = await reg.verify();
 * assert.equal(report.ok, true);
 * assert.equal(report.checked.config, 1);
 * assert.deepEqual(report.problems, []);
 * ```
 */
export interface VerifyReport {
  /** `true` when no problem was found. */
  ok: boolean;
  /** Rows checked, per table. */
  checked: { modules: number; config: number; sealed: number; decisions: number };
  /** Sealed values not opened because the registry was opened without a key. */
  sealedUnchecked: number;
  /** Every problem, in the order found. */
  problems: VerifyProblem[];
}

/** What verify needs of the registry: its connection and its own readers, so rows are read as the API reads them. */
export interface VerifyTarget {
  /** The registry's connection. */
  db: Engine;
  /** Reads a module as `getModule` does. */
  getModule(id: string): Promise<unknown>;
  /** Reads a config value as `getConfig` does (opening it when the registry is keyed). */
  getConfig(key: string): Promise<unknown>;
  /** Whether the registry was opened with a key. */
  keyed: boolean;
}

/** The tables the registry (and its decision log) keeps, with their DDL: the expected shape. */
const OWN_TABLES: readonly { name: string; sql: string; optional: boolean }[] = [
  { name: "modules", sql: MODULES_TABLE_SQL, optional: false },
  { name: "config", sql: CONFIG_TABLE_SQL, optional: false },
  // A file a Rust oxide-k kernel made has only modules and config until this package opens it for writing.
  { name: "oxide_migrations", sql: MIGRATIONS_TABLE_SQL, optional: true },
  { name: "oxide_sealing", sql: SEALING_TABLE_SQL, optional: true },
  { name: "xai_decisions", sql: DECISIONS_TABLE_SQL, optional: true },
  // The change log kept by triggers (registry migration 2).
  ...REVISION_TABLES_SQL.flatMap((sql) => {
    const name = /^CREATE TABLE (\w+)/.exec(sql)?.[1];
    return name === undefined ? [] : [{ name, sql, optional: true }];
  }),
];

/**
 * Verifies a registry (see `StateRegistry.verify`).
 *
 * @param target The registry's connection and readers.
 * @returns The report.
 * @throws {RegistryError} when the database cannot be read at all.
 */
export async function verifyRegistry(target: VerifyTarget): Promise<VerifyReport> {
  const { db } = target;
  const problems: VerifyProblem[] = [];
  const report = (check: VerifyCheck, table: string | undefined, row: string | undefined, message: string) => {
    problems.push({ check, table, row, message });
  };
  for (const row of db.prepare("PRAGMA integrity_check").all()) {
    const text = String(Object.values(row)[0]);
    if (text !== "ok") report("integrity", undefined, undefined, text);
  }
  const present = checkShapes(db, report);
  checkRevisionParts(db, report);
  const checked = { modules: 0, config: 0, sealed: 0, decisions: 0 };
  let sealedUnchecked = 0;

  if (present.has("modules")) {
    for (const row of db.prepare("SELECT rowid AS rowid, id FROM modules ORDER BY id").all()) {
      checked.modules++;
      if (typeof row.id !== "string") {
        report("module", "modules", `rowid ${row.rowid}`, `module id is not text: ${describe(row.id)}`);
        continue;
      }
      try {
        await target.getModule(row.id);
      } catch (error) {
        report("module", "modules", row.id, (error as Error).message);
      }
    }
  }

  if (present.has("config")) {
    const rows = db.prepare("SELECT rowid AS rowid, key, value, updated_at FROM config ORDER BY key").all();
    for (const row of rows) {
      checked.config++;
      if (typeof row.key !== "string") {
        report("config", "config", `rowid ${row.rowid}`, `config key is not text: ${describe(row.key)}`);
        continue;
      }
      const sealed = typeof row.value === "string" && looksSealed(row.value);
      if (sealed) checked.sealed++;
      // What oxide-k's serde_json would refuse in plain text, which JavaScript's JSON.parse lets through.
      const unreadable = !sealed && typeof row.value === "string" ? jsonTextProblem(row.value) : undefined;
      let failed = false;
      try {
        await target.getConfig(row.key);
      } catch (error) {
        if (error instanceof KeyRequiredError && !target.keyed) {
          sealedUnchecked++;
        } else {
          const message = (error as Error).message;
          // A plain value in a sealed registry: say so, and also what is wrong with its text.
          const detail = unreadable === undefined || message.includes(unreadable)
            ? ""
            : `; ${jsonProblemText("its text", unreadable)}`;
          report(sealed || target.keyed ? "sealed" : "config", "config", row.key, message + detail);
          failed = true;
        }
      }
      if (failed) continue;
      if (unreadable !== undefined) {
        report("config", "config", row.key, jsonProblemText("value", unreadable));
      }
      if (typeof row.updated_at !== "string" || parseTimestamp(row.updated_at) === undefined) {
        report(
          "config",
          "config",
          row.key,
          `updated_at is ${describe(row.updated_at)}, not an RFC 3339 timestamp`,
        );
      }
    }
  }

  if (present.has("xai_decisions")) {
    const rows = db.prepare(
      "SELECT rowid AS rowid, id, timestamp, actor, action, rationale, inputs, output, confidence FROM xai_decisions ORDER BY rowid",
    ).all();
    for (const row of rows) {
      checked.decisions++;
      const name = typeof row.id === "string" ? row.id : `rowid ${row.rowid}`;
      const message = decisionProblem(row);
      if (message !== undefined) report("decision", "xai_decisions", name, message);
    }
  }
  return { ok: problems.length === 0, checked, sealedUnchecked, problems };
}

/** Compares each own table's columns with the ones its DDL makes; returns the tables that exist. */
function checkShapes(
  db: Engine,
  report: (check: VerifyCheck, table: string, row: undefined, message: string) => void,
): Set<string> {
  const present = new Set<string>();
  const expected = expectedColumns();
  for (const { name, optional } of OWN_TABLES) {
    const type = db.prepare("SELECT type FROM sqlite_master WHERE name = ?1 COLLATE NOCASE").get(name)?.type;
    if (type === undefined) {
      if (!optional) report("shape", name, undefined, `table '${name}' is missing`);
      continue;
    }
    if (type !== "table") {
      report("shape", name, undefined, `'${name}' is a ${String(type)}, not a table`);
      continue;
    }
    const actual = new Map(
      db.prepare(`SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info('${name}')`).all()
        .map((row) => [String(row.name), row]),
    );
    let usable = true;
    for (const column of expected.get(name)!) {
      const found = actual.get(String(column.name));
      if (found === undefined) {
        report("shape", name, undefined, `table '${name}' has no column '${column.name}'`);
        usable = false;
        continue;
      }
      const want = columnText(column);
      const have = columnText(found);
      if (want !== have) {
        report("shape", name, undefined, `column '${name}.${column.name}' is ${have}, expected ${want}`);
      }
    }
    if (usable) present.add(name);
  }
  return present;
}

/**
 * The change log's triggers and index, when the file has the change log: one someone dropped stops versions from
 * moving (compare-and-set would pass unnoticed). A writable open recreates it; verify only reports it.
 */
function checkRevisionParts(
  db: Engine,
  report: (check: VerifyCheck, table: string, row: undefined, message: string) => void,
): void {
  const objects = new Map(
    db.prepare("SELECT lower(name) AS name, type FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')").all()
      .map((row) => [String(row.name), String(row.type)]),
  );
  const parts: [table: string, name: string, type: string][] = [];
  if (objects.get("oxide_changes") === "table") {
    for (const name of Object.keys(REVISION_TRIGGERS_SQL)) {
      parts.push([name.includes("module") ? "modules" : "config", name, "trigger"]);
    }
    for (const name of Object.keys(REVISION_INDEXES_SQL)) parts.push(["oxide_changes", name, "index"]);
  }
  if (objects.get("oxide_meta") === "table") {
    for (const name of Object.keys(META_TRIGGERS_SQL)) parts.push(["oxide_meta", name, "trigger"]);
  }
  for (const [table, name, type] of parts) {
    if (objects.get(name.toLowerCase()) === type) continue;
    report(
      "shape",
      table,
      undefined,
      `the change log's ${type} '${name}' is missing: versions do not move without it; open the file once ` +
        "without readonly (any write command) to recreate it",
    );
  }
}

let expectedCache: Map<string, Row[]> | undefined;

/** The columns each own table has when made by its DDL, asked of a private in-memory database. */
function expectedColumns(): Map<string, Row[]> {
  if (expectedCache === undefined) {
    const memory = new DatabaseSync(":memory:");
    try {
      expectedCache = new Map();
      for (const { name, sql } of OWN_TABLES) {
        memory.exec(sql);
        const rows = memory.prepare(`SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info('${name}')`).all();
        expectedCache.set(name, rows.map((row) => ({ ...row }) as Row));
      }
    } finally {
      memory.close();
    }
  }
  return expectedCache;
}

function columnText(column: Row): string {
  const type = String(column.type).toUpperCase() || "untyped";
  return `${type}${Number(column.nn) ? " NOT NULL" : ""}${Number(column.pk) ? " PRIMARY KEY" : ""}`;
}

/** Sealed under either scheme: envelope (`$oxide` prefix) or oxide-k (padded URL-safe base64 that is not JSON). */
export function looksSealed(stored: string): boolean {
  if (isEnvelopeSealed(stored)) return true;
  if (!looksOxideKSealed(stored)) return false;
  try {
    JSON.parse(stored);
    return false;
  } catch {
    return true;
  }
}

/**
 * What serde_json (so oxide-k) would refuse in stored JSON text, or `undefined` when it reads it: not JSON at all, a
 * number out of range (`1e400`, which JavaScript reads as Infinity and would write back as `null`), a lone surrogate
 * escape (`"\\ud800"`), or nesting deeper than serde_json's limit. As `is not valid JSON: ...`,
 * `: the number at $.a is out of range, which oxide-k cannot read`, ... (see {@linkcode jsonProblemText}).
 */
export function jsonTextProblem(text: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `is not valid JSON: ${(error as Error).message}`;
  }
  const lone = findLoneSurrogate(value);
  if (lone !== undefined) return `: ${lone}, which oxide-k cannot read`;
  return numberOrDepthProblem(value, 0, []);
}

/** `subject` followed by a {@linkcode jsonTextProblem}: `json is not valid JSON: ...`, `json: the string at ...`. */
export function jsonProblemText(subject: string, problem: string): string {
  return problem.startsWith(":") ? `${subject}${problem}` : `${subject} ${problem}`;
}

function numberOrDepthProblem(value: unknown, depth: number, keys: (string | number)[]): string | undefined {
  if (typeof value === "number") {
    return Number.isFinite(value)
      ? undefined
      : `: the number at ${pathText(keys)} is out of range, which oxide-k cannot read`;
  }
  if (typeof value !== "object" || value === null) return undefined;
  if (depth >= MAX_JSON_DEPTH) return `is nested deeper than ${MAX_JSON_DEPTH} levels, which oxide-k cannot read`;
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((item, i) => [i, item])
    : Object.entries(value);
  for (const [key, item] of entries) {
    keys.push(key);
    const found = numberOrDepthProblem(item, depth + 1, keys);
    keys.pop();
    if (found !== undefined) return found;
  }
  return undefined;
}

function pathText(keys: readonly (string | number)[]): string {
  return "$" + keys.map((key) => typeof key === "number" ? `[${key}]` : `.${key.toWellFormed()}`).join("");
}

/** What is wrong with a decision row as oxide-k's `DecisionLog` would read it, or `undefined`. */
function decisionProblem(row: Row): string | undefined {
  if (typeof row.id !== "string") return `id is not text: ${describe(row.id)}`;
  for (const column of ["actor", "action", "rationale"] as const) {
    if (typeof row[column] !== "string") return `${column} is not text: ${describe(row[column])}`;
  }
  if (typeof row.timestamp !== "string" || parseTimestamp(row.timestamp) === undefined) {
    return `timestamp is ${describe(row.timestamp)}, not an RFC 3339 timestamp`;
  }
  for (const column of ["inputs", "output"] as const) {
    const text = row[column];
    if (typeof text !== "string") return `${column} is not text: ${describe(text)}`;
    const problem = jsonTextProblem(text);
    if (problem !== undefined) return jsonProblemText(column, problem);
  }
  if (typeof row.confidence !== "number" || !(row.confidence >= 0 && row.confidence <= 1)) {
    return `confidence is ${describe(row.confidence)}, not a number in [0, 1]`;
  }
  return undefined;
}
