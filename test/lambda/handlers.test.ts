/**
 * The Lambda handlers invoked with realistic API Gateway (REST 1.0, HTTP 2.0) and MSK events against
 * real engines — a Kafka broker and DynamoDB (dynalite) — and a real HTTPS partner. AWS's control
 * plane (Lambda's event source mapping API) is the one thing played by a fake.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import { parseDeliveryTask } from '../../src/common/delivery-task.ts';
import type { ConsumedMessage } from '../../src/common/ports/bus.ts';
import { egressTopic, ingressTopic } from '../../src/common/topics.ts';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';
import { publishDue } from '../../src/operations/scheduled.ts';
import { PROCESSOR_RETRY_TOPIC } from '../../src/processor/retry.ts';
import { handler as adminHandler } from '../../src/runtimes/lambda/admin.ts';
import { closeContainers, container, lambdaConfig } from '../../src/runtimes/lambda/container.ts';
import { handler as dispatcherHandler } from '../../src/runtimes/lambda/dispatcher.ts';
import { handler as ingestHandler } from '../../src/runtimes/lambda/ingest.ts';
import { DISPATCHER_DUE_TOPIC } from '../../src/runtimes/lambda/lambda-bus.ts';
import { handler as processorHandler } from '../../src/runtimes/lambda/processor.ts';
import { handler as schedulerHandler } from '../../src/runtimes/lambda/scheduler.ts';
import { buildPlatform } from '../../src/runtimes/platform.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { broker, kafkaSettings, stopBroker } from '../support/kafka.ts';
import {
  callHttp,
  type HttpCall,
  httpApiEvent,
  lambdaContext,
  mskEvent,
  signedBytes,
  useLambdaEnv,
} from '../support/lambda.ts';
import { ORDERS_SCHEMA, orderEvent } from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import { waitFor } from '../support/wait.ts';

const ADMIN_TOKEN = 'lambda-admin-token-0123456789abcdef';
const OPERATOR = 'arn:aws:iam::123456789012:role/webhooks-operators';
const CLUSTER_ARN =
  'arn:aws:kafka:eu-west-1:123456789012:cluster/webhooks/abcd1234-0000-0000-0000-000000000000-1';

let dynamo: Dynalite;
let bus: KafkaBus;
let controlPlane: FakeLambdaControlPlane;
const receivers: TestReceiver[] = [];
let restoreEnv = () => {};

before(async () => {
  dynamo = await startDynalite();
  const kafka = await broker();
  bus = new KafkaBus(kafkaSettings(kafka));
  controlPlane = await startFakeControlPlane();
  restoreEnv = await useLambdaEnv({
    bootstrap: kafka.bootstrap,
    dynamoEndpoint: dynamo.endpoint,
    adminToken: ADMIN_TOKEN,
    extra: {
      WEBHOOKS_MSK_CLUSTER_ARN: CLUSTER_ARN,
      WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION: 'arn:aws:lambda:eu-west-1:123456789012:function:webhooks-processor',
      WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION:
        'arn:aws:lambda:eu-west-1:123456789012:function:webhooks-dispatcher',
      WEBHOOKS_LAMBDA_ENDPOINT: controlPlane.url,
      AWS_REGION: 'eu-west-1',
    },
  });
});

after(async () => {
  await closeContainers();
  await bus?.close();
  await Promise.all(receivers.map((r) => r.close()));
  await controlPlane?.close();
  await dynamo?.stop();
  await stopBroker();
  restoreEnv();
});

/** The admin function as an operator behind the IAM authorizer calls it (HTTP API 2.0). */
const admin = (call: HttpCall) => callHttp(adminHandler, { iamUser: OPERATOR, ...call });

async function receiver(options: Parameters<typeof startReceiver>[0] = {}): Promise<TestReceiver> {
  const r = await startReceiver(options);
  receivers.push(r);
  return r;
}

/** A schema, a partner and its subscription to `r`, through the admin function. */
async function subscribeVia(
  r: TestReceiver,
  event: string,
  subscription: Record<string, unknown> = {},
): Promise<{ partnerId: string; subscriptionId: string }> {
  const schema = await admin({
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'orders', event, schema: ORDERS_SCHEMA },
  });
  assert.ok(
    schema.status === 201 || schema.status === 200 || schema.status === 409,
    JSON.stringify(schema.body),
  );
  const partnerId = `p-${randomUUID().slice(0, 8)}`;
  const p = await admin({
    method: 'POST',
    path: '/admin/partners',
    body: { id: partnerId, name: partnerId },
  });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const s = await admin({
    method: 'POST',
    path: '/admin/subscriptions',
    body: { partnerId, domain: 'orders', event, url: `${r.url}/hooks/${partnerId}`, ...subscription },
  });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  r.secret = s.body.secret;
  return { partnerId, subscriptionId: s.body.id };
}

