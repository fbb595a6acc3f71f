/**
 * Online backup of a registry file: SQLite's backup API into a temporary file
 * beside the destination, then an atomic move into place, so a failed or
 * interrupted backup never leaves a half-written file at the destination.
 *
 * @module
 */
import { RegistryError } from "../errors.ts";
import type { BackupProgress, Engine } from "../sqlite/engine.ts";
import { describe } from "../_describe.ts";

/**
 * Options for {@linkcode StateRegistry.backup}.
 *
 * @example
 * ```ts
 * import { type BackupOptions, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await using reg = await StateRegistry.connect(`${dir}/registry.db`);
 * const options: BackupOptions = { overwrite: true };
 * await reg.backup(`${dir}/copy.db`);
 * await reg.backup(`${dir}/copy.db`, options); // Replaces the first copy.
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface BackupOptions {
  /** Replace `dest` when it exists. Default `false`: an existing file is refused. */
  overwrite?: boolean | undefined;
  /** Called after each step of the copy. */
  onProgress?: ((progress: BackupProgress) => void) | undefined;
  /** Pages copied per step (default 256); the event loop runs between steps. */
  pagesPerStep?: number | undefined;
}

/**
 * What {@linkcode StateRegistry.backup} wrote.
 *
 * @example
 * ```ts
 * import { type BackupResult, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await using reg = await StateRegistry.connect(`${dir}/registry.db`);
 * const result: BackupResult = await reg.backup(`${dir}/copy.db`);
 * assert.equal(result.path, `${dir}/copy.db`);
 * assert.equal(result.bytes, (await Deno.stat(`${dir}/copy.db`)).size);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface BackupResult {
  /** The destination path. */
  path: string;
  /** Pages copied. */
  pages: number;
  /** Size of the copy in bytes. */
  bytes: number;
}

/**
 * Backs up the database of `db` into `dest` (see `StateRegistry.backup`).
 *
 * @param db The registry's connection.
 * @param dest Destination path.
 * @param options Overwrite, progress, step size.
 * @returns Where the copy is and how large.
 * @throws {TypeError} when `dest` is not a non-empty string without NUL.
 * @throws {RegistryError} when `dest` exists (and `overwrite` is not set), is the registry itself, cannot be
 * written, or SQLite fails; nothing is left at `dest` then.
 */
export async function backupDatabase(db: Engine, dest: string, options: BackupOptions = {}): Promise<BackupResult> {
  if (typeof dest !== "string" || dest === "" || dest === ":memory:" || dest.includes("\0")) {
    throw new TypeError(`backup() needs a file path without NUL characters, got ${describe(dest)}`);
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const overwrite = options.overwrite ?? false;
  if (typeof overwrite !== "boolean") throw new TypeError(`overwrite must be a boolean, got ${describe(overwrite)}`);
  if (sameFile(db.path, dest)) {
    throw new RegistryError(`cannot back up '${db.path}' onto itself: choose another destination`, { path: dest });
  }
  if (!overwrite && exists(dest)) {
    throw new RegistryError(
      `backup destination '${dest}' already exists: choose another path, or overwrite it (overwrite: true, --force)`,
      { path: dest },
    );
  }
  const temp = `${dest}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  checkPermissions(dest, temp);
  let pages = 0;
  try {
    await db.backup(temp, {
      pagesPerStep: options.pagesPerStep,
      onProgress: (progress) => {
        pages = progress.totalPages;
        options.onProgress?.(progress);
      },
    });
    moveIntoPlace(temp, dest, overwrite);
  } catch (error) {
    removeQuietly(temp);
    removeQuietly(`${temp}-journal`);
    throw error;
  }
  return { path: dest, pages, bytes: fileSize(dest) };
}

/** Moves the finished copy to `dest`: without `overwrite`, never over a file that appeared meanwhile. */
function moveIntoPlace(temp: string, dest: string, overwrite: boolean): void {
  try {
    if (overwrite) {
      // A -wal left beside the old file would be replayed onto the new one when it is next opened.
      for (const suffix of ["-wal", "-shm"]) removeIfThere(`${dest}${suffix}`);
      Deno.renameSync(temp, dest);
      return;
    }
    // A hard link fails when `dest` exists: the no-clobber move is atomic.
    Deno.linkSync(temp, dest);
    Deno.removeSync(temp);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new RegistryError(
        `backup destination '${dest}' appeared while the backup ran: choose another path, or overwrite it`,
        { path: dest, cause: error },
      );
    }
    throw fileError(dest, error);
  }
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** The copy is written to `temp` and moved to `dest`: both need read and write permission (a grant of their folder). */
function checkPermissions(dest: string, temp: string): void {
  for (const path of [dest, temp]) {
    for (const name of ["read", "write"] as const) {
      if (Deno.permissions.querySync({ name, path }).state !== "granted") {
        throw new RegistryError(
          `backup into '${dest}' needs --allow-${name} for '${path === dest ? dest : dirOf(dest)}' ` +
            `(the copy is written beside it first, then moved into place)`,
          { path: dest },
        );
      }
    }
  }
}

function dirOf(path: string): string {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return slash === -1 ? "." : path.slice(0, slash) || "/";
}

function fileError(path: string, error: unknown): RegistryError {
  if (error instanceof Deno.errors.NotCapable) {
    return new RegistryError(
      `backup into '${path}' needs --allow-read and --allow-write for its folder: ${error.message}`,
      { path, cause: error },
    );
  }
  return new RegistryError(`backup into '${path}' failed: ${(error as Error).message}`, { path, cause: error });
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw fileError(path, error);
  }
}

function sameFile(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return Deno.realPathSync(a) === Deno.realPathSync(b);
  } catch {
    return false;
  }
}

function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Not there, or not ours to remove.
  }
}
