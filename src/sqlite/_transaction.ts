// BEGIN IMMEDIATE / COMMIT / ROLLBACK and savepoints, shared by both engines.
import type { Statement } from "./engine.ts";

/** What a connection lends to {@linkcode runTransaction}. */
export interface TransactionHost {
  readonly inTransaction: boolean;
  prepare(sql: string): Statement;
  exec(sql: string): void;
}

let savepointCounter = 0;

/**
 * Runs `fn` in a transaction on `host`: `BEGIN IMMEDIATE` at the outermost
 * level (so the write lock is taken up front and the busy timeout applies),
 * a savepoint when nested. Commits when `fn` returns, rolls back when it throws.
 */
export function runTransaction<T>(host: TransactionHost, fn: () => T): T {
  if (host.inTransaction) return runSavepoint(host, fn);
  beginImmediate(host);
  let result: T;
  try {
    result = checkSync(fn());
    host.prepare("COMMIT").run();
  } catch (error) {
    // A failed COMMIT may already have rolled back; only roll back what is open.
    if (host.inTransaction) host.prepare("ROLLBACK").run();
    throw error;
  }
  return result;
}

const SQLITE_BUSY = 5;

/**
 * `BEGIN IMMEDIATE`, waiting for the write lock as long as other connections keep committing (see
 * {@linkcode retryWhileBusy}).
 */
function beginImmediate(host: TransactionHost): void {
  const begin = host.prepare("BEGIN IMMEDIATE");
  retryWhileBusy(host, () => begin.run());
}

/**
 * Runs `attempt`, a statement that takes the write lock outside any transaction (`BEGIN IMMEDIATE`, or one
 * autocommit write), again after SQLITE_BUSY as long as other connections keep committing.
 *
 * SQLite's busy handler polls the lock with sleeps of up to 100 ms; writers that commit back to back take it again
 * within microseconds, so a waiter can miss every gap for a whole busy timeout while the file moves on (measured: one
 * of 8 processes writing in a loop failed after 5 s while the others committed thousands of times). So a busy timeout
 * here means what a caller expects: a write fails with SQLITE_BUSY only when a whole timeout passed without any other
 * connection committing (one transaction held the lock throughout). `PRAGMA data_version` tells the two apart, and is
 * read only once the lock was refused: the common path runs one statement, as before. A busy timeout of 0 keeps its
 * meaning: fail at once. Retrying is safe: a statement refused the lock wrote nothing.
 *
 * @param host The connection, not in a transaction.
 * @param attempt The statement to run.
 * @returns What `attempt` returned.
 */
export function retryWhileBusy<T>(host: TransactionHost, attempt: () => T): T {
  let seen: unknown;
  for (;;) {
    try {
      return attempt();
    } catch (error) {
      if (!isBusy(error) || host.inTransaction) throw error;
      let version: unknown;
      try {
        if (seen === undefined && Number(host.prepare("PRAGMA busy_timeout").get()?.timeout ?? 0) === 0) throw error;
        version = host.prepare("PRAGMA data_version").get()?.data_version;
      } catch {
        throw error;
      }
      // The first refusal only starts the clock: whether the file moved during that wait is unknown.
      if (seen !== undefined && version === seen) throw error;
      seen = version;
    }
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "number" && (code & 0xff) === SQLITE_BUSY;
}

function runSavepoint<T>(host: TransactionHost, fn: () => T): T {
  const name = `oxide_sp_${++savepointCounter}`;
  host.exec(`SAVEPOINT ${name}`);
  try {
    const result = checkSync(fn());
    host.exec(`RELEASE ${name}`);
    return result;
  } catch (error) {
    if (host.inTransaction) host.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
    throw error;
  }
}

function checkSync<T>(result: T): T {
  if (result instanceof Promise) {
    result.catch(() => {}); // It will never be awaited; do not let it reject unhandled.
    throw new TypeError(
      "transaction() takes a synchronous function: it returned a Promise",
    );
  }
  return result;
}
