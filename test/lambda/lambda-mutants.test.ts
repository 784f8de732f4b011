/**
 * The Lambda runtime's pieces on their own, without a broker: the Kafka batch runner (what a partial
 * batch response names), the bus that holds delayed messages, the event source mapping manager
 * against a fake control plane, the invocation deadline, the container cache, and edge cases of the
 * API Gateway and Kafka event adapters.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CreateEventSourceMappingCommand,
  DeleteEventSourceMappingCommand,
  type EventSourceMappingConfiguration,
  type LambdaClient,
  ListEventSourceMappingsCommand,
} from '@aws-sdk/client-lambda';
import { Logger } from '../../src/common/log.ts';
import type {
  BatchOutcome,
  Bus,
  BusMessage,
  ConsumedMessage,
  DeadLetterNotice,
} from '../../src/common/ports/bus.ts';
import type { ScheduledMessage, ScheduledMessageRepository } from '../../src/common/ports/store.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import type { RawRequest } from '../../src/runtimes/http/edge.ts';
import {
  type ApiGatewayEvent,
  isApiGatewayEvent,
  toRawRequest,
} from '../../src/runtimes/lambda/api-gateway.ts';
import { runKafkaBatch, type StageCore } from '../../src/runtimes/lambda/batch.ts';
import { container, lambdaConfig } from '../../src/runtimes/lambda/container.ts';
import { invocationDeadline, withInvocation } from '../../src/runtimes/lambda/invocation.ts';
import { decodeKafkaEvent } from '../../src/runtimes/lambda/kafka-event.ts';
import { DISPATCHER_DUE_TOPIC, LambdaBus } from '../../src/runtimes/lambda/lambda-bus.ts';
import { consumerGroupId } from '../../src/runtimes/lambda/mapping-settings.ts';
import { EventSourceTriggers } from '../../src/runtimes/lambda/triggers.ts';
import { httpApiEvent, restApiEvent } from '../support/lambda.ts';

const quiet = new Logger({ level: 'error', sink: { write() {} } });
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A Kafka event of records `topic-partition@offset`. */
function kafkaEvent(...ids: string[]): unknown {
  const records: Record<string, unknown[]> = {};
  for (const id of ids) {
    const [group, offset] = id.split('@') as [string, string];
    const at = group.lastIndexOf('-');
    records[group] ??= [];
    records[group].push({
      topic: group.slice(0, at),
      partition: Number(group.slice(at + 1)),
      offset: Number(offset),
      timestamp: 1,
      value: b64(id),
    });
  }
  return { eventSource: 'aws:kafka', records };
}

const idOf = (m: ConsumedMessage) => `${m.topic}-${m.partition}@${m.offset}`;

/** A core whose handler fails the records `decide` says, recording every batch and dead letter. */
function fakeCore(decide: (m: ConsumedMessage, call: number) => 'ok' | 'transient' | 'permanent' | 'throw') {
  const batches: string[][] = [];
  const deadLetters: Array<{ id: string; notice: DeadLetterNotice }> = [];
  let giveUpFails = false;
  const core: StageCore = {
    async handle(batch) {
      batches.push(batch.map(idOf));
      const call = batches.length;
      if (batch.some((m) => decide(m, call) === 'throw')) throw new Error('the whole batch failed');
      const outcome: BatchOutcome = { failed: [] };
      for (const m of batch) {
        const d = decide(m, call);
        if (d === 'transient') outcome.failed.push({ message: m, error: new Error('try again') });
        if (d === 'permanent') outcome.failed.push({ message: m, error: new Error('bad'), permanent: true });
      }
      return outcome;
    },
    async giveUp(message, notice) {
      if (giveUpFails) throw new Error('the DLQ is unwritable');
      deadLetters.push({ id: idOf(message), notice });
    },
  };
  return {
    core,
    batches,
    deadLetters,
    failGiveUp() {
      giveUpFails = true;
    },
  };
}

