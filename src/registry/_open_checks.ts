// What a file must be before the registry writes anything to it: checked read-only, inside the open, so a refused file
// keeps every byte (no WAL switch, no oxide_migrations) and the refusal carries the usual `cannot open '<path>':`.
import { describe } from "../_describe.ts";
import { RegistryError } from "../errors.ts";
import type { Engine } from "../sqlite/engine.ts";

/** How the registry may treat the file it opens. */
export interface OpenCheckOptions {
  /** Never write: the file must already be a registry. */
  readonly?: boolean | undefined;
  /** `false`: the file must already be a registry (no new registry is made in an empty database). */
  create?: boolean | undefined;
  /** Add the registry's tables to a database that holds other tables but none of the registry's. */
  adopt?: boolean | undefined;
}

/** Refuses an `adopt` option that is not a boolean (before anything is opened). */
export function checkAdoptOption(options: OpenCheckOptions): void {
  if (options.adopt !== undefined && typeof options.adopt !== "boolean") {
    throw new TypeError(`adopt must be a boolean, got ${describe(options.adopt)}`);
  }
}

/**
 * Refuses open modes that only a SQLite file has, for an etcd address: ignoring them would let `readonly: true`
 * write.
 *
 * @throws {RegistryError} naming the address and the options.
 */
export function checkNoFileModes(path: string, options: OpenCheckOptions & { create?: boolean | undefined }): void {
  const asked = [
    options.readonly === true ? "readonly: true" : undefined,
    options.create === false ? "create: false" : undefined,
    options.adopt === true ? "adopt: true" : undefined,
  ].filter((mode) => mode !== undefined);
  if (asked.length === 0) return;
  throw new RegistryError(
    `cannot open '${path}': ${
      asked.join(", ")
    } apply to SQLite files only; fleet mode (etcd) does not support them yet`,
    { path },
  );
}

/** The tables whose presence makes a file a registry (oxide-k's two, and our record of migrations). */
const REGISTRY_MARKERS = ["modules", "config", "oxide_migrations"];

/** The unique keys the registry's statements rely on (`ON CONFLICT(id)`, `ON CONFLICT(key)`, one record per migration). */
const REQUIRED_KEYS: Readonly<Record<string, readonly string[]>> = {
  modules: ["id"],
  config: ["key"],
  oxide_migrations: ["owner", "version"],
};

/**
 * Refuses, before anything is written, a file the registry must not take:
 * another application's database (unless `adopt`), an empty database when
 * `create` is false or the open is read-only, and registry tables without the
 * unique keys the registry's statements rely on.
 *
 * @throws {RegistryError} saying what the file is and what to do.
 */
export function checkRegistryFile(db: Engine, options: OpenCheckOptions): void {
  const tables = db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
  ).all().map((row) => String(row.name));
  const lower = new Set(tables.map((name) => name.toLowerCase()));
  const isRegistry = REGISTRY_MARKERS.some((name) => lower.has(name));
  if (!isRegistry) {
    const readonly = options.readonly === true;
    if (tables.length === 0) {
      if (readonly || options.create === false) {
        throw new RegistryError(
          `it is an empty database, not a registry (${
            readonly ? "readonly" : "create: false"
          }: no new registry is made)`,
          { path: db.path },
        );
      }
      return;
    }
    if (readonly || options.adopt !== true) {
      const shown = tables.slice(0, 5).map((name) => `'${name}'`).join(", ") + (tables.length > 5 ? ", ..." : "");
      throw new RegistryError(
        `it holds ${tables.length} table(s) of another application (${shown}) and none of the registry's: ` +
          (readonly
            ? "not a registry"
            : "the registry does not take it over (open with { adopt: true } to add its tables to this database)"),
        { path: db.path },
      );
    }
  }
  for (const [table, columns] of Object.entries(REQUIRED_KEYS)) {
    if (!lower.has(table)) continue;
    if (!hasUniqueKey(db, table, columns)) {
      throw new RegistryError(
        `its '${table}' table has no primary key or unique index on (${columns.join(", ")}), which the registry's ` +
          "writes rely on: not an oxide-k registry",
        { path: db.path },
      );
    }
  }
}

/** Whether `table` has a primary key, or a full (not partial) unique index, on exactly `columns`. */
function hasUniqueKey(db: Engine, table: string, columns: readonly string[]): boolean {
  const want = [...columns].sort().join("\0");
  const info = db.prepare("SELECT name, pk FROM pragma_table_info(?1)").all(table);
  const pk = info.filter((row) => Number(row.pk) > 0).map((row) => String(row.name).toLowerCase()).sort().join("\0");
  if (pk === want) return true;
  const indexes = db.prepare(`SELECT name FROM pragma_index_list(?1) WHERE "unique" = 1 AND partial = 0`).all(table);
  for (const index of indexes) {
    const names = db.prepare("SELECT name FROM pragma_index_info(?1)").all(index.name as string)
      .map((row) => String(row.name).toLowerCase()).sort().join("\0");
    if (names === want) return true;
  }
  return false;
}
