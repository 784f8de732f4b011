/**
 * The store port's conformance suite. Every store engine runs it:
 *   runStoreConformance('sqlite', async () => ({ open, cleanup }))
 * `open()` must return a store over the same storage each time it is called, so that closing and
 * opening again is a restart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Store } from '../../src/common/ports/store.ts';
import { partnerRecord, schemaRecord, subscriptionRecord, testId } from '../support/fixtures.ts';
import { describeAccess } from './store-access.ts';
import { describeDeadLetters } from './store-dead-letters.ts';
import { describeDeliveries } from './store-deliveries.ts';
import { describeHeldTasks } from './store-held-tasks.ts';
import { describeLedger } from './store-ledger.ts';
import { describeScheduled } from './store-scheduled.ts';
import { describeSubscriptionEndpoints } from './store-subscription-endpoints.ts';
import { conflict, type Expiry, type StoreContext, type StoreHarness } from './store-support.ts';

export type { StoreHarness } from './store-support.ts';

/** Registers the whole suite for one engine. */
export function runStoreConformance(
  engine: string,
  makeHarness: () => Promise<StoreHarness>,
  options: { expiry?: Expiry } = {},
): void {
  describe(`store conformance: ${engine}`, () => {
    let harness: StoreHarness;
    let store: Store;
    before(async () => {
      harness = await makeHarness();
      store = await harness.open();
    });
    after(async () => {
      await store.close();
      await harness.cleanup();
    });
    const context: StoreContext = {
      expiry: options.expiry ?? 'purge',
      store: () => store,
      reopen: async () => {
        await store.close();
        store = await harness.open();
        return store;
      },
      openAnother: () => harness.open(),
    };

    describe('event_schema', () => {
      test('a schema version round-trips with every field', async () => {
        const rec = schemaRecord({
          domain: 'rt',
          description: 'round trip',
          schema: { type: 'object', a: [1, 'x'] },
        });
        await store.schemas.insert(rec);
        assert.deepEqual(await store.schemas.get('rt', 'created', 1), rec);
      });

      test('inserting an existing domain/event/version is a conflict and keeps the first', async () => {
        const first = schemaRecord({ domain: 'dup' });
        await store.schemas.insert(first);
        await assert.rejects(
          store.schemas.insert(schemaRecord({ domain: 'dup', status: 'INACTIVE' })),
          conflict('already_exists'),
        );
        assert.equal((await store.schemas.get('dup', 'created', 1))?.id, first.id);
      });

      test('an absent version reads as undefined', async () => {
        assert.equal(await store.schemas.get('nope', 'nope', 1), undefined);
      });

      test('listVersions returns one event’s versions in ascending numeric order', async () => {
        for (const version of [3, 1, 10, 2])
          await store.schemas.insert(schemaRecord({ domain: 'lv', version }));
        await store.schemas.insert(schemaRecord({ domain: 'lv', event: 'other', version: 5 }));
        const versions = (await store.schemas.listVersions('lv', 'created')).map((r) => r.version);
        assert.deepEqual(versions, [1, 2, 3, 10]);
      });

      test('list filters by domain, event and status', async () => {
        await store.schemas.insert(schemaRecord({ domain: 'lf', event: 'a', version: 1 }));
        await store.schemas.insert(
          schemaRecord({ domain: 'lf', event: 'a', version: 2, status: 'INACTIVE' }),
        );
        await store.schemas.insert(schemaRecord({ domain: 'lf', event: 'b', version: 1 }));
        const all = await store.schemas.list({ domain: 'lf' });
        assert.deepEqual(
          all.items.map((r) => `${r.event}.v${r.version}`),
          ['a.v1', 'a.v2', 'b.v1'],
        );
        const inactive = await store.schemas.list({ domain: 'lf', status: 'INACTIVE' });
        assert.deepEqual(
          inactive.items.map((r) => r.version),
          [2],
        );
        const b = await store.schemas.list({ domain: 'lf', event: 'b' });
        assert.equal(b.items.length, 1);
        // Without a domain (every schema, paged by cursor), by event only and by status only.
        const names = async (filter: Parameters<typeof store.schemas.list>[0]) => {
          const out: string[] = [];
          let cursor: string | undefined;
          do {
            const page = await store.schemas.list(filter, { limit: 2, ...(cursor ? { cursor } : {}) });
            out.push(...page.items.map((r) => `${r.domain}.${r.event}.v${r.version}`));
            cursor = page.next;
          } while (cursor);
          return out.filter((n) => n.startsWith('lf.'));
        };
        assert.deepEqual(await names({}), ['lf.a.v1', 'lf.a.v2', 'lf.b.v1']);
        assert.deepEqual(await names({ event: 'b' }), ['lf.b.v1']);
        assert.deepEqual(await names({ status: 'INACTIVE' }), ['lf.a.v2']);
      });

      test('update bumps the revision; a stale revision is a conflict', async () => {
        const rec = schemaRecord({ domain: 'up' });
        await store.schemas.insert(rec);
        const updated = await store.schemas.update({ ...rec, status: 'INACTIVE' });
        assert.equal(updated.revision, 2);
        assert.equal((await store.schemas.get('up', 'created', 1))?.status, 'INACTIVE');
        await assert.rejects(
          store.schemas.update({ ...rec, status: 'ACTIVE' }),
          conflict('revision_conflict'),
        );
        assert.equal((await store.schemas.get('up', 'created', 1))?.status, 'INACTIVE');
      });

      test('updating a missing schema is not_found', async () => {
        await assert.rejects(store.schemas.update(schemaRecord({ domain: 'ghost' })), (err: unknown) => {
          assert.equal((err as { kind?: string }).kind, 'not_found');
          return true;
        });
      });
    });

    describe('partner', () => {
      test('a partner round-trips and duplicates conflict', async () => {
        const p = partnerRecord({ id: 'p-rt', contactEmail: 'ops@p.example' });
        await store.partners.insert(p);
        assert.deepEqual(await store.partners.get('p-rt'), p);
        await assert.rejects(
          store.partners.insert(partnerRecord({ id: 'p-rt' })),
          conflict('already_exists'),
        );
      });

      test('of two updates from the same revision exactly one wins', async () => {
        const p = partnerRecord({ id: 'p-race' });
        await store.partners.insert(p);
        const results = await Promise.allSettled([
          store.partners.update({ ...p, name: 'one' }),
          store.partners.update({ ...p, name: 'two' }),
        ]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        assert.equal(loser.reason.code, 'revision_conflict');
      });

      test('partners are listed in id order, page by page, without gaps or repeats', async () => {
        const ids = Array.from({ length: 7 }, (_, i) => `pg-${String(i).padStart(2, '0')}`);
        for (const id of [...ids].reverse()) await store.partners.insert(partnerRecord({ id }));
        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.partners.list({ limit: 3, ...(cursor ? { cursor } : {}) });
          assert.ok(page.items.length <= 3);
          seen.push(...page.items.map((p) => p.id));
          cursor = page.next;
        } while (cursor);
        assert.deepEqual(
          seen.filter((id) => id.startsWith('pg-')),
          ids,
        );
      });

      test('a cursor that the store did not issue is a validation error', async () => {
        await assert.rejects(store.partners.list({ cursor: 'not-a-cursor' }), (err: unknown) => {
          assert.equal((err as { code?: string }).code, 'cursor_invalid');
          return true;
        });
      });

      test('a cursor of another listing, or one altered, is a validation error (never a failure, never a short last page)', async () => {
        for (const id of ['0cx-1', '0cx-2', '0cx-3']) await store.partners.insert(partnerRecord({ id }));
        const { next } = await store.partners.list({ limit: 1 });
        assert.ok(next);
        const invalid = (err: unknown) => (err as { code?: string }).code === 'cursor_invalid';
        await assert.rejects(store.apiKeys.list({ limit: 1, cursor: next }), invalid);
        await assert.rejects(store.subscriptions.list({}, { limit: 1, cursor: next }), invalid);
        await assert.rejects(store.schemas.list({}, { limit: 1, cursor: next }), invalid);
        // The cursor's text with an object where a string was (decoded, altered, encoded again).
        const decoded = JSON.parse(Buffer.from(next, 'base64url').toString('utf8')) as unknown;
        const altered = JSON.stringify(decoded).replace(/"0cx-1"/, '{"a":1}');
        assert.notEqual(altered, JSON.stringify(decoded), 'the cursor names the last partner of its page');
        await assert.rejects(
          store.partners.list({ limit: 1, cursor: Buffer.from(altered).toString('base64url') }),
          invalid,
        );
      });
    });

    describe('partner_event_subscription', () => {
      test('a subscription round-trips with its sealed secrets, filter and overrides', async () => {
        const s = subscriptionRecord({
          partnerId: 's-rt',
          auth: { type: 'header', headerName: 'X-Key', sealed: 'enc:v1:abc' },
          retry: { scheduleSeconds: [1, 2], maxAttempts: 3 },
          mapping: { rules: [] },
          schemaVersion: 2,
        });
        await store.subscriptions.insert(s);
        assert.deepEqual(await store.subscriptions.get(s.id), s);
      });

      test('list filters by partner, by event and by status', async () => {
        const a = subscriptionRecord({ id: testId('a'), partnerId: 'lf-a', domain: 'lfd', event: 'x' });
        const b = subscriptionRecord({
          id: testId('b'),
          partnerId: 'lf-b',
          domain: 'lfd',
          event: 'x',
          status: 'PAUSED',
        });
        const c = subscriptionRecord({ id: testId('c'), partnerId: 'lf-a', domain: 'lfd', event: 'y' });
        for (const s of [a, b, c]) await store.subscriptions.insert(s);
        const ids = async (f: Parameters<Store['subscriptions']['list']>[0]) =>
          (await store.subscriptions.list(f)).items.map((s) => s.id).sort();
        assert.deepEqual(await ids({ partnerId: 'lf-a' }), [a.id, c.id].sort());
        assert.deepEqual(await ids({ domain: 'lfd', event: 'x' }), [a.id, b.id].sort());
        assert.deepEqual(await ids({ domain: 'lfd', event: 'x', status: 'ACTIVE' }), [a.id]);
      });

      test('update keeps the indexed columns in step with the document', async () => {
        const s = subscriptionRecord({ partnerId: 'ix' });
        await store.subscriptions.insert(s);
        await store.subscriptions.update({ ...s, status: 'DISABLED', statusReason: 'endpoint answered 410' });
        assert.equal((await store.subscriptions.list({ partnerId: 'ix', status: 'ACTIVE' })).items.length, 0);
        const disabled = await store.subscriptions.list({ partnerId: 'ix', status: 'DISABLED' });
        assert.equal(disabled.items[0]?.statusReason, 'endpoint answered 410');
      });

      test('delete removes the subscription once', async () => {
        const s = subscriptionRecord({ partnerId: 'del' });
        await store.subscriptions.insert(s);
        assert.equal(await store.subscriptions.delete(s.id), true);
        assert.equal(await store.subscriptions.get(s.id), undefined);
        assert.equal(await store.subscriptions.delete(s.id), false);
      });
    });

    describeSubscriptionEndpoints(context);
    describeDeliveries(context);
    describeLedger(context);
    describeDeadLetters(context);
    describeHeldTasks(context);
    describeScheduled(context);
    describeAccess(context);

    test('everything written survives closing and opening the store again', async () => {
      const s = subscriptionRecord({ partnerId: 'restart' });
      await store.partners.insert(partnerRecord({ id: 'restart' }));
      await store.schemas.insert(schemaRecord({ domain: 'restart' }));
      await store.subscriptions.insert(s);
      await store.close();
      store = await harness.open();
      assert.equal((await store.partners.get('restart'))?.name, 'ACME Corp');
      assert.equal((await store.schemas.get('restart', 'created', 1))?.version, 1);
      assert.deepEqual(await store.subscriptions.get(s.id), s);
    });

    test('ping succeeds on an open store', async () => {
      await store.ping();
    });
  });
}
