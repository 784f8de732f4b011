/** The embedded durable log: the bus conformance suite, plus what only the embedded engine promises. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumedMessage } from '../../src/common/ports/bus.ts';
import { appendMessages, appendTransaction } from '../../src/engines/embedded/appender.ts';
import { Assignment } from '../../src/engines/embedded/assignment.ts';
import type { EmbeddedConsumer } from '../../src/engines/embedded/consumer.ts';
import { backoffMs, PartitionCursor, redeliveryPolicy } from '../../src/engines/embedded/cursor.ts';
import { GroupStore } from '../../src/engines/embedded/group-store.ts';
import { EmbeddedLog } from '../../src/engines/embedded/log.ts';
import { murmur2 } from '../../src/engines/embedded/partitioner.ts';
import { deleteConsumedRecords } from '../../src/engines/embedded/retention.ts';
import { BUS_MIGRATIONS, sql } from '../../src/engines/embedded/schema.ts';
import { openDatabase, unflushedTransaction } from '../../src/engines/sqlite/database.ts';
import { runBusConformance } from '../conformance/bus.ts';
import { runTopicAdminConformance } from '../conformance/bus-admin.ts';

runBusConformance('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-log-'));
  return {
    open: async () => new EmbeddedLog(join(dir, 'bus.db')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

runTopicAdminConformance('embedded log', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-log-admin-'));
  return {
    open: async () => new EmbeddedLog(join(dir, 'bus.db')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

async function waitFor(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('embedded log', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-log-only-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('partitions keys with Kafka murmur2 (vectors from Kafka UtilsTest)', () => {
    const hash = (s: string) => murmur2(new TextEncoder().encode(s));
    assert.equal(hash('21'), -973932308);
    assert.equal(hash('foobar'), -790332482);
    assert.equal(hash('a-little-bit-longer-string'), -1486304829);
    assert.equal(hash('abc'), 479470107);
  });

  test('the commit advances only over the contiguous prefix of handled offsets', () => {
    const cursor = new PartitionCursor('t', 0, 0);
    for (const offset of [0, 1, 2]) cursor.handOut(offset);
    cursor.succeed(1);
    assert.equal(cursor.takeCommit(), undefined);
    cursor.succeed(0);
    assert.equal(cursor.takeCommit(), 2);
  });

  test('a failed offset waits alone for its redelivery; the handled ones after it are not handed out again', () => {
    const policy = redeliveryPolicy({ initialDelayMs: 100, maxDelayMs: 250, maxFailures: 4 });
    const cursor = new PartitionCursor('t', 0, 0);
    const message = (offset: number) =>
      ({ topic: 't', partition: 0, offset, value: '', headers: {}, timestamp: 0 }) as ConsumedMessage;
    for (const offset of [0, 1, 2]) cursor.handOut(offset);
    cursor.succeed(0);
    cursor.fail(1, message(1), { error: new Error('x'), permanent: false }, 1000, policy);
    cursor.succeed(2);
    assert.equal(cursor.takeCommit(), 1);
    assert.equal(cursor.readyAt(), undefined, 'nothing newer is fetched while it waits');
    assert.equal(cursor.retryAt(), 1100);
    assert.deepEqual(cursor.takeDue(1099, 10), []);
    const [due] = cursor.takeDue(1100, 10);
    assert.equal(due!.message.offset, 1);
    assert.equal(due!.deadLetter, false);
    // Backoff doubles, capped: 100, 200, 250; the fourth failure gives up (dead-letter, due at once).
    cursor.fail(1, message(1), { error: new Error('x'), permanent: false }, 2000, policy);
    assert.equal(cursor.retryAt(), 2200);
    cursor.takeDue(2200, 10);
    cursor.fail(1, message(1), { error: new Error('x'), permanent: false }, 3000, policy);
    assert.equal(cursor.retryAt(), 3250);
    cursor.takeDue(3250, 10);
    const last = cursor.fail(1, message(1), { error: new Error('last'), permanent: false }, 4000, policy)!;
    assert.equal(last.deadLetter, true);
    assert.equal(last.failures, 4);
    assert.equal(cursor.retryAt(), 4000);
    cursor.takeDue(4000, 10);
    cursor.succeed(1);
    assert.equal(cursor.takeCommit(), 3, 'handled once dead-lettered: the commit passes offsets 1 and 2');
    assert.equal(cursor.readyAt(), 0);
    assert.equal(backoffMs(policy, 50), 250);
  });

  test('a permanent failure is given up at once', () => {
    const cursor = new PartitionCursor('t', 0, 0);
    cursor.handOut(0);
    const retry = cursor.fail(
      0,
      { topic: 't', partition: 0, offset: 0, value: '', headers: {}, timestamp: 0 },
      { error: new Error('bad'), permanent: true },
      10,
      redeliveryPolicy(),
    )!;
    assert.equal(retry.deadLetter, true);
    assert.equal(retry.dueAt, 10);
  });

  test('records deleted before a group read them are skipped loudly: onError names the range', async () => {
    const log = new EmbeddedLog(join(dir, 'skipped.db'), { retentionIntervalMs: 0 });
    await log.ensureTopic('gone', { partitions: 1 });
    await log.publish(['0', '1', '2', '3', '4'].map((value) => ({ topic: 'gone', value })));
    const early: string[] = [];
    const reader = log.consume({
      group: 'early',
      topicPrefixes: ['gone'],
      handler: async (b) => void early.push(...b.map((m) => m.value)),
    });
    await waitFor('the early group', () => early.length === 5);
    await reader.stop();
    // Only the early group was ever seen reading the topic: retention deletes what it read.
    assert.equal(await log.retention(), 5);
    await log.publish([{ topic: 'gone', value: '5' }]);
    const errors: unknown[] = [];
    const late: string[] = [];
    const consumer = log.consume({
      group: 'late',
      topicPrefixes: ['gone'],
      onError: (err) => errors.push(err),
      handler: async (b) => void late.push(...b.map((m) => m.value)),
    });
    await waitFor('the record after the gap', () => late.includes('5'));
    await consumer.stop();
    await log.close();
    assert.deepEqual(late, ['5']);
    const skipped = errors.find((e) => (e as { code?: string }).code === 'records_skipped') as Error & {
      skipped: unknown;
    };
    assert.ok(skipped, 'the skip was reported');
    assert.deepEqual(skipped.skipped, { topic: 'gone', partition: 0, from: 0, to: 5 });
    assert.match(skipped.message, /records 0\.\.4 of gone\/0 were deleted before this group read them/);
  });

  test('a retention run that fails is told to onError (not swallowed)', async () => {
    const path = join(dir, 'retention-error.db');
    const errors: unknown[] = [];
    const log = new EmbeddedLog(path, { retentionIntervalMs: 10, onError: (err) => errors.push(err) });
    await log.ensureTopic('r', { partitions: 1 });
    const consumer = log.consume({ group: 'g', topicPrefixes: ['r'], handler: async () => undefined });
    // Another connection breaks what retention reads.
    const other = new DatabaseSync(path);
    other.exec('DROP TABLE group_prefix');
    other.close();
    await waitFor('the retention error', () => errors.length > 0);
    await consumer.stop().catch(() => {});
    await log.close();
    assert.match(String(errors[0]), /group_prefix/);
  });

  test('the work of heartbeats and fetches follows what changed, not how many partitions there are', async () => {
    const log = new EmbeddedLog(join(dir, 'proportional.db'), { retentionIntervalMs: 0, leaseTtlMs: 90 });
    for (let t = 0; t < 200; t++) await log.ensureTopic(`many.${t}`, { partitions: 4 });
    const seen: string[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['many.'],
      handler: async (b) => void seen.push(...b.map((m) => m.value)),
    }) as EmbeddedConsumer;
    await log.publish([{ topic: 'many.199', key: 'k', value: 'first' }]);
    await waitFor('the first message', () => seen.includes('first'));
    const { reads } = consumer;
    const before = { ...reads };
    for (let i = 0; i < 20; i++) {
      await log.publish([{ topic: 'many.0', key: 'k', value: `m${i}` }]);
      await waitFor(`m${i}`, () => seen.includes(`m${i}`));
    }
    // At least ten heartbeats with nothing changed in the topics or the group.
    const heartbeats = reads.heartbeats;
    await waitFor('ten heartbeats', () => reads.heartbeats >= heartbeats + 10);
    await consumer.stop();
    await log.close();
    assert.equal(reads.topicLists, before.topicLists, 'the 800 partitions were not listed again');
    assert.equal(reads.leaseScans, before.leaseScans, "the group's leases were not read again");
    assert.ok(
      reads.endOffsetRows - before.endOffsetRows <= 20,
      `${reads.endOffsetRows - before.endOffsetRows} log-end rows read for 20 appends to one partition`,
    );
  });

  test('publishing to an unknown topic fails with topic_not_found and appends nothing', async () => {
    const log = new EmbeddedLog(join(dir, 'unknown.db'));
    await log.ensureTopic('known', { partitions: 1 });
    await assert.rejects(
      log.publish([
        { topic: 'known', value: '1' },
        { topic: 'missing', value: '2' },
      ]),
      (err: unknown) => (err as { code?: string }).code === 'topic_not_found',
    );
    const seen: ConsumedMessage[] = [];
    await log.publish([{ topic: 'known', value: '3' }]);
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['known'],
      handler: async (b) => void seen.push(...b),
    });
    await waitFor('the message', () => seen.length >= 1);
    await consumer.stop();
    await log.close();
    assert.deepEqual(
      seen.map((m) => [m.offset, m.value]),
      [[0, '3']],
    );
  });

  test('publishes of one turn share a transaction: one that fails leaves the others written, stamped with a sequence the log clock holds', async () => {
    const file = join(dir, 'group.db');
    const log = new EmbeddedLog(file);
    await log.ensureTopic('a', { partitions: 2 });
    await log.ensureTopic('b', { partitions: 1 });
    const reader = new DatabaseSync(file, { readOnly: true });
    const clock = () => (reader.prepare('SELECT seq FROM log_clock').get() as { seq: number }).seq;
    const before = clock();
    // Same turn: one group transaction. The failing call is in the middle (rolled back alone).
    const results = await Promise.allSettled([
      log.publish([{ topic: 'a', key: 'x', value: '1' }]),
      log.publish([{ topic: 'missing', value: '2' }]),
      log.publish([
        { topic: 'a', key: 'y', value: '3' },
        { topic: 'b', value: '4' },
      ]),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    const after = clock();
    assert.ok(after > before, 'the clock moved');
    const stamps = reader
      .prepare('SELECT topic, part, seq FROM partition_log ORDER BY topic, part')
      .all() as Array<{
      topic: string;
      seq: number;
    }>;
    const written = stamps.filter((s) => s.seq > before);
    assert.ok(written.length >= 2, JSON.stringify(stamps));
    // Every partition written is stamped with a sequence no later than the clock: a reader of the
    // changes since `before` sees them all, and the next transaction's stamps come after.
    for (const s of written) assert.ok(s.seq <= after, JSON.stringify(stamps));
    await log.publish([{ topic: 'b', value: '5' }]);
    const next = reader.prepare("SELECT seq FROM partition_log WHERE topic = 'b'").get() as { seq: number };
    assert.ok(next.seq > after, 'a later transaction stamps a later sequence');
    reader.close();
    const seen: string[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['a', 'b'],
      handler: async (batch) => void seen.push(...batch.map((m) => m.value)),
    });
    await waitFor('the messages', () => seen.length >= 4);
    await consumer.stop();
    await log.close();
    assert.deepEqual(seen.sort(), ['1', '3', '4', '5']);
  });

  test('retention deletes records every reading group committed past, and keeps the rest', async () => {
    const log = new EmbeddedLog(join(dir, 'retention.db'), { retentionIntervalMs: 0 });
    await log.ensureTopic('read', { partitions: 1 });
    await log.ensureTopic('unread', { partitions: 1 });
    await log.publish(['0', '1', '2', '3', '4'].map((value) => ({ topic: 'read', value })));
    await log.publish([{ topic: 'unread', value: 'u' }]);
    const all: string[] = [];
    const some: string[] = [];
    const fast = log.consume({
      group: 'all',
      topicPrefixes: ['read'],
      handler: async (b) => void all.push(...b.map((m) => m.value)),
    });
    const slow = log.consume({
      group: 'some',
      topicPrefixes: ['read'],
      handler: async (b) => {
        some.push(...b.map((m) => m.value));
        return {
          failed: b.filter((m) => m.offset >= 2).map((message) => ({ message, error: new Error('later') })),
        };
      },
    });
    await waitFor('both groups', () => all.length >= 5 && some.length >= 5);
    await Promise.all([fast.stop(), slow.stop()]);

    assert.equal(await log.retention(), 2);
    const later: ConsumedMessage[] = [];
    const fresh = log.consume({
      group: 'fresh',
      topicPrefixes: ['read', 'unread'],
      handler: async (b) => void later.push(...b),
    });
    await waitFor('the kept records', () => later.length >= 4);
    await fresh.stop();
    await log.close();
    assert.deepEqual(later.map((m) => `${m.topic}:${m.offset}`).sort(), [
      'read:2',
      'read:3',
      'read:4',
      'unread:0',
    ]);
  });

  test('the retention timer deletes consumed records by itself, every second', async () => {
    const path = join(dir, 'retention-timer.db');
    const log = new EmbeddedLog(path);
    await log.ensureTopic('timed', { partitions: 2 });
    await log.publish(
      Array.from({ length: 40 }, (_, i) => ({ topic: 'timed', key: `k${i}`, value: `${i}` })),
    );
    let seen = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['timed'],
      handler: async (b) => {
        seen += b.length;
      },
    });
    const peek = new DatabaseSync(path, { readOnly: true });
    const stored = () => (peek.prepare('SELECT count(*) AS n FROM record').get() as { n: number }).n;
    await waitFor('the records to be consumed', () => seen === 40);
    await waitFor('the timer to delete them', () => stored() === 0, 5000);
    // Records published later are deleted by a later run, once consumed.
    await log.publish([{ topic: 'timed', key: 'k0', value: 'late' }]);
    await waitFor('the late record to go too', () => seen === 41 && stored() === 0, 5000);
    peek.close();
    await consumer.stop();
    await log.close();
  });

  test('records of a topic no group reads are kept for the unread retention, then deleted', async () => {
    const path = join(dir, 'retention-unread.db');
    const log = new EmbeddedLog(path, { retentionIntervalMs: 0, unreadRetentionMs: 60_000 });
    await log.ensureTopic('dlq.test', { partitions: 1 });
    await log.publish([{ topic: 'dlq.test', value: 'old' }]);
    const db = new DatabaseSync(path);
    // Make the first record two minutes old, then add a fresh one.
    db.prepare('UPDATE record SET ts = ts - 120000').run();
    await log.publish([{ topic: 'dlq.test', value: 'fresh' }]);
    assert.equal(await log.retention(), 1);
    const left = db.prepare('SELECT value FROM record').all() as Array<{ value: string }>;
    assert.deepEqual(
      left.map((r) => r.value),
      ['fresh'],
    );
    // Both old: everything goes, and offsets go on from where they were.
    db.prepare('UPDATE record SET ts = ts - 120000').run();
    assert.equal(await log.retention(), 1);
    await log.publish([{ topic: 'dlq.test', value: 'next' }]);
    const next = db.prepare('SELECT off FROM record').all() as Array<{ off: number }>;
    assert.deepEqual(
      next.map((r) => r.off),
      [2],
    );
    // A topic outside the DLQ topics that no group reads keeps its records, however old (its
    // groups may only be down).
    await log.ensureTopic('egress.nobody', { partitions: 1 });
    await log.publish([{ topic: 'egress.nobody', value: 'backlog' }]);
    db.prepare(`UPDATE record SET ts = ts - 120000 WHERE topic = 'egress.nobody'`).run();
    assert.equal(await log.retention(), 0);
    db.close();
    await log.close();
  });

  test('a paced retention run rests between its transactions: a publisher appends while it runs', async () => {
    const path = join(dir, 'retention-paced.db');
    const log = new EmbeddedLog(path, { retentionIntervalMs: 0 });
    await log.ensureTopic('paced', { partitions: 1 });
    await log.publish(Array.from({ length: 500 }, (_, i) => ({ topic: 'paced', value: `${i}` })));
    let seen = 0;
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['paced'],
      handler: async (b) => {
        seen += b.length;
      },
    });
    await waitFor('the records to be consumed', () => seen === 500);
    await consumer.stop();
    const db = new DatabaseSync(path);
    const cleaned = new Map<string, number>();
    let finished = false;
    const run = deleteConsumedRecords(db, { chunk: 50, paced: true, cleaned }).then((n) => {
      finished = true;
      return n;
    });
    // The first chunk has run; the publish below waits for no more than that.
    await log.publish([{ topic: 'paced', value: 'during' }]);
    assert.equal(finished, false, 'the publish did not wait for the whole run');
    assert.equal(await run, 500);
    assert.equal(cleaned.get('paced\n0'), 500);
    // Nothing new was consumed: the next run skips the partition (and deletes nothing).
    assert.equal(await deleteConsumedRecords(db, { cleaned }), 0);
    const left = db.prepare('SELECT value FROM record').all() as Array<{ value: string }>;
    assert.deepEqual(
      left.map((r) => r.value),
      ['during'],
    );
    db.close();
    await log.close();
  });

  test('a crash (closed without stop) redelivers the unfinished batch to the next member', async () => {
    const path = join(dir, 'crash.db');
    const first = new EmbeddedLog(path, { leaseTtlMs: 600 });
    await first.ensureTopic('crash', { partitions: 1 });
    await first.publish([
      { topic: 'crash', value: 'a' },
      { topic: 'crash', value: 'b' },
    ]);
    let started = false;
    first.consume({
      group: 'g',
      topicPrefixes: ['crash'],
      handler: () => {
        started = true;
        return new Promise(() => {});
      },
    });
    await waitFor('the batch to start', () => started);
    await first.close();

    const second = new EmbeddedLog(path, { leaseTtlMs: 600 });
    const seen: string[] = [];
    const consumer = second.consume({
      group: 'g',
      topicPrefixes: ['crash'],
      handler: async (b) => void seen.push(...b.map((m) => m.value)),
    });
    await waitFor('the redelivery', () => seen.length >= 2);
    await consumer.stop();
    await second.close();
    assert.deepEqual(seen, ['a', 'b']);
  });

  test('a killed process loses nothing: another process takes its partitions over after the lease TTL', async () => {
    const path = join(dir, 'killed.db');
    const log = new EmbeddedLog(path, { leaseTtlMs: 1000 });
    await log.ensureTopic('killed', { partitions: 2 });
    await log.publish(
      Array.from({ length: 10 }, (_, i) => ({ topic: 'killed', key: `k${i}`, value: `${i}` })),
    );
    const logModule = new URL('../../src/engines/embedded/log.ts', import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { EmbeddedLog } = await import(${JSON.stringify(logModule)});
         const log = new EmbeddedLog(${JSON.stringify(path)}, { leaseTtlMs: 1000 });
         log.consume({ group: 'g', topicPrefixes: ['killed'], handler: (b) => {
           console.log('started ' + b.length);
           return new Promise(() => {});
         } });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    await waitFor('the child to take a batch', () => output.includes('started'));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));

    const seen = new Set<string>();
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['killed'],
      handler: async (b) => {
        for (const m of b) seen.add(m.value);
        return undefined;
      },
    });
    await waitFor('every message', () => seen.size === 10);
    await consumer.stop();
    await log.close();
  });

  test('a member that takes back a partition it lost unseen starts from the committed offset, not its stale cursor', async () => {
    const db = openDatabase(join(dir, 'retaken.db'), BUS_MIGRATIONS, { durability: 'relaxed' });
    db.exec(`INSERT INTO topic (name, partitions, created_at) VALUES ('t.x', 1, 'now')`);
    unflushedTransaction(db, () =>
      appendMessages(
        db,
        Array.from({ length: 20 }, (_, i) => ({ topic: 't.x', value: String(i) })),
        new Map(),
        appendTransaction(db),
      ),
    );
    const ttl = 1_000;
    const t0 = Date.now();
    const member = (owner: string) =>
      new Assignment(new GroupStore(db, 'g', owner, ['t.'], ttl), (err) => assert.fail(String(err)));
    const committed = () =>
      (sql(db, 'SELECT next_offset FROM committed_offset').get() as { next_offset: number }).next_offset;
    const a = member('a');
    const b = member('b');
    a.heartbeat(t0, true);
    const stale = a.fetch(10, t0, 100, 1e9, () => {});
    assert.deepEqual(
      stale.map((e) => e.message.offset),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    // a stalls longer than the lease: b takes the partition, handles all twenty, commits, leaves.
    b.heartbeat(t0 + 2 * ttl, true);
    const all = b.fetch(100, t0 + 2 * ttl, 100, 1e9, () => {});
    for (const e of all) e.cursor.succeed(e.message.offset);
    b.commit(new Set(all.map((e) => e.cursor)));
    assert.equal(committed(), 20);
    b.leave();
    // a wakes: its heartbeat takes the free partition again, then its old batch settles.
    a.heartbeat(t0 + 2 * ttl + 100, true);
    for (const e of stale) e.cursor.succeed(e.message.offset);
    a.commit(new Set(stale.map((e) => e.cursor)));
    assert.equal(committed(), 20, 'the stale batch did not move the offset back');
    a.heartbeat(t0 + 2 * ttl + 200, true);
    assert.deepEqual(
      a.fetch(100, t0 + 2 * ttl + 200, 100, 1e9, () => assert.fail('skipped')),
      [],
    );
    db.close();
  });

  test('an offset commit whose write failed is written again by the next heartbeat, with no new message', () => {
    const path = join(dir, 'commit-again.db');
    const db = openDatabase(path, BUS_MIGRATIONS, { durability: 'relaxed' });
    db.exec(`INSERT INTO topic (name, partitions, created_at) VALUES ('t.x', 1, 'now')`);
    unflushedTransaction(db, () =>
      appendMessages(db, [{ topic: 't.x', value: 'only' }], new Map(), appendTransaction(db)),
    );
    const errors: unknown[] = [];
    const member = new Assignment(new GroupStore(db, 'g', 'a', ['t.'], 3_000), (err) => errors.push(err));
    const committed = () =>
      (sql(db, 'SELECT next_offset FROM committed_offset').get() as { next_offset: number } | undefined)
        ?.next_offset;
    member.heartbeat(Date.now(), true);
    const [entry] = member.fetch(10, Date.now(), 100, 1e9, () => {});
    entry!.cursor.succeed(entry!.message.offset);
    const holder = new DatabaseSync(path);
    holder.exec('BEGIN IMMEDIATE');
    member.commit([entry!.cursor]);
    holder.exec('ROLLBACK');
    holder.close();
    assert.match(String(errors[0]), /database is locked/);
    assert.equal(committed(), undefined, 'not written while the lock was held');
    member.heartbeat(Date.now(), true);
    assert.equal(committed(), 1, 'written by the heartbeat after');
    assert.equal(errors.length, 1);
    db.close();
  });

  test('a lease handed back while another connection holds the write lock waits no longer than the capped lock wait', () => {
    const path = join(dir, 'release-locked.db');
    const db = openDatabase(path, BUS_MIGRATIONS, { durability: 'relaxed' });
    db.exec(`INSERT INTO topic (name, partitions, created_at) VALUES ('t.x', 1, 'now')`);
    const store = new GroupStore(db, 'g', 'a', ['t.'], 3_000);
    assert.equal(store.heartbeat(Date.now(), true).held.length, 1);
    const holder = new DatabaseSync(path);
    holder.exec('BEGIN IMMEDIATE');
    // SQLite's busy timeout (5 s) would outlast the 3 s lease of every consumer on this thread: the
    // error must come from the capped wait (750 ms), not from SQLite's busy handler.
    assert.throws(() => store.release('t.x', 0), /database is locked \(waited 750 ms/);
    holder.exec('ROLLBACK');
    holder.close();
    db.close();
  });

  test('two connections on one file (two processes) share a group without processing a message twice', async () => {
    const path = join(dir, 'shared.db');
    const a = new EmbeddedLog(path);
    const b = new EmbeddedLog(path);
    await a.ensureTopic('shared', { partitions: 4 });
    const counts = new Map<string, number>();
    const handler = async (batch: ConsumedMessage[]) => {
      for (const m of batch) counts.set(m.value, (counts.get(m.value) ?? 0) + 1);
      await sleep(2);
      return undefined;
    };
    const consumers = [a, b].map((log) =>
      log.consume({ group: 'g', topicPrefixes: ['shared'], maxBatch: 20, handler }),
    );
    for (let wave = 0; wave < 6; wave++) {
      await (wave % 2 ? a : b).publish(
        Array.from({ length: 50 }, (_, i) => ({ topic: 'shared', key: `k${i}`, value: `${wave}-${i}` })),
      );
      await sleep(300);
    }
    await waitFor('every message', () => counts.size === 300);
    await sleep(300);
    await Promise.all(consumers.map((c) => c.stop()));
    await Promise.all([a.close(), b.close()]);
    assert.deepEqual(
      [...counts.values()].filter((n) => n !== 1),
      [],
    );
  });
});
