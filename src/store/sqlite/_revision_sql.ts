/**
 * The revision schema of a SQLite registry (registry migration 2): etcd's
 * revisions kept by triggers, so every writer, including a Rust oxide-k
 * kernel whose SQL knows nothing of revisions, bumps the revision and shows
 * in the change log. oxide-k's `modules` and `config` tables and their SQL
 * text are untouched; everything here is additive.
 *
 * Tables:
 *
 * - `oxide_changes`: the change log, one row per changed key. Columns:
 *   `seq` (INTEGER PRIMARY KEY: log order, which is revision order),
 *   `revision`, `space` (`'config'`, `'modules'`, or `'meta'`: see
 *   {@linkcode META_MIGRATION_SQL}), `key` (the config key, module id or meta key), `type` (`'put'` or `'delete'`), `version` (writes since the
 *   key was created, 1 for a create; 0 for a delete), `create_revision` (of
 *   the key's current life; a delete keeps the life it ends), the stored
 *   value of a put (`value` for config: compact JSON or sealed text; `name`,
 *   `module_version`, `kind`, `state`, `description` for modules; NULL in a
 *   delete), `updated_at` (the row's own `updated_at`) and
 *   `changed_at` (Unix seconds when the change was logged).
 *   Index `oxide_changes_key (key, space, seq, type, version, create_revision)`
 *   (registry migration 4; migration 2 made it `(space, key)`): a key's history,
 *   and its current entry (its newest row), read from the index alone. The
 *   triggers read a key's newest row twice per change: covered, each read is one
 *   index step with no table row to fetch, and a key first compares sooner than
 *   a space that every row of a table shares.
 * - `oxide_batch`: at most one row, only ever inside an open write
 *   transaction of ours (inserted after `BEGIN`, deleted before `COMMIT`, so
 *   no other connection ever sees it). `revision` is the revision every
 *   change of the transaction gets; `rewrite = 1` marks a rewrite in place
 *   (re-sealing under a new data key): the triggers then log nothing and
 *   versions do not move, since the values did not change.
 * - `oxide_revision`: one row (`id = 1`); `compacted` is the revision below
 *   which compaction dropped log rows (0: nothing dropped).
 *
 * The revision is not a counter row: it is the `revision` of the newest log
 * row (`ORDER BY seq DESC LIMIT 1`, one B-tree step), so a write costs one
 * log row and its index entry, nothing more. A key's current `version`,
 * `createRevision` and `modRevision` are read from its newest log row too.
 *
 * One revision per committed write transaction:
 *
 * - An autocommit statement (every oxide-k statement, and our single writes)
 *   changes one row; its trigger logs it at the newest revision + 1.
 * - Our multi-write transactions (batches) insert the `oxide_batch` row with
 *   the newest revision + 1 right after `BEGIN IMMEDIATE`; every trigger of
 *   the transaction uses that revision, and the row is deleted before
 *   `COMMIT`. A batch that changes nothing logs nothing and uses no revision.
 * - Writes in someone else's multi-statement transaction (an extension's
 *   SQL, a hand-written script) get a revision each: SQLite has no statement
 *   or transaction triggers, and nothing else tells them apart.
 *
 * Rules the triggers rely on, for whoever compacts the log: keep each live
 * key's newest row (its current entry) and never the newest row of the log
 * (the revision); record the compacted revision in `oxide_revision` (the
 * revision after an emptied log starts there). Rows whose key is NULL (SQLite
 * allows it in a TEXT PRIMARY KEY; oxide-k cannot read them) are not logged.
 * An `UPDATE` that changes a key logs a delete of the old key and a put of
 * the new one. `INSERT OR REPLACE` over an existing key is an update (SQLite
 * fires no delete trigger for it). The SQL runs inside whichever SQLite
 * executes the write (a Rust kernel's bundled one too), so it uses nothing
 * newer than SQLite 3.8 (no upsert, no `unixepoch()`).
 *
 * @module
 */

/** The revision the next change gets: the open batch's, else the newest logged + 1. */
const NEXT_REVISION = `coalesce(
      (SELECT revision FROM oxide_batch),
      (SELECT revision + 1 FROM oxide_changes ORDER BY seq DESC LIMIT 1),
      (SELECT compacted + 1 FROM oxide_revision WHERE id = 1),
      1)`;

