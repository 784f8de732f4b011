/**
 * The bus port's topic administration. The embedded log and Kafka implement it; the conformance
 * suite in `test/conformance/bus-admin.ts` runs against each.
 */
import { NotFoundError, ValidationError } from '../errors.ts';

export interface TopicDescription {
  name: string;
  partitions: number;
}

export interface TopicAdmin {
  readonly engine: string;
  /**
   * Creates the topic if it does not exist; an existing topic keeps its data. If it exists with
   * fewer partitions than asked, partitions are added (never removed). Returns the topic as it is.
   */
  ensureTopic(name: string, options?: { partitions?: number }): Promise<TopicDescription>;
  describeTopic(name: string): Promise<TopicDescription | undefined>;
  /** Topic names, sorted. */
  listTopics(): Promise<string[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Kafka's legal topic names: 1..249 chars of [a-zA-Z0-9._-], not "." or "..". */
export function isValidTopicName(name: string): boolean {
  return /^[a-zA-Z0-9._-]{1,249}$/.test(name) && name !== '.' && name !== '..';
}

/** What every engine throws when a message is published to a topic that does not exist. */
export function topicNotFound(topic: string): NotFoundError {
  return new NotFoundError('topic_not_found', `topic "${topic}" does not exist`, {
    details: [{ field: 'topic', message: 'topics are created by the admin components before use' }],
  });
}

/** Checks an `ensureTopic` request the same way on every engine; returns the partition count. */
export function checkTopicRequest(name: string, partitions: number): number {
  if (!isValidTopicName(name)) {
    throw new ValidationError('topic_name_invalid', `"${name}" is not a valid topic name`, {
      details: [{ field: 'topic', message: 'topic names are 1..249 characters of [a-zA-Z0-9._-]' }],
    });
  }
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
    throw new ValidationError('partitions_invalid', 'partitions must be a whole number from 1 to 1024', {
      details: [{ field: 'partitions', message: `got ${partitions}` }],
    });
  }
  return partitions;
}

/** A message to publish. `value` is JSON text; `key` chooses the partition (same key, same partition, in order). */
export interface BusMessage {
  topic: string;
  key?: string;
  value: string;
  headers?: Record<string, string>;
  /** Earliest time (ms since epoch) a consumer may process it: how retry tiers delay messages. */
  notBefore?: number;
}

/** Refuses a message no engine can store: a value that is not text, a notBefore that is not a time. */
export function checkBusMessage(message: BusMessage): void {
  const problem =
    typeof message.value !== 'string'
      ? { field: 'value', message: 'must be a string (JSON text)' }
      : message.notBefore !== undefined && !Number.isFinite(message.notBefore)
        ? { field: 'notBefore', message: 'must be a time in ms since the epoch' }
        : undefined;
  if (problem)
    throw new ValidationError('message_invalid', `a message for "${message.topic}" is invalid`, {
      details: [problem],
    });
}

/** A message as a consumer receives it. */
export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: number;
  key?: string;
  value: string;
  headers: Record<string, string>;
  /** When it was appended (ms since epoch). */
  timestamp: number;
  notBefore?: number;
}

/** A message its handler could not handle, and why. */
export interface FailedMessage {
  message: ConsumedMessage;
  /** What went wrong: kept as the message's last error, and given to `deadLetter` in the end. */
  error: unknown;
  /** Trying again cannot help (a malformed record): dead-lettered at once, without redeliveries. */
  permanent?: boolean;
}

/**
 * What a batch handler reports: the messages that failed (the partial batch response). Every other
 * message of the batch is handled. What happens to a failed message is the consumer's redelivery
 * policy (see `ConsumerOptions.redelivery`).
 */
export interface BatchOutcome {
  failed: FailedMessage[];
}

/**
 * What a handler may tell the consumer while its batch runs. A batch of a dispatcher can hold a
 * request to an endpoint that answers in 10 s next to a hundred that took a millisecond: `done`
 * frees those at once instead of keeping the whole batch in flight until the slowest ends, and
 * `pause` stops fetching from a partition whose messages would only wait (Kafka's pause/resume).
 */
export interface BatchControl {
  /**
   * The message is handled: it stops counting against `maxInFlight` now, and its offset may be
   * committed before the rest of the batch ends (its outcome is final: listing it as failed later
   * changes nothing). A crash before the commit still redelivers it (at-least-once).
   */
  done(message: ConsumedMessage): void;
  /** Fetch nothing more from the message's partition for up to `ms`, or until `resume`. Messages already handed out are unaffected. */
  pause(message: ConsumedMessage, ms: number): void;
  /** Ends a pause of the message's partition. */
  resume(message: ConsumedMessage): void;
}

