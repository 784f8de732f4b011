/**
 * The bus as the Lambda functions use it. An event source mapping cannot pause a partition nor hold
 * a message until it is due, so what the components publish with a `notBefore` (a retry, a deferral)
 * waits another way:
 * - due within `inlineMaxMs` (and before the invocation must end): the publish waits for it inside
 *   the invocation, then publishes;
 * - due later: the message is kept in the store (`ScheduledMessageRepository`) and the scheduler
 *   function, run every minute, publishes it once due — a retry due in 2 h does not keep a function
 *   running for 2 h, and goes out within a minute of its time.
 * A dispatcher retry is kept for its whole delay (`x-webhooks-due-at`), not hop by hop through the
 * tiers, and goes out to one topic, `retry.dispatcher.due`, whose mapping hands it to the dispatcher
 * core, which forwards it to its egress topic keyed by subscription (so the endpoint's limits hold).
 * Every ensured topic is also told to `onTopicEnsured` (the admin creates its event source mapping).
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { HEADERS } from '../../common/bus-headers.ts';
import type {
  Bus,
  BusMessage,
  ConsumerHandle,
  ConsumerOptions,
  TopicDescription,
} from '../../common/ports/bus.ts';
import type { ScheduledMessage, ScheduledMessageRepository } from '../../common/ports/store.ts';
import { RETRY_TOPIC_PREFIX } from '../../dispatcher/task-messages.ts';
import { invocationDeadline } from './invocation.ts';

/** Where dispatcher retries kept by the store go once due (its event source mapping is static). */
export const DISPATCHER_DUE_TOPIC = `${RETRY_TOPIC_PREFIX}due`;

/** A message due this close to now is published at once. */
const DUE_TOLERANCE_MS = 100;

export interface LambdaBusOptions {
  scheduled: ScheduledMessageRepository;
  /** Longest wait inside an invocation (default 5 s); longer ones are kept in the store. */
  inlineMaxMs?: number;
  clock?: () => number;
  /** Told of every topic ensured, once it exists (the admin creates its event source mapping). */
  onTopicEnsured?: (topic: string) => Promise<void>;
}

/** A `Bus` whose delayed messages wait inside the invocation or in the store (see the top). */
export class LambdaBus implements Bus {
  readonly engine: string;
  readonly #inner: Bus;
  readonly #options: LambdaBusOptions;
  readonly #clock: () => number;
  readonly #inlineMaxMs: number;
  /** Messages kept in the store and waits made inside invocations, since the container started. */
  readonly counts = { scheduled: 0, waited: 0 };

  constructor(inner: Bus, options: LambdaBusOptions) {
    this.#inner = inner;
    this.#options = options;
    this.engine = inner.engine;
    this.#clock = options.clock ?? Date.now;
    this.#inlineMaxMs = options.inlineMaxMs ?? 5_000;
  }

  async publish(messages: BusMessage[], options?: { ordered?: boolean }): Promise<void> {
    const now = this.#clock();
    const latest = invocationDeadline();
    const direct: BusMessage[] = [];
    const waiting: BusMessage[] = [];
    const kept: ScheduledMessage[] = [];
    let waitUntil = now;
    for (const message of messages) {
      // A dispatcher retry goes to the due topic even when due now: no mapping reads the tiers.
      const target = dueTarget(message);
      if (message.notBefore === undefined || message.notBefore <= now + DUE_TOLERANCE_MS) {
        direct.push(target);
        continue;
      }
      const dueAt = dueTimeOf(message);
      if (dueAt - now <= this.#inlineMaxMs && (latest === undefined || dueAt < latest)) {
        waiting.push(target);
        waitUntil = Math.max(waitUntil, dueAt);
      } else {
        kept.push({ id: keptId(target), dueAt, message: target });
      }
    }
    const work: Array<Promise<unknown>> = [];
    if (direct.length > 0) work.push(this.#inner.publish(direct, options));
    if (kept.length > 0)
      work.push(this.#options.scheduled.schedule(kept).then(() => (this.counts.scheduled += kept.length)));
    if (waiting.length > 0)
      work.push(
        sleep(waitUntil - now)
          .then(() => this.#inner.publish(waiting, options))
          .then(() => (this.counts.waited += waiting.length)),
      );
    // Every part settles before the publish answers: none goes on after its caller was told it failed.
    const failed = (await Promise.allSettled(work)).find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async ensureTopic(name: string, options?: { partitions?: number }): Promise<TopicDescription> {
    const topic = await this.#inner.ensureTopic(name, options);
    await this.#options.onTopicEnsured?.(name);
    return topic;
  }

  describeTopic(name: string): Promise<TopicDescription | undefined> {
    return this.#inner.describeTopic(name);
  }

  listTopics(): Promise<string[]> {
    return this.#inner.listTopics();
  }

  ping(): Promise<void> {
    return this.#inner.ping();
  }

  consume(options: ConsumerOptions): ConsumerHandle {
    return this.#inner.consume(options);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** When a delayed message is due: a dispatcher retry names its whole delay's end; others their notBefore. */
function dueTimeOf(message: BusMessage): number {
  const dueAt = Number(message.headers?.[HEADERS.dueAt]);
  return Number.isFinite(dueAt) && dueAt > 0 ? dueAt : (message.notBefore ?? 0);
}

/**
 * Where a delayed message goes once due, without the wait a consumer would honour again: dispatcher
 * retries to the one due topic, others where they were sent.
 */
function dueTarget(message: BusMessage): BusMessage {
  const { notBefore: _, ...due } = message;
  return message.topic.startsWith(RETRY_TOPIC_PREFIX) ? { ...due, topic: DISPATCHER_DUE_TOPIC } : due;
}

/**
 * The id a delayed message is kept under: the same message (a record handled again after a crash,
 * the same task deferred twice) is kept once, whatever its due time.
 */
function keptId(message: BusMessage): string {
  const hash = createHash('sha256');
  const headers = Object.entries(message.headers ?? {})
    .filter(([name]) => name !== HEADERS.dueAt)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .flat();
  for (const part of [message.topic, message.key ?? '', ...headers, message.value])
    hash.update(part).update('\u0000');
  return hash.digest('base64url');
}
