/**
 * Crash safety: the platform is SIGKILLed while deliveries are in flight, started again on the same
 * data dir, and every event it accepted is delivered (none lost).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';

const CLI = join(import.meta.dirname, '../../src/runtimes/cli/main.ts');
const TOKEN = 'restart-test-token-0123456789';

function start(dataDir: string, port: number): Promise<{ child: ChildProcess; url: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WEBHOOKS_') && v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [CLI, 'start', '--port', String(port), '--data-dir', dataDir], {
    env: { ...env, WEBHOOKS_DEV: '1', WEBHOOKS_ADMIN_TOKEN: TOKEN, WEBHOOKS_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not start:\n${out}`)), 20_000);
    child.stdout!.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m && out.includes('OpenAPI document:')) {
        clearTimeout(timer);
        resolve({ child, url: m[1]! });
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)));
  });
}

async function api(url: string, method: string, path: string, body?: unknown, contentType = 'application/json') {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('restart after SIGKILL', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  test('every accepted event is delivered after a crash mid-stream', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-restart-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const receiver: TestReceiver = await startReceiver({ tls: false, answer: () => ({ status: 200, delayMs: 3 }) });
    cleanup.push(() => receiver.close());
    const port = 20000 + Math.floor(Math.random() * 20000);

    let first = await start(dataDir, port);
    cleanup.push(async () => first.child.kill('SIGKILL'));
    assert.equal((await api(first.url, 'POST', '/admin/schemas', { domain: 'orders', event: 'created', schema: { type: 'object' } })).status, 201);
    // Short timeouts keep the ledger claims of the requests cut off by the crash short (they lapse by themselves).
    const partner = { id: 'acme', name: 'ACME', delivery: { timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 1000 } } };
    assert.equal((await api(first.url, 'POST', '/admin/partners', partner)).status, 201);
    const sub = await api(first.url, 'POST', '/admin/subscriptions', {
      partnerId: 'acme',
      domain: 'orders',
      event: 'created',
      url: `${receiver.url}/in`,
    });
    assert.equal(sub.status, 201);

    const total = 400;
    const ids: string[] = [];
    for (let b = 0; b < total / 50; b++) {
      const batch = Array.from({ length: 50 }, (_, i) => {
        const id = randomUUID();
        ids.push(id);
        return { specversion: '1.0', id, source: '/shop', type: 'orders.created', data: { n: b * 50 + i } };
      });
      const res = await api(first.url, 'POST', '/events', batch, 'application/cloudevents-batch+json');
      assert.equal(res.status, 202);
    }
    // Kill while deliveries are still flowing.
    await receiver.waitFor(20, 20_000);
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    const beforeRestart = receiver.received.length;
    assert.ok(beforeRestart < total, `the crash should come mid-stream (had ${beforeRestart} of ${total})`);

    first = await start(dataDir, port);
    const deadline = Date.now() + 60_000;
    const delivered = () => new Set(receiver.received.map((d) => d.json?.n)).size;
    while (delivered() < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(delivered(), total, 'every accepted event was delivered');
    first.child.kill('SIGTERM');
    await new Promise((r) => first.child.once('exit', r));
  });
});
