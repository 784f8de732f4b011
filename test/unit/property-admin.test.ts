/**
 * Property-based tests of the admin payloads: the subscription and partner use cases, fed arbitrary
 * JSON and subscription- or partner-shaped documents, either succeed or refuse with one of the
 * platform's own 4xx errors — never a TypeError, a RangeError or a stack overflow (which the HTTP
 * edge would turn into a 500). The store here keeps records as JSON text, like the real ones.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError, isWebhooksError } from '../../src/common/errors.ts';
import type { PartnerRecord, SchemaRecord, SubscriptionRecord } from '../../src/common/model.ts';
import type {
  PartnerRepository,
  SchemaRepository,
  SubscriptionRepository,
} from '../../src/common/ports/store.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import { PartnerAdmin, StorePartnerDirectory } from '../../src/subscriptions/partners.ts';
import { SubscriptionAdmin } from '../../src/subscriptions/service.ts';
import { partnerRecord, schemaRecord } from '../support/fixtures.ts';
import fc from '../support/property.ts';

/** Awaits `run`; anything it throws must be a platform error of a 4xx kind. */
async function succeedsOrRefuses(run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    assert.ok(isWebhooksError(err), `not a platform error: ${String(err)}`);
    assert.ok(err.kind !== 'internal' && err.kind !== 'unavailable', `kind ${err.kind}: ${err.message}`);
  }
}

/** Records kept as JSON text, as a store does: a value it cannot serialise fails here as it would there. */
class JsonTable<T extends { id: string }> {
  readonly rows = new Map<string, string>();
  get(id: string): T | undefined {
    const row = this.rows.get(id);
    return row === undefined ? undefined : (JSON.parse(row) as T);
  }
  put(record: T): T {
    this.rows.set(record.id, JSON.stringify(record));
    return this.get(record.id)!;
  }
}

function partnerAdmin(): PartnerAdmin {
  const table = new JsonTable<PartnerRecord>();
  const partners = {
    insert: async (record: PartnerRecord) => {
      if (table.rows.has(record.id)) throw new ConflictError('already_exists', 'exists');
      table.put(record);
    },
    get: async (id: string) => table.get(id),
    list: async () => ({ items: [...table.rows.keys()].map((id) => table.get(id)!) }),
    update: async (record: PartnerRecord) => table.put({ ...record, revision: record.revision + 1 }),
  } satisfies PartnerRepository;
  table.put(partnerRecord({ id: 'acme' }));
  return new PartnerAdmin({
    partners,
    directory: new StorePartnerDirectory(partners),
    clock: () => new Date(),
  });
}

function subscriptionAdmin(): SubscriptionAdmin {
  const table = new JsonTable<SubscriptionRecord>();
  const subscriptions = {
    insert: async (record: SubscriptionRecord) => void table.put(record),
    get: async (id: string) => table.get(id),
    findByEndpoint: async (e: { partnerId: string; domain: string; event: string; url: string }) =>
      [...table.rows.keys()]
        .map((id) => table.get(id)!)
        .find(
          (s) =>
            s.partnerId === e.partnerId && s.domain === e.domain && s.event === e.event && s.url === e.url,
        ),
    list: async () => ({ items: [] }),
    update: async (record: SubscriptionRecord) => table.put({ ...record, revision: record.revision + 1 }),
    delete: async (id: string) => table.rows.delete(id),
  } satisfies SubscriptionRepository;
  const schemas = {
    listVersions: async (domain: string, event: string) =>
      domain === 'orders' && event === 'created'
        ? [schemaRecord({ domain, event, version: 1 })]
        : ([] as SchemaRecord[]),
  } as unknown as SchemaRepository;
  let ids = 0;
  return new SubscriptionAdmin({
    subscriptions,
    schemas,
    directory: {
      kind: 'builtin',
      getPartner: async (id) => (id === 'acme' ? partnerRecord({ id }) : undefined),
      listPartners: async () => ({ items: [] }),
    },
    topics: { ensureTopic: async (name) => ({ name, partitions: 1 }) },
    secretBox: SecretBox.fromString(SecretBox.generateKey()),
    resolve: async () => ['93.184.216.34'],
    dev: false,
    newId: () => `sub-${++ids}`,
    clock: () => new Date(),
    partitions: 1,
    secretOverlapSeconds: 60,
  });
}

