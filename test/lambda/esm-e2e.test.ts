/**
 * The serverless deployment end to end on this machine: the processor and dispatcher functions fed
 * by a driver that plays their event source mappings against a real Kafka broker (batches of up to
 * 100, a mapping per topic, commits per the partial batch response), the scheduler function run as
 * EventBridge would run it (more often, so the test need not wait minutes), DynamoDB (dynalite), and
 * HTTPS partners that verify every delivery with `standardwebhooks`.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { toKafkaRecord } from '../../src/common/envelope-kafka.ts';
import { parseStructuredEvent } from '../../src/common/envelope-structured.ts';
import { ingressTopic } from '../../src/common/topics.ts';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';
import { handler as adminHandler } from '../../src/runtimes/lambda/admin.ts';
import { closeContainers, container } from '../../src/runtimes/lambda/container.ts';
import { handler as dispatcherHandler } from '../../src/runtimes/lambda/dispatcher.ts';
import { handler as ingestHandler } from '../../src/runtimes/lambda/ingest.ts';
import { DISPATCHER_DUE_TOPIC } from '../../src/runtimes/lambda/lambda-bus.ts';
import { consumerGroupId } from '../../src/runtimes/lambda/mapping-settings.ts';
import { handler as processorHandler } from '../../src/runtimes/lambda/processor.ts';
import { handler as schedulerHandler } from '../../src/runtimes/lambda/scheduler.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { broker, kafkaSettings, stopBroker } from '../support/kafka.ts';
import { callHttp, type HttpCall, lambdaContext, startEsmDriver, useLambdaEnv } from '../support/lambda.ts';
import { ORDERS_SCHEMA, orderEvent } from '../support/pipeline.ts';
import { type ReceiverOptions, startReceiver, type TestReceiver } from '../support/receiver.ts';
import { latch, waitFor } from '../support/wait.ts';

const ADMIN_TOKEN = 'lambda-e2e-admin-token-0123456789';
let dynamo: Dynalite;
let bus: KafkaBus;
let driver: { invocations: number; stop(): Promise<void> };
let schedulerRuns = true;
let scheduler: Promise<void>;
const receivers: TestReceiver[] = [];
let restoreEnv = () => {};

before(async () => {
  dynamo = await startDynalite();
  const kafka = await broker();
  bus = new KafkaBus(kafkaSettings(kafka));
  restoreEnv = await useLambdaEnv({
    bootstrap: kafka.bootstrap,
    dynamoEndpoint: dynamo.endpoint,
    adminToken: ADMIN_TOKEN,
    extra: {
      // Hundreds of invocations: their EMF documents would fill the test output.
      POWERTOOLS_METRICS_DISABLED: 'true',
      // Below the 6 s retry's shortest jittered delay (4.8 s), above the 1 s retry's longest (1.2 s):
      // the one always waits inside the invocation, the other always in the store.
      WEBHOOKS_LAMBDA_INLINE_WAIT_MS: '3000',
    },
  });
  // The admin's first invocation makes the pipeline's topics (as on AWS), before the mappings run.
  await container('admin');
  driver = startEsmDriver(bus, [
    {
      group: consumerGroupId('processor', 'ingress'),
      topicPrefixes: ['ingress.', 'retry.processor.'],
      handler: processorHandler,
    },
    {
      group: consumerGroupId('dispatcher', 'egress'),
      topicPrefixes: ['egress.', DISPATCHER_DUE_TOPIC],
      handler: dispatcherHandler,
    },
  ]);
  // EventBridge runs the scheduler every minute; here every 200 ms, so that no test waits minutes.
  scheduler = (async () => {
    while (schedulerRuns) {
      await schedulerHandler({ source: 'aws.events' }, lambdaContext()).catch(() => {});
      await sleep(200);
    }
  })();
});

after(async () => {
  schedulerRuns = false;
  await scheduler;
  await driver?.stop();
  await closeContainers();
  await bus?.close();
  await Promise.all(receivers.map((r) => r.close()));
  await dynamo?.stop();
  await stopBroker();
  restoreEnv();
});

const admin = (call: HttpCall) =>
  callHttp(adminHandler, { iamUser: 'arn:aws:iam::123456789012:role/ops', ...call });

async function receiver(options: ReceiverOptions = {}): Promise<TestReceiver> {
  const r = await startReceiver(options);
  receivers.push(r);
  return r;
}

/** A schema for `event`, a partner (with `delivery` settings) and its subscription to `r`. */
async function subscribe(
  r: TestReceiver,
  event: string,
  options: { subscription?: Record<string, unknown>; delivery?: Record<string, unknown> } = {},
): Promise<{ partnerId: string; subscriptionId: string }> {
  await admin({
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'orders', event, schema: ORDERS_SCHEMA },
  });
  const partnerId = `p-${randomUUID().slice(0, 8)}`;
  const p = await admin({
    method: 'POST',
    path: '/admin/partners',
    body: { id: partnerId, name: partnerId, ...(options.delivery ? { delivery: options.delivery } : {}) },
  });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const s = await admin({
    method: 'POST',
    path: '/admin/subscriptions',
    body: { partnerId, domain: 'orders', event, url: `${r.url}/hooks/${partnerId}`, ...options.subscription },
  });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  r.secret = s.body.secret;
  return { partnerId, subscriptionId: s.body.id };
}

