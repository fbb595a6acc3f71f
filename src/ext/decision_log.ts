/**
 * The decision log (oxide-k's `xai` module): an insert-only, explainable-AI
 * record of what agents decided and why, kept in the registry's database in
 * oxide-k's `xai_decisions` table so a Rust kernel and this module can both
 * write and read it.
 *
 * Built on the extension point ({@linkcode defineExtension}) as extension
 * `"xai"`:
 *
 * 1. oxide-k's table and index, verbatim (`CREATE ... IF NOT EXISTS`, so a
 *    file where oxide-k already created them is accepted as it is).
 * 2. Additive: a `timestamp_utc` column holding each row's instant in one
 *    fixed-width form (`2026-11-28T09:15:02.123456789Z`), filled by triggers
 *    for rows any program inserts, and three indexes on it. Ordering and time
 *    ranges use it: the stored RFC 3339 text only sorts as time while every
 *    writer uses `+00:00` (chrono does; `Z`, other offsets or a space instead
 *    of `T`, all valid, do not sort).
 *
 * @module
 */

import { KernelError, OtherError, RegistryError, SerializationError } from "../errors.ts";
import { defineExtension, type Extension, openExtension } from "./extension.ts";
import {
  BACKFILL_SQL,
  DECISION_SQL as SQL,
  INDEX_SQL,
  MIGRATION_1_SQL,
  MIGRATION_2_SQL,
  MIGRATION_3_SQL,
  type QueryShape,
  querySql,
  UTC_INDEXES_SQL,
  UTC_TRIGGERS_SQL,
} from "./_decision_sql.ts";
import { decodeJson, encodeJson } from "../json.ts";
import { checkText } from "../_text.ts";
import type { StateRegistry } from "../registry/registry.ts";
import type { Row, SqlValue } from "../sqlite/engine.ts";
import { formatTimestamp, nowTimestamp, parseTimestamp } from "../time.ts";
import { storeOf } from "../registry/_store_of.ts";
import { StoreDecisions } from "./_decision_store.ts";
import { describe } from "../_describe.ts";

/**
 * One recorded decision (oxide-k's `xai::Decision`).
 *
 * @example
 * ```ts
 * import { type Decision, DecisionLog, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const decision: Decision = {
 *   id: crypto.randomUUID(),
 *   timestamp: new Date("2026-11-28T09:15:02.123Z"),
 *   actor: "healer",
 *   action: "heal",
 *   rationale: "restart after a crash",
 *   inputs: { crashes: 1 },
 *   output: null,
 *   confidence: 0.5,
 * };
 * await using reg = await StateRegistry.inMemory();
 * const log = await DecisionLog.open(reg);
 * await log.log(decision);
 * assert.deepEqual(await log.byActor("healer"), [decision]);
 * ```
 */
export interface Decision {
  /** Unique id: a UUID v4 string, lowercase (`crypto.randomUUID()`). */
  id: string;
  /** When the decision was made (millisecond precision; stored text from oxide-k may hold more). */
  timestamp: Date;
  /** Stable id of who decided: a module id, an agent id, a healer label. */
  actor: string;
  /** What was done, e.g. `"heal"`, `"sync"`, `"navigate"`. */
  action: string;
  /** Why, in words a human reviewer can read. */
  rationale: string;
  /** What the decision was based on: any JSON value (default `null`). */
  inputs: unknown;
  /** What came of it: any JSON value (default `null`). */
  output: unknown;
  /**
   * How sure the actor was, in [0, 1] (default 1). oxide-k keeps it as an
   * f32; this is that f32 as its shortest decimal (what Rust prints), so
   * `0.85` stays `0.85`. Stored as the f32 widened to f64 (0.8500000238418579).
   */
  confidence: number;
}

/**
 * Options of {@linkcode newDecision}.
 *
 * @example
 * ```ts
 * import { newDecision, type NewDecisionOptions } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const options: NewDecisionOptions = {
 *   inputs: { url: "https://example.com" },
 *   output: { status: 200 },
 *   confidence: 0.25,
 *   timestamp: new Date("2026-11-28T09:15:02Z"),
 * };
 * const { id, actor, action, rationale, ...rest } = newDecision("browser", "navigate", "user asked", options);
 * assert.deepEqual([actor, action, rationale], ["browser", "navigate", "user asked"]);
 * assert.deepEqual(rest, options);
 * assert.notEqual(id, newDecision("browser", "navigate", "user asked", options).id);
 * ```
 */
