// Shared test helpers: one suite, run against both engines; temporary folders that clean up after themselves.
import type { EngineName } from "@oxide/registry";
import { DatabaseSync } from "node:sqlite";
import { fileOwner } from "../src/sqlite/_file_owners.ts";

/** Both engines; every engine-parameterised test runs once per entry. */
export const ENGINES: readonly EngineName[] = ["ffi", "node"];

/**
 * Registers `fn` as one test per engine, named `"<name> [ffi]"` and `"<name> [node]"`; `t` is that test's context
 * (for `t.step`).
 */
export function engineTest(
  name: string,
  fn: (engine: EngineName, t: Deno.TestContext) => Promise<void> | void,
): void {
  for (const engine of ENGINES) {
    Deno.test(`${name} [${engine}]`, (t) => fn(engine, t));
  }
}

/**
 * Opens `path` with node:sqlite directly, as another program would: no API of ours, no WAL switch. Throws when this
 * process has `path` open through the ffi engine: node:sqlite is a second SQLite library, and closing it would drop the
 * ffi connection's locks and delete its -wal and -shm files under it. Open it before the registry, or after closing it.
 */
export function rawSqlite(path: string): DatabaseSync {
  if (fileOwner(path) === "ffi") {
    throw new Error(`test bug: '${path}' is open through the ffi engine; close it before opening it with node:sqlite`);
  }
  return new DatabaseSync(path);
}

/** A temporary folder removed (with its contents) at the end of the `await using` block. */
export async function tempDir(): Promise<
  AsyncDisposable & { path: string; file(name: string): string }
> {
  const path = await Deno.makeTempDir({ prefix: "oxide_registry_test_" });
  return {
    path,
    file: (name: string) => `${path}/${name}`,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** Runs a Deno subprocess and returns its exit code and output. */
export async function runDeno(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; clearEnv?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.clearEnv === undefined ? {} : { clearEnv: options.clearEnv }),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * oxide-k's own bootstrap DDL, verbatim from registry.rs: tests build "files oxide-k made" with it, independently
 * of our `src/schema.ts`.
 */
export const OXIDE_K_SCHEMA = `
CREATE TABLE IF NOT EXISTS modules (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    description TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS config (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);`;
