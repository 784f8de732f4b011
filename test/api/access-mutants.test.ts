/**
 * Access, the cases mutation testing found untested: an admin key publishing, prefix patterns, a
 * batch refused event by event, `Bearer` followed by any whitespace, public routes ignoring bad
 * credentials, what a key's listing shows, the audit record's request id, and — with a clock of the
 * test's own over the real SQLite store — the expiry instant, revoked-and-expired keys, every role
 * refused once revoked or expired, and the once-a-minute write of a key's last use.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ApiKeyAdmin, Authenticator } from '../../src/access/service.ts';
import type { ApiKeyRole } from '../../src/common/model.ts';
import type { ApiKeyRepository } from '../../src/common/ports/store.ts';
import { ORDERS_SCHEMA, orderEvent } from '../support/pipeline.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../support/server.ts';

const CLOUDEVENT = { 'content-type': 'application/cloudevents+json' };

async function createKey(server: TestServer, body: Record<string, unknown>, token?: string) {
  const res = await server.request('POST', '/admin/api-keys', body, token ? { token } : {});
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body as { id: string; key: string; prefix: string; createdBy: string };
}

/** A request with the Authorization header exactly as given. */
async function withAuthorization(server: TestServer, path: string, authorization: string) {
  const res = await fetch(`${server.url}${path}`, { headers: { authorization } });
  const text = await res.text();
  return {
    status: res.status,
    body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text,
  };
}

