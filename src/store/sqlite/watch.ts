/**
 * The SQLite backend's watch: an async iterator over the change feed, woken
 * by a {@linkcode ChangeNotifier}, reading pages of events from a revision
 * onwards. Revisions are assigned inside write transactions, which SQLite
 * serializes, so once revision R is visible every revision below it is too:
 * reading "everything at or after the cursor" in revision order misses
 * nothing and repeats nothing.
 *
 * @module
 */
import { describe } from "../../_describe.ts";
import { CompactedError } from "../../errors.ts";
import type { Engine, Row } from "../../sqlite/engine.ts";
import type { ChangeEvent, WatchRequest } from "../store.ts";
import type { ChangeNotifier } from "./_change_notifier.ts";
import { LOG_COLUMNS, logEntry, logEvent } from "./_log_rows.ts";

/** How many events one read takes (a read never ends inside a revision, so a large batch can make it longer). */
const PAGE = 256;
/** Retry delay while the connection is inside another caller's transaction. */
const BUSY_RETRY_MS = 5;

/** The newest log row: where a watch of "changes from now on" starts. */
const HEAD_SQL = "SELECT seq, revision FROM oxide_changes ORDER BY seq DESC LIMIT 1";
/** The last log row before a revision: a watch from that revision reads the rows after it. */
const START_SQL =
  "SELECT coalesce((SELECT seq FROM oxide_changes WHERE revision < ?1 ORDER BY seq DESC LIMIT 1), 0) AS seq";
const COMPACTED_SQL = "SELECT compacted FROM oxide_revision WHERE id = 1";
/** The row before a given one of the same key (what a delete removed). */
const PREVIOUS_SQL =
  `SELECT ${LOG_COLUMNS} FROM oxide_changes WHERE space = ?1 AND key = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT 1`;

/** The filter a watch applies, as SQL and its parameters (after ?1 and ?2). */
interface Filter {
  readonly sql: string;
  readonly params: readonly string[];
}

function filterOf(request: WatchRequest): Filter {
  const spaces = [...new Set(request.spaces)];
  for (const space of spaces) {
    if (space !== "config" && space !== "modules") {
      throw new TypeError(`a watch follows "config" and "modules", got ${JSON.stringify(space)}`);
    }
  }
  if (spaces.length === 0) throw new TypeError("a watch needs at least one space to follow");
  const conditions = [spaces.length === 2 ? "1" : `space = '${spaces[0]}'`];
  const params: string[] = [];
  if (request.keys !== undefined) {
    conditions.push(`key IN (${request.keys.map((_, i) => `?${i + 3}`).join(", ")})`);
    params.push(...request.keys);
  } else if (request.prefix !== undefined && request.prefix !== "") {
    conditions.push("substr(key, 1, length(?3)) = ?3");
    params.push(request.prefix);
  }
  return { sql: conditions.join(" AND "), params };
}

/**
 * A watch on a SQLite store. Call {@linkcode FeedWatch.next} (or iterate);
 * `return()`, the signal or {@linkcode FeedWatch.end} stop it: a pending
 * `next()` then resolves `done`, and the notifier subscription, every timer
 * and the signal listener are released.
 */
export class FeedWatch implements AsyncIterableIterator<ChangeEvent> {
  readonly #db: Engine;
  readonly #notifier: ChangeNotifier;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.end();
  readonly #onEnd: (watch: FeedWatch) => void;
  readonly #pageSql: string;
  readonly #restSql: string;
  readonly #params: readonly string[];
  /** The next revision to deliver: every change below it was delivered (or did not match). */
  #nextRevision: number;
  /** The log row after which to read; `undefined` until the first read turns `#nextRevision` into a row. */
  #afterSeq: number | undefined;
  #buffer: ChangeEvent[] = [];
  #bufferAt = 0;
  /** `next()` calls not yet answered, oldest first. */
  readonly #waiting: PromiseWithResolvers<IteratorResult<ChangeEvent>>[] = [];
  #subscription: Disposable | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #done = false;

