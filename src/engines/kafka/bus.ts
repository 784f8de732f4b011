/**
 * The `Bus` on Apache Kafka (or Amazon MSK): topic administration (`topic-admin.ts`), an
 * idempotent producer (acks=all; a publish resolves once every in-sync replica has the records),
 * and consumer groups (`consumer.ts`).
 *
 * Partitions: a keyed message goes where Java clients put it (murmur2 of the key, sign bit
 * cleared, modulo the partition count — the embedded log's partitioner), so producers outside the
 * platform and the platform agree; unkeyed messages go round-robin. `notBefore` travels as the
 * `webhooks-not-before` header. A publish to a topic that does not exist fails with
 * `topic_not_found` (topics are ensured by the admin components; the broker never creates one).
 *
 * Topics created after a consumer started: the bus lists the cluster's topics every
 * `topicRefreshMs` while consumers run (and at once when this process ensures a topic), and a
 * consumer whose prefixes match a new topic joins its group again with it.
 */
import { Producer, stringSerializers } from '@platformatic/kafka';
import { PayloadTooLargeError, TransientError } from '../../common/errors.ts';
import {
  type Bus,
  type BusMessage,
  type ConsumerHandle,
  type ConsumerOptions,
  checkBusMessage,
  type TopicDescription,
  topicNotFound,
} from '../../common/ports/bus.ts';
import { partitionForKey } from '../embedded/partitioner.ts';
import {
  clientOptions,
  KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
  type KafkaSettings,
  recordLimitOf,
} from './connection.ts';
import { KafkaConsumer } from './consumer.ts';
import { describeKafkaError, hasErrorCode } from './errors.ts';
import { NOT_BEFORE_HEADER } from './headers.ts';
import { KafkaTopicAdmin } from './topic-admin.ts';

export interface KafkaBusOptions {
  /** Partitions of a topic ensured without a count (default 4). */
  defaultPartitions?: number;
  /** How often running consumers look for new topics (ms, default 2,000). */
  topicRefreshMs?: number;
}

/** How long `connect()` waits for the cluster to answer at start (ms): a start fails well within 30 s. */
const CONNECT_DEADLINE_MS = 25_000;

/** Room left in a produce request for the record batch's own header and the records' length fields. */
const BATCH_MARGIN_BYTES = 64 * 1024;

interface OutgoingRecord {
  topic: string;
  key?: string;
  value: string;
  headers: Record<string, string>;
  partition: number;
}

/** The record's size on the wire, near enough (its length fields and the batch's header aside). */
function recordBytes(r: OutgoingRecord): number {
  let bytes = 32 + Buffer.byteLength(r.value) + (r.key === undefined ? 0 : Buffer.byteLength(r.key));
  for (const name in r.headers) bytes += name.length + Buffer.byteLength(r.headers[name]!) + 8;
  return bytes;
}

/** The records in order, cut into runs of at most `limit` bytes (`sizes[i]` is record i's; a larger record alone). */
function requestsOf<T>(records: T[], sizes: number[], limit: number): T[][] {
  const requests: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  records.forEach((record, i) => {
    if (current.length > 0 && bytes + sizes[i]! > limit) {
      requests.push(current);
      current = [];
      bytes = 0;
    }
    current.push(record);
    bytes += sizes[i]!;
  });
  if (current.length > 0) requests.push(current);
  return requests;
}

/**
 * Why a produce request failed, as the platform's error. Transient (503 at ingest; a stage's record
 * is redelivered with backoff, then dead-lettered): the cluster may take the records later. That
 * holds for a record the topic refuses as too large, too: the record is within the limit the
 * platform creates its topics with (larger ones are refused before they are sent), so the topic was
 * made before, or by hand, and takes it once its limit is raised; the message says to what.
 */
