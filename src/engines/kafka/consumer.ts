/**
 * One member of a Kafka consumer group, with the bus port's semantics (see `ports/bus.ts`).
 *
 * Group membership (join, sync, heartbeats, rebalances) is @platformatic/kafka's classic-protocol
 * consumer; fetching is this file's own, so that it can be per partition: the client's message
 * stream fetches every assigned partition or none, and the port needs a partition paused (by the
 * handler, or while a failed message waits, or while its next message is not due) while the others
 * flow. Each broker gets one fetch at a time for the partitions that may take more — a long poll,
 * unless a busy partition holds records back and would wait behind it (`#fetchMore`); the records
 * land in a small buffer per partition, from which batches are handed out.
 *
 * The bookkeeping per partition is the embedded log's `PartitionCursor`: what is in flight, which
 * failed messages wait for their redelivery (alone, after a doubling backoff) or their dead letter,
 * and how far the commit may go — only over the contiguous prefix of handled offsets, so a crash
 * redelivers what was not handled (at-least-once). Commits are sent one request at a time,
 * coalesced. After a rebalance, a partition this member keeps keeps its cursor; one it lost is
 * forgotten (what was in flight on it is neither committed nor handed out here again).
 *
 * notBefore: a message whose header says it is not due yet stops its partition — nothing newer is
 * handed out and nothing more is fetched from it — until it is due; other partitions keep flowing.
 * Nothing sleeps with a batch in hand and nothing is re-published.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Consumer, type GroupAssignment } from '@platformatic/kafka';
import { withDeadline } from '../../common/deadline.ts';
import type {
  BatchHandler,
  ConsumedMessage,
  ConsumerHandle,
  ConsumerOptions,
  DeadLetterNotice,
} from '../../common/ports/bus.ts';
import {
  type BatchEntry,
  type BatchRunner,
  consumerLimits,
  OffsetPastEndError,
  RecordsSkippedError,
  sizeOf,
  startBatch,
} from '../consumer-batch.ts';
import { PartitionCursor, partitionKey, type Redelivery, redeliveryPolicy } from '../embedded/cursor.ts';
import { Waker } from '../embedded/waker.ts';
import { clientOptions, type KafkaSettings } from './connection.ts';
import { describeKafkaError, hasErrorCode } from './errors.ts';
import { readHeaders } from './headers.ts';

/** How long a fetch waits at the broker for new records (ms): also how late a resumed partition may be fetched. */
const FETCH_WAIT_MS = 100;
/** Bytes one partition's buffer may hold before it is fetched from again. */
const PARTITION_BUFFER_BYTES = 1024 * 1024;
/** Bytes all partitions' buffers may hold together (with many partitions, 1 MiB each would add up). */
const TOTAL_BUFFER_BYTES = 32 * 1024 * 1024;
/** How long the commit of messages reported done waits to cover more of them (ms). */
const DONE_COMMIT_MS = 10;

/** A join that has not settled after this long is given up on, and tried again at the next topic check (ms). */
const JOIN_DEADLINE_MS = 60_000;
/** How long a stop waits for a join under way before it closes the client anyway (ms). */
const STOP_JOIN_WAIT_MS = 5_000;

/** What the bus gives a consumer. */
export interface KafkaConsumerContext {
  settings: KafkaSettings;
  /** Topics matching the prefixes now; `watch` calls back when new topics appear (returns an unsubscribe). */
  listTopics(): Promise<string[]>;
  watchTopics(onChange: () => void): () => void;
  finished(consumer: KafkaConsumer): void;
}

/** A partition this member holds: its cursor, its buffer of fetched records and where to fetch next. */
interface Held {
  cursor: PartitionCursor;
  buffer: ConsumedMessage[];
  bufferBytes: number;
  /** Next offset to fetch (after the buffer's last record). */
  fetchOffset: number;
  leaderEpoch: number;
  /** A fetch for it is in flight. */
  fetching: boolean;
  /** Its last fetch brought records: it is likely to have more now. */
  flowing: boolean;
  /** Records handed out since `handedSince`, and in the FETCH_WAIT_MS window before it. */
  handed: number;
  handedBefore: number;
  handedSince: number;
  /** Its records handed out and not yet settled. */
  outstanding: number;
  /**
   * The offset to read again from once its records in flight have settled: the group's offset was
   * past the log's end. Not fetched meanwhile (each fetch would fail, and with it the fetch of
   * every partition the same broker leads).
   */
  resetTo?: number;
}

/** A handed-out message, the cursor of its partition and the partition as this member holds it. */
interface Entry extends BatchEntry {
  held: Held;
}

