/**
 * Records written to an ingress topic by producers outside the platform, in the CloudEvents Kafka
 * protocol binding: the processor routes structured and binary mode as it routes `POST /events`,
 * dead-letters a record that is neither (with a reason, its partition going on), and a redrive
 * re-publishes a binary-mode record with the headers that carry its attributes.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { parseDeliveryTask } from '../../src/common/delivery-task.ts';
import { kafkaEventMode, parseKafkaEvent, toKafkaRecord } from '../../src/common/envelope-kafka.ts';
import { parseStructuredEvent } from '../../src/common/envelope-structured.ts';
import type { BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { ingressKey } from '../../src/ingest/service.ts';
import { Operations } from '../../src/operations/service.ts';
import { partnerRecord, schemaRecord, subscriptionRecord } from '../support/fixtures.ts';
import { storeProcessor } from '../support/processor.ts';

let offset = 0;
function kafkaRecord(value: string, headers: Record<string, string>): ConsumedMessage {
  return {
    topic: 'ingress.orders.created.v1',
    partition: 0,
    offset: offset++,
    value,
    headers,
    timestamp: Date.now(),
  };
}

const binaryHeaders = (id: string): Record<string, string> => ({
  ce_specversion: '1.0',
  ce_id: id,
  ce_source: '/erp',
  ce_type: 'orders.created',
  ce_subject: 'order-7',
  'content-type': 'application/json; charset=utf-8',
});

describe('the CloudEvents Kafka binding', () => {
  test('binary mode: ce_ headers are the attributes, content-type the datacontenttype, the value the data', () => {
    const event = parseKafkaEvent({ value: '{"amount":12}', headers: binaryHeaders('b-1') });
    assert.equal(event.id, 'b-1');
    assert.equal(event.source, '/erp');
    assert.equal(event.type, 'orders.created');
    assert.equal(event.subject, 'order-7');
    assert.deepEqual(event.data, { amount: 12 });
  });

  test('structured mode: content-type application/cloudevents+json, the value is the event', () => {
    const value = JSON.stringify({
      specversion: '1.0',
      id: 's-1',
      source: '/erp',
      type: 'orders.created',
      data: { amount: 3 },
    });
    assert.equal(
      kafkaEventMode({ 'Content-Type': 'application/cloudevents+json; charset=UTF-8' }),
      'structured',
    );
    const event = parseKafkaEvent({ value, headers: { 'content-type': 'application/cloudevents+json' } });
    assert.equal(event.id, 's-1');
    assert.deepEqual(event.data, { amount: 3 });
  });

  test('toKafkaRecord writes either mode so that parseKafkaEvent reads the same event back', () => {
    const event = parseStructuredEvent({
      specversion: '1.0',
      id: 'rt-1',
      source: '/erp',
      type: 'orders.created',
      subject: 'order-9',
      time: '2026-12-06T10:00:00.000Z',
      correlationid: 'c-9',
      partitionkey: 'customer-4',
      data: { amount: 7, lines: [1, 2] },
    });
    for (const mode of ['binary', 'structured'] as const) {
      const record = toKafkaRecord(event, mode);
      assert.equal(kafkaEventMode(record.headers), mode);
      // Binary mode always says what the value is: JSON, when the event did not say.
      const expected = mode === 'binary' ? { ...event, datacontenttype: 'application/json' } : event;
      assert.deepEqual(parseKafkaEvent(record), expected, mode);
    }
    const binary = toKafkaRecord(event, 'binary');
    assert.equal(binary.headers.ce_id, 'rt-1');
    assert.equal(binary.headers['content-type'], 'application/json');
    assert.equal(binary.value, '{"amount":7,"lines":[1,2]}');
  });

  test('the ingress key: the partitionkey extension, else the subject, else the id', () => {
    const base = { specversion: '1.0', id: 'k-1', source: '/erp', type: 'orders.created', data: {} };
    assert.equal(ingressKey(parseStructuredEvent({ ...base, subject: 's', partitionkey: 'pk' })), 'pk');
    assert.equal(ingressKey(parseStructuredEvent({ ...base, subject: 's' })), 's');
    assert.equal(ingressKey(parseStructuredEvent(base)), 'k-1');
  });

  test('bad records are refused naming the header or the value', () => {
    const missingId = binaryHeaders('x');
    delete missingId.ce_id;
    assert.throws(
      () => parseKafkaEvent({ value: '{}', headers: missingId }),
      (err: any) => err.details.some((d: { field: string }) => d.field === 'ce_id'),
    );
    assert.throws(
      () => parseKafkaEvent({ value: '{"a":', headers: binaryHeaders('y') }),
      (err: any) => err.details.some((d: { field: string }) => d.field === 'value'),
    );
    assert.throws(
      () =>
        parseKafkaEvent({
          value: '<a/>',
          headers: { ...binaryHeaders('z'), 'content-type': 'application/xml' },
        }),
      (err: any) => err.code === 'unsupported_media_type',
    );
    assert.throws(
      () =>
        parseKafkaEvent({ value: '[]', headers: { 'content-type': 'application/cloudevents-batch+json' } }),
      (err: any) => err.code === 'unsupported_media_type',
    );
  });
});

describe('the processor on records of the Kafka binding', () => {
  let store: SqliteStore;
  let published: BusMessage[];
  const make = () => storeProcessor(store, () => published);
  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    published = [];
    await store.schemas.insert(
      schemaRecord({
        schema: { type: 'object', required: ['amount'], properties: { amount: { type: 'number' } } },
      }),
    );
    await store.partners.insert(partnerRecord({ id: 'acme' }));
    await store.subscriptions.insert(
      subscriptionRecord({ id: 'sub-a', partnerId: 'acme', filter: undefined }),
    );
  });

  test('binary and structured records are routed like POST /events; one that is neither goes to the DLQ and the batch goes on', async () => {
    const structured = kafkaRecord(
      JSON.stringify({
        specversion: '1.0',
        id: 's-2',
        source: '/erp',
        type: 'orders.created',
        data: { amount: 2 },
      }),
      { 'content-type': 'application/cloudevents+json' },
    );
    const outcome = await make().processBatch([
      kafkaRecord('{"amount":1}', binaryHeaders('b-2')),
      kafkaRecord('not an event at all', {}),
      structured,
    ]);
    assert.deepEqual(outcome.failed, []);
    assert.deepEqual(
      outcome.outcomes.map((o) => o.kind),
      ['published', 'dlq', 'published'],
    );
    const tasks = published
      .filter((m) => m.topic.startsWith('egress.'))
      .map((m) => parseDeliveryTask(m.value));
    assert.deepEqual(
      tasks.map((t) => [t.event.id, JSON.parse(t.body).amount]),
      [
        ['b-2', 1],
        ['s-2', 2],
      ],
    );
    const [dead] = (await store.deadLetters.list({ stage: 'processor' })).items;
    assert.equal(dead?.reason, 'invalid_json');
  });

  test('a binary-mode record dead-lettered keeps its binding headers, and a redrive re-publishes them', async () => {
    // Data that fails the schema: dead-lettered for good (data_invalid).
    await make().processBatch([kafkaRecord('{"amount":"lots"}', binaryHeaders('b-3'))]);
    const [dead] = (await store.deadLetters.list({ stage: 'processor' })).items;
    assert.equal(dead?.reason, 'data_invalid');
    assert.equal(dead?.headers?.ce_id, 'b-3');
    // Its copy on the DLQ topic too: a reader of the topic can tell which event it was.
    const onTopic = published.find((m) => m.topic === 'dlq.processor');
    assert.equal(onTopic?.headers?.ce_id, 'b-3');
    assert.equal(onTopic?.headers?.['x-webhooks-reason'], 'data_invalid');
    const republished: BusMessage[] = [];
    const operations = new Operations({
      deliveries: store.deliveries,
      deadLetters: store.deadLetters,
      publish: async (m) => {
        republished.push(...m);
      },
      heldTasks: store.heldTasks,
      ledger: store.ledger,
      holding: async () => false,
      clock: () => new Date(),
    });
    await operations.redrive({ stage: 'processor' });
    assert.equal(republished.length, 1);
    const again = parseKafkaEvent({ value: republished[0]!.value, headers: republished[0]!.headers ?? {} });
    assert.equal(again.id, 'b-3', 'the redriven record is still a binary-mode event');
  });
});
