/**
 * Tests that close gaps found by mutation testing of operations (`src/operations/`): what a redrive
 * claims, sends and keeps (twice, concurrently, after its claim's lease, with a failing publish,
 * with entries claimed by another redrive), listings' filters, limits and cursors, bad input to each
 * operations route (400 naming the field), releases of held tasks at once, and when scheduled
 * messages are published. Real SQLite stores in temp dirs; the routes over a real loopback server.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import { webhookIdOfDelivery } from '../../src/common/delivery-task.ts';
import { uuidv7 } from '../../src/common/ids.ts';
import type { DeadLetterRecord } from '../../src/common/model.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import type { ScheduledMessage } from '../../src/common/ports/store.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { publishDue } from '../../src/operations/scheduled.ts';
import { Operations, type OperationsDeps } from '../../src/operations/service.ts';
import { completeInLedger, deadLetterRecord, deliveryAttempt, deliveryRecord } from '../support/fixtures.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { latch } from '../support/wait.ts';

/** A SQLite store in a fresh temp dir, closed and removed by `done`. */
async function tempStore(): Promise<{ store: SqliteStore; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-ops-'));
  const store = new SqliteStore(join(dir, 'store.db'));
  return {
    store,
    done: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Operations over a store's repositories, nothing paused, publishing into `published`. */
function operationsOn(
  store: SqliteStore,
  published: BusMessage[],
  deps: Partial<OperationsDeps> = {},
): Operations {
  return new Operations({
    deliveries: store.deliveries,
    deadLetters: store.deadLetters,
    heldTasks: store.heldTasks,
    ledger: store.ledger,
    publish: async (messages) => {
      published.push(...messages);
    },
    holding: async () => false,
    clock: () => new Date(),
    ...deps,
  });
}

/** `n` pending dispatcher dead letters of one subscription, oldest first (createdAt one second apart). */
async function insertDeadLetters(store: SqliteStore, subscriptionId: string, n: number) {
  const entries: DeadLetterRecord[] = [];
  const start = Date.now() - 3_600_000;
  for (let i = 0; i < n; i++) {
    const entry = deadLetterRecord({
      id: `dl-${subscriptionId}-${String(i).padStart(3, '0')}`,
      subscriptionId,
      value: JSON.stringify({ deliveryId: `dlv_${subscriptionId}_${i}` }),
      createdAt: new Date(start + i * 1000).toISOString(),
    });
    await store.deadLetters.insert(entry);
    entries.push(entry);
  }
  return entries;
}

describe('redrive: claiming, marking and what is kept', () => {
  test('a dispatcher dead letter goes back with its topic, key, value and headers; its delivery keeps its id, webhook-id, attempts and history', async () => {
    const { store, done } = await tempStore();
    try {
      const at = new Date().toISOString();
      const delivery = await store.deliveries.ensure(
        deliveryRecord({ status: 'PENDING', createdAt: at, updatedAt: at }),
      );
      for (const attempt of [1, 2]) {
        await store.deliveries.recordAttempt(
          deliveryAttempt({ deliveryId: delivery.id, attempt, statusCode: 503, outcome: 'retry', at }),
          {
            status: attempt === 2 ? 'FAILED' : 'PENDING',
            attempts: attempt,
            lastStatusCode: 503,
            updatedAt: at,
          },
        );
      }
      const entry = deadLetterRecord({
        subscriptionId: delivery.subscriptionId,
        eventId: delivery.eventId,
        attempts: 2,
        key: 'partition-key-7',
        value: JSON.stringify({ deliveryId: delivery.id, attempt: 2 }),
        headers: { ce_id: 'evt-7', 'content-type': 'application/json' },
      });
      await store.deadLetters.insert(entry);
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published);
      const [before] = (await ops.deliveries({ subscriptionId: delivery.subscriptionId }, {})).items;

      const result = await ops.redrive({ subscriptionId: delivery.subscriptionId });

      assert.deepEqual(result, { redriven: 1, ids: [entry.id], more: false });
      assert.equal(published.length, 1);
      assert.deepEqual(published[0], {
        topic: entry.topic,
        key: 'partition-key-7',
        value: entry.value,
        headers: {
          ce_id: 'evt-7',
          'content-type': 'application/json',
          [HEADERS.redrive]: entry.id,
          [HEADERS.originTopic]: entry.topic,
        },
      });
      const [afterRedrive] = (await ops.deliveries({ subscriptionId: delivery.subscriptionId }, {})).items;
      assert.equal(afterRedrive?.id, delivery.id, 'the same delivery record');
      assert.equal(afterRedrive?.status, 'PENDING');
      assert.equal(afterRedrive?.attempts, 2, 'its attempts count on: a redrive makes no attempt');
      assert.equal(afterRedrive?.webhookId, before?.webhookId);
      assert.equal(
        afterRedrive?.webhookId,
        webhookIdOfDelivery(delivery.id, delivery.eventSource, delivery.eventId, delivery.subscriptionId),
      );
      assert.deepEqual(
        afterRedrive?.attemptLog.map((a) => [a.attempt, a.statusCode]),
        [
          [1, 503],
          [2, 503],
        ],
        'the attempt history is kept',
      );
      const [kept] = (await store.deadLetters.list({ subscriptionId: delivery.subscriptionId })).items;
      assert.ok(kept?.redrivenAt, 'the dead letter stays listed, marked redriven');
      assert.deepEqual({ ...kept, redrivenAt: undefined }, { ...entry, redrivenAt: undefined });
    } finally {
      await done();
    }
  });

  test('a redriven dead letter is not sent again by a later redrive, long after its claim’s lease', async () => {
    const { store, done } = await tempStore();
    try {
      await insertDeadLetters(store, 'sub-once', 3);
      let now = Date.now();
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published, { clock: () => new Date(now) });
      assert.equal((await ops.redrive({ subscriptionId: 'sub-once' })).redriven, 3);
      now += 24 * 3_600_000; // a day later: the redrive claims have expired, and the retention run purged them
      assert.equal(await store.ledger.purge?.(now), 3, 'the expired redrive claims purged');
      assert.deepEqual(await ops.redrive({ all: true }), { redriven: 0, ids: [], more: false });
      assert.deepEqual(await ops.redrive({ subscriptionId: 'sub-once' }), {
        redriven: 0,
        ids: [],
        more: false,
      });
      assert.equal(published.length, 3, 'each sent once');
    } finally {
      await done();
    }
  });

  test('a failing publish fails the redrive, marks nothing, and leaves every entry to a redrive right after', async () => {
    const { store, done } = await tempStore();
    try {
      const entries = await insertDeadLetters(store, 'sub-fail', 4);
      let failing = true;
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published, {
        publish: async (messages) => {
          if (failing) throw new Error('bus unavailable');
          published.push(...messages);
        },
      });
      await assert.rejects(ops.redrive({ subscriptionId: 'sub-fail' }), /bus unavailable/);
      assert.equal(
        (await store.deadLetters.list({ subscriptionId: 'sub-fail', pending: true })).items.length,
        4,
        'none marked redriven',
      );
      failing = false;
      // At once: within the lease of the failed redrive's claims, which it released.
      const again = await ops.redrive({ subscriptionId: 'sub-fail' });
      assert.deepEqual(
        again.ids,
        entries.map((e) => e.id),
      );
      assert.deepEqual(
        published.map((m) => m.headers?.[HEADERS.redrive]),
        entries.map((e) => e.id),
      );
    } finally {
      await done();
    }
  });

  test('entries claimed by another redrive do not count toward `limit`, and a page all claimed is passed over', async () => {
    const { store, done } = await tempStore();
    try {
      const entries = await insertDeadLetters(store, 'sub-claimed', 30);
      const now = Date.now();
      // The first three are being redriven by another request (claimed, not yet marked).
      for (const e of entries.slice(0, 3)) {
        const claim = await store.ledger.claim(`redrive:${e.id}`, 60_000, now);
        assert.equal(claim.status, 'claimed');
      }
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published);
      const first = await ops.redrive({ subscriptionId: 'sub-claimed', limit: 10 });
      assert.deepEqual(
        first.ids,
        entries.slice(3, 13).map((e) => e.id),
        'ten sent, none of the claimed ones',
      );
      assert.equal(first.more, true);
      // The next ten are redriven by another request already (completed, marks not written yet).
      for (const e of entries.slice(13, 23))
        await completeInLedger(store.ledger, `redrive:${e.id}`, 60_000, now);
      const second = await ops.redrive({ subscriptionId: 'sub-claimed', limit: 10 });
      assert.deepEqual(
        second.ids,
        entries.slice(23, 30).map((e) => e.id),
        'the page of ten claimed elsewhere is passed over, the rest sent',
      );
      assert.equal(published.length, 17);
    } finally {
      await done();
    }
  });

  test('one request goes on past a batch of 500 dead letters, up to its `limit`', async () => {
    const { store, done } = await tempStore();
    try {
      const start = Date.now() - 3_600_000;
      await Promise.all(
        Array.from({ length: 502 }, (_, i) =>
          store.deadLetters.insert(
            deadLetterRecord({
              id: `dl-many-${String(i).padStart(4, '0')}`,
              subscriptionId: 'sub-many',
              createdAt: new Date(start + i * 1000).toISOString(),
            }),
          ),
        ),
      );
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published);
      const first = await ops.redrive({ subscriptionId: 'sub-many', limit: 501 });
      assert.equal(first.redriven, 501);
      assert.equal(first.more, true);
      const rest = await ops.redrive({ subscriptionId: 'sub-many' });
      assert.deepEqual(rest, { redriven: 1, ids: ['dl-many-0501'], more: false });
      assert.equal(new Set(published.map((m) => m.headers?.[HEADERS.redrive])).size, 502);
    } finally {
      await done();
    }
  });

  test('a redrive by stage sends that stage’s only; a processor dead letter goes to its subscription only, one without a subscription to all', async () => {
    const { store, done } = await tempStore();
    try {
      const processor = (subscriptionId: string | undefined) => {
        const { subscriptionId: _, ...entry } = deadLetterRecord({
          stage: 'processor',
          reason: 'mapping_failed',
          topic: 'ingress.orders.created.v1',
          value: JSON.stringify({ specversion: '1.0', id: 'evt-1' }),
        });
        return subscriptionId ? { ...entry, subscriptionId } : entry;
      };
      await store.deadLetters.insert(processor('sub-only'));
      const dispatcher = deadLetterRecord({ subscriptionId: 'sub-only' });
      await store.deadLetters.insert(dispatcher);
      await store.deadLetters.insert(processor(undefined));
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published);
      const result = await ops.redrive({ stage: 'processor' });
      assert.equal(result.redriven, 2, 'the processor’s only');
      assert.deepEqual(
        published.map((m) => [m.topic, m.headers?.[HEADERS.onlySubscription]]),
        [
          ['ingress.orders.created.v1', 'sub-only'],
          ['ingress.orders.created.v1', undefined],
        ],
      );
      assert.deepEqual(await ops.redrive({ stage: 'dispatcher' }), {
        redriven: 1,
        ids: [dispatcher.id],
        more: false,
      });
    } finally {
      await done();
    }
  });
});

