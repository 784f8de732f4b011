/**
 * The Node server's edges the other API tests do not reach: the `expect: 100-continue` refusal at
 * exactly one byte over the limit, a request that arrives on a connection while the server closes,
 * and the request-body budget's bookkeeping (a body cut for stalling gives its bytes back once).
 * Real server, raw sockets on loopback.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { rawRequest } from '../../bench/fuzz-client.ts';
import { ConfigError, TransientError } from '../../src/common/errors.ts';
import type { ApiResponse } from '../../src/common/http.ts';
import { Logger } from '../../src/common/log.ts';
import type { RawRequest } from '../../src/runtimes/http/edge.ts';
import { BodyBudget, type BudgetReader } from '../../src/runtimes/server/body-budget.ts';
import { bodyBudgetOf, close, createNodeServer, listen } from '../../src/runtimes/server/http-server.ts';
import { ADMIN_TOKEN, startTestServer } from '../support/server.ts';
import { waitFor } from '../support/wait.ts';

const LIMIT = 1024;

interface Harness {
  server: Server;
  port: number;
  /** Bodies that reached the handler. */
  handled: string[];
  /** The server side of every connection accepted. */
  sockets: Socket[];
}

let current: Harness | undefined;
afterEach(async () => {
  if (current) await close(current.server, 100);
  current = undefined;
});

async function start(handle?: (raw: RawRequest) => Promise<ApiResponse>): Promise<Harness> {
  const handled: string[] = [];
  const sockets: Socket[] = [];
  const server = createNodeServer({
    handle:
      handle ??
      (async (raw) => {
        handled.push(raw.body);
        return { status: 200, body: { length: raw.body.length } };
      }),
    maxBodyBytes: LIMIT,
    logger: new Logger({ level: 'error', sink: { write: () => {} } }),
  });
  server.on('connection', (socket: Socket) => sockets.push(socket));
  const port = await listen(server, 0, '127.0.0.1');
  current = { server, port, handled, sockets };
  return current;
}

describe('expect: 100-continue at the limit', () => {
  test('a body declared one byte over the limit is refused 413 without the 100; one at the limit gets its 100', async () => {
    const { port, handled } = await start();
    const over = await rawRequest(port, {
      method: 'POST',
      target: '/x',
      headers: [['content-type', 'application/json']],
      body: Buffer.alloc(LIMIT + 1, 0x20),
      expectContinue: true,
    });
    assert.equal(over.error, undefined);
    assert.equal(over.response?.status, 413);
    assert.deepEqual(over.response?.informational, []);
    assert.equal(over.sentAll, false);
    assert.equal(JSON.parse(over.response!.body.toString()).error.code, 'payload_too_large');

    const atLimit = await rawRequest(port, {
      method: 'POST',
      target: '/x',
      headers: [['content-type', 'application/json']],
      body: Buffer.alloc(LIMIT, 0x20),
      expectContinue: true,
    });
    assert.deepEqual(atLimit.response?.informational, [100]);
    assert.equal(atLimit.response?.status, 200);
    assert.deepEqual(handled, [' '.repeat(LIMIT)]);
  });
});

describe('closing the server', () => {
  test('a request whose head arrives after the close began is answered, and its answer closes the connection', async () => {
    const { server, port, sockets } = await start();
    const client = connect(port, '127.0.0.1');
    await once(client, 'connect');
    const head = 'GET /x HTTP/1.1\r\nhost: x\r\n';
    client.write(head);
    // The server has read the beginning of the request: the connection is busy, not idle.
    await waitFor(
      'the first bytes of the request read',
      () => sockets[0] && sockets[0].bytesRead >= head.length,
    );
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    const stopping = close(server, 60_000);
    client.write('\r\n');
    await waitFor('the answer', () => Buffer.concat(chunks).includes('\r\n\r\n'));
    const answer = Buffer.concat(chunks).toString('latin1').toLowerCase();
    client.destroy();
    await stopping;
    current = undefined;
    assert.match(answer, /^http\/1\.1 200/);
    assert.match(answer, /\r\nconnection: close\r\n/);
  });
});

