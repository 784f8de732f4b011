/**
 * The HTTP server's request-body budget (`src/runtimes/server/body-budget.ts`): the bytes of bodies
 * held in memory at once, over all connections, are bounded; bodies past the bound wait to be read
 * and are all answered once bytes come back; a body that stops arriving while others wait is cut
 * with 408, and a slow one is left alone while nobody waits. Real server, real sockets on loopback.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Agent, type IncomingMessage, request, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiResponse } from '../../src/common/http.ts';
import { Logger } from '../../src/common/log.ts';
import type { RawRequest } from '../../src/runtimes/http/edge.ts';
import type { BodyBudget } from '../../src/runtimes/server/body-budget.ts';
import { bodyBudgetOf, close, createNodeServer, listen } from '../../src/runtimes/server/http-server.ts';
import { startTestServer } from '../support/server.ts';
import { waitFor } from '../support/wait.ts';

const KIB = 1024;
/** A large body: over 64 KiB, the size up to which a declared body never waits. */
const BODY = 100 * KIB;

interface Harness {
  server: Server;
  port: number;
  budget: BodyBudget;
  /** Bodies that reached the handler, in order. */
  handled: string[];
  /** Lets every handler held so far, and every later one, answer. */
  release(): void;
}

let current: Harness | undefined;
afterEach(async () => {
  current?.release();
  if (current) await close(current.server, 100);
  current = undefined;
});

/** A server whose handler holds each POST (and so its body's bytes) until `release`; a GET is answered at once. */
async function start(options: { maxBodyBytes: number; budget: number; stallMs?: number }): Promise<Harness> {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  const handled: string[] = [];
  const server = createNodeServer({
    handle: async (raw: RawRequest): Promise<ApiResponse> => {
      if (raw.method === 'GET') return { status: 200, body: { status: 'ok' } };
      handled.push(raw.body);
      await opened;
      return { status: 200, body: { sha256: createHash('sha256').update(raw.body).digest('hex') } };
    },
    maxBodyBytes: options.maxBodyBytes,
    bodyBudgetBytes: options.budget,
    ...(options.stallMs !== undefined ? { bodyStallMs: options.stallMs } : {}),
    logger: new Logger({ level: 'error', sink: { write: () => {} } }),
  });
  const port = await listen(server, 0, '127.0.0.1');
  current = { server, port, budget: bodyBudgetOf(server)!, handled, release: open };
  return current;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Sends `first` of a body of `length` bytes, then (once `more` resolves) the rest; resolves with the
 * answer. Each request has a connection of its own.
 */
function send(
  port: number,
  body: string,
  options: { first?: number; more?: Promise<void>; chunked?: boolean } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: '/x',
        agent: new Agent({ keepAlive: false }),
        headers: {
          'content-type': 'application/json',
          ...(options.chunked ? {} : { 'content-length': Buffer.byteLength(body) }),
        },
      },
      (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    // A request cut by the server may see its socket reset while it still writes: the answer was read first.
    req.on('error', (err) => reject(err));
    const first = options.first ?? body.length;
    req.write(body.slice(0, first));
    if (first >= body.length) req.end();
    else void options.more?.then(() => req.end(body.slice(first)));
  });
}