describe('held tasks: listing and releasing', () => {
  /** `n` tasks held for `subscriptionId`, in order, each of its own delivery and event. */
  async function hold(store: SqliteStore, subscriptionId: string, n: number) {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = uuidv7();
      await store.heldTasks.hold({
        id,
        subscriptionId,
        heldAt: new Date().toISOString(),
        topic: 'egress.acme.orders.created',
        key: subscriptionId,
        value: JSON.stringify({ deliveryId: `dlv_${subscriptionId}_${i}`, event: { id: `evt-${i}` } }),
        headers: {},
      });
      ids.push(id);
    }
    return ids;
  }

  test('pages keep to `limit`, name the task’s delivery and event, and the last page has no `next`', async () => {
    const { store, done } = await tempStore();
    try {
      const ids = await hold(store, 'sub-held', 5);
      const ops = operationsOn(store, []);
      const first = await ops.held('sub-held', { limit: 2 });
      assert.equal(first.total, 5);
      assert.deepEqual(first.items, [
        { id: ids[0], heldAt: first.items[0]!.heldAt, deliveryId: 'dlv_sub-held_0', eventId: 'evt-0' },
        { id: ids[1], heldAt: first.items[1]!.heldAt, deliveryId: 'dlv_sub-held_1', eventId: 'evt-1' },
      ]);
      assert.ok(first.next);
      const second = await ops.held('sub-held', { limit: 2, cursor: first.next });
      assert.deepEqual(
        second.items.map((t) => t.id),
        ids.slice(2, 4),
      );
      const last = await ops.held('sub-held', { limit: 2, cursor: second.next! });
      assert.deepEqual(
        last.items.map((t) => t.id),
        ids.slice(4),
      );
      assert.equal(last.next, null, 'no page after the last');
      const exact = await ops.held('sub-held', { limit: 5 });
      assert.equal(exact.items.length, 5);
      assert.equal(exact.next, null, 'a full page that is the last has no `next` either');
    } finally {
      await done();
    }
  });

  test('a cursor of another subscription, of another listing, or with an id too long is refused (cursor_invalid)', async () => {
    const { store, done } = await tempStore();
    try {
      await hold(store, 'sub-a', 3);
      await hold(store, 'sub-b', 3);
      const ops = operationsOn(store, []);
      const ofA = (await ops.held('sub-a', { limit: 1 })).next!;
      assert.equal(
        (await ops.held('sub-a', { limit: 1, cursor: ofA })).items.length,
        1,
        'its own cursor goes',
      );
      const encode = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const lastOfB = (await ops.held('sub-b', {})).items.at(-1)!.id;
      for (const cursor of [
        ofA, // issued for sub-a
        encode(['dlq', 'sub-b', lastOfB]),
        encode(['held', 'sub-b', 'x'.repeat(257)]),
        encode(['held', 'sub-b']),
        encode(['held', 'sub-b', 7]),
        'not-a-cursor',
      ]) {
        await assert.rejects(
          ops.held('sub-b', { cursor }),
          (err: any) => err.code === 'cursor_invalid' && err.details?.[0]?.field === 'cursor',
          `refused: ${Buffer.from(cursor, 'base64url').toString()}`,
        );
      }
      assert.equal(
        (await ops.held('sub-b', { cursor: encode(['held', 'sub-b', 'x'.repeat(256)]) })).total,
        3,
        'an id of 256 characters is a cursor',
      );
    } finally {
      await done();
    }
  });

  test('two releases of one subscription at once publish each held task once', async () => {
    const { store, done } = await tempStore();
    try {
      await hold(store, 'sub-resumed', 4);
      const gate = latch();
      const entered = latch();
      const published: BusMessage[] = [];
      const ops = operationsOn(store, published, {
        publish: async (messages) => {
          entered.open();
          await gate.opened;
          published.push(...messages);
        },
      });
      const first = ops.releaseHeld('sub-resumed');
      await entered.opened; // the first release is publishing its tasks
      const second = ops.releaseHeld('sub-resumed');
      gate.open();
      assert.deepEqual(await Promise.all([first, second]), [4, 0]);
      assert.equal(published.length, 4);
      assert.deepEqual(await store.heldTasks.subscriptions(), []);
    } finally {
      await done();
    }
  });
});

