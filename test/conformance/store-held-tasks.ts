/** Conformance of `store.heldTasks` (`held_task`), for every engine. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type HeldTask, MAX_PAGE_BYTES } from '../../src/common/ports/store.ts';
import { testId } from '../support/fixtures.ts';
import type { StoreContext } from './store-support.ts';

let n = 0;
/** A held task of `subscriptionId` (also used by the delivery suite's retention tests). */
export function heldTask(subscriptionId: string, overrides: Partial<HeldTask> = {}): HeldTask {
  n += 1;
  return {
    // Time-ordered ids, as the dispatcher's are.
    id: `0190b000-0000-7000-8000-${String(n).padStart(12, '0')}`,
    subscriptionId,
    heldAt: '2026-01-01T00:00:00.000Z',
    topic: 'egress.acme.orders.created',
    key: subscriptionId,
    value: JSON.stringify({ n }),
    headers: { 'x-webhooks-due-at': String(n) },
    ...overrides,
  };
}

/** Registers the held-task repository's suite. */
export function describeHeldTasks(ctx: StoreContext): void {
  const held = () => ctx.store().heldTasks;

  describe('held_task', () => {
    test('count tells how many tasks a subscription has held', async () => {
      const sub = testId('sub-count-');
      assert.equal(await held().count(sub), 0);
      const tasks = [heldTask(sub), heldTask(sub), heldTask(sub)];
      for (const t of tasks) await held().hold(t);
      await held().hold(tasks[0]!); // held again: still one
      await held().hold(heldTask(testId('sub-count-other-')));
      assert.equal(await held().count(sub), 3);
      await held().remove(sub, [tasks[1]!.id]);
      assert.equal(await held().count(sub), 2);
    });

    test('tasks round-trip and are listed per subscription in the order held, up to the limit', async () => {
      const sub = testId('sub-held-');
      const tasks = [heldTask(sub), heldTask(sub, { key: undefined, headers: {} }), heldTask(sub)];
      for (const t of tasks) await held().hold(t);
      await held().hold(heldTask(testId('sub-other-')));
      assert.deepEqual(await held().list(sub, 10), JSON.parse(JSON.stringify(tasks)));
      assert.deepEqual(
        (await held().list(sub, 2)).map((t) => t.id),
        tasks.slice(0, 2).map((t) => t.id),
      );
    });

    test('a list after a task starts with the one held next (a listing’s pages)', async () => {
      const sub = testId('sub-held-after-');
      const tasks = [heldTask(sub), heldTask(sub), heldTask(sub)];
      for (const t of tasks) await held().hold(t);
      await held().hold(heldTask(testId('sub-held-after-other-')));
      const ids = (list: HeldTask[]) => list.map((t) => t.id);
      assert.deepEqual(ids(await held().list(sub, 10, tasks[0]!.id)), ids(tasks.slice(1)));
      assert.deepEqual(ids(await held().list(sub, 1, tasks[1]!.id)), [tasks[2]!.id]);
      assert.deepEqual(await held().list(sub, 10, tasks[2]!.id), []);
    });

    test('a list ends with the task that passes MAX_PAGE_BYTES of values (a release never reads 500 large tasks at once)', async () => {
      const sub = testId('sub-held-large-');
      const value = JSON.stringify({ blob: 'x'.repeat(900 * 1024) });
      const tasks = [
        heldTask(sub, { value }),
        heldTask(sub, { value }),
        heldTask(sub, { value }),
        heldTask(sub, { value }),
      ];
      for (const t of tasks) await held().hold(t);
      assert.equal(MAX_PAGE_BYTES, 2 * 1024 * 1024);
      assert.deepEqual(
        (await held().list(sub, 10)).map((t) => t.id),
        tasks.slice(0, 3).map((t) => t.id),
      );
      assert.deepEqual(
        (await held().list(sub, 2)).map((t) => t.id),
        tasks.slice(0, 2).map((t) => t.id),
      );
      await held().remove(sub, [tasks[0]!.id, tasks[1]!.id, tasks[2]!.id]);
      assert.deepEqual(
        (await held().list(sub, 10)).map((t) => t.id),
        [tasks[3]!.id],
      );
      await held().remove(sub, [tasks[3]!.id]);
    });

    test('holding the same id again keeps the first', async () => {
      const sub = testId('sub-held-twice-');
      const first = heldTask(sub);
      await held().hold(first);
      await held().hold({ ...first, value: '{"changed":true}' });
      assert.deepEqual(
        (await held().list(sub, 10)).map((t) => t.value),
        [first.value],
      );
    });

    test('removed tasks are gone; the subscriptions listed are those with tasks left', async () => {
      const a = testId('sub-held-a-');
      const b = testId('sub-held-b-');
      const [a1, a2, b1] = [heldTask(a), heldTask(a), heldTask(b)];
      for (const t of [a1, a2, b1]) await held().hold(t!);
      const before = await held().subscriptions();
      assert.ok(before.includes(a) && before.includes(b));
      await held().remove(a, [a1!.id, a2!.id]);
      assert.deepEqual(await held().list(a, 10), []);
      const after = await held().subscriptions();
      assert.ok(!after.includes(a) && after.includes(b));
      await held().remove(b, [b1!.id]);
    });

    test('held tasks survive closing and opening the store again', async () => {
      const sub = testId('sub-held-restart-');
      const t = heldTask(sub);
      await held().hold(t);
      await ctx.reopen();
      assert.deepEqual(await held().list(sub, 10), [t]);
    });
  });

  describe('held_task: removing what is not held', () => {
    test('removing ids that are not held (or removed already) does not count them out', async () => {
      const sub = testId('sub-count-absent-');
      const [a, b] = [heldTask(sub), heldTask(sub)];
      await held().hold(a);
      await held().hold(b);
      // A second release reading the same page removes what the first removed already.
      await held().remove(sub, [a.id, 'never-held']);
      assert.equal(await held().count(sub), 1);
      await held().remove(sub, [a.id]);
      assert.equal(await held().count(sub), 1);
      assert.ok((await held().subscriptions()).includes(sub), 'b is still held');
      await held().remove(sub, [b.id]);
      assert.equal(await held().count(sub), 0);
    });
  });
}
