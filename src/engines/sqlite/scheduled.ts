/** `scheduled_message` in SQLite: messages kept until they are due, keyed by id, found by (due_at, id). */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { BusMessage } from '../../common/ports/bus.ts';
import { checkScheduledMessage, type ScheduledMessage } from '../../common/ports/store.ts';

interface Row {
  id: string;
  due_at: number;
  message: string;
}

/** The SQLite implementation of the scheduled-message repository (synchronous; the store wraps it). */
export class SqliteScheduled {
  readonly #insert: StatementSync;
  readonly #due: StatementSync;
  readonly #remove: StatementSync;
  readonly #count: StatementSync;

  constructor(db: DatabaseSync) {
    this.#insert = db.prepare(
      `INSERT INTO scheduled_message (id, due_at, message) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, message = excluded.message
       WHERE excluded.due_at > scheduled_message.due_at`,
    );
    this.#due = db.prepare(
      'SELECT id, due_at, message FROM scheduled_message WHERE due_at <= ? ORDER BY due_at, id LIMIT ?',
    );
    this.#remove = db.prepare('DELETE FROM scheduled_message WHERE id = ? AND due_at = ?');
    this.#count = db.prepare('SELECT count(*) AS n FROM scheduled_message');
  }

  /**
   * Keeps the messages; an id kept already (or met earlier in the same call) stays as it was unless
   * the new one is due later (see the port). All are checked before any is written; run inside a
   * savepoint by the store.
   */
  schedule(items: ScheduledMessage[]): void {
    for (const item of items) checkScheduledMessage(item);
    for (const item of items) this.#insert.run(item.id, item.dueAt, JSON.stringify(item.message));
  }

  due(now: number, limit: number): ScheduledMessage[] {
    const want = Math.floor(limit);
    if (!(want > 0) || Number.isNaN(now)) return [];
    const rows = this.#due.all(now, want) as unknown as Row[];
    return rows.map((r) => ({ id: r.id, dueAt: r.due_at, message: JSON.parse(r.message) as BusMessage }));
  }

  /** Forgets the messages as read (id and due time; see the port); run inside a savepoint by the store. */
  remove(items: ScheduledMessage[]): void {
    for (const item of items) this.#remove.run(item.id, item.dueAt);
  }

  count(): number {
    return (this.#count.get() as { n: number }).n;
  }
}