describe('publishing scheduled messages when due', () => {
  const message = (id: string, dueAt: number, topic = 'retry.dispatcher.due'): ScheduledMessage => ({
    id,
    dueAt,
    message: { topic, key: id, value: `{"n":"${id}"}`, headers: { 'x-id': id }, notBefore: dueAt },
  });

  test('what is due at or before now goes, without its notBefore, once; what is due later stays', async () => {
    const { store, done } = await tempStore();
    try {
      const t = 1_800_000_000_000;
      await store.scheduled.schedule([message('a', t - 1), message('b', t), message('c', t + 1)]);
      const published: BusMessage[] = [];
      const publish = async (m: BusMessage[]) => {
        published.push(...m);
      };
      assert.equal(await publishDue({ scheduled: store.scheduled, publish, clock: () => t }), 2);
      assert.deepEqual(published, [
        { topic: 'retry.dispatcher.due', key: 'a', value: '{"n":"a"}', headers: { 'x-id': 'a' } },
        { topic: 'retry.dispatcher.due', key: 'b', value: '{"n":"b"}', headers: { 'x-id': 'b' } },
      ]);
      assert.equal(
        await publishDue({ scheduled: store.scheduled, publish, clock: () => t }),
        0,
        'forgotten once published',
      );
      assert.equal(await store.scheduled.count(), 1);
      assert.equal(await publishDue({ scheduled: store.scheduled, publish, clock: () => t + 1 }), 1);
      assert.equal(await store.scheduled.count(), 0);
    } finally {
      await done();
    }
  });

  test('rounds of `batch` go on until a short one (a last full round included), and a failed publish keeps them', async () => {
    const { store, done } = await tempStore();
    try {
      const t = 1_800_000_000_000;
      await store.scheduled.schedule(Array.from({ length: 4 }, (_, i) => message(`m${i}`, t - 10 + i)));
      const rounds: number[] = [];
      const publish = async (m: BusMessage[]) => {
        rounds.push(m.length);
      };
      assert.equal(await publishDue({ scheduled: store.scheduled, publish, clock: () => t, batch: 2 }), 4);
      assert.deepEqual(rounds, [2, 2], 'a round after a full one finds nothing and ends it');
      assert.equal(await store.scheduled.count(), 0);

      await store.scheduled.schedule([message('x', t - 1)]);
      await assert.rejects(
        publishDue({
          scheduled: store.scheduled,
          publish: async () => {
            throw new Error('bus down');
          },
          clock: () => t,
        }),
        /bus down/,
      );
      assert.equal(await store.scheduled.count(), 1, 'kept for the next run');
    } finally {
      await done();
    }
  });

  test('no round starts at or after the deadline', async () => {
    const { store, done } = await tempStore();
    try {
      const t = 1_800_000_000_000;
      await store.scheduled.schedule([message('late', t - 1)]);
      let published = 0;
      const publish = async (m: BusMessage[]) => {
        published += m.length;
      };
      assert.equal(
        await publishDue({ scheduled: store.scheduled, publish, clock: () => t, deadline: t }),
        0,
        'the deadline reached: nothing more',
      );
      assert.equal(published, 0);
      assert.equal(
        await publishDue({ scheduled: store.scheduled, publish, clock: () => t, deadline: t + 1 }),
        1,
      );
    } finally {
      await done();
    }
  });
});

