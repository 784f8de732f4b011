/**
 * Topic administration on Apache Kafka (or Amazon MSK): topics are created with the partitions
 * asked for, the replication factor and topic configs of the settings (and a record limit that
 * takes the platform's largest record, `maxRecordBytes`); partitions are added, never removed.
 * `ensureTopic` resolves once every partition has a leader, so a publish right after it succeeds.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '@platformatic/kafka';
import { withDeadline } from '../../common/deadline.ts';
import { checkTopicRequest, type TopicAdmin, type TopicDescription } from '../../common/ports/bus.ts';
import { clientOptions, type KafkaSettings } from './connection.ts';
import { hasErrorCode } from './errors.ts';

export class KafkaTopicAdmin implements TopicAdmin {
  readonly engine = 'kafka';
  protected readonly settings: KafkaSettings;
  readonly #admin: Admin;
  readonly #defaultPartitions: number;
  #replication: number | undefined;

  constructor(settings: KafkaSettings, options: { defaultPartitions?: number } = {}) {
    this.settings = settings;
    this.#admin = new Admin(clientOptions(settings, 'admin'));
    this.#defaultPartitions = options.defaultPartitions ?? 4;
    this.#replication = settings.replicationFactor;
  }

  async ensureTopic(name: string, options: { partitions?: number } = {}): Promise<TopicDescription> {
    const partitions = checkTopicRequest(name, options.partitions ?? this.#defaultPartitions);
    let existing = await this.describeTopic(name);
    if (!existing) {
      try {
        await this.#admin.createTopics({
          topics: [name],
          partitions,
          replicas: await this.#replicationFactor(),
          configs: Object.entries(this.#topicConfig()).map(([configName, value]) => ({
            name: configName,
            value,
          })),
        });
      } catch (err) {
        // Another process created it meanwhile: it is then grown below like any existing topic.
        if (!hasErrorCode(err, 'TOPIC_ALREADY_EXISTS')) throw err;
      }
      existing = await this.#awaitLeaders(name, 1);
    }
    if (existing.partitions < partitions) {
      try {
        await this.#admin.createPartitions({ topics: [{ name, count: partitions, assignments: null }] });
      } catch (err) {
        // INVALID_PARTITIONS: another process grew it to this size (or more) first.
        if (!hasErrorCode(err, 'INVALID_PARTITIONS')) throw err;
      }
      existing = await this.#awaitLeaders(name, partitions);
    }
    return existing;
  }

  async describeTopic(name: string): Promise<TopicDescription | undefined> {
    const topics = await this.#admin.listTopics();
    if (!topics.includes(name)) return undefined;
    const metadata = await this.#admin.metadata({ topics: [name], forceUpdate: true });
    const topic = metadata.topics.get(name);
    return topic ? { name, partitions: topic.partitionsCount } : undefined;
  }

  async listTopics(): Promise<string[]> {
    return (await this.#admin.listTopics()).sort();
  }

  /**
   * Asks the cluster for its metadata; rejects when no answer comes within `deadlineMs` (3 s by
   * default: /readyz must answer quickly, while the client would retry for 40 s).
   */
  async ping(deadlineMs = 3000): Promise<void> {
    await withDeadline(
      this.#admin.metadata({ topics: [], forceUpdate: true }),
      deadlineMs,
      () => new Error(`the Kafka cluster did not answer within ${deadlineMs} ms`),
    );
  }

  async close(): Promise<void> {
    await this.#admin.close();
  }

  /** The configs of a topic created here: the settings', with room for the platform's largest record. */
  #topicConfig(): Record<string, string> {
    const { maxRecordBytes, topicConfig } = this.settings;
    // The settings' own max.message.bytes, when they have one, wins.
    return maxRecordBytes === undefined
      ? { ...topicConfig }
      : { 'max.message.bytes': String(maxRecordBytes), ...topicConfig };
  }

  /** The settings' factor, or 3 on a cluster of 3 brokers or more (1 below: a development cluster). */
  async #replicationFactor(): Promise<number> {
    if (this.#replication === undefined) {
      const metadata = await this.#admin.metadata({ topics: [], forceUpdate: true });
      this.#replication = metadata.brokers.size >= 3 ? 3 : 1;
    }
    return this.#replication;
  }

  /** Waits until the topic has `partitions` partitions, each with a leader (creation is asynchronous). */
  async #awaitLeaders(name: string, partitions: number): Promise<TopicDescription> {
    const deadline = Date.now() + (this.settings.requestTimeoutMs ?? 10_000) * 3;
    for (let wait = 10; ; wait = Math.min(wait * 2, 250)) {
      try {
        const metadata = await this.#admin.metadata({ topics: [name], forceUpdate: true });
        const topic = metadata.topics.get(name);
        if (
          topic &&
          topic.partitionsCount >= partitions &&
          topic.partitions.every((p) => p !== undefined && p.leader >= 0)
        ) {
          return { name, partitions: topic.partitionsCount };
        }
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      if (Date.now() > deadline) throw new Error(`topic ${name} has no leader for every partition yet`);
      await sleep(wait);
    }
  }
}
