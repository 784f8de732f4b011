/**
 * The DynamoDB store's access to the service: every call goes through `Db`, which asks for the
 * consumed capacity (`ReturnConsumedCapacity: 'TOTAL'`) and counts it with the calls per operation;
 * batches whose items come back unprocessed are retried with a backoff; and a few helpers read the
 * service's conditional-failure answers.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AttributeValue,
  BatchGetItemCommand,
  type CancellationReason,
  type ConsumedCapacity,
  DeleteItemCommand,
  type DeleteItemCommandInput,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type PutItemCommandInput,
  QueryCommand,
  type QueryCommandInput,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { TransientError, ValidationError } from '../../common/errors.ts';

export type Item = Record<string, AttributeValue>;

/** Capacity consumed through one store, and its calls per operation name. */
export interface CapacityReport {
  readUnits: number;
  writeUnits: number;
  calls: Record<string, number>;
}

/** Tries of a batch whose items keep coming back unprocessed, and the first pause between two (ms). */
const BATCH_TRIES = 10;
const BATCH_BACKOFF_MS = 20;
const BATCH_BACKOFF_MAX_MS = 1_000;
/** Keys per BatchGetItem (the service's limit). */
export const BATCH_GET_MAX = 100;

const READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);

/** The service's calls as the store makes them: capacity counted, batches retried. */
export class Db {
  readonly client: DynamoDBClient;
  readonly #ready: Promise<void> | undefined;
  #readUnits = 0;
  #writeUnits = 0;
  readonly #calls: Record<string, number> = {};

  /** `ready`, when given, is awaited before every call (tables being created). */
  constructor(client: DynamoDBClient, ready?: Promise<void>) {
    this.client = client;
    this.#ready = ready;
    // An unobserved rejection here is reported by the first call that awaits it.
    ready?.catch(() => {});
  }

  /** Resolves once the tables the store waits for exist (at once when it waits for none). */
  async ready(): Promise<void> {
    await this.#ready;
  }

  capacity(): CapacityReport {
    return { readUnits: this.#readUnits, writeUnits: this.#writeUnits, calls: { ...this.#calls } };
  }

  /**
   * The item as it was when a conditional write with `ReturnValuesOnConditionCheckFailure: ALL_OLD`
   * was refused: the one returned with the refusal, or read (consistently) where the service (an
   * emulator) returns none; undefined when there is no item.
   */
  async refusedItem(err: { Item?: Item }, table: string, key: Item): Promise<Item | undefined> {
    return err.Item ?? (await this.get(table, key));
  }

  async get(table: string, key: Item, consistent = true): Promise<Item | undefined> {
    const out = await this.#send('GetItem', (c) =>
      c.send(
        new GetItemCommand({
          TableName: table,
          Key: key,
          ConsistentRead: consistent,
          ReturnConsumedCapacity: 'TOTAL',
        }),
      ),
    );
    return out.Item;
  }

