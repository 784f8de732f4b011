/** HTTP routes of access: API keys and the audit log (admin only). */
import { actorOf } from '../common/access.ts';
import { json, type Route } from '../common/http.ts';
import { queryObject, readPage } from '../common/input.ts';
import type { AuditRepository } from '../common/ports/store.ts';
import type { ApiKeyAdmin } from './service.ts';

export function accessRoutes(keys: ApiKeyAdmin, audit: Pick<AuditRepository, 'list'>): Route[] {
  const tag = 'access';
  return [
    {
      method: 'POST',
      path: '/admin/api-keys',
      tag,
      access: 'admin',
      summary:
        'Create an API key { name, role: admin|operator|publisher, sources?, eventTypes?, expiresAt? }; the key is in this response only',
      requestSchema: {
        type: 'object',
        required: ['name', 'role'],
        properties: {
          name: { type: 'string' },
          role: { enum: ['admin', 'operator', 'publisher'] },
          sources: { type: 'array', items: { type: 'string' } },
          eventTypes: { type: 'array', items: { type: 'string' } },
          expiresAt: { type: 'string', format: 'date-time' },
        },
        additionalProperties: false,
      },
      responses: { '201': 'created; `key` is shown this once' },
      handler: async (req) => json(201, await keys.create(req.body, actorOf(req.principal!))),
    },
    {
      method: 'GET',
      path: '/admin/api-keys',
      tag,
      access: 'admin',
      summary: 'API keys (never the key itself), oldest first (?limit=&cursor=)',
      paged: true,
      handler: async (req) => {
        const page = await keys.list(readPage(req.query));
        return json(200, { items: page.items, next: page.next ?? null });
      },
    },
    {
      method: 'GET',
      path: '/admin/api-keys/{id}',
      tag,
      access: 'admin',
      summary: 'One API key (never the key itself)',
      handler: async (req) => json(200, await keys.get(req.params.id!)),
    },
    {
      method: 'DELETE',
      path: '/admin/api-keys/{id}',
      tag,
      access: 'admin',
      summary: 'Revoke an API key: refused (401) from now on; it stays listed as revoked',
      responses: { '200': 'revoked' },
      handler: async (req) => json(200, await keys.revoke(req.params.id!)),
    },
    {
      method: 'GET',
      path: '/admin/audit',
      tag,
      access: 'admin',
      summary: 'Admin changes (who, what, when, status), newest first (?actor=&limit=&cursor=)',
      query: ['actor'],
      paged: true,
      handler: async (req) => {
        const page = await audit.list(queryObject(req.query, ['actor']), readPage(req.query));
        return json(200, { items: page.items, next: page.next ?? null });
      },
    },
  ];
}
