/** SQLite store behaviour pinned by mutation testing: close, patches, retention boundaries, paging. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { uuidv7 } from '../../src/common/ids.ts';
import type { DeliveryRecord } from '../../src/common/model.ts';
import { atomically, encodeCursor, openDatabase } from '../../src/engines/sqlite/database.ts';
import { GroupCommit, MAX_TRANSACTION_BYTES } from '../../src/engines/sqlite/group-commit.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { heldTask } from '../conformance/store-held-tasks.ts';
import { deadLetterRecord, deliveryRecord, partnerRecord, testId } from '../support/fixtures.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'webhooks-sqlite-mutants-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A store on its own file, closed after `fn`. */
async function withStore(name: string, fn: (store: SqliteStore) => Promise<void>): Promise<void> {
  const store = new SqliteStore(join(dir, `${name}.db`));
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

describe('closing the store', () => {
  // Mutant: close() without draining the group commit; the queued write was rejected as closed.
  test('a write issued just before close is committed and acknowledged, and found after reopening', async () => {
    const path = join(dir, 'close-drains.db');
    const store = new SqliteStore(path);
    const partner = partnerRecord({ id: testId('p-') });
    const written = store.partners.insert(partner);
    await store.close();
    await written;
    const reopened = new SqliteStore(path);
    try {
      assert.equal((await reopened.partners.get(partner.id))?.id, partner.id);
    } finally {
      await reopened.close();
    }
  });
});

describe('admin records', () => {
  // Mutant: insert stored the record's own revision in the document (the column said 1).
  test('a created record is stored at revision 1 whatever revision it came with, and updates from there', async () => {
    await withStore('revision', async (store) => {
      const partner = partnerRecord({ id: testId('p-'), revision: 5 });
      await store.partners.insert(partner);
      const got = await store.partners.get(partner.id);
      assert.equal(got?.revision, 1);
      const updated = await store.partners.update({ ...got!, name: 'renamed' });
      assert.equal(updated.revision, 2);
    });
  });

  // Mutant: the audit log's next page without an actor filter began at the cursor's own entry.
  test('paging the whole audit log repeats no entry', async () => {
    await withStore('audit', async (store) => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const id = uuidv7();
        ids.push(id);
        await store.audit.append({
          id,
          at: new Date().toISOString(),
          actor: 'admin-token',
          action: 'POST /admin/partners',
          target: {},
          fields: [],
          status: 201,
          requestId: 'req-1',
        });
      }
      const first = await store.audit.list({}, { limit: 2 });
      assert.ok(first.next);
      const second = await store.audit.list({}, { limit: 2, cursor: first.next });
      assert.deepEqual(
        [...first.items, ...second.items].map((r) => r.id),
        [...ids].reverse(),
      );
      assert.equal(second.next, undefined);
    });
  });
});

describe('delivery patches', () => {
  // Mutant: a required field given as undefined was removed from the record (status, attempts gone).
  test('status and attempts given as undefined stay as they were; an optional field given as undefined goes', async () => {
    await withStore('patch', async (store) => {
      const d = await store.deliveries.ensure(
        deliveryRecord({ status: 'FAILED', attempts: 3, nextAttemptAt: '2026-01-01T00:01:00.000Z' }),
      );
      await store.deliveries.patch(d.id, {
        status: undefined,
        attempts: undefined,
        nextAttemptAt: undefined,
        updatedAt: '2026-01-01T00:02:00.000Z',
      } as Partial<DeliveryRecord> & { updatedAt: string });
      const got = await store.deliveries.get(d.id);
      assert.equal(got?.status, 'FAILED');
      assert.equal(got?.attempts, 3);
      assert.equal(got?.updatedAt, '2026-01-01T00:02:00.000Z');
      assert.equal('nextAttemptAt' in got!, false);
      assert.deepEqual(
        (await store.deliveries.list({ status: 'FAILED' })).items.map((x) => x.id),
        [d.id],
      );
    });
  });
});

