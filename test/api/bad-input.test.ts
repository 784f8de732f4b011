/**
 * A table of bad requests: each gets a 4xx with an error code and the field at fault, none gets a
 * 5xx, and the server keeps serving afterwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ADMIN_TOKEN, ORDER_SCHEMA, seed, startTestServer, type TestServer } from '../support/server.ts';

const sub = { partnerId: 'acme', domain: 'orders', event: 'created', url: 'https://hooks.partner.test/in' };

interface Case {
  name: string;
  method: string;
  path: string;
  body?: unknown;
  raw?: string;
  token?: string | null;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** The field the error must name (omit for errors about the request as a whole). */
  field?: string;
}

const CASES: Case[] = [
  {
    name: 'malformed JSON',
    method: 'POST',
    path: '/admin/schemas',
    raw: '{"domain": "orders",',
    status: 400,
    code: 'invalid_json',
    field: 'body',
  },
  {
    name: 'a JSON array instead of an object',
    method: 'POST',
    path: '/admin/partners',
    body: [1, 2],
    status: 400,
    code: 'validation_failed',
    field: 'body',
  },
  {
    name: 'wrong type for domain',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 42, event: 'x', schema: {} },
    status: 400,
    code: 'validation_failed',
    field: 'domain',
  },
  {
    name: 'wrong type for version',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x', version: '2', schema: {} },
    status: 400,
    code: 'validation_failed',
    field: 'version',
  },
  {
    name: 'missing schema',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x' },
    status: 400,
    code: 'validation_failed',
    field: 'schema',
  },
  {
    name: 'domain with a dot (would break topic names)',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a.b', event: 'x', schema: {} },
    status: 400,
    code: 'validation_failed',
    field: 'domain',
  },
  {
    name: 'invalid JSON Schema: unknown type',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x', schema: { type: 'objekt' } },
    status: 400,
    code: 'validation_failed',
    field: 'schema.type',
  },
  {
    name: 'invalid JSON Schema: negative minLength',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x', schema: { properties: { n: { minLength: -1 } } } },
    status: 400,
    code: 'validation_failed',
    field: 'schema.properties.n.minLength',
  },
  {
    name: 'invalid JSON Schema: unresolvable $ref',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x', schema: { $ref: '#/$defs/nope' } },
    status: 400,
    code: 'validation_failed',
    field: 'schema',
  },
  {
    name: 'unknown compatibility mode',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x', schema: {}, compatibility: 'SIDEWAYS' },
    status: 400,
    code: 'validation_failed',
    field: 'compatibility',
  },
  {
    name: 'unknown field',
    method: 'POST',
    path: '/admin/schemas',
    body: { domain: 'a', event: 'x', schema: {}, colour: 'red' },
    status: 400,
    code: 'validation_failed',
    field: 'colour',
  },
  {
    name: 'incompatible version',
    method: 'POST',
    path: '/admin/schemas',
    body: {
      domain: 'orders',
      event: 'created',
      schema: { ...ORDER_SCHEMA, properties: { ...ORDER_SCHEMA.properties, amount: { type: 'string' } } },
    },
    status: 409,
    code: 'schema_incompatible',
    field: 'schema.properties.amount.type',
  },
  {
    name: 'bad schema status in PATCH',
    method: 'PATCH',
    path: '/admin/schemas/orders/created/1',
    body: { status: 'DELETED' },
    status: 400,
    code: 'validation_failed',
    field: 'status',
  },
  {
    name: 'PATCH of an unknown schema',
    method: 'PATCH',
    path: '/admin/schemas/orders/created/42',
    body: { status: 'ACTIVE' },
    status: 404,
    code: 'schema_not_found',
    field: 'version',
  },
  {
    name: 'partner without name',
    method: 'POST',
    path: '/admin/partners',
    body: { id: 'p1' },
    status: 400,
    code: 'validation_failed',
    field: 'name',
  },
  {
    name: 'partner with a bad delivery timeout',
    method: 'POST',
    path: '/admin/partners',
    body: { id: 'p1', name: 'P', delivery: { timeouts: { connectMs: -5 } } },
    status: 400,
    code: 'validation_failed',
    field: 'delivery.timeouts.connectMs',
  },
  {
    name: 'partner with a bad retry schedule',
    method: 'POST',
    path: '/admin/partners',
    body: { id: 'p1', name: 'P', delivery: { retry: { scheduleSeconds: [5, 'x'] } } },
    status: 400,
    code: 'validation_failed',
    field: 'delivery.retry.scheduleSeconds[1]',
  },
  {
    name: 'subscription missing url',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { partnerId: 'acme', domain: 'orders', event: 'created' },
    status: 400,
    code: 'validation_failed',
    field: 'url',
  },
  {
    name: 'unknown partner',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, partnerId: 'nobody' },
    status: 422,
    code: 'partner_not_found',
    field: 'partnerId',
  },
  {
    name: 'unknown event',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, event: 'exploded' },
    status: 422,
    code: 'event_not_found',
    field: 'event',
  },
  {
    name: 'unknown schema version',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, version: 9 },
    status: 422,
    code: 'schema_version_not_found',
    field: 'version',
  },
  {
    name: 'http:// URL',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'http://hooks.partner.test/in' },
    status: 400,
    code: 'url_not_https',
    field: 'url',
  },
  {
    name: 'URL that is not a URL',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'not a url' },
    status: 400,
    code: 'url_invalid',
    field: 'url',
  },
  {
    name: 'URL resolving to a private address',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'https://private.partner.test/in' },
    status: 422,
    code: 'url_forbidden_address',
    field: 'url',
  },
  {
    name: 'URL with one private address among public ones',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'https://rebind.partner.test/in' },
    status: 422,
    code: 'url_forbidden_address',
    field: 'url',
  },
  {
    name: 'URL of the cloud metadata service',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'https://169.254.169.254/latest' },
    status: 422,
    code: 'url_forbidden_address',
    field: 'url',
  },
  {
    name: 'URL to localhost (real DNS)',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'https://localhost:8443/in' },
    status: 422,
    code: 'url_forbidden_address',
    field: 'url',
  },
  {
    name: 'URL to an IPv6 loopback literal',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'https://[::1]/in' },
    status: 422,
    code: 'url_forbidden_address',
    field: 'url',
  },
  {
    name: 'URL whose host does not resolve',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, url: 'https://no-such-host.invalid/in' },
    status: 422,
    code: 'url_unresolvable',
    field: 'url',
  },
  {
    name: 'bad auth type',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, auth: { type: 'digest' } },
    status: 400,
    code: 'validation_failed',
    field: 'auth.type',
  },
  {
    name: 'custom auth header that the platform sets',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, auth: { type: 'header', name: 'webhook-signature', value: 'x' } },
    status: 400,
    code: 'validation_failed',
    field: 'auth.name',
  },
  {
    name: 'bad signing secret',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, signing: { secret: 'whsec_short' } },
    status: 400,
    code: 'validation_failed',
    field: 'signing.secret',
  },
  {
    name: 'filter with an unknown operator',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, filter: { amount: { $between: [1, 2] } } },
    status: 400,
    code: 'validation_failed',
    field: 'filter.amount.$between',
  },
  {
    name: 'mapping with an unknown transform',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, mapping: { rules: [{ to: 'a', from: 'b', transform: 'rot13' }] } },
    status: 400,
    code: 'validation_failed',
    field: 'mapping.rules[0].transform',
  },
  {
    name: 'retry override out of range',
    method: 'POST',
    path: '/admin/subscriptions',
    body: { ...sub, retry: { maxAttempts: 0 } },
    status: 400,
    code: 'validation_failed',
    field: 'retry.maxAttempts',
  },
  {
    name: 'unknown subscription',
    method: 'GET',
    path: '/admin/subscriptions/0190a000-0000-7000-8000-000000000000',
    status: 404,
    code: 'subscription_not_found',
    field: 'id',
  },
  {
    name: 'rotate with a bad overlap',
    method: 'POST',
    path: '/admin/subscriptions/0190a000-0000-7000-8000-000000000000/rotate-secret',
    body: { overlapSeconds: -1 },
    status: 400,
    code: 'validation_failed',
    field: 'overlapSeconds',
  },
  {
    name: 'bad list filter',
    method: 'GET',
    path: '/admin/subscriptions?status=SLEEPING',
    status: 400,
    code: 'validation_failed',
    field: 'status',
  },
  {
    name: 'bad page limit',
    method: 'GET',
    path: '/admin/partners?limit=0',
    status: 400,
    code: 'validation_failed',
    field: 'limit',
  },
  {
    name: 'bad page cursor',
    method: 'GET',
    path: '/admin/partners?cursor=zzz',
    status: 400,
    code: 'cursor_invalid',
    field: 'cursor',
  },
  {
    name: 'a content type that is not JSON',
    method: 'POST',
    path: '/admin/partners',
    raw: 'id=x',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 415,
    code: 'unsupported_media_type',
    field: 'content-type',
  },
  {
    name: 'body over the size limit',
    method: 'POST',
    path: '/admin/schemas',
    raw: JSON.stringify({ domain: 'a', event: 'x', schema: { description: 'x'.repeat(70_000) } }),
    status: 413,
    code: 'payload_too_large',
    field: 'body',
  },
  {
    name: 'missing token',
    method: 'GET',
    path: '/admin/schemas',
    token: null,
    status: 401,
    code: 'unauthorized',
    field: 'authorization',
  },
  {
    name: 'wrong token',
    method: 'GET',
    path: '/admin/schemas',
    token: `${ADMIN_TOKEN}x`,
    status: 401,
    code: 'invalid_token',
    field: 'authorization',
  },
  {
    name: 'wrong token on a write',
    method: 'POST',
    path: '/admin/partners',
    body: { id: 'x', name: 'x' },
    token: 'nope-nope-nope-nope',
    status: 401,
    code: 'invalid_token',
    field: 'authorization',
  },
  { name: 'unknown route', method: 'GET', path: '/admin/nothing', status: 404, code: 'route_not_found' },
  {
    name: 'event: malformed JSON',
    method: 'POST',
    path: '/events',
    raw: '{"specversion": "1.0",',
    headers: { 'content-type': 'application/cloudevents+json' },
    status: 400,
    code: 'invalid_json',
  },
  {
    name: 'event: no id',
    method: 'POST',
    path: '/events',
    body: { specversion: '1.0', source: '/shop', type: 'orders.created', data: { orderId: 'o', amount: 1 } },
    headers: { 'content-type': 'application/cloudevents+json' },
    status: 400,
    code: 'envelope_invalid',
    field: 'id',
  },
  {
    name: 'event: wrong specversion',
    method: 'POST',
    path: '/events',
    body: { specversion: '0.3', id: 'e1', source: '/shop', type: 'orders.created', data: {} },
    headers: { 'content-type': 'application/cloudevents+json' },
    status: 400,
    code: 'envelope_invalid',
    field: 'specversion',
  },
  {
    name: 'event: a bad one in a batch names its index',
    method: 'POST',
    path: '/events',
    raw: JSON.stringify([
      {
        specversion: '1.0',
        id: 'e1',
        source: '/shop',
        type: 'orders.created',
        data: { orderId: 'o', amount: 1 },
      },
      { specversion: '1.0', id: 'e2', type: 'orders.created', data: {} },
    ]),
    headers: { 'content-type': 'application/cloudevents-batch+json' },
    status: 400,
    code: 'envelope_invalid',
    field: '[1].source',
  },
  {
    name: 'event: binary mode without ce-type',
    method: 'POST',
    path: '/events',
    raw: '{"orderId":"o","amount":1}',
    headers: {
      'content-type': 'application/json',
      'ce-specversion': '1.0',
      'ce-id': 'b1',
      'ce-source': '/shop',
    },
    status: 400,
    code: 'envelope_invalid',
    field: 'ce-type',
  },
  {
    name: 'event: an event type without an ACTIVE schema',
    method: 'POST',
    path: '/events',
    body: { specversion: '1.0', id: 'e3', source: '/shop', type: 'orders.exploded', data: {} },
    headers: { 'content-type': 'application/cloudevents+json' },
    status: 422,
    code: 'event_not_routable',
    field: 'type',
  },
  {
    name: 'event: an unsupported content type',
    method: 'POST',
    path: '/events',
    raw: 'id=1',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'a path parameter that is not %-encoded UTF-8',
    method: 'GET',
    path: '/admin/partners/%ff',
    status: 400,
    code: 'invalid_path',
    field: 'id',
  },
  {
    name: 'a path parameter with a malformed %-escape',
    method: 'DELETE',
    path: '/admin/subscriptions/%zz',
    status: 400,
    code: 'invalid_path',
    field: 'id',
  },
  {
    name: 'a path parameter with an encoded lone surrogate',
    method: 'GET',
    path: '/admin/schemas/orders/%ed%a0%80/1',
    status: 400,
    code: 'invalid_path',
    field: 'event',
  },
  { name: 'wrong method', method: 'DELETE', path: '/admin/schemas', status: 405, code: 'method_not_allowed' },
];

