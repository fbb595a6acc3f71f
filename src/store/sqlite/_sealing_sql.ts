/**
 * The meta keys `"sealing"` and `"sealing.seals"` on SQLite: the additive
 * table `oxide_sealing` (at most one row, `id = 1`), as earlier versions of
 * this library wrote it, so files they sealed keep opening and a Rust oxide-k
 * kernel (which ignores the table) keeps sharing the file.
 *
 * - `"sealing"`: the columns `scheme`, `version`, `kdf`, `iterations`,
 *   `salt`, `key_id`, `wrapped_key` and `pending` (a JSON object while a
 *   re-sealing is under way), as one JSON object named by column, with the
 *   stored `generation` and, for a table altered by hand, `$missing` (the
 *   columns it lacks); the entry's version is `generation + 1`, and every put
 *   after the first adds one to `generation`.
 * - `"sealing.seals"`: `seal_count`, `seal_start` and `pending_seal_count` as
 *   `{ "count", "start", "pending" }`.
 *
 * Columns this library adds later come with defaults (sealing migrations 2
 * and 3); a file without them reads as if they held their defaults until the
 * first write of either key runs the migrations.
 *
 * @module
 */

import { RegistryError } from "../../errors.ts";
import { applyMigrations, type Migration } from "../../schema.ts";
import type { Engine, Row } from "../../sqlite/engine.ts";
import { formatTimestamp } from "../../time.ts";

/** The meta key of the sealing parameters. */
export const SEALING_KEY = "sealing";
/** The meta key of the seal counts. */
export const SEALS_KEY = "sealing.seals";

/** The additive table of sealing parameters: at most one row, `id = 1`. */
export const SEALING_TABLE_SQL = `CREATE TABLE IF NOT EXISTS oxide_sealing (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    scheme      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    kdf         TEXT,
    iterations  INTEGER,
    salt        TEXT,
    key_id      TEXT,
    wrapped_key TEXT,
    generation  INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
)`;

/** The columns of the sealing parameters that `"sealing"` carries (all but `pending` exist since migration 1). */
export const SEALING_PARAMETER_COLUMNS = [
  "scheme",
  "version",
  "kdf",
  "iterations",
  "salt",
  "key_id",
  "wrapped_key",
] as const;

/** Migrations of the `sealing` owner, run through the registry's migration runner. */
export const SEALING_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: "oxide_sealing parameters table", up: SEALING_TABLE_SQL },
  {
    version: 2,
    name: "oxide_sealing.seal_count and seal_start: values sealed under the current key, and how many it began with",
    up: (db) => {
      const columns = sealingColumns(db);
      if (!columns.has("seal_start")) {
        db.exec("ALTER TABLE oxide_sealing ADD COLUMN seal_start INTEGER NOT NULL DEFAULT 0");
      }
      if (columns.has("seal_count")) return;
      // Seals made before the count existed are unknown: the values stored now are a lower bound.
      db.exec(`ALTER TABLE oxide_sealing ADD COLUMN seal_count INTEGER NOT NULL DEFAULT 0;
        UPDATE oxide_sealing SET seal_count = (SELECT count(*) FROM config)`);
    },
  },
  {
    version: 3,
    name: "oxide_sealing.pending and pending_seal_count: a re-sealing under way (its new key) and its seals",
    up: (db) => {
      const columns = sealingColumns(db);
      if (!columns.has("pending")) db.exec("ALTER TABLE oxide_sealing ADD COLUMN pending TEXT");
      if (!columns.has("pending_seal_count")) {
        db.exec("ALTER TABLE oxide_sealing ADD COLUMN pending_seal_count INTEGER NOT NULL DEFAULT 0");
      }
    },
  },
];

const TABLE_EXISTS = "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'oxide_sealing'";

/** The columns `oxide_sealing` has (none when it does not exist). */
export function sealingColumns(db: Engine): Set<string> {
  return new Set(
    db.prepare("SELECT name FROM pragma_table_info('oxide_sealing')").all().map((row) => String(row.name)),
  );
}

/** Whether the table exists. */
export function sealingTableExists(db: Engine): boolean {
  return db.prepare(TABLE_EXISTS).get() !== undefined;
}

/** A stored field as JSON can carry it: a BLOB becomes `{ "blob": <length> }`, so a check can name it. */
function field(value: unknown): unknown {
  if (value instanceof Uint8Array) return { blob: value.length };
  if (typeof value === "bigint") return Number(value);
  return value;
}

/** The row, or `undefined` (no table, or no row). */
function row(db: Engine): Row | undefined {
  if (!sealingTableExists(db)) return undefined;
  return db.prepare("SELECT * FROM oxide_sealing WHERE id = 1").get();
}

