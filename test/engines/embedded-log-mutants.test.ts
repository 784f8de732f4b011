/**
 * The embedded log: behaviour a mutation run found unpinned — the redelivery defaults, the batch
 * bound on due retries, handing back only the leases over the share, not releasing a lease over
 * a commit that failed, a re-taken partition's old batch, notBefore wake-ups, and what a publish
 * checks and where an empty key lands.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, afterEach, before, describe, test } from 'node:test';
import { sizeOf } from '../../src/engines/consumer-batch.ts';
import { Assignment } from '../../src/engines/embedded/assignment.ts';
import { backoffMs, PartitionCursor, redeliveryPolicy } from '../../src/engines/embedded/cursor.ts';
import { GroupStore } from '../../src/engines/embedded/group-store.ts';
import { EmbeddedLog } from '../../src/engines/embedded/log.ts';
import { partitionForKey } from '../../src/engines/embedded/partitioner.ts';
import { deleteConsumedRecords } from '../../src/engines/embedded/retention.ts';
import { sql } from '../../src/engines/embedded/schema.ts';
import { bareLog, msg } from '../support/embedded-log.ts';
import { waitFor } from '../support/wait.ts';

/** A group store whose next offset commit fails (a write that did not get the lock in time). */
class FlakyCommitStore extends GroupStore {
  failNext = false;
  override commit(commits: Parameters<GroupStore['commit']>[0]): ReturnType<GroupStore['commit']> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('database is locked');
    }
    return super.commit(commits);
  }
}

const opened: EmbeddedLog[] = [];
function track(log: EmbeddedLog): EmbeddedLog {
  opened.push(log);
  return log;
}

