/**
 * Retention on the SQLite store. History is the change log itself: a
 * config key's versions are its `put` rows in `oxide_changes` (newest
 * first), so a write costs no second row. Retention bounds the log, and so
 * history, as etcd's compaction bounds its MVCC history: compaction to
 * revision R drops the rows below R except, for each key, its newest row
 * below R when that is a put not replaced by a put at R (the key's entry at
 * revision R: a live key's current entry, or the value a later delete
 * removed) and the newest row of the log (it carries the current revision).
 *
 * @module
 */
import { describe } from "../../_describe.ts";
import { OtherError } from "../../errors.ts";
import type { Engine } from "../../sqlite/engine.ts";

/**
 * How much change data a registry file keeps.
 *
 * @example
 * ```ts
 * import { type RetentionOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const retention: RetentionOptions = { historyVersions: 3, revisions: 1000 };
 * await using reg = await StateRegistry.inMemory({ retention });
 * for (let i = 1; i <= 5; i++) await reg.setConfig("level", i);
 * const history = await reg.configHistory("level");
 * assert.deepEqual(history.map((version) => version.value), [5, 4, 3]);
 * ```
 */
export interface RetentionOptions {
  /** Versions of each config key kept in history, the current one included (Vault's `max_versions`). Default 10; 0: no history. */
  historyVersions?: number | undefined;
  /** Revisions the change feed keeps: automatic compaction drops older ones. Default 10,000; `Infinity`: no limit. */
  revisions?: number | undefined;
  /** Also drop revisions older than this many seconds. Default: no age limit. */
  maxAgeSeconds?: number | undefined;
}

/** Retention settings with every default filled in. */
export interface Retained {
  readonly historyVersions: number;
  readonly revisions: number;
  readonly maxAgeSeconds: number;
}

/** The defaults of {@linkcode RetentionOptions}. */
export const DEFAULT_RETENTION: Retained = {
  historyVersions: 10,
  revisions: 10_000,
  maxAgeSeconds: Infinity,
};

/** Checks retention options and fills in the defaults. */
export function retentionOf(options: RetentionOptions | undefined): Retained {
  if (options === undefined) return { ...DEFAULT_RETENTION };
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`retention must be an object, got ${describe(options)}`);
  }
  const historyVersions = options.historyVersions ?? DEFAULT_RETENTION.historyVersions;
  if (!Number.isSafeInteger(historyVersions) || historyVersions < 0) {
    throw new RangeError(`retention.historyVersions must be a non-negative integer, got ${describe(historyVersions)}`);
  }
  const revisions = options.revisions ?? DEFAULT_RETENTION.revisions;
  if (revisions !== Infinity && (!Number.isSafeInteger(revisions) || revisions < 1)) {
    throw new RangeError(`retention.revisions must be a positive integer or Infinity, got ${describe(revisions)}`);
  }
  const maxAgeSeconds = options.maxAgeSeconds ?? DEFAULT_RETENTION.maxAgeSeconds;
  if (typeof maxAgeSeconds !== "number" || Number.isNaN(maxAgeSeconds) || maxAgeSeconds <= 0) {
    throw new RangeError(`retention.maxAgeSeconds must be a positive number, got ${describe(maxAgeSeconds)}`);
  }
  return { historyVersions, revisions, maxAgeSeconds };
}

const SQL = {
  compacted: "SELECT compacted FROM oxide_revision WHERE id = 1",
  head: "SELECT revision FROM oxide_changes ORDER BY seq DESC LIMIT 1",
  // The first revision newer than the age limit, among the rows compaction could drop.
  firstNewerThan: "SELECT revision FROM oxide_changes WHERE revision >= ?1 AND changed_at >= ?2 ORDER BY seq LIMIT 1",
  // The first row at the compaction revision ?1 or later, and the first after it: rows are in revision order, so the
  // rows before the first are the ones below ?1.
  boundary: "SELECT seq FROM oxide_changes WHERE revision >= ?1 ORDER BY seq LIMIT 1",
  after: "SELECT seq FROM oxide_changes WHERE revision > ?1 ORDER BY seq LIMIT 1",
  // ?1: the compaction revision, ?2 and ?3: the boundaries above. Drops the rows below ?1, but keeps the log's
  // newest row and each key's newest put below ?1 unless a put at ?1 replaced it: the key's entry at the compacted
  // revision, as etcd keeps it, so a read at that revision and the previous entry of a later delete still find it.
  // Only rows before ?2 are looked at (a row below ?1 after a row at ?1 or later, which no writer of ours makes, is
  // kept), each through the key index (rowid ranges within a key): one index step per candidate row.
  compact: `DELETE FROM oxide_changes AS o
  WHERE o.seq < ?2 AND o.revision < ?1
    AND o.seq <> (SELECT max(seq) FROM oxide_changes)
    AND (o.type <> 'put' OR EXISTS (
      SELECT 1 FROM oxide_changes n WHERE n.space = o.space AND n.key = o.key AND n.seq > o.seq AND n.seq < ?3
        AND (n.seq < ?2 OR n.type = 'put')))`,
  busyTimeout: "PRAGMA busy_timeout",
  setCompacted: "UPDATE oxide_revision SET compacted = ?1 WHERE id = 1 AND compacted < ?1",
} as const;