describe('access over HTTP: the cases the route table does not reach', () => {
  let server: TestServer;
  let adminKey: { id: string; key: string };
  let operatorKey: string;
  before(async () => {
    server = await startTestServer();
    const schema = await server.request('POST', '/admin/schemas', {
      domain: 'orders',
      event: 'created',
      schema: ORDERS_SCHEMA,
    });
    assert.equal(schema.status, 201, JSON.stringify(schema.body));
    adminKey = await createKey(server, { name: 'mut-admin', role: 'admin' });
    operatorKey = (await createKey(server, { name: 'mut-operator', role: 'operator' })).key;
  });
  after(() => server.stop());

  test('an admin API key publishes any source (only publisher keys are scoped)', async () => {
    const res = await server.request('POST', '/events', orderEvent({}, { source: '/anything/at-all' }), {
      token: adminKey.key,
      headers: CLOUDEVENT,
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
  });

  test('a prefix pattern covers the prefix itself and what follows it', async () => {
    const shop = await createKey(server, { name: 'shop-prefix', role: 'publisher', sources: ['/shop*'] });
    for (const source of ['/shop', '/shop/eu']) {
      const res = await server.request('POST', '/events', orderEvent({}, { source }), {
        token: shop.key,
        headers: CLOUDEVENT,
      });
      assert.equal(res.status, 202, `${source}: ${JSON.stringify(res.body)}`);
    }
  });

  test('a batch names every event the key may not publish, source and type alike', async () => {
    const key = await createKey(server, {
      name: 'shop-created',
      role: 'publisher',
      sources: ['/shop'],
      eventTypes: ['orders.created'],
    });
    const events = [
      orderEvent({}, { source: '/billing' }),
      orderEvent({}, { source: '/shop' }),
      orderEvent({}, { source: '/shop', type: 'orders.cancelled' }),
    ];
    const res = await server.request('POST', '/events', undefined, {
      token: key.key,
      raw: JSON.stringify(events),
      headers: { 'content-type': 'application/cloudevents-batch+json' },
    });
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'publish_not_allowed');
    assert.deepEqual(
      res.body.error.details.map((d: { field: string }) => d.field),
      ['[0].source', '[2].type'],
    );
  });

  test('"Bearer" takes any run of spaces or tabs before the token, in any case; nothing else', async () => {
    for (const authorization of [
      `Bearer  ${operatorKey}`,
      `Bearer\t${operatorKey}`,
      `bEaReR \t ${operatorKey}`,
      `Bearer ${operatorKey}  `,
    ]) {
      const res = await withAuthorization(server, '/admin/deliveries', authorization);
      assert.equal(res.status, 200, JSON.stringify(authorization));
    }
    for (const authorization of ['Bearer', `Bearer${operatorKey}`, `Basic ${operatorKey}`, operatorKey]) {
      const res = await withAuthorization(server, '/admin/deliveries', authorization);
      assert.equal(res.status, 401, JSON.stringify(authorization));
      assert.equal(res.body.error.code, 'unauthorized');
    }
  });

  test('public routes ignore bad credentials (unknown, revoked) and show the anonymous view', async () => {
    const revoked = await createKey(server, { name: 'scraper', role: 'operator' });
    assert.equal((await server.request('DELETE', `/admin/api-keys/${revoked.id}`)).status, 200);
    server.running.platform.metrics
      .counter('webhook_responses_total', 'x', ['partner', 'status'])
      .inc({ partner: 'hidden-partner', status: '200' });
    for (const token of [revoked.key, `whk_${'x'.repeat(43)}`, 'not-a-token']) {
      for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
        const res = await server.request('GET', path, undefined, { token });
        assert.equal(res.status, 200, `${path} with ${token.slice(0, 8)}…: ${JSON.stringify(res.body)}`);
        if (path === '/metrics') assert.ok(!String(res.body).includes('hidden-partner'));
      }
    }
  });

  test('a listing shows a short prefix and who created the key; only publisher keys take eventTypes', async () => {
    const byToken = await createKey(server, { name: 'by-token', role: 'operator' });
    const byKey = await createKey(server, { name: 'by-key', role: 'operator' }, adminKey.key);
    assert.equal(byToken.createdBy, 'admin-token');
    assert.equal(byKey.createdBy, `api-key:${adminKey.id}`);
    const listed = (await server.request('GET', `/admin/api-keys/${byKey.id}`)).body;
    assert.equal(listed.createdBy, `api-key:${adminKey.id}`);
    // `whk_` and 8 characters of the 43 random ones: enough to recognise it, too few to matter.
    assert.ok(byKey.key.startsWith(listed.prefix));
    assert.ok(listed.prefix.length <= 12, `prefix ${listed.prefix.length} characters`);

    for (const role of ['operator', 'admin']) {
      const res = await server.request('POST', '/admin/api-keys', {
        name: 'scoped',
        role,
        eventTypes: ['orders.*'],
      });
      assert.equal(res.status, 400, role);
      assert.ok(
        res.body.error.details.some((d: { field: string }) => d.field === 'eventTypes'),
        JSON.stringify(res.body.error.details),
      );
    }
  });

  test('the audit record carries the request id; publishing events is not an admin change', async () => {
    const requestId = `mut-audit-${randomUUID()}`;
    const res = await server.request(
      'POST',
      '/admin/api-keys',
      { name: 'audited', role: 'operator' },
      { headers: { 'x-request-id': requestId } },
    );
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-request-id'), requestId);
    const publisher = await createKey(server, { name: 'audit-pub', role: 'publisher', sources: ['/shop'] });
    const published = await server.request('POST', '/events', orderEvent(), {
      token: publisher.key,
      headers: CLOUDEVENT,
    });
    assert.equal(published.status, 202);
    const refused = await server.request('POST', '/events', orderEvent({}, { source: '/billing' }), {
      token: publisher.key,
      headers: CLOUDEVENT,
    });
    assert.equal(refused.status, 403);
    // The edge appends the record before it answers: the entries are there now.
    const audit = (await server.request('GET', '/admin/audit?limit=1000')).body.items as any[];
    const entry = audit.find((a) => a.target.id === res.body.id);
    assert.ok(entry, 'the creation is audited');
    assert.equal(entry.requestId, requestId);
    assert.equal(entry.actor, 'admin-token');
    assert.deepEqual(
      audit.filter((a) => a.action.startsWith('POST /events')),
      [],
      'events are not admin changes',
    );
  });
});