describe('embedded log: gaps from a second mutation run', () => {
  let dir: string;
  afterEach(async () => {
    for (const log of opened.splice(0)) await log.close().catch(() => {});
  });
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-embedded-mutants-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('the redelivery defaults are the documented ones: 5 failures, 1 s doubling up to 60 s', () => {
    const policy = redeliveryPolicy();
    assert.equal(backoffMs(policy, 1), 1_000);
    assert.equal(backoffMs(policy, 2), 2_000);
    assert.equal(backoffMs(policy, 20), 60_000);
    const cursor = new PartitionCursor('t', 0, 0);
    cursor.handOut(0);
    let now = 0;
    const given: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const retry = cursor.fail(0, msg(0), { error: new Error('x'), permanent: false }, now, policy)!;
      given.push(retry.deadLetter);
      now = retry.dueAt;
      cursor.takeDue(now, 10);
    }
    assert.deepEqual(given, [false, false, false, false, true]);
  });

  test('failed messages due again are taken no more than the room left in the batch', () => {
    const policy = redeliveryPolicy({ initialDelayMs: 10 });
    const cursor = new PartitionCursor('t', 0, 0);
    for (let offset = 0; offset < 3; offset++) cursor.handOut(offset);
    for (let offset = 0; offset < 3; offset++)
      cursor.fail(offset, msg(offset), { error: new Error('x'), permanent: false }, 0, policy);
    assert.deepEqual(
      cursor.takeDue(100, 2).map((r) => r.message.offset),
      [0, 1],
    );
    assert.deepEqual(
      cursor.takeDue(100, 2).map((r) => r.message.offset),
      [2],
    );
  });

  test('a member over its share hands back only the leases over it, across several heartbeats', () => {
    const db = bareLog(join(dir, 'share.db'), 4, 20);
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], 10_000), (err) => assert.fail(String(err)));
    const a = member('a');
    a.heartbeat(t0, true);
    const inFlight = a.fetch(100, t0, 100, 1e9, () => {});
    const b = member('b');
    b.heartbeat(t0 + 1, true);
    // Two heartbeats while every partition has messages in flight: the second must not mark more.
    a.heartbeat(t0 + 2, true);
    a.heartbeat(t0 + 3, true);
    for (const e of inFlight) e.cursor.succeed(e.message.offset);
    a.commit(new Set(inFlight.map((e) => e.cursor)));
    const held = sql(db, "SELECT count(*) AS n FROM lease WHERE grp = 'g' AND owner = 'a'").get() as {
      n: number;
    };
    assert.equal(held.n, 2, 'a handed back more than the leases over its share');
    db.close();
  });

  test('a lease being handed back is kept while its last commit is unwritten', () => {
    const db = bareLog(join(dir, 'unwritten.db'), 2, 10);
    const t0 = Date.now();
    const errors: unknown[] = [];
    const storeA = new FlakyCommitStore(db, 'g', 'a', ['t.'], 10_000);
    const a = new Assignment(storeA, (err) => errors.push(err));
    a.heartbeat(t0, true);
    const inFlight = a.fetch(100, t0, 100, 1e9, () => {});
    assert.equal(new Set(inFlight.map((e) => e.message.partition)).size, 2);
    const b = new Assignment(new GroupStore(db, 'g', 'b', ['t.'], 10_000), (err) => assert.fail(String(err)));
    b.heartbeat(t0 + 1, true);
    a.heartbeat(t0 + 2, true); // share 1: one partition is being handed back
    for (const e of inFlight) e.cursor.succeed(e.message.offset);
    storeA.failNext = true;
    a.commit(new Set(inFlight.map((e) => e.cursor)));
    assert.equal(errors.length, 1);
    const leasesOfA = () =>
      (sql(db, "SELECT count(*) AS n FROM lease WHERE grp = 'g' AND owner = 'a'").get() as { n: number }).n;
    assert.equal(leasesOfA(), 2, 'a lease was handed back over a commit that was not written');
    // b cannot take it and handle a's messages again; a's next heartbeat writes the commit, then hands it back.
    b.heartbeat(t0 + 3, true);
    assert.deepEqual(
      b.fetch(100, t0 + 3, 100, 1e9, () => {}),
      [],
    );
    a.heartbeat(t0 + 4, true);
    assert.equal(leasesOfA(), 1);
    const committed = sql(db, "SELECT sum(next_offset) AS n FROM committed_offset WHERE grp = 'g'").get() as {
      n: number;
    };
    assert.equal(committed.n, 10);
    db.close();
  });

  test('a re-taken partition is not handed out again at later heartbeats while its old batch still runs', () => {
    const db = bareLog(join(dir, 'retaken.db'), 1, 10);
    const ttl = 1_000;
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], ttl), (err) => assert.fail(String(err)));
    const a = member('a');
    const b = member('b');
    a.heartbeat(t0, true);
    const stale = a.fetch(100, t0, 100, 1e9, () => {});
    assert.equal(stale.length, 10);
    b.heartbeat(t0 + 2 * ttl, true);
    b.leave();
    a.heartbeat(t0 + 2 * ttl + 100, true);
    a.heartbeat(t0 + 2 * ttl + 200, true);
    a.heartbeat(t0 + 2 * ttl + 300, true);
    assert.deepEqual(
      a.fetch(100, t0 + 2 * ttl + 300, 100, 1e9, () => {}).map((e) => e.message.offset),
      [],
      'messages still in flight in this member were handed out a second time',
    );
    // Once the old batch settles, the partition is taken again from the committed offset.
    for (const e of stale) e.cursor.succeed(e.message.offset);
    a.heartbeat(t0 + 2 * ttl + 400, true);
    a.heartbeat(t0 + 2 * ttl + 500, true);
    assert.equal(a.fetch(100, t0 + 2 * ttl + 500, 100, 1e9, () => {}).length, 10);
    db.close();
  });

  test('a message held back by notBefore is delivered when it is due, not at the next heartbeat', async () => {
    // Heartbeats every 40 s (TTL 120 s): only the loop's own deadline fetches it within the bound.
    const log = track(new EmbeddedLog(join(dir, 'due.db'), { retentionIntervalMs: 0, leaseTtlMs: 120_000 }));
    await log.ensureTopic('due', { partitions: 1 });
    const seen: string[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['due'],
      handler: async (b) => void seen.push(...b.map((m) => m.value)),
    });
    await log.publish([{ topic: 'due', value: 'now' }]);
    await waitFor('the first message', () => seen.length === 1);
    await log.publish([{ topic: 'due', value: 'later', notBefore: Date.now() + 200 }]);
    await waitFor('the held message', () => seen.length === 2, 20_000);
    assert.deepEqual(seen, ['now', 'later']);
    await consumer.stop();
  });

  test('a publish with an invalid message is refused and appends nothing', async () => {
    const path = join(dir, 'invalid.db');
    const log = track(new EmbeddedLog(path, { retentionIntervalMs: 0 }));
    await log.ensureTopic('inv', { partitions: 1 });
    await assert.rejects(
      log.publish([
        { topic: 'inv', value: 'fine' },
        { topic: 'inv', value: 42 as unknown as string },
      ]),
      { code: 'message_invalid' },
    );
    await assert.rejects(log.publish([{ topic: 'inv', value: '{}', notBefore: Number.NaN }]), {
      code: 'message_invalid',
    });
    const peek = new DatabaseSync(path, { readOnly: true });
    const rows = peek.prepare("SELECT count(*) AS n FROM record WHERE topic = 'inv'").get() as { n: number };
    peek.close();
    assert.equal(rows.n, 0);
  });

  test('an empty key is a key: its messages all land on its murmur2 partition, like Kafka', async () => {
    const path = join(dir, 'empty-key.db');
    const log = track(new EmbeddedLog(path, { retentionIntervalMs: 0 }));
    await log.ensureTopic('ek', { partitions: 4 });
    for (let i = 0; i < 8; i++) await log.publish([{ topic: 'ek', key: '', value: `${i}` }]);
    const peek = new DatabaseSync(path, { readOnly: true });
    const parts = peek
      .prepare("SELECT DISTINCT part FROM record WHERE topic = 'ek'")
      .all()
      .map((r) => (r as { part: number }).part);
    peek.close();
    assert.deepEqual(parts, [partitionForKey('', 4)]);
  });
  test('a member whose lease expired and was taken over fetches nothing more from that partition', () => {
    const db = bareLog(join(dir, 'taken.db'), 1, 10);
    const ttl = 1_000;
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], ttl), (err) => assert.fail(String(err)));
    const a = member('a');
    const b = member('b');
    a.heartbeat(t0, true);
    const first = a.fetch(5, t0, 100, 1e9, () => {});
    assert.equal(first.length, 5);
    // a stalls past its lease; b takes the partition over and holds it.
    b.heartbeat(t0 + 2 * ttl, true);
    a.heartbeat(t0 + 2 * ttl + 1, true);
    assert.deepEqual(
      a.fetch(100, t0 + 2 * ttl + 1, 100, 1e9, () => {}).map((e) => e.message.offset),
      [],
      'a kept handing out messages of a partition b holds',
    );
    db.close();
  });

  test('over its share, a member hands back an idle partition first, not one with messages in flight', () => {
    const db = bareLog(join(dir, 'idle-first.db'), 2, 10);
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], 10_000), (err) => assert.fail(String(err)));
    const a = member('a');
    a.heartbeat(t0, true);
    const inFlight = a.fetch(100, t0, 100, 1e9, () => {});
    // Settle every partition but the one of the first message: that one stays busy.
    const busy = inFlight[0]!.message.partition;
    const idle = inFlight.filter((e) => e.message.partition !== busy);
    assert.ok(idle.length > 0);
    for (const e of idle) e.cursor.succeed(e.message.offset);
    a.commit(new Set(idle.map((e) => e.cursor)));
    const b = member('b');
    b.heartbeat(t0 + 1, true);
    a.heartbeat(t0 + 2, true);
    b.heartbeat(t0 + 3, true);
    const leases = sql(db, "SELECT part, owner FROM lease WHERE grp = 'g' ORDER BY part").all() as Array<{
      part: number;
      owner: string;
    }>;
    assert.deepEqual(
      leases.map((l) => [l.part, l.owner]),
      [0, 1].map((p) => [p, p === busy ? 'a' : 'b']),
    );
    db.close();
  });
  test('a fetch takes about the byte budget (at least one message), even within one partition', () => {
    const db = bareLog(join(dir, 'bytes.db'), 1, 10);
    const t0 = Date.now();
    const a = new Assignment(new GroupStore(db, 'g', 'a', ['t.'], 10_000), (err) => assert.fail(String(err)));
    a.heartbeat(t0, true);
    assert.equal(a.fetch(100, t0, 100, 1, () => {}).length, 1);
    // Each message counts its value and key: "1" + "k1" is 3 bytes, so 4 bytes take two.
    assert.equal(a.fetch(100, t0, 100, 4, () => {}).length, 2);
    db.close();
  });

  test('successive fetches start at different partitions, so a deep backlog on one cannot starve another', () => {
    const db = bareLog(join(dir, 'rotate.db'), 2, 40);
    const t0 = Date.now();
    const a = new Assignment(new GroupStore(db, 'g', 'a', ['t.'], 10_000), (err) => assert.fail(String(err)));
    a.heartbeat(t0, true);
    const first = a.fetch(3, t0, 100, 1e9, () => {});
    const second = a.fetch(3, t0, 100, 1e9, () => {});
    assert.equal(new Set(first.map((e) => e.message.partition)).size, 1);
    assert.equal(new Set(second.map((e) => e.message.partition)).size, 1);
    assert.notEqual(first[0]!.message.partition, second[0]!.message.partition);
    db.close();
  });

  test('a stopped member hands its partitions back at once: another member takes over within a heartbeat, not the TTL', async () => {
    // TTL 120 s: a lease left behind would hold the partition far beyond the wait below.
    const log = track(
      new EmbeddedLog(join(dir, 'leave.db'), { retentionIntervalMs: 0, leaseTtlMs: 120_000 }),
    );
    await log.ensureTopic('lv', { partitions: 1 });
    const seenA: string[] = [];
    const a = log.consume({
      group: 'g',
      topicPrefixes: ['lv'],
      handler: async (b) => void seenA.push(...b.map((m) => m.value)),
    });
    await log.publish([{ topic: 'lv', value: 'a' }]);
    await waitFor('a to read', () => seenA.length === 1);
    await a.stop();
    const seenB: string[] = [];
    const b = log.consume({
      group: 'g',
      topicPrefixes: ['lv'],
      handler: async (batch) => void seenB.push(...batch.map((m) => m.value)),
    });
    await log.publish([{ topic: 'lv', value: 'b' }]);
    await waitFor('b to take the partition over', () => seenB.length === 1, 20_000);
    assert.deepEqual(seenB, ['b']);
    await b.stop();
  });
  test('a member whose lease another member now holds cannot commit its stale batch over theirs', () => {
    const db = bareLog(join(dir, 'fence.db'), 1, 20);
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
    // a stalls past its lease: b takes the partition, handles everything and keeps the lease.
    b.heartbeat(t0 + 2 * ttl, true);
    const all = b.fetch(100, t0 + 2 * ttl, 100, 1e9, () => {});
    for (const e of all) e.cursor.succeed(e.message.offset);
    b.commit(new Set(all.map((e) => e.cursor)));
    assert.equal(committed(), 20);
    for (const e of stale) e.cursor.succeed(e.message.offset);
    a.commit(new Set(stale.map((e) => e.cursor)));
    assert.equal(committed(), 20, 'the stale member moved the offset back');
    db.close();
  });

  test('a member notices at its next heartbeat a lease lost while it stalled, though the member count is back as before', () => {
    const db = bareLog(join(dir, 'lost-lease.db'), 2, 20);
    const ttl = 1_000;
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], ttl), (err) => assert.fail(String(err)));
    const a = member('a');
    const b = member('b');
    a.heartbeat(t0, true); // takes both partitions
    b.heartbeat(t0 + 1, true); // joins: share 1, nothing free
    a.heartbeat(t0 + 2, true); // hands one back
    a.heartbeat(t0 + 3, true); // two members, one lease: what it saw
    b.heartbeat(t0 + 4, true); // takes the other one
    const mine = sql(db, "SELECT part FROM lease WHERE owner = 'a'").get() as { part: number };
    // a stalls: b drops it from the group and takes its partition too.
    b.heartbeat(t0 + 2 * ttl, true);
    // a is back: two members again, as when it last looked, but it holds nothing now.
    a.heartbeat(t0 + 2 * ttl + 1, true);
    const taken = a.fetch(100, t0 + 2 * ttl + 1, 100, 1e9, () => {}).map((e) => e.message.partition);
    assert.deepEqual(taken, [], `a still fetched from partition ${mine.part}, which b holds`);
    db.close();
  });
  test('without a deadLetter callback a failing message goes on being redelivered past maxFailures', async () => {
    const log = track(new EmbeddedLog(join(dir, 'no-dlq.db'), { retentionIntervalMs: 0 }));
    await log.ensureTopic('nodlq', { partitions: 1 });
    await log.publish([{ topic: 'nodlq', value: 'bad' }]);
    const errors: unknown[] = [];
    let tries = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['nodlq'],
      redelivery: { maxFailures: 2, initialDelayMs: 1, maxDelayMs: 2 },
      onError: (err) => errors.push(err),
      handler: async (batch) => {
        tries += batch.length;
        return { failed: batch.map((message) => ({ message, error: new Error('bad') })) };
      },
    });
    await waitFor('redeliveries past maxFailures', () => tries >= 5);
    await consumer.stop();
    assert.deepEqual(errors, []);
  });
  test('a backlog is handed out in several concurrent batches up to maxInFlight, without waiting for a wake-up', async () => {
    // Heartbeats every 40 s (TTL 120 s): only the loop going on after a dispatch fills maxInFlight in time.
    const log = track(
      new EmbeddedLog(join(dir, 'concurrent.db'), { retentionIntervalMs: 0, leaseTtlMs: 120_000 }),
    );
    await log.ensureTopic('cc', { partitions: 1 });
    await log.publish(['0', '1', '2'].map((value) => ({ topic: 'cc', value })));
    let running = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['cc'],
      maxBatch: 1,
      maxInFlight: 3,
      handler: async () => {
        running += 1;
        await gate;
        return undefined;
      },
    });
    await waitFor('three batches running at once', () => running === 3, 20_000);
    release();
    await consumer.stop();
  });
  test('a message counts its value, key and header names and values against maxInFlightBytes', () => {
    assert.equal(
      sizeOf({ ...msg(0), value: 'abcd', key: 'kk', headers: { h1: 'xyz', h2: '' } }),
      4 + 2 + 5 + 2,
    );
  });

  test('consumer limits below 1 are refused when the consumer is made', async () => {
    const log = track(new EmbeddedLog(join(dir, 'limits.db'), { retentionIntervalMs: 0 }));
    const handler = async () => undefined;
    for (const limit of ['maxBatch', 'maxInFlight', 'maxInFlightPerPartition', 'maxInFlightBytes']) {
      assert.throws(
        () => log.consume({ group: 'g', topicPrefixes: ['x'], handler, [limit]: 0 }),
        { code: 'consumer_options_invalid' },
        limit,
      );
    }
    assert.throws(() => log.consume({ group: '', topicPrefixes: ['x'], handler }), {
      code: 'consumer_group_invalid',
    });
  });
  test('a topic ensured in the same process is picked up by a running consumer at once, not at its next heartbeat', async () => {
    // Heartbeats every 40 s (TTL 120 s): only the topic announcement makes it take the new partition in time.
    const log = track(
      new EmbeddedLog(join(dir, 'new-topic.db'), { retentionIntervalMs: 0, leaseTtlMs: 120_000 }),
    );
    const seen: string[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['nt.'],
      handler: async (b) => void seen.push(...b.map((m) => m.value)),
    });
    // Its first heartbeat (when it was made) listed the topics: nt.late is not among them.
    await log.ensureTopic('nt.late', { partitions: 1 });
    await log.publish([{ topic: 'nt.late', value: 'late' }]);
    await waitFor('the message of the new topic', () => seen.length === 1, 20_000);
    await consumer.stop();
  });
  test('retention visits only partitions whose commits moved, and every partition once a minute (aged unread records go then)', async () => {
    const db = bareLog(join(dir, 'full-run.db'), 1, 10);
    const now = Date.now();
    const changes = { seq: 0, fullAt: Number.NEGATIVE_INFINITY };
    const unread = { unreadPrefixes: ['t.'], changes };
    assert.equal(await deleteConsumedRecords(db, { ...unread, now, unreadMaxAgeMs: 3_600_000 }), 0);
    assert.equal(changes.fullAt, now, 'the first run is a whole one');
    // Every record is now past the unread age, but no commit moved: a run within the minute visits nothing.
    assert.equal(await deleteConsumedRecords(db, { ...unread, now: now + 30_000, unreadMaxAgeMs: 1 }), 0);
    assert.equal(
      await deleteConsumedRecords(db, { ...unread, now: now + 61_000, unreadMaxAgeMs: 1 }),
      10,
      'a minute after the last whole run, the next is whole again and applies the age rule',
    );
    assert.equal(changes.fullAt, now + 61_000);
    db.close();
  });
  test('a group not seen for two days still holds records back from retention (groups expire after a week)', async () => {
    const db = bareLog(join(dir, 'expiry.db'), 1, 10);
    const now = Date.now();
    const day = 24 * 3600 * 1000;
    db.exec(
      `INSERT INTO group_prefix (grp, prefix, seen_at) VALUES ('live', 't.', ${now}), ('away', 't.', ${now - 2 * day})`,
    );
    db.exec(`INSERT INTO committed_offset (grp, topic, part, next_offset) VALUES ('live', 't.x', 0, 10)`);
    assert.equal(
      await deleteConsumedRecords(db, { now }),
      0,
      'records the away group has not read were deleted',
    );
    assert.equal(
      await deleteConsumedRecords(db, { now: now + 6 * day }),
      10,
      'a group gone for a week still held them',
    );
    db.close();
  });
});
