/**
 * Read batching: point reads issued in the same event-loop turn (the dispatcher looks up every task
 * of a batch at once) run in one read transaction. A statement on its own is a transaction of its
 * own: it takes and drops the WAL read lock (two `fcntl` calls) and checks for other connections'
 * commits each time.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';

interface Pending {
  read: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class ReadBatch {
  readonly #db: DatabaseSync;
  readonly #begin: StatementSync;
  readonly #end: StatementSync;
  #queue: Pending[] = [];

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#begin = db.prepare('BEGIN');
    this.#end = db.prepare('COMMIT');
  }

  /** Runs `read` with the other reads of this turn; resolves with its result. */
  run<T>(read: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#queue.length === 0) queueMicrotask(() => this.#flush());
      this.#queue.push({ read, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  #flush(): void {
    const batch = this.#queue;
    this.#queue = [];
    // Inside another transaction (never the case between turns, but cheap to respect) the reads join it.
    const own = batch.length > 1 && this.#db.isOpen && !this.#db.isTransaction;
    if (own) this.#begin.run();
    try {
      for (const p of batch) {
        try {
          p.resolve(p.read());
        } catch (err) {
          p.reject(err);
        }
      }
    } finally {
      // A read failing with an I/O or memory error makes SQLite roll the transaction back itself.
      if (own && this.#db.isTransaction) this.#end.run();
    }
  }
}