function publishError(err: unknown, records: OutgoingRecord[], limit: number): TransientError {
  if (hasErrorCode(err, 'MESSAGE_TOO_LARGE') || hasErrorCode(err, 'RECORD_LIST_TOO_LARGE')) {
    const largest = records.reduce((a, b) => (recordBytes(b) > recordBytes(a) ? b : a));
    return new TransientError(
      'record_too_large',
      `a record of ${recordBytes(largest)} bytes for topic ${largest.topic} is over what the topic takes ` +
        `(its max.message.bytes): the platform creates its topics with ${limit}; a topic created before, ` +
        'or by hand, needs that much',
      { cause: err },
    );
  }
  return new TransientError('bus_unavailable', 'the Kafka cluster did not acknowledge the records', {
    cause: err,
  });
}

/** How long a topic's partition count is trusted before it is read again (ms). */
const PARTITIONS_TTL_MS = 5000;

export class KafkaBus extends KafkaTopicAdmin implements Bus {
  readonly #producer: Producer<string, string, string, string>;
  readonly #consumers = new Set<KafkaConsumer>();
  readonly #partitions = new Map<string, { count: number; at: number }>();
  readonly #roundRobin = new Map<string, number>();
  readonly #topicWatchers = new Set<() => void>();
  readonly #topicRefreshMs: number;
  #topicTimer: NodeJS.Timeout | undefined;
  #topicList: Promise<string[]> | undefined;
  #closed = false;

