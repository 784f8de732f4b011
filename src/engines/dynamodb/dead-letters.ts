/**
 * `dead_letter` in DynamoDB: the record as a document (compressed when large; redrive marks are an
 * attribute of their own, `redrivenAt`), listed oldest first through indexes sorted on
 * `tsort` = createdAt␀id: by subscription, by event, or by time (sharded, merged in order). The
 * indexes project the filter attributes, so every filter is applied by the service.
 */
import type { AttributeValue, QueryCommandInput } from '@aws-sdk/client-dynamodb';
import { ConflictError } from '../../common/errors.ts';
import type { DeadLetterRecord } from '../../common/model.ts';
import type { DeadLetterFilter, DeadLetterRepository, Page, PageRequest } from '../../common/ports/store.ts';
import { pageLimit } from '../../common/ports/store.ts';
import { type Db, type Item, isConditionFailed } from './db.ts';
import {
  and,
  decodeCursor,
  docAttributes,
  Expr,
  N,
  readDoc,
  S,
  SHARDS,
  shardOf,
  str,
  timeSort,
  ttlAfter,
} from './items.ts';
import { collectPage, mergeQueries, rereadById, streamPageSize } from './listing.ts';

function deadLetterFrom(item: Item): DeadLetterRecord {
  const record = readDoc<DeadLetterRecord>(item);
  const redrivenAt = str(item, 'redrivenAt');
  return redrivenAt === undefined ? record : { ...record, redrivenAt };
}

/** The DynamoDB implementation of the dead-letter repository. */
export class DynamoDeadLetters implements DeadLetterRepository {
  readonly #db: Db;
  readonly #table: string;
  readonly #ttlDays: number;

  constructor(db: Db, table: string, ttlDays: number) {
    this.#db = db;
    this.#table = table;
    this.#ttlDays = ttlDays;
  }

  async insert(record: DeadLetterRecord): Promise<void> {
    const { redrivenAt, ...doc } = record;
    const item: Item = {
      id: S(record.id),
      stage: S(record.stage),
      reason: S(record.reason),
      createdAt: S(record.createdAt),
      tshard: N(shardOf(record.id)),
      tsort: S(timeSort(record.createdAt, record.id)),
      ...docAttributes(doc),
    };
    if (redrivenAt !== undefined) item.redrivenAt = S(redrivenAt);
    if (record.subscriptionId !== undefined) item.subscriptionId = S(record.subscriptionId);
    if (record.eventId !== undefined) item.eventId = S(record.eventId);
    const ttl = this.#ttlDays > 0 ? ttlAfter(record.createdAt, this.#ttlDays) : undefined;
    if (ttl !== undefined) item.ttl = N(ttl);
    const e = new Expr();
    try {
      await this.#db.put({
        TableName: this.#table,
        Item: item,
        ConditionExpression: `attribute_not_exists(${e.n('id')})`,
        ...e.params(),
      });
    } catch (err) {
      if (isConditionFailed(err))
        throw new ConflictError('already_exists', `dead letter ${record.id} already exists`);
      throw err;
    }
  }

  /** Oldest first. `pending: true` lists entries not yet redriven, `pending: false` the redriven ones. */
  async list(filter: DeadLetterFilter, page: PageRequest = {}): Promise<Page<DeadLetterRecord>> {
    const listing = 'dead-letters';
    const limit = pageLimit(page.limit);
    const after = page.cursor ? (decodeCursor(page.cursor, listing, ['string'])[0] as string) : undefined;
    const partitions: Array<{ index: string; attribute: string; value: AttributeValue }> = [];
    const equal: Array<[string, string | undefined]> = [
      ['stage', filter.stage],
      ['reason', filter.reason],
    ];
    if (filter.eventId !== undefined) {
      partitions.push({ index: 'by_event', attribute: 'eventId', value: S(filter.eventId) });
      equal.push(['subscriptionId', filter.subscriptionId]);
    } else if (filter.subscriptionId !== undefined) {
      partitions.push({
        index: 'by_subscription',
        attribute: 'subscriptionId',
        value: S(filter.subscriptionId),
      });
    } else {
      for (const shard of SHARDS) partitions.push({ index: 'by_time', attribute: 'tshard', value: N(shard) });
    }
    const queries: QueryCommandInput[] = partitions.map((p) => {
      const e = new Expr();
      const pending =
        filter.pending === undefined
          ? undefined
          : `${filter.pending ? 'attribute_not_exists' : 'attribute_exists'}(${e.n('redrivenAt')})`;
      return {
        TableName: this.#table,
        IndexName: p.index,
        KeyConditionExpression: and([
          `${e.n(p.attribute)} = ${e.v(p.value)}`,
          after !== undefined ? `${e.n('tsort')} > ${e.v(S(after))}` : undefined,
        ]),
        FilterExpression: and([
          ...equal.map(([field, value]) =>
            value === undefined ? undefined : `${e.n(field)} = ${e.v(S(value))}`,
          ),
          pending,
        ]),
        ...e.params(),
      };
    });
    const matches = (d: DeadLetterRecord) =>
      (filter.stage === undefined || d.stage === filter.stage) &&
      (filter.subscriptionId === undefined || d.subscriptionId === filter.subscriptionId) &&
      (filter.eventId === undefined || d.eventId === filter.eventId) &&
      (filter.reason === undefined || d.reason === filter.reason) &&
      (filter.pending === undefined || filter.pending === (d.redrivenAt === undefined));
    return collectPage<DeadLetterRecord>({
      listing,
      limit,
      source: mergeQueries(this.#db, queries, 'tsort', false, streamPageSize(limit + 1, queries.length)),
      records: rereadById(this.#db, this.#table, deadLetterFrom, matches),
      position: (d) => [timeSort(d.createdAt, d.id)],
      sizeOf: (d) => d.value.length + (d.lastError?.length ?? 0),
    });
  }

  async markRedriven(id: string, at: string): Promise<boolean> {
    const e = new Expr();
    const redrivenAt = e.n('redrivenAt');
    try {
      await this.#db.update({
        TableName: this.#table,
        Key: { id: S(id) },
        UpdateExpression: `SET ${redrivenAt} = ${e.v(S(at))}`,
        ConditionExpression: `attribute_exists(${e.n('id')}) AND attribute_not_exists(${redrivenAt})`,
        ...e.params(),
      });
      return true;
    } catch (err) {
      if (isConditionFailed(err)) return false;
      throw err;
    }
  }
}