export interface NewDecisionOptions {
  /** What the decision was based on (JSON). Default `null`. */
  inputs?: unknown;
  /** What came of it (JSON). Default `null`. */
  output?: unknown;
  /** How sure the actor was; clamped to [0, 1] and rounded to an f32. Default 1. */
  confidence?: number | undefined;
  /** When it was made. Default now. */
  timestamp?: Date | undefined;
}

/**
 * How {@linkcode DecisionLog.recent}, {@linkcode DecisionLog.byActor} and {@linkcode DecisionLog.query} read rows.
 *
 * @example
 * ```ts
 * import {
 *   DecisionLog,
 *   type DecisionReadOptions,
 *   newDecision,
 *   SerializationError,
 *   StateRegistry,
 * } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const log = await DecisionLog.open(reg);
 * await log.log(newDecision("healer", "heal", "fine"));
 * // A row another program wrote, with inputs that are not JSON.
 * reg.db.exec(`INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence)
 *   VALUES ('${crypto.randomUUID()}', '2026-01-01T00:00:00+00:00', 'healer', 'heal', 'bad', '{oops', 'null', 1)`);
 * await assert.rejects(log.byActor("healer"), SerializationError);
 * const options: DecisionReadOptions = { invalid: "skip" };
 * assert.deepEqual((await log.byActor("healer", options)).map((d) => d.rationale), ["fine"]);
 * ```
 */
export interface DecisionReadOptions {
  /**
   * What to do with a stored row that cannot be read (written by another
   * program: a bad timestamp, id or JSON): `"throw"` (default) fails with a
   * {@linkcode SerializationError} naming every such row read; `"skip"`
   * leaves them out.
   */
  invalid?: "throw" | "skip" | undefined;
}

/**
 * Filters and paging of {@linkcode DecisionLog.query}. Every filter is optional; they combine with AND.
 *
 * @example
 * ```ts
 * import { DecisionLog, type DecisionQuery, newDecision, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const log = await DecisionLog.open(reg);
 * const at = (hour: number) => new Date(Date.UTC(2026, 0, 1, hour));
 * await log.log(newDecision("healer", "heal", "early", { timestamp: at(1) }));
 * await log.log(newDecision("healer", "heal", "late", { timestamp: at(5) }));
 * await log.log(newDecision("router", "heal", "other actor", { timestamp: at(5) }));
 * const query: DecisionQuery = { actor: "healer", action: "heal", since: at(2), until: at(6) };
 * assert.deepEqual((await log.query(query)).decisions.map((d) => d.rationale), ["late"]);
 * ```
 */
export interface DecisionQuery extends DecisionReadOptions {
  /** Only decisions by this actor. */
  actor?: string | undefined;
  /** Only decisions with this action. */
  action?: string | undefined;
  /** Only decisions made at or after this instant. */
  since?: Date | undefined;
  /** Only decisions made before this instant. */
  until?: Date | undefined;
  /** At most this many decisions per page, 1 to 10,000. Default 100. */
  limit?: number | undefined;
  /** Continue after the page that returned this {@linkcode DecisionPage.nextCursor}. */
  cursor?: string | undefined;
}

/**
 * One page of {@linkcode DecisionLog.query}, newest first.
 *
 * @example
 * ```ts
 * import { DecisionLog, type DecisionPage, newDecision, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const log = await DecisionLog.open(reg);
 * for (const n of [1, 2, 3]) await log.log(newDecision("agent", "sync", `run ${n}`));
 * const seen: string[] = [];
 * let page: DecisionPage = await log.query({ limit: 2 });
 * seen.push(...page.decisions.map((d) => d.rationale));
 * page = await log.query({ limit: 2, cursor: page.nextCursor });
 * seen.push(...page.decisions.map((d) => d.rationale));
 * assert.deepEqual(seen, ["run 3", "run 2", "run 1"]);
 * assert.equal(page.nextCursor, undefined);
 * ```
 */
