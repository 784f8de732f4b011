/**
 * The embedded log below its port: cursors, batches, leases and assignment between members, the
 * partitioner, and the wake-ups that make a consumer in the same process quick. Each test was
 * written for a mutation of the code that the suite did not notice.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Assignment } from '../../src/engines/embedded/assignment.ts';
import { PartitionCursor, redeliveryPolicy } from '../../src/engines/embedded/cursor.ts';
import { GroupStore } from '../../src/engines/embedded/group-store.ts';
import { EmbeddedLog } from '../../src/engines/embedded/log.ts';
import { partitionForKey } from '../../src/engines/embedded/partitioner.ts';
import { sql } from '../../src/engines/embedded/schema.ts';
import { bareLog, msg } from '../support/embedded-log.ts';

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const opened: EmbeddedLog[] = [];
function track(log: EmbeddedLog): EmbeddedLog {
  opened.push(log);
  return log;
}

describe('embedded log: limits, leases, partitions and wake-ups (from a mutation run)', () => {
  let dir: string;
  // A failed assertion leaves its consumer running: closing the log abandons it, so the file ends.
  afterEach(async () => {
    for (const log of opened.splice(0)) await log.close().catch(() => {});
  });
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-embedded-internals-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a failed dead-lettering is tried again after initialDelay, doubling from there (not from the handler failures)', () => {
    const policy = redeliveryPolicy({ maxFailures: 3, initialDelayMs: 100, maxDelayMs: 100_000 });
    const cursor = new PartitionCursor('t', 0, 0);
    cursor.handOut(0);
    let now = 0;
    for (let i = 0; i < 3; i++) {
      cursor.fail(0, msg(0), { error: new Error('x'), permanent: false }, now, policy);
      now = cursor.retryAt()!;
      cursor.takeDue(now, 10);
    }
    // Now it is being dead-lettered; the dead-letter callback fails twice.
    cursor.deadLetterFailed(0, 10_000, policy);
    assert.equal(cursor.retryAt(), 10_100);
    cursor.takeDue(10_100, 10);
    cursor.deadLetterFailed(0, 20_000, policy);
    assert.equal(cursor.retryAt(), 20_200);
  });

  test('without a deadLetter callback a permanent failure is redelivered to the handler (with the backoff), not dead-lettered', async () => {
    const log = track(new EmbeddedLog(join(dir, 'm07.db'), { retentionIntervalMs: 0 }));
    await log.ensureTopic('perm', { partitions: 1 });
    await log.publish([{ topic: 'perm', value: 'bad' }]);
    const errors: unknown[] = [];
    let tries = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['perm'],
      redelivery: { initialDelayMs: 10, maxDelayMs: 20 },
      onError: (err) => errors.push(err),
      handler: async (batch) => {
        tries += batch.length;
        return { failed: batch.map((message) => ({ message, error: new Error('bad'), permanent: true })) };
      },
    });
    await waitFor('a redelivery', () => tries >= 2, 3000);
    await consumer.stop();
    await log.close();
    assert.deepEqual(errors, []);
  });

  test('a message reported done is committed while the rest of its batch still runs', async () => {
    const path = join(dir, 'm08.db');
    const log = track(new EmbeddedLog(path, { retentionIntervalMs: 0 }));
    await log.ensureTopic('done', { partitions: 1 });
    await log.publish(['m0', 'm1'].map((value) => ({ topic: 'done', value })));
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = false;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['done'],
      handler: async (batch, control) => {
        control.done(batch[0]!);
        started = true;
        await gate;
        return undefined;
      },
    });
    const peek = new DatabaseSync(path, { readOnly: true });
    const committed = () =>
      (
        peek.prepare("SELECT next_offset FROM committed_offset WHERE grp = 'g'").get() as
          | { next_offset: number }
          | undefined
      )?.next_offset;
    await waitFor('the batch', () => started);
    await waitFor('m0 committed while m1 runs', () => committed() === 1, 2000);
    release();
    await consumer.stop();
    assert.equal(committed(), 2);
    peek.close();
    await log.close();
  });

  test('maxInFlightPerPartition bounds what one partition has in flight', async () => {
    const log = track(new EmbeddedLog(join(dir, 'm11.db'), { retentionIntervalMs: 0 }));
    await log.ensureTopic('pp', { partitions: 1 });
    await log.publish(Array.from({ length: 10 }, (_, i) => ({ topic: 'pp', value: `${i}` })));
    let inFlight = 0;
    let most = 0;
    let seen = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['pp'],
      maxBatch: 10,
      maxInFlight: 10,
      maxInFlightPerPartition: 3,
      handler: async (batch) => {
        inFlight += batch.length;
        most = Math.max(most, inFlight);
        seen += batch.length;
        await sleep(20);
        inFlight -= batch.length;
        return undefined;
      },
    });
    await waitFor('every message', () => seen === 10);
    await consumer.stop();
    await log.close();
    assert.ok(most <= 3, `${most} in flight on one partition`);
  });

  test('a consumer reading a log with nothing deleted reports no errors', async () => {
    const log = track(new EmbeddedLog(join(dir, 'm13.db'), { retentionIntervalMs: 0 }));
    await log.ensureTopic('quiet', { partitions: 2 });
    const errors: unknown[] = [];
    let seen = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['quiet'],
      maxBatch: 3,
      onError: (err) => errors.push(err),
      handler: async (b) => {
        seen += b.length;
        return undefined;
      },
    });
    for (let i = 0; i < 5; i++) await log.publish([{ topic: 'quiet', key: `k${i}`, value: `${i}` }]);
    await waitFor('every message', () => seen === 5);
    await consumer.stop();
    await log.close();
    assert.deepEqual(errors, []);
  });

  test('a lease over the fair share is handed back only once its in-flight messages are settled', () => {
    const db = bareLog(join(dir, 'm14.db'), 4, 20);
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], 10_000), (err) => assert.fail(String(err)));
    const a = member('a');
    a.heartbeat(t0, true);
    const inFlight = a.fetch(100, t0, 100, 1e9, () => {});
    assert.equal(new Set(inFlight.map((e) => e.message.partition)).size, 4);
    const b = member('b');
    b.heartbeat(t0 + 1, true); // joins: share 2, nothing free
    a.heartbeat(t0 + 2, true); // over its share, but every partition has messages in flight
    b.heartbeat(t0 + 3, true);
    assert.deepEqual(
      b.fetch(100, t0 + 3, 100, 1e9, () => {}),
      [],
      'b got messages a is still handling',
    );
    // a settles: it commits and hands two partitions back; b takes them and starts after a's commit.
    for (const e of inFlight) e.cursor.succeed(e.message.offset);
    a.commit(new Set(inFlight.map((e) => e.cursor)));
    b.heartbeat(t0 + 4, true);
    assert.deepEqual(
      b.fetch(100, t0 + 4, 100, 1e9, () => {}),
      [],
    );
    db.close();
  });

  test('a partition re-taken while its old batch is still in flight is not handed out again until that batch settles', () => {
    const db = bareLog(join(dir, 'm15.db'), 1, 10);
    const ttl = 1_000;
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], ttl), (err) => assert.fail(String(err)));
    const a = member('a');
    const b = member('b');
    a.heartbeat(t0, true);
    const stale = a.fetch(100, t0, 100, 1e9, () => {});
    assert.equal(stale.length, 10);
    // a stalls past its lease: b takes the partition, then leaves without committing anything.
    b.heartbeat(t0 + 2 * ttl, true);
    b.leave();
    // a wakes and takes the free partition again while its old batch still runs.
    a.heartbeat(t0 + 2 * ttl + 100, true);
    assert.deepEqual(
      a.fetch(100, t0 + 2 * ttl + 100, 100, 1e9, () => {}).map((e) => e.message.offset),
      [],
      'messages still in flight in this member were handed out a second time',
    );
    db.close();
  });

  test('three members on four partitions between them hold all four', () => {
    const db = bareLog(join(dir, 'm17.db'), 4, 0);
    const t0 = Date.now();
    const members = ['a', 'b', 'c'].map(
      (o) => new Assignment(new GroupStore(db, 'g', o, ['t.'], 10_000), (err) => assert.fail(String(err))),
    );
    for (let round = 0; round <= 3; round++) for (const m of members) m.heartbeat(t0 + round, true);
    const leases = sql(db, "SELECT count(*) AS n FROM lease WHERE grp = 'g'").get() as { n: number };
    assert.equal(leases.n, 4);
    db.close();
  });

  test('a member whose lease was taken and then handed back cannot commit its stale batch', () => {
    const db = bareLog(join(dir, 'm20.db'), 1, 20);
    const ttl = 1_000;
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], ttl), (err) => assert.fail(String(err)));
    const committed = () =>
      (sql(db, 'SELECT next_offset FROM committed_offset').get() as { next_offset: number }).next_offset;
    const a = member('a');
    const b = member('b');
    a.heartbeat(t0, true);
    const stale = a.fetch(5, t0, 100, 1e9, () => {});
    b.heartbeat(t0 + 2 * ttl, true);
    const all = b.fetch(100, t0 + 2 * ttl, 100, 1e9, () => {});
    for (const e of all) e.cursor.succeed(e.message.offset);
    b.commit(new Set(all.map((e) => e.cursor)));
    b.leave();
    assert.equal(committed(), 20);
    // a's old batch settles before its next heartbeat: no lease row at all now.
    for (const e of stale) e.cursor.succeed(e.message.offset);
    a.commit(new Set(stale.map((e) => e.cursor)));
    assert.equal(committed(), 20, 'the stale member moved the offset back');
    db.close();
  });

  test('a group that reads a topic but has not committed yet holds its records back from retention', async () => {
    const path = join(dir, 'm22.db');
    const log = track(new EmbeddedLog(path, { retentionIntervalMs: 0 }));
    await log.ensureTopic('r', { partitions: 1 });
    await log.publish(['0', '1', '2'].map((value) => ({ topic: 'r', value })));
    let seenA = 0;
    const a = log.consume({
      group: 'a',
      topicPrefixes: ['r'],
      handler: async (b) => {
        seenA += b.length;
      },
    });
    await waitFor('group a', () => seenA === 3);
    await a.stop();
    // Group b joins (its heartbeat registers it as a reader) and is still on its first batch.
    let started = false;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const b = log.consume({
      group: 'b',
      topicPrefixes: ['r'],
      handler: async () => {
        started = true;
        await gate;
        return undefined;
      },
    });
    await waitFor('group b to start', () => started);
    assert.equal(await log.retention(), 0, 'records b has not committed were deleted');
    release();
    await b.stop();
    await log.close();
  });

  test('unkeyed messages of one process spread over every partition', async () => {
    const path = join(dir, 'm26.db');
    const log = track(new EmbeddedLog(path, { retentionIntervalMs: 0 }));
    await log.ensureTopic('rr', { partitions: 4 });
    for (let i = 0; i < 8; i++) await log.publish([{ topic: 'rr', value: `${i}` }]);
    const peek = new DatabaseSync(path, { readOnly: true });
    const parts = peek
      .prepare("SELECT part, count(*) AS n FROM record WHERE topic = 'rr' GROUP BY part")
      .all();
    peek.close();
    await log.close();
    assert.equal(parts.length, 4, JSON.stringify(parts));
  });

  test('a key lands on the partition Kafka would choose (toPositive(murmur2) % n)', () => {
    // Kafka: Utils.toPositive(Utils.murmur2(key)) % n, murmur2 vectors from Kafka UtilsTest.
    assert.equal(partitionForKey('foobar', 3), 0);
    assert.equal(partitionForKey('21', 3), 0);
    assert.equal(partitionForKey('a-little-bit-longer-string', 3), 2);
    assert.equal(partitionForKey('21', 5), 0);
  });

  test('a consumer in the same process sees an append at once, not at its next heartbeat', async () => {
    // Heartbeats every 40 s (TTL 120 s): an append not announced would wait for the next one.
    const log = track(
      new EmbeddedLog(join(dir, 'announce.db'), { retentionIntervalMs: 0, leaseTtlMs: 120_000 }),
    );
    await log.ensureTopic('fast', { partitions: 1 });
    const seen: string[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['fast'],
      handler: async (b) => void seen.push(...b.map((m) => m.value)),
    });
    for (let i = 0; i < 3; i++) {
      await log.publish([{ topic: 'fast', value: `${i}` }]);
      // Each waits in an idle loop: only the append's announcement wakes it within the bound.
      await waitFor(`message ${i}`, () => seen.length === i + 1, 20_000);
    }
    await consumer.stop();
  });

  test('a resumed partition is fetched from at once, not at the next heartbeat', async () => {
    const log = track(
      new EmbeddedLog(join(dir, 'resume.db'), { retentionIntervalMs: 0, leaseTtlMs: 120_000 }),
    );
    await log.ensureTopic('res', { partitions: 1 });
    await log.publish([{ topic: 'res', value: 'first' }]);
    let resume: (() => void) | undefined;
    let held = false;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['res'],
      handler: async (batch, control) => {
        for (const m of batch) {
          if (m.value === 'first') {
            control.pause(m, 600_000);
            resume = () => control.resume(m);
          }
          if (m.value === 'held') held = true;
        }
        return undefined;
      },
    });
    await waitFor('the first message', () => resume !== undefined);
    await log.publish([{ topic: 'res', value: 'held' }]);
    assert.equal(held, false);
    resume!();
    // Paused for ten minutes, heartbeats 40 s apart: only the resume's wake fetches it within the bound.
    await waitFor('the held message', () => held, 20_000);
    await consumer.stop();
  });

  test('maxInFlight bounds the messages in flight when it is not a multiple of maxBatch', async () => {
    const log = track(new EmbeddedLog(join(dir, 'm29.db'), { retentionIntervalMs: 0 }));
    await log.ensureTopic('cap', { partitions: 4 });
    await log.publish(Array.from({ length: 40 }, (_, i) => ({ topic: 'cap', key: `k${i}`, value: `${i}` })));
    let inFlight = 0;
    let most = 0;
    let seen = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['cap'],
      maxBatch: 5,
      maxInFlight: 8,
      handler: async (batch) => {
        inFlight += batch.length;
        most = Math.max(most, inFlight);
        seen += batch.length;
        await sleep(30);
        inFlight -= batch.length;
        return undefined;
      },
    });
    await waitFor('every message', () => seen === 40);
    await consumer.stop();
    await log.close();
    assert.ok(most <= 8, `${most} in flight under maxInFlight 8`);
  });
});
