/** The undici delivery client against real HTTP(S) servers on 127.0.0.1 started by this file. */
import assert from 'node:assert/strict';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { UndiciDeliveryClient } from '../../src/engines/http/delivery-client.ts';
import { delivery, failure, success } from '../support/delivery.ts';
import { generateCert, selfSignedCert } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';

type Route = (req: IncomingMessage, res: ServerResponse) => void;

interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** Each test sets `routes[path]`; every request the TLS 1.3 server gets is recorded in `seen`. */
let routes: Record<string, Route> = {};
let seen: Seen[] = [];
let connections = 0;
let tls13: Server;
let tls12: Server;
let plain: Server;
let cert: string;
const clients: UndiciDeliveryClient[] = [];

function port(server: Server): number {
  return (server.address() as AddressInfo).port;
}

async function listen<S extends NetServer>(server: S): Promise<S> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function handler(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    seen.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
    const route = routes[req.url ?? ''] ?? ((_q, r) => r.writeHead(404).end('no route'));
    route(req, res);
  });
}

function client(
  options: Partial<ConstructorParameters<typeof UndiciDeliveryClient>[0]> = {},
): UndiciDeliveryClient {
  const c = new UndiciDeliveryClient({ allowInsecure: true, ca: cert, ...options });
  clients.push(c);
  return c;
}

const url13 = (path: string, host = '127.0.0.1'): string => `https://${host}:${port(tls13)}${path}`;