  /**
   * Starts a watch. Without `fromRevision` it starts at the current head, read now (synchronously), so a change
   * committed after this call is delivered.
   *
   * @param db The store's connection.
   * @param notifier Wakes the watch when the database may have changed.
   * @param request What to follow, and from where.
   * @param onEnd Called once when the watch ends (the store forgets it).
   * @throws {TypeError} when the request has the wrong shape.
   * @throws {RangeError} when `fromRevision` is not a positive safe integer, or `keys` is empty.
   */
  constructor(db: Engine, notifier: ChangeNotifier, request: WatchRequest, onEnd: (watch: FeedWatch) => void) {
    const { fromRevision, keys, prefix, signal } = request;
    if (fromRevision !== undefined && (!Number.isSafeInteger(fromRevision) || fromRevision < 1)) {
      throw new RangeError(`fromRevision must be a positive safe integer, got ${describe(fromRevision)}`);
    }
    if (keys !== undefined && prefix !== undefined) throw new TypeError("a watch takes keys or a prefix, not both");
    if (keys !== undefined && (!Array.isArray(keys) || keys.length === 0)) {
      throw new RangeError("keys must be a non-empty array of keys (omit it to follow every key)");
    }
    for (const key of keys ?? []) {
      if (typeof key !== "string") throw new TypeError(`a watched key must be a string, got ${describe(key)}`);
    }
    if (prefix !== undefined && typeof prefix !== "string") {
      throw new TypeError(`prefix must be a string, got ${describe(prefix)}`);
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(`signal must be an AbortSignal, got ${describe(signal)}`);
    }
    const filter = filterOf(request);
    this.#db = db;
    this.#notifier = notifier;
    this.#signal = signal;
    this.#onEnd = onEnd;
    this.#params = filter.params;
    // One statement, one snapshot: the compacted revision and the head are read with the rows.
    this.#pageSql = `SELECT h.compacted AS compacted, h.head_seq AS head_seq, h.head_revision AS head_revision, c.*
FROM (SELECT (${COMPACTED_SQL}) AS compacted,
             (SELECT seq FROM oxide_changes ORDER BY seq DESC LIMIT 1) AS head_seq,
             (SELECT revision FROM oxide_changes ORDER BY seq DESC LIMIT 1) AS head_revision) AS h
LEFT JOIN (SELECT ${LOG_COLUMNS} FROM oxide_changes WHERE seq > ?1 AND ${filter.sql} ORDER BY seq LIMIT ?2) AS c
ORDER BY c.seq`;
    // The rest of a revision a page stopped in (?2: that revision).
    this.#restSql = `SELECT ${LOG_COLUMNS} FROM oxide_changes WHERE seq > ?1 AND revision = ?2 AND ${filter.sql}
ORDER BY seq`;
    if (fromRevision === undefined) {
      const head = db.prepare(HEAD_SQL).get();
      this.#afterSeq = head === undefined ? 0 : Number(head.seq);
      this.#nextRevision = head === undefined
        ? Number(db.prepare(COMPACTED_SQL).get()?.compacted ?? 0) + 1
        : Number(head.revision) + 1;
    } else {
      this.#nextRevision = fromRevision;
    }
    if (signal?.aborted) {
      this.#done = true;
      return;
    }
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** The next revision this watch will deliver: to resume after a restart, watch from the last event's revision + 1. */
  get nextRevision(): number {
    return this.#nextRevision;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * The next event, waiting for one if none is ready.
   *
   * @returns The event, or `done` once the watch ended.
   * @throws {CompactedError} when retention dropped changes this watch had still to deliver (then it ends).
   */
  next(): Promise<IteratorResult<ChangeEvent>> {
    if (this.#waiting.length === 0) {
      const ready = this.#take();
      if (ready !== undefined) return ready;
    }
    const waiter = Promise.withResolvers<IteratorResult<ChangeEvent>>();
    this.#waiting.push(waiter);
    // The first wait subscribes; the subscription lasts until the watch ends.
    this.#subscription ??= this.#notifier.subscribe(() => this.#wake());
    return waiter.promise;
  }

  /**
   * Ends the watch; pending `next()` calls resolve `done`.
   *
   * @returns `done`.
   */
  return(): Promise<IteratorResult<ChangeEvent>> {
    this.end();
    return Promise.resolve({ done: true, value: undefined });
  }

  /**
   * Ends the watch and rejects with `error`, as a generator would.
   *
   * @param error The error to throw.
   * @returns A promise that rejects with `error`.
   */
  throw(error?: unknown): Promise<IteratorResult<ChangeEvent>> {
    this.end();
    return Promise.reject(error);
  }

  /** Ends the watch (idempotent): releases the subscription, the timer and the signal listener. */
  end(): void {
    if (!this.#done) {
      this.#done = true;
      this.#onEnd(this);
    }
    this.#buffer = [];
    this.#subscription?.[Symbol.dispose]();
    this.#subscription = undefined;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const waiter of this.#waiting.splice(0)) waiter.resolve({ done: true, value: undefined });
  }

  /** A ready answer for `next()`, or `undefined` when it must wait. */
  #take(): Promise<IteratorResult<ChangeEvent>> | undefined {
    if (this.#done) return Promise.resolve({ done: true, value: undefined });
    if (this.#bufferAt >= this.#buffer.length) {
      try {
        if (!this.#fill()) return undefined;
      } catch (error) {
        this.end();
        return Promise.reject(error);
      }
    }
    return Promise.resolve({ done: false, value: this.#buffer[this.#bufferAt++]! });
  }

  /** Reads the next page into the buffer; `false` when nothing is there yet (or the connection is busy). */
  #fill(): boolean {
    const db = this.#db;
    if (!db.isOpen) {
      this.end(); // The store closed: the watch ends.
      return false;
    }
    if (db.inTransaction) {
      // Reads here would see another caller's uncommitted writes: wait until its transaction ends.
      this.#retry ??= setTimeout(() => {
        this.#retry = undefined;
        this.#wake();
      }, BUSY_RETRY_MS);
      return false;
    }
    this.#afterSeq ??= Number(db.prepare(START_SQL).get(this.#nextRevision)?.seq ?? 0);
    const rows = db.prepare(this.#pageSql).all(this.#afterSeq, PAGE, ...this.#params);
    const first = rows[0]!;
    const compacted = Number(first.compacted ?? 0);
    if (this.#nextRevision < compacted) throw new CompactedError(this.#nextRevision, compacted);
    const found = first.seq === null ? [] : rows;
    if (found.length === PAGE) {
      const last = found[found.length - 1]!;
      found.push(...db.prepare(this.#restSql).all(last.seq!, last.revision!, ...this.#params));
    }
    if (found.length < PAGE && first.head_seq !== null) {
      // Everything up to the head was read: changes there that did not match need no second look, even once compacted.
      this.#afterSeq = Math.max(this.#afterSeq, Number(first.head_seq));
      this.#nextRevision = Math.max(this.#nextRevision, Number(first.head_revision) + 1);
    }
    if (found.length === 0) return false;
    const last = found[found.length - 1]!;
    this.#afterSeq = Math.max(this.#afterSeq, Number(last.seq));
    this.#nextRevision = Math.max(this.#nextRevision, Number(last.revision) + 1);
    this.#buffer = found.map((row) => (row.type === "delete" ? this.#deleteEvent(row) : logEvent(row)));
    this.#bufferAt = 0;
    return true;
  }

  /** A delete carries the entry it removed (its last put), as `previous` and as its value. */
  #deleteEvent(row: Row): ChangeEvent {
    const event = logEvent(row);
    const before = this.#db.prepare(PREVIOUS_SQL).get(row.space!, row.key!, row.seq!);
    if (before === undefined || before.type !== "put") return event;
    const previous = logEntry(before);
    return { type: "delete", entry: { ...event.entry, value: previous.value } as typeof event.entry, previous };
  }

  /** The database may have changed: answer waiting `next()` calls with what is there. */
  #wake(): void {
    while (this.#waiting.length > 0) {
      const ready = this.#take();
      if (ready === undefined) return;
      const waiter = this.#waiting.shift()!;
      ready.then(waiter.resolve, waiter.reject);
    }
  }
}
