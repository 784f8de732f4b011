/**
 * The Kafka consumer against a fake broker (tests written in a mutation run, for mutations the
 * suite did not notice): the same harness as
 * test/unit/kafka-consumer-faults.test.ts — the client's calls replaced on Consumer.prototype by a
 * fake broker with one leader — so that exact fetch requests, record batches and commits are seen.
 * Every test waits for facts (records handled, a commit sent, a counter), never for time.
 */
import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { Consumer, ProtocolError } from '@platformatic/kafka';
import { KafkaConsumer } from '../../src/engines/kafka/consumer.ts';
import { latch, waitFor } from '../support/wait.ts';

const prototype = Consumer.prototype as unknown as Record<string, unknown>;
const original = {
  ...Object.fromEntries(
    ['joinGroup', 'listCommittedOffsets', 'listOffsets', 'metadata', 'fetch', 'commit', 'close'].map((k) => [
      k,
      prototype[k],
    ]),
  ),
};
after(() => Object.assign(prototype, original));

const STUB_CONTEXT = {
  settings: { brokers: ['127.0.0.1:1'], commitIntervalMs: 10 },
  listTopics: async () => ['t.a'],
  watchTopics: () => () => {},
  finished() {},
} as unknown as ConstructorParameters<typeof KafkaConsumer>[0];

/** Consumers of the running test: killed after it, passed or failed, so none fetches from the next test's fake. */
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

/** A record of the fake log: its value, headers and batch attributes (0x10 transactional, 0x20 control). */
interface FakeEntry {
  value: string;
  headers?: Array<[string, string]>;
  attributes?: number;
}

interface FakeLog {
  /** Offsets each partition's assignment starts from (the group's committed offsets; -1n: none). */
  committed: bigint[];
  earliest?: bigint[];
  latest?: bigint[];
  /** The entry at an offset, undefined past the end. */
  entry(partition: number, offset: number): FakeEntry | undefined;
  /** The whole request fails with OFFSET_OUT_OF_RANGE when this says so for one of its partitions. */
  outOfRange?(partition: number, offset: number): boolean;
  /** Commit requests answered so far (a rejection from `failCommit` is not counted). */
  commits?: Array<Array<{ partition: number; offset: bigint }>>;
  /** Whether this commit request fails (asked before it is answered). */
  failCommit?(offsets: Array<{ partition: number; offset: bigint }>): boolean;
}

/** Every fetch request's partitions, in order: `{ seq, partition, offset }`, with its maxWaitTime and when it came. */
interface FetchSeen {
  seq: number;
  partition: number;
  offset: number;
  maxWaitTime: number;
  at: number;
}

/** Installs the fake broker: one topic `t.a`, every partition led by node 1, assigned to this member. */
function fakeBroker(log: FakeLog, partitions: number[]): { fetches: FetchSeen[] } {
  const fetches: FetchSeen[] = [];
  let seq = 0;
  const count = Math.max(...partitions) + 1;
  prototype.joinGroup = function (this: Consumer & { assignments: unknown }) {
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
          partitions: Array.from({ length: count }, () => ({ leader: 1 })),
        },
      ],
    ]),
  });
  prototype.commit = async ({ offsets }: { offsets: Array<{ partition: number; offset: bigint }> }) => {
    if (log.failCommit?.(offsets)) throw new Error('NOT_COORDINATOR (fake)');
    log.commits?.push(offsets.map(({ partition, offset }) => ({ partition, offset })));
  };
  prototype.close = () => Promise.resolve();
  prototype.fetch = async (request: {
    maxWaitTime: number;
    topics: Array<{ partitions: Array<{ partition: number; fetchOffset: bigint }> }>;
  }) => {
    seq += 1;
    const asked = request.topics[0]!.partitions;
    const at = Date.now();
    for (const { partition, fetchOffset } of asked) {
      fetches.push({ seq, partition, offset: Number(fetchOffset), maxWaitTime: request.maxWaitTime, at });
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
    if (asked.some(({ partition, fetchOffset }) => log.outOfRange?.(partition, Number(fetchOffset)))) {
      throw new ProtocolError('OFFSET_OUT_OF_RANGE');
    }
    const answered = [];
    for (const { partition, fetchOffset } of asked) {
      const batches = [];
      // One record batch per record, at most 10 per partition and fetch.
      for (let offset = Number(fetchOffset); batches.length < 10; offset++) {
        const entry = log.entry(partition, offset);
        if (!entry) break;
        batches.push({
          firstOffset: BigInt(offset),
          lastOffsetDelta: 0,
          partitionLeaderEpoch: 0,
          attributes: entry.attributes ?? 0,
          firstTimestamp: 0n,
          records: [
            {
              offsetDelta: 0,
              timestampDelta: 0n,
              key: null,
              value: Buffer.from(entry.value),
              headers: (entry.headers ?? []).map(([n, v]) => [Buffer.from(n), Buffer.from(v)]),
            },
          ],
        });
      }
      if (batches.length > 0) answered.push({ partitionIndex: partition, errorCode: 0, records: batches });
    }
    // Nothing new: the broker's long poll (maxWaitTime), shortened; none when asked not to wait.
    if (answered.length === 0 && request.maxWaitTime > 0)
      await new Promise((resolve) => setTimeout(resolve, 5));
    return { responses: answered.length > 0 ? [{ topicId: 'id-a', partitions: answered }] : [] };
  };
  return { fetches };
}

