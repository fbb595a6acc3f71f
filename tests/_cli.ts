// Runs the CLI as a real subprocess with exactly the permissions of `deno task cli`, its ./data folder replaced by a
// test folder (tests never write into ./data).
import denoJson from "../deno.json" with { type: "json" };

/** The CLI script. */
export const CLI: string = new URL("../cli.ts", import.meta.url).pathname;

/** The flags of `deno task cli` (or `cli:ffi`), with `./data` replaced by `folder`. */
export function cliFlags(folder: string, task: "cli" | "cli:ffi" = "cli"): string[] {
  const words = denoJson.tasks[task].command.split(" ");
  const script = words.indexOf("cli.ts");
  if (words[0] !== "deno" || words[1] !== "run" || script < 0) {
    throw new Error(`unexpected ${task} task: ${denoJson.tasks[task].command}`);
  }
  return words.slice(2, script).map((flag) => flag.replaceAll("./data", folder));
}

/** The arguments the task puts after `cli.ts` (`--engine ffi` for `cli:ffi`). */
export function taskArgs(task: "cli" | "cli:ffi" = "cli"): string[] {
  const words = denoJson.tasks[task].command.split(" ");
  return words.slice(words.indexOf("cli.ts") + 1);
}

/** What a CLI run gave. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode runCli}. */
export interface RunCliOptions {
  /** Environment variables (the rest of the environment is cleared, but for what Deno needs). */
  env?: Record<string, string>;
  /** Text for standard input (default: none, closed). */
  stdin?: string;
  /** Which task's permissions (default `cli`). */
  task?: "cli" | "cli:ffi";
}

/** Runs `cli.ts` in `folder` (its working directory) with the task's permissions. */
export async function runCli(folder: string, args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = { ...options.env };
  for (const name of ["HOME", "DENO_DIR", "PATH"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] ??= value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...cliFlags(folder, options.task), CLI, ...taskArgs(options.task), ...args],
    cwd: folder,
    env,
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** The shell command line that runs the CLI in `folder` with the task's permissions (for `script -qec`). */
export function cliCommandLine(folder: string, args: string[]): string {
  return [Deno.execPath(), "run", "--no-prompt", ...cliFlags(folder), CLI, ...args].map(shellQuote).join(" ");
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