describe('operations routes: filters, cursors and bad input', () => {
  let server: TestServer;
  const subscriptionId = `sub-${uuidv7()}`;
  const now = Date.now();
  const iso = (offsetSeconds: number) => new Date(now - 3_600_000 + offsetSeconds * 1000).toISOString();

  before(async () => {
    server = await startTestServer();
    const store = server.running.platform.store;
    // Deliveries of two partners, one FAILED; dead letters of both stages and two reasons, one redriven.
    for (const [i, partnerId, status] of [
      [0, 'p-one', 'SUCCESS'],
      [1, 'p-two', 'FAILED'],
      [2, 'p-one', 'PENDING'],
    ] as const) {
      await store.deliveries.ensure(
        deliveryRecord({
          id: `dlv_${subscriptionId}_${i}`,
          subscriptionId,
          partnerId,
          status,
          eventId: `evt-${i}`,
          createdAt: iso(i),
          updatedAt: iso(i),
        }),
      );
    }
    const dead = (i: number, overrides: Partial<DeadLetterRecord>) =>
      store.deadLetters.insert(
        deadLetterRecord({
          id: `dl-${subscriptionId}-${i}`,
          subscriptionId,
          eventId: `evt-${i}`,
          createdAt: iso(i),
          ...overrides,
        }),
      );
    await dead(0, { reason: 'http_400' });
    await dead(1, { reason: 'retries_exhausted' });
    await dead(2, { stage: 'processor', reason: 'mapping_failed', topic: 'ingress.orders.created.v1' });
    await dead(3, { reason: 'http_400', redrivenAt: iso(4) });
  });

  after(async () => {
    await server?.stop();
  });

  const ids = (res: { body: any }) => res.body.items.map((x: any) => x.id);

  test('GET /admin/dlq filters by stage, reason, event and pending', async () => {
    const q = (query: string) =>
      server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}&${query}`);
    const dl = (i: number) => `dl-${subscriptionId}-${i}`;
    assert.deepEqual(ids(await q('')), [dl(0), dl(1), dl(2), dl(3)]);
    assert.deepEqual(ids(await q('stage=processor')), [dl(2)]);
    assert.deepEqual(ids(await q('stage=dispatcher')), [dl(0), dl(1), dl(3)]);
    assert.deepEqual(ids(await q('reason=http_400')), [dl(0), dl(3)]);
    assert.deepEqual(ids(await q('eventId=evt-1')), [dl(1)]);
    assert.deepEqual(ids(await q('pending=true')), [dl(0), dl(1), dl(2)]);
    assert.deepEqual(ids(await q('pending=false')), [dl(3)]);
    assert.deepEqual(ids(await q('reason=http_400&pending=true')), [dl(0)]);
  });

  test('GET /admin/dlq and /admin/deliveries page with `limit` and `next`, ending with next: null', async () => {
    for (const [path, expected] of [
      [`/admin/dlq?subscriptionId=${subscriptionId}`, [0, 1, 2, 3].map((i) => `dl-${subscriptionId}-${i}`)],
      [
        `/admin/deliveries?subscriptionId=${subscriptionId}`,
        [2, 1, 0].map((i) => `dlv_${subscriptionId}_${i}`), // newest first
      ],
    ] as const) {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: { status: number; body: any } = await server.request(
          'GET',
          `${path}&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        );
        assert.equal(res.status, 200);
        assert.ok(res.body.items.length <= 2, `${path}: a page keeps to its limit`);
        assert.ok('next' in res.body, 'next is always there (null on the last page)');
        seen.push(...ids(res));
        cursor = res.body.next;
        pages += 1;
      } while (cursor && pages < 10);
      assert.deepEqual(seen, expected, path);
      assert.equal(pages, 2, path);
    }
  });

  test('GET /admin/deliveries filters by partner, status and event, attempts included', async () => {
    const q = (query: string) =>
      server.request('GET', `/admin/deliveries?subscriptionId=${subscriptionId}&${query}`);
    const dlv = (i: number) => `dlv_${subscriptionId}_${i}`;
    assert.deepEqual(ids(await q('partnerId=p-one')), [dlv(2), dlv(0)]);
    assert.deepEqual(ids(await q('status=FAILED')), [dlv(1)]);
    assert.deepEqual(ids(await q('eventId=evt-2')), [dlv(2)]);
    const one = await server.request('GET', `/admin/deliveries?partnerId=p-two&status=FAILED`);
    assert.deepEqual(ids(one), [dlv(1)]);
    assert.deepEqual(one.body.items[0].attemptLog, []);
  });

  test('bad listing input is a 400 naming the field', async () => {
    for (const [path, field, code] of [
      ['/admin/deliveries?status=DONE', 'status', 'validation_failed'],
      ['/admin/deliveries?status=failed', 'status', 'validation_failed'],
      ['/admin/deliveries?limit=0', 'limit', 'validation_failed'],
      ['/admin/deliveries?limit=1001', 'limit', 'validation_failed'],
      ['/admin/deliveries?cursor=zzz', 'cursor', 'cursor_invalid'],
      ['/admin/dlq?stage=egress', 'stage', 'validation_failed'],
      ['/admin/dlq?pending=yes', 'pending', 'validation_failed'],
      ['/admin/dlq?limit=abc', 'limit', 'validation_failed'],
      ['/admin/dlq?cursor=zzz', 'cursor', 'cursor_invalid'],
      [`/admin/subscriptions/${subscriptionId}/held?cursor=zzz`, 'cursor', 'cursor_invalid'],
      [`/admin/subscriptions/${subscriptionId}/held?limit=-1`, 'limit', 'validation_failed'],
    ] as const) {
      const res = await server.request('GET', path);
      assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, code, path);
      assert.ok(
        res.body.error.details.some((d: any) => d.field === field),
        `${path} names ${field}: ${JSON.stringify(res.body.error.details)}`,
      );
    }
  });

  test('bad redrive input is a 400 naming the field, and nothing is redriven', async () => {
    for (const [body, field, code] of [
      [undefined, 'all', 'redrive_scope_missing'],
      [{}, 'all', 'redrive_scope_missing'],
      [{ all: false }, 'all', 'redrive_scope_missing'],
      [{ all: true, limit: 10_001 }, 'limit', 'validation_failed'],
      [{ all: true, limit: 0 }, 'limit', 'validation_failed'],
      [{ all: true, limit: 2.5 }, 'limit', 'validation_failed'],
      [{ stage: 'egress' }, 'stage', 'validation_failed'],
      [{ subscriptionId: 7 }, 'subscriptionId', 'validation_failed'],
      [{ eventId: ['evt-1'] }, 'eventId', 'validation_failed'],
      // An empty id (a shell variable left unset) is no scope: it redrove every pending dead letter.
      [{ subscriptionId: '' }, 'subscriptionId', 'validation_failed'],
      [{ eventId: '' }, 'eventId', 'validation_failed'],
      [{ all: false, subscriptionId: '' }, 'subscriptionId', 'validation_failed'],
      [{ all: 'yes' }, 'all', 'validation_failed'],
      [{ all: true, dryRun: true }, 'dryRun', 'validation_failed'],
      [[{ all: true }], 'body', 'validation_failed'],
    ] as const) {
      const res = await server.request('POST', '/admin/dlq/redrive', body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, code, JSON.stringify(body));
      assert.ok(
        res.body.error.details.some((d: any) => d.field === field),
        `${JSON.stringify(body)} names ${field}: ${JSON.stringify(res.body.error.details)}`,
      );
    }
    const pending = await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}&pending=true`);
    assert.equal(pending.body.items.length, 3, 'nothing redriven');
  });
});
