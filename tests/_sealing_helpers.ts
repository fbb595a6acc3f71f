// Raw access to sealed registry files for the sealing tests: SQL outside the config API, the bytes on disk.
import assert from "node:assert/strict";
import { type Engine, type EngineName, StateRegistry } from "@oxide/registry";

/**
 * Runs raw SQL on a separate connection to `path`, outside the config API, through `engine`: pass the engine of the
 * registry under test. Two different SQLite libraries in one process do not see each other's POSIX locks, so the
 * registry refuses to open a file through both at once (separate processes are fine); connections through one engine
 * share locks, so this works while a registry of the same engine has the file open.
 */
export async function withRawDb<T>(path: string, engine: EngineName, fn: (db: Engine) => T): Promise<T> {
  await using reg = await StateRegistry.connect(path, { engine });
  assert.equal(reg.engine, engine);
  return fn(reg.db);
}

export async function rawValue(path: string, engine: EngineName, key: string): Promise<string> {
  return await withRawDb(path, engine, (db) => {
    const row = db.prepare("SELECT value FROM config WHERE key = ?").get(key);
    assert.ok(row, `row ${key}`);
    return String(row.value);
  });
}

export async function setRawValue(path: string, engine: EngineName, key: string, value: string): Promise<void> {
  await withRawDb(path, engine, (db) => {
    db.prepare(
      "INSERT INTO config (key, value, updated_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00') " +
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ).run(key, value);
  });
}

export async function rawKeyIds(path: string, engine: EngineName): Promise<Set<string>> {
  return await withRawDb(path, engine, (db) =>
    new Set(
      db.prepare("SELECT value FROM config").all().map((row) => String(row.value).split("$")[2] ?? "none"),
    ));
}

/** The files SQLite keeps for `path` that contain `needle`'s UTF-8 bytes. */
export async function filesContaining(path: string, needle: string): Promise<string[]> {
  const bytes = new TextEncoder().encode(needle);
  const found: string[] = [];
  for (const suffix of ["", "-wal", "-journal", "-shm"]) {
    let data: Uint8Array;
    try {
      data = await Deno.readFile(path + suffix);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (indexOfBytes(data, bytes) >= 0) found.push(path + suffix);
  }
  return found;
}

export function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** The bytes of every SQLite file of `path`, to prove nothing was written. */
export async function snapshotFiles(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const suffix of ["", "-wal", "-journal"]) {
    try {
      const data = await Deno.readFile(path + suffix);
      out[suffix] = new Uint8Array(await crypto.subtle.digest("SHA-256", data)).toHex();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return out;
}

/** Copies a closed database's files (the main file and a WAL, if any) from `from` to `to`. */
export async function copyDatabase(from: string, to: string): Promise<void> {
  await Deno.copyFile(from, to);
  try {
    await Deno.copyFile(`${from}-wal`, `${to}-wal`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
