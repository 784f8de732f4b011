/**
 * `event_delivery_status`, `delivery_attempt` and `event_route` in DynamoDB.
 *
 * A delivery is one item whose fields are attributes of their own, so an update is one UpdateItem
 * (SET the given fields, REMOVE those given as undefined) with no read. Its four indexes (by time,
 * sharded; by event; by subscription; by partner) all sort on `tsort` = createdAt␀id and project
 * only the filter attributes: an update that changes neither keys nor those (a retry: attempts,
 * times, errors) writes no index.
 *
 * Its attempts live in the same item (`atts`, a list of JSON documents; `attnos`, the set of their
 * numbers, which the conditions test) while their documents total at most `INLINE_ATTEMPT_BYTES`:
 * an attempt is then one write, conditional on its number being new — a first-try delivery is one
 * PutItem. An attempt that would take the item past that is an item of its own in
 * `delivery_attempt`, written with its delivery's update in one TransactWriteItems (which costs
 * twice the units per item: why it is not the common path). So an item stays under 4 KB of
 * attempts and no attempt write costs more than the transaction would.
 *
 * A route marker is one item per event (id, source), read by key only. Nothing here is purged:
 * history expires by TTL (`historyTtlDays`), at no write cost.
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
/**
 * Bytes of attempt documents a delivery item holds (its other attributes are ~0.5 KB): with them the
 * item stays under 4 KB, the 4 write units an attempt kept apart costs (two items in a transaction).
 */
const INLINE_ATTEMPT_BYTES = 3_000;

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

/** The error for an attempt whose number the delivery has recorded already. */
function attemptTaken(attempt: DeliveryAttempt): ConflictError {
  return new ConflictError(
    'already_exists',
    `attempt ${attempt.attempt} of delivery ${attempt.deliveryId} is already recorded`,
  );
}

/**
 * What a refused attempt write means, from the delivery item as it was: thrown NotFoundError when
 * there is none, ConflictError when the attempt's number is taken; returns when neither (the
 * item's attempts leave no room for this one).
 */
function refusal(attempt: DeliveryAttempt, item: Item | undefined): void {
  if (!item) throw new NotFoundError('not_found', `delivery ${attempt.deliveryId} not found`);
  if ((item.attnos?.NS ?? []).some((n) => Number(n) === attempt.attempt)) throw attemptTaken(attempt);
}

/** The later of two ISO times. */
function later(a: string, b: string): string {
  return a > b ? a : b;
}

