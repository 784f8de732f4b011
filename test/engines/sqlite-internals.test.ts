/** SQLite engine internals: the v3 migration, the event-filter query plan, and group commit under a held lock. */
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { EmbeddedLog } from '../../src/engines/embedded/log.ts';
import {
  assertFlushable,
  atomically,
  encodeCursor,
  openDatabase,
  transaction,
  walFlusherOf,
} from '../../src/engines/sqlite/database.ts';
import { GroupCommit, MAX_TRANSACTION_BYTES } from '../../src/engines/sqlite/group-commit.ts';
import { MIGRATIONS } from '../../src/engines/sqlite/migrations.ts';
import { MAX_ROWS_EXAMINED } from '../../src/engines/sqlite/paging.ts';
import { ReadBatch } from '../../src/engines/sqlite/read-batch.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { WalFlusher } from '../../src/engines/sqlite/wal-flush.ts';
import { deadLetterRecord, deliveryRecord } from '../support/fixtures.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'webhooks-sqlite-internals-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('store migrations', () => {
  test('events routed before the route log are logged as routed at the upgrade, so history retention finds them', async () => {
    const path = join(dir, 'v4.db');
    const old = openDatabase(path, MIGRATIONS.slice(0, 4));
    old.prepare(`INSERT INTO event_route (event_id, source, delivery_id) VALUES ('e-old', '/s', '')`).run();
    old
      .prepare(`INSERT INTO event_route (event_id, source, delivery_id) VALUES ('e-old', '/s', 'msg_1')`)
      .run();
    old.close();
    const upgradedAt = new Date().toISOString();
    const store = new SqliteStore(path);
    try {
      assert.deepEqual(await store.deliveries.routed([{ id: 'e-old', source: '/s' }]), [true]);
      // Not older than a cutoff before the upgrade; older than one after it.
      assert.deepEqual(await store.deliveries.purgeBefore!('2020-01-01T00:00:00.000Z', 10), {
        deliveries: 0,
        routes: 0,
      });
      const later = new Date(Date.parse(upgradedAt) + 60_000).toISOString();
      assert.deepEqual(await store.deliveries.purgeBefore!(later, 10), { deliveries: 0, routes: 1 });
      assert.deepEqual(await store.deliveries.routed([{ id: 'e-old', source: '/s' }]), [false]);
    } finally {
      await store.close();
    }
  });

  test('deliveries written before event_route are found by event after the upgrades, and their events count as routed', async () => {
    const path = join(dir, 'v2.db');
    const old = openDatabase(path, MIGRATIONS.slice(0, 2));
    const rec = deliveryRecord();
    old
      .prepare(
        `INSERT INTO event_delivery_status (id, event_id, subscription_id, partner_id, status, created_at, doc)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        rec.id,
        rec.eventId,
        rec.subscriptionId,
        rec.partnerId,
        rec.status,
        rec.createdAt,
        JSON.stringify(rec),
      );
    old.close();
    const store = new SqliteStore(path);
    try {
      assert.deepEqual((await store.deliveries.list({ eventId: rec.eventId })).items, [rec]);
      assert.deepEqual(await store.deliveries.routed([{ id: rec.eventId, source: rec.eventSource }]), [true]);
    } finally {
      await store.close();
    }
    const db = openDatabase(path, MIGRATIONS);
    const indexes = db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'index'`).all();
    assert.equal(
      indexes.some((r) => r.name === 'delivery_by_event'),
      false,
    );
    assert.equal(
      db.prepare(`SELECT count(*) AS n FROM sqlite_schema WHERE name = 'event_delivery'`).get()!.n,
      0,
    );
    // The event filter is answered through event_route's primary key, not by scanning deliveries.
    const plan = db
      .prepare(
        `EXPLAIN QUERY PLAN SELECT doc FROM event_delivery_status
         WHERE id IN (SELECT delivery_id FROM event_route WHERE event_id = ?) AND event_id = ?
         ORDER BY created_at DESC, id DESC LIMIT ?`,
      )
      .all('e', 'e', 10)
      .map((r) => String(r.detail));
    assert.ok(
      plan.some((d) => /SEARCH event_route /.test(d)),
      plan.join('\n'),
    );
    assert.ok(!plan.some((d) => /^SCAN event_delivery_status/.test(d)), plan.join('\n'));
    db.close();
  });
});