/** The oldest revision the change feed still serves (0: nothing compacted yet). */
export function compactedRevision(db: Engine): number {
  return Number(db.prepare(SQL.compacted).get()?.compacted ?? 0);
}

/**
 * Compacts the log to `revision` (see the module doc), in one transaction.
 *
 * @returns How many log rows were dropped.
 * @throws {OtherError} when `revision` is above the current revision.
 */
export function compactLog(db: Engine, revision: number): number {
  if (!Number.isSafeInteger(revision) || revision < 0) {
    throw new RangeError(`a compaction revision must be a non-negative integer, got ${describe(revision)}`);
  }
  return db.transaction(() => {
    const head = Number(db.prepare(SQL.head).get()?.revision ?? 0);
    if (revision > head) {
      throw new OtherError(
        `cannot compact to revision ${revision}: it is in the future (the current revision is ${head})`,
      );
    }
    if (revision <= compactedRevision(db)) return 0;
    const boundary = db.prepare(SQL.boundary).get(revision)?.seq;
    if (boundary === undefined) return 0; // Nothing at or above the revision: cannot happen below the head.
    const after = db.prepare(SQL.after).get(revision)?.seq ?? Number.MAX_SAFE_INTEGER;
    const dropped = db.prepare(SQL.compact).run(revision, boundary, after).changes;
    db.prepare(SQL.setCompacted).run(revision);
    return dropped;
  });
}

/** How many of its own commits a handle makes between checks for automatic compaction. */
const CHECK_EVERY = 128;

/** At most this many revisions go in one automatic compaction: its transaction stays short. */
const STEP_REVISIONS = 2_000;

/**
 * Automatic compaction for one store handle: every {@linkcode CHECK_EVERY}
 * commits (and when the store opens), compacts when the feed holds more than
 * `revisions` revisions (plus a tenth, so compaction runs in batches) or
 * revisions older than `maxAgeSeconds`. A Rust kernel does not compact; any
 * of our handles writing the file does it for everyone.
 *
 * It is background work, so it never makes a caller wait or fail: it takes the write lock only if it is free at
 * once (busy timeout 0 for its transaction; a busy file is compacted at a later check), drops at most
 * {@linkcode STEP_REVISIONS} revisions per transaction (a large backlog goes over several checks), and swallows
 * its own errors. Before this, a compaction at open waited up to a whole busy timeout for the lock and then held
 * it for as long as its delete took, long enough under load for other processes' writes to time out.
 */
export class Retention {
  readonly options: Retained;
  readonly #db: Engine;
  #commits = 0;

  constructor(db: Engine, options: RetentionOptions | undefined) {
    this.#db = db;
    this.options = retentionOf(options);
  }

  /** Called after each commit of this handle. */
  committed(): void {
    if (++this.#commits % CHECK_EVERY === 0) this.check();
  }

  /** Compacts now if retention asks for it and the write lock is free. Never throws, never waits for a lock. */
  check(): void {
    const db = this.#db;
    if (!db.isOpen || db.inTransaction) return;
    try {
      const { revisions, maxAgeSeconds } = this.options;
      const head = Number(db.prepare(SQL.head).get()?.revision ?? 0);
      const compacted = compactedRevision(db);
      let target = compacted;
      if (revisions !== Infinity && head - compacted > revisions + Math.ceil(revisions / 10)) {
        target = head - revisions + 1;
      }
      if (maxAgeSeconds !== Infinity) {
        const limit = Math.floor(Date.now() / 1000 - maxAgeSeconds);
        const newer = db.prepare(SQL.firstNewerThan).get(compacted, limit);
        target = Math.max(target, newer === undefined ? head : Number(newer.revision));
      }
      if (target > compacted) compactWithoutWaiting(db, Math.min(target, compacted + STEP_REVISIONS));
    } catch {
      // SQLITE_BUSY and the like: the next check tries again.
    }
  }
}

/** {@linkcode compactLog} if the write lock is free now; throws SQLITE_BUSY at once otherwise. */
function compactWithoutWaiting(db: Engine, revision: number): void {
  const timeout = Number(db.prepare(SQL.busyTimeout).get()?.timeout ?? 0);
  db.exec("PRAGMA busy_timeout = 0");
  try {
    compactLog(db, revision);
  } finally {
    db.exec(`PRAGMA busy_timeout = ${timeout}`);
  }
}
