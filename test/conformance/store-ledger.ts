/** Conformance of `store.ledger` (`idempotency_ledger`), for every engine. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { testId } from '../support/fixtures.ts';
import type { StoreContext } from './store-support.ts';

/** A clock for the ledger tests (ms); the purge test uses much smaller times so it purges only its own. */
const T = 1_767_225_600_000;
const LEASE = 30_000;
const TTL = 86_400_000;

/** Registers the idempotency ledger's suite. */
export function describeLedger(ctx: StoreContext): void {
  const ledger = () => ctx.store().ledger;

  describe('idempotency_ledger', () => {
    test('claiming an absent key claims it for the lease', async () => {
      const key = testId('key-');
      assert.equal(await ledger().claim(key, LEASE, T), 'claimed');
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'IN_PROGRESS',
        expiresAt: T + LEASE,
        updatedAt: T,
      });
    });

    test('claiming a key under a live claim is busy and leaves the claim as it was', async () => {
      const key = testId('key-');
      await ledger().claim(key, LEASE, T);
      assert.equal(await ledger().claim(key, LEASE, T + LEASE - 1), 'busy');
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'IN_PROGRESS',
        expiresAt: T + LEASE,
        updatedAt: T,
      });
    });

    test('a lapsed claim is taken over from the moment it expires', async () => {
      const key = testId('key-');
      await ledger().claim(key, LEASE, T);
      assert.equal(await ledger().claim(key, LEASE, T + LEASE), 'claimed');
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'IN_PROGRESS',
        expiresAt: T + 2 * LEASE,
        updatedAt: T + LEASE,
      });
    });

    test('a completed key reports completed, even after its lease would have lapsed', async () => {
      const key = testId('key-');
      await ledger().claim(key, LEASE, T);
      await ledger().complete(key, TTL, T + 10);
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'COMPLETED',
        expiresAt: T + 10 + TTL,
        updatedAt: T + 10,
      });
      assert.equal(await ledger().claim(key, LEASE, T + 2 * LEASE), 'completed');
    });

    test('complete without a claim records the key as completed', async () => {
      const key = testId('key-');
      await ledger().complete(key, TTL, T);
      assert.equal((await ledger().get(key))?.status, 'COMPLETED');
      assert.equal(await ledger().claim(key, LEASE, T + 1), 'completed');
    });

    test('release drops a claim so the key can be claimed again at once', async () => {
      const key = testId('key-');
      await ledger().claim(key, LEASE, T);
      await ledger().release(key);
      assert.equal(await ledger().get(key), undefined);
      assert.equal(await ledger().claim(key, LEASE, T + 1), 'claimed');
    });

    test('release leaves a completed key completed', async () => {
      const key = testId('key-');
      await ledger().complete(key, TTL, T);
      await ledger().release(key);
      assert.equal(await ledger().claim(key, LEASE, T + 1), 'completed');
    });

    test('an absent key reads as undefined', async () => {
      assert.equal(await ledger().get('key-never-seen'), undefined);
    });

    test('purge removes the entries of both kinds that expired before now, and counts them', async () => {
      const t = 1_000_000;
      const [lapsedClaim, oldDone, expiringNow, live] = [1, 2, 3, 4].map(() => testId('purge-'));
      await ledger().claim(lapsedClaim!, 10, t);
      await ledger().complete(oldDone!, 20, t);
      await ledger().claim(expiringNow!, 100, t);
      await ledger().complete(live!, 1_000, t);
      assert.equal(await ledger().purge(t + 100), 2);
      assert.equal(await ledger().get(lapsedClaim!), undefined);
      assert.equal(await ledger().get(oldDone!), undefined);
      assert.equal((await ledger().get(expiringNow!))?.status, 'IN_PROGRESS');
      assert.equal((await ledger().get(live!))?.status, 'COMPLETED');
    });

    test('purge removes thousands of expired entries (more than one chunk) and keeps the live ones', async () => {
      // Below the other purge test's times; the live entries expire long after both.
      const t = 100_000;
      const expired = Array.from({ length: 2_500 }, () => testId('bulk-'));
      const live = Array.from({ length: 50 }, () => testId('bulk-live-'));
      await Promise.all(expired.map((key) => ledger().complete(key, 10, t)));
      await Promise.all(live.map((key) => ledger().complete(key, TTL, T)));
      assert.equal(await ledger().purge(t + 1_000), 2_500);
      assert.equal(await ledger().get(expired[0]!), undefined);
      assert.equal(await ledger().get(expired[2_499]!), undefined);
      const kept = await Promise.all(live.map((key) => ledger().get(key)));
      assert.deepEqual(
        kept.map((e) => e?.status),
        live.map(() => 'COMPLETED'),
      );
    });

    test('of two concurrent claims of one key exactly one is claimed', async () => {
      const key = testId('key-');
      const results = await Promise.all([ledger().claim(key, LEASE, T), ledger().claim(key, LEASE, T)]);
      assert.deepEqual([...results].sort(), ['busy', 'claimed']);
    });

    test('of concurrent claims through two stores over the same storage exactly one is claimed', async () => {
      const other = await ctx.openAnother();
      try {
        const keys = Array.from({ length: 20 }, () => testId('race-'));
        const results = await Promise.all(
          keys.flatMap((key) => [ledger().claim(key, LEASE, T), other.ledger.claim(key, LEASE, T)]),
        );
        const perKey = keys.map((_, i) => [results[2 * i], results[2 * i + 1]].sort());
        assert.deepEqual(
          perKey,
          keys.map(() => ['busy', 'claimed']),
        );
      } finally {
        await other.close();
      }
    });

    test('ledger entries survive closing and opening the store again', async () => {
      const [claimed, done] = [testId('key-'), testId('key-')];
      await ledger().claim(claimed, LEASE, T);
      await ledger().complete(done, TTL, T);
      await ctx.reopen();
      assert.equal(await ledger().claim(claimed, LEASE, T + 1), 'busy');
      assert.equal(await ledger().claim(done, LEASE, T + 1), 'completed');
    });
  });
}
