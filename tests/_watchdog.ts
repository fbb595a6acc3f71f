// A watchdog for tests that wait on something that may never come (a watch event, a line from a watching process):
// a hang fails that one test with a message naming what it waited for, within a bounded time, instead of holding
// the whole run until CI's job limit. The timer is cleared however the wait ends (the sanitizers stay on).

/**
 * How long a test waits for one event or line: far beyond what a loaded machine needs (events arrive within
 * milliseconds), far below CI's job limit.
 */
export const WATCH_DEADLINE_MS = 60_000;

/** The error a watchdog fails a test with. */
export class DeadlineError extends Error {
  override readonly name = "DeadlineError";
}

/**
 * Resolves or rejects as `promise` does, unless `ms` pass first: then rejects with a {@linkcode DeadlineError}
 * naming `what` (e.g. "the 3rd event of watch({ prefix: 'net.' })"). The promise itself is left to settle later: the
 * test's cleanup (closing the registry, killing the process) ends it.
 */
export function within<T>(promise: Promise<T>, what: string, ms: number = WATCH_DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`watchdog: ${what} did not come within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The next `count` values of `iterator`, each within `ms` ({@linkcode within}); fails when the iterator ends early.
 * Messages say how many values came and what the last one was.
 */
export async function take<T>(
  iterator: AsyncIterator<T>,
  count: number,
  what = "watch",
  ms: number = WATCH_DEADLINE_MS,
): Promise<T[]> {
  const values: T[] = [];
  while (values.length < count) {
    const seen = values.length === 0 ? "none before it" : `last before it: ${brief(values.at(-1))}`;
    const next = await within(iterator.next(), `value ${values.length + 1} of ${count} from ${what} (${seen})`, ms);
    if (next.done) throw new Error(`${what} ended after ${values.length} of ${count} values`);
    values.push(next.value);
  }
  return values;
}

function brief(value: unknown): string {
  try {
    return JSON.stringify(value, (_, v) => typeof v === "bigint" ? `${v}n` : v)?.slice(0, 200) ?? String(value);
  } catch {
    return String(value);
  }
}
