/**
 * The platform on a real Kafka broker, as the plan's producers and operators meet it: records
 * written to an ingress topic by a plain Kafka producer (CloudEvents Kafka binding, binary and
 * structured mode) are delivered like POST /events; a record that is neither goes to the processor
 * DLQ with its reason and its partition moves on; `webhooks publish --kafka` writes what a producer
 * would; SASL/SCRAM over TLS connects with the right password and is refused clearly with a wrong
 * one; brokers that cannot be reached stop the start with a clear error and a non-zero exit code.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { type AddressInfo, createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { toKafkaRecord } from '../../src/common/envelope-kafka.ts';
import { parseStructuredEvent } from '../../src/common/envelope-structured.ts';
import type { ConsumedMessage } from '../../src/common/ports/bus.ts';
import { egressTopic, ingressTopic } from '../../src/common/topics.ts';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';
import { publishToKafka } from '../../src/runtimes/cli/publish.ts';
import { freePort } from '../../tools/kafka/broker.ts';
import { killAll, startCli } from '../support/cli.ts';
import { broker, kafkaSettings, stopBroker } from '../support/kafka.ts';
import { orderEvent, startPipelineServer, subscribe, waitForDeliveries } from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import type { TestServer } from '../support/server.ts';
import { waitFor } from '../support/wait.ts';

const USER = { username: 'webhooks', password: 'scram-test-password-0123' };
const INGRESS = 'ingress.orders.created.v1';

after(async () => {
  killAll();
  await stopBroker();
});

describe('the platform on Kafka with producers outside it', () => {
  let server: TestServer;
  let receiver: TestReceiver;
  let producer: Producer<string, string, string, string>;
  before(async () => {
    const b = await broker({ scram: [USER] });
    server = await startPipelineServer({
      WEBHOOKS_BUS: 'kafka',
      WEBHOOKS_KAFKA_BROKERS: b.bootstrap,
      WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS: '6000',
    });
    receiver = await startReceiver();
    await subscribe(server, receiver);
    // A plain Kafka producer, nothing of the platform's: what an ERP team would run.
    producer = new Producer({
      clientId: 'erp',
      bootstrapBrokers: [b.bootstrap],
      idempotent: true,
      retries: 3,
      serializers: stringSerializers,
    });
  });
  after(async () => {
    await producer?.close();
    await server?.stop();
    await receiver?.close();
  });

  const publishRaw = (event: Record<string, unknown>) =>
    server.request('POST', '/events', event, { headers: { 'content-type': 'application/cloudevents+json' } });
  const delivered = (id: string) =>
    receiver.received.find((d) => d.headers['webhook-id'] && d.json?.orderId === id);

  test('binary and structured records of the CloudEvents Kafka binding are delivered like POST /events', async () => {
    const binary = orderEvent({ orderId: `bin-${randomUUID().slice(0, 6)}` });
    const structured = orderEvent({ orderId: `str-${randomUUID().slice(0, 6)}` });
    await producer.send({
      messages: [
        {
          topic: INGRESS,
          key: binary.id,
          value: JSON.stringify(binary.data),
          headers: {
            ce_specversion: '1.0',
            ce_id: binary.id,
            ce_source: binary.source,
            ce_type: binary.type,
            ce_time: binary.time,
            'content-type': 'application/json',
          },
        },
        {
          topic: INGRESS,
          key: structured.id,
          value: JSON.stringify(structured),
          headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
        },
      ],
    });
    await waitFor(
      'both deliveries',
      () => delivered(binary.data.orderId) && delivered(structured.data.orderId),
    );
    for (const event of [binary, structured]) {
      const got = delivered(event.data.orderId)!;
      assert.equal(got.verified, true, got.verifyError);
      assert.deepEqual(got.json, event.data);
      // The delivery's record is written once the partner has answered.
      await waitForDeliveries(server, `eventId=${event.id}`, (d) => d[0]?.status === 'SUCCESS');
    }
  });

  test('a record that is neither mode goes to the processor DLQ with its reason, and its partition moves on', async () => {
    const key = `same-key-${randomUUID().slice(0, 6)}`;
    const after = orderEvent({ orderId: `after-${randomUUID().slice(0, 6)}` });
    const sentinel = toKafkaRecord(parseStructuredEvent(after), 'binary');
    // One key, so one partition: the good record comes after the poison one.
    await producer.send({
      messages: [
        { topic: INGRESS, key, value: 'this is not an event', headers: {} },
        { topic: INGRESS, key, value: sentinel.value, headers: sentinel.headers },
      ],
    });
    await waitFor('the record after the poison one', () => delivered(after.data.orderId));
    const dlq = await waitFor('the dead letter', async () => {
      const res = await server.request('GET', '/admin/dlq?stage=processor');
      return res.body.items.find((d: { payload?: unknown; error?: string }) =>
        JSON.stringify(d).includes('this is not an event'),
      );
    });
    assert.equal(dlq.stage, 'processor');
    assert.match(dlq.reason, /invalid|envelope|json/i);
  });

  test('topics of Kafka’s default record limit (made before, or by hand): a 1 MiB event is answered 503 record_too_large at ingest; the processor tries its record again, then dead-letters it naming the topic, and the partition moves on', {
    timeout: 120_000,
  }, async () => {
    const b = await broker();
    const bus = new KafkaBus(kafkaSettings(b));
    const id = randomUUID().slice(0, 8);
    const partnerId = `tight-${id}`;
    try {
      // Made before the platform ensures them, with the broker's default limit (1,048,588 bytes).
      await bus.ensureTopic(ingressTopic('orders', `bulky${id}`, 1));
      await bus.ensureTopic(egressTopic(partnerId, 'orders', 'created'));
    } finally {
      await bus.close();
    }
    const huge = (event: ReturnType<typeof orderEvent>) => ({
      ...event,
      data: { ...event.data, note: 'x'.repeat(1024 * 1024 - JSON.stringify(event).length - 12) },
    });
    // Ingest: the ingress topic refuses the record. Not the producer's fault (the event is within the
    // body limit): 503, to be sent again once the topic's limit is raised.
    const schema = await server.request('POST', '/admin/schemas', {
      domain: 'orders',
      event: `bulky${id}`,
      schema: { type: 'object' },
    });
    assert.equal(schema.status, 201, JSON.stringify(schema.body));
    const bulky = huge(orderEvent({}, { type: `orders.bulky${id}` }));
    assert.ok(JSON.stringify(bulky).length <= 1024 * 1024);
    const refused = await publishRaw(bulky);
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'record_too_large');
    assert.match(refused.body.error.message, /max\.message\.bytes/);
    // An event within the body limit that grows past the topics' limit once written out again
    // (`1e20` is 21 digits in its envelope): refused for good, 413.
    const grows = orderEvent({ n: [] });
    const text = JSON.stringify(grows).replace('"n":[]', `"n":[${Array(200_000).fill('1e20').join(',')}]`);
    assert.ok(text.length <= 1024 * 1024);
    const tooBig = await server.request('POST', '/events', undefined, {
      raw: text,
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    assert.equal(tooBig.status, 413, JSON.stringify(tooBig.body));
    assert.equal(tooBig.body.error.code, 'record_too_large');
    // Processing: the egress topic of one partner refuses the task. The record is tried again with
    // backoff (the topic may be mended meanwhile), then dead-lettered, and its partition moves on.
    const tight = await startReceiver();
    try {
      assert.equal(
        (await server.request('POST', '/admin/partners', { id: partnerId, name: 'Tight' })).status,
        201,
      );
      const sub = await server.request('POST', '/admin/subscriptions', {
        partnerId,
        domain: 'orders',
        event: 'created',
        url: `${tight.url}/hooks/${partnerId}`,
      });
      assert.equal(sub.status, 201, JSON.stringify(sub.body));
      tight.secret = sub.body.secret;
      // One subject, so one ingress partition: the small event comes after the large one.
      const subject = `same-${id}`;
      const large = huge(orderEvent({ orderId: `large-${id}` }, { subject }));
      const small = orderEvent({ orderId: `small-${id}` }, { subject });
      assert.equal((await publishRaw(large)).status, 202);
      assert.equal((await publishRaw(small)).status, 202);
      const [got] = await tight.waitFor(1);
      assert.equal(got!.json.orderId, `small-${id}`);
      const dead = await waitFor('the dead letter', async () => {
        const res = await server.request('GET', '/admin/dlq?stage=processor');
        return res.body.items.find((d: { eventId?: string }) => d.eventId === large.id);
      });
      assert.equal(dead.reason, 'redelivery_exhausted');
      assert.equal(dead.attempts, 5);
      assert.match(dead.lastError, /max\.message\.bytes/);
      assert.match(
        dead.lastError,
        new RegExp(egressTopic(partnerId, 'orders', 'created').replaceAll('.', '\\.')),
      );
      assert.equal(tight.received.length, 1);
    } finally {
      await server.request(
        'DELETE',
        `/admin/subscriptions/${(await server.request('GET', `/admin/subscriptions?partnerId=${partnerId}`)).body.items[0]?.id}`,
      );
      await tight.close();
    }
  });

  test('webhooks publish --kafka writes events a producer would write, in either mode', async () => {
    const b = await broker();
    const events = [orderEvent({ orderId: `cli-b-${randomUUID().slice(0, 6)}` })];
    const structured = [orderEvent({ orderId: `cli-s-${randomUUID().slice(0, 6)}` })];
    const written = await publishToKafka(b.bootstrap, { events, batch: false }, { mode: 'binary' }, {});
    assert.deepEqual(written, [{ id: events[0]!.id, topic: INGRESS }]);
    await publishToKafka(b.bootstrap, { events: structured, batch: false }, { mode: 'structured' }, {});
    await waitFor('both', () => delivered(events[0]!.data.orderId) && delivered(structured[0]!.data.orderId));
  });
  test('brokers gone while running: /readyz says so; every event acknowledged before, during and after is delivered', async () => {
    const b = await broker();
    const sent = [orderEvent({ orderId: `out-a-${randomUUID().slice(0, 6)}` })];
    assert.equal((await publishRaw(sent[0]!)).status, 202);
    await waitFor('the first delivery', () => delivered(sent[0]!.data.orderId));
    // The broker stops answering (a frozen process: packets go unanswered, as in a partition).
    process.kill(b.pid, 'SIGSTOP');
    let resumed = false;
    try {
      const ready = await server.request('GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body.checks.bus, /^unavailable/);
      // A publish meanwhile waits for the cluster (or fails): it is never acknowledged unless stored.
      const during = orderEvent({ orderId: `out-b-${randomUUID().slice(0, 6)}` });
      const pending = publishRaw(during);
      await new Promise((r) => setTimeout(r, 2000));
      process.kill(b.pid, 'SIGCONT');
      resumed = true;
      const answer = await pending;
      if (answer.status === 202) sent.push(during);
      else assert.equal(answer.status, 503, JSON.stringify(answer.body));
    } finally {
      if (!resumed) process.kill(b.pid, 'SIGCONT');
    }
    await waitFor(
      '/readyz ok again',
      async () => (await server.request('GET', '/readyz')).status === 200,
      60_000,
      200,
    );
    const after = orderEvent({ orderId: `out-c-${randomUUID().slice(0, 6)}` });
    assert.equal((await publishRaw(after)).status, 202);
    sent.push(after);
    await waitFor('every acknowledged event', () => sent.every((e) => delivered(e.data.orderId)), 60_000);
  });
  test('a broker restarted while events flow (SIGTERM, as in a rolling restart): every acknowledged event is delivered', {
    timeout: 180_000,
  }, async () => {
    const b = await broker();
    const acknowledged: Array<ReturnType<typeof orderEvent>> = [];
    let refused = 0;
    let running = true;
    const flow = (async () => {
      for (let n = 0; running; n++) {
        const event = orderEvent({ orderId: `rr-${n}-${randomUUID().slice(0, 6)}` });
        const answer = await publishRaw(event).catch(() => undefined);
        if (answer?.status === 202) acknowledged.push(event);
        else refused += 1;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await waitFor('events acknowledged before the restart', () => acknowledged.length >= 10, 30_000);
      const before = acknowledged.length;
      const pid = b.pid;
      await b.restart();
      assert.notEqual(b.pid, pid, 'a new broker process');
      await waitFor(
        'events acknowledged after the restart',
        () => acknowledged.length >= before + 10,
        60_000,
      );
    } finally {
      running = false;
      await flow;
    }
    await waitFor(
      'every acknowledged event delivered',
      () => acknowledged.every((e) => delivered(e.data.orderId)),
      120_000,
      100,
    ).catch(() =>
      assert.fail(
        `${acknowledged.filter((e) => !delivered(e.data.orderId)).length} of ${acknowledged.length} acknowledged events never delivered (${refused} refused)`,
      ),
    );
  });
});

describe('the Kafka bus over SASL (PLAIN, SCRAM) and TLS', () => {
  for (const mechanism of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const) {
    test(`${mechanism}: the right password publishes and consumes over TLS; a wrong one is refused with a clear error`, async () => {
      const b = await broker({ scram: [USER] });
      const sasl = b.sasl!;
      const settings = (password: string) =>
        kafkaSettings(b, {
          brokers: [sasl.bootstrap],
          tls: { ca: sasl.caPem },
          sasl: { mechanism, username: USER.username, password },
          requestTimeoutMs: 5000,
        });
      const bus = new KafkaBus(settings(USER.password), { topicRefreshMs: 300 });
      try {
        await bus.connect();
        const topic = `sasl.${mechanism.toLowerCase()}.${randomUUID().slice(0, 8)}`;
        await bus.ensureTopic(topic, { partitions: 1 });
        await bus.publish([{ topic, key: 'k', value: '{"over":"tls"}' }]);
        const got: ConsumedMessage[] = [];
        const consumer = bus.consume({
          group: `sasl-${randomUUID().slice(0, 8)}`,
          topicPrefixes: [topic],
          handler: async (batch) => {
            got.push(...batch);
            return undefined;
          },
        });
        await waitFor('the message', () => got.length > 0);
        await consumer.stop();
        assert.equal(got[0]!.value, '{"over":"tls"}');
      } finally {
        await bus.close();
      }
      const wrong = new KafkaBus(settings('wrong-password'));
      const began = Date.now();
      await assert.rejects(wrong.connect(), (err: Error) => {
        assert.match(err.message, /cannot reach the Kafka brokers/);
        assert.match(err.message, /authenticat|SASL|credentials/i);
        return true;
      });
      assert.ok(Date.now() - began < 30_000, 'refused within 30 s');
      await wrong.close();
    });
  }
});

describe('a Kafka cluster that cannot be reached at start', () => {
  test('a broker address that accepts connections and never answers fails connect() at its deadline', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const bus = new KafkaBus({ brokers: [`127.0.0.1:${port}`] });
    const began = Date.now();
    try {
      await assert.rejects(
        bus.connect(2000),
        /cannot reach the Kafka brokers .*did not answer within 2000 ms/,
      );
      assert.ok(Date.now() - began < 5000, `took ${Date.now() - began} ms`);
    } finally {
      await bus.close();
      silent.close();
    }
  });

  test('the start stops with a clear error and a non-zero exit code within 30 s', async () => {
    const port = await freePort();
    const began = Date.now();
    const started = startCli(['start', '--port', '0'], {
      WEBHOOKS_BUS: 'kafka',
      WEBHOOKS_KAFKA_BROKERS: `127.0.0.1:${port}`,
      WEBHOOKS_DATA_DIR: `/tmp/webhooks-kafka-down-${randomUUID().slice(0, 8)}`,
    });
    const err = await started.then(
      () => assert.fail('the platform started without its brokers'),
      (e: Error) => e,
    );
    assert.ok(Date.now() - began < 30_000, `took ${Date.now() - began} ms`);
    assert.match(err.message, /exited with [1-9]/);
    assert.match(err.message, new RegExp(`cannot reach the Kafka brokers 127\\.0\\.0\\.1:${port}`));
  });
});
