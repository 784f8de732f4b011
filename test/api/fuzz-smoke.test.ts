/**
 * The fuzz machinery, briefly: 300 generated requests (seeded, so the same ones on every run) of the
 * families whose defences are the HTTP server's and the edge's — bodies over the limit, path
 * parameters that do not decode, header abuse, invalid UTF-8, odd methods — against the real server.
 * None may go unanswered or get a 5xx, and the server keeps serving. `npm run fuzz` runs every family.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  describeCase,
  type FuzzRoute,
  type FuzzTarget,
  generateCase,
  TRANSPORT_FAMILIES,
} from '../../bench/fuzz-requests.ts';
import { runFuzz } from '../../bench/fuzz-run.ts';
import { ADMIN_TOKEN, seed, startTestServer, type TestServer } from '../support/server.ts';

const SEED = 7;

describe('fuzz smoke: the transport families', () => {
  let server: TestServer;
  let target: FuzzTarget;

  before(async () => {
    server = await startTestServer({ WEBHOOKS_MAX_BODY_BYTES: '65536' });
    await seed(server);
    const openapi = await server.request('GET', '/openapi.json', undefined, { token: null });
    const routes: FuzzRoute[] = [];
    for (const [path, operations] of Object.entries<Record<string, { security?: unknown[] }>>(
      openapi.body.paths,
    ))
      for (const [method, operation] of Object.entries(operations))
        routes.push({ method: method.toUpperCase(), path, public: operation.security?.length === 0 });
    target = {
      routes,
      token: ADMIN_TOKEN,
      maxBodyBytes: 65536,
      known: {
        domain: 'orders',
        event: 'created',
        version: 1,
        partnerId: 'acme',
        subscriptionId: '0190a000-0000-7000-8000-0000000000aa',
      },
      hookUrl: 'https://hooks.partner.test/in',
      selfUrl: server.url,
    };
  });
  after(() => server.stop());

  test('a seed makes the same cases every time', () => {
    for (const index of [0, 1, 150, 299]) {
      const a = generateCase(SEED, index, target, TRANSPORT_FAMILIES);
      const b = generateCase(SEED, index, target, TRANSPORT_FAMILIES);
      assert.equal(describeCase(a), describeCase(b));
      assert.deepEqual(a.body, b.body);
    }
  });

  test('300 generated requests: every one answered, no 5xx, the server still serving', async () => {
    const result = await runFuzz({
      port: server.running.port,
      target,
      seed: SEED,
      requests: 300,
      concurrency: 8,
      families: TRANSPORT_FAMILIES,
    });
    assert.equal(result.sent, 300);
    const show = (findings: typeof result.dropped) =>
      [...findings]
        .map(([key, f]) => `${key} × ${f.count}: case ${f.index} ${f.request} → ${f.answer}`)
        .join('\n');
    assert.equal(result.dropped.size, 0, `no answer:\n${show(result.dropped)}`);
    assert.equal(result.serverErrors.size, 0, `5xx:\n${show(result.serverErrors)}`);
    assert.deepEqual([...result.byFamily.keys()].sort(), [...TRANSPORT_FAMILIES].sort(), 'every family ran');
    for (const status of [400, 413, 431]) assert.ok(result.byStatus.get(status), `some ${status}`);
    const health = await server.request('GET', '/healthz', undefined, { token: null });
    assert.equal(health.status, 200);
  });
});