export interface DecisionPage {
  /** The decisions, newest first. */
  decisions: Decision[];
  /** Pass as `cursor` for the next page; `undefined` on the last page. */
  nextCursor: string | undefined;
}

const XAI_EXTENSION: Extension = defineExtension({
  name: "xai",
  migrations: [
    { version: 1, name: "oxide-k xai_decisions table and idx_xai_actor_time", up: MIGRATION_1_SQL },
    { version: 2, name: "timestamp_utc sort key, its triggers and indexes", up: MIGRATION_2_SQL },
    { version: 3, name: "timestamp_utc keys leap seconds", up: MIGRATION_3_SQL },
  ],
});

/** The columns oxide-k's table has and this module reads. */
const REQUIRED_COLUMNS = ["id", "timestamp", "actor", "action", "rationale", "inputs", "output", "confidence"];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_PAGE = 10_000;

/**
 * Builds a decision with a fresh id (`crypto.randomUUID()`) and, unless given,
 * the current time, `null` inputs and output and confidence 1 (oxide-k's
 * `Decision::new` and its `with_*` builders in one call).
 *
 * @param actor Who decided.
 * @param action What was done.
 * @param rationale Why.
 * @param options `inputs`, `output`, `confidence` (clamped to [0, 1]), `timestamp`.
 * @returns The decision, ready for {@linkcode DecisionLog.log}.
 * @throws {TypeError} When `actor`, `action` or `rationale` is not a string, `confidence` is not a number, or
 * `timestamp` is not a valid `Date`.
 * @throws {RangeError} When `confidence` is NaN, or `timestamp` is outside years 0000 to 9999.
 *
 * @example
 * ```ts
 * import { newDecision } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const d = newDecision("healer", "rewrite-selector", "AX role match found", {
 *   inputs: { css: ".primary" },
 *   confidence: 0.85,
 * });
 * assert.match(d.id, /^[0-9a-f-]{36}$/);
 * assert.equal(d.output, null);
 * assert.equal(d.confidence, 0.85);
 * assert.equal(newDecision("x", "y", "z", { confidence: 2.5 }).confidence, 1);
 * assert.equal(newDecision("x", "y", "z", { confidence: -1 }).confidence, 0);
 * ```
 */
export function newDecision(
  actor: string,
  action: string,
  rationale: string,
  options: NewDecisionOptions = {},
): Decision {
  checkText("actor", actor);
  checkText("action", action);
  checkText("rationale", rationale);
  const confidence = options.confidence ?? 1;
  if (typeof confidence !== "number") {
    throw new TypeError(`confidence must be a number, got ${describe(confidence)}`);
  }
  if (Number.isNaN(confidence)) throw new RangeError("confidence must be a number in [0, 1], got NaN");
  const timestamp = options.timestamp ?? new Date();
  checkDate("timestamp", timestamp);
  checkYears("timestamp", timestamp);
  return {
    id: crypto.randomUUID(),
    timestamp,
    actor,
    action,
    rationale,
    inputs: options.inputs ?? null,
    output: options.output ?? null,
    confidence: toF32(Math.min(1, Math.max(0, confidence))),
  };
}

/**
 * The decision log: `xai_decisions` in the registry's database. Insert-only,
 * as in oxide-k: there is no update or delete. Holds no resources of its own;
 * it is usable while its registry is open.
 *
 * Which index serves which query (named in the SQL with `INDEXED BY`, and
 * checked by `EXPLAIN QUERY PLAN` in the tests: a range search, no sort):
 *
 * | query | index |
 * |---|---|
 * | `recent(n)`, `query({})`, `query({ since, until })` | `idx_xai_time_utc (timestamp_utc)` |
 * | `byActor(a)`, `query({ actor, ... })` (also with `action`) | `idx_xai_actor_time_utc (actor, timestamp_utc)` |
 * | `query({ action, ... })` without `actor` | `idx_xai_action_time_utc (action, timestamp_utc)` |
 * | `log(d)` (duplicate check) | the primary key |
 *
 * @example Log and read back
 * ```ts
 * import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * await using reg = await StateRegistry.inMemory();
 * const log = await DecisionLog.open(reg);
 * const d = newDecision("healer", "rewrite-selector", "AX role match found", {
 *   inputs: { css: ".primary" },
 *   output: { role: "button" },
 *   confidence: 0.85,
 * });
 * assert.equal(await log.log(d), d.id);
 * assert.equal(await log.count(), 1);
 * const [back] = await log.recent(10);
 * assert.deepEqual(back, d);
 * ```
 */
