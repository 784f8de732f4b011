/** Operational endpoints: health, readiness, metrics and the OpenAPI document. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../support/server.ts';

describe('operational endpoints', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('/healthz and /readyz answer without a token; readyz checks the store, the bus and the worker threads', async () => {
    assert.equal((await server.request('GET', '/healthz', undefined, { token: null })).status, 200);
    const ready = await server.request('GET', '/readyz', undefined, { token: null });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body.checks, { store: 'ok', bus: 'ok', processor: 'ok', dispatcher: 'ok' });
  });

  test('HEAD is answered like GET without a body, with the same access rules', async () => {
    const health = await fetch(`${server.url}/healthz`, { method: 'HEAD' });
    assert.equal(health.status, 200);
    assert.equal(await health.text(), '');
    assert.equal(health.headers.get('content-type'), 'application/json');
    const anonymous = await fetch(`${server.url}/admin/partners`, { method: 'HEAD' });
    assert.equal(anonymous.status, 401);
    const listed = await fetch(`${server.url}/admin/partners`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(listed.status, 200);
    assert.equal(await listed.text(), '');
  });

  test('/metrics names every family once, the worker threads’ included', async () => {
    assert.ok(server.running.platform.dispatcherThread, 'the dispatcher runs in its own thread');
    assert.ok(server.running.platform.processorThread, 'the processor runs in its own thread');
    assert.equal(server.running.platform.processor, undefined, 'and not on the API thread');
    const res = await server.request('GET', '/metrics', undefined, { token: null });
    const families = [...String(res.body).matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]);
    assert.ok(families.includes('webhook_deliveries_total'), 'dispatcher metrics come from its thread');
    assert.ok(families.includes('events_processed'), 'processor metrics come from its thread');
    assert.ok(families.includes('webhooks_processor_thread_metrics_stale'));
    assert.ok(families.includes('webhooks_dispatcher_thread_metrics_stale'));
    assert.ok(families.includes('http_requests_total'), 'the API thread’s own');
    assert.equal(new Set(families).size, families.length, `duplicated: ${families.join(' ')}`);
  });

  test('/readyz says 503 and names the engine when the store is gone', async () => {
    const other = await startTestServer();
    await other.running.platform.store.close();
    const ready = await other.request('GET', '/readyz', undefined, { token: null });
    assert.equal(ready.status, 503);
    assert.match(ready.body.checks.store, /^unavailable/);
    assert.equal(ready.body.checks.bus, 'ok');
    await other.stop();
  });

  test('/metrics is Prometheus text with request counters and process metrics', async () => {
    await server.request('GET', '/admin/schemas');
    const res = await server.request('GET', '/metrics', undefined, { token: null });
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^# TYPE http_requests_total counter$/m);
    assert.match(
      res.body,
      /^http_requests_total\{method="GET",route="\/admin\/schemas",status="200"\} \d+$/m,
    );
    assert.match(res.body, /^process_resident_memory_bytes \d+/m);
  });

  test('/openapi.json is an OpenAPI 3.1 document listing every route of the server', async () => {
    const res = await server.request('GET', '/openapi.json', undefined, { token: null });
    assert.equal(res.body.openapi, '3.1.0');
    for (const route of server.running.platform.router.routes) {
      assert.ok(
        res.body.paths[route.path]?.[route.method.toLowerCase()],
        `${route.method} ${route.path} documented`,
      );
    }
    assert.deepEqual(res.body.paths['/healthz'].get.security, []);
    assert.ok(res.body.paths['/admin/subscriptions'].post.requestBody);
  });

  test('every response carries a request id, and an incoming one is echoed', async () => {
    const res = await server.request('GET', '/healthz', undefined, {
      token: null,
      headers: { 'x-request-id': 'req-42' },
    });
    assert.equal(res.headers.get('x-request-id'), 'req-42');
  });
});