const failures = (response: {
  batchItemFailures: Array<{ itemIdentifier: { partition: string; offset: number } }>;
}) => response.batchItemFailures.map((f) => `${f.itemIdentifier.partition}@${f.itemIdentifier.offset}`);

describe('the Kafka batch runner', () => {
  test('a record that failed for good is dead-lettered (after one try) and counts as handled', async () => {
    const fake = fakeCore((m) => (m.offset === 2 ? 'permanent' : 'ok'));
    const response = await runKafkaBatch(kafkaEvent('t-0@1', 't-0@2', 't-0@3'), fake.core, quiet);
    assert.deepEqual(response, { batchItemFailures: [] });
    assert.equal(fake.batches.length, 1);
    assert.deepEqual(
      fake.deadLetters.map((d) => [d.id, d.notice.failures, d.notice.permanent]),
      [['t-0@2', 1, true]],
    );
  });

  test('a transient failure is tried again inside the invocation, only the failed records, three times in all, then every one is named', async () => {
    const fake = fakeCore((m) => (m.offset === 1 ? 'ok' : 'transient'));
    const response = await runKafkaBatch(kafkaEvent('t-1@3', 't-0@1', 't-0@2', 't-1@4'), fake.core, quiet);
    assert.deepEqual(fake.batches, [
      ['t-1@3', 't-1@4', 't-0@1', 't-0@2'],
      ['t-0@2', 't-1@3', 't-1@4'],
      ['t-0@2', 't-1@3', 't-1@4'],
    ]);
    assert.deepEqual(failures(response), ['t-0@2', 't-1@3', 't-1@4']);
    assert.deepEqual(fake.deadLetters, []);
  });

  test('a single failed record is named too', async () => {
    const fake = fakeCore((m) => (m.offset === 5 ? 'transient' : 'ok'));
    const response = await runKafkaBatch(kafkaEvent('t-0@5', 't-0@6'), fake.core, quiet);
    assert.deepEqual(failures(response), ['t-0@5']);
  });

  test('a record that passes on its second try is not named', async () => {
    const fake = fakeCore((_m, call) => (call === 1 ? 'transient' : 'ok'));
    const response = await runKafkaBatch(kafkaEvent('t-0@1', 't-0@2'), fake.core, quiet);
    assert.deepEqual(response, { batchItemFailures: [] });
    assert.equal(fake.batches.length, 2);
  });

  test('a batch that throws as a whole names every record, none lost', async () => {
    const fake = fakeCore(() => 'throw');
    const response = await runKafkaBatch(kafkaEvent('t-0@1', 't-0@2'), fake.core, quiet);
    assert.deepEqual(failures(response), ['t-0@1', 't-0@2']);
  });

  test('a permanent failure that cannot be dead-lettered is named, not lost; dead letters count the tries', async () => {
    const fake = fakeCore(() => 'permanent');
    fake.failGiveUp();
    const response = await runKafkaBatch(kafkaEvent('t-0@9'), fake.core, quiet);
    assert.deepEqual(failures(response), ['t-0@9']);
    assert.equal(fake.batches.length, 3);

    const later = fakeCore((_m, call) => (call === 1 ? 'transient' : 'permanent'));
    assert.deepEqual(await runKafkaBatch(kafkaEvent('t-0@9'), later.core, quiet), { batchItemFailures: [] });
    assert.deepEqual(
      later.deadLetters.map((d) => d.notice.failures),
      [2],
    );
  });

  test('the wait before a try again doubles: the second wait (400 ms) is the one that would outlast the invocation', async (t) => {
    // The clock stands still (the sleeps are real): 300 ms of work left, room for the first wait only.
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const fake = fakeCore(() => 'transient');
    const context = { getRemainingTimeInMillis: () => 3_300 };
    const response = await withInvocation(context, () =>
      runKafkaBatch(kafkaEvent('t-0@1'), fake.core, quiet),
    );
    assert.equal(fake.batches.length, 2);
    assert.deepEqual(failures(response), ['t-0@1']);
  });

  test('no try again that would outlast the invocation: the failed records are named at once', async () => {
    const fake = fakeCore(() => 'transient');
    // 3 s of margin are kept back: the invocation has 100 ms of work left, less than the first wait.
    const context = { getRemainingTimeInMillis: () => 3_100 };
    const response = await withInvocation(context, () =>
      runKafkaBatch(kafkaEvent('t-0@1'), fake.core, quiet),
    );
    assert.equal(fake.batches.length, 1);
    assert.deepEqual(failures(response), ['t-0@1']);
  });
});