export class DecisionLog {
  /** The extension that owns `xai_decisions`: its name and migrations. */
  static readonly extension: Extension = XAI_EXTENSION;

  readonly #registry: StateRegistry;
  /** On a store without SQL (etcd): the rows as keys of the registry's `meta` space. */
  readonly #keys: StoreDecisions | undefined;

  private constructor(registry: StateRegistry, keys?: StoreDecisions) {
    this.#registry = registry;
    this.#keys = keys;
  }

  /**
   * Opens the decision log of a registry, creating `xai_decisions` and its
   * indexes if missing (a file where oxide-k already created them is used as
   * it is, and gains the `timestamp_utc` column and indexes), and recreating
   * any of its indexes or triggers that were dropped. Safe to call from
   * several processes at once.
   *
   * @param registry The open registry.
   * @returns The log.
   * @throws {RegistryError} When the tables cannot be created, or an existing `xai_decisions` lacks oxide-k's
   * columns (not an oxide-k decision log).
   *
   * @example
   * ```ts
   * import { DecisionLog, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const log = await DecisionLog.open(reg);
   * assert.equal(await log.count(), 0);
   * ```
   */
  static async open(registry: StateRegistry): Promise<DecisionLog> {
    const store = storeOf(registry);
    if (store !== undefined && store.backend !== "sqlite") {
      if (!registry.isOpen) throw new RegistryError(`the registry at ${registry.location} is closed`);
      return new DecisionLog(registry, new StoreDecisions(store));
    }
    await openExtension(registry, XAI_EXTENSION);
    const db = registry.db;
    const columns = new Set(
      db.prepare("SELECT name FROM pragma_table_info('xai_decisions')").all().map((row) => row.name),
    );
    const missing = [...REQUIRED_COLUMNS, "timestamp_utc"].filter((column) => !columns.has(column));
    if (missing.length > 0) {
      throw new RegistryError(
        `'${db.path}' has an 'xai_decisions' table without the column(s) ${
          missing.join(", ")
        }: not an oxide-k decision log`,
        { path: db.path },
      );
    }
    repairSchema(registry);
    return new DecisionLog(registry);
  }

