/**
 * The processor's behaviour that mutation testing found unpinned: what a given-up record's dead letter
 * says, the retry copy's headers, what filters, mappings and tasks see of the event and the partner,
 * and the lookups' caches.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import { parseDeliveryTask } from '../../src/common/delivery-task.ts';
import { NotFoundError, TransientError } from '../../src/common/errors.ts';
import { ValidatorCache } from '../../src/common/json-schema.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { PartnerRecord } from '../../src/common/model.ts';
import type { BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import type { EventRef } from '../../src/common/ports/store.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { CachedLookups } from '../../src/processor/lookups.ts';
import { EventProcessor } from '../../src/processor/processor.ts';
import { PROCESSOR_RETRY_TOPIC, recordPositionOf } from '../../src/processor/retry.ts';
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
    id: `m-${offset}`,
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
    key: `k-${offset}`,
    value: JSON.stringify(event),
    headers,
    timestamp: Date.now(),
  };
}

const NOW = new Date('2026-03-01T12:00:00.000Z');

describe('EventProcessor (mutation gaps)', () => {
  let store: SqliteStore;
  let published: BusMessage[];
  let metrics: MetricsRegistry;
  let lookups: CachedLookups;
  const make = (overrides: Partial<ConstructorParameters<typeof EventProcessor>[0]> = {}) =>
    new EventProcessor({
      lookups,
      validators: new ValidatorCache(),
      publish: async (m) => {
        published.push(...m);
      },
      deadLetters: recordingDeadLetterSink(store, () => published),
      deliveries: store.deliveries,
      dedupe: true,
      maxAttempts: 3,
      retryDelayMs: 1000,
      metrics,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
      clock: () => NOW,
      ...overrides,
    });
  const egress = () => published.filter((m) => m.topic.startsWith('egress.'));
  const unavailable = (message: string) => {
    const flaky = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    flaky.subscriptions = async () => {
      throw new TransientError('store_unavailable', message);
    };
    return flaky;
  };

  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    published = [];
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

  test('a retry copy given up for good: the error’s code, its attempts counted from the header, its ingress topic', async () => {
    const copy: ConsumedMessage = {
      ...record({ amount: 1 }),
      topic: PROCESSOR_RETRY_TOPIC,
      headers: { [HEADERS.attempt]: '2', [HEADERS.originTopic]: 'ingress.orders.created.v1' },
    };
    await make().giveUp(copy, {
      error: new NotFoundError('topic_not_found', 'topic "egress.gone" does not exist'),
      failures: 1,
      permanent: true,
    });
    const [dead] = (await store.deadLetters.list({ stage: 'processor' })).items;
    assert.equal(dead?.reason, 'topic_not_found');
    assert.equal(dead?.attempts, 3, 'two processor tries before, and this one');
    assert.equal(dead?.topic, 'ingress.orders.created.v1', 'a redrive goes back to the ingress topic');
  });

  test('a redriven record of an event already routed is routed again (the ledger is not asked)', async () => {
    await store.subscriptions.insert(subscriptionRecord({ id: 'sub-r', filter: undefined }));
    const first = record({ amount: 1 });
    await make().processBatch([first]);
    published = [];
    const redriven = { ...first, offset: first.offset + 1000, headers: { [HEADERS.redrive]: 'dlq-9' } };
    const result = await make().processBatch([redriven]);
    assert.deepEqual(result.outcomes, [{ kind: 'published', tasks: 1 }]);
    assert.deepEqual(
      egress().map((m) => m.key),
      ['sub-r'],
    );
  });

  test('a redriven copy in a batch whose dedupe lookup began before the first copy’s route was written is routed', async () => {
    await store.subscriptions.insert(subscriptionRecord({ id: 'sub-r', filter: undefined }));
    let firstWritten!: () => void;
    const written = new Promise<void>((resolve) => {
      firstWritten = resolve;
    });
    const other = record({ amount: 2 });
    const otherId = (JSON.parse(other.value) as { id: string }).id;
    const lateAnswers = {
      // The second batch's lookup (for the other event in it) answers once the first batch is written.
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
    const redriven = { ...first, offset: first.offset + 1, headers: { [HEADERS.redrive]: 'dlq-1' } };
    const firstBatch = processor.processBatch([first]);
    const secondBatch = processor.processBatch([other, redriven]);
    await firstBatch;
    firstWritten();
    const second = await secondBatch;
    assert.deepEqual(
      second.outcomes.map((o) => o.kind),
      ['published', 'published'],
    );
  });

  test('a permanent failure’s dead letter counts the try it failed on, and keeps the record’s key', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const fresh = record({ amount: 'x' });
    const retried = record({ amount: 'y' }, {}, { [HEADERS.attempt]: '1' });
    await make().processBatch([fresh, retried]);
    const dead = (await store.deadLetters.list({ stage: 'processor' })).items;
    const byValue = new Map(dead.map((d) => [d.value, d]));
    assert.equal(byValue.get(fresh.value)?.attempts, 1);
    assert.equal(byValue.get(retried.value)?.attempts, 2);
    assert.equal(byValue.get(fresh.value)?.key, fresh.key);
  });

  test('a retry copy retried again keeps its ingress topic and key; its last error is cut to 500 characters', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    lookups = unavailable('x'.repeat(2000));
    const original = record({ amount: 1 });
    await make().processBatch([original]);
    const retry = published[0]!;
    assert.equal(retry.key, original.key);
    published = [];
    const copy: ConsumedMessage = {
      topic: retry.topic,
      partition: 0,
      offset: 1,
      key: retry.key!,
      value: retry.value,
      headers: retry.headers!,
      timestamp: Date.now(),
    };
    const result = await make().processBatch([copy]);
    assert.equal(result.outcomes[0]!.kind, 'retry');
    const again = published[0]!;
    assert.equal(again.topic, PROCESSOR_RETRY_TOPIC);
    assert.equal(again.key, original.key);
    assert.equal(again.headers?.[HEADERS.originTopic], 'ingress.orders.created.v1');
    assert.equal(again.headers?.[HEADERS.attempt], '2');
    assert.ok((again.headers?.[HEADERS.lastError] ?? '').length <= 500);
  });

  test('filters and mappings see the CloudEvents attributes: subject, extensions, correlationid, schemaversion', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({
        id: 'by-subject',
        filter: { '$event.subject': 'order-1', '$event.region': 'eu' },
        mapping: { rules: [{ to: 'ev', from: '$event' }] },
      }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'other-subject', filter: { '$event.subject': 'order-2' } }),
    );
    await make().processBatch([
      record({ amount: 1 }, { subject: 'order-1', region: 'eu', correlationid: 'corr-1' }),
    ]);
    assert.deepEqual(
      egress().map((m) => m.key),
      ['by-subject'],
    );
    const { ev } = JSON.parse(parseDeliveryTask(egress()[0]!.value).body);
    assert.equal(ev.subject, 'order-1');
    assert.equal(ev.region, 'eu');
    assert.equal(ev.correlationid, 'corr-1');
    assert.equal(ev.schemaversion, 1);
  });

  test('a task carries the event’s time, subject and trace context, made at the clock’s time; the tasks are counted', async () => {
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await make().processBatch([
      record(
        { amount: 1 },
        {
          time: '2026-02-01T00:00:00Z',
          subject: 'order-1',
          traceparent,
          tracestate: 'vendor=1',
        },
      ),
    ]);
    const task = parseDeliveryTask(egress()[0]!.value);
    assert.equal(task.event.time, '2026-02-01T00:00:00Z');
    assert.equal(task.event.subject, 'order-1');
    assert.equal(task.event.traceparent, traceparent);
    assert.equal(task.event.tracestate, 'vendor=1');
    assert.equal(task.createdAt, NOW.getTime());
    assert.equal(metrics.counter('delivery_tasks_published', '').get(), 1);
  });

  test('a mapping sees the partner’s metadata and contact email', async () => {
    await store.partners.insert(
      partnerRecord({
        id: 'globex',
        name: 'Globex',
        metadata: { tier: 'gold' },
        contactEmail: 'ops@globex.test',
      }),
    );
    await store.subscriptions.insert(
      subscriptionRecord({
        partnerId: 'globex',
        filter: undefined,
        mapping: { rules: [{ to: 'p', from: '$partner' }] },
      }),
    );
    await make().processBatch([record({ amount: 1 })]);
    const { p } = JSON.parse(parseDeliveryTask(egress()[0]!.value).body);
    assert.deepEqual(p, {
      id: 'globex',
      name: 'Globex',
      metadata: { tier: 'gold' },
      contactEmail: 'ops@globex.test',
    });
  });

  test('an event without a schema version takes it from its topic (v12)', async () => {
    await store.schemas.insert(schemaRecord({ version: 12 }));
    await store.subscriptions.insert(subscriptionRecord({ filter: undefined }));
    const message = {
      ...record({ amount: 1 }, { schemaversion: undefined }),
      topic: 'ingress.orders.created.v12',
    };
    const result = await make().processBatch([message]);
    assert.deepEqual(result.outcomes, [{ kind: 'published', tasks: 1 }]);
  });

  test('a mapping’s dead letter names the subscription’s partner', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({
        id: 'bad',
        filter: undefined,
        mapping: { rules: [{ to: 'n', from: 'amount', transform: 'boolean' }] },
      }),
    );
    await make().processBatch([record({ amount: 7 })]);
    const [dead] = (await store.deadLetters.list({})).items;
    assert.equal(dead?.reason, 'mapping_failed');
    assert.equal(dead?.partnerId, 'acme');
    assert.equal(metrics.counter('events_to_dlq', '', ['reason']).get({ reason: 'mapping_failed' }), 1);
  });

  test('a PAUSED subscription is routed to (the dispatcher holds its tasks)', async () => {
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'paused', filter: undefined, status: 'PAUSED' }),
    );
    await make().processBatch([record({ amount: 1 })]);
    assert.deepEqual(
      egress().map((m) => m.key),
      ['paused'],
    );
  });

  test('an origin-position header without an offset is ignored: the record’s own position is used', () => {
    const message = record({}, {}, { [HEADERS.originPosition]: '7' });
    const position = recordPositionOf(message);
    assert.deepEqual([position.partition, position.offset], [message.partition, message.offset]);
  });
});

describe('CachedLookups', () => {
  let store: SqliteStore;
  beforeEach(() => {
    store = new SqliteStore(':memory:');
  });

  test('partners are cached; an announced change is read at once', async () => {
    await store.partners.insert(partnerRecord({ id: 'acme', name: 'ACME' }));
    const directory = new StorePartnerDirectory(store.partners);
    let reads = 0;
    const counting = {
      getPartner: async (id: string): Promise<PartnerRecord | undefined> => {
        reads += 1;
        return directory.getPartner(id);
      },
    } as unknown as StorePartnerDirectory;
    const lookups = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: counting,
    });
    assert.equal((await lookups.partner('acme'))?.name, 'ACME');
    const current = (await store.partners.get('acme'))!;
    await store.partners.update({ ...current, name: 'ACME 2' });
    assert.equal((await lookups.partner('acme'))?.name, 'ACME', 'cached');
    assert.equal(reads, 1);
    lookups.partnerChanged('acme');
    assert.equal((await lookups.partner('acme'))?.name, 'ACME 2');
  });

  test('an announced subscription change and schema change are read at once', async () => {
    const lookups = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    assert.deepEqual(await lookups.subscriptions('orders', 'created'), []);
    assert.deepEqual(await lookups.versions('orders', 'created'), []);
    await store.subscriptions.insert(subscriptionRecord({ id: 'new' }));
    await store.schemas.insert(schemaRecord({ version: 1 }));
    lookups.subscriptionsChanged('orders', 'created');
    lookups.schemaChanged('orders', 'created', 1);
    assert.deepEqual(
      (await lookups.subscriptions('orders', 'created')).map((s) => s.id),
      ['new'],
    );
    assert.deepEqual(
      (await lookups.versions('orders', 'created')).map((s) => s.version),
      [1],
    );
  });

  describe('default TTLs', () => {
    afterEach(() => mock.timers.reset());

    test('a subscription change not announced is seen within 5 s', async () => {
      mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-03-01T12:00:00Z') });
      const lookups = new CachedLookups({
        schemas: store.schemas,
        subscriptions: store.subscriptions,
        directory: new StorePartnerDirectory(store.partners),
      });
      assert.deepEqual(await lookups.subscriptions('orders', 'created'), []);
      await store.subscriptions.insert(subscriptionRecord({ id: 'late' }));
      mock.timers.tick(4_000);
      assert.deepEqual(await lookups.subscriptions('orders', 'created'), [], 'still cached');
      mock.timers.tick(1_001);
      assert.deepEqual(
        (await lookups.subscriptions('orders', 'created')).map((s) => s.id),
        ['late'],
      );
    });
  });
});

describe('EventProcessor DLQ metric', () => {
  test('a mapping dead letter dropped because its record is retried whole is not counted as sent to the DLQ', async () => {
    const store = new SqliteStore(':memory:');
    await store.schemas.insert(schemaRecord({ schema: { type: 'object' } }));
    await store.partners.insert(partnerRecord({ id: 'acme' }));
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
    const lookups = new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    });
    const partner = lookups.partner.bind(lookups);
    lookups.partner = async (id) => {
      if (id === 'flaky') throw new TransientError('store_unavailable', 'store timed out');
      return partner(id);
    };
    const metrics = new MetricsRegistry();
    const published: BusMessage[] = [];
    const processor = new EventProcessor({
      lookups,
      validators: new ValidatorCache(),
      publish: async (m) => {
        published.push(...m);
      },
      deadLetters: recordingDeadLetterSink(store, () => published),
      deliveries: store.deliveries,
      dedupe: true,
      maxAttempts: 3,
      retryDelayMs: 1000,
      metrics,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
      clock: () => NOW,
    });
    const result = await processor.processBatch([record({ amount: 7 })]);
    assert.deepEqual(
      result.outcomes.map((o) => o.kind),
      ['retry'],
    );
    assert.deepEqual((await store.deadLetters.list({})).items, []);
    const toDlq = metrics.counter('events_to_dlq', '', ['reason']);
    assert.equal(toDlq.get({ reason: 'mapping_failed' }), 0, 'no dead letter was sent');
  });
});