/** A bus recording what is published, and a store recording what is kept. */
function fakes() {
  const published: Array<{ messages: BusMessage[]; options?: { ordered?: boolean }; at: number }> = [];
  const ensured: string[] = [];
  let fail: Error | undefined;
  const inner = {
    engine: 'fake',
    async publish(messages: BusMessage[], options?: { ordered?: boolean }) {
      if (fail) throw fail;
      published.push({ messages, ...(options ? { options } : {}), at: Date.now() });
    },
    async ensureTopic(name: string) {
      ensured.push(name);
      return { name, partitions: 1 };
    },
  } as unknown as Bus;
  const kept: ScheduledMessage[] = [];
  const scheduled = {
    async schedule(items: ScheduledMessage[]) {
      kept.push(...items);
    },
  } as unknown as ScheduledMessageRepository;
  return {
    inner,
    scheduled,
    published,
    kept,
    ensured,
    failWith(err: Error) {
      fail = err;
    },
  };
}

const T = 1_700_000_000_000;

describe('the Lambda bus', () => {
  test('a message due within the tolerance is published at once, the ordered option passed on', async () => {
    const f = fakes();
    const bus = new LambdaBus(f.inner, { scheduled: f.scheduled, clock: () => T });
    await bus.publish([{ topic: 'ingress.x', value: '1', notBefore: T + 50 }], { ordered: true });
    assert.deepEqual(bus.counts, { scheduled: 0, waited: 0 });
    assert.equal(f.published.length, 1);
    assert.deepEqual(f.published[0]!.options, { ordered: true });
    assert.deepEqual(f.published[0]!.messages, [{ topic: 'ingress.x', value: '1' }]);
  });

  test('a message due exactly inlineMaxMs from now waits inside the invocation, a later one is kept', async () => {
    const f = fakes();
    const bus = new LambdaBus(f.inner, { scheduled: f.scheduled, clock: () => T, inlineMaxMs: 150 });
    await bus.publish([{ topic: 'a', value: '1', notBefore: T + 150 }]);
    assert.deepEqual(bus.counts, { scheduled: 0, waited: 1 });
    await bus.publish([{ topic: 'a', value: '2', notBefore: T + 151 }]);
    assert.deepEqual(bus.counts, { scheduled: 1, waited: 1 });
  });

  test('a message waiting inside the invocation is not published before it is due', async () => {
    const f = fakes();
    const bus = new LambdaBus(f.inner, { scheduled: f.scheduled });
    const dueAt = Date.now() + 300;
    await bus.publish([
      { topic: 'a', value: '1', notBefore: dueAt - 150 },
      { topic: 'a', value: '2', notBefore: dueAt },
    ]);
    assert.equal(f.published.length, 1);
    // Timers never fire early; a few ms of slack for the clock's rounding.
    assert.ok(f.published[0]!.at >= dueAt - 5, `published ${dueAt - f.published[0]!.at} ms early`);
  });

  test('a wait that would outlast the invocation is kept in the store instead', async () => {
    const f = fakes();
    const bus = new LambdaBus(f.inner, { scheduled: f.scheduled, inlineMaxMs: 5_000 });
    const context = { getRemainingTimeInMillis: () => 3_000 + 50 };
    await withInvocation(context, () =>
      bus.publish([{ topic: 'a', value: '1', notBefore: Date.now() + 1_000 }]),
    );
    assert.deepEqual(bus.counts, { scheduled: 1, waited: 0 });
    assert.equal(f.published.length, 0);
  });

  test('a dispatcher retry is kept for its whole delay, bound for the due topic, without notBefore', async () => {
    const f = fakes();
    const bus = new LambdaBus(f.inner, { scheduled: f.scheduled, clock: () => T });
    const headers = { 'x-webhooks-due-at': String(T + 7_200_000), 'x-a': '1' };
    await bus.publish([
      { topic: 'retry.dispatcher.5m', key: 's1', value: 'v', headers, notBefore: T + 300_000 },
    ]);
    assert.equal(f.kept.length, 1);
    const kept = f.kept[0]!;
    assert.equal(kept.dueAt, T + 7_200_000);
    assert.deepEqual(kept.message, { topic: DISPATCHER_DUE_TOPIC, key: 's1', value: 'v', headers });
    // Due at once, it goes to the due topic as well: no mapping reads the tiers.
    await bus.publish([{ topic: 'retry.dispatcher.5m', value: 'w', notBefore: T }]);
    assert.equal(f.published[0]!.messages[0]!.topic, DISPATCHER_DUE_TOPIC);
  });

  test('the same message is kept under the same id whatever its due time; another key is another message', async () => {
    const f = fakes();
    const bus = new LambdaBus(f.inner, { scheduled: f.scheduled, clock: () => T });
    const message = (dueAt: number, key: string): BusMessage => ({
      topic: 'retry.dispatcher.1h',
      key,
      value: 'v',
      headers: { 'x-webhooks-due-at': String(dueAt) },
      notBefore: T + 60_000,
    });
    await bus.publish([message(T + 3_600_000, 'k1')]);
    await bus.publish([message(T + 7_200_000, 'k1')]);
    await bus.publish([message(T + 3_600_000, 'k2')]);
    const [a, b, c] = f.kept.map((k) => k.id);
    assert.equal(a, b);
    assert.notEqual(a, c);
  });

  test('a publish that failed is reported; every ensured topic is told', async () => {
    const f = fakes();
    const told: string[] = [];
    const bus = new LambdaBus(f.inner, {
      scheduled: f.scheduled,
      onTopicEnsured: async (topic) => {
        told.push(topic);
      },
    });
    f.failWith(new Error('broker down'));
    await assert.rejects(bus.publish([{ topic: 'a', value: '1' }]), /broker down/);
    await bus.ensureTopic('egress.p.d.e');
    assert.deepEqual(told, ['egress.p.d.e']);
  });
});

