/**
 * The Schema Registration Admin's claim on an event's registrations: a registration whose checks
 * outlasted the claim's lease refuses to store its version (another registration may hold the
 * claim by then), and the claim is handed back on every path.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { inlineSchemaChecks } from '../../src/schemas/checks.ts';
import { SchemaAdmin } from '../../src/schemas/service.ts';

test('a registration whose checks outlast its claim is refused (409 schema_registration_busy), stores nothing, and frees the claim', async () => {
  const store = new SqliteStore(':memory:');
  let now = Date.UTC(2026, 11, 7);
  let slow = false;
  const admin = new SchemaAdmin({
    schemas: store.schemas,
    ledger: store.ledger,
    topics: { ensureTopic: async (name) => ({ name, partitions: 1 }) },
    newId: () => crypto.randomUUID(),
    clock: () => new Date(now),
    partitions: 1,
    checks: {
      document: inlineSchemaChecks.document,
      compatibility: async (candidate, previous, mode) => {
        if (slow) now += 30_000; // the checks take the whole lease
        return inlineSchemaChecks.compatibility(candidate, previous, mode);
      },
    },
  });
  const body = (properties: Record<string, unknown>) => ({
    domain: 'orders',
    event: 'created',
    compatibility: 'NONE',
    schema: { type: 'object', properties },
  });
  assert.equal((await admin.register(body({ a: { type: 'string' } }))).record.version, 1);
  slow = true;
  await assert.rejects(admin.register(body({ a: { type: 'string' }, b: { type: 'string' } })), {
    code: 'schema_registration_busy',
  });
  assert.deepEqual(
    (await store.schemas.listVersions('orders', 'created')).map((r) => r.version),
    [1],
  );
  slow = false;
  assert.equal(
    (await admin.register(body({ a: { type: 'string' }, c: { type: 'string' } }))).record.version,
    2,
  );
  await store.close();
});
