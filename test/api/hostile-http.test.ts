/**
 * Hostile HTTP: bodies far over the limit, `expect: 100-continue`, malformed `%`-escapes in path
 * parameters, megabyte and unsafe request ids, malformed framing, invalid UTF-8, and failures outside
 * the edge. Every request gets an answer with the JSON error body — never a cut connection — and the
 * server keeps serving. Requests go through a raw `node:net` client, which tells an answer from an
 * EPIPE or a reset (`fetch` and `node:http` hide one behind the other).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { Agent, request, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RawHttpOutcome, type RawHttpRequest, rawRequest } from '../../bench/fuzz-client.ts';
import { ValidationError } from '../../src/common/errors.ts';
import { Logger } from '../../src/common/log.ts';
import { close, createNodeServer, listen } from '../../src/runtimes/server/http-server.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../support/server.ts';
import { selfSignedCert } from '../support/tls.ts';

const AUTH: [string, string][] = [
  ['authorization', `Bearer ${ADMIN_TOKEN}`],
  ['content-type', 'application/json'],
];
const TWELVE_MB = Buffer.alloc(12 * 1024 * 1024, '{"a":1}');

/** The error body of an outcome that must be a clean answer: status, code, no socket error. */
function assertAnswered(outcome: RawHttpOutcome, status: number, code: string): { details: any[] } {
  assert.equal(
    outcome.error,
    undefined,
    `socket error ${outcome.error} (answer: ${outcome.response?.status})`,
  );
  assert.ok(outcome.response, 'an answer');
  assert.equal(outcome.response.status, status, outcome.response.body.toString());
  assert.match(outcome.response.headers['content-type'] ?? '', /^application\/json/);
  const body = JSON.parse(outcome.response.body.toString());
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  return body.error;
}