/** Lambda's event source mapping API, played in memory. */
function fakeControlPlane(initial: EventSourceMappingConfiguration[] = [], pageSize = 100) {
  const mappings = [...initial];
  const created: Array<Record<string, any>> = [];
  const deleted: string[] = [];
  let refusals = 0;
  let onRefusal: () => void = () => {};
  let n = 0;
  const lambda = {
    async send(command: unknown) {
      if (command instanceof ListEventSourceMappingsCommand) {
        const { FunctionName, Marker } = command.input;
        const mine = mappings.filter((m) => m.FunctionArn === FunctionName);
        const start = Marker ? Number(Marker) : 0;
        const end = start + pageSize;
        return {
          EventSourceMappings: mine.slice(start, end),
          ...(end < mine.length ? { NextMarker: String(end) } : {}),
        };
      }
      if (command instanceof CreateEventSourceMappingCommand) {
        if (refusals > 0) {
          refusals--;
          onRefusal();
          throw new Error('ResourceConflictException');
        }
        const input = command.input as Record<string, any>;
        created.push(input);
        const UUID = `uuid-${++n}`;
        mappings.push({
          UUID,
          FunctionArn: input.FunctionName,
          Topics: input.Topics,
          ProvisionedPollerConfig: input.ProvisionedPollerConfig,
        });
        return { UUID };
      }
      if (command instanceof DeleteEventSourceMappingCommand) {
        deleted.push(command.input.UUID!);
        mappings.splice(
          mappings.findIndex((m) => m.UUID === command.input.UUID),
          1,
        );
        return {};
      }
      throw new Error('unexpected command');
    },
  } as unknown as LambdaClient;
  return {
    lambda,
    mappings,
    created,
    deleted,
    refuse(times: number, then: () => void = () => {}) {
      refusals = times;
      onRefusal = then;
    },
  };
}

