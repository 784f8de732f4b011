/**
 * The DynamoDB store against the store conformance suite, on dynalite (in memory, in process), and
 * what the suite does not cover: batches retried, pages across short filtered Query pages, capacity
 * counting, table creation, TTL attributes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  BatchGetItemCommand,
  type BatchGetItemCommandOutput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  type QueryCommandOutput,
} from '@aws-sdk/client-dynamodb';
import { createTables, DynamoStore, tableNames } from '../../src/engines/dynamodb/store.ts';
import { TABLE_DEFS } from '../../src/engines/dynamodb/tables.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { runStoreConformance } from '../conformance/store.ts';
import {
  deadLetterRecord,
  deliveryAttempt,
  deliveryRecord,
  partnerRecord,
  schemaRecord,
  subscriptionRecord,
  testId,
} from '../support/fixtures.ts';

let prefixes = 0;
/** A table prefix of its own for each harness: its tables are fresh. */
const freshPrefix = () => `t${process.pid}-${++prefixes}`;

function clientFor(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
}

runStoreConformance(
  'dynamodb',
  async () => {
    const dynalite = await startDynalite();
    const tablePrefix = freshPrefix();
    await createTables(clientFor(dynalite.endpoint), { tablePrefix });
    return {
      // Each open is a new client over the same tables: closing and opening again is a restart.
      open: async () => DynamoStore.open({ endpoint: dynalite.endpoint, tablePrefix }),
      cleanup: () => dynalite.stop(),
    };
  },
  { expiry: 'ttl' },
);

