/**
 * The DynamoDB store where the service answers in ways dynalite does not on its own: Query pages a
 * filter left empty, an index lagging its table, an entry gone between a refused claim and its
 * read. Each misbehaviour is made on purpose by a client wrapping the real one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  BatchGetItemCommand,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  type QueryCommandOutput,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { Item } from '../../src/engines/dynamodb/db.ts';
import { timeSort } from '../../src/engines/dynamodb/items.ts';
import { createTables, DynamoStore } from '../../src/engines/dynamodb/store.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { heldTask } from '../conformance/store-held-tasks.ts';
import { deadLetterRecord, deliveryAttempt, deliveryRecord, testId } from '../support/fixtures.ts';

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

let prefixes = 0;
const freshPrefix = () => `m${process.pid}-${++prefixes}`;

describe('dynamodb store: answers dynalite does not give on its own', () => {
  let dynalite: Dynalite;
  let client: DynamoDBClient;
  before(async () => {
    dynalite = await startDynalite();
    client = new DynamoDBClient({
      endpoint: dynalite.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
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

  test('a listing reads on past a Query page its filter left empty', async () => {
    const pages: QueryCommandOutput[] = [];
    const send = (async (command: unknown) => {
      const out = await client.send(command as never);
      if (command instanceof QueryCommand) pages.push(out as QueryCommandOutput);
      return out;
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const partnerId = testId('p-empty-');
    // The oldest two FAILED, then 25 newer SUCCESS: newest first, the first Query pages hold no match.
    const failed: string[] = [];
    for (let i = 0; i < 27; i++) {
      const rec = deliveryRecord({
        partnerId,
        createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        status: i < 2 ? 'FAILED' : 'SUCCESS',
      });
      await store.deliveries.ensure(rec);
      if (rec.status === 'FAILED') failed.unshift(rec.id);
    }
    pages.length = 0;
    const page = await store.deliveries.list({ partnerId, status: 'FAILED' }, { limit: 3 });
    assert.ok(
      pages.some((p) => (p.Items?.length ?? 0) === 0 && p.LastEvaluatedKey),
      'a Query page came back empty with more to read',
    );
    assert.deepEqual(
      page.items.map((d) => d.id),
      failed,
    );
    assert.equal(page.next, undefined);
    await store.close();
  });
  test('index items lagging the table are skipped: one gone, one no longer matching; the page still fills and says more follow', async () => {
    // The next Query of `by_partner` answers these index items first (newest), then what it holds.
    let lagging: Item[] | undefined;
    const send = (async (command: unknown) => {
      const out = (await client.send(command as never)) as QueryCommandOutput;
      if (command instanceof QueryCommand && command.input.IndexName === 'by_partner' && lagging) {
        const items = [...lagging, ...(out.Items ?? [])];
        lagging = undefined;
        return { ...out, Items: items, Count: items.length };
      }
      return out;
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const partnerId = testId('p-lag-');
    const [f1, f2, f3] = [1, 2, 3].map((s) =>
      deliveryRecord({ partnerId, createdAt: at(s), status: 'FAILED' }),
    );
    const done = deliveryRecord({ partnerId, createdAt: at(4), status: 'SUCCESS' });
    for (const rec of [f1!, f2!, f3!, done]) await store.deliveries.ensure(rec);
    const indexItem = (id: string, createdAt: string, status: string): Item => ({
      id: { S: id },
      partnerId: { S: partnerId },
      tsort: { S: timeSort(createdAt, id) },
      status: { S: status },
    });
    // A delivery the index still lists but the table no longer holds (expired by TTL).
    const ghost = testId('dlv-ghost-');
    lagging = [indexItem(ghost, at(9), 'SUCCESS')];
    const first = await store.deliveries.list({ partnerId }, { limit: 2 });
    assert.deepEqual(
      first.items.map((d) => d.id),
      [done.id, f3!.id],
    );
    assert.ok(first.next, 'a full page, with more to come, says so');
    const second = await store.deliveries.list({ partnerId }, { limit: 2, cursor: first.next! });
    assert.deepEqual(
      second.items.map((d) => d.id),
      [f2!.id, f1!.id],
    );
    assert.equal(second.next, undefined);
    // The index still shows `done` as FAILED: the table says otherwise, and the table wins.
    lagging = [indexItem(done.id, done.createdAt, 'FAILED')];
    const failed = await store.deliveries.list({ partnerId, status: 'FAILED' }, { limit: 5 });
    assert.deepEqual(
      failed.items.map((d) => d.id),
      [f3!.id, f2!.id, f1!.id],
    );
    await store.close();
  });

  test('a claim refused by an entry released before it could be read claims again', async () => {
    let releaseOnRefusal = false;
    let refusals = 0;
    const send = (async (command: unknown) => {
      try {
        return await client.send(command as never);
      } catch (err) {
        if (!(command instanceof UpdateItemCommand) || !releaseOnRefusal) throw err;
        if ((err as { name?: string }).name !== 'ConditionalCheckFailedException') throw err;
        // The holder releases between the refusal and the claimant's read of the entry.
        releaseOnRefusal = false;
        refusals += 1;
        await client.send(
          new DeleteItemCommand({ TableName: command.input.TableName, Key: command.input.Key }),
        );
        delete (err as { Item?: unknown }).Item;
        throw err;
      }
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const key = testId('ledger-race-');
    const now = 1_767_225_600_000;
    const held = await store.ledger.claim(key, 30_000, now);
    assert.equal(held.status, 'claimed');
    releaseOnRefusal = true;
    const again = await store.ledger.claim(key, 30_000, now + 1);
    assert.equal(refusals, 1, 'the first try was refused by the live claim');
    assert.equal(again.status, 'claimed');
    assert.notEqual((again as { token: string }).token, (held as { token: string }).token);
    assert.equal((await store.ledger.get(key))?.status, 'IN_PROGRESS');
    await store.close();
  });
  test('a Query page that ends short of the index (LastEvaluatedKey) is read on by count', async () => {
    // Pages of one entry: every shard holding two or more needs a second page.
    const send = (async (command: unknown) => {
      if (command instanceof QueryCommand && command.input.IndexName === 'by_due')
        return client.send(new QueryCommand({ ...command.input, Limit: 1 }));
      return client.send(command as never);
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const messages = Array.from({ length: 40 }, (_, i) => ({
      id: `count-${i}`,
      dueAt: 1_800_000_000_000 + i,
      message: { topic: 'retry.t', key: `k${i}`, value: '{}', headers: {}, notBefore: 1_800_000_000_000 + i },
    }));
    await store.scheduled.schedule(messages);
    assert.equal(await store.scheduled.count(), 40);
    assert.equal((await store.scheduled.due(1_900_000_000_000, 100)).length, 40);
    await store.close();
  });

  test('attempts fill the item up to INLINE_ATTEMPT_BYTES exactly before one is kept apart', async () => {
    const store = await freshStore();
    const rec = deliveryRecord({ status: 'PENDING' });
    const attempt = (n: number, body: string) =>
      deliveryAttempt({
        deliveryId: rec.id,
        attempt: n,
        outcome: 'retry',
        statusCode: 500,
        responseBody: body,
      });
    const first = attempt(1, 'a'.repeat(1_000));
    const used = Buffer.byteLength(JSON.stringify(first));
    const bare = Buffer.byteLength(JSON.stringify(attempt(2, '')));
    // The second attempt's document takes the item to 3,000 bytes of attempts, not one more.
    const second = attempt(2, 'b'.repeat(3_000 - used - bare));
    assert.equal(used + Buffer.byteLength(JSON.stringify(second)), 3_000);
    await store.deliveries.recordAttempt(first, { attempts: 1, updatedAt: rec.updatedAt }, rec);
    const before = store.capacity().calls.TransactWriteItems ?? 0;
    await store.deliveries.recordAttempt(second, { attempts: 2, updatedAt: rec.updatedAt });
    assert.equal(store.capacity().calls.TransactWriteItems ?? 0, before, 'kept in the item: no transaction');
    const { Item } = await client.send(
      new GetItemCommand({ TableName: store.tables.event_delivery_status, Key: { id: { S: rec.id } } }),
    );
    assert.equal(Item?.apart, undefined);
    assert.equal(Item?.attBytes?.N, '3000');
    assert.deepEqual(
      (await store.deliveries.attempts(rec.id)).map((a) => a.attempt),
      [1, 2],
    );
    await store.close();
  });

  test('a delivery’s TTL runs from the later of its creation and its last update; an attempt kept apart, from the later of its time and the update', async () => {
    const tablePrefix = freshPrefix();
    await createTables(client, { tablePrefix });
    const store = await DynamoStore.open({ client, tablePrefix, historyTtlDays: 10 });
    const ttlOf = async (table: string, key: Item) => {
      const { Item: item } = await client.send(new GetItemCommand({ TableName: table, Key: key }));
      return item?.ttl?.N === undefined ? undefined : Number(item.ttl.N);
    };
    const day = 86_400;
    const seconds = (iso: string) => Date.parse(iso) / 1000;
    const created = '2026-01-01T00:00:00.000Z';
    const updated = '2026-01-03T00:00:00.000Z';
    const rec = deliveryRecord({ createdAt: created, updatedAt: updated });
    await store.deliveries.ensure(rec);
    assert.equal(
      await ttlOf(store.tables.event_delivery_status, { id: { S: rec.id } }),
      seconds(updated) + 10 * day,
    );
    // A large attempt made later than the update it comes with.
    const late = '2026-01-04T00:00:00.000Z';
    await store.deliveries.recordAttempt(
      deliveryAttempt({ deliveryId: rec.id, attempt: 1, at: late, responseBody: 'x'.repeat(5_000) }),
      { attempts: 1, updatedAt: updated },
    );
    assert.equal(
      await ttlOf(store.tables.delivery_attempt, { deliveryId: { S: rec.id }, attempt: { N: '1' } }),
      seconds(late) + 10 * day,
    );
    // An attempt made earlier than its update lives as long as the delivery.
    const early = '2026-01-02T00:00:00.000Z';
    const laterUpdate = '2026-01-05T00:00:00.000Z';
    await store.deliveries.recordAttempt(
      deliveryAttempt({ deliveryId: rec.id, attempt: 2, at: early, responseBody: 'y'.repeat(5_000) }),
      { attempts: 2, updatedAt: laterUpdate },
    );
    assert.equal(
      await ttlOf(store.tables.delivery_attempt, { deliveryId: { S: rec.id }, attempt: { N: '2' } }),
      seconds(laterUpdate) + 10 * day,
    );
    await store.close();
  });

  test('a route marker keeps its first routing time when the event is routed again', async () => {
    const store = await freshStore();
    const event = { id: testId('evt-again-'), source: '/again' };
    await store.deliveries.recordRouting(event, [], '2026-01-01T00:00:00.000Z');
    await store.deliveries.recordRouting(event, [], '2026-02-01T00:00:00.000Z');
    const { Items } = await client.send(new ScanCommand({ TableName: store.tables.event_route }));
    assert.deepEqual(
      (Items ?? []).map((i) => i.routedAt?.S),
      ['2026-01-01T00:00:00.000Z'],
    );
    await store.close();
  });

  test('`create` with an attempt too large for the item, on a delivery that exists, updates it and keeps the attempt apart', async () => {
    const store = await freshStore();
    const ensured = await store.deliveries.ensure(deliveryRecord({ status: 'PENDING' }));
    await store.deliveries.recordAttempt(
      deliveryAttempt({ deliveryId: ensured.id, attempt: 1, responseBody: 'z'.repeat(5_000) }),
      { attempts: 1, status: 'SUCCESS', updatedAt: ensured.updatedAt },
      ensured,
    );
    const stored = await store.deliveries.get(ensured.id);
    assert.equal(stored?.status, 'SUCCESS');
    assert.equal(stored?.attempts, 1);
    assert.deepEqual(
      (await store.deliveries.attempts(ensured.id)).map((a) => [a.attempt, a.responseBody?.length]),
      [[1, 5_000]],
    );
    await store.close();
  });
  test('a dead letter redriven while the index still shows it pending is not listed as pending', async () => {
    let lagging: Item[] | undefined;
    const send = (async (command: unknown) => {
      const out = (await client.send(command as never)) as QueryCommandOutput;
      if (command instanceof QueryCommand && command.input.IndexName === 'by_subscription' && lagging) {
        const items = [...lagging, ...(out.Items ?? [])];
        lagging = undefined;
        return { ...out, Items: items, Count: items.length };
      }
      return out;
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    const subscriptionId = testId('sub-dl-lag-');
    const [older, newer] = [1, 2].map((s) => deadLetterRecord({ subscriptionId, createdAt: at(s) }));
    for (const dl of [older!, newer!]) await store.deadLetters.insert(dl);
    assert.equal(await store.deadLetters.markRedriven(older!.id, at(5)), true);
    // The index has not seen the redrive yet: it lists the entry without `redrivenAt`.
    lagging = [
      {
        id: { S: older!.id },
        subscriptionId: { S: subscriptionId },
        tsort: { S: timeSort(older!.createdAt, older!.id) },
        stage: { S: older!.stage },
        reason: { S: older!.reason },
      },
    ];
    const pending = await store.deadLetters.list({ subscriptionId, pending: true }, { limit: 10 });
    assert.deepEqual(
      pending.items.map((d) => d.id),
      [newer!.id],
    );
    await store.close();
  });
  test('removing more held tasks than one transaction may hold removes them all, and the count with them', async () => {
    const store = await freshStore();
    const sub = testId('sub-many-held-');
    const tasks = Array.from({ length: 150 }, () => heldTask(sub));
    for (const t of tasks) await store.heldTasks.hold(t);
    assert.equal(await store.heldTasks.count(sub), 150);
    await store.heldTasks.remove(
      sub,
      tasks.map((t) => t.id),
    );
    assert.equal(await store.heldTasks.count(sub), 0);
    assert.deepEqual(await store.heldTasks.list(sub, 10), []);
    assert.ok(!(await store.heldTasks.subscriptions()).includes(sub));
    await store.close();
  });
  test('a required field given as undefined in an update is left as it was, never removed', async () => {
    const store = await freshStore();
    const rec = deliveryRecord({ status: 'PENDING', attempts: 0 });
    await store.deliveries.recordAttempt(
      deliveryAttempt({ deliveryId: rec.id, attempt: 1 }),
      { attempts: 1, status: undefined, updatedAt: rec.updatedAt },
      rec,
    );
    assert.equal((await store.deliveries.get(rec.id))?.status, 'PENDING', 'created with its status');
    await store.deliveries.patch(rec.id, {
      status: undefined,
      attempts: undefined,
      lastError: 'kept',
      updatedAt: '2026-01-02T00:00:00.000Z',
    });
    const stored = await store.deliveries.get(rec.id);
    assert.equal(stored?.status, 'PENDING');
    assert.equal(stored?.attempts, 1);
    assert.equal(stored?.lastError, 'kept');
    await store.close();
  });
  test('BatchGetItem keys unprocessed try after try: a throttling error in the end, not a loop', {
    timeout: 60_000,
  }, async () => {
    let batches = 0;
    const send = (async (command: unknown) => {
      if (command instanceof BatchGetItemCommand) {
        batches += 1;
        return { Responses: {}, UnprocessedKeys: command.input.RequestItems };
      }
      return client.send(command as never);
    }) as DynamoDBClient['send'];
    const store = await freshStore(send);
    await assert.rejects(
      store.deliveries.routed([{ id: testId('evt-throttled-'), source: '/t' }]),
      (err: unknown) => (err as { code?: string }).code === 'store_throttled',
    );
    assert.equal(batches, 10);
    await store.close();
  });

  test('capacity counts what a Query consumes as read units', async () => {
    const store = await freshStore();
    await store.deliveries.ensure(deliveryRecord({ partnerId: 'q-units' }));
    const before = store.capacity();
    await store.deliveries.list({ partnerId: 'q-units' });
    const after = store.capacity();
    assert.equal(after.calls.Query, (before.calls.Query ?? 0) + 1);
    assert.ok(after.readUnits > before.readUnits + 0, 'the Query and the BatchGetItem read');
    assert.equal(after.writeUnits, before.writeUnits, 'a listing writes nothing');
    await store.close();
  });
});