/** Mostly a plausible value for the field, sometimes arbitrary JSON: the checks past the type check run too. */
function fieldOf<T>(plausible: fc.Arbitrary<T>) {
  return fc.oneof(
    { weight: 4, arbitrary: plausible },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  );
}

/** `base` with up to three fields set from `fields`, maybe one dropped, and rarely an unknown one. */
function shaped(base: Record<string, unknown>, fields: Record<string, fc.Arbitrary<unknown>>) {
  const entry = fc
    .constantFrom(...Object.keys(fields))
    .chain((key) => fields[key]!.map((value) => [key, value] as const));
  return fc
    .record({
      set: fc.array(entry, { maxLength: 3 }),
      drop: fc.subarray(Object.keys(base), { maxLength: Math.min(1, Object.keys(base).length) }),
      unknown: fc.oneof(
        { weight: 9, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      ),
    })
    .map(({ set, drop, unknown }) => {
      const body: Record<string, unknown> = { ...base, ...Object.fromEntries(set) };
      for (const key of drop) delete body[key];
      if (unknown !== undefined) body.unknown = unknown;
      return body;
    });
}

const headerText = fc.oneof(fc.stringMatching(/^[!-~]{1,20}$/), fc.string({ unit: 'binary', maxLength: 20 }));
const auth = fc.oneof(
  fc.record({ type: fc.constant('bearer'), token: headerText }),
  fc.record({ type: fc.constant('basic'), username: fc.string(), password: fc.string() }),
  fc.record({
    type: fc.constant('header'),
    name: fc.oneof(
      fc.constantFrom('X-Api-Key', 'Connection', 'webhook-id', 'Proxy-X', 'TE', 'bad name'),
      fc.string(),
    ),
    value: headerText,
  }),
  fc.dictionary(fc.constantFrom('type', 'token', 'name', 'value', 'extra'), fc.jsonValue({ maxDepth: 2 })),
);
const condition = fc.oneof(
  fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null)),
  fc.record({ $gt: fc.integer() }),
  fc.record({ $in: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }) }),
  fc.record({ $eq: fc.jsonValue({ maxDepth: 3 }) }),
  fc.jsonValue({ maxDepth: 3 }),
);
const mappingRule = fc.oneof(
  fc.record({
    to: fc.constantFrom('id', 'order.total', '$x', ''),
    from: fc.constantFrom('orderId', '$event.id', '$env.X'),
  }),
  fc.record({ to: fc.constantFrom('source', 'a.b'), value: fc.jsonValue({ maxDepth: 3 }) }),
  fc.dictionary(fc.constantFrom('to', 'from', 'value', 'transform', 'remove'), fc.jsonValue({ maxDepth: 2 })),
);
const subscriptionLike = shaped(
  { partnerId: 'acme', domain: 'orders', event: 'created', url: 'https://hooks.partner.test/a' },
  {
    partnerId: fieldOf(fc.constantFrom('acme', 'nobody', 'Bad Id')),
    event: fieldOf(fc.constantFrom('created', 'deleted')),
    version: fieldOf(fc.integer({ min: -1, max: 3 })),
    url: fieldOf(
      fc.constantFrom(
        'https://hooks.partner.test/b',
        'http://127.0.0.1/x',
        'not a url',
        'https://[::1]/',
        'https://u:p@x.test/',
      ),
    ),
    description: fieldOf(fc.string()),
    status: fieldOf(fc.constantFrom('ACTIVE', 'PAUSED', 'DISABLED')),
    signing: fieldOf(
      fc.record(
        { enabled: fc.boolean(), secret: fc.constantFrom('whsec_short', 'nope') },
        { requiredKeys: [] },
      ),
    ),
    auth: fieldOf(auth),
    filter: fieldOf(
      fc.dictionary(fc.constantFrom('amount', 'a.b', '$event.id', '$or', '$gt', 'a..b'), condition),
    ),
    mapping: fieldOf(
      fc.record(
        { mode: fc.constantFrom('replace', 'merge', 'x'), rules: fc.array(mappingRule, { maxLength: 3 }) },
        { requiredKeys: ['rules'] },
      ),
    ),
    retry: fieldOf(fc.record({ maxAttempts: fc.integer({ min: -1, max: 50 }) }, { requiredKeys: [] })),
  },
);
const partnerLike = shaped(
  { id: 'beta', name: 'Beta' },
  {
    id: fieldOf(fc.constantFrom('acme', 'beta', 'gamma', 'Bad Id')),
    name: fieldOf(fc.string()),
    status: fieldOf(fc.constantFrom('ACTIVE', 'INACTIVE', 'GONE')),
    contactEmail: fieldOf(fc.constantFrom('ops@acme.example', 'nope')),
    metadata: fieldOf(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 }))),
    delivery: fieldOf(
      fc.record(
        {
          maxConcurrency: fc.integer({ min: -1, max: 100 }),
          retry: fc.record({ maxAttempts: fc.integer({ min: 0, max: 30 }) }),
        },
        { requiredKeys: [] },
      ),
    ),
  },
);

