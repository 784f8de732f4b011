/**
 * One member of a consumer group on the embedded log: a fetch loop that hands batches to the
 * handler (several at once up to maxInFlight) and a heartbeat that keeps the member's partition
 * leases. The per-partition bookkeeping is in `assignment.ts`; the whole design is in `log.ts`.
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type {
  BatchHandler,
  ConsumedMessage,
  ConsumerHandle,
  ConsumerOptions,
  DeadLetterNotice,
} from '../../common/ports/bus.ts';
import { type BatchRunner, consumerLimits, RecordsSkippedError, startBatch } from '../consumer-batch.ts';
import { Assignment, type Entry } from './assignment.ts';
import { type PartitionCursor, type Redelivery, redeliveryPolicy } from './cursor.ts';
import { GroupStore } from './group-store.ts';
import { sql } from './schema.ts';
import { Waker } from './waker.ts';

/** How long the commit of messages reported done waits to cover more of them (ms). */
const DONE_COMMIT_MS = 10;

/** Timings of the embedded consumer; tests shorten them. */
export interface ConsumerTuning {
  /** A crashed member's partitions are taken over after this long. */
  leaseTtlMs: number;
  /** First idle poll interval; doubles while idle up to `maxIdleMs`. */
  minIdleMs: number;
  maxIdleMs: number;
}

/** What the log gives a consumer: its connection and the in-process notifications. */
export interface ConsumerContext {
  db: DatabaseSync;
  tuning: ConsumerTuning;
  /** Calls `onAppend` when this process appends, `onTopics` when it ensures a topic; returns an unsubscribe. */
  subscribe(onAppend: () => void, onTopics: () => void): () => void;
  /** Told when the consumer has stopped, so the log forgets it. */
  finished(consumer: EmbeddedConsumer): void;
}

/** A running member of a consumer group. */
export class EmbeddedConsumer implements ConsumerHandle {
  readonly #ctx: ConsumerContext;
  readonly #assignment: Assignment;
  readonly #handler: BatchHandler;
  readonly #onError: ((err: unknown) => void) | undefined;
  readonly #deadLetter: ((message: ConsumedMessage, notice: DeadLetterNotice) => Promise<void>) | undefined;
  readonly #redelivery: Redelivery;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  readonly #maxInFlightBytes: number;
  #inFlight = 0;
  #inFlightBytes = 0;
  readonly #batches = new Set<Promise<void>>();
  readonly #maxPerPartition: number;
  /** Partitions with messages reported done before their batch ended, committed together shortly after. */
  readonly #toCommit = new Set<PartitionCursor>();
  #commitTimer: NodeJS.Timeout | undefined;
  readonly #waker = new Waker();
  #dirty = true;
  #stopping = false;
  #killed = false;
  #stopped: Promise<void> | undefined;
  readonly #heartbeatTimer: NodeJS.Timeout;
  #heartbeatSoon: NodeJS.Immediate | undefined;
  readonly #unsubscribe: () => void;
  readonly #loop: Promise<void>;
  /** How a handed-out batch runs and settles (shared with the other engines). */
  readonly #runner: BatchRunner<Entry>;

