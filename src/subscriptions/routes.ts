/** HTTP routes of the Subscription Admin and of partner administration. */
import { json, type Route } from '../common/http.ts';
import { queryObject, readPage } from '../common/input.ts';
import { type PartnerAdmin, partnerView } from './partners.ts';
import { type SubscriptionAdmin, subscriptionView } from './service.ts';

const NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' };
const retrySchema = {
  type: 'object',
  properties: {
    scheduleSeconds: { type: 'array', items: { type: 'number', minimum: 0 } },
    maxAttempts: { type: 'integer', minimum: 1 },
    maxAgeSeconds: { type: 'integer', minimum: 1 },
  },
  additionalProperties: false,
};
const partnerSchema = {
  type: 'object',
  required: ['id', 'name'],
  properties: {
    id: NAME,
    name: { type: 'string', maxLength: 200 },
    status: { enum: ['ACTIVE', 'INACTIVE'] },
    contactEmail: { type: 'string', format: 'email' },
    metadata: { type: 'object' },
    delivery: {
      type: 'object',
      properties: {
        timeouts: {
          type: 'object',
          properties: {
            connectMs: { type: 'integer' },
            headersMs: { type: 'integer' },
            bodyMs: { type: 'integer' },
          },
        },
        retry: retrySchema,
        maxConcurrency: { type: 'integer', minimum: 1, maximum: 1000 },
        rateLimitPerSecond: { type: 'integer', minimum: 1 },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
};
const subscriptionSchema = {
  type: 'object',
  required: ['partnerId', 'domain', 'event', 'url'],
  properties: {
    partnerId: NAME,
    domain: NAME,
    event: NAME,
    version: {
      type: 'integer',
      minimum: 1,
      description: 'only this schema version (default: every version)',
    },
    url: {
      type: 'string',
      format: 'uri',
      description: 'HTTPS endpoint (http and private addresses only with WEBHOOKS_DEV=1)',
    },
    description: { type: 'string' },
    status: { enum: ['ACTIVE', 'PAUSED'] },
    signing: {
      type: 'object',
      properties: {
        enabled: { type: 'boolean', default: true },
        secret: { type: 'string', pattern: '^whsec_' },
      },
      additionalProperties: false,
    },
    auth: {
      oneOf: [
        {
          type: 'object',
          required: ['type', 'token'],
          properties: { type: { const: 'bearer' }, token: { type: 'string' } },
          additionalProperties: false,
        },
        {
          type: 'object',
          required: ['type', 'username', 'password'],
          properties: {
            type: { const: 'basic' },
            username: { type: 'string' },
            password: { type: 'string' },
          },
          additionalProperties: false,
        },
        {
          type: 'object',
          required: ['type', 'name', 'value'],
          properties: { type: { const: 'header' }, name: { type: 'string' }, value: { type: 'string' } },
          additionalProperties: false,
        },
      ],
    },
    filter: { type: 'object', description: 'see docs/filters-and-mappings.md' },
    mapping: { type: 'object', description: 'see docs/filters-and-mappings.md' },
    retry: retrySchema,
  },
  additionalProperties: false,
};

/** A partner's PATCH: every field but its id, each optional. */
const { id: _partnerId, ...partnerFields } = partnerSchema.properties;
const partnerPatchSchema = { type: 'object', properties: partnerFields, additionalProperties: false };

/** `null` as well: a PATCH clears the field with it. */
const orNull = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });

/** A subscription's PATCH: everything but its partner and event; null clears auth, filter, mapping, retry, version. */
const { partnerId: _p, domain: _d, event: _e, ...subscriptionFields } = subscriptionSchema.properties;
const subscriptionPatchSchema = {
  type: 'object',
  properties: {
    ...subscriptionFields,
    version: orNull(subscriptionFields.version),
    auth: orNull(subscriptionFields.auth),
    filter: orNull(subscriptionFields.filter),
    mapping: orNull(subscriptionFields.mapping),
    retry: orNull(subscriptionFields.retry),
  },
  additionalProperties: false,
};

const SUBSCRIPTION_FILTERS = ['partnerId', 'domain', 'event', 'status'] as const;

/** The routes under /admin/partners. */
export function partnerRoutes(admin: PartnerAdmin): Route[] {
  const tag = 'partners';
  return [
    {
      method: 'POST',
      path: '/admin/partners',
      access: 'admin',
      tag,
      summary: 'Add a partner (built-in directory only)',
      requestSchema: partnerSchema,
      responses: { '201': 'created', '409': 'exists, or the directory is external' },
      handler: async (req) => json(201, partnerView(await admin.create(req.body))),
    },
    {
      method: 'GET',
      path: '/admin/partners',
      access: 'read',
      tag,
      summary: 'List partners (?limit=&cursor=)',
      paged: true,
      handler: async (req) => {
        const page = await admin.list(readPage(req.query));
        return json(200, { items: page.items.map(partnerView), next: page.next ?? null });
      },
    },
    {
      method: 'GET',
      path: '/admin/partners/{id}',
      access: 'read',
      tag,
      summary: 'Get a partner',
      handler: async (req) => json(200, partnerView(await admin.get(req.params.id!))),
    },
    {
      method: 'PATCH',
      path: '/admin/partners/{id}',
      access: 'admin',
      tag,
      summary: 'Change a partner (name, status, contactEmail, metadata, delivery settings)',
      requestSchema: partnerPatchSchema,
      handler: async (req) => json(200, partnerView(await admin.update(req.params.id!, req.body))),
    },
  ];
}

/** The routes under /admin/subscriptions. */
export function subscriptionRoutes(admin: SubscriptionAdmin): Route[] {
  const tag = 'subscriptions';
  return [
    {
      method: 'POST',
      path: '/admin/subscriptions',
      access: 'admin',
      tag,
      summary: 'Subscribe a partner endpoint to an event (201 with the signing secret, or 200 when updated)',
      requestSchema: subscriptionSchema,
      responses: {
        '201': 'created; `secret` is shown this once',
        '200':
          'same partner, event and URL: updated (with `secret` when signing was turned on and one was made)',
        '409': 'signing_secret_exists: a `signing.secret` other than the subscription’s (rotate it instead)',
        '422': 'unknown partner or event, or refused URL',
      },
      handler: async (req) => {
        const { record, created, secret } = await admin.upsert(req.body);
        return json(created ? 201 : 200, { ...subscriptionView(record), ...(secret ? { secret } : {}) });
      },
    },
    {
      method: 'GET',
      path: '/admin/subscriptions',
      access: 'read',
      tag,
      summary: 'List subscriptions (?partnerId=&domain=&event=&status=&limit=&cursor=)',
      query: SUBSCRIPTION_FILTERS,
      paged: true,
      handler: async (req) => {
        const page = await admin.list(queryObject(req.query, SUBSCRIPTION_FILTERS), readPage(req.query));
        return json(200, { items: page.items.map(subscriptionView), next: page.next ?? null });
      },
    },
    {
      method: 'GET',
      path: '/admin/subscriptions/{id}',
      access: 'read',
      tag,
      summary: 'Get a subscription (secrets are never shown)',
      handler: async (req) => json(200, subscriptionView(await admin.get(req.params.id!))),
    },
    {
      method: 'PATCH',
      path: '/admin/subscriptions/{id}',
      access: 'admin',
      tag,
      summary: 'Change a subscription; null clears auth, filter, mapping, retry or version',
      requestSchema: subscriptionPatchSchema,
      responses: {
        '200': 'changed',
        '409':
          '`subscription_exists`: another subscription of the partner and event has this url (named in the details)',
      },
      handler: async (req) => json(200, subscriptionView(await admin.update(req.params.id!, req.body))),
    },
    {
      method: 'DELETE',
      path: '/admin/subscriptions/{id}',
      access: 'admin',
      tag,
      summary: 'Delete a subscription',
      responses: { '204': 'deleted' },
      handler: async (req) => {
        await admin.remove(req.params.id!);
        return { status: 204 };
      },
    },
    {
      method: 'POST',
      path: '/admin/subscriptions/{id}/rotate-secret',
      access: 'admin',
      tag,
      summary: 'Rotate the signing secret; previous secrets stay valid for overlapSeconds (default 24 h)',
      requestSchema: {
        type: 'object',
        properties: {
          secret: { type: 'string', pattern: '^whsec_' },
          overlapSeconds: { type: 'integer', minimum: 0 },
        },
        additionalProperties: false,
      },
      optionalBody: true,
      handler: async (req) => {
        const { record, secret } = await admin.rotateSecret(req.params.id!, req.body);
        return json(200, { ...subscriptionView(record), ...(secret ? { secret } : {}) });
      },
    },
  ];
}