export class KafkaConsumer implements ConsumerHandle {
  readonly #ctx: KafkaConsumerContext;
  readonly #client: Consumer;
  readonly #prefixes: string[];
  readonly #handler: BatchHandler;
  readonly #onError: ((err: unknown) => void) | undefined;
  readonly #deadLetter: ((message: ConsumedMessage, notice: DeadLetterNotice) => Promise<void>) | undefined;
  readonly #redelivery: Redelivery;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  readonly #maxPerPartition: number;
  readonly #maxInFlightBytes: number;
  #inFlight = 0;
  #inFlightBytes = 0;
  /** Bytes in the held partitions' buffers (fetched, not yet handed out). */
  #buffered = 0;
  readonly #held = new Map<string, Held>();
  /**
   * Partitions lost while records of them were in flight: given back to this member meanwhile,
   * they are read again only once those settle, or the same records would run twice at once here.
   */
  readonly #lost = new Map<string, Held>();
  /** The partitions of the group's last assignment to this member. */
  #assigned = new Map<string, { topic: string; partition: number }>();
  #list: Held[] = [];
  #rotation = 0;
  /** Assignments being adopted (committed offsets being read): the latest wins. */
  #generation = 0;
  readonly #topics = new Set<string>();
  /** How many partitions each topic read had at the last look: a topic that grows needs a join. */
  readonly #partitionCounts = new Map<string, number>();
  readonly #batches = new Set<Promise<void>>();
  /** Offsets to commit per partition, sent one request at a time. */
  readonly #toCommit = new Map<string, { held: Held; offset: number }>();
  #committing: Promise<void> | undefined;
  #lastCommitAt = 0;
  readonly #commitIntervalMs: number;
  /** Ends the wait before the next commit request early (stop). */
  readonly #commitWaker = new Waker({ unref: true });
  readonly #doneCursors = new Set<Held>();
  #doneTimer: NodeJS.Timeout | undefined;
  /** Nodes with a fetch in flight. */
  readonly #fetchingNodes = new Set<number>();
  /** Planning fetches (reading metadata): one at a time, again when asked meanwhile. */
  #planning = false;
  #planAgain = false;
  /** After a failed fetch, no new one before this time. */
  #fetchBackoffUntil = 0;
  /**
   * While a busy partition holds records back, partitions that showed nothing are polled again no
   * sooner than this (a poll that brought nothing sets it FETCH_WAIT_MS ahead).
   */
  #quietUntil = 0;
  // Unref'd waits: a consumer left running after its broker went away does not keep the process alive.
  readonly #waker = new Waker({ unref: true });
  #deadline = Number.POSITIVE_INFINITY;
  #stopping = false;
  #killed = false;
  #stopped: Promise<void> | undefined;
  readonly #unwatch: () => void;
  #topicCheck: Promise<void> | undefined;
  #topicCheckAgain = false;
  /** Topics were added to the subscription and no join has carried them to the group yet. */
  #joinNeeded = false;
  readonly #loop: Promise<void>;
  /** How a handed-out batch runs and settles (shared with the embedded log). */
  readonly #runner: BatchRunner<Entry>;
  #joined: Promise<unknown> | undefined;

