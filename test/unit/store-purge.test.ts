/** Store housekeeping on a schedule (real SQLite store): the ledger's expired entries and the history retention. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Logger } from '../../src/common/log.ts';
import type { Store } from '../../src/common/ports/store.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { startStorePurge } from '../../src/runtimes/workers.ts';
import { completeInLedger, deadLetterRecord, deliveryAttempt, deliveryRecord } from '../support/fixtures.ts';

const quiet = new Logger({ level: 'error', sink: { write: () => {} } });
const waitMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `done` says so (the purge runs on its own timer); fails after 10 s. */
async function until(what: string, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await done())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await waitMs(10);
  }
}

test('expired ledger entries are purged by the schedule; live ones stay', async () => {
  const store = new SqliteStore(':memory:');
  const now = Date.now();
  await completeInLedger(store.ledger, 'old', 1, now - 10_000);
  await completeInLedger(store.ledger, 'fresh', 60_000, now);
  const stop = startStorePurge(store, quiet, { historyRetentionDays: 0, intervalMs: 20 });
  await until('the purge', async () => (await store.ledger.get('old')) === undefined);
  stop();
  assert.equal(await store.ledger.get('old'), undefined);
  assert.equal((await store.ledger.get('fresh'))?.status, 'COMPLETED');
  await store.close();
});

test('history older than the retention goes (more than one chunk of it); newer history and pending deliveries stay', async () => {
  const store = new SqliteStore(':memory:');
  const now = new Date('2026-03-01T00:00:00.000Z');
  const old = '2026-01-15T00:00:00.000Z'; // 45 days before
  const recent = '2026-02-20T00:00:00.000Z'; // 9 days before
  const olds = Array.from({ length: 1_200 }, () => deliveryRecord({ createdAt: old, status: 'SUCCESS' }));
  await Promise.all(
    olds.map(async (d) => {
      await store.deliveries.recordAttempt(
        deliveryAttempt({ deliveryId: d.id }),
        { status: 'SUCCESS', attempts: 1, updatedAt: old },
        d,
      );
      await store.deliveries.recordRouting({ id: d.eventId, source: d.eventSource }, [d.id], old);
    }),
  );
  const kept = deliveryRecord({ createdAt: recent, status: 'SUCCESS' });
  await store.deliveries.ensure(kept);
  await store.deliveries.recordRouting({ id: kept.eventId, source: kept.eventSource }, [kept.id], recent);
  const stillRetrying = await store.deliveries.ensure(
    deliveryRecord({ createdAt: old, updatedAt: recent, status: 'PENDING' }),
  );
  const abandoned = await store.deliveries.ensure(
    deliveryRecord({ createdAt: old, updatedAt: old, status: 'PENDING' }),
  );
  // Old and PENDING, but its subscription is paused with a task held: on its way, not abandoned.
  const held = await store.deliveries.ensure(
    deliveryRecord({ createdAt: old, updatedAt: old, status: 'PENDING' }),
  );
  await store.heldTasks.hold({
    id: 'held-1',
    subscriptionId: held.subscriptionId,
    heldAt: old,
    topic: 'egress.acme.orders.created',
    value: '{}',
    headers: {},
  });
  const unmatched = { id: 'evt-nobody-wanted', source: '/orders' };
  await store.deliveries.recordRouting(unmatched, [], old);
  await store.deadLetters.insert(deadLetterRecord({ createdAt: old }));
  const newDead = deadLetterRecord({ createdAt: recent });
  await store.deadLetters.insert(newDead);

  const stop = startStorePurge(store, quiet, { historyRetentionDays: 30, intervalMs: 20, clock: () => now });
  // Dead letters go last in a run: once the old one is gone, the run is over.
  await until('a whole run', async () => (await store.deadLetters.list({})).items.length === 1);
  stop();

  assert.equal(await store.deliveries.get(olds[0]!.id), undefined);
  assert.equal(await store.deliveries.get(olds.at(-1)!.id), undefined);
  assert.deepEqual(await store.deliveries.attempts(olds[0]!.id), []);
  assert.deepEqual(
    await store.deliveries.routed([
      { id: olds[0]!.eventId, source: olds[0]!.eventSource },
      unmatched,
      { id: kept.eventId, source: kept.eventSource },
    ]),
    [false, false, true],
    'old routes go (such an event ingested again is routed again), recent ones stay',
  );
  assert.equal((await store.deliveries.get(kept.id))?.id, kept.id);
  assert.equal(
    (await store.deliveries.get(stillRetrying.id))?.status,
    'PENDING',
    'a PENDING delivery still being retried is not purged',
  );
  assert.equal(
    await store.deliveries.get(abandoned.id),
    undefined,
    'an abandoned PENDING delivery (no change in 30 days, nothing held) is purged',
  );
  assert.equal(
    (await store.deliveries.get(held.id))?.status,
    'PENDING',
    'a PENDING delivery whose task is held is not purged',
  );
  assert.deepEqual(
    (await store.deadLetters.list({})).items.map((d) => d.id),
    [newDead.id],
  );
  await store.close();
});

test('what an engine expires by itself has no purge method and is left alone; held tasks are still released', async () => {
  const calls: string[] = [];
  let releases = 0;
  /** A method that records its call and answers `result`. */
  const recorded =
    <T>(name: string, result: T) =>
    async (): Promise<T> => {
      calls.push(name);
      return result;
    };
  // History by TTL, the ledger purged: only the ledger's purge is called.
  const mixed = {
    ledger: { purge: recorded('ledger.purge', 0) },
    deliveries: {},
    deadLetters: {},
  } as unknown as Store;
  // Everything by TTL (the DynamoDB store): nothing to call.
  const ttlOnly = { ledger: {}, deliveries: {}, deadLetters: {} } as unknown as Store;
  for (const [store, expected] of [
    [mixed, ['ledger.purge']],
    [ttlOnly, []],
  ] as const) {
    calls.length = 0;
    releases = 0;
    const stop = startStorePurge(store, quiet, {
      historyRetentionDays: 30,
      intervalMs: 10,
      releaseHeld: async () => {
        releases += 1;
        return 0;
      },
    });
    await until('three runs', async () => releases >= 3);
    stop();
    assert.deepEqual(new Set(calls), new Set(expected));
  }
});

test('a release of held tasks that fails is reported, and the purge after it still runs', async () => {
  const store = new SqliteStore(':memory:');
  const now = Date.now();
  await completeInLedger(store.ledger, 'old', 1, now - 10_000);
  const errors: unknown[] = [];
  const stop = startStorePurge(store, quiet, {
    historyRetentionDays: 0,
    intervalMs: 20,
    releaseHeld: async () => {
      throw new Error('the Partner Info API is unavailable');
    },
    onError: (err) => errors.push(err),
  });
  await until('the purge', async () => (await store.ledger.get('old')) === undefined);
  stop();
  assert.match(String(errors[0]), /Partner Info API is unavailable/);
  await store.close();
});
