/**
 * The at-rest secret key across restarts of the real `webhooks` process: another key stops the start
 * naming both fingerprints; the old key given as previous re-seals the store at start (after which
 * the new key alone works); `webhooks rotate-secret-key` rotates a key kept in the data dir. In each
 * case the partner keeps verifying signatures with the secret it was given.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SecretBox } from '../../src/common/secret-box.ts';
import { api, CLI, cleanEnv, exitOf, killAll, type StartedCli, startCli } from '../support/cli.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';

const TOKEN = 'secret-key-test-token-0123456789';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ENV = { WEBHOOKS_DEV: '1', WEBHOOKS_ADMIN_TOKEN: TOKEN };

/** Runs `webhooks <args>` to its end. */
async function run(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const code = await exitOf(child);
  return { code, stdout, stderr };
}

/** Schema, partner and a subscription to the receiver, signed with SECRET. */
async function subscribe(url: string, receiver: TestReceiver): Promise<void> {
  const schema = { domain: 'orders', event: 'created', schema: { type: 'object' } };
  assert.equal((await api(url, TOKEN, 'POST', '/admin/schemas', schema)).status, 201);
  assert.equal((await api(url, TOKEN, 'POST', '/admin/partners', { id: 'acme', name: 'ACME' })).status, 201);
  const sub = await api(url, TOKEN, 'POST', '/admin/subscriptions', {
    partnerId: 'acme',
    domain: 'orders',
    event: 'created',
    url: `${receiver.url}/in`,
    signing: { secret: SECRET },
    auth: { type: 'bearer', token: 'partner-token-0123' },
  });
  assert.equal(sub.status, 201);
}

/** Publishes one event and waits for its delivery; asserts the signature verifies with SECRET. */
async function deliverOne(url: string, receiver: TestReceiver, n: number): Promise<void> {
  const event = {
    specversion: '1.0',
    id: randomUUID(),
    source: '/shop',
    type: 'orders.created',
    data: { n },
  };
  const res = await api(url, TOKEN, 'POST', '/events', event, 'application/cloudevents+json');
  assert.equal(res.status, 202);
  const received = await receiver.waitFor(n);
  const delivery = received.find((d) => d.json?.n === n);
  assert.ok(delivery, `delivery ${n} arrived`);
  assert.equal(delivery.verified, true, delivery.verifyError);
  assert.equal(delivery.headers.authorization, 'Bearer partner-token-0123', 'the credentials open too');
}

async function stop(running: StartedCli): Promise<void> {
  running.child.kill('SIGTERM');
  assert.equal(await exitOf(running.child), 0);
}

describe('the secret key across restarts (child processes)', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  let receiver: TestReceiver;
  before(async () => {
    receiver = await startReceiver({ tls: false });
    receiver.secret = SECRET;
  });
  after(async () => {
    killAll();
    await receiver.close();
    for (const c of cleanup.reverse()) await c();
  });
  const newDataDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-key-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  };

  test('another key stops the start; the old key as previous re-seals; then the new key alone works', async () => {
    const dataDir = await newDataDir();
    const args = ['start', '--port', '0', '--data-dir', dataDir];
    const oldKey = SecretBox.generateKey();
    const newKey = SecretBox.generateKey();
    const [oldId, newId] = [SecretBox.fromString(oldKey).keyId, SecretBox.fromString(newKey).keyId];
    const base = receiver.received.length;

    const first = await startCli(args, { ...ENV, WEBHOOKS_SECRET_KEY: oldKey });
    await subscribe(first.url, receiver);
    await deliverOne(first.url, receiver, base + 1);
    await stop(first);

    const refused = await run(args, { ...ENV, WEBHOOKS_SECRET_KEY: newKey });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`fingerprint ${newId}.*sealed under key ${oldId}`));
    assert.match(refused.stderr, /WEBHOOKS_SECRET_KEY_PREVIOUS/);
    assert.doesNotMatch(refused.stdout, /listening on/);

    const rotated = await startCli(args, {
      ...ENV,
      WEBHOOKS_SECRET_KEY: newKey,
      WEBHOOKS_SECRET_KEY_PREVIOUS: oldKey,
      WEBHOOKS_LOG_LEVEL: 'info',
    });
    assert.match(
      rotated.output(),
      /re-sealed subscription secrets under the configured key.*"subscriptions":1/,
    );
    assert.ok(!rotated.output().includes(SECRET) && !rotated.output().includes(oldKey), 'no secret logged');
    await deliverOne(rotated.url, receiver, base + 2);
    await stop(rotated);

    const alone = await startCli(args, { ...ENV, WEBHOOKS_SECRET_KEY: newKey });
    await deliverOne(alone.url, receiver, base + 3);
    await stop(alone);
  });

  test('rotate-secret-key on a key file: a new key in the data dir, and a plain start still delivers', async () => {
    const dataDir = await newDataDir();
    const args = ['start', '--port', '0', '--data-dir', dataDir];
    const base = receiver.received.length;

    const first = await startCli(args, ENV);
    await subscribe(first.url, receiver);
    await deliverOne(first.url, receiver, base + 1);
    await stop(first);
    const oldKey = readFileSync(join(dataDir, 'secret.key'), 'utf8').trim();

    const rotation = await run(['rotate-secret-key', '--data-dir', dataDir], ENV);
    assert.equal(rotation.code, 0, rotation.stderr);
    const oldId = SecretBox.fromString(oldKey).keyId;
    const newId = SecretBox.fromString(readFileSync(join(dataDir, 'secret.key'), 'utf8')).keyId;
    assert.notEqual(newId, oldId);
    assert.match(rotation.stdout, new RegExp(`fingerprint ${oldId} → ${newId}; 1 subscription re-sealed`));

    const second = await startCli(args, ENV);
    await deliverOne(second.url, receiver, base + 2);
    await stop(second);
  });

  test('rotate-secret-key refuses while the platform runs on the data dir, and goes ahead once it stopped (a crashed one does not count)', async () => {
    const dataDir = await newDataDir();
    const args = ['start', '--port', '0', '--data-dir', dataDir];
    const running = await startCli(args, ENV);
    const keyBefore = readFileSync(join(dataDir, 'secret.key'), 'utf8');

    const refused = await run(['rotate-secret-key', '--data-dir', dataDir], ENV);
    assert.equal(refused.code, 2, refused.stdout);
    assert.match(
      refused.stderr,
      new RegExp(`the platform is running on .* \\(process ${running.child.pid}\\)`),
    );
    assert.equal(readFileSync(join(dataDir, 'secret.key'), 'utf8'), keyBefore, 'the key is untouched');

    // Killed without a chance to clean up: its mark is stale, and the rotation goes ahead.
    running.child.kill('SIGKILL');
    await exitOf(running.child);
    const rotation = await run(['rotate-secret-key', '--data-dir', dataDir], ENV);
    assert.equal(rotation.code, 0, rotation.stderr);
    assert.notEqual(readFileSync(join(dataDir, 'secret.key'), 'utf8'), keyBefore);
    const again = await startCli(args, ENV);
    await stop(again);
  });
});
