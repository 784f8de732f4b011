/** Redrive (real SQLite store, recording publisher): what a dispatcher sees when a task comes back. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deliveryTaskFields, webhookIdFor } from '../../src/common/delivery-task.ts';
import { uuidv7 } from '../../src/common/ids.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import type { HeldTask } from '../../src/common/ports/store.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { Operations, type OperationsDeps } from '../../src/operations/service.ts';
import { completeInLedger, deadLetterRecord, deliveryRecord } from '../support/fixtures.ts';

/** Operations over a store's repositories, nothing paused; `deps` replaces any part. */
function operationsOn(store: SqliteStore, deps: Partial<OperationsDeps> & Pick<OperationsDeps, 'publish'>) {
  return new Operations({
    deliveries: store.deliveries,
    deadLetters: store.deadLetters,
    heldTasks: store.heldTasks,
    ledger: store.ledger,
    holding: async () => false,
    clock: () => new Date(),
    ...deps,
  });
}

/** A task held for `subscriptionId`, keyed by it, on the egress topic. */
function heldTask(subscriptionId: string, value: string): HeldTask {
  return {
    id: uuidv7(),
    subscriptionId,
    heldAt: new Date().toISOString(),
    topic: 'egress.acme.orders.created',
    key: subscriptionId,
    value,
    headers: {},
  };
}

test('the delivery is PENDING before its task is re-enqueued, so a fast dispatcher’s SUCCESS is not overwritten', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const delivery = await store.deliveries.ensure(deliveryRecord({ status: 'FAILED' }));
    await store.deadLetters.insert(
      deadLetterRecord({
        subscriptionId: delivery.subscriptionId,
        value: JSON.stringify({ deliveryId: delivery.id }),
      }),
    );
    const seenAtPublish: string[] = [];
    const operations = new Operations({
      deliveries: store.deliveries,
      deadLetters: store.deadLetters,
      // A dispatcher that delivers the task the moment it is published.
      publish: async (messages: BusMessage[]) => {
        seenAtPublish.push((await store.deliveries.get(delivery.id))?.status ?? 'missing');
        assert.equal(messages.length, 1);
        await store.deliveries.patch(delivery.id, { status: 'SUCCESS', updatedAt: new Date().toISOString() });
      },
      heldTasks: store.heldTasks,
      ledger: store.ledger,
      holding: async () => false,
      clock: () => new Date(),
    });

    const result = await operations.redrive({ subscriptionId: delivery.subscriptionId });

    assert.equal(result.redriven, 1);
    assert.deepEqual(seenAtPublish, ['PENDING']);
    assert.equal((await store.deliveries.get(delivery.id))?.status, 'SUCCESS');
    assert.ok((await store.deadLetters.list({})).items[0]?.redrivenAt, 'the dead letter is marked redriven');
  } finally {
    await store.close();
  }
});

test('held tasks go back as they were read, for subscriptions no longer PAUSED only, and leave the store', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const statuses: Record<string, 'ACTIVE' | 'PAUSED'> = { 'sub-resumed': 'ACTIVE', 'sub-paused': 'PAUSED' };
    const hold = (subscriptionId: string, n: number) =>
      store.heldTasks.hold({
        id: uuidv7(),
        subscriptionId,
        heldAt: new Date().toISOString(),
        topic: n === 1 ? 'retry.dispatcher.5m' : 'egress.acme.orders.created',
        key: subscriptionId,
        value: JSON.stringify({ deliveryId: `msg_${subscriptionId}_${n}`, attempt: n }),
        headers: n === 1 ? { 'x-webhooks-due-at': '123' } : {},
      });
    for (const [sub, n] of [
      ['sub-resumed', 0],
      ['sub-resumed', 1],
      ['sub-paused', 0],
      ['sub-deleted', 0],
    ] as const)
      await hold(sub, n);
    const published: BusMessage[] = [];
    const operations = new Operations({
      deliveries: store.deliveries,
      deadLetters: store.deadLetters,
      heldTasks: store.heldTasks,
      ledger: store.ledger,
      publish: async (m) => {
        published.push(...m);
      },
      holding: async (id: string) => statuses[id] === 'PAUSED',
      clock: () => new Date(),
    });
    assert.equal(await operations.releaseHeld(), 3, 'two of the resumed one, one of the deleted one');
    assert.deepEqual(
      published.map((m) => [
        m.topic,
        deliveryTaskFields(m.value)?.deliveryId,
        m.headers?.['x-webhooks-due-at'],
      ]),
      [
        ['egress.acme.orders.created', 'msg_sub-deleted_0', undefined],
        ['egress.acme.orders.created', 'msg_sub-resumed_0', undefined],
        ['retry.dispatcher.5m', 'msg_sub-resumed_1', '123'],
      ],
      'in the order held, with their topic, attempts and headers',
    );
    assert.deepEqual(await store.heldTasks.subscriptions(), ['sub-paused']);
    assert.equal(await operations.releaseHeld('sub-paused'), 0, 'still paused: nothing goes');
    statuses['sub-paused'] = 'ACTIVE';
    assert.equal(await operations.releaseHeld('sub-paused'), 1);
    assert.deepEqual(await store.heldTasks.subscriptions(), []);
  } finally {
    await store.close();
  }
});