const PROCESSOR = 'fn-processor';
const DISPATCHER = 'fn-dispatcher';
const triggersOn = (lambda: LambdaClient) =>
  new EventSourceTriggers({
    lambda,
    clusterArn: 'arn:cluster',
    functions: { processor: PROCESSOR, dispatcher: DISPATCHER },
    deployment: 'dep',
  });
const mapping = (fn: string, topic: string, group: string, UUID = `m-${topic}`) => ({
  UUID,
  FunctionArn: fn,
  Topics: [topic],
  ProvisionedPollerConfig: { PollerGroupName: group },
});

/** Subscriptions listed in pages of one. */
function subscriptions(...topics: Array<[string, string, string]>) {
  return {
    async list(_filter: unknown, page?: { cursor?: string }) {
      const i = page?.cursor ? Number(page.cursor) : 0;
      const [partnerId, domain, event] = topics[i] ?? [];
      return {
        items: partnerId ? [{ partnerId, domain, event }] : [],
        ...(i + 1 < topics.length ? { next: String(i + 1) } : {}),
      };
    },
  } as any;
}

describe('event source mappings of topics made at runtime', () => {
  test('an ingress topic gets a processor mapping, an egress topic a dispatcher one, in the stage’s poller group; others none', async () => {
    const cp = fakeControlPlane();
    const triggers = triggersOn(cp.lambda);
    await triggers.topicEnsured('ingress.orders.created.v1');
    await triggers.topicEnsured('egress.acme.orders.created');
    await triggers.topicEnsured('retry.processor.30s');
    assert.deepEqual(
      cp.created.map((c) => [
        c.FunctionName,
        c.Topics[0],
        c.ProvisionedPollerConfig.PollerGroupName,
        c.EventSourceArn,
      ]),
      [
        [PROCESSOR, 'ingress.orders.created.v1', 'dep-processor-0', 'arn:cluster'],
        [DISPATCHER, 'egress.acme.orders.created', 'dep-dispatcher-0', 'arn:cluster'],
      ],
    );
  });

  test('a topic already mapped (found on any page of the listing) gets no second mapping', async () => {
    const others = Array.from({ length: 3 }, (_, i) =>
      mapping(DISPATCHER, `egress.p.d.e${i}`, 'dep-dispatcher-0'),
    );
    const cp = fakeControlPlane([...others, mapping(DISPATCHER, 'egress.p.d.x', 'dep-dispatcher-0')], 2);
    await triggersOn(cp.lambda).topicEnsured('egress.p.d.x');
    assert.deepEqual(cp.created, []);
  });

  test('a poller group holds 100 mappings: the next goes to the next group, also within one reconciliation', async () => {
    const full = Array.from({ length: 99 }, (_, i) =>
      mapping(DISPATCHER, `egress.p.d.e${i}`, 'dep-dispatcher-0'),
    );
    const cp = fakeControlPlane(full);
    const triggers = triggersOn(cp.lambda);
    const result = await triggers.reconcile(
      subscriptions(['p', 'd', 'e0'], ['q', 'd', 'a'], ['q', 'd', 'b']),
    );
    assert.deepEqual(result, { created: 2, deleted: 0 });
    assert.deepEqual(
      cp.created.map((c) => [c.Topics[0], c.ProvisionedPollerConfig.PollerGroupName]),
      [
        ['egress.q.d.a', 'dep-dispatcher-0'],
        ['egress.q.d.b', 'dep-dispatcher-1'],
      ],
    );
  });

  test('a refused creation is tried once more, unless the fresh listing shows the mapping; twice refused fails', async () => {
    const once = fakeControlPlane();
    once.refuse(1);
    await triggersOn(once.lambda).topicEnsured('egress.p.d.e');
    assert.equal(once.created.length, 1);

    const meanwhile = fakeControlPlane();
    meanwhile.refuse(1, () =>
      meanwhile.mappings.push(mapping(DISPATCHER, 'egress.p.d.e', 'dep-dispatcher-0')),
    );
    await triggersOn(meanwhile.lambda).topicEnsured('egress.p.d.e');
    assert.equal(meanwhile.created.length, 0);

    const twice = fakeControlPlane();
    twice.refuse(2);
    await assert.rejects(triggersOn(twice.lambda).topicEnsured('egress.p.d.e'), /ResourceConflict/);
  });

  test('an egress mapping without subscriptions goes on the second run in a row; the static due-topic mapping never', async () => {
    const cp = fakeControlPlane([
      mapping(DISPATCHER, 'egress.p.d.old', 'dep-dispatcher-0', 'u-old'),
      mapping(DISPATCHER, 'egress.p.d.back', 'dep-dispatcher-0', 'u-back'),
      mapping(DISPATCHER, DISPATCHER_DUE_TOPIC, 'dep-pipeline', 'u-due'),
    ]);
    const triggers = triggersOn(cp.lambda);
    assert.deepEqual(await triggers.reconcile(subscriptions()), { created: 0, deleted: 0 });
    assert.deepEqual(await triggers.reconcile(subscriptions(['p', 'd', 'back'])), { created: 0, deleted: 1 });
    assert.deepEqual(cp.deleted, ['u-old']);
    // Unused on the previous run but wanted since: kept; unused from now on: two more runs.
    assert.deepEqual(await triggers.reconcile(subscriptions()), { created: 0, deleted: 0 });
    assert.deepEqual(await triggers.reconcile(subscriptions()), { created: 0, deleted: 1 });
    assert.deepEqual(cp.deleted, ['u-old', 'u-back']);
  });

  test('the subscriptions of every page are wanted', async () => {
    const cp = fakeControlPlane();
    const result = await triggersOn(cp.lambda).reconcile(subscriptions(['p', 'd', 'a'], ['p', 'd', 'b']));
    assert.deepEqual(result, { created: 2, deleted: 0 });
  });

  test('from the environment: all three variables, or none', () => {
    assert.equal(EventSourceTriggers.fromEnv({}), undefined);
    assert.throws(
      () => EventSourceTriggers.fromEnv({ WEBHOOKS_MSK_CLUSTER_ARN: 'arn:cluster' }),
      (err: { code?: string; details?: Array<{ field: string }> }) =>
        err.code === 'config_invalid' &&
        err.details?.map((d) => d.field).join() ===
          'WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION,WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION',
    );
  });

  test('a consumer group id of exactly 200 characters is kept as it is', () => {
    const prefix = 'webhooks-dispatcher-';
    const topic = `egress.${'x'.repeat(200 - prefix.length - 'egress.'.length)}`;
    assert.equal(consumerGroupId('dispatcher', topic), `${prefix}${topic}`);
    assert.equal(consumerGroupId('dispatcher', topic).length, 200);
  });
});