const rotationLike = shaped(
  {},
  {
    secret: fieldOf(
      fc.constantFrom(`whsec_${Buffer.alloc(32, 7).toString('base64')}`, 'whsec_short', 'nope'),
    ),
    overlapSeconds: fieldOf(fc.integer({ min: -1, max: 40 * 86400 })),
  },
);

/** The shaped documents, and now and then arbitrary JSON. */
function mostly(shapedBodies: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 4, arbitrary: shapedBodies }, { weight: 1, arbitrary: fc.jsonValue() });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

describe('property: admin payloads are refused only with platform errors', () => {
  it('subscriptions: create, update and rotate-secret on arbitrary and subscription-shaped bodies', async () => {
    const admin = subscriptionAdmin();
    const { record } = await admin.upsert({
      partnerId: 'acme',
      domain: 'orders',
      event: 'created',
      url: 'https://hooks.partner.test/base',
    });
    await fc.assert(
      fc.asyncProperty(mostly(subscriptionLike), mostly(rotationLike), async (body, rotation) => {
        await succeedsOrRefuses(() => admin.upsert(body));
        // A PATCH cannot change what identifies the subscription: those fields are left out, mostly.
        const { partnerId: _p, domain: _d, event: _e, ...patch } = isObject(body) ? body : { partnerId: 0 };
        await succeedsOrRefuses(() => admin.update(record.id, isObject(body) ? patch : body));
        await succeedsOrRefuses(() => admin.rotateSecret(record.id, rotation));
      }),
      { numRuns: 300 },
    );
    assert.ok((await admin.get(record.id)).signing.secrets.length <= 10, 'rotations never pile up secrets');
  });

  it('partners: create and update on arbitrary and partner-shaped bodies', async () => {
    const admin = partnerAdmin();
    await fc.assert(
      fc.asyncProperty(mostly(partnerLike), async (body) => {
        await succeedsOrRefuses(() => admin.create(body));
        const { id: _id, ...patch } = isObject(body) ? body : { id: 0 };
        await succeedsOrRefuses(() => admin.update('acme', isObject(body) ? patch : body));
      }),
      { numRuns: 300 },
    );
  });

  it('a value nested too deep anywhere in a stored document is refused with too_deep, never stored', async () => {
    const subscriptions = subscriptionAdmin();
    const partners = partnerAdmin();
    const base = {
      partnerId: 'acme',
      domain: 'orders',
      event: 'created',
      url: 'https://hooks.partner.test/d',
    };
    const { record } = await subscriptions.upsert(base);
    const deep = JSON.parse(`${'['.repeat(10_000)}1${']'.repeat(10_000)}`);
    const places = fc.constantFrom(
      { filter: { amount: deep } },
      { filter: { amount: { $in: [deep] } } },
      { filter: { $or: [{ a: { $neq: deep } }] } },
      { mapping: { rules: [{ to: 'a', value: deep }] } },
      { mapping: { rules: [{ to: 'a', from: 'b', default: deep }] } },
    );
    await fc.assert(
      fc.asyncProperty(places, fc.constantFrom('POST', 'PATCH'), async (fields, method) => {
        const run =
          method === 'POST'
            ? () => subscriptions.upsert({ ...base, ...fields })
            : () => subscriptions.update(record.id, fields);
        await assert.rejects(
          run,
          (err: unknown) => isWebhooksError(err) && err.details.some((d) => d.code === 'too_deep'),
        );
      }),
      { numRuns: 20 },
    );
    await assert.rejects(
      () => partners.update('acme', { metadata: { tree: deep } }),
      (err: unknown) => isWebhooksError(err) && err.details.some((d) => d.code === 'too_deep'),
    );
  });
});
