/**
 * The operator CLI: `oxide-registry <noun> <verb> ...`, in the manner of
 * etcdctl and Deno's own CLI. Parsing, opening the registry, exit codes and
 * errors live here; commands in `commands.ts`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { KernelError } from "../errors.ts";
import { KEY_ENV_VAR } from "../sealing/key.ts";
import type { EngineChoice } from "../sqlite/open.ts";
import { CliError, type Command, type CommandContext, COMMANDS, UsageError } from "./commands.ts";
import { type CliIo, processIo, safe, safeJson, styles } from "./_format.ts";
import denoJson from "../../deno.json" with { type: "json" };

/** The program's name in messages and help. */
export const PROGRAM = "oxide-registry";

/** The package version the CLI reports. */
export const VERSION: string = denoJson.version;

/** Exit codes: scripts can tell them apart. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Options every command takes. */
const GLOBAL_OPTIONS = {
  db: { type: "string" },
  engine: { type: "string" },
  scheme: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

const GLOBAL_HELP = `Options (every command):
  --db PATH        registry file (default: $OXIDE_REGISTRY_PATH, else ./data/registry.db)
  --engine NAME    auto (default), ffi or node
  --scheme NAME    the sealing scheme a keyed open expects: envelope (default), or oxide-k for a registry
                   shared with a Rust oxide-k kernel (refused otherwise: it could be a downgrade)
  --json           machine-readable output
  -h, --help       help for the command
  -V, --version    the version

Keys are read from $OXIDE_REGISTRY_KEY (rekey: the new one from $OXIDE_REGISTRY_NEW_KEY), or asked for on a
terminal without echo; never from the command line.
Exit codes: 0 ok, 1 not found, unhealthy or failed, 2 usage error.`;

/**
 * Runs the CLI.
 *
 * @param args The command line, without the program name.
 * @param io Where to write and what to read (default: the process's streams and environment).
 * @returns The exit code.
 */
export async function main(args: string[], io: CliIo = processIo()): Promise<number> {
  const json = args.includes("--json");
  try {
    return await run(args, io);
  } catch (error) {
    return report(io, error, json);
  }
}

async function run(args: string[], io: CliIo): Promise<number> {
  const words = commandWords(args);
  const command = findCommand(words);
  if (command === undefined) {
    if (args.includes("--version") || args.includes("-V")) {
      io.out(`${PROGRAM} ${VERSION}\n`);
      return EXIT.ok;
    }
    const help = args.includes("--help") || args.includes("-h");
    // A noun alone (`config`) lists its commands, as no command at all lists every one.
    const noun = words.length === 1 && COMMANDS.some((c) => c.name.length > 1 && c.name[0] === words[0]);
    if (words.length === 0 || noun || help) {
      io.out(overview(words));
      return help ? EXIT.ok : EXIT.usage;
    }
    const known = COMMANDS.some((c) => c.name[0] === words[0] && c.name.length > 1);
    throw new UsageError(
      `unknown command '${words.join(" ")}'`,
      undefined,
      known ? `\`${PROGRAM} ${words[0]} --help\` lists its commands` : `\`${PROGRAM} --help\` lists the commands`,
    );
  }
  const options = { ...GLOBAL_OPTIONS, ...command.options };
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    const message = (error as Error).message.split("\n")[0]!.replace(/\. To specify.*$/, "").replace(/\.$/, "");
    // `config set n -5`: a value that starts with '-' reads as an option unless it comes after `--`.
    const dashed = /^Unknown option '(-[^-].*|-\d.*)'/.exec(message)?.[1];
    throw new UsageError(
      message.charAt(0).toLowerCase() + message.slice(1),
      command,
      dashed === undefined
        ? undefined
        : `to pass a value starting with '-', put \`--\` before it: \`${PROGRAM} ${
          command.name.join(" ")
        } ... -- ${dashed}\``,
    );
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    io.out(commandHelp(command));
    return EXIT.ok;
  }
  if (values.version) {
    io.out(`${PROGRAM} ${VERSION}\n`);
    return EXIT.ok;
  }
  const positionals = parsed.positionals.slice(command.name.length);
  const { min, max } = arity(command);
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(
      positionals.length < min
        ? `'${command.name.join(" ")}' needs ${command.args.filter((a) => !a.startsWith("[")).join(" ")}`
        : `'${command.name.join(" ")}' takes ${
          max === 0 ? "no arguments" : `at most ${max} argument(s)`
        }, got ${positionals.length}`,
      command,
    );
  }
  const engine = (values.engine ?? "auto") as string;
  if (engine !== "auto" && engine !== "ffi" && engine !== "node") {
    throw new UsageError(`--engine must be auto, ffi or node, got '${engine}'`, command);
  }
  const scheme = values.scheme as string | undefined;
  if (scheme !== undefined && scheme !== "envelope" && scheme !== "oxide-k") {
    throw new UsageError(`--scheme must be envelope or oxide-k, got '${scheme}'`, command);
  }
  const dbPath = (values.db as string | undefined) ?? nonEmpty(io.env("OXIDE_REGISTRY_PATH")) ?? "./data/registry.db";
  const context: CommandContext = {
    io,
    style: styles(io),
    json: values.json === true,
    dbPath,
    engine: engine as EngineChoice,
    scheme,
    args: positionals,
    options: values,
  };
  return await command.run(context);
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === "" ? undefined : text;
}