describe('hostile HTTP against the server (body limit 1 MiB)', () => {
  let server: TestServer;
  let port: number;
  const send = (request: RawHttpRequest) => rawRequest(port, request);

  before(async () => {
    server = await startTestServer();
    port = server.running.port;
  });
  after(() => server.stop());

  const assertStillServing = async () => {
    const health = await send({ method: 'GET', target: '/healthz' });
    assert.equal(health.response?.status, 200);
  };

  for (const framing of ['content-length', 'chunked'] as const) {
    test(`a 12 MB body (${framing}) gets 413 in 30 of 30 tries, read to its end: no EPIPE, no reset`, async () => {
      for (let i = 0; i < 30; i++) {
        const outcome = await send({
          method: 'POST',
          target: '/admin/schemas',
          headers: AUTH,
          body: TWELVE_MB,
          ...(framing === 'chunked' ? { chunked: 64 * 1024 } : {}),
        });
        const error = assertAnswered(outcome, 413, 'payload_too_large');
        assert.deepEqual(
          error.details.map((d) => d.field),
          ['body'],
        );
        assert.ok(outcome.sentAll, `try ${i}: the whole body was taken`);
      }
      await assertStillServing();
    });
  }

  test('a large request waiting for something else (a registration claim held elsewhere) does not hold up the large requests behind it', async () => {
    await server.request('POST', '/admin/schemas', {
      domain: 'gate',
      event: 'held',
      schema: { type: 'object' },
    });
    // Another process is registering gate.held (its claim lasts 30 s): a registration here waits.
    const claim = await server.running.platform.store.ledger.claim(
      'schema-registration:gate.held',
      30_000,
      Date.now(),
    );
    assert.equal(claim.status, 'claimed');
    const big = { type: 'object', $comment: 'x'.repeat(70_000) };
    let registrationAnswered = false;
    const registration = server
      .request('POST', '/admin/schemas', { domain: 'gate', event: 'held', schema: big })
      .then((r) => {
        registrationAnswered = true;
        return r;
      });
    // The registration has its place at the gate once it waits on the claim (a few milliseconds).
    await new Promise((resolve) => setTimeout(resolve, 200));
    const unauthenticated = await server.request(
      'POST',
      '/admin/schemas',
      { domain: 'gate', event: 'x', schema: big },
      { token: null },
    );
    assert.equal(unauthenticated.status, 401);
    const other = await server.request('POST', '/admin/schemas', {
      domain: 'gate',
      event: 'other',
      schema: big,
    });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    assert.equal(registrationAnswered, false, 'both were answered while the registration still waited');
    assert.equal((await registration).status, 409);
  });

  test('answers made outside the edge carry the JSON error body and the request id: 413, no Host (400), an unknown Expect (417)', async () => {
    const tooLarge = await send({
      method: 'POST',
      target: '/admin/schemas',
      headers: [...AUTH, ['x-request-id', 'req-413']],
      body: TWELVE_MB,
    });
    assertAnswered(tooLarge, 413, 'payload_too_large');
    assert.equal(tooLarge.response?.headers['x-request-id'], 'req-413');

    // Written by hand: the client adds a Host to every request it sends.
    const raw = async (head: string) => {
      const socket = connect(port, '127.0.0.1');
      socket.write(head);
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      await once(socket, 'close');
      const text = Buffer.concat(chunks).toString('utf8');
      const [headLines = '', body = ''] = text.split('\r\n\r\n');
      return { status: Number(headLines.split(' ')[1]), head: headLines.toLowerCase(), body };
    };
    const noHost = await raw('GET /healthz HTTP/1.1\r\nx-request-id: req-host\r\nconnection: close\r\n\r\n');
    assert.equal(noHost.status, 400);
    assert.equal(JSON.parse(noHost.body).error.code, 'host_required');
    assert.match(noHost.head, /x-request-id: req-host/);
    const expect = await raw(
      'POST /events HTTP/1.1\r\nhost: x\r\nexpect: something-else\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
    );
    assert.equal(expect.status, 417);
    assert.equal(JSON.parse(expect.body).error.code, 'expectation_failed');
    // HTTP/1.0 needs no Host.
    const old = await raw('GET /healthz HTTP/1.0\r\n\r\n');
    assert.equal(old.status, 200);
  });

  test('one byte over the limit is 413, in either framing', async () => {
    const over = Buffer.alloc(1024 * 1024 + 1, 0x20);
    for (const chunked of [undefined, 4096]) {
      const outcome = await send({
        method: 'POST',
        target: '/admin/schemas',
        headers: AUTH,
        body: over,
        ...(chunked ? { chunked } : {}),
      });
      assertAnswered(outcome, 413, 'payload_too_large');
    }
  });

  test('after a 413 the keep-alive connection serves the next request', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const call = (method: string, path: string, body?: Buffer) =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = request(`${server.url}${path}`, {
          method,
          agent,
          headers: { 'content-type': 'application/json' },
        });
        req.setHeader('authorization', `Bearer ${ADMIN_TOKEN}`);
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(body);
      });
    assert.equal((await call('POST', '/admin/schemas', Buffer.alloc(2 * 1024 * 1024, 'x'))).status, 413);
    assert.deepEqual(await call('GET', '/healthz'), { status: 200, reused: true });
    agent.destroy();
  });

  test('expect: 100-continue over the limit is answered 413 without the 100, and the body is not sent', async () => {
    const outcome = await send({
      method: 'POST',
      target: '/admin/schemas',
      headers: AUTH,
      body: TWELVE_MB,
      expectContinue: true,
    });
    assertAnswered(outcome, 413, 'payload_too_large');
    assert.deepEqual(outcome.response!.informational, []);
    assert.equal(outcome.sentAll, false);
    assert.equal(outcome.response!.headers.connection, 'close');
    await assertStillServing();
  });

  test('expect: 100-continue within the limit gets its 100, then the body is handled', async () => {
    const outcome = await send({
      method: 'POST',
      target: '/admin/partners',
      headers: AUTH,
      body: JSON.stringify({ id: 'expecting', name: 'Expecting Inc' }),
      expectContinue: true,
    });
    assert.equal(outcome.error, undefined);
    assert.deepEqual(outcome.response?.informational, [100]);
    assert.equal(outcome.response?.status, 201, outcome.response?.body.toString());
  });

  test('a content-length far over the limit is answered at once, without waiting for the body', async () => {
    const outcome = await send({
      method: 'POST',
      target: '/admin/schemas',
      headers: AUTH,
      body: Buffer.alloc(0),
      declaredLength: 10 * 1024 * 1024 * 1024,
    });
    assertAnswered(outcome, 413, 'payload_too_large');
    assert.equal(outcome.response!.headers.connection, 'close');
    await assertStillServing();
  });

  test('malformed %-escapes in a path parameter → 400 invalid_path naming it (was: connection dropped)', async () => {
    const cases: [string, string, string][] = [
      ['GET', '/admin/partners/%ff', 'id'],
      ['GET', '/admin/partners/%zz', 'id'],
      ['PATCH', '/admin/partners/%ed%a0%80', 'id'],
      ['GET', '/admin/subscriptions/%e0%80%af', 'id'],
      ['POST', '/admin/subscriptions/%c0/rotate-secret', 'id'],
      ['GET', '/admin/schemas/orders/%%/1', 'event'],
    ];
    for (const [method, target, field] of cases) {
      const outcome = await send({
        method,
        target,
        headers: AUTH,
        ...(method === 'GET' ? {} : { body: '{}' }),
      });
      const error = assertAnswered(outcome, 400, 'invalid_path');
      assert.deepEqual(
        error.details.map((d) => d.field),
        [field],
        target,
      );
    }
    // The credentials are checked first, as on every route.
    assertAnswered(await send({ method: 'GET', target: '/admin/partners/%ff' }), 401, 'unauthorized');
    await assertStillServing();
  });

  test('a request id is echoed only when short and plain; else a fresh one is used', async () => {
    const idOf = async (headers: [string, string][]) =>
      (await send({ method: 'GET', target: '/healthz', headers })).response!.headers['x-request-id'];
    assert.equal(await idOf([['x-request-id', 'req-42.a:b_C']]), 'req-42.a:b_C');
    assert.equal(await idOf([['x-correlation-id', 'corr-7']]), 'corr-7');
    for (const bad of ['a'.repeat(129), 'a'.repeat(10_000), 'two words', '<script>', 'a,b', 'ÿ']) {
      const echoed = await idOf([['x-request-id', bad]]);
      assert.notEqual(echoed, bad);
      assert.match(
        echoed ?? '',
        /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/,
        'a UUIDv7',
      );
    }
    assert.equal(
      await idOf([
        ['x-request-id', 'a b'],
        ['x-correlation-id', 'corr-8'],
      ]),
      'corr-8',
    );
  });

  test('a 1 MB header gets 431 with the JSON error body, 10 of 10 times, without a reset', async () => {
    for (let i = 0; i < 10; i++) {
      const outcome = await send({
        method: 'GET',
        target: '/admin/schemas',
        headers: [...AUTH, ['x-request-id', 'a'.repeat(1024 * 1024)]],
      });
      assertAnswered(outcome, 431, 'headers_too_large');
      assert.ok(outcome.sentAll);
    }
    await assertStillServing();
  });

  test('a 20 KB path with a 12 MB body gets 431, 10 of 10 times, without EPIPE or a reset (seen cut in a fuzz run)', async () => {
    for (let i = 0; i < 10; i++) {
      const outcome = await send({
        method: 'PATCH',
        target: `/admin/subscriptions/${'a'.repeat(20_000)}`,
        headers: AUTH,
        body: TWELVE_MB,
      });
      assertAnswered(outcome, 431, 'headers_too_large');
    }
    // The server answers and closes its side at once (the request cannot be read); what the client
    // still sends — all 12 MB, by a client that goes on writing after the answer — is read and
    // dropped, never reset under it (it was, after 8 MB: EPIPE when the answer had not been read yet).
    // Half-open: it keeps sending after the server's FIN, as a client busy uploading does.
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await once(socket, 'connect');
    const errors: string[] = [];
    socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
    });
    socket.write(
      `PATCH /admin/subscriptions/${'a'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\ncontent-length: ${TWELVE_MB.length}\r\n\r\n`,
    );
    for (let at = 0; at < TWELVE_MB.length && errors.length === 0; at += 256 * 1024) {
      if (!socket.write(TWELVE_MB.subarray(at, at + 256 * 1024)))
        await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
    }
    socket.end();
    if (!socket.closed) await once(socket, 'close');
    assert.deepEqual(errors, [], 'no EPIPE or reset while the body was sent');
    assert.match(answer, /^HTTP\/1\.1 431 /);
    await assertStillServing();
  });

  test('a megabyte of empty objects to an admin route → 413 body_too_complex, refused before it is parsed', async () => {
    const many = (n: number) =>
      JSON.stringify({ id: 'p-many', name: 'Many', metadata: { a: Array(n).fill({}) } });
    // 262,000 objects in 0.9 MB: the count, not the size, refuses it.
    const refused = await server.request('POST', '/admin/partners', undefined, { raw: many(262_000) });
    assert.equal(refused.status, 413);
    assert.equal(refused.body.error.code, 'body_too_complex');
    assert.equal(refused.body.error.details[0].field, 'body');
    // Nesting counts too: 100,000 levels are refused as such (50,000 get the depth limit's 400).
    const deep = `{"id": "p-deep", "name": "Deep", "metadata": {"a": ${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
    const nested = await server.request('POST', '/admin/partners', undefined, { raw: deep });
    assert.equal(nested.status, 413);
    assert.equal(nested.body.error.code, 'body_too_complex');
    // Within the count, the body is parsed and judged on its fields (metadata is at most 16 KiB).
    const parsed = await server.request('POST', '/admin/partners', undefined, { raw: many(40_000) });
    assert.equal(parsed.status, 400);
    assert.equal(parsed.body.error.details[0].field, 'metadata');
    // One object of 60,000 members (fewer values than the count allows) is refused unparsed too;
    // one of 10,000 is parsed and judged.
    const wide = (n: number) =>
      `{"id": "p-wide", "name": "Wide", "metadata": {${Array.from({ length: n }, (_, i) => `"key${i}":${i}`).join(',')}}}`;
    const tooWide = await server.request('POST', '/admin/partners', undefined, { raw: wide(60_000) });
    assert.equal(tooWide.status, 413);
    assert.equal(tooWide.body.error.code, 'body_too_complex');
    assert.match(tooWide.body.error.message, /more than 10000 members/);
    const wideEnough = await server.request('POST', '/admin/partners', undefined, { raw: wide(10_000) });
    assert.equal(wideEnough.status, 400);
    assert.equal(wideEnough.body.error.details[0].field, 'metadata');
    await assertStillServing();
  });

  test('malformed framing gets 400 with the JSON error body', async () => {
    const outcome = await send({
      method: 'POST',
      target: '/admin/partners',
      headers: [['content-length', 'abc']],
    });
    assertAnswered(outcome, 400, 'malformed_request');
    await assertStillServing();
  });

  test('CONNECT gets 405 with the JSON error body (was: the connection dropped)', async () => {
    assertAnswered(await send({ method: 'CONNECT', target: 'example.com:443' }), 405, 'method_not_allowed');
    await assertStillServing();
  });

  test('a body that is not UTF-8 → 400 invalid_utf8 (was: accepted with U+FFFD in its place)', async () => {
    const badName = Buffer.concat([
      Buffer.from('{"id":"not-utf8","name":"'),
      Buffer.from([0xff, 0xfe, 0xc3]),
      Buffer.from('"}'),
    ]);
    const error = assertAnswered(
      await send({ method: 'POST', target: '/admin/partners', headers: AUTH, body: badName }),
      400,
      'invalid_utf8',
    );
    assert.deepEqual(
      error.details.map((d) => d.field),
      ['body'],
    );
    assert.equal((await server.request('GET', '/admin/partners/not-utf8')).status, 404);
    const surrogate = Buffer.concat([
      Buffer.from('{"x":"'),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from('"}'),
    ]);
    assertAnswered(
      await send({
        method: 'POST',
        target: '/events',
        headers: [
          ['authorization', `Bearer ${ADMIN_TOKEN}`],
          ['content-type', 'application/cloudevents+json'],
        ],
        body: surrogate,
      }),
      400,
      'invalid_utf8',
    );
  });
});

describe('a failure outside the edge', () => {
  let server: Server;
  let port: number;
  const lines: string[] = [];
  let fail: () => Promise<never>;

  before(async () => {
    server = createNodeServer({
      handle: () => fail(),
      maxBodyBytes: 1024,
      logger: new Logger({ level: 'error', sink: { write: (line) => lines.push(line) } }),
    });
    port = await listen(server, 0, '127.0.0.1');
  });
  after(() => close(server));

  test('is logged and answered 500 (was: the connection destroyed, nothing logged)', async () => {
    fail = () => Promise.reject(new Error('boom outside the edge'));
    const outcome = await rawRequest(port, { method: 'GET', target: '/x' });
    assertAnswered(outcome, 500, 'internal_error');
    assert.ok(
      lines.some((line) => line.includes('boom outside the edge')),
      lines.join('\n'),
    );
  });

  test("the platform's own error is answered with its status and logged", async () => {
    lines.length = 0;
    fail = () => Promise.reject(new ValidationError('invalid_thing', 'a thing is invalid'));
    assertAnswered(await rawRequest(port, { method: 'GET', target: '/x' }), 400, 'invalid_thing');
    assert.ok(
      lines.some((line) => line.includes('a thing is invalid')),
      lines.join('\n'),
    );
  });
});

describe('the platform over HTTPS (WEBHOOKS_TLS_CERT and WEBHOOKS_TLS_KEY)', () => {
  let server: TestServer;
  let ca: string;
  before(async () => {
    const { key, cert } = await selfSignedCert();
    ca = cert;
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-tls-'));
    writeFileSync(join(dir, 'cert.pem'), cert);
    writeFileSync(join(dir, 'key.pem'), key);
    server = await startTestServer({
      WEBHOOKS_TLS_CERT: join(dir, 'cert.pem'),
      WEBHOOKS_TLS_KEY: join(dir, 'key.pem'),
    });
  });
  after(() => server.stop());

  /** One request over TLS with the client limited to `version`; the status, or the TLS error code. */
  const call = (version: 'TLSv1.2' | 'TLSv1.3', method = 'GET', path = '/healthz', body?: Buffer) =>
    new Promise<{ status?: number; code?: string }>((resolve) => {
      const req = httpsRequest(
        `${server.url}${path}`,
        {
          method,
          ca,
          minVersion: version,
          maxVersion: version,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode }));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ code: err.code }));
      req.end(body);
    });

  test('TLS 1.3 is served; a client limited to TLS 1.2 is refused at the handshake', async () => {
    assert.match(server.url, /^https:/);
    assert.deepEqual(await call('TLSv1.3'), { status: 200 });
    const old = await call('TLSv1.2');
    assert.equal(old.status, undefined);
    assert.match(old.code ?? '', /ERR_SSL|EPROTO|ECONNRESET/);
  });

  test('an oversized body gets its 413 over TLS too', async () => {
    assert.deepEqual(await call('TLSv1.3', 'POST', '/admin/schemas', Buffer.alloc(2 * 1024 * 1024, 0x20)), {
      status: 413,
    });
  });
});
