/**
 * `event_delivery_status`, `delivery_attempt` and `event_route` in DynamoDB.
 *
 * A delivery is one item whose fields are attributes of their own, so an update is one UpdateItem
 * (SET the given fields, REMOVE those given as undefined) with no read. Its four indexes (by time,
 * sharded; by event; by subscription; by partner) all sort on `tsort` = createdAt␀id and project
 * only the filter attributes: an update that changes neither keys nor those (a retry: attempts,
 * times, errors) writes no index. An attempt is an item of its own, written with its delivery's new
 * state in one TransactWriteItems. A route marker is one item per event (id, source).
 */
import type { AttributeValue, QueryCommandInput, TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { ConflictError, NotFoundError } from '../../common/errors.ts';
import type { DeliveryAttempt, DeliveryRecord } from '../../common/model.ts';
import type {
  DeliveryFilter,
  DeliveryRepository,
  EventRef,
  Page,
  PageRequest,
} from '../../common/ports/store.ts';
import { pageLimit } from '../../common/ports/store.ts';
import {
  cancellationReasons,
  type Db,
  failedCondition,
  type Item,
  isConditionFailed,
  mapLimit,
  transactRetrying,
} from './db.ts';
import {
  and,
  decodeCursor,
  Expr,
  N,
  num,
  readDoc,
  S,
  SHARDS,
  sha256,
  shardOf,
  str,
  timeSort,
  ttlAfter,
} from './items.ts';
import { collectPage, mergeQueries, rereadById, streamPageSize } from './listing.ts';

const STRING_FIELDS = [
  'id',
  'eventId',
  'eventSource',
  'eventType',
  'subscriptionId',
  'partnerId',
  'status',
  'lastError',
  'nextAttemptAt',
  'correlationId',
  'createdAt',
  'updatedAt',
  'completedAt',
] as const;
const NUMBER_FIELDS = ['attempts', 'lastStatusCode'] as const;
const FIELDS = new Set<string>([...STRING_FIELDS, ...NUMBER_FIELDS]);
const NUMBERS = new Set<string>(NUMBER_FIELDS);

/** Fields fixed at creation: an update carrying them leaves them as they were. */
const IMMUTABLE = new Set([
  'id',
  'eventId',
  'eventSource',
  'eventType',
  'subscriptionId',
  'partnerId',
  'createdAt',
]);
/** Fields every record has: `undefined` for them means "unchanged", never "remove". */
const REQUIRED = new Set(['status', 'attempts', 'updatedAt']);
/** Conditional deletes a purge runs at once. */
const PURGE_CONCURRENCY = 8;

type DeliveryUpdate = Partial<DeliveryRecord> & { updatedAt: string };

function fieldValue(field: string, value: unknown): AttributeValue {
  return NUMBERS.has(field) ? N(value as number) : S(value as string);
}

function deliveryFrom(item: Item): DeliveryRecord {
  const out: Record<string, unknown> = {};
  for (const field of STRING_FIELDS) {
    const v = str(item, field);
    if (v !== undefined) out[field] = v;
  }
  for (const field of NUMBER_FIELDS) {
    const v = num(item, field);
    if (v !== undefined) out[field] = v;
  }
  return out as unknown as DeliveryRecord;
}

/** A record with an update applied: immutable fields kept, optional fields given as undefined removed. */
function applyUpdate(record: DeliveryRecord, update: DeliveryUpdate): DeliveryRecord {
  const out: Record<string, unknown> = { ...record };
  for (const [field, value] of Object.entries(update)) {
    if (IMMUTABLE.has(field) || !FIELDS.has(field)) continue;
    if (value === undefined) {
      if (!REQUIRED.has(field)) delete out[field];
    } else out[field] = value;
  }
  return out as unknown as DeliveryRecord;
}

/** The later of two ISO times. */
function later(a: string, b: string): string {
  return a > b ? a : b;
}

/** The key of an event's route marker: SHA-256 of (id, source), which together identify an event. */
function routeKey(event: EventRef): string {
  return sha256(JSON.stringify([event.id, event.source]));
}

/** The DynamoDB implementation of the delivery repository. */
export class DynamoDeliveries implements DeliveryRepository {
  readonly #db: Db;
  readonly #table: string;
  readonly #attempts: string;
  readonly #routes: string;
  /** Days an item of history lives after its last write (TTL); 0: no TTL attribute. */
  readonly #ttlDays: number;

  constructor(db: Db, tables: { deliveries: string; attempts: string; routes: string }, ttlDays: number) {
    this.#db = db;
    this.#table = tables.deliveries;
    this.#attempts = tables.attempts;
    this.#routes = tables.routes;
    this.#ttlDays = ttlDays;
  }

  /** The whole item of a delivery: its fields, index keys and TTL. */
  #item(record: DeliveryRecord): Item {
    const item: Item = {};
    for (const [field, value] of Object.entries(record)) {
      if (FIELDS.has(field) && value !== undefined) item[field] = fieldValue(field, value);
    }
    item.tshard = N(shardOf(record.id));
    item.tsort = S(timeSort(record.createdAt, record.id));
    const ttl = this.#ttl(later(record.updatedAt, record.createdAt));
    if (ttl !== undefined) item.ttl = N(ttl);
    return item;
  }

  #ttl(iso: string): number | undefined {
    return this.#ttlDays > 0 ? ttlAfter(iso, this.#ttlDays) : undefined;
  }

  async ensure(record: DeliveryRecord): Promise<DeliveryRecord> {
    const item = this.#item(record);
    const e = new Expr();
    try {
      await this.#db.put({
        TableName: this.#table,
        Item: item,
        ConditionExpression: `attribute_not_exists(${e.n('id')})`,
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        ...e.params(),
      });
      return deliveryFrom(item);
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
      const stored = err.Item ?? (await this.#db.get(this.#table, { id: S(record.id) }));
      return stored ? deliveryFrom(stored) : record;
    }
  }

  async get(id: string): Promise<DeliveryRecord | undefined> {
    const item = await this.#db.get(this.#table, { id: S(id) });
    return item ? deliveryFrom(item) : undefined;
  }

  /**
   * One TransactWriteItems: the attempt's conditional put (ConflictError `already_exists` when its
   * number is taken) with the delivery's conditional update (NotFoundError when it is missing) — or,
   * with `create`, its conditional creation in the new state; when it exists after all, the
   * transaction is sent again as an update.
   */
  async recordAttempt(
    attempt: DeliveryAttempt,
    update: DeliveryUpdate,
    create?: DeliveryRecord,
  ): Promise<void> {
    const a = new Expr();
    const attemptItem: Item = {
      deliveryId: S(attempt.deliveryId),
      attempt: N(attempt.attempt),
      doc: S(JSON.stringify(attempt)),
    };
    const ttl = this.#ttl(later(attempt.at, update.updatedAt));
    if (ttl !== undefined) attemptItem.ttl = N(ttl);
    const putAttempt: TransactWriteItem = {
      Put: {
        TableName: this.#attempts,
        Item: attemptItem,
        ConditionExpression: `attribute_not_exists(${a.n('deliveryId')})`,
        ...a.params(),
      },
    };
    if (create) {
      const c = new Expr();
      const created: TransactWriteItem = {
        Put: {
          TableName: this.#table,
          Item: this.#item(applyUpdate(create, update)),
          ConditionExpression: `attribute_not_exists(${c.n('id')})`,
          ...c.params(),
        },
      };
      const refused = await this.#attemptWrite(attempt, [putAttempt, created]);
      if (!refused) return;
    }
    const u = new Expr();
    const changed: TransactWriteItem = {
      Update: {
        TableName: this.#table,
        Key: { id: S(attempt.deliveryId) },
        UpdateExpression: this.#updateExpression(update, u),
        ConditionExpression: `attribute_exists(${u.n('id')})`,
        ...u.params(),
      },
    };
    if (await this.#attemptWrite(attempt, [putAttempt, changed])) {
      throw new NotFoundError('not_found', `delivery ${attempt.deliveryId} not found`);
    }
  }

  /** Sends an attempt's transaction; true when the delivery's condition refused it. */
  async #attemptWrite(attempt: DeliveryAttempt, actions: TransactWriteItem[]): Promise<boolean> {
    try {
      await transactRetrying(this.#db, actions);
      return false;
    } catch (err) {
      const reasons = cancellationReasons(err);
      if (!reasons) throw err;
      if (failedCondition(reasons, 0)) {
        throw new ConflictError(
          'already_exists',
          `attempt ${attempt.attempt} of delivery ${attempt.deliveryId} is already recorded`,
        );
      }
      if (failedCondition(reasons, 1)) return true;
      throw err;
    }
  }

  async recordRouting(event: EventRef, _deliveryIds: string[], routedAt: string): Promise<void> {
    // The deliveries of an event are found through `by_event` on the deliveries themselves: the
    // marker needs no links to them. A marker already there keeps its first time.
    const key = routeKey(event);
    const item: Item = {
      ek: S(key),
      eventId: S(event.id),
      source: S(event.source),
      routedAt: S(routedAt),
      tshard: N(shardOf(key)),
    };
    const ttl = this.#ttl(routedAt);
    if (ttl !== undefined) item.ttl = N(ttl);
    const e = new Expr();
    try {
      await this.#db.put({
        TableName: this.#routes,
        Item: item,
        ConditionExpression: `attribute_not_exists(${e.n('ek')})`,
        ...e.params(),
      });
    } catch (err) {
      if (!isConditionFailed(err)) throw err;
    }
  }

  /** One BatchGetItem (per 100 events), eventually consistent (see docs/dynamodb.md). */
  async routed(events: EventRef[]): Promise<boolean[]> {
    if (events.length === 0) return [];
    const keys = events.map(routeKey);
    const found = await this.#db.batchGet(
      this.#routes,
      keys.map((k) => ({ ek: S(k) })),
      false,
    );
    const seen = new Set(found.map((i) => str(i, 'ek')));
    return keys.map((k) => seen.has(k));
  }

  async patch(id: string, update: DeliveryUpdate): Promise<void> {
    const e = new Expr();
    try {
      await this.#db.update({
        TableName: this.#table,
        Key: { id: S(id) },
        UpdateExpression: this.#updateExpression(update, e),
        ConditionExpression: `attribute_exists(${e.n('id')})`,
        ...e.params(),
      });
    } catch (err) {
      if (isConditionFailed(err)) throw new NotFoundError('not_found', `delivery ${id} not found`);
      throw err;
    }
  }

  /** SET the given fields (and the TTL, from `updatedAt`), REMOVE the optional ones given as undefined. */
  #updateExpression(update: DeliveryUpdate, e: Expr): string {
    const sets: string[] = [];
    const removes: string[] = [];
    for (const [field, value] of Object.entries(update)) {
      if (IMMUTABLE.has(field) || !FIELDS.has(field)) continue;
      if (value === undefined) {
        if (!REQUIRED.has(field)) removes.push(e.n(field));
      } else sets.push(`${e.n(field)} = ${e.v(fieldValue(field, value))}`);
    }
    const ttl = this.#ttl(update.updatedAt);
    if (ttl !== undefined) sets.push(`${e.n('ttl')} = ${e.v(N(ttl))}`);
    return [
      sets.length > 0 ? `SET ${sets.join(', ')}` : '',
      removes.length > 0 ? `REMOVE ${removes.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join(' ');
  }

  /**
   * Newest first. By event, subscription or partner through that index (the other filters applied
   * by the service); otherwise through the time index, its shards merged newest first. The index
   * items are then read from the table (one BatchGetItem a page) and checked against the filter
   * again, since an index lags its table.
   */
  async list(filter: DeliveryFilter, page: PageRequest = {}): Promise<Page<DeliveryRecord>> {
    const listing = 'deliveries';
    const limit = pageLimit(page.limit);
    const after = page.cursor ? (decodeCursor(page.cursor, listing, ['string'])[0] as string) : undefined;
    const partitions: Array<{ index: string; attribute: string; value: AttributeValue }> = [];
    const filtered: Array<[string, string | undefined]> = [];
    if (filter.eventId !== undefined) {
      partitions.push({ index: 'by_event', attribute: 'eventId', value: S(filter.eventId) });
      filtered.push(['subscriptionId', filter.subscriptionId], ['partnerId', filter.partnerId]);
    } else if (filter.subscriptionId !== undefined) {
      partitions.push({
        index: 'by_subscription',
        attribute: 'subscriptionId',
        value: S(filter.subscriptionId),
      });
      filtered.push(['partnerId', filter.partnerId]);
    } else if (filter.partnerId !== undefined) {
      partitions.push({ index: 'by_partner', attribute: 'partnerId', value: S(filter.partnerId) });
    } else {
      for (const shard of SHARDS) partitions.push({ index: 'by_time', attribute: 'tshard', value: N(shard) });
    }
    filtered.push(['status', filter.status]);
    const queries: QueryCommandInput[] = partitions.map((p) => {
      const e = new Expr();
      return {
        TableName: this.#table,
        IndexName: p.index,
        KeyConditionExpression: and([
          `${e.n(p.attribute)} = ${e.v(p.value)}`,
          after !== undefined ? `${e.n('tsort')} < ${e.v(S(after))}` : undefined,
        ]),
        FilterExpression: and(
          filtered.map(([field, value]) =>
            value === undefined ? undefined : `${e.n(field)} = ${e.v(S(value))}`,
          ),
        ),
        ScanIndexForward: false,
        ...e.params(),
      };
    });
    const matches = (d: DeliveryRecord) =>
      (filter.eventId === undefined || d.eventId === filter.eventId) &&
      (filter.subscriptionId === undefined || d.subscriptionId === filter.subscriptionId) &&
      (filter.partnerId === undefined || d.partnerId === filter.partnerId) &&
      (filter.status === undefined || d.status === filter.status);
    return collectPage<DeliveryRecord>({
      listing,
      limit,
      source: mergeQueries(this.#db, queries, 'tsort', true, streamPageSize(limit + 1, queries.length)),
      records: rereadById(this.#db, this.#table, deliveryFrom, matches),
      position: (d) => [timeSort(d.createdAt, d.id)],
    });
  }

  async attempts(deliveryId: string): Promise<DeliveryAttempt[]> {
    const e = new Expr();
    const items = await this.#db.queryAll({
      TableName: this.#attempts,
      KeyConditionExpression: `${e.n('deliveryId')} = ${e.v(S(deliveryId))}`,
      ConsistentRead: true,
      ...e.params(),
    });
    return items.map((i) => readDoc<DeliveryAttempt>(i));
  }

  /**
   * Through the time indexes (a range per shard, no Scan): deliveries first, each deleted with a
   * condition that re-checks it is old and finished (or abandoned) as stored now, then its attempts
   * (one Query, BatchWriteItem); then route markers, BatchWriteItem. TTL removes the same items
   * without cost in production; this is the port's exact, on-demand version of it.
   */
  async purgeBefore(before: string, limit: number): Promise<{ deliveries: number; routes: number }> {
    const deliveries = await this.#purgeDeliveries(before, limit);
    const routes = await this.#purgeRoutes(before, limit);
    return { deliveries, routes };
  }

  async #purgeDeliveries(before: string, limit: number): Promise<number> {
    let deleted = 0;
    for (const shard of SHARDS) {
      let start: Item | undefined;
      while (deleted < limit) {
        const e = new Expr();
        const page = await this.#db.query({
          TableName: this.#table,
          IndexName: 'by_time',
          KeyConditionExpression: `${e.n('tshard')} = ${e.v(N(shard))} AND ${e.n('tsort')} < ${e.v(S(before))}`,
          Limit: Math.max(limit - deleted, 10),
          ...(start ? { ExclusiveStartKey: start } : {}),
          ...e.params(),
        });
        // A PENDING one goes only when abandoned (not updated since `before` either): read its time.
        const pending = page.items.filter((i) => str(i, 'status') === 'PENDING').map((i) => ({ id: i.id! }));
        const abandoned = new Set(
          (pending.length > 0 ? await this.#db.batchGet(this.#table, pending, true) : [])
            .filter((i) => (str(i, 'updatedAt') ?? '') < before)
            .map((i) => str(i, 'id')),
        );
        const candidates = page.items
          .filter((i) => str(i, 'status') !== 'PENDING' || abandoned.has(str(i, 'id')))
          .map((i) => str(i, 'id')!)
          .slice(0, limit - deleted);
        const gone = await mapLimit(candidates, PURGE_CONCURRENCY, (id) => this.#deleteOld(id, before));
        deleted += gone.filter(Boolean).length;
        start = page.last;
        if (!start) break;
      }
      if (deleted >= limit) break;
    }
    return deleted;
  }

  /** Deletes an old finished (or abandoned) delivery, then its attempts; false when it is not (any more). */
  async #deleteOld(id: string, before: string): Promise<boolean> {
    const e = new Expr();
    const old = e.v(S(before));
    try {
      await this.#db.delete({
        TableName: this.#table,
        Key: { id: S(id) },
        ConditionExpression: and([
          `${e.n('createdAt')} < ${old}`,
          `${e.n('status')} <> ${e.v(S('PENDING'))} OR ${e.n('updatedAt')} < ${old}`,
        ]),
        ...e.params(),
      });
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
    const a = new Expr();
    const attempts = await this.#db.queryAll({
      TableName: this.#attempts,
      KeyConditionExpression: `${a.n('deliveryId')} = ${a.v(S(id))}`,
      ProjectionExpression: `${a.n('deliveryId')}, ${a.n('attempt')}`,
      ...a.params(),
    });
    await this.#db.batchWrite(
      this.#attempts,
      attempts.map((item) => ({
        DeleteRequest: { Key: { deliveryId: item.deliveryId!, attempt: item.attempt! } },
      })),
    );
    return true;
  }

  async #purgeRoutes(before: string, limit: number): Promise<number> {
    const keys: Item[] = [];
    for (const shard of SHARDS) {
      let start: Item | undefined;
      while (keys.length < limit) {
        const e = new Expr();
        const page = await this.#db.query({
          TableName: this.#routes,
          IndexName: 'by_time',
          KeyConditionExpression: `${e.n('tshard')} = ${e.v(N(shard))} AND ${e.n('routedAt')} < ${e.v(S(before))}`,
          Limit: limit - keys.length,
          ...(start ? { ExclusiveStartKey: start } : {}),
          ...e.params(),
        });
        keys.push(...page.items.map((i) => ({ ek: i.ek! })));
        start = page.last;
        if (!start) break;
      }
      if (keys.length >= limit) break;
    }
    const chunk = keys.slice(0, limit);
    await this.#db.batchWrite(
      this.#routes,
      chunk.map((Key) => ({ DeleteRequest: { Key } })),
    );
    return chunk.length;
  }
}
