/**
 * The configs a topic is created with, with Admin's calls
 * replaced (as test/unit/kafka-consumer-faults.test.ts replaces the Consumer's). The settings'
 * own `max.message.bytes` (WEBHOOKS_KAFKA_TOPIC_CONFIG) wins over `maxRecordBytes`, which the
 * runtime always sets (`recordLimitFor(maxBodyBytes)`), as `recordLimitOf` assumes.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { recordLimitOf } from '../../src/engines/kafka/connection.ts';
import { KafkaTopicAdmin } from '../../src/engines/kafka/topic-admin.ts';

const prototype = Admin.prototype as unknown as Record<string, unknown>;
const original = Object.fromEntries(
  ['listTopics', 'metadata', 'createTopics', 'close'].map((k) => [k, prototype[k]]),
);
after(() => Object.assign(prototype, original));

test('a topic is created with the max.message.bytes of topicConfig when the settings give one, else maxRecordBytes', async () => {
  const created: Array<{ topics: string[]; configs: Array<{ name: string; value: string }> }> = [];
  const existing = new Set<string>();
  prototype.listTopics = async () => [...existing];
  prototype.metadata = async ({ topics }: { topics: string[] }) => ({
    brokers: new Map([[1, {}]]),
    topics: new Map(
      topics
        .filter((t) => existing.has(t))
        .map((t) => [t, { partitionsCount: 1, partitions: [{ leader: 1 }] }]),
    ),
  });
  prototype.createTopics = async (request: {
    topics: string[];
    configs: Array<{ name: string; value: string }>;
  }) => {
    created.push(request);
    for (const t of request.topics) existing.add(t);
  };
  prototype.close = async () => {};
  const base = { brokers: ['127.0.0.1:1'], maxRecordBytes: 2_000_000 };
  const own = { ...base, topicConfig: { 'max.message.bytes': '500000', 'retention.ms': '1000' } };
  for (const [settings, name] of [
    [own, 'own'],
    [base, 'default'],
  ] as const) {
    const admin = new KafkaTopicAdmin(settings);
    await admin.ensureTopic(name, { partitions: 1 });
    await admin.close();
  }
  const configOf = (topic: string) =>
    Object.fromEntries(created.find((c) => c.topics.includes(topic))!.configs.map((c) => [c.name, c.value]));
  assert.deepEqual(configOf('own'), { 'max.message.bytes': '500000', 'retention.ms': '1000' });
  assert.equal(
    Number(configOf('own')['max.message.bytes']),
    recordLimitOf(own),
    'what publish checks records against',
  );
  assert.deepEqual(configOf('default'), { 'max.message.bytes': '2000000' });
});