/** Partition 1 of the fake log: a record at every offset, for ever (a partition that keeps flowing). */
const flowing = (offset: number): FakeEntry => ({ value: `1-${offset}` });

test('records of a transactional producer (transactional batches) are consumed; its control batches (commit markers) are not, and the commit passes them', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  const log: FakeEntry[] = [
    { value: '0-0', attributes: 0x10 }, // transactional data
    { value: '0-1', attributes: 0x10 },
    { value: 'COMMIT-MARKER', attributes: 0x30 }, // transactional + control: the transaction's commit marker
    { value: '0-3' }, // an ordinary record after it
  ];
  fakeBroker({ committed: [0n], entry: (_p, o) => log[o], commits }, [0]);
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
  });
  await waitFor('the record after the transaction', () => handled.includes('0-3'));
  await waitFor('the commit past it', () => commits.flat().some((c) => c.partition === 0 && c.offset === 4n));
  consumer.kill();
  assert.deepEqual(handled, ['0-0', '0-1', '0-3']);
});

test('maxInFlightPerPartition: a partition whose record runs hands out no more of its records, while another partition flows', async () => {
  fakeBroker(
    {
      committed: [0n, 0n],
      entry: (p, o) =>
        p === 0 ? (o < 5 ? { value: `0-${o}` } : undefined) : o < 40 ? flowing(o) : undefined,
    },
    [0, 1],
  );
  const started0: string[] = [];
  const handled1: string[] = [];
  const { opened: gate, open } = latch();
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 1,
    maxInFlight: 10,
    maxInFlightPerPartition: 1,
    handler: async (batch) => {
      for (const m of batch) {
        if (m.partition === 0) {
          started0.push(m.value);
          await gate; // a slow endpoint
        } else handled1.push(m.value);
      }
      return undefined;
    },
  });
  await waitFor('partition 1 read to its end', () => handled1.length === 40);
  assert.deepEqual(started0, ['0-0'], 'one record of partition 0 in flight at a time');
  open();
  await waitFor('partition 0 read to its end, one at a time', () => started0.length === 5);
  consumer.kill();
});

test('records deleted by retention before the group read them: skipped loudly, reading goes on from the earliest left (not the end)', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  // The group committed 0; retention has deleted 0 and 1; the log ends at 5.
  fakeBroker(
    {
      committed: [0n],
      earliest: [2n],
      latest: [5n],
      entry: (_p, o) => (o >= 2 && o < 5 ? { value: `0-${o}` } : undefined),
      outOfRange: (_p, o) => o < 2 || o > 5,
      commits,
    },
    [0],
  );
  const handled: string[] = [];
  const errors: Array<{ code?: string; skipped?: { from: number; to: number } }> = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
    onError: (err) => errors.push(err as { code?: string }),
  });
  await waitFor('the records left', () => handled.length >= 3);
  await waitFor('their commit', () => commits.flat().some((c) => c.offset === 5n));
  consumer.kill();
  assert.deepEqual(handled, ['0-2', '0-3', '0-4']);
  assert.deepEqual(
    errors.map((e) => [e.code, e.skipped?.from, e.skipped?.to]),
    [['records_skipped', 0, 2]],
  );
});

