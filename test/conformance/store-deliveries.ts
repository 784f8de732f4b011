/** Conformance of `store.deliveries` (`event_delivery_status` + `delivery_attempt`), for every engine. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deliveryAttempt, deliveryRecord, testId, timeAt } from '../support/fixtures.ts';
import { heldTask } from './store-held-tasks.ts';
import {
  conflict,
  describePurge,
  invalidCursor,
  notFound,
  readAllPages,
  type StoreContext,
} from './store-support.ts';

/** A task held in 2019, before every other test's times. */
const heldTaskOf = (subscriptionId: string) =>
  heldTask(subscriptionId, { heldAt: '2019-01-01T00:00:00.000Z' });

/** Registers the delivery repository's suite. */
export function describeDeliveries(ctx: StoreContext): void {
  const deliveries = () => ctx.store().deliveries;

  describe('event_delivery_status and delivery_attempt', () => {
    test('ensure creates a delivery that reads back with every field', async () => {
      const rec = deliveryRecord({ lastError: 'none yet', nextAttemptAt: timeAt(5) });
      assert.deepEqual(await deliveries().ensure(rec), rec);
      assert.deepEqual(await deliveries().get(rec.id), rec);
    });

    test('ensure on an existing delivery keeps and returns the first one', async () => {
      const first = deliveryRecord();
      await deliveries().ensure(first);
      const again = await deliveries().ensure({ ...first, status: 'FAILED', attempts: 3 });
      assert.deepEqual(again, first);
      assert.deepEqual(await deliveries().get(first.id), first);
    });

    test('an absent delivery reads as undefined and has no attempts', async () => {
      assert.equal(await deliveries().get('dlv-missing'), undefined);
      assert.deepEqual(await deliveries().attempts('dlv-missing'), []);
    });

    test('recordAttempt stores the attempt and the delivery’s new state together', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      const attempt = deliveryAttempt({ deliveryId: rec.id, at: timeAt(1) });
      await deliveries().recordAttempt(attempt, {
        status: 'SUCCESS',
        attempts: 1,
        lastStatusCode: 200,
        updatedAt: timeAt(1),
        completedAt: timeAt(1),
      });
      assert.deepEqual(await deliveries().get(rec.id), {
        ...rec,
        status: 'SUCCESS',
        attempts: 1,
        lastStatusCode: 200,
        updatedAt: timeAt(1),
        completedAt: timeAt(1),
      });
      assert.deepEqual(await deliveries().attempts(rec.id), [attempt]);
    });

    test('recordAttempt of an attempt number already recorded is a conflict and changes nothing', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      const first = deliveryAttempt({ deliveryId: rec.id, statusCode: 503, outcome: 'retry' });
      await deliveries().recordAttempt(first, { attempts: 1, lastStatusCode: 503, updatedAt: timeAt(1) });
      await assert.rejects(
        deliveries().recordAttempt(deliveryAttempt({ deliveryId: rec.id }), {
          status: 'SUCCESS',
          attempts: 2,
          updatedAt: timeAt(2),
        }),
        conflict('already_exists'),
      );
      const stored = await deliveries().get(rec.id);
      assert.equal(stored?.status, 'PENDING');
      assert.equal(stored?.attempts, 1);
      assert.deepEqual(await deliveries().attempts(rec.id), [first]);
    });

    test('recordAttempt for a missing delivery is not_found and stores no attempt', async () => {
      const attempt = deliveryAttempt({ deliveryId: 'dlv-ghost' });
      await assert.rejects(
        deliveries().recordAttempt(attempt, { attempts: 1, updatedAt: timeAt(1) }),
        notFound,
      );
      assert.deepEqual(await deliveries().attempts('dlv-ghost'), []);
    });

    test('recordAttempt with `create` creates a missing delivery in the attempt’s state', async () => {
      const rec = deliveryRecord();
      const attempt = deliveryAttempt({ deliveryId: rec.id, at: timeAt(1) });
      const update = {
        status: 'SUCCESS' as const,
        attempts: 1,
        lastStatusCode: 200,
        updatedAt: timeAt(1),
        completedAt: timeAt(1),
      };
      await deliveries().recordAttempt(attempt, update, rec);
      assert.deepEqual(await deliveries().get(rec.id), { ...rec, ...update });
      assert.deepEqual(await deliveries().attempts(rec.id), [attempt]);
      const listed = await deliveries().list({ subscriptionId: rec.subscriptionId, status: 'SUCCESS' });
      assert.deepEqual(
        listed.items.map((d) => d.id),
        [rec.id],
        'the indexed columns follow the created state',
      );
    });

    test('recordAttempt with `create` on an existing delivery updates it and keeps what was there', async () => {
      const rec = await deliveries().ensure(deliveryRecord({ correlationId: 'kept' }));
      const attempt = deliveryAttempt({ deliveryId: rec.id, at: timeAt(2) });
      await deliveries().recordAttempt(
        attempt,
        { status: 'FAILED', attempts: 1, updatedAt: timeAt(2) },
        deliveryRecord({ id: rec.id, correlationId: 'ignored' }),
      );
      const stored = await deliveries().get(rec.id);
      assert.equal(stored?.status, 'FAILED');
      assert.equal(stored?.correlationId, 'kept');
    });

    test('attempts come back in ascending attempt order', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      for (const n of [2, 1, 10, 3]) {
        await deliveries().recordAttempt(deliveryAttempt({ deliveryId: rec.id, attempt: n }), {
          updatedAt: timeAt(n),
        });
      }
      assert.deepEqual(
        (await deliveries().attempts(rec.id)).map((a) => a.attempt),
        [1, 2, 3, 10],
      );
    });

    test('patch changes the given fields and keeps the others', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      await deliveries().patch(rec.id, {
        status: 'FAILED',
        lastError: 'subscription deleted',
        updatedAt: timeAt(9),
      });
      assert.deepEqual(await deliveries().get(rec.id), {
        ...rec,
        status: 'FAILED',
        lastError: 'subscription deleted',
        updatedAt: timeAt(9),
      });
    });

    test('a field given as undefined in an update is removed from the delivery', async () => {
      const rec = await deliveries().ensure(
        deliveryRecord({ nextAttemptAt: timeAt(60), lastError: 'timeout' }),
      );
      await deliveries().patch(rec.id, {
        nextAttemptAt: undefined,
        lastError: undefined,
        updatedAt: timeAt(61),
      });
      const stored = await deliveries().get(rec.id);
      assert.equal(stored?.nextAttemptAt, undefined);
      assert.equal(stored?.lastError, undefined);
      assert.equal(stored?.status, 'PENDING');
    });

    test('an update leaves the fields fixed at creation as they were', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      await deliveries().patch(rec.id, {
        subscriptionId: 'sub-other',
        createdAt: timeAt(99),
        status: 'FAILED',
        updatedAt: timeAt(2),
      });
      assert.deepEqual(await deliveries().get(rec.id), { ...rec, status: 'FAILED', updatedAt: timeAt(2) });
      assert.deepEqual(
        (await deliveries().list({ subscriptionId: rec.subscriptionId })).items.map((d) => d.id),
        [rec.id],
      );
    });

    test('updated text keeps quotes, control characters and non-ASCII exactly', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      const lastError = 'said "no"\n\ttab \\ \u0001 é 😀 \u2028';
      await deliveries().patch(rec.id, { lastError, updatedAt: timeAt(1) });
      assert.equal((await deliveries().get(rec.id))?.lastError, lastError);
    });

    test('patching a missing delivery is not_found', async () => {
      await assert.rejects(
        deliveries().patch('dlv-ghost', { status: 'FAILED', updatedAt: timeAt(1) }),
        notFound,
      );
    });

    test('list returns deliveries newest first', async () => {
      const partnerId = testId('p-newest-');
      for (const s of [20, 10, 30])
        await deliveries().ensure(deliveryRecord({ partnerId, createdAt: timeAt(s) }));
      const page = await deliveries().list({ partnerId });
      assert.deepEqual(
        page.items.map((d) => d.createdAt),
        [timeAt(30), timeAt(20), timeAt(10)],
      );
      assert.equal(page.next, undefined);
    });

    test('list pages newest first without gaps or repeats, even when timestamps tie', async () => {
      const partnerId = testId('p-pages-');
      const created = [];
      for (let i = 0; i < 7; i++) {
        created.push(await deliveries().ensure(deliveryRecord({ partnerId, createdAt: timeAt(i % 3) })));
      }
      const seen = await readAllPages(3, (page) => deliveries().list({ partnerId }, page));
      const expected = [...created].sort((a, b) =>
        a.createdAt === b.createdAt ? b.id.localeCompare(a.id) : b.createdAt.localeCompare(a.createdAt),
      );
      assert.deepEqual(
        seen.map((d) => d.id),
        expected.map((d) => d.id),
      );
    });

    test('list filters by event, subscription, partner and status', async () => {
      const partnerId = testId('p-filter-');
      const eventId = testId('evt-');
      const a = await deliveries().ensure(deliveryRecord({ partnerId, eventId }));
      const b = await deliveries().ensure(deliveryRecord({ partnerId, eventId, status: 'FAILED' }));
      const c = await deliveries().ensure(deliveryRecord({ partnerId, subscriptionId: a.subscriptionId }));
      const ids = async (filter: Parameters<ReturnType<typeof deliveries>['list']>[0]) =>
        (await deliveries().list(filter)).items.map((d) => d.id).sort();
      assert.deepEqual(await ids({ eventId }), [a.id, b.id].sort());
      assert.deepEqual(await ids({ subscriptionId: a.subscriptionId }), [a.id, c.id].sort());
      assert.deepEqual(await ids({ partnerId }), [a.id, b.id, c.id].sort());
      assert.deepEqual(await ids({ partnerId, status: 'FAILED' }), [b.id]);
      assert.deepEqual(await ids({ eventId, subscriptionId: a.subscriptionId, status: 'PENDING' }), [a.id]);
    });

    test('the event filter finds deliveries routed to the event before they were created, and pages them', async () => {
      const eventId = testId('evt-linked-');
      const event = { id: eventId, source: '/orders' };
      const records = Array.from({ length: 5 }, (_, i) =>
        deliveryRecord({ eventId, eventSource: event.source, createdAt: timeAt(i) }),
      );
      assert.deepEqual(await deliveries().routed([event]), [false]);
      // The processor records an event's routes when it routes it; the records come later.
      await deliveries().recordRouting(
        event,
        records.map((r) => r.id),
        timeAt(0),
      );
      assert.deepEqual(await deliveries().routed([event, { ...event, source: '/other' }, event]), [
        true,
        false,
        true,
      ]);
      assert.deepEqual((await deliveries().list({ eventId })).items, []);
      for (const r of records.slice(0, 4)) await deliveries().ensure(r);
      const last = records[4]!;
      await deliveries().recordAttempt(
        deliveryAttempt({ deliveryId: last.id }),
        { status: 'SUCCESS', attempts: 1, updatedAt: timeAt(9) },
        last,
      );
      // Recording again (a redelivered batch) adds nothing.
      await deliveries().recordRouting(event, [records[0]!.id], timeAt(1));
      const seen = await readAllPages(2, (page) => deliveries().list({ eventId }, page));
      assert.deepEqual(
        seen.map((d) => d.id),
        [...records].reverse().map((r) => r.id),
      );
      assert.deepEqual(
        (await deliveries().list({ eventId, status: 'SUCCESS' })).items.map((d) => d.id),
        [last.id],
      );
      // A link names deliveries of this event only: another event's filter does not see them.
      assert.deepEqual((await deliveries().list({ eventId: testId('evt-other-') })).items, []);
    });

    test('an event routed to no delivery is recorded as routed, and its filter lists nothing', async () => {
      const event = { id: testId('evt-none-'), source: '/orders' };
      await deliveries().recordRouting(event, [], timeAt(0));
      assert.deepEqual(await deliveries().routed([event]), [true]);
      assert.deepEqual(await deliveries().routed([]), []);
      assert.deepEqual((await deliveries().list({ eventId: event.id })).items, []);
    });

    describePurge(
      ctx,
      'purgeBefore deletes finished (or abandoned) deliveries with their attempts, and routes, older than the time, in chunks',
      () => deliveries().purgeBefore,
      async () => {
        // Times long before every other test's, so only this test's records are old enough.
        const old = '2020-01-01T00:00:00.000Z';
        const before = '2020-06-01T00:00:00.000Z';
        const done = Array.from({ length: 3 }, () => deliveryRecord({ createdAt: old, status: 'FAILED' }));
        for (const d of done) {
          await deliveries().recordAttempt(
            deliveryAttempt({ deliveryId: d.id, outcome: 'failed', statusCode: 400 }),
            { attempts: 1, updatedAt: old },
            d,
          );
          await deliveries().recordRouting({ id: d.eventId, source: d.eventSource }, [d.id], old);
        }
        // Still being retried: created long ago, updated since the cutoff.
        const pending = await deliveries().ensure(
          deliveryRecord({ createdAt: old, updatedAt: '2020-06-15T00:00:00.000Z', status: 'PENDING' }),
        );
        // Abandoned: PENDING, and nothing happened to it since before the cutoff (no task is coming).
        const abandoned = await deliveries().ensure(
          deliveryRecord({ createdAt: old, updatedAt: old, status: 'PENDING' }),
        );
        const young = await deliveries().ensure(deliveryRecord({ createdAt: '2020-07-01T00:00:00.000Z' }));
        // Chunks of at most 2; abandoned PENDING ones may take a few more calls (see the port).
        const chunks: Array<{ deliveries: number; routes: number }> = [];
        for (let i = 0; i < 6; i++) chunks.push(await deliveries().purgeBefore!(before, 2));
        assert.ok(
          chunks.every((c) => c.deliveries <= 2 && c.routes <= 2),
          JSON.stringify(chunks),
        );
        assert.equal(
          chunks.reduce((n, c) => n + c.deliveries, 0),
          4,
          JSON.stringify(chunks),
        );
        assert.equal(
          chunks.reduce((n, c) => n + c.routes, 0),
          3,
          JSON.stringify(chunks),
        );
        assert.deepEqual(chunks[0], { deliveries: 2, routes: 2 }, 'the first chunk is a full one');
        assert.equal(await deliveries().get(abandoned.id), undefined, 'an abandoned PENDING delivery goes');
        for (const d of done) {
          assert.equal(await deliveries().get(d.id), undefined);
          assert.deepEqual(await deliveries().attempts(d.id), []);
          assert.deepEqual(await deliveries().routed([{ id: d.eventId, source: d.eventSource }]), [false]);
        }
        assert.equal((await deliveries().get(pending.id))?.status, 'PENDING');
        assert.equal((await deliveries().get(young.id))?.id, young.id);
      },
    );

    test('the status filter follows status changes made by recordAttempt', async () => {
      const partnerId = testId('p-status-');
      const rec = await deliveries().ensure(deliveryRecord({ partnerId }));
      await deliveries().recordAttempt(deliveryAttempt({ deliveryId: rec.id }), {
        status: 'SUCCESS',
        attempts: 1,
        updatedAt: timeAt(1),
      });
      assert.equal((await deliveries().list({ partnerId, status: 'PENDING' })).items.length, 0);
      assert.deepEqual(
        (await deliveries().list({ partnerId, status: 'SUCCESS' })).items.map((d) => d.id),
        [rec.id],
      );
    });

    test('a cursor the store did not issue is a validation error', async () => {
      await assert.rejects(deliveries().list({}, { cursor: 'not-a-cursor' }), invalidCursor);
    });

    test('deliveries and their attempts survive closing and opening the store again', async () => {
      const rec = await deliveries().ensure(deliveryRecord());
      const attempt = deliveryAttempt({
        deliveryId: rec.id,
        statusCode: 500,
        outcome: 'retry',
        error: 'HTTP 500',
      });
      await deliveries().recordAttempt(attempt, { attempts: 1, lastStatusCode: 500, updatedAt: timeAt(1) });
      await ctx.reopen();
      assert.deepEqual(await deliveries().get(rec.id), {
        ...rec,
        attempts: 1,
        lastStatusCode: 500,
        updatedAt: timeAt(1),
      });
      assert.deepEqual(await deliveries().attempts(rec.id), [attempt]);
    });
  });

  const store = () => ctx.store();
  /** Purges before `before` with `limit` up to `calls` times (the pending cursor may need a pass). */
  const purgeCalls = async (before: string, limit: number, calls: number) => {
    for (let i = 0; i < calls; i++) await store().deliveries.purgeBefore!(before, limit);
  };
  describe('event_delivery_status retention: kept rows, released holds, the cutoff', () => {
    describePurge(
      ctx,
      'with chunks of 1, a kept PENDING delivery does not stop the abandoned ones after it from going',
      () => store().deliveries.purgeBefore,
      async () => {
        const before = '2019-06-01T00:00:00.000Z';
        // Kept: updated after the cutoff. Abandoned: not updated since long before it. Kept sorts first.
        const kept = await store().deliveries.ensure(
          deliveryRecord({
            createdAt: '2019-01-01T00:00:00.000Z',
            updatedAt: '2019-09-01T00:00:00.000Z',
            status: 'PENDING',
          }),
        );
        const abandoned = await store().deliveries.ensure(
          deliveryRecord({
            createdAt: '2019-01-02T00:00:00.000Z',
            updatedAt: '2019-01-02T00:00:00.000Z',
            status: 'PENDING',
          }),
        );
        await purgeCalls(before, 1, 10);
        assert.equal(await store().deliveries.get(abandoned.id), undefined, 'the abandoned one went');
        assert.equal((await store().deliveries.get(kept.id))?.status, 'PENDING', 'the kept one stays');
        await purgeCalls('2019-12-01T00:00:00.000Z', 10, 4);
        assert.equal(await store().deliveries.get(kept.id), undefined, 'clean-up');
      },
    );

    describePurge(
      ctx,
      'an old PENDING delivery kept while its subscription held tasks goes once they are all released',
      () => store().deliveries.purgeBefore,
      async () => {
        const before = '2019-06-01T00:00:00.000Z';
        const d = await store().deliveries.ensure(
          deliveryRecord({
            createdAt: '2019-02-01T00:00:00.000Z',
            updatedAt: '2019-02-01T00:00:00.000Z',
            status: 'PENDING',
          }),
        );
        const task = heldTaskOf(d.subscriptionId);
        await store().heldTasks.hold(task);
        await purgeCalls(before, 10, 4);
        assert.equal((await store().deliveries.get(d.id))?.status, 'PENDING', 'kept while held');
        await store().heldTasks.remove(d.subscriptionId, [task.id]);
        assert.equal(await store().heldTasks.count(d.subscriptionId), 0);
        await purgeCalls(before, 10, 4);
        assert.equal(await store().deliveries.get(d.id), undefined, 'nothing held any more: it goes');
      },
    );

    describePurge(
      ctx,
      'a route logged exactly at the cutoff is not older than it, and stays',
      () => store().deliveries.purgeBefore,
      async () => {
        const before = '2019-06-01T00:00:00.000Z';
        const event = { id: testId('evt-at-cutoff-'), source: '/orders' };
        await store().deliveries.recordRouting(event, [], before);
        await purgeCalls(before, 10, 2);
        assert.deepEqual(await store().deliveries.routed([event]), [true]);
        await purgeCalls('2019-06-01T00:00:00.001Z', 10, 2);
        assert.deepEqual(await store().deliveries.routed([event]), [false], 'clean-up');
      },
    );
  });

  describePurge(
    ctx,
    "a delivery kept past its route's retention (its task held) is still found by its event, and its route stays with it",
    () => ctx.store().deliveries.purgeBefore,
    async () => {
      const store = () => ctx.store();
      const before = '2019-06-01T00:00:00.000Z';
      const routedAt = '2019-03-01T00:00:00.000Z';
      const d = await store().deliveries.ensure(
        deliveryRecord({ createdAt: routedAt, updatedAt: routedAt, status: 'PENDING' }),
      );
      const event = { id: d.eventId, source: d.eventSource };
      await store().deliveries.recordRouting(event, [d.id], routedAt);
      const task = heldTaskOf(d.subscriptionId);
      await store().heldTasks.hold(task);
      // Two old routes after it that nothing keeps (events routed to no delivery).
      const others = [1, 2].map((i) => ({ id: testId(`evt-after-kept-${i}-`), source: '/orders' }));
      for (const e of others) await store().deliveries.recordRouting(e, [], '2019-03-02T00:00:00.000Z');
      // Chunks of 2, called again while one comes back full (as the platform's retention does): the
      // kept route counts as looked at, so the pass goes on to the others.
      const chunks: number[] = [];
      for (;;) {
        const chunk = await store().deliveries.purgeBefore!(before, 2);
        chunks.push(chunk.routes);
        if ((chunk.routes < 2 && chunk.deliveries < 2) || chunks.length > 10) break;
      }
      assert.equal(chunks[0], 2, `a chunk with a kept route is still a full one: ${chunks}`);
      assert.deepEqual(
        await store().deliveries.routed(others),
        [false, false],
        'the others went in the same pass',
      );
      assert.deepEqual(
        (await store().deliveries.list({ eventId: d.eventId })).items.map((x) => x.id),
        [d.id],
        'found by its event',
      );
      assert.deepEqual(await store().deliveries.routed([event]), [true], 'its route stays while it is kept');
      // Released and abandoned: it goes (its route is looked at again a retention period on).
      await store().heldTasks.remove(d.subscriptionId, [task.id]);
      for (let i = 0; i < 4; i++) await store().deliveries.purgeBefore!(before, 10);
      assert.equal(await store().deliveries.get(d.id), undefined);
      assert.deepEqual((await store().deliveries.list({ eventId: d.eventId })).items, []);
    },
  );
}