describe('invocations and containers', () => {
  test('the deadline is the end of the invocation less the margin; none outside an invocation', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const deadline = await withInvocation({ getRemainingTimeInMillis: () => 10_000 }, async () =>
      invocationDeadline(),
    );
    assert.equal(deadline, 1_000_000 + 10_000 - 3_000);
    assert.equal(await withInvocation(undefined, async () => invocationDeadline()), undefined);
  });

  test('a container that failed to start is built afresh by the next invocation', async () => {
    await assert.rejects(container('admin', { env: { WEBHOOKS_BUS: 'embedded' } }), /the bus is Kafka/);
    await assert.rejects(
      container('admin', {
        env: { WEBHOOKS_BUS: 'kafka', WEBHOOKS_KAFKA_BROKERS: 'localhost:1', WEBHOOKS_STORE: 'sqlite' },
      }),
      /the store is DynamoDB/,
    );
  });
});

describe('the functions’ configuration', () => {
  const base = {
    WEBHOOKS_BUS: 'kafka',
    WEBHOOKS_KAFKA_BROKERS: 'localhost:1',
    WEBHOOKS_STORE: 'dynamodb',
    WEBHOOKS_SECRET_KEY: SecretBox.generateKey(),
  };
  const refusal = (env: Record<string, string | undefined>) => {
    try {
      lambdaConfig(env);
      return undefined;
    } catch (err) {
      return (err as { details?: Array<{ field: string }> }).details?.[0]?.field;
    }
  };

  test('Kafka, DynamoDB and a shared secret key are required', () => {
    assert.equal(refusal(base), undefined);
    assert.equal(refusal({ ...base, WEBHOOKS_BUS: 'embedded' }), 'WEBHOOKS_BUS');
    assert.equal(refusal({ ...base, WEBHOOKS_STORE: 'sqlite' }), 'WEBHOOKS_STORE');
    assert.equal(refusal({ ...base, WEBHOOKS_SECRET_KEY: undefined }), 'WEBHOOKS_KMS_KEY_ID');
  });
});

