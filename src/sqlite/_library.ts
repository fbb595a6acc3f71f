// Finds and opens libsqlite3 once per path, lazily, so importing the module needs no permission.
import { RegistryError } from "../errors.ts";
import { type Sqlite3, SYMBOLS } from "./_ffi_symbols.ts";

const LIBRARY_ENV = "OXIDE_SQLITE_PATH";

const LIBRARY_NAMES: Readonly<Record<string, readonly string[]>> = {
  darwin: ["libsqlite3.dylib", "/usr/lib/libsqlite3.dylib"],
  windows: ["sqlite3.dll", "winsqlite3.dll"],
};
const DEFAULT_NAMES = ["libsqlite3.so.0", "libsqlite3.so"];

const loaded = new Map<string, Sqlite3>();
/** The library file each loaded symbol set came from, and the groups loaded from it later. */
const sources = new WeakMap<Sqlite3, { candidate: string; groups: Map<object, unknown> }>();

/**
 * Loads the SQLite library: `libPath`, else `OXIDE_SQLITE_PATH` (read only
 * when `--allow-env` grants it), else the usual names for this OS.
 *
 * @throws {RegistryError} without `--allow-ffi`, or when no library loads.
 */
export function loadSqlite(libPath?: string): Sqlite3 {
  // Checked on every open: a library loaded earlier in the process is still unusable without the permission.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") throw ffiPermissionError();
  const candidates = libPath !== undefined
    ? [libPath]
    : [envLibraryPath() ?? LIBRARY_NAMES[Deno.build.os] ?? DEFAULT_NAMES]
      .flat();
  const failures: string[] = [];
  for (const candidate of candidates) {
    const cached = loaded.get(candidate);
    if (cached) return cached;
    try {
      const symbols = Deno.dlopen(candidate, SYMBOLS).symbols;
      loaded.set(candidate, symbols);
      sources.set(symbols, { candidate, groups: new Map() });
      return symbols;
    } catch (error) {
      if (
        error instanceof Deno.errors.NotCapable ||
        error instanceof Deno.errors.PermissionDenied
      ) {
        throw ffiPermissionError(error);
      }
      failures.push(`'${candidate}' (${(error as Error).message})`);
    }
  }
  throw new RegistryError(
    `could not load the SQLite library: tried ${failures.join(", ")}; ` +
      `install libsqlite3 or set ${LIBRARY_ENV} or the libPath option`,
  );
}

/**
 * Loads a further group of symbols (see `TEXT_SYMBOLS`, `BACKUP_SYMBOLS`) from the library `lib` came from, once.
 *
 * @throws {RegistryError} without `--allow-ffi`.
 */
export function loadSqliteGroup<G extends Deno.ForeignLibraryInterface>(
  lib: Sqlite3,
  group: G,
): Deno.DynamicLibrary<G>["symbols"] {
  const source = sources.get(lib)!;
  let symbols = source.groups.get(group) as Deno.DynamicLibrary<G>["symbols"] | undefined;
  if (symbols === undefined) {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") throw ffiPermissionError();
    symbols = Deno.dlopen(source.candidate, group).symbols;
    source.groups.set(group, symbols);
  }
  return symbols;
}

function envLibraryPath(): string | undefined {
  const status = Deno.permissions.querySync({
    name: "env",
    variable: LIBRARY_ENV,
  });
  if (status.state !== "granted") return undefined;
  return Deno.env.get(LIBRARY_ENV) || undefined;
}

function ffiPermissionError(cause?: unknown): RegistryError {
  return new RegistryError('the "ffi" engine needs --allow-ffi: grant it, or open with { engine: "node" }', { cause });
}
