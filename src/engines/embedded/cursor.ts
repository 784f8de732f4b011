/**
 * One partition as a consumer member sees it while it holds the partition's lease: where to fetch
 * next, which handed-out offsets are still in flight, which failed ones wait to be delivered again
 * (or dead-lettered), and how far the commit may advance.
 *
 * Commit rule: the committed offset advances only over the contiguous prefix of handed-out offsets
 * that are handled — succeeded, or dead-lettered. A failed offset stops it there and is delivered
 * again after a backoff, alone: the offsets after it that were handled stay handled (their side
 * effects never run twice in this member). While a failed offset waits, nothing newer is fetched
 * from the partition, so the partition keeps its order; other partitions flow.
 */
import type { ConsumedMessage, RedeliveryPolicy } from '../../common/ports/bus.ts';

const IN_FLIGHT = 0;
const DONE = 1;
const WAITING = 2;

/** The key of a partition in maps. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/** The redelivery policy with its defaults filled in. */
export type Redelivery = Required<RedeliveryPolicy>;

/** The port's defaults (see `RedeliveryPolicy`). */
export function redeliveryPolicy(policy: RedeliveryPolicy = {}): Redelivery {
  return {
    maxFailures: policy.maxFailures ?? 5,
    initialDelayMs: policy.initialDelayMs ?? 1000,
    maxDelayMs: policy.maxDelayMs ?? 60_000,
  };
}

/** The wait before the next try after `failures` failures: doubling, capped. */
export function backoffMs(policy: Redelivery, failures: number): number {
  const exponent = Math.min(Math.max(0, failures - 1), 30);
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** exponent);
}

/** A failed message waiting to be handed out again, or to be dead-lettered. */
export interface Retry {
  message: ConsumedMessage;
  /** Failures of the handler so far. */
  failures: number;
  error: unknown;
  permanent: boolean;
  /** Given up on: it goes to the dead-letter callback instead of the handler. */
  deadLetter: boolean;
  /** Failed attempts to dead-letter it (for their backoff). */
  deadLetterFailures: number;
  dueAt: number;
}

/** A held partition's fetch position, in-flight offsets and failed offsets. */
export class PartitionCursor {
  readonly topic: string;
  readonly partition: number;
  /** `topic\0partition`: the partition's key in maps. */
  readonly key: string;
  /** Next offset to process, as committed in the database. */
  committed: number;
  /** Next offset to fetch. */
  position: number;
  /** The message at `position` is not due before this time (its notBefore). */
  blockedUntil = 0;
  /** Paused by the handler (`BatchControl.pause`) until this time. */
  pausedUntil = 0;
  /** Handing the lease back (over the fair share): fetch nothing more, release once idle. */
  releasing = false;
  #pending: number[] = [];
  #head = 0;
  readonly #status = new Map<number, number>();
  readonly #retries = new Map<number, Retry>();
  #inFlight = 0;

  constructor(topic: string, partition: number, committed: number) {
    this.topic = topic;
    this.partition = partition;
    this.key = partitionKey(topic, partition);
    this.committed = committed;
    this.position = committed;
  }

  /** Messages of this partition handed out (or being dead-lettered) and not yet settled. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * When a fetch may next take new messages from it (0: now), or undefined while it may not: it is
   * being handed back, or a failed message waits (the partition keeps its order).
   */
  readyAt(): number | undefined {
    if (this.releasing || this.#retries.size > 0) return undefined;
    return Math.max(this.blockedUntil, this.pausedUntil);
  }

  /** When the next failed message is due (to be handed out again or dead-lettered), if one waits. */
  retryAt(): number | undefined {
    if (this.releasing) return undefined;
    let at: number | undefined;
    for (const [offset, retry] of this.#retries) {
      if (this.#status.get(offset) !== WAITING) continue;
      at = at === undefined ? retry.dueAt : Math.min(at, retry.dueAt);
    }
    return at;
  }

  /** Records that the message at `offset` was handed to a handler. */
  handOut(offset: number): void {
    this.#pending.push(offset);
    this.#status.set(offset, IN_FLIGHT);
    this.#inFlight++;
    this.position = offset + 1;
  }

  /** The failed messages due by `now` (up to `limit`), in offset order, now in flight again. */
  takeDue(now: number, limit: number): Retry[] {
    const due: Retry[] = [];
    const offsets = [...this.#retries.keys()].sort((a, b) => a - b);
    for (const offset of offsets) {
      if (due.length >= limit) break;
      const retry = this.#retries.get(offset)!;
      if (this.#status.get(offset) !== WAITING || retry.dueAt > now) continue;
      this.#status.set(offset, IN_FLIGHT);
      this.#inFlight++;
      due.push(retry);
    }
    return due;
  }

  /** The message at `offset` is handled (its handler succeeded, or it was dead-lettered). */
  succeed(offset: number): void {
    if (this.#status.get(offset) !== IN_FLIGHT) return;
    this.#status.set(offset, DONE);
    this.#retries.delete(offset);
    this.#inFlight--;
  }

  /**
   * The handler failed on the message at `offset`: it waits for its redelivery after the backoff,
   * or — after `maxFailures`, or at once when permanent — to be dead-lettered. Returns its state.
   */
  fail(
    offset: number,
    message: ConsumedMessage,
    failure: { error: unknown; permanent: boolean },
    now: number,
    policy: Redelivery,
  ): Retry | undefined {
    if (this.#status.get(offset) !== IN_FLIGHT) return undefined;
    this.#status.set(offset, WAITING);
    this.#inFlight--;
    const previous = this.#retries.get(offset);
    const failures = (previous?.failures ?? 0) + 1;
    const giveUp = failure.permanent || failures >= policy.maxFailures;
    const retry: Retry = {
      message,
      failures,
      error: failure.error,
      permanent: failure.permanent,
      deadLetter: giveUp,
      deadLetterFailures: 0,
      dueAt: giveUp ? now : now + backoffMs(policy, failures),
    };
    this.#retries.set(offset, retry);
    return retry;
  }

  /** Dead-lettering the message at `offset` failed: it is tried again after the backoff. */
  deadLetterFailed(offset: number, now: number, policy: Redelivery): void {
    const retry = this.#retries.get(offset);
    if (!retry || this.#status.get(offset) !== IN_FLIGHT) return;
    this.#status.set(offset, WAITING);
    this.#inFlight--;
    retry.deadLetterFailures += 1;
    retry.dueAt = now + backoffMs(policy, retry.deadLetterFailures);
  }

  /** Advances `committed` over the handled prefix; returns the new value when it moved. */
  takeCommit(): number | undefined {
    let next: number | undefined;
    while (this.#head < this.#pending.length) {
      const offset = this.#pending[this.#head]!;
      if (this.#status.get(offset) !== DONE) break;
      this.#status.delete(offset);
      next = offset + 1;
      this.#head++;
    }
    if (this.#head > 0 && this.#head * 2 >= this.#pending.length) {
      this.#pending = this.#pending.slice(this.#head);
      this.#head = 0;
    }
    if (next === undefined) return undefined;
    this.committed = next;
    return next;
  }
}
