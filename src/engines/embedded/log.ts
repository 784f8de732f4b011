/**
 * The embedded durable log: the single-node `Bus` on SQLite (`bus.db`, WAL). Kafka semantics on
 * one file, so components behave the same on Kafka.
 *
 * Tables (see `schema.ts`): `record` (topic, part, off) WITHOUT ROWID holds the messages;
 * `partition_log` the next offset per partition; `committed_offset` per group and partition;
 * `group_member` and `lease` the live members and who owns which partition; `group_prefix` the
 * prefixes each group reads (for retention).
 *
 * Publishing: the calls of one event-loop turn share a `BEGIN IMMEDIATE` transaction (group commit,
 * see `appender.ts`), each call all or nothing; partition = murmur2(key) like Kafka's
 * default partitioner, round-robin without a key; offsets per partition from 0, +1 each, reserved
 * from `partition_log` inside the transaction so several processes can append. An unknown topic
 * fails the whole call (`topic_not_found`): topics are ensured by the admin components.
 *
 * Leases: a member heartbeats every TTL/3 (TTL 3 s by default): renews its membership and leases,
 * takes free or expired leases up to its fair share ceil(partitions / live members), and hands
 * back leases over its share once their in-flight messages are committed. `stop()` releases all,
 * so the others take over within a heartbeat; after a crash the leases expire after the TTL.
 * A commit is written only while the member still owns the lease (fencing).
 *
 * Fetching: a batch of up to maxBatch messages across held partitions (starting at a rotating
 * partition), by offset range from each partition's position, never reading a whole topic; a
 * message already in flight in this member is never handed out again. Up to maxInFlight messages
 * in flight over several concurrent batches.
 *
 * Commit rule: per partition, the committed offset advances over the contiguous prefix of
 * messages handled (so a slow batch holds back only its own partitions' commits). A failed message
 * (partial batch response, or every message when the handler throws) stops the commit there and is
 * handed out again alone after a doubling backoff, or dead-lettered after `maxFailures` (see
 * `RedeliveryPolicy` and `cursor.ts`); the messages after it that were handled are not handed out
 * again. At-least-once: anything uncommitted at a crash is redelivered to the next owner.
 *
 * notBefore gating: within a partition, fetching stops at the first message not yet due
 * (head-of-line in that partition only); other partitions keep flowing. The loop sleeps until the
 * earliest such time, the end of a pause, or the next poll, whichever is first.
 *
 * Polling: a publish or a new topic wakes the consumers of this process at once (an event in this
 * thread, a BroadcastChannel message to the process's other threads); otherwise the loop checks
 * `PRAGMA data_version` (changes when another connection commits) with an idle backoff from
 * minIdleMs to maxIdleMs, so an idle consumer costs almost nothing.
 *
 * Retention: every retentionIntervalMs (1 s by default; and on demand with `retention()`), records
 * are deleted once every recently seen group whose prefixes match the topic has committed past
 * them, in small paced transactions (see `retention.ts`); one run at a time.
 */
import { EventEmitter } from 'node:events';
import { resolve } from 'node:path';
import { BroadcastChannel } from 'node:worker_threads';
import type { Durability } from '../../common/config.ts';
import type {
  Bus,
  BusMessage,
  ConsumerHandle,
  ConsumerOptions,
  TopicDescription,
} from '../../common/ports/bus.ts';
import { atomically } from '../sqlite/database.ts';
import { GroupCommit } from '../sqlite/group-commit.ts';
import { type AppendTransaction, appendMessages, appendTransaction, type RoundRobin } from './appender.ts';
import { type ConsumerTuning, EmbeddedConsumer } from './consumer.ts';
import { DEFAULT_UNREAD_MAX_AGE_MS, deleteConsumedRecords } from './retention.ts';
import { EmbeddedTopicAdmin } from './topic-admin.ts';

export interface EmbeddedLogOptions extends Partial<ConsumerTuning> {
  /** `fsync` (default): an append is acknowledged once it is on disk; `relaxed`: once it is in the OS. */
  durability?: Durability;
  /** Partitions of a topic ensured without a count (default 4). */
  defaultPartitions?: number;
  /** False: this connection leaves WAL checkpoints to another one (`checkpoint()`). */
  autoCheckpoint?: boolean;
  /**
   * How often consumed records are deleted (default 1 s); 0 turns the timer off (another log on the
   * same file does it, or `retention()` is called).
   */
  retentionIntervalMs?: number;
  /** How long records of the DLQ topics (`dlq.*`) are kept while no consumer group reads them (ms; default 7 days). */
  unreadRetentionMs?: number;
  /** Told about failures of background work (retention). */
  onError?: (err: unknown) => void;
}

// Consumers of any log instance on the same file in this thread hear about appends at once…
const local = new EventEmitter();
local.setMaxListeners(0);

// …and those of the process's other threads (the dispatcher thread) through one channel per file.
const channels = new Map<string, { channel: BroadcastChannel; users: number }>();

function joinChannel(name: string): BroadcastChannel {
  let entry = channels.get(name);
  if (!entry) {
    const channel = new BroadcastChannel(`webhooks-log:${name}`);
    channel.onmessage = (event) => local.emit(`${(event as MessageEvent).data}:${name}`);
    // Not a reason to keep the process alive.
    (channel as unknown as { unref(): void }).unref();
    entry = { channel, users: 0 };
    channels.set(name, entry);
  }
  entry.users += 1;
  return entry.channel;
}

function leaveChannel(name: string): void {
  const entry = channels.get(name);
  if (!entry) return;
  entry.users -= 1;
  if (entry.users === 0) {
    entry.channel.close();
    channels.delete(name);
  }
}

