/** The Kafka bus against the bus and topic-admin conformance suites, on a real Apache Kafka broker. */
import { after } from 'node:test';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';
import { runBusConformance } from '../conformance/bus.ts';
import { runTopicAdminConformance } from '../conformance/bus-admin.ts';
import { broker, kafkaSettings, stopBroker } from '../support/kafka.ts';

after(() => stopBroker());

runTopicAdminConformance('kafka', async () => {
  const b = await broker();
  return { open: async () => new KafkaBus(kafkaSettings(b)), cleanup: async () => {} };
});

runBusConformance('kafka', async () => {
  const b = await broker();
  return {
    open: async () => new KafkaBus(kafkaSettings(b), { topicRefreshMs: 500 }),
    cleanup: async () => {},
  };
});
