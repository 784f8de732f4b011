/**
 * The crash loop (`test/e2e/crash-loop-suite.ts`) on the Kafka bus: processor and dispatcher
 * processes SIGKILLed mid-batch 20+ times under load; nothing accepted is lost, duplicates only
 * repeat a webhook-id after a dispatcher crash. A killed member's partitions move to its
 * restarted successor once the group's session timeout (6 s here) has passed.
 */
import { after } from 'node:test';
import { DISPATCHER_TOPIC_PREFIXES } from '../../src/dispatcher/dispatcher.ts';
import { PROCESSOR_TOPIC_PREFIXES } from '../../src/processor/processor.ts';
import { runCrashLoop } from '../e2e/crash-loop-suite.ts';
import { broker, groupLag, stopBroker } from '../support/kafka.ts';

after(() => stopBroker());

runCrashLoop('kafka bus, sqlite store', {
  env: async () => ({
    WEBHOOKS_BUS: 'kafka',
    WEBHOOKS_KAFKA_BROKERS: (await broker()).bootstrap,
    WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS: '6000',
  }),
  lag: async () => {
    const { bootstrap } = await broker();
    return (
      (await groupLag(bootstrap, 'processor', PROCESSOR_TOPIC_PREFIXES)) +
      (await groupLag(bootstrap, 'dispatcher', DISPATCHER_TOPIC_PREFIXES))
    );
  },
});
