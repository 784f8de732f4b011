/**
 * Generic conditional CRUD over a table of JSON documents with key and indexed columns: the shape
 * of the admin tables (schemas, partners, subscriptions), which change rarely and carry a revision.
 */

import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { ConflictError, NotFoundError } from '../../common/errors.ts';
import type { Page, PageRequest } from '../../common/ports/store.ts';
import { invalidCursor, pageLimit } from '../../common/ports/store.ts';
import { decodeCursor, encodeCursor } from './database.ts';
import { StatementCache } from './paging.ts';

/** How one record type maps onto its table. */
export interface TableSpec<T extends { revision: number }> {
  table: string;
  /** Key columns in sort order, and how to read them from a record. */
  key: Array<[column: string, read: (r: T) => string | number]>;
  /** Other indexed columns kept in step with the document. */
  columns: Array<[column: string, read: (r: T) => SQLInputValue]>;
}

/** Generic conditional CRUD over one table of JSON documents. */
export class DocumentTable<T extends { revision: number }> {
  /** Statements prepared once per distinct SQL text (the admin tables' SQL is fixed per call shape). */
  readonly #sql: StatementCache;
  readonly #spec: TableSpec<T>;

  constructor(db: DatabaseSync, spec: TableSpec<T>) {
    this.#sql = new StatementCache(db);
    this.#spec = spec;
  }

  insert(record: T): void {
    const cols = [...this.#spec.key, ...this.#spec.columns];
    const names = [...cols.map(([c]) => c), 'revision', 'doc'];
    const sql = `INSERT INTO ${this.#spec.table} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})
                 ON CONFLICT DO NOTHING`;
    const stored = { ...record, revision: 1 };
    const result = this.#sql.get(sql).run(...cols.map(([, read]) => read(stored)), 1, JSON.stringify(stored));
    if (result.changes === 0) {
      throw new ConflictError(
        'already_exists',
        `${this.#spec.table} ${this.#describe(record)} already exists`,
      );
    }
  }

  get(key: SQLInputValue[]): T | undefined {
    const where = this.#spec.key.map(([c]) => `${c} = ?`).join(' AND ');
    const row = this.#sql.get(`SELECT doc FROM ${this.#spec.table} WHERE ${where}`).get(...key) as
      | { doc: string }
      | undefined;
    return row ? (JSON.parse(row.doc) as T) : undefined;
  }

  update(record: T): T {
    const key = this.#spec.key.map(([, read]) => read(record));
    const stored = { ...record, revision: record.revision + 1 };
    const sets = [...this.#spec.columns.map(([c]) => `${c} = ?`), 'revision = ?', 'doc = ?'].join(', ');
    const where = this.#spec.key.map(([c]) => `${c} = ?`).join(' AND ');
    const result = this.#sql
      .get(`UPDATE ${this.#spec.table} SET ${sets} WHERE ${where} AND revision = ?`)
      .run(
        ...this.#spec.columns.map(([, read]) => read(stored)),
        stored.revision,
        JSON.stringify(stored),
        ...key,
        record.revision,
      );
    if (result.changes === 0) {
      if (!this.get(key))
        throw new NotFoundError('not_found', `${this.#spec.table} ${this.#describe(record)} not found`);
      throw new ConflictError(
        'revision_conflict',
        `${this.#spec.table} ${this.#describe(record)} was changed by someone else; read it again and retry`,
      );
    }
    return stored;
  }

  delete(key: SQLInputValue[]): boolean {
    const where = this.#spec.key.map(([c]) => `${c} = ?`).join(' AND ');
    return this.#sql.get(`DELETE FROM ${this.#spec.table} WHERE ${where}`).run(...key).changes > 0;
  }

  /** Rows matching equality conditions, in key order, one page at a time. */
  list(conditions: Record<string, SQLInputValue | undefined>, page: PageRequest = {}): Page<T> {
    const limit = pageLimit(page.limit);
    const clauses: string[] = [];
    const params: SQLInputValue[] = [];
    for (const [column, value] of Object.entries(conditions)) {
      if (value === undefined) continue;
      clauses.push(`${column} = ?`);
      params.push(value);
    }
    const keyColumns = this.#spec.key.map(([c]) => c);
    if (page.cursor !== undefined) {
      const after = decodeCursor(page.cursor, this.#spec.table);
      if (!after || after.length !== keyColumns.length) throw invalidCursor();
      clauses.push(`(${keyColumns.join(', ')}) > (${keyColumns.map(() => '?').join(', ')})`);
      params.push(...after);
    }
    const where = clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
    const rows = this.#sql
      .get(`SELECT doc FROM ${this.#spec.table} ${where} ORDER BY ${keyColumns.join(', ')} LIMIT ?`)
      .all(...params, limit + 1) as Array<{ doc: string }>;
    const items = rows.slice(0, limit).map((r) => JSON.parse(r.doc) as T);
    const last = items.at(-1);
    return rows.length > limit && last
      ? {
          items,
          next: encodeCursor(
            this.#spec.table,
            this.#spec.key.map(([, read]) => read(last)),
          ),
        }
      : { items };
  }

  #describe(record: T): string {
    return this.#spec.key.map(([, read]) => String(read(record))).join('/');
  }
}
