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
  host.prepare("BEGIN IMMEDIATE").run();
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