/** A reader as the server makes one, recording what the budget did to it. */
function reader(name: string, log: string[]): BudgetReader & { cuts: number } {
  return {
    held: 0,
    lastDataAt: 0,
    waiting: false,
    reading: true,
    reserve: 0,
    cuts: 0,
    pause: () => log.push(`pause ${name}`),
    resume: () => log.push(`resume ${name}`),
    cut() {
      this.cuts += 1;
      log.push(`cut ${name}`);
    },
  };
}

describe('the body budget, reader by reader', () => {
  test('chunked bodies woken when bytes come back are reckoned a socket read each: no more go on than the bytes free, plus one past them', () => {
    const log: string[] = [];
    const budget = new BodyBudget({ limitBytes: 64 * 1024 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => reader(n, log)) as [
      ReturnType<typeof reader>,
      ReturnType<typeof reader>,
      ReturnType<typeof reader>,
      ReturnType<typeof reader>,
    ];
    budget.open(a);
    budget.add(a, 64 * 1024 + 1); // past the budget: a is the one allowed past it
    for (const r of [b, c, d]) budget.open(r);
    assert.equal(budget.waiting, 3);
    budget.close(a);
    // b takes the 64 KiB free, c goes past the budget, d waits on.
    assert.deepEqual(log, ['pause b', 'pause c', 'pause d', 'resume b', 'resume c']);
    assert.equal(budget.waiting, 1);
    assert.equal(d.waiting, true);
  });

  test('while bodies wait, a stalled reader holding bytes is cut once; one holding nothing is left alone', async () => {
    const log: string[] = [];
    let now = 1_000;
    const budget = new BodyBudget({ limitBytes: 100, stallMs: 40, now: () => now });
    let stalls = 0;
    budget.onStall = () => {
      stalls += 1;
    };
    const idle = reader('idle', log);
    const holder = reader('holder', log);
    const waiter = reader('waiter', log);
    budget.open(idle); // chunked, nothing received yet
    budget.open(holder);
    budget.add(holder, 150); // past the budget
    budget.open(waiter); // waits: the budget is spent
    assert.equal(budget.waiting, 1);
    now += 1_000; // nobody received anything since
    await waitFor('the stalled reader cut', () => budget.stalledCuts > 0);
    assert.equal(holder.cuts, 1);
    assert.equal(idle.cuts, 0, 'a reader holding nothing holds nobody up');
    assert.equal(stalls, 1);
    // Its bytes came back once, though the server closes it again when its request ends.
    budget.close(holder);
    assert.equal(budget.held, 0);
    assert.equal(budget.waiting, 0);
    assert.equal(waiter.waiting, false);
    budget.close(idle);
    budget.close(waiter);
    assert.equal(budget.held, 0);
  });

  test('a body read whole, held while its handler works, is never cut as stalled; a paused one is not either', async () => {
    const log: string[] = [];
    let now = 1_000;
    const budget = new BodyBudget({ limitBytes: 100, stallMs: 40, now: () => now });
    const done = reader('done', log);
    const paused = reader('paused', log);
    const stalled = reader('stalled', log);
    budget.open(done);
    budget.add(done, 60);
    budget.finishedReading(done); // handed to its handler, which takes its time
    budget.open(paused);
    budget.open(stalled);
    budget.add(stalled, 50); // past the budget: the one allowed past it
    budget.add(paused, 10); // nothing free: it waits, holding what it read
    assert.equal(paused.waiting, true);
    now += 1_000;
    await waitFor('the stalled reader cut', () => budget.stalledCuts > 0);
    assert.equal(stalled.cuts, 1);
    assert.equal(done.cuts, 0);
    assert.equal(paused.cuts, 0);
    assert.equal(budget.held, 70);
    budget.close(done);
    budget.close(paused);
    assert.equal(budget.held, 0);
  });

  test('a declared body that would fit waits behind those already waiting: first come, first admitted', () => {
    const log: string[] = [];
    const budget = new BodyBudget({ limitBytes: 100 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => reader(n, log)) as [
      ReturnType<typeof reader>,
      ReturnType<typeof reader>,
      ReturnType<typeof reader>,
      ReturnType<typeof reader>,
    ];
    budget.open(a, 80);
    budget.open(b, 50); // the one past the budget
    budget.open(c, 60); // waits
    budget.close(a); // 50 held: c still does not fit, and b is past the budget
    assert.equal(c.waiting, true);
    budget.open(d, 40); // would fit, but c came first
    assert.equal(d.waiting, true);
    assert.equal(budget.held, 50);
    budget.close(b); // c, then d
    assert.deepEqual(log, ['pause c', 'pause d', 'resume c', 'resume d']);
    assert.equal(budget.held, 100);
  });

  test('a paused chunked body that still receives a read is queued once, and woken when a body too large drops its bytes', () => {
    const log: string[] = [];
    const budget = new BodyBudget({ limitBytes: 100 });
    const big = reader('big', log);
    const next = reader('next', log);
    budget.open(big);
    budget.add(big, 150); // past the budget
    budget.open(next); // waits
    budget.add(next, 10); // a read already under way when it was paused
    assert.equal(budget.waiting, 1);
    budget.dropHeld(big); // found over the size limit: dropped as it is read
    assert.equal(next.waiting, false);
    assert.equal(budget.waiting, 0);
    assert.deepEqual(log, ['pause next', 'resume next']);
  });

  test('a chunked body opening when the budget is exactly spent is the one past it; the next waits', () => {
    const log: string[] = [];
    const budget = new BodyBudget({ limitBytes: 100 });
    budget.open(reader('a', log), 60);
    budget.open(reader('b', log), 40); // exactly spent, nobody past it
    const first = reader('first', log);
    const second = reader('second', log);
    budget.open(first);
    budget.open(second);
    budget.add(first, 10);
    assert.deepEqual(log, ['pause second']);
  });

  test('a waiting body whose client goes away leaves the queue: it is never admitted, and holds nothing', () => {
    const log: string[] = [];
    const budget = new BodyBudget({ limitBytes: 100 });
    const first = reader('first', log);
    const past = reader('past', log);
    const gone = reader('gone', log);
    budget.open(first, 100);
    budget.open(past, 50); // the one allowed past the budget
    budget.open(gone, 50); // waits before its first byte
    assert.equal(budget.waiting, 1);
    budget.close(gone); // its client closed the connection
    assert.equal(budget.waiting, 0);
    budget.close(first);
    budget.close(past);
    assert.equal(budget.held, 0);
    assert.equal(budget.waiting, 0);
    assert.deepEqual(log, ['pause gone']);
  });
});

describe('the platform server shows its body budget at work on /metrics', () => {
  test('bytes held, the most held, bodies waiting, and bodies cut for stalling', {
    timeout: 60_000,
  }, async () => {
    const DECLARED = 90_000;
    const ts = await startTestServer({
      WEBHOOKS_MAX_BODY_BYTES: '100000',
      WEBHOOKS_MAX_BUFFERED_BODY_BYTES: '100000',
    });
    const budget = bodyBudgetOf(ts.running.server)!;
    const sockets: Socket[] = [];
    const metric = async (name: string) => {
      const text = String((await ts.request('GET', '/metrics')).body);
      return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    };
    try {
      const { port } = new URL(ts.url);
      // Each declares a large body and sends its first bytes only: admitted, it holds its declared size.
      const begin = async () => {
        const socket = connect(Number(port), '127.0.0.1');
        sockets.push(socket);
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.write(
          `POST /admin/partners HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${DECLARED}\r\n\r\n{`,
        );
      };
      const answers: string[] = [];
      await begin();
      sockets[0]!.on('data', (c: Buffer) => answers.push(c.toString('latin1')));
      await waitFor('the first body admitted', () => budget.held === DECLARED);
      await begin(); // past the budget
      await waitFor('the second body admitted', () => budget.held === 2 * DECLARED);
      await begin(); // waits
      await waitFor('the third body waiting', () => budget.waiting === 1);
      assert.equal(await metric('webhooks_http_body_bytes_held'), 2 * DECLARED);
      assert.equal(await metric('webhooks_http_bodies_waiting'), 1);
      // The two admitted receive nothing more while the third waits: they are cut (after 5 s).
      await waitFor(
        'a body cut for stalling',
        async () => (await metric('webhooks_http_bodies_stalled_total')) >= 1,
      );
      // The one cut is answered 408, and its connection closed (the rest of its body never comes).
      await waitFor('the first body answered', () => answers.join('').includes('\r\n\r\n'));
      const answer = answers.join('').toLowerCase();
      assert.match(answer, /^http\/1\.1 408 /);
      assert.match(answer, /\r\nconnection: close\r\n/);
      for (const socket of sockets) socket.destroy();
      await waitFor('every body given back', () => budget.held === 0 && budget.waiting === 0);
      assert.equal(await metric('webhooks_http_body_bytes_held'), 0);
      assert.equal(await metric('webhooks_http_body_bytes_held_max'), 2 * DECLARED);
    } finally {
      for (const socket of sockets) socket.destroy();
      await ts.stop();
    }
  });
});

describe('bodies declared small are not counted by the budget', () => {
  test('a body declared 64 KiB is neither counted nor made to wait; one byte more is counted whole', async () => {
    const heldWhileHandled: number[] = [];
    const server = createNodeServer({
      handle: async () => {
        heldWhileHandled.push(bodyBudgetOf(server)!.held);
        return { status: 204 };
      },
      maxBodyBytes: 1024 * 1024,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
    });
    const port = await listen(server, 0, '127.0.0.1');
    current = { server, port, handled: [], sockets: [] };
    for (const size of [64 * 1024, 64 * 1024 + 1]) {
      const outcome = await rawRequest(port, {
        method: 'POST',
        target: '/x',
        headers: [['content-type', 'application/json']],
        body: Buffer.alloc(size, 0x20),
      });
      assert.equal(outcome.response?.status, 204);
      assert.equal(outcome.response?.headers['content-length'], undefined, 'a 204 has no content-length');
    }
    assert.deepEqual(heldWhileHandled, [0, 64 * 1024 + 1]);
  });
});

describe('a request Node gives up on', () => {
  test('a request timeout is answered 408 request_timeout with the JSON error body, and the connection closes', async () => {
    const { server, port, sockets } = await start();
    const client = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    await waitFor('the connection accepted', () => sockets[0]);
    // What Node's request timer reports (after WEBHOOKS' 15 s for the headers, 30 s for the request).
    const timeout = Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
    server.emit('clientError', timeout, sockets[0]);
    await once(client, 'end');
    client.destroy();
    const text = Buffer.concat(chunks).toString('utf8');
    const [head = '', body = ''] = text.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(head.toLowerCase(), /\r\nconnection: close(\r\n|$)/);
    assert.equal(JSON.parse(body).error.code, 'request_timeout');
  });
});

describe('the edge over the platform', () => {
  let ts: Awaited<ReturnType<typeof startTestServer>> | undefined;
  afterEach(async () => {
    await ts?.stop();
    ts = undefined;
  });

  test('a method a route does not take → 405 with the methods it does take in allow', async () => {
    ts = await startTestServer();
    const res = await ts.request('DELETE', '/healthz');
    assert.equal(res.status, 405);
    assert.equal(res.body.error.code, 'method_not_allowed');
    assert.match(res.headers.get('allow') ?? '', /\bGET\b/);
  });

  test('a caller the transport authenticated is taken instead of the Authorization header', async () => {
    ts = await startTestServer();
    const res = await ts.running.platform.handle({
      method: 'GET',
      url: '/admin/partners',
      headers: { authorization: 'AWS4-HMAC-SHA256 Credential=the-gateway-s-own' },
      body: '',
      principal: { kind: 'gateway', role: 'operator', id: 'arn:aws:iam::123456789012:user/ops' },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });

  test('HEAD on an admin route is no admin change: it is not audited', async () => {
    ts = await startTestServer();
    assert.equal(
      (
        await fetch(`${ts.url}/admin/partners`, {
          method: 'HEAD',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        })
      ).status,
      200,
    );
    assert.equal(
      (await ts.request('POST', '/admin/partners', { id: 'audited', name: 'Audited Inc' })).status,
      201,
    );
    const audit = await ts.request('GET', '/admin/audit');
    assert.deepEqual(
      audit.body.items.map((r: { action: string }) => r.action),
      ['POST /admin/partners'],
    );
  });
  test('no credentials → 401 with www-authenticate: Bearer', async () => {
    ts = await startTestServer();
    const res = await ts.request('GET', '/admin/partners', undefined, { token: null });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
  });

  test('an admin body typed +json, or untyped, is parsed as JSON', async () => {
    ts = await startTestServer();
    const created = await ts.request('POST', '/admin/partners', undefined, {
      raw: JSON.stringify({ id: 'typed', name: 'Typed Inc' }),
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const untyped = await fetch(`${ts.url}/admin/partners`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: new Uint8Array(Buffer.from(JSON.stringify({ id: 'untyped', name: 'Untyped Inc' }))),
    });
    assert.equal(untyped.status, 201, await untyped.text());
  });

  test("the audit record names a change's top-level fields, up to 50", async () => {
    ts = await startTestServer();
    const body: Record<string, number> = {};
    for (let i = 0; i < 60; i++) body[`f${i}`] = i;
    assert.equal((await ts.request('POST', '/admin/partners', body)).status, 400);
    const audit = await ts.request('GET', '/admin/audit');
    assert.equal(audit.body.items.length, 1);
    assert.deepEqual(audit.body.items[0].fields, Object.keys(body).slice(0, 50));
    assert.equal(audit.body.items[0].status, 400);
  });
});

describe("a failure outside the edge, of the platform's internal kind", () => {
  test('is answered 500 internal_error without its message, and the connection closes', async () => {
    const { port } = await start(() => Promise.reject(new ConfigError('the secret s3cr3t is wrong')));
    const agent = new Agent({ keepAlive: true });
    try {
      const answer = await new Promise<{ status: number; connection?: string; text: string }>(
        (resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path: '/x', agent }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              text += d;
            });
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                text,
                ...(res.headers.connection ? { connection: res.headers.connection } : {}),
              }),
            );
          });
          req.on('error', reject);
          req.end();
        },
      );
      assert.equal(answer.status, 500);
      assert.equal(JSON.parse(answer.text).error.code, 'internal_error');
      assert.ok(!answer.text.includes('s3cr3t'), answer.text);
      // The connection is closed after it, though the client would keep it.
      assert.equal(answer.connection, 'close');
    } finally {
      agent.destroy();
    }
  });
  test('a dependency unavailable is answered 503 with its code', async () => {
    const { port } = await start(() =>
      Promise.reject(new TransientError('store_unavailable', 'the store is away')),
    );
    const outcome = await rawRequest(port, { method: 'GET', target: '/x' });
    assert.equal(outcome.response?.status, 503);
    assert.equal(JSON.parse(outcome.response!.body.toString()).error.code, 'store_unavailable');
  });
});

