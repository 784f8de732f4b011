/** The embedded engines (SQLite store, embedded log topic admin) against their conformance suites. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedTopicAdmin } from '../../src/engines/embedded/topic-admin.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { runTopicAdminConformance } from '../conformance/bus-admin.ts';
import { runStoreConformance } from '../conformance/store.ts';

runStoreConformance('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-store-'));
  return {
    open: async () => new SqliteStore(join(dir, 'store.db')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

runTopicAdminConformance('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-bus-'));
  return {
    open: async () => new EmbeddedTopicAdmin(join(dir, 'bus.db')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
