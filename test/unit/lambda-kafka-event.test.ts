/**
 * Lambda's Kafka events (MSK and self-managed) read as the bus port's messages, and the partial
 * batch response: an object naming per partition the first record to deliver again, its offset a
 * number (a string identifier fails the whole batch on AWS).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeKafkaEvent, partialBatchResponse } from '../../src/runtimes/lambda/kafka-event.ts';

/** The example event of the AWS Lambda documentation for Amazon MSK. */
const awsExample = {
  eventSource: 'aws:kafka',
  eventSourceArn:
    'arn:aws:kafka:us-east-1:0123456789019:cluster/SalesCluster/abcd1234-abcd-cafe-abab-9876543210ab-4',
  bootstrapServers: 'b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092',
  records: {
    'mytopic-0': [
      {
        topic: 'mytopic',
        partition: 0,
        offset: 15,
        timestamp: 1545084650987,
        timestampType: 'CREATE_TIME',
        key: 'cmVjb3JkS2V5',
        value: 'eyJrZXkiOiJ2YWx1ZSJ9',
        headers: [{ headerKey: [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101] }],
      },
    ],
  },
};

/** UTF-8 bytes as Java's signed bytes, as Lambda sends header values. */
const javaBytes = (text: string) => [...Buffer.from(text, 'utf8')].map((b) => (b > 127 ? b - 256 : b));

describe('Lambda Kafka events', () => {
  test('the AWS example: base64 key and value, header bytes as text', () => {
    assert.deepEqual(decodeKafkaEvent(awsExample), [
      {
        topic: 'mytopic',
        partition: 0,
        offset: 15,
        key: 'recordKey',
        value: '{"key":"value"}',
        headers: { headerKey: 'headerValue' },
        timestamp: 1545084650987,
      },
    ]);
  });

  test('signed header bytes, no key, notBefore, several partitions in offset order, self-managed Kafka', () => {
    const value = (s: string) => Buffer.from(s).toString('base64');
    const messages = decodeKafkaEvent({
      eventSource: 'SelfManagedKafka',
      records: {
        'egress.acme.orders.created-1': [
          {
            topic: 'egress.acme.orders.created',
            partition: 1,
            offset: 8,
            timestamp: 2,
            value: value('b'),
            headers: [],
          },
          {
            topic: 'egress.acme.orders.created',
            partition: 1,
            offset: 7,
            timestamp: 1,
            key: null,
            value: value('a'),
            headers: [
              { ce_source: javaBytes('/café') },
              { 'webhooks-not-before': javaBytes('1700000000000') },
            ],
          },
        ],
        'egress.acme.orders.created-0': [
          {
            topic: 'egress.acme.orders.created',
            partition: 0,
            offset: 3,
            timestamp: 3,
            key: value('sub-1'),
            value: value('c'),
          },
        ],
      },
    });
    assert.deepEqual(
      messages.map((m) => `${m.partition}/${m.offset}:${m.value}`),
      ['1/7:a', '1/8:b', '0/3:c'],
    );
    const first = messages[0]!;
    assert.equal(first.key, undefined);
    assert.deepEqual(first.headers, { ce_source: '/café' });
    assert.equal(first.notBefore, 1700000000000);
    assert.equal(messages[2]!.key, 'sub-1');
  });

  test('what is not a Kafka event of an event source mapping is refused naming the field', () => {
    for (const [event, field] of [
      [{ Records: [] }, 'eventSource'],
      [{ eventSource: 'aws:kafka' }, 'records'],
      [{ eventSource: 'aws:kafka', records: { 't-0': 'x' } }, 'records.t-0'],
    ] as const) {
      assert.throws(
        () => decodeKafkaEvent(event),
        (err: { code?: string; details?: Array<{ field: string }> }) =>
          err.code === 'event_invalid' && err.details?.[0]?.field === field,
      );
    }
  });

  test('the partial batch response names every failed record (once), by partition and offset, offsets as numbers', () => {
    const response = partialBatchResponse([
      { topic: 'ingress.orders.created.v1', partition: 2, offset: 41 },
      { topic: 'ingress.orders.created.v1', partition: 2, offset: 40 },
      { topic: 'ingress.orders.created.v1', partition: 0, offset: 7 },
      { topic: 'ingress.orders.created.v1', partition: 2, offset: 41 },
    ]);
    assert.deepEqual(response, {
      batchItemFailures: [
        { itemIdentifier: { partition: 'ingress.orders.created.v1-0', offset: 7 } },
        { itemIdentifier: { partition: 'ingress.orders.created.v1-2', offset: 40 } },
        { itemIdentifier: { partition: 'ingress.orders.created.v1-2', offset: 41 } },
      ],
    });
    assert.equal(
      typeof JSON.parse(JSON.stringify(response)).batchItemFailures[0].itemIdentifier.offset,
      'number',
    );
    assert.deepEqual(partialBatchResponse([]), { batchItemFailures: [] });
  });
});