describe('dynamodb store: beyond the conformance suite', () => {
  let dynalite: Dynalite;
  let client: DynamoDBClient;
  before(async () => {
    dynalite = await startDynalite();
    client = clientFor(dynalite.endpoint);
  });
  after(async () => {
    client.destroy();
    await dynalite.stop();
  });

  /** A store over fresh tables, over `send` when given (a client that misbehaves on purpose). */
  async function freshStore(send?: DynamoDBClient['send']): Promise<DynamoStore> {
    const tablePrefix = freshPrefix();
    await createTables(client, { tablePrefix });
    const wrapped = send ? ({ send, destroy: () => {} } as unknown as DynamoDBClient) : client;
    return DynamoStore.open({ client: wrapped, tablePrefix });
  }

  test('createTables creates every table with its indexes and TTL, and is idempotent', async () => {
    const tablePrefix = freshPrefix();
    await createTables(client, { tablePrefix });
    await createTables(client, { tablePrefix });
    await Promise.all([createTables(client, { tablePrefix }), createTables(client, { tablePrefix })]);
    const names = tableNames(tablePrefix);
    for (const [table, def] of Object.entries(TABLE_DEFS)) {
      const name = names[table as keyof typeof names];
      const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
      assert.equal(Table?.TableStatus, 'ACTIVE', name);
      assert.deepEqual(
        (Table?.GlobalSecondaryIndexes ?? []).map((i) => i.IndexName).sort(),
        def.indexes.map((i) => i.name).sort(),
        name,
      );
      const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: name }));
      assert.equal(ttl.TimeToLiveDescription?.TimeToLiveStatus, def.ttl ? 'ENABLED' : 'DISABLED', name);
      if (def.ttl) assert.equal(ttl.TimeToLiveDescription?.AttributeName, 'ttl');
    }
  });

  test('open with createTables creates the tables; ping fails without them', async () => {
    const tablePrefix = freshPrefix();
    const bare = await DynamoStore.open({ client, tablePrefix });
    await assert.rejects(bare.ping());
    await bare.close();
    const store = await DynamoStore.open({ endpoint: dynalite.endpoint, tablePrefix, createTables: true });
    try {
      await store.ping();
      await store.partners.insert(partnerRecord({ id: 'created' }));
      assert.equal((await store.partners.get('created'))?.id, 'created');
    } finally {
      await store.close();
    }
  });

  test('ping fails when DynamoDB cannot be reached', async () => {
    const store = await DynamoStore.open({ endpoint: 'http://127.0.0.1:1', tablePrefix: 'unreachable' });
    try {
      await assert.rejects(store.ping());
    } finally {
      await store.close();
    }
  });

  test('a transaction or a write that meets another transaction on its item (TransactionConflict) is tried again, not failed', async () => {
    let conflicts = 0;
    const send = (async (command: unknown) => {
      const name = (command as { constructor: { name: string } }).constructor.name;
      if (name === 'TransactWriteItemsCommand' && conflicts === 0) {
        conflicts += 1;
        throw Object.assign(new Error('Transaction cancelled'), {
          name: 'TransactionCanceledException',
          CancellationReasons: [{ Code: 'None' }, { Code: 'TransactionConflict' }],
        });
      }
      if (name === 'PutItemCommand' && conflicts === 1) {
        conflicts += 1;
        throw Object.assign(new Error('Transaction is ongoing for the item'), {
          name: 'TransactionConflictException',
        });
      }
      return client.send(command as never);
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const sub = subscriptionRecord({ id: testId('sub-tc-'), partnerId: 'p', url: 'https://tc.example/hook' });
    await store.subscriptions.insert(sub); // its transaction conflicts once
    const stored = (await store.subscriptions.get(sub.id))!;
    await store.subscriptions.update({ ...stored, description: 'same endpoint' }); // its PutItem conflicts once
    assert.equal(conflicts, 2);
    assert.equal((await store.subscriptions.get(sub.id))?.description, 'same endpoint');
    assert.equal((await store.subscriptions.findByEndpoint(sub))?.id, sub.id);
    await store.close();
  });

  test('an endpoint freed is handed over only to a subscription still on it, whatever a lagging index says', async () => {
    let staleIndex: string[] | undefined;
    const send = (async (command: unknown) => {
      if (command instanceof QueryCommand && command.input.IndexName === 'by_partner' && staleIndex)
        return { Items: staleIndex.map((id) => ({ id: { S: id } })), Count: staleIndex.length };
      return client.send(command as never);
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const x = 'https://x.example/hook';
    const c = subscriptionRecord({ id: testId('sub-c-'), partnerId: 'p', url: x });
    await store.subscriptions.insert(c);
    // C moves to W, freeing X; A takes X, then is deleted, while the index still shows C at X.
    const storedC = (await store.subscriptions.get(c.id))!;
    await store.subscriptions.update({ ...storedC, url: 'https://w.example/hook' });
    const a = subscriptionRecord({ id: testId('sub-a-'), partnerId: 'p', url: x });
    await store.subscriptions.insert(a);
    staleIndex = [c.id, a.id];
    assert.equal(await store.subscriptions.delete(a.id), true);
    staleIndex = undefined;
    assert.equal(await store.subscriptions.findByEndpoint(a), undefined, 'X is free, not held by C (on W)');
    const b = subscriptionRecord({ id: testId('sub-b-'), partnerId: 'p', url: x });
    await store.subscriptions.insert(b);
    assert.equal((await store.subscriptions.findByEndpoint(b))?.id, b.id);
    await store.close();
  });

  test('BatchGetItem: unprocessed keys are asked again', async () => {
    let withheld = 0;
    const send = (async (command: unknown) => {
      if (command instanceof BatchGetItemCommand && withheld === 0) {
        const [table, request] = Object.entries(command.input.RequestItems ?? {})[0]!;
        const keys = request.Keys ?? [];
        withheld = keys.length - 1;
        const partial = new BatchGetItemCommand({
          ...command.input,
          RequestItems: { [table]: { ...request, Keys: keys.slice(0, 1) } },
        });
        const out = (await client.send(partial)) as BatchGetItemCommandOutput;
        return { ...out, UnprocessedKeys: { [table]: { ...request, Keys: keys.slice(1) } } };
      }
      return client.send(command as never);
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const events = Array.from({ length: 4 }, (_, i) => ({ id: testId('evt-bg-'), source: `/s${i}` }));
    for (const e of events.slice(0, 3))
      await store.deliveries.recordRouting(e, [], '2026-01-01T00:00:00.000Z');
    assert.deepEqual(await store.deliveries.routed(events), [true, true, true, false]);
    assert.equal(withheld, 3, 'the first batch was answered in part');
    assert.equal(store.capacity().calls.BatchGetItem, 2, 'the unprocessed keys were asked again');
    await store.close();
  });

  test('a listing reads on past Query pages that its filter left short or empty', async () => {
    const pages: QueryCommandOutput[] = [];
    const send = (async (command: unknown) => {
      const out = await client.send(command as never);
      if (command instanceof QueryCommand) pages.push(out as QueryCommandOutput);
      return out;
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const partnerId = testId('p-short-');
    const failed: string[] = [];
    for (let i = 0; i < 40; i++) {
      const rec = deliveryRecord({
        partnerId,
        createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        status: i % 9 === 0 ? 'FAILED' : 'SUCCESS',
      });
      await store.deliveries.ensure(rec);
      if (rec.status === 'FAILED') failed.unshift(rec.id);
    }
    pages.length = 0;
    const first = await store.deliveries.list({ partnerId, status: 'FAILED' }, { limit: 3 });
    assert.deepEqual(
      first.items.map((d) => d.id),
      failed.slice(0, 3),
    );
    assert.ok(first.next, 'more follow');
    assert.ok(
      pages.some((p) => (p.Items?.length ?? 0) < 3 && p.LastEvaluatedKey),
      'a Query page came back short with more to read',
    );
    const second = await store.deliveries.list(
      { partnerId, status: 'FAILED' },
      { limit: 3, cursor: first.next! },
    );
    assert.deepEqual(
      second.items.map((d) => d.id),
      failed.slice(3),
    );
    assert.equal(second.next, undefined);
    await store.close();
  });

  test('an unfiltered listing merges the time shards newest first, page by page', async () => {
    const store = await freshStore();
    const created = [];
    for (let i = 0; i < 30; i++) {
      const rec = deliveryRecord({ createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i % 11)).toISOString() });
      created.push(await store.deliveries.ensure(rec));
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.deliveries.list({}, { limit: 4, ...(cursor ? { cursor } : {}) });
      assert.ok(page.items.length <= 4);
      seen.push(...page.items.map((d) => d.id));
      cursor = page.next;
    } while (cursor);
    const expected = [...created]
      .sort((a, b) =>
        a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
      )
      .map((d) => d.id);
    assert.deepEqual(seen, expected);
    await store.close();
  });

  test('capacity counts the units DynamoDB reports and the calls per operation', async () => {
    const store = await freshStore();
    const start = store.capacity();
    assert.deepEqual(start, { readUnits: 0, writeUnits: 0, calls: {} });
    await store.schemas.insert(schemaRecord({ domain: 'cap' }));
    const afterInsert = store.capacity();
    assert.ok(afterInsert.writeUnits > 0);
    assert.equal(afterInsert.readUnits, 0);
    assert.deepEqual(afterInsert.calls, { PutItem: 1 });
    await store.schemas.get('cap', 'created', 1);
    const afterGet = store.capacity();
    assert.ok(afterGet.readUnits > 0);
    assert.equal(afterGet.calls.GetItem, 1);
    const rec = deliveryRecord();
    await store.deliveries.recordAttempt(
      deliveryAttempt({ deliveryId: rec.id }),
      { status: 'SUCCESS', attempts: 1, updatedAt: rec.updatedAt },
      rec,
    );
    const afterAttempt = store.capacity();
    assert.equal(afterAttempt.calls.PutItem, 2, 'the delivery with its first attempt: one PutItem');
    assert.equal(afterAttempt.calls.TransactWriteItems, undefined);
    assert.equal(afterAttempt.writeUnits, afterGet.writeUnits + 1, 'an item under 1 KB: one write unit');
    await store.close();
  });

  test('capacity of a schema insert, a delivered event and a ledger claim + complete', async (t) => {
    const store = await freshStore();
    const measure = async (label: string, work: () => Promise<unknown>) => {
      const before = store.capacity();
      await work();
      const after = store.capacity();
      const calls = Object.fromEntries(
        Object.entries(after.calls)
          .map(([op, n]) => [op, n - (before.calls[op] ?? 0)] as const)
          .filter(([, n]) => n > 0),
      );
      const used = {
        read: after.readUnits - before.readUnits,
        write: after.writeUnits - before.writeUnits,
        calls,
      };
      t.diagnostic(`${label}: ${JSON.stringify(used)}`);
      return used;
    };
    const schema = await measure('schema insert', () =>
      store.schemas.insert(schemaRecord({ domain: 'units' })),
    );
    assert.deepEqual(schema.calls, { PutItem: 1 });
    const rec = deliveryRecord();
    const event = { id: rec.eventId, source: rec.eventSource };
    const now = Date.parse(rec.createdAt);
    // The processor: one batch lookup of the markers, then the event's marker.
    const processor = await measure('processor: routed + recordRouting', async () => {
      await store.deliveries.routed([event]);
      await store.deliveries.recordRouting(event, [rec.id], rec.createdAt);
    });
    assert.deepEqual(processor.calls, { BatchGetItem: 1, PutItem: 1 });
    // The dispatcher, first attempt successful: read + claim, then the attempt (creating the
    // delivery) + the ledger's completion.
    const dispatcher = await measure(
      'dispatcher: get + claim, recordAttempt(create) + complete',
      async () => {
        const [, claim] = await Promise.all([
          store.deliveries.get(rec.id),
          store.ledger.claim(rec.id, 30_000, now),
        ]);
        assert.equal(claim.status, 'claimed');
        await Promise.all([
          store.deliveries.recordAttempt(
            deliveryAttempt({ deliveryId: rec.id, at: rec.createdAt }),
            {
              status: 'SUCCESS',
              attempts: 1,
              lastStatusCode: 200,
              updatedAt: rec.createdAt,
              completedAt: rec.createdAt,
            },
            rec,
          ),
          store.ledger.complete(rec.id, (claim as { token: string }).token, 7 * 86_400_000, now),
        ]);
      },
    );
    assert.deepEqual(dispatcher.calls, { GetItem: 1, UpdateItem: 2, PutItem: 1 });
    // Table units (dynalite reports no index writes): claim, the delivery with its attempt, complete.
    assert.equal(dispatcher.write, 3);
    const key = testId('units-');
    const ledger = await measure('ledger claim + complete', async () => {
      const claim = await store.ledger.claim(key, 30_000, now);
      await store.ledger.complete(key, (claim as { token: string }).token, 86_400_000, now);
    });
    assert.deepEqual(ledger.calls, { UpdateItem: 2 });
    await store.close();
  });

  test('attempts live in their delivery item until they outgrow it, then apart: every path keeps the port’s rules', async () => {
    const store = await freshStore();
    const names = store.tables;
    const calls = () => ({ ...store.capacity().calls });
    const attemptItems = async (deliveryId: string) =>
      (
        await client.send(
          new QueryCommand({
            TableName: names.delivery_attempt,
            KeyConditionExpression: 'deliveryId = :d',
            ExpressionAttributeValues: { ':d': { S: deliveryId } },
          }),
        )
      ).Items?.map((i) => Number(i.attempt?.N)) ?? [];
    const rec = deliveryRecord({ status: 'PENDING' });
    const body = (n: number) => 'b'.repeat(n);
    const attempt = (n: number, bytes: number) =>
      deliveryAttempt({
        deliveryId: rec.id,
        attempt: n,
        outcome: 'retry',
        statusCode: 500,
        responseBody: body(bytes),
      });
    const update = (n: number) => ({ attempts: n, status: 'PENDING' as const, updatedAt: rec.updatedAt });
    // 1 and 2 fit in the item (1,000 + 1,000 bytes of body); 3 does not: it goes apart; 4 is small
    // enough for the room left.
    let before = calls();
    await store.deliveries.recordAttempt(attempt(1, 1_000), update(1), rec);
    await store.deliveries.recordAttempt(attempt(2, 1_000), update(2));
    assert.equal((calls().PutItem ?? 0) - (before.PutItem ?? 0), 1);
    assert.equal((calls().UpdateItem ?? 0) - (before.UpdateItem ?? 0), 1);
    assert.deepEqual(await attemptItems(rec.id), [], 'nothing apart yet');
    before = calls();
    await store.deliveries.recordAttempt(attempt(3, 1_000), update(3));
    await store.deliveries.recordAttempt(attempt(4, 10), update(4));
    assert.equal((calls().TransactWriteItems ?? 0) - (before.TransactWriteItems ?? 0), 1);
    assert.deepEqual(await attemptItems(rec.id), [3], 'only 3 apart: 4 still fits in the item');
    assert.deepEqual(
      (await store.deliveries.attempts(rec.id)).map((a) => [a.attempt, a.responseBody?.length]),
      [
        [1, 1_000],
        [2, 1_000],
        [3, 1_000],
        [4, 10],
      ],
    );
    assert.equal((await store.deliveries.get(rec.id))?.attempts, 4);
    // A number taken, whether in the item or apart, is a conflict on either path, and changes nothing.
    for (const [n, bytes] of [
      [1, 10],
      [2, 5_000],
      [3, 10],
      [4, 5_000],
    ] as const) {
      await assert.rejects(
        store.deliveries.recordAttempt(attempt(n, bytes), { ...update(9), lastError: 'no' }),
        (err: unknown) => (err as { code?: string }).code === 'already_exists',
        `attempt ${n} again (${bytes} bytes)`,
      );
    }
    const stored = await store.deliveries.get(rec.id);
    assert.equal(stored?.attempts, 4, 'a refused attempt leaves the delivery as it was');
    assert.equal(stored?.lastError, undefined);
    assert.equal((await store.deliveries.attempts(rec.id)).length, 4);
    // A delivery that is not there: not found on either path; nothing stored.
    const missing = testId('dlv-missing-');
    for (const bytes of [10, 5_000])
      await assert.rejects(
        store.deliveries.recordAttempt({ ...attempt(1, bytes), deliveryId: missing }, update(1)),
        (err: unknown) => (err as { kind?: string }).kind === 'not_found',
      );
    assert.deepEqual(await attemptItems(missing), []);
    // A first attempt too large for any item creates its delivery in a transaction, with it apart.
    const big = deliveryRecord({ status: 'PENDING' });
    await store.deliveries.recordAttempt({ ...attempt(1, 5_000), deliveryId: big.id }, update(1), big);
    assert.deepEqual(await attemptItems(big.id), [1]);
    assert.equal((await store.deliveries.attempts(big.id))[0]?.responseBody?.length, 5_000);
    assert.equal((await store.deliveries.get(big.id))?.id, big.id);
    // `create` on a delivery that exists (made by ensure, without attempts): updated, attempt kept.
    const ensured = await store.deliveries.ensure(deliveryRecord({ status: 'PENDING' }));
    await store.deliveries.recordAttempt(
      { ...attempt(1, 10), deliveryId: ensured.id },
      { ...update(1), status: 'SUCCESS' },
      ensured,
    );
    assert.equal((await store.deliveries.get(ensured.id))?.status, 'SUCCESS');
    assert.deepEqual(
      (await store.deliveries.attempts(ensured.id)).map((a) => a.attempt),
      [1],
    );
    await store.close();
  });

  test('history, ledger and dedupe items carry a TTL attribute (epoch seconds)', async () => {
    const tablePrefix = freshPrefix();
    await createTables(client, { tablePrefix });
    const store = await DynamoStore.open({ client, tablePrefix, historyTtlDays: 10 });
    const names = tableNames(tablePrefix);
    const ttlOf = async (table: string, key: Record<string, { S: string } | { N: string }>) => {
      const { Item } = await client.send(new GetItemCommand({ TableName: table, Key: key }));
      return Item?.ttl?.N === undefined ? undefined : Number(Item.ttl.N);
    };
    const day = 86_400;
    const created = Date.parse('2026-01-01T00:00:00.000Z') / 1000;
    const rec = deliveryRecord();
    await store.deliveries.recordAttempt(
      deliveryAttempt({ deliveryId: rec.id }),
      { status: 'SUCCESS', attempts: 1, updatedAt: rec.updatedAt },
      rec,
    );
    assert.equal(await ttlOf(names.event_delivery_status, { id: { S: rec.id } }), created + 10 * day);
    // An attempt too large for its delivery's item is kept apart, and lives as long as the delivery.
    const large = deliveryAttempt({ deliveryId: rec.id, attempt: 2, responseBody: 'x'.repeat(3_100) });
    await store.deliveries.recordAttempt(large, { attempts: 2, updatedAt: rec.updatedAt });
    assert.equal(
      await ttlOf(names.delivery_attempt, { deliveryId: { S: rec.id }, attempt: { N: '2' } }),
      created + 10 * day,
    );
    const later = '2026-01-05T00:00:00.000Z';
    await store.deliveries.patch(rec.id, { status: 'FAILED', updatedAt: later });
    assert.equal(
      await ttlOf(names.event_delivery_status, { id: { S: rec.id } }),
      Date.parse(later) / 1000 + 10 * day,
      'an update moves the TTL on',
    );
    const dl = deadLetterRecord();
    await store.deadLetters.insert(dl);
    assert.equal(await ttlOf(names.dead_letter, { id: { S: dl.id } }), created + 10 * day);
    const event = { id: testId('evt-ttl-'), source: '/ttl' };
    await store.deliveries.recordRouting(event, [], '2026-01-01T00:00:00.000Z');
    const ek = createHash('sha256')
      .update(JSON.stringify([event.id, event.source]))
      .digest('hex');
    assert.equal(await ttlOf(names.event_route, { ek: { S: ek } }), created + 10 * day);
    assert.deepEqual(await store.deliveries.routed([event]), [true]);
    const key = testId('ttl-key-');
    const claim = await store.ledger.claim(key, 30_000, 1_767_225_600_000);
    assert.equal(
      await ttlOf(names.idempotency_ledger, { key: { S: key } }),
      Math.ceil((1_767_225_600_000 + 30_000) / 1000) + 3600,
      'a claim lives an hour past its lease',
    );
    assert.equal(claim.status, 'claimed');
    await store.ledger.complete(key, (claim as { token: string }).token, 7 * 86_400_000, 1_767_225_600_000);
    assert.equal(
      await ttlOf(names.idempotency_ledger, { key: { S: key } }),
      (1_767_225_600_000 + 7 * 86_400_000) / 1000,
    );
    await store.close();
    const none = await DynamoStore.open({ client, tablePrefix, historyTtlDays: 0 });
    const kept = deliveryRecord();
    await none.deliveries.ensure(kept);
    assert.equal(await ttlOf(names.event_delivery_status, { id: { S: kept.id } }), undefined);
    await none.close();
  });
});