/** A record as the event source mapping hands it over. */
function record(
  topic: string,
  partition: number,
  offset: number,
  value: string,
  headers: Record<string, string> = {},
): ConsumedMessage {
  return { topic, partition, offset, value, headers, timestamp: Date.now() };
}

/** The messages of topics under `prefix` published so far (a throwaway consumer group), once `enough` holds. */
async function readTopic(
  prefix: string,
  enough: number | ((got: ConsumedMessage[]) => boolean),
): Promise<ConsumedMessage[]> {
  const got: ConsumedMessage[] = [];
  const done = typeof enough === 'number' ? () => got.length >= enough : () => enough(got);
  const handle = bus.consume({
    group: `probe-${randomUUID()}`,
    topicPrefixes: [prefix],
    handler: async (batch) => {
      got.push(...batch);
      return { failed: [] };
    },
  });
  try {
    await waitFor(`messages on ${prefix}`, done);
  } finally {
    await handle.stop();
  }
  return got;
}

// First in the file, while the broker has none of the pipeline topics yet.
test('a cold start that fails after the platform is built (the topics cannot be created) closes what it built', async () => {
  const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
  const before = sockets();
  // A replication factor of 3 on this one-broker cluster: CreateTopics is refused.
  const env = { ...process.env, WEBHOOKS_KAFKA_REPLICATION_FACTOR: '3' };
  for (let i = 0; i < 3; i++) await assert.rejects(container('scheduler', { env }), /replication/i);
  // Each start opened Kafka and DynamoDB connections; none is left open after its failure.
  await waitFor('the failed starts’ sockets closed', async () => sockets() <= before, 10_000);
});

