/**
 * `scheduled_message` in DynamoDB: one item per message, keyed by its `id` (`doc`: the scheduled
 * message as JSON, compressed when large), found when due through the sharded GSI `by_due`:
 * `shard` (FNV-1a of the id mod 16, so writes spread over 16 index partitions) / `due` = the due
 * time in whole ms zero-padded to 16 digits ␀ id, KEYS_ONLY. No Scan: `due` is one key-range Query
 * per shard, merged earliest first.
 *
 * Why an id-keyed item and a GSI rather than a table keyed (shard, dueAt#id): the port promises that
 * scheduling an id kept already leaves the kept one as it is, and a caller may well schedule an id
 * again with another due time (a Kafka record redelivered after a crash computes its retry's due
 * time anew). A table keyed on the due time would keep that second one as a second item (published
 * twice), and a BatchWriteItem put cannot be made conditional; an item keyed by id takes the
 * promise as one conditional PutItem (`attribute_not_exists(id)`), atomic with its index entry,
 * without a guard item and the transaction (twice the write units) that would need. A removal is a
 * delete by id, whatever due time the caller names.
 *
 * The price is the index's eventual consistency, handled so:
 * - `due` reads the index only for keys: the chosen messages are read again from the table (one
 *   consistent BatchGetItem) and dropped when gone (removed while the index lagged) or not due (an
 *   id removed and scheduled again at a later time). So a message just removed is never returned.
 * - A message scheduled less than a moment before may be missing from `due` (it comes next time).
 * - `count` counts the index: **approximate** by that lag (exact once writes have settled).
 */
import type { QueryCommandInput } from '@aws-sdk/client-dynamodb';
import type { ScheduledMessage, ScheduledMessageRepository } from '../../common/ports/store.ts';
import { checkScheduledMessage } from '../../common/ports/store.ts';
import { type Db, type Item, isConditionFailed, mapLimit } from './db.ts';
import { composite, docAttributes, Expr, N, readDoc, S, str } from './items.ts';
import { mergeQueries, streamPageSize } from './listing.ts';

/** Partitions of `by_due` (a constant of the data: changing it needs a backfill of `shard`). */
export const SCHEDULE_SHARDS = 16;
const SHARD_LIST: readonly number[] = Array.from({ length: SCHEDULE_SHARDS }, (_, i) => i);
const INDEX = 'by_due';
/** Digits of the due time in `due`; times are clamped to 0 … the latest a Date can be (16 digits). */
const DUE_DIGITS = 16;
const LATEST_MS = 8.64e15;
/** Conditional puts in flight at once for one `schedule`. */
const PUT_CONCURRENCY = 16;

/** The shard of an id: FNV-1a of its UTF-16 code units, mod SCHEDULE_SHARDS. */
function shardOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % SCHEDULE_SHARDS;
}

/** A time as the fixed-width digits that order `due` (whole ms, clamped). */
function dueDigits(ms: number): string {
  return String(Math.min(LATEST_MS, Math.max(0, Math.floor(ms)))).padStart(DUE_DIGITS, '0');
}

