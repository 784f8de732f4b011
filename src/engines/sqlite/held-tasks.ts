/** `held_task` in SQLite: the tasks of PAUSED subscriptions, keyed (subscription, time-ordered id). */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { type HeldTask, withinPageBytes } from '../../common/ports/store.ts';

/** The SQLite implementation of the held-task repository (synchronous; the store wraps it). */
export class SqliteHeldTasks {
  readonly #insert: StatementSync;
  readonly #list: StatementSync;
  readonly #listAfter: StatementSync;
  readonly #remove: StatementSync;
  readonly #subscriptions: StatementSync;
  readonly #count: StatementSync;
  readonly #add: StatementSync;
  readonly #drop: StatementSync;

  constructor(db: DatabaseSync) {
    this.#insert = db.prepare(
      'INSERT INTO held_task (subscription_id, id, doc) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.#list = db.prepare('SELECT doc FROM held_task WHERE subscription_id = ? ORDER BY id LIMIT ?');
    this.#listAfter = db.prepare(
      'SELECT doc FROM held_task WHERE subscription_id = ? AND id > ? ORDER BY id LIMIT ?',
    );
    this.#remove = db.prepare('DELETE FROM held_task WHERE subscription_id = ? AND id = ?');
    this.#count = db.prepare('SELECT n FROM held_count WHERE subscription_id = ?');
    this.#add = db.prepare(
      `INSERT INTO held_count (subscription_id, n) VALUES (?, ?)
       ON CONFLICT (subscription_id) DO UPDATE SET n = n + excluded.n`,
    );
    this.#drop = db.prepare('DELETE FROM held_count WHERE subscription_id = ? AND n <= 0');
    // The distinct subscriptions by skipping from one to the next in the key: one seek each,
    // however many tasks each holds.
    this.#subscriptions = db.prepare(
      `WITH RECURSIVE s(id) AS (
         SELECT min(subscription_id) FROM held_task
         UNION ALL
         SELECT (SELECT min(subscription_id) FROM held_task WHERE subscription_id > s.id) FROM s WHERE s.id IS NOT NULL)
       SELECT id FROM s WHERE id IS NOT NULL`,
    );
  }

  /** Keeps a task (one held already stays as it was), counting it; run inside a savepoint by the store. */
  hold(task: HeldTask): void {
    if (this.#insert.run(task.subscriptionId, task.id, JSON.stringify(task)).changes > 0)
      this.#add.run(task.subscriptionId, 1);
  }

  list(subscriptionId: string, limit: number, afterId?: string): HeldTask[] {
    const rows =
      afterId === undefined
        ? this.#list.iterate(subscriptionId, limit)
        : this.#listAfter.iterate(subscriptionId, afterId, limit);
    // Row by row: the rows after the one that passes MAX_PAGE_BYTES are never read.
    return withinPageBytes(
      rows as Iterable<{ doc: string }>,
      (row) => JSON.parse(row.doc) as HeldTask,
      (task) => task.value.length,
    );
  }

  /** Removes tasks, counting them out; run inside a savepoint by the store. */
  remove(subscriptionId: string, ids: string[]): void {
    let removed = 0;
    for (const id of ids) removed += Number(this.#remove.run(subscriptionId, id).changes);
    if (removed === 0) return;
    this.#add.run(subscriptionId, -removed);
    this.#drop.run(subscriptionId);
  }

  count(subscriptionId: string): number {
    return (this.#count.get(subscriptionId) as { n: number } | undefined)?.n ?? 0;
  }

  subscriptions(): string[] {
    return (this.#subscriptions.all() as Array<{ id: string }>).map((r) => r.id);
  }
}
