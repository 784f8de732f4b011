/**
 * Files and secrets, black-box: the data dir is owner-only at every start, and no secret or token
 * this test creates appears in the platform's logs (at debug level) or in any byte of its data files.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { api, exitOf, killAll, startCli } from '../support/cli.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import { waitFor } from '../support/wait.ts';

const receivers: TestReceiver[] = [];

function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir)) out[name] = (statSync(join(dir, name)).mode & 0o777).toString(8);
  return out;
}

describe('secrets at rest and in logs', () => {
  after(async () => {
    killAll();
    await Promise.all(receivers.map((r) => r.close()));
  });

  test('the data dir is 0700 and its files 0600 at every start; no secret is in the logs or the files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-secrets-'));
    // Left open by someone else before the start: the start closes them.
    writeFileSync(join(dir, 'notes.txt'), 'left here\n', { mode: 0o644 });
    chmodSync(dir, 0o755);

    // Secrets of every shape: env-given admin token and at-rest key (so no key file is written and
    // every file of the data dir is scanned), keys, signing secrets, partner credentials.
    const adminToken = `env-admin-${randomBytes(12).toString('hex')}`;
    const secretKey = randomBytes(32).toString('base64');
    const givenSecret = `whsec_${randomBytes(24).toString('base64')}`;
    const basicPassword = `pw-${randomBytes(12).toString('hex')}`;
    const bearerToken = `tok-${randomBytes(12).toString('hex')}`;
    const headerValue = `hv-${randomBytes(12).toString('hex')}`;
    const receiver = await startReceiver({ tls: false });
    receivers.push(receiver);

    const cli = await startCli(['start', '--port', '0', '--data-dir', dir], {
      WEBHOOKS_DEV: '1',
      WEBHOOKS_LOG_LEVEL: 'debug',
      WEBHOOKS_ADMIN_TOKEN: adminToken,
      WEBHOOKS_SECRET_KEY: secretKey,
    });
    const { url } = cli;
    const call = (method: string, path: string, body?: unknown, token = adminToken) =>
      api(url, token, method, path, body);

    const running = modes(dir);
    assert.equal((statSync(dir).mode & 0o777).toString(8), '700');
    for (const [name, mode] of Object.entries(running)) assert.equal(mode, '600', `${name} while running`);

    assert.equal(
      (await call('POST', '/admin/schemas', { domain: 'pay', event: 'done', schema: { type: 'object' } }))
        .status,
      201,
    );
    assert.equal((await call('POST', '/admin/partners', { id: 'acme', name: 'ACME' })).status, 201);
    const subs = [];
    for (const [i, auth] of [
      { type: 'basic', username: 'acme', password: basicPassword },
      { type: 'bearer', token: bearerToken },
      { type: 'header', name: 'x-partner-key', value: headerValue },
    ].entries()) {
      const res = await call('POST', '/admin/subscriptions', {
        partnerId: 'acme',
        domain: 'pay',
        event: 'done',
        url: `${receiver.url}/hooks/${i}`,
        auth,
        ...(i === 0 ? { signing: { secret: givenSecret } } : {}),
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      subs.push(res.body);
    }
    const rotated = await call('POST', `/admin/subscriptions/${subs[1].id}/rotate-secret`, {});
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    const publisher = (
      await call('POST', '/admin/api-keys', { name: 'pay', role: 'publisher', sources: ['/pay'] })
    ).body.key as string;
    const operator = (await call('POST', '/admin/api-keys', { name: 'ops', role: 'operator' })).body
      .key as string;
    const revokedKey = await call('POST', '/admin/api-keys', { name: 'gone', role: 'operator' });
    await call('DELETE', `/admin/api-keys/${revokedKey.body.id}`);

    const events = 5;
    for (let i = 0; i < events; i++) {
      const res = await api(url, publisher, 'POST', '/events', {
        specversion: '1.0',
        id: `e-${i}`,
        source: '/pay',
        type: 'pay.done',
        data: { n: i },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
    }
    // Credentials sent where they are refused or misplaced must not be logged either.
    await api(url, revokedKey.body.key, 'GET', '/admin/dlq');
    await api(url, operator, 'POST', '/admin/partners', { id: 'x', name: 'x' });
    await fetch(`${url}/admin/deliveries`, { headers: { authorization: `Basic ${basicPassword}` } });
    await fetch(`${url}/admin/partners/${publisher}`, { headers: { authorization: `Bearer ${adminToken}` } });
    // …nor where a careless client puts them: a query string, a header of another name.
    await fetch(`${url}/admin/dlq?eventId=${adminToken}`, {
      headers: { authorization: `Bearer ${operator}` },
    });
    await fetch(`${url}/healthz`, { headers: { 'x-upstream-auth': `Bearer ${bearerToken}` } });
    await receiver.waitFor(events * subs.length);
    await waitFor('every delivery recorded', async () => {
      const items = (await call('GET', '/admin/deliveries?limit=1000', undefined, operator)).body.items;
      return (
        items.length === events * subs.length &&
        items.every((d: { status: string }) => d.status === 'SUCCESS')
      );
    });

    cli.child.kill('SIGTERM');
    assert.equal(await exitOf(cli.child), 0);

    const secrets: Record<string, string> = {
      adminToken,
      secretKey,
      givenSecret,
      givenSecretBytes: givenSecret.slice('whsec_'.length),
      generatedSecret: subs[1].secret,
      generatedSecretBytes: String(subs[1].secret).slice('whsec_'.length),
      rotatedSecret: rotated.body.secret,
      basicPassword,
      bearerToken,
      headerValue,
      publisher,
      operator,
      revoked: revokedKey.body.key,
    };
    for (const [name, value] of Object.entries(secrets)) assert.ok(value && value.length >= 16, name);
    const logs = cli.output();
    assert.ok(logs.includes('"msg":"request"'), 'the access log was written (debug)');
    assert.ok(logs.includes('/admin/partners/[REDACTED]'), 'a key in a path is redacted, not dropped');
    const files = readdirSync(dir).map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
    assert.ok(files.some((f) => f.name === 'store.db'));
    for (const [name, value] of Object.entries(secrets)) {
      assert.ok(!logs.includes(value), `${name} is in the logs`);
      for (const file of files) assert.ok(!file.bytes.includes(value), `${name} is in ${file.name}`);
    }
    for (const [name, mode] of Object.entries(modes(dir))) assert.equal(mode, '600', `${name} after the run`);
  });
});
