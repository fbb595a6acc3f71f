/**
 * The one form of a database path that both engines hand to SQLite, check permissions for and claim in the
 * one-engine-per-file guard. Private to `src/sqlite/`.
 *
 * @module
 */
import { resolveAgainst } from "../_path.ts";

/** The path of a private in-memory database. */
const MEMORY = ":memory:";

/**
 * Resolves `path` to a plain, absolute, normalized file path (`.` and `..` folded against the current folder).
 *
 * SQLite reads `file:` URIs (percent-decoding them) when the library was built with `SQLITE_USE_URI`, even without
 * `SQLITE_OPEN_URI`: `file:x/../data/%2E%2E/outside/r.db` passes a permission check on `./data` and opens a file
 * outside it. An absolute path never starts with `file:`, so SQLite takes it literally; the permission check, the
 * guard and the open all use this same string.
 *
 * @param path The caller's path, or `":memory:"` (returned as it is).
 * @returns The absolute path.
 */
export function databaseFile(path: string): string {
  return path === MEMORY ? MEMORY : resolveAgainst(Deno.cwd(), path);
}
