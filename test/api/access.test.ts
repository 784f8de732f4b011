/**
 * Access over real HTTP: API keys and their roles on every route, publishers scoped to their
 * sources, revoked and expired keys, the audit log, and what anonymous callers see.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { orderEvent, publish, startPipelineServer, subscribe } from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { waitFor, waitRouted } from '../support/wait.ts';

/**
 * What each route needs, written here on its own (not read from the code): a route the server has
 * and this table lacks fails the test, so a new route cannot ship without a rule.
 */
const RULES: Record<string, 'public' | 'publish' | 'read' | 'operate' | 'admin'> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /metrics': 'public',
  'GET /openapi.json': 'public',
  'POST /events': 'publish',
  'POST /admin/schemas': 'admin',
  'GET /admin/schemas': 'read',
  'GET /admin/schemas/{domain}/{event}/{version}': 'read',
  'PATCH /admin/schemas/{domain}/{event}/{version}': 'admin',
  'POST /admin/partners': 'admin',
  'GET /admin/partners': 'read',
  'GET /admin/partners/{id}': 'read',
  'PATCH /admin/partners/{id}': 'admin',
  'POST /admin/subscriptions': 'admin',
  'GET /admin/subscriptions': 'read',
  'GET /admin/subscriptions/{id}': 'read',
  'PATCH /admin/subscriptions/{id}': 'admin',
  'DELETE /admin/subscriptions/{id}': 'admin',
  'POST /admin/subscriptions/{id}/rotate-secret': 'admin',
  'GET /admin/subscriptions/{id}/held': 'read',
  'GET /admin/deliveries': 'read',
  'GET /admin/dlq': 'read',
  'POST /admin/dlq/redrive': 'operate',
  'POST /admin/api-keys': 'admin',
  'GET /admin/api-keys': 'admin',
  'GET /admin/api-keys/{id}': 'admin',
  'DELETE /admin/api-keys/{id}': 'admin',
  'GET /admin/audit': 'admin',
};

/** Which roles each access lets in (the roles: operator reads and redrives, publisher publishes). */
const ALLOWED: Record<string, string[]> = {
  public: ['admin', 'operator', 'publisher'],
  publish: ['admin', 'publisher'],
  read: ['admin', 'operator'],
  operate: ['admin', 'operator'],
  admin: ['admin'],
};

async function createKey(server: TestServer, body: Record<string, unknown>, token?: string) {
  const res = await server.request('POST', '/admin/api-keys', body, token ? { token } : {});
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body as { id: string; key: string; prefix: string; status: string };
}