describe('delivery history retention', () => {
  // Mutants: old deliveries selected with `created_at <= cutoff`; a route kept only for deliveries
  // created strictly after the cutoff (`>`), so one created at the cutoff lost its route.
  test('a finished delivery created exactly at the cutoff stays, and is still found by its event', async () => {
    await withStore('cutoff', async (store) => {
      const cutoff = '2019-06-01T00:00:00.000Z';
      const d = await store.deliveries.ensure(
        deliveryRecord({ status: 'SUCCESS', createdAt: cutoff, updatedAt: cutoff }),
      );
      const event = { id: d.eventId, source: d.eventSource };
      await store.deliveries.recordRouting(event, [d.id], '2019-03-01T00:00:00.000Z');
      assert.deepEqual(await store.deliveries.purgeBefore!(cutoff, 10), { deliveries: 0, routes: 1 });
      assert.equal((await store.deliveries.get(d.id))?.id, d.id);
      assert.deepEqual(
        (await store.deliveries.list({ eventId: d.eventId })).items.map((x) => x.id),
        [d.id],
      );
      assert.deepEqual(await store.deliveries.routed([event]), [true]);
    });
  });

  // Mutant: a kept route was not logged again, so it was never looked at again and stayed for ever.
  test('a route kept for a held delivery goes in a later pass once the delivery has gone', async () => {
    await withStore('route-again', async (store) => {
      const routedAt = '2019-03-01T00:00:00.000Z';
      const d = await store.deliveries.ensure(
        deliveryRecord({ status: 'PENDING', createdAt: routedAt, updatedAt: routedAt }),
      );
      const event = { id: d.eventId, source: d.eventSource };
      await store.deliveries.recordRouting(event, [d.id], routedAt);
      const task = heldTask(d.subscriptionId, { heldAt: routedAt });
      await store.heldTasks.hold(task);
      assert.deepEqual(await store.deliveries.purgeBefore!('2019-06-01T00:00:00.000Z', 10), {
        deliveries: 0,
        routes: 1,
      });
      assert.deepEqual(await store.deliveries.routed([event]), [true], 'kept while its delivery is');
      await store.heldTasks.remove(d.subscriptionId, [task.id]);
      const later = new Date(Date.now() + 86_400_000).toISOString();
      assert.deepEqual(await store.deliveries.purgeBefore!(later, 10), { deliveries: 1, routes: 1 });
      assert.deepEqual(await store.deliveries.routed([event]), [false], 'its route went with it');
    });
  });

  // Mutant: a kept route was logged again as of now even when the cutoff is later, so the next
  // chunk of the same pass (same cutoff) found it again — and a chunk full of them never ends the pass.
  test('a kept route looked at once is not looked at again by the next chunk with the same cutoff', async () => {
    await withStore('route-cutoff', async (store) => {
      const routedAt = '2019-03-01T00:00:00.000Z';
      const d = await store.deliveries.ensure(
        deliveryRecord({ status: 'PENDING', createdAt: routedAt, updatedAt: routedAt }),
      );
      const event = { id: d.eventId, source: d.eventSource };
      await store.deliveries.recordRouting(event, [d.id], routedAt);
      await store.heldTasks.hold(heldTask(d.subscriptionId, { heldAt: routedAt }));
      const cutoff = new Date(Date.now() + 86_400_000).toISOString();
      assert.deepEqual(await store.deliveries.purgeBefore!(cutoff, 10), { deliveries: 0, routes: 1 });
      assert.deepEqual(await store.deliveries.purgeBefore!(cutoff, 10), { deliveries: 0, routes: 0 });
      assert.deepEqual(await store.deliveries.routed([event]), [true]);
    });
  });

  // Mutant: routing an event again (a redelivered batch) logged it again at the later time.
  test('an event routed twice is logged once, at its first time', async () => {
    await withStore('route-twice', async (store) => {
      const event = { id: testId('evt-'), source: '/orders' };
      await store.deliveries.recordRouting(event, [], '2019-01-01T00:00:00.000Z');
      await store.deliveries.recordRouting(event, [], '2019-05-01T00:00:00.000Z');
      assert.deepEqual(await store.deliveries.purgeBefore!('2019-03-01T00:00:00.000Z', 10), {
        deliveries: 0,
        routes: 1,
      });
      assert.deepEqual(await store.deliveries.routed([event]), [false]);
      assert.deepEqual(await store.deliveries.purgeBefore!('2019-06-01T00:00:00.000Z', 10), {
        deliveries: 0,
        routes: 0,
      });
    });
  });
});