  constructor(ctx: ConsumerContext, options: ConsumerOptions) {
    const limits = consumerLimits(options);
    this.#maxBatch = limits.maxBatch;
    this.#maxInFlight = limits.maxInFlight;
    this.#maxPerPartition = limits.maxPerPartition;
    this.#maxInFlightBytes = limits.maxInFlightBytes;
    this.#ctx = ctx;
    this.#handler = options.handler;
    this.#onError = options.onError;
    this.#deadLetter = options.deadLetter;
    this.#redelivery = redeliveryPolicy(options.redelivery);
    // With nowhere to dead-letter to, a failing message is redelivered (with the backoff) for ever.
    if (!this.#deadLetter) this.#redelivery.maxFailures = Number.POSITIVE_INFINITY;
    this.#runner = {
      handler: this.#handler,
      deadLetter: this.#deadLetter,
      redelivery: this.#redelivery,
      report: (err) => this.#report(err),
      release: (entry) => this.#release(entry),
      doneEarly: (entry) => {
        this.#toCommit.add(entry.cursor);
        this.#commitTimer ??= setTimeout(() => this.#commitDone(), DONE_COMMIT_MS);
        this.#wake();
      },
      pause: (message, until) => {
        this.#assignment.pause(message.topic, message.partition, until);
      },
      resume: (message) => {
        if (this.#assignment.pause(message.topic, message.partition, 0)) this.#wake();
      },
      settled: (entries) => {
        this.#commitDone(entries.map((e) => e.cursor));
        this.#wake();
      },
    };
    const prefixes = [...new Set(options.topicPrefixes)];
    const store = new GroupStore(ctx.db, options.group, randomUUID(), prefixes, ctx.tuning.leaseTtlMs);
    this.#assignment = new Assignment(store, (err) => this.#report(err));
    this.#unsubscribe = ctx.subscribe(
      () => this.#wake(),
      () => {
        this.#heartbeatSoon ??= setImmediate(() => {
          this.#heartbeatSoon = undefined;
          this.#heartbeat();
        });
      },
    );
    this.#heartbeat();
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), Math.max(10, ctx.tuning.leaseTtlMs / 3));
    this.#loop = this.#run();
  }

  /** What this member's heartbeats and fetches have read so far (tests of the work they do). */
  get reads(): Assignment['reads'] {
    return this.#assignment.reads;
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  /** Abandons the consumer without committing or releasing anything: the database is closing. */
  kill(): void {
    this.#killed = true;
    this.#stopping = true;
    this.#shutdownTimers();
    this.#waker.wake();
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    this.#waker.wake();
    await this.#loop;
    // The heartbeat keeps the leases of a long batch alive meanwhile.
    while (this.#batches.size > 0) await Promise.all([...this.#batches]);
    this.#commitDone();
    this.#shutdownTimers();
    if (!this.#killed) this.#assignment.leave();
    this.#ctx.finished(this);
  }

  #shutdownTimers(): void {
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#commitTimer);
    this.#commitTimer = undefined;
    if (this.#heartbeatSoon) clearImmediate(this.#heartbeatSoon);
    this.#heartbeatSoon = undefined;
    this.#unsubscribe();
  }

  #heartbeat(): void {
    if (this.#killed) return;
    if (this.#assignment.heartbeat(Date.now(), !this.#stopping)) this.#wake();
  }

  #wake(): void {
    this.#dirty = true;
    this.#waker.wake();
  }

  async #run(): Promise<void> {
    const { minIdleMs, maxIdleMs } = this.#ctx.tuning;
    let idle = minIdleMs;
    let seenVersion = -1;
    while (!this.#stopping) {
      const capacity = this.#maxInFlight - this.#inFlight;
      const bytes = this.#maxInFlightBytes - this.#inFlightBytes;
      if (capacity <= 0 || bytes <= 0) {
        await this.#waker.wait(1000);
        continue;
      }
      let batch: Entry[] = [];
      const now = Date.now();
      try {
        // Another connection's commit changes data_version; this process's appends wake us directly.
        const version = (sql(this.#ctx.db, 'PRAGMA data_version').get() as { data_version: number })
          .data_version;
        if (this.#dirty || version !== seenVersion || now >= this.#assignment.deadline) {
          this.#dirty = false;
          seenVersion = version;
          batch = this.#assignment.fetch(
            Math.min(this.#maxBatch, capacity),
            now,
            this.#maxPerPartition,
            bytes,
            (skipped) => this.#report(new RecordsSkippedError(skipped)),
          );
        }
      } catch (err) {
        if (this.#stopping) break;
        this.#report(err);
        idle = maxIdleMs;
      }
      if (batch.length > 0) {
        idle = minIdleMs;
        this.#dirty = true;
        this.#dispatch(batch);
        continue;
      }
      await this.#waker.wait(Math.min(idle, this.#assignment.deadline - Date.now()));
      idle = Math.min(idle * 2, maxIdleMs);
    }
  }

  /** Hands the messages to the handler, and those given up on to the dead-letter callback. */
  #dispatch(batch: Entry[]): void {
    for (const entry of batch) {
      this.#inFlight += 1;
      this.#inFlightBytes += entry.bytes;
    }
    for (const work of startBatch(this.#runner, batch)) this.#track(work);
  }

  #track(work: Promise<void>): void {
    const running = work.finally(() => this.#batches.delete(running));
    this.#batches.add(running);
  }

  /** Frees the entry's place in flight; false when the consumer was killed meanwhile. */
  #release(entry: Entry): boolean {
    this.#inFlight -= 1;
    this.#inFlightBytes -= entry.bytes;
    return !this.#killed;
  }

  /** Commits the partitions of messages reported done so far, with `also` (one commit for all). */
  #commitDone(also: Iterable<PartitionCursor> = []): void {
    clearTimeout(this.#commitTimer);
    this.#commitTimer = undefined;
    if (this.#killed) return;
    const cursors = new Set([...this.#toCommit, ...also]);
    this.#toCommit.clear();
    if (cursors.size === 0) return;
    this.#assignment.commit(cursors);
  }

  #report(err: unknown): void {
    try {
      this.#onError?.(err);
    } catch {
      // A failing error callback must not stop the consumer.
    }
  }
}
