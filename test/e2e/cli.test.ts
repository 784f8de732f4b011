/**
 * The `webhooks start` command as a user runs it: a child process, a generated admin token printed
 * once, graceful shutdown on SIGTERM, data that survives a restart and a SIGKILL, and clear
 * configuration errors.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

const CLI = join(import.meta.dirname, '../../src/runtimes/cli/main.ts');

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('WEBHOOKS_') && v !== undefined) env[k] = v;
  return { ...env, WEBHOOKS_LOG_LEVEL: 'warn', ...extra };
}

/** Starts the CLI and waits for its "listening on" line. */
const children = new Set<ChildProcess>();

function startCli(dataDir: string, extraEnv: Record<string, string> = {}): Promise<Started> {
  const child = spawn(process.execPath, [CLI, 'start', '--port', '0', '--data-dir', dataDir], {
    env: cleanEnv(extraEnv),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in time:\n${out}`)), 20_000);
    const check = () => {
      // The start banner ends with the OpenAPI line.
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m && out.includes('OpenAPI document:')) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve({ child, url: m[1]!, output: () => out });
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before listening:\n${out}`));
    });
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

async function api(url: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('webhooks start (child process)', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'webhooks-cli-'));
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  test('first start prints a generated admin token; data survives SIGTERM and SIGKILL restarts', async () => {
    const first = await startCli(dataDir, { WEBHOOKS_DEV: '1' });
    const token = /admin token \(generated, stored in .*admin-token\): (wha_\S+)/.exec(first.output())?.[1];
    assert.ok(token, first.output());
    assert.equal(
      (
        await api(first.url, token, 'POST', '/admin/schemas', {
          domain: 'orders',
          event: 'created',
          schema: { type: 'object' },
        })
      ).status,
      201,
    );
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

    const second = await startCli(dataDir, { WEBHOOKS_DEV: '1' });
    assert.match(second.output(), /admin token: stored in/);
    assert.doesNotMatch(second.output(), /wha_/, 'the token is printed only when generated');
    const got = await api(second.url, token, 'GET', `/admin/subscriptions/${sub.body.id}`);
    assert.equal(got.status, 200);
    // The encryption key was kept too: rotating needs to decrypt nothing, but must write with the same key.
    const rotated = await api(
      second.url,
      token,
      'POST',
      `/admin/subscriptions/${sub.body.id}/rotate-secret`,
      {},
    );
    assert.equal(rotated.status, 200);
    assert.equal(rotated.body.signing.secrets.length, 2);
    const p2 = await api(second.url, token, 'POST', '/admin/partners', { id: 'globex', name: 'Globex' });
    assert.equal(p2.status, 201);
    second.child.kill('SIGKILL');
    await exitOf(second.child);

    const third = await startCli(dataDir, { WEBHOOKS_DEV: '1' });
    assert.equal(
      (await api(third.url, token, 'GET', '/admin/partners/globex')).status,
      200,
      'a write acknowledged before SIGKILL is kept',
    );
    assert.equal((await api(third.url, token, 'GET', '/admin/schemas/orders/created/1')).status, 200);
    third.child.kill('SIGINT');
    assert.equal(await exitOf(third.child), 0);
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
});
