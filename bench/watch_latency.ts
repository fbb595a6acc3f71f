// Watch latency from a write in another process to the event in the watcher, as the median and p99 over many
// writes: `deno task bench:watch`. A writer process commits a config value every ~25 ms and notes when each commit
// returned; a watcher process (tests/fixtures/watcher.ts) stamps each event as it arrives; both read the same clock
// (performance.timeOrigin + performance.now()). Rows: each engine watching, with the folder watch the registry uses
// when it may read the database's folder, and with the polling fallback when it may read only the database file.

/** A watcher process (tests/fixtures/watcher.ts), read line by line. `deno` by name: `--allow-run=deno` allows it. */
class Watcher {
  readonly child: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(options: unknown, folders: string[]) {
    const allow = folders.join(",");
    const script = new URL("../tests/fixtures/watcher.ts", import.meta.url).pathname;
    this.child = new Deno.Command("deno", {
      args: ["run", "--allow-ffi", `--allow-read=${allow}`, `--allow-write=${allow}`, script, JSON.stringify(options)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())[
      Symbol.asyncIterator
    ]();
    this.#stdin = this.child.stdin.getWriter();
  }

  async nextLine(): Promise<string | undefined> {
    const next = await this.#lines.next();
    return next.done ? undefined : next.value;
  }

  /** Asks the watcher to stop, and waits for it. */
  async stop(): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode("stop\n")).catch(() => {});
    await this.#stdin.close().catch(() => {});
    while ((await this.nextLine()) !== undefined) { /* drain */ }
    await this.child.status;
  }
}

function splitLines(): TransformStream<string, string> {
  let pending = "";
  return new TransformStream({
    transform(chunk, controller) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) controller.enqueue(line);
    },
  });
}

const DIR = new URL("../data/bench-watch", import.meta.url).pathname;
const WRITES = 200;
const GAP_MS = 25;

/** One watch-latency row: a watcher configuration, and its latencies in milliseconds. */
export interface WatchLatencyRow {
  name: string;
  median: number;
  p99: number;
  max: number;
  events: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function measure(name: string, engine: "ffi" | "node", folderWatch: boolean): Promise<WatchLatencyRow> {
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  await Deno.mkdir(DIR, { recursive: true });
  const path = `${DIR}/registry.db`;
  // Create the file (and its tables) before either process opens it.
  const setup = new Watcher({ path, engine, variant: "plain" }, [DIR]);
  if ((await setup.nextLine()) !== JSON.stringify({ ready: true })) throw new Error("setup watcher did not start");
  await setup.stop();

  // Without folder access the registry cannot watch the folder and polls; it still needs the file and its -wal/-shm.
  const files = folderWatch ? [DIR] : [path, `${path}-wal`, `${path}-shm`];
  const watcher = new Watcher({ path, engine, variant: "plain", spaces: ["config"] }, files);
  const ready = await watcher.nextLine();
  if (ready !== JSON.stringify({ ready: true })) throw new Error(`the watcher did not start: ${ready}`);
  const writer = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-ffi",
      `--allow-read=${DIR}`,
      `--allow-write=${DIR}`,
      new URL("./_latency_writer.ts", import.meta.url).pathname,
      JSON.stringify({ path, engine: "ffi", writes: WRITES, gapMs: GAP_MS }),
    ],
    stdout: "piped",
  }).output();
  const arrived = new Map<number, number>();
  while (arrived.size < WRITES) {
    const line = await watcher.nextLine();
    if (line === undefined) throw new Error("the watcher ended early");
    const message = JSON.parse(line);
    if (message.error) throw new Error(`watcher: ${message.error.message}`);
    arrived.set(message.event.value.seq, message.event.at);
  }
  await watcher.stop();
  const written = new TextDecoder().decode((await writer).stdout).trim().split("\n").map((line) => JSON.parse(line));
  const latencies = written.map(({ seq, committed }) => arrived.get(seq)! - committed).sort((a, b) => a - b);
  return {
    name,
    median: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies.at(-1)!,
    events: latencies.length,
  };
}

/** Measures every row: each engine watching, by folder watch and by the polling fallback. */
export async function measureWatchLatency(): Promise<WatchLatencyRow[]> {
  const rows: WatchLatencyRow[] = [];
  for (const engine of ["ffi", "node"] as const) {
    rows.push(await measure(`watch latency, ${engine} watcher, folder watch`, engine, true));
    rows.push(await measure(`watch latency, ${engine} watcher, polling fallback`, engine, false));
  }
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  return rows;
}

/** What the writer does, for the reports' captions. */
export const WATCH_WORKLOAD = `writes from another process (ffi engine, synchronous=FULL), one every ~${GAP_MS} ms`;

if (import.meta.main) {
  const rows = await measureWatchLatency();
  console.log(`${WATCH_WORKLOAD}\n`);
  console.log("| benchmark | median | p99 | max | events |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const row of rows) {
    const ms = (n: number) => `${n.toFixed(2)} ms`;
    console.log(`| ${row.name} | ${ms(row.median)} | ${ms(row.p99)} | ${ms(row.max)} | ${row.events} |`);
  }
}
