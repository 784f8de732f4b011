/**
 * Where the Kafka bus sends records, with the producer's
 * calls replaced on Producer.prototype (as test/unit/kafka-consumer-faults.test.ts replaces the
 * Consumer's) so the partition of every record sent is seen without a broker.
 */
import assert from 'node:assert/strict';
import { after, mock, test } from 'node:test';
import { Producer } from '@platformatic/kafka';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';

const prototype = Producer.prototype as unknown as Record<string, unknown>;
const original = Object.fromEntries(['metadata', 'send', 'close'].map((k) => [k, prototype[k]]));
after(() => Object.assign(prototype, original));

/** A cluster of one topic `t` with `count.value` partitions; every record sent lands in `sent`. */
function fakeProducer(count: { value: number }) {
  const sent: Array<{ key?: string; partition: number }> = [];
  prototype.metadata = async ({ topics }: { topics: string[] }) => ({
    topics: new Map(topics.filter((t) => t === 't').map((t) => [t, { partitionsCount: count.value }])),
  });
  prototype.send = async ({ messages }: { messages: Array<{ key?: string; partition: number }> }) => {
    for (const m of messages) sent.push({ key: m.key, partition: m.partition });
    return {};
  };
  prototype.close = async () => {};
  return sent;
}

test('unkeyed messages go round-robin over the partitions', async () => {
  const sent = fakeProducer({ value: 4 });
  const bus = new KafkaBus({ brokers: ['127.0.0.1:1'] });
  try {
    await bus.publish(Array.from({ length: 8 }, (_, i) => ({ topic: 't', value: `${i}` })));
    await bus.publish([{ topic: 't', value: 'next' }]);
  } finally {
    await bus.close();
  }
  const partitions = sent.map((s) => s.partition);
  // Consecutive partitions from wherever it started.
  for (let i = 1; i < partitions.length; i++)
    assert.equal(partitions[i], (partitions[i - 1]! + 1) % 4, `${partitions}`);
});

test('a topic grown by another process: keyed messages follow the new partition count once the cached count is stale (5 s)', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const count = { value: 1 };
  const sent = fakeProducer(count);
  const bus = new KafkaBus({ brokers: ['127.0.0.1:1'] });
  try {
    await bus.publish([{ topic: 't', key: 'abc', value: 'before' }]);
    count.value = 2; // another process ran ensureTopic('t', { partitions: 2 })
    mock.timers.tick(5_001);
    await bus.publish([{ topic: 't', key: 'abc', value: 'after' }]);
  } finally {
    mock.timers.reset();
    await bus.close();
  }
  // (murmur2("abc") & 0x7fffffff) % 2 = 1, as a Java producer (or the other process) puts it.
  assert.deepEqual(
    sent.map((s) => s.partition),
    [0, 1],
  );
});