  /**
   * Appends a decision. Everything is checked before anything is written.
   *
   * @param decision The decision, usually from {@linkcode newDecision}.
   * @returns Its id, as stored (lowercase).
   * @throws {TypeError} When a field has the wrong type, or `id` is not a UUID.
   * @throws {RangeError} When `confidence` is not in [0, 1], or `timestamp` is outside years 0000 to 9999 (RFC 3339
   * has four-digit years: neither this module nor oxide-k could read it back).
   * @throws {SerializationError} When `inputs` or `output` has no faithful JSON form; nothing is written.
   * @throws {RegistryError} When a decision with this id is already logged (`codeName` `SQLITE_CONSTRAINT`),
   * or the registry is closed.
   *
   * @example A decision is logged once
   * ```ts
   * import { DecisionLog, newDecision, RegistryError, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const log = await DecisionLog.open(reg);
   * const d = newDecision("planner", "route", "shortest path");
   * await log.log(d);
   * await assert.rejects(log.log(d), RegistryError);
   * ```
   */
  log(decision: Decision): Promise<string> {
    return settle(() => {
      if (typeof decision !== "object" || decision === null) {
        throw new TypeError(`log() takes a decision object, got ${describe(decision)}`);
      }
      const { id, timestamp, actor, action, rationale, inputs, output, confidence } = decision;
      if (typeof id !== "string" || !UUID.test(id)) {
        throw new TypeError(`decision id must be a UUID string, got ${describe(id)}`);
      }
      checkDate("decision timestamp", timestamp);
      checkYears("decision timestamp", timestamp);
      checkText("actor", actor);
      checkText("action", action);
      checkText("rationale", rationale);
      if (typeof confidence !== "number") {
        throw new TypeError(`decision confidence must be a number, got ${describe(confidence)}`);
      }
      if (!(confidence >= 0 && confidence <= 1)) {
        throw new RangeError(`decision confidence must be in [0, 1], got ${confidence}`);
      }
      const key = id.toLowerCase();
      const inputsJson = encodeField(key, "inputs", inputs);
      const outputJson = encodeField(key, "output", output);
      if (this.#keys !== undefined) {
        const row = {
          id: key,
          timestamp: formatTimestamp(timestamp),
          actor,
          action,
          rationale,
          inputs: inputsJson,
          output: outputJson,
          confidence: Math.fround(confidence),
          timestamp_utc: utcKey("decision timestamp", timestamp),
        };
        return this.#keys.insert(row, nowTimestamp()).then((logged) => {
          if (!logged) throw new RegistryError(`decision '${key}' is already logged (the log is insert-only)`);
          return key;
        });
      }
      try {
        this.#registry.db.prepare(SQL.insert).run(
          key,
          formatTimestamp(timestamp),
          actor,
          action,
          rationale,
          inputsJson,
          outputJson,
          Math.fround(confidence),
        );
      } catch (error) {
        // Every field is checked above, so the one constraint left to fail is the primary key.
        if (error instanceof RegistryError && error.codeName === "SQLITE_CONSTRAINT") {
          throw new RegistryError(`decision '${key}' is already logged (the log is insert-only)`, {
            ...(error.code === undefined ? {} : { code: error.code }),
            path: this.#registry.path,
            cause: error,
          });
        }
        throw error;
      }
      return key;
    });
  }

  /**
   * The most recent decisions, newest first.
   *
   * @param limit How many at most (a non-negative integer).
   * @param options `invalid`: what to do with rows that cannot be read (default `"throw"`).
   * @returns Up to `limit` decisions (fewer when rows are skipped).
   * @throws {RangeError} When `limit` is not a non-negative safe integer.
   * @throws {TypeError} When `invalid` is not `"throw"` or `"skip"`.
   * @throws {SerializationError} When a stored row cannot be read (a bad timestamp, id or JSON, a confidence that is
   * not a number) and `invalid` is `"throw"`; the message names every such row, the first row's error is the `cause`.
   *
   * @example
   * ```ts
   * import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const log = await DecisionLog.open(reg);
   * for (const [i, action] of ["a", "b", "c"].entries()) {
   *   await log.log(newDecision("agent", action, "step", { timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)) }));
   * }
   * assert.deepEqual((await log.recent(2)).map((d) => d.action), ["c", "b"]);
   * ```
   */
  recent(limit: number, options: DecisionReadOptions = {}): Promise<Decision[]> {
    return settle(() => {
      if (!Number.isSafeInteger(limit) || limit < 0) {
        throw new RangeError(`limit must be a non-negative integer, got ${describe(limit)}`);
      }
      const invalid = invalidOption(options);
      if (this.#keys !== undefined) return this.#keys.recent(limit).then((rows) => toDecisions(rows, invalid));
      return toDecisions(this.#registry.db.prepare(SQL.recent).all(limit), invalid);
    });
  }

  /**
   * Every decision by one actor, newest first. For many decisions, page with
   * {@linkcode DecisionLog.query} instead.
   *
   * @param actor The actor.
   * @param options `invalid`: what to do with rows that cannot be read (default `"throw"`).
   * @returns Its decisions.
   * @throws {TypeError} When `actor` is not a string, or `invalid` is not `"throw"` or `"skip"`.
   * @throws {SerializationError} When a stored row cannot be read and `invalid` is `"throw"` (names every such row).
   *
   * @example
   * ```ts
   * import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const log = await DecisionLog.open(reg);
   * await log.log(newDecision("a", "do", "r1"));
   * await log.log(newDecision("b", "do", "r2"));
   * assert.equal((await log.byActor("a")).length, 1);
   * assert.equal((await log.byActor("c")).length, 0);
   * ```
   */
  byActor(actor: string, options: DecisionReadOptions = {}): Promise<Decision[]> {
    return settle(() => {
      checkText("actor", actor);
      const invalid = invalidOption(options);
      if (this.#keys !== undefined) return this.#keys.byActor(actor).then((rows) => toDecisions(rows, invalid));
      return toDecisions(this.#registry.db.prepare(SQL.byActor).all(actor), invalid);
    });
  }

  /**
   * How many decisions are logged.
   *
   * @returns The number of rows.
   * @throws {RegistryError} When the registry is closed.
   *
   * @example
   * ```ts
   * import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const log = await DecisionLog.open(reg);
   * await log.log(newDecision("a", "do", "r"));
   * assert.equal(await log.count(), 1);
   * ```
   */
  count(): Promise<number> {
    return settle(() => {
      if (this.#keys !== undefined) return this.#keys.count();
      return Number(this.#registry.db.prepare(SQL.count).get()?.n ?? 0);
    });
  }

  /**
   * Decisions matching filters, newest first, one page at a time. Every query
   * reads through an index (see the class docs), never the whole table. Ties
   * in time come out newest-inserted first. A cursor is a position in that
   * order: it stays valid while rows are added (a new, newer row never shows
   * up in later pages), and may be used with other filters.
   *
   * @param options `actor`, `action`, `since` (inclusive), `until` (exclusive), `limit` (default 100), `cursor`,
   * `invalid` (`"throw"`, the default, or `"skip"`: a page then holds fewer decisions than the rows it read, and
   * `nextCursor` continues after them).
   * @returns The page and the cursor of the next one.
   * @throws {TypeError} When a filter has the wrong type or `cursor` is not one this method returned.
   * @throws {RangeError} When `limit` is not an integer from 1 to 10,000, or a date is outside years 0 to 9999.
   * @throws {SerializationError} When a stored row cannot be read and `invalid` is `"throw"` (names every such row).
   *
   * @example Paging through one actor's decisions in a time window
   * ```ts
   * import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
   * import assert from "node:assert/strict";
   *
   * await using reg = await StateRegistry.inMemory();
   * const log = await DecisionLog.open(reg);
   * for (let minute = 0; minute < 5; minute++) {
   *   const timestamp = new Date(Date.UTC(2026, 10, 28, 9, minute));
   *   await log.log(newDecision("healer", minute % 2 ? "retry" : "heal", `at ${minute}`, { timestamp }));
   * }
   * const window = { actor: "healer", since: new Date(Date.UTC(2026, 10, 28, 9, 1)), limit: 2 };
   * const first = await log.query(window);
   * assert.deepEqual(first.decisions.map((d) => d.rationale), ["at 4", "at 3"]);
   * const second = await log.query({ ...window, cursor: first.nextCursor });
   * assert.deepEqual(second.decisions.map((d) => d.rationale), ["at 2", "at 1"]);
   * assert.equal(second.nextCursor, undefined);
   * assert.equal((await log.query({ action: "retry" })).decisions.length, 2);
   * ```
   */
  query(options: DecisionQuery = {}): Promise<DecisionPage> {
    return settle(() => {
      if (typeof options !== "object" || options === null) {
        throw new TypeError(`query() takes an options object, got ${describe(options)}`);
      }
      const { actor, action, since, until, cursor } = options;
      const limit = options.limit ?? 100;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
        throw new RangeError(`limit must be an integer from 1 to ${MAX_PAGE}, got ${describe(limit)}`);
      }
      const invalid = invalidOption(options);
      if (this.#keys !== undefined) {
        return this.#keys.query({
          actor: actor === undefined ? undefined : checkText("actor", actor),
          action: action === undefined ? undefined : checkText("action", action),
          since: since === undefined ? undefined : utcKey("since", since),
          until: until === undefined ? undefined : utcKey("until", until),
          after: cursor === undefined ? undefined : decodeCursor(cursor)[0],
          limit,
        }).then(({ rows, next }) => ({
          decisions: toDecisions(rows, invalid),
          nextCursor: next === undefined ? undefined : encodeCursor(next, 0),
        }));
      }
      const filters: QueryShape = {
        actor: actor !== undefined,
        action: action !== undefined,
        since: since !== undefined,
        until: until !== undefined,
        cursor: cursor !== undefined,
      };
      const params: SqlValue[] = [];
      if (actor !== undefined) params.push(checkText("actor", actor));
      if (action !== undefined) params.push(checkText("action", action));
      if (since !== undefined) params.push(utcKey("since", since));
      if (until !== undefined) params.push(utcKey("until", until));
      if (cursor !== undefined) {
        const [key, rowId] = decodeCursor(cursor);
        params.push(key, key, rowId);
      }
      const sql = querySql(filters);
      const rows = this.#registry.db.prepare(sql).all(...params, limit + 1);
      const more = rows.length > limit;
      if (more) rows.pop();
      const last = rows.at(-1);
      return {
        decisions: toDecisions(rows, invalid),
        nextCursor: more && last !== undefined
          ? encodeCursor(String(last.timestamp_utc), Number(last.row_id))
          : undefined,
      };
    });
  }
}

/**
 * Recreates the indexes and triggers of `xai_decisions` someone dropped (the
 * reads name their index, and would fail with "no such index"; rows another
 * program inserts without the triggers get no sort key). Reads only when
 * nothing is missing, so an up-to-date open takes no write lock.
 */
function repairSchema(registry: StateRegistry): void {
  const db = registry.db;
  const present = new Set(
    db.prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'xai_decisions' AND type IN ('index', 'trigger')")
      .all().map((row) => row.name),
  );
  const indexes = Object.entries({ idx_xai_actor_time: INDEX_SQL, ...UTC_INDEXES_SQL })
    .filter(([name]) => !present.has(name));
  const triggers = Object.entries(UTC_TRIGGERS_SQL).filter(([name]) => !present.has(name));
  if (indexes.length === 0 && triggers.length === 0) return;
  // IF NOT EXISTS: another process may be repairing at the same moment.
  const ifNotExists = (sql: string) =>
    sql.replace(/^CREATE (INDEX|TRIGGER) (?!IF NOT EXISTS)/, "CREATE $1 IF NOT EXISTS ");
  db.transaction(() => {
    for (const [, sql] of [...triggers, ...indexes]) db.exec(ifNotExists(sql));
    // Rows inserted while a trigger was missing have no sort key.
    if (triggers.length > 0) db.exec(`${BACKFILL_SQL} WHERE timestamp_utc IS NULL`);
  });
}

/** Runs work (synchronous, or a promise on a store without SQL) as a promise, so that a throw becomes a rejection. */
function settle<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Rounds to the nearest f32, then to the shortest decimal that is that f32 (as Rust prints an f32). */
function toF32(value: number): number {
  const f = Math.fround(value);
  if (!Number.isFinite(f)) return f;
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(f.toPrecision(digits));
    if (Math.fround(shorter) === f) return shorter;
  }
  return Number(f.toPrecision(9));
}

/** A `Date` bound as a `timestamp_utc` key (milliseconds, padded to nine fraction digits). */
function utcKey(what: string, date: Date): string {
  checkDate(what, date);
  checkYears(what, date);
  return `${date.toISOString().slice(0, 23)}000000Z`;
}

/** Refuses a date RFC 3339 cannot write: outside years 0000 to 9999 (`toISOString` gives six digits and a sign). */
function checkYears(what: string, date: Date): void {
  const iso = date.toISOString();
  if (iso.length !== 24) throw new RangeError(`${what} must be within years 0000 to 9999, got ${iso}`);
}

function invalidOption(options: DecisionReadOptions): "throw" | "skip" {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const invalid = options.invalid ?? "throw";
  if (invalid !== "throw" && invalid !== "skip") {
    throw new TypeError(`invalid must be "throw" or "skip", got ${describe(invalid)}`);
  }
  return invalid;
}

/** Decisions from rows; rows that cannot be read are skipped, or reported all together. */
function toDecisions(rows: Row[], invalid: "throw" | "skip"): Decision[] {
  const decisions: Decision[] = [];
  const failures: KernelError[] = [];
  for (const row of rows) {
    try {
      decisions.push(rowToDecision(row));
    } catch (error) {
      if (!(error instanceof KernelError)) throw error;
      failures.push(error);
    }
  }
  if (failures.length > 0 && invalid === "throw") {
    throw new SerializationError(
      `${failures.length} decision row(s) cannot be read (read past them with { invalid: "skip" }): ${
        failures.map((error) => error.message.replace(/^serialization error: /, "")).join("; ")
      }`,
      { cause: failures[0] },
    );
  }
  return decisions;
}

function encodeCursor(key: string, rowId: number): string {
  return new TextEncoder().encode(JSON.stringify([key, rowId])).toBase64({ alphabet: "base64url", omitPadding: true });
}

function decodeCursor(cursor: unknown): [string, number] {
  if (typeof cursor === "string") {
    try {
      const parsed: unknown = JSON.parse(
        new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.fromBase64(cursor, { alphabet: "base64url" })),
      );
      if (
        Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === "string" &&
        Number.isSafeInteger(parsed[1])
      ) {
        return [parsed[0], parsed[1]];
      }
    } catch {
      // Reported below.
    }
  }
  throw new TypeError(`cursor ${describe(cursor)} is not a cursor returned by query()`);
}

