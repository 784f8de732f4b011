/**
 * One real Kafka broker per test file (tools/kafka/broker.ts), started on first use and stopped by
 * `stopBroker()` in the file's `after`. A broker that cannot start fails the tests with its reason.
 */

import type { KafkaSettings } from '../../src/engines/kafka/connection.ts';
import { type KafkaBroker, type KafkaBrokerOptions, startKafkaBroker } from '../../tools/kafka/broker.ts';

let started: Promise<KafkaBroker> | undefined;

export function broker(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
  started ??= startKafkaBroker(options);
  return started;
}

export async function stopBroker(): Promise<void> {
  const running = started;
  started = undefined;
  if (running) await (await running.catch(() => undefined))?.stop();
}

/** Settings for the bus against the test broker: short session timeout so a dead member's partitions move quickly. */
export function kafkaSettings(b: KafkaBroker, extra: Partial<KafkaSettings> = {}): KafkaSettings {
  return { brokers: [b.bootstrap], clientId: 'webhooks-test', sessionTimeoutMs: 6000, ...extra };
}