export type BatchHandler = (
  batch: ConsumedMessage[],
  control: BatchControl,
) => Promise<BatchOutcome | undefined>;

/**
 * What becomes of a failed message: it is redelivered alone — the messages of its partition handled
 * already are never handed out again — after a backoff that doubles from `initialDelayMs` up to
 * `maxDelayMs`; meanwhile nothing newer of its partition is handed out (so a partition keeps its
 * order; other partitions flow). After `maxFailures` failures, or at once when the handler says the
 * failure is permanent, it is given to `deadLetter`; once that resolves the message counts as
 * handled and its partition moves on. Failures are counted by the member holding the partition:
 * after a rebalance or a restart the count starts again.
 */
export interface RedeliveryPolicy {
  /** Failures before the message is dead-lettered (default 5). */
  maxFailures?: number;
  /** Wait before the first redelivery (ms, default 1,000); doubled for each later one. */
  initialDelayMs?: number;
  /** The longest wait between two redeliveries (ms, default 60,000). */
  maxDelayMs?: number;
}

/** What `deadLetter` is told about a message given up on. */
export interface DeadLetterNotice {
  /** The last failure's error. */
  error: unknown;
  /** How many times the message failed. */
  failures: number;
  permanent: boolean;
}

export interface ConsumerOptions {
  /** Consumer group: each group gets every message at least once; members of one group share partitions. */
  group: string;
  /** Topics whose name starts with one of these prefixes, including topics created later. */
  topicPrefixes: string[];
  /** Largest batch handed to the handler (default 100). */
  maxBatch?: number;
  /**
   * Messages that may be in flight at once across concurrently running batches (default: maxBatch,
   * i.e. one batch at a time). A slow batch then holds back only its own partitions' commits.
   */
  maxInFlight?: number;
  /**
   * Messages of one partition that may be in flight at once (default: maxInFlight). With the
   * dispatcher, whose every endpoint reads one partition, this keeps one endpoint's backlog from
   * taking all of maxInFlight.
   */
  maxInFlightPerPartition?: number;
  /** Bytes of message values (and headers) that may be in flight at once (default: no limit besides the counts). */
  maxInFlightBytes?: number;
  handler: BatchHandler;
  redelivery?: RedeliveryPolicy;
  /**
   * Where a message goes when the consumer gives up on it (the stage's DLQ). When it resolves, the
   * message is handled; when it rejects, it is tried again after the backoff and the partition does
   * not move past the message (nothing is lost). Without it, a failing message is redelivered
   * forever, with the backoff.
   */
  deadLetter?: (message: ConsumedMessage, notice: DeadLetterNotice) => Promise<void>;
  /**
   * Told when something goes wrong that the consumer handles by itself: a handler that throws (its
   * batch's messages count as failed), a dead-lettering that fails, a background step of the engine
   * (a heartbeat, a commit), records skipped because they were deleted before they were read.
   */
  onError?: (err: unknown) => void;
}

export interface ConsumerHandle {
  /** Stops fetching, waits for in-flight batches, commits what they completed. */
  stop(): Promise<void>;
}

/** The bus port: topic administration, publishing, consumer groups. */
export interface Bus extends TopicAdmin {
  /**
   * Appends messages; resolves when all are stored (all or none for the embedded log). By default
   * once they are durable (Kafka: acknowledged by all in-sync replicas; the embedded log: flushed to
   * disk with WEBHOOKS_DURABILITY=fsync). With `ordered` instead, once they are readable and ordered
   * before whatever this process publishes or commits on the bus afterwards: a crash that loses
   * them loses that too — for a stage's outputs, whose consumer offset commit follows them (the
   * embedded log: one WAL, flushed by the next durable write).
   */
  publish(messages: BusMessage[], options?: { ordered?: boolean }): Promise<void>;
  /** Starts a consumer in a group; returns a handle to stop it. */
  consume(options: ConsumerOptions): ConsumerHandle;
  /**
   * A hint that topics may have been created elsewhere (a subscription changed in another thread
   * or process): consumers look for new topics now rather than at their next listing. Engines that
   * learn of new topics by themselves at once need not have it.
   */
  topicsChanged?(): void;
}
