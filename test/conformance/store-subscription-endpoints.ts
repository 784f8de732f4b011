/**
 * Conformance of `store.subscriptions`' endpoint rule, for every engine: one subscription per
 * partner + domain + event + url, enforced by the store, across store instances too.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SubscriptionRecord } from '../../src/common/model.ts';
import { subscriptionRecord, testId } from '../support/fixtures.ts';
import { conflict, type StoreContext } from './store-support.ts';

/** Registers the endpoint-uniqueness suite. */
export function describeSubscriptionEndpoints(ctx: StoreContext): void {
  const subscriptions = () => ctx.store().subscriptions;
  /** A subscription of a partner of its own (so tests never meet each other's endpoints). */
  const endpointRecord = (overrides: Partial<SubscriptionRecord> = {}) =>
    subscriptionRecord({ partnerId: testId('ep-'), url: 'https://hooks.example.com/one', ...overrides });
  /** Matches the conflict of an endpoint taken by `holder`, with the detail naming it. */
  const endpointTaken = (holder: string) => (err: unknown) => {
    conflict('already_exists')(err);
    const details = (err as { details?: Array<{ field?: string; message: string }> }).details ?? [];
    assert.ok(
      details.some((d) => d.field === 'url' && d.message.includes(holder)),
      `a detail on url names ${holder}: ${JSON.stringify(details)}`,
    );
    return true;
  };

  describe('partner_event_subscription: one subscription per endpoint', () => {
    test('a second subscription of the same partner, domain, event and url is a conflict; the first is kept', async () => {
      const first = endpointRecord();
      await subscriptions().insert(first);
      const second = endpointRecord({ partnerId: first.partnerId, description: 'second' });
      await assert.rejects(subscriptions().insert(second), endpointTaken(first.id));
      assert.equal(await subscriptions().get(second.id), undefined, 'nothing of the second was written');
      assert.deepEqual(await subscriptions().get(first.id), first);
      assert.deepEqual(await subscriptions().findByEndpoint(first), first);
      const listed = await subscriptions().list({ partnerId: first.partnerId });
      assert.deepEqual(
        listed.items.map((s) => s.id),
        [first.id],
      );
    });

    test('another partner, domain, event or url is another endpoint; the url is compared exactly', async () => {
      const first = endpointRecord();
      await subscriptions().insert(first);
      const others = [
        endpointRecord({ url: first.url }),
        endpointRecord({ partnerId: first.partnerId, domain: 'billing' }),
        endpointRecord({ partnerId: first.partnerId, event: 'updated' }),
        endpointRecord({ partnerId: first.partnerId, url: `${first.url}/` }),
        endpointRecord({ partnerId: first.partnerId, url: first.url.toUpperCase() }),
      ];
      for (const s of others) await subscriptions().insert(s);
      for (const s of others) assert.equal((await subscriptions().findByEndpoint(s))?.id, s.id);
    });

    test('an absent endpoint finds nothing', async () => {
      assert.equal(await subscriptions().findByEndpoint(endpointRecord()), undefined);
    });

    test('of concurrent inserts of one endpoint through two stores over the same storage exactly one wins', async () => {
      const other = await ctx.openAnother();
      try {
        const partnerId = testId('ep-race-');
        const racers = Array.from({ length: 6 }, (_, i) =>
          endpointRecord({ partnerId, description: `racer ${i}` }),
        );
        const results = await Promise.allSettled(
          racers.map((s, i) => (i % 2 === 0 ? subscriptions() : other.subscriptions).insert(s)),
        );
        const won = racers.filter((_, i) => results[i]!.status === 'fulfilled');
        assert.equal(won.length, 1, JSON.stringify(results));
        for (const r of results) if (r.status === 'rejected') assert.ok(endpointTaken(won[0]!.id)(r.reason));
        for (const store of [ctx.store(), other])
          assert.equal((await store.subscriptions.findByEndpoint(won[0]!))?.id, won[0]!.id);
        const listed = await subscriptions().list({ partnerId });
        assert.deepEqual(
          listed.items.map((s) => s.id),
          [won[0]!.id],
        );
      } finally {
        await other.close();
      }
    });

    test('deleting a subscription frees its endpoint for a new one', async () => {
      const first = endpointRecord();
      await subscriptions().insert(first);
      assert.equal(await subscriptions().delete(first.id), true);
      assert.equal(await subscriptions().findByEndpoint(first), undefined);
      const again = endpointRecord({ partnerId: first.partnerId });
      await subscriptions().insert(again);
      assert.equal((await subscriptions().findByEndpoint(first))?.id, again.id);
    });

    test('an update to an endpoint another subscription has is a conflict and changes nothing', async () => {
      const a = endpointRecord();
      const b = endpointRecord({ partnerId: a.partnerId, url: 'https://hooks.example.com/two' });
      await subscriptions().insert(a);
      await subscriptions().insert(b);
      await assert.rejects(
        subscriptions().update({ ...b, url: a.url, description: 'moved' }),
        endpointTaken(a.id),
      );
      assert.deepEqual(await subscriptions().get(b.id), b, 'not written, revision unchanged');
      assert.equal((await subscriptions().findByEndpoint(a))?.id, a.id);
      assert.equal((await subscriptions().findByEndpoint(b))?.id, b.id, 'b keeps its endpoint');
      // b is unchanged at its revision: an update that keeps its url succeeds.
      assert.equal((await subscriptions().update({ ...b, description: 'stays' })).revision, 2);
    });

    test('an update to a free url moves the endpoint: the new one is taken, the old one freed', async () => {
      const s = endpointRecord();
      await subscriptions().insert(s);
      const moved = await subscriptions().update({ ...s, url: 'https://hooks.example.com/moved' });
      assert.equal(moved.url, 'https://hooks.example.com/moved');
      assert.equal(await subscriptions().findByEndpoint(s), undefined, 'the old url is free');
      assert.equal((await subscriptions().findByEndpoint(moved))?.id, s.id);
      await assert.rejects(
        subscriptions().insert(endpointRecord({ partnerId: s.partnerId, url: moved.url })),
        endpointTaken(s.id),
      );
      const atOld = endpointRecord({ partnerId: s.partnerId });
      await subscriptions().insert(atOld);
      assert.equal((await subscriptions().findByEndpoint(s))?.id, atOld.id);
    });

    test('an update refused for its revision does not move the endpoint', async () => {
      const s = endpointRecord();
      await subscriptions().insert(s);
      await subscriptions().update({ ...s, description: 'first change' });
      await assert.rejects(
        subscriptions().update({ ...s, url: 'https://hooks.example.com/stale' }),
        conflict('revision_conflict'),
      );
      assert.equal((await subscriptions().findByEndpoint(s))?.id, s.id);
      assert.equal(
        await subscriptions().findByEndpoint({ ...s, url: 'https://hooks.example.com/stale' }),
        undefined,
      );
    });

    test('endpoints survive closing and opening the store again', async () => {
      const s = endpointRecord();
      await subscriptions().insert(s);
      await ctx.reopen();
      assert.equal((await subscriptions().findByEndpoint(s))?.id, s.id);
      await assert.rejects(
        subscriptions().insert(endpointRecord({ partnerId: s.partnerId })),
        endpointTaken(s.id),
      );
    });
  });
}
