/**
 * The dispatcher core against the real SQLite store (in memory), the real delivery client and a
 * real HTTP receiver on loopback, with a recording publisher: the ledger around the POST, retry-tier
 * hops, the metrics and the log lines of a delivery.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import {
  type DeliveryTask,
  parseDeliveryTask,
  serializeDeliveryTask,
  webhookIdOf,
} from '../../src/common/delivery-task.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { BatchControl, BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import { type DispatcherDeps, WebhookDispatcher } from '../../src/dispatcher/dispatcher.ts';
import { EndpointLimiter } from '../../src/dispatcher/endpoint-limiter.ts';
import { UndiciDeliveryClient } from '../../src/engines/http/delivery-client.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { completeInLedger, deliveryRecord, partnerRecord, subscriptionRecord } from '../support/fixtures.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import { recordingDeadLetterSink } from '../support/sinks.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
let offset = 0;

describe('WebhookDispatcher', () => {
  let receiver: TestReceiver;
  let answer: { status: number; delayMs?: number };
  let store: SqliteStore;
  let published: BusMessage[];
  let metrics: MetricsRegistry;
  let logLines: Array<Record<string, unknown>>;
  let client: UndiciDeliveryClient;
  let seenDuringRequest: Array<string | undefined>;
  let subscriptionId: string;
  let heldCap: number;
  /** Runs while a request is on its way (what another worker does meanwhile). */
  let duringRequest: ((webhookId: string) => Promise<void>) | undefined;

  before(async () => {
    receiver = await startReceiver({
      tls: false,
      answer: (_n, d) =>
        d.path === '/slow'
          ? { status: 200, delayMs: 400 }
          : d.path === '/a'
            ? { status: 200, delayMs: 100 }
            : answer,
    });
    client = new UndiciDeliveryClient({ allowInsecure: true });
  });
  after(async () => {
    await client.close();
    await receiver.close();
  });

  beforeEach(async () => {
    answer = { status: 204 };
    store = new SqliteStore(':memory:');
    published = [];
    metrics = new MetricsRegistry();
    logLines = [];
    seenDuringRequest = [];
    duringRequest = undefined;
    heldCap = 1_000_000;
    await store.partners.insert(partnerRecord({ id: 'acme', delivery: { maxConcurrency: 4 } }));
    const sub = subscriptionRecord({ partnerId: 'acme', url: `${receiver.url}/hooks`, filter: undefined });
    subscriptionId = sub.id;
    await store.subscriptions.insert(sub);
    receiver.received.length = 0;
    receiver.secret = SECRET;
  });

  const dispatcher = (
    limiter = new EndpointLimiter(),
    cachedStatus?: 'PAUSED',
    overrides: Partial<DispatcherDeps> = {},
  ) =>
    new WebhookDispatcher({
      // A stale cache can say PAUSED while the store says otherwise.
      subscription: async (id) => {
        const sub = await store.subscriptions.get(id);
        return sub && cachedStatus ? { ...sub, status: cachedStatus } : sub;
      },
      subscriptionNow: (id) => store.subscriptions.get(id),
      partner: (id) => store.partners.get(id),
      disableSubscription: async () => {},
      credentials: { secrets: () => [SECRET], auth: () => undefined },
      deliveries: store.deliveries,
      heldTasks: store.heldTasks,
      maxHeldPerSubscription: heldCap,
      ledger: store.ledger,
      ledgerTtlMs: 86_400_000,
      client: {
        send: async (request) => {
          // What the ledger says while the request is on its way.
          const id = request.headers['webhook-id'] ?? '';
          seenDuringRequest.push((await store.ledger.get(id))?.status);
          await duringRequest?.(id);
          return client.send(request);
        },
        close: async () => {},
      },
      publish: async (m) => {
        published.push(...m);
      },
      deadLetters: recordingDeadLetterSink(store, () => published),
      limiter,
      defaultMaxConcurrency: 4,
      maxResponseBytes: 2048,
      userAgent: 'test',
      metrics,
      logger: new Logger({ level: 'info', sink: { write: (line) => logLines.push(JSON.parse(line)) } }),
      clock: () => new Date(),
      ...overrides,
    });

  /** A published retry as its egress topic hands it out once it is due. */
  function due(retry: BusMessage): ConsumedMessage {
    offset += 1;
    return {
      topic: 'egress.acme.orders.created',
      partition: 0,
      offset,
      value: retry.value,
      headers: {},
      timestamp: Date.now(),
    };
  }

  const outcomes = () => metrics.counter('webhook_deliveries_total', '', ['outcome']);

  function taskMessage(
    overrides: Partial<DeliveryTask> = {},
    headers: Record<string, string> = {},
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
      topic: 'egress.acme.orders.created',
      partition: 0,
      offset,
      value: serializeDeliveryTask(task),
      headers,
      timestamp: Date.now(),
    };
  }

  test('claims the delivery in the ledger before the POST and completes it after a 2xx', async () => {
    const message = taskMessage();
    const task = parseDeliveryTask(message.value);
    const { deliveryId } = task;
    const outcome = await dispatcher().handleBatch([message]);
    assert.deepEqual(outcome.failed, []);
    assert.equal(receiver.received.length, 1);
    assert.equal(receiver.received[0]!.verified, true);
    assert.equal(receiver.received[0]!.headers['webhook-id'], webhookIdOf(task));
    assert.deepEqual(seenDuringRequest, ['IN_PROGRESS']);
    assert.equal((await store.ledger.get(webhookIdOf(task)))?.status, 'COMPLETED', 'keyed by webhook-id');
    const delivery = await store.deliveries.get(deliveryId);
    assert.equal(delivery?.status, 'SUCCESS');
  });

  test('a delivery the ledger has COMPLETED is not sent again', async () => {
    const message = taskMessage();
    await completeInLedger(store.ledger, webhookIdOf(parseDeliveryTask(message.value)), 60_000, Date.now());
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 0);
    assert.equal(metrics.counter('webhook_deliveries_total', '', ['outcome']).get({ outcome: 'skipped' }), 1);
  });

  test('a delivery another worker holds a live claim on is parked on the 5 s tier, not sent', async () => {
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await store.ledger.claim(webhookIdOf(parseDeliveryTask(message.value)), 60_000, Date.now());
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 0);
    assert.equal(published.length, 1);
    assert.equal(published[0]!.topic, 'retry.dispatcher.5s', 'a 5 s deferral');
    assert.equal(parseDeliveryTask(published[0]!.value).deliveryId, deliveryId);
  });

  test('a task read from its tier before it is due waits the rest in the next tier, without an attempt', async () => {
    const dueAt = Date.now() + 3 * 3_600_000;
    const message = taskMessage(
      { attempt: 2 },
      { [HEADERS.dueAt]: String(dueAt), [HEADERS.originTopic]: 'egress.acme.orders.created' },
    );
    message.topic = 'retry.dispatcher.2h';
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 0, 'nothing was sent');
    assert.equal(published.length, 1);
    const hop = published[0]!;
    assert.equal(hop.topic, 'retry.dispatcher.2h', '3 h left: the 2 h tier again');
    assert.equal(hop.headers?.[HEADERS.dueAt], String(dueAt), 'the same due time');
    assert.equal(hop.headers?.[HEADERS.originTopic], 'egress.acme.orders.created');
    assert.ok(Math.abs(hop.notBefore! - (Date.now() + 7_200_000)) < 1000);
    assert.equal(parseDeliveryTask(hop.value).attempt, 2, 'a hop is not an attempt');
    // Due now (within the tolerance): it is sent.
    const due = taskMessage({}, { [HEADERS.dueAt]: String(Date.now() + 50) });
    await dispatcher().handleBatch([due]);
    assert.equal(receiver.received.length, 1);
  });

  test('a retry due on its tier goes back to its egress topic, keyed by its subscription: the tier’s reader sends nothing', async () => {
    const message = taskMessage(
      { attempt: 2 },
      { [HEADERS.dueAt]: String(Date.now() - 10), [HEADERS.originTopic]: 'egress.acme.orders.created' },
    );
    message.topic = 'retry.dispatcher.1m';
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 0, 'not sent by whoever reads the tier');
    assert.deepEqual(
      published.map((m) => [m.topic, m.key, m.value]),
      [['egress.acme.orders.created', subscriptionId, message.value]],
    );
    assert.equal(
      metrics.counter('webhook_deliveries_total', '', ['outcome']).get({ outcome: 'forwarded' }),
      1,
    );
  });

  test('a retry goes to its tier for the tier’s delay, due at the whole delay', async () => {
    answer = { status: 503 };
    const message = taskMessage();
    await dispatcher().handleBatch([message]);
    // The default schedule's first retry is 5 s (±20 %): the 1 s tier below 5 s, else the 5 s tier,
    // held there for that tier's delay at most.
    const retry = published.find((m) => m.topic.startsWith('retry.'))!;
    const dueAt = Number(retry.headers?.[HEADERS.dueAt]);
    const delay = dueAt - Date.now();
    assert.ok(delay >= 3_900 && delay <= 6_100, `due in ${delay} ms`);
    // Out of the 5 s tier at most 1 s before it is due (delay 5–6 s); out of the 1 s tier 3–4 s before.
    const early = dueAt - retry.notBefore!;
    const tier = early <= 1_000 ? '5s' : '1s';
    assert.equal(retry.topic, `retry.dispatcher.${tier}`, `due ${early} ms after it leaves its tier`);
    assert.ok(early >= 0);
    assert.ok(retry.notBefore! - Date.now() <= (tier === '5s' ? 5_000 : 1_000));
  });

  test('metrics: the latency histogram and the answers by status code', async () => {
    answer = { status: 200, delayMs: 30 };
    await dispatcher().handleBatch([taskMessage(), taskMessage()]);
    answer = { status: 500 };
    await dispatcher().handleBatch([taskMessage()]);
    const text = metrics.render();
    assert.match(text, /webhook_delivery_duration_seconds_count\{partner="acme"\} 3/);
    assert.match(text, /webhook_responses_total\{partner="acme",status="200"\} 2/);
    assert.match(text, /webhook_responses_total\{partner="acme",status="500"\} 1/);
    assert.match(text, /webhook_deliveries_total\{outcome="success"\} 2/);
    assert.match(text, /webhook_deliveries_total\{outcome="retry"\} 1/);
  });

  test('the attempt record has its time, status code and latency', async () => {
    answer = { status: 200, delayMs: 60 };
    const before = Date.now();
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher().handleBatch([message]);
    const [attempt] = await store.deliveries.attempts(deliveryId);
    assert.equal(attempt?.attempt, 1);
    assert.equal(attempt?.statusCode, 200);
    assert.ok(attempt!.latencyMs >= 55, `latency ${attempt!.latencyMs} ms for a 60 ms answer`);
    const at = Date.parse(attempt!.at);
    assert.ok(at >= before - 5 && at <= Date.now());
    assert.equal(attempt?.outcome, 'success');
  });

  test('a dead-lettered delivery is logged with its correlation id and reason', async () => {
    answer = { status: 400 };
    const message = taskMessage();
    const task = parseDeliveryTask(message.value);
    await dispatcher().handleBatch([message]);
    const line = logLines.find((l) => l.msg === 'delivery dead-lettered');
    assert.ok(line, JSON.stringify(logLines));
    assert.equal(line.correlationId, task.event.correlationId);
    assert.equal(line.reason, 'http_400');
    assert.equal(line.deliveryId, task.deliveryId);
    assert.equal(line.level, 'warn');
  });

  test('a task dead-lettered again after a redelivery is stored once', async () => {
    answer = { status: 400 };
    const message = taskMessage({ attempt: 3, firstAttemptAt: 1_000 });
    await dispatcher().handleBatch([message]);
    await dispatcher().handleBatch([message]);
    const dead = (await store.deadLetters.list({})).items;
    assert.equal(dead.length, 1);
    // What a redrive publishes: the task as read, its attempts started over.
    const { attempt, firstAttemptAt, ...rest } = parseDeliveryTask(message.value);
    assert.deepEqual(parseDeliveryTask(dead[0]!.value), { ...rest, attempt: 0 });
    assert.deepEqual([attempt, firstAttemptAt], [3, 1_000]);
  });

  test('each task is reported done when it is handled, not when the slowest of its batch is', async () => {
    const slowSub = subscriptionRecord({ partnerId: 'acme', url: `${receiver.url}/slow`, filter: undefined });
    await store.subscriptions.insert(slowSub);
    const fast = taskMessage();
    const slow = taskMessage({ subscriptionId: slowSub.id });
    const started = Date.now();
    const doneAt = new Map<number, number>();
    const control: BatchControl = {
      done: (m) => doneAt.set(m.offset, Date.now() - started),
      pause: () => {},
      resume: () => {},
    };
    await dispatcher().handleBatch([fast, slow], control);
    assert.ok(doneAt.get(fast.offset)! < 300, `the fast task was done after ${doneAt.get(fast.offset)} ms`);
    assert.ok(doneAt.get(slow.offset)! >= 390, `the slow task was done after ${doneAt.get(slow.offset)} ms`);
  });

  test('an egress partition shared by two saturated endpoints resumes when the last of them drains', async () => {
    await store.partners.insert(partnerRecord({ id: 'one-at-a-time', delivery: { maxConcurrency: 1 } }));
    const a = subscriptionRecord({ partnerId: 'one-at-a-time', url: `${receiver.url}/a`, filter: undefined });
    const c = subscriptionRecord({
      partnerId: 'one-at-a-time',
      url: `${receiver.url}/slow`,
      filter: undefined,
    });
    await store.subscriptions.insert(a);
    await store.subscriptions.insert(c);
    const tasks = [a, a, a, c, c, c].map((sub) =>
      taskMessage({ subscriptionId: sub.id, partnerId: sub.partnerId }),
    );
    const started = Date.now();
    const paused: number[] = [];
    const resumed: number[] = [];
    const control: BatchControl = {
      done: () => {},
      pause: () => paused.push(Date.now() - started),
      resume: () => resumed.push(Date.now() - started),
    };
    // One slot per endpoint, saturated as soon as one task waits.
    await dispatcher(new EndpointLimiter({ softQueueFactor: 1 })).handleBatch(tasks, control);
    assert.equal(paused.length, 2, 'each endpoint paused the partition');
    assert.equal(resumed.length, 1, 'resumed once');
    // The fast endpoint (100 ms a request) drained after ~200 ms; the slow one (400 ms) after ~800 ms.
    assert.ok(resumed[0]! >= 700, `resumed after ${resumed[0]} ms, before the slow endpoint drained`);
  });

  test('a rate-limited endpoint with a backlog pauses its partition, and its deferred tasks come back one token apart', async () => {
    await store.partners.insert(partnerRecord({ id: 'twice-a-second', delivery: { rateLimitPerSecond: 2 } }));
    const sub = subscriptionRecord({
      partnerId: 'twice-a-second',
      url: `${receiver.url}/r`,
      filter: undefined,
    });
    await store.subscriptions.insert(sub);
    const tasks = Array.from({ length: 8 }, () =>
      taskMessage({ subscriptionId: sub.id, partnerId: sub.partnerId }),
    );
    let paused = 0;
    const control: BatchControl = {
      done: () => {},
      pause: () => {
        paused += 1;
      },
      resume: () => {},
    };
    await dispatcher(new EndpointLimiter({ maxRateWaitMs: 0 })).handleBatch(tasks, control);
    assert.equal(paused, 1, 'the partition was paused for the saturated endpoint');
    // Two sent (the bucket's two tokens), six deferred, each due one token (500 ms) after the one before.
    const due = published
      .map((m) => Number(m.headers?.[HEADERS.dueAt]))
      .filter((n) => n > 0)
      .sort((x, y) => x - y);
    assert.equal(due.length, 6);
    for (let i = 1; i < due.length; i++) assert.ok(due[i]! - due[i - 1]! >= 490, `due ${due.join(', ')}`);
  });

  test('a ledger turned on while running (a live flag) claims the next deliveries; off, it claims none', async () => {
    let on = false;
    const d = dispatcher(undefined, undefined, { ledgerEnabled: () => on });
    const before = taskMessage();
    await d.handleBatch([before]);
    assert.equal(await store.ledger.get(webhookIdOf(parseDeliveryTask(before.value))), undefined);
    on = true;
    const after = taskMessage();
    await d.handleBatch([after]);
    assert.equal((await store.ledger.get(webhookIdOf(parseDeliveryTask(after.value))))?.status, 'COMPLETED');
    assert.equal(receiver.received.length, 2);
  });

  test('a PAUSED subscription’s task is held in the store as it was read (once), not sent, not dead-lettered', async () => {
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    // A retry (its attempts counted) back from its tier.
    const message = taskMessage({ attempt: 3 });
    await dispatcher().handleBatch([message]);
    await dispatcher().handleBatch([message]); // redelivered: held once
    assert.equal(receiver.received.length, 0);
    const held = await store.heldTasks.list(subscriptionId, 10);
    assert.equal(held.length, 1);
    assert.equal(held[0]!.topic, 'egress.acme.orders.created');
    assert.equal(held[0]!.value, message.value, 'its attempts kept');
    assert.deepEqual(held[0]!.headers, message.headers);
    assert.equal(published.length, 0, 'nothing published: neither a retry copy nor the DLQ topic');
    assert.deepEqual((await store.deadLetters.list({})).items, []);
  });

  test('holding a task touches its PENDING delivery record: its retention counts from the hold', async () => {
    const message = taskMessage({ attempt: 1 });
    const { deliveryId } = parseDeliveryTask(message.value);
    const longAgo = '2026-01-01T00:00:00.000Z';
    await store.deliveries.ensure(
      deliveryRecord({ id: deliveryId, subscriptionId, status: 'PENDING', attempts: 1, updatedAt: longAgo }),
    );
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    const before = Date.now();
    await dispatcher().handleBatch([message]);
    assert.equal((await store.heldTasks.list(subscriptionId, 10)).length, 1);
    const touched = (await store.deliveries.get(deliveryId))!;
    assert.equal(touched.status, 'PENDING');
    assert.ok(Date.parse(touched.updatedAt) >= before, `updatedAt ${touched.updatedAt}`);
  });

  test('tasks of one append (one timestamp) are held in their partition’s order, and listed so for release', async () => {
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    const at = Date.now();
    const messages = Array.from({ length: 12 }, () => ({ ...taskMessage(), timestamp: at }));
    await dispatcher().handleBatch(messages);
    const held = await store.heldTasks.list(subscriptionId, 100);
    assert.deepEqual(
      held.map((h) => h.value),
      messages.map((m) => m.value),
      'in offset order, not in the order of a hash',
    );
  });

  test('a task of a PAUSED subscription that was delivered already is skipped, not held', async () => {
    const message = taskMessage();
    await completeInLedger(store.ledger, webhookIdOf(parseDeliveryTask(message.value)), 60_000, Date.now());
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    await dispatcher().handleBatch([message]);
    assert.deepEqual(await store.heldTasks.list(subscriptionId, 10), []);
  });

  test('a task whose cached subscription says PAUSED is sent when the store says ACTIVE (resumed meanwhile)', async () => {
    await dispatcher(new EndpointLimiter(), 'PAUSED').handleBatch([taskMessage()]);
    assert.equal(receiver.received.length, 1);
    assert.deepEqual(await store.heldTasks.list(subscriptionId, 10), []);
  });

  test('fencing: a failed attempt whose claim lapsed and was taken over does not release the new claim', async () => {
    answer = { status: 503 };
    const message = taskMessage();
    // While A's request is out, its claim lapses (this process stalled) and B takes the delivery over.
    const later = Date.now() + 3_600_000;
    duringRequest = async (id) => {
      assert.equal((await store.ledger.claim(id, 60_000, later)).status, 'claimed');
    };
    await dispatcher().handleBatch([message]);
    // A's release after its 503 changed nothing: C, arriving while B sends, finds the key busy.
    assert.deepEqual(
      await store.ledger.claim(webhookIdOf(parseDeliveryTask(message.value)), 60_000, later + 1),
      {
        status: 'busy',
      },
    );
    assert.equal(
      metrics.counter('ledger_claims_lost_total', '', ['step']).get({ step: 'release' }),
      1,
      'the lost claim is counted',
    );
    assert.ok(
      logLines.some((l) => l.msg === 'the ledger claim lapsed and was taken over during the attempt'),
    );
  });

  test('fencing: a 2xx whose claim was taken over is still recorded, and its refused completion counted', async () => {
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    duringRequest = async (id) => {
      await store.ledger.claim(id, 60_000, Date.now() + 3_600_000);
    };
    const outcome = await dispatcher().handleBatch([message]);
    assert.deepEqual(outcome.failed, []);
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'SUCCESS');
    assert.equal(metrics.counter('ledger_claims_lost_total', '', ['step']).get({ step: 'complete' }), 1);
    assert.equal(
      (await store.ledger.get(webhookIdOf(parseDeliveryTask(message.value))))?.status,
      'IN_PROGRESS',
      "the other worker's claim stands",
    );
  });

  test('an attempt number recorded meanwhile by another copy of the task: the attempt takes the next number', async () => {
    answer = { status: 503 };
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    duringRequest = async () => {
      const at = new Date().toISOString();
      await store.deliveries.recordAttempt(
        { deliveryId, attempt: 1, at, latencyMs: 1, statusCode: 500, outcome: 'retry' },
        { status: 'PENDING', attempts: 1, updatedAt: at },
        deliveryRecord({ id: deliveryId, subscriptionId, createdAt: at, updatedAt: at }),
      );
    };
    const outcome = await dispatcher().handleBatch([message]);
    assert.deepEqual(outcome.failed, [], 'not a failure that would come back for ever');
    assert.deepEqual(
      (await store.deliveries.attempts(deliveryId)).map((a) => [a.attempt, a.statusCode]),
      [
        [1, 500],
        [2, 503],
      ],
    );
    assert.equal((await store.deliveries.get(deliveryId))?.attempts, 2);
  });

  test('a record handed out again after its retry was published is a stale copy: no second send, no second retry chain', async () => {
    answer = { status: 503 };
    const message = taskMessage({ due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    const d = dispatcher();
    await d.handleBatch([message]);
    // The same record again (a rebalance, or a crash before its offset was committed).
    const again = await d.handleBatch([message]);
    assert.deepEqual(again.failed, []);
    assert.equal(receiver.received.length, 1, 'sent once');
    const retries = published.filter((m) => m.topic.startsWith('retry.'));
    assert.equal(retries.length, 1, 'one retry chain');
    assert.equal((await store.deliveries.get(deliveryId))?.attempts, 1);
    assert.equal(outcomes().get({ outcome: 'stale' }), 1);
    // The retry itself is not stale: it is the chain.
    await d.handleBatch([due(retries[0]!)]);
    assert.equal(receiver.received.length, 2);
    assert.equal((await store.deliveries.get(deliveryId))?.attempts, 2);
  });

  test('a crash between publishing a retry and recording its attempt: the copy comes again and tries again, and the orphaned retry is the stale one', async () => {
    answer = { status: 503 };
    const message = taskMessage({ due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    let failRecord = true;
    const crashing = dispatcher(undefined, undefined, {
      deliveries: {
        ...store.deliveries,
        recordAttempt: async (...args: Parameters<SqliteStore['deliveries']['recordAttempt']>) => {
          if (failRecord) throw new Error('the process died here');
          return store.deliveries.recordAttempt(...args);
        },
      },
    });
    const first = await crashing.handleBatch([message]);
    assert.equal(first.failed.length, 1, 'the record write failed');
    const orphan = published.find((m) => m.topic.startsWith('retry.'))!;
    assert.ok(orphan, 'its retry was published first');
    failRecord = false;
    const d = dispatcher();
    await d.handleBatch([message]);
    assert.equal(receiver.received.length, 2, 'not stale: the record had not moved, so it tried again');
    const retries = published.filter((m) => m.topic.startsWith('retry.'));
    assert.equal(retries.length, 2);
    assert.equal((await store.deliveries.get(deliveryId))?.attempts, 1);
    // Both retries are due about 5 s on (±20 %), handed out in the order they are due. If the
    // orphan is due first, it is stale at once (due before the record's next attempt); if it is due
    // last, the other has tried by then and scheduled the next attempt 10 s on, so it is stale then.
    const [sooner, later] = [...retries].sort(
      (a, b) => parseDeliveryTask(a.value).due! - parseDeliveryTask(b.value).due!,
    );
    await d.handleBatch([due(sooner!)]);
    await d.handleBatch([due(later!)]);
    assert.equal(receiver.received.length, 3, 'one of the two retries sent, the other nothing');
    assert.equal(outcomes().get({ outcome: 'stale' }), 1);
    assert.equal(published.filter((m) => m.topic.startsWith('retry.')).length, 3, 'one chain goes on');
    assert.equal((await store.deliveries.get(deliveryId))?.attempts, 2);
  });

  test('a deferral whose publish fails hands its claim back once: no claim counted lost', async () => {
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 0 });
    // The endpoint's four slots are taken: the task is deferred at once.
    const slots = await Promise.all(
      Array.from({ length: 4 }, () => limiter.acquire(subscriptionId, { maxConcurrency: 4 })),
    );
    const message = taskMessage();
    const outcome = await dispatcher(limiter, undefined, {
      publish: async () => {
        throw new Error('the bus refused the append');
      },
    }).handleBatch([message]);
    assert.equal(outcome.failed.length, 1);
    assert.equal(receiver.received.length, 0);
    assert.equal(metrics.counter('ledger_claims_lost_total', '', ['step']).get({ step: 'release' }), 0);
    assert.equal(
      (await store.ledger.get(webhookIdOf(parseDeliveryTask(message.value))))?.status,
      undefined,
      'the claim was handed back',
    );
    for (const slot of slots) if (slot.ok) slot.release();
  });

  test('a copy whose retry finished the delivery before this attempt was recorded does not undo SUCCESS', async () => {
    answer = { status: 503 };
    const message = taskMessage({ due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    // While this copy's request is out, the retry it is about to publish has already run and
    // succeeded (as on Lambda, where a short retry is published after an inline wait).
    duringRequest = async () => {
      const at = new Date().toISOString();
      await store.deliveries.recordAttempt(
        { deliveryId, attempt: 1, at, latencyMs: 1, statusCode: 200, outcome: 'success' },
        { status: 'SUCCESS', attempts: 1, updatedAt: at, completedAt: at },
        deliveryRecord({ id: deliveryId, subscriptionId, createdAt: at, updatedAt: at }),
      );
    };
    await dispatcher().handleBatch([message]);
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'SUCCESS');
    assert.equal((await store.deliveries.attempts(deliveryId)).length, 2, 'its attempt is in the history');
  });

  test('a copy with a due time that finds its delivery FAILED is a leftover: nothing sent; a dead letter keeps no due time', async () => {
    answer = { status: 400 }; // final at once: FAILED and dead-lettered
    const message = taskMessage({ due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher().handleBatch([message]);
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'FAILED');
    const [dead] = (await store.deadLetters.list({ stage: 'dispatcher' })).items;
    assert.equal(parseDeliveryTask(dead!.value).due, undefined, 'its redrive starts a chain of its own');
    // An orphaned retry of the chain that ended comes late.
    const orphan = taskMessage({ deliveryId, due: Date.now() - 1000, attempt: 1 });
    await dispatcher().handleBatch([orphan]);
    assert.equal(receiver.received.length, 1, 'the leftover sent nothing');
    assert.equal(outcomes().get({ outcome: 'stale' }), 1);
  });

  test('one deadline for the whole attempt: a response that trickles in is cut off, well inside the claim', async () => {
    const { createServer } = await import('node:http');
    const trickle = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('.'), 50);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
    try {
      const port = (trickle.address() as import('node:net').AddressInfo).port;
      const sub = (await store.subscriptions.get(subscriptionId))!;
      await store.subscriptions.update({ ...sub, url: `http://127.0.0.1:${port}/slow-body` });
      const partner = (await store.partners.get('acme'))!;
      // Each chunk arrives well within the body timeout: only the whole deadline can stop it.
      await store.partners.update({
        ...partner,
        delivery: { timeouts: { connectMs: 300, headersMs: 300, bodyMs: 400 } },
      });
      const message = taskMessage();
      const { deliveryId } = parseDeliveryTask(message.value);
      let lease = 0;
      duringRequest = async (id) => {
        lease = (await store.ledger.get(id))!.expiresAt - Date.now();
      };
      await dispatcher(new EndpointLimiter({ maxQueueWaitMs: 100 })).handleBatch([message]);
      const [attempt] = await store.deliveries.attempts(deliveryId);
      assert.match(attempt!.error ?? '', /^timeout: the request did not complete within its deadline/);
      // The deadline: 100 (queue) + 300 + 300 + 400 ms; the claim lasts 5 s longer.
      assert.ok(lease > 1_100 + 4_000, `the claim lasts ${lease} ms`);
      assert.ok(attempt!.latencyMs < lease, 'cut off before the claim could lapse');
      assert.equal(parseDeliveryTask(published[0]!.value).attempt, 1, 'retried as usual');
    } finally {
      trickle.closeAllConnections();
      await new Promise((resolve) => trickle.close(resolve));
    }
  });

  test('a task the consumer gives up on is FAILED and dead-lettered with its last error', async () => {
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await store.deliveries.ensure(deliveryRecord({ id: deliveryId, subscriptionId }));
    await dispatcher().giveUp(message, {
      error: new Error('database is locked'),
      failures: 5,
      permanent: false,
    });
    const [dead] = (await store.deadLetters.list({ stage: 'dispatcher' })).items;
    assert.equal(dead?.reason, 'redelivery_exhausted');
    assert.equal(dead?.lastError, 'database is locked');
    assert.equal(dead?.subscriptionId, subscriptionId);
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'FAILED');
    assert.equal(published.filter((m) => m.topic === 'dlq.dispatcher').length, 1);
  });

  test('an INACTIVE partner’s tasks are held like a PAUSED subscription’s, not sent', async () => {
    const partner = (await store.partners.get('acme'))!;
    await store.partners.update({ ...partner, status: 'INACTIVE' });
    const message = taskMessage();
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 0);
    assert.deepEqual(
      (await store.heldTasks.list(subscriptionId, 10)).map((t) => t.value),
      [message.value],
    );
    assert.equal(
      metrics.counter('webhook_deliveries_total', '', ['outcome']).get({ outcome: 'held_paused' }),
      1,
    );
  });

  test('beyond the cap on held tasks per subscription, more are dead-lettered (held_overflow), never dropped', async () => {
    heldCap = 2;
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    const messages = [taskMessage(), taskMessage(), taskMessage()];
    // One after the other: tasks held at the same moment all see the count before them.
    for (const message of messages) await dispatcher().handleBatch([message]);
    assert.equal((await store.heldTasks.list(subscriptionId, 10)).length, 2);
    const dead = (await store.deadLetters.list({ reason: 'held_overflow' })).items;
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.subscriptionId, subscriptionId);
    assert.equal(receiver.received.length, 0);
  });

  test('the cap counts what is held now: released tasks make room again', async () => {
    heldCap = 2;
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    for (const message of [taskMessage(), taskMessage()]) await dispatcher().handleBatch([message]);
    const held = await store.heldTasks.list(subscriptionId, 10);
    await store.heldTasks.remove(
      subscriptionId,
      held.map((t) => t.id),
    );
    await dispatcher().handleBatch([taskMessage()]);
    assert.equal((await store.heldTasks.list(subscriptionId, 10)).length, 1, 'held again after a release');
    assert.deepEqual((await store.deadLetters.list({ reason: 'held_overflow' })).items, []);
  });

  test('a claim made while the delivery could not be read is handed back at once', async () => {
    const message = taskMessage();
    const task = parseDeliveryTask(message.value);
    const broken = dispatcher();
    const failing = new WebhookDispatcher({
      ...(broken as unknown as { deps?: never }),
      subscription: (id) => store.subscriptions.get(id),
      partner: (id) => store.partners.get(id),
      disableSubscription: async () => {},
      credentials: { secrets: () => [SECRET], auth: () => undefined },
      deliveries: {
        ...store.deliveries,
        get: async () => {
          throw new Error('store read failed');
        },
      },
      heldTasks: store.heldTasks,
      maxHeldPerSubscription: heldCap,
      ledger: store.ledger,
      ledgerTtlMs: 86_400_000,
      client,
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
    });
    const outcome = await failing.handleBatch([message]);
    assert.equal(outcome.failed.length, 1);
    assert.equal(await store.ledger.get(webhookIdOf(task)), undefined, 'no claim left behind');
  });

  test('a retry that would run past maxAgeSeconds of the FIRST attempt is dead-lettered (retries_exhausted)', async () => {
    answer = { status: 503 };
    // Attempt 2 of a chain whose first attempt was almost 3 days (the default max age) ago: the
    // next retry (5 min on the default schedule) would run past the max age.
    const message = taskMessage({ attempt: 1, firstAttemptAt: Date.now() - 3 * 86_400_000 + 60_000, due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 1);
    assert.deepEqual(
      published.filter((m) => m.topic.startsWith('retry.')),
      [],
      'no retry past max age',
    );
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'FAILED');
    const dead = (await store.deadLetters.list({ stage: 'dispatcher' })).items;
    assert.deepEqual(
      dead.map((d) => d.reason),
      ['retries_exhausted'],
    );
  });

  test('the retry carries the first attempt time of its chain (max age counts from it)', async () => {
    answer = { status: 503 };
    const message = taskMessage({ due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher().handleBatch([message]);
    const [attempt] = await store.deliveries.attempts(deliveryId);
    const retry = parseDeliveryTask(published.find((m) => m.topic.startsWith('retry.'))!.value);
    assert.equal(retry.firstAttemptAt, Date.parse(attempt!.at));
    // And the next attempt keeps it.
    await dispatcher().handleBatch([due(published.find((m) => m.topic.startsWith('retry.'))!)]);
    const retries = published.filter((m) => m.topic.startsWith('retry.'));
    assert.equal(parseDeliveryTask(retries[1]!.value).firstAttemptAt, Date.parse(attempt!.at));
  });

  test('a Retry-After given as an HTTP-date on a 503 sets the retry time', async () => {
    const at = new Date(Math.ceil((Date.now() + 120_000) / 1000) * 1000);
    answer = { status: 503, headers: { 'retry-after': at.toUTCString() } } as typeof answer;
    await dispatcher().handleBatch([taskMessage({ due: 0 })]);
    const retry = published.find((m) => m.topic.startsWith('retry.'))!;
    const dueAt = Number(retry.headers?.[HEADERS.dueAt]);
    assert.ok(
      dueAt >= at.getTime() && dueAt <= at.getTime() + 2_000,
      `due ${dueAt - at.getTime()} ms after the date asked for`,
    );
  });

  test('a credentials failure (KMS unreachable) before the POST hands the endpoint slot back', async () => {
    const limiter = new EndpointLimiter();
    let fail = true;
    const d = dispatcher(limiter, undefined, {
      credentials: {
        secrets: () => {
          if (fail) throw new Error('KMS unreachable');
          return [SECRET];
        },
        auth: () => undefined,
      },
    });
    const failed = await d.handleBatch([taskMessage(), taskMessage(), taskMessage(), taskMessage()]);
    assert.equal(failed.failed.length, 4);
    assert.equal(limiter.load(subscriptionId).active, 0, 'no slot leaked');
    fail = false;
    await d.handleBatch([taskMessage()]);
    assert.equal(receiver.received.length, 1, 'the endpoint is still served');
  });

  test('a retry of an old task is signed with the time of the attempt (receivers check the timestamp)', async () => {
    const message = taskMessage({
      createdAt: Date.now() - 30 * 60_000,
      attempt: 2,
      firstAttemptAt: Date.now() - 30 * 60_000,
    });
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 1);
    const ts = Number(receiver.received[0]!.headers['webhook-timestamp']);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 5, `webhook-timestamp ${ts}`);
    assert.equal(receiver.received[0]!.verified, true);
  });

  test('a retry whose publish fails after the 5xx does not release the (already released) claim again', async () => {
    answer = { status: 503 };
    const message = taskMessage({ due: 0 });
    const outcome = await dispatcher(undefined, undefined, {
      publish: async () => {
        throw new Error('the bus refused the append');
      },
    }).handleBatch([message]);
    assert.equal(outcome.failed.length, 1);
    assert.equal(receiver.received.length, 1);
    assert.equal(
      metrics.counter('ledger_claims_lost_total', '', ['step']).get({ step: 'release' }),
      0,
      'no false lost claim',
    );
  });

  test('a 2xx whose recording fails keeps its claim: the redelivered task is not POSTed again at once', async () => {
    const message = taskMessage({ due: 0 });
    const ledger = {
      claim: (...a: Parameters<SqliteStore['ledger']['claim']>) => store.ledger.claim(...a),
      release: (...a: Parameters<SqliteStore['ledger']['release']>) => store.ledger.release(...a),
      get: (...a: Parameters<SqliteStore['ledger']['get']>) => store.ledger.get(...a),
      complete: async () => {
        throw new Error('store down');
      },
    } as unknown as SqliteStore['ledger'];
    const broken = dispatcher(undefined, undefined, {
      ledger,
      deliveries: {
        ...store.deliveries,
        recordAttempt: async () => {
          throw new Error('store down');
        },
      },
    });
    const first = await broken.handleBatch([message]);
    assert.equal(first.failed.length, 1);
    assert.equal(receiver.received.length, 1);
    // Redelivered (the consumer retries the failed record) once the store is back.
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 1, 'the partner that answered 2xx is not sent it again at once');
    assert.equal(outcomes().get({ outcome: 'deferred_busy' }), 1);
  });

  test('a delivery found SUCCESS in its record while the ledger has no entry is completed in the ledger', async () => {
    const message = taskMessage();
    const task = parseDeliveryTask(message.value);
    await store.deliveries.ensure(deliveryRecord({ id: task.deliveryId, subscriptionId, status: 'SUCCESS' }));
    await dispatcher().handleBatch([message]);
    assert.equal(receiver.received.length, 0);
    assert.equal((await store.ledger.get(webhookIdOf(task)))?.status, 'COMPLETED');
    // Another record of the same webhook-id (the event routed again) is then not sent.
    const again = taskMessage({ event: task.event, deliveryId: `dlv_${'f'.repeat(32)}` });
    await dispatcher().handleBatch([again]);
    assert.equal(receiver.received.length, 0, 'one webhook-id, delivered once');
  });

  test('a 410 whose subscription could not be disabled (store error) disables it when the task comes again', async () => {
    answer = { status: 410 };
    const message = taskMessage({ due: 0 });
    let fail = true;
    const disableSubscription = async (id: string, reason: string) => {
      if (fail) throw new Error('store down');
      const sub = (await store.subscriptions.get(id))!;
      await store.subscriptions.update({
        ...sub,
        status: 'DISABLED',
        statusReason: reason,
        updatedAt: new Date().toISOString(),
      });
    };
    const first = await dispatcher(undefined, undefined, { disableSubscription }).handleBatch([message]);
    assert.equal(first.failed.length, 1);
    fail = false;
    await dispatcher(undefined, undefined, { disableSubscription }).handleBatch([message]); // redelivered
    assert.equal((await store.subscriptions.get(subscriptionId))?.status, 'DISABLED');
    const dead = (await store.deadLetters.list({ stage: 'dispatcher' })).items;
    assert.equal(dead.length, 1, 'dead-lettered');
  });

  test('an endpoint at a forbidden address is FAILED at once (forbidden_address), not retried', async () => {
    const message = taskMessage({ due: 0 });
    const { deliveryId } = parseDeliveryTask(message.value);
    await dispatcher(undefined, undefined, {
      client: {
        send: async () => ({
          ok: false,
          kind: 'forbidden_address',
          message: 'resolves to 169.254.169.254',
          latencyMs: 0,
        }),
        close: async () => {},
      },
    }).handleBatch([message]);
    assert.deepEqual(
      published.filter((m) => m.topic.startsWith('retry.')),
      [],
    );
    assert.equal((await store.deliveries.get(deliveryId))?.status, 'FAILED');
    const [dead] = (await store.deadLetters.list({ stage: 'dispatcher' })).items;
    assert.equal(dead?.reason, 'forbidden_address');
  });

  test('with the ledger off, a PAUSED subscription’s task already delivered (record SUCCESS) is skipped, not held', async () => {
    const message = taskMessage();
    const { deliveryId } = parseDeliveryTask(message.value);
    await store.deliveries.ensure(deliveryRecord({ id: deliveryId, subscriptionId, status: 'SUCCESS' }));
    const sub = (await store.subscriptions.get(subscriptionId))!;
    await store.subscriptions.update({ ...sub, status: 'PAUSED', updatedAt: new Date().toISOString() });
    await dispatcher(undefined, undefined, { ledgerEnabled: () => false }).handleBatch([message]);
    assert.deepEqual(await store.heldTasks.list(subscriptionId, 10), []);
    assert.equal(outcomes().get({ outcome: 'skipped' }), 1);
  });

  test('a task whose cached partner says INACTIVE is sent when the store says ACTIVE (reactivated meanwhile)', async () => {
    await dispatcher(undefined, undefined, {
      partner: async (id) => ({ ...(await store.partners.get(id))!, status: 'INACTIVE' }),
      partnerNow: (id) => store.partners.get(id),
    }).handleBatch([taskMessage()]);
    assert.equal(receiver.received.length, 1);
    assert.deepEqual(await store.heldTasks.list(subscriptionId, 10), []);
  });
});
