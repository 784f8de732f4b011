/** The workers purge expired idempotency-ledger entries on a schedule (real SQLite store). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Logger } from '../../src/common/log.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { startLedgerPurge } from '../../src/runtimes/workers.ts';

test('expired ledger entries are purged by the schedule; live ones stay', async () => {
  const store = new SqliteStore(':memory:');
  const now = Date.now();
  await store.ledger.complete('old', 1, now - 10_000);
  await store.ledger.complete('fresh', 60_000, now);
  const stop = startLedgerPurge(store, new Logger({ level: 'error', sink: { write: () => {} } }), 20);
  await new Promise((r) => setTimeout(r, 150));
  stop();
  assert.equal(await store.ledger.get('old'), undefined);
  assert.equal((await store.ledger.get('fresh'))?.status, 'COMPLETED');
  await store.close();
});
