/** Several processes opening the same new database files at once (e.g. `--role` processes starting together). */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = join(import.meta.dirname, '../..');
const OPEN = `
import { SqliteStore } from '${ROOT}/src/engines/sqlite/store.ts';
import { EmbeddedLog } from '${ROOT}/src/engines/embedded/log.ts';
const dir = process.argv[1];
const store = new SqliteStore(dir + '/store.db');
const bus = new EmbeddedLog(dir + '/bus.db', { retentionIntervalMs: 0 });
await bus.ensureTopic('t.x');
await store.close();
await bus.close();
`;

test('six processes opening the same new store and log at once all succeed (migrations run once)', async () => {
  for (let round = 0; round < 3; round++) {
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-open-'));
    const codes = await Promise.all(
      Array.from(
        { length: 6 },
        () =>
          new Promise<{ code: number | null; err: string }>((resolve) => {
            const child = spawn(process.execPath, ['--input-type=module', '-e', OPEN, dir], {
              stdio: ['ignore', 'ignore', 'pipe'],
            });
            let err = '';
            child.stderr.on('data', (d) => {
              err += d;
            });
            child.on('exit', (code) => resolve({ code, err }));
          }),
      ),
    );
    for (const c of codes) assert.equal(c.code, 0, c.err);
    await rm(dir, { recursive: true, force: true });
  }
});
