/** The OpenAPI 3.1 document, built from the route table so it can never drift from the routes. */
import { ACCESSES, type Access, API_KEY_ROLES, roleAllows } from '../../common/access.ts';
import type { Route } from '../../common/http.ts';

/** For each access, the roles that have it (public: everyone). */
const ROLES_BY_ACCESS = Object.fromEntries(
  ACCESSES.map((a) => [a, API_KEY_ROLES.filter((role) => roleAllows(role, a))]),
) as Record<Access, string[]>;

const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'details'],
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        details: {
          type: 'array',
          items: {
            type: 'object',
            properties: { field: { type: 'string' }, message: { type: 'string' }, code: { type: 'string' } },
          },
        },
      },
    },
  },
};

/** An OpenAPI 3.1 document describing `routes`. */
export function buildOpenApi(routes: readonly Route[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const params: Array<Record<string, unknown>> = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    for (const name of route.query ?? [])
      params.push({ name, in: 'query', required: false, schema: { type: 'string' } });
    if (route.paged) {
      params.push(
        {
          name: 'limit',
          in: 'query',
          required: false,
          description: 'items per page (default 100)',
          schema: { type: 'integer', minimum: 1, maximum: 1000 },
        },
        {
          name: 'cursor',
          in: 'query',
          required: false,
          description: 'the `next` of the page before',
          schema: { type: 'string' },
        },
      );
    }
    const responses: Record<string, unknown> = {};
    for (const [status, description] of Object.entries(route.responses ?? { '200': 'OK' })) {
      responses[status] = { description };
    }
    responses['4XX'] = {
      description: 'client error',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
    const operation: Record<string, unknown> = {
      summary: route.summary,
      operationId: `${route.method.toLowerCase()}${route.path.replace(/[{}]/g, '').replace(/[/.-](\w)/g, (_m, c: string) => c.toUpperCase())}`,
      tags: route.tag ? [route.tag] : [],
      parameters: params,
      responses,
      ...(route.access === 'public' ? { security: [] } : {}),
      // Which callers may use it: the admin token or an API key of one of these roles.
      'x-roles': ROLES_BY_ACCESS[route.access],
    };
    if (route.requestSchema) {
      operation.requestBody = {
        required: route.optionalBody !== true,
        content: { 'application/json': { schema: route.requestSchema } },
      };
    }
    paths[route.path] ??= {};
    paths[route.path]![route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Webhooks platform API',
      version,
      description:
        'Schema registration, partners, subscriptions and event ingest of the partner-webhook platform.',
    },
    components: {
      securitySchemes: {
        adminToken: {
          type: 'http',
          scheme: 'bearer',
          description:
            'The admin token, or an API key (`whk_…`) whose role allows the operation (see x-roles)',
        },
      },
      schemas: { Error: ERROR_SCHEMA },
    },
    security: [{ adminToken: [] }],
    paths,
  };
}
