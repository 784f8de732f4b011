/**
 * The `webhooks` command as a user runs it: a generated admin token printed once, graceful shutdown
 * on SIGTERM, data that survives a restart and a SIGKILL, clear configuration errors, and the demo.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CLI, cleanEnv, exitOf, killAll, startCli } from '../support/cli.ts';

describe('webhooks start (child process)', () => {
  let dataDir: string;
  const startIn = (dir: string) =>
    startCli(['start', '--port', '0', '--data-dir', dir], { WEBHOOKS_DEV: '1' });
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'webhooks-cli-'));
  });
  after(async () => {
    killAll();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('first start prints a generated admin token; data survives SIGTERM and SIGKILL restarts', async () => {
    const first = await startIn(dataDir);
    const token = /admin token \(generated, stored in .*admin-token\): (wha_\S+)/.exec(first.output())?.[1];
    assert.ok(token, first.output());
    const schema = { domain: 'orders', event: 'created', schema: { type: 'object' } };
    assert.equal((await api(first.url, token, 'POST', '/admin/schemas', schema)).status, 201);
    assert.equal(
      (await api(first.url, token, 'POST', '/admin/partners', { id: 'acme', name: 'ACME' })).status,
      201,
    );
    const sub = await api(first.url, token, 'POST', '/admin/subscriptions', {
      partnerId: 'acme',
      domain: 'orders',
      event: 'created',
      url: 'http://127.0.0.1:1/hook',
    });
    assert.equal(sub.status, 201);
    first.child.kill('SIGTERM');
    assert.equal(await exitOf(first.child), 0, 'graceful shutdown exits 0');

    const second = await startIn(dataDir);
    assert.match(second.output(), /admin token: stored in/);
    assert.doesNotMatch(second.output(), /wha_/, 'the token is printed only when generated');
    assert.equal((await api(second.url, token, 'GET', `/admin/subscriptions/${sub.body.id}`)).status, 200);
    // The encryption key was kept too: rotation seals a new secret next to the old one.
    const rotated = await api(
      second.url,
      token,
      'POST',
      `/admin/subscriptions/${sub.body.id}/rotate-secret`,
      {},
    );
    assert.equal(rotated.status, 200);
    assert.equal(rotated.body.signing.secrets.length, 2);
    assert.equal(
      (await api(second.url, token, 'POST', '/admin/partners', { id: 'globex', name: 'Globex' })).status,
      201,
    );
    second.child.kill('SIGKILL');
    await exitOf(second.child);

    const third = await startIn(dataDir);
    const kept = await api(third.url, token, 'GET', '/admin/partners/globex');
    assert.equal(kept.status, 200, 'a write acknowledged before SIGKILL is kept');
    assert.equal((await api(third.url, token, 'GET', '/admin/schemas/orders/created/1')).status, 200);
    third.child.kill('SIGINT');
    assert.equal(await exitOf(third.child), 0);
  });

  test('webhooks api-keys creates, lists and revokes keys through the running platform', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-cli-keys-'));
    const running = await startIn(dir);
    const run = async (...args: string[]) => {
      const child = spawn(
        process.execPath,
        [CLI, 'api-keys', ...args, '--url', running.url, '--data-dir', dir],
        {
          env: cleanEnv(),
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      child.stdout!.on('data', (d) => {
        out += d;
      });
      child.stderr!.on('data', (d) => {
        err += d;
      });
      return { code: await exitOf(child), out, err };
    };
    const created = await run('create', '--name', 'shop', '--role', 'publisher', '--source', '/shop');
    assert.equal(created.code, 0, created.err);
    assert.match(created.err, /shown this once/);
    const key = JSON.parse(created.out);
    assert.equal(key.role, 'publisher');
    assert.deepEqual(key.sources, ['/shop']);
    // The key works as a bearer token for what its role allows, and no more.
    assert.equal((await api(running.url, key.key, 'GET', '/admin/partners')).status, 403);
    const listed = await run('list');
    assert.equal(listed.code, 0, listed.err);
    assert.deepEqual(
      JSON.parse(listed.out).items.map((k: { id: string }) => k.id),
      [key.id],
    );
    assert.ok(!listed.out.includes(key.key), 'the listing never shows the key');
    const revoked = await run('revoke', key.id);
    assert.equal(revoked.code, 0, revoked.err);
    assert.equal(JSON.parse(revoked.out).status, 'revoked');
    assert.equal((await api(running.url, key.key, 'GET', '/admin/partners')).status, 401);
    const bad = await run('create', '--name', 'x', '--role', 'root');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /HTTP 400 validation_failed[\s\S]*role: must be one of admin, operator, publisher/);
    running.child.kill('SIGTERM');
    assert.equal(await exitOf(running.child), 0);
    await rm(dir, { recursive: true, force: true });
  });

  test('a bad configuration stops the start with exit code 2 and one line per bad value', async () => {
    const child = spawn(process.execPath, [CLI, 'start'], {
      env: cleanEnv({ WEBHOOKS_PORT: 'eighty', WEBHOOKS_BUS: 'carrier-pigeon', WEBHOOKS_DATA_DIR: dataDir }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
    });
    assert.equal(await exitOf(child), 2);
    assert.match(err, /WEBHOOKS_PORT must be a whole number, got "eighty"/);
    assert.match(err, /WEBHOOKS_BUS must be one of embedded, kafka, got "carrier-pigeon"/);
  });

  test('webhooks demo runs the whole flow and shows a verified, successful delivery; its own data dir is gone after, a given one works twice', async () => {
    const demo = async (args: string[], env: Record<string, string> = {}) => {
      const child = spawn(process.execPath, [CLI, 'demo', ...args], {
        env: cleanEnv(env),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
      });
      child.stderr!.on('data', (d) => {
        out += d;
      });
      assert.equal(await exitOf(child), 0, out);
      assert.match(out, /signature VERIFIED/);
      assert.match(out, /"status": "SUCCESS"/);
      return out;
    };
    // A shell pointing at another store is not the demo's business: it runs embedded regardless.
    const first = await demo([], {
      WEBHOOKS_STORE: 'dynamodb',
      WEBHOOKS_DYNAMODB_ENDPOINT: 'http://127.0.0.1:9',
    });
    const own = /data dir (\S+),/.exec(first)![1]!;
    assert.equal(existsSync(own), false, `${own} removed`);
    const given = await mkdtemp(join(tmpdir(), 'webhooks-demo-given-'));
    await demo(['--data-dir', given]);
    await demo(['--data-dir', given]);
    assert.equal(existsSync(join(given, 'store.db')), true, 'a given data dir is kept');
    await rm(given, { recursive: true, force: true });
  });
});
