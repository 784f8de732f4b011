/** `api_key` and `audit_log` in SQLite: credentials found by their hash, and the admin changes. */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { ApiKeyRecord, AuditRecord } from '../../common/model.ts';
import type { AuditFilter, Page, PageRequest } from '../../common/ports/store.ts';
import { invalidCursor, pageLimit } from '../../common/ports/store.ts';
import { decodeCursor, encodeCursor } from './database.ts';
import { DocumentTable } from './document-table.ts';

/** API keys: the admin-table shape (revisioned documents) plus a lookup by hash and `touch`. */
export class SqliteApiKeys {
  readonly #table: DocumentTable<ApiKeyRecord>;
  readonly #byHash: StatementSync;
  readonly #touch: StatementSync;

  constructor(db: DatabaseSync) {
    this.#table = new DocumentTable<ApiKeyRecord>(db, {
      table: 'api_key',
      key: [['id', (r) => r.id]],
      columns: [['key_hash', (r) => r.keyHash]],
    });
    this.#byHash = db.prepare('SELECT doc FROM api_key WHERE key_hash = ?');
    this.#touch = db.prepare("UPDATE api_key SET doc = json_set(doc, '$.lastUsedAt', ?) WHERE id = ?");
  }

  /** Conditional create; the unique hash column refuses a second key with the same hash. */
  insert(record: ApiKeyRecord): void {
    this.#table.insert(record);
  }

  get(id: string): ApiKeyRecord | undefined {
    return this.#table.get([id]);
  }

  findByHash(keyHash: string): ApiKeyRecord | undefined {
    const row = this.#byHash.get(keyHash) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as ApiKeyRecord) : undefined;
  }

  list(page?: PageRequest): Page<ApiKeyRecord> {
    return this.#table.list({}, page);
  }

  update(record: ApiKeyRecord): ApiKeyRecord {
    return this.#table.update(record);
  }

  touch(id: string, at: string): void {
    this.#touch.run(at, id);
  }
}

/** The audit log, newest first: its time-ordered ids read backwards, by actor through an index. */
export class SqliteAudit {
  readonly #insert: StatementSync;
  readonly #all: StatementSync;
  readonly #allAfter: StatementSync;
  readonly #byActor: StatementSync;
  readonly #byActorAfter: StatementSync;

  constructor(db: DatabaseSync) {
    this.#insert = db.prepare('INSERT INTO audit_log (id, actor, doc) VALUES (?, ?, ?)');
    this.#all = db.prepare('SELECT id, doc FROM audit_log ORDER BY id DESC LIMIT ?');
    this.#allAfter = db.prepare('SELECT id, doc FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?');
    this.#byActor = db.prepare('SELECT id, doc FROM audit_log WHERE actor = ? ORDER BY id DESC LIMIT ?');
    this.#byActorAfter = db.prepare(
      'SELECT id, doc FROM audit_log WHERE actor = ? AND id < ? ORDER BY id DESC LIMIT ?',
    );
  }

  append(record: AuditRecord): void {
    this.#insert.run(record.id, record.actor, JSON.stringify(record));
  }

  list(filter: AuditFilter, page: PageRequest = {}): Page<AuditRecord> {
    const limit = pageLimit(page.limit);
    let after: string | undefined;
    if (page.cursor !== undefined) {
      const key = decodeCursor(page.cursor, 'audit_log');
      if (key?.length !== 1 || typeof key[0] !== 'string') throw invalidCursor();
      after = key[0];
    }
    const rows = (
      filter.actor === undefined
        ? after === undefined
          ? this.#all.all(limit + 1)
          : this.#allAfter.all(after, limit + 1)
        : after === undefined
          ? this.#byActor.all(filter.actor, limit + 1)
          : this.#byActorAfter.all(filter.actor, after, limit + 1)
    ) as Array<{ id: string; doc: string }>;
    const items = rows.slice(0, limit).map((r) => JSON.parse(r.doc) as AuditRecord);
    const last = items.at(-1);
    return rows.length > limit && last ? { items, next: encodeCursor('audit_log', [last.id]) } : { items };
  }
}