test('a group offset past the log end with a record in flight: the partition is not read again from the earliest before that record settles', async () => {
  fakeBroker(
    {
      committed: [5n, 0n],
      earliest: [0n, 0n],
      latest: [3n, 1_000_000n],
      // Partition 0: the record at 5 (read once, before the log was found cut short), then 0..2.
      entry: (p, o) => (p === 1 ? flowing(o) : o === 5 || o < 3 ? { value: `0-${o}` } : undefined),
      outOfRange: (p, o) => p === 0 && o > 5,
    },
    [0, 1],
  );
  const handled: string[] = [];
  const errors: Array<{ code?: string }> = [];
  const { opened: gate, open } = latch();
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 10,
    maxInFlightPerPartition: 10,
    handler: async (batch) => {
      await Promise.all(
        batch.map(async (m) => {
          if (m.value === '0-5') await gate;
          handled.push(m.value);
        }),
      );
      return undefined;
    },
    onError: (err) => errors.push(err as { code?: string }),
  });
  await waitFor('the reset reported', () => errors.some((e) => e.code === 'offset_reset'));
  const atReset = handled.filter((v) => v.startsWith('1-')).length;
  await waitFor(
    'partition 1 flowing well after it',
    () => handled.filter((v) => v.startsWith('1-')).length >= atReset + 30,
  );
  assert.deepEqual(
    handled.filter((v) => v.startsWith('0-')),
    [],
    'nothing of partition 0 read again while 0-5 runs',
  );
  open();
  await waitFor('partition 0 read again from the earliest', () =>
    ['0-5', '0-0', '0-1', '0-2'].every((v) => handled.includes(v)),
  );
  consumer.kill();
});

/** Polls of partition 1 alone (partition 0 left out of the request). */
function pollsOfOneAlone(fetches: FetchSeen[]): FetchSeen[] {
  const partitions = new Map<number, number>();
  for (const f of fetches) partitions.set(f.seq, (partitions.get(f.seq) ?? 0) + 1);
  return fetches.filter((f) => f.partition === 1 && partitions.get(f.seq) === 1);
}

/**
 * Partition 0 has 30 records, partition 1 none; batches of 10, 10 in flight per partition; the first
 * batch waits for `open()` (a slow endpoint): partition 0 reaches its cap with its next 10 records in
 * hand, and partition 1 is then polled alone.
 */
function partitionZeroHeldUp() {
  const { fetches } = fakeBroker(
    { committed: [0n, 0n], entry: (p, o) => (p === 0 && o < 30 ? { value: `0-${o}` } : undefined) },
    [0, 1],
  );
  const { opened: gate, open } = latch();
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 10,
    maxInFlightPerPartition: 10,
    handler: async (batch) => {
      if (handled.length === 0) await gate;
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
  });
  return {
    fetches,
    /** Lets the first batch go, and waits until partition 0 is read to its end. */
    release: async () => {
      open();
      await waitFor('partition 0 read to its end', () => handled.length === 30);
      consumer.kill();
    },
  };
}

test('a busy partition holding records back never waits behind a long poll for partitions that have nothing: meanwhile fetches do not wait at the broker', async () => {
  const { fetches, release } = partitionZeroHeldUp();
  // Partition 0 fetched twice (10 handed out and in flight, 10 in its buffer), then partition 1 is
  // polled alone.
  const afterSecond = () => {
    const second = fetches.find((f) => f.partition === 0 && f.offset === 10)?.seq ?? Infinity;
    return pollsOfOneAlone(fetches).filter((f) => f.seq > second);
  };
  await waitFor('a poll of partition 1 alone after that', () => afterSecond().length >= 1);
  assert.equal(
    afterSecond()[0]!.maxWaitTime,
    0,
    'partition 0 has just handed out a batch: the poll does not wait at the broker',
  );
  await release();
});

