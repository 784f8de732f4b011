/**
 * The Kafka consumer (and the bus's publish) against a fake broker, for mutations the suite did not
 * notice: the harness of test/unit/kafka-consumer-fetches.test.ts (the client's calls replaced on
 * Consumer.prototype, one leader), extended with keys, timestamps, per-fetch failures and the
 * epoch each fetch claims; the producer's calls replaced on Producer.prototype as
 * test/unit/kafka-bus-partitions.test.ts does. Every test waits for facts, never for time.
 */
import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { Consumer, Producer, ProtocolError } from '@platformatic/kafka';
import type { ConsumedMessage } from '../../src/common/ports/bus.ts';
import { KafkaBus } from '../../src/engines/kafka/bus.ts';
import { KafkaConsumer } from '../../src/engines/kafka/consumer.ts';
import { describeKafkaError } from '../../src/engines/kafka/errors.ts';
import { latch, waitFor } from '../support/wait.ts';

const prototype = Consumer.prototype as unknown as Record<string, unknown>;
const original = Object.fromEntries(
  ['joinGroup', 'listCommittedOffsets', 'listOffsets', 'metadata', 'fetch', 'commit', 'close'].map((k) => [
    k,
    prototype[k],
  ]),
);
const producerPrototype = Producer.prototype as unknown as Record<string, unknown>;
const producerOriginal = Object.fromEntries(
  ['metadata', 'send', 'close'].map((k) => [k, producerPrototype[k]]),
);
after(() => {
  Object.assign(prototype, original);
  Object.assign(producerPrototype, producerOriginal);
});

const STUB_CONTEXT = {
  settings: { brokers: ['127.0.0.1:1'], commitIntervalMs: 10 },
  listTopics: async () => ['t.a'],
  watchTopics: () => () => {},
  finished() {},
} as unknown as ConstructorParameters<typeof KafkaConsumer>[0];

const live = new Set<KafkaConsumer>();
afterEach(() => {
  for (const c of live) c.kill();
  live.clear();
});
function start(options: ConstructorParameters<typeof KafkaConsumer>[1]): KafkaConsumer {
  const consumer = new KafkaConsumer(STUB_CONTEXT, options);
  live.add(consumer);
  return consumer;
}

interface FakeEntry {
  value: string;
  key?: string;
  headers?: Array<[string, string]>;
  timestampDelta?: bigint;
}

interface FakeLog {
  committed: bigint[];
  entry(partition: number, offset: number): FakeEntry | undefined;
  commits?: Array<Array<{ partition: number; offset: bigint }>>;
  /** The log's first offsets (retention deleted what was before); 0 when not said. */
  earliest?: bigint[];
  /** Partition 0 is this one record batch (a compressed batch: the broker answers with all of it, whatever offset inside it is asked for). */
  oneBatch?: string[];
  /** The log's end offsets; far off when not said. */
  latest?: bigint[];
  /** The whole fetch request fails with OFFSET_OUT_OF_RANGE when this says so for one of its partitions. */
  outOfRange?(partition: number, offset: number): boolean;
  /** Whether a commit request fails. */
  failCommit?: boolean;
  /** Whether this fetch request (1, 2, …) fails as a whole (a leader gone). */
  failFetch?(seq: number): boolean;
  /** Partitions the metadata says have no leader now (-1: an election under way). */
  leaderless?: Set<number>;
}

interface Fake {
  /** Fetch requests answered (or failed) so far. */
  answered: number;
  /** The leader epoch each fetch request claimed for each partition, in order. */
  epochs: Array<{ seq: number; partition: number; epoch: number }>;
  /** The node each fetch request went to, in order. */
  nodes: number[];
  /** Gives this member a new assignment, as a rebalance does. */
  assign(partitions: number[]): void;
}

