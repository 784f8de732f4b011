/**
 * Crash safety and process roles: the platform is SIGKILLed while deliveries are in flight and
 * started again on the same data dir — every accepted event is delivered; and the API, processor
 * and dispatcher run as three processes sharing one embedded log.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { api, exitOf, killAll, type StartedCli, startCli } from '../support/cli.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import { latch } from '../support/wait.ts';

const TOKEN = 'restart-test-token-0123456789';
const ENV = { WEBHOOKS_DEV: '1', WEBHOOKS_ADMIN_TOKEN: TOKEN, WEBHOOKS_LOG_LEVEL: 'error' };

/** Schema, partner (short timeouts: claims cut off by a crash lapse quickly) and a subscription to `receiver`. */
async function setUp(url: string, receiver: TestReceiver): Promise<void> {
  const schema = { domain: 'orders', event: 'created', schema: { type: 'object' } };
  assert.equal((await api(url, TOKEN, 'POST', '/admin/schemas', schema)).status, 201);
  const partner = {
    id: 'acme',
    name: 'ACME',
    delivery: { timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 1000 } },
  };
  assert.equal((await api(url, TOKEN, 'POST', '/admin/partners', partner)).status, 201);
  const sub = { partnerId: 'acme', domain: 'orders', event: 'created', url: `${receiver.url}/in` };
  assert.equal((await api(url, TOKEN, 'POST', '/admin/subscriptions', sub)).status, 201);
}

/** Publishes `total` events in batches of 50; each event's data carries its number. */
async function publishNumbered(url: string, total: number): Promise<void> {
  for (let b = 0; b < total / 50; b++) {
    const batch = Array.from({ length: 50 }, (_, i) => ({
      specversion: '1.0',
      id: randomUUID(),
      source: '/shop',
      type: 'orders.created',
      data: { n: b * 50 + i },
    }));
    const res = await api(url, TOKEN, 'POST', '/events', batch, 'application/cloudevents-batch+json');
    assert.equal(res.status, 202);
  }
}

/** Waits until the receiver has seen every number 0..total-1 at least once; returns how many it saw. */
async function deliveredNumbers(receiver: TestReceiver, total: number, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const count = () => new Set(receiver.received.map((d) => d.json?.n)).size;
  while (count() < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return count();
}

describe('crash safety and roles (child processes)', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    killAll();
    for (const c of cleanup.reverse()) await c();
  });

  test('every accepted event is delivered after a SIGKILL mid-stream', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-restart-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    // The first 20 requests are answered; the next ones are held open until after the kill, so the
    // kill lands mid-stream, with deliveries in flight.
    const gate = latch();
    const receiver = await startReceiver({
      tls: false,
      answer: (n) => (n < 20 ? { status: 200 } : { status: 200, until: gate.opened }),
    });
    cleanup.push(() => receiver.close());
    // Below Linux's ephemeral range (32768-60999), so no outgoing connection holds it when the
    // platform starts again on it (a port from that range once did: EADDRINUSE).
    const port = String(20000 + Math.floor(Math.random() * 12000));
    const args = ['start', '--port', port, '--data-dir', dataDir];

    let running: StartedCli = await startCli(args, ENV);
    await setUp(running.url, receiver);
    const total = 400;
    await publishNumbered(running.url, total);
    await receiver.waitFor(20, 20_000);
    running.child.kill('SIGKILL');
    await exitOf(running.child);
    gate.open();
    const beforeRestart = new Set(receiver.received.map((d) => d.json?.n)).size;
    assert.ok(beforeRestart < total, `the crash should come mid-stream (had ${beforeRestart} of ${total})`);

    running = await startCli(args, ENV);
    assert.equal(await deliveredNumbers(receiver, total), total, 'every accepted event was delivered');
    running.child.kill('SIGTERM');
    assert.equal(await exitOf(running.child), 0);
  });

  test('SIGTERM while a partner takes 12 s to answer: the answer is recorded, the process exits 0, and nothing is sent again', {
    timeout: 120_000,
  }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-stop-slow-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const receiver = await startReceiver({
      tls: false,
      answer: (n) => (n === 0 ? { status: 204, delayMs: 12_000 } : { status: 204 }),
    });
    cleanup.push(() => receiver.close());
    const port = String(20000 + Math.floor(Math.random() * 12000));
    const args = ['start', '--port', port, '--data-dir', dataDir];
    let running = await startCli(args, ENV);
    const schema = { domain: 'orders', event: 'created', schema: { type: 'object' } };
    assert.equal((await api(running.url, TOKEN, 'POST', '/admin/schemas', schema)).status, 201);
    const partner = { id: 'slow', name: 'Slow', delivery: { timeouts: { headersMs: 20_000 } } };
    assert.equal((await api(running.url, TOKEN, 'POST', '/admin/partners', partner)).status, 201);
    const sub = { partnerId: 'slow', domain: 'orders', event: 'created', url: `${receiver.url}/in` };
    assert.equal((await api(running.url, TOKEN, 'POST', '/admin/subscriptions', sub)).status, 201);
    const event = (id: string) => ({
      specversion: '1.0',
      id,
      source: '/shop',
      type: 'orders.created',
      data: {},
    });
    assert.equal((await api(running.url, TOKEN, 'POST', '/events', event('slow-1'))).status, 202);
    await receiver.waitFor(1, 20_000);
    running.child.kill('SIGTERM'); // the partner is still taking its time
    assert.equal(
      await exitOf(running.child),
      0,
      'stopped cleanly once the answer came, not forced out at 10 s',
    );

    running = await startCli(args, ENV);
    assert.equal((await api(running.url, TOKEN, 'POST', '/events', event('sentinel-2'))).status, 202);
    await receiver.waitFor(2, 30_000);
    const listed = await api(running.url, TOKEN, 'GET', '/admin/deliveries?eventId=slow-1');
    assert.equal(listed.body.items[0]?.status, 'SUCCESS', 'the answer given during the stop was recorded');
    running.child.kill('SIGTERM');
    assert.equal(await exitOf(running.child), 0);
    const ids = receiver.received.map((d) => d.headers['webhook-id']);
    assert.equal(new Set(ids).size, ids.length, `nothing sent twice: ${ids.join(', ')}`);
  });

  test('api, processor and dispatcher as three processes on one data dir deliver everything', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-roles-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const receiver = await startReceiver({ tls: false });
    cleanup.push(() => receiver.close());
    const start = (role: string) =>
      startCli(['start', '--role', role, '--port', '0', '--data-dir', dataDir], ENV);
    const apiProcess = await start('api');
    const processor = await start('processor');
    const dispatcher = await start('dispatcher');
    assert.equal(
      (await api(processor.url, TOKEN, 'GET', '/admin/schemas')).status,
      404,
      'worker processes serve no admin API',
    );
    assert.equal(
      (await fetch(`${dispatcher.url}/healthz`)).status,
      200,
      'worker processes serve health and metrics',
    );
    await setUp(apiProcess.url, receiver);
    await publishNumbered(apiProcess.url, 100);
    assert.equal(await deliveredNumbers(receiver, 100, 30_000), 100);
    const metrics = await (await fetch(`${processor.url}/metrics`)).text();
    assert.match(metrics, /^events_processed 100$/m, 'the processor process did the processing');
    for (const p of [apiProcess, processor, dispatcher]) p.child.kill('SIGTERM');
    for (const p of [apiProcess, processor, dispatcher]) assert.equal(await exitOf(p.child), 0);
  });
});
