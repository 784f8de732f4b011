/**
 * Kafka-specific behaviour of the bus beyond the conformance suite, on a real broker: rebalances
 * in the middle of a stream (members joining, leaving and dying) lose nothing; a publish to a
 * topic that does not exist is refused as `topic_not_found`; keys land where a Java client puts them.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '@platformatic/kafka';
import type { ConsumedMessage, ConsumerHandle } from '../../src/common/ports/bus.ts';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';
import { broker, kafkaSettings, stopBroker } from '../support/kafka.ts';
import { waitFor } from '../support/wait.ts';

after(() => stopBroker());

describe('the Kafka bus on a real broker', () => {
  test('members joining, leaving and dying mid-stream: every message is handled at least once', {
    timeout: 120_000,
  }, async () => {
    const b = await broker();
    const settings = kafkaSettings(b);
    const publisherBus = new KafkaBus(settings);
    const topic = `rebalance.${randomUUID().slice(0, 8)}`;
    const group = `rebalance-${randomUUID().slice(0, 8)}`;
    await publisherBus.ensureTopic(topic, { partitions: 6 });
    const handled = new Map<string, number>();
    const member = (bus: KafkaBus): ConsumerHandle =>
      bus.consume({
        group,
        topicPrefixes: [topic],
        maxBatch: 20,
        handler: async (batch: ConsumedMessage[]) => {
          await sleep(2);
          for (const m of batch) handled.set(m.value, (handled.get(m.value) ?? 0) + 1);
          return undefined;
        },
      });
    const busA = new KafkaBus(settings);
    const busB = new KafkaBus(settings);
    const busC = new KafkaBus(settings);
    const a = member(busA);
    const total = 3000;
    const waves = 30;
    let b1: ConsumerHandle | undefined;
    for (let wave = 0; wave < waves; wave++) {
      await publisherBus.publish(
        Array.from({ length: total / waves }, (_, i) => ({
          topic,
          key: `k${i % 50}`,
          value: `${wave}-${i}`,
        })),
      );
      if (wave === 5) b1 = member(busB); // joins: a rebalance
      if (wave === 15) await b1!.stop(); // leaves cleanly: another
      if (wave === 18) member(busC); // joins…
      if (wave === 24) await busC.close(); // …and dies without committing what it had in flight
      await sleep(100);
    }
    await waitFor('every message handled', () => handled.size === total, 60_000, 50);
    await a.stop();
    await Promise.all([busA.close(), busB.close(), publisherBus.close()]);
    const missing = Array.from({ length: waves }, (_, w) =>
      Array.from({ length: total / waves }, (_, i) => `${w}-${i}`),
    )
      .flat()
      .filter((v) => !handled.has(v));
    assert.deepEqual(missing, []);
  });

  test('a publish to a topic that does not exist is refused as topic_not_found, and nothing is created', async () => {
    const bus = new KafkaBus(kafkaSettings(await broker()));
    try {
      const topic = `missing.${randomUUID().slice(0, 8)}`;
      await assert.rejects(bus.publish([{ topic, value: '{}' }]), (err: { code?: string }) => {
        assert.equal(err.code, 'topic_not_found');
        return true;
      });
      assert.equal(await bus.describeTopic(topic), undefined);
    } finally {
      await bus.close();
    }
  });

  test('large records: topics made to take the largest the settings allow, publishes cut into requests any topic takes, a record over its topic’s limit refused as record_too_large', {
    timeout: 120_000,
  }, async () => {
    const b = await broker();
    const roomyBus = new KafkaBus(kafkaSettings(b, { maxRecordBytes: 2_500_000 }));
    // Without the setting, topics get the broker's default limit (1,048,588 bytes a record batch).
    const plainBus = new KafkaBus(kafkaSettings(b));
    const id = randomUUID().slice(0, 8);
    try {
      const roomy = `records.roomy.${id}`;
      const tight = `records.tight.${id}`;
      await roomyBus.ensureTopic(roomy, { partitions: 1 });
      await plainBus.ensureTopic(tight, { partitions: 1 });
      const sizes = [2_000_000, 300_000, 2_000_000, ...Array.from({ length: 10 }, () => 300_000)];
      const values = sizes.map((size, i) => `${i}:`.padEnd(size, 'x'));
      // 7.3 MB in one publish to one partition: more than any one record batch may hold.
      await roomyBus.publish(values.map((value) => ({ topic: roomy, key: 'k', value })));
      // Ten records of 300 KB (3 MB) to a topic of the default limit pass, cut into requests.
      await plainBus.publish(values.slice(3).map((value) => ({ topic: tight, key: 'k', value })));
      await assert.rejects(
        plainBus.publish([{ topic: tight, value: values[0]! }]),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'record_too_large');
          assert.match(err.message, new RegExp(`topic ${tight.replaceAll('.', '\\.')} `));
          assert.match(err.message, /max\.message\.bytes/);
          return true;
        },
      );
      const got = new Map<string, string[]>([
        [roomy, []],
        [tight, []],
      ]);
      const consumer = roomyBus.consume({
        group: `records-${id}`,
        topicPrefixes: [`records.roomy.${id}`, `records.tight.${id}`],
        handler: async (batch) => {
          for (const m of batch) got.get(m.topic)!.push(m.value);
          return undefined;
        },
      });
      await waitFor('every record', () => got.get(roomy)!.length + got.get(tight)!.length === 23, 60_000);
      await consumer.stop();
      assert.deepEqual(got.get(roomy), values, 'whole and in order');
      assert.deepEqual(
        got.get(tight),
        values.slice(3),
        'whole and in order; the refused record is not there',
      );
    } finally {
      await Promise.all([roomyBus.close(), plainBus.close()]);
    }
  });

  test('a group offset past the end of its log is reset to the earliest, loudly, and the broker’s other partitions keep flowing', async () => {
    const b = await broker();
    const bus = new KafkaBus(kafkaSettings(b));
    const admin = new Admin({ clientId: 'offset-past-end', bootstrapBrokers: [b.bootstrap] });
    try {
      const topic = `past-end.${randomUUID().slice(0, 8)}`;
      const group = `past-end-${randomUUID().slice(0, 8)}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      // (murmur2 & 0x7fffffff) % 2: "21" → 0, "abc" → 1.
      await bus.publish([
        { topic, key: '21', value: 'on-0' },
        { topic, key: 'abc', value: 'on-1' },
      ]);
      // As after the topic was made again: the group's offset of partition 0 is far past its end.
      await admin.alterConsumerGroupOffsets({
        groupId: group,
        topics: [{ name: topic, partitionOffsets: [{ partition: 0, offset: 1000n }] }],
      });
      const got: ConsumedMessage[] = [];
      const errors: Array<{ code?: string }> = [];
      const consumer = bus.consume({
        group,
        topicPrefixes: [topic],
        handler: async (batch) => {
          got.push(...batch);
          return undefined;
        },
        onError: (err) => errors.push(err as { code?: string }),
      });
      await waitFor('both messages', () => got.length === 2);
      await consumer.stop();
      assert.deepEqual(got.map((m) => [m.partition, m.value]).sort(), [
        [0, 'on-0'],
        [1, 'on-1'],
      ]);
      assert.deepEqual(
        errors.map((e) => e.code),
        ['offset_reset'],
      );
      const [listed] = await admin.listConsumerGroupOffsets({ groups: [group] });
      const committed = listed!.topics
        .find((t) => t.name === topic)!
        .partitions.find((p) => p.partitionIndex === 0);
      assert.equal(committed?.committedOffset, 1n, 'the reset and the handled record committed');
    } finally {
      await admin.close();
      await bus.close();
    }
  });

  test('partitions added to a topic a group reads (by another process) are read too', async () => {
    const b = await broker();
    const reader = new KafkaBus(kafkaSettings(b), { topicRefreshMs: 200 });
    const other = new KafkaBus(kafkaSettings(b));
    try {
      const topic = `grows.${randomUUID().slice(0, 8)}`;
      await other.ensureTopic(topic, { partitions: 1 });
      const got: ConsumedMessage[] = [];
      const consumer = reader.consume({
        group: `grows-${randomUUID().slice(0, 8)}`,
        topicPrefixes: [topic],
        handler: async (batch) => {
          got.push(...batch);
          return undefined;
        },
      });
      await other.publish([{ topic, key: 'abc', value: 'before' }]);
      await waitFor('the first message', () => got.length === 1);
      await other.ensureTopic(topic, { partitions: 2 });
      // (murmur2("abc") & 0x7fffffff) % 2 = 1: the new partition.
      await other.publish([{ topic, key: 'abc', value: 'after' }]);
      await waitFor('the message on the new partition', () => got.length === 2, 30_000);
      await consumer.stop();
      assert.deepEqual(
        got.map((m) => [m.partition, m.value]),
        [
          [0, 'before'],
          [1, 'after'],
        ],
      );
    } finally {
      await Promise.all([reader.close(), other.close()]);
    }
  });

  test('a keyed message lands on the partition a Java client picks (murmur2, sign bit cleared)', async () => {
    const bus = new KafkaBus(kafkaSettings(await broker()));
    try {
      const topic = `keys.${randomUUID().slice(0, 8)}`;
      await bus.ensureTopic(topic, { partitions: 12 });
      // (murmur2 & 0x7fffffff) % 12 with murmur2 from Kafka's UtilsTest vectors:
      // "21" -973932308, "foobar" -790332482, "abc" 479470107.
      const expected: Record<string, number> = { '21': 0, foobar: 6, abc: 3 };
      await bus.publish(Object.keys(expected).map((key) => ({ topic, key, value: key })));
      const got: ConsumedMessage[] = [];
      const consumer = bus.consume({
        group: `keys-${randomUUID().slice(0, 8)}`,
        topicPrefixes: [topic],
        handler: async (batch) => {
          got.push(...batch);
          return undefined;
        },
      });
      await waitFor('the messages', () => got.length === 3);
      await consumer.stop();
      for (const m of got) assert.equal(m.partition, expected[m.key!], m.key);
    } finally {
      await bus.close();
    }
  });
});