/** Skips rewrites in place (re-sealing; not in `meta`, whose writes are real changes) and rows without a key. */
function when(row: "NEW" | "OLD", key: string, table: string): string {
  if (table === "oxide_meta") return `WHEN ${row}.${key} IS NOT NULL`;
  return `WHEN ${row}.${key} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM oxide_batch WHERE rewrite = 1)`;
}

/** The newest log row of a key, for its current version and create revision. */
function newest(space: string, key: string, column: string): string {
  return `(SELECT CASE type WHEN 'put' THEN ${column} END FROM oxide_changes
        WHERE space = '${space}' AND key = ${key} ORDER BY seq DESC LIMIT 1)`;
}

const NOW = "CAST(strftime('%s', 'now') AS INTEGER)";

interface SpaceColumns {
  /** The table. */
  table: "config" | "modules" | "oxide_meta";
  /** The space its log rows name. */
  space: "config" | "modules" | "meta";
  /** Its key column. */
  key: string;
  /** Log columns and the table columns that fill them. */
  columns: readonly (readonly [log: string, table: string])[];
}

const CONFIG_SPACE: SpaceColumns = {
  table: "config",
  space: "config",
  key: "key",
  columns: [["value", "value"]],
};

const MODULES_SPACE: SpaceColumns = {
  table: "modules",
  space: "modules",
  key: "id",
  columns: [
    ["name", "name"],
    ["module_version", "version"],
    ["kind", "kind"],
    ["state", "state"],
    ["description", "description"],
  ],
};

/** The log insert for a change of `row` (NEW for a put, OLD for a delete). */
function logChange(space: SpaceColumns, type: "put" | "delete", row: "NEW" | "OLD"): string {
  const key = `${row}.${space.key}`;
  const logColumns = space.columns.map(([log]) => `${log}, `).join("");
  // A delete logs no value: the key's last put row holds it, and a tombstone needs no room for a copy.
  const values = space.columns.map(([, column]) => type === "put" ? `${row}.${column}, ` : "NULL, ").join("");
  const version = type === "put" ? `coalesce(${newest(space.space, key, "version + 1")}, 1)` : "0";
  const updatedAt = space.space === "meta" ? "NULL" : `${row}.updated_at`;
  return `INSERT INTO oxide_changes
      (revision, space, key, type, version, create_revision, ${logColumns}updated_at, changed_at)
    VALUES (${NEXT_REVISION}, '${space.space}', ${key}, '${type}', ${version},
      coalesce(${newest(space.space, key, "create_revision")}, ${NEXT_REVISION}),
      ${values}${updatedAt}, ${NOW});`;
}

function triggers(space: SpaceColumns): string[] {
  const { table, key } = space;
  return [
    `CREATE TRIGGER ${table.replace(/^(oxide_)?/, "oxide_")}_insert AFTER INSERT ON ${table} ${when("NEW", key, table)}
BEGIN
  ${logChange(space, "put", "NEW")}
END`,
    // A changed key ends the old key's life first (its own trigger, so it is logged before the put).
    `CREATE TRIGGER ${table.replace(/^(oxide_)?/, "oxide_")}_rekey AFTER UPDATE OF ${key} ON ${table}
    ${when("OLD", key, table)} AND OLD.${key} IS NOT NEW.${key}
BEGIN
  ${logChange(space, "delete", "OLD")}
END`,
    `CREATE TRIGGER ${table.replace(/^(oxide_)?/, "oxide_")}_update AFTER UPDATE ON ${table} ${when("NEW", key, table)}
BEGIN
  ${logChange(space, "put", "NEW")}
END`,
    `CREATE TRIGGER ${table.replace(/^(oxide_)?/, "oxide_")}_delete AFTER DELETE ON ${table} ${when("OLD", key, table)}
BEGIN
  ${logChange(space, "delete", "OLD")}
END`,
  ];
}

