// SQL of the decision log, kept apart so tests can EXPLAIN QUERY PLAN the exact statements. Private: mod.ts never
// re-exports it.

/** oxide-k's table, verbatim (its `DecisionLog::open`). */
export const TABLE_SQL = `CREATE TABLE IF NOT EXISTS xai_decisions (
                id          TEXT PRIMARY KEY,
                timestamp   TEXT NOT NULL,
                actor       TEXT NOT NULL,
                action      TEXT NOT NULL,
                rationale   TEXT NOT NULL,
                inputs      TEXT NOT NULL,
                output      TEXT NOT NULL,
                confidence  REAL NOT NULL
            )`;

/** oxide-k's index, verbatim. */
export const INDEX_SQL = "CREATE INDEX IF NOT EXISTS idx_xai_actor_time ON xai_decisions(actor, timestamp DESC)";

/**
 * SQL computing `timestamp_utc` from an RFC 3339 text `x`: the UTC instant as
 * `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (fixed width, so text order is time
 * order), or `''` when `x` is not a timestamp SQLite can read. The fraction is
 * cut off before `strftime` (which would round it to milliseconds and could
 * carry into the next second) and re-attached padded to nine digits; offsets
 * are whole minutes, so they never touch it. A leap second (`23:59:60.5`,
 * which chrono writes and `strftime` refuses) is converted as second 59 and
 * keyed as second 60, so it sorts after `:59.999999999` and before the next
 * minute. Only functions every SQLite has, because the triggers also run
 * inside a Rust oxide-k's inserts.
 */
export function utcKeySql(x: string): string {
  const tz = `CASE WHEN upper(substr(${x}, -1)) = 'Z' THEN 'Z' ELSE substr(${x}, -6) END`;
  const fraction =
    `CASE WHEN substr(${x}, 20, 1) = '.' THEN substr(${x}, 21, length(${x}) - 20 - length(${tz})) ELSE '' END`;
  const leap = `substr(${x}, 18, 2) = '60'`;
  const second = `CASE WHEN ${leap} THEN '59' ELSE substr(${x}, 18, 2) END`;
  const seconds =
    `strftime('%Y-%m-%dT%H:%M:%S', substr(${x}, 1, 10) || 'T' || substr(${x}, 12, 6) || ${second} || ${tz})`;
  const keyed = `CASE WHEN ${leap} THEN substr(${seconds}, 1, 17) || '60' ELSE ${seconds} END`;
  return `coalesce(${keyed} || '.' || substr(${fraction} || '000000000', 1, 9) || 'Z', '')`;
}

/** Migration 1 of extension `xai`: oxide-k's table and index, accepted as they are when oxide-k made them. */
export const MIGRATION_1_SQL = `${TABLE_SQL}; ${INDEX_SQL}`;

/** The triggers that fill `timestamp_utc` for rows any program inserts or re-times (migration 2). */
export const UTC_TRIGGERS_SQL: Readonly<Record<string, string>> = {
  xai_decisions_utc_insert:
    `CREATE TRIGGER xai_decisions_utc_insert AFTER INSERT ON xai_decisions WHEN NEW.timestamp_utc IS NULL
BEGIN
  UPDATE xai_decisions SET timestamp_utc = ${utcKeySql("NEW.timestamp")} WHERE rowid = NEW.rowid;
END`,
  xai_decisions_utc_update: `CREATE TRIGGER xai_decisions_utc_update AFTER UPDATE OF timestamp ON xai_decisions
BEGIN
  UPDATE xai_decisions SET timestamp_utc = ${utcKeySql("NEW.timestamp")} WHERE rowid = NEW.rowid;
END`,
};

/** The indexes on `timestamp_utc` every read names (migration 2). */
export const UTC_INDEXES_SQL: Readonly<Record<string, string>> = {
  idx_xai_time_utc: "CREATE INDEX idx_xai_time_utc ON xai_decisions(timestamp_utc)",
  idx_xai_actor_time_utc: "CREATE INDEX idx_xai_actor_time_utc ON xai_decisions(actor, timestamp_utc)",
  idx_xai_action_time_utc: "CREATE INDEX idx_xai_action_time_utc ON xai_decisions(action, timestamp_utc)",
};