/** Events as a producer on MSK writes them: CloudEvents binary mode on the schema's ingress topic. */
async function publishToMsk(events: Array<Record<string, unknown>>): Promise<void> {
  await bus.publish(
    events.map((e) => {
      const envelope = parseStructuredEvent(e);
      return {
        topic: ingressTopic(envelope.domain, envelope.event, 1),
        key: String(e.id),
        ...toKafkaRecord(envelope, 'binary'),
      };
    }),
  );
}

/** Events through the ingest function (HTTP API 2.0), as a producer with an API key would. */
async function publishToApi(events: Array<Record<string, unknown>>): Promise<void> {
  const res = await callHttp(ingestHandler, {
    method: 'POST',
    path: '/events',
    raw: JSON.stringify(events),
    headers: { 'content-type': 'application/cloudevents-batch+json', authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
}

const ofType = (type: string) => () => ({ ...orderEvent(), type });

describe('the Lambda functions on event source mappings, end to end', () => {
  test('events published to MSK-style ingress topics and through the ingest function reach an HTTPS partner, signed', async () => {
    const r = await receiver();
    const { subscriptionId } = await subscribe(r, 'placed');
    const fromMsk = Array.from({ length: 60 }, ofType('orders.placed'));
    const fromApi = Array.from({ length: 40 }, ofType('orders.placed'));
    await publishToMsk(fromMsk);
    await publishToApi(fromApi);
    const got = await r.waitFor(100, 60_000);
    assert.equal(
      got.filter((d) => d.verified === true).length,
      100,
      got.find((d) => !d.verified)?.verifyError,
    );
    assert.deepEqual(
      new Set(got.map((d) => d.json.orderId)),
      new Set([...fromMsk, ...fromApi].map((e) => (e.data as { orderId: string }).orderId)),
    );
    assert.equal(new Set(got.map((d) => d.headers['webhook-id'])).size, 100, 'one webhook-id per delivery');
    const listed = await waitFor('every delivery recorded SUCCESS', async () => {
      const page = await admin({
        method: 'GET',
        path: '/admin/deliveries',
        query: { subscriptionId, limit: '200' },
      });
      const items = page.body.items as Array<{ status: string }>;
      return items.length === 100 && items.every((d) => d.status === 'SUCCESS') && items;
    });
    assert.equal(listed.length, 100);
  });

  test('a retry waits inside the invocation when short, in DynamoDB until the scheduler publishes it when long', async () => {
    const short = await receiver({ answer: (n) => ({ status: n === 0 ? 503 : 204 }) });
    const long = await receiver({ answer: (n) => ({ status: n === 0 ? 503 : 204 }) });
    await subscribe(short, 'retried', { subscription: { retry: { scheduleSeconds: [1] } } });
    await subscribe(long, 'retried', { subscription: { retry: { scheduleSeconds: [6] } } });
    const { bus: dispatcherBus } = await container('dispatcher');
    const before = { ...dispatcherBus.counts };
    await publishToMsk([ofType('orders.retried')()]);
    const [first, second] = await short.waitFor(2, 60_000);
    assert.equal(second!.headers['webhook-id'], first!.headers['webhook-id']);
    assert.equal(second!.verified, true);
    const [a, b] = await long.waitFor(2, 60_000);
    assert.equal(b!.headers['webhook-id'], a!.headers['webhook-id']);
    assert.ok(b!.at - a!.at >= 6_000 * 0.8, `the second attempt came ${b!.at - a!.at} ms after the first`);
    assert.ok(dispatcherBus.counts.waited > before.waited, 'the 1 s retry waited inside an invocation');
    assert.ok(dispatcherBus.counts.scheduled > before.scheduled, 'the 6 s retry was kept in the store');
  });

  test('a partner that hangs holds only its own topic: another partner of the same event is delivered meanwhile', async () => {
    const release = latch();
    const slow = await receiver({ answer: () => ({ status: 204, until: release.opened }) });
    const fast = await receiver();
    await subscribe(slow, 'split', {
      delivery: { timeouts: { connectMs: 2000, headersMs: 30_000, bodyMs: 10_000 } },
    });
    await subscribe(fast, 'split');
    await publishToMsk(Array.from({ length: 20 }, ofType('orders.split')));
    await fast.waitFor(20, 60_000);
    await slow.waitFor(1, 60_000);
    release.open();
    await slow.waitFor(20, 60_000);
  });

  test("a partner's concurrency limit holds across the invocations of its topic", async () => {
    const r = await receiver({ answer: () => ({ status: 204, delayMs: 100 }) });
    await subscribe(r, 'limited', { delivery: { maxConcurrency: 2 } });
    await publishToApi(Array.from({ length: 30 }, ofType('orders.limited')));
    const got = await r.waitFor(30, 60_000);
    // Each request is answered 100 ms after it arrives: with at most 2 at a time, no 90 ms window
    // holds more than 2 arrivals.
    const arrivals = got.map((d) => d.at).sort((x, y) => x - y);
    let most = 0;
    for (let i = 0; i < arrivals.length; i++) {
      let j = i;
      while (j + 1 < arrivals.length && arrivals[j + 1]! - arrivals[i]! < 90) j++;
      most = Math.max(most, j - i + 1);
    }
    assert.ok(most <= 2, `${most} requests arrived within 90 ms`);
    assert.ok(driver.invocations > 0);
  });
});
