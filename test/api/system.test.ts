/** Operational endpoints: health, readiness, metrics and the OpenAPI document. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
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

  test('/openapi.json says what the server does: request bodies it refuses are invalid there, PATCH nulls valid, query parameters listed', async () => {
    const doc = (await server.request('GET', '/openapi.json', undefined, { token: null })).body;
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    const bodySchema = (path: string, method: string) =>
      doc.paths[path][method].requestBody.content['application/json'].schema as Record<string, unknown>;
    const valid = (path: string, method: string, body: unknown) =>
      ajv.validate(bodySchema(path, method), body);
    await server.request('POST', '/admin/schemas', {
      domain: 'oa',
      event: 'doc',
      schema: { type: 'object' },
    });
    await server.request('POST', '/admin/partners', { id: 'oa-partner', name: 'OA' });
    const sub = await server.request('POST', '/admin/subscriptions', {
      partnerId: 'oa-partner',
      domain: 'oa',
      event: 'doc',
      url: 'https://hooks.partner.test/oa',
    });
    assert.equal(sub.status, 201, JSON.stringify(sub.body));
    const cases: Array<[method: string, docPath: string, path: string, body: unknown]> = [
      [
        'patch',
        '/admin/schemas/{domain}/{event}/{version}',
        '/admin/schemas/oa/doc/1',
        { schema: { type: 'string' } },
      ],
      ['patch', '/admin/schemas/{domain}/{event}/{version}', '/admin/schemas/oa/doc/1', { domain: 'x' }],
      ['patch', '/admin/partners/{id}', '/admin/partners/oa-partner', { id: 'other' }],
      ['patch', '/admin/subscriptions/{id}', `/admin/subscriptions/${sub.body.id}`, { partnerId: 'other' }],
      [
        'patch',
        '/admin/subscriptions/{id}',
        `/admin/subscriptions/${sub.body.id}`,
        { signing: { extra: 1 } },
      ],
      [
        'patch',
        '/admin/subscriptions/{id}',
        `/admin/subscriptions/${sub.body.id}`,
        { auth: { type: 'bearer', token: 't', extra: 1 } },
      ],
    ];
    for (const [method, docPath, path, body] of cases) {
      assert.equal(
        valid(docPath, method, body),
        false,
        `${method} ${docPath} ${JSON.stringify(body)} valid in the document`,
      );
      const res = await server.request(method.toUpperCase(), path, body);
      assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    }
    const clearing = { auth: null, filter: null, mapping: null, retry: null, version: null };
    assert.equal(valid('/admin/subscriptions/{id}', 'patch', clearing), true, JSON.stringify(ajv.errors));
    const cleared = await server.request('PATCH', `/admin/subscriptions/${sub.body.id}`, clearing);
    assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
    assert.equal(doc.paths['/admin/subscriptions/{id}/rotate-secret'].post.requestBody.required, false);
    const rotated = await fetch(`${server.url}/admin/subscriptions/${sub.body.id}/rotate-secret`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    assert.equal(rotated.status, 200);
    // Each listing's query parameters, from the route table the handlers read them through.
    const queryOf = (path: string) =>
      (doc.paths[path].get.parameters as Array<{ name: string; in: string }>)
        .filter((p) => p.in === 'query')
        .map((p) => p.name);
    assert.deepEqual(queryOf('/admin/deliveries'), [
      'eventId',
      'subscriptionId',
      'partnerId',
      'status',
      'limit',
      'cursor',
    ]);
    assert.deepEqual(queryOf('/admin/subscriptions/{id}/held'), ['limit', 'cursor']);
    for (const route of server.running.platform.router.routes) {
      const declared = [...(route.query ?? []), ...(route.paged ? ['limit', 'cursor'] : [])];
      if (route.method === 'GET') assert.deepEqual(queryOf(route.path), declared, route.path);
    }
  });

  test('every response carries a request id, and an incoming one is echoed', async () => {
    const res = await server.request('GET', '/healthz', undefined, {
      token: null,
      headers: { 'x-request-id': 'req-42' },
    });
    assert.equal(res.headers.get('x-request-id'), 'req-42');
  });
});