/** Fills `timestamp_utc` where it is missing (migration 2's backfill; also after a lost trigger is recreated). */
export const BACKFILL_SQL = `UPDATE xai_decisions SET timestamp_utc = ${utcKeySql("timestamp")}`;

/** Migration 2 of extension `xai`: the `timestamp_utc` sort key, the triggers that fill it, and its indexes. */
export const MIGRATION_2_SQL = [
  "ALTER TABLE xai_decisions ADD COLUMN timestamp_utc TEXT",
  BACKFILL_SQL,
  ...Object.values(UTC_TRIGGERS_SQL),
  ...Object.values(UTC_INDEXES_SQL),
].join(";\n");

/**
 * Migration 3 of extension `xai`: the triggers again, now keying leap seconds,
 * and the rows earlier triggers left with an empty key re-keyed (a row whose
 * timestamp is not RFC 3339 at all keeps `''`).
 */
export const MIGRATION_3_SQL = [
  ...Object.keys(UTC_TRIGGERS_SQL).map((name) => `DROP TRIGGER IF EXISTS ${name}`),
  ...Object.values(UTC_TRIGGERS_SQL),
  `${BACKFILL_SQL} WHERE timestamp_utc = ''`,
].join(";\n");

/** The indexes migration 2 creates; every read names the one it uses (`INDEXED BY`), see {@linkcode querySql}. */
export const TIME_INDEX = "idx_xai_time_utc";
export const ACTOR_INDEX = "idx_xai_actor_time_utc";
export const ACTION_INDEX = "idx_xai_action_time_utc";

const COLUMNS = "rowid AS row_id, id, timestamp, actor, action, rationale, inputs, output, confidence, timestamp_utc";
const ORDER = "ORDER BY timestamp_utc DESC, rowid DESC";

/** The fixed statements. */
export const DECISION_SQL = {
  insert:
    `INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence, timestamp_utc)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ${utcKeySql("?2")})`,
  recent: `SELECT ${COLUMNS} FROM xai_decisions INDEXED BY ${TIME_INDEX} ${ORDER} LIMIT ?1`,
  byActor: `SELECT ${COLUMNS} FROM xai_decisions INDEXED BY ${ACTOR_INDEX} WHERE actor = ?1 ${ORDER}`,
  count: "SELECT count(*) AS n FROM xai_decisions",
} as const;

/** Which filters a query has; each selects a fixed SQL text (32 at most, each prepared once). */
export interface QueryShape {
  actor: boolean;
  action: boolean;
  since: boolean;
  until: boolean;
  cursor: boolean;
}

/**
 * The SQL of a `query()` with these filters. Parameters, in order: actor,
 * action, since key, until key, cursor key twice and cursor rowid (each only
 * when present), then the limit.
 *
 * The index is named rather than left to the planner, which (not knowing the
 * bounds) may prefer the time index for an actor and a time range; but
 * `(actor, timestamp_utc)` reads exactly the actor's rows in the range, never
 * more. With both an actor and an action, the actor's index is used and the
 * action filtered.
 */
export function querySql(shape: QueryShape): string {
  const where: string[] = [];
  if (shape.actor) where.push("actor = ?");
  if (shape.action) where.push("action = ?");
  if (shape.since) where.push("timestamp_utc >= ?");
  if (shape.until) where.push("timestamp_utc < ?");
  // The first term bounds the index range; the second breaks ties within one instant.
  if (shape.cursor) where.push("timestamp_utc <= ? AND (timestamp_utc < ? OR rowid < ?)");
  const filter = where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "";
  const index = shape.actor ? ACTOR_INDEX : shape.action ? ACTION_INDEX : TIME_INDEX;
  return `SELECT ${COLUMNS} FROM xai_decisions INDEXED BY ${index}${filter} ${ORDER} LIMIT ?`;
}
