/**
 * Reading rows of the change log (`oxide_changes`, see `_revision_sql.ts`)
 * as store entries: shared by the watch and by history.
 *
 * @module
 */
import type { Row } from "../../sqlite/engine.ts";
import type { ChangeEvent, Entry, ModuleFields, Space } from "../store.ts";

/** The log columns an entry is built from, for SELECT lists. */
export const LOG_COLUMNS =
  "seq, revision, space, key, type, version, create_revision, value, name, module_version, kind, state, description, updated_at";

/** A log row as a store entry (for a delete: the last value, version 0). */
export function logEntry(row: Row): Entry {
  const space = row.space as Space;
  const value = space === "modules"
    ? {
      name: row.name as string,
      version: row.module_version as string,
      kind: row.kind as string,
      state: row.state as string,
      description: (row.description ?? null) as string | null,
    } satisfies ModuleFields
    : row.value as string;
  return {
    space,
    key: row.key as string,
    value,
    updatedAt: typeof row.updated_at === "string" ? row.updated_at : "",
    version: Number(row.version),
    createRevision: Number(row.create_revision),
    modRevision: Number(row.revision),
  } as Entry;
}

/** A log row as a change event. */
export function logEvent(row: Row): ChangeEvent {
  return { type: row.type === "delete" ? "delete" : "put", entry: logEntry(row) };
}
