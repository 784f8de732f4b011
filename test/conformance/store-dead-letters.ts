/** Conformance of `store.deadLetters` (`dead_letter`), for every engine. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type DeadLetterFilter, MAX_PAGE_BYTES } from '../../src/common/ports/store.ts';
import { deadLetterRecord, testId, timeAt } from '../support/fixtures.ts';
import { conflict, describePurge, invalidCursor, readAllPages, type StoreContext } from './store-support.ts';

/** Registers the dead-letter repository's suite. */
export function describeDeadLetters(ctx: StoreContext): void {
  const deadLetters = () => ctx.store().deadLetters;
  const ids = async (filter: DeadLetterFilter) => (await deadLetters().list(filter)).items.map((d) => d.id);

  describe('dead_letter', () => {
    test('a dead letter round-trips with every field', async () => {
      const rec = deadLetterRecord({ headers: { 'content-type': 'application/json', ce_id: 'e-1' } });
      await deadLetters().insert(rec);
      assert.deepEqual((await deadLetters().list({ eventId: rec.eventId })).items, [rec]);
    });

    test('a processor dead letter without subscription or event round-trips', async () => {
      const rec = deadLetterRecord({
        stage: 'processor',
        reason: 'schema_validation_failed',
        eventId: undefined,
        eventType: undefined,
        subscriptionId: undefined,
        partnerId: undefined,
        key: undefined,
        topic: testId('ingress.orders.created.v'),
      });
      await deadLetters().insert(rec);
      const { items } = await deadLetters().list({ stage: 'processor' });
      assert.deepEqual(
        items.find((d) => d.id === rec.id),
        JSON.parse(JSON.stringify(rec)),
      );
    });

    test('inserting an existing id is a conflict and keeps the first', async () => {
      const first = deadLetterRecord();
      await deadLetters().insert(first);
      await assert.rejects(
        deadLetters().insert({ ...first, reason: 'something else' }),
        conflict('already_exists'),
      );
      assert.deepEqual((await deadLetters().list({ eventId: first.eventId })).items, [first]);
    });

    test('list returns dead letters oldest first, page by page, without gaps or repeats', async () => {
      const eventId = testId('evt-');
      const created = [];
      for (const s of [5, 1, 3, 1, 5, 2, 4]) {
        const rec = deadLetterRecord({ eventId, createdAt: timeAt(s) });
        await deadLetters().insert(rec);
        created.push(rec);
      }
      const seen = await readAllPages(3, (page) => deadLetters().list({ eventId }, page));
      const expected = [...created].sort((a, b) =>
        a.createdAt === b.createdAt ? a.id.localeCompare(b.id) : a.createdAt.localeCompare(b.createdAt),
      );
      assert.deepEqual(
        seen.map((d) => d.id),
        expected.map((d) => d.id),
      );
    });

    test('an unfiltered listing is oldest first across everything stored, page by page', async () => {
      // No key filter: an engine that spreads dead letters over several places (DynamoDB's time
      // shards, by id) must merge them in order, not one place after another, nor newest first.
      const created: string[] = [];
      for (const s of [9, 2, 7, 2, 5, 8, 1, 6, 3, 4, 0, 7]) {
        const rec = deadLetterRecord({ createdAt: timeAt(-3600 + s) });
        await deadLetters().insert(rec);
        created.push(rec.id);
      }
      const seen = await readAllPages(5, (page) => deadLetters().list({}, page));
      const order = (a: { createdAt: string; id: string }, b: { createdAt: string; id: string }) =>
        a.createdAt === b.createdAt ? a.id.localeCompare(b.id) : a.createdAt.localeCompare(b.createdAt);
      assert.deepEqual(
        seen.map((d) => d.id),
        [...seen].sort(order).map((d) => d.id),
        'the whole listing is in createdAt order',
      );
      const listed = new Set(seen.map((d) => d.id));
      assert.ok(
        created.every((id) => listed.has(id)),
        'every dead letter inserted here is listed',
      );
    });

    test('a page of large dead letters ends after MAX_PAGE_BYTES: fewer than the limit, then next continues', async () => {
      const eventId = testId('evt-');
      // Six values of ~600 KB (compressible, as JSON usually is): four pass the budget.
      const big = (n: number) => JSON.stringify({ n, pad: 'x'.repeat(600_000) });
      const created = [];
      for (let i = 0; i < 6; i++) {
        const rec = deadLetterRecord({ eventId, createdAt: timeAt(i), value: big(i) });
        await deadLetters().insert(rec);
        created.push(rec.id);
      }
      const first = await deadLetters().list({ eventId }, { limit: 100 });
      assert.equal(first.items.length, 4, 'the page ends after the item that passes the budget');
      assert.ok(first.next, 'and says there is more');
      const size = first.items.reduce((n, d) => n + d.value.length, 0);
      assert.ok(size >= MAX_PAGE_BYTES && size < MAX_PAGE_BYTES + 700_000, `page of ${size} bytes`);
      const second = await deadLetters().list({ eventId }, { limit: 100, cursor: first.next });
      assert.deepEqual(
        [...first.items, ...second.items].map((d) => d.id),
        created,
      );
      assert.equal(second.next, undefined);
      // A page that reaches the budget on its last item has no next.
      const upToFour = await deadLetters().list({ eventId }, { limit: 4 });
      assert.equal(upToFour.items.length, 4);
      assert.ok(upToFour.next);
      const eventOnlyFour = testId('evt-');
      for (let i = 0; i < 4; i++)
        await deadLetters().insert(
          deadLetterRecord({ eventId: eventOnlyFour, createdAt: timeAt(i), value: big(i) }),
        );
      const whole = await deadLetters().list({ eventId: eventOnlyFour });
      assert.equal(whole.items.length, 4);
      assert.equal(whole.next, undefined, 'nothing follows the fourth');
    });

    test('list filters by stage, subscription and event', async () => {
      const eventId = testId('evt-');
      const subscriptionId = testId('sub-');
      const a = deadLetterRecord({ eventId, subscriptionId });
      const b = deadLetterRecord({ eventId, stage: 'processor', subscriptionId: undefined });
      const c = deadLetterRecord({ subscriptionId });
      for (const rec of [a, b, c]) await deadLetters().insert(rec);
      assert.deepEqual((await ids({ eventId })).sort(), [a.id, b.id].sort());
      assert.deepEqual((await ids({ subscriptionId })).sort(), [a.id, c.id].sort());
      assert.deepEqual(await ids({ eventId, stage: 'processor' }), [b.id]);
      assert.deepEqual(await ids({ eventId, stage: 'dispatcher', subscriptionId }), [a.id]);
    });

    test('markRedriven takes an entry out of the pending list and stamps it', async () => {
      const eventId = testId('evt-');
      const [kept, redriven] = [deadLetterRecord({ eventId }), deadLetterRecord({ eventId })];
      for (const rec of [kept, redriven]) await deadLetters().insert(rec);
      assert.equal(await deadLetters().markRedriven(redriven.id, timeAt(60)), true);
      assert.deepEqual(await ids({ eventId, pending: true }), [kept.id]);
      const all = (await deadLetters().list({ eventId })).items;
      assert.equal(all.find((d) => d.id === redriven.id)?.redrivenAt, timeAt(60));
      assert.equal(all.find((d) => d.id === kept.id)?.redrivenAt, undefined);
    });

    test('pending: false lists only the entries already redriven', async () => {
      const eventId = testId('evt-');
      const [pending, redriven] = [deadLetterRecord({ eventId }), deadLetterRecord({ eventId })];
      for (const rec of [pending, redriven]) await deadLetters().insert(rec);
      await deadLetters().markRedriven(redriven.id, timeAt(60));
      assert.deepEqual(await ids({ eventId, pending: false }), [redriven.id]);
    });

    test('markRedriven a second time is false and keeps the first redrive time', async () => {
      const rec = deadLetterRecord();
      await deadLetters().insert(rec);
      assert.equal(await deadLetters().markRedriven(rec.id, timeAt(60)), true);
      assert.equal(await deadLetters().markRedriven(rec.id, timeAt(120)), false);
      assert.equal((await deadLetters().list({ eventId: rec.eventId })).items[0]?.redrivenAt, timeAt(60));
    });

    test('markRedriven of a missing entry is false', async () => {
      assert.equal(await deadLetters().markRedriven('dl-ghost', timeAt(1)), false);
    });

    test('a cursor the store did not issue is a validation error', async () => {
      await assert.rejects(deadLetters().list({}, { cursor: 'not-a-cursor' }), invalidCursor);
    });

    test('dead letters and their redrive marks survive closing and opening the store again', async () => {
      const eventId = testId('evt-');
      const [pending, redriven] = [deadLetterRecord({ eventId }), deadLetterRecord({ eventId })];
      for (const rec of [pending, redriven]) await deadLetters().insert(rec);
      await deadLetters().markRedriven(redriven.id, timeAt(60));
      await ctx.reopen();
      assert.deepEqual(await ids({ eventId, pending: true }), [pending.id]);
      assert.deepEqual(await ids({ eventId, pending: false }), [redriven.id]);
    });

    test('the reason filter lists the entries of one reason, with the other filters', async () => {
      const subscriptionId = testId('sub-reason-');
      const held = deadLetterRecord({ subscriptionId, reason: 'subscription_paused' });
      const failed = deadLetterRecord({ subscriptionId, reason: 'http_400' });
      await deadLetters().insert(held);
      await deadLetters().insert(failed);
      assert.deepEqual(await ids({ subscriptionId, reason: 'subscription_paused' }), [held.id]);
      assert.deepEqual(await ids({ subscriptionId, reason: 'http_400', pending: true }), [failed.id]);
      assert.deepEqual(await ids({ subscriptionId, reason: 'nothing_like_it' }), []);
    });

    describePurge(
      ctx,
      'purgeBefore deletes dead letters created before the time, in chunks',
      () => deadLetters().purgeBefore,
      async () => {
        const old = Array.from({ length: 3 }, () =>
          deadLetterRecord({ createdAt: '2020-01-01T00:00:00.000Z' }),
        );
        for (const d of old) await deadLetters().insert(d);
        const young = deadLetterRecord({ createdAt: '2020-07-01T00:00:00.000Z' });
        await deadLetters().insert(young);
        const before = '2020-06-01T00:00:00.000Z';
        assert.equal(await deadLetters().purgeBefore!(before, 2), 2);
        assert.equal(await deadLetters().purgeBefore!(before, 2), 1);
        assert.equal(await deadLetters().purgeBefore!(before, 2), 0);
        for (const d of old) assert.deepEqual(await ids({ eventId: d.eventId }), []);
        assert.deepEqual(await ids({ eventId: young.eventId }), [young.id]);
      },
    );
  });
}
