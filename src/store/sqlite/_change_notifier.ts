/**
 * Wakes watchers when a registry file may have changed: commits on this
 * connection (announced by the store), on other connections of this process,
 * in other processes, and by a Rust kernel writing the file with SQL that
 * knows nothing of us.
 *
 * SQLite offers no cross-process notification, so the notifier combines two
 * cheap signals and never spins:
 *
 * - `PRAGMA data_version`, which changes when another connection committed
 *   (a few microseconds: it reads the WAL index in shared memory), and
 *   `total_changes()` for this connection's own writes;
 * - a file-system watch on the database's folder (inotify, FSEvents, ...):
 *   a write to the `-wal` file wakes the notifier at once. The event arrives
 *   when the frames are written, before the commit is visible, so the
 *   notifier then polls `data_version` briefly ("hot" polling) until the
 *   commit shows.
 *
 * A slow backstop poll covers what the file watch cannot see (no permission
 * to watch the folder, network file systems, dropped events). With no watch
 * available the poll runs at {@linkcode FALLBACK_POLL_MS}. Everything runs
 * only while someone listens: no listener, no timer, no watcher.
 *
 * @module
 */
import type { Engine } from "../../sqlite/engine.ts";

/** Backstop poll while the file watch works: catches what it missed, at about no cost. */
export const BACKSTOP_POLL_MS = 250;
/** Poll interval when the folder cannot be watched: keeps latency near this at a small, steady cost. */
export const FALLBACK_POLL_MS = 10;
/** Poll interval while a commit seen on the file system is not yet visible. */
const HOT_POLL_MS = 1;
/** How long after the last file-system event hot polling lasts (covers a slow fsync). */
const HOT_WINDOW_MS = 500;

/**
 * What changes when the database may have: `data_version` for commits by other connections, `total_changes()` for
 * this connection's own (writes through `reg.db` included; a rolled-back change only costs a spurious wake).
 */
const VERSION_SQL = "SELECT (SELECT data_version FROM pragma_data_version) AS data_version, total_changes() AS changes";

/** How the notifier watches a file. */
export interface ChangeNotifierOptions {
  /** Watch the folder with `Deno.watchFs` when permitted. Default `true`. */
  readonly watchFiles?: boolean | undefined;
}

/**
 * One per store connection. Listeners are called (synchronously, from a
 * timer, a file event or {@linkcode ChangeNotifier.committed}) when the
 * database may have changed; they re-read what they follow. A call can be
 * spurious; a change is never missed once a listener is subscribed.
 */
export class ChangeNotifier {
  readonly #engine: Engine;
  readonly #watchFiles: boolean;
  readonly #listeners = new Set<() => void>();
  readonly #version: { get(): Record<string, unknown> | undefined };
  readonly #file: boolean;
  #lastVersion: unknown;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #pump: Promise<void> | undefined;
  /** Until when (performance.now()) to poll hot. */
  #hotUntil = 0;
  #closed = false;

  /**
   * @param engine The store's connection: `data_version` is read on it.
   * @param options File watching.
   */
  constructor(engine: Engine, options: ChangeNotifierOptions = {}) {
    this.#engine = engine;
    this.#watchFiles = options.watchFiles ?? true;
    this.#file = engine.path !== ":memory:";
    this.#version = engine.prepare(VERSION_SQL);
  }

  /** How many listeners are subscribed. */
  get listeners(): number {
    return this.#listeners.size;
  }

  /** Whether a file-system watch is running (for tests and diagnostics). */
  get watchingFiles(): boolean {
    return this.#watcher !== undefined;
  }

  /**
   * Calls `listener` whenever the database may have changed, until the
   * returned handle is disposed. The first listener starts the polling (and
   * file watch); the last one to leave stops them.
   *
   * @param listener Called with no arguments; must not throw.
   * @returns A handle whose disposal unsubscribes (idempotent).
   */
  subscribe(listener: () => void): Disposable {
    if (this.#closed) throw new Error("the change notifier is closed");
    const wrapped = () => listener();
    this.#listeners.add(wrapped);
    if (this.#listeners.size === 1) this.#start();
    return {
      [Symbol.dispose]: () => {
        if (this.#listeners.delete(wrapped) && this.#listeners.size === 0) this.#stop();
      },
    };
  }

  /** Announces a commit made on this connection (`data_version` does not change for those). */
  committed(): void {
    if (this.#listeners.size > 0) this.#fire();
  }

  /**
   * Stops everything; listeners are dropped (they are not called again).
   * Resolves once the file watch has ended.
   */
  close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    return this.#stop();
  }

  #start(): void {
    this.#lastVersion = this.#readVersion();
    if (this.#file && this.#watchFiles) this.#watch();
    this.#schedule();
  }

  #stop(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#hotUntil = 0;
    const watcher = this.#watcher;
    this.#watcher = undefined;
    if (watcher !== undefined) {
      try {
        watcher.close();
      } catch {
        // Already closed (its folder went away).
      }
    }
    return this.#pump ?? Promise.resolve();
  }

  /** Starts a file watch on the database's folder when permitted; otherwise polling alone must do. */
  #watch(): void {
    const path = this.#engine.path;
    const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
    const folder = slash === -1 ? "." : path.slice(0, slash) || "/";
    const base = path.slice(slash + 1);
    if (Deno.permissions.querySync({ name: "read", path: folder }).state !== "granted") return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(folder, { recursive: false });
    } catch {
      return; // No inotify instances left, an unsupported file system, ...: the poll covers it.
    }
    this.#watcher = watcher;
    const names = [base, `${base}-wal`];
    this.#pump = (async () => {
      try {
        for await (const event of watcher) {
          if (event.paths.some((p) => names.some((name) => p.endsWith(name)))) this.#heat();
        }
      } catch {
        // The watch failed: fall back to the poll alone.
      } finally {
        if (this.#watcher === watcher) {
          this.#watcher = undefined;
          if (this.#listeners.size > 0) this.#schedule();
        }
      }
    })();
  }

  /** A file event: the file is being written. Poll hot until the commit shows (or the window ends). */
  #heat(): void {
    if (this.#listeners.size === 0) return;
    const wasHot = this.#hotUntil > performance.now();
    this.#hotUntil = performance.now() + HOT_WINDOW_MS;
    if (!wasHot) this.#poll(); // Often already visible; else poll again in HOT_POLL_MS.
  }

  #schedule(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#listeners.size === 0) return;
    const delay = this.#hotUntil > performance.now()
      ? HOT_POLL_MS
      : this.#watcher === undefined
      ? FALLBACK_POLL_MS
      : BACKSTOP_POLL_MS;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#poll();
    }, delay);
  }

  #poll(): void {
    if (this.#listeners.size === 0) return;
    const version = this.#readVersion();
    if (version !== this.#lastVersion) {
      this.#lastVersion = version;
      this.#hotUntil = 0; // The commit showed: back to the slow poll until the next file event.
      this.#fire();
    }
    this.#schedule();
  }

  #readVersion(): unknown {
    if (!this.#engine.isOpen) return undefined;
    try {
      const row = this.#version.get();
      return `${row?.data_version}:${row?.changes}`;
    } catch {
      return undefined; // A busy or closing connection: the next poll tries again.
    }
  }

  #fire(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}
