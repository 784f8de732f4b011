/**
 * The Kafka consumer when the broker fails at the wrong moment, with the client's calls replaced
 * (a broker cannot be made to fail exactly between a rebalance and the offsets read after it):
 * errors are reported to onError, never left as a rejection nobody handles — which would end the
 * process.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Consumer, ProtocolError } from '@platformatic/kafka';
import { KafkaConsumer } from '../../src/engines/kafka/consumer.ts';
import { latch, waitFor } from '../support/wait.ts';

const prototype = Consumer.prototype as unknown as Record<string, unknown>;
const original = {
  ...Object.fromEntries(
    ['joinGroup', 'listCommittedOffsets', 'metadata', 'close'].map((k) => [k, prototype[k]]),
  ),
};
after(() => Object.assign(prototype, original));

/** The bus side of a consumer whose client never reaches a broker (its calls are replaced above). */
const STUB_CONTEXT = {
  settings: { brokers: ['127.0.0.1:1'], commitIntervalMs: 10 },
  listTopics: async () => ['t.a'],
  watchTopics: () => () => {},
  finished() {},
} as unknown as ConstructorParameters<typeof KafkaConsumer>[0];

test('offsets that cannot be read after a rebalance, then a join that fails too: reported, and the process goes on', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  let joins = 0;
  prototype.joinGroup = function (this: Consumer) {
    joins += 1;
    if (joins === 1) {
      setImmediate(() =>
        this.emit('consumer:group:join', { assignments: [{ topic: 't.a', partitions: [0] }] }),
      );
      return Promise.resolve('member');
    }
    return Promise.reject(new Error('broker down (joinGroup)'));
  };
  prototype.listCommittedOffsets = () => Promise.reject(new Error('coordinator not available'));
  prototype.close = () => Promise.resolve();
  // One partition, without a leader (so nothing is fetched).
  prototype.metadata = () =>
    Promise.resolve({ topics: new Map([['t.a', { partitionsCount: 1, partitions: [{ leader: -1 }] }]]) });
  const errors: string[] = [];
  const consumer = new KafkaConsumer(STUB_CONTEXT, {
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async () => undefined,
    onError: (e) => errors.push(String(e)),
  });
  await waitFor('the second join', () => joins >= 2 && errors.some((e) => e.includes('joinGroup')));
  // Turns for a rejection nobody handles to be reported.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  process.off('unhandledRejection', onUnhandled);
  consumer.kill();
  assert.deepEqual(unhandled, []);
  assert.ok(
    errors.some((e) => e.includes('coordinator not available')),
    errors.join('\n'),
  );
});

