/**
 * Migration v8 of the SQLite store on a database written before it: subscriptions that share an
 * endpoint do not stop the upgrade; the oldest of each group holds the endpoint, the others stay
 * readable, updatable and deletable, and take the endpoint over when its holder goes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SubscriptionRecord } from '../../src/common/model.ts';
import { closeDatabase, openDatabase } from '../../src/engines/sqlite/database.ts';
import { MIGRATIONS } from '../../src/engines/sqlite/migrations.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { subscriptionRecord } from '../support/fixtures.ts';

/** The schema version before the endpoint rule. */
const BEFORE_ENDPOINTS = 7;
const URL = 'https://hooks.example.com/dup';

/** Writes subscriptions the way a store before v8 did, unchecked. */
function writeUnchecked(path: string, records: SubscriptionRecord[]): void {
  const db = openDatabase(path, MIGRATIONS.slice(0, BEFORE_ENDPOINTS));
  const insert = db.prepare(
    `INSERT INTO partner_event_subscription (id, partner_id, domain, event, status, revision, doc)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const r of records)
    insert.run(r.id, r.partnerId, r.domain, r.event, r.status, r.revision, JSON.stringify(r));
  closeDatabase(db);
}

describe('sqlite migration v8: subscriptions sharing an endpoint', () => {
  let dir: string;
  let store: SqliteStore;
  // Ids in creation order; written out of order, so the holder is chosen by id, not by row order.
  const oldest = subscriptionRecord({ id: 'sub-0001', url: URL, description: 'oldest' });
  const middle = subscriptionRecord({ id: 'sub-0002', url: URL, description: 'middle' });
  const newest = subscriptionRecord({ id: 'sub-0003', url: URL, description: 'newest' });
  const otherPartner = subscriptionRecord({ id: 'sub-0004', partnerId: 'zeta', url: URL });
  const noUrl = { ...subscriptionRecord({ id: 'sub-0005', partnerId: 'broken' }), url: undefined };
  const endpoint = { partnerId: oldest.partnerId, domain: oldest.domain, event: oldest.event, url: URL };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-endpoints-'));
    const path = join(dir, 'store.db');
    writeUnchecked(path, [newest, oldest, otherPartner, middle, noUrl as unknown as SubscriptionRecord]);
    store = new SqliteStore(path);
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the upgrade keeps every subscription; the oldest of the duplicates holds the endpoint', async () => {
    for (const s of [oldest, middle, newest, otherPartner])
      assert.deepEqual(await store.subscriptions.get(s.id), s);
    assert.equal((await store.subscriptions.get(noUrl.id))?.id, noUrl.id, 'a document without url is kept');
    assert.equal((await store.subscriptions.findByEndpoint(endpoint))?.id, oldest.id);
    assert.equal(
      (await store.subscriptions.findByEndpoint({ ...endpoint, partnerId: 'zeta' }))?.id,
      otherPartner.id,
    );
    await assert.rejects(
      store.subscriptions.insert(subscriptionRecord({ url: URL })),
      (err: unknown) => (err as { code?: string }).code === 'already_exists',
    );
  });

  test('a duplicate can be updated in place; the holder keeps the endpoint', async () => {
    const updated = await store.subscriptions.update({ ...middle, description: 'still here' });
    assert.equal(updated.revision, 2);
    Object.assign(middle, updated);
    assert.equal((await store.subscriptions.findByEndpoint(endpoint))?.id, oldest.id);
  });

  test('when the holder is deleted, the next oldest duplicate takes the endpoint over', async () => {
    assert.equal(await store.subscriptions.delete(oldest.id), true);
    assert.equal((await store.subscriptions.findByEndpoint(endpoint))?.id, middle.id);
    await assert.rejects(
      store.subscriptions.insert(subscriptionRecord({ url: URL })),
      (err: unknown) =>
        (err as { details?: Array<{ message: string }> }).details?.[0]?.message.includes(middle.id) === true,
    );
  });

  test('a duplicate moved to a free url takes it; deleting the last one frees the endpoint', async () => {
    const moved = await store.subscriptions.update({ ...newest, url: 'https://hooks.example.com/own' });
    assert.equal((await store.subscriptions.findByEndpoint(moved))?.id, newest.id);
    assert.equal((await store.subscriptions.findByEndpoint(endpoint))?.id, middle.id);
    assert.equal(await store.subscriptions.delete(middle.id), true);
    assert.equal(await store.subscriptions.findByEndpoint(endpoint), undefined);
    const fresh = subscriptionRecord({ url: URL });
    await store.subscriptions.insert(fresh);
    assert.equal((await store.subscriptions.findByEndpoint(endpoint))?.id, fresh.id);
  });
});