describe('draining an oversized body', () => {
  test('a chunked body past maxDrainBytes is answered 413 and its connection closed; one within is read to its end', async () => {
    const server = createNodeServer({
      handle: async () => ({ status: 200, body: {} }),
      maxBodyBytes: LIMIT,
      maxDrainBytes: 4 * LIMIT,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
    });
    const port = await listen(server, 0, '127.0.0.1');
    current = { server, port, handled: [], sockets: [] };
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    // Chunked (no content-length): the size is known only as the body is read.
    const send = (size: number) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/x', agent });
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }));
        });
        req.on('error', reject);
        for (let sent = 0; sent < size; sent += 512) req.write(Buffer.alloc(512, 0x20));
        req.end();
      });
    try {
      assert.deepEqual(await send(3 * LIMIT), { status: 413, connection: 'keep-alive' });
      assert.deepEqual(await send(8 * LIMIT), { status: 413, connection: 'close' });
    } finally {
      agent.destroy();
    }
  });
});

describe('a chunked body found too large', () => {
  test('gives its bytes back to the budget as soon as it passes the limit, while the rest is drained', async () => {
    const { server, port } = await start();
    const budget = bodyBudgetOf(server)!;
    const agent = new Agent({ keepAlive: false });
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/x', agent });
    const answered = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
    });
    req.write(Buffer.alloc(1000, 0x20));
    await waitFor('the first bytes counted', () => budget.held === 1000);
    req.write(Buffer.alloc(1000, 0x20)); // past the limit: the body is dropped as it comes
    await waitFor('the bytes given back', () => budget.held === 0);
    req.end();
    assert.equal(await answered, 413);
  });
});

describe('the body budget of a server', () => {
  test('is never below the body size limit', async () => {
    const server = createNodeServer({
      handle: async () => ({ status: 204 }),
      maxBodyBytes: 1024 * 1024,
      bodyBudgetBytes: 1000,
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
    });
    assert.equal(bodyBudgetOf(server)!.limitBytes, 1024 * 1024);
  });
});