/** Installs the fake broker: one topic `t.a`, every partition led by node 1, assigned to this member. */
function fakeBroker(log: FakeLog, partitions: number[]): Fake {
  let client: (Consumer & { assignments: unknown }) | undefined;
  const fake: Fake = {
    answered: 0,
    epochs: [],
    nodes: [],
    assign(partitions) {
      client!.assignments = [{ topic: 't.a', partitions }];
      client!.emit('consumer:group:join', { assignments: client!.assignments });
    },
  };
  let seq = 0;
  const count = Math.max(...partitions) + 1;
  prototype.joinGroup = function (this: Consumer & { assignments: unknown }) {
    client = this;
    this.assignments = [{ topic: 't.a', partitions }];
    setImmediate(() => this.emit('consumer:group:join', { assignments: this.assignments }));
    return Promise.resolve('member');
  };
  prototype.listCommittedOffsets = async () => new Map([['t.a', log.committed]]);
  prototype.listOffsets = async ({ timestamp }: { timestamp: bigint }) =>
    new Map([
      [
        't.a',
        timestamp === -2n
          ? (log.earliest ?? partitions.map(() => 0n))
          : (log.latest ?? partitions.map(() => 1_000_000n)),
      ],
    ]);
  prototype.metadata = async () => ({
    topics: new Map([
      [
        't.a',
        {
          id: 'id-a',
          partitionsCount: count,
          partitions: Array.from({ length: count }, (_, p) => ({ leader: log.leaderless?.has(p) ? -1 : 1 })),
        },
      ],
    ]),
  });
  prototype.commit = async ({ offsets }: { offsets: Array<{ partition: number; offset: bigint }> }) => {
    if (log.failCommit) throw new Error('COORDINATOR_NOT_AVAILABLE (fake)');
    log.commits?.push(offsets.map(({ partition, offset }) => ({ partition, offset })));
  };
  prototype.close = () => Promise.resolve();
  prototype.fetch = async (request: {
    node: number;
    maxWaitTime: number;
    topics: Array<{
      partitions: Array<{ partition: number; fetchOffset: bigint; currentLeaderEpoch: number }>;
    }>;
  }) => {
    seq += 1;
    const mine = seq;
    fake.nodes.push(request.node);
    const asked = request.topics[0]!.partitions;
    for (const { partition, currentLeaderEpoch } of asked)
      fake.epochs.push({ seq: mine, partition, epoch: currentLeaderEpoch });
    try {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (log.failFetch?.(mine)) throw new Error('NOT_LEADER_OR_FOLLOWER (fake)');
      if (asked.some(({ partition, fetchOffset }) => log.outOfRange?.(partition, Number(fetchOffset))))
        throw new ProtocolError('OFFSET_OUT_OF_RANGE');
      const answered = [];
      for (const { partition, fetchOffset } of asked) {
        const batches = [];
        if (log.oneBatch && partition === 0 && fetchOffset < BigInt(log.oneBatch.length)) {
          batches.push({
            firstOffset: 0n,
            lastOffsetDelta: log.oneBatch.length - 1,
            partitionLeaderEpoch: 7,
            attributes: 0,
            firstTimestamp: 1_000n,
            records: log.oneBatch.map((value, i) => ({
              offsetDelta: i,
              timestampDelta: 0n,
              key: null,
              value: Buffer.from(value),
              headers: [],
            })),
          });
        }
        for (let offset = Number(fetchOffset); batches.length < 10; offset++) {
          const entry = log.entry(partition, offset);
          if (!entry) break;
          batches.push({
            firstOffset: BigInt(offset),
            lastOffsetDelta: 0,
            partitionLeaderEpoch: 7,
            attributes: 0,
            firstTimestamp: 1_000n,
            records: [
              {
                offsetDelta: 0,
                timestampDelta: entry.timestampDelta ?? 0n,
                key: entry.key === undefined ? null : Buffer.from(entry.key),
                value: Buffer.from(entry.value),
                headers: (entry.headers ?? []).map(([n, v]) => [Buffer.from(n), Buffer.from(v)]),
              },
            ],
          });
        }
        if (batches.length > 0) answered.push({ partitionIndex: partition, errorCode: 0, records: batches });
      }
      if (answered.length === 0 && request.maxWaitTime > 0)
        await new Promise((resolve) => setTimeout(resolve, 5));
      return { responses: answered.length > 0 ? [{ topicId: 'id-a', partitions: answered }] : [] };
    } finally {
      fake.answered += 1;
    }
  };
  return fake;
}

