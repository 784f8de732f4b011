/** HTTP routes of the Schema Registration Admin. */
import { json, type Route } from '../common/http.ts';
import { queryObject, readPage } from '../common/input.ts';
import { COMPATIBILITY_MODES } from './compatibility.ts';
import { type SchemaAdmin, schemaView } from './service.ts';

const registerSchema = {
  type: 'object',
  required: ['domain', 'event', 'schema'],
  properties: {
    domain: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' },
    event: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' },
    version: { type: 'integer', minimum: 1 },
    schema: { description: 'a JSON Schema (draft 2020-12) document', type: ['object', 'boolean'] },
    status: { enum: ['ACTIVE', 'INACTIVE'] },
    compatibility: { enum: [...COMPATIBILITY_MODES] },
    description: { type: 'string', maxLength: 1000 },
  },
  additionalProperties: false,
};

const SCHEMA_FILTERS = ['domain', 'event', 'status'] as const;

/** The routes under /admin/schemas. */
export function schemaRoutes(admin: SchemaAdmin): Route[] {
  const tag = 'schemas';
  return [
    {
      method: 'POST',
      path: '/admin/schemas',
      access: 'admin',
      tag,
      summary: 'Register a schema version (201), or return the identical existing one (200)',
      requestSchema: registerSchema,
      responses: {
        '201': 'registered',
        '200': 'identical document already registered',
        '409':
          'incompatible, or another registration of the event kept this one waiting too long (schema_registration_busy)',
      },
      handler: async (req) => {
        const { record, created } = await admin.register(req.body);
        return json(created ? 201 : 200, schemaView(record));
      },
    },
    {
      method: 'GET',
      path: '/admin/schemas',
      access: 'read',
      tag,
      summary: 'List schema versions (?domain=&event=&status=&limit=&cursor=)',
      query: SCHEMA_FILTERS,
      paged: true,
      handler: async (req) => {
        const page = await admin.list(queryObject(req.query, SCHEMA_FILTERS), readPage(req.query));
        return json(200, { items: page.items.map(schemaView), next: page.next ?? null });
      },
    },
    {
      method: 'GET',
      path: '/admin/schemas/{domain}/{event}/{version}',
      access: 'read',
      tag,
      summary: 'Get one schema version',
      handler: async (req) =>
        json(200, schemaView(await admin.get(req.params.domain!, req.params.event!, req.params.version!))),
    },
    {
      method: 'PATCH',
      path: '/admin/schemas/{domain}/{event}/{version}',
      access: 'admin',
      tag,
      summary: 'Change the status (ACTIVE/INACTIVE), compatibility mode or description of a version',
      requestSchema: {
        type: 'object',
        properties: {
          status: registerSchema.properties.status,
          compatibility: registerSchema.properties.compatibility,
          description: registerSchema.properties.description,
        },
        additionalProperties: false,
      },
      handler: async (req) =>
        json(
          200,
          schemaView(
            await admin.update(req.params.domain!, req.params.event!, req.params.version!, req.body),
          ),
        ),
    },
  ];
}
