/**
 * One real Kafka broker per test file (tools/kafka/broker.ts), started on first use and stopped by
 * `stopBroker()` in the file's `after`. A broker that cannot start fails the tests with its reason.
 */

import { Admin, Consumer } from '@platformatic/kafka';
import type { KafkaSettings } from '../../src/engines/kafka/connection.ts';
import { type KafkaBroker, type KafkaBrokerOptions, startKafkaBroker } from '../../tools/kafka/broker.ts';

let started: Promise<KafkaBroker> | undefined;

export function broker(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
  started ??= startKafkaBroker(options);
  return started;
}

/**
 * How long a test file may stay alive once its broker is stopped (its last hook): see `stopBroker`.
 */
const EXIT_GRACE_MS = 20_000;

/**
 * Stops the file's broker; call it last, in the file's `after`. @platformatic/kafka 2.12 can keep a
 * consumer heartbeating after it was closed — when a group join (its own rejoin after a rebalance)
 * completes after the close, nothing cancels the heartbeat it arms, and with the broker gone it
 * retries for ever. That keeps the file's process alive after its tests have all reported, and the
 * runner waits on it without end (seen in 2 runs of ~10 of the Kafka bus conformance suite). The
 * platform's own processes exit explicitly after closing, so this is only the tests' problem: a
 * process still alive `EXIT_GRACE_MS` after this is ended here, with the exit code its tests set.
 */
export async function stopBroker(): Promise<void> {
  const running = started;
  started = undefined;
  if (running) await (await running.catch(() => undefined))?.stop();
  setTimeout(() => {
    process.stderr.write(
      `test/support/kafka.ts: a Kafka client kept this process alive ${EXIT_GRACE_MS / 1000} s after its broker stopped; exiting\n`,
    );
    process.exit(process.exitCode ?? 0);
  }, EXIT_GRACE_MS).unref();
}

/** Settings for the bus against the test broker: short session timeout so a dead member's partitions move quickly. */
export function kafkaSettings(b: KafkaBroker, extra: Partial<KafkaSettings> = {}): KafkaSettings {
  return { brokers: [b.bootstrap], clientId: 'webhooks-test', sessionTimeoutMs: 6000, ...extra };
}

/**
 * Messages of the topics under `prefixes` that `group` has not committed yet (end offset minus
 * committed offset, or minus the earliest offset where the group committed nothing), summed.
 */
export async function groupLag(
  bootstrap: string,
  group: string,
  prefixes: readonly string[],
): Promise<number> {
  const consumer = new Consumer({
    clientId: 'lag-probe',
    groupId: group,
    bootstrapBrokers: [bootstrap],
    retries: 1,
  });
  try {
    const admin = new Admin({ clientId: 'lag-probe', bootstrapBrokers: [bootstrap], retries: 1 });
    const names = (await admin.listTopics().finally(() => admin.close())).filter((n) =>
      prefixes.some((p) => n.startsWith(p)),
    );
    if (names.length === 0) return 0;
    const ends = await consumer.listOffsets({ topics: names });
    const starts = await consumer.listOffsets({ topics: names, timestamp: -2n });
    const committed = await consumer.listCommittedOffsets({
      topics: names.map((topic) => ({ topic, partitions: ends.get(topic)!.map((_, i) => i) })),
    });
    let lag = 0n;
    for (const topic of names) {
      ends.get(topic)!.forEach((end, partition) => {
        const done = committed.get(topic)?.[partition] ?? -1n;
        const from = done >= 0n ? done : starts.get(topic)![partition]!;
        lag += end - from;
      });
    }
    return Number(lag);
  } finally {
    await consumer.close(true);
  }
}
