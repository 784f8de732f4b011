/**
 * The SQLite store engine: the plan's tables with key columns for lookups and the whole record as
 * a JSON document. Conditional writes (insert-if-absent, update-if-revision) make it behave like the
 * DynamoDB engine, so both pass the same conformance suite.
 */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { ConflictError, NotFoundError, ValidationError } from '../../common/errors.ts';
import type { PartnerRecord, SchemaRecord, SubscriptionRecord } from '../../common/model.ts';
import {
  DEFAULT_PAGE_LIMIT,
  MAX_PAGE_LIMIT,
  type Page,
  type PageRequest,
  type PartnerRepository,
  type SchemaRepository,
  type Store,
  type SubscriptionRepository,
} from '../../common/ports/store.ts';
import { decodeCursor, encodeCursor, openDatabase } from './database.ts';

const MIGRATIONS = [
  `CREATE TABLE event_schema (
     domain TEXT NOT NULL, event TEXT NOT NULL, version INTEGER NOT NULL,
     id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, revision INTEGER NOT NULL, doc TEXT NOT NULL,
     PRIMARY KEY (domain, event, version)) WITHOUT ROWID;
   CREATE TABLE partner (
     id TEXT PRIMARY KEY, status TEXT NOT NULL, revision INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE partner_event_subscription (
     id TEXT PRIMARY KEY, partner_id TEXT NOT NULL, domain TEXT NOT NULL, event TEXT NOT NULL,
     status TEXT NOT NULL, revision INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX subscription_by_event ON partner_event_subscription (domain, event, id);
   CREATE INDEX subscription_by_partner ON partner_event_subscription (partner_id, id);`,
];

/** How one record type maps onto its table. */
interface TableSpec<T extends { revision: number }> {
  table: string;
  /** Key columns in sort order, and how to read them from a record. */
  key: Array<[column: string, read: (r: T) => SQLInputValue]>;
  /** Other indexed columns kept in step with the document. */
  columns: Array<[column: string, read: (r: T) => SQLInputValue]>;
}

/** Generic conditional CRUD over one table of JSON documents. */
class DocumentTable<T extends { revision: number }> {
  readonly #db: DatabaseSync;
  readonly #spec: TableSpec<T>;

  constructor(db: DatabaseSync, spec: TableSpec<T>) {
    this.#db = db;
    this.#spec = spec;
  }

  insert(record: T): void {
    const cols = [...this.#spec.key, ...this.#spec.columns];
    const names = [...cols.map(([c]) => c), 'revision', 'doc'];
    const sql = `INSERT INTO ${this.#spec.table} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})
                 ON CONFLICT DO NOTHING`;
    const stored = { ...record, revision: 1 };
    const result = this.#db
      .prepare(sql)
      .run(...cols.map(([, read]) => read(stored)), 1, JSON.stringify(stored));
    if (result.changes === 0) {
      throw new ConflictError(
        'already_exists',
        `${this.#spec.table} ${this.#describe(record)} already exists`,
      );
    }
  }

  get(key: SQLInputValue[]): T | undefined {
    const where = this.#spec.key.map(([c]) => `${c} = ?`).join(' AND ');
    const row = this.#db.prepare(`SELECT doc FROM ${this.#spec.table} WHERE ${where}`).get(...key) as
      | { doc: string }
      | undefined;
    return row ? (JSON.parse(row.doc) as T) : undefined;
  }

  update(record: T): T {
    const key = this.#spec.key.map(([, read]) => read(record));
    const stored = { ...record, revision: record.revision + 1 };
    const sets = [...this.#spec.columns.map(([c]) => `${c} = ?`), 'revision = ?', 'doc = ?'].join(', ');
    const where = this.#spec.key.map(([c]) => `${c} = ?`).join(' AND ');
    const result = this.#db
      .prepare(`UPDATE ${this.#spec.table} SET ${sets} WHERE ${where} AND revision = ?`)
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
    return this.#db.prepare(`DELETE FROM ${this.#spec.table} WHERE ${where}`).run(...key).changes > 0;
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
      const after = decodeCursor(page.cursor);
      if (!after || after.length !== keyColumns.length) {
        throw new ValidationError('cursor_invalid', 'the page cursor is not valid', {
          details: [{ field: 'cursor', message: 'not a cursor returned by this listing' }],
        });
      }
      clauses.push(`(${keyColumns.join(', ')}) > (${keyColumns.map(() => '?').join(', ')})`);
      params.push(...(after as SQLInputValue[]));
    }
    const where = clauses.length > 0 ? `WHERE ${clauses.join(' AND ')}` : '';
    const rows = this.#db
      .prepare(`SELECT doc FROM ${this.#spec.table} ${where} ORDER BY ${keyColumns.join(', ')} LIMIT ?`)
      .all(...params, limit + 1) as Array<{ doc: string }>;
    const items = rows.slice(0, limit).map((r) => JSON.parse(r.doc) as T);
    const last = items.at(-1);
    return rows.length > limit && last
      ? { items, next: encodeCursor(this.#spec.key.map(([, read]) => read(last))) }
      : { items };
  }

  #describe(record: T): string {
    return this.#spec.key.map(([, read]) => String(read(record))).join('/');
  }
}

function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_LIMIT;
  return Math.max(1, Math.min(MAX_PAGE_LIMIT, Math.floor(limit)));
}

/** The SQLite implementation of the store port. */
export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  readonly schemas: SchemaRepository;
  readonly partners: PartnerRepository;
  readonly subscriptions: SubscriptionRepository;
  readonly #db: DatabaseSync;

  /** Opens the store at `path` (a file, or ':memory:'). */
  constructor(path: string) {
    this.#db = openDatabase(path, MIGRATIONS);
    const schemas = new DocumentTable<SchemaRecord>(this.#db, {
      table: 'event_schema',
      key: [
        ['domain', (r) => r.domain],
        ['event', (r) => r.event],
        ['version', (r) => r.version],
      ],
      columns: [
        ['id', (r) => r.id],
        ['status', (r) => r.status],
      ],
    });
    const partners = new DocumentTable<PartnerRecord>(this.#db, {
      table: 'partner',
      key: [['id', (r) => r.id]],
      columns: [['status', (r) => r.status]],
    });
    const subscriptions = new DocumentTable<SubscriptionRecord>(this.#db, {
      table: 'partner_event_subscription',
      key: [['id', (r) => r.id]],
      columns: [
        ['partner_id', (r) => r.partnerId],
        ['domain', (r) => r.domain],
        ['event', (r) => r.event],
        ['status', (r) => r.status],
      ],
    });
    this.schemas = {
      insert: async (r) => schemas.insert(r),
      get: async (domain, event, version) => schemas.get([domain, event, version]),
      listVersions: async (domain, event) => schemas.list({ domain, event }, { limit: MAX_PAGE_LIMIT }).items,
      list: async (f, page) => schemas.list({ domain: f.domain, event: f.event, status: f.status }, page),
      update: async (r) => schemas.update(r),
    };
    this.partners = {
      insert: async (r) => partners.insert(r),
      get: async (id) => partners.get([id]),
      list: async (page) => partners.list({}, page),
      update: async (r) => partners.update(r),
    };
    this.subscriptions = {
      insert: async (r) => subscriptions.insert(r),
      get: async (id) => subscriptions.get([id]),
      list: async (f, page) =>
        subscriptions.list(
          { partner_id: f.partnerId, domain: f.domain, event: f.event, status: f.status },
          page,
        ),
      update: async (r) => subscriptions.update(r),
      delete: async (id) => subscriptions.delete([id]),
    };
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}