test('a released task’s PENDING delivery record is touched: its retention counts from the release, not the hold', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const longAgo = '2026-01-01T00:00:00.000Z';
    const record = await store.deliveries.ensure(
      deliveryRecord({ subscriptionId: 'sub-1', status: 'PENDING', attempts: 1, updatedAt: longAgo }),
    );
    const done = await store.deliveries.ensure(
      deliveryRecord({ subscriptionId: 'sub-1', status: 'SUCCESS', updatedAt: longAgo }),
    );
    for (const deliveryId of [record.id, done.id, 'dlv_no_record_yet']) {
      await store.heldTasks.hold({
        id: uuidv7(),
        subscriptionId: 'sub-1',
        heldAt: longAgo,
        topic: 'egress.acme.orders.created',
        value: JSON.stringify({ deliveryId, attempt: 1 }),
        headers: {},
      });
    }
    const before = Date.now();
    const operations = operationsOn(store, { publish: async () => {} });
    assert.equal(await operations.releaseHeld('sub-1'), 3);
    assert.ok(
      Date.parse((await store.deliveries.get(record.id))!.updatedAt) >= before,
      'the PENDING one touched',
    );
    assert.equal((await store.deliveries.get(done.id))!.updatedAt, longAgo, 'a finished one left as it was');
  } finally {
    await store.close();
  }
});

test('held tasks of 900 KiB go back in several publishes of at most MAX_PAGE_BYTES (and one more task), all of them', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const value = JSON.stringify({ deliveryId: 'msg_large', blob: 'x'.repeat(900 * 1024) });
    for (let i = 0; i < 7; i++) await store.heldTasks.hold(heldTask('sub-large', value));
    const publishes: number[] = [];
    const operations = operationsOn(store, {
      publish: async (m) => {
        publishes.push(m.length);
      },
    });
    assert.equal(await operations.releaseHeld('sub-large'), 7);
    assert.deepEqual(publishes, [3, 3, 1]);
    assert.deepEqual(await store.heldTasks.subscriptions(), []);
  } finally {
    await store.close();
  }
});

test('a release whose removals do not take stops after one publish, and the sweep still releases the other subscriptions', async () => {
  const store = new SqliteStore(':memory:');
  try {
    for (const sub of ['sub-a-stuck', 'sub-b-fine'])
      await store.heldTasks.hold(heldTask(sub, JSON.stringify({ deliveryId: `msg_${sub}` })));
    const published: string[] = [];
    const operations = operationsOn(store, {
      // A store whose removal of the stuck subscription's tasks silently removes nothing.
      heldTasks: {
        hold: (t) => store.heldTasks.hold(t),
        list: (sub, limit) => store.heldTasks.list(sub, limit),
        count: (sub) => store.heldTasks.count(sub),
        subscriptions: () => store.heldTasks.subscriptions(),
        remove: async (sub, ids) => {
          if (sub !== 'sub-a-stuck') await store.heldTasks.remove(sub, ids);
        },
      },
      publish: async (m) => {
        published.push(...m.map((x) => x.key!));
        if (published.length > 10) throw new Error('published again and again');
      },
    });
    await assert.rejects(operations.releaseHeld(), /held tasks of sub-a-stuck were not removed/);
    assert.deepEqual(published, ['sub-a-stuck', 'sub-b-fine'], 'each published once');
    assert.deepEqual(await store.heldTasks.subscriptions(), ['sub-a-stuck']);
  } finally {
    await store.close();
  }
});