describe('API Gateway functions (admin, ingest)', () => {
  test("answer REST API (1.0) and HTTP API (2.0) events with the standalone server's routes, statuses and error bodies", async () => {
    const standalone = await buildPlatform(lambdaConfig(process.env), { roles: ['api'] });
    try {
      const same = async (call: HttpCall, token: string | null = ADMIN_TOKEN) => {
        const headers = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...call.headers };
        const server = await standalone.handle({
          method: call.method,
          url: call.path,
          headers: Object.fromEntries(
            Object.entries({ 'content-type': 'application/json', ...headers }).map(([k, v]) => [
              k.toLowerCase(),
              v,
            ]),
          ),
          body: call.raw ?? (call.body === undefined ? '' : JSON.stringify(call.body)),
        });
        for (const version of ['1.0', '2.0'] as const) {
          const lambda = await callHttp(adminHandler, { ...call, headers }, version);
          assert.equal(lambda.status, server.status, `${version} ${call.method} ${call.path}`);
          assert.deepEqual(lambda.body, server.body, `${version} ${call.method} ${call.path}`);
        }
        return server;
      };
      const invalid = await same({
        method: 'POST',
        path: '/admin/schemas',
        body: { domain: 'bad domain!', event: 'x', schema: {} },
      });
      assert.equal(invalid.status, 400);
      assert.equal((await same({ method: 'GET', path: '/admin/nowhere' })).status, 404);
      assert.equal(
        (await same({ method: 'POST', path: '/admin/partners', body: { id: 'x', name: 'x' } }, null)).status,
        401,
      );
      assert.equal((await same({ method: 'PUT', path: '/events', body: {} })).status, 405);
      assert.equal(
        (await same({ method: 'POST', path: '/admin/partners', raw: '{"id": "broken' })).status,
        400,
      );
    } finally {
      await standalone.close();
    }
  });

  test('the admin function takes the caller its IAM authorizer named, and the audit log names it', async () => {
    const created = await admin({
      method: 'POST',
      path: '/admin/partners',
      body: { id: `audited-${randomUUID().slice(0, 6)}`, name: 'Audited' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const audit = await admin({ method: 'GET', path: '/admin/audit', query: { limit: '1000' } });
    assert.equal(audit.status, 200);
    const entry = audit.body.items.find((a: any) => a.target?.id === created.body.id);
    assert.equal(entry?.actor, `gateway:${OPERATOR}`);
    // A named stage prefixes the raw path of an HTTP API event; the route is found all the same.
    const staged = await callHttp(adminHandler, {
      method: 'GET',
      path: `/admin/partners/${created.body.id}`,
      iamUser: OPERATOR,
      stage: 'prod',
    });
    assert.equal(staged.status, 200);
  });

  test("the ingest function takes producers' API keys, not the authorizer's caller", async () => {
    await subscribeVia(await receiver(), 'created');
    const key = await admin({
      method: 'POST',
      path: '/admin/api-keys',
      body: { name: 'shop', role: 'publisher', sources: ['/shop'] },
    });
    assert.equal(key.status, 201, JSON.stringify(key.body));
    const event = orderEvent();
    const headers = { 'content-type': 'application/cloudevents+json' };
    const v1 = await callHttp(
      ingestHandler,
      {
        method: 'POST',
        path: '/events',
        body: event,
        headers: { ...headers, authorization: `Bearer ${key.body.key}` },
      },
      '1.0',
    );
    assert.equal(v1.status, 202, JSON.stringify(v1.body));
    // Base64 bodies (binary media types) are read as the same UTF-8 text.
    const v2 = await callHttp(ingestHandler, {
      method: 'POST',
      path: '/events',
      body: orderEvent(),
      base64: true,
      headers: { ...headers, authorization: `Bearer ${key.body.key}` },
    });
    assert.equal(v2.status, 202, JSON.stringify(v2.body));
    const anonymous = await callHttp(ingestHandler, {
      method: 'POST',
      path: '/events',
      body: event,
      headers,
      iamUser: OPERATOR,
    });
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error.code, 'unauthorized');
    const tooLarge = await callHttp(ingestHandler, {
      method: 'POST',
      path: '/events',
      raw: 'x'.repeat(2 * 1024 * 1024),
      headers,
    });
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.body.error.code, 'payload_too_large');
    const notUtf8 = await ingestHandler({
      ...(httpApiEvent({ method: 'POST', path: '/events', headers }) as object),
      body: Buffer.from([0xff, 0xfe]).toString('base64'),
      isBase64Encoded: true,
    });
    assert.equal(notUtf8.statusCode, 400);
    assert.equal(JSON.parse(notUtf8.body).error.code, 'invalid_utf8');
  });

  test('a second invocation reuses the container: the same store, bus and components', async () => {
    const first = await container('admin');
    await admin({ method: 'GET', path: '/admin/partners' });
    await admin({ method: 'GET', path: '/admin/partners' });
    const second = await container('admin');
    assert.equal(second, first);
    assert.equal(second.platform.store, first.platform.store);
    assert.equal(second.platform.bus, first.platform.bus);
  });

  test('the admin creates an event source mapping for each new ingress and egress topic; the scheduler retires the egress one after its last subscription', async () => {
    const r = await receiver();
    const { partnerId, subscriptionId } = await subscribeVia(r, 'mapped');
    const ingress = ingressTopic('orders', 'mapped', 1);
    const egress = egressTopic(partnerId, 'orders', 'mapped');
    const created = (topic: string) => controlPlane.mappings.find((m) => m.Topics?.[0] === topic);
    assert.equal(created(ingress)?.FunctionName, process.env.WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION);
    const mapping = created(egress);
    assert.equal(mapping?.FunctionName, process.env.WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION);
    assert.equal(mapping?.EventSourceArn, CLUSTER_ARN);
    assert.equal(mapping?.BatchSize, 100);
    assert.deepEqual(mapping?.FunctionResponseTypes, ['ReportBatchItemFailures']);
    assert.ok((mapping?.ProvisionedPollerConfig?.MinimumPollers ?? 0) >= 1, 'provisioned pollers');
    assert.equal(
      mapping?.ProvisionedPollerConfig?.PollerGroupName,
      `${process.env.WEBHOOKS_DYNAMODB_TABLE_PREFIX}-dispatcher-0`,
      'pollers shared in a group',
    );
    assert.equal(mapping?.DestinationConfig?.OnFailure?.Destination, 'kafka://dlq.dispatcher');
    assert.ok(mapping?.AmazonManagedKafkaEventSourceConfig?.ConsumerGroupId);
    // A second subscription on the same topic makes no second mapping.
    const again = await admin({
      method: 'POST',
      path: '/admin/subscriptions',
      body: { partnerId, domain: 'orders', event: 'mapped', url: `${r.url}/second` },
    });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal(controlPlane.mappings.filter((m) => m.Topics?.[0] === egress).length, 1);
    // The scheduler retires the mapping of an egress topic left without a subscription, once two of
    // its reconciliations in a row found it unused; it leaves the others, and makes missing ones.
    const { triggers, platform } = await container('scheduler');
    const reconcile = () => triggers!.reconcile(platform.store.subscriptions);
    assert.equal(
      (await admin({ method: 'DELETE', path: `/admin/subscriptions/${subscriptionId}` })).status,
      204,
    );
    await reconcile();
    await reconcile();
    assert.ok(created(egress), 'one subscription is left: the mapping stays');
    assert.equal(
      (await admin({ method: 'DELETE', path: `/admin/subscriptions/${again.body.id}` })).status,
      204,
    );
    assert.deepEqual(await reconcile(), { created: 0, deleted: 0 });
    assert.ok(created(egress), 'one reconciliation found it unused: it stays');
    assert.deepEqual(await reconcile(), { created: 0, deleted: 1 });
    assert.equal(created(egress), undefined, 'the second one retired it');
    assert.ok(created(ingress), 'the ingress mapping stays (the schema does)');
    // A mapping missing for a topic that has subscriptions (deleted by hand) is made again.
    const other = await subscribeVia(r, 'remapped');
    const remapped = egressTopic(other.partnerId, 'orders', 'remapped');
    controlPlane.mappings.splice(controlPlane.mappings.indexOf(created(remapped)!), 1);
    assert.equal((await reconcile()).created, 1);
    assert.ok(created(remapped));
  });
});

