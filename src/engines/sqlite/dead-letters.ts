/**
 * `dead_letter` in SQLite: entries are kept after a redrive (marked, not deleted) so the history of
 * what failed stays inspectable; a partial index keeps the pending ones cheap to list.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { ConflictError } from '../../common/errors.ts';
import type { DeadLetterRecord } from '../../common/model.ts';
import type { DeadLetterFilter, DeadLetterRepository, Page, PageRequest } from '../../common/ports/store.ts';
import { type Condition, listByTime, StatementCache } from './paging.ts';

/** The SQLite implementation of the dead-letter repository. */
export class SqliteDeadLetters implements Omit<DeadLetterRepository, 'purgeBefore'> {
  readonly #lists: StatementCache;
  readonly #insert: StatementSync;
  readonly #markRedriven: StatementSync;
  readonly #purge: StatementSync;

  constructor(db: DatabaseSync) {
    this.#lists = new StatementCache(db);
    this.#insert = db.prepare(
      `INSERT INTO dead_letter (id, stage, event_id, subscription_id, created_at, redriven_at, doc)
       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    this.#markRedriven = db.prepare(
      `UPDATE dead_letter SET redriven_at = ?1, doc = json_set(doc, '$.redrivenAt', ?1)
       WHERE id = ?2 AND redriven_at IS NULL`,
    );
    this.#purge = db.prepare(
      `DELETE FROM dead_letter WHERE id IN
         (SELECT id FROM dead_letter WHERE created_at < ? ORDER BY created_at, id LIMIT ?)`,
    );
  }

  /** One chunk of history retention; run inside one transaction by the store. */
  purgeChunk(before: string, limit: number): number {
    return Number(this.#purge.run(before, limit).changes);
  }

  async insert(record: DeadLetterRecord): Promise<void> {
    const { changes } = this.#insert.run(
      record.id,
      record.stage,
      record.eventId ?? null,
      record.subscriptionId ?? null,
      record.createdAt,
      record.redrivenAt ?? null,
      JSON.stringify(record),
    );
    if (changes === 0) throw new ConflictError('already_exists', `dead letter ${record.id} already exists`);
  }

  /** Oldest first. `pending: true` lists entries not yet redriven, `pending: false` the redriven ones. */
  async list(filter: DeadLetterFilter, page: PageRequest = {}): Promise<Page<DeadLetterRecord>> {
    const conditions: Condition[] = [];
    if (filter.stage !== undefined) conditions.push({ clause: 'stage = ?', value: filter.stage });
    if (filter.subscriptionId !== undefined)
      conditions.push({ clause: 'subscription_id = ?', value: filter.subscriptionId });
    if (filter.eventId !== undefined) conditions.push({ clause: 'event_id = ?', value: filter.eventId });
    if (filter.reason !== undefined)
      conditions.push({ clause: "json_extract(doc, '$.reason') = ?", value: filter.reason });
    if (filter.pending !== undefined)
      conditions.push({ clause: filter.pending ? 'redriven_at IS NULL' : 'redriven_at IS NOT NULL' });
    return listByTime(this.#lists, { table: 'dead_letter', order: 'asc' }, conditions, page);
  }

  async markRedriven(id: string, at: string): Promise<boolean> {
    return this.#markRedriven.run(at, id).changes > 0;
  }
}
