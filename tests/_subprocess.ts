// Worker subprocesses for the durability, concurrency and hostile-file tests: spawned with exact permission flags,
// read line by line, optionally run as an unprivileged user (the tests run as root, whom file modes do not stop).

/** The folder of the worker scripts. */
export const FIXTURES: string = new URL("./fixtures/", import.meta.url).pathname;

/** The checkout: what a worker's imports resolve in. */
const CHECKOUT: string = new URL("../", import.meta.url).pathname;

/** What a worker run as another user needs of the checkout, copied: the checkout's folder may be closed to that user. */
const WORKER_TREE = ["deno.json", "mod.ts", "src", "tests/fixtures", "tests/_variants.ts", "tests/_helpers.ts"];

/**
 * Copies {@linkcode WORKER_TREE} into `into` (files readable by everyone): a clone in a folder only its owner may
 * enter (a `mktemp -d` folder, a home of mode 700) would stop a worker run as `nobody` from loading its modules.
 *
 * @returns The copy's `deno.json` and fixtures folder.
 */
function readableCopy(into: string): { config: string; fixtures: string } {
  const copy = (from: string, to: string): void => {
    const info = Deno.statSync(from);
    if (info.isDirectory) {
      Deno.mkdirSync(to, { recursive: true, mode: 0o755 });
      for (const entry of Deno.readDirSync(from)) copy(`${from}/${entry.name}`, `${to}/${entry.name}`);
    } else {
      Deno.copyFileSync(from, to);
      Deno.chmodSync(to, 0o644);
    }
  };
  Deno.mkdirSync(`${into}/tests`, { recursive: true, mode: 0o755 });
  for (const part of WORKER_TREE) copy(`${CHECKOUT}${part}`, `${into}/${part}`);
  return { config: `${into}/deno.json`, fixtures: `${into}/tests/fixtures/` };
}

/** How to spawn a worker. */
export interface WorkerOptions {
  /** Folders the worker may read and write (`--allow-read=` / `--allow-write=`). */
  folders: string[];
  /** Run as this user and group id, through `setpriv` (see {@linkcode unprivilegedRunner}). */
  runAs?: { uid: number; gid: number; denoDir: string } | undefined;
}

/** A running worker: its lines of stdout, its stdin, its exit. */
export class Worker implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: Promise<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(script: string, args: string[], options: WorkerOptions) {
    const folders = options.folders.join(",");
    const denoArgs = ["run", "--no-prompt", "--allow-ffi", `--allow-read=${folders}`, `--allow-write=${folders}`];
    const command = options.runAs === undefined
      ? new Deno.Command(Deno.execPath(), { args: [...denoArgs, `${FIXTURES}${script}`, ...args], ...PIPES })
      : new Deno.Command("setpriv", {
        args: [
          `--reuid=${options.runAs.uid}`,
          `--regid=${options.runAs.gid}`,
          "--clear-groups",
          Deno.execPath(),
          ...denoArgs,
          ...((copy) => ["--no-lock", `--config=${copy.config}`, `${copy.fixtures}${script}`])(
            readableCopy(`${options.runAs.denoDir}/checkout`),
          ),
          ...args,
        ],
        env: { DENO_DIR: options.runAs.denoDir, HOME: options.runAs.denoDir, NO_COLOR: "1" },
        ...PIPES,
      });
    this.child = command.spawn();
    this.#lines = readLines(this.child.stdout)[Symbol.asyncIterator]();
    this.#stderr = new Response(this.child.stderr).text();
    this.#stdin = this.child.stdin.getWriter();
  }

  /** The next line of stdout, or `undefined` at its end. */
  async nextLine(): Promise<string | undefined> {
    const next = await this.#lines.next();
    return next.done ? undefined : next.value;
  }

  /** Every remaining line of stdout. */
  async rest(): Promise<string[]> {
    const lines: string[] = [];
    for (let line = await this.nextLine(); line !== undefined; line = await this.nextLine()) lines.push(line);
    return lines;
  }

  /** Writes `text` to the worker's stdin. */
  async send(text: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(text));
  }

  /** Closes stdin, drains stdout, and waits for the exit. */
  async finish(): Promise<{ status: Deno.CommandStatus; lines: string[]; stderr: string }> {
    await this.#stdin.close().catch(() => {}); // Already gone when the worker exited early.
    const lines = await this.rest();
    const [status, stderr] = await Promise.all([this.child.status, this.#stderr]);
    return { status, lines, stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.finish();
  }
}

const PIPES = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) !== -1) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
    }
  }
  // A line cut short by a kill is not a line: it is dropped.
}

/**
 * How to run a worker as a user whom file modes do stop: `undefined` when this process is not root (it can run
 * the worker itself), the `nobody` ids when it is root and `setpriv` exists, or a reason why neither works.
 */
export async function unprivilegedRunner(): Promise<{ uid: number; gid: number } | undefined | string> {
  const id = await new Deno.Command("id", { args: ["-u"], stdout: "piped", stderr: "null" }).output();
  if (!id.success) return "cannot tell the user id (`id -u` failed)";
  if (new TextDecoder().decode(id.stdout).trim() !== "0") return undefined;
  try {
    const probe = await new Deno.Command("setpriv", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    if (!probe.success) return "running as root and `setpriv --version` fails";
  } catch {
    return "running as root and `setpriv` (util-linux) is not installed: cannot drop to an unprivileged user";
  }
  return { uid: 65534, gid: 65534 };
}
