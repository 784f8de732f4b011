/** Schema Registration Admin over real HTTP. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inlineSchemaChecks } from '../../src/schemas/checks.ts';
import { ORDER_SCHEMA, startTestServer, type TestServer } from '../support/server.ts';

describe('POST/GET/PATCH /admin/schemas', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('registering a schema returns 201 with id, version 1, ACTIVE and the ingress topic, which exists', async () => {
    const res = await server.request('POST', '/admin/schemas', {
      domain: 'orders',
      event: 'created',
      schema: ORDER_SCHEMA,
    });
    assert.equal(res.status, 201);
    assert.match(res.body.id, /^[0-9a-f-]{36}$/);
    assert.equal(res.body.version, 1);
    assert.equal(res.body.status, 'ACTIVE');
    assert.equal(res.body.compatibility, 'BACKWARD');
    assert.equal(res.body.ingressTopic, 'ingress.orders.created.v1');
    assert.deepEqual(await server.running.platform.bus.describeTopic('ingress.orders.created.v1'), {
      name: 'ingress.orders.created.v1',
      partitions: 4,
    });
  });

  test('re-posting the identical document is idempotent: 200 and the same id and version', async () => {
    const body = { domain: 'idem', event: 'created', schema: ORDER_SCHEMA };
    const first = await server.request('POST', '/admin/schemas', body);
    const second = await server.request('POST', '/admin/schemas', {
      ...body,
      schema: JSON.parse(JSON.stringify(ORDER_SCHEMA)),
    });
    assert.equal(first.status, 201);
    assert.equal(second.status, 200);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.body.version, 1);
  });

  test('a compatible change gets the next version and its own ingress topic', async () => {
    await server.request('POST', '/admin/schemas', { domain: 'next', event: 'made', schema: ORDER_SCHEMA });
    const { currency: _c, ...props } = ORDER_SCHEMA.properties;
    const v2 = await server.request('POST', '/admin/schemas', {
      domain: 'next',
      event: 'made',
      schema: {
        ...ORDER_SCHEMA,
        properties: { ...props, currency: { type: 'string', enum: ['EUR', 'USD', 'GBP'] } },
      },
    });
    assert.equal(v2.status, 201);
    assert.equal(v2.body.version, 2);
    assert.equal(v2.body.ingressTopic, 'ingress.next.made.v2');
  });

  test('an incompatible version is 409 naming the breaking change', async () => {
    await server.request('POST', '/admin/schemas', { domain: 'pay', event: 'done', schema: ORDER_SCHEMA });
    const res = await server.request('POST', '/admin/schemas', {
      domain: 'pay',
      event: 'done',
      schema: { ...ORDER_SCHEMA, required: ['orderId', 'amount', 'currency'] },
    });
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'schema_incompatible');
    assert.ok(
      res.body.error.details.some((d: { message: string }) =>
        d.message.includes('`currency` became required'),
      ),
    );
    const list = await server.request('GET', '/admin/schemas?domain=pay');
    assert.equal(list.body.items.length, 1, 'nothing was stored');
  });

  test('two versions registered at the same time are checked against each other: one of two conflicting ones is refused', async () => {
    const closed = (properties: Record<string, unknown>) => ({
      type: 'object',
      properties,
      additionalProperties: false,
    });
    const base = { domain: 'race', event: 'changed' };
    assert.equal(
      (
        await server.request('POST', '/admin/schemas', {
          ...base,
          schema: closed({ id: { type: 'string' } }),
        })
      ).status,
      201,
    );
    // Each adds `note`, one as a string, one as an integer: fine alone, breaking one after the other.
    const [a, b] = await Promise.all([
      server.request('POST', '/admin/schemas', {
        ...base,
        version: 2,
        schema: closed({ id: { type: 'string' }, note: { type: 'string' } }),
      }),
      server.request('POST', '/admin/schemas', {
        ...base,
        version: 3,
        schema: closed({ id: { type: 'string' }, note: { type: 'integer' } }),
      }),
    ]);
    assert.deepEqual([a.status, b.status].sort(), [201, 409], JSON.stringify([a.body, b.body]));
    const refused = a.status === 409 ? a : b;
    assert.match(refused.body.error.code, /^schema_(incompatible|version_not_increasing)$/);
  });

  test('compatibility NONE accepts the same change', async () => {
    await server.request('POST', '/admin/schemas', { domain: 'free', event: 'done', schema: ORDER_SCHEMA });
    const res = await server.request('POST', '/admin/schemas', {
      domain: 'free',
      event: 'done',
      compatibility: 'NONE',
      schema: { ...ORDER_SCHEMA, required: ['orderId', 'amount', 'currency'] },
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.compatibility, 'NONE');
  });

  test('an explicit version that exists with another document is 409; a lower one is 409', async () => {
    await server.request('POST', '/admin/schemas', {
      domain: 'ver',
      event: 'x',
      version: 3,
      schema: ORDER_SCHEMA,
    });
    const taken = await server.request('POST', '/admin/schemas', {
      domain: 'ver',
      event: 'x',
      version: 3,
      schema: { type: 'object' },
    });
    assert.equal(taken.status, 409);
    assert.equal(taken.body.error.code, 'schema_version_exists');
    const lower = await server.request('POST', '/admin/schemas', {
      domain: 'ver',
      event: 'x',
      version: 2,
      schema: { type: 'object' },
    });
    assert.equal(lower.body.error.code, 'schema_version_not_increasing');
    assert.equal(lower.body.error.details[0].field, 'version');
  });

  test('GET one version and GET the list with filters', async () => {
    const one = await server.request('GET', '/admin/schemas/orders/created/1');
    assert.equal(one.status, 200);
    assert.deepEqual(one.body.schema, ORDER_SCHEMA);
    const list = await server.request('GET', '/admin/schemas?domain=orders&event=created');
    assert.deepEqual(
      list.body.items.map((s: { version: number }) => s.version),
      [1],
    );
    const missing = await server.request('GET', '/admin/schemas/orders/created/99');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'schema_not_found');
  });

  test('the list pages with limit and cursor', async () => {
    for (const event of ['p1', 'p2', 'p3']) {
      await server.request('POST', '/admin/schemas', { domain: 'paged', event, schema: { type: 'object' } });
    }
    const first = await server.request('GET', '/admin/schemas?domain=paged&limit=2');
    assert.equal(first.body.items.length, 2);
    const second = await server.request(
      'GET',
      `/admin/schemas?domain=paged&limit=2&cursor=${first.body.next}`,
    );
    assert.deepEqual(
      second.body.items.map((s: { event: string }) => s.event),
      ['p3'],
    );
    assert.equal(second.body.next, null);
  });

  test('PATCH changes the status to INACTIVE and back', async () => {
    await server.request('POST', '/admin/schemas', { domain: 'st', event: 'x', schema: ORDER_SCHEMA });
    const off = await server.request('PATCH', '/admin/schemas/st/x/1', { status: 'INACTIVE' });
    assert.equal(off.status, 200);
    assert.equal(off.body.status, 'INACTIVE');
    assert.equal(
      (await server.request('GET', '/admin/schemas?domain=st&status=ACTIVE')).body.items.length,
      0,
    );
    const on = await server.request('PATCH', '/admin/schemas/st/x/v1', { status: 'ACTIVE' });
    assert.equal(on.body.status, 'ACTIVE');
  });
});

describe('POST /admin/schemas with hostile documents', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  /** Registers `schema` (or the raw JSON body) and returns the response. */
  const register = (event: string, schema: unknown, raw?: string) =>
    server.request(
      'POST',
      '/admin/schemas',
      raw === undefined ? { domain: 'hostile', event, schema } : undefined,
      {
        ...(raw === undefined ? {} : { raw }),
      },
    );

  /** Asserts a 400 whose first detail has this field and code, and that nothing was stored. */
  async function refused(res: { status: number; body: any }, event: string, field: string, code: string) {
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'validation_failed');
    assert.equal(res.body.error.details[0].field, field);
    assert.equal(res.body.error.details[0].code, code);
    const list = await server.request('GET', `/admin/schemas?domain=hostile&event=${event}`);
    assert.equal(list.body.items.length, 0, 'nothing was stored');
  }

  test('boolean schemas register (201), and the compatibility check compares them', async () => {
    const open = await register('anything', true);
    assert.equal(open.status, 201, JSON.stringify(open.body));
    assert.equal((await server.request('GET', '/admin/schemas/hostile/anything/1')).body.schema, true);
    const narrowed = await register('anything', { type: 'object' });
    assert.equal(narrowed.status, 409);
    assert.equal(narrowed.body.error.code, 'schema_incompatible');
    const closed = await register('nothing', false);
    assert.equal(closed.status, 201, JSON.stringify(closed.body));
    const widened = await register('nothing', { type: 'string' });
    assert.equal(widened.status, 201, 'false → anything is backward compatible');
  });

  test('a pattern the linear-time engine cannot run is 400 at its field', async () => {
    const res = await register('lookahead', {
      type: 'object',
      properties: { code: { type: 'string', pattern: '^(?!admin).+$' } },
    });
    await refused(res, 'lookahead', 'schema.properties.code.pattern', 'pattern_unsupported');
    assert.match(res.body.error.details[0].message, /uses a lookahead/);
  });

  test('$ref cycles that never move into the data are 400 (schema_ref_cycle)', async () => {
    await refused(await register('self', { $ref: '#' }), 'self', 'schema.$ref', 'schema_ref_cycle');
    const pair = { $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' };
    await refused(await register('pair', pair), 'pair', 'schema.$defs.b.$ref', 'schema_ref_cycle');
    const allOf = { allOf: [{ $ref: '#' }] };
    await refused(await register('all', allOf), 'all', 'schema.allOf.0.$ref', 'schema_ref_cycle');
  });

  test('schemas nested 2,000 and 50,000 levels deep are 400 (schema_too_deep), not 500', async () => {
    const properties = (n: number) => `${'{"type":"object","properties":{"a":'.repeat(n)}{}${'}}'.repeat(n)}`;
    const body = (schema: string) => `{"domain":"hostile","event":"deep","schema":${schema}}`;
    await refused(
      await register('deep', undefined, body(properties(2000))),
      'deep',
      'schema',
      'schema_too_deep',
    );
    const not = `${'{"not":'.repeat(50_000)}{}${'}'.repeat(50_000)}`;
    await refused(await register('deep', undefined, body(not)), 'deep', 'schema', 'schema_too_deep');
  });

  test('5,000 patternProperties, anyOf × 20,000 and 300 KB of schema are 400 before compiling', async () => {
    const patterned = {
      type: 'object',
      patternProperties: Object.fromEntries(
        Array.from({ length: 5000 }, (_, i) => [`^p${i}_[a-z]+$`, { type: 'string' }]),
      ),
    };
    await refused(await register('patterned', patterned), 'patterned', 'schema', 'schema_too_complex');
    const anyOf = { anyOf: Array.from({ length: 20_000 }, (_, i) => ({ const: i })) };
    await refused(await register('wide', anyOf), 'wide', 'schema', 'schema_too_complex');
    const large = { type: 'string', description: 'x'.repeat(300_000) };
    await refused(await register('large', large), 'large', 'schema', 'schema_too_large');
  });
});