describe('listing pages', () => {
  // Mutant: a page with residual conditions (checked row by row) ignored MAX_PAGE_BYTES.
  test('a filtered listing checked row by row ends after the document that passes MAX_PAGE_BYTES', async () => {
    await withStore('page-bytes', async (store) => {
      const subscriptionId = testId('sub-');
      const value = 'x'.repeat(1024 * 1024);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = deadLetterRecord({
          subscriptionId,
          value,
          createdAt: `2026-01-01T00:00:0${i}.000Z`,
        });
        ids.push(r.id);
        await store.deadLetters.insert(r);
        assert.equal(await store.deadLetters.markRedriven(r.id, '2026-01-02T00:00:00.000Z'), true);
      }
      const first = await store.deadLetters.list({ subscriptionId, pending: false });
      assert.deepEqual(
        first.items.map((r) => r.id),
        ids.slice(0, 2),
      );
      assert.ok(first.next);
      const second = await store.deadLetters.list({ subscriptionId, pending: false }, { cursor: first.next });
      assert.deepEqual(
        second.items.map((r) => r.id),
        ids.slice(2),
      );
    });
  });

  // Mutant: a time listing's cursor was checked for its listing only, not for the shape of its key.
  test('a delivery cursor of the right listing whose key is not (time, id) strings is refused', async () => {
    await withStore('cursor-shape', async (store) => {
      await store.deliveries.ensure(deliveryRecord());
      for (const key of [[1, 2], ['2026-01-01T00:00:00.000Z']]) {
        await assert.rejects(
          store.deliveries.list({}, { cursor: encodeCursor('event_delivery_status', key) }),
          (err: Error & { code?: string }) => err.code === 'cursor_invalid',
        );
      }
    });
  });
});

describe('scheduled messages', () => {
  // Mutant: a fractional limit rounded up (`Math.ceil`): more messages than asked for.
  test('due() returns at most the limit it was given, rounded down', async () => {
    await withStore('due-limit', async (store) => {
      const message = { topic: 't', key: 'k', value: 'v', headers: {} };
      await store.scheduled.schedule([
        { id: 'a', dueAt: 1, message },
        { id: 'b', dueAt: 2, message },
      ]);
      assert.equal((await store.scheduled.due(10, 1.5)).length, 1);
      assert.deepEqual(await store.scheduled.due(10, 0.5), []);
    });
  });
});

