/** The data dir at start: owner-only without taking what is not the platform's from its owner; shared dirs refused; marks of use. */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError } from '../../src/common/errors.ts';
import { markDataDirUse, otherDataDirUsers } from '../../src/runtimes/data-dir-users.ts';
import { ensureDataDir } from '../../src/runtimes/local-secrets.ts';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8);

test('a dir writable by everyone (like /tmp) is refused and left as it was', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-datadir-'));
  dirs.push(dir);
  chmodSync(dir, 0o1777);
  writeFileSync(join(dir, 'deploy.sh'), '#!/bin/sh\n', { mode: 0o755 });
  chmodSync(join(dir, 'deploy.sh'), 0o755);
  assert.throws(
    () => ensureDataDir(dir),
    (err: unknown) => err instanceof ConfigError && /writable by everyone/.test(err.message),
  );
  assert.equal(mode(dir), '1777');
  assert.equal(mode(join(dir, 'deploy.sh')), '755');
});

test('group and other permissions are taken away; the owner keeps what it had (an executable stays executable)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-datadir-'));
  dirs.push(dir);
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\n');
  chmodSync(join(dir, 'run.sh'), 0o755);
  writeFileSync(join(dir, 'notes.txt'), 'x');
  chmodSync(join(dir, 'notes.txt'), 0o644);
  mkdirSync(join(dir, 'nested'));
  ensureDataDir(dir);
  assert.equal(mode(dir), '700');
  assert.equal(mode(join(dir, 'run.sh')), '700');
  assert.equal(mode(join(dir, 'notes.txt')), '600');
});

test('two platforms of one process each keep a mark of their own: the first to close leaves the other’s', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-datadir-'));
  dirs.push(dir);
  const first = markDataDirUse(dir, 'platform');
  const second = markDataDirUse(dir, 'platform');
  const marks = () => readdirSync(dir).filter((n) => n.startsWith('in-use.'));
  assert.equal(marks().length, 2);
  first();
  assert.equal(marks().length, 1);
  second();
  assert.deepEqual(marks(), []);
});

test('a mark of the build before (in-use.<pid>.<what>) of a live process still counts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-datadir-'));
  dirs.push(dir);
  // The test runner's parent process is alive and is not this process.
  writeFileSync(join(dir, `in-use.${process.ppid}.platform`), 'host\n');
  assert.deepEqual(otherDataDirUsers(dir, 'platform'), [process.ppid]);
});