/** A log of `n` records per partition: `p-offset`. */
const records =
  (n: number) =>
  (p: number, o: number): FakeEntry | undefined =>
    o < n ? { value: `${p}-${o}` } : undefined;

const committedOffsets = (commits: Array<Array<{ partition: number; offset: bigint }>>, partition = 0) =>
  commits
    .flat()
    .filter((c) => c.partition === partition)
    .map((c) => Number(c.offset));

test('the commit goes only over the contiguous prefix of handled offsets: a record still running holds it back, records after it reported done do not move it past', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  fakeBroker({ committed: [0n], entry: records(5), commits }, [0]);
  const { opened: gate, open } = latch();
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 5,
    handler: async (batch, control) => {
      for (const m of batch) if (m.offset !== 2) control.done(m);
      if (batch.some((m) => m.offset === 2)) await gate;
      return undefined;
    },
  });
  await waitFor('the commit of the records before the one running', () =>
    committedOffsets(commits).includes(2),
  );
  assert.ok(
    committedOffsets(commits).every((o) => o <= 2),
    `committed ${committedOffsets(commits)} while offset 2 runs`,
  );
  open();
  await waitFor('the commit of all five once it is done', () => committedOffsets(commits).includes(5));
  consumer.kill();
});

test('a failed record is redelivered alone before anything newer of its partition, and the commit does not pass it until it is handled', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  fakeBroker({ committed: [0n], entry: records(4), commits }, [0]);
  const handled: string[] = [];
  let committedBeforeRetry: number[] | undefined;
  let failures = 0;
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 1,
    redelivery: { initialDelayMs: 5, maxDelayMs: 5 },
    handler: async (batch) => {
      const m = batch[0]!;
      handled.push(m.value);
      if (m.offset === 1 && failures < 2) {
        failures += 1;
        if (failures === 2) committedBeforeRetry = committedOffsets(commits);
        return { failed: [{ message: m, error: new Error('endpoint down') }] };
      }
      return undefined;
    },
  });
  await waitFor('every record handled', () => handled.includes('0-3'));
  await waitFor('the commit past the last', () => committedOffsets(commits).includes(4));
  consumer.kill();
  assert.deepEqual(handled, ['0-0', '0-1', '0-1', '0-1', '0-2', '0-3']);
  assert.ok(
    committedBeforeRetry!.every((o) => o <= 1),
    `committed ${committedBeforeRetry} before offset 1 was handled`,
  );
});

test('without a dead letter, a failing record is redelivered for ever (past the default five failures) and its partition does not move past it', async () => {
  fakeBroker({ committed: [0n], entry: records(3) }, [0]);
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 1,
    redelivery: { initialDelayMs: 1, maxDelayMs: 1 },
    handler: async (batch) => {
      const m = batch[0]!;
      handled.push(m.value);
      return m.offset === 1 ? { failed: [{ message: m, error: new Error('endpoint down') }] } : undefined;
    },
  });
  await waitFor('ten tries of the failing record', () => handled.filter((v) => v === '0-1').length >= 10);
  consumer.kill();
  assert.ok(!handled.includes('0-2'), 'nothing newer handed out');
});

test('with a dead letter, a record that keeps failing goes to it after maxFailures, and its partition moves on', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  fakeBroker({ committed: [0n], entry: records(3), commits }, [0]);
  const handled: string[] = [];
  const dead: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 1,
    redelivery: { initialDelayMs: 1, maxDelayMs: 1, maxFailures: 3 },
    deadLetter: async (m) => {
      dead.push(m.value);
    },
    handler: async (batch) => {
      const m = batch[0]!;
      handled.push(m.value);
      return m.offset === 1 ? { failed: [{ message: m, error: new Error('endpoint down') }] } : undefined;
    },
  });
  await waitFor('the commit past the last', () => committedOffsets(commits).includes(3));
  consumer.kill();
  assert.deepEqual(dead, ['0-1']);
  assert.deepEqual(handled, ['0-0', '0-1', '0-1', '0-1', '0-2']);
});