/** The words before the first option or argument that is not a command word. */
function commandWords(args: string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg.startsWith("-")) {
      // Global options with a value: skip the value too.
      if (arg === "--db" || arg === "--engine" || arg === "--scheme") {
        const value = args[i + 1];
        if (value === undefined || value.startsWith("--")) {
          throw new UsageError(
            `option '${arg}' needs a value`,
            undefined,
            `\`${PROGRAM} ${arg} ${arg === "--db" ? "PATH" : "NAME"} <command>\`; see \`${PROGRAM} --help\``,
          );
        }
        i++;
      }
      continue;
    }
    words.push(arg);
    if (words.length === 2) break;
  }
  return words;
}

function findCommand(words: string[]): Command | undefined {
  return COMMANDS.find((c) => c.name.every((word, i) => words[i] === word));
}

function arity(command: Command): { min: number; max: number } {
  return { min: command.args.filter((a) => !a.startsWith("[")).length, max: command.args.length };
}

function overview(words: string[]): string {
  const known = words.length > 0 ? COMMANDS.filter((c) => c.name[0] === words[0]) : [];
  const list = known.length > 0 ? known : COMMANDS;
  const rows = list.map((c) => `  ${[...c.name, ...c.args].join(" ").padEnd(30)} ${c.summary}`);
  return `${PROGRAM} ${VERSION}: inspect and repair an @oxide/registry file

Usage: ${PROGRAM} <command> [options]

Commands:
${rows.join("\n")}

${GLOBAL_HELP}
`;
}

function commandHelp(command: Command): string {
  const own = Object.entries(command.options ?? {}).map(([name, option]) =>
    `  --${name}${option.type === "string" ? " VALUE" : ""}`.padEnd(19) + (command.optionHelp?.[name] ?? "")
  );
  return `Usage: ${PROGRAM} ${[...command.name, ...command.args].join(" ")} [options]

${command.summary.charAt(0).toUpperCase()}${command.summary.slice(1)}.
${command.details === undefined ? "" : `\n${command.details}\n`}${
    own.length > 0 ? `\nOptions of this command:\n${own.join("\n")}\n` : ""
  }
${GLOBAL_HELP}
`;
}

/** Prints one line on stderr naming what failed and what to do; returns the exit code. */
function report(io: CliIo, error: unknown, json: boolean): number {
  const code = error instanceof UsageError ? EXIT.usage : EXIT.failed;
  const hint = error instanceof UsageError || error instanceof CliError ? error.hint : hintFor(error);
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (json) {
    const kind = error instanceof KernelError ? error.kind : error instanceof UsageError ? "usage" : "other";
    io.err(`${safeJson(JSON.stringify({ error: { kind, message, hint } }))}\n`);
  } else {
    // Messages quote ids, keys and values from the file: never let them reach the terminal raw.
    io.err(`${PROGRAM}: ${safe(message)}${hint === undefined ? "" : ` (${safe(hint)})`}\n`);
  }
  return code;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}

function hintFor(error: unknown): string | undefined {
  if (!(error instanceof KernelError)) {
    if (error instanceof Deno.errors.NotCapable) return "grant the permission named, or use `deno task cli`";
    return undefined;
  }
  switch (error.kind) {
    case "config_not_found":
      return `list keys with \`${PROGRAM} config list\``;
    case "unknown_module":
      return `list modules with \`${PROGRAM} modules list\``;
    case "crypto":
      if (error.name === "WrongKeyError") return `check ${KEY_ENV_VAR}`;
      if (error.name === "KeyRequiredError") return `set ${KEY_ENV_VAR}`;
      if (error.message.includes('{ scheme: "oxide-k" }')) {
        return "a registry shared with a Rust oxide-k kernel is opened with --scheme oxide-k";
      }
      return undefined;
    case "other":
    case "serde":
      return `\`${PROGRAM} verify\` lists every bad row`;
    default:
      return (error as { hint?: string }).hint;
  }
}
