/** Conformance of `store.ledger` (`idempotency_ledger`), for every engine. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { testId } from '../support/fixtures.ts';
import { describePurge, type StoreContext } from './store-support.ts';

/** A clock for the ledger tests (ms); the purge test uses much smaller times so it purges only its own. */
const T = 1_767_225_600_000;
const LEASE = 30_000;
const TTL = 86_400_000;

/** Registers the idempotency ledger's suite. */
export function describeLedger(ctx: StoreContext): void {
  const ledger = () => ctx.store().ledger;

  /** Claims the key and returns the claim's token (failing the test when it is not claimed). */
  async function claimed(key: string, leaseMs: number, now: number): Promise<string> {
    const claim = await ledger().claim(key, leaseMs, now);
    assert.equal(claim.status, 'claimed', `claim of ${key}`);
    return (claim as { token: string }).token;
  }

  /** A key completed through a claim of its own. */
  async function completed(key: string, ttlMs: number, now: number): Promise<void> {
    assert.equal(await ledger().complete(key, await claimed(key, LEASE, now), ttlMs, now), true);
  }

  describe('idempotency_ledger', () => {
    test('claiming an absent key claims it for the lease, with a token', async () => {
      const key = testId('key-');
      const claim = await ledger().claim(key, LEASE, T);
      assert.equal(claim.status, 'claimed');
      assert.equal(typeof (claim as { token: string }).token, 'string');
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'IN_PROGRESS',
        expiresAt: T + LEASE,
        updatedAt: T,
      });
    });

    test('each claim gets a token of its own', async () => {
      const [a, b] = [testId('key-'), testId('key-')];
      assert.notEqual(await claimed(a, LEASE, T), await claimed(b, LEASE, T));
      const again = await claimed(a, LEASE, T + LEASE);
      assert.notEqual(again, await claimed(b, LEASE, T + LEASE));
    });

    test('claiming a key under a live claim is busy and leaves the claim as it was', async () => {
      const key = testId('key-');
      await claimed(key, LEASE, T);
      assert.deepEqual(await ledger().claim(key, LEASE, T + LEASE - 1), { status: 'busy' });
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'IN_PROGRESS',
        expiresAt: T + LEASE,
        updatedAt: T,
      });
    });

    test('a lapsed claim is taken over from the moment it expires', async () => {
      const key = testId('key-');
      await claimed(key, LEASE, T);
      await claimed(key, LEASE, T + LEASE);
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'IN_PROGRESS',
        expiresAt: T + 2 * LEASE,
        updatedAt: T + LEASE,
      });
    });

    test('a completed key reports completed, even after its lease would have lapsed', async () => {
      const key = testId('key-');
      const token = await claimed(key, LEASE, T);
      assert.equal(await ledger().complete(key, token, TTL, T + 10), true);
      assert.deepEqual(await ledger().get(key), {
        key,
        status: 'COMPLETED',
        expiresAt: T + 10 + TTL,
        updatedAt: T + 10,
      });
      assert.deepEqual(await ledger().claim(key, LEASE, T + 2 * LEASE), { status: 'completed' });
    });

    test('a claim that lapsed but was not taken over can still complete', async () => {
      const key = testId('key-');
      const token = await claimed(key, LEASE, T);
      assert.equal(await ledger().complete(key, token, TTL, T + 3 * LEASE), true);
      assert.equal((await ledger().get(key))?.status, 'COMPLETED');
    });

    test('complete without the claim changes nothing: an unknown key, another token, a completed key', async () => {
      const key = testId('key-');
      assert.equal(await ledger().complete(key, 'no-such-token', TTL, T), false);
      assert.equal(await ledger().get(key), undefined);
      const token = await claimed(key, LEASE, T);
      assert.equal(await ledger().complete(key, `${token}x`, TTL, T), false);
      assert.equal((await ledger().get(key))?.status, 'IN_PROGRESS');
      assert.equal(await ledger().complete(key, token, TTL, T), true);
      assert.equal(await ledger().complete(key, token, TTL, T + 5), false, 'completed once');
      assert.equal((await ledger().get(key))?.updatedAt, T);
    });

    test('release drops its own claim so the key can be claimed again at once', async () => {
      const key = testId('key-');
      const token = await claimed(key, LEASE, T);
      assert.equal(await ledger().release(key, token), true);
      assert.equal(await ledger().get(key), undefined);
      assert.equal((await ledger().claim(key, LEASE, T + 1)).status, 'claimed');
    });

    test('release leaves a completed key completed', async () => {
      const key = testId('key-');
      const token = await claimed(key, LEASE, T);
      await ledger().complete(key, token, TTL, T);
      assert.equal(await ledger().release(key, token), false);
      assert.deepEqual(await ledger().claim(key, LEASE, T + 1), { status: 'completed' });
    });

    test('fencing: a claim that lapsed and was taken over can neither release nor complete the new one', async () => {
      const key = testId('key-');
      // A claims; its lease lapses while it still works; B takes the key over.
      const a = await claimed(key, LEASE, T);
      const b = await claimed(key, LEASE, T + LEASE);
      // A's attempt fails: its release must not free B's claim…
      assert.equal(await ledger().release(key, a), false);
      // …so C, arriving while B still sends, is told the key is busy.
      assert.deepEqual(await ledger().claim(key, LEASE, T + LEASE + 1), { status: 'busy' });
      // A cannot complete it either; B can.
      assert.equal(await ledger().complete(key, a, TTL, T + LEASE + 2), false);
      assert.equal((await ledger().get(key))?.status, 'IN_PROGRESS');
      assert.equal(await ledger().complete(key, b, TTL, T + LEASE + 3), true);
      assert.deepEqual(await ledger().claim(key, LEASE, T + 3 * LEASE), { status: 'completed' });
    });

    test('an absent key reads as undefined', async () => {
      assert.equal(await ledger().get('key-never-seen'), undefined);
    });

    describePurge(
      ctx,
      'purge removes the entries of both kinds that expired before now, and counts them',
      () => ledger().purge,
      async () => {
        const t = 1_000_000;
        const [lapsedClaim, oldDone, expiringNow, live] = [1, 2, 3, 4].map(() => testId('purge-'));
        await claimed(lapsedClaim!, 10, t);
        await completed(oldDone!, 20, t);
        await claimed(expiringNow!, 100, t);
        await completed(live!, 1_000, t);
        assert.equal(await ledger().purge!(t + 100), 2);
        assert.equal(await ledger().get(lapsedClaim!), undefined);
        assert.equal(await ledger().get(oldDone!), undefined);
        assert.equal((await ledger().get(expiringNow!))?.status, 'IN_PROGRESS');
        assert.equal((await ledger().get(live!))?.status, 'COMPLETED');
      },
    );

    describePurge(
      ctx,
      'purge removes thousands of expired entries (more than one chunk) and keeps the live ones',
      () => ledger().purge,
      async () => {
        // Below the other purge test's times; the live entries expire long after both.
        const t = 100_000;
        const expired = Array.from({ length: 2_500 }, () => testId('bulk-'));
        const live = Array.from({ length: 50 }, () => testId('bulk-live-'));
        await Promise.all(expired.map((key) => completed(key, 10, t)));
        await Promise.all(live.map((key) => completed(key, TTL, T)));
        assert.equal(await ledger().purge!(t + 1_000), 2_500);
        assert.equal(await ledger().get(expired[0]!), undefined);
        assert.equal(await ledger().get(expired[2_499]!), undefined);
        const kept = await Promise.all(live.map((key) => ledger().get(key)));
        assert.deepEqual(
          kept.map((e) => e?.status),
          live.map(() => 'COMPLETED'),
        );
      },
    );

    test('of two concurrent claims of one key exactly one is claimed', async () => {
      const key = testId('key-');
      const results = await Promise.all([ledger().claim(key, LEASE, T), ledger().claim(key, LEASE, T)]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['busy', 'claimed']);
    });

    test('of concurrent claims through two stores over the same storage exactly one is claimed', async () => {
      const other = await ctx.openAnother();
      try {
        const keys = Array.from({ length: 20 }, () => testId('race-'));
        const results = (
          await Promise.all(
            keys.flatMap((key) => [ledger().claim(key, LEASE, T), other.ledger.claim(key, LEASE, T)]),
          )
        ).map((r) => r.status);
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
      const [held, done] = [testId('key-'), testId('key-')];
      const token = await claimed(held, LEASE, T);
      await completed(done, TTL, T);
      await ctx.reopen();
      assert.deepEqual(await ledger().claim(held, LEASE, T + 1), { status: 'busy' });
      assert.deepEqual(await ledger().claim(done, LEASE, T + 1), { status: 'completed' });
      assert.equal(await ledger().release(held, token), true, 'the token still holds after the reopen');
    });
  });

  describe('idempotency_ledger: a completed key past its ttl', () => {
    test('a completed key whose ttl ran out but that is not purged yet still claims as completed', async () => {
      const key = testId('key-expired-done-');
      const t = 1_767_225_600_000;
      const claim = await ledger().claim(key, 30_000, t);
      assert.equal(claim.status, 'claimed');
      assert.equal(await ledger().complete(key, (claim as { token: string }).token, 20, t), true);
      // Expired 20 ms after t; nothing purged it: it is done until it goes (see the port).
      assert.deepEqual(await ledger().claim(key, 30_000, t + 60_000), { status: 'completed' });
      assert.equal((await ledger().get(key))?.status, 'COMPLETED');
    });
  });
}