function bodyOf(n: number, bytes: number): string {
  const head = `{"n":${n},"pad":"`;
  return `${head}${'x'.repeat(bytes - head.length - 2)}"}`;
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

describe('the request-body budget', () => {
  test('declared bodies past the budget wait before their first byte, holding nothing, and every one is answered once bytes come back', async () => {
    const h = await start({ maxBodyBytes: BODY, budget: 4 * BODY });
    const bodies = Array.from({ length: 12 }, (_, i) => bodyOf(i, BODY));
    let go!: () => void;
    const rest = new Promise<void>((resolve) => {
      go = resolve;
    });
    // All begin (a kilobyte each) before any ends.
    const answers = bodies.map((b) => send(h.port, b, { first: KIB, more: rest }));
    // Each takes its whole size when admitted: four fit, one more goes past the budget, seven wait.
    await waitFor('seven bodies waiting', () => h.budget.waiting === 7);
    assert.equal(
      h.budget.held,
      5 * BODY,
      'the admitted ones hold their declared size, the waiting ones nothing',
    );
    go();
    await waitFor('the admitted bodies handled', () => h.handled.length === 5);
    assert.equal(h.budget.waiting, 7);
    assert.ok(h.budget.peak <= 4 * BODY + BODY, `peak ${h.budget.peak}`);
    h.release();
    const got = await Promise.all(answers);
    assert.deepEqual(
      got.map((a) => [a.status, a.body.sha256]),
      bodies.map((b) => [200, sha(b)]),
    );
    assert.equal(h.budget.held, 0);
    assert.equal(h.budget.waiting, 0);
  });

  test('chunked bodies are counted as they come and paused once the budget is spent; every one is answered', async () => {
    const h = await start({ maxBodyBytes: BODY, budget: 4 * BODY });
    const bodies = Array.from({ length: 12 }, (_, i) => bodyOf(i, BODY));
    let go!: () => void;
    const rest = new Promise<void>((resolve) => {
      go = resolve;
    });
    const answers = bodies.map((b) => send(h.port, b, { first: KIB, more: rest, chunked: true }));
    await waitFor('every body begun', () => h.budget.held === bodies.length * KIB);
    go();
    // Every body is either whole (held by its handler) or waiting: nothing more will move.
    await waitFor(
      'each body handled or waiting',
      () => h.handled.length + h.budget.waiting === bodies.length,
    );
    // Four bodies fill the budget; one more may go past it; the rest wait.
    assert.ok(h.handled.length >= 4 && h.handled.length <= 5, `handled ${h.handled.length}`);
    // Held: the budget, one body past it, and at most a socket read per waiting body.
    assert.ok(h.budget.peak <= 4 * BODY + BODY + h.budget.waiting * 64 * KIB, `peak ${h.budget.peak}`);
    h.release();
    const got = await Promise.all(answers);
    assert.deepEqual(
      got.map((a) => [a.status, a.body.sha256]),
      bodies.map((b) => [200, sha(b)]),
    );
    assert.equal(h.budget.held, 0);
  });

  test('requests without a body, or with a small one, are served while large bodies wait', async () => {
    const h = await start({ maxBodyBytes: BODY, budget: BODY });
    const answers = [0, 1, 2].map((i) => send(h.port, bodyOf(i, BODY)));
    await waitFor('a body waiting', () => h.budget.waiting > 0 && h.handled.length + h.budget.waiting === 3);
    const get = await new Promise<number>((resolve, reject) => {
      request({ port: h.port, host: '127.0.0.1', path: '/healthz' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    assert.equal(get, 200);
    const handledBefore = h.handled.length;
    const small = bodyOf(99, KIB);
    const smallAnswer = send(h.port, small);
    await waitFor('the small body handled', () => h.handled.includes(small));
    assert.equal(h.handled.length, handledBefore + 1);
    h.release();
    assert.deepEqual(
      (await Promise.all([...answers, smallAnswer])).map((a) => a.status),
      [200, 200, 200, 200],
    );
  });

  test('a body that stops arriving while others wait is cut with 408, and the waiting go on', async () => {
    const h = await start({ maxBodyBytes: BODY, budget: 2 * BODY, stallMs: 200 });
    const never = new Promise<void>(() => {});
    // Two bodies sent but for their last bytes, then stalled: nearly all the budget held.
    const stalled = [0, 1].map((i) => send(h.port, bodyOf(i, BODY), { first: BODY - 4 * KIB, more: never }));
    await waitFor('the stalled bodies held', () => h.budget.held >= 2 * (BODY - 4 * KIB));
    // One whole body goes past the budget (held by its handler); the next must wait.
    const past = send(h.port, bodyOf(2, BODY));
    await waitFor('a body past the budget', () => h.handled.length === 1);
    const waiting = send(h.port, bodyOf(3, BODY));
    // The stalled ones are cut, and the bytes they held let the waiting body in.
    const cut = await Promise.all(stalled);
    assert.deepEqual(
      cut.map((a) => [a.status, (a.body.error as { code: string }).code]),
      [
        [408, 'request_timeout'],
        [408, 'request_timeout'],
      ],
    );
    await waitFor('the waiting body handled', () => h.handled.length === 2);
    assert.equal(h.budget.stalledCuts, 2);
    h.release();
    assert.deepEqual([(await past).status, (await waiting).status], [200, 200]);
  });

  test('a slow body is left alone while nobody waits', async () => {
    const h = await start({ maxBodyBytes: BODY, budget: 4 * BODY, stallMs: 50 });
    h.release();
    const body = bodyOf(0, BODY);
    // Half, then nothing for eight times the stall limit, then the rest.
    const answer = await send(h.port, body, { first: 32 * KIB, more: sleep(400) });
    assert.deepEqual([answer.status, answer.body.sha256], [200, sha(body)]);
    assert.equal(h.budget.stalledCuts, 0);
  });
});

describe('the platform server applies its bounds (WEBHOOKS_MAX_BUFFERED_BODY_BYTES, WEBHOOKS_MAX_CONNECTIONS)', () => {
  test('the budget is the setting, the connections past the cap are closed, and /metrics shows both', async () => {
    const ts = await startTestServer({
      WEBHOOKS_MAX_BUFFERED_BODY_BYTES: String(2 * 1024 * 1024),
      WEBHOOKS_MAX_CONNECTIONS: '2',
    });
    const sockets: Socket[] = [];
    try {
      assert.equal(bodyBudgetOf(ts.running.server)!.limitBytes, 2 * 1024 * 1024);
      const { port } = new URL(ts.url);
      const open = async () => {
        const socket = connect(Number(port), '127.0.0.1');
        sockets.push(socket);
        socket.on('error', () => {});
        await once(socket, 'connect');
        return socket;
      };
      await open();
      await open();
      await waitFor('two connections open', async () => (await countConnections(ts.running.server)) === 2);
      // The third is closed by the server as it comes.
      const third = await open();
      await once(third, 'close');
      for (const s of sockets) s.destroy();
      await waitFor('the connections closed', async () => (await countConnections(ts.running.server)) === 0);
      const metrics = await ts.request('GET', '/metrics');
      assert.match(String(metrics.body), /^webhooks_http_connections_dropped_total 1$/m);
      assert.match(String(metrics.body), /^webhooks_http_body_bytes_held 0$/m);
      assert.match(String(metrics.body), /^webhooks_http_bodies_waiting 0$/m);
    } finally {
      for (const s of sockets) s.destroy();
      await ts.stop();
    }
  });
});

function countConnections(server: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}