describe('sqlite migration v12: dead letters apart from their documents', () => {
  test('dead letters stored before it keep everything; filters read small rows through indexes, documents for the page only', async () => {
    const path = join(dir, 'reasons.db');
    const old = openDatabase(path, MIGRATIONS.slice(0, 11));
    const before = deadLetterRecord({
      reason: 'http_400',
      value: JSON.stringify({ blob: 'b'.repeat(50_000) }),
    });
    const redriven = deadLetterRecord({ reason: 'http_500', redrivenAt: new Date().toISOString() });
    const insert = old.prepare(
      `INSERT INTO dead_letter (id, stage, event_id, subscription_id, created_at, redriven_at, doc)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const r of [before, redriven])
      insert.run(
        r.id,
        r.stage,
        null,
        r.subscriptionId ?? null,
        r.createdAt,
        r.redrivenAt ?? null,
        JSON.stringify(r),
      );
    old.close();
    const store = new SqliteStore(path);
    try {
      const after = deadLetterRecord({ reason: 'retries_exhausted' });
      await store.deadLetters.insert(after);
      await assert.rejects(store.deadLetters.insert(after), /already exists/);
      assert.deepEqual((await store.deadLetters.list({ reason: 'http_400' })).items, [before]);
      assert.deepEqual((await store.deadLetters.list({ reason: 'retries_exhausted' })).items, [after]);
      assert.deepEqual((await store.deadLetters.list({ reason: 'nothing' })).items, []);
      assert.deepEqual((await store.deadLetters.list({ pending: false })).items, [redriven]);
      const at = new Date().toISOString();
      assert.equal(await store.deadLetters.markRedriven(before.id, at), true);
      assert.equal(await store.deadLetters.markRedriven(before.id, at), false);
      assert.deepEqual((await store.deadLetters.list({ pending: false, reason: 'http_400' })).items, [
        { ...before, redrivenAt: at },
      ]);
      // History retention takes entries and documents together.
      assert.equal(await store.deadLetters.purgeBefore!(new Date(Date.now() + 60_000).toISOString(), 10), 3);
      assert.deepEqual((await store.deadLetters.list({})).items, []);
    } finally {
      await store.close();
    }
    const db = openDatabase(path, MIGRATIONS);
    assert.equal(
      db.prepare('SELECT count(*) AS n FROM dead_letter_doc').get()!.n,
      0,
      'no document left behind',
    );
    const plan = db
      .prepare(
        `EXPLAIN QUERY PLAN SELECT doc FROM dead_letter JOIN dead_letter_doc USING (id)
         WHERE reason = ? ORDER BY created_at ASC, id ASC LIMIT ?`,
      )
      .all('x', 10)
      .map((r) => String(r.detail));
    assert.ok(
      plan.some((d) => /dead_letter_by_reason/.test(d)),
      plan.join('\n'),
    );
    // The entries' rows hold no document.
    const columns = db
      .prepare('SELECT name FROM pragma_table_info(?)')
      .all('dead_letter')
      .map((r) => r.name);
    assert.ok(!columns.includes('doc'), columns.join(', '));
    db.close();
  });

  test('a redrive marks the small row only: the document is not rewritten, and listings show the mark', async () => {
    const path = join(dir, 'mark-row.db');
    const store = new SqliteStore(path);
    const record = deadLetterRecord({ value: JSON.stringify({ blob: 'b'.repeat(200_000) }) });
    try {
      await store.deadLetters.insert(record);
      const docOf = (db: DatabaseSync) =>
        db.prepare('SELECT doc FROM dead_letter_doc WHERE id = ?').get(record.id)!.doc as string;
      const reader = new DatabaseSync(path);
      const stored = docOf(reader);
      const at = new Date().toISOString();
      assert.equal(await store.deadLetters.markRedriven(record.id, at), true);
      // The 200 KB document is the same text: before, json_set rewrote all of it at each mark.
      assert.equal(docOf(reader), stored);
      assert.equal(JSON.parse(docOf(reader)).redrivenAt, undefined);
      assert.deepEqual((await store.deadLetters.list({ pending: false })).items, [
        { ...record, redrivenAt: at },
      ]);
      assert.deepEqual((await store.deadLetters.list({ pending: true })).items, []);
      assert.equal(await store.deadLetters.markRedriven(record.id, new Date().toISOString()), false);
      assert.equal((await store.deadLetters.list({})).items[0]?.redrivenAt, at, 'the first mark stays');
      reader.close();
    } finally {
      await store.close();
    }
  });
});

describe('connection settings', () => {
  test('temporary storage (the sub-journals of savepoints) stays in memory, not in temp files', () => {
    const db = openDatabase(join(dir, 'settings.db'), ['CREATE TABLE t (n INTEGER)']);
    assert.equal(db.prepare('PRAGMA temp_store').get()!.temp_store, 2);
    assert.equal(db.prepare('PRAGMA journal_mode').get()!.journal_mode, 'wal');
    db.close();
  });

  test('a new bus file has 8 KB pages (small commits rewrite whole tail pages)', async () => {
    const log = new EmbeddedLog(join(dir, 'page-size-bus.db'));
    const peek = new DatabaseSync(join(dir, 'page-size-bus.db'));
    try {
      assert.equal(peek.prepare('PRAGMA page_size').get()!.page_size, 8192);
    } finally {
      peek.close();
      await log.close();
    }
  });
});

describe('recording a first attempt', () => {
  test('a delivery that cannot be written takes its attempt row back (no savepoint on this path)', async () => {
    const store = new SqliteStore(join(dir, 'first-attempt.db'));
    const broken = { ...deliveryRecord(), createdAt: undefined } as unknown as ReturnType<
      typeof deliveryRecord
    >;
    const attempt = {
      deliveryId: broken.id,
      attempt: 1,
      at: new Date().toISOString(),
      latencyMs: 1,
      outcome: 'success' as const,
    };

    await assert.rejects(
      store.deliveries.recordAttempt(
        attempt,
        { status: 'SUCCESS', attempts: 1, updatedAt: attempt.at },
        broken,
      ),
    );

    assert.deepEqual(await store.deliveries.attempts(broken.id), []);
    assert.equal(await store.deliveries.get(broken.id), undefined);
    const fixed = deliveryRecord({ id: broken.id });
    await store.deliveries.recordAttempt(
      attempt,
      { status: 'SUCCESS', attempts: 1, updatedAt: attempt.at },
      fixed,
    );
    assert.deepEqual(await store.deliveries.attempts(broken.id), [attempt]);
    await store.close();
  });
});

describe('read batching', () => {
  test('reads issued in one turn run in one read transaction; a failing read rejects alone', async () => {
    const db = openDatabase(join(dir, 'read-batch.db'), ['CREATE TABLE t (n INTEGER)']);
    db.exec('INSERT INTO t VALUES (1), (2), (3)');
    const reads = new ReadBatch(db);
    const count = db.prepare('SELECT count(*) AS n FROM t');
    const inTransaction = () => ({ n: (count.get() as { n: number }).n, open: db.isTransaction });

    const together = await Promise.allSettled([
      reads.run(inTransaction),
      reads.run(() => {
        throw new Error('this read fails');
      }),
      reads.run(inTransaction),
    ]);
    const alone = await reads.run(inTransaction);

    assert.deepEqual(together[0], { status: 'fulfilled', value: { n: 3, open: true } });
    assert.equal(together[1]!.status, 'rejected');
    assert.deepEqual(together[2], { status: 'fulfilled', value: { n: 3, open: true } });
    assert.deepEqual(alone, { n: 3, open: false });
    assert.equal(db.isTransaction, false);
    db.close();
  });
});

describe('group commit', () => {
  test('gathers the operations of one window into a single transaction', async () => {
    const path = join(dir, 'window.db');
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const other = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const group = new GroupCommit(db, { windowMs: 5 });
    const insert = db.prepare('INSERT INTO t (n) VALUES (?)');
    const committed = other.prepare('SELECT count(*) AS n FROM t');
    // Operations queued within the window: while they run, another connection sees none of them.
    const seenByOther = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        group.run(() => {
          insert.run(i);
          return Number(committed.get()!.n);
        }),
      ),
    );
    assert.deepEqual(seenByOther, Array(50).fill(0));
    assert.equal(committed.get()!.n, 50);
    db.close();
    other.close();
  });

  test('waits for a lock held by another connection without freezing the event loop', async () => {
    const path = join(dir, 'busy.db');
    const holder = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const group = new GroupCommit(db, { windowMs: 1 });
    holder.exec('BEGIN IMMEDIATE');
    holder.exec('INSERT INTO t (n) VALUES (1)');
    let ticks = 0;
    const ticker = setInterval(() => {
      ticks += 1;
    }, 5);
    const released = new Promise<void>((resolve) =>
      setTimeout(() => {
        holder.exec('COMMIT');
        resolve();
      }, 150),
    );
    const started = Date.now();
    const value = await group.run(() => db.prepare('INSERT INTO t (n) VALUES (2)').run().changes);
    const waited = Date.now() - started;
    clearInterval(ticker);
    await released;
    assert.equal(value, 1);
    assert.ok(waited >= 140, `committed after ${waited} ms, while the lock was still held`);
    // A frozen loop (SQLite's sleeping busy handler) would have let the 5 ms timer fire once or twice.
    assert.ok(ticks >= 10, `the event loop ran ${ticks} timer ticks during the wait`);
    assert.deepEqual(
      db
        .prepare('SELECT n FROM t ORDER BY n')
        .all()
        .map((r) => r.n),
      [1, 2],
    );
    holder.close();
    db.close();
  });

  test('gives up with "database is locked" after its busy timeout, and the next operation succeeds', async () => {
    const path = join(dir, 'timeout.db');
    const holder = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const group = new GroupCommit(db, { windowMs: 1, busyTimeoutMs: 50 });
    holder.exec('BEGIN IMMEDIATE');
    await assert.rejects(
      group.run(() => 1),
      /database is locked/,
    );
    holder.exec('COMMIT');
    assert.equal(await group.run(() => 2), 2);
    holder.close();
    db.close();
  });

  test('drain commits what is queued at once (closing the store loses no write)', async () => {
    const path = join(dir, 'drain.db');
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const group = new GroupCommit(db, { windowMs: 10_000 });
    const done = group.run(() => db.prepare('INSERT INTO t (n) VALUES (7)').run().changes);
    group.drain();
    assert.equal(await done, 1);
    db.close();
    const again = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    assert.equal(again.prepare('SELECT count(*) AS n FROM t').get()!.n, 1);
    again.close();
  });

  test('a synchronous transaction waits for a held lock at most 750 ms (its thread frozen): less than a third of a consumer lease', () => {
    const path = join(dir, 'sync-cap.db');
    const holder = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    holder.exec('BEGIN IMMEDIATE');
    const started = performance.now();
    // The consumer lease is 3 s and heartbeats come every second: a wait must end before either. The
    // error is the capped wait's own (SQLite's busy handler would wait 5 s and say nothing of it).
    assert.throws(
      () => transaction(db, () => db.exec('INSERT INTO t (n) VALUES (1)')),
      /database is locked \(waited 750 ms/,
    );
    const blocked = performance.now() - started;
    holder.exec('ROLLBACK');
    assert.ok(blocked >= 700, `gave up after ${Math.round(blocked)} ms, before its cap`);
    holder.close();
    db.close();
  });

  test('a short transaction waits out another connection’s write lock instead of failing', () => {
    const path = join(dir, 'tx.db');
    const a = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const b = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    transaction(a, () => a.exec('INSERT INTO t (n) VALUES (1)'));
    transaction(b, () => b.exec('INSERT INTO t (n) VALUES (2)'));
    assert.equal(a.prepare('SELECT count(*) AS n FROM t').get()!.n, 2);
    a.close();
    b.close();
  });

  test('a transaction SQLite rolls back by itself (disk full) commits none of its operations, tells each the cause, and runs the rest in the next', async () => {
    const path = join(dir, 'full.db');
    const db = openDatabase(path, ['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)'], {
      durability: 'relaxed',
    });
    const pages = Number(db.prepare('PRAGMA page_count').get()!.page_count);
    db.exec(`PRAGMA max_page_count = ${pages + 3}`);
    const group = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO t (id, v) VALUES (?, ?)');
    const outcomes = await Promise.allSettled([
      group.run(() => atomically(db, () => insert.run(1, 'x'.repeat(100)))),
      group.run(() => atomically(db, () => insert.run(2, 'y'.repeat(200_000)))), // over the page cap
      group.run(() => atomically(db, () => insert.run(3, 'z'.repeat(100)))),
    ]);
    assert.deepEqual(
      outcomes.map((o) => (o.status === 'fulfilled' ? 'committed' : (o.reason as Error).message)),
      ['database or disk is full', 'database or disk is full', 'committed'],
    );
    const other = new DatabaseSync(path);
    assert.deepEqual(
      other
        .prepare('SELECT id FROM t')
        .all()
        .map((r) => r.id),
      [3],
      'what a caller was told failed is not there, and what it was told committed is',
    );
    other.close();
    db.close();
  });
});

describe('durability', () => {
  test('a connection whose WAL flush failed says so to readiness checks (assertFlushable), as its writes do', () => {
    let failing = false;
    const db = openDatabase(join(dir, 'flush-readiness.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'fsync',
      syncCalls: {
        sync: (_fd, done) => setImmediate(() => done(null)),
        syncNow: () => {
          if (failing) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        },
      },
    });
    transaction(db, () => db.exec('INSERT INTO t (n) VALUES (1)'));
    assertFlushable(db); // fine so far
    failing = true;
    assert.throws(() => transaction(db, () => db.exec('INSERT INTO t (n) VALUES (2)')), /EIO/);
    failing = false; // the disk answers again: what came after the failure is still not durable
    assert.throws(() => assertFlushable(db), /until the process restarts/);
    db.close();
  });

  test('a failed WAL flush is final: later flushes fail with it even when the disk answers again', async () => {
    const path = join(dir, 'flush-fails.db');
    writeFileSync(`${path}-wal`, '');
    let failNext = true;
    const calls = {
      sync: (_fd: number, done: (err: NodeJS.ErrnoException | null) => void) =>
        setImmediate(() => {
          const fail = failNext;
          failNext = false;
          done(fail ? Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }) : null);
        }),
      syncNow: () => {},
    };
    const flusher = new WalFlusher(path, calls);
    const first = flusher.flush();
    const joined = flusher.flush(); // waits for the flush after the one under way
    await assert.rejects(first, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'wal_flush_failed');
      assert.match(err.message, /EIO.*until the process restarts/);
      return true;
    });
    await assert.rejects(joined, /EIO/);
    // The disk answers again (failNext is false), but what came after the failed flush is not durable.
    await assert.rejects(flusher.flush(), /EIO/);
    assert.throws(() => flusher.flushSync(), /EIO/);
    flusher.close();
  });

  /** Counts the WAL flushes of a connection, and lets the test decide when each one completes. */
  function gatedFlushes(db: DatabaseSync) {
    const flusher = walFlusherOf(db)!;
    const real = flusher.flush.bind(flusher);
    const gates: Array<() => void> = [];
    flusher.flush = () =>
      new Promise<void>((resolve, reject) => {
        gates.push(() => real().then(resolve, reject));
      });
    return { gates };
  }

  test('with fsync durability a write is acknowledged once the WAL is flushed, and the writes of the meantime share a flush', async () => {
    const db = openDatabase(join(dir, 'durable.db'), ['CREATE TABLE t (n INTEGER)'], { durability: 'fsync' });
    const { gates } = gatedFlushes(db);
    const group = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO t (n) VALUES (?)');
    let acked = 0;
    const writes = Array.from({ length: 20 }, (_, i) =>
      group
        .run(() => insert.run(i))
        .then(() => {
          acked += 1;
        }),
    );
    // Committed (another connection would see the rows), but not acknowledged before the flush ends.
    while (gates.length === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()!.n, 20);
    assert.equal(acked, 0, 'nothing acknowledged before the flush');
    assert.equal(gates.length, 1, 'one flush for the twenty writes of one turn');
    gates[0]!();
    await Promise.all(writes);
    assert.equal(acked, 20);
    db.close();
  });

  test('a write marked durable: false (a ledger claim) is acknowledged at commit, before any flush', async () => {
    const db = openDatabase(join(dir, 'claim.db'), ['CREATE TABLE t (n INTEGER)'], { durability: 'fsync' });
    const { gates } = gatedFlushes(db);
    const group = new GroupCommit(db);
    await group.run(() => db.prepare('INSERT INTO t (n) VALUES (1)').run(), { durable: false });
    assert.equal(gates.length, 0, 'no flush was waited for');
    db.close();
  });

  test('closing while a flush runs still settles the writes that wait for the next one', async () => {
    const path = join(dir, 'close-flush.db');
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)'], { durability: 'fsync' });
    db.exec('INSERT INTO t (n) VALUES (1)');
    const flusher = walFlusherOf(db)!;
    const first = flusher.flush();
    const second = flusher.flush(); // waits for the flush after the running one
    db.close();
    flusher.close();
    await Promise.all([first, second]);
  });

  test('under load, writes of many turns gather into fewer commits', async () => {
    const db = openDatabase(join(dir, 'gather.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'relaxed',
    });
    let commits = 0;
    // The pace is set by the test's clock, not by how fast this machine runs the turns: 20 writes
    // every 0.5 ms is 120 per 3 ms window, far more than the 16 from which commits gather.
    let clock = 0;
    const group = new GroupCommit(db, { onCommit: () => (commits += 1), now: () => clock });
    const insert = db.prepare('INSERT INTO t (n) VALUES (?)');
    const writes: Array<Promise<unknown>> = [];
    for (let turn = 0; turn < 60; turn++) {
      for (let i = 0; i < 20; i++) writes.push(group.run(() => insert.run(turn)));
      clock += 0.5;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(writes);
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()!.n, 1200);
    assert.ok(commits < 40, `${commits} commits for 60 turns of writes`);
    db.close();
  });

  test('with untilIdle, gathering writes commit on the first turn that brings no more, not when the window ends', async () => {
    const db = openDatabase(join(dir, 'until-idle.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'relaxed',
    });
    const other = openDatabase(join(dir, 'until-idle.db'), ['CREATE TABLE t (n INTEGER)']);
    const committed = other.prepare('SELECT count(*) AS n FROM t');
    const insert = db.prepare('INSERT INTO t (n) VALUES (?)');
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    /** Resolves with `work` if it settles within `turns` event-loop turns, else rejects. */
    const within = async <T>(work: Promise<T>, turns: number): Promise<T> => {
      let done = false;
      const result = work.finally(() => {
        done = true;
      });
      for (let i = 0; i < turns && !done; i++) await turn();
      if (!done) throw new Error(`not settled within ${turns} turns`);
      return result;
    };
    /** A group whose window never ends within the test, and whose clock says the load is high. */
    const loaded = (untilIdle: boolean) => {
      let clock = 0;
      const commits: number[] = [];
      const group = new GroupCommit(db, {
        windowMs: 600_000,
        untilIdle,
        now: () => clock,
        onCommit: () => commits.push(Number(committed.get()!.n)),
      });
      return {
        group,
        commits,
        /** 200 writes in the first 100 ms of the clock: from then on writes gather for the window. */
        async warm() {
          await Promise.all(Array.from({ length: 200 }, (_, i) => group.run(() => insert.run(i))));
          clock = 100;
        },
      };
    };

    // Without untilIdle: queued writes wait for the window, turn after turn.
    const plain = loaded(false);
    await plain.warm();
    const before = plain.commits.length;
    let settled = 0;
    const waiting = Array.from({ length: 20 }, (_, i) =>
      plain.group.run(() => insert.run(i)).then(() => settled++),
    );
    for (let i = 0; i < 20; i++) await turn();
    assert.equal(settled, 0, 'committed before the window ended');
    plain.group.drain();
    await Promise.all(waiting);
    assert.equal(plain.commits.length, before + 1);

    // With it: writes that keep coming over several turns gather into one commit, made on the first
    // turn that brings none.
    const idle = loaded(true);
    try {
      await idle.warm();
      const start = Number(committed.get()!.n);
      const commitsBefore = idle.commits.length;
      const writes: Array<Promise<unknown>> = [];
      for (let t = 0; t < 5; t++) {
        for (let i = 0; i < 10; i++) writes.push(idle.group.run(() => insert.run(i)));
        await turn();
      }
      await within(Promise.all(writes), 3);
      assert.deepEqual(
        idle.commits.slice(commitsBefore),
        [start + 50],
        'one commit for the 50 writes of five turns',
      );
      // A closed loop: 8 writers, each writing again once its last write is committed — 40 rounds.
      await within(
        Promise.all(
          Array.from({ length: 8 }, async (_, w) => {
            for (let r = 0; r < 40; r++) await idle.group.run(() => insert.run(w));
          }),
        ),
        1000,
      );
      assert.equal(Number(committed.get()!.n), start + 50 + 320);
    } finally {
      idle.group.drain(); // a failed check leaves no timer running
    }
    db.close();
    other.close();
  });

  test('writes over MAX_TRANSACTION_BYTES between them are split over transactions, the event loop running between two', async () => {
    const db = openDatabase(join(dir, 'split.db'), ['CREATE TABLE t (n INTEGER, v TEXT)'], {
      durability: 'relaxed',
    });
    const marks: string[] = [];
    const group = new GroupCommit(db, { onCommit: () => marks.push('commit') });
    const insert = db.prepare('INSERT INTO t (n, v) VALUES (?, ?)');
    const mib = 'x'.repeat(1024 * 1024);
    let ticking = true;
    const tick = () => {
      marks.push('turn');
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    // Five writes of 1 MiB queued in one turn: at most two per transaction (MAX_TRANSACTION_BYTES).
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        group.run(
          () => {
            marks.push('write');
            insert.run(i, mib);
          },
          { bytes: mib.length },
        ),
      ),
    );
    ticking = false;
    assert.equal(MAX_TRANSACTION_BYTES, 2 * 1024 * 1024);
    const sequence = marks.filter((m, i) => m !== 'turn' || marks[i - 1] !== 'turn').join(' ');
    assert.match(sequence, /^(turn )?write write commit turn write write commit turn write commit/);
    // Small writes are not held back: all of them in one transaction.
    marks.length = 0;
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => group.run(() => marks.push(`w${i}`), { bytes: 100 })),
    );
    assert.equal(marks.filter((m) => m === 'commit').length, 1);
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()!.n, 5);
    db.close();
  });

  test('commits never fsync inside COMMIT (synchronous = NORMAL); relaxed durability has no flusher at all', () => {
    const durable = openDatabase(join(dir, 'sync-fsync.db'), [], { durability: 'fsync' });
    const relaxed = openDatabase(join(dir, 'sync-relaxed.db'), [], { durability: 'relaxed' });
    assert.equal(durable.prepare('PRAGMA synchronous').get()!.synchronous, 1);
    assert.equal(relaxed.prepare('PRAGMA synchronous').get()!.synchronous, 1);
    assert.ok(walFlusherOf(durable));
    assert.equal(walFlusherOf(relaxed), undefined);
    durable.close();
    relaxed.close();
  });

  test('the embedded log counts what its appends write: publishes of 1.5 MiB in one turn are one transaction each', async () => {
    const log = new EmbeddedLog(join(dir, 'split-bus.db'), { retentionIntervalMs: 0 });
    await log.ensureTopic('big', { partitions: 1 });
    const flusher = walFlusherOf((log as unknown as { db: DatabaseSync }).db)!;
    const real = flusher.flush.bind(flusher);
    let transactions = 0;
    flusher.flush = () => {
      transactions += 1;
      return real();
    };
    const value = 'y'.repeat(1536 * 1024);
    await Promise.all([1, 2, 3].map(() => log.publish([{ topic: 'big', value }])));
    assert.equal(transactions, 3);
    transactions = 0;
    await Promise.all([1, 2, 3].map(() => log.publish([{ topic: 'big', value: 'small' }])));
    assert.equal(transactions, 1);
    await log.close();
  });

  test('the store counts what dead letters and held tasks write: three of 1.5 MiB in one turn are committed one by one', async () => {
    const path = join(dir, 'split-store.db');
    const store = new SqliteStore(path, { durability: 'relaxed' });
    const other = new DatabaseSync(path);
    const count = (table: string) => Number(other.prepare(`SELECT count(*) AS n FROM ${table}`).get()!.n);
    const value = JSON.stringify({ blob: 'z'.repeat(1536 * 1024) });
    // What another connection sees at each turn while they are written: one more each time.
    const seen = async (table: string, write: (i: number) => Promise<unknown>) => {
      const counts: number[] = [];
      let next: NodeJS.Immediate;
      const look = () => {
        counts.push(count(table));
        next = setImmediate(look);
      };
      next = setImmediate(look);
      await Promise.all([0, 1, 2].map(write));
      clearImmediate(next);
      counts.push(count(table));
      return [...new Set(counts)];
    };
    assert.deepEqual(
      await seen('dead_letter', () => store.deadLetters.insert(deadLetterRecord({ value }))),
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      await seen('held_task', (i) =>
        store.heldTasks.hold({
          id: `0190b000-0000-7000-8000-00000000000${i}`,
          subscriptionId: 'sub-large',
          heldAt: new Date().toISOString(),
          topic: 'egress.acme.orders.created',
          value,
          headers: {},
        }),
      ),
      [0, 1, 2, 3],
    );
    other.close();
    await store.close();
  });

  test('a topic created on a durable log is flushed off the event loop: ensureTopic resolves after the flush, which never runs synchronously', async () => {
    const log = new EmbeddedLog(join(dir, 'topic-flush.db'), { retentionIntervalMs: 0 });
    const db = (log as unknown as { db: DatabaseSync }).db;
    const flusher = walFlusherOf(db)!;
    let syncFlushes = 0;
    flusher.flushSync = () => {
      syncFlushes += 1;
    };
    const { gates } = gatedFlushes(db);
    let created = false;
    const ensuring = log.ensureTopic('fresh', { partitions: 2 }).then(() => {
      created = true;
    });
    for (let turn = 0; turn < 100 && gates.length === 0 && !created; turn++)
      await new Promise((resolve) => setImmediate(resolve));
    assert.equal(syncFlushes, 0, 'no fdatasync on the calling thread');
    assert.equal(gates.length, 1, 'flushed by the flusher off the event loop');
    assert.equal(created, false, 'not acknowledged before its flush');
    assert.deepEqual(await log.describeTopic('fresh'), { name: 'fresh', partitions: 2 });
    for (const gate of gates) gate();
    await ensuring;
    assert.equal(created, true);
    await log.close();
  });

  /** An embedded log on a new file with one topic, and another connection holding its write lock. */
  async function logLockedOut(file: string) {
    const path = join(dir, file);
    const log = new EmbeddedLog(path, { retentionIntervalMs: 0 });
    await log.ensureTopic('warm', { partitions: 1 });
    const other = new DatabaseSync(path);
    other.exec('BEGIN IMMEDIATE');
    return { log, other };
  }

  test('a topic created while another connection holds the write lock waits for it without holding the event loop', async () => {
    const { log, other } = await logLockedOut('topic-lock.db');
    let created = false;
    let failed: unknown;
    const ensuring = log.ensureTopic('locked-out', { partitions: 2 }).then(
      () => {
        created = true;
      },
      (err: unknown) => {
        failed = err;
      },
    );
    // The call returned while the lock is held (a synchronous wait would have held this thread up
    // to 750 ms, then failed), and timers keep firing while it waits.
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.equal(failed, undefined);
    assert.equal(created, false, 'not created while the lock is held');
    assert.equal(await log.describeTopic('locked-out'), undefined);
    other.exec('COMMIT');
    await ensuring;
    assert.equal(failed, undefined);
    assert.deepEqual(await log.describeTopic('locked-out'), { name: 'locked-out', partitions: 2 });
    other.close();
    await log.close();
  });

  test('two topics created in the same turn are both created: no transaction stays open across an await', async () => {
    const log = new EmbeddedLog(join(dir, 'topics-same-turn.db'), { retentionIntervalMs: 0 });
    const both = await Promise.allSettled([
      log.ensureTopic('first', { partitions: 1 }),
      log.ensureTopic('second', { partitions: 1 }),
    ]);
    assert.deepEqual(
      both.map((r) => (r.status === 'fulfilled' ? 'ok' : String(r.reason))),
      ['ok', 'ok'],
    );
    assert.deepEqual(await log.describeTopic('first'), { name: 'first', partitions: 1 });
    assert.deepEqual(await log.describeTopic('second'), { name: 'second', partitions: 1 });
    await log.close();
  });

  test('a consumer that commits its offset while a topic is being created loses neither', async () => {
    const path = join(dir, 'topic-and-commit.db');
    const log = new EmbeddedLog(path, { retentionIntervalMs: 0 });
    await log.ensureTopic('t.a', { partitions: 1 });
    await log.publish([{ topic: 't.a', value: '1' }]);
    let handled!: () => void;
    const received = new Promise<void>((resolve) => {
      handled = resolve;
    });
    let settle!: (result: { failed: [] }) => void;
    const settled = new Promise<{ failed: [] }>((resolve) => {
      settle = resolve;
    });
    const errors: unknown[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['t.a'],
      handler: () => {
        handled();
        return settled;
      },
      onError: (err) => errors.push(err),
    });
    await received;
    // The batch's commit runs in the microtasks that follow, while the topic's transaction is begun.
    settle({ failed: [] });
    await log.ensureTopic('t.b', { partitions: 1 });
    await consumer.stop();
    assert.deepEqual(errors, []);
    const reader = new DatabaseSync(path);
    const offsets = reader.prepare('SELECT grp, next_offset FROM committed_offset').all();
    reader.close();
    assert.deepEqual(
      offsets.map((o) => ({ ...o })),
      [{ grp: 'g', next_offset: 1 }],
    );
    assert.deepEqual(await log.describeTopic('t.b'), { name: 't.b', partitions: 1 });
    await log.close();
  });

  test('a topic waiting for the write lock when its log is closed fails instead of waiting on', async () => {
    const { log, other } = await logLockedOut('topic-lock-close.db');
    const ensuring = log.ensureTopic('never', { partitions: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1));
    await log.close();
    await assert.rejects(ensuring, /not open/);
    other.exec('ROLLBACK');
    other.close();
  });

  test('an append to the embedded log resolves after its flush, while consumers may read it from the commit on', async () => {
    const log = new EmbeddedLog(join(dir, 'durable-bus.db'), { retentionIntervalMs: 0 });
    await log.ensureTopic('t', { partitions: 1 });
    const { gates } = gatedFlushes((log as unknown as { db: DatabaseSync }).db);
    const seen: string[] = [];
    const consumer = log.consume({
      group: 'g',
      topicPrefixes: ['t'],
      handler: async (b) => void seen.push(...b.map((m) => m.value)),
    });
    let acked = false;
    const publishing = log.publish([{ topic: 't', value: 'v' }]).then(() => {
      acked = true;
    });
    while (seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(acked, false, 'read by a consumer before the producer is acknowledged');
    while (gates.length === 0) await new Promise((resolve) => setImmediate(resolve));
    for (const gate of gates) gate();
    await publishing;
    assert.equal(acked, true);
    await consumer.stop();
    await log.close();
  });
});

describe('WAL checkpoints left to another connection', () => {
  test('a log that leaves checkpoints lets its WAL grow until checkpoint() is called', async () => {
    const path = join(dir, 'bus-nocheckpoint.db');
    const log = new EmbeddedLog(path, { autoCheckpoint: false, retentionIntervalMs: 0 });
    await log.ensureTopic('t', { partitions: 1 });
    const value = 'x'.repeat(1000);
    // ~24 MB: past SQLite's default autocheckpoint (1,000 pages of 16 KB).
    for (let i = 0; i < 24; i++) {
      await log.publish(Array.from({ length: 1000 }, () => ({ topic: 't', value })));
    }
    const walFrames = () => {
      const probe = new DatabaseSync(path, { readOnly: true });
      try {
        // A PASSIVE checkpoint on a read-only connection only reports: frames in the WAL, frames copied.
        return probe.prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as { log: number; checkpointed: number };
      } finally {
        probe.close();
      }
    };
    const before = statSync(`${path}-wal`).size;
    assert.ok(before > 20 * 1024 * 1024, `the WAL holds everything written: ${before} bytes`);
    log.checkpoint();
    const after = walFrames();
    assert.equal(after.checkpointed, after.log, 'every frame copied into the database file');
    await log.close();
  });
});

const count = (path: string, sql: string): number => {
  const db = new DatabaseSync(path);
  try {
    return Number(db.prepare(sql).get()!.n);
  } finally {
    db.close();
  }
};

describe('history retention leaves nothing behind', () => {
  // Mutant H7: the purge deleted only the event's routed marker, never its delivery links.
  test("purging an old route deletes the event's delivery links too, not only its marker", async () => {
    const path = join(dir, 'route-links.db');
    const store = new SqliteStore(path);
    const old = '2020-01-01T00:00:00.000Z';
    const d = deliveryRecord({ createdAt: old, status: 'SUCCESS' });
    await store.deliveries.recordRouting({ id: d.eventId, source: d.eventSource }, [d.id, `${d.id}-b`], old);
    await store.deliveries.ensure(d);
    assert.deepEqual(await store.deliveries.purgeBefore!('2020-06-01T00:00:00.000Z', 10), {
      deliveries: 1,
      routes: 1,
    });
    await store.close();
    assert.equal(count(path, 'SELECT count(*) AS n FROM event_route'), 0, 'no delivery link left behind');
    assert.equal(count(path, 'SELECT count(*) AS n FROM route_log'), 0);
  });

  // Mutant X6: the documents' delete chose its rows in another order than the entries' delete.
  test('purging dead letters of different ages in chunks leaves no document behind and hides no entry', async () => {
    const path = join(dir, 'dl-docs.db');
    const store = new SqliteStore(path);
    const old = ['2020-01-01', '2020-02-01', '2020-03-01'].map((day) =>
      deadLetterRecord({ createdAt: `${day}T00:00:00.000Z` }),
    );
    for (const d of old) await store.deadLetters.insert(d);
    const before = '2020-06-01T00:00:00.000Z';
    assert.equal(await store.deadLetters.purgeBefore!(before, 2), 2);
    assert.deepEqual(
      (await store.deadLetters.list({})).items.map((d) => d.id),
      [old[2]!.id],
      'the entry the first chunk left is still listed, with its document',
    );
    assert.equal(await store.deadLetters.purgeBefore!(before, 2), 1);
    await store.close();
    assert.equal(count(path, 'SELECT count(*) AS n FROM dead_letter_doc'), 0, 'no document left behind');
  });
});

describe('writes of several statements are all or nothing', () => {
  // Mutant X7: the dead letter's insert outside its savepoint (the group commits the half written).
  test('a dead letter whose document cannot be written leaves no entry behind', async () => {
    const store = new SqliteStore(join(dir, 'dl-half.db'));
    const good = deadLetterRecord();
    // Its row is written first; its document (JSON) cannot be (a BigInt).
    const broken = { ...good, headers: { n: 1n } } as unknown as typeof good;
    await assert.rejects(store.deadLetters.insert(broken));
    await store.deadLetters.insert(good);
    assert.deepEqual((await store.deadLetters.list({ eventId: good.eventId })).items, [good]);
    await store.close();
  });

  // Mutant G5: `committed` ran COMMIT instead of ROLLBACK when the function threw.
  test('transaction() rolls back what the function wrote when it throws', () => {
    const path = join(dir, 'rollback.db');
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    assert.throws(
      () =>
        transaction(db, () => {
          db.prepare('INSERT INTO t (n) VALUES (1)').run();
          throw new Error('half-way');
        }),
      /half-way/,
    );
    assert.equal(db.isTransaction, false);
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()!.n, 0);
    db.close();
  });
});

describe('group commit drain', () => {
  // Mutant G6: drain flushed one transaction only (`if` for `while`); the rest never settled.
  test('drain commits everything queued, also what needs more than one transaction', async () => {
    const path = join(dir, 'drain-many.db');
    const db = openDatabase(path, ['CREATE TABLE t (n INTEGER)']);
    const group = new GroupCommit(db, { windowMs: 10_000 });
    const bytes = Math.ceil(MAX_TRANSACTION_BYTES * 0.75);
    const writes = [1, 2, 3].map((n) =>
      group.run(() => db.prepare('INSERT INTO t (n) VALUES (?)').run(n).changes, { bytes }),
    );
    group.drain();
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()!.n, 3, 'all three committed by drain');
    const settled = await Promise.race([
      Promise.all(writes),
      new Promise((resolve) => setTimeout(() => resolve('not settled'), 500)),
    ]);
    assert.deepEqual(settled, [1, 1, 1]);
    db.close();
  });
});

describe('migrations', () => {
  // Mutant G2: v9 created held_count without counting the tasks held already.
  test('tasks held before v9 are counted after the upgrade, and keep their PENDING deliveries', async () => {
    const path = join(dir, 'v8.db');
    const old = openDatabase(path, MIGRATIONS.slice(0, 8));
    const d = deliveryRecord({
      createdAt: '2020-01-01T00:00:00.000Z',
      updatedAt: '2020-01-01T00:00:00.000Z',
      status: 'PENDING',
    });
    const insert = old.prepare('INSERT INTO held_task (subscription_id, id, doc) VALUES (?, ?, ?)');
    for (const id of ['t-1', 't-2']) {
      const task = {
        id,
        subscriptionId: d.subscriptionId,
        heldAt: d.createdAt,
        topic: 'egress.acme.orders.created',
        value: '{}',
        headers: {},
      };
      insert.run(d.subscriptionId, id, JSON.stringify(task));
    }
    old.close();
    const store = new SqliteStore(path);
    try {
      assert.equal(await store.heldTasks.count(d.subscriptionId), 2);
      await store.deliveries.ensure(d);
      for (let i = 0; i < 3; i++) await store.deliveries.purgeBefore!('2020-06-01T00:00:00.000Z', 10);
      assert.equal((await store.deliveries.get(d.id))?.status, 'PENDING', 'its task is held: kept');
    } finally {
      await store.close();
    }
  });
});

describe('listing cursors', () => {
  // Mutant A2: an admin table's cursor with a key of the wrong length reached SQL (a 500, not a 400).
  test('a cursor of the right listing with a key of the wrong length is a validation error', async () => {
    const store = new SqliteStore(join(dir, 'cursor.db'));
    try {
      await assert.rejects(
        store.schemas.list({}, { cursor: encodeCursor('event_schema', ['orders']) }),
        (err: unknown) => (err as { code?: string }).code === 'cursor_invalid',
      );
    } finally {
      await store.close();
    }
  });
});

describe('listing deliveries by a filter that matches few rows', () => {
  // Found in a 100,000-request fuzz: `?status=FAILED` (or `?eventId=…&status=…`, which the planner
  // read through the time index) examined every delivery on the thread that answers requests —
  // 75-100 ms at 200,000 rows, and on without bound as they grow.
  test('a page examines at most MAX_ROWS_EXAMINED rows, goes on from the last of them, and misses nothing', async () => {
    const store = new SqliteStore(join(dir, 'few-matches.db'));
    try {
      const base = Date.parse('2026-03-01T00:00:00.000Z');
      const at = (i: number) => new Date(base + i).toISOString();
      const failed = await store.deliveries.ensure(
        deliveryRecord({ partnerId: 'acme', subscriptionId: 'sub-1', status: 'FAILED', createdAt: at(0) }),
      );
      const n = MAX_ROWS_EXAMINED + 50;
      const writes: Array<Promise<unknown>> = [];
      for (let i = 1; i <= n; i++) {
        writes.push(
          store.deliveries.ensure(
            deliveryRecord({
              partnerId: 'acme',
              subscriptionId: 'sub-1',
              status: 'SUCCESS',
              createdAt: at(i),
            }),
          ),
        );
      }
      await Promise.all(writes);
      // Newest first: the first MAX_ROWS_EXAMINED rows hold no FAILED one. The page is empty, and says where to go on.
      const first = await store.deliveries.list({ status: 'FAILED' }, { limit: 10 });
      assert.deepEqual(first.items, []);
      assert.ok(first.next, 'an empty page that was cut short has a next');
      const second = await store.deliveries.list({ status: 'FAILED' }, { limit: 10, cursor: first.next! });
      assert.deepEqual(
        second.items.map((d) => d.id),
        [failed.id],
      );
      assert.equal(second.next, undefined);
      // The same through the subscription's and the partner's index, and a filter matching nothing.
      for (const filter of [
        { subscriptionId: 'sub-1', status: 'FAILED' as const },
        { partnerId: 'acme', status: 'FAILED' as const },
      ]) {
        const pages: string[][] = [];
        let cursor: string | undefined;
        do {
          const page = await store.deliveries.list(filter, { limit: 10, ...(cursor ? { cursor } : {}) });
          pages.push(page.items.map((d) => d.id));
          cursor = page.next;
        } while (cursor);
        assert.deepEqual(pages, [[], [failed.id]], JSON.stringify(filter));
      }
      // By event: through its links, not by examining the rows (no page cut short, no next).
      const byEvent = await store.deliveries.list({ eventId: failed.eventId, status: 'FAILED' });
      assert.deepEqual([byEvent.items.map((d) => d.id), byEvent.next], [[failed.id], undefined]);
      // Without a filter the rows are not examined one by one: a page is its limit.
      assert.equal((await store.deliveries.list({}, { limit: 10 })).items.length, 10);
    } finally {
      await store.close();
    }
  });
});
