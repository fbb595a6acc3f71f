/**
 * The decision log on a store without SQL (etcd, fleet mode): its rows as
 * keys of the registry's `meta` space, one key per index, so every query
 * that SQLite answers from an index is a key range here.
 *
 * - `xai/t/<utc>/<id>`: by time (`recent`, `query` with a time range)
 * - `xai/a/<actor length>/<actor>/<utc>/<id>`: by actor (`byActor`, `query({ actor })`)
 * - `xai/c/<action length>/<action>/<utc>/<id>`: by action (`query({ action })`)
 * - `xai/i/<id>`: the id, so a decision is logged once (`count`)
 *
 * `<utc>` is the fixed-width UTC key SQLite keeps in `timestamp_utc`, so key
 * order is time order. Decisions with the same timestamp order by id here
 * (SQLite: by insertion). A query by actor and action reads the actor's
 * range and filters on action.
 *
 * @module
 */

import type { Row } from "../sqlite/engine.ts";
import type { Store } from "../store/store.ts";

/** One decision as stored: the columns of oxide-k's `xai_decisions` plus the UTC key. */
export interface StoredDecision {
  readonly id: string;
  readonly timestamp: string;
  readonly actor: string;
  readonly action: string;
  readonly rationale: string;
  readonly inputs: string;
  readonly output: string;
  readonly confidence: number;
  readonly timestamp_utc: string;
}

/** The filters of a query, already checked and keyed. */
export interface StoreQuery {
  readonly actor?: string | undefined;
  readonly action?: string | undefined;
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  /** The `<utc>/<id>` after which the previous page ended. */
  readonly after?: string | undefined;
  readonly limit: number;
}

const PAGE = 500;

function indexed(kind: "a" | "c", text: string): string {
  return `xai/${kind}/${new TextEncoder().encode(text).length}/${text}/`;
}

/** The decision log's rows in a store's `meta` space. */
export class StoreDecisions {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Logs a row; `false` when its id is already logged (nothing written). */
  async insert(row: StoredDecision, updatedAt: string): Promise<boolean> {
    const text = JSON.stringify(row);
    const suffix = `${row.timestamp_utc}/${row.id}`;
    const result = await this.#store.txn({
      compares: [{ space: "meta", key: `xai/i/${row.id}`, target: "version", equals: 0 }],
      success: [
        { op: "put", space: "meta", key: `xai/i/${row.id}`, value: row.timestamp_utc },
        { op: "put", space: "meta", key: `xai/t/${suffix}`, value: text },
        { op: "put", space: "meta", key: `${indexed("a", row.actor)}${suffix}`, value: text },
        { op: "put", space: "meta", key: `${indexed("c", row.action)}${suffix}`, value: text },
      ],
      updatedAt,
    });
    return result.succeeded;
  }

  /** The newest rows, at most `limit`. */
  async recent(limit: number): Promise<Row[]> {
    if (limit === 0) return [];
    return (await this.query({ limit })).rows;
  }

  /** Every row of an actor, newest first. */
  async byActor(actor: string): Promise<Row[]> {
    return (await this.query({ actor, limit: Infinity })).rows;
  }

  /** How many decisions are logged (reads the id keys: a count is a scan on etcd). */
  async count(): Promise<number> {
    let n = 0;
    let after: string | undefined;
    let revision: number | undefined;
    while (true) {
      const page = await this.#store.range({ space: "meta", prefix: "xai/i/", after, limit: 1000, revision });
      revision = page.revision;
      n += page.entries.length;
      if (!page.more || page.entries.length === 0) return n;
      after = page.entries.at(-1)!.key;
    }
  }

  /** Rows newest first, one page of at most `limit`, and where the next page starts. */
  async query(q: StoreQuery): Promise<{ rows: Row[]; next: string | undefined }> {
    const prefix = q.actor !== undefined
      ? indexed("a", q.actor)
      : q.action !== undefined
      ? indexed("c", q.action)
      : "xai/t/";
    const filterAction = q.actor !== undefined && q.action !== undefined;
    // Reverse key order: keys strictly before `after`; `until` is exclusive, so its key alone bounds it.
    let after = q.after !== undefined ? prefix + q.after : q.until !== undefined ? prefix + q.until : undefined;
    let revision: number | undefined;
    const rows: Row[] = [];
    const suffixes: string[] = [];
    while (rows.length <= q.limit) {
      const page = await this.#store.range({
        space: "meta",
        prefix,
        after,
        reverse: true,
        limit: Number.isFinite(q.limit) ? Math.min(PAGE, q.limit + 1) : PAGE,
        revision,
      });
      revision = page.revision;
      for (const entry of page.entries) {
        const suffix = entry.key.slice(prefix.length);
        if (q.since !== undefined && suffix < q.since) return { rows, next: undefined };
        const row = JSON.parse(entry.value) as Row;
        if (filterAction && row.action !== q.action) continue;
        if (rows.length === q.limit) return { rows, next: suffixes.at(-1) };
        rows.push(row);
        suffixes.push(suffix);
      }
      if (!page.more || page.entries.length === 0) break;
      after = page.entries.at(-1)!.key;
    }
    return { rows, next: undefined };
  }
}
