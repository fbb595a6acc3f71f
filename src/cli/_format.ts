// Human output of the CLI: aligned tables, relative times, colour (only on a terminal, never with NO_COLOR) and a
// progress bar (only on a terminal). Private: mod.ts never re-exports it.

/** Where the CLI writes, and what it knows about the terminal. */
export interface CliIo {
  /** Writes to standard output. */
  out(text: string): void;
  /** Writes to standard error. */
  err(text: string): void;
  /** Whether standard output is a terminal (colour on stdout). */
  stdoutIsTerminal: boolean;
  /** Whether standard error is a terminal (progress bars). */
  stderrIsTerminal: boolean;
  /** Whether standard input is a terminal (key prompts). */
  stdinIsTerminal: boolean;
  /** Reads an environment variable (only those the CLI is granted). */
  env(name: string): string | undefined;
  /** Reads one line from the terminal without echo. */
  promptSecret(prompt: string): Promise<string | undefined>;
  /** Reads all of standard input. */
  readStdin(): Promise<string>;
  /** The current time (relative times are measured from it). */
  now(): Date;
}

const encoder = new TextEncoder();

/** The process's own streams. */
export function processIo(): CliIo {
  return {
    out: (text) => writeAll(Deno.stdout, text),
    err: (text) => writeAll(Deno.stderr, text),
    stdoutIsTerminal: Deno.stdout.isTerminal(),
    stderrIsTerminal: Deno.stderr.isTerminal(),
    stdinIsTerminal: Deno.stdin.isTerminal(),
    env: readEnv,
    promptSecret,
    readStdin: () => new Response(Deno.stdin.readable).text(),
    now: () => new Date(),
  };
}

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
}

/** An environment variable, or `undefined` when unset or not granted (never a permission prompt). */
function readEnv(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
  return Deno.env.get(name);
}

/** Reads a line from the terminal with echo off; `undefined` at end of input. */
async function promptSecret(prompt: string): Promise<string | undefined> {
  writeAll(Deno.stderr, prompt);
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buffer = new Uint8Array(64);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buffer);
      if (n === null) return bytes.length > 0 ? new TextDecoder().decode(new Uint8Array(bytes)) : undefined;
      for (const byte of buffer.subarray(0, n)) {
        if (byte === 3) throw new Deno.errors.Interrupted("interrupted"); // Ctrl-C
        if (byte === 4 && bytes.length === 0) return undefined; // Ctrl-D
        if (byte === 13 || byte === 10) return new TextDecoder().decode(new Uint8Array(bytes));
        if (byte === 127 || byte === 8) bytes.pop();
        else bytes.push(byte);
      }
    }
  } finally {
    Deno.stdin.setRaw(false);
    writeAll(Deno.stderr, "\n");
  }
}

/** ANSI styles, or none when colour is off. */
export interface Styles {
  bold(text: string): string;
  dim(text: string): string;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
}

/** Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org). */
export function styles(io: CliIo): Styles {
  const on = io.stdoutIsTerminal && (io.env("NO_COLOR") ?? "") === "";
  const wrap = (open: number, close: number) => (text: string) => on ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return { bold: wrap(1, 22), dim: wrap(2, 22), green: wrap(32, 39), red: wrap(31, 39), yellow: wrap(33, 39) };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

// C0 controls (ESC, BEL, CR, ...), DEL, C1 controls (U+009B is a one-character CSI on some terminals), and the
// bidirectional overrides that reorder what is shown.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from the registry file (ids, names, keys, values, messages quoting them) made safe for a terminal: every
 * control character shown as an escape (`\x1b`), so a row another program wrote cannot move the cursor, recolour the
 * screen or set the window title.
 */
export function safe(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u{${code.toString(16)}}` : `\\x${code.toString(16).padStart(2, "0")}`;
  });
}

/** The printed width of `text` (ANSI styles take none). */
function width(text: string): number {
  return [...text.replace(ANSI, "")].length;
}

/** An aligned table: a header row, then one row per item; columns separated by two spaces. */
export function table(header: string[], rows: string[][], style: Styles): string {
  const widths = header.map((h, i) => Math.max(width(h), ...rows.map((row) => width(row[i] ?? ""))));
  const line = (cells: string[]) =>
    cells.map((cell, i) => i === cells.length - 1 ? cell : cell + " ".repeat(widths[i]! - width(cell))).join("  ")
      .trimEnd();
  return [style.bold(line(header)), ...rows.map(line)].join("\n") + "\n";
}

// In JSON text C0 controls are already escaped; these are not, and `\uXXXX` means the same value.
const UNSAFE_IN_JSON = /[\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/** JSON text with the characters {@linkcode safe} escapes written as `\uXXXX` escapes: the same JSON value. */
export function safeJson(text: string): string {
  return text.replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** `"just now"`, `"42 s ago"`, `"3 min ago"`, `"5 h ago"`, `"2 days ago"`; `"in 3 min"` for the future. */
export function relativeTime(date: Date, now: Date): string {
  const seconds = Math.round((now.getTime() - date.getTime()) / 1000);
  const ahead = seconds < 0;
  const s = Math.abs(seconds);
  if (s < 5) return "just now";
  let amount: string;
  if (s < 60) amount = `${s} s`;
  else if (s < 3600) amount = `${Math.floor(s / 60)} min`;
  else if (s < 86_400) amount = `${Math.floor(s / 3600)} h`;
  else if (s < 86_400 * 60) amount = `${Math.floor(s / 86_400)} day${Math.floor(s / 86_400) === 1 ? "" : "s"}`;
  else return date.toISOString().slice(0, 10);
  return ahead ? `in ${amount}` : `${amount} ago`;
}

/** A size in bytes as people read it. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A progress bar on standard error, drawn only when it is a terminal. */
export class ProgressBar {
  readonly #io: CliIo;
  readonly #label: string;
  readonly #on: boolean;
  #drawn = false;

  constructor(io: CliIo, label: string) {
    this.#io = io;
    this.#label = label;
    this.#on = io.stderrIsTerminal;
  }

  /** Redraws the bar at `done` of `total` `unit`s. */
  update(done: number, total: number, unit: string): void {
    if (!this.#on || total <= 0) return;
    const fraction = Math.min(1, Math.max(0, done / total));
    const cells = 30;
    const full = Math.round(fraction * cells);
    const bar = `${"█".repeat(full)}${"░".repeat(cells - full)}`;
    this.#io.err(`\r\x1b[2K${this.#label} ${bar} ${Math.round(fraction * 100)}% (${done}/${total} ${unit})`);
    this.#drawn = true;
  }

  /** Clears the bar. */
  done(): void {
    if (this.#drawn) this.#io.err("\r\x1b[2K");
    this.#drawn = false;
  }
}