describe('API keys and roles', () => {
  let server: TestServer;
  const keys: Record<string, string> = {};
  before(async () => {
    server = await startTestServer();
    keys.admin = (await createKey(server, { name: 'ops-admin', role: 'admin' })).key;
    keys.operator = (await createKey(server, { name: 'oncall', role: 'operator' })).key;
    keys.publisher = (await createKey(server, { name: 'shop', role: 'publisher', sources: ['/shop'] })).key;
  });
  after(() => server.stop());

  test('every route × role: allowed, or 403 forbidden; no credentials → 401 except public routes', async () => {
    const routes = server.running.platform.router.routes;
    const missing = routes.map((r) => `${r.method} ${r.path}`).filter((name) => RULES[name] === undefined);
    assert.deepEqual(missing, [], 'every route has a rule in this test');
    for (const route of routes) {
      const name = `${route.method} ${route.path}`;
      // Unknown ids and empty bodies: the request is judged without changing anything.
      const path = route.path.replace(/\{version\}/g, '1').replace(/\{(\w+)\}/g, 'nope-$1');
      const body = route.method === 'GET' || route.method === 'DELETE' ? undefined : {};
      for (const role of ['admin', 'operator', 'publisher']) {
        const res = await server.request(route.method, path, body, { token: keys[role]! });
        if (ALLOWED[RULES[name]!]!.includes(role)) {
          assert.ok(![401, 403].includes(res.status), `${role} may ${name}: got ${res.status}`);
        } else {
          assert.equal(res.status, 403, `${role} may not ${name}`);
          assert.equal(res.body.error.code, 'forbidden');
        }
      }
      const anonymous = await server.request(route.method, path, body, { token: null });
      if (RULES[name] === 'public') assert.notEqual(anonymous.status, 401, name);
      else assert.equal(anonymous.status, 401, `${name} without credentials`);
    }
  });

  test('the key is shown once: the listing and reads never carry it nor its hash', async () => {
    const created = await createKey(server, { name: 'listed', role: 'operator' });
    assert.match(created.key, /^whk_[A-Za-z0-9_-]{43}$/);
    assert.ok(created.key.startsWith(created.prefix));
    const listing = JSON.stringify((await server.request('GET', '/admin/api-keys')).body);
    const one = JSON.stringify((await server.request('GET', `/admin/api-keys/${created.id}`)).body);
    for (const text of [listing, one]) {
      assert.ok(!text.includes(created.key), 'no key');
      assert.ok(!text.includes('keyHash'), 'no hash');
    }
    assert.ok(listing.includes(created.id));
  });

  test('a revoked key is refused at once; an expired one too (401 with its code)', async () => {
    const created = await createKey(server, { name: 'short-lived', role: 'operator' });
    assert.equal(
      (await server.request('GET', '/admin/deliveries', undefined, { token: created.key })).status,
      200,
    );
    const revoked = await server.request('DELETE', `/admin/api-keys/${created.id}`);
    assert.equal(revoked.status, 200);
    assert.equal(revoked.body.status, 'revoked');
    const after = await server.request('GET', '/admin/deliveries', undefined, { token: created.key });
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, 'key_revoked');

    const expiring = await createKey(server, {
      name: 'expiring',
      role: 'operator',
      expiresAt: new Date(Date.now() + 60_000).toISOString(),
    });
    const record = await server.running.platform.store.apiKeys.get(expiring.id);
    // Moved just into the past in the store, as time would: the key is refused from then on (no grace).
    const justNow = new Date(Date.now() - 1000).toISOString();
    await server.running.platform.store.apiKeys.update({ ...record!, expiresAt: justNow });
    const expired = await server.request('GET', '/admin/deliveries', undefined, { token: expiring.key });
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error.code, 'key_expired');
    const unknown = await server.request('GET', '/admin/deliveries', undefined, {
      token: `whk_${'x'.repeat(43)}`,
    });
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body.error.code, 'invalid_token');
  });

  test('a key revoked through one process is refused by another on the same store (its cache lasts 5 s)', async () => {
    // A second process's platform on the same data dir (SQLite file), as `--role` splits run it.
    const other = await startTestServer({}, server.dataDir);
    try {
      const created = await createKey(server, { name: 'two-processes', role: 'operator' });
      const use = () => other.request('GET', '/admin/deliveries', undefined, { token: created.key });
      assert.equal((await use()).status, 200, 'known to the other process (and cached there)');
      assert.equal((await server.request('DELETE', `/admin/api-keys/${created.id}`)).status, 200);
      // Within its cache's 5 s (and a second for a loaded machine).
      await waitFor(
        'the other process to refuse the revoked key',
        async () => {
          const res = await use();
          return res.status === 401 && res.body.error.code === 'key_revoked';
        },
        6_000,
      );
    } finally {
      await other.stop();
    }
  });

  test('a key records when it was last used', async () => {
    const created = await createKey(server, { name: 'used', role: 'operator' });
    assert.equal((await server.request('GET', `/admin/api-keys/${created.id}`)).body.lastUsedAt, undefined);
    await server.request('GET', '/admin/dlq', undefined, { token: created.key });
    const used = await waitFor('lastUsedAt written', async () => {
      const view = (await server.request('GET', `/admin/api-keys/${created.id}`)).body;
      return view.lastUsedAt;
    });
    assert.ok(Date.parse(used) <= Date.now());
  });

  test('bad key requests are 400 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ role: 'admin' }, 'name'],
      [{ name: 'x', role: 'root' }, 'role'],
      [{ name: 'x', role: 'publisher' }, 'sources'],
      [{ name: 'x', role: 'publisher', sources: [] }, 'sources'],
      [{ name: 'x', role: 'publisher', sources: null }, 'sources'],
      [{ name: 'x', role: 'publisher', sources: ['/a*b'] }, 'sources[0]'],
      [{ name: 'x', role: 'operator', sources: ['/a'] }, 'sources'],
      [{ name: 'x', role: 'admin', expiresAt: '2001-01-01T00:00:00Z' }, 'expiresAt'],
      [{ name: 'x', role: 'admin', expiresAt: 'soon' }, 'expiresAt'],
    ];
    for (const [body, field] of cases) {
      const res = await server.request('POST', '/admin/api-keys', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.ok(
        res.body.error.details.some((d: { field: string }) => d.field === field),
        `${JSON.stringify(body)} names ${field}: ${JSON.stringify(res.body.error.details)}`,
      );
    }
  });

  test('an operator cannot create a key; an admin key can, and the audit log names who did what', async () => {
    const denied = await server.request(
      'POST',
      '/admin/api-keys',
      { name: 'x', role: 'admin' },
      { token: keys.operator! },
    );
    assert.equal(denied.status, 403);
    const created = await createKey(server, { name: 'made-by-admin-key', role: 'operator' }, keys.admin);
    const audit = (await server.request('GET', '/admin/audit?limit=1000')).body.items as any[];
    const entry = audit.find((a) => a.action === 'POST /admin/api-keys' && a.target.id === created.id);
    assert.ok(entry, 'the creation is audited');
    assert.match(entry.actor, /^api-key:/);
    assert.equal(entry.actorName, 'ops-admin');
    assert.equal(entry.status, 201);
    assert.deepEqual(entry.fields, ['name', 'role']);
    assert.ok(!JSON.stringify(audit).includes(created.key), 'no key in the audit log');
    const refused = audit.find((a) => a.action === 'POST /admin/api-keys' && a.status === 403);
    assert.ok(refused, 'refused changes are audited too');
    assert.equal(refused.actorName, 'oncall');
    // Newest first, and the newest entry is the last change made.
    assert.ok(audit[0].id > audit.at(-1).id);
    // An operator's change (a redrive) is audited as well, not only the admin's.
    const redrive = await server.request(
      'POST',
      '/admin/dlq/redrive',
      { all: true },
      { token: keys.operator! },
    );
    assert.equal(redrive.status, 200, JSON.stringify(redrive.body));
    const after = (await server.request('GET', '/admin/audit?limit=1000')).body.items as any[];
    const redriven = after.find((a) => a.action === 'POST /admin/dlq/redrive');
    assert.ok(redriven, 'the operator’s redrive is audited');
    assert.equal(redriven.actorName, 'oncall');
    const mine = (await server.request('GET', `/admin/audit?actor=${encodeURIComponent(entry.actor)}`)).body
      .items;
    assert.ok(mine.every((a: { actor: string }) => a.actor === entry.actor));
    // Reads are not changes.
    assert.ok(!audit.some((a) => a.action.startsWith('GET ')));
  });

  test('anonymous /readyz and /metrics name no partner and no internal error; a reader sees them', async () => {
    const metrics = server.running.platform.metrics;
    metrics
      .counter('webhook_responses_total', 'x', ['partner', 'status'])
      .inc({ partner: 'secret-partner', status: '200' });
    const anonymous = await server.request('GET', '/metrics', undefined, { token: null });
    assert.ok(!String(anonymous.body).includes('secret-partner'));
    assert.match(String(anonymous.body), /http_requests_total/);
    const reader = await server.request('GET', '/metrics', undefined, { token: keys.operator! });
    assert.ok(String(reader.body).includes('partner="secret-partner"'));
    const publisher = await server.request('GET', '/metrics', undefined, { token: keys.publisher! });
    assert.ok(!String(publisher.body).includes('secret-partner'), 'a publisher cannot read');

    const broken = await startTestServer();
    await broken.running.platform.store.close();
    const anon = await broken.request('GET', '/readyz', undefined, { token: null });
    assert.equal(anon.status, 503);
    assert.equal(anon.body.checks.store, 'unavailable');
    const admin = await broken.request('GET', '/readyz');
    assert.match(admin.body.checks.store, /^unavailable: ./);
    await broken.stop();
  });

  test('WEBHOOKS_PUBLIC_METRICS=1 shows everything without credentials', async () => {
    const open = await startTestServer({ WEBHOOKS_PUBLIC_METRICS: '1' });
    open.running.platform.metrics.counter('webhook_responses_total', 'x', ['partner', 'status']).inc({
      partner: 'visible',
      status: '200',
    });
    const res = await open.request('GET', '/metrics', undefined, { token: null });
    assert.ok(String(res.body).includes('partner="visible"'));
    await open.stop();
  });
});