/** The index of the change log, by name (a check can recreate a lost one): as registry migration 4 makes it. */
export const REVISION_INDEXES_SQL: Readonly<Record<string, string>> = {
  oxide_changes_key:
    "CREATE INDEX oxide_changes_key ON oxide_changes (key, space, seq, type, version, create_revision)",
};

/** The index as registry migration 2 created it (a migration's text never changes; migration 4 replaces it). */
const FIRST_INDEX_SQL = "CREATE INDEX oxide_changes_key ON oxide_changes (space, key)";

/**
 * Registry migration 4: the change log's index rebuilt to cover what the triggers read (see the module doc). The
 * same name, so the open check and the queries are unchanged; `IF EXISTS`, as a dropped index is recreated here too.
 */
export const INDEX_MIGRATION_SQL: string = `DROP INDEX IF EXISTS oxide_changes_key;
${REVISION_INDEXES_SQL.oxide_changes_key}`;

/** The tables of the revision schema. */
export const REVISION_TABLES_SQL: readonly string[] = [
  `CREATE TABLE oxide_changes (
    seq             INTEGER PRIMARY KEY,
    revision        INTEGER NOT NULL,
    space           TEXT NOT NULL,
    key             TEXT NOT NULL,
    type            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value,
    name,
    module_version,
    kind,
    state,
    description,
    updated_at,
    changed_at      INTEGER NOT NULL
)`,
  FIRST_INDEX_SQL,
  `CREATE TABLE oxide_batch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    rewrite  INTEGER NOT NULL DEFAULT 0
)`,
  `CREATE TABLE oxide_revision (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    compacted INTEGER NOT NULL DEFAULT 0
)`,
  "INSERT INTO oxide_revision (id, compacted) VALUES (1, 0)",
];

/** The triggers, by name (a check can recreate a lost one). */
export const REVISION_TRIGGERS_SQL: Readonly<Record<string, string>> = Object.fromEntries(
  [...triggers(CONFIG_SPACE), ...triggers(MODULES_SPACE)].map((sql) => [/TRIGGER (\w+)/.exec(sql)![1]!, sql]),
);

/** Logs the rows that exist when the migration runs as created at revision 1 (one transaction: one revision). */
export const REVISION_BACKFILL_SQL: readonly string[] = [
  `INSERT INTO oxide_changes (revision, space, key, type, version, create_revision, value, updated_at, changed_at)
    SELECT 1, 'config', key, 'put', 1, 1, value, updated_at, ${NOW} FROM config WHERE key IS NOT NULL ORDER BY key`,
  `INSERT INTO oxide_changes (revision, space, key, type, version, create_revision,
      name, module_version, kind, state, description, updated_at, changed_at)
    SELECT 1, 'modules', id, 'put', 1, 1, name, version, kind, state, description, updated_at, ${NOW}
    FROM modules WHERE id IS NOT NULL ORDER BY id`,
];

/**
 * The meta space (registry migration 3): the registry's own records (`Space` `"meta"` of the store), one row per key.
 * Only this library writes it. Its triggers log each change in `oxide_changes` with `space = 'meta'`, so a meta write
 * takes a revision like any other and a key has a version to compare, but without the value (`value` is NULL in its
 * log rows: no copy of an old record stays in the log) and even inside a rewrite in place (a re-sealing's change of
 * the sealing parameters is a real change). The meta key `"sealing"` is not stored here: on SQLite it is the
 * `oxide_sealing` table (see the sealing layer).
 */
const META_SPACE: SpaceColumns = { table: "oxide_meta", space: "meta", key: "key", columns: [] };

/** Registry migration 3: the meta space's table and its triggers. */
export const META_MIGRATION_SQL: string = [
  `CREATE TABLE oxide_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
)`,
  ...triggers(META_SPACE),
].join(";\n");

/** The meta space's triggers, by name. */
export const META_TRIGGERS_SQL: Readonly<Record<string, string>> = Object.fromEntries(
  triggers(META_SPACE).map((sql) => [/TRIGGER (\w+)/.exec(sql)![1]!, sql]),
);

/** Registry migration 2: the revision schema. */
export const REVISION_MIGRATION_SQL: string = [
  ...REVISION_TABLES_SQL,
  ...Object.values(REVISION_TRIGGERS_SQL),
  ...REVISION_BACKFILL_SQL,
].join(";\n");

