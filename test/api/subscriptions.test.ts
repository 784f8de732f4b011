/** Subscription Admin over real HTTP: creation, upsert, secrets at rest, rotation, list/get/patch/delete. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { SecretBox } from '../../src/common/secret-box.ts';
import { signWebhook } from '../../src/common/signing.ts';
import { activeSigningSecrets, openAuth, sealSigningSecret } from '../../src/subscriptions/secrets.ts';
import { seed, startTestServer, type TestServer } from '../support/server.ts';

const base = { partnerId: 'acme', domain: 'orders', event: 'created' };

describe('/admin/subscriptions', () => {
  let server: TestServer;
  let box: SecretBox;
  before(async () => {
    server = await startTestServer();
    await seed(server);
    box = SecretBox.fromString(readFileSync(join(server.dataDir, 'secret.key'), 'utf8'));
  });
  after(() => server.stop());

  test('creating returns 201 with a whsec_ secret once, the egress topic, and ensures that topic', async () => {
    const res = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/a',
    });
    assert.equal(res.status, 201);
    assert.match(res.body.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    const bytes = Buffer.from(res.body.secret.slice(6), 'base64').length;
    assert.ok(bytes >= 24 && bytes <= 64);
    assert.equal(res.body.egressTopic, 'egress.acme.orders.created');
    assert.equal(res.body.signing.enabled, true);
    assert.ok(await server.running.platform.bus.describeTopic('egress.acme.orders.created'));
    const got = await server.request('GET', `/admin/subscriptions/${res.body.id}`);
    assert.equal(got.body.secret, undefined, 'the secret is shown on creation only');
    assert.equal(JSON.stringify(got.body).includes('whsec_'), false);
    // Nor its sealed form, in the subscription or in the listing (operators read both).
    const listed = await server.request('GET', '/admin/subscriptions?limit=1000');
    for (const body of [got.body, listed.body]) assert.doesNotMatch(JSON.stringify(body), /enc:v1:|kms:v1:/);
  });

  test('the secret and the delivery credentials are encrypted at rest, bound to the subscription', async () => {
    const res = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/enc',
      auth: { type: 'bearer', token: 'partner-token-123' },
    });
    const db = readFileSync(join(server.dataDir, 'store.db')).toString('latin1');
    const wal = readFileSync(join(server.dataDir, 'store.db-wal')).toString('latin1');
    for (const file of [db, wal]) {
      assert.equal(file.includes(res.body.secret), false, 'no plaintext secret in the database files');
      assert.equal(
        file.includes('partner-token-123'),
        false,
        'no plaintext credential in the database files',
      );
    }
    const record = await server.running.platform.store.subscriptions.get(res.body.id);
    assert.deepEqual(await activeSigningSecrets(box, record!, new Date()), [res.body.secret]);
    assert.deepEqual(await openAuth(box, record!), { type: 'bearer', token: 'partner-token-123' });
    assert.deepEqual(res.body.auth, { type: 'bearer' }, 'the API shows the kind of auth, never the value');
  });

  test('posting the same partner, event and URL again updates the subscription (200, no new secret)', async () => {
    const first = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/up',
    });
    const second = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/up',
      filter: { amount: { $gt: 100 } },
    });
    assert.equal(second.status, 200);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.body.secret, undefined);
    assert.deepEqual(second.body.filter, { amount: { $gt: 100 } });
    const record = await server.running.platform.store.subscriptions.get(first.body.id);
    assert.deepEqual(await activeSigningSecrets(box, record!, new Date()), [first.body.secret]);
  });

  test('concurrent identical POSTs make one subscription: one 201, the rest 200, all with its id', async () => {
    const body = { ...base, url: 'https://hooks.partner.test/race', filter: { amount: { $gt: 1 } } };
    const callers = 10;
    // In one process the SQLite calls complete without yielding, so requests never interleave between
    // the check and the insert; another process on the same file, or a networked engine, does. The
    // first `callers` inserts are held until all of them are in flight, so they always interleave.
    const repo = server.running.platform.store.subscriptions;
    const insert = repo.insert;
    let held = 0;
    let releaseAll!: () => void;
    const allIn = new Promise<void>((resolve) => {
      releaseAll = resolve;
    });
    repo.insert = async (record) => {
      if (held < callers) {
        held += 1;
        if (held === callers) releaseAll();
        await allIn;
      }
      return insert(record);
    };
    try {
      const results = await Promise.all(
        Array.from({ length: callers }, () => server.request('POST', '/admin/subscriptions', body)),
      );
      assert.deepEqual(
        results.map((r) => r.status).sort(),
        [200, 200, 200, 200, 200, 200, 200, 200, 200, 201],
        JSON.stringify(results.map((r) => r.body)),
      );
      const ids = new Set(results.map((r) => r.body.id));
      assert.equal(ids.size, 1, 'every caller answers the same subscription');
      assert.equal(results.filter((r) => r.body.secret !== undefined).length, 1, 'the secret is shown once');
      const listed = await server.request(
        'GET',
        '/admin/subscriptions?partnerId=acme&domain=orders&event=created',
      );
      assert.deepEqual(
        listed.body.items.filter((s: { url: string }) => s.url === body.url).map((s: { id: string }) => s.id),
        [...ids],
      );
    } finally {
      repo.insert = insert;
    }
  });

  test('PATCH to a URL another subscription of the partner and event has is 409 naming it; delete frees it', async () => {
    const a = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/pa',
    });
    const b = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/pb',
    });
    const taken = await server.request('PATCH', `/admin/subscriptions/${b.body.id}`, {
      url: 'https://hooks.partner.test/pa',
      description: 'not applied',
    });
    assert.equal(taken.status, 409);
    assert.equal(taken.body.error.code, 'subscription_exists');
    assert.equal(taken.body.error.details[0].field, 'url');
    assert.match(taken.body.error.details[0].message, new RegExp(a.body.id));
    const unchanged = await server.request('GET', `/admin/subscriptions/${b.body.id}`);
    assert.equal(unchanged.body.url, 'https://hooks.partner.test/pb');
    assert.equal(unchanged.body.description, undefined);

    assert.equal((await server.request('DELETE', `/admin/subscriptions/${a.body.id}`)).status, 204);
    const moved = await server.request('PATCH', `/admin/subscriptions/${b.body.id}`, {
      url: 'https://hooks.partner.test/pa',
    });
    assert.equal(moved.status, 200);
    const again = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/pb',
    });
    assert.equal(again.status, 201, 'the URL b left is free again');
    const same = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/pa',
    });
    assert.equal(same.status, 200);
    assert.equal(same.body.id, b.body.id);
  });

  test('signing can be turned off; a bring-your-own secret is stored and not echoed', async () => {
    const off = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/nosign',
      signing: { enabled: false },
    });
    assert.equal(off.status, 201);
    assert.equal(off.body.secret, undefined);
    assert.equal(off.body.signing.enabled, false);
    const own = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const byo = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/byo',
      signing: { secret: own },
    });
    assert.equal(byo.body.secret, undefined);
    const record = await server.running.platform.store.subscriptions.get(byo.body.id);
    assert.deepEqual(await activeSigningSecrets(box, record!, new Date()), [own]);
  });

  test('signing turned on by posting the same endpoint again gets a secret; another secret for one that has one is 409', async () => {
    const url = 'https://hooks.partner.test/later-signed';
    const off = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url,
      signing: { enabled: false },
    });
    assert.equal(off.status, 201);
    // On again, with nothing given: a secret is made and shown this once, as at creation.
    const on = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url,
      signing: { enabled: true },
    });
    assert.equal(on.status, 200);
    assert.match(on.body.secret, /^whsec_/);
    const record = await server.running.platform.store.subscriptions.get(off.body.id);
    assert.deepEqual(await activeSigningSecrets(box, record!, new Date()), [on.body.secret]);
    // The same secret again is fine (an idempotent re-post); another one is refused.
    const same = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url,
      signing: { enabled: true, secret: on.body.secret },
    });
    assert.equal(same.status, 200);
    const other = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url,
      signing: { enabled: true, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' },
    });
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'signing_secret_exists');
    // And a secret brought when turning signing on is the one used.
    const url2 = 'https://hooks.partner.test/later-byo';
    const off2 = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: url2,
      signing: { enabled: false },
    });
    const own = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const byo = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: url2,
      signing: { secret: own, enabled: true },
    });
    assert.equal(byo.status, 200);
    assert.equal(byo.body.secret, undefined, 'a secret brought is not echoed');
    const record2 = await server.running.platform.store.subscriptions.get(off2.body.id);
    assert.deepEqual(await activeSigningSecrets(box, record2!, new Date()), [own]);
    // A secret brought while signing stays off is kept for when it is turned on (not a 409).
    const url3 = 'https://hooks.partner.test/later-off';
    await server.request('POST', '/admin/subscriptions', { ...base, url: url3, signing: { enabled: false } });
    const kept = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: url3,
      signing: { enabled: false, secret: own },
    });
    assert.equal(kept.status, 200);
    assert.equal(kept.body.signing.enabled, false);
  });

  test('rotate-secret returns a new secret; both verify during the overlap, only the new one after it', async () => {
    const created = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/rot',
    });
    const rotated = await server.request('POST', `/admin/subscriptions/${created.body.id}/rotate-secret`, {
      overlapSeconds: 3600,
    });
    assert.equal(rotated.status, 200);
    assert.notEqual(rotated.body.secret, created.body.secret);
    assert.equal(rotated.body.signing.secrets.length, 2);
    const record = await server.running.platform.store.subscriptions.get(created.body.id);
    const now = new Date();
    const during = await activeSigningSecrets(box, record!, now);
    assert.deepEqual(during, [rotated.body.secret, created.body.secret]);
    // A receiver holding either secret accepts a message signed with the active set.
    const body = '{"a":1}';
    const ts = Math.floor(now.getTime() / 1000);
    const headers = {
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': signWebhook({ id: 'msg_1', timestamp: ts, body, secrets: during }),
    };
    for (const secret of [created.body.secret, rotated.body.secret])
      new Webhook(secret).verify(body, headers);
    const later = await activeSigningSecrets(box, record!, new Date(now.getTime() + 3601_000));
    assert.deepEqual(later, [rotated.body.secret]);
  });

  test('list filters by partner and event; get, patch and delete work', async () => {
    await server.request('POST', '/admin/partners', { id: 'zeta', name: 'Zeta' });
    const created = await server.request('POST', '/admin/subscriptions', {
      ...base,
      partnerId: 'zeta',
      url: 'https://other.partner.test/z',
      auth: { type: 'header', name: 'X-Api-Key', value: 'k1' },
      retry: { maxAttempts: 3 },
      mapping: { rules: [{ to: 'id', from: 'orderId' }] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const list = await server.request('GET', '/admin/subscriptions?partnerId=zeta');
    assert.deepEqual(
      list.body.items.map((s: { id: string }) => s.id),
      [created.body.id],
    );
    const patched = await server.request('PATCH', `/admin/subscriptions/${created.body.id}`, {
      status: 'PAUSED',
      auth: null,
      retry: { maxAttempts: 7 },
      url: 'https://other.partner.test/z2',
    });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.status, 'PAUSED');
    assert.equal(patched.body.auth, undefined);
    assert.deepEqual(patched.body.retry, { maxAttempts: 7 });
    assert.equal(patched.body.url, 'https://other.partner.test/z2');
    assert.equal(
      (await server.request('GET', '/admin/subscriptions?partnerId=zeta&status=PAUSED')).body.items.length,
      1,
    );
    const deleted = await server.request('DELETE', `/admin/subscriptions/${created.body.id}`);
    // No body, and no content-length on a 204 (RFC 9110 §8.6).
    assert.equal(deleted.headers.get('content-length'), null);
    assert.equal(deleted.status, 204);
    assert.equal((await server.request('GET', `/admin/subscriptions/${created.body.id}`)).status, 404);
    assert.equal((await server.request('DELETE', `/admin/subscriptions/${created.body.id}`)).status, 404);
  });

  test('a subscription to an event whose only schema is INACTIVE is refused with 422', async () => {
    await server.request('POST', '/admin/schemas', {
      domain: 'old',
      event: 'gone',
      schema: { type: 'object' },
    });
    await server.request('PATCH', '/admin/schemas/old/gone/1', { status: 'INACTIVE' });
    const res = await server.request('POST', '/admin/subscriptions', {
      partnerId: 'acme',
      domain: 'old',
      event: 'gone',
      url: 'https://hooks.partner.test/x',
    });
    assert.equal(res.status, 422);
    assert.equal(res.body.error.code, 'schema_inactive');
  });

  test('rotation keeps at most 10 signing secrets: beyond, the oldest retire at once', async () => {
    const created = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/many-rotations',
    });
    const secrets = [created.body.secret];
    for (let i = 0; i < 12; i++) {
      const rotated = await server.request('POST', `/admin/subscriptions/${created.body.id}/rotate-secret`);
      assert.equal(rotated.status, 200, 'a rotation is never refused: it is what answers a leak');
      secrets.unshift(rotated.body.secret);
    }
    const record = await server.running.platform.store.subscriptions.get(created.body.id);
    assert.equal(record!.signing.secrets.length, 10);
    assert.deepEqual(await activeSigningSecrets(box, record!, new Date()), secrets.slice(0, 10));
  });

  test('a subscription stored with more than 10 live secrets signs with its newest 10', async () => {
    const created = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/legacy-rotations',
    });
    const record = await server.running.platform.store.subscriptions.get(created.body.id);
    const now = new Date();
    const secrets = Array.from({ length: 15 }, (_, i) => `whsec_${Buffer.alloc(32, i).toString('base64')}`);
    const sealed = await Promise.all(
      secrets.map((secret) => sealSigningSecret(box, record!.id, secret, now)),
    );
    const legacy = { ...record!, signing: { enabled: true, secrets: sealed } };

    assert.deepEqual(await activeSigningSecrets(box, legacy, now), secrets.slice(0, 10));
  });

  test('custom auth headers the HTTP client manages or the platform sets are refused on auth.name', async () => {
    const names = [
      'Connection',
      'keep-alive',
      'Expect',
      'upgrade',
      'TE',
      'trailer',
      'Transfer-Encoding',
      'content-length',
      'Host',
      'Proxy-Authorization',
      'proxy-connection',
      'Webhook-Signature',
      'webhook-anything',
      'X-Correlation-Id',
      'traceparent',
      'content-type',
      'User-Agent',
    ];
    const url = 'https://hooks.partner.test/reserved';
    const ok = await server.request('POST', '/admin/subscriptions', { ...base, url });
    for (const name of names) {
      const auth = { type: 'header', name, value: 'v' };
      for (const res of [
        await server.request('POST', '/admin/subscriptions', { ...base, url, auth }),
        await server.request('PATCH', `/admin/subscriptions/${ok.body.id}`, { auth }),
      ]) {
        assert.equal(res.status, 400, name);
        assert.deepEqual(
          res.body.error.details.map((d: { field: string; code: string }) => [d.field, d.code]),
          [['auth.name', 'reserved_header']],
          name,
        );
      }
    }
    const allowed = await server.request('PATCH', `/admin/subscriptions/${ok.body.id}`, {
      auth: { type: 'header', name: 'Authorization', value: 'Token abc' },
    });
    assert.equal(allowed.status, 200, 'a custom scheme in Authorization is fine');
  });

  test('auth values that are not header text are refused with 400 on their field', async () => {
    const url = 'https://hooks.partner.test/values';
    const cases: Array<[Record<string, string>, string]> = [
      [{ type: 'bearer', token: 'tok€n' }, 'auth.token'],
      [{ type: 'bearer', token: 'a\r\nX-Injected: 1' }, 'auth.token'],
      [{ type: 'bearer', token: ' padded ' }, 'auth.token'],
      [{ type: 'header', name: 'X-Api-Key', value: 'k\n' }, 'auth.value'],
      [{ type: 'header', name: 'X-Api-Key', value: '鍵' }, 'auth.value'],
      [{ type: 'header', name: 'X Api', value: 'k' }, 'auth.name'],
    ];
    for (const [auth, field] of cases) {
      const res = await server.request('POST', '/admin/subscriptions', { ...base, url, auth });
      assert.equal(res.status, 400, JSON.stringify(auth));
      assert.deepEqual(
        res.body.error.details.map((d: { field: string }) => d.field),
        [field],
      );
    }
    const latin1 = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url,
      auth: { type: 'header', name: 'X-Api-Key', value: 'clé secrète' },
    });
    assert.equal(latin1.status, 201, 'Latin-1 text is valid header text');
  });

  test('filter operands and mapping values nested too deep are 400 too_deep, not a stack overflow', async () => {
    // 50,000 levels: far past any recursion's stack, within the 100,000 values a body may hold.
    const deep = `${'['.repeat(50_000)}1${']'.repeat(50_000)}`;
    const url = 'https://hooks.partner.test/deep';
    const bodies: Array<[string, string]> = [
      [`{"filter": {"amount": {"$eq": ${deep}}}}`, 'filter.amount.$eq'],
      [`{"filter": {"tags": ${deep}}}`, 'filter.tags'],
      [`{"mapping": {"rules": [{"to": "a", "value": ${deep}}]}}`, 'mapping.rules[0].value'],
    ];
    for (const [fields, field] of bodies) {
      const raw = `{"partnerId": "acme", "domain": "orders", "event": "created", "url": "${url}", ${fields.slice(1)}`;
      const res = await server.request('POST', '/admin/subscriptions', undefined, { raw });
      assert.equal(res.status, 400, field);
      assert.deepEqual(res.body.error.details, [
        { field, message: 'nests arrays and objects more than 64 levels deep', code: 'too_deep' },
      ]);
    }
  });

  test('an INACTIVE partner cannot subscribe', async () => {
    await server.request('POST', '/admin/partners', { id: 'sleepy', name: 'S', status: 'INACTIVE' });
    const res = await server.request('POST', '/admin/subscriptions', {
      ...base,
      partnerId: 'sleepy',
      url: 'https://hooks.partner.test/s',
    });
    assert.equal(res.status, 422);
    assert.equal(res.body.error.code, 'partner_inactive');
    assert.equal(res.body.error.details[0].field, 'partnerId');
  });
});

describe('/admin/subscriptions with WEBHOOKS_DEV=1', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ WEBHOOKS_DEV: '1' });
    await seed(server);
  });
  after(() => server.stop());

  test('http:// and loopback targets are allowed for local development', async () => {
    const res = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'http://127.0.0.1:9999/hook',
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.url, 'http://127.0.0.1:9999/hook');
  });
});
