/** Conformance of `store.apiKeys` (`api_key`) and `store.audit` (`audit_log`), for every engine. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { uuidv7 } from '../../src/common/ids.ts';
import type { ApiKeyRecord, AuditRecord } from '../../src/common/model.ts';
import { testId } from '../support/fixtures.ts';
import { conflict, type StoreContext } from './store-support.ts';

function apiKey(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return {
    id: uuidv7(),
    name: 'shop',
    role: 'publisher',
    sources: ['/shop', '/shop/*'],
    eventTypes: ['orders.created'],
    keyHash: testId('hash-'),
    prefix: 'whk_abcdefgh',
    createdAt: '2026-01-01T00:00:00.000Z',
    createdBy: 'admin-token',
    revision: 1,
    ...overrides,
  };
}

function auditRecord(actor: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: uuidv7(),
    at: new Date().toISOString(),
    actor,
    action: 'POST /admin/partners',
    target: { id: 'acme' },
    fields: ['id', 'name'],
    status: 201,
    requestId: 'req-1',
    ...overrides,
  };
}

/** Registers the suites of API keys and the audit log. */
export function describeAccess(ctx: StoreContext): void {
  const keys = () => ctx.store().apiKeys;
  const audit = () => ctx.store().audit;

  describe('api_key', () => {
    test('a key round-trips with every field, by id and by hash', async () => {
      const rec = apiKey({ expiresAt: '2030-01-01T00:00:00.000Z' });
      await keys().insert(rec);
      assert.deepEqual(await keys().get(rec.id), rec);
      assert.deepEqual(await keys().findByHash(rec.keyHash), rec);
      assert.equal(await keys().findByHash(testId('other-hash-')), undefined);
    });

    test('a second key with the same id or the same hash is a conflict', async () => {
      const rec = apiKey();
      await keys().insert(rec);
      await assert.rejects(keys().insert(apiKey({ id: rec.id })), conflict('already_exists'));
      await assert.rejects(keys().insert(apiKey({ keyHash: rec.keyHash })), conflict('already_exists'));
    });

    test('update is revision-checked; touch sets lastUsedAt without changing the revision', async () => {
      const rec = apiKey();
      await keys().insert(rec);
      await keys().touch(rec.id, '2026-02-01T00:00:00.000Z');
      const touched = (await keys().get(rec.id))!;
      assert.equal(touched.lastUsedAt, '2026-02-01T00:00:00.000Z');
      assert.equal(touched.revision, 1);
      const revoked = await keys().update({ ...touched, revokedAt: '2026-02-02T00:00:00.000Z' });
      assert.equal(revoked.revision, 2);
      assert.equal((await keys().findByHash(rec.keyHash))!.revokedAt, '2026-02-02T00:00:00.000Z');
      await assert.rejects(keys().update({ ...touched, name: 'stale' }), conflict('revision_conflict'));
    });

    test('keys are listed by id in pages', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const rec = apiKey();
        ids.push(rec.id);
        await keys().insert(rec);
      }
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await keys().list({ limit: 2, ...(cursor ? { cursor } : {}) });
        seen.push(...page.items.map((k) => k.id));
        cursor = page.next;
      } while (cursor);
      assert.deepEqual(
        seen.filter((id) => ids.includes(id)),
        ids,
      );
      assert.deepEqual([...seen].sort(), seen);
    });
  });

  describe('audit_log', () => {
    test('entries are listed newest first, in pages, and by actor', async () => {
      const actor = `api-key:${testId()}`;
      const other = `api-key:${testId()}`;
      const mine = [
        auditRecord(actor),
        auditRecord(other),
        auditRecord(actor, { actorName: 'n' }),
        auditRecord(actor),
      ];
      for (const r of mine) await audit().append(r);
      const byActor: AuditRecord[] = [];
      let cursor: string | undefined;
      do {
        const page = await audit().list({ actor }, { limit: 2, ...(cursor ? { cursor } : {}) });
        byActor.push(...page.items);
        cursor = page.next;
      } while (cursor);
      assert.deepEqual(byActor, mine.filter((r) => r.actor === actor).reverse());
      const newest = await audit().list({}, { limit: 1 });
      assert.deepEqual(newest.items, [mine.at(-1)]);
    });
  });
}