/** The store's current revision: the newest logged, else the compacted one, else 0. */
export const CURRENT_REVISION_SQL: string = `SELECT coalesce(
      (SELECT revision FROM oxide_changes ORDER BY seq DESC LIMIT 1),
      (SELECT compacted FROM oxide_revision WHERE id = 1),
      0) AS revision`;

/** Opens a batch inside `BEGIN IMMEDIATE`: every change until {@linkcode BATCH_END_SQL} gets one revision. */
export const BATCH_BEGIN_SQL: string = `INSERT INTO oxide_batch (id, revision, rewrite)
    VALUES (1, (${CURRENT_REVISION_SQL}) + 1, 0)`;

/** Opens a rewrite in place (re-sealing): changes until {@linkcode BATCH_END_SQL} are not logged. */
export const REWRITE_BEGIN_SQL: string = `INSERT INTO oxide_batch (id, revision, rewrite)
    VALUES (1, (${CURRENT_REVISION_SQL}) + 1, 1)`;

/** Closes the batch, before `COMMIT`. */
export const BATCH_END_SQL = "DELETE FROM oxide_batch";

/** The newest log row of each key of `space`, as a filter on a log alias `log`. */
function isNewest(space: string, log: string): string {
  return `${log}.seq = (SELECT max(seq) FROM oxide_changes WHERE space = '${space}' AND key = ${log}.key)`;
}

/** The log rows that bring `space`'s log back in line with its table, inside an open batch (one revision). */
function resync(space: SpaceColumns): string[] {
  const { table, key } = space;
  const name = space.space;
  const logColumns = space.columns.map(([log]) => `${log}, `).join("");
  const values = space.columns.map(([, column]) => `t.${column}, `).join("");
  // The meta space logs no value and no updated_at: there, only a key's presence can be compared.
  const meta = name === "meta";
  const differs = [
    ...space.columns.map(([log, column]) => `l.${log} IS NOT t.${column}`),
    ...(meta ? [] : ["l.updated_at IS NOT t.updated_at"]),
  ].map((test) => ` OR ${test}`).join("");
  return [
    // A key the log shows alive but the table no longer has: deleted while the delete trigger was missing.
    `INSERT INTO oxide_changes (revision, space, key, type, version, create_revision, updated_at, changed_at)
    SELECT b.revision, '${name}', l.key, 'delete', 0, l.create_revision, l.updated_at, ${NOW}
    FROM oxide_changes l CROSS JOIN oxide_batch b
    WHERE l.space = '${name}' AND l.type = 'put' AND ${isNewest(name, "l")}
      AND NOT EXISTS (SELECT 1 FROM ${table} WHERE ${key} = l.key)`,
    // A row the log does not show as it is: written while the insert or update trigger was missing.
    `INSERT INTO oxide_changes
      (revision, space, key, type, version, create_revision, ${logColumns}updated_at, changed_at)
    SELECT b.revision, '${name}', t.${key}, 'put',
      coalesce(CASE l.type WHEN 'put' THEN l.version + 1 END, 1),
      coalesce(CASE l.type WHEN 'put' THEN l.create_revision END, b.revision),
      ${values}${meta ? "NULL" : "t.updated_at"}, ${NOW}
    FROM ${table} t CROSS JOIN oxide_batch b
    LEFT JOIN oxide_changes l ON l.space = '${name}' AND l.key = t.${key} AND ${isNewest(name, "l")}
    WHERE t.${key} IS NOT NULL AND (l.seq IS NULL OR l.type <> 'put'${differs})`,
  ];
}

/**
 * Logs, inside an open batch, every change the triggers missed while one was
 * missing: a put for each row the log does not show as it is (its version
 * moves on), a delete for each key the log shows alive that the table lacks.
 * A log in line with its tables gets nothing.
 */
export const REVISION_RESYNC_SQL: readonly string[] = [...resync(CONFIG_SPACE), ...resync(MODULES_SPACE)];

/** {@linkcode REVISION_RESYNC_SQL} for the meta space (registry migration 3): presence only, as its log has no values. */
export const META_RESYNC_SQL: readonly string[] = resync(META_SPACE);
