/**
 * `dead_letter` in SQLite: entries are kept after a redrive (marked, not deleted) so the history of
 * what failed stays inspectable; a partial index keeps the pending ones cheap to list. The record
 * itself (with its message, up to a megabyte) is in `dead_letter_doc`: listings filter on the small
 * rows of `dead_letter` and read documents for the page's items only. A redrive marks the small row
 * alone (`redriven_at`, laid over the document's `redrivenAt` when read): rewriting a 1 MB document
 * to set one field took ~15 ms of the thread per dead letter.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { ConflictError } from '../../common/errors.ts';
import type { DeadLetterRecord } from '../../common/model.ts';
import type { DeadLetterFilter, Page, PageRequest } from '../../common/ports/store.ts';
import { type Condition, listByTime, StatementCache } from './paging.ts';

/** The SQLite implementation of the dead-letter repository (its writes synchronous; the store wraps them). */
export class SqliteDeadLetters {
  readonly #lists: StatementCache;
  readonly #insert: StatementSync;
  readonly #insertDoc: StatementSync;
  readonly #markRedriven: StatementSync;
  readonly #purge: StatementSync;
  readonly #purgeDocs: StatementSync;

  constructor(db: DatabaseSync) {
    this.#lists = new StatementCache(db);
    this.#insert = db.prepare(
      `INSERT INTO dead_letter (id, stage, event_id, subscription_id, created_at, redriven_at, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    this.#insertDoc = db.prepare('INSERT INTO dead_letter_doc (id, doc) VALUES (?, ?)');
    this.#markRedriven = db.prepare(
      'UPDATE dead_letter SET redriven_at = ?1 WHERE id = ?2 AND redriven_at IS NULL',
    );
    // The documents first, of the same oldest entries the next statement deletes.
    this.#purgeDocs = db.prepare(
      `DELETE FROM dead_letter_doc WHERE id IN
         (SELECT id FROM dead_letter WHERE created_at < ? ORDER BY created_at, id LIMIT ?)`,
    );
    this.#purge = db.prepare(
      `DELETE FROM dead_letter WHERE id IN
         (SELECT id FROM dead_letter WHERE created_at < ? ORDER BY created_at, id LIMIT ?)`,
    );
  }

  /** One chunk of history retention; run inside a savepoint by the store. */
  purgeChunk(before: string, limit: number): number {
    this.#purgeDocs.run(before, limit);
    return Number(this.#purge.run(before, limit).changes);
  }

  /** Inserts the entry and its document; run inside a savepoint by the store (both or neither). */
  insert(record: DeadLetterRecord): void {
    const { changes } = this.#insert.run(
      record.id,
      record.stage,
      record.eventId ?? null,
      record.subscriptionId ?? null,
      record.createdAt,
      record.redrivenAt ?? null,
      record.reason,
    );
    if (changes === 0) throw new ConflictError('already_exists', `dead letter ${record.id} already exists`);
    this.#insertDoc.run(record.id, JSON.stringify(record));
  }

  /**
   * Oldest first. `pending: true` lists entries not yet redriven, `pending: false` the redriven ones.
   * Through the index of the first filter set; the others are checked row by row, at most
   * MAX_ROWS_EXAMINED rows a page (`?stage=dispatcher&pending=false` read all 100,000 entries: 29 ms).
   */
  async list(filter: DeadLetterFilter, page: PageRequest = {}): Promise<Page<DeadLetterRecord>> {
    const conditions: Condition[] = [];
    const add = (clause: string, value?: string) =>
      conditions.push({ clause, ...(value !== undefined ? { value } : {}), residual: conditions.length > 0 });
    if (filter.eventId !== undefined) add('event_id = ?', filter.eventId);
    if (filter.subscriptionId !== undefined) add('subscription_id = ?', filter.subscriptionId);
    if (filter.reason !== undefined) add('reason = ?', filter.reason);
    if (filter.stage !== undefined) add('stage = ?', filter.stage);
    // Not yet redriven has an index of its own (`dead_letter_pending`); redriven ones are checked row by row.
    if (filter.pending === true) add('redriven_at IS NULL');
    if (filter.pending === false) conditions.push({ clause: 'redriven_at IS NOT NULL', residual: true });
    return listByTime(
      this.#lists,
      {
        table: 'dead_letter JOIN dead_letter_doc USING (id)',
        order: 'asc',
        columns: 'redriven_at',
        read: (row) => {
          const record = JSON.parse(row.doc) as DeadLetterRecord;
          // The row's mark is the truth (documents of entries redriven before this carry it too).
          if (typeof row.redriven_at === 'string') record.redrivenAt = row.redriven_at;
          return record;
        },
      },
      conditions,
      page,
    );
  }

  /** Marks the entry redriven (its small row only: listings lay the mark over the document). */
  markRedriven(id: string, at: string): boolean {
    return this.#markRedriven.run(at, id).changes > 0;
  }
}
