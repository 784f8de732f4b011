/** HTTP routes of operations: deliveries, dead letters, redrive. */
import { json, type Route } from '../common/http.ts';
import { queryObject, readPage } from '../common/input.ts';
import type { Operations } from './service.ts';

const DELIVERY_FILTERS = ['eventId', 'subscriptionId', 'partnerId', 'status'] as const;
const DEAD_LETTER_FILTERS = ['stage', 'subscriptionId', 'eventId', 'reason', 'pending'] as const;

export function operationsRoutes(ops: Operations): Route[] {
  const tag = 'operations';
  return [
    {
      method: 'GET',
      path: '/admin/deliveries',
      access: 'read',
      tag,
      summary:
        'Deliveries with their attempts (?eventId=&subscriptionId=&partnerId=&status=&limit=&cursor=), newest first',
      query: DELIVERY_FILTERS,
      paged: true,
      handler: async (req) => {
        const page = await ops.deliveries(queryObject(req.query, DELIVERY_FILTERS), readPage(req.query));
        return json(200, { items: page.items, next: page.next ?? null });
      },
    },
    {
      method: 'GET',
      path: '/admin/dlq',
      access: 'read',
      tag,
      summary:
        'Dead letters (?stage=processor|dispatcher&subscriptionId=&eventId=&reason=&pending=true|false), oldest first',
      query: DEAD_LETTER_FILTERS,
      paged: true,
      handler: async (req) => {
        const page = await ops.deadLetters(queryObject(req.query, DEAD_LETTER_FILTERS), readPage(req.query));
        return json(200, { items: page.items, next: page.next ?? null });
      },
    },
    {
      method: 'GET',
      path: '/admin/subscriptions/{id}/held',
      access: 'read',
      tag,
      summary:
        'Tasks held while the subscription is PAUSED (?limit=&cursor=, oldest first; fewer when large, after 2 MiB; `next` for the page after) and `total`, how many are held; they are sent when it is ACTIVE again. 404 for an unknown subscription',
      paged: true,
      handler: async (req) => json(200, await ops.held(req.params.id!, readPage(req.query))),
    },
    {
      method: 'POST',
      path: '/admin/dlq/redrive',
      access: 'operate',
      tag,
      summary: 'Re-enqueue pending dead letters by subscription, event, stage, or all; history is kept',
      requestSchema: {
        type: 'object',
        properties: {
          subscriptionId: { type: 'string', minLength: 1 },
          eventId: { type: 'string', minLength: 1 },
          stage: { enum: ['processor', 'dispatcher'] },
          all: { type: 'boolean' },
          limit: { type: 'integer', minimum: 1, maximum: 10000 },
        },
        additionalProperties: false,
      },
      handler: async (req) => json(200, await ops.redrive(req.body)),
    },
  ];
}