test('a partition whose failed record waits for its redelivery is not fetched from meanwhile (the other partition keeps being fetched)', async () => {
  const fake = fakeBroker(
    // Partition 0 has one record so far: every fetch of it after that is a poll for more.
    {
      committed: [0n, 0n],
      entry: (p, o) => (p === 1 ? { value: `1-${o}` } : o === 0 ? { value: '0-0' } : undefined),
    },
    [0, 1],
  );
  let failedAt: number | undefined;
  const handled1: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    redelivery: { initialDelayMs: 60_000 },
    handler: async (batch) => {
      const failed = [];
      for (const m of batch) {
        if (m.partition === 1) handled1.push(m.value);
        else {
          failed.push({ message: m, error: new Error('endpoint down') });
          failedAt = fake.epochs.length;
        }
      }
      return { failed };
    },
  });
  await waitFor('the failure', () => failedAt !== undefined);
  const before = handled1.length;
  await waitFor('partition 1 fetched many times since', () => handled1.length >= before + 50);
  consumer.kill();
  const polls = fake.epochs.slice(failedAt).filter((f) => f.partition === 0);
  // A request planned as the failure came may still carry it; none after.
  assert.ok(polls.length <= 1, `partition 0 fetched ${polls.length} times while its record waits`);
});

test('maxInFlight and maxBatch: no more records run at once than maxInFlight, in batches of at most maxBatch; the rest follow once they settle', async () => {
  // Partition 2 has nothing: it is polled over and over, each answer a turn of the consumer's loop.
  const fake = fakeBroker(
    { committed: [0n, 0n, 0n], entry: (p, o) => (p < 2 ? records(15)(p, o) : undefined) },
    [0, 1, 2],
  );
  const { opened: gate, open } = latch();
  const batches: number[] = [];
  let running = 0;
  let most = 0;
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 5,
    maxInFlight: 7,
    handler: async (batch) => {
      batches.push(batch.length);
      running += batch.length;
      most = Math.max(most, running);
      await gate;
      running -= batch.length;
      return undefined;
    },
  });
  await waitFor('seven records running', () => running === 7);
  const seen = fake.answered;
  await waitFor('more fetches answered since', () => fake.answered >= seen + 3);
  assert.equal(most, 7);
  open();
  await waitFor('all thirty handled', () => batches.reduce((a, b) => a + b, 0) === 30);
  consumer.kill();
  assert.equal(most, 7);
  assert.ok(
    batches.every((n) => n <= 5),
    `batches of ${batches}`,
  );
});

test('maxInFlightBytes: a batch stops once it reaches the byte budget, and no other batch starts while those bytes are in flight', async () => {
  const value = 'x'.repeat(100);
  // Partition 1 has nothing: it is polled over and over, each answer a turn of the consumer's loop.
  const fake = fakeBroker(
    { committed: [0n, 0n], entry: (p, o) => (p === 0 && o < 20 ? { value } : undefined) },
    [0, 1],
  );
  const { opened: gate, open } = latch();
  const batches: number[] = [];
  let running = 0;
  let most = 0;
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 10,
    maxInFlightBytes: 250,
    handler: async (batch) => {
      batches.push(batch.length);
      running += batch.length;
      most = Math.max(most, running);
      if (batches.length === 1) await gate;
      running -= batch.length;
      return undefined;
    },
  });
  await waitFor('the first batch', () => batches.length === 1);
  const seen = fake.answered;
  await waitFor('fetches answered since', () => fake.answered >= seen + 3);
  // 100-byte records, a budget of 250: the third takes the batch over it, a fourth is not added.
  assert.deepEqual(batches, [3]);
  open();
  await waitFor('all twenty handled', () => batches.reduce((a, b) => a + b, 0) === 20);
  consumer.kill();
  assert.equal(most, 3);
});

