/**
 * The processor core against the real SQLite store (in memory) and a recording publisher: what each
 * record becomes, and the partial batch response.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import { parseDeliveryTask, webhookIdFor, webhookIdOf } from '../../src/common/delivery-task.ts';
import { NotFoundError, TransientError, WebhooksError } from '../../src/common/errors.ts';
import { ValidatorCache } from '../../src/common/json-schema.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import type { EventRef } from '../../src/common/ports/store.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { CachedLookups } from '../../src/processor/lookups.ts';
import { EventProcessor } from '../../src/processor/processor.ts';
import { StorePartnerDirectory } from '../../src/subscriptions/partners.ts';
import { partnerRecord, schemaRecord, subscriptionRecord } from '../support/fixtures.ts';
import { recordingDeadLetterSink } from '../support/sinks.ts';

let offset = 0;
function record(
  data: unknown,
  attrs: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): ConsumedMessage {
  const event = {
    specversion: '1.0',
    id: `e-${offset}`,
    source: '/t',
    type: 'orders.created',
    schemaversion: 1,
    data,
    ...attrs,
  };
  return {
    topic: 'ingress.orders.created.v1',
    partition: 0,
    offset: offset++,
    value: JSON.stringify(event),
    headers,
    timestamp: Date.now(),
  };
}

describe('EventProcessor', () => {
  let store: SqliteStore;
  let published: BusMessage[];
  let failPublish: boolean;
  let metrics: MetricsRegistry;
  let lookups: CachedLookups;
  const make = (overrides: Partial<ConstructorParameters<typeof EventProcessor>[0]> = {}) =>
    new EventProcessor({
      lookups,
      validators: new ValidatorCache(),
      publish: async (m) => {
        if (failPublish) throw new Error('bus down');
        published.push(...m);
      },
      deadLetters: recordingDeadLetterSink(store, () => published),
      deliveries: store.deliveries,
      dedupe: true,
      maxAttempts: 3,
      retryDelayMs: 1000,
      metrics,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
      clock: () => new Date(),
      ...overrides,
    });

  /** Lookups whose subscription read fails as a store outage would (a transient failure). */
  const unavailableLookups = () => {
    const flaky = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    flaky.subscriptions = async () => {
      throw new TransientError('store_unavailable', 'store timed out');
    };
    return flaky;
  };

  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    published = [];
    failPublish = false;
    metrics = new MetricsRegistry();
    lookups = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    await store.schemas.insert(
      schemaRecord({
        schema: { type: 'object', required: ['amount'], properties: { amount: { type: 'number' } } },
      }),
    );
    await store.partners.insert(partnerRecord({ id: 'acme' }));
  });

  test('one task per matching subscription, to its egress topic, keyed by subscription', async () => {
    const a = subscriptionRecord({ id: 'sub-a', partnerId: 'acme', filter: undefined });
    const b = subscriptionRecord({ id: 'sub-b', partnerId: 'acme', filter: { amount: { $gt: 100 } } });
    await store.subscriptions.insert(a);
    await store.subscriptions.insert(b);
    const result = await make().processBatch([record({ amount: 5 })]);
    assert.deepEqual(result.failed, []);
    assert.deepEqual(
      published.map((m) => [m.topic, m.key]),
      [['egress.acme.orders.created', 'sub-a']],
    );
    const task = parseDeliveryTask(published[0]!.value);
    assert.equal(JSON.parse(task.body).amount, 5);
    assert.match(task.deliveryId, /^dlv_/);
    assert.equal(metrics.counter('events_processed', '').get(), 1);
  });

  test('a subscription pinned to a schema version gets that version’s events only', async () => {
    await store.schemas.insert(
      schemaRecord({ version: 2, schema: { type: 'object', properties: { amount: { type: 'number' } } } }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-any', partnerId: 'acme', filter: undefined }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-v1', partnerId: 'acme', filter: undefined, schemaVersion: 1 }),
    );
    const v2 = { ...record({ amount: 5 }, { schemaversion: 2 }), topic: 'ingress.orders.created.v2' };
    await make().processBatch([v2]);
    assert.deepEqual(
      published.map((m) => m.key),
      ['sub-any'],
      'a v2 event: not to the subscription pinned to v1',
    );
    published.length = 0;
    await make().processBatch([record({ amount: 6 })]);
    assert.deepEqual(published.map((m) => m.key).sort(), ['sub-any', 'sub-v1']);
  });

  test('the event is linked to its delivery ids when its tasks are published', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-a', partnerId: 'acme', filter: undefined }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-b', partnerId: 'acme', filter: undefined }),
    );
    const routes: Array<[EventRef, string[]]> = [];
    const message = record({ amount: 5 });
    await make({
      deliveries: {
        routed: async (events) => events.map(() => false),
        recordRouting: async (event, ids) => {
          routes.push([event, ids]);
        },
      },
    }).processBatch([message]);
    const tasks = published.map((m) => parseDeliveryTask(m.value));
    assert.equal(tasks.length, 2);
    assert.deepEqual(routes, [
      [{ id: tasks[0]!.event.id, source: tasks[0]!.event.source }, tasks.map((t) => t.deliveryId)],
    ]);
  });

  test('invalid data goes to the DLQ with the reason and the field; the batch does not fail', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const result = await make().processBatch([record({ amount: 'x' })]);
    assert.deepEqual(result.failed, []);
    assert.deepEqual(
      published.map((m) => m.topic),
      ['dlq.processor'],
    );
    const [dead] = (await store.deadLetters.list({ stage: 'processor' })).items;
    assert.equal(dead?.reason, 'data_invalid');
    assert.match(dead?.lastError ?? '', /data\.amount/);
    assert.equal(metrics.counter('events_to_dlq', '', ['reason']).get({ reason: 'data_invalid' }), 1);
  });

  test('a record dead-lettered again after its batch is redelivered is stored once', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const bad = record({ amount: 'x' });
    await make().processBatch([bad]);
    await make().processBatch([bad]);
    const stored = (await store.deadLetters.list({ stage: 'processor' })).items;
    assert.equal(stored.length, 1);
    const onTopic = published.filter((m) => m.topic === 'dlq.processor');
    assert.equal(onTopic.length, 2, 'the topic is at-least-once');
    assert.deepEqual(
      onTopic.map((m) => m.headers?.['x-webhooks-dlq-id']),
      [stored[0]!.id, stored[0]!.id],
    );
  });

  test('an INACTIVE schema version dead-letters its events (schema_inactive)', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    await store.schemas.insert(schemaRecord({ version: 2, status: 'INACTIVE' }));
    const result = await make().processBatch([record({ amount: 1 }, { schemaversion: 2 })]);
    assert.deepEqual(
      result.outcomes.map((o) => (o.kind === 'dlq' ? o.reason : o.kind)),
      ['schema_inactive'],
    );
    assert.equal(published.filter((m) => m.topic.startsWith('egress.')).length, 0);
  });

  test('one batch, every kind of outcome: each record is reported on its own and none fails the batch', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const good = record({ amount: 1 });
    const copy = { ...good, offset: good.offset + 1000 };
    const result = await make().processBatch([good, record({ amount: 'x' }), copy]);
    assert.deepEqual(
      result.outcomes.map((o) => o.kind),
      ['published', 'dlq', 'duplicate'],
    );
    assert.deepEqual(result.failed, []);
    assert.equal(metrics.counter('events_processed', '').get(), 3);
  });

  test('schemas are read through a cache: a change is seen after the TTL, or at once when announced', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    lookups = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
      schemaTtlMs: 300,
    });
    const kinds = async () => (await make().processBatch([record({ amount: 1 })])).outcomes[0]!.kind;
    assert.equal(await kinds(), 'published');
    const schema = (await store.schemas.get('orders', 'created', 1))!;
    const inactive = await store.schemas.update({ ...schema, status: 'INACTIVE' });
    assert.equal(await kinds(), 'published', 'the cached ACTIVE schema is still used');
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(await kinds(), 'dlq', 'after the TTL the INACTIVE schema is read');
    await store.schemas.update({ ...inactive, status: 'ACTIVE' });
    lookups.schemaChanged('orders', 'created', 1);
    assert.equal(await kinds(), 'published', 'an announced change applies at once');
  });

  test('an envelope that is not a CloudEvent and an unknown schema version are dead-lettered', async () => {
    const garbage: ConsumedMessage = { ...record({}), value: '{"hello":1}' };
    const unknown = record({ amount: 1 }, { schemaversion: 9 });
    const result = await make().processBatch([garbage, unknown]);
    assert.deepEqual(
      result.outcomes.map((o) => (o.kind === 'dlq' ? o.reason : o.kind)),
      ['envelope_invalid', 'schema_unknown'],
    );
  });

  test('an event no subscription matches is recorded as routed too, so a copy of it is a duplicate', async () => {
    const first = record({ amount: 1 });
    const result = await make().processBatch([first]);
    assert.deepEqual(result.outcomes, [{ kind: 'published', tasks: 0 }]);
    const again = await make().processBatch([{ ...first, offset: first.offset + 1 }]);
    assert.deepEqual(
      again.outcomes.map((o) => o.kind),
      ['duplicate'],
    );
  });

  test('with the ledger off (no dedupe), a copy of an event is routed again', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const first = record({ amount: 1 });
    await make({ dedupe: false }).processBatch([first]);
    await make({ dedupe: false }).processBatch([{ ...first, offset: first.offset + 1 }]);
    assert.equal(published.filter((m) => m.topic.startsWith('egress.')).length, 2);
  });

  test('the same event twice produces tasks once (idempotency marker)', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const first = record({ amount: 1 });
    const again = { ...first, offset: first.offset + 1000 };
    await make().processBatch([first]);
    const second = await make().processBatch([again, again]);
    assert.deepEqual(
      second.outcomes.map((o) => o.kind),
      ['duplicate', 'duplicate'],
    );
    assert.equal(published.length, 1);
  });

  test('a copy of an event in a concurrent batch is a duplicate while the first batch’s marker is being written', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    let releaseMarker!: () => void;
    const markerWritten = new Promise<void>((resolve) => {
      releaseMarker = resolve;
    });
    const slowRoutes = {
      routed: (events: EventRef[]) => store.deliveries.routed(events),
      recordRouting: async (event: EventRef, ids: string[], at: string) => {
        await markerWritten;
        await store.deliveries.recordRouting(event, ids, at);
      },
    };
    const processor = make({ deliveries: slowRoutes });
    const first = record({ amount: 1 });
    const firstBatch = processor.processBatch([first]);
    await new Promise((resolve) => setImmediate(resolve));
    // The first batch's marker write completes 50 ms from now, after the second batch has been routed.
    setTimeout(releaseMarker, 50);
    const second = await processor.processBatch([{ ...first, offset: first.offset + 1 }]);
    await firstBatch;
    assert.deepEqual(
      second.outcomes.map((o) => o.kind),
      ['duplicate'],
    );
    assert.equal(published.filter((m) => m.topic.startsWith('egress.')).length, 1);
    // Once the first batch is done, the stored marker keeps answering.
    const third = await processor.processBatch([{ ...first, offset: first.offset + 2 }]);
    assert.deepEqual(
      third.outcomes.map((o) => o.kind),
      ['duplicate'],
    );
  });

  test('a copy in a batch that starts while the first copy’s lookups still wait is a duplicate', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    let releaseLookups!: () => void;
    const lookupsDone = new Promise<void>((resolve) => {
      releaseLookups = resolve;
    });
    const reads = lookups.subscriptions.bind(lookups);
    let slow = true;
    lookups.subscriptions = async (...args: Parameters<typeof reads>) => {
      if (slow) {
        slow = false;
        await lookupsDone;
      }
      return reads(...args);
    };
    const processor = make();
    const first = record({ amount: 1 });
    const firstBatch = processor.processBatch([first]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const secondBatch = processor.processBatch([{ ...first, offset: first.offset + 1 }]);
    setTimeout(releaseLookups, 20);
    const [one, two] = await Promise.all([firstBatch, secondBatch]);
    assert.deepEqual([...one.outcomes, ...two.outcomes].map((o) => o.kind).sort(), [
      'duplicate',
      'published',
    ]);
    assert.equal(published.filter((m) => m.topic.startsWith('egress.')).length, 1);
  });

  test('a copy whose dedupe lookup ran before the first copy’s marker was written, and is handled after, is a duplicate', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    let firstWritten!: () => void;
    const written = new Promise<void>((resolve) => {
      firstWritten = resolve;
    });
    // The second batch also carries another event: its lookup (and only its) is the one that waits.
    // (Picked by call order, the first batch's lookup could come second on a busy machine and wait
    // for a write that only it could make.)
    const other = record({ amount: 2 });
    const otherId = (JSON.parse(other.value) as { id: string }).id;
    const lateAnswers = {
      // The second batch's lookup reads the store now (no marker yet) and answers once the first
      // batch has written its marker and forgotten its in-flight one.
      routed: async (events: EventRef[]) => {
        const answer = await store.deliveries.routed(events);
        if (events.some((e) => e.id === otherId)) await written;
        return answer;
      },
      recordRouting: (event: EventRef, ids: string[], at: string) =>
        store.deliveries.recordRouting(event, ids, at),
    };
    const processor = make({ deliveries: lateAnswers });
    const first = record({ amount: 1 });
    const firstId = (JSON.parse(first.value) as { id: string }).id;
    const firstBatch = processor.processBatch([first]);
    const secondBatch = processor.processBatch([other, { ...first, offset: first.offset + 1 }]);
    await firstBatch;
    firstWritten();
    const second = await secondBatch;
    assert.deepEqual(
      second.outcomes.map((o) => o.kind),
      ['published', 'duplicate'],
    );
    const tasks = published.filter((m) => m.topic.startsWith('egress.'));
    assert.equal(
      tasks.filter((m) => m.value.includes(firstId)).length,
      1,
      'the first event is delivered once',
    );
    assert.equal(tasks.length, 2);
  });

  test('a transient failure goes to the retry topic with the attempt counted, then to the DLQ when exhausted', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    lookups = unavailableLookups();
    const lines: Array<Record<string, unknown>> = [];
    const logger = new Logger({ level: 'warn', sink: { write: (line) => lines.push(JSON.parse(line)) } });
    const first = await make({ logger }).processBatch([
      record({ amount: 1 }, { correlationid: 'corr-transient' }),
    ]);
    assert.equal(first.outcomes[0]!.kind, 'retry');
    assert.equal(metrics.counter('events_to_retry', '').get(), 1);
    const warned = lines.find((l) => /transient/.test(String(l.msg)));
    assert.equal(warned?.correlationId, 'corr-transient', 'the log line carries the correlation id');
    const retry = published[0]!;
    assert.equal(retry.topic, 'retry.processor.30s');
    assert.equal(retry.headers?.['x-webhooks-attempt'], '1');
    assert.ok((retry.notBefore ?? 0) > Date.now());
    published = [];
    const last = await make().processBatch([
      { ...record({}), value: retry.value, headers: { ...retry.headers, 'x-webhooks-attempt': '2' } },
    ]);
    assert.equal(last.outcomes[0]!.kind, 'dlq');
    const [dead] = (await store.deadLetters.list({})).items;
    assert.equal(dead?.reason, 'retries_exhausted');
    assert.equal(dead?.attempts, 3, 'the first try and two retries');
  });

  test('a copy from the retry topic gets the delivery ids of the record it was first read from', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-r', partnerId: 'acme', filter: undefined }),
    );
    // Appended a while ago, without an ingest header (as a record produced to the topic directly).
    const original = { ...record({ amount: 7 }), partition: 2, offset: 17, timestamp: Date.now() - 5_000 };
    const healthy = lookups;
    lookups = unavailableLookups();
    await make().processBatch([original]);
    const retry = published[0]!;
    assert.equal(
      retry.headers?.['x-webhooks-ingested-at'],
      String(original.timestamp),
      'its ingest time kept',
    );
    lookups = healthy;
    published = [];

    await make({ dedupe: false }).processBatch([original]);
    const fromOriginal = parseDeliveryTask(published[0]!.value).deliveryId;
    published = [];
    const copy = {
      ...record({}),
      topic: retry.topic,
      partition: 0,
      offset: 3,
      value: retry.value,
      headers: retry.headers!,
    };
    await make({ dedupe: false }).processBatch([copy]);

    assert.equal(parseDeliveryTask(published[0]!.value).deliveryId, fromOriginal);
    assert.equal(parseDeliveryTask(published[0]!.value).ingestedAt, original.timestamp);
  });

  test('one webhook-id per event × subscription: the same event ingested again, or redriven, has the same one', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-same', partnerId: 'acme', filter: undefined }),
    );
    const first = { ...record({ amount: 7 }), partition: 1, offset: 40, timestamp: Date.now() - 60_000 };
    // Another record of the same event: read later, from elsewhere, and as a processor redrive.
    const again = { ...first, partition: 3, offset: 900, timestamp: Date.now() };
    const redriven = { ...first, offset: 901, headers: { 'x-webhooks-redrive': 'dlq-1' } };
    const ids: string[] = [];
    for (const copy of [first, again, redriven]) {
      published = [];
      await make({ dedupe: false }).processBatch([copy]);
      ids.push(webhookIdOf(parseDeliveryTask(published.find((m) => m.topic.startsWith('egress.'))!.value)));
    }
    assert.equal(new Set(ids).size, 1, ids.join(' '));
    assert.equal(ids[0], webhookIdFor('/t', JSON.parse(first.value).id, 'sub-same'));
  });

  test('when outputs cannot be published, every record is reported failed with the error (redelivered)', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    failPublish = true;
    const batch = [record({ amount: 1 }), record({ amount: 2 })];
    const result = await make().processBatch(batch);
    assert.deepEqual(
      result.failed.map((f) => [f.message, (f.error as Error).message, f.permanent]),
      batch.map((m) => [m, 'bus down', false]),
    );
    const events = batch.map((m) => JSON.parse(m.value) as { id: string; source: string });
    assert.deepEqual(
      await store.deliveries.routed(events.map((e) => ({ id: e.id, source: e.source }))),
      [false, false],
      'no marker without published tasks',
    );
  });

  test('a record whose outputs can never be written fails alone and for good; the rest of its batch is published', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    await store.subscriptions.insert(
      subscriptionRecord({ domain: 'billing', event: 'paid', filter: undefined, egressTopic: 'egress.gone' }),
    );
    const processor = make({
      publish: async (messages) => {
        if (messages.some((m) => m.topic === 'egress.gone'))
          throw new NotFoundError('topic_not_found', 'topic "egress.gone" does not exist');
        published.push(...messages);
      },
    });
    const good = [record({ amount: 1 }), record({ amount: 2 })];
    const bad = record({ amount: 3 }, { type: 'billing.paid' }, {});
    bad.topic = 'ingress.billing.paid.v1';
    await store.schemas.insert(schemaRecord({ domain: 'billing', event: 'paid' }));
    const result = await processor.processBatch([good[0]!, bad, good[1]!]);
    assert.deepEqual(
      result.failed.map((f) => [f.message, f.permanent]),
      [[bad, true]],
    );
    assert.equal(published.filter((m) => m.topic === 'egress.acme.orders.created').length, 2);
    assert.deepEqual(
      result.outcomes.map((o) => o.kind),
      ['published', 'failed', 'published'],
    );
  });

  test('a record the consumer gives up on goes to the processor DLQ with its last error', async () => {
    const message = record({ amount: 1 });
    await make().giveUp(message, { error: new Error('bus down'), failures: 5, permanent: false });
    const { items } = await store.deadLetters.list({ stage: 'processor' });
    assert.equal(items.length, 1);
    assert.equal(items[0]!.reason, 'redelivery_exhausted');
    assert.equal(items[0]!.lastError, 'bus down');
    assert.equal(items[0]!.attempts, 5);
    assert.equal(items[0]!.value, message.value);
    assert.equal(items[0]!.eventId, JSON.parse(message.value).id);
    assert.deepEqual(
      published.filter((m) => m.topic === 'dlq.processor').map((m) => m.headers?.['x-webhooks-reason']),
      ['redelivery_exhausted'],
    );
  });

  test('a mapping that fails for one subscription dead-letters only that delivery', async () => {
    await store.subscriptions.insert(subscriptionRecord({ id: 'ok', filter: undefined }));
    await store.subscriptions.insert(
      subscriptionRecord({
        id: 'bad',
        filter: undefined,
        mapping: { rules: [{ to: 'n', from: 'amount', transform: 'boolean' }] },
      }),
    );
    await make().processBatch([record({ amount: 7 })]);
    assert.deepEqual(
      published.filter((m) => m.topic.startsWith('egress.')).map((m) => m.key),
      ['ok'],
    );
    const [dead] = (await store.deadLetters.list({})).items;
    assert.equal(dead?.reason, 'mapping_failed');
    assert.equal(dead?.subscriptionId, 'bad');
  });

  test('two dead letters of one event (one per subscription) redriven together are both routed, each to its subscription', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-a', partnerId: 'acme', filter: undefined }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-b', partnerId: 'acme', filter: undefined }),
    );
    const event = record({ amount: 7 });
    // As Operations re-publishes them: one call, keyed alike, so they arrive in one batch.
    const redriven = (only: string, at: number): ConsumedMessage => ({
      ...event,
      offset: at,
      headers: {
        [HEADERS.redrive]: `dlq-${only}`,
        [HEADERS.originTopic]: event.topic,
        [HEADERS.onlySubscription]: only,
      },
    });
    // With a second copy of the first (a redelivery in the same batch): that one is a duplicate.
    const result = await make().processBatch([
      redriven('sub-a', 500),
      redriven('sub-a', 501),
      redriven('sub-b', 502),
    ]);
    assert.deepEqual(result.failed, []);
    assert.deepEqual(
      published
        .filter((m) => m.topic.startsWith('egress.'))
        .map((m) => m.key)
        .sort(),
      ['sub-a', 'sub-b'],
    );
  });

  test('a redrive of one subscription’s dead letter that is dead-lettered again stays that subscription’s', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-a', partnerId: 'acme', filter: undefined }),
    );
    const event = record({ amount: 7 });
    // Its last try (maxAttempts 3), while the subscriptions cannot be read.
    const scoped: ConsumedMessage = {
      ...event,
      headers: { [HEADERS.redrive]: 'dlq-a', [HEADERS.onlySubscription]: 'sub-a', [HEADERS.attempt]: '2' },
    };
    await make({ lookups: unavailableLookups() }).processBatch([scoped]);
    const [dead] = (await store.deadLetters.list({ stage: 'processor' })).items;
    assert.equal(dead?.reason, 'retries_exhausted');
    assert.equal(dead?.subscriptionId, 'sub-a');
  });

  test('a record retried whole after one subscription’s mapping failed leaves one dead letter in the end, not one per try', async () => {
    await store.partners.insert(partnerRecord({ id: 'flaky' }));
    await store.subscriptions.insert(
      subscriptionRecord({
        id: 'a-bad',
        partnerId: 'acme',
        filter: undefined,
        mapping: { rules: [{ to: 'n', from: 'amount', transform: 'boolean' }] },
      }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({
        id: 'b-flaky',
        partnerId: 'flaky',
        filter: undefined,
        mapping: { rules: [{ to: 'n', from: 'amount' }] },
      }),
    );
    // The second subscription's partner cannot be read (a store outage): the record is retried whole.
    const partner = lookups.partner.bind(lookups);
    lookups.partner = async (id) => {
      if (id === 'flaky') throw new TransientError('store_unavailable', 'store timed out');
      return partner(id);
    };
    const event = record({ amount: 7 });
    const first = await make().processBatch([event]);
    assert.deepEqual(
      first.outcomes?.map((o) => o.kind),
      ['retry'],
    );
    assert.deepEqual(
      (await store.deadLetters.list({ stage: 'processor' })).items,
      [],
      'none yet: the retry decides',
    );
    const last = { ...event, offset: event.offset + 1000, headers: { [HEADERS.attempt]: '2' } };
    await make().processBatch([last]);
    assert.deepEqual(
      (await store.deadLetters.list({ stage: 'processor' })).items.map((d) => d.reason),
      ['retries_exhausted'],
    );
  });

  test('a mapping whose output passes the payload limit dead-letters that delivery as mapping_output_too_large', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({
        id: 'blowup',
        filter: undefined,
        // Each rule copies the whole event: 20 copies of ~3 KB pass a 16 KiB limit.
        mapping: { rules: Array.from({ length: 20 }, (_, i) => ({ to: `copy${i}`, from: '$data' })) },
      }),
    );
    await make({ maxPayloadBytes: 16 * 1024 }).processBatch([record({ amount: 1, note: 'x'.repeat(3000) })]);
    assert.deepEqual(
      published.filter((m) => m.topic.startsWith('egress.')).map((m) => m.key),
      [],
    );
    const [dead] = (await store.deadLetters.list({ subscriptionId: 'blowup' })).items;
    assert.equal(dead?.reason, 'mapping_output_too_large');
  });

  test('after a transient failure, the retry copy is routed by the same processor (not taken for a duplicate)', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const healthy = lookups;
    let down = true;
    const flaky = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    flaky.subscriptions = async (d, e) => {
      if (down) throw new TransientError('store_unavailable', 'store timed out');
      return healthy.subscriptions(d, e);
    };
    lookups = flaky;
    const processor = make();
    const first = await processor.processBatch([record({ amount: 1 })]);
    assert.equal(first.outcomes[0]!.kind, 'retry');
    const retry = published[0]!;
    published = [];
    down = false;
    const copy: ConsumedMessage = {
      topic: retry.topic,
      partition: 0,
      offset: 1,
      value: retry.value,
      headers: retry.headers!,
      timestamp: Date.now(),
    };
    const second = await processor.processBatch([copy]);
    assert.deepEqual(
      second.outcomes.map((o) => o.kind),
      ['published'],
    );
    assert.equal(published.filter((m) => m.topic.startsWith('egress.')).length, 1);
  });

  test('an internal error of a lookup (a bug or a store fault) is retried, not dead-lettered', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const broken = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    broken.subscriptions = async () => {
      throw new WebhooksError('internal', 'store_corrupt', 'unexpected row');
    };
    lookups = broken;
    const result = await make().processBatch([record({ amount: 1 })]);
    assert.deepEqual(
      result.outcomes.map((o) => o.kind),
      ['retry'],
    );
    assert.deepEqual((await store.deadLetters.list({})).items, []);
  });

  test('a routed event after an unparsable record in the same batch is still recognised as a duplicate', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const good = record({ amount: 1 });
    await make().processBatch([good]);
    published = [];
    const garbage = { ...record({}), value: 'not json' };
    const again = { ...good, offset: good.offset + 1000 };
    const result = await make().processBatch([garbage, again]);
    assert.deepEqual(
      result.outcomes.map((o) => o.kind),
      ['dlq', 'duplicate'],
    );
    assert.equal(published.filter((m) => m.topic.startsWith('egress.')).length, 0);
  });

  test('a DISABLED subscription is not routed to', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined, status: 'DISABLED' }));
    const result = await make().processBatch([record({ amount: 1 })]);
    assert.deepEqual(result.outcomes, [{ kind: 'published', tasks: 0 }]);
  });

  test('every subscription of an event is routed to, past the first page of the store', async () => {
    for (let i = 0; i < 1001; i++)
      await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const result = await make().processBatch([record({ amount: 1 })]);
    assert.deepEqual(result.outcomes, [{ kind: 'published', tasks: 1001 }]);
  });

  test('mappings that fail for two subscriptions of one event leave two dead letters, one per subscription', async () => {
    for (const id of ['bad-1', 'bad-2'])
      await store.subscriptions.insert(
        subscriptionRecord({
          id,
          filter: undefined,
          mapping: { rules: [{ to: 'n', from: 'amount', transform: 'boolean' }] },
        }),
      );
    await make().processBatch([record({ amount: 7 })]);
    const dead = (await store.deadLetters.list({})).items;
    assert.deepEqual(dead.map((d) => d.subscriptionId).sort(), ['bad-1', 'bad-2']);
  });
});
