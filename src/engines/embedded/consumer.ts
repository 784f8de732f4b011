/**
 * One member of a consumer group on the embedded log: a fetch loop that hands batches to the
 * handler (several at once up to maxInFlight) and a heartbeat that keeps the member's partition
 * leases. The per-partition bookkeeping is in `assignment.ts`; the whole design is in `log.ts`.
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { ValidationError } from '../../common/errors.ts';
import type {
  BatchControl,
  BatchHandler,
  ConsumedMessage,
  ConsumerHandle,
  ConsumerOptions,
} from '../../common/ports/bus.ts';
import { Assignment, type Entry, messageKey } from './assignment.ts';
import type { PartitionCursor } from './cursor.ts';
import { GroupStore } from './group-store.ts';
import { sql } from './schema.ts';
import { Waker } from './waker.ts';

/** How long the commit of messages reported done waits to cover more of them (ms). */
const DONE_COMMIT_MS = 10;

/** Timings of the embedded consumer; tests shorten them. */
export interface ConsumerTuning {
  /** A crashed member's partitions are taken over after this long. */
  leaseTtlMs: number;
  /** Pause before a failed message (and the rest of its partition) is handed out again. */
  retryPauseMs: number;
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
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  #inFlight = 0;
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

  constructor(ctx: ConsumerContext, options: ConsumerOptions) {
    this.#maxBatch = positiveInteger(options.maxBatch ?? 100, 'maxBatch');
    this.#maxInFlight = positiveInteger(options.maxInFlight ?? this.#maxBatch, 'maxInFlight');
    this.#maxPerPartition = positiveInteger(
      options.maxInFlightPerPartition ?? this.#maxInFlight,
      'maxInFlightPerPartition',
    );
    if (!options.group) {
      throw new ValidationError('consumer_group_invalid', 'a consumer needs a group', {
        details: [{ field: 'group', message: 'must be a non-empty string' }],
      });
    }
    this.#ctx = ctx;
    this.#handler = options.handler;
    this.#onError = options.onError;
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
      if (capacity <= 0) {
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
          batch = this.#assignment.fetch(Math.min(this.#maxBatch, capacity), now, this.#maxPerPartition);
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

  #dispatch(batch: Entry[]): void {
    this.#inFlight += batch.length;
    const running = this.#runBatch(batch).finally(() => this.#batches.delete(running));
    this.#batches.add(running);
  }

  async #runBatch(entries: Entry[]): Promise<void> {
    let failed: Set<string> | undefined;
    const open = new Map<ConsumedMessage, Entry>(entries.map((e) => [e.message, e]));
    const control: BatchControl = {
      done: (message) => {
        const entry = open.get(message);
        if (!entry || this.#killed) return;
        open.delete(message);
        this.#inFlight -= 1;
        // Settled now (its place is free at once); the commit waits a little to cover many.
        for (const cursor of this.#assignment.settle([entry], new Set())) this.#toCommit.add(cursor);
        this.#commitTimer ??= setTimeout(() => this.#commitDone(), DONE_COMMIT_MS);
        this.#wake();
      },
      pause: (message, ms) => {
        this.#assignment.pause(message.topic, message.partition, Date.now() + Math.max(0, ms));
      },
      resume: (message) => {
        if (this.#assignment.pause(message.topic, message.partition, 0)) this.#wake();
      },
    };
    try {
      const outcome = await this.#handler(
        entries.map((e) => e.message),
        control,
      );
      failed = new Set((outcome?.failed ?? []).map((m) => messageKey(m.topic, m.partition, m.offset)));
    } catch (err) {
      this.#report(err);
    }
    const rest = [...open.values()];
    open.clear();
    this.#inFlight -= rest.length;
    if (this.#killed) return;
    const touched = this.#assignment.settle(rest, failed);
    this.#commitDone(touched);
    this.#wake();
  }

  /** Commits the partitions of messages reported done so far, with `also` (one commit for all). */
  #commitDone(also: Iterable<PartitionCursor> = []): void {
    clearTimeout(this.#commitTimer);
    this.#commitTimer = undefined;
    if (this.#killed) return;
    const cursors = new Set([...this.#toCommit, ...also]);
    this.#toCommit.clear();
    if (cursors.size === 0) return;
    this.#assignment.commit(cursors, Date.now() + this.#ctx.tuning.retryPauseMs);
  }

  #report(err: unknown): void {
    try {
      this.#onError?.(err);
    } catch {
      // A failing error callback must not stop the consumer.
    }
  }
}

function positiveInteger(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new ValidationError('consumer_options_invalid', `${field} must be a whole number of at least 1`, {
      details: [{ field, message: `got ${value}` }],
    });
  }
  return value;
}