describe('Kafka functions (processor, dispatcher, scheduler)', () => {
  test('the processor and the dispatcher reuse their containers between invocations: the same store, bus and components', async () => {
    for (const [kind, handler] of [
      ['processor', processorHandler],
      ['dispatcher', dispatcherHandler],
    ] as const) {
      assert.deepEqual(await handler(mskEvent([]), lambdaContext()), { batchItemFailures: [] });
      const first = await container(kind);
      assert.deepEqual(await handler(mskEvent([]), lambdaContext()), { batchItemFailures: [] });
      const second = await container(kind);
      assert.equal(second, first, kind);
      assert.equal(second.platform.store, first.platform.store, kind);
      assert.equal(second.platform.bus, first.platform.bus, kind);
    }
  });

  test('a processor batch of good, schema-invalid, poison and unwritable records: the exact partial batch response, the egress tasks and the dead letters', async () => {
    const fast = await receiver();
    const good = await subscribeVia(fast, 'created');
    // An egress topic the broker refuses every task of (an operator set max.message.bytes too small):
    // writing its records' outputs fails however often it is tried.
    const refused = `p-${randomUUID().slice(0, 8)}`;
    const tiny = new KafkaBus(kafkaSettings(await broker(), { topicConfig: { 'max.message.bytes': '200' } }));
    await tiny.ensureTopic(egressTopic(refused, 'orders', 'cancelled'), { partitions: 1 });
    await tiny.close();
    await admin({
      method: 'POST',
      path: '/admin/schemas',
      body: { domain: 'orders', event: 'cancelled', schema: ORDERS_SCHEMA },
    });
    await admin({ method: 'POST', path: '/admin/partners', body: { id: refused, name: 'refused' } });
    const sub = await admin({
      method: 'POST',
      path: '/admin/subscriptions',
      body: { partnerId: refused, domain: 'orders', event: 'cancelled', url: `${fast.url}/refused` },
    });
    assert.equal(sub.status, 201, JSON.stringify(sub.body));

    const created = ingressTopic('orders', 'created', 1);
    const cancelled = ingressTopic('orders', 'cancelled', 1);
    const ok = orderEvent();
    const invalid = orderEvent({ amount: 'lots' });
    const binary = orderEvent({}, { source: '/boutique/crème-brûlée' });
    const c1 = { ...orderEvent(), type: 'orders.cancelled' };
    const c2 = { ...orderEvent(), type: 'orders.cancelled' };
    const structured = { 'content-type': 'application/cloudevents+json' };
    const { data, ...attrs } = binary;
    const binaryHeaders: Record<string, string> = { 'content-type': 'application/json' };
    for (const [k, v] of Object.entries(attrs)) binaryHeaders[`ce_${k}`] = String(v);
    const batch = [
      record(created, 0, 10, JSON.stringify(ok), structured),
      record(created, 0, 11, JSON.stringify(invalid), structured),
      record(created, 0, 12, '{"specversion": "1.0", "id": ', structured),
      record(created, 0, 13, JSON.stringify(data), binaryHeaders),
      record(cancelled, 1, 5, JSON.stringify(c1), structured),
      record(cancelled, 1, 6, JSON.stringify(c2), structured),
    ];
    const event = mskEvent(batch);
    // The header values are Java's signed bytes: "é" is [-61, -87].
    const sourceHeader = event.records[`${created}-0`]![3]!.headers!.find((h) => 'ce_source' in h)!;
    assert.ok(sourceHeader.ce_source!.some((b) => b < 0));
    assert.deepEqual(sourceHeader.ce_source, signedBytes('/boutique/crème-brûlée'));

    const response = await processorHandler(event, lambdaContext());
    assert.deepEqual(response, {
      // Both unwritable records, each named: whichever way Lambda reads the list, neither is lost.
      batchItemFailures: [
        { itemIdentifier: { partition: `${cancelled}-1`, offset: 5 } },
        { itemIdentifier: { partition: `${cancelled}-1`, offset: 6 } },
      ],
    });
    // At least once: a record's tasks may be written twice (the batch's write, then the record's own
    // after the batch's failed), which the dispatcher's ledger absorbs.
    const eventIds = (got: ConsumedMessage[]) => new Set(got.map((t) => parseDeliveryTask(t.value).event.id));
    const tasks = await readTopic(
      egressTopic(good.partnerId, 'orders', 'created'),
      (got) => eventIds(got).size >= 2,
    );
    assert.deepEqual([...eventIds(tasks)].sort(), [ok.id, binary.id].sort());
    assert.equal(
      parseDeliveryTask(tasks.find((t) => parseDeliveryTask(t.value).event.id === binary.id)!.value).event
        .source,
      '/boutique/crème-brûlée',
    );
    const dlq = await admin({ method: 'GET', path: '/admin/dlq', query: { stage: 'processor' } });
    const reasons = Object.fromEntries(
      dlq.body.items
        .filter((d: any) => d.topic === created)
        .map((d: any) => [d.eventId ?? 'unparsable', d.reason]),
    );
    assert.equal(reasons[invalid.id], 'data_invalid');
    assert.equal(
      Object.values(reasons).filter((r) => r === 'invalid_json').length,
      1,
      JSON.stringify(reasons),
    );
    assert.equal(
      dlq.body.items.filter((d: any) => d.topic === cancelled).length,
      0,
      'the unwritable records are not given up: they come again',
    );
    // The DLQ topic holds the same two, as they were read, with their reasons.
    const poisonValue = '{"specversion": "1.0", "id": ';
    const onTopic = await readTopic('dlq.processor', (got) =>
      [JSON.stringify(invalid), poisonValue].every((v) => got.some((m) => m.value === v)),
    );
    const reasonOf = (value: string) => onTopic.find((m) => m.value === value)?.headers[HEADERS.reason];
    assert.equal(reasonOf(JSON.stringify(invalid)), 'data_invalid');
    assert.equal(reasonOf(poisonValue), 'invalid_json');
    assert.ok(
      !onTopic.some((m) => [JSON.stringify(c1), JSON.stringify(c2)].includes(m.value)),
      'nor on the DLQ topic',
    );
  });

  test('a dispatcher batch: delivered, retried later through the store and the scheduler, failed for good, and poison', async () => {
    const okReceiver = await receiver();
    const down = await receiver({ answer: (n) => ({ status: n === 0 ? 503 : 204 }) });
    const refusing = await receiver({ answer: () => ({ status: 400 }) });
    const a = await subscribeVia(okReceiver, 'paid');
    const b = await subscribeVia(down, 'paid', { retry: { scheduleSeconds: [7200], maxAttempts: 3 } });
    const c = await subscribeVia(refusing, 'paid');
    const paid = orderEvent();
    const routed = await processorHandler(
      mskEvent([
        record(ingressTopic('orders', 'paid', 1), 0, 0, JSON.stringify({ ...paid, type: 'orders.paid' }), {
          'content-type': 'application/cloudevents+json',
        }),
      ]),
      lambdaContext(),
    );
    assert.deepEqual(routed, { batchItemFailures: [] });
    const dl = await admin({
      method: 'GET',
      path: '/admin/dlq',
      query: { stage: 'processor', eventId: paid.id },
    });
    assert.deepEqual(dl.body.items, [], 'routed, not dead-lettered');
    const tasks = [
      ...(await readTopic(egressTopic(a.partnerId, 'orders', 'paid'), 1)),
      ...(await readTopic(egressTopic(b.partnerId, 'orders', 'paid'), 1)),
      ...(await readTopic(egressTopic(c.partnerId, 'orders', 'paid'), 1)),
    ];
    const poison = record(
      egressTopic(a.partnerId, 'orders', 'paid'),
      tasks[0]!.partition,
      tasks[0]!.offset + 1,
      'not a task',
    );
    const { platform } = await container('dispatcher');
    const keptBefore = await platform.store.scheduled.count();
    const started = Date.now();

    const response = await dispatcherHandler(mskEvent([...tasks, poison]), lambdaContext());
    assert.deepEqual(response, { batchItemFailures: [] });
    assert.equal(okReceiver.received.length, 1);
    assert.equal(okReceiver.received[0]!.verified, true, okReceiver.received[0]!.verifyError);
    assert.equal(refusing.received.length, 1);
    assert.equal(down.received.length, 1);
    // The retry due in 2 h waits in the store, not in a function: kept for retry.dispatcher.due.
    assert.equal(await platform.store.scheduled.count(), keptBefore + 1);
    const [kept] = await platform.store.scheduled
      .due(started + 7_200_000 * 1.3, 1000)
      .then((all) => all.filter((k) => k.message.key === b.subscriptionId));
    assert.ok(kept, 'the retry is kept');
    assert.equal(kept.message.topic, DISPATCHER_DUE_TOPIC);
    assert.ok(
      kept.dueAt >= started + 7_200_000 * 0.8 && kept.dueAt <= Date.now() + 7_200_000 * 1.2,
      `due in about 2 h: ${kept.dueAt - started} ms`,
    );
    assert.equal(kept.message.headers?.[HEADERS.originTopic], egressTopic(b.partnerId, 'orders', 'paid'));
    const deliveries = async (sub: string) =>
      (await admin({ method: 'GET', path: '/admin/deliveries', query: { subscriptionId: sub } })).body.items;
    assert.equal((await deliveries(a.subscriptionId))[0].status, 'SUCCESS');
    assert.equal((await deliveries(b.subscriptionId))[0].status, 'PENDING');
    assert.equal((await deliveries(c.subscriptionId))[0].status, 'FAILED');
    const dlq = (await admin({ method: 'GET', path: '/admin/dlq', query: { stage: 'dispatcher' } })).body
      .items;
    assert.equal(dlq.find((d: any) => d.subscriptionId === c.subscriptionId)?.reason, 'http_400');
    assert.ok(dlq.some((d: any) => d.reason === 'task_invalid' && d.value === 'not a task'));

    // A scheduler run now publishes nothing of it; a run once it is due does, to the due topic.
    await schedulerHandler({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, lambdaContext());
    assert.ok(
      await platform.store.scheduled.due(kept.dueAt, 1000).then((all) => all.some((k) => k.id === kept.id)),
      'not due yet: kept',
    );
    const published = await publishDue({
      scheduled: platform.store.scheduled,
      publish: (m) => platform.bus.publish(m),
      clock: () => kept.dueAt + 1,
    });
    assert.ok(published >= 1);
    const [due] = (await readTopic(DISPATCHER_DUE_TOPIC, 1)).filter((m) => m.key === b.subscriptionId);
    assert.ok(due, 'published to retry.dispatcher.due');
    // Handed to the dispatcher before its time (a clock ahead), it is kept again, not attempted early.
    const keptAgain = await platform.store.scheduled.count();
    assert.deepEqual(await dispatcherHandler(mskEvent([due]), lambdaContext()), { batchItemFailures: [] });
    assert.equal(await platform.store.scheduled.count(), keptAgain + 1);
    assert.equal(down.received.length, 1, 'not attempted before it is due');
    assert.equal((await deliveries(b.subscriptionId))[0].status, 'PENDING');
  });

  test('a processor record that fails transiently (the Partner Info API answering 503) waits in the store, comes back through the retry topic, and is routed', async () => {
    // A processor container whose partners come from a Partner Info API on loopback, down at first.
    let down = true;
    const asked: number[] = [];
    const partnerApi = createServer((req, res) => {
      const id = decodeURIComponent(req.url!.split('/').pop()!);
      asked.push(down ? 503 : 200);
      if (down) res.writeHead(503).end();
      else
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ id, name: 'Acme (API)' }));
    });
    await new Promise<void>((resolve) => partnerApi.listen(0, '127.0.0.1', resolve));
    await closeContainers();
    try {
      const r = await receiver();
      const { partnerId } = await subscribeVia(r, 'shipped', {
        mapping: {
          rules: [
            { to: 'order', from: 'orderId' },
            { to: 'partner', from: '$partner.name' },
          ],
        },
      });
      await container('processor', {
        env: {
          ...process.env,
          WEBHOOKS_PARTNER_API_URL: `http://127.0.0.1:${(partnerApi.address() as AddressInfo).port}`,
          WEBHOOKS_PARTNER_API_CACHE_TTL_MS: '0',
        },
      });
      const { platform } = await container('processor');
      const shipped = { ...orderEvent(), type: 'orders.shipped' };
      const ingress = record(ingressTopic('orders', 'shipped', 1), 0, 0, JSON.stringify(shipped), {
        'content-type': 'application/cloudevents+json',
      });
      const started = Date.now();
      // Not a failure of the batch: the record goes to the processor's retry topic, due in 30 s,
      // which is longer than an invocation waits: it is kept in the store meanwhile.
      assert.deepEqual(await processorHandler(mskEvent([ingress]), lambdaContext()), {
        batchItemFailures: [],
      });
      assert.deepEqual(asked, [503]);
      const [kept] = (await platform.store.scheduled.due(started + 60_000, 1000)).filter((k) =>
        k.message.value.includes(shipped.id),
      );
      assert.ok(kept, 'kept in the store');
      assert.equal(kept.message.topic, PROCESSOR_RETRY_TOPIC);
      assert.equal(kept.message.headers?.[HEADERS.attempt], '1');
      assert.match(kept.message.headers?.[HEADERS.lastError] ?? '', /Partner Info API/);
      assert.ok(
        kept.dueAt >= started + 25_000 && kept.dueAt <= Date.now() + 35_000,
        `${kept.dueAt - started} ms`,
      );
      const dlq = await admin({
        method: 'GET',
        path: '/admin/dlq',
        query: { stage: 'processor', eventId: shipped.id },
      });
      assert.deepEqual(dlq.body.items, []);

      // The API is back; the scheduler publishes the record when due, and its mapping reads it.
      down = false;
      await publishDue({
        scheduled: platform.store.scheduled,
        publish: (m) => platform.bus.publish(m),
        clock: () => kept.dueAt + 1,
      });
      const [again] = (
        await readTopic(PROCESSOR_RETRY_TOPIC, (got) => got.some((m) => m.value.includes(shipped.id)))
      ).filter((m) => m.value.includes(shipped.id));
      assert.deepEqual(await processorHandler(mskEvent([again!]), lambdaContext()), {
        batchItemFailures: [],
      });
      const [task] = await readTopic(egressTopic(partnerId, 'orders', 'shipped'), 1);
      assert.deepEqual(JSON.parse(parseDeliveryTask(task!.value).body), {
        order: shipped.data.orderId,
        partner: 'Acme (API)',
      });
      assert.deepEqual(await dispatcherHandler(mskEvent([task!]), lambdaContext()), {
        batchItemFailures: [],
      });
      const [got] = await r.waitFor(1);
      assert.equal(got!.verified, true, got!.verifyError);
      assert.deepEqual(got!.json, { order: shipped.data.orderId, partner: 'Acme (API)' });
      assert.deepEqual(asked, [503, 200]);
    } finally {
      // The other tests' functions read partners from the store again.
      await closeContainers();
      partnerApi.close();
    }
  });

  test('a retry due at once (a schedule of 0 s) goes to the due topic, which a mapping reads, not to a retry tier', async () => {
    const flaky = await receiver({ answer: (n) => ({ status: n === 0 ? 503 : 204 }) });
    const s = await subscribeVia(flaky, 'retriednow', { retry: { scheduleSeconds: [0] } });
    await processorHandler(
      mskEvent([
        record(
          ingressTopic('orders', 'retriednow', 1),
          0,
          0,
          JSON.stringify({ ...orderEvent(), type: 'orders.retriednow' }),
          { 'content-type': 'application/cloudevents+json' },
        ),
      ]),
      lambdaContext(),
    );
    const [task] = await readTopic(egressTopic(s.partnerId, 'orders', 'retriednow'), 1);
    assert.deepEqual(await dispatcherHandler(mskEvent([task!]), lambdaContext()), { batchItemFailures: [] });
    assert.equal(flaky.received.length, 1);
    const due = (
      await readTopic(DISPATCHER_DUE_TOPIC, (all) => all.some((m) => m.key === s.subscriptionId))
    ).find((m) => m.key === s.subscriptionId)!;
    assert.equal(parseDeliveryTask(due.value).attempt, 1);
    // From the due topic back to its egress topic, then to the partner.
    assert.deepEqual(await dispatcherHandler(mskEvent([due]), lambdaContext()), { batchItemFailures: [] });
    const back = (await readTopic(egressTopic(s.partnerId, 'orders', 'retriednow'), 2)).at(-1)!;
    assert.deepEqual(await dispatcherHandler(mskEvent([back]), lambdaContext()), { batchItemFailures: [] });
    assert.equal(flaky.received.length, 2);
    assert.equal(flaky.received[1]!.headers['webhook-id'], flaky.received[0]!.headers['webhook-id']);
  });

  test('an attempt that would outlast the invocation is not started: the task waits and no request is cut off', async () => {
    const slow = await receiver();
    const s = await subscribeVia(slow, 'shipped');
    await processorHandler(
      mskEvent([
        record(
          ingressTopic('orders', 'shipped', 1),
          0,
          0,
          JSON.stringify({ ...orderEvent(), type: 'orders.shipped' }),
          { 'content-type': 'application/cloudevents+json' },
        ),
      ]),
      lambdaContext(),
    );
    const [task] = await readTopic(egressTopic(s.partnerId, 'orders', 'shipped'), 1);
    // 8 s left: with the 3 s margin, 5 s — less than the attempt budget (connect, headers, body) and
    // than the 10 s an attempt is at least given. The 1 s wait fits in the invocation: it waits there.
    const response = await dispatcherHandler(mskEvent([task!]), lambdaContext(8_000));
    assert.deepEqual(response, { batchItemFailures: [] });
    assert.equal(slow.received.length, 0, 'no request was started');
    const waited = await readTopic(DISPATCHER_DUE_TOPIC, (all) =>
      all.some((m) => m.key === s.subscriptionId),
    );
    const again = waited.find((m) => m.key === s.subscriptionId)!;
    assert.equal(parseDeliveryTask(again.value).attempt, 0, 'no attempt counted');
    assert.equal(again.notBefore, undefined, 'published once due');
  });
});