/**
 * A stored id as oxide-k's `Uuid::parse_str` reads it (hyphenated, 32 digits
 * without hyphens, `{braced}` or `urn:uuid:`, any case), as the lowercase
 * hyphenated text it displays; `undefined` when it is not a UUID.
 */
function parseUuid(stored: SqlValue | undefined): string | undefined {
  if (typeof stored !== "string") return undefined;
  const lower = stored.toLowerCase();
  const body = stored.startsWith("urn:uuid:")
    ? lower.slice(9)
    : lower.startsWith("{") && lower.endsWith("}")
    ? lower.slice(1, -1)
    : lower;
  if (UUID.test(body)) return body;
  if (/^[0-9a-f]{32}$/.test(body) && body === lower) {
    return `${body.slice(0, 8)}-${body.slice(8, 12)}-${body.slice(12, 16)}-${body.slice(16, 20)}-${body.slice(20)}`;
  }
  return undefined;
}

/** Builds a decision from a row, checking it as oxide-k's `row_to_decision` would. */
function rowToDecision(row: Row): Decision {
  const id = parseUuid(row.id);
  if (id === undefined) {
    throw new OtherError(`bad uuid: decision at rowid ${String(row.row_id)} has id ${describe(row.id)}, not a UUID`);
  }
  const timestamp = typeof row.timestamp === "string" ? parseTimestamp(row.timestamp) : undefined;
  if (timestamp === undefined) {
    throw new OtherError(`bad timestamp: decision '${id}' has ${describe(row.timestamp)}, not an RFC 3339 timestamp`);
  }
  for (const column of ["actor", "action", "rationale"] as const) {
    if (typeof row[column] !== "string") {
      throw new SerializationError(`decision '${id}' has a ${column} that is not text: ${describe(row[column])}`);
    }
  }
  if (typeof row.confidence !== "number") {
    throw new SerializationError(`decision '${id}' has a confidence that is not a number: ${describe(row.confidence)}`);
  }
  return {
    id,
    timestamp,
    actor: row.actor as string,
    action: row.action as string,
    rationale: row.rationale as string,
    inputs: decodeField(id, "inputs", row.inputs),
    output: decodeField(id, "output", row.output),
    confidence: toF32(row.confidence),
  };
}

function encodeField(id: string, field: string, value: unknown): string {
  try {
    return encodeJson(value);
  } catch (error) {
    if (!(error instanceof KernelError)) throw error;
    throw new SerializationError(
      `decision '${id}' ${field}: ${error.message.replace(/^serialization error: /, "")}`,
      { cause: error },
    );
  }
}

function decodeField(id: string, field: string, stored: SqlValue | undefined): unknown {
  if (typeof stored === "string") {
    try {
      return decodeJson(stored);
    } catch (error) {
      throw new SerializationError(
        `decision '${id}' has ${field} that is not valid JSON: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  throw new SerializationError(`decision '${id}' has ${field} that is not text: ${describe(stored)}`);
}

function checkDate(what: string, value: unknown): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new TypeError(`${what} must be a valid Date, got ${describe(value)}`);
  }
  return value;
}