test('a partition lost while its records run and given back meanwhile is read again only once they settle', async () => {
  let client!: Consumer & { assignments: Array<{ topic: string; partitions: number[] }> };
  prototype.joinGroup = function (this: typeof client) {
    client = this;
    this.assignments = [{ topic: 't.a', partitions: [0] }];
    setImmediate(() => this.emit('consumer:group:join', { assignments: this.assignments }));
    return Promise.resolve('member');
  };
  prototype.listCommittedOffsets = async () => new Map([['t.a', [0n, 0n]]]);
  prototype.listOffsets = async () => new Map([['t.a', [0n, 0n]]]);
  prototype.metadata = async () => ({
    topics: new Map([
      ['t.a', { id: 'id-a', partitionsCount: 2, partitions: [{ leader: 1 }, { leader: 1 }] }],
    ]),
  });
  prototype.commit = async () => {};
  prototype.close = () => Promise.resolve();
  // Three records in each partition; a fetch past them answers nothing after a short wait (maxWait).
  prototype.fetch = async (request: {
    topics: Array<{ partitions: Array<{ partition: number; fetchOffset: bigint }> }>;
  }) => {
    const partitions = request.topics[0]!.partitions.flatMap(({ partition, fetchOffset }) => {
      const from = Number(fetchOffset);
      if (from >= 3) return [];
      const records = [0, 1, 2]
        .filter((o) => o >= from)
        .map((o) => ({
          offsetDelta: o,
          timestampDelta: 0n,
          key: null,
          value: Buffer.from(`${partition}-${o}`),
          headers: [],
        }));
      return [
        {
          partitionIndex: partition,
          errorCode: 0,
          records: [
            {
              firstOffset: 0n,
              lastOffsetDelta: 2,
              partitionLeaderEpoch: 0,
              attributes: 0,
              firstTimestamp: 0n,
              records,
            },
          ],
        },
      ];
    });
    if (partitions.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    return { responses: partitions.length > 0 ? [{ topicId: 'id-a', partitions }] : [] };
  };
  const running = new Map<string, number>();
  let mostAtOnce = 0;
  const handled: string[] = [];
  const { opened: gate, open } = latch();
  const { opened: started, open: firstStarted } = latch();
  const consumer = new KafkaConsumer(STUB_CONTEXT, {
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 10,
    handler: async (batch) => {
      for (const m of batch) {
        running.set(m.value, (running.get(m.value) ?? 0) + 1);
        mostAtOnce = Math.max(mostAtOnce, running.get(m.value)!);
      }
      if (batch.some((m) => m.value === '0-0') && handled.length === 0) {
        firstStarted();
        await gate; // a slow endpoint
      }
      for (const m of batch) {
        running.set(m.value, running.get(m.value)! - 1);
        handled.push(m.value);
      }
      return undefined;
    },
  });
  await started;
  // Partition 0 is taken away, then given back with partition 1, while its first batch still runs.
  client.assignments = [];
  client.emit('consumer:group:rebalance', {});
  client.assignments = [{ topic: 't.a', partitions: [0, 1] }];
  client.emit('consumer:group:join', { assignments: client.assignments });
  await waitFor(
    'partition 1 (read after the assignment)',
    () => handled.filter((v) => v.startsWith('1-')).length === 3,
  );
  assert.deepEqual(
    handled.filter((v) => v.startsWith('0-')),
    [],
    'partition 0 not handed out again meanwhile',
  );
  open();
  // Its first results no longer count (lost); it is read again from the committed offset.
  await waitFor('partition 0 read again', () => handled.filter((v) => v.startsWith('0-')).length === 6);
  consumer.kill();
  assert.equal(mostAtOnce, 1, 'no record ran twice at once');
});

test('a partition whose group offset is past its log end, with a record in flight: left out of fetches until it settles, then read from the earliest; the broker’s other partition keeps flowing', async () => {
  let client!: Consumer & { assignments: Array<{ topic: string; partitions: number[] }> };
  prototype.joinGroup = function (this: typeof client) {
    client = this;
    this.assignments = [{ topic: 't.a', partitions: [0, 1] }];
    setImmediate(() => this.emit('consumer:group:join', { assignments: this.assignments }));
    return Promise.resolve('member');
  };
  prototype.listCommittedOffsets = async () => new Map([['t.a', [5n, 0n]]]);
  // Partition 0's log now ends at 3 (cut short after offset 5 was read); partition 1's never ends.
  prototype.listOffsets = async ({ timestamp }: { timestamp: bigint }) =>
    new Map([['t.a', timestamp === -2n ? [0n, 0n] : [3n, 1_000_000n]]]);
  prototype.metadata = async () => ({
    topics: new Map([
      ['t.a', { id: 'id-a', partitionsCount: 2, partitions: [{ leader: 1 }, { leader: 1 }] }],
    ]),
  });
  prototype.commit = async () => {};
  prototype.close = () => Promise.resolve();
  const batchOf = (partition: number, offsets: number[]) => ({
    partitionIndex: partition,
    errorCode: 0,
    records: [
      {
        firstOffset: BigInt(offsets[0]!),
        lastOffsetDelta: offsets.length - 1,
        partitionLeaderEpoch: 0,
        attributes: 0,
        firstTimestamp: 0n,
        records: offsets.map((o, i) => ({
          offsetDelta: i,
          timestampDelta: 0n,
          key: null,
          value: Buffer.from(`${partition}-${o}`),
          headers: [],
        })),
      },
    ],
  });
  let firstOfZero = true;
  prototype.fetch = async (request: {
    topics: Array<{ partitions: Array<{ partition: number; fetchOffset: bigint }> }>;
  }) => {
    await new Promise((resolve) => setTimeout(resolve, 2));
    const partitions = [];
    for (const { partition, fetchOffset } of request.topics[0]!.partitions) {
      const from = Number(fetchOffset);
      if (partition === 1) partitions.push(batchOf(1, [from]));
      else if (firstOfZero && from === 5) {
        firstOfZero = false;
        partitions.push(batchOf(0, [5]));
      } else if (from >= 3) {
        // One partition out of range fails the whole request, as the broker's answer does.
        throw new ProtocolError('OFFSET_OUT_OF_RANGE');
      } else
        partitions.push(
          batchOf(
            0,
            [0, 1, 2].filter((o) => o >= from),
          ),
        );
    }
    return { responses: [{ topicId: 'id-a', partitions }] };
  };
  const handled: string[] = [];
  const errors: Array<{ code?: string }> = [];
  const { opened: gate, open } = latch();
  const consumer = new KafkaConsumer(STUB_CONTEXT, {
    group: 'g',
    topicPrefixes: ['t.'],
    maxBatch: 10,
    maxInFlightPerPartition: 10,
    handler: async (batch) => {
      await Promise.all(
        batch.map(async (m) => {
          if (m.value === '0-5') await gate; // in flight while its partition's log is found cut short
          handled.push(m.value);
        }),
      );
      return undefined;
    },
    onError: (err) => errors.push(err as { code?: string }),
  });
  await waitFor('partition 1 flowing', () => handled.filter((v) => v.startsWith('1-')).length >= 20);
  assert.deepEqual(
    errors.map((e) => e.code),
    ['offset_reset'],
    'said once, not at every fetch',
  );
  open();
  await waitFor('partition 0 read again from the earliest', () =>
    ['0-0', '0-1', '0-2'].every((v) => handled.includes(v)),
  );
  consumer.kill();
});

test('a stop while a join hangs (the brokers gone) ends within its short wait, not the join’s 60 s deadline', async () => {
  let joins = 0;
  prototype.joinGroup = () => {
    joins += 1;
    return new Promise(() => {}); // never answers
  };
  prototype.metadata = async () => ({ topics: new Map() });
  prototype.close = () => Promise.resolve();
  const consumer = new KafkaConsumer(STUB_CONTEXT, {
    group: 'g',
    topicPrefixes: ['t.'],
    handler: async () => undefined,
  });
  await waitFor('the join under way', () => joins >= 1);
  await consumer.stop(); // before: held for the join's whole deadline
});