test('failed records due again together are handed out in batches of at most maxBatch', async () => {
  fakeBroker({ committed: [0n], entry: records(8) }, [0]);
  const { opened: gate, open } = latch();
  const batches: string[][] = [];
  const tries = new Map<string, number>();
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 2,
    maxInFlight: 8,
    redelivery: { initialDelayMs: 50, maxDelayMs: 50 },
    handler: async (batch) => {
      batches.push(batch.map((m) => m.value));
      if (batches.length <= 4) await gate;
      // Every record fails its first try.
      const failed = batch.filter((m) => {
        const n = (tries.get(m.value) ?? 0) + 1;
        tries.set(m.value, n);
        return n === 1;
      });
      return { failed: failed.map((message) => ({ message, error: new Error('endpoint down') })) };
    },
  });
  await waitFor('four batches running', () => batches.length === 4);
  open();
  await waitFor(
    'every record tried twice',
    () => tries.size === 8 && [...tries.values()].every((n) => n === 2),
  );
  consumer.kill();
  assert.ok(
    batches.every((b) => b.length <= 2),
    `batches ${JSON.stringify(batches)}`,
  );
});

test("a record's key, headers and timestamp (the batch's first timestamp plus the record's delta) come through; notBefore is read out of the headers", async () => {
  fakeBroker(
    {
      committed: [0n],
      entry: (_p, o) =>
        o === 0
          ? {
              value: 'v',
              key: 'k',
              timestampDelta: 25n,
              headers: [
                ['h', '1'],
                ['webhooks-not-before', '5'],
              ],
            }
          : o === 1
            ? { value: 'w', headers: [['webhooks-not-before', 'soon']] }
            : undefined,
    },
    [0],
  );
  const handled: ConsumedMessage[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      handled.push(...batch);
      return undefined;
    },
  });
  await waitFor('both records', () => handled.length === 2);
  consumer.kill();
  assert.deepEqual(handled[0], {
    topic: 't.a',
    partition: 0,
    offset: 0,
    value: 'v',
    key: 'k',
    headers: { h: '1' },
    timestamp: 1025,
    notBefore: 5,
  });
  // A not-before header that is not a number is dropped: the record is due at once.
  assert.deepEqual(handled[1]!.headers, {});
  assert.equal(handled[1]!.notBefore, undefined);
});

test('a failed fetch (a leader gone) is reported, the next fetch claims no leader epoch, and reading goes on where it was', async () => {
  const fake = fakeBroker({ committed: [0n], entry: records(25), failFetch: (seq) => seq === 2 }, [0]);
  const handled: string[] = [];
  const errors: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 10,
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
    onError: (e) => errors.push(String(e)),
  });
  await waitFor('every record', () => handled.length === 25);
  consumer.kill();
  assert.deepEqual(
    handled,
    Array.from({ length: 25 }, (_, o) => `0-${o}`),
  );
  assert.ok(
    errors.some((e) => e.includes('fetch failed')),
    errors.join('\n'),
  );
  // The first fetch knew no epoch, the second claimed the one the records carried, the one after its failure none.
  assert.deepEqual(
    fake.epochs.slice(0, 3).map((e) => e.epoch),
    [-1, 7, -1],
  );
});

test('a fetch from inside a record batch: the records before the group offset that come with it are not handed out again', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  fakeBroker({ committed: [2n], entry: () => undefined, oneBatch: ['a', 'b', 'c', 'd', 'e'], commits }, [0]);
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(`${m.offset}:${m.value}`);
      return undefined;
    },
  });
  await waitFor('the commit past the batch', () => committedOffsets(commits).includes(5));
  consumer.kill();
  assert.deepEqual(handled, ['2:c', '3:d', '4:e']);
});

test('stop ends even when every commit request fails (the brokers gone): the failure is reported', async () => {
  fakeBroker({ committed: [0n], entry: records(3), failCommit: true }, [0]);
  const handled: string[] = [];
  const errors: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
    onError: (e) => errors.push(String(e)),
  });
  await waitFor('the records', () => handled.length === 3);
  let stopped = false;
  void consumer.stop().then(() => {
    stopped = true;
  });
  await waitFor('the stop', () => stopped);
  assert.ok(
    errors.some((e) => e.includes('commit failed')),
    errors.join('\n'),
  );
});