describe('schema registration checks off the API thread', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  /** A legal schema that takes tens of milliseconds to check: properties with patterns. */
  const patterned = (description: string, required: string[] = []) => ({
    type: 'object',
    description,
    required,
    properties: Object.fromEntries(
      Array.from({ length: 250 }, (_, i) => [`p${i}`, { type: 'string', pattern: '^[a-z]{1,8}$' }]),
    ),
  });
  /** CPU time this thread has used since `start` (µs): what the API's thread spent, not the wall clock. */
  const cpuSince = (start: NodeJS.CpuUsage) => {
    const { user, system } = process.threadCpuUsage(start);
    return user + system;
  };

  test('a large schema registration costs the API thread a fraction of the CPU its checks take', async () => {
    const compatibility = 'FORWARD_TRANSITIVE';
    const register = (schema: unknown) =>
      server.request('POST', '/admin/schemas', { domain: 'cpu', event: 'heavy', schema, compatibility });
    // Warm (the check thread started, the HTTP and store paths compiled), and twelve versions to
    // compare with: the comparison is most of the checks' cost, and the API thread's part is small.
    const previous = [];
    for (let version = 1; version <= 12; version++) {
      const schema = patterned(`v${version}`);
      assert.equal((await register(schema)).status, 201);
      previous.push({ version, schema });
    }
    const next = patterned('v13', ['p0']);
    // What the checks of the next version cost when run here (warm, the second time).
    let inline = 0;
    for (let i = 0; i < 2; i++) {
      const start = process.threadCpuUsage();
      assert.deepEqual((await inlineSchemaChecks.document(next, 'schema')).problems, []);
      assert.deepEqual(await inlineSchemaChecks.compatibility(next, previous, compatibility), []);
      inline = cpuSince(start);
    }
    // Three registrations (13, 14, 15), the least of their costs: one of them may take a garbage
    // collection of this process, or run on a machine busy with other tests, the three rarely do.
    const api: number[] = [];
    for (let version = 13; version <= 15; version++) {
      const start = process.threadCpuUsage();
      const res = await register(version === 13 ? next : patterned(`v${version}`, ['p0']));
      api.push(cpuSince(start));
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.version, version);
    }
    // The request, its answer and handing the documents over (the test's client runs here too).
    assert.ok(
      Math.min(...api) < inline / 2,
      `API thread ${api.join(', ')} µs, the checks inline ${inline} µs`,
    );
  });
});
