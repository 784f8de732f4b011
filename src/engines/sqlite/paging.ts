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

/** One condition of a listing (callers pass only the filters that are set); `value` binds its `?`. */
export interface Condition {
  clause: string;
  value?: SQLInputValue;
}

/** Which table, and in which direction of (created_at, id) to list it. */
export interface TimeListing {
  table: string;
  order: 'asc' | 'desc';
  /** Columns read besides `doc`, for `read` (comma-separated). */
  columns?: string;
  /** Makes the item of a row (default: its `doc` parsed). */
  read?: (row: { doc: string; [column: string]: unknown }) => unknown;
}

/**
 * Rows of `doc` JSON ordered by (created_at, id), one page at a time. Ties on created_at are broken
 * by id, and the cursor holds both, so paging is stable even when many rows share a timestamp. A
 * page ends early after MAX_PAGE_BYTES of documents (see `Page`).
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
  const where = clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
  const direction = listing.order === 'desc' ? 'DESC' : 'ASC';
  const columns = listing.columns ? `doc, ${listing.columns}` : 'doc';
  const sql = `SELECT ${columns} FROM ${listing.table} ${where} ORDER BY created_at ${direction}, id ${direction} LIMIT ?`;
  const read = listing.read ?? ((row: { doc: string }) => JSON.parse(row.doc));
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
