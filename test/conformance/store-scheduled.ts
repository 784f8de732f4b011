/** Conformance of `store.scheduled` (`scheduled_message`), for every engine. */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import type { ScheduledMessage } from '../../src/common/ports/store.ts';
import { testId } from '../support/fixtures.ts';
import type { StoreContext } from './store-support.ts';

/** A time well after any the suites write (ms). */
const T = 1_800_000_000_000;

let n = 0;
function scheduled(dueAt: number, overrides: Partial<BusMessage> = {}, id?: string): ScheduledMessage {
  n += 1;
  return {
    id: id ?? `sched-${String(n).padStart(6, '0')}`,
    dueAt,
    message: {
      topic: 'retry.acme.orders.created',
      key: `sub-${n}`,
      value: JSON.stringify({ n }),
      headers: { 'webhook-id': `msg_${n}` },
      notBefore: dueAt,
      ...overrides,
    },
  };
}

/** Registers the scheduled-message repository's suite. */
export function describeScheduled(ctx: StoreContext): void {
  const repo = () => ctx.store().scheduled;

  /** Removes every message kept (the suite shares one store), round by round. */
  async function clear(): Promise<void> {
    for (;;) {
      const batch = await repo().due(Number.MAX_SAFE_INTEGER, 500);
      if (batch.length === 0) return;
      await repo().remove(batch);
    }
  }

  describe('scheduled_message', () => {
    beforeEach(clear);

    test('due returns the messages due at or before now, earliest first, up to the limit', async () => {
      const [m300, m100, m400, m200] = [
        scheduled(T + 300),
        scheduled(T + 100),
        scheduled(T + 400),
        scheduled(T + 200),
      ];
      await repo().schedule([m300!, m100!]);
      await repo().schedule([m400!, m200!]);
      const ids = async (now: number, limit: number) => (await repo().due(now, limit)).map((m) => m.id);
      assert.deepEqual(await ids(T + 50, 10), []);
      assert.deepEqual(await ids(T + 250, 10), [m100!.id, m200!.id]);
      assert.deepEqual(await ids(T + 200, 10), [m100!.id, m200!.id], 'due exactly at now is due');
      assert.deepEqual(await ids(T + 199, 10), [m100!.id]);
      assert.deepEqual(await ids(T + 1000, 3), [m100!.id, m200!.id, m300!.id]);
      assert.deepEqual(await ids(T + 1000, 1), [m100!.id]);
      // Reading does not take them: still all kept.
      assert.deepEqual(await ids(T + 1000, 10), [m100!.id, m200!.id, m300!.id, m400!.id]);
      assert.equal(await repo().count(), 4);
    });

    test('a message round-trips exactly; an absent key and absent headers stay absent', async () => {
      const full = scheduled(T + 1, {
        key: 'partner-7',
        value: '{"ünïcødé":"✓","n":[1,2.5,null]}',
        headers: { 'webhook-id': 'msg_1', 'x-webhooks-attempt': '3', empty: '' },
        notBefore: T + 1,
      });
      const bare: ScheduledMessage = {
        id: 'sched-bare',
        dueAt: T + 2,
        message: { topic: 'retry.bare', value: '{}' },
      };
      const emptyHeaders = scheduled(T + 3, { headers: {} });
      const { notBefore: _, ...withoutNotBefore } = scheduled(T + 4).message;
      const noNotBefore: ScheduledMessage = {
        id: 'sched-no-not-before',
        dueAt: T + 4,
        message: withoutNotBefore,
      };
      // Large enough that an engine storing documents compressed does so (and reads them back).
      const large = scheduled(T + 5, { value: JSON.stringify({ blob: 'x'.repeat(40_000), n: 5 }) });
      const all = [full, bare, emptyHeaders, noNotBefore, large];
      await repo().schedule(all);
      const got = await repo().due(T + 10, 10);
      assert.deepEqual(got, all);
      const gotBare = got.find((m) => m.id === 'sched-bare')!;
      assert.equal('key' in gotBare.message, false);
      assert.equal('headers' in gotBare.message, false);
      assert.equal('notBefore' in gotBare.message, false);
      assert.equal('notBefore' in got.find((m) => m.id === noNotBefore.id)!.message, false);
    });

    test('remove forgets the messages and ignores ids not kept', async () => {
      const [a, b, c] = [scheduled(T + 1), scheduled(T + 2), scheduled(T + 3)];
      await repo().schedule([a!, b!, c!]);
      await repo().remove([b!, scheduled(T + 2, {}, 'sched-never-kept')]);
      assert.deepEqual(
        (await repo().due(T + 10, 10)).map((m) => m.id),
        [a!.id, c!.id],
      );
      assert.equal(await repo().count(), 2);
      await repo().remove([b!]); // removed already: nothing happens
      await repo().remove([]);
      await repo().remove([a!, c!]);
      assert.deepEqual(await repo().due(T + 10, 10), []);
      assert.equal(await repo().count(), 0);
    });

    test('scheduling an id kept already leaves the kept one as it is', async () => {
      const first = scheduled(T + 100, { value: '{"first":true}' });
      await repo().schedule([first]);
      await repo().schedule([first]);
      // Again under the same id, earlier and with another message: ignored.
      await repo().schedule([
        { ...first, dueAt: T + 50, message: { ...first.message, value: '{"second":true}' } },
      ]);
      // One id twice in one call: the first is kept.
      const twin = scheduled(T + 200, { value: '{"twin":1}' });
      await repo().schedule([
        twin,
        { ...twin, dueAt: T + 150, message: { ...twin.message, value: '{"twin":2}' } },
      ]);
      assert.deepEqual(await repo().due(T + 120, 10), [first]);
      assert.deepEqual(await repo().due(T + 1000, 10), [first, twin]);
      assert.equal(await repo().count(), 2);
      // Once removed, the id may be scheduled again.
      await repo().remove([first]);
      const again = { ...first, dueAt: T + 300, message: { ...first.message, value: '{"again":true}' } };
      await repo().schedule([again]);
      assert.deepEqual(await repo().due(T + 1000, 10), [twin, again]);
    });

    test('a message kept again, due later, after it was read as due: the removal of the read one leaves the new one', async () => {
      // The scheduler reads K as due and publishes it; the published copy is deferred and kept
      // again under the same id (its value unchanged) before the scheduler removes what it read.
      const k = scheduled(T + 10);
      await repo().schedule([k]);
      const [read] = await repo().due(T + 11, 10);
      assert.deepEqual(read, k);
      const keptAgain = { ...k, dueAt: T + 60_000, message: { ...k.message, notBefore: T + 60_000 } };
      await repo().schedule([keptAgain]);
      await repo().remove([read!]);
      assert.equal(await repo().count(), 1, 'the message kept again is not lost');
      assert.deepEqual(await repo().due(T + 11, 10), [], 'not due before its new time');
      assert.deepEqual(await repo().due(T + 60_001, 10), [keptAgain]);
      await repo().remove([keptAgain]);
      assert.equal(await repo().count(), 0);
    });

    test('many messages come back all, in order, over several rounds of due and remove', async () => {
      const total = 300;
      // Distinct due times, scheduled out of order and in several calls; the ids spread over shards.
      const due = Array.from({ length: total }, (_, i) => scheduled(T + 1_000 + ((i * 7919) % total) * 10));
      const later = Array.from({ length: 20 }, (_, i) => scheduled(T + 1_000_000 + i));
      const all = [...due, ...later];
      for (let i = 0; i < all.length; i += 64) await repo().schedule(all.slice(i, i + 64));
      assert.equal(await repo().count(), total + later.length);
      const now = T + 1_000 + total * 10;
      const seen: ScheduledMessage[] = [];
      let rounds = 0;
      for (;;) {
        const batch = await repo().due(now, 70);
        assert.ok(batch.length <= 70);
        if (batch.length === 0) break;
        seen.push(...batch);
        await repo().remove(batch);
        rounds += 1;
      }
      assert.equal(rounds, Math.ceil(total / 70));
      const expected = [...due].sort((x, y) => x.dueAt - y.dueAt);
      assert.deepEqual(
        seen.map((m) => m.id),
        expected.map((m) => m.id),
      );
      assert.deepEqual(seen, expected);
      assert.equal(await repo().count(), later.length);
      assert.deepEqual(
        (await repo().due(T + 2_000_000, 100)).map((m) => m.id),
        later.map((m) => m.id),
      );
    });

    test('kept messages survive closing and opening the store again', async () => {
      const m = scheduled(T + 7);
      await repo().schedule([m]);
      await ctx.reopen();
      assert.deepEqual(await repo().due(T + 7, 10), [m]);
      assert.equal(await repo().count(), 1);
    });
  });

  describe('scheduled_message: the same id and due time', () => {
    test('scheduling an id kept already with the same due time and another message keeps the first', async () => {
      const dueAt = 1_767_225_600_000 + 5_000;
      const id = testId('sched-same-due-');
      const message = { topic: 'egress.acme.orders.created', value: '{"first":true}', headers: {} };
      await repo().schedule([{ id, dueAt, message }]);
      await repo().schedule([{ id, dueAt, message: { ...message, value: '{"second":true}' } }]);
      const due = (await repo().due(dueAt, 1000)).filter((m) => m.id === id);
      assert.deepEqual(
        due.map((m) => m.message.value),
        ['{"first":true}'],
      );
      await repo().remove(due);
    });
  });
}
