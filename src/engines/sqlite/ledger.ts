/**
 * `idempotency_ledger` in SQLite. A claim is one conditional upsert: SQLite runs it under its single
 * write lock, so of any number of concurrent claimers (threads or processes) exactly one wins. Each
 * claim writes a new random token; completing and releasing are conditional on it (fencing).
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { LedgerEntry } from '../../common/model.ts';
import type { IdempotencyLedger, LedgerClaim } from '../../common/ports/store.ts';

interface LedgerRow {
  key: string;
  status: LedgerEntry['status'];
  expires_at: number;
  updated_at: number;
}

/** The SQLite implementation of the idempotency ledger. */
export class SqliteLedger implements Omit<IdempotencyLedger, 'purge'> {
  readonly #claim: StatementSync;
  readonly #complete: StatementSync;
  readonly #release: StatementSync;
  readonly #get: StatementSync;
  readonly #purge: StatementSync;

  constructor(db: DatabaseSync) {
    // Inserts when absent; takes over only a lapsed IN_PROGRESS claim; otherwise changes nothing.
    this.#claim = db.prepare(
      `INSERT INTO idempotency_ledger (key, status, expires_at, updated_at, token)
       VALUES (?1, 'IN_PROGRESS', ?2, ?3, ?4)
       ON CONFLICT (key) DO UPDATE SET status = 'IN_PROGRESS', expires_at = ?2, updated_at = ?3, token = ?4
       WHERE status = 'IN_PROGRESS' AND expires_at <= ?3`,
    );
    this.#complete = db.prepare(
      `UPDATE idempotency_ledger SET status = 'COMPLETED', expires_at = ?2, updated_at = ?3, token = NULL
       WHERE key = ?1 AND status = 'IN_PROGRESS' AND token = ?4`,
    );
    this.#release = db.prepare(
      `DELETE FROM idempotency_ledger WHERE key = ? AND status = 'IN_PROGRESS' AND token = ?`,
    );
    this.#get = db.prepare(
      'SELECT key, status, expires_at, updated_at FROM idempotency_ledger WHERE key = ?',
    );
    // A bounded chunk through the expiry index (the oldest first), so a purge never holds the write lock for long.
    this.#purge = db.prepare(
      `DELETE FROM idempotency_ledger WHERE key IN
         (SELECT key FROM idempotency_ledger WHERE expires_at < ? ORDER BY expires_at LIMIT ?)`,
    );
  }

  async claim(key: string, leaseMs: number, now: number): Promise<LedgerClaim> {
    const token = randomUUID();
    if (this.#claim.run(key, now + leaseMs, now, token).changes > 0) return { status: 'claimed', token };
    // Not taken over: either done already, or someone else's claim is still live.
    return { status: this.#row(key)?.status === 'COMPLETED' ? 'completed' : 'busy' };
  }

  async complete(key: string, token: string, ttlMs: number, now: number): Promise<boolean> {
    return this.#complete.run(key, now + ttlMs, now, token).changes > 0;
  }

  async release(key: string, token: string): Promise<boolean> {
    return this.#release.run(key, token).changes > 0;
  }

  async get(key: string): Promise<LedgerEntry | undefined> {
    const row = this.#row(key);
    return row
      ? { key: row.key, status: row.status, expiresAt: row.expires_at, updatedAt: row.updated_at }
      : undefined;
  }

  /** Removes up to `limit` entries expired before `now` (the store repeats it until fewer come back). */
  purgeChunk(now: number, limit: number): number {
    return Number(this.#purge.run(now, limit).changes);
  }

  #row(key: string): LedgerRow | undefined {
    return this.#get.get(key) as LedgerRow | undefined;
  }
}