/** The embedded durable log: topic administration, publishing and consumer groups on `bus.db`. */
export class EmbeddedLog extends EmbeddedTopicAdmin implements Bus {
  readonly #channel: string;
  readonly #threads: BroadcastChannel;
  #closed = false;
  readonly #tuning: ConsumerTuning;
  readonly #roundRobin: RoundRobin = new Map();
  /** Appends of one turn (or window) share a transaction. */
  readonly #appends: GroupCommit;
  /** What the appends of the group transaction under way share (set as it begins, before they run). */
  #transaction: AppendTransaction | undefined;
  readonly #consumers = new Set<EmbeddedConsumer>();
  readonly #retentionMs: number;
  readonly #unreadRetentionMs: number;
  readonly #onError: ((err: unknown) => void) | undefined;
  #retentionTimer: NodeJS.Timeout | undefined;
  #retentionRunning = false;
  /** Per partition, the offset below which the timer's runs have deleted everything. */
  readonly #cleaned = new Map<string, number>();
  /** The commits the timer's runs have seen (see `RetentionOptions.changes`). */
  readonly #retentionChanges = { seq: 0, fullAt: 0 };

  constructor(path: string, options: EmbeddedLogOptions = {}) {
    super(path, options);
    this.#channel = path === ':memory:' ? `memory:${Math.random()}` : resolve(path);
    this.#threads = joinChannel(this.#channel);
    this.#tuning = {
      leaseTtlMs: options.leaseTtlMs ?? 3000,
      minIdleMs: options.minIdleMs ?? 2,
      maxIdleMs: options.maxIdleMs ?? 50,
    };
    // Consumers hear of appends once they are committed (readable), before the flush to disk: what a
    // consumer writes in turn is acknowledged only after its own flush, which covers these records too
    // (one WAL), so nothing read early can outlive what it was read from.
    this.#appends = new GroupCommit(this.db, {
      onBegin: () => {
        this.#transaction = appendTransaction(this.db);
      },
      onCommit: () => this.#announce('append'),
      // Producers wait for their append before sending the next (a request is answered once its
      // event is durable): a window waited out with every one of them queued is only delay.
      untilIdle: true,
    });
    this.#retentionMs = options.retentionIntervalMs ?? 1000;
    this.#unreadRetentionMs = options.unreadRetentionMs ?? DEFAULT_UNREAD_MAX_AGE_MS;
    this.#onError = options.onError;
  }

  override async ensureTopic(name: string, options: { partitions?: number } = {}): Promise<TopicDescription> {
    const topic = await super.ensureTopic(name, options);
    this.#announce('topics');
    return topic;
  }

  async publish(messages: BusMessage[], options: { ordered?: boolean } = {}): Promise<void> {
    if (messages.length === 0) return;
    // One WAL for every topic and every offset: `ordered` appends need no flush of their own.
    await this.#appends.run(
      () =>
        atomically(this.db, () => appendMessages(this.db, messages, this.#roundRobin, this.#transaction!)),
      {
        durable: options.ordered !== true,
        bytes: messages.reduce((sum, m) => sum + m.value.length + (m.key?.length ?? 0), 0),
      },
    );
  }

  #announce(what: 'append' | 'topics'): void {
    local.emit(`${what}:${this.#channel}`);
    if (!this.#closed) this.#threads.postMessage(what);
  }

  consume(options: ConsumerOptions): ConsumerHandle {
    const channel = this.#channel;
    const consumer = new EmbeddedConsumer(
      {
        db: this.db,
        tuning: this.#tuning,
        subscribe(onAppend, onTopics) {
          local.on(`append:${channel}`, onAppend);
          local.on(`topics:${channel}`, onTopics);
          return () => {
            local.off(`append:${channel}`, onAppend);
            local.off(`topics:${channel}`, onTopics);
          };
        },
        finished: (c) => this.#consumers.delete(c),
      },
      options,
    );
    this.#consumers.add(consumer);
    this.startRetention();
    return consumer;
  }

  /** Deletes the records every reading group has committed past; returns how many. */
  retention(): Promise<number> {
    return deleteConsumedRecords(this.db, { unreadMaxAgeMs: this.#unreadRetentionMs });
  }

  /** One paced run of the timer, skipping partitions with nothing new to delete; never two at once. */
  async #retentionTick(): Promise<void> {
    if (this.#retentionRunning || this.#closed) return;
    this.#retentionRunning = true;
    try {
      await deleteConsumedRecords(this.db, {
        unreadMaxAgeMs: this.#unreadRetentionMs,
        paced: true,
        cleaned: this.#cleaned,
        changes: this.#retentionChanges,
      });
    } catch (err) {
      if (!this.#closed) this.#onError?.(err);
    } finally {
      this.#retentionRunning = false;
    }
  }

  /** Closes the file. Consumers not stopped first are abandoned as in a crash: nothing more is committed. */
  override async close(): Promise<void> {
    for (const consumer of this.#consumers) consumer.kill();
    this.#consumers.clear();
    clearInterval(this.#retentionTimer);
    this.#retentionTimer = undefined;
    if (!this.#closed) {
      this.#closed = true;
      leaveChannel(this.#channel);
    }
    if (this.db.isOpen) this.#appends.drain();
    await super.close();
  }

  /** Whether this connection deletes consumed records on its timer. */
  get retaining(): boolean {
    return this.#retentionTimer !== undefined;
  }

  /** Starts the retention timer (the first consumer does; idempotent; off when the interval is 0). */
  startRetention(): void {
    if (this.#retentionTimer || this.#retentionMs <= 0) return;
    this.#retentionTimer = setInterval(() => void this.#retentionTick(), this.#retentionMs);
    this.#retentionTimer.unref();
  }
}