interface CreatedMapping {
  UUID: string;
  FunctionName?: string;
  EventSourceArn?: string;
  Topics?: string[];
  BatchSize?: number;
  FunctionResponseTypes?: string[];
  ProvisionedPollerConfig?: { MinimumPollers: number; MaximumPollers: number; PollerGroupName?: string };
  DestinationConfig?: { OnFailure?: { Destination?: string } };
  AmazonManagedKafkaEventSourceConfig?: { ConsumerGroupId?: string };
}

interface FakeLambdaControlPlane {
  url: string;
  mappings: CreatedMapping[];
  close(): Promise<void>;
}

/** Lambda's event source mapping API (REST-JSON, 2015-03-31): create, list, delete, in memory. */
async function startFakeControlPlane(): Promise<FakeLambdaControlPlane> {
  const mappings: CreatedMapping[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'POST' && url.pathname.replace(/\/$/, '') === '/2015-03-31/event-source-mappings') {
        const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (
          mappings.some((m) => m.FunctionName === input.FunctionName && m.Topics?.[0] === input.Topics?.[0])
        )
          return reply(409, { Type: 'User', message: 'exists', __type: 'ResourceConflictException' });
        const mapping = { ...input, UUID: randomUUID(), State: 'Creating' };
        mappings.push(mapping);
        return reply(202, mapping);
      }
      if (req.method === 'GET' && url.pathname.replace(/\/$/, '') === '/2015-03-31/event-source-mappings') {
        const fn = url.searchParams.get('FunctionName');
        return reply(200, { EventSourceMappings: mappings.filter((m) => m.FunctionName === fn) });
      }
      const del = /^\/2015-03-31\/event-source-mappings\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'DELETE' && del) {
        const i = mappings.findIndex((m) => m.UUID === del[1]);
        if (i < 0) return reply(404, { __type: 'ResourceNotFoundException', message: 'no such mapping' });
        const [gone] = mappings.splice(i, 1);
        return reply(202, { ...gone, State: 'Deleting' });
      }
      reply(400, { __type: 'InvalidParameterValueException', message: `${req.method} ${url.pathname}` });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    mappings,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
