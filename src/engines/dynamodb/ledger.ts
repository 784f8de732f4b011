/**
 * `idempotency_ledger` in DynamoDB: one item per key, read and written only by its key. A claim is
 * one conditional UpdateItem (the key absent, or its claim lapsed), writing a new random token;
 * completing and releasing are conditional on that token (fencing). Each item carries a TTL (epoch
 * seconds): DynamoDB deletes expired entries by itself, at no write cost, so there is no `purge`
 * and no index to keep (each would cost write units on every claim and completion).
 */
import { randomUUID } from 'node:crypto';
import type { LedgerEntry } from '../../common/model.ts';
import type { IdempotencyLedger, LedgerClaim } from '../../common/ports/store.ts';
import { type Db, type Item, isConditionFailed } from './db.ts';
import { Expr, N, num, S, str } from './items.ts';

/** A lapsed claim stays this long past its lease before TTL may delete it (its holder may still complete it). */
const CLAIM_TTL_GRACE_S = 3_600;
/** Claims tried again when the entry that refused one was gone by the time it was read. */
const CLAIM_TRIES = 3;

const IN_PROGRESS = 'IN_PROGRESS';
const COMPLETED = 'COMPLETED';

function entryFrom(item: Item): LedgerEntry {
  return {
    key: str(item, 'key')!,
    status: str(item, 'status') as LedgerEntry['status'],
    expiresAt: num(item, 'expiresAt')!,
    updatedAt: num(item, 'updatedAt')!,
  };
}

/** The DynamoDB implementation of the idempotency ledger. */
export class DynamoLedger implements IdempotencyLedger {
  readonly #db: Db;
  readonly #table: string;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
  }

  async claim(key: string, leaseMs: number, now: number): Promise<LedgerClaim> {
    for (let tries = 1; ; tries++) {
      const token = randomUUID();
      const expiresAt = now + leaseMs;
      const e = new Expr();
      const [status, inProgress, nowValue] = [e.n('status'), e.v(S(IN_PROGRESS)), e.v(N(now))];
      const exp = e.n('expiresAt');
      try {
        await this.#db.update({
          TableName: this.#table,
          Key: { key: S(key) },
          UpdateExpression: `SET ${status} = ${inProgress}, ${exp} = ${e.v(N(expiresAt))}, ${e.n('updatedAt')} = ${nowValue}, ${e.n('token')} = ${e.v(S(token))}, ${e.n('ttl')} = ${e.v(N(Math.ceil(expiresAt / 1000) + CLAIM_TTL_GRACE_S))}`,
          ConditionExpression: `attribute_not_exists(${e.n('key')}) OR (${status} = ${inProgress} AND ${exp} <= ${nowValue})`,
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          ...e.params(),
        });
        return { status: 'claimed', token };
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
        const held = await this.#db.refusedItem(err, this.#table, { key: S(key) });
        if (held) return { status: str(held, 'status') === COMPLETED ? 'completed' : 'busy' };
        // Released (or purged) between the write and the read: claim again.
        if (tries >= CLAIM_TRIES) return { status: 'busy' };
      }
    }
  }

  async complete(key: string, token: string, ttlMs: number, now: number): Promise<boolean> {
    const expiresAt = now + ttlMs;
    const e = new Expr();
    const status = e.n('status');
    try {
      await this.#db.update({
        TableName: this.#table,
        Key: { key: S(key) },
        UpdateExpression: `SET ${status} = ${e.v(S(COMPLETED))}, ${e.n('expiresAt')} = ${e.v(N(expiresAt))}, ${e.n('updatedAt')} = ${e.v(N(now))}, ${e.n('ttl')} = ${e.v(N(Math.ceil(expiresAt / 1000)))} REMOVE ${e.n('token')}`,
        ConditionExpression: `${status} = ${e.v(S(IN_PROGRESS))} AND ${e.n('token')} = ${e.v(S(token))}`,
        ...e.params(),
      });
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async release(key: string, token: string): Promise<boolean> {
    const e = new Expr();
    try {
      await this.#db.delete({
        TableName: this.#table,
        Key: { key: S(key) },
        ConditionExpression: `${e.n('status')} = ${e.v(S(IN_PROGRESS))} AND ${e.n('token')} = ${e.v(S(token))}`,
        ...e.params(),
      });
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }

  async get(key: string): Promise<LedgerEntry | undefined> {
    const item = await this.#db.get(this.#table, { key: S(key) });
    return item ? entryFrom(item) : undefined;
  }
}
