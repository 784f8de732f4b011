/**
 * The conformance suite of the bus port (publish + consumer groups); every bus engine runs it.
 * Engine-neutral: it only uses the `Bus` port. A new group starts at the earliest offset, and
 * every test uses its own topics and groups, so engines may keep state between tests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  BatchControl,
  Bus,
  ConsumedMessage,
  ConsumerHandle,
  ConsumerOptions,
} from '../../src/common/ports/bus.ts';

export interface BusHarness {
  /** Opens the engine on the harness's storage; opening again after `close()` is a restart. */
  open(): Promise<Bus>;
  cleanup(): Promise<void>;
}

interface Delivery {
  message: ConsumedMessage;
  at: number;
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const id = (m: ConsumedMessage) => `${m.topic}/${m.partition}/${m.offset}`;

/** Registers the bus suite for one engine. */
export function runBusConformance(engine: string, makeHarness: () => Promise<BusHarness>): void {
  describe(`bus conformance: ${engine}`, () => {
    let harness: BusHarness;
    let bus: Bus;
    const unique = `c${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    let running: ConsumerHandle[] = [];
    before(async () => {
      harness = await makeHarness();
      bus = await harness.open();
    });
    after(async () => {
      await Promise.all(running.map((c) => c.stop()));
      await bus.close();
      await harness.cleanup();
    });

    /** Starts a consumer that records every delivery, then runs `handler` (default: all succeed). */
    function collect(
      topic: string,
      group: string,
      options: Partial<ConsumerOptions> = {},
    ): { deliveries: Delivery[]; consumer: ConsumerHandle } {
      const deliveries: Delivery[] = [];
      const consumer = bus.consume({
        group: `${group}.${unique}`,
        topicPrefixes: [topic],
        ...options,
        handler: async (batch, control) => {
          for (const message of batch) deliveries.push({ message, at: Date.now() });
          return options.handler ? options.handler(batch, control) : undefined;
        },
      });
      running.push(consumer);
      return { deliveries, consumer };
    }

    async function stopAll(): Promise<void> {
      await Promise.all(running.map((c) => c.stop()));
      running = [];
    }

    test('a published message is consumed with its key, value, headers, timestamp and notBefore', async () => {
      const topic = `roundtrip.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      const before = Date.now();
      const past = before - 1000;
      await bus.publish([
        { topic, key: 'order-1', value: '{"n":1}', headers: { 'correlation-id': 'abc' }, notBefore: past },
        { topic, value: '{"n":2}' },
      ]);
      const { deliveries } = collect(topic, 'roundtrip');
      await waitFor('two messages', () => deliveries.length >= 2);
      await stopAll();
      const keyed = deliveries.find((d) => d.message.value === '{"n":1}')!.message;
      const unkeyed = deliveries.find((d) => d.message.value === '{"n":2}')!.message;
      assert.equal(keyed.topic, topic);
      assert.equal(keyed.key, 'order-1');
      assert.deepEqual(keyed.headers, { 'correlation-id': 'abc' });
      assert.equal(keyed.notBefore, past);
      assert.ok(keyed.timestamp >= before - 5000 && keyed.timestamp <= Date.now() + 5000);
      assert.ok(Number.isInteger(keyed.partition) && Number.isInteger(keyed.offset));
      assert.equal(unkeyed.key, undefined);
      assert.deepEqual(unkeyed.headers, {});
      assert.equal(deliveries.length, 2);
    });

    test('messages with the same key land on one partition, in publish order', async () => {
      const topic = `ordering.${unique}`;
      await bus.ensureTopic(topic, { partitions: 4 });
      const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
      for (let round = 0; round < 3; round++) {
        await bus.publish(keys.map((key) => ({ topic, key, value: JSON.stringify({ key, round }) })));
      }
      const { deliveries } = collect(topic, 'ordering');
      await waitFor('all messages', () => deliveries.length >= keys.length * 3);
      await stopAll();
      for (const key of keys) {
        const mine = deliveries.filter((d) => d.message.key === key).map((d) => d.message);
        assert.equal(new Set(mine.map((m) => m.partition)).size, 1, `key ${key} on one partition`);
        assert.deepEqual(
          mine.map((m) => JSON.parse(m.value).round),
          [0, 1, 2],
        );
        assert.deepEqual(
          mine.map((m) => m.offset),
          [...mine.map((m) => m.offset)].sort((x, y) => x - y),
        );
      }
    });

    test('two consumer groups each receive every message', async () => {
      const topic = `groups.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      const values = Array.from({ length: 10 }, (_, i) => `{"i":${i}}`);
      await bus.publish(values.map((value) => ({ topic, value })));
      const first = collect(topic, 'groups-a');
      const second = collect(topic, 'groups-b');
      await waitFor('both groups', () => first.deliveries.length >= 10 && second.deliveries.length >= 10);
      await stopAll();
      assert.deepEqual(first.deliveries.map((d) => d.message.value).sort(), [...values].sort());
      assert.deepEqual(second.deliveries.map((d) => d.message.value).sort(), [...values].sort());
    });

    test('after a restart a group resumes at its committed offset: only uncommitted messages come again', async () => {
      const topic = `restart.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish(['m0', 'm1', 'm2'].map((value) => ({ topic, value })));
      const failM2 = async (batch: ConsumedMessage[]) => ({
        failed: batch.filter((m) => m.value === 'm2').map((message) => ({ message, error: new Error('m2') })),
      });
      const before = collect(topic, 'restart', { handler: failM2 });
      await waitFor('m0..m2', () => new Set(before.deliveries.map((d) => d.message.value)).size === 3);
      await stopAll();
      await bus.close();
      bus = await harness.open();
      await bus.publish([{ topic, value: 'm3' }]);
      const afterRestart = collect(topic, 'restart');
      // One partition, delivered in order: whatever comes before m3 has come once m3 is here.
      await waitFor('m3', () => afterRestart.deliveries.some((d) => d.message.value === 'm3'));
      await stopAll();
      assert.deepEqual(
        afterRestart.deliveries.map((d) => d.message.value),
        ['m2', 'm3'],
      );
    });

    test('a failed message is delivered again alone: the messages of its partition handled already are not', async () => {
      const topic = `partial.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      await bus.publish(
        Array.from({ length: 20 }, (_, i) => ({ topic, key: `k${i % 10}`, value: `{"i":${i}}` })),
      );
      let firstBatch: ConsumedMessage[] | undefined;
      let failedAt: ConsumedMessage | undefined;
      let answered = false;
      const { deliveries } = collect(topic, 'partial', {
        redelivery: { initialDelayMs: 20 },
        handler: async (batch) => {
          if (firstBatch) return { failed: [] };
          firstBatch = batch;
          const partition = batch[0]!.partition;
          const ofPartition = batch
            .filter((m) => m.partition === partition)
            .sort((a, b) => a.offset - b.offset);
          failedAt = ofPartition[Math.min(1, ofPartition.length - 1)]!;
          setImmediate(() => {
            answered = true;
          });
          return { failed: [{ message: failedAt, error: new Error('try again') }] };
        },
      });
      await waitFor('every message', () => new Set(deliveries.map((d) => id(d.message))).size === 20);
      // Messages published before the failure was reported may be in flight already; after it, not.
      await waitFor('the failure to be reported', () => answered);
      // Sentinels after everything, on both partitions: a partition hands out nothing newer while a
      // failed message of it waits, so once every sentinel is in, the redelivery has happened.
      const sentinels = Array.from({ length: 8 }, (_, i) => `s${i}`);
      await bus.publish(sentinels.map((key) => ({ topic, key, value: `sentinel-${key}` })));
      const isSentinel = (d: Delivery) => d.message.value.startsWith('sentinel');
      await waitFor('the sentinels', () => deliveries.filter(isSentinel).length === sentinels.length);
      await stopAll();
      const count = (m: ConsumedMessage) => deliveries.filter((d) => id(d.message) === id(m)).length;
      for (const m of firstBatch!) {
        assert.equal(count(m), id(m) === id(failedAt!) ? 2 : 1, `deliveries of ${id(m)}`);
      }
      const redelivered = deliveries.findLastIndex((d) => id(d.message) === id(failedAt!));
      const newer = deliveries.findIndex((d) => isSentinel(d) && d.message.partition === failedAt!.partition);
      assert.ok(
        newer === -1 || redelivered < newer,
        'the redelivery came before newer messages of its partition',
      );
    });

    test('redeliveries wait a doubling backoff; after maxFailures the message is dead-lettered with its last error and the partition moves on', async () => {
      const topic = `poison.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish(['good-0', 'poison', 'good-1', 'good-2'].map((value) => ({ topic, value })));
      let failures = 0;
      const dead: Array<{ message: ConsumedMessage; error: unknown; failures: number; permanent: boolean }> =
        [];
      const { deliveries } = collect(topic, 'poison', {
        redelivery: { maxFailures: 4, initialDelayMs: 40, maxDelayMs: 100 },
        deadLetter: async (message, notice) => void dead.push({ message, ...notice }),
        handler: async (batch) => ({
          failed: batch
            .filter((m) => m.value === 'poison')
            .map((message) => ({ message, error: new Error(`failure ${++failures}`) })),
        }),
      });
      await waitFor('the dead letter', () => dead.length === 1);
      await bus.publish([{ topic, value: 'sentinel' }]);
      await waitFor('the sentinel', () => deliveries.some((d) => d.message.value === 'sentinel'));
      await stopAll();
      const poison = deliveries.filter((d) => d.message.value === 'poison');
      assert.equal(poison.length, 4, 'handed to the handler maxFailures times');
      assert.equal(dead[0]!.message.value, 'poison');
      assert.equal(dead[0]!.failures, 4);
      assert.equal(dead[0]!.permanent, false);
      assert.equal((dead[0]!.error as Error).message, 'failure 4');
      // 40, 80, then 100 (capped) ms between tries: waits never shorter than the backoff.
      const gaps = poison.slice(1).map((d, i) => d.at - poison[i]!.at);
      for (const [i, least] of [40, 80, 100].entries()) {
        assert.ok(gaps[i]! >= least - 5, `wait ${i + 1} was ${gaps[i]} ms, at least ${least} expected`);
      }
      for (const value of ['good-0', 'good-1', 'good-2', 'sentinel']) {
        assert.equal(deliveries.filter((d) => d.message.value === value).length, 1, value);
      }
      // The dead-lettered message is handled: a new member of the group starts after it.
      await bus.publish([{ topic, value: 'after' }]);
      const next = collect(topic, 'poison');
      await waitFor('the next message', () => next.deliveries.some((d) => d.message.value === 'after'));
      await stopAll();
      assert.deepEqual(
        next.deliveries.map((d) => d.message.value),
        ['after'],
      );
    });

    test('a permanent failure is dead-lettered at once, without redeliveries', async () => {
      const topic = `permanent.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish(['bad', 'good'].map((value) => ({ topic, value })));
      const dead: ConsumedMessage[] = [];
      const { deliveries } = collect(topic, 'permanent', {
        redelivery: { initialDelayMs: 10 },
        deadLetter: async (message, notice) => {
          assert.equal(notice.permanent, true);
          assert.equal(notice.failures, 1);
          dead.push(message);
        },
        handler: async (batch) => ({
          failed: batch
            .filter((m) => m.value === 'bad')
            .map((message) => ({ message, error: new Error('malformed'), permanent: true })),
        }),
      });
      await waitFor('the dead letter', () => dead.length === 1);
      await bus.publish([{ topic, value: 'sentinel' }]);
      await waitFor('the sentinel', () => deliveries.some((d) => d.message.value === 'sentinel'));
      await stopAll();
      assert.equal(deliveries.filter((d) => d.message.value === 'bad').length, 1);
    });

    test('while dead-lettering fails, it is tried again and the partition does not move past the message', async () => {
      const topic = `dlq-down.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish(['bad', 'next'].map((value) => ({ topic, value })));
      let tries = 0;
      const errors: unknown[] = [];
      const { deliveries } = collect(topic, 'dlq-down', {
        redelivery: { maxFailures: 1, initialDelayMs: 10, maxDelayMs: 20 },
        onError: (err) => errors.push(err),
        deadLetter: async () => {
          tries += 1;
          if (tries < 3) throw new Error('the DLQ is down');
        },
        handler: async (batch) => ({
          failed: batch
            .filter((m) => m.value === 'bad')
            .map((message) => ({ message, error: new Error('no') })),
        }),
      });
      await waitFor('three tries', () => tries === 3);
      await bus.publish([{ topic, value: 'sentinel' }]);
      await waitFor('the sentinel', () => deliveries.some((d) => d.message.value === 'sentinel'));
      await stopAll();
      assert.ok(
        errors.some((e) => (e as Error).message === 'the DLQ is down'),
        'onError heard of it',
      );
      // "next" was handled before the sentinel (order), and only once.
      assert.deepEqual(
        deliveries.map((d) => d.message.value).filter((v) => v !== 'bad'),
        ['next', 'sentinel'],
      );
    });

    test('a message that keeps failing is not committed: after a restart it comes again', async () => {
      const topic = `held.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish(['m0', 'stuck', 'm2'].map((value) => ({ topic, value })));
      const first = collect(topic, 'held', {
        redelivery: { initialDelayMs: 10, maxDelayMs: 20 },
        handler: async (batch) => ({
          failed: batch
            .filter((m) => m.value === 'stuck')
            .map((message) => ({ message, error: new Error('no') })),
        }),
      });
      await waitFor(
        'two tries of the stuck message',
        () => first.deliveries.filter((d) => d.message.value === 'stuck').length >= 2,
      );
      await stopAll();
      const second = collect(topic, 'held');
      await waitFor('m2', () => second.deliveries.some((d) => d.message.value === 'm2'));
      await stopAll();
      assert.deepEqual(
        second.deliveries.map((d) => d.message.value),
        ['stuck', 'm2'],
      );
    });

    test('when the handler throws, the whole batch is redelivered and onError is told', async () => {
      const topic = `throws.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      await bus.publish(Array.from({ length: 6 }, (_, i) => ({ topic, key: `k${i}`, value: `{"i":${i}}` })));
      const errors: unknown[] = [];
      let firstBatch: ConsumedMessage[] | undefined;
      const { deliveries } = collect(topic, 'throws', {
        redelivery: { initialDelayMs: 20 },
        onError: (err) => errors.push(err),
        handler: async (batch) => {
          if (firstBatch) return undefined;
          firstBatch = batch;
          throw new Error('handler exploded');
        },
      });
      const count = (m: ConsumedMessage) => deliveries.filter((d) => id(d.message) === id(m)).length;
      await waitFor('redelivery', () => firstBatch?.every((m) => count(m) >= 2) ?? false);
      await stopAll();
      assert.ok(errors.some((e) => e instanceof Error && e.message === 'handler exploded'));
    });

    test('a message is held back until its notBefore while another partition keeps flowing', async () => {
      const topic = `delayed.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      const due = Date.now() + 1500;
      await bus.publish([{ topic, key: 'x', value: 'late', notBefore: due }]);
      await bus.publish(Array.from({ length: 8 }, (_, i) => ({ topic, key: `k${i}`, value: `now-${i}` })));
      const { deliveries } = collect(topic, 'delayed');
      await waitFor('the delayed message', () => deliveries.some((d) => d.message.value === 'late'));
      await stopAll();
      const late = deliveries.find((d) => d.message.value === 'late')!;
      assert.ok(late.at >= due, `delivered ${due - late.at} ms early`);
      assert.ok(
        deliveries.some((d) => d.message.partition !== late.message.partition && d.at < due),
        'a message of the other partition was delivered while the delayed one waited',
      );
    });

    test('a batch holds at most maxBatch messages, 100 by default', async () => {
      const topic = `batches.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      await bus.publish(Array.from({ length: 250 }, (_, i) => ({ topic, key: `k${i % 7}`, value: `${i}` })));
      const sizes: number[] = [];
      collect(topic, 'batches', {
        handler: async (batch) => {
          sizes.push(batch.length);
          return undefined;
        },
      });
      await waitFor('every message', () => sizes.reduce((a, b) => a + b, 0) >= 250);
      const small: number[] = [];
      collect(topic, 'batches-small', {
        maxBatch: 7,
        handler: async (batch) => {
          small.push(batch.length);
          return undefined;
        },
      });
      await waitFor('every message again', () => small.reduce((a, b) => a + b, 0) >= 250);
      await stopAll();
      assert.equal(Math.max(...sizes), 100, `batch sizes ${sizes.join(',')}`);
      assert.equal(Math.max(...small), 7, `batch sizes ${small.join(',')}`);
    });

    test('topics created after the consumer started are consumed', async () => {
      const prefix = `later.${unique}.`;
      const { deliveries } = collect(prefix, 'later');
      await sleep(300);
      await bus.ensureTopic(`${prefix}created`, { partitions: 1 });
      await bus.publish([{ topic: `${prefix}created`, value: 'hello' }]);
      await waitFor('the message on the new topic', () => deliveries.length >= 1, 10_000);
      await stopAll();
      assert.equal(deliveries[0]!.message.value, 'hello');
    });

    test('a slow batch does not hold up other partitions when maxInFlight allows several batches', async () => {
      const topic = `inflight.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      await bus.publish([{ topic, key: 'x', value: 'slow' }]);
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const { deliveries } = collect(topic, 'inflight', {
        maxBatch: 1,
        maxInFlight: 10,
        handler: async (batch) => {
          if (batch.some((m) => m.value === 'slow')) await gate;
          return undefined;
        },
      });
      await waitFor('the slow message', () => deliveries.some((d) => d.message.value === 'slow'));
      await bus.publish(Array.from({ length: 8 }, (_, i) => ({ topic, key: `k${i}`, value: `fast-${i}` })));
      const slowPartition = deliveries.find((d) => d.message.value === 'slow')!.message.partition;
      await waitFor('the other partition', () =>
        deliveries.some((d) => d.message.partition !== slowPartition && d.message.value.startsWith('fast')),
      );
      release();
      await stopAll();
    });

    test('maxInFlightBytes bounds the bytes in flight (at least one message always goes)', async () => {
      const topic = `bytes.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      const big = 'x'.repeat(1000);
      await bus.publish(
        Array.from({ length: 12 }, (_, i) => ({ topic, key: `k${i}`, value: `${i}:${big}` })),
      );
      let inFlight = 0;
      let most = 0;
      const gates: Array<() => void> = [];
      const { deliveries } = collect(topic, 'bytes', {
        maxBatch: 1,
        maxInFlight: 100,
        maxInFlightBytes: 2_500,
        handler: async () => {
          inFlight += 1;
          most = Math.max(most, inFlight);
          await new Promise<void>((resolve) => gates.push(resolve));
          inFlight -= 1;
          return undefined;
        },
      });
      // Let the handlers go one at a time, each once the consumer has had a chance to fetch more.
      while (deliveries.length < 12) {
        await waitFor('a message in flight', () => gates.length > 0);
        await sleep(20);
        gates.shift()!();
      }
      while (gates.length > 0) gates.shift()!();
      await stopAll();
      assert.ok(most >= 1);
      assert.ok(most <= 3, `${most} messages of ~1 KB in flight under a 2,500-byte cap`);
    });

    test('a message reported done frees its place in flight and is committed while the rest of its batch runs', async () => {
      const topic = `done.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish(['m0', 'm1'].map((value) => ({ topic, value })));
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const { deliveries, consumer } = collect(topic, 'done', {
        maxBatch: 2,
        maxInFlight: 2,
        handler: async (batch, control) => {
          if (batch.some((m) => m.value === 'm1')) {
            control.done(batch.find((m) => m.value === 'm0')!);
            await gate;
          }
          return undefined;
        },
      });
      await waitFor('the first batch', () => deliveries.length === 2);
      await bus.publish(['m2', 'm3'].map((value) => ({ topic, value })));
      // m0's place was given back: m2 is fetched although m1's batch still runs (maxInFlight 2).
      await waitFor('m2', () => deliveries.some((d) => d.message.value === 'm2'));
      // A crash now: m1 was not committed (so neither m2 nor m3, which follow it); m0 may have been.
      await bus.close();
      release();
      await consumer.stop();
      running = running.filter((c) => c !== consumer);
      bus = await harness.open();
      const again = collect(topic, 'done');
      // One partition, in order: once m3 is here, everything before it has come.
      await waitFor('the redelivery', () => again.deliveries.some((d) => d.message.value === 'm3'));
      await stopAll();
      assert.deepEqual(
        again.deliveries.map((d) => d.message.value).filter((v) => v !== 'm0'),
        ['m1', 'm2', 'm3'],
      );
    });

    test('a paused partition is not fetched from until it is resumed, while other partitions flow', async () => {
      const topic = `paused.${unique}`;
      await bus.ensureTopic(topic, { partitions: 2 });
      await bus.publish([{ topic, key: 'x', value: 'first' }]);
      let pausedBy: { control: BatchControl; message: ConsumedMessage } | undefined;
      const { deliveries } = collect(topic, 'paused', {
        handler: async (batch, control) => {
          const first = batch.find((m) => m.value === 'first');
          if (first) {
            control.pause(first, 60_000);
            pausedBy = { control, message: first };
          }
          return undefined;
        },
      });
      await waitFor('the first message', () => pausedBy !== undefined);
      const pausedPartition = pausedBy!.message.partition;
      const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
      await bus.publish([
        { topic, key: 'x', value: 'held' },
        ...keys.map((key) => ({ topic, key, value: `other-${key}` })),
      ]);
      await waitFor('the other partition', () =>
        deliveries.some(
          (d) => d.message.partition !== pausedPartition && d.message.value.startsWith('other'),
        ),
      );
      await sleep(300);
      assert.equal(
        deliveries.filter((d) => d.message.partition === pausedPartition && d.message.value !== 'first')
          .length,
        0,
        'nothing more was fetched from the paused partition',
      );
      pausedBy!.control.resume(pausedBy!.message);
      await waitFor('the held message', () => deliveries.some((d) => d.message.value === 'held'));
      await stopAll();
    });

    test('a pause ends by itself after its time', async () => {
      const topic = `pause-ends.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish([{ topic, value: 'first' }]);
      let pausedAt = 0;
      const { deliveries } = collect(topic, 'pause-ends', {
        handler: async (batch, control) => {
          if (batch[0]?.value === 'first') {
            pausedAt = Date.now();
            control.pause(batch[0], 500);
          }
          return undefined;
        },
      });
      await waitFor('the first message', () => pausedAt > 0);
      await bus.publish([{ topic, value: 'second' }]);
      await waitFor('the second message', () => deliveries.some((d) => d.message.value === 'second'));
      await stopAll();
      const second = deliveries.find((d) => d.message.value === 'second')!;
      assert.ok(second.at - pausedAt >= 450, `fetched ${second.at - pausedAt} ms after a 500 ms pause`);
    });

    test('members of one group share the partitions and together process every message at least once', async () => {
      const topic = `members.${unique}`;
      await bus.ensureTopic(topic, { partitions: 4 });
      const processed = new Map<string, number>();
      const byMember = [new Set<number>(), new Set<number>()];
      const handlerOf = (member: number) => async (batch: ConsumedMessage[]) => {
        await sleep(5);
        for (const m of batch) {
          processed.set(m.value, (processed.get(m.value) ?? 0) + 1);
          byMember[member]!.add(m.partition);
        }
        return undefined;
      };
      collect(topic, 'members', { maxBatch: 10, handler: handlerOf(0) });
      collect(topic, 'members', { maxBatch: 10, handler: handlerOf(1) });
      const total = 400;
      for (let wave = 0; wave < 8; wave++) {
        await bus.publish(
          Array.from({ length: total / 8 }, (_, i) => ({ topic, key: `k${i % 40}`, value: `${wave}-${i}` })),
        );
        await sleep(200);
      }
      await waitFor('every message', () => processed.size === total);
      await stopAll();
      assert.ok(
        byMember.every((partitions) => partitions.size > 0),
        'both members got partitions',
      );
    });

    test('stop() waits for the batches in flight and commits them', async () => {
      const topic = `stop.${unique}`;
      await bus.ensureTopic(topic, { partitions: 1 });
      await bus.publish([{ topic, value: 'first' }]);
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let finished = false;
      const { deliveries, consumer } = collect(topic, 'stop', {
        handler: async () => {
          await gate;
          finished = true;
          return undefined;
        },
      });
      await waitFor('the batch to start', () => deliveries.length === 1);
      let stopped = false;
      const stopping = consumer.stop().then(() => {
        stopped = true;
      });
      await sleep(200);
      assert.equal(stopped, false, 'stop() resolved while a batch was in flight');
      release();
      await stopping;
      assert.equal(finished, true);
      running = running.filter((c) => c !== consumer);
      await bus.publish([{ topic, value: 'second' }]);
      const next = collect(topic, 'stop');
      // One partition, in order: "first", had it not been committed, would come before "second".
      await waitFor('the second message', () => next.deliveries.some((d) => d.message.value === 'second'));
      await stopAll();
      assert.deepEqual(
        next.deliveries.map((d) => d.message.value),
        ['second'],
      );
    });
  });
}
