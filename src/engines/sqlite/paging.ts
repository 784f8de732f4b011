/**
 * Listing helpers shared by the SQLite repositories: page limits, cursors, and time-ordered pages
 * of JSON documents whose statements are compiled once per filter shape.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { invalidCursor, MAX_PAGE_BYTES, type Page, pageLimit } from '../../common/ports/store.ts';
import { decodeCursor, encodeCursor } from './database.ts';

/** Prepared statements by SQL text, so each filter combination of a listing is compiled once. */
export class StatementCache {
  readonly #db: DatabaseSync;
  readonly #bySql = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  get(sql: string): StatementSync {
    let statement = this.#bySql.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#bySql.set(sql, statement);
    }
    return statement;
  }
}

/**
 * One condition of a listing (callers pass only the filters that are set); `value` binds its `?`.
 * A `residual` one is not served by the listing's index: rows are read in the index's order and
 * checked against it (see `listByTime`).
 */
export interface Condition {
  clause: string;
  value?: SQLInputValue;
  residual?: boolean;
}

/**
 * Rows a page of a listing with residual conditions examines at most: a filter that matches few of
 * an index's rows (`?status=FAILED` over a million deliveries) would otherwise read them all on the
 * thread that answers requests (200,000 rows: 75-100 ms). Past it, the page ends — with fewer items
 * than its limit, even none — and `next` goes on from the last row examined.
 */
export const MAX_ROWS_EXAMINED = 10_000;

/** Which table, and in which direction of (created_at, id) to list it. */
export interface TimeListing {
  table: string;
  order: 'asc' | 'desc';
  /** Columns read besides `doc`, for `read` (comma-separated). */
  columns?: string;
  /** Makes the item of a row (default: its `doc` parsed). */
  read?: (row: { doc: string; [column: string]: unknown }) => unknown;
  /** The index to read it through (`INDEXED BY`): the one whose leading columns the conditions fix. */
  index?: string;
}

/**
 * Rows of `doc` JSON ordered by (created_at, id), one page at a time. Ties on created_at are broken
 * by id, and the cursor holds both, so paging is stable even when many rows share a timestamp. A
 * page ends early after MAX_PAGE_BYTES of documents (see `Page`), and, with residual conditions,
 * after MAX_ROWS_EXAMINED rows.
 */
export function listByTime<T extends { createdAt: string; id: string }>(
  statements: StatementCache,
  listing: TimeListing,
  conditions: Condition[],
  page: { limit?: number; cursor?: string },
): Page<T> {
  const limit = pageLimit(page.limit);
  const clauses: string[] = [];
  const params: SQLInputValue[] = [];
  for (const condition of conditions) {
    if (condition.residual) continue;
    clauses.push(condition.clause);
    if (condition.value !== undefined) params.push(condition.value);
  }
  if (page.cursor !== undefined) {
    const after = decodeCursor(page.cursor, listing.table);
    if (after?.length !== 2 || typeof after[0] !== 'string' || typeof after[1] !== 'string') {
      throw invalidCursor();
    }
    clauses.push(`(created_at, id) ${listing.order === 'desc' ? '<' : '>'} (?, ?)`);
    params.push(after[0], after[1]);
  }
  const direction = listing.order === 'desc' ? 'DESC' : 'ASC';
  const columns = listing.columns ? `doc, ${listing.columns}` : 'doc';
  const from = listing.index ? `${listing.table} INDEXED BY ${listing.index}` : listing.table;
  const read = listing.read ?? ((row: { doc: string }) => JSON.parse(row.doc));
  const residual = conditions.filter((c) => c.residual);
  if (residual.length > 0) {
    return listExamining<T>(statements, listing, { from, clauses, params, residual, direction }, limit, read);
  }
  const where = clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
  const sql = `SELECT ${columns} FROM ${from} ${where} ORDER BY created_at ${direction}, id ${direction} LIMIT ?`;
  // Read row by row: a page ends at the limit or after the row that passes MAX_PAGE_BYTES, and the
  // rows after it are never read (1,000 rows of 1 MiB would be a gigabyte in memory at once).
  const items: T[] = [];
  let bytes = 0;
  let more = false;
  for (const row of statements.get(sql).iterate(...params, limit + 1) as Iterable<{ doc: string }>) {
    if (items.length === limit || bytes >= MAX_PAGE_BYTES) {
      more = true;
      break;
    }
    bytes += row.doc.length;
    items.push(read(row) as T);
  }
  const last = items.at(-1);
  return more && last ? { items, next: encodeCursor(listing.table, [last.createdAt, last.id]) } : { items };
}

/**
 * A page through the index, its residual conditions checked row by row in SQL (`hit`; a row's
 * document is read only when it hits): it ends at the limit, after MAX_PAGE_BYTES, or once
 * MAX_ROWS_EXAMINED rows were examined — then `next` points past the last of them.
 */
function listExamining<T extends { createdAt: string; id: string }>(
  statements: StatementCache,
  listing: TimeListing,
  query: {
    from: string;
    clauses: string[];
    params: SQLInputValue[];
    residual: Condition[];
    direction: string;
  },
  limit: number,
  read: (row: { doc: string; [column: string]: unknown }) => unknown,
): Page<T> {
  const hit = query.residual.map((c) => `(${c.clause})`).join(' AND ');
  const hitParams = query.residual.flatMap((c) => (c.value === undefined ? [] : [c.value]));
  const extra = listing.columns ? `, ${listing.columns}` : '';
  const where = query.clauses.length > 0 ? `WHERE ${query.clauses.join(' AND ')}` : '';
  const sql =
    `SELECT ${hit} AS hit, created_at, id, CASE WHEN ${hit} THEN doc END AS doc${extra} FROM ${query.from} ${where} ` +
    `ORDER BY created_at ${query.direction}, id ${query.direction} LIMIT ?`;
  type Row = { hit: number; created_at: string; id: string; doc: string };
  const rows = statements
    .get(sql)
    .iterate(...hitParams, ...hitParams, ...query.params, MAX_ROWS_EXAMINED) as Iterable<Row>;
  const items: T[] = [];
  let bytes = 0;
  let examined = 0;
  let lastExamined: Row | undefined;
  for (const row of rows) {
    if (row.hit) {
      if (items.length === limit || bytes >= MAX_PAGE_BYTES) {
        const last = items.at(-1)!;
        return { items, next: encodeCursor(listing.table, [last.createdAt, last.id]) };
      }
      bytes += row.doc.length;
      items.push(read(row) as T);
    }
    examined += 1;
    lastExamined = row;
  }
  // Every row up to the last examined was looked at: the next page begins after it.
  return examined === MAX_ROWS_EXAMINED && lastExamined
    ? { items, next: encodeCursor(listing.table, [lastExamined.created_at, lastExamined.id]) }
    : { items };
}