test('resume ends a pause at once: the paused partition is fetched from and handed out again', async () => {
  let more = false;
  fakeBroker(
    { committed: [0n], entry: (_p, o) => (o === 0 || (more && o < 3) ? { value: `0-${o}` } : undefined) },
    [0],
  );
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch, control) => {
      for (const m of batch) {
        handled.push(m.value);
        if (m.offset === 0) {
          control.pause(m, 60_000);
          more = true; // records arrive while it is paused
          setImmediate(() => control.resume(m));
        }
      }
      return undefined;
    },
  });
  await waitFor('the records after the pause', () => handled.includes('0-2'));
  consumer.kill();
  assert.deepEqual(handled, ['0-0', '0-1', '0-2']);
});

test('a group offset past the log end: the offset reading starts again from is written back to the group at once, before any record is handled', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  fakeBroker(
    {
      committed: [5n],
      earliest: [0n],
      latest: [3n],
      entry: (_p, o) => (o < 3 ? { value: `0-${o}` } : undefined),
      outOfRange: (_p, o) => o > 3,
      commits,
    },
    [0],
  );
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
    onError: () => {},
  });
  await waitFor('the commit past the records', () => committedOffsets(commits).includes(3));
  consumer.kill();
  assert.deepEqual(handled, ['0-0', '0-1', '0-2']);
  // A member that crashed before handling them would otherwise find the group past the end again
  // (and, the log grown meanwhile, skip what was written since).
  assert.equal(committedOffsets(commits)[0], 0);
});

test('a group new to a partition (no committed offset) reads it from the earliest record retained', async () => {
  fakeBroker(
    {
      committed: [-1n],
      earliest: [3n],
      entry: (_p, o) => (o >= 3 && o < 6 ? { value: `0-${o}` } : undefined),
    },
    [0],
  );
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
  });
  await waitFor('the records', () => handled.length === 3);
  consumer.kill();
  assert.deepEqual(handled, ['0-3', '0-4', '0-5']);
});

test('a partition lost and given back while its record runs: not read again before that record settles, then read again from the group offset', async () => {
  // Partition 1 has nothing: it is polled over and over, each answer a turn of the consumer's loop.
  const fake = fakeBroker(
    { committed: [0n, 0n], entry: (p, o) => (p === 0 ? records(2)(p, o) : undefined) },
    [0, 1],
  );
  const { opened: gate, open } = latch();
  const started: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 1,
    maxInFlight: 5,
    handler: async (batch) => {
      started.push(batch[0]!.value);
      if (started.length === 1) await gate; // 0-0, a slow endpoint
      return undefined;
    },
  });
  const times = (value: string) => started.filter((v) => v === value).length;
  await waitFor('0-0 running', () => times('0-0') === 1);
  fake.assign([1]); // partition 0 lost in a rebalance
  fake.assign([0, 1]); // and given back at once
  const seen = fake.answered;
  await waitFor('fetches answered since', () => fake.answered >= seen + 5);
  assert.equal(times('0-0'), 1, 'not handed out again while it runs');
  open();
  // Nothing of it was committed while it was lost: read again from offset 0.
  await waitFor('read again from the group offset', () => times('0-0') === 2 && times('0-1') >= 1);
  consumer.kill();
});

/** A cluster of one topic `t` with `count` partitions; every produce request lands in `requests`. */
function fakeProducer(count: number, fail?: () => Error | undefined) {
  const requests: Array<
    Array<{ key?: string; value: string; partition: number; headers?: Record<string, string> }>
  > = [];
  producerPrototype.metadata = async ({ topics }: { topics: string[] }) => ({
    topics: new Map(topics.filter((t) => t === 't').map((t) => [t, { partitionsCount: count }])),
  });
  producerPrototype.send = async ({
    messages,
  }: {
    messages: Array<{ key?: string; value: string; partition: number; headers?: Record<string, string> }>;
  }) => {
    const err = fail?.();
    if (err) throw err;
    requests.push(messages);
    return {};
  };
  producerPrototype.close = async () => {};
  return requests;
}