/** The key of an event's route marker: SHA-256 of (id, source), which together identify an event. */
export function routeKey(event: EventRef): string {
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
      const stored = await this.#db.refusedItem(err, this.#table, { id: S(record.id) });
      return stored ? deliveryFrom(stored) : record;
    }
  }

  async get(id: string): Promise<DeliveryRecord | undefined> {
    const item = await this.#db.get(this.#table, { id: S(id) });
    return item ? deliveryFrom(item) : undefined;
  }

  /**
   * The attempt in its delivery's item when it fits (one PutItem with `create`, else one
   * UpdateItem: the number must be new, the delivery must exist, the item's attempts must leave
   * room), else as an item of its own in a transaction with the delivery's update. A refused
   * condition is told apart by the item as it was (returned with the refusal): missing →
   * NotFoundError; the number taken → ConflictError `already_exists`; no room → kept apart.
   */
  async recordAttempt(
    attempt: DeliveryAttempt,
    update: DeliveryUpdate,
    create?: DeliveryRecord,
  ): Promise<void> {
    const doc = JSON.stringify(attempt);
    const bytes = Buffer.byteLength(doc);
    const inline = bytes <= INLINE_ATTEMPT_BYTES;
    if (create && (await this.#createWithAttempt(attempt, doc, bytes, inline, applyUpdate(create, update))))
      return;
    if (inline) {
      const u = new Expr();
      const n = u.v(N(attempt.attempt));
      const [attnos, attBytes] = [u.n('attnos'), u.n('attBytes')];
      const atts = u.n('atts');
      const expression = this.#updateExpression(update, u, [
        `${atts} = list_append(if_not_exists(${atts}, ${u.v({ L: [] })}), ${u.v({ L: [S(doc)] })})`,
      ]);
      try {
        await this.#db.update({
          TableName: this.#table,
          Key: { id: S(attempt.deliveryId) },
          UpdateExpression: `${expression} ADD ${attnos} ${u.v({ NS: [String(attempt.attempt)] })}, ${attBytes} ${u.v(N(bytes))}`,
          ConditionExpression: and([
            `attribute_exists(${u.n('id')})`,
            `NOT contains(${attnos}, ${n})`,
            `attribute_not_exists(${attBytes}) OR ${attBytes} <= ${u.v(N(INLINE_ATTEMPT_BYTES - bytes))}`,
          ]),
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          ...u.params(),
        });
        return;
      } catch (err) {
        if (!isConditionFailed(err)) throw err;
        // Missing or the number taken: thrown; no room left in the item: kept apart, below.
        refusal(attempt, await this.#db.refusedItem(err, this.#table, { id: S(attempt.deliveryId) }));
      }
    }
    await this.#attemptApart(attempt, doc, update);
  }

  /**
   * Creates the delivery with its first attempt (in the item, or apart in a transaction); false,
   * writing nothing, when the delivery exists already.
   */
  async #createWithAttempt(
    attempt: DeliveryAttempt,
    doc: string,
    bytes: number,
    inline: boolean,
    record: DeliveryRecord,
  ): Promise<boolean> {
    const c = new Expr();
    const item: Item = { ...this.#item(record), attnos: { NS: [String(attempt.attempt)] } };
    Object.assign(item, inline ? { atts: { L: [S(doc)] }, attBytes: N(bytes) } : { apart: { BOOL: true } });
    const put = {
      TableName: this.#table,
      Item: item,
      ConditionExpression: `attribute_not_exists(${c.n('id')})`,
      ...c.params(),
    };
    try {
      if (inline) await this.#db.put(put);
      else
        await transactRetrying(this.#db, [
          { Put: this.#attemptItem(attempt, doc, record.updatedAt) },
          { Put: put },
        ]);
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      const reasons = cancellationReasons(err);
      if (reasons && failedCondition(reasons, 1)) return false;
      throw err;
    }
  }

  /** An attempt item of its own, with its delivery's update, in one TransactWriteItems. */
  async #attemptApart(attempt: DeliveryAttempt, doc: string, update: DeliveryUpdate): Promise<void> {
    const u = new Expr();
    const attnos = u.n('attnos');
    const changed: TransactWriteItem = {
      Update: {
        TableName: this.#table,
        Key: { id: S(attempt.deliveryId) },
        UpdateExpression: `${this.#updateExpression(update, u, [`${u.n('apart')} = ${u.v({ BOOL: true })}`])} ADD ${attnos} ${u.v({ NS: [String(attempt.attempt)] })}`,
        ConditionExpression: `attribute_exists(${u.n('id')}) AND NOT contains(${attnos}, ${u.v(N(attempt.attempt))})`,
        ...u.params(),
      },
    };
    try {
      await transactRetrying(this.#db, [{ Put: this.#attemptItem(attempt, doc, update.updatedAt) }, changed]);
    } catch (err) {
      const reasons = cancellationReasons(err);
      if (!reasons) throw err;
      if (failedCondition(reasons, 0)) throw attemptTaken(attempt);
      if (failedCondition(reasons, 1))
        refusal(attempt, await this.#db.get(this.#table, { id: S(attempt.deliveryId) }));
      throw err;
    }
  }

  /**
   * The conditional put of an attempt kept apart (refused when its number is taken). Its TTL is
   * its delivery's at the time; a later change of the delivery moves only the delivery's (see
   * docs/dynamodb.md).
   */
  #attemptItem(attempt: DeliveryAttempt, doc: string, updatedAt: string) {
    const a = new Expr();
    const item: Item = {
      deliveryId: S(attempt.deliveryId),
      attempt: N(attempt.attempt),
      doc: S(doc),
    };
    const ttl = this.#ttl(later(attempt.at, updatedAt));
    if (ttl !== undefined) item.ttl = N(ttl);
    return {
      TableName: this.#attempts,
      Item: item,
      ConditionExpression: `attribute_not_exists(${a.n('deliveryId')})`,
      ...a.params(),
    };
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

  /**
   * SET the given fields (and the TTL, from `updatedAt`, and `extraSets`), REMOVE the optional ones
   * given as undefined.
   */
  #updateExpression(update: DeliveryUpdate, e: Expr, extraSets: string[] = []): string {
    const sets: string[] = [...extraSets];
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

  /** The item's attempts (one consistent GetItem), and those kept apart when it has any (a Query). */
  async attempts(deliveryId: string): Promise<DeliveryAttempt[]> {
    const e = new Expr();
    const item = await this.#db.get(this.#table, { id: S(deliveryId) });
    if (!item) return [];
    const all = (item.atts?.L ?? []).map((v) => JSON.parse(v.S ?? 'null') as DeliveryAttempt);
    if (item.apart?.BOOL) {
      const apart = await this.#db.queryAll({
        TableName: this.#attempts,
        KeyConditionExpression: `${e.n('deliveryId')} = ${e.v(S(deliveryId))}`,
        ConsistentRead: true,
        ...e.params(),
      });
      all.push(...apart.map((i) => readDoc<DeliveryAttempt>(i)));
    }
    return all.sort((a, b) => a.attempt - b.attempt);
  }
}
