/**
 * The CLI's commands: each opens the registry the way it needs (without a key
 * unless it must read or write sealed values), does one job, and prints a
 * table for people or JSON for machines.
 *
 * @module
 */
import { ConfigNotFoundError, KeyRequiredError, SerializationError, UnknownModuleError } from "../errors.ts";
import { decodeJson, encodeJson } from "../json.ts";
import { isModuleState, MODULE_STATES, type ModuleRecord } from "../module.ts";
import { StateRegistry } from "../registry/registry.ts";
import { registerModuleFromManifest } from "../ext/manifest.ts";
import { sealedScheme } from "../sealing/sealing.ts";
import { KEY_ENV_VAR } from "../sealing/key.ts";
import type { EngineChoice } from "../sqlite/open.ts";
import type { RegistryExport } from "../ops/export.ts";
import { bytes, type CliIo, ProgressBar, relativeTime, safe, safeJson, type Styles, table } from "./_format.ts";

/** The variable the new key of `rekey` is read from. */
export const NEW_KEY_ENV_VAR = "OXIDE_REGISTRY_NEW_KEY";

/** A mistake in the command line: exit code 2. */
export class UsageError extends Error {
  /** What to do about it. */
  readonly hint: string | undefined;

  /**
   * Creates the error.
   *
   * @param message What is wrong.
   * @param command The command, whose `--help` the hint names.
   * @param hint What to do instead.
   */
  constructor(message: string, command?: Command, hint?: string) {
    super(message);
    this.hint = hint ?? `see \`oxide-registry ${command === undefined ? "" : `${command.name.join(" ")} `}--help\``;
  }
}

/** A failure that is not a `KernelError` (a missing file, a bad export file): exit code 1. */
export class CliError extends Error {
  /** What to do about it. */
  readonly hint: string | undefined;

  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param hint What to do.
   */
  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}

/** What a command is given. */
export interface CommandContext {
  io: CliIo;
  style: Styles;
  json: boolean;
  dbPath: string;
  engine: EngineChoice;
  /** The sealing scheme a keyed open expects (`--scheme`); absent: the library's default (envelope). */
  scheme: "envelope" | "oxide-k" | undefined;
  /** The positional arguments after the command words. */
  args: string[];
  /** Parsed options (global and the command's own). */
  options: Record<string, string | boolean | undefined>;
}

/** One command. */
export interface Command {
  /** Its words: `["config", "get"]`. */
  name: string[];
  /** Its arguments as help shows them; optional ones in brackets. */
  args: string[];
  /** One line for the overview. */
  summary: string;
  /** More help. */
  details?: string;
  /** Its own options (for `node:util` `parseArgs`). */
  options?: Record<string, { type: "boolean" | "string" }>;
  /** Help for its own options. */
  optionHelp?: Record<string, string>;
  /** Runs it; returns the exit code. */
  run(context: CommandContext): Promise<number>;
}

// --- opening the registry ------------------------------------------------------------------------------------------

/**
 * How a command opens the registry. Commands that only read open it `readonly` (nothing is written, not even a
 * migration); those that write need it to exist unless they may create it.
 * - `read`: read-only, no key (sealed values stay closed).
 * - `optional-key`: read-only, with the key when `OXIDE_REGISTRY_KEY` is set and the registry is sealed.
 * - `read-key`: read-only; a sealed registry needs the key (environment, else a prompt on a terminal).
 * - `update`: read-write, must exist, no key.
 * - `key`: read-write, must exist; a sealed registry needs the key.
 * - `write`: as `key`, and created when missing (sealed when a key is set).
 * - `create`: created when missing; never a key.
 */
type OpenMode = "read" | "optional-key" | "read-key" | "update" | "key" | "write" | "create";