test('a partition that stops handing out records (its records stuck in flight) does not keep the others from long polls, and meanwhile they are not polled in a loop', async () => {
  const { fetches, release } = partitionZeroHeldUp();
  // First polls that do not wait (partition 0 busy), then, once it has handed out nothing for a
  // while, a long poll again.
  await waitFor('a long poll of partition 1 alone after one that did not wait', () => {
    const polls = pollsOfOneAlone(fetches);
    const firstShort = polls.find((f) => f.maxWaitTime === 0)?.seq ?? Infinity;
    return polls.some((f) => f.maxWaitTime > 0 && f.seq > firstShort);
  });
  const short = pollsOfOneAlone(fetches).filter((f) => f.maxWaitTime === 0);
  for (let i = 1; i < short.length; i++)
    assert.ok(short[i]!.at - short[i - 1]!.at >= 95, `polls ${short[i]!.at - short[i - 1]!.at} ms apart`);
  assert.ok(short.length <= 3, `${short.length} polls that did not wait, while partition 0 was stuck`);
  await release();
});

test('a paused partition is not fetched from while paused (the other partition keeps being fetched)', async () => {
  const { fetches } = fakeBroker(
    {
      committed: [0n, 0n],
      // Partition 0 has one record so far: every fetch of it after that is a long poll for more.
      entry: (p, o) => (p === 1 ? flowing(o) : o === 0 ? { value: '0-0' } : undefined),
    },
    [0, 1],
  );
  let pausedAtSeq: number | undefined;
  const handled1: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch, control) => {
      for (const m of batch) {
        if (m.value === '0-0') {
          control.pause(m, 60_000);
          pausedAtSeq = Math.max(0, ...fetches.map((f) => f.seq));
        } else if (m.partition === 1) handled1.push(m.value);
      }
      return undefined;
    },
  });
  await waitFor('the pause', () => pausedAtSeq !== undefined);
  const before = handled1.length;
  await waitFor('partition 1 fetched many times since', () => handled1.length >= before + 30);
  consumer.kill();
  const afterPause = fetches.filter((f) => f.partition === 0 && f.seq > pausedAtSeq!);
  // A request planned as the pause came may still carry it; none after.
  assert.ok(afterPause.length <= 1, `partition 0 fetched ${afterPause.length} times while paused`);
});

test('a partition whose next record is not due (notBefore) is not fetched from meanwhile (the other partition keeps being fetched)', async () => {
  const due = String(Date.now() + 60_000);
  const { fetches } = fakeBroker(
    {
      committed: [0n, 0n],
      entry: (p, o) =>
        p === 1
          ? flowing(o)
          : o === 0
            ? { value: '0-0', headers: [['webhooks-not-before', due]] }
            : undefined,
    },
    [0, 1],
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
  await waitFor('partition 1 flowing', () => handled.length >= 40);
  consumer.kill();
  assert.ok(!handled.includes('0-0'), 'not due yet');
  // Offset 1 may be asked for once (fetched before the record was looked at); not again and again.
  const pastIt = fetches.filter((f) => f.partition === 0 && f.offset >= 1);
  assert.ok(pastIt.length <= 2, `partition 0 fetched ${pastIt.length} times while its record was not due`);
});

test('a commit request that fails is sent again: the handled offset reaches the group without more records', async () => {
  const commits: Array<Array<{ partition: number; offset: bigint }>> = [];
  let failed = 0;
  fakeBroker(
    {
      committed: [100n],
      entry: (_p, o) => (o >= 100 && o < 103 ? { value: `0-${o}` } : undefined),
      commits,
      // The first request carrying this consumer's offset fails (a coordinator moving).
      failCommit: (offsets) => offsets.some((c) => c.offset === 103n) && ++failed === 1,
    },
    [0],
  );
  const errors: string[] = [];
  const handled: string[] = [];
  const consumer = start({
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async (batch) => {
      for (const m of batch) handled.push(m.value);
      return undefined;
    },
    onError: (e) => errors.push(String(e)),
  });
  await waitFor('the first commit to fail', () => failed >= 1 && handled.length === 3);
  await waitFor('the offset committed after all', () => commits.flat().some((c) => c.offset === 103n));
  consumer.kill();
  assert.ok(
    errors.some((e) => e.includes('commit failed')),
    errors.join('\n'),
  );
});
