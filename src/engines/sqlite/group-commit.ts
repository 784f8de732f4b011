/**
 * Group commit: writes issued during one turn of the event loop run together in one transaction,
 * committed once. On the delivery hot path many tasks each write a few rows; one commit (one WAL
 * append of the touched pages) for all of them instead of one per statement is what makes the
 * SQLite store keep up. Every operation must be atomic on its own (one statement, or its own
 * SAVEPOINT), so one failing operation does not undo the others; each caller's promise settles after
 * the COMMIT, so a caller never sees its write acknowledged before it is durable.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';

interface Pending {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class GroupCommit {
  readonly #db: DatabaseSync;
  readonly #begin: StatementSync;
  readonly #commit: StatementSync;
  readonly #rollback: StatementSync;
  #queue: Pending[] = [];
  #scheduled = false;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
  }

  /** Runs `op` in the next group transaction; resolves with its result once committed. */
  run<T>(op: () => T | Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ run: op, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const batch = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    if (batch.length === 0) return;
    if (!this.#db.isOpen) {
      for (const p of batch) p.reject(new Error('the store is closed'));
      return;
    }
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.#begin.run();
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    for (const p of batch) {
      try {
        results.push({ ok: true, value: p.run() });
      } catch (error) {
        results.push({ ok: false, error });
      }
    }
    try {
      this.#commit.run();
    } catch (err) {
      if (this.#db.isTransaction) this.#rollback.run();
      // The operations' own results are moot now; a rejected one must not surface as unhandled.
      for (const r of results) if (r.ok) Promise.resolve(r.value).catch(() => {});
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (r.ok) Promise.resolve(r.value).then(p.resolve, p.reject);
      else p.reject(r.error);
    });
  }
}