describe('publisher keys publish their own sources only', () => {
  let server: TestServer;
  let receiver: TestReceiver;
  before(async () => {
    server = await startPipelineServer();
    receiver = await startReceiver({ tls: true });
  });
  after(async () => {
    await server.stop();
    await receiver.close();
  });

  test('another source or type is 403 and nothing of the request is accepted', async () => {
    await subscribe(server, receiver);
    const shop = await createKey(server, {
      name: 'shop-orders',
      role: 'publisher',
      sources: ['/shop/*'],
      eventTypes: ['orders.*'],
    });
    const single = await server.request('POST', '/events', orderEvent({}, { source: '/billing' }), {
      token: shop.key,
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    assert.equal(single.status, 403);
    assert.equal(single.body.error.code, 'publish_not_allowed');
    assert.equal(single.body.error.details[0].field, 'source');

    const good = orderEvent({}, { source: '/shop/eu' });
    const bad = orderEvent({}, { source: '/shopping' });
    const batch = await server.request('POST', '/events', undefined, {
      token: shop.key,
      raw: JSON.stringify([good, bad]),
      headers: { 'content-type': 'application/cloudevents-batch+json' },
    });
    assert.equal(batch.status, 403);
    assert.deepEqual(
      batch.body.error.details.map((d: { field: string }) => d.field),
      ['[1].source'],
    );
    const accepted = await server.request('POST', '/events', good, {
      token: shop.key,
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    assert.equal(accepted.status, 202, 'the good event alone is accepted');

    // Its own source, another type: refused for the type.
    const otherType = await server.request(
      'POST',
      '/events',
      orderEvent({}, { source: '/shop/eu', type: 'payments.captured' }),
      { token: shop.key, headers: { 'content-type': 'application/cloudevents+json' } },
    );
    assert.equal(otherType.status, 403);
    assert.equal(otherType.body.error.details[0].field, 'type');
    // A source named without `*` is that source only, not every source it begins.
    const exact = await createKey(server, { name: 'billing-only', role: 'publisher', sources: ['/billing'] });
    const longer = await server.request('POST', '/events', orderEvent({}, { source: '/billing-eu' }), {
      token: exact.key,
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    assert.equal(longer.status, 403);
    assert.equal(longer.body.error.details[0].field, 'source');
  });

  test('one producer cannot suppress another’s event by publishing its id first', async () => {
    await subscribe(server, receiver);
    const before = receiver.received.length;
    const attacker = await createKey(server, { name: 'attacker', role: 'publisher', sources: ['/shop'] });
    const billing = await createKey(server, { name: 'billing', role: 'publisher', sources: ['/billing'] });
    const real = orderEvent({ amount: 7 }, { source: '/billing' });
    // The attacker tries to claim the billing event's (source, id) first: refused, nothing written.
    const forged = await server.request(
      'POST',
      '/events',
      { ...real, data: { orderId: 'forged', amount: 0 } },
      {
        token: attacker.key,
        headers: { 'content-type': 'application/cloudevents+json' },
      },
    );
    assert.equal(forged.status, 403);
    // The attacker's own source under the same id is another event: it cannot shadow the real one.
    const ownSource = { ...real, source: '/shop', data: { orderId: 'shadow', amount: 1 } };
    const shadow = await server.request('POST', '/events', ownSource, {
      token: attacker.key,
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    assert.equal(shadow.status, 202);
    const res = await server.request('POST', '/events', real, {
      token: billing.key,
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    assert.equal(res.status, 202);
    await waitRouted(server, real, ownSource);
    const delivered = await waitFor('the real billing event delivered', () =>
      receiver.received.slice(before).find((d) => d.json?.orderId === real.data.orderId),
    );
    assert.equal(delivered.json.amount, 7);
    assert.ok(!receiver.received.some((d) => d.json?.orderId === 'forged'));
  });

  test('the admin token still publishes any source', async () => {
    await subscribe(server, receiver);
    await publish(server, orderEvent({}, { source: '/anything' }));
  });
});
