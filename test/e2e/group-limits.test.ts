/**
 * Partner limits across a dispatcher group, and deliveries held for an INACTIVE partner: real
 * platforms (two of them on one data dir make a dispatcher group of two members) and a receiver on
 * loopback that counts what it gets at once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ORDERS_SCHEMA, orderEvent, publish } from '../support/pipeline.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { selfSignedCert } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';

/** A receiver that holds each request `holdMs`, answers 503 to the first attempt of each webhook-id, and records concurrency per path. */
async function countingReceiver(holdMs: number) {
  const active = new Map<string, number>();
  const maxActive = new Map<string, number>();
  const seen = new Set<string>();
  const delivered = new Set<string>();
  let requests = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests += 1;
      const path = req.url ?? '';
      const now = (active.get(path) ?? 0) + 1;
      active.set(path, now);
      maxActive.set(path, Math.max(maxActive.get(path) ?? 0, now));
      const id = String(req.headers['webhook-id']);
      const first = !seen.has(id);
      seen.add(id);
      setTimeout(() => {
        active.set(path, (active.get(path) ?? 1) - 1);
        if (!first) delivered.add(id);
        res.writeHead(first ? 503 : 204);
        res.end();
      }, holdMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    maxActive,
    delivered,
    get requests() {
      return requests;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('dispatcher group (two members on one data dir)', () => {
  let dir: string;
  let first: TestServer;
  let second: TestServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-group-'));
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, (await selfSignedCert()).cert);
    const env = { WEBHOOKS_DEV: '1', WEBHOOKS_DELIVERY_CA_FILE: caFile };
    first = await startTestServer(env, dir);
    second = await startTestServer(env, dir);
  });
  after(async () => {
    await second?.stop();
    await first?.stop();
  });

  test('a partner’s maxConcurrency holds for the whole group, retries included', async () => {
    // Each first attempt fails (503) and is retried 1 s later, while the first attempts of the later
    // events are still being sent: a retry sent by another member than the egress partition's would
    // make two requests at once.
    const receiver = await countingReceiver(120);
    try {
      await first.request('POST', '/admin/schemas', {
        domain: 'orders',
        event: 'created',
        schema: ORDERS_SCHEMA,
      });
      const partners = Array.from({ length: 6 }, (_, i) => `grp-${i}-${Date.now().toString(36)}`);
      for (const id of partners) {
        const p = await first.request('POST', '/admin/partners', {
          id,
          name: id,
          delivery: { maxConcurrency: 1 },
        });
        assert.equal(p.status, 201);
        const s = await first.request('POST', '/admin/subscriptions', {
          partnerId: id,
          domain: 'orders',
          event: 'created',
          url: `${receiver.url}/${id}`,
          retry: { scheduleSeconds: [1, 1, 1] },
        });
        assert.equal(s.status, 201, JSON.stringify(s.body));
      }
      const events = Array.from({ length: 12 }, () => orderEvent());
      await publish(first, ...events.slice(0, 6));
      await publish(second, ...events.slice(6));
      await waitFor(
        'every delivery',
        () => receiver.delivered.size === events.length * partners.length,
        120_000,
      );
      for (const id of partners) {
        assert.equal(receiver.maxActive.get(`/${id}`), 1, `requests at once to ${id}`);
      }
      assert.ok(receiver.requests >= 2 * events.length * partners.length, 'every delivery was retried once');
    } finally {
      await receiver.close();
    }
  });

  test('an INACTIVE partner’s deliveries are held, and all sent once it is ACTIVE again', async () => {
    const receiver = await countingReceiver(1);
    try {
      // An event type of its own: the other member's processor has no (stale) cached list of its
      // subscriptions (it sees subscription changes made elsewhere within 5 s).
      const event = `paused${Date.now().toString(36)}`;
      await first.request('POST', '/admin/schemas', { domain: 'orders', event, schema: ORDERS_SCHEMA });
      const id = `inactive-${Date.now().toString(36)}`;
      await first.request('POST', '/admin/partners', { id, name: id });
      const s = await first.request('POST', '/admin/subscriptions', {
        partnerId: id,
        domain: 'orders',
        event,
        url: `${receiver.url}/${id}`,
        retry: { scheduleSeconds: [1] },
      });
      assert.equal(s.status, 201, JSON.stringify(s.body));
      // Deactivated after it subscribed (a new subscription to an INACTIVE partner is refused).
      const deactivated = await first.request('PATCH', `/admin/partners/${id}`, { status: 'INACTIVE' });
      assert.equal(deactivated.status, 200);
      const events = [1, 2, 3].map(() => orderEvent({}, { type: `orders.${event}` }));
      await publish(first, ...events);
      await waitFor(
        'three held tasks',
        async () => {
          const held = await first.request('GET', `/admin/subscriptions/${s.body.id}/held`);
          return held.body.items.length === 3;
        },
        60_000,
      );
      assert.equal(receiver.requests, 0, 'nothing sent while the partner is INACTIVE');
      const activated = await second.request('PATCH', `/admin/partners/${id}`, { status: 'ACTIVE' });
      assert.equal(activated.status, 200);
      await waitFor('the three deliveries', () => receiver.delivered.size === 3, 60_000);
      const held = await first.request('GET', `/admin/subscriptions/${s.body.id}/held`);
      assert.deepEqual(held.body.items, []);
    } finally {
      await receiver.close();
    }
  });
});