  constructor(ctx: KafkaConsumerContext, options: ConsumerOptions) {
    const limits = consumerLimits(options);
    this.#maxBatch = limits.maxBatch;
    this.#maxInFlight = limits.maxInFlight;
    this.#maxPerPartition = limits.maxPerPartition;
    this.#maxInFlightBytes = limits.maxInFlightBytes;
    this.#ctx = ctx;
    this.#commitIntervalMs = ctx.settings.commitIntervalMs ?? 100;
    this.#prefixes = [...new Set(options.topicPrefixes)];
    this.#handler = options.handler;
    this.#onError = options.onError;
    this.#deadLetter = options.deadLetter;
    this.#redelivery = redeliveryPolicy(options.redelivery);
    if (!this.#deadLetter) this.#redelivery.maxFailures = Number.POSITIVE_INFINITY;
    this.#runner = {
      handler: this.#handler,
      deadLetter: this.#deadLetter,
      redelivery: this.#redelivery,
      report: (err) => this.#report(err),
      release: (entry) => this.#release(entry),
      doneEarly: (entry) => {
        this.#doneCursors.add(entry.held);
        this.#doneTimer ??= setTimeout(() => this.#commitDone(), DONE_COMMIT_MS);
        this.#waker.wake();
      },
      pause: (message, until) => {
        const held = this.#held.get(partitionKey(message.topic, message.partition));
        if (held) held.cursor.pausedUntil = until;
      },
      resume: (message) => {
        const held = this.#held.get(partitionKey(message.topic, message.partition));
        if (!held) return;
        held.cursor.pausedUntil = 0;
        this.#waker.wake();
      },
      settled: (entries) => {
        this.#commitDone(entries.map((e) => e.held));
        this.#waker.wake();
      },
    };
    const sessionTimeout = ctx.settings.sessionTimeoutMs ?? 10_000;
    this.#client = new Consumer({
      ...clientOptions(ctx.settings, 'consumer'),
      groupId: options.group,
      autocommit: false,
      sessionTimeout,
      rebalanceTimeout: Math.max(sessionTimeout, 10_000),
      heartbeatInterval: Math.max(100, Math.min(1000, Math.floor(sessionTimeout / 3))),
      // Cooperative rebalancing: a new topic (a new subscription's egress topic) or a new member
      // moves only the partitions that change owner; the others keep flowing through it.
      protocols: [{ name: 'cooperative-sticky', version: 3 }],
      maxWaitTime: FETCH_WAIT_MS,
      minBytes: 1,
      maxBytes: 16 * 1024 * 1024,
    });
    this.#client.on('consumer:group:join', (payload: { assignments?: GroupAssignment[] }) => {
      this.#adopt(payload.assignments ?? []);
    });
    // A cooperative rebalance's first round takes partitions away before the group settles again:
    // they are let go at once (their uncommitted work goes to the next owner).
    this.#client.on('consumer:group:rebalance', () => {
      if (this.#client.assignments) this.#adopt(this.#client.assignments);
    });
    this.#client.on('consumer:heartbeat:error', (payload: { error: Error }) => this.#report(payload.error));
    this.#client.on('error', (err: unknown) => this.#report(err));
    this.#unwatch = ctx.watchTopics(() => this.#checkTopics());
    this.#checkTopics();
    this.#loop = this.#run();
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  /** Abandons the consumer without committing anything: the bus is closing under it (a crash, as far as the group can tell). */
  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    this.#stopping = true;
    this.#waker.wake();
    clearTimeout(this.#doneTimer);
    this.#unwatch();
    this.#client.close(true).catch(() => {});
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    this.#waker.wake();
    await this.#loop;
    while (this.#batches.size > 0) await Promise.all([...this.#batches]);
    this.#unwatch();
    if (!this.#killed) {
      this.#commitDone();
      await this.#flushCommits();
      // A join still under way is given a few seconds to end (leaving mid-join is untidy); one
      // that hangs (the brokers gone) must not hold the stop for its whole 60 s deadline.
      await withDeadline(
        Promise.allSettled([this.#topicCheck, this.#joined]),
        STOP_JOIN_WAIT_MS,
        () => new Error('the join did not end'),
      ).catch(() => {});
      try {
        await this.#client.close();
      } catch (err) {
        this.#report(err);
        await this.#client.close(true).catch(() => {});
      }
    }
    this.#ctx.finished(this);
  }

  // ---- topics and assignments ----

  /** Subscribes to topics matching the prefixes that this member does not read yet; a change rejoins the group. */
  #checkTopics(): void {
    if (this.#stopping) return;
    if (this.#topicCheck) {
      this.#topicCheckAgain = true;
      return;
    }
    this.#topicCheck = (async () => {
      do {
        this.#topicCheckAgain = false;
        try {
          const names = await this.#ctx.listTopics();
          for (const name of names) {
            if (this.#topics.has(name) || !this.#prefixes.some((p) => name.startsWith(p))) continue;
            this.#topics.add(name);
            this.#client.topics.track(name);
            this.#joinNeeded = true;
          }
          // Partitions added to a topic read already (`ensureTopic` grows a topic, as more
          // partitions are configured): the group's assignment covers only those it knew of, and
          // producers send keys to the new ones. The client does not join again by itself. (Its
          // metadata is at most 5 s old; the group's leader, looking too, joins again if its own
          // was older when this member joined.)
          if (this.#topics.size > 0) {
            const metadata = await this.#client.metadata({ topics: [...this.#topics] });
            for (const [name, topic] of metadata.topics) {
              const known = this.#partitionCounts.get(name);
              if (known !== undefined && topic.partitionsCount > known) this.#joinNeeded = true;
              this.#partitionCounts.set(name, Math.max(known ?? 0, topic.partitionsCount));
            }
          }
          if (!this.#joinNeeded || this.#stopping) continue;
          // Joined again with the new topics; until a join succeeds, every check tries again.
          this.#joined = withDeadline(
            this.#client.joinGroup({}),
            JOIN_DEADLINE_MS,
            () => new Error(`joining the consumer group did not finish within ${JOIN_DEADLINE_MS} ms`),
          );
          await this.#joined;
          this.#joinNeeded = false;
        } catch (err) {
          if (!this.#stopping) this.#report(err);
        }
      } while (this.#topicCheckAgain && !this.#stopping);
    })().finally(() => {
      this.#topicCheck = undefined;
    });
  }

  /** Adopts the group's new assignment: keeps the partitions still held, forgets the lost, reads where the new ones start. */
  #adopt(assignments: GroupAssignment[]): void {
    const generation = ++this.#generation;
    const wanted = new Map<string, { topic: string; partition: number }>();
    for (const a of assignments)
      for (const partition of a.partitions)
        wanted.set(partitionKey(a.topic, partition), { topic: a.topic, partition });
    this.#assigned = wanted;
    for (const [key, held] of this.#held) {
      if (wanted.has(key)) continue;
      this.#buffered -= held.bufferBytes;
      this.#held.delete(key);
      this.#toCommit.delete(key);
      this.#doneCursors.delete(held);
      if (held.outstanding > 0) this.#lost.set(key, held);
    }
    const fresh = [...wanted]
      .filter(([key]) => !this.#held.has(key) && !this.#lost.has(key))
      .map(([, tp]) => tp);
    this.#list = [...this.#held.values()];
    this.#start(fresh, generation);
  }

  /** Starts reading partitions given to this member; when that fails, asks the group again. */
  #start(fresh: Array<{ topic: string; partition: number }>, generation: number): void {
    if (fresh.length === 0) return;
    void this.#startPartitions(fresh, generation).catch((err) => {
      this.#report(err);
      // Without a starting offset the partitions cannot be read: ask the group again, as a topic
      // check does (with its deadline, its errors reported, tried again at the next check). A join
      // of its own here, unwatched, would end the process when it failed too (the broker gone).
      if (!this.#stopping && generation === this.#generation) {
        this.#joinNeeded = true;
        this.#checkTopics();
      }
    });
  }

  /** Reads the committed offset (or the earliest, for a group new to the partition) of newly assigned partitions. */
  async #startPartitions(
    fresh: Array<{ topic: string; partition: number }>,
    generation: number,
  ): Promise<void> {
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of fresh) listIn(byTopic, topic).push(partition);
    const committed = await this.#client.listCommittedOffsets({
      topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
    });
    const missing = fresh.filter(({ topic, partition }) => (committed.get(topic)?.[partition] ?? -1n) < 0n);
    const earliest =
      missing.length > 0
        ? await this.#client.listOffsets({
            topics: [...new Set(missing.map((m) => m.topic))],
            timestamp: -2n,
          })
        : new Map<string, bigint[]>();
    if (generation !== this.#generation || this.#stopping) return;
    for (const { topic, partition } of fresh) {
      const key = partitionKey(topic, partition);
      if (this.#held.has(key)) continue;
      let start = committed.get(topic)?.[partition] ?? -1n;
      if (start < 0n) start = earliest.get(topic)?.[partition] ?? 0n;
      const offset = Number(start);
      this.#held.set(key, {
        cursor: new PartitionCursor(topic, partition, offset),
        buffer: [],
        bufferBytes: 0,
        fetchOffset: offset,
        leaderEpoch: -1,
        fetching: false,
        flowing: false,
        handed: 0,
        handedBefore: 0,
        handedSince: 0,
        outstanding: 0,
      });
    }
    this.#list = [...this.#held.values()];
    this.#waker.wake();
  }

  #holds(held: Held): boolean {
    return this.#held.get(held.cursor.key) === held;
  }

  // ---- the loop: hand out batches, keep fetches going ----

  async #run(): Promise<void> {
    while (!this.#stopping) {
      const now = Date.now();
      this.#deadline = Number.POSITIVE_INFINITY;
      this.#fetchMore(now);
      const capacity = this.#maxInFlight - this.#inFlight;
      const bytes = this.#maxInFlightBytes - this.#inFlightBytes;
      if (capacity > 0 && bytes > 0) {
        const batch = this.#take(Math.min(this.#maxBatch, capacity), now, bytes);
        if (batch.length > 0) {
          this.#dispatch(batch);
          continue;
        }
      }
      await this.#waker.wait(Math.max(1, Math.min(1000, this.#deadline - Date.now())));
    }
  }

  /** Up to `limit` messages across the held partitions: failed ones due again first, then buffered new ones. */
  #take(limit: number, now: number, bytes: number): Entry[] {
    const out: Entry[] = [];
    let budget = bytes;
    const n = this.#list.length;
    const start = n === 0 ? 0 : this.#rotation++ % n;
    for (let i = 0; i < n && out.length < limit && budget > 0; i++) {
      const held = this.#list[(start + i) % n]!;
      const cursor = held.cursor;
      const retryAt = cursor.retryAt();
      if (retryAt !== undefined) {
        if (retryAt > now) this.#deadline = Math.min(this.#deadline, retryAt);
        else {
          for (const retry of cursor.takeDue(now, limit - out.length)) {
            const size = sizeOf(retry.message);
            budget -= size;
            out.push({ held, cursor, message: retry.message, bytes: size, retry });
          }
          const next = cursor.retryAt();
          if (next !== undefined) this.#deadline = Math.min(this.#deadline, next);
        }
      }
      const readyAt = cursor.readyAt();
      if (readyAt === undefined) continue;
      if (readyAt > now) {
        this.#deadline = Math.min(this.#deadline, readyAt);
        continue;
      }
      let room = Math.min(limit - out.length, this.#maxPerPartition - cursor.inFlight);
      const before = out.length;
      while (room > 0 && held.buffer.length > 0) {
        const message = held.buffer[0]!;
        if (message.notBefore !== undefined && message.notBefore > now) {
          cursor.blockedUntil = message.notBefore;
          this.#deadline = Math.min(this.#deadline, message.notBefore);
          break;
        }
        if (budget <= 0 && out.length > 0) break;
        held.buffer.shift();
        const size = sizeOf(message);
        held.bufferBytes -= size;
        this.#buffered -= size;
        cursor.handOut(message.offset);
        budget -= size;
        room--;
        out.push({ held, cursor, message, bytes: size });
      }
      if (out.length > before) this.#handedOut(held, now, out.length - before);
    }
    return out;
  }

  /** Starts a fetch on each broker without one, for its partitions that may take more records. */
  #fetchMore(now: number): void {
    if (this.#killed) return;
    if (now < this.#fetchBackoffUntil) {
      this.#deadline = Math.min(this.#deadline, this.#fetchBackoffUntil);
      return;
    }
    if (this.#planning) {
      this.#planAgain = true;
      return;
    }
    // Enough fetched and not yet handed out: wait until batches take some.
    if (this.#buffered >= TOTAL_BUFFER_BYTES) return;
    const wanted: Held[] = [];
    /** A busy partition left out holds fetched records back (its buffer full, or at its in-flight cap). */
    let holdsBack = false;
    for (const held of this.#list) {
      if (this.#wants(held, now)) wanted.push(held);
      else if (held.buffer.length > 0 && !held.fetching && this.#busy(held, now)) holdsBack = true;
    }
    if (wanted.length === 0) return;
    // A broker answers a fetch that finds nothing after its wait (FETCH_WAIT_MS), and a broker has
    // one fetch of this member at a time: a busy partition that holds records back and wants more
    // a moment later would wait behind a long poll for partitions that have nothing — at a few
    // thousand records a second, a partition stalled up to 100 ms every time its buffer filled. So
    // while a busy one holds records back, fetches do not wait at the broker: the others are
    // fetched along with it each time it wants more, and on their own at most every FETCH_WAIT_MS
    // (as often as long polls would ask). A partition that hands out fewer records than that (a
    // slow endpoint, paused, stuck) does not count: waiting up to 100 ms once per buffer costs it
    // little, and the others keep their long polls, which answer as soon as a record comes.
    let maxWaitTime = FETCH_WAIT_MS;
    if (holdsBack) {
      maxWaitTime = 0;
      if (!wanted.some((held) => held.flowing) && now < this.#quietUntil) {
        this.#deadline = Math.min(this.#deadline, this.#quietUntil);
        return;
      }
    }
    this.#planning = true;
    void this.#startFetches(wanted, maxWaitTime)
      .catch((err) => {
        this.#report(new Error(`fetch failed: ${describeKafkaError(err)}`, { cause: err }));
        this.#fetchBackoffUntil = Date.now() + 500;
      })
      .finally(() => {
        this.#planning = false;
        if (this.#planAgain) {
          this.#planAgain = false;
          this.#waker.wake();
        }
      });
  }

  /** Counts records handed out of the partition's buffer (for `#busy`). */
  #handedOut(held: Held, now: number, records: number): void {
    this.#rollHanded(held, now);
    held.handed += records;
  }

  /**
   * Whether the partition handed out a batch's worth of records (maxBatch) within the last
   * FETCH_WAIT_MS or two: busy enough to want more before a long poll would end.
   */
  #busy(held: Held, now: number): boolean {
    this.#rollHanded(held, now);
    return held.handed + held.handedBefore >= this.#maxBatch;
  }

  #rollHanded(held: Held, now: number): void {
    const age = now - held.handedSince;
    if (age < FETCH_WAIT_MS) return;
    held.handedBefore = age < 2 * FETCH_WAIT_MS ? held.handed : 0;
    held.handed = 0;
    held.handedSince = now;
  }

  /** Whether a partition may take more records now. */
  #wants(held: Held, now: number): boolean {
    if (!this.#resetWhenSettled(held)) return false;
    if (held.fetching || held.bufferBytes >= PARTITION_BUFFER_BYTES || held.buffer.length >= this.#maxBatch)
      return false;
    const readyAt = held.cursor.readyAt();
    // A failed message waits, or the partition is paused: fetch nothing more from it.
    if (readyAt === undefined || held.cursor.pausedUntil > now) return false;
    // Waiting on a not-yet-due message it holds already: nothing newer is needed before then.
    return !(held.cursor.blockedUntil > now && held.buffer.length > 0);
  }

  async #startFetches(wanted: Held[], maxWaitTime: number): Promise<void> {
    const metadata = await this.#client.metadata({ topics: [...this.#topics] });
    const byNode = new Map<number, Held[]>();
    for (const held of wanted) {
      if (held.fetching) continue;
      const topic = metadata.topics.get(held.cursor.topic);
      const leader = topic?.partitions[held.cursor.partition]?.leader;
      if (leader === undefined || leader < 0 || this.#fetchingNodes.has(leader)) continue;
      listIn(byNode, leader).push(held);
    }
    for (const [node, helds] of byNode) {
      if (this.#fetchingNodes.has(node) || this.#stopping) continue;
      this.#fetchingNodes.add(node);
      for (const held of helds) held.fetching = true;
      const requested = helds.map((held) => ({ held, offset: held.fetchOffset }));
      const byTopic = new Map<string, typeof requested>();
      for (const r of requested) listIn(byTopic, r.held.cursor.topic).push(r);
      const ids = new Map<string, string>();
      const topics = [...byTopic].map(([topic, parts]) => {
        const id = metadata.topics.get(topic)!.id;
        ids.set(id, topic);
        return {
          topicId: id,
          partitions: parts.map((r) => ({
            partition: r.held.cursor.partition,
            fetchOffset: BigInt(r.offset),
            partitionMaxBytes: PARTITION_BUFFER_BYTES,
            currentLeaderEpoch: r.held.leaderEpoch,
            lastFetchedEpoch: -1,
          })),
        };
      });
      this.#client
        .fetch({
          node,
          topics,
          maxWaitTime,
          minBytes: 1,
          // The broker returns at least one record batch whatever this says, so a large record still comes.
          maxBytes: Math.max(
            PARTITION_BUFFER_BYTES,
            Math.min(16 * 1024 * 1024, TOTAL_BUFFER_BYTES - this.#buffered),
          ),
        })
        .then(
          (response) => {
            const records = this.#received(response, ids, requested);
            if (records === 0 && maxWaitTime === 0) this.#quietUntil = Date.now() + FETCH_WAIT_MS;
          },
          (err) => this.#fetchFailed(err, requested),
        )
        .finally(() => {
          this.#fetchingNodes.delete(node);
          for (const r of requested) r.held.fetching = false;
          this.#waker.wake();
        });
    }
  }

  #received(
    response: Awaited<ReturnType<Consumer['fetch']>>,
    ids: Map<string, string>,
    requested: Array<{ held: Held; offset: number }>,
  ): number {
    let total = 0;
    const byKey = new Map(requested.map((r) => [r.held.cursor.key, r]));
    for (const topicResponse of response.responses) {
      const topic = ids.get(topicResponse.topicId) ?? topicResponse.topicId;
      for (const part of topicResponse.partitions) {
        const request = byKey.get(partitionKey(topic, part.partitionIndex));
        if (!request) continue;
        const { held, offset } = request;
        // Reassigned or reset meanwhile: these records are not what this cursor waits for.
        if (!this.#holds(held) || held.fetchOffset !== offset) continue;
        if (part.errorCode !== 0) continue;
        const before = held.buffer.length;
        for (const batch of part.records ?? []) {
          const last = Number(batch.firstOffset) + batch.lastOffsetDelta;
          if (batch.partitionLeaderEpoch >= 0) held.leaderEpoch = batch.partitionLeaderEpoch;
          // Control batches (transaction markers) take an offset and carry no message.
          if ((batch.attributes & 0x20) === 0) {
            for (const record of batch.records) {
              const at = Number(batch.firstOffset) + record.offsetDelta;
              if (at < held.fetchOffset) continue;
              const message = toMessage(topic, part.partitionIndex, at, batch.firstTimestamp, record);
              held.buffer.push(message);
              const size = sizeOf(message);
              held.bufferBytes += size;
              this.#buffered += size;
            }
          }
          if (last + 1 > held.fetchOffset) held.fetchOffset = last + 1;
        }
        held.flowing = held.buffer.length > before;
        total += held.buffer.length - before;
      }
    }
    return total;
  }

  #fetchFailed(err: unknown, requested: Array<{ held: Held; offset: number }>): void {
    if (this.#stopping) return;
    if (hasErrorCode(err, 'OFFSET_OUT_OF_RANGE')) {
      // Retention deleted records this group had not read, or the offset is past the log's end (a
      // topic made again, a log cut short): go on from the earliest, loudly, after a backoff (one
      // partition's error fails the fetch of every partition led by the same broker). A partition
      // past its end with records in flight is left out of fetches until they settle (`resetTo`).
      this.#fetchBackoffUntil = Date.now() + 500;
      void this.#resetToEarliest(requested).catch((e) => this.#report(e));
      return;
    }
    this.#report(new Error(`fetch failed: ${describeKafkaError(err)}`, { cause: err }));
    for (const r of requested) r.held.leaderEpoch = -1;
    // The client refreshes its metadata on the next call; wait a little before asking again.
    this.#fetchBackoffUntil = Date.now() + 500;
  }

  /**
   * Reads a partition waiting for a reset (`resetTo`) again from there, once nothing of it is in
   * flight or waiting to be tried again; false while something is.
   */
  #resetWhenSettled(held: Held): boolean {
    const first = held.resetTo;
    if (first === undefined) return true;
    if (held.cursor.inFlight > 0 || held.cursor.retryAt() !== undefined) return false;
    held.resetTo = undefined;
    held.fetchOffset = first;
    held.cursor.position = first;
    held.cursor.committed = first;
    // The group's offset, past the end, is written back to where reading starts again.
    this.#toCommit.set(held.cursor.key, { held, offset: first });
    this.#commitDone();
    return true;
  }

  async #resetToEarliest(requested: Array<{ held: Held; offset: number }>): Promise<void> {
    const topics = [...new Set(requested.map((r) => r.held.cursor.topic))];
    const [earliest, latest] = await Promise.all([
      this.#client.listOffsets({ topics, timestamp: -2n }),
      this.#client.listOffsets({ topics, timestamp: -1n }),
    ]);
    for (const { held, offset } of requested) {
      if (!this.#holds(held) || held.fetchOffset !== offset) continue;
      const first = Number(earliest.get(held.cursor.topic)?.[held.cursor.partition] ?? 0n);
      const end = Number(latest.get(held.cursor.topic)?.[held.cursor.partition] ?? 0n);
      if (offset > end) {
        // Past the end: what is in the log now was never read by this group as it is (at least once).
        this.#report(
          new OffsetPastEndError({
            topic: held.cursor.topic,
            partition: held.cursor.partition,
            offset,
            end,
            from: first,
          }),
        );
        held.resetTo = first;
        this.#resetWhenSettled(held);
        continue;
      }
      if (first <= offset) continue;
      this.#report(
        new RecordsSkippedError({
          topic: held.cursor.topic,
          partition: held.cursor.partition,
          from: offset,
          to: first,
        }),
      );
      held.fetchOffset = first;
      held.cursor.position = Math.max(held.cursor.position, first);
      if (held.cursor.inFlight === 0 && held.cursor.retryAt() === undefined) held.cursor.committed = first;
    }
    this.#waker.wake();
  }

  // ---- batches ----

  #dispatch(batch: Entry[]): void {
    for (const entry of batch) {
      this.#inFlight += 1;
      this.#inFlightBytes += entry.bytes;
      entry.held.outstanding += 1;
    }
    for (const work of startBatch(this.#runner, batch)) this.#track(work);
  }

  #track(work: Promise<void>): void {
    const running = work.finally(() => this.#batches.delete(running));
    this.#batches.add(running);
  }

  /** Frees the entry's place in flight; false when its result no longer counts (killed, or the partition was lost). */
  #release(entry: Entry): boolean {
    this.#inFlight -= 1;
    this.#inFlightBytes -= entry.bytes;
    const { held } = entry;
    held.outstanding -= 1;
    if (held.outstanding === 0 && this.#lost.get(held.cursor.key) === held) {
      // The last record of a lost partition settled: if the partition is this member's again, it
      // is read from the group's committed offset now.
      this.#lost.delete(held.cursor.key);
      const again = this.#assigned.get(held.cursor.key);
      if (again && !this.#held.has(held.cursor.key) && !this.#stopping)
        this.#start([again], this.#generation);
    }
    return !this.#killed && this.#holds(held);
  }

  // ---- commits ----

  /** Queues the commits of the partitions of messages reported done so far, with `also`. */
  #commitDone(also: Iterable<Held> = []): void {
    clearTimeout(this.#doneTimer);
    this.#doneTimer = undefined;
    if (this.#killed) return;
    for (const held of new Set([...this.#doneCursors, ...also])) {
      if (!this.#holds(held)) continue;
      const offset = held.cursor.takeCommit();
      if (offset !== undefined) this.#toCommit.set(held.cursor.key, { held, offset });
    }
    this.#doneCursors.clear();
    if (this.#toCommit.size > 0) this.#committing ??= this.#sendCommits();
  }

  /** Sends the queued commits, one request at a time, until none are left. */
  async #sendCommits(): Promise<void> {
    try {
      while (this.#toCommit.size > 0 && !this.#killed) {
        // At most one commit request per interval: everything handled meanwhile rides along. A
        // crash redelivers at most an interval's worth more (the ledger and the routes absorb it).
        const wait = this.#lastCommitAt + this.#commitIntervalMs - Date.now();
        if (wait > 0 && !this.#stopping) await this.#commitWaker.wait(wait);
        this.#lastCommitAt = Date.now();
        const commits = [...this.#toCommit.values()].filter(({ held }) => this.#holds(held));
        this.#toCommit.clear();
        if (commits.length === 0) break;
        try {
          await this.#client.commit({
            offsets: commits.map(({ held, offset }) => ({
              topic: held.cursor.topic,
              partition: held.cursor.partition,
              offset: BigInt(offset),
              leaderEpoch: held.leaderEpoch,
            })),
          });
        } catch (err) {
          this.#report(new Error(`commit failed: ${describeKafkaError(err)}`, { cause: err }));
          // Keep the newest offset of each partition still held; a later commit carries it.
          for (const c of commits) {
            const queued = this.#toCommit.get(c.held.cursor.key);
            if (this.#holds(c.held) && (!queued || queued.offset < c.offset))
              this.#toCommit.set(c.held.cursor.key, c);
          }
          if (this.#stopping) break;
          await sleep(200, undefined, { ref: false });
        }
      }
    } finally {
      this.#committing = undefined;
    }
  }

  async #flushCommits(): Promise<void> {
    this.#commitWaker.wake();
    while (this.#committing) await this.#committing;
    if (this.#toCommit.size > 0) {
      this.#committing = this.#sendCommits();
      await this.#committing;
    }
  }

  #report(err: unknown): void {
    try {
      this.#onError?.(err);
    } catch {
      // A failing error callback must not stop the consumer.
    }
  }
}

const utf8 = new TextDecoder();

function toMessage(
  topic: string,
  partition: number,
  offset: number,
  firstTimestamp: bigint,
  record: {
    timestampDelta: bigint;
    key: Buffer | null;
    value: Buffer | null;
    headers: [Buffer | null, Buffer | null][];
  },
): ConsumedMessage {
  const { headers, notBefore } = readHeaders(
    record.headers.flatMap(
      ([name, value]): Array<[string, string]> =>
        name === null ? [] : [[utf8.decode(name), value === null ? '' : utf8.decode(value)]],
    ),
  );
  const message: ConsumedMessage = {
    topic,
    partition,
    offset,
    value: record.value === null ? '' : utf8.decode(record.value),
    headers,
    timestamp: Number(firstTimestamp + record.timestampDelta),
  };
  if (record.key !== null) message.key = utf8.decode(record.key);
  if (notBefore !== undefined) message.notBefore = notBefore;
  return message;
}

/** The list under `key`, created empty the first time. */
function listIn<K, V>(map: Map<K, V[]>, key: K): V[] {
  const known = map.get(key);
  if (known) return known;
  const list: V[] = [];
  map.set(key, list);
  return list;
}
