/**
 * Dispatcher decisions pinned by mutation testing: reasons and topics of dead letters, the hop
 * tolerance, the attempt budget, the retry budget's boundary, what a give-up and a fenced record
 * keep, and the few pure rules (two-digit years, the longest pause) the other suites left open.
 * The dispatcher runs against the real SQLite store (in memory) with a scripted delivery client.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import {
  type DeliveryTask,
  parseDeliveryTask,
  serializeDeliveryTask,
  webhookIdOf,
} from '../../src/common/delivery-task.ts';
import { ValidationError } from '../../src/common/errors.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { BatchControl, BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import type { DeliveryRequest, DeliveryResult } from '../../src/common/ports/delivery-client.ts';
import { type DispatcherDeps, WebhookDispatcher } from '../../src/dispatcher/dispatcher.ts';
import { EndpointLimiter } from '../../src/dispatcher/endpoint-limiter.ts';
import { PartitionPauses } from '../../src/dispatcher/pauses.ts';
import { buildDeliveryRequest } from '../../src/dispatcher/request.ts';
import { parseRetryAfter } from '../../src/dispatcher/retry-math.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import {
  completeInLedger,
  deliveryAttempt,
  deliveryRecord,
  partnerRecord,
  subscriptionRecord,
} from '../support/fixtures.ts';
import { recordingDeadLetterSink } from '../support/sinks.ts';

let offset = 0;

describe('WebhookDispatcher decisions (mutation gaps)', () => {
  let store: SqliteStore;
  let published: BusMessage[];
  let metrics: MetricsRegistry;
  let subscriptionId: string;
  let sent: DeliveryRequest[];
  let answer: DeliveryResult;

  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    published = [];
    metrics = new MetricsRegistry();
    sent = [];
    answer = { ok: true, status: 204, headers: {}, body: '', latencyMs: 5 };
    await store.partners.insert(partnerRecord({ id: 'acme', delivery: { maxConcurrency: 4 } }));
    const sub = subscriptionRecord({ partnerId: 'acme', url: 'https://hooks.example/x', filter: undefined });
    subscriptionId = sub.id;
    await store.subscriptions.insert(sub);
  });

  const dispatcher = (overrides: Partial<DispatcherDeps> = {}) =>
    new WebhookDispatcher({
      subscription: (id) => store.subscriptions.get(id),
      partner: (id) => store.partners.get(id),
      disableSubscription: async (id, reason) => {
        const sub = (await store.subscriptions.get(id))!;
        await store.subscriptions.update({ ...sub, status: 'DISABLED', statusReason: reason });
      },
      credentials: { secrets: () => ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], auth: () => undefined },
      deliveries: store.deliveries,
      heldTasks: store.heldTasks,
      maxHeldPerSubscription: 1000,
      ledger: store.ledger,
      ledgerTtlMs: 86_400_000,
      client: {
        send: async (request) => {
          sent.push(request);
          return answer;
        },
        close: async () => {},
      },
      publish: async (m) => {
        published.push(...m);
      },
      deadLetters: recordingDeadLetterSink(store, () => published),
      limiter: new EndpointLimiter(),
      defaultMaxConcurrency: 4,
      maxResponseBytes: 2048,
      userAgent: 'test',
      metrics,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
      clock: () => new Date(),
      ...overrides,
    });

  function taskMessage(
    overrides: Partial<DeliveryTask> = {},
    headers: Record<string, string> = {},
    topic = 'egress.acme.orders.created',
  ): ConsumedMessage {
    offset += 1;
    const task: DeliveryTask = {
      deliveryId: `dlv_${String(offset).padStart(32, '0')}`,
      subscriptionId,
      partnerId: 'acme',
      event: { id: `e-${offset}`, source: '/t', type: 'orders.created', correlationId: `corr-${offset}` },
      body: JSON.stringify({ n: offset }),
      attempt: 0,
      createdAt: Date.now(),
      ...overrides,
    };
    return {
      topic,
      partition: 0,
      offset,
      key: subscriptionId,
      value: serializeDeliveryTask(task),
      headers,
      timestamp: Date.now(),
    };
  }

  const outcomes = () => metrics.counter('webhook_deliveries_total', '', ['outcome']);
  const deadLetters = async () => (await store.deadLetters.list({ stage: 'dispatcher' })).items;

  test('a task out of its tier a few seconds early waits the rest on a tier: it is not forwarded yet', async () => {
    const dueAt = Date.now() + 3_000;
    const message = taskMessage(
      { attempt: 1 },
      { [HEADERS.dueAt]: String(dueAt), [HEADERS.originTopic]: 'egress.acme.orders.created' },
      'retry.dispatcher.1s',
    );
    await dispatcher().handleBatch([message]);
    assert.equal(outcomes().get({ outcome: 'rescheduled' }), 1);
    assert.equal(published.length, 1);
    assert.ok(published[0]!.topic.startsWith('retry.dispatcher.'), published[0]!.topic);
    // Due no earlier than asked (the hop reads the clock again: a millisecond may pass meanwhile).
    const stillDue = Number(published[0]!.headers?.[HEADERS.dueAt]);
    assert.ok(stillDue >= dueAt && stillDue - dueAt < 1_000, `due ${stillDue - dueAt} ms after asked`);
  });

  test('a retry is keyed by its subscription on its tier', async () => {
    answer = { ok: true, status: 503, headers: {}, body: '', latencyMs: 5 };
    await dispatcher().handleBatch([taskMessage()]);
    const retry = published.find((m) => m.topic.startsWith('retry.'))!;
    assert.equal(retry.key, subscriptionId);
  });

  test('a 5xx records its error on the delivery; a 2xx records when it completed', async () => {
    answer = { ok: true, status: 500, headers: {}, body: '', latencyMs: 5 };
    const failing = taskMessage();
    await dispatcher().handleBatch([failing]);
    const pending = await store.deliveries.get(parseDeliveryTask(failing.value).deliveryId);
    assert.equal(pending?.status, 'PENDING');
    assert.equal(pending?.lastError, 'HTTP 500');
    answer = { ok: true, status: 204, headers: {}, body: '', latencyMs: 5 };
    const ok = taskMessage();
    await dispatcher().handleBatch([ok]);
    const done = await store.deliveries.get(parseDeliveryTask(ok.value).deliveryId);
    assert.equal(done?.status, 'SUCCESS');
    assert.ok(done?.completedAt, 'completedAt set');
  });

  test('a completed delivery stays in the ledger for the ledger TTL', async () => {
    const message = taskMessage();
    const before = Date.now();
    await dispatcher().handleBatch([message]);
    const entry = await store.ledger.get(webhookIdOf(parseDeliveryTask(message.value)));
    assert.equal(entry?.status, 'COMPLETED');
    assert.ok(entry!.expiresAt >= before + 86_400_000, 'kept for the TTL');
  });

  test('the last attempt allowed (maxAttempts) failing with a 5xx is dead-lettered, not retried', async () => {
    answer = { ok: true, status: 503, headers: {}, body: '', latencyMs: 5 };
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, retry: { maxAttempts: 3 } });
    // Two attempts made: this is the third and last.
    const message = taskMessage({ attempt: 2, firstAttemptAt: Date.now() - 60_000, due: 0 });
    await dispatcher().handleBatch([message]);
    assert.equal(sent.length, 1);
    assert.deepEqual(
      published.filter((m) => m.topic.startsWith('retry.')),
      [],
    );
    const dead = await deadLetters();
    assert.deepEqual(
      dead.map((d) => [d.reason, d.attempts]),
      [['retries_exhausted', 3]],
    );
  });

  test('a 410 is dead-lettered as endpoint_gone and counted as gone', async () => {
    answer = { ok: true, status: 410, headers: {}, body: '', latencyMs: 5 };
    await dispatcher().handleBatch([taskMessage()]);
    assert.deepEqual(
      (await deadLetters()).map((d) => d.reason),
      ['endpoint_gone'],
    );
    assert.equal(outcomes().get({ outcome: 'gone' }), 1);
    assert.equal((await store.subscriptions.get(subscriptionId))?.status, 'DISABLED');
  });

  test('a task of a DISABLED subscription is dead-lettered as subscription_disabled, with its attempts', async () => {
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'DISABLED', statusReason: 'by hand' });
    const message = taskMessage({ attempt: 2 });
    await dispatcher().handleBatch([message]);
    assert.equal(sent.length, 0);
    const dead = await deadLetters();
    assert.deepEqual(
      dead.map((d) => [d.reason, d.attempts]),
      [['subscription_disabled', 2]],
    );
    const record = await store.deliveries.get(parseDeliveryTask(message.value).deliveryId);
    assert.equal(record?.status, 'FAILED');
    assert.equal(record?.attempts, 2, 'the record made for it counts the attempts made');
  });

  test('a task of a deleted subscription whose delivery succeeded already is skipped, not dead-lettered', async () => {
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await store.deliveries.ensure(deliveryRecord({ id: deliveryId, subscriptionId, status: 'SUCCESS' }));
    await store.subscriptions.delete(subscriptionId);
    await dispatcher().handleBatch([message]);
    assert.equal(outcomes().get({ outcome: 'skipped' }), 1);
    assert.deepEqual(await deadLetters(), []);
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'SUCCESS');
  });

  test('a delivery the ledger has COMPLETED while its record is PENDING: the record is marked SUCCESS', async () => {
    const message = taskMessage();
    const task = parseDeliveryTask(message.value);
    await store.deliveries.ensure(deliveryRecord({ id: task.deliveryId, subscriptionId, status: 'PENDING' }));
    await completeInLedger(store.ledger, webhookIdOf(task), 60_000, Date.now());
    await dispatcher().handleBatch([message]);
    assert.equal(sent.length, 0);
    assert.equal((await store.deliveries.get(task.deliveryId))?.status, 'SUCCESS');
  });

  test('with a ledger turned off (live flag), its COMPLETED entries are not trusted: a PAUSED task is held', async () => {
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED' });
    const message = taskMessage();
    await completeInLedger(store.ledger, webhookIdOf(parseDeliveryTask(message.value)), 60_000, Date.now());
    await dispatcher({ ledgerEnabled: () => false }).handleBatch([message]);
    assert.equal(outcomes().get({ outcome: 'held_paused' }), 1);
  });

  test('an attempt number taken meanwhile by several attempts of other copies takes the next free one', async () => {
    answer = { ok: true, status: 204, headers: {}, body: '', latencyMs: 5 };
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher({
      client: {
        send: async () => {
          // Other copies record attempts 1–4 while this one's request is on its way.
          await store.deliveries.ensure(deliveryRecord({ id: deliveryId, subscriptionId, attempts: 0 }));
          for (let n = 1; n <= 4; n++) {
            await store.deliveries.recordAttempt(
              deliveryAttempt({ deliveryId, attempt: n, outcome: 'retry' }),
              { attempts: n, updatedAt: new Date().toISOString() },
              undefined,
            );
          }
          return answer;
        },
        close: async () => {},
      },
    }).handleBatch([message]);
    const attempts = await store.deliveries.attempts(deliveryId);
    assert.deepEqual(
      attempts.map((a) => a.attempt),
      [1, 2, 3, 4, 5],
    );
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'SUCCESS');
  });

  test('a success is observed from ingest to delivery (end-to-end latency)', async () => {
    await dispatcher().handleBatch([taskMessage({ ingestedAt: Date.now() - 2_000 })]);
    const endToEnd = metrics.histogram(
      'webhook_end_to_end_seconds',
      '',
      [],
      [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 60, 300, 3600],
    );
    const seen = endToEnd.snapshot();
    assert.equal(seen.count, 1);
    assert.ok(seen.sum >= 2, `${seen.sum} s from ingest`);
  });

  test('the endpoint’s latency estimate takes the HTTP client’s own measure of the request', async () => {
    answer = { ok: true, status: 204, headers: {}, body: '', latencyMs: 15_000 };
    const limiter = new EndpointLimiter();
    await dispatcher({ limiter }).handleBatch([taskMessage()]);
    // Moving average from 50 ms: 0.8 × 50 + 0.2 × 15 000.
    assert.equal(limiter.load(subscriptionId).latencyMs, 3_040);
  });

  test('a held task keeps the key it was read with (released with it, to its partition)', async () => {
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED' });
    await dispatcher().handleBatch([taskMessage()]);
    const held = await store.heldTasks.list(subscriptionId, 10);
    assert.deepEqual(
      held.map((h) => h.key),
      [subscriptionId],
    );
  });

  test('a 2xx after another copy ended the delivery FAILED meanwhile: the delivery reads SUCCESS', async () => {
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher({
      client: {
        send: async () => {
          // Another copy's attempt 1 failed for good while this request was on its way.
          await store.deliveries.recordAttempt(
            deliveryAttempt({ deliveryId, attempt: 1, outcome: 'failed' }),
            { attempts: 1, status: 'FAILED', updatedAt: new Date().toISOString() },
            deliveryRecord({ id: deliveryId, subscriptionId, attempts: 0 }),
          );
          return answer;
        },
        close: async () => {},
      },
    }).handleBatch([message]);
    const record = await store.deliveries.get(deliveryId);
    assert.equal(record?.status, 'SUCCESS', 'the partner has it');
    assert.equal(record?.attempts, 2);
  });

  test('the partner’s own timeouts go with the request', async () => {
    const partner = (await store.partners.get('acme'))!;
    const timeouts = { connectMs: 1_234, headersMs: 2_345, bodyMs: 3_456 };
    await store.partners.update({ ...partner, delivery: { ...partner.delivery, timeouts } });
    await dispatcher().handleBatch([taskMessage()]);
    assert.deepEqual(sent[0]!.timeouts, timeouts);
  });

  test('a retry due on its tier is forwarded to its egress topic as an ordered publish', async () => {
    const options: Array<{ ordered?: boolean } | undefined> = [];
    const message = taskMessage(
      { attempt: 1 },
      { [HEADERS.dueAt]: String(Date.now()), [HEADERS.originTopic]: 'egress.acme.orders.created' },
      'retry.dispatcher.5s',
    );
    await dispatcher({
      publish: async (m, o) => {
        published.push(...m);
        options.push(o);
      },
    }).handleBatch([message]);
    assert.deepEqual(
      published.map((m) => m.topic),
      ['egress.acme.orders.created'],
    );
    assert.deepEqual(options, [{ ordered: true }]);
  });

  test('a task whose handling hits a permanent error is reported failed for good; a transient one is not', async () => {
    let error: Error = new ValidationError('subscription_invalid', 'the stored subscription is unreadable');
    const d = dispatcher({
      subscription: async () => {
        throw error;
      },
    });
    const permanent = await d.handleBatch([taskMessage()]);
    assert.deepEqual(
      permanent.failed.map((f) => f.permanent),
      [true],
    );
    error = new Error('database is locked');
    const transient = await d.handleBatch([taskMessage()]);
    assert.deepEqual(
      transient.failed.map((f) => f.permanent),
      [false],
    );
  });

  describe('the runtime’s attempt deadline (a Lambda invocation’s end)', () => {
    test('with less than 10 s left, the task waits on the 1 s tier, nothing sent', async () => {
      const message = taskMessage();
      await dispatcher({ attemptDeadline: () => Date.now() + 5_000 }).handleBatch([message]);
      assert.equal(sent.length, 0);
      assert.equal(outcomes().get({ outcome: 'deferred' }), 1);
      assert.deepEqual(
        published.map((m) => m.topic),
        ['retry.dispatcher.1s'],
      );
    });

    test('with 10 s or more left, but less than the whole budget, the attempt is made within what is left', async () => {
      // A partner whose timeouts (90 s) are longer than the 15 s left.
      const partner = (await store.partners.get('acme'))!;
      await store.partners.update({
        ...partner,
        delivery: { ...partner.delivery, timeouts: { connectMs: 30_000, headersMs: 30_000, bodyMs: 30_000 } },
      });
      const end = Date.now() + 15_000;
      const message = taskMessage();
      await dispatcher({ attemptDeadline: () => end }).handleBatch([message]);
      assert.equal(sent.length, 1, 'the attempt is made');
      assert.ok(
        sent[0]!.deadlineMs! <= 15_000,
        `request deadline ${sent[0]!.deadlineMs} ms within what is left`,
      );
    });
  });

  describe('giveUp', () => {
    test('a permanent error is dead-lettered with its own code, and counted as failed', async () => {
      const message = taskMessage();
      await dispatcher().giveUp(message, {
        error: new ValidationError('task_too_large', 'the task is too large'),
        failures: 1,
        permanent: true,
      });
      const [dead] = await deadLetters();
      assert.equal(dead?.reason, 'task_too_large');
      assert.equal(outcomes().get({ outcome: 'failed' }), 1);
    });

    test('the dead letter is kept even when the store cannot mark the delivery FAILED', async () => {
      const message = taskMessage();
      const deliveries = Object.create(store.deliveries) as typeof store.deliveries;
      deliveries.patch = async () => {
        throw new Error('database is locked');
      };
      await dispatcher({ deliveries }).giveUp(message, {
        error: new Error('database is locked'),
        failures: 5,
        permanent: false,
      });
      assert.deepEqual(
        (await deadLetters()).map((d) => d.reason),
        ['redelivery_exhausted'],
      );
    });

    test('a task given up on its retry tier is dead-lettered for its egress topic and key', async () => {
      // The header names the topic it came from, whatever the event type says.
      const fromHeader = taskMessage(
        {},
        { [HEADERS.originTopic]: 'egress.acme.orders.updated', [HEADERS.dueAt]: '0' },
        'retry.dispatcher.5s',
      );
      // Without the header (published before it existed): the topic follows from the task.
      const derived = taskMessage({}, {}, 'retry.dispatcher.1m');
      const notice = { error: new Error('bus unreachable'), failures: 5, permanent: false };
      await dispatcher().giveUp(fromHeader, notice);
      await dispatcher().giveUp(derived, notice);
      const dead = await deadLetters();
      assert.deepEqual(dead.map((d) => [d.topic, d.key]).sort(), [
        ['egress.acme.orders.created', subscriptionId],
        ['egress.acme.orders.updated', subscriptionId],
      ]);
    });
  });
});

describe('PartitionPauses: the longest pause', () => {
  test('the partition is paused for at most 30 s, in case the drained news never comes', () => {
    const pauses: number[] = [];
    const control = { done: () => {}, pause: (_m, ms) => pauses.push(ms), resume: () => {} } as BatchControl;
    const limiter = { whenDrained: () => {} } as unknown as EndpointLimiter;
    const message = {
      topic: 'egress.acme.orders.created',
      partition: 0,
      offset: 1,
      value: '',
      headers: {},
      timestamp: 0,
    };
    new PartitionPauses(limiter).pauseFor('sub-1', message, control);
    assert.deepEqual(pauses, [30_000]);
  });

  test('a retry tier, shared by every endpoint, is never paused', () => {
    const pauses: number[] = [];
    const control = { done: () => {}, pause: (_m, ms) => pauses.push(ms), resume: () => {} } as BatchControl;
    const limiter = { whenDrained: () => {} } as unknown as EndpointLimiter;
    const message = {
      topic: 'retry.dispatcher.5s',
      partition: 0,
      offset: 1,
      value: '',
      headers: {},
      timestamp: 0,
    };
    new PartitionPauses(limiter).pauseFor('sub-1', message, control);
    assert.deepEqual(pauses, []);
  });
});

describe('parseRetryAfter: two-digit years of the RFC 850 form', () => {
  test('a year exactly 50 years ahead is read as ahead, only more than 50 as the past century', () => {
    const now = Date.UTC(2026, 0, 1);
    // 2076 is 50 years ahead of 2026: not "more than 50 years in the future" (RFC 9110 §5.6.7).
    const secs = parseRetryAfter('Friday, 01-Jan-76 00:00:00 GMT', now);
    assert.equal(secs, (Date.UTC(2076, 0, 1) - now) / 1000);
  });
});

describe('EndpointLimiter: saturation and the queue bound', () => {
  test('a slow endpoint with free slots is not saturated: its partition keeps being fetched', async () => {
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 2000 });
    const limits = { maxConcurrency: 4 };
    const slot = await limiter.acquire('slow', limits);
    assert.ok(slot.ok);
    slot.release(15_000); // it answered in 15 s: its latency estimate is past the 2 s of waiting allowed
    assert.equal(limiter.load('slow').active, 0);
    assert.equal(limiter.saturated('slow', limits), false);
  });

  test('past maxQueue waiters, a task is told to defer at once instead of queueing', async () => {
    const limiter = new EndpointLimiter({ maxQueue: 2 });
    const limits = { maxConcurrency: 1 };
    const running = await limiter.acquire('e', limits);
    assert.ok(running.ok);
    const queued = [limiter.acquire('e', limits), limiter.acquire('e', limits)];
    assert.equal(limiter.load('e').waiting, 2);
    const third = await limiter.acquire('e', limits);
    assert.equal(third.ok, false);
    assert.equal(limiter.load('e').waiting, 2, 'the third never queued');
    // Drain: each release hands the slot to the next waiter.
    running.release();
    for (const p of queued) {
      const r = await p;
      if (r.ok) r.release();
    }
  });

  test('a slot released twice frees one slot, not two', async () => {
    const limiter = new EndpointLimiter();
    const limits = { maxConcurrency: 2 };
    const a = await limiter.acquire('e', limits);
    const b = await limiter.acquire('e', limits);
    assert.ok(a.ok && b.ok);
    a.release();
    a.release();
    assert.equal(limiter.load('e').active, 1);
    b.release();
  });

  test('only endpoints idle for 10 minutes are forgotten', async () => {
    let now = 1_000_000_000;
    const limiter = new EndpointLimiter({ now: () => now });
    const limits = { maxConcurrency: 2 };
    const release = async (endpoint: string) => {
      const slot = await limiter.acquire(endpoint, limits);
      if (slot.ok) slot.release(10);
    };
    await release('old');
    now += 10 * 60_000 - 1;
    await release('recent');
    now += 1;
    await release('new'); // sweeps: `old` idle 10 min, `recent` 1 ms
    assert.equal(limiter.size, 2);
  });

  test('a waiter that waited as long as it may is told to defer for at least that long', async () => {
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 60 }); // one round (50 ms at first) fits: it waits
    const limits = { maxConcurrency: 1 };
    const hung = await limiter.acquire('e', limits);
    assert.ok(hung.ok);
    const waited = await limiter.acquire('e', limits);
    assert.equal(waited.ok, false);
    assert.ok(!waited.ok && waited.retryInMs >= 60, 'not straight back to a hung endpoint');
    hung.release();
  });
});

describe('buildDeliveryRequest: auth and timestamp', () => {
  const task: DeliveryTask = {
    deliveryId: 'dlv_00000000000000000000000000000001',
    subscriptionId: 'sub-1',
    partnerId: 'acme',
    event: { id: 'e-1', source: '/t', type: 'orders.created', correlationId: 'corr-1' },
    body: '{}',
    attempt: 0,
    createdAt: 0,
  };

  test('basic auth is sent as base64 of user:password (RFC 7617)', () => {
    const { headers } = buildDeliveryRequest({
      task,
      secrets: [],
      auth: { type: 'basic', username: 'Aladdin', password: 'open sesame' },
      now: 1_700_000_000_000,
      userAgent: 'test',
    });
    assert.equal(headers.authorization, 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==');
  });

  test('webhook-timestamp is the whole second the attempt is in, never the next one', () => {
    const { headers } = buildDeliveryRequest({
      task,
      secrets: [],
      auth: undefined,
      now: 1_700_000_000_999,
      userAgent: 'test',
    });
    assert.equal(headers['webhook-timestamp'], '1700000000');
  });
});