  constructor(settings: KafkaSettings, options: KafkaBusOptions = {}) {
    super(settings, options);
    this.#topicRefreshMs = options.topicRefreshMs ?? 2000;
    this.#producer = new Producer({
      ...clientOptions(settings, 'producer'),
      idempotent: true,
      // acks=all comes with idempotence; retries must be finite or a send to a missing topic never settles.
      retries: 5,
      serializers: stringSerializers,
    });
  }

  /**
   * Connects to the cluster and checks that it answers; a clear error when it does not. Call it
   * once at start (the server does), so that a wrong broker list fails the start, not the first publish.
   */
  async connect(deadlineMs = CONNECT_DEADLINE_MS): Promise<void> {
    try {
      await this.ping(deadlineMs);
    } catch (err) {
      throw new Error(
        `cannot reach the Kafka brokers ${this.settings.brokers.join(', ')}: ${describeKafkaError(err)}`,
        { cause: err },
      );
    }
  }

  override async ensureTopic(name: string, options: { partitions?: number } = {}): Promise<TopicDescription> {
    const topic = await super.ensureTopic(name, options);
    // The producer's own metadata must know the count too: it takes a record's partition modulo
    // the count it knows, so a topic just grown would have keys sent to the old partitions.
    const metadata = await this.#producer.metadata({ topics: [name], forceUpdate: true });
    const count = Math.max(topic.partitions, metadata.topics.get(name)?.partitionsCount ?? 0);
    this.#partitions.set(name, { count, at: Date.now() });
    this.topicsChanged();
    return topic;
  }

  /** Topics may have been created elsewhere (another thread or process said so): consumers list them now. */
  topicsChanged(): void {
    for (const watcher of this.#topicWatchers) watcher();
  }

  async publish(messages: BusMessage[], _options: { ordered?: boolean } = {}): Promise<void> {
    if (messages.length === 0) return;
    for (const message of messages) checkBusMessage(message);
    const counts = await this.#partitionCounts([...new Set(messages.map((m) => m.topic))]);
    const records: OutgoingRecord[] = messages.map((m) => {
      const headers: Record<string, string> = { ...m.headers };
      if (m.notBefore !== undefined) headers[NOT_BEFORE_HEADER] = String(m.notBefore);
      const partition = this.#partitionOf(m, counts.get(m.topic)!);
      return m.key === undefined
        ? { topic: m.topic, value: m.value, headers, partition }
        : { topic: m.topic, key: m.key, value: m.value, headers, partition };
    });
    const sizes = records.map(recordBytes);
    // Larger than any topic of the platform takes: refused for good, before anything is sent (an
    // event within the body limit can still grow this much once written out again: `1e20` is 21
    // digits in its envelope).
    const limit = recordLimitOf(this.settings);
    const oversized = sizes.findIndex((size) => size > limit);
    if (oversized !== -1) {
      throw new PayloadTooLargeError(
        'record_too_large',
        `the record for topic ${records[oversized]!.topic} would be ${sizes[oversized]} bytes, over the ${limit} bytes ` +
          "the platform's topics take (max.message.bytes)",
        { details: [{ field: 'body', message: `at most ${limit} bytes once in its record` }] },
      );
    }
    // One after the other (the order of a partition's records is kept), in produce requests the
    // topics take whole: a record batch over a topic's limit is refused whole. (A request that fails
    // after others went through leaves those written: a publish is at least once on Kafka, and the
    // repeat of a redelivery is absorbed downstream by event ids and the dispatcher's ledger.)
    const requestBytes = Math.min(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, limit) - BATCH_MARGIN_BYTES;
    for (const chunk of requestsOf(records, sizes, requestBytes)) {
      try {
        await this.#producer.send({ messages: chunk });
      } catch (err) {
        throw publishError(err, chunk, limit);
      }
    }
  }

  consume(options: ConsumerOptions): ConsumerHandle {
    const consumer = new KafkaConsumer(
      {
        settings: this.settings,
        listTopics: () => this.#listTopicsShared(),
        watchTopics: (onChange) => {
          this.#topicWatchers.add(onChange);
          this.#startTopicTimer();
          return () => {
            this.#topicWatchers.delete(onChange);
            if (this.#topicWatchers.size === 0) {
              clearInterval(this.#topicTimer);
              this.#topicTimer = undefined;
            }
          };
        },
        finished: (c) => this.#consumers.delete(c),
      },
      options,
    );
    this.#consumers.add(consumer);
    return consumer;
  }

  /** Closes the clients. Consumers not stopped first are abandoned as in a crash: nothing more is committed. */
  override async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const consumer of this.#consumers) consumer.kill();
    this.#consumers.clear();
    clearInterval(this.#topicTimer);
    this.#topicTimer = undefined;
    await Promise.allSettled([this.#producer.close(), super.close()]);
  }

  #startTopicTimer(): void {
    if (this.#topicTimer || this.#closed) return;
    this.#topicTimer = setInterval(() => this.topicsChanged(), this.#topicRefreshMs);
    this.#topicTimer.unref();
  }

  /** One listing for every consumer that asks while it runs. */
  #listTopicsShared(): Promise<string[]> {
    this.#topicList ??= this.listTopics().finally(() => {
      this.#topicList = undefined;
    });
    return this.#topicList;
  }

  async #partitionCounts(topics: string[]): Promise<Map<string, number>> {
    const now = Date.now();
    const stale = topics.filter((t) => {
      const known = this.#partitions.get(t);
      return !known || now - known.at > PARTITIONS_TTL_MS;
    });
    if (stale.length > 0) {
      let metadata: Awaited<ReturnType<Producer['metadata']>>;
      try {
        metadata = await this.#producer.metadata({ topics: stale, forceUpdate: true });
      } catch (err) {
        // The client reports a missing topic as a UserError "Unknown topic <name>." (or the broker's code).
        if (
          hasErrorCode(err, 'UNKNOWN_TOPIC_OR_PARTITION') ||
          /^Unknown topic /.test((err as Error).message)
        ) {
          const missing = stale.filter((t) => !this.#partitions.has(t));
          throw topicNotFound(missing[0] ?? stale[0]!);
        }
        throw err;
      }
      for (const topic of stale) {
        const described = metadata.topics.get(topic);
        if (described) this.#partitions.set(topic, { count: described.partitionsCount, at: now });
      }
    }
    const counts = new Map<string, number>();
    for (const topic of topics) {
      const known = this.#partitions.get(topic);
      if (!known) throw topicNotFound(topic);
      counts.set(topic, known.count);
    }
    return counts;
  }

  #partitionOf(message: BusMessage, partitions: number): number {
    if (message.key !== undefined) return partitionForKey(message.key, partitions);
    const next = this.#roundRobin.get(message.topic) ?? Math.floor(Math.random() * partitions);
    this.#roundRobin.set(message.topic, next + 1);
    return next % partitions;
  }
}