describe('access with a clock of its own, over the real store', () => {
  const T0 = Date.parse('2031-03-01T12:00:00.000Z');
  let server: TestServer;
  let now = T0;
  const clock = () => new Date(now);
  let admin: ApiKeyAdmin;
  let repo: ApiKeyRepository;
  const touches: Array<{ id: string; at: string }> = [];

  before(async () => {
    server = await startTestServer();
    const real = server.running.platform.store.apiKeys;
    // The real SQLite repository; only `touch` is counted on its way through.
    repo = {
      insert: (r) => real.insert(r),
      get: (id) => real.get(id),
      findByHash: (h) => real.findByHash(h),
      list: (p) => real.list(p),
      update: (r) => real.update(r),
      touch: (id, at) => {
        touches.push({ id, at });
        return real.touch(id, at);
      },
    };
    admin = new ApiKeyAdmin({ apiKeys: repo, newId: randomUUID, clock });
  });
  after(() => server.stop());

  const authenticator = () =>
    new Authenticator({ adminToken: ADMIN_TOKEN, apiKeys: repo, clock, cacheTtlMs: 600_000 });

  async function refusal(auth: Authenticator, key: string): Promise<string | undefined> {
    try {
      await auth.authenticate(`Bearer ${key}`);
      return undefined;
    } catch (err) {
      return (err as { code: string }).code;
    }
  }

  const body = (role: ApiKeyRole, extra: Record<string, unknown> = {}) => ({
    name: `clocked-${role}`,
    role,
    ...(role === 'publisher' ? { sources: ['/shop'] } : {}),
    ...extra,
  });

  test('a key is refused from its expiry instant exactly, and listed expired from then', async () => {
    now = T0;
    const expiresAt = new Date(T0 + 60_000).toISOString();
    const created = await admin.create(body('operator', { expiresAt }), 'admin-token');
    const auth = authenticator();
    now = T0 + 59_999;
    assert.equal(await refusal(auth, created.key), undefined, 'valid a millisecond before');
    assert.equal((await admin.get(created.id)).status, 'active');
    now = T0 + 60_000;
    assert.equal(await refusal(auth, created.key), 'key_expired', 'refused at the instant');
    assert.equal((await admin.get(created.id)).status, 'expired');
  });

  test('an expiry at the current instant is refused when the key is created', async () => {
    now = T0;
    await assert.rejects(
      admin.create(body('admin', { expiresAt: new Date(T0).toISOString() }), 'admin-token'),
      (err: { details: Array<{ field: string }> }) => {
        assert.ok(
          err.details.some((d) => d.field === 'expiresAt'),
          JSON.stringify(err.details),
        );
        return true;
      },
    );
  });

  test('every role is refused once revoked or expired; revoked wins over expired', async () => {
    for (const role of ['admin', 'operator', 'publisher'] as const) {
      now = T0;
      const expiresAt = new Date(T0 + 60_000).toISOString();
      const expiring = await admin.create(body(role, { expiresAt }), 'admin-token');
      const revoked = await admin.create(body(role, { expiresAt }), 'admin-token');
      const auth = authenticator();
      assert.equal(await refusal(auth, revoked.key), undefined, `${role} works before`);
      now = T0 + 1_000;
      await admin.revoke(revoked.id);
      auth.forget((await repo.get(revoked.id))!.keyHash);
      assert.equal(await refusal(auth, revoked.key), 'key_revoked', `${role} revoked`);
      now = T0 + 120_000;
      assert.equal(await refusal(auth, expiring.key), 'key_expired', `${role} expired`);
      assert.equal(await refusal(auth, revoked.key), 'key_revoked', `${role} revoked and past its expiry`);
      assert.equal((await admin.get(revoked.id)).status, 'revoked');
    }
  });

  test('revoking a revoked key changes nothing: it keeps the time it was revoked', async () => {
    now = T0;
    const created = await admin.create(body('operator'), 'admin-token');
    now = T0 + 1_000;
    const first = await admin.revoke(created.id);
    assert.equal(first.revokedAt, new Date(T0 + 1_000).toISOString());
    now = T0 + 5_000;
    const again = await admin.revoke(created.id);
    assert.equal(again.status, 'revoked');
    assert.equal(again.revokedAt, first.revokedAt);
    assert.equal((await repo.get(created.id))!.revokedAt, first.revokedAt);
  });

  test("a key's last use is written at most once a minute", async () => {
    now = T0;
    const created = await admin.create(body('publisher'), 'admin-token');
    const auth = authenticator();
    const mine = () => touches.filter((t) => t.id === created.id).map((t) => t.at);
    for (const at of [T0, T0 + 30_000, T0 + 59_999]) {
      now = at;
      assert.equal(await refusal(auth, created.key), undefined);
    }
    assert.deepEqual(mine(), [new Date(T0).toISOString()]);
    now = T0 + 60_000;
    assert.equal(await refusal(auth, created.key), undefined);
    assert.deepEqual(mine(), [new Date(T0).toISOString(), new Date(T0 + 60_000).toISOString()]);
  });
});