test('two redrives at once re-publish each dead letter once', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const entries = Array.from({ length: 30 }, (_, i) =>
      deadLetterRecord({ subscriptionId: 'sub-1', value: JSON.stringify({ deliveryId: `dlv_${i}` }) }),
    );
    for (const entry of entries) await store.deadLetters.insert(entry);
    const published: BusMessage[] = [];
    const operations = () =>
      new Operations({
        deliveries: store.deliveries,
        deadLetters: store.deadLetters,
        publish: async (messages: BusMessage[]) => {
          // Slow enough that both redrives list the entries before either marks them.
          await new Promise((resolve) => setImmediate(resolve));
          published.push(...messages);
        },
        heldTasks: store.heldTasks,
        ledger: store.ledger,
        holding: async () => false,
        clock: () => new Date(),
      });

    const [a, b] = await Promise.all([
      operations().redrive({ subscriptionId: 'sub-1' }),
      operations().redrive({ subscriptionId: 'sub-1' }),
    ]);

    assert.equal(a.redriven + b.redriven, 30);
    assert.equal(published.length, 30);
    assert.equal(new Set(published.map((m) => m.headers?.['x-webhooks-redrive'])).size, 30);
    assert.deepEqual((await store.deadLetters.list({ pending: true })).items, []);
  } finally {
    await store.close();
  }
});

test('a dead letter whose redrive claim is completed already (redriven, its mark not written yet) is not sent again', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const entry = deadLetterRecord({
      subscriptionId: 'sub-1',
      value: JSON.stringify({ deliveryId: 'dlv_done' }),
    });
    await store.deadLetters.insert(entry);
    await completeInLedger(store.ledger, `redrive:${entry.id}`, 60_000, Date.now());
    const published: BusMessage[] = [];
    const operations = operationsOn(store, {
      publish: async (messages: BusMessage[]) => {
        published.push(...messages);
      },
    });
    await operations.redrive({ subscriptionId: 'sub-1' });
    assert.deepEqual(published, []);
  } finally {
    await store.close();
  }
});

test('one redrive request sends at most `limit` dead letters and says when there are more', async () => {
  const store = new SqliteStore(':memory:');
  try {
    for (let i = 0; i < 25; i++) {
      await store.deadLetters.insert(
        deadLetterRecord({ subscriptionId: 'sub-1', value: JSON.stringify({ deliveryId: `dlv_${i}` }) }),
      );
    }
    const published: BusMessage[] = [];
    const operations = new Operations({
      deliveries: store.deliveries,
      deadLetters: store.deadLetters,
      publish: async (messages: BusMessage[]) => {
        published.push(...messages);
      },
      heldTasks: store.heldTasks,
      ledger: store.ledger,
      holding: async () => false,
      clock: () => new Date(),
    });
    const calls = [];
    for (;;) {
      const result = await operations.redrive({ all: true, limit: 10 });
      calls.push(result.redriven);
      if (!result.more) break;
    }
    assert.deepEqual(calls, [10, 10, 5]);
    assert.equal(published.length, 25);
    await assert.rejects(operations.redrive({ all: true, limit: 0 }), /limit/);
  } finally {
    await store.close();
  }
});

test('the delivery listing shows the webhook-id each delivery was sent under, a legacy msg_ one included', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const current = await store.deliveries.ensure(deliveryRecord({ id: 'dlv_0000000000000001' }));
    const legacy = await store.deliveries.ensure(
      deliveryRecord({ id: 'msg_0123456789abcdef0123456789abcdef' }),
    );
    const operations = new Operations({
      deliveries: store.deliveries,
      deadLetters: store.deadLetters,
      publish: async () => {},
      heldTasks: store.heldTasks,
      ledger: store.ledger,
      holding: async () => false,
      clock: () => new Date(),
    });
    const { items } = await operations.deliveries({}, {});
    const byId = new Map(items.map((d) => [d.id, d.webhookId]));
    assert.equal(byId.get(legacy.id), legacy.id, 'a delivery made before the stable ids keeps its msg_ id');
    assert.equal(
      byId.get(current.id),
      webhookIdFor(current.eventSource, current.eventId, current.subscriptionId),
    );
  } finally {
    await store.close();
  }
});
