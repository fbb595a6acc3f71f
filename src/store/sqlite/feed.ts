/**
 * The change-feed half of the SQLite store: watch, compaction and
 * retention over the revision schema's change log, with the notifier that
 * wakes watchers. The store owns one per connection and calls
 * {@linkcode SqliteChangeFeed.committed} after each of its commits.
 *
 * @module
 */
import type { Engine } from "../../sqlite/engine.ts";
import type { WatchRequest } from "../store.ts";
import { ChangeNotifier, type ChangeNotifierOptions } from "./_change_notifier.ts";
import { compactedRevision, compactLog, Retention, type RetentionOptions } from "./history.ts";
import { FeedWatch } from "./watch.ts";

/** Options of {@linkcode SqliteChangeFeed}. */
export interface ChangeFeedOptions extends ChangeNotifierOptions {
  readonly retention?: RetentionOptions | undefined;
}

/** Watch and retention on one connection. */
export class SqliteChangeFeed {
  readonly #db: Engine;
  readonly #notifier: ChangeNotifier;
  readonly #retention: Retention;
  readonly #watches = new Set<FeedWatch>();
  #closed = false;

  /**
   * @param db The store's connection (migrated: the change log exists).
   * @param options Retention and file watching.
   * @throws {RangeError} for retention settings out of range.
   */
  constructor(db: Engine, options: ChangeFeedOptions = {}) {
    this.#db = db;
    this.#retention = new Retention(db, options.retention);
    this.#notifier = new ChangeNotifier(db, options);
  }

  /** How many history versions each config key keeps. */
  get historyVersions(): number {
    return this.#retention.options.historyVersions;
  }

  /** Compacts now if retention asks for it (the store calls it once at open). */
  checkRetention(): void {
    this.#retention.check();
  }

  /** To be called after each commit on this connection: wakes this connection's watchers, runs retention. */
  committed(): void {
    this.#notifier.committed();
    this.#retention.committed();
  }

  /**
   * Starts a watch (see {@linkcode FeedWatch}).
   *
   * @param request What to follow and from where.
   * @returns The watch.
   */
  watch(request: WatchRequest): FeedWatch {
    if (this.#closed) throw new Error("the change feed is closed");
    const watch = new FeedWatch(this.#db, this.#notifier, request, (ended) => this.#watches.delete(ended));
    this.#watches.add(watch);
    return watch;
  }

  /**
   * Compacts the log to `revision`.
   *
   * @throws {OtherError} when `revision` is above the current revision.
   */
  compact(revision: number): void {
    compactLog(this.#db, revision);
  }

  /** The oldest revision the feed still serves. */
  compactedRevision(): number {
    return compactedRevision(this.#db);
  }

  /** Ends every watch and stops the notifier; resolves once its file watch ended. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    for (const watch of [...this.#watches]) watch.end();
    return this.#notifier.close();
  }
}