/** The DynamoDB implementation of the scheduled-message repository (`count` is approximate: see the top). */
export class DynamoScheduled implements ScheduledMessageRepository {
  readonly #db: Db;
  readonly #table: string;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
  }

  /**
   * One conditional PutItem per id (BatchWriteItem cannot be conditional), a few at a time; an id
   * kept already is refused by the condition and stays as it was, unless the new one is due later
   * (`due` sorts by due time, then id). Of one id named twice in a call, the one due latest is
   * kept. All are checked before any is written.
   */
  async schedule(items: ScheduledMessage[]): Promise<void> {
    for (const item of items) checkScheduledMessage(item);
    const latest = new Map<string, ScheduledMessage>();
    for (const item of items) {
      const seen = latest.get(item.id);
      if (!seen || item.dueAt > seen.dueAt) latest.set(item.id, item);
    }
    await mapLimit([...latest.values()], PUT_CONCURRENCY, (item) => this.#put(item));
  }

  async #put(item: ScheduledMessage): Promise<void> {
    const e = new Expr();
    const doc: ScheduledMessage = { id: item.id, dueAt: item.dueAt, message: item.message };
    try {
      await this.#db.put({
        TableName: this.#table,
        Item: {
          id: S(item.id),
          shard: N(shardOf(item.id)),
          due: S(dueKey(item)),
          ...docAttributes(doc),
        },
        ConditionExpression: `attribute_not_exists(${e.n('id')}) OR ${e.n('due')} < ${e.v(S(dueKey(item)))}`,
        ...e.params(),
      });
    } catch (err) {
      // Kept already, due as late or later: it stays as it was.
      if (!isConditionFailed(err)) throw err;
    }
  }

  /**
   * Per shard, a Query of `by_due` for `due` < the digits of the next ms (every entry due at or
   * before `now`, ascending), read as needed and merged earliest first; the first `limit` keys are
   * read from the table (consistent BatchGetItem) and kept when still there and due, until `limit`
   * messages are found or the shards are done.
   */
  async due(now: number, limit: number): Promise<ScheduledMessage[]> {
    const want = Math.floor(limit);
    if (!(want > 0) || Number.isNaN(now)) return [];
    // Whole ms up to the next one; clamped times are sorted out by the check of `dueAt` below.
    const bound = String(Math.max(0, Math.min(LATEST_MS, Math.floor(now))) + 1).padStart(DUE_DIGITS, '0');
    const inputs: QueryCommandInput[] = SHARD_LIST.map((shard) => {
      const e = new Expr();
      return {
        TableName: this.#table,
        IndexName: INDEX,
        KeyConditionExpression: `${e.n('shard')} = ${e.v(N(shard))} AND ${e.n('due')} < ${e.v(S(bound))}`,
        ...e.params(),
      };
    });
    const source = mergeQueries(this.#db, inputs, 'due', false, streamPageSize(want, SCHEDULE_SHARDS));
    const out: ScheduledMessage[] = [];
    const seen = new Set<string>();
    try {
      for (let exhausted = false; out.length < want && !exhausted; ) {
        const ids: string[] = [];
        while (ids.length < want - out.length) {
          const next = await source.next();
          if (next.done) {
            exhausted = true;
            break;
          }
          const id = str(next.value, 'id')!;
          // An index lagging a removal and a new schedule of the id may list it twice.
          if (!seen.has(id)) ids.push(id);
          seen.add(id);
        }
        if (ids.length === 0) break;
        const found = await this.#db.batchGet(
          this.#table,
          ids.map((id) => ({ id: S(id) })),
          true,
        );
        const byId = new Map(found.map((i: Item) => [str(i, 'id'), readDoc<ScheduledMessage>(i)]));
        for (const id of ids) {
          const kept = byId.get(id);
          if (kept !== undefined && kept.dueAt <= now) out.push(kept);
        }
      }
    } finally {
      await source.return(undefined);
    }
    return out;
  }

  /**
   * One DeleteItem per message, conditional on the entry being the one read (its `due`), a few at a
   * time: an entry kept again since stays (BatchWriteItem, which cannot be conditional, removed it
   * too, and the message with it). An id not kept, or kept again, deletes nothing.
   */
  async remove(items: ScheduledMessage[]): Promise<void> {
    const byId = new Map(items.map((i) => [i.id, i]));
    await mapLimit([...byId.values()], PUT_CONCURRENCY, async (item) => {
      const e = new Expr();
      try {
        await this.#db.delete({
          TableName: this.#table,
          Key: { id: S(item.id) },
          ConditionExpression: `${e.n('due')} = ${e.v(S(dueKey(item)))}`,
          ...e.params(),
        });
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
      }
    });
  }

  /**
   * The entries of `by_due`, counted page by page per shard (projecting only `shard`: a Query reads
   * every entry it counts, as `Select: COUNT` would): approximate by the index's lag. It reads the
   * whole index, so a metric should not ask it often when many messages wait.
   */
  async count(): Promise<number> {
    const counts = await Promise.all(
      SHARD_LIST.map(async (shard) => {
        const e = new Expr();
        const input: QueryCommandInput = {
          TableName: this.#table,
          IndexName: INDEX,
          KeyConditionExpression: `${e.n('shard')} = ${e.v(N(shard))}`,
          ProjectionExpression: e.n('shard'),
          ...e.params(),
        };
        let n = 0;
        let start: Item | undefined;
        do {
          const page = await this.#db.query(start ? { ...input, ExclusiveStartKey: start } : input);
          n += page.items.length;
          start = page.last;
        } while (start);
        return n;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  }
}

/** The `due` attribute of an entry: its due time's digits, then its id (sorts by due time for one id). */
function dueKey(item: Pick<ScheduledMessage, 'id' | 'dueAt'>): string {
  return composite(dueDigits(item.dueAt), item.id);
}
