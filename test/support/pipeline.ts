/** Helpers for end-to-end pipeline tests: a server that trusts the test CA, and event publishing. */

import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestReceiver } from './receiver.ts';
import { startTestServer, type TestServer } from './server.ts';
import { selfSignedCert } from './tls.ts';

/** A server in dev mode (loopback receivers allowed) that trusts the test certificate. */
export async function startPipelineServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-e2e-'));
  const caFile = join(dir, 'test-ca.pem');
  await writeFile(caFile, (await selfSignedCert()).cert);
  return startTestServer({
    WEBHOOKS_DEV: '1',
    WEBHOOKS_DELIVERY_CA_FILE: caFile,
    WEBHOOKS_PROCESSOR_RETRY_DELAY_MS: '300',
    ...env,
  });
}

export const ORDERS_SCHEMA = {
  type: 'object',
  required: ['orderId', 'amount'],
  properties: {
    orderId: { type: 'string' },
    amount: { type: 'number' },
    currency: { type: 'string' },
    customer: { type: 'object', properties: { tier: { type: 'string' }, email: { type: 'string' } } },
  },
};

let partnerCounter = 0;

/** Registers orders.created (idempotent), a new partner, and a subscription to the receiver; sets its secret. */
export async function subscribe(
  server: TestServer,
  receiver: TestReceiver,
  extra: Record<string, unknown> = {},
  partner: Record<string, unknown> = {},
): Promise<{ partnerId: string; subscriptionId: string; secret: string }> {
  await server.request('POST', '/admin/schemas', {
    domain: 'orders',
    event: 'created',
    schema: ORDERS_SCHEMA,
  });
  partnerCounter += 1;
  const partnerId = `p${partnerCounter}-${randomUUID().slice(0, 8)}`;
  const p = await server.request('POST', '/admin/partners', {
    id: partnerId,
    name: `Partner ${partnerCounter}`,
    ...partner,
  });
  if (p.status !== 201) throw new Error(`partner: ${JSON.stringify(p.body)}`);
  const s = await server.request('POST', '/admin/subscriptions', {
    partnerId,
    domain: 'orders',
    event: 'created',
    url: `${receiver.url}/hooks/${partnerId}`,
    ...extra,
  });
  if (s.status !== 201) throw new Error(`subscription: ${JSON.stringify(s.body)}`);
  receiver.secret = s.body.secret;
  return { partnerId, subscriptionId: s.body.id, secret: s.body.secret };
}

/** A CloudEvent of orders.created. */
export function orderEvent(data: Record<string, unknown> = {}, attrs: Record<string, unknown> = {}) {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source: '/shop',
    type: 'orders.created',
    time: new Date().toISOString(),
    data: { orderId: `o-${randomUUID().slice(0, 6)}`, amount: 42, currency: 'EUR', ...data },
    ...attrs,
  };
}

/** Publishes events (one structured event, or a batch) and asserts 202. */
export async function publish(server: TestServer, ...events: Array<Record<string, unknown>>) {
  const res =
    events.length === 1
      ? await server.request('POST', '/events', events[0], {
          headers: { 'content-type': 'application/cloudevents+json' },
        })
      : await server.request('POST', '/events', undefined, {
          raw: JSON.stringify(events),
          headers: { 'content-type': 'application/cloudevents-batch+json' },
        });
  if (res.status !== 202) throw new Error(`publish: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Polls GET /admin/deliveries until `predicate` holds for the listed items. */
export async function waitForDeliveries(
  server: TestServer,
  query: string,
  predicate: (items: any[]) => boolean,
  timeoutMs = 20_000,
): Promise<any[]> {
  const deadline = Date.now() + timeoutMs;
  let items: any[] = [];
  while (Date.now() < deadline) {
    items = (await server.request('GET', `/admin/deliveries?${query}`)).body.items;
    if (predicate(items)) return items;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`deliveries did not reach the expected state: ${JSON.stringify(items, null, 1)}`);
}