/** One event-loop turn after the ones already queued. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('group commit', () => {
  // Mutant: a throwing onBegin left its transaction open; every later BEGIN then failed.
  test('an onBegin that throws fails its batch only: the transaction is rolled back and the next batch commits', async () => {
    const db = openDatabase(join(dir, 'on-begin.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'relaxed',
    });
    let fail = true;
    const group = new GroupCommit(db, {
      onBegin: () => {
        if (fail) {
          fail = false;
          throw new Error('onBegin failed');
        }
      },
    });
    try {
      await assert.rejects(
        group.run(() => db.prepare('INSERT INTO t (n) VALUES (1)').run()),
        /onBegin failed/,
      );
      assert.equal(db.isTransaction, false, 'rolled back');
      await group.run(() => db.prepare('INSERT INTO t (n) VALUES (2)').run());
      assert.deepEqual(
        db
          .prepare('SELECT n FROM t')
          .all()
          .map((r) => r.n),
        [2],
      );
    } finally {
      group.drain();
      db.close();
    }
  });

  // Mutant: the bytes of the operations taken were never counted out of the queue's, so after
  // MAX_TRANSACTION_BYTES had gone through, every write was committed at once and none gathered again.
  test('bytes already committed do not count toward the next transaction: writes under load still gather', async () => {
    const db = openDatabase(join(dir, 'queued-bytes.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'relaxed',
    });
    // A steady clock past one rate period: one arrival per 100 ms is a rate that gathers over a
    // 10 s window, so after the first commit the next write waits for the window.
    const group = new GroupCommit(db, { windowMs: 10_000, now: () => 100 });
    try {
      await group.run(() => db.prepare('INSERT INTO t (n) VALUES (1)').run(), {
        bytes: MAX_TRANSACTION_BYTES,
      });
      let ran = false;
      const second = group.run(() => {
        ran = true;
        return db.prepare('INSERT INTO t (n) VALUES (2)').run();
      });
      for (let i = 0; i < 3; i++) await nextTurn();
      assert.equal(ran, false, 'the small write waits for the window, not committed at once');
      group.drain();
      await second;
      assert.equal(ran, true);
    } finally {
      group.drain();
      db.close();
    }
  });
  // Mutant: GATHER_MIN 1 for 16: a trickle of writes (5 a window) waited out the window for company.
  test('at a rate below a commit worth gathering, a write is committed at the end of its turn', async () => {
    const db = openDatabase(join(dir, 'trickle.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'relaxed',
    });
    // One arrival per 2 s on this clock: 5 per 10 s window, fewer than gathering pays for.
    const group = new GroupCommit(db, { windowMs: 10_000, now: () => 2000 });
    try {
      await group.run(() => db.prepare('INSERT INTO t (n) VALUES (1)').run());
      let ran = false;
      const second = group.run(() => {
        ran = true;
        return db.prepare('INSERT INTO t (n) VALUES (2)').run();
      });
      for (let i = 0; i < 3; i++) await nextTurn();
      assert.equal(ran, true, 'committed without waiting for the window');
      await second;
    } finally {
      group.drain();
      db.close();
    }
  });
  // Mutant: `count > 0 &&` dropped from the byte limit: an operation larger than the limit on its
  // own was never taken, and empty transactions were committed turn after turn.
  test('one write larger than MAX_TRANSACTION_BYTES on its own is committed alone', async () => {
    const db = openDatabase(join(dir, 'one-large.db'), ['CREATE TABLE t (n INTEGER)'], {
      durability: 'relaxed',
    });
    const group = new GroupCommit(db);
    let ran = false;
    try {
      const write = group.run(
        () => {
          ran = true;
          return db.prepare('INSERT INTO t (n) VALUES (1)').run().changes;
        },
        { bytes: MAX_TRANSACTION_BYTES + 1 },
      );
      for (let i = 0; i < 3; i++) await nextTurn();
      assert.equal(ran, true, 'taken by the next transaction');
      assert.equal(await write, 1);
    } finally {
      // (Draining a queue whose head is never taken would never end.)
      if (ran) group.drain();
      db.close();
    }
  });
  // Mutant: the operations put back after SQLite rolled a transaction back by itself were not
  // counted back into the queue's bytes: the count drifted below zero, and a later write of
  // MAX_TRANSACTION_BYTES no longer made its commit start at once.
  test('after a transaction SQLite rolled back, the queued bytes still make a full write commit at once', async () => {
    const db = openDatabase(join(dir, 'full-bytes.db'), ['CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)'], {
      durability: 'relaxed',
    });
    const pages = Number(db.prepare('PRAGMA page_count').get()!.page_count);
    db.exec(`PRAGMA max_page_count = ${pages + 3}`);
    // A clock at which writes gather over a 10 s window (see above).
    const group = new GroupCommit(db, { windowMs: 10_000, now: () => 100 });
    const insert = db.prepare('INSERT INTO t (id, v) VALUES (?, ?)');
    try {
      const outcomes = await Promise.allSettled([
        group.run(() => atomically(db, () => insert.run(1, 'x')), { bytes: 1000 }),
        group.run(() => atomically(db, () => insert.run(2, 'y'.repeat(200_000))), { bytes: 1000 }),
        group.run(() => atomically(db, () => insert.run(3, 'z')), { bytes: 1000 }),
      ]);
      assert.deepEqual(
        outcomes.map((o) => o.status),
        ['rejected', 'rejected', 'fulfilled'],
      );
      let ran = false;
      const full = group.run(
        () => {
          ran = true;
          return insert.run(4, 'w');
        },
        { bytes: MAX_TRANSACTION_BYTES },
      );
      for (let i = 0; i < 3; i++) await nextTurn();
      assert.equal(ran, true, 'a write of MAX_TRANSACTION_BYTES is committed at once');
      await full;
    } finally {
      group.drain();
      db.close();
    }
  });
});
