/**
 * Starts the real standalone server in-process on a loopback port with a fresh data dir, and gives
 * tests a small client for it. Requests go over real HTTP sockets.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Config, loadConfig } from '../../src/common/config.ts';
import type { HostResolver } from '../../src/common/delivery-url.ts';
import { Logger } from '../../src/common/log.ts';
import { createDnsResolver } from '../../src/engines/dns-resolver.ts';
import { type RunningServer, startServer } from '../../src/runtimes/server/server.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/**
 * Names that cannot resolve on a machine without internet get fixed answers; everything else
 * (localhost, *.invalid) goes to the system resolver.
 */
export const TEST_HOSTS: Record<string, string[]> = {
  'hooks.partner.test': ['93.184.216.34'],
  'other.partner.test': ['93.184.216.35', '2606:2800:220:1::1'],
  'private.partner.test': ['10.1.2.3'],
  'rebind.partner.test': ['93.184.216.34', '192.168.1.10'],
  'metadata.partner.test': ['169.254.169.254'],
};

export function testResolver(): HostResolver {
  const system = createDnsResolver(2000);
  return async (host) => TEST_HOSTS[host] ?? system(host);
}

export interface TestServer {
  url: string;
  running: RunningServer;
  dataDir: string;
  /** JSON request with the admin token (pass `token: null` to omit it). */
  request(
    method: string,
    path: string,
    body?: unknown,
    options?: { token?: string | null; headers?: Record<string, string>; raw?: string },
  ): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

/** Starts a server; `env` adds WEBHOOKS_* settings. */
export async function startTestServer(
  env: Record<string, string> = {},
  dataDir?: string,
): Promise<TestServer> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'webhooks-api-')));
  const config: Config = loadConfig({
    WEBHOOKS_PORT: '0',
    WEBHOOKS_HOST: '127.0.0.1',
    WEBHOOKS_DATA_DIR: dir,
    WEBHOOKS_ADMIN_TOKEN: ADMIN_TOKEN,
    WEBHOOKS_LOG_LEVEL: 'error',
    ...env,
  });
  const running = await startServer(config, {
    resolve: testResolver(),
    logger: new Logger({ level: 'error', sink: { write: () => {} } }),
  });
  return {
    url: running.url,
    running,
    dataDir: dir,
    async request(method, path, body, options = {}) {
      const headers: Record<string, string> = { ...options.headers };
      const token = options.token === undefined ? ADMIN_TOKEN : options.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let payload: string | undefined = options.raw;
      if (payload === undefined && body !== undefined) payload = JSON.stringify(body);
      if (payload !== undefined) headers['content-type'] ??= 'application/json';
      const res = await fetch(`${running.url}${path}`, { method, headers, body: payload });
      const text = await res.text();
      let parsed: unknown = text;
      if (res.headers.get('content-type')?.includes('json')) parsed = JSON.parse(text);
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async stop() {
      await running.stop();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A small valid schema for orders.created. */
export const ORDER_SCHEMA = {
  type: 'object',
  required: ['orderId', 'amount'],
  properties: {
    orderId: { type: 'string' },
    amount: { type: 'number' },
    currency: { type: 'string', enum: ['EUR', 'USD'] },
  },
  additionalProperties: false,
};

/** Registers a schema, a partner and returns them (for subscription tests). */
export async function seed(server: TestServer, partnerId = 'acme', domain = 'orders', event = 'created') {
  const schema = await server.request('POST', '/admin/schemas', { domain, event, schema: ORDER_SCHEMA });
  const partner = await server.request('POST', '/admin/partners', {
    id: partnerId,
    name: `${partnerId} Inc`,
  });
  return { schema: schema.body, partner: partner.body };
}