before(async () => {
  const pem = await selfSignedCert();
  cert = pem.cert;
  tls13 = await listen(createHttpsServer({ ...pem, minVersion: 'TLSv1.3' }, handler));
  tls13.on('secureConnection', () => connections++);
  tls12 = await listen(createHttpsServer({ ...pem, maxVersion: 'TLSv1.2' }, handler));
  plain = await listen(createHttpServer(handler));
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  for (const server of [tls13, tls12, plain]) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

beforeEach(() => {
  routes = {};
  seen = [];
  connections = 0;
});

describe('responses', () => {
  test('returns status, lower-cased headers and body of a 2xx, and sends the request as given', async () => {
    routes['/hook?x=1'] = (_req, res) => res.writeHead(200, { 'X-Partner-Trace': 'abc' }).end('received');

    const request = delivery(url13('/hook?x=1'));
    const result = success(
      await client().send({ ...request, headers: { ...request.headers, 'user-agent': 'test-agent/1' } }),
    );

    assert.equal(result.status, 200);
    assert.equal(result.headers['x-partner-trace'], 'abc');
    assert.equal(result.body, 'received');
    assert.ok(result.latencyMs >= 0);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.body, '{"hello":"world"}');
    assert.equal(seen[0]?.headers['webhook-id'], 'msg_1');
    assert.equal(seen[0]?.headers['user-agent'], 'test-agent/1');
  });

  test('returns a 302 as is and does not follow its Location', async () => {
    routes['/moved'] = (_req, res) => res.writeHead(302, { location: url13('/target') }).end();
    routes['/target'] = (_req, res) => res.writeHead(200).end('followed');

    const result = success(await client().send(delivery(url13('/moved'))));

    assert.equal(result.status, 302);
    assert.equal(result.headers.location, url13('/target'));
    assert.deepEqual(
      seen.map((s) => s.path),
      ['/moved'],
    );
  });

  test('keeps only maxResponseBytes of a 50 MB body and returns without reading the rest', async () => {
    const total = 50 * 1024 * 1024;
    let written = 0;
    let closedAfter = -1;
    routes['/huge'] = (_req, res) => {
      const chunk = Buffer.alloc(64 * 1024, 'a');
      res.on('close', () => {
        closedAfter = written;
      });
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.writeHead(200);
      pump();
    };

    const result = success(await client().send(delivery(url13('/huge'), { maxResponseBytes: 1000 })));

    assert.equal(result.body, 'a'.repeat(1000));
    // The server notices the closed socket a little later; on a busy machine that can take a while.
    await waitFor('the server to see the connection closed', () => closedAfter >= 0);
    assert.ok(closedAfter < total / 5, `server wrote ${closedAfter} bytes before the close`);
  });

  test('reuses one keep-alive connection for consecutive requests to an origin', async () => {
    routes['/ok'] = (_req, res) => res.writeHead(204).end();
    const c = client();

    success(await c.send(delivery(url13('/ok'))));
    success(await c.send(delivery(url13('/ok'))));

    assert.equal(seen.length, 2);
    assert.equal(connections, 1);
  });

  test('sends as many requests to one origin at once as it is given (the endpoint limiter sets the limit)', async () => {
    // The server answers only once 40 requests are open at the same time.
    const waiting: ServerResponse[] = [];
    routes['/many'] = (_req, res) => {
      waiting.push(res);
      if (waiting.length === 40) for (const r of waiting) r.writeHead(204).end();
    };
    const c = client();
    const results = await Promise.all(Array.from({ length: 40 }, () => c.send(delivery(url13('/many')))));
    for (const r of results) assert.equal(success(r).status, 204);
    assert.equal(connections, 40);
  });

  test('delivers over plain http in dev mode', async () => {
    routes['/dev'] = (_req, res) => res.writeHead(200).end('dev');

    const result = success(await client().send(delivery(`http://127.0.0.1:${port(plain)}/dev`)));

    assert.equal(result.body, 'dev');
  });
});

describe('TLS', () => {
  test('accepts a TLS 1.3 server whose certificate is given as ca, by host name', async () => {
    routes['/tls'] = (_req, res) => res.writeHead(200).end('secure');

    const result = success(await client().send(delivery(url13('/tls', 'localhost'))));

    assert.equal(result.body, 'secure');
  });

  test('refuses a TLS 1.2-only server with kind tls, naming TLS 1.3', async () => {
    const result = failure(await client().send(delivery(`https://127.0.0.1:${port(tls12)}/hook`)));

    assert.equal(result.kind, 'tls');
    assert.match(result.message, /TLS handshake failed: the endpoint does not support TLS 1\.3/);
    assert.equal(seen.length, 0);
  });

  test('refuses a TLS 1.2-only server without a CA of its own too (the default trust store, as in production)', async () => {
    // No `ca`: the client's own connect options carry the TLS minimum. The handshake fails on the
    // protocol version, before the (untrusted) certificate would be looked at.
    const result = failure(
      await client({ ca: undefined }).send(delivery(`https://127.0.0.1:${port(tls12)}/hook`)),
    );

    assert.equal(result.kind, 'tls');
    assert.match(result.message, /TLS handshake failed: the endpoint does not support TLS 1\.3/);
    assert.equal(seen.length, 0);
  });

  test('refuses an untrusted certificate with kind tls', async () => {
    const stranger = await generateCert();

    const result = failure(await client({ ca: stranger.cert }).send(delivery(url13('/hook'))));

    assert.equal(result.kind, 'tls');
    assert.match(result.message, /certificate/);
    assert.equal(seen.length, 0);
  });
});

describe('failures', () => {
  test('a server that never answers times out after headersMs with kind timeout', async () => {
    routes['/silent'] = () => {};
    const timeouts = { connectMs: 2000, headersMs: 300, bodyMs: 2000 };

    const result = failure(await client().send(delivery(url13('/silent'), { timeouts })));

    assert.equal(result.kind, 'timeout');
    // The headers timeout (not another) ended it, and not before it was due.
    assert.match(result.message, /no response headers within 300 ms/);
    assert.ok(result.latencyMs >= 250, `latency ${result.latencyMs} ms`);
  });

  test('a response body that stalls times out after bodyMs with kind timeout', async () => {
    routes['/stall'] = (_req, res) => {
      res.writeHead(200);
      res.write('partial');
    };
    const timeouts = { connectMs: 2000, headersMs: 2000, bodyMs: 300 };

    const result = failure(await client().send(delivery(url13('/stall'), { timeouts })));

    assert.equal(result.kind, 'timeout');
    assert.match(result.message, /body stalled/);
  });

  test('a handshake that never completes times out after connectMs with kind timeout', async () => {
    const mute = createNetServer((socket) => socket.resume()); // accepts TCP, never speaks TLS
    await listen(mute);
    const timeouts = { connectMs: 300, headersMs: 5000, bodyMs: 5000 };

    try {
      const mutePort = (mute.address() as AddressInfo).port;
      const result = failure(
        await client().send(delivery(`https://127.0.0.1:${mutePort}/hook`, { timeouts })),
      );

      assert.equal(result.kind, 'timeout');
      // The connect timeout (not the 5 s headers timeout) ended it.
      assert.match(result.message, /timed out after 300 ms/);
    } finally {
      await new Promise((resolve) => mute.close(resolve));
    }
  });

  test('https to a plain-http port fails with kind tls', async () => {
    const result = failure(await client().send(delivery(`https://127.0.0.1:${port(plain)}/hook`)));

    assert.equal(result.kind, 'tls');
    assert.match(result.message, /did not answer with TLS/);
  });

  test('a refused connection has kind connect', async () => {
    const closed = await listen(createHttpServer());
    const closedPort = port(closed);
    await new Promise((resolve) => closed.close(resolve));

    const result = failure(await client().send(delivery(`https://127.0.0.1:${closedPort}/hook`)));

    assert.equal(result.kind, 'connect');
    assert.match(result.message, /refused/);
  });

  test('a host name that does not resolve has kind dns', async () => {
    const result = failure(await client().send(delivery('https://no-such-host.invalid/hook')));

    assert.equal(result.kind, 'dns');
    assert.match(result.message, /no-such-host\.invalid/);
  });
});

describe('SSRF guard outside dev mode', () => {
  test('refuses a host name resolving to loopback at connect time, before any request', async () => {
    const result = failure(
      await client({ allowInsecure: false }).send(delivery(url13('/hook', 'localhost'))),
    );

    assert.equal(result.kind, 'forbidden_address');
    assert.match(result.message, /localhost.*loopback/);
    assert.equal(connections, 0);
  });

  test('refuses a loopback IP literal', async () => {
    const result = failure(await client({ allowInsecure: false }).send(delivery(url13('/hook'))));

    assert.equal(result.kind, 'forbidden_address');
    assert.match(result.message, /127\.0\.0\.1.*loopback/);
    assert.equal(connections, 0);
  });

  test('refuses plain http as forbidden_address', async () => {
    const result = failure(
      await client({ allowInsecure: false }).send(delivery(`http://example.com:${port(plain)}/hook`)),
    );

    assert.equal(result.kind, 'forbidden_address');
    assert.match(result.message, /https/);
    assert.equal(seen.length, 0);
  });
});