describe('bad input: a 4xx with a code and the field, never a 5xx, the server stays up', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ WEBHOOKS_MAX_BODY_BYTES: '65536' });
    await seed(server);
  });
  after(() => server.stop());

  for (const c of CASES) {
    test(`${c.name} → ${c.status} ${c.code}`, async () => {
      const res = await server.request(c.method, c.path, c.body, {
        ...(c.raw !== undefined ? { raw: c.raw } : {}),
        ...(c.token !== undefined ? { token: c.token } : {}),
        ...(c.headers ? { headers: c.headers } : {}),
      });
      assert.equal(res.status, c.status, JSON.stringify(res.body));
      assert.equal(res.body.error.code, c.code);
      assert.equal(typeof res.body.error.message, 'string');
      if (c.field !== undefined) {
        const fields = res.body.error.details.map((d: { field?: string }) => d.field);
        assert.ok(fields.includes(c.field), `expected field ${c.field} in ${JSON.stringify(fields)}`);
      }
      const health = await server.request('GET', '/healthz', undefined, { token: null });
      assert.equal(health.status, 200);
    });
  }

  test('none of the bad requests was counted as a 5xx', async () => {
    const metrics = await server.request('GET', '/metrics', undefined, { token: null });
    assert.doesNotMatch(metrics.body, /status="5\d\d"/);
  });
});