describe('event adapters: edge cases', () => {
  const OPTIONS = { maxBodyBytes: 1024, trustAuthorizer: true };
  const request = (event: unknown) => {
    const raw = toRawRequest(event as ApiGatewayEvent, OPTIONS);
    assert.ok(!('status' in raw), JSON.stringify(raw));
    return raw as RawRequest;
  };
  const status = (event: unknown) => {
    const raw = toRawRequest(event as ApiGatewayEvent, OPTIONS);
    return 'status' in raw ? raw.status : 'accepted';
  };

  test('an event with a raw path but no 2.0 version is no proxy event', () => {
    assert.ok(!isApiGatewayEvent({ rawPath: '/x', requestContext: { http: { method: 'GET' } } }));
  });

  test('the body limit counts bytes: exactly the limit passes, multi-byte text over it does not, base64 counts decoded', () => {
    assert.equal(status(httpApiEvent({ method: 'POST', path: '/e', raw: 'x'.repeat(1024) })), 'accepted');
    assert.equal(status(httpApiEvent({ method: 'POST', path: '/e', raw: 'é'.repeat(513) })), 413);
    assert.equal(
      status(httpApiEvent({ method: 'POST', path: '/e', raw: 'x'.repeat(1000), base64: true })),
      'accepted',
    );
  });

  test('stage prefixes: only the whole stage segment is taken off; the stage root is /', () => {
    const event = (rawPath: string) => ({
      ...(httpApiEvent({ method: 'GET', path: '/x', stage: 'prod' }) as object),
      rawPath,
    });
    assert.equal(request(event('/prod')).url, '/');
    assert.equal(request(event('/production/x')).url, '/production/x');
  });

  test('header names are lower case in both versions, without multi-value headers too; absent query values are left out', () => {
    const v2 = httpApiEvent({ method: 'GET', path: '/x', headers: { 'X-Api-Key': 'k' } });
    assert.equal(request(v2).headers['x-api-key'], 'k');
    const v1 = restApiEvent({ method: 'GET', path: '/x', headers: { 'X-Api-Key': 'k' } }) as Record<
      string,
      unknown
    >;
    v1.multiValueHeaders = null;
    v1.multiValueQueryStringParameters = null;
    v1.queryStringParameters = { a: '1', b: undefined };
    const raw = request(v1);
    assert.equal(raw.headers['x-api-key'], 'k');
    assert.equal(raw.url, '/x?a=1');
  });

  test('Kafka records that are not an object of lists are refused, not read as an empty batch', () => {
    for (const records of [5, 'abc']) {
      assert.throws(
        () => decodeKafkaEvent({ eventSource: 'aws:kafka', records }),
        (err: { details?: Array<{ field: string }> }) => err.details?.[0]?.field === 'records',
      );
    }
  });
});