/**
 * The `"sealing"` meta entry's value and generation: `undefined` without the table; value `""` when the table has
 * no row (still sealed for a keyless writer); else the parameter columns that exist, as a JSON object.
 */
export function readSealing(db: Engine): { value: string; generation: unknown } | undefined {
  if (!sealingTableExists(db)) return undefined;
  const found = row(db);
  if (found === undefined) return { value: "", generation: 0 };
  const out: Record<string, unknown> = {};
  for (const column of SEALING_PARAMETER_COLUMNS) {
    if (column in found) out[column] = field(found[column]);
  }
  // The stored generation as it is, so the sealing layer can name a damaged one, and the columns a damaged table
  // lacks (the parameters, the generation and the timestamp of migration 1).
  if ("generation" in found) out.generation = field(found.generation);
  const missing = [...SEALING_PARAMETER_COLUMNS, "generation", "updated_at"].filter((column) => !(column in found));
  if (missing.length > 0) out.$missing = missing;
  if (typeof found.pending === "string") {
    try {
      out.pending = JSON.parse(found.pending);
    } catch {
      out.pending = found.pending; // Not JSON: the sealing layer names the damage.
    }
  } else if (found.pending !== undefined && found.pending !== null) {
    out.pending = field(found.pending);
  }
  return { value: JSON.stringify(out), generation: found.generation };
}

/** The `"sealing.seals"` meta entry's value, or `undefined` without the table. */
export function readSeals(db: Engine): string | undefined {
  if (!sealingTableExists(db)) return undefined;
  const found = row(db);
  if (found === undefined) return JSON.stringify({ count: 0, start: 0, pending: 0 });
  // Before migration 2: the values stored are a lower bound of the seals made (what the migration will record).
  const count = "seal_count" in found
    ? field(found.seal_count)
    : Number(db.prepare("SELECT count(*) AS n FROM config").get()?.n ?? 0);
  return JSON.stringify({
    count,
    start: "seal_start" in found ? field(found.seal_start) : 0,
    pending: "pending_seal_count" in found ? field(found.pending_seal_count) : 0,
  });
}

function parseObject(key: string, value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new TypeError(`meta key '${key}' takes a JSON object, got '${value.slice(0, 40)}'`, { cause: error });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new TypeError(`meta key '${key}' takes a JSON object, got '${value.slice(0, 40)}'`);
  }
  return parsed as Record<string, unknown>;
}

/** Runs the sealing migrations (creating the table when missing); inside the caller's write transaction. */
function migrate(db: Engine): void {
  applyMigrations(db, "sealing", SEALING_MIGRATIONS);
}

/** Writes `"sealing"`: inserts the row (generation 0), or updates it and adds one to the generation. */
export function writeSealing(db: Engine, value: string): boolean {
  const o = parseObject(SEALING_KEY, value);
  migrate(db);
  const params = [
    ...SEALING_PARAMETER_COLUMNS.map((column) => (o[column] ?? null) as string | number | null),
    o.pending === undefined || o.pending === null ? null : JSON.stringify(o.pending),
    formatTimestamp(new Date()),
  ];
  const exists = db.prepare("SELECT 1 AS found FROM oxide_sealing WHERE id = 1").get() !== undefined;
  const sql = exists
    ? `UPDATE oxide_sealing SET scheme = ?1, version = ?2, kdf = ?3, iterations = ?4, salt = ?5, key_id = ?6,
        wrapped_key = ?7, pending = ?8, generation = generation + 1, updated_at = ?9 WHERE id = 1`
    : `INSERT INTO oxide_sealing (id, scheme, version, kdf, iterations, salt, key_id, wrapped_key, pending, generation,
        updated_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)`;
  return db.prepare(sql).run(...params).changes > 0;
}

/** Writes `"sealing.seals"` (the row must exist: the parameters are written first). */
export function writeSeals(db: Engine, value: string): boolean {
  const o = parseObject(SEALS_KEY, value);
  migrate(db);
  const count = (name: string) => {
    const n = o[name] ?? 0;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
      throw new TypeError(`meta key '${SEALS_KEY}': '${name}' must be a non-negative integer, got ${String(n)}`);
    }
    return n;
  };
  const changes = db.prepare(
    "UPDATE oxide_sealing SET seal_count = ?1, seal_start = ?2, pending_seal_count = ?3 WHERE id = 1",
  ).run(count("count"), count("start"), count("pending")).changes;
  if (changes === 0) {
    throw new RegistryError(
      `meta key '${SEALS_KEY}' needs the sealing parameters first (table oxide_sealing is empty)`,
      {
        path: db.path,
      },
    );
  }
  return true;
}
