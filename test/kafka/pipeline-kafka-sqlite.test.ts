/** The pipeline suite on the Kafka bus (a real Apache Kafka broker) with the SQLite store. */
import { after } from 'node:test';
import { runPipelineSuite } from '../e2e/pipeline-suite.ts';
import { broker, stopBroker } from '../support/kafka.ts';

after(() => stopBroker());

runPipelineSuite('kafka bus, sqlite store', async () => ({
  WEBHOOKS_BUS: 'kafka',
  WEBHOOKS_KAFKA_BROKERS: (await broker()).bootstrap,
  WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS: '6000',
}));
