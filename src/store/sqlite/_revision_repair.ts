// Keeps the revision schema whole on open: a trigger or index someone dropped (another tool, a bad migration, a
// hostile file) would silently turn compare-and-set off, since versions stop moving.
import { RegistryError } from "../../errors.ts";
import type { Engine } from "../../sqlite/engine.ts";
import {
  BATCH_BEGIN_SQL,
  BATCH_END_SQL,
  META_RESYNC_SQL,
  META_TRIGGERS_SQL,
  REVISION_INDEXES_SQL,
  REVISION_RESYNC_SQL,
  REVISION_TRIGGERS_SQL,
} from "./_revision_sql.ts";

/** What registry migrations 2 (revisions) and 3 (meta space) add: tables, triggers and indexes, and the resync. */
const SCHEMA: readonly { migration: number; tables: string[]; parts: Record<string, string>; resync: string[] }[] = [
  {
    migration: 2,
    tables: ["oxide_changes", "oxide_batch", "oxide_revision"],
    parts: { ...REVISION_TRIGGERS_SQL, ...REVISION_INDEXES_SQL },
    resync: [...REVISION_RESYNC_SQL],
  },
  { migration: 3, tables: ["oxide_meta"], parts: { ...META_TRIGGERS_SQL }, resync: [...META_RESYNC_SQL] },
];

/** The tables (which no repair can bring back: the log they held is gone), triggers and indexes the file lacks. */
function missingParts(db: Engine, version: number): { tables: string[]; parts: [name: string, sql: string][] } {
  const present = new Set(
    db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index', 'trigger')").all()
      .map((row) => String(row.name).toLowerCase()),
  );
  const applied = SCHEMA.filter((part) => part.migration <= version);
  return {
    tables: applied.flatMap((part) => part.tables).filter((name) => !present.has(name)),
    parts: applied.flatMap((part) => Object.entries(part.parts)).filter(([name]) => !present.has(name)),
  };
}

/**
 * Checks the revision schema (registry migrations 2 and 3) of a file that
 * has it, before anything is written. A writable open recreates a dropped
 * trigger or index in one `BEGIN IMMEDIATE` transaction and logs, at one new
 * revision, every change made while a trigger was missing, so versions move
 * on from what the file holds now. Reads only when nothing is missing.
 *
 * @param db The open connection.
 * @param version The registry migration version recorded in the file.
 * @param readonly A readonly open: nothing is written, a missing part is an error.
 * @throws {RegistryError} when a table of the revision schema is missing (its log cannot be rebuilt), or on a readonly
 * open when a trigger or index is missing.
 */
export function repairRevisionSchema(db: Engine, version: number, readonly: boolean): void {
  const { tables, parts } = missingParts(db, version);
  if (tables.length > 0) {
    throw new RegistryError(
      `its revision table(s) ${tables.join(", ")} are missing although its migrations are recorded: versions and ` +
        "compare-and-set cannot work on it; restore the file from a backup",
      { path: db.path },
    );
  }
  if (parts.length === 0) return;
  if (readonly) {
    throw new RegistryError(
      `its revision trigger(s) or index ${parts.map(([name]) => name).join(", ")} are missing (dropped by ` +
        "another program?): versions do not move without them; open it once without readonly to recreate them",
      { path: db.path },
    );
  }
  db.transaction(() => {
    // Another process may have repaired it since the check: only what is still missing.
    for (const [, sql] of missingParts(db, version).parts) db.exec(sql);
    db.exec(BATCH_BEGIN_SQL);
    for (const part of SCHEMA.filter((part) => part.migration <= version)) {
      for (const sql of part.resync) db.exec(sql);
    }
    db.exec(BATCH_END_SQL);
  });
}
