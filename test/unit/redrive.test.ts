/** Redrive (real SQLite store, recording publisher): what a dispatcher sees when a task comes back. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { Operations } from '../../src/operations/service.ts';
import { deadLetterRecord, deliveryRecord } from '../support/fixtures.ts';

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
      subscriptionStatus: async () => 'ACTIVE',
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

test('the sweep re-enqueues tasks held for subscriptions that are no longer PAUSED, and only those', async () => {
  const store = new SqliteStore(':memory:');
  try {
    const statuses: Record<string, 'ACTIVE' | 'PAUSED'> = { 'sub-resumed': 'ACTIVE', 'sub-paused': 'PAUSED' };
    for (const subscriptionId of ['sub-resumed', 'sub-resumed', 'sub-paused', 'sub-deleted']) {
      await store.deadLetters.insert(deadLetterRecord({ subscriptionId, reason: 'subscription_paused' }));
    }
    // A real failure of a resumed subscription is not a held task: it stays for an operator.
    await store.deadLetters.insert(deadLetterRecord({ subscriptionId: 'sub-resumed', reason: 'http_400' }));
    const published: BusMessage[] = [];
    const operations = new Operations({
      deliveries: store.deliveries,
      deadLetters: store.deadLetters,
      publish: async (m) => {
        published.push(...m);
      },
      subscriptionStatus: async (id) => statuses[id],
      clock: () => new Date(),
    });
    assert.equal(await operations.releaseHeld(), 3, 'two of the resumed one, one of the deleted one');
    const pending = (await store.deadLetters.list({ pending: true })).items;
    assert.deepEqual(pending.map((d) => [d.subscriptionId, d.reason]).sort(), [
      ['sub-paused', 'subscription_paused'],
      ['sub-resumed', 'http_400'],
    ]);
    assert.equal(published.length, 3);
    assert.equal(
      await operations.releaseHeld('sub-paused'),
      1,
      'one subscription at once, when it is resumed',
    );
  } finally {
    await store.close();
  }
});
