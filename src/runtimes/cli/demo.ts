/**
 * `webhooks demo`: the first five minutes in one command. Starts the platform (dev mode, a fresh
 * data dir) and a local HTTPS receiver that verifies signatures, registers a schema, a partner and a
 * subscription through the HTTP API, publishes an event, and shows the delivery record.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../common/config.ts';
import { generateSigningSecret } from '../../common/signing.ts';
import { startServer } from '../server/server.ts';
import { type Receiver, startReceiver } from './receive.ts';

/** Runs the demo; with --keep the platform and receiver stay up until Ctrl-C. */
export async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { keep: { type: 'boolean' }, port: { type: 'string' }, 'data-dir': { type: 'string' } },
  });
  const out = (line = '') => process.stdout.write(`${line}\n`);
  // A data dir of its own, removed at the end, unless one is given (then kept, and used again).
  const ownDir = values['data-dir'] === undefined;
  const dataDir = values['data-dir'] ?? (await mkdtemp(join(tmpdir(), 'webhooks-demo-')));
  const secret = generateSigningSecret();
  const receiver = await startReceiver({ port: 0, tls: true, secrets: [secret], onRequest: () => {} });
  let running: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    const token = `demo-${randomUUID()}`;
    // The embedded platform alone, whatever this shell's WEBHOOKS_* variables point at (a real
    // store or bus must not get the demo's partner, nor run with WEBHOOKS_DEV=1).
    const config = loadConfig({
      WEBHOOKS_PORT: values.port ?? '0',
      WEBHOOKS_DATA_DIR: dataDir,
      WEBHOOKS_ADMIN_TOKEN: token,
      WEBHOOKS_DEV: '1',
      WEBHOOKS_DELIVERY_CA_FILE: receiver.certFile!,
      WEBHOOKS_LOG_LEVEL: process.env.WEBHOOKS_LOG_LEVEL ?? 'warn',
    });
    running = await startServer(config);
    await demo(running.url, token, receiver, secret, dataDir, values.keep === true, out);
  } finally {
    await running?.stop();
    await receiver.close();
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
  }
}

async function demo(
  url: string,
  token: string,
  receiver: Receiver,
  secret: string,
  dataDir: string,
  keep: boolean,
  out: (line?: string) => void,
): Promise<void> {
  const call = async (
    method: string,
    path: string,
    body: unknown,
    contentType = 'application/json',
    existing?: string,
  ) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    // A data dir used before has the partner already: that is fine.
    if (res.status === 409 && (json.error as { code?: string } | undefined)?.code === existing) return json;
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
    return json;
  };

  out(`platform: ${url} (data dir ${dataDir}, WEBHOOKS_DEV=1)`);
  out(`receiver: ${receiver.url} (TLS 1.3, verifies Standard Webhooks signatures)`);
  out();
  const schema = await call('POST', '/admin/schemas', {
    domain: 'orders',
    event: 'created',
    schema: {
      type: 'object',
      required: ['orderId', 'amount'],
      properties: { orderId: { type: 'string' }, amount: { type: 'number' }, currency: { type: 'string' } },
    },
  });
  out(
    `1. POST /admin/schemas       → orders.created v${schema.version}, ingress topic ${schema.ingressTopic}`,
  );
  await call(
    'POST',
    '/admin/partners',
    { id: 'acme', name: 'ACME Corp' },
    'application/json',
    'partner_exists',
  );
  out('2. POST /admin/partners      → partner acme');
  const sub = await call('POST', '/admin/subscriptions', {
    partnerId: 'acme',
    domain: 'orders',
    event: 'created',
    url: `${receiver.url}/webhooks`,
    signing: { secret },
  });
  out(`3. POST /admin/subscriptions → ${sub.id}, egress topic ${sub.egressTopic}`);
  const eventId = randomUUID();
  await call(
    'POST',
    '/events',
    {
      specversion: '1.0',
      id: eventId,
      source: '/demo/shop',
      type: 'orders.created',
      data: { orderId: 'o-1001', amount: 99.5, currency: 'EUR' },
    },
    'application/cloudevents+json',
  );
  out(`4. POST /events              → accepted event ${eventId}`);

  const deadline = Date.now() + 15_000;
  let delivery: Record<string, unknown> | undefined;
  while (Date.now() < deadline) {
    const page = (await (
      await fetch(`${url}/admin/deliveries?eventId=${eventId}&subscriptionId=${String(sub.id)}`, {
        headers: { authorization: `Bearer ${token}` },
      })
    ).json()) as { items: Array<Record<string, unknown>> };
    delivery = page.items[0];
    if (delivery?.status === 'SUCCESS' || delivery?.status === 'FAILED') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const seen = receiver.received[0];
  out(
    `5. the receiver got ${seen ? `webhook ${seen.webhookId}, signature ${seen.verified ? 'VERIFIED' : 'NOT verified'}` : 'nothing'}`,
  );
  out(`6. GET /admin/deliveries?eventId=${eventId}:`);
  out(JSON.stringify(delivery, null, 2));
  if (keep) {
    out();
    out(`Still running. Admin token: ${token} (data dir ${dataDir})`);
    out(`Try: curl -H 'authorization: Bearer ${token}' ${url}/admin/deliveries`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
  }
  if (delivery?.status !== 'SUCCESS' || !seen?.verified) {
    throw new Error('the demo delivery did not succeed');
  }
}
