/** Partner administration over real HTTP, with the built-in directory and with an external Partner Info API. */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.ts';

describe('/admin/partners with the built-in directory', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('POST creates a partner with delivery settings; GET reads it back', async () => {
    const body = {
      id: 'acme',
      name: 'ACME',
      contactEmail: 'ops@acme.example',
      metadata: { tier: 'gold' },
      delivery: {
        timeouts: { connectMs: 2000 },
        retry: { maxAttempts: 5 },
        maxConcurrency: 4,
        rateLimitPerSecond: 50,
      },
    };
    const created = await server.request('POST', '/admin/partners', body);
    assert.equal(created.status, 201);
    assert.equal(created.body.status, 'ACTIVE');
    const got = await server.request('GET', '/admin/partners/acme');
    assert.deepEqual(got.body.delivery, body.delivery);
    assert.equal(got.body.contactEmail, 'ops@acme.example');
  });

  test('a second partner with the same id is 409 partner_exists', async () => {
    await server.request('POST', '/admin/partners', { id: 'dup', name: 'A' });
    const res = await server.request('POST', '/admin/partners', { id: 'dup', name: 'B' });
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'partner_exists');
    assert.equal(res.body.error.details[0].field, 'id');
  });

  test('PATCH changes the status and keeps the other fields', async () => {
    await server.request('POST', '/admin/partners', { id: 'patchme', name: 'P', metadata: { a: 1 } });
    const res = await server.request('PATCH', '/admin/partners/patchme', { status: 'INACTIVE' });
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'INACTIVE');
    assert.deepEqual(res.body.metadata, { a: 1 });
  });

  test('metadata nested too deep is 400 too_deep on metadata, not a stack overflow', async () => {
    // 50,000 levels: far past any recursion's stack, within the 100,000 values a body may hold.
    const deep = `${'['.repeat(50_000)}1${']'.repeat(50_000)}`;
    await server.request('POST', '/admin/partners', { id: 'deep', name: 'D' });
    for (const [method, path, raw] of [
      ['POST', '/admin/partners', `{"id": "deeper", "name": "D", "metadata": {"tree": ${deep}}}`],
      ['PATCH', '/admin/partners/deep', `{"metadata": {"tree": ${deep}}}`],
    ] as const) {
      const res = await server.request(method, path, undefined, { raw });
      assert.equal(res.status, 400, method);
      assert.deepEqual(res.body.error.details, [
        { field: 'metadata', message: 'nests arrays and objects more than 64 levels deep', code: 'too_deep' },
      ]);
    }
    const fits = { tree: JSON.parse(`${'['.repeat(63)}1${']'.repeat(63)}`) };
    const ok = await server.request('PATCH', '/admin/partners/deep', { metadata: fits });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body.metadata, fits);
  });

  test('GET lists partners; an unknown one is 404', async () => {
    const list = await server.request('GET', '/admin/partners');
    assert.ok(list.body.items.some((p: { id: string }) => p.id === 'acme'));
    const missing = await server.request('GET', '/admin/partners/nobody');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'partner_not_found');
  });
});

describe('/admin/partners with an external Partner Info API', () => {
  let directory: Server;
  let server: TestServer;
  before(async () => {
    directory = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/partners/globex') {
        res.end(JSON.stringify({ id: 'globex', name: 'Globex', status: 'ACTIVE' }));
      } else if (req.url?.startsWith('/v1/partners?') || req.url === '/v1/partners') {
        res.end(JSON.stringify({ items: [{ id: 'globex', name: 'Globex' }] }));
      } else {
        res.statusCode = 404;
        res.end('{}');
      }
    });
    await new Promise<void>((r) => directory.listen(0, '127.0.0.1', r));
    const port = (directory.address() as AddressInfo).port;
    server = await startTestServer({ WEBHOOKS_PARTNER_API_URL: `http://127.0.0.1:${port}/v1` });
  });
  after(async () => {
    await server.stop();
    directory.closeAllConnections();
    await new Promise((r) => directory.close(r));
  });

  test('partners are read from the external directory', async () => {
    const res = await server.request('GET', '/admin/partners/globex');
    assert.equal(res.status, 200);
    assert.equal(res.body.name, 'Globex');
    const list = await server.request('GET', '/admin/partners');
    assert.deepEqual(
      list.body.items.map((p: { id: string }) => p.id),
      ['globex'],
    );
  });

  test('writes are refused with 409 partner_directory_external', async () => {
    const res = await server.request('POST', '/admin/partners', { id: 'x', name: 'X' });
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'partner_directory_external');
  });

  test('a subscription for a partner known to the external directory is accepted', async () => {
    await server.request('POST', '/admin/schemas', {
      domain: 'orders',
      event: 'created',
      schema: { type: 'object' },
    });
    const res = await server.request('POST', '/admin/subscriptions', {
      partnerId: 'globex',
      domain: 'orders',
      event: 'created',
      url: 'https://hooks.partner.test/in',
    });
    assert.equal(res.status, 201);
    const unknown = await server.request('POST', '/admin/subscriptions', {
      partnerId: 'initech',
      domain: 'orders',
      event: 'created',
      url: 'https://hooks.partner.test/in',
    });
    assert.equal(unknown.status, 422);
    assert.equal(unknown.body.error.code, 'partner_not_found');
  });
});