async function openRegistry(ctx: CommandContext, mode: OpenMode): Promise<StateRegistry> {
  const path = ctx.dbPath;
  const exists = await fileExists(path);
  if (!exists && mode !== "write" && mode !== "create") {
    throw new CliError(
      `no registry at '${path}'`,
      `pass --db PATH or set OXIDE_REGISTRY_PATH; \`config set\` or \`import\` create one`,
    );
  }
  const readonly = mode === "read" || mode === "optional-key" || mode === "read-key";
  const options = { engine: ctx.engine, readonly };
  const keyedOptions = { ...options, ...(ctx.scheme === undefined ? {} : { scheme: ctx.scheme }) };
  if (!exists) {
    const key = mode === "write" ? nonEmpty(ctx.io.env(KEY_ENV_VAR)) : undefined;
    return key === undefined
      ? await StateRegistry.connect(path, options)
      : await StateRegistry.openEncrypted(path, key, keyedOptions);
  }
  const keyless = await StateRegistry.connect(path, options);
  if (mode === "read" || mode === "update" || mode === "create") return keyless;
  let sealed: string | undefined;
  try {
    sealed = sealedScheme(keyless.db);
  } catch (error) {
    await keyless.close();
    throw error;
  }
  if (sealed === undefined) return keyless;
  const key = nonEmpty(ctx.io.env(KEY_ENV_VAR)) ??
    (mode === "optional-key" ? undefined : await promptKey(ctx, `key for ${path}: `));
  if (key === undefined) {
    if (mode === "optional-key") return keyless;
    await keyless.close();
    throw new UsageError(
      `'${path}' is sealed (${sealed} scheme) and no key was given`,
      undefined,
      `set ${KEY_ENV_VAR}, or run on a terminal to be asked`,
    );
  }
  await keyless.close();
  return await StateRegistry.openEncrypted(path, key, keyedOptions);
}