  put(input: PutItemCommandInput): Promise<unknown> {
    return this.#send('PutItem', (c) =>
      c.send(new PutItemCommand({ ...input, ReturnConsumedCapacity: 'TOTAL' })),
    );
  }

  async update(input: UpdateItemCommandInput): Promise<Item | undefined> {
    const out = await this.#send('UpdateItem', (c) =>
      c.send(new UpdateItemCommand({ ...input, ReturnConsumedCapacity: 'TOTAL' })),
    );
    return out.Attributes;
  }

  async delete(input: DeleteItemCommandInput): Promise<Item | undefined> {
    const out = await this.#send('DeleteItem', (c) =>
      c.send(new DeleteItemCommand({ ...input, ReturnConsumedCapacity: 'TOTAL' })),
    );
    return out.Attributes;
  }

  /** One page of a Query. */
  async query(input: QueryCommandInput): Promise<{ items: Item[]; last?: Item }> {
    const out = await this.#send('Query', (c) =>
      c.send(new QueryCommand({ ...input, ReturnConsumedCapacity: 'TOTAL' })),
    );
    return out.LastEvaluatedKey
      ? { items: out.Items ?? [], last: out.LastEvaluatedKey }
      : { items: out.Items ?? [] };
  }

  /** Every item of a Query, page after page. */
  async queryAll(input: QueryCommandInput): Promise<Item[]> {
    const all: Item[] = [];
    let start: Item | undefined;
    do {
      const page = await this.query(start ? { ...input, ExclusiveStartKey: start } : input);
      all.push(...page.items);
      start = page.last;
    } while (start);
    return all;
  }

  transact(items: TransactWriteItem[]): Promise<unknown> {
    return this.#send('TransactWriteItems', (c) =>
      c.send(new TransactWriteItemsCommand({ TransactItems: items, ReturnConsumedCapacity: 'TOTAL' })),
    );
  }

  describe(table: string): Promise<unknown> {
    return this.#send('DescribeTable', (c) => c.send(new DescribeTableCommand({ TableName: table })));
  }

  /**
   * Items by key from one table (in no particular order; absent ones are missing), in batches of
   * 100, unprocessed keys asked again with a backoff. Duplicate keys are asked once.
   */
  async batchGet(table: string, keys: Item[], consistent: boolean): Promise<Item[]> {
    const unique = [...new Map(keys.map((k) => [keyId(k), k])).values()];
    const found: Item[] = [];
    for (let i = 0; i < unique.length; i += BATCH_GET_MAX) {
      let pending: Item[] = unique.slice(i, i + BATCH_GET_MAX);
      for (let tries = 0; pending.length > 0; tries++) {
        if (tries > 0) await backoff(tries);
        if (tries >= BATCH_TRIES) throw unprocessed('BatchGetItem', pending.length);
        const out = await this.#send('BatchGetItem', (c) =>
          c.send(
            new BatchGetItemCommand({
              RequestItems: { [table]: { Keys: pending, ConsistentRead: consistent } },
              ReturnConsumedCapacity: 'TOTAL',
            }),
          ),
        );
        found.push(...(out.Responses?.[table] ?? []));
        pending = out.UnprocessedKeys?.[table]?.Keys ?? [];
      }
    }
    return found;
  }

  async #send<T extends { ConsumedCapacity?: ConsumedCapacity | ConsumedCapacity[] } | object>(
    operation: string,
    call: (client: DynamoDBClient) => Promise<T>,
  ): Promise<T> {
    if (this.#ready) await this.#ready;
    this.#calls[operation] = (this.#calls[operation] ?? 0) + 1;
    let out: T;
    for (let tries = 1; ; tries++) {
      try {
        out = await call(this.client);
        break;
      } catch (err) {
        // A single-item write that met a transaction in flight on its item was not applied, and
        // the SDK does not retry it: tried again once that transaction has ended.
        if ((err as { name?: string }).name === 'TransactionConflictException' && tries < BATCH_TRIES) {
          await backoff(tries);
          continue;
        }
        throw translate(err);
      }
    }
    const consumed = (out as { ConsumedCapacity?: ConsumedCapacity | ConsumedCapacity[] }).ConsumedCapacity;
    for (const c of Array.isArray(consumed) ? consumed : consumed ? [consumed] : []) {
      const units = c.CapacityUnits ?? (c.ReadCapacityUnits ?? 0) + (c.WriteCapacityUnits ?? 0);
      if (READS.has(operation)) this.#readUnits += units;
      else this.#writeUnits += units;
    }
    return out;
  }
}

/** Items too large for DynamoDB are refused for what they are; everything else passes as it came. */
function translate(err: unknown): unknown {
  const name = (err as { name?: string }).name;
  const message = (err as { message?: string }).message ?? '';
  if (name === 'ValidationException' && /item size/i.test(message)) {
    return new ValidationError(
      'item_too_large',
      'the record is larger than a DynamoDB item may be (400 KB)',
      {
        cause: err,
      },
    );
  }
  return err;
}

function unprocessed(operation: string, left: number): TransientError {
  return new TransientError(
    'store_throttled',
    `${operation}: ${left} items were still unprocessed after ${BATCH_TRIES} tries`,
  );
}

/** The pause before try `tries` (1, 2, …): doubling from 20 ms up to 1 s, with jitter. */
export async function backoff(tries: number): Promise<void> {
  const ceiling = Math.min(BATCH_BACKOFF_MAX_MS, BATCH_BACKOFF_MS * 2 ** (tries - 1));
  await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
}

function keyId(key: Item): string {
  return JSON.stringify(Object.entries(key).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Whether a single-item write was refused by its condition. */
export function isConditionFailed(err: unknown): err is { Item?: Item } {
  return (err as { name?: string }).name === 'ConditionalCheckFailedException';
}

/** The cancellation reasons of a refused transaction (one per action), or undefined for another error. */
export function cancellationReasons(err: unknown): CancellationReason[] | undefined {
  if ((err as { name?: string }).name !== 'TransactionCanceledException') return undefined;
  return (err as { CancellationReasons?: CancellationReason[] }).CancellationReasons ?? [];
}

/** Whether action `i` of a refused transaction failed its condition. */
export function failedCondition(reasons: CancellationReason[], i: number): boolean {
  return reasons[i]?.Code === 'ConditionalCheckFailed';
}

/** Whether a transaction was refused only because another one held its items (worth retrying). */
export function isTransactionConflict(reasons: CancellationReason[]): boolean {
  return (
    reasons.some((r) => r.Code === 'TransactionConflict') &&
    reasons.every((r) => r.Code === 'TransactionConflict' || r.Code === 'None')
  );
}

/**
 * Runs a transaction, retrying it (with a backoff) while it is refused for a conflict with another
 * transaction; any other refusal or error is thrown.
 */
export async function transactRetrying(db: Db, items: TransactWriteItem[]): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      await db.transact(items);
      return;
    } catch (err) {
      const reasons = cancellationReasons(err);
      if (!reasons || !isTransactionConflict(reasons) || tries >= BATCH_TRIES) throw err;
      await backoff(tries + 1);
    }
  }
}

/** Runs `fn` over `items` with at most `concurrency` at a time; results in order. */
export async function mapLimit<T, R>(
  items: T[],
  concurrency: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}
