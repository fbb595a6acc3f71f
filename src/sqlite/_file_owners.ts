// Which SQLite library has each database file open in this process.
//
// The ffi engine (system libsqlite3) and the node engine (the SQLite inside Deno) are two copies of SQLite. POSIX
// advisory locks belong to the process, not to a connection, and closing any descriptor of a file drops all of the
// process's locks on it: a file open through both copies at once loses its locking, and a WAL file can be
// checkpointed away under a reader (https://www.sqlite.org/howtocorrupt.html#multiple_copies_of_sqlite_linked_into_the_same_application).
// So a process may open one file through one library only. Connections through the same library share locks safely.
import { RegistryError } from "../errors.ts";
import type { EngineName } from "./engine.ts";

const owners = new Map<string, { engine: EngineName; count: number }>();

/**
 * Records that `engine` opens `path`, or throws when another library already has it open in this process.
 *
 * @returns A function that releases the claim (call it once, on close or failed open).
 */
export function claimFile(path: string, engine: EngineName): () => void {
  if (path === ":memory:") return () => {}; // Private to the connection: no file, no locks.
  const key = canonicalPath(path);
  const owner = owners.get(key);
  if (owner !== undefined && owner.engine !== engine) {
    throw new RegistryError(
      `cannot open '${path}' with the ${engine} engine: this process has it open with the ${owner.engine} engine, ` +
        "and two SQLite libraries in one process do not share file locks (close the other handles first, " +
        `or open it with { engine: "${owner.engine}" })`,
      { path },
    );
  }
  if (owner === undefined) owners.set(key, { engine, count: 1 });
  else owner.count++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const current = owners.get(key)!;
    if (--current.count === 0) owners.delete(key);
  };
}

/** The engine that has `path` open in this process, if any. */
export function fileOwner(path: string): EngineName | undefined {
  return path === ":memory:" ? undefined : owners.get(canonicalPath(path))?.engine;
}

function canonicalPath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    // Not there yet (or not readable): canonicalize the folder, which must exist for the open to succeed.
    const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
    const folder = slash === -1 ? "." : path.slice(0, slash) || "/";
    try {
      return `${Deno.realPathSync(folder)}/${path.slice(slash + 1)}`;
    } catch {
      return path;
    }
  }
}