async function promptKey(ctx: CommandContext, prompt: string): Promise<string | undefined> {
  if (!ctx.io.stdinIsTerminal) return undefined;
  return nonEmpty(await ctx.io.promptSecret(prompt));
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === "" ? undefined : text;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Opens the registry, runs `fn`, closes it. */
async function withRegistry<T>(
  ctx: CommandContext,
  mode: OpenMode,
  fn: (reg: StateRegistry) => Promise<T>,
): Promise<T> {
  const reg = await openRegistry(ctx, mode);
  try {
    return await fn(reg);
  } finally {
    await reg.close();
  }
}

function printJson(ctx: CommandContext, value: unknown): void {
  ctx.io.out(`${safeJson(JSON.stringify(value, null, 2))}\n`);
}

/** A value's JSON text for people: compact, cut at `max` characters, safe for a terminal. */
function shortJson(value: unknown, max = 60): string {
  const text = safeJson(encodeJson(value));
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

function stateText(style: Styles, state: string): string {
  if (state === "running") return style.green(state);
  if (state === "failed") return style.red(state);
  if (state === "stopped" || state === "stopping") return style.dim(state);
  return state;
}

// --- commands ------------------------------------------------------------------------------------------------------

const info: Command = {
  name: ["info"],
  args: [],
  summary: "path, engine, SQLite version, sealing, revision, counts, file and WAL size",
  run: (ctx) =>
    withRegistry(ctx, "read", async (reg) => {
      const db = reg.db;
      const count = (sql: string) => Number(db.prepare(sql).get()?.n ?? 0);
      const hasTable = (name: string) =>
        db.prepare("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
      const sealingRow = hasTable("oxide_sealing")
        ? db.prepare("SELECT scheme, key_id, kdf, iterations, generation FROM oxide_sealing").get()
        : undefined;
      const scheme = sealingRow?.scheme ?? sealedScheme(db);
      const sealed = count("SELECT count(*) AS n FROM config WHERE substr(value, 1, 6) = '$oxide'") +
        (scheme === "oxide-k" ? count("SELECT count(*) AS n FROM config") : 0);
      const size = async (path: string) => (await Deno.stat(path).catch(() => undefined))?.size ?? 0;
      const result = {
        path: reg.path,
        engine: reg.engine,
        sqliteVersion: db.sqliteVersion,
        sealing: scheme === undefined ? null : {
          scheme: String(scheme),
          keyId: sealingRow?.key_id ?? null,
          kdf: sealingRow?.kdf ?? null,
          iterations: sealingRow?.iterations ?? null,
          generation: sealingRow?.generation ?? null,
        },
        revision: hasTable("oxide_changes") ? count("SELECT coalesce(max(revision), 0) AS n FROM oxide_changes") : null,
        modules: count("SELECT count(*) AS n FROM modules"),
        config: count("SELECT count(*) AS n FROM config"),
        sealedValues: sealed,
        decisions: hasTable("xai_decisions") ? count("SELECT count(*) AS n FROM xai_decisions") : null,
        fileBytes: await size(reg.path),
        walBytes: await size(`${reg.path}-wal`),
      };
      if (ctx.json) {
        printJson(ctx, result);
        return 0;
      }
      const s = result.sealing;
      const rows = [
        ["path", result.path],
        ["engine", `${result.engine} (SQLite ${result.sqliteVersion})`],
        [
          "sealing",
          s === null
            ? "none (plain)"
            : `${s.scheme}${s.keyId === null ? "" : `, data key ${s.keyId}`}${s.kdf === null ? "" : `, ${s.kdf}`}${
              s.iterations === null ? "" : ` (${s.iterations} iterations)`
            }`,
        ],
        ["revision", result.revision === null ? "none (no change log)" : String(result.revision)],
        ["modules", String(result.modules)],
        ["config", `${result.config}${s === null ? "" : ` (${result.sealedValues} sealed)`}`],
        ["decisions", result.decisions === null ? "none (no decision log)" : String(result.decisions)],
        ["file size", bytes(result.fileBytes)],
        ["WAL size", bytes(result.walBytes)],
      ];
      ctx.io.out(rows.map(([name, value]) => `${ctx.style.bold(name!.padEnd(10))} ${safe(value!)}`).join("\n") + "\n");
      return 0;
    }),
};

function moduleJson(record: ModuleRecord): unknown {
  return { ...record, description: record.description ?? null, updatedAt: record.updatedAt.toISOString() };
}

const modulesList: Command = {
  name: ["modules", "list"],
  args: [],
  summary: "every module: id, name, version, kind, state, last update",
  run: (ctx) =>
    withRegistry(ctx, "read", async (reg) => {
      // A row another program broke is marked, and the rest still listed.
      const records = await reg.listModules({ invalid: "skip" });
      const skipped = records.skipped ?? [];
      const rows = [
        ...records.map((m) => ({ id: m.id, record: m as ModuleRecord | undefined, error: undefined })),
        ...skipped.map((row) => ({ id: row.key, record: undefined, error: row.error.message })),
      ].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
      if (ctx.json) {
        printJson(
          ctx,
          rows.map((row) => row.record === undefined ? { id: row.id, error: row.error } : moduleJson(row.record)),
        );
      } else if (rows.length === 0) {
        ctx.io.out("no modules\n");
      } else {
        const now = ctx.io.now();
        ctx.io.out(table(
          ["ID", "NAME", "VERSION", "KIND", "STATE", "UPDATED"],
          rows.map(({ id, record: m, error }) =>
            m === undefined ? [safe(id), ctx.style.red(`(unreadable: ${safe(error!)})`), "", "", "", ""] : [
              safe(m.id),
              safe(m.name),
              safe(m.version),
              m.kind,
              stateText(ctx.style, m.state),
              relativeTime(m.updatedAt, now),
            ]
          ),
          ctx.style,
        ));
      }
      return unreadableRows(ctx, skipped.length, "module row(s)");
    }),
};

const modulesGet: Command = {
  name: ["modules", "get"],
  args: ["ID"],
  summary: "one module's record",
  run: (ctx) =>
    withRegistry(ctx, "read", async (reg) => {
      const id = ctx.args[0]!;
      const record = await reg.getModule(id);
      if (record === undefined) throw new UnknownModuleError(id);
      if (ctx.json) {
        printJson(ctx, moduleJson(record));
        return 0;
      }
      const rows: [string, string][] = [
        ["id", safe(record.id)],
        ["name", safe(record.name)],
        ["version", safe(record.version)],
        ["kind", record.kind],
        ["state", stateText(ctx.style, record.state)],
        ["description", safe(record.description ?? "-")],
        ["updated", `${relativeTime(record.updatedAt, ctx.io.now())} (${record.updatedAt.toISOString()})`],
      ];
      ctx.io.out(rows.map(([name, value]) => `${ctx.style.bold(name.padEnd(12))} ${value}`).join("\n") + "\n");
      return 0;
    }),
};

const modulesSetState: Command = {
  name: ["modules", "set-state"],
  args: ["ID", "STATE"],
  summary: `set a module's state (${MODULE_STATES.join(", ")})`,
  run: (ctx) => {
    const [id, state] = ctx.args as [string, string];
    if (!isModuleState(state)) {
      throw new UsageError(
        `'${state}' is not a module state`,
        undefined,
        `use one of ${MODULE_STATES.join(", ")}`,
      );
    }
    return withRegistry(ctx, "update", async (reg) => {
      await reg.setModuleState(id, state);
      if (ctx.json) printJson(ctx, { id, state });
      else ctx.io.out(`${safe(id)}: ${stateText(ctx.style, state)}\n`);
      return 0;
    });
  },
};

const modulesRegister: Command = {
  name: ["modules", "register"],
  args: ["PATH"],
  summary: "register (or update) a module from its module.json manifest, in state loaded",
  details: "PATH is the manifest file or its folder; the process needs --allow-read for it.",
  run: (ctx) =>
    withRegistry(ctx, "create", async (reg) => {
      const { manifest } = await registerModuleFromManifest(reg, ctx.args[0]!);
      if (ctx.json) {
        printJson(ctx, { id: manifest.id, name: manifest.name, version: manifest.version, state: "loaded" });
      } else ctx.io.out(safe(`registered ${manifest.id} ${manifest.version} (${manifest.kind}), state loaded`) + "\n");
      return 0;
    }),
};

const modulesRemove: Command = {
  name: ["modules", "remove"],
  args: ["ID"],
  summary: "remove a module's record",
  run: (ctx) =>
    withRegistry(ctx, "update", async (reg) => {
      const id = ctx.args[0]!;
      if (!await reg.deleteModule(id)) throw new UnknownModuleError(id);
      if (ctx.json) printJson(ctx, { id, removed: true });
      else ctx.io.out(`removed ${safe(id)}\n`);
      return 0;
    }),
};

const configList: Command = {
  name: ["config", "list"],
  args: ["[PREFIX]"],
  summary: "config keys (starting with PREFIX), their values and last update",
  details: `Sealed values are shown when ${KEY_ENV_VAR} is set, else as (sealed).`,
  run: (ctx) =>
    withRegistry(ctx, "optional-key", async (reg) => {
      const prefix = ctx.args[0] ?? "";
      const keyed = reg.sealing !== undefined;
      // A value that cannot be read is marked, and the rest still listed.
      const page = await reg.listConfig({ ...(prefix === "" ? {} : { prefix }), invalid: "skip" });
      const skipped = page.skipped ?? [];
      type Row = { key: string; value?: unknown; sealed?: true; error?: string; updatedAt: Date | undefined };
      const rows: Row[] = [
        ...page.map((e): Row => ({ key: e.key, value: e.value, updatedAt: e.updatedAt })),
        ...skipped.map(({ key, error, updatedAt }): Row =>
          !keyed && error instanceof KeyRequiredError
            ? { key, sealed: true, updatedAt }
            : { key, error: error.message, updatedAt }
        ),
      ].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
      const unreadable = rows.filter((row) => row.error !== undefined).length;
      if (ctx.json) {
        ctx.io.out(safeJson(`[${
          rows.map((e) =>
            `\n  {"key":${JSON.stringify(e.key)},${
              e.sealed
                ? '"sealed":true'
                : e.error !== undefined
                ? `"error":${JSON.stringify(e.error)}`
                : `"value":${encodeJson(e.value)}`
            },` +
            `"updatedAt":${JSON.stringify(validDate(e.updatedAt)?.toISOString() ?? null)}}`
          ).join(",")
        }${rows.length > 0 ? "\n" : ""}]\n`));
        return unreadableRows(ctx, unreadable, "config value(s)");
      }
      if (rows.length === 0) {
        ctx.io.out(prefix === "" ? "no config values\n" : `no config keys start with '${safe(prefix)}'\n`);
        return 0;
      }
      const now = ctx.io.now();
      ctx.io.out(table(
        ["KEY", "VALUE", "UPDATED"],
        rows.map((e) => {
          const when = validDate(e.updatedAt);
          return [
            safe(e.key),
            e.sealed
              ? ctx.style.dim("(sealed)")
              : e.error !== undefined
              ? ctx.style.red(`(unreadable: ${safe(e.error)})`)
              : shortJson(e.value),
            when === undefined ? "" : relativeTime(when, now),
          ];
        }),
        ctx.style,
      ));
      return unreadableRows(ctx, unreadable, "config value(s)");
    }),
};

function validDate(date: Date | undefined): Date | undefined {
  return date === undefined || Number.isNaN(date.getTime()) ? undefined : date;
}

/** After a listing: a line on stderr when rows could not be read, naming what to run; the exit code. */
function unreadableRows(ctx: CommandContext, count: number, what: string): number {
  if (count === 0) return 0;
  const message = `${count} ${what} cannot be read`;
  const hint = "`oxide-registry verify` lists every bad row";
  ctx.io.err(
    ctx.json
      ? `${JSON.stringify({ error: { kind: "serde", message, hint } })}\n`
      : `oxide-registry: ${message} (${hint})\n`,
  );
  return 1;
}

const configGet: Command = {
  name: ["config", "get"],
  args: ["KEY"],
  summary: "a config value, as JSON",
  run: (ctx) =>
    withRegistry(ctx, "read-key", async (reg) => {
      const key = ctx.args[0]!;
      const value = await reg.getConfig(key);
      ctx.io.out(
        safeJson(ctx.json ? `{"key":${JSON.stringify(key)},"value":${encodeJson(value)}}` : encodeJson(value)) + "\n",
      );
      return 0;
    }),
};

const configHistory: Command = {
  name: ["config", "history"],
  args: ["KEY"],
  summary: "the kept versions of a config key, newest first",
  details: `Sealed values are shown when ${KEY_ENV_VAR} is set, else as (sealed). Restore one in code with
reg.restoreConfig(key, revision).`,
  options: { limit: { type: "string" } },
  optionHelp: { limit: "at most N versions (default: all that retention kept)" },
  run: (ctx) => {
    const limitText = ctx.options.limit as string | undefined;
    const limit = limitText === undefined ? undefined : Number(limitText);
    if (limit !== undefined && (!/^\d+$/.test(limitText!) || !Number.isSafeInteger(limit))) {
      throw new UsageError(`--limit must be a non-negative integer, got '${limitText}'`, configHistory);
    }
    return withRegistry(ctx, "optional-key", async (reg) => {
      const key = ctx.args[0]!;
      const versions = await reg.configHistory(key, { limit });
      if (versions.length === 0 && limit !== 0) throw new ConfigNotFoundError(key);
      const sealedShut = (v: { sealed: boolean; value: unknown; error?: unknown }) =>
        v.sealed && v.value === undefined && reg.sealing === undefined;
      if (ctx.json) {
        ctx.io.out(safeJson(
          `[${
            versions.map((v) =>
              `\n  {"key":${JSON.stringify(v.key)},"version":${v.version},"revision":${v.revision},` +
              `"createRevision":${v.createRevision},` +
              `${
                sealedShut(v)
                  ? '"sealed":true'
                  : v.error !== undefined
                  ? `"error":${JSON.stringify(v.error.message)}`
                  : `"value":${encodeJson(v.value)}`
              },` +
              `"updatedAt":${JSON.stringify(v.updatedAt?.toISOString() ?? null)}}`
            ).join(",")
          }${versions.length > 0 ? "\n" : ""}]\n`,
        ));
        return 0;
      }
      const now = ctx.io.now();
      ctx.io.out(table(
        ["VERSION", "REVISION", "UPDATED", "VALUE"],
        versions.map((v) => [
          String(v.version),
          String(v.revision),
          v.updatedAt === undefined ? "" : relativeTime(v.updatedAt, now),
          sealedShut(v)
            ? ctx.style.dim("(sealed)")
            : v.error !== undefined
            ? ctx.style.red(`(unreadable: ${safe(v.error.message)})`)
            : shortJson(v.value),
        ]),
        ctx.style,
      ));
      return 0;
    });
  },
};

const watchCommand: Command = {
  name: ["watch"],
  args: ["[PREFIX]"],
  summary: "print changes to config keys (starting with PREFIX) as they happen, until interrupted",
  details: `One line per change; with --json one JSON object per line. Ctrl-C (SIGINT) or SIGTERM ends it (exit 0).
Resume after a restart with --from (the last revision seen plus 1).`,
  options: { modules: { type: "boolean" }, from: { type: "string" } },
  optionHelp: {
    modules: "follow module records too (their ids are matched against PREFIX)",
    from: "deliver changes from this revision on (default: only new ones)",
  },
  run: (ctx) => {
    const fromText = ctx.options.from as string | undefined;
    const fromRevision = fromText === undefined ? undefined : Number(fromText);
    if (
      fromRevision !== undefined &&
      (!/^\d+$/.test(fromText!) || !Number.isSafeInteger(fromRevision) || fromRevision < 1)
    ) {
      throw new UsageError(`--from must be a positive integer revision, got '${fromText}'`, watchCommand);
    }
    return withRegistry(ctx, "optional-key", async (reg) => {
      const controller = new AbortController();
      const stop = () => controller.abort();
      const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
      for (const signal of signals) Deno.addSignalListener(signal, stop);
      try {
        const prefix = ctx.args[0];
        const events = reg.watch({
          spaces: ctx.options.modules === true ? ["config", "modules"] : ["config"],
          ...(prefix === undefined || prefix === "" ? {} : { prefix }),
          fromRevision,
          signal: controller.signal,
        });
        for await (const event of events) {
          if (event.space === "config") {
            const shut = event.sealed && event.value === undefined && event.error === undefined;
            if (ctx.json) {
              ctx.io.out(safeJson(
                `{"space":"config","type":"${event.type}","key":${JSON.stringify(event.key)},` +
                  `"revision":${event.revision},"version":${event.version}` +
                  (event.type === "delete"
                    ? ""
                    : shut
                    ? ',"sealed":true'
                    : event.error !== undefined
                    ? `,"error":${JSON.stringify(event.error.message)}`
                    : `,"value":${encodeJson(event.value)}`) +
                  `,"updatedAt":${JSON.stringify(event.updatedAt?.toISOString() ?? null)}}\n`,
              ));
            } else {
              const what = event.type === "delete"
                ? ""
                : shut
                ? ctx.style.dim("(sealed)")
                : event.error !== undefined
                ? ctx.style.red(`(unreadable: ${safe(event.error.message)})`)
                : shortJson(event.value, 120);
              ctx.io.out(
                `${event.revision} ${event.type} config ${safe(event.key)}${what === "" ? "" : ` ${what}`}\n`,
              );
            }
          } else if (ctx.json) {
            ctx.io.out(
              `${
                safeJson(JSON.stringify({
                  space: "modules",
                  type: event.type,
                  id: event.id,
                  revision: event.revision,
                  version: event.version,
                  ...(event.module === undefined ? {} : { module: moduleJson(event.module) }),
                  ...(event.error === undefined ? {} : { error: event.error.message }),
                }))
              }\n`,
            );
          } else {
            const what = event.type === "delete"
              ? ""
              : event.module === undefined
              ? ctx.style.red(`(unreadable: ${safe(event.error?.message ?? "?")})`)
              : `${safe(event.module.version)} ${stateText(ctx.style, event.module.state)}`;
            ctx.io.out(`${event.revision} ${event.type} module ${safe(event.id)}${what === "" ? "" : ` ${what}`}\n`);
          }
        }
      } finally {
        for (const signal of signals) Deno.removeSignalListener(signal, stop);
      }
      return 0;
    });
  },
};

const configSet: Command = {
  name: ["config", "set"],
  args: ["KEY", "JSON"],
  summary: "set a config value (JSON: quote text as '\"text\"')",
  details: `Creates the registry when missing (sealed when ${KEY_ENV_VAR} is set).`,
  run: (ctx) => {
    const [key, text] = ctx.args as [string, string];
    let value: unknown;
    try {
      value = decodeJson(text);
    } catch (error) {
      throw new UsageError(
        `the value ${JSON.stringify(text)} is not JSON: ${(error as Error).message}`,
        undefined,
        `quote text as JSON, e.g. '"${text.replaceAll('"', '\\"')}"'`,
      );
    }
    try {
      // The registry's own rules (finite numbers, integers oxide-k can read, no lone surrogates), before opening it.
      encodeJson(value);
    } catch (error) {
      if (!(error instanceof SerializationError)) throw error;
      throw new UsageError(
        `the value ${JSON.stringify(text)} cannot be stored: ${error.message.replace(/^serialization error: /, "")}`,
        undefined,
        "store only what JSON carries to oxide-k; quote other numbers as text",
      );
    }
    return withRegistry(ctx, "write", async (reg) => {
      await reg.setConfig(key, value);
      if (ctx.json) printJson(ctx, { key, set: true });
      else ctx.io.out(`set ${safe(key)}\n`);
      return 0;
    });
  },
};

const configDelete: Command = {
  name: ["config", "delete"],
  args: ["KEY"],
  summary: "delete a config value",
  run: (ctx) =>
    withRegistry(ctx, "update", async (reg) => {
      const key = ctx.args[0]!;
      if (!await reg.deleteConfig(key)) throw new ConfigNotFoundError(key);
      if (ctx.json) printJson(ctx, { key, deleted: true });
      else ctx.io.out(`deleted ${safe(key)}\n`);
      return 0;
    }),
};

const verify: Command = {
  name: ["verify"],
  args: [],
  summary: "check integrity, table shapes and every row; exit 1 when anything is wrong",
  details: `Sealed values are opened when ${KEY_ENV_VAR} is set.`,
  run: (ctx) =>
    withRegistry(ctx, "optional-key", async (reg) => {
      const report = await reg.verify();
      if (ctx.json) {
        printJson(ctx, report);
        return report.ok ? 0 : 1;
      }
      const c = report.checked;
      const counts =
        `${c.modules} module(s), ${c.config} config value(s) (${c.sealed} sealed), ${c.decisions} decision(s)`;
      if (report.ok) ctx.io.out(`${ctx.style.green("ok")}: ${counts} checked\n`);
      else {
        ctx.io.out(table(
          ["CHECK", "TABLE", "ROW", "PROBLEM"],
          report.problems.map((p) => [p.check, safe(p.table ?? "-"), safe(p.row ?? "-"), safe(p.message)]),
          ctx.style,
        ));
        ctx.io.out(`${ctx.style.red(`${report.problems.length} problem(s)`)} in ${counts}\n`);
      }
      if (report.sealedUnchecked > 0) {
        ctx.io.out(`${report.sealedUnchecked} sealed value(s) not opened: set ${KEY_ENV_VAR} to check them\n`);
      }
      return report.ok ? 0 : 1;
    }),
};

const backup: Command = {
  name: ["backup"],
  args: ["DEST"],
  summary: "a consistent copy of the registry while others keep writing (SQLite's online backup)",
  options: { force: { type: "boolean" } },
  optionHelp: { force: "replace DEST when it exists" },
  run: (ctx) =>
    withRegistry(ctx, "read", async (reg) => {
      const bar = new ProgressBar(ctx.io, "backup");
      let result;
      try {
        result = await reg.backup(ctx.args[0]!, {
          overwrite: ctx.options.force === true,
          onProgress: (p) => bar.update(p.totalPages - p.remainingPages, p.totalPages, "pages"),
        });
      } finally {
        bar.done();
      }
      if (ctx.json) printJson(ctx, result);
      else {ctx.io.out(
          safe(`backed up ${reg.path} to ${result.path} (${result.pages} pages, ${bytes(result.bytes)})`) + "\n",
        );}
      return 0;
    }),
};

const exportCommand: Command = {
  name: ["export"],
  args: ["[FILE]"],
  summary: "modules, config and decisions as JSON, to FILE or standard output",
  details: `Sealed values stay sealed unless --plaintext is given (which needs the key). FILE is created with mode 0600.
Rows carry their versions and revisions; the change log (every kept version) is included unless --no-history.`,
  options: { plaintext: { type: "boolean" }, force: { type: "boolean" }, "no-history": { type: "boolean" } },
  optionHelp: {
    plaintext: "open sealed values and export their plaintext (old versions too)",
    force: "replace FILE when it exists",
    "no-history": "leave the change log out (an import then cannot restore revisions)",
  },
  run: (ctx) => {
    const file = ctx.args[0] === "-" ? undefined : ctx.args[0];
    const plaintext = ctx.options.plaintext === true;
    return withRegistry(ctx, plaintext ? "read-key" : "read", async (reg) => {
      if (file !== undefined && ctx.options.force !== true && await fileExists(file)) {
        throw new CliError(`'${file}' already exists`, "choose another file, or pass --force");
      }
      const bar = new ProgressBar(ctx.io, "export");
      let doc: RegistryExport;
      try {
        doc = await reg.exportData({
          plaintext,
          history: ctx.options["no-history"] !== true,
          onProgress: (done, total) => bar.update(done, total, "rows"),
        });
      } finally {
        bar.done();
      }
      const text = `${JSON.stringify(doc, null, 2)}\n`;
      if (file === undefined) {
        ctx.io.out(safeJson(text));
        return 0;
      }
      const temp = `${file}.tmp-${crypto.randomUUID().slice(0, 8)}`;
      try {
        await Deno.writeTextFile(temp, text, { mode: 0o600, createNew: true });
        await Deno.rename(temp, file);
      } catch (error) {
        await Deno.remove(temp).catch(() => {});
        throw error;
      }
      const summary = {
        path: file,
        modules: doc.modules.length,
        config: doc.config.length,
        decisions: doc.decisions?.length ?? 0,
      };
      if (ctx.json) printJson(ctx, summary);
      else {
        ctx.io.out(
          safe(
            `exported ${summary.modules} module(s), ${summary.config} config value(s), ${summary.decisions} decision(s) to ${file}`,
          ) + "\n",
        );
      }
      return 0;
    });
  },
};

const importCommand: Command = {
  name: ["import"],
  args: ["FILE"],
  summary: "write an export's modules, config and decisions (all or nothing); FILE - reads standard input",
  details: "Creates the registry when missing. Sealed values go into a new registry or one sealed under the same key.",
  run: async (ctx) => {
    const file = ctx.args[0]!;
    let text: string;
    try {
      text = file === "-" ? await ctx.io.readStdin() : await Deno.readTextFile(file);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) throw new CliError(`no file '${file}'`, "check the path");
      throw error;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (error) {
      throw new CliError(`'${file}' is not JSON: ${(error as Error).message}`, "give a file made by `export`");
    }
    const sealedDoc = Array.isArray((doc as RegistryExport | null)?.config) &&
      (doc as RegistryExport).config.some((entry) => entry?.sealed !== undefined);
    return await withRegistry(ctx, sealedDoc ? "create" : "write", async (reg) => {
      const bar = new ProgressBar(ctx.io, "import");
      let result;
      try {
        result = await reg.importData(doc, { onProgress: (done, total) => bar.update(done, total, "values") });
      } finally {
        bar.done();
      }
      if (ctx.json) printJson(ctx, result);
      else {
        ctx.io.out(
          safe(
            `imported ${result.modules} module(s), ${result.config} config value(s), ${result.decisions} decision(s) into ${reg.path}${
              result.revisionsRestored
                ? ", revisions restored"
                : ` (revisions not restored: ${result.revisionsSkipped})`
            }`,
          ) + "\n",
        );
      }
      return 0;
    });
  },
};

const rekey: Command = {
  name: ["rekey"],
  args: [],
  summary: `change the registry's key (the new key from ${NEW_KEY_ENV_VAR}, or asked for twice)`,
  run: async (ctx) => {
    const newKey = nonEmpty(ctx.io.env(NEW_KEY_ENV_VAR)) ?? await askNewKey(ctx);
    return await withRegistry(ctx, "key", async (reg) => {
      if (reg.sealing === undefined) {
        throw new CliError(`'${reg.path}' is not sealed: there is no key to change`, "seal it with the API first");
      }
      const bar = new ProgressBar(ctx.io, "rekey");
      try {
        await reg.rekey(newKey, { onProgress: (done, total) => bar.update(done, total, "values") });
      } finally {
        bar.done();
      }
      if (ctx.json) printJson(ctx, { path: reg.path, rekeyed: true, scheme: reg.sealing.scheme });
      else ctx.io.out(safe(`rekeyed ${reg.path}: open it with the new key from now on`) + "\n");
      return 0;
    });
  },
};

async function askNewKey(ctx: CommandContext): Promise<string> {
  const first = await promptKey(ctx, "new key: ");
  if (first === undefined) {
    throw new UsageError("no new key was given", undefined, `set ${NEW_KEY_ENV_VAR}, or run on a terminal to be asked`);
  }
  const again = await promptKey(ctx, "new key again: ");
  if (again !== first) throw new UsageError("the two new keys differ", undefined, "run rekey again");
  return first;
}

const rotate: Command = {
  name: ["rotate"],
  args: [],
  summary: "re-seal every value under a fresh random data key (envelope scheme)",
  run: (ctx) =>
    withRegistry(ctx, "key", async (reg) => {
      if (reg.sealing === undefined) {
        throw new CliError(`'${reg.path}' is not sealed: there is no data key to rotate`);
      }
      const bar = new ProgressBar(ctx.io, "rotate");
      let count;
      try {
        count = await reg.rotateDataKey({ onProgress: (done, total) => bar.update(done, total, "values") });
      } finally {
        bar.done();
      }
      if (ctx.json) printJson(ctx, { path: reg.path, resealed: count, keyId: reg.sealing.keyId });
      else ctx.io.out(safe(`re-sealed ${count} value(s) under data key ${reg.sealing.keyId}`) + "\n");
      return 0;
    }),
};

/** Every command, in the order help lists them. */
export const COMMANDS: readonly Command[] = [
  info,
  modulesList,
  modulesGet,
  modulesSetState,
  modulesRegister,
  modulesRemove,
  configList,
  configGet,
  configHistory,
  configSet,
  configDelete,
  watchCommand,
  verify,
  backup,
  exportCommand,
  importCommand,
  rekey,
  rotate,
];