test('publish: records over the topics’ limit are refused before anything is sent; a batch over one request is cut into requests, in order', async () => {
  const requests = fakeProducer(1);
  const bus = new KafkaBus({ brokers: ['127.0.0.1:1'] });
  try {
    await assert.rejects(
      bus.publish([
        { topic: 't', value: 'small' },
        { topic: 't', value: 'x'.repeat(1_100_000) },
      ]),
      (err: { code?: string }) => err.code === 'record_too_large',
    );
    assert.equal(requests.length, 0);
    const values = Array.from({ length: 5 }, (_, i) => `${i}${'y'.repeat(300_000)}`);
    await bus.publish(values.map((value) => ({ topic: 't', value })));
  } finally {
    await bus.close();
  }
  // 300 kB each, requests of at most 1 MiB less a margin: three, then two.
  assert.deepEqual(
    requests.map((r) => r.length),
    [3, 2],
  );
  assert.deepEqual(
    requests.flat().map((m) => m.value[0]),
    ['0', '1', '2', '3', '4'],
  );
});

test('publish: keyed messages all go to the key’s partition; notBefore travels as a header', async () => {
  const requests = fakeProducer(4);
  const bus = new KafkaBus({ brokers: ['127.0.0.1:1'] });
  try {
    await bus.publish(
      Array.from({ length: 6 }, (_, i) => ({ topic: 't', key: 'abc', value: `${i}`, notBefore: 1234 })),
    );
  } finally {
    await bus.close();
  }
  // (murmur2("abc") & 0x7fffffff) % 4, as a Java producer puts it.
  const expected = requests.flat()[0]!.partition;
  assert.ok(requests.flat().every((m) => m.partition === expected));
  assert.equal(expected, 3);
  assert.equal(requests.flat()[0]!.headers?.['webhooks-not-before'], '1234');
});

test('publish: a record the topic refuses as too large fails as transient record_too_large, other failures as bus_unavailable', async () => {
  let next: Error | undefined = new ProtocolError('MESSAGE_TOO_LARGE');
  fakeProducer(1, () => next);
  const bus = new KafkaBus({ brokers: ['127.0.0.1:1'] });
  try {
    await assert.rejects(bus.publish([{ topic: 't', value: 'v' }]), (err: { code?: string }) => {
      assert.equal(err.code, 'record_too_large');
      return true;
    });
    next = new Error('connection closed');
    await assert.rejects(bus.publish([{ topic: 't', value: 'v' }]), (err: { code?: string }) => {
      assert.equal(err.code, 'bus_unavailable');
      return true;
    });
  } finally {
    await bus.close();
  }
});

test('describeKafkaError: the messages nested in the client’s aggregates and causes are in the text, once each', () => {
  const inner = new Error('connect ECONNREFUSED 127.0.0.1:9092');
  const err = new AggregateError(
    [inner, new Error('connect ECONNREFUSED 127.0.0.1:9092')],
    'Cannot connect to any broker.',
  );
  assert.equal(
    describeKafkaError(new Error('fetch failed', { cause: err })),
    'fetch failed: Cannot connect to any broker.: connect ECONNREFUSED 127.0.0.1:9092',
  );
});

test('a partition without a leader (an election under way) is not fetched until it has one; the others flow meanwhile', async () => {
  const leaderless = new Set([1]);
  const fake = fakeBroker({ committed: [0n, 0n], entry: records(3), leaderless }, [0, 1]);
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      handled.push(...batch.map((m) => m.value));
      return undefined;
    },
  });
  await waitFor('the led partition read', () => handled.includes('0-2'));
  assert.ok(
    fake.epochs.every((e) => e.partition !== 1),
    'the leaderless partition was in a fetch',
  );
  assert.ok(
    fake.nodes.every((n) => n === 1),
    `fetches went to nodes ${[...new Set(fake.nodes)]}`,
  );
  leaderless.delete(1);
  await waitFor('the partition read once it has a leader', () => handled.includes('1-2'));
  consumer.kill();
});
