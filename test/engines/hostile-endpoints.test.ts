/**
 * Hostile partner endpoints against the real delivery client, on loopback: DNS rebinding through a
 * scripted DNS server, redirects, broken TLS, answers that trickle, never end, are gigantic or never
 * come, and what 200 of them leave behind. Every case ends in a result the dispatcher can record
 * (an error kind and a message, or a status), and the connection is closed, not left open.
 * `delivery-client.test.ts` has the well-behaved cases and the plain timeouts.
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Resolver } from 'node:dns/promises';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { validateDeliveryUrl } from '../../src/common/delivery-url.ts';
import type {
  DeliveryErrorKind,
  DeliveryRequest,
  DeliveryResult,
} from '../../src/common/ports/delivery-client.ts';
import { classifyAttempt } from '../../src/dispatcher/retry-math.ts';
import { createDnsResolver } from '../../src/engines/dns-resolver.ts';
import { MAX_INFORMATIONAL_RESPONSES, UndiciDeliveryClient } from '../../src/engines/http/delivery-client.ts';
import {
  type AddressLookup,
  atMostAtOnce,
  dnsThenSystem,
  guardedLookup,
  MAX_CONCURRENT_LOOKUPS,
  resolverLookup,
} from '../../src/engines/http/guarded-lookup.ts';
import { delivery, failure, success } from '../support/delivery.ts';
import { type HostileCertificates, hostileCertificates, PARTNER_HOST } from '../support/hostile-certs.ts';
import { HostileDns } from '../support/hostile-dns.ts';
import {
  type Behaviour,
  endlessBody,
  giganticBody,
  type HostileEndpoint,
  headerBomb,
  informationalFlood,
  notHttp,
  silence,
  startDeafEndpoint,
  startHttpsEndpoint,
  startMuteTcpEndpoint,
  startRawEndpoint,
  trickle,
  truncatedBody,
} from '../support/hostile-servers.ts';
import { waitFor } from '../support/wait.ts';

const PUBLIC_V4 = '93.184.215.14';
const MiB = 1024 * 1024;

let certs: HostileCertificates;
let dns: HostileDns;
const endpoints: HostileEndpoint[] = [];
const clients: UndiciDeliveryClient[] = [];

/** The client sockets undici connected and still open, with the port each went to. */
const clientSockets = new Map<Socket, number>();
/** Bytes read by the client sockets closed so far, per port. */
const closedBytesRead = new Map<number, number>();
const onConnected = (message: unknown): void => {
  const { connectParams, socket } = message as { connectParams: { port: string | number }; socket: Socket };
  const port = Number(connectParams.port);
  clientSockets.set(socket, port);
  socket.once('close', () => {
    clientSockets.delete(socket);
    closedBytesRead.set(port, (closedBytesRead.get(port) ?? 0) + socket.bytesRead);
  });
};

before(async () => {
  certs = await hostileCertificates();
  dns = await HostileDns.start();
  subscribe('undici:client:connected', onConnected);
});

after(async () => {
  unsubscribe('undici:client:connected', onConnected);
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(endpoints.map((e) => e.close()));
  await dns.close();
});

/** A client trusting the test CA, resolving through the test DNS server; dev mode unless told. */
function client(options: Partial<ConstructorParameters<typeof UndiciDeliveryClient>[0]> = {}) {
  const c = new UndiciDeliveryClient({ allowInsecure: true, ca: certs.ca, lookup: dns.lookup, ...options });
  clients.push(c);
  return c;
}

/** Starts an endpoint that is closed after the file's tests. */
async function started(endpoint: Promise<HostileEndpoint>): Promise<HostileEndpoint> {
  const e = await endpoint;
  endpoints.push(e);
  return e;
}

const raw = (behaviour: Behaviour): Promise<HostileEndpoint> =>
  started(startRawEndpoint(certs.valid, behaviour));

/** Waits until the endpoint has seen every connection to it closed. */
async function closedBy(endpoint: HostileEndpoint, what: string): Promise<void> {
  await waitFor(`${what}: the endpoint to see its connection closed`, () => endpoint.open === 0);
}

/** Bytes the client's sockets to this endpoint read off the wire (TLS records included). */
function bytesReadFrom(endpoint: HostileEndpoint): number {
  let bytes = closedBytesRead.get(endpoint.port) ?? 0;
  for (const [socket, port] of clientSockets) if (port === endpoint.port) bytes += socket.bytesRead;
  return bytes;
}

describe('DNS rebinding', () => {
  test('a name public when the subscription is saved and loopback at delivery is refused, and nothing connects', async () => {
    const endpoint = await started(startHttpsEndpoint(certs.valid, (_q, r) => r.writeHead(204).end()));
    const url = `https://${PARTNER_HOST}:${endpoint.port}/hook`;
    dns.answer(PARTNER_HOST, [PUBLIC_V4], ['127.0.0.1']);

    // Saved: the check of Subscription Admin sees the public address.
    const saved = await validateDeliveryUrl(url, {
      allowInsecure: false,
      resolve: createDnsResolver(5000, dns.lookupAll),
    });
    const result = failure(await client({ allowInsecure: false }).send(delivery(saved)));

    assert.equal(result.kind, 'forbidden_address');
    assert.match(result.message, /host `partner\.hostile\.test` resolves to 127\.0\.0\.1 \(loopback\)/);
    assert.equal(dns.lookups(PARTNER_HOST), 2, 'one lookup when saved, one at delivery');
    assert.equal(endpoint.accepted, 0);
  });

  test('a name answering a public and a loopback address at once is refused as a whole', async () => {
    const endpoint = await started(startHttpsEndpoint(certs.valid, (_q, r) => r.writeHead(204).end()));
    dns.answer(PARTNER_HOST, [PUBLIC_V4, '127.0.0.1']);

    const result = failure(
      await client({ allowInsecure: false }).send(delivery(`https://${PARTNER_HOST}:${endpoint.port}/hook`)),
    );

    assert.equal(result.kind, 'forbidden_address');
    assert.match(result.message, /127\.0\.0\.1 \(loopback\)/);
    assert.equal(endpoint.accepted, 0);
  });

  test('loopback and metadata addresses in disguise are refused before connecting', async () => {
    const endpoint = await started(startHttpsEndpoint(certs.valid, (_q, r) => r.writeHead(204).end()));
    const disguises: Array<[address: string, reason: RegExp]> = [
      ['0.0.0.0', /unspecified/], // Linux connects it to the host itself
      ['::ffff:127.0.0.1', /loopback/], // IPv4-mapped
      ['64:ff9b::7f00:1', /loopback/], // NAT64 of 127.0.0.1
      ['::1', /loopback/],
      ['169.254.169.254', /cloud metadata/],
      ['fd00:ec2::254', /cloud metadata/],
      ['10.0.0.7', /private/],
    ];
    const guarded = client({ allowInsecure: false });

    for (const [address, reason] of disguises) {
      dns.answer(PARTNER_HOST, [address]);
      const result = failure(await guarded.send(delivery(`https://${PARTNER_HOST}:${endpoint.port}/hook`)));

      assert.equal(result.kind, 'forbidden_address', address);
      assert.match(result.message, reason, address);
    }
    assert.equal(endpoint.accepted, 0);
  });

  test('a connection goes to the address its one lookup answered, and stays there', async () => {
    // Dev mode lets the guard pass loopback, so the request can land: the name is unknown to the
    // system resolver, and the test server answers it once, then has no address for it.
    const endpoint = await started(startHttpsEndpoint(certs.valid, (_q, r) => r.writeHead(204).end()));
    dns.answer(PARTNER_HOST, ['127.0.0.1'], []);
    const c = client();
    const url = `https://${PARTNER_HOST}:${endpoint.port}/hook`;

    assert.equal(success(await c.send(delivery(url))).status, 204);
    assert.equal(success(await c.send(delivery(url))).status, 204);

    assert.equal(dns.lookups(PARTNER_HOST), 1, 'no second lookup to connect with');
    assert.equal(endpoint.accepted, 1, 'the second request reused the checked connection');
    assert.deepEqual(endpoint.requests, ['POST /hook', 'POST /hook']);
  });

  test('a name server that never answers: a burst of attempts ends at the connect timeout, sharing one lookup', async () => {
    // getaddrinfo holds a libuv thread per lookup: one lookup per connection would take them all.
    dns.silence('silent.hostile.test');
    const timeouts = { connectMs: 300, headersMs: 5000, bodyMs: 5000 };
    const c = client({ allowInsecure: false });

    const results = await Promise.all(
      Array.from({ length: 16 }, () => c.send(delivery('https://silent.hostile.test/hook', { timeouts }))),
    );

    for (const result of results) {
      assert.equal(failure(result).kind, 'timeout');
      assert.match(failure(result).message, /timed out after 300 ms/);
    }
    assert.equal(dns.lookups('silent.hostile.test'), 1);
  });

  test('partners whose name servers never answer do not hold up the lookups of another partner', async () => {
    const names = ['slow-a', 'slow-b', 'slow-c', 'slow-d', 'slow-e'].map((n) => `${n}.hostile.test`);
    for (const name of names) dns.silence(name);
    dns.answer('healthy.hostile.test', [PUBLIC_V4]);
    const lookup = guardedLookup(false, dns.lookup);
    let answered = 0;
    for (const name of names) lookup(name, { all: true }, () => answered++);
    const answer = await new Promise<unknown>((resolve) =>
      lookup('healthy.hostile.test', { all: true }, (err, addresses) => resolve(err ?? addresses)),
    );
    assert.deepEqual(answer, [{ address: PUBLIC_V4, family: 4 }]);
    assert.equal(answered, 0, 'the five still wait for their name servers');
    // All five were asked at once: none queued behind the others.
    await waitFor('the five queries', () => names.every((name) => dns.lookups(name) === 1));
  });

  test('a name server that never answers is not asked again through the system resolver (its lookups hold a thread of the pool)', async () => {
    dns.silence('dead-ns.hostile.test');
    dns.answer('in-dns.hostile.test', [PUBLIC_V4]);
    const quick = new Resolver({ timeout: 100, tries: 1 });
    quick.setServers([dns.server]);
    const asked: string[] = [];
    const system: AddressLookup = (hostname, _options, callback) => {
      asked.push(hostname);
      callback(null, [{ address: '127.0.0.1', family: 4 }]);
    };
    const lookup = dnsThenSystem(resolverLookup(quick), system);
    const resolve = (name: string) =>
      new Promise<{ code?: string; addresses: unknown }>((done) =>
        lookup(name, { all: true }, (err, addresses) => done({ code: err?.code, addresses })),
      );

    assert.equal((await resolve('dead-ns.hostile.test')).code, 'ETIMEOUT');
    assert.deepEqual((await resolve('in-dns.hostile.test')).addresses, [{ address: PUBLIC_V4, family: 4 }]);
    // Not in DNS (NXDOMAIN), as a name of /etc/hosts: the system resolver answers it; localhost too.
    assert.deepEqual((await resolve('hosts-file.hostile.test')).addresses, [
      { address: '127.0.0.1', family: 4 },
    ]);
    assert.deepEqual((await resolve('localhost')).addresses, [{ address: '127.0.0.1', family: 4 }]);
    assert.deepEqual(asked, ['hosts-file.hostile.test', 'localhost']);
  });

  test('system lookups (getaddrinfo) hold at most MAX_CONCURRENT_LOOKUPS threads of the pool at once', async () => {
    const started: string[] = [];
    const never: AddressLookup = (hostname) => void started.push(hostname);
    const lookup = guardedLookup(true, atMostAtOnce(never, MAX_CONCURRENT_LOOKUPS));
    for (const name of ['a', 'b', 'c', 'd', 'e']) lookup(`${name}.hostile.test`, { all: true }, () => {});
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started.length, MAX_CONCURRENT_LOOKUPS);
  });

  test('a lookup that answers no address at all is "not found", never an empty success', async () => {
    const empty = client({ allowInsecure: false, lookup: (_host, _options, callback) => callback(null, []) });

    const result = failure(await empty.send(delivery('https://empty.hostile.test/hook')));

    assert.equal(result.kind, 'dns');
    assert.match(result.message, /empty\.hostile\.test.*does not resolve \(ENOTFOUND\)/);
  });
});

describe('redirects', () => {
  test('no 3xx is followed, not even to the same host; each is an attempt that failed with its status', async () => {
    let status = 0;
    const endpoint = await started(
      startHttpsEndpoint(certs.valid, (_req, res) => res.writeHead(status, { location: '/internal' }).end()),
    );
    const c = client();

    for (status of [301, 302, 303, 307, 308]) {
      const result = success(await c.send(delivery(endpoint.url('/hook'))));

      assert.equal(result.status, status);
      assert.equal(result.headers.location, '/internal');
      assert.equal(classifyAttempt(result), 'failed', `${status} is recorded as a failed attempt`);
    }
    assert.deepEqual(endpoint.requests, Array(5).fill('POST /hook'));
  });
});

describe('TLS', () => {
  const cases: Array<[what: string, cert: Exclude<keyof HostileCertificates, 'ca'>, message: RegExp]> = [
    [
      'a certificate for another host name',
      'wrongHost',
      /does not match the host name \(ERR_TLS_CERT_ALTNAME_INVALID\)/,
    ],
    ['an expired certificate', 'expired', /the certificate has expired \(CERT_HAS_EXPIRED\)/],
    [
      'a self-signed certificate',
      'selfSigned',
      /self-signed and not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
    ],
    [
      'a certificate from an untrusted authority',
      'untrustedIssuer',
      /not signed by a trusted authority \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/,
    ],
  ];
  for (const [what, cert, message] of cases) {
    test(`${what} is refused with kind tls before any request is sent`, async () => {
      const endpoint = await started(startHttpsEndpoint(certs[cert], (_q, r) => r.writeHead(204).end()));

      const result = failure(await client().send(delivery(endpoint.url())));

      assert.equal(result.kind, 'tls');
      assert.match(result.message, message);
      assert.deepEqual(endpoint.requests, []);
      await closedBy(endpoint, what);
    });
  }

  test('an endpoint that speaks at most TLS 1.1 is refused with kind tls, naming TLS 1.3', async () => {
    const endpoint = await started(
      startHttpsEndpoint(
        { ...certs.valid, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' },
        (_q, r) => r.writeHead(204).end(),
      ),
    );

    const result = failure(await client().send(delivery(endpoint.url())));

    assert.equal(result.kind, 'tls');
    assert.match(result.message, /does not support TLS 1\.3/);
    assert.deepEqual(endpoint.requests, []);
  });
});

describe('answers that never finish', () => {
  const cases: Array<{
    what: string;
    behaviour: () => Behaviour;
    request: Partial<DeliveryRequest>;
    kind: DeliveryErrorKind;
    message: RegExp;
  }> = [
    {
      what: 'a body trickling one byte a second (never stalling long enough for the body timeout)',
      behaviour: () => trickle(1000),
      request: { timeouts: { connectMs: 2000, headersMs: 2000, bodyMs: 5000 }, deadlineMs: 2500 },
      kind: 'timeout',
      message: /did not complete within its deadline of 2500 ms/,
    },
    {
      what: 'a request read and never answered, with headers allowed longer than the deadline',
      behaviour: silence,
      request: { timeouts: { connectMs: 2000, headersMs: 60_000, bodyMs: 60_000 }, deadlineMs: 500 },
      kind: 'timeout',
      message: /did not complete within its deadline of 500 ms/,
    },
    {
      what: '102 Processing sent without end (each restarts the headers timeout)',
      behaviour: () => informationalFlood(20),
      request: { timeouts: { connectMs: 2000, headersMs: 60_000, bodyMs: 60_000 } },
      kind: 'network',
      message: new RegExp(`more than ${MAX_INFORMATIONAL_RESPONSES} informational \\(1xx\\) responses`),
    },
    {
      what: 'a 1 MiB response header',
      behaviour: () => headerBomb(MiB),
      request: {},
      kind: 'network',
      message: /the response headers are larger than 16 KiB \(UND_ERR_HEADERS_OVERFLOW\)/,
    },
    {
      what: 'an answer that is not HTTP',
      behaviour: notHttp,
      request: {},
      kind: 'network',
      message: /the endpoint sent an invalid HTTP response/,
    },
    {
      what: 'a body cut short of its content-length',
      behaviour: truncatedBody,
      request: {},
      kind: 'connect',
      message: /closed the connection before a complete response/,
    },
  ];
  for (const { what, behaviour, request, kind, message } of cases) {
    test(`${what}: kind ${kind}, connection closed`, async () => {
      const endpoint = await raw(behaviour());

      const result = failure(await client().send(delivery(endpoint.url(), request)));

      assert.equal(result.kind, kind);
      assert.match(result.message, message);
      await closedBy(endpoint, what);
    });
  }

  test('a TLS handshake that never completes: kind timeout at the connect timeout, connection closed', async () => {
    const endpoint = await started(startMuteTcpEndpoint());
    const timeouts = { connectMs: 300, headersMs: 60_000, bodyMs: 60_000 };

    const result = failure(await client().send(delivery(endpoint.url(), { timeouts })));

    assert.equal(result.kind, 'timeout');
    assert.match(result.message, /timed out after 300 ms/);
    await closedBy(endpoint, 'the mute TCP endpoint');
  });

  test('a request never read (the body cannot be sent): kind timeout at the headers timeout, socket closed', async () => {
    const endpoint = await started(startDeafEndpoint(certs.valid));
    const timeouts = { connectMs: 2000, headersMs: 500, bodyMs: 60_000 };
    const body = 'x'.repeat(16 * MiB); // more than the socket buffers on both sides hold

    const result = failure(await client().send(delivery(endpoint.url(), { body, timeouts })));

    assert.equal(result.kind, 'timeout');
    assert.match(result.message, /no response headers within 500 ms/);
    // The endpoint reads nothing, so it cannot notice; the client's side is what must be gone.
    await waitFor(
      'the client socket to close',
      () => closedBytesRead.has(endpoint.port) && ![...clientSockets.values()].includes(endpoint.port),
    );
  });
});

describe('bodies without bounds', () => {
  const cases: Array<[what: string, behaviour: () => Behaviour, byte: string]> = [
    ['a chunked body that never ends', endlessBody, 'x'],
    ['a body of 1 GiB', () => giganticBody(1024 * MiB), 'g'],
  ];
  for (const [what, behaviour, byte] of cases) {
    test(`${what}: the status and the first maxResponseBytes are kept, the rest is not read`, async () => {
      const endpoint = await raw(behaviour());

      const result = success(await client().send(delivery(endpoint.url(), { maxResponseBytes: 1000 })));

      assert.equal(result.status, 200);
      assert.equal(result.body, byte.repeat(1000));
      await closedBy(endpoint, what);
      // The cap, up to 64 KiB drained for reuse, and what one read had in flight when the connection was cut.
      assert.ok(bytesReadFrom(endpoint) < 256 * 1024, `the client read ${bytesReadFrom(endpoint)} bytes`);
    });
  }

  test('a compressed body is kept as sent, never inflated', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * MiB, 'z'));
    const endpoint = await raw((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${bomb.length}\r\n\r\n`);
      socket.write(bomb);
    });

    const result = success(await client().send(delivery(endpoint.url(), { maxResponseBytes: 4096 })));

    assert.equal(result.body, new TextDecoder().decode(bomb.subarray(0, 4096), { stream: true }));
    assert.ok(!result.body.includes('zzzzzzzz'));
  });
});

describe('after many hostile attempts', () => {
  /** One attempt at a hostile endpoint and what its result must be labelled. */
  interface Target {
    endpoint: HostileEndpoint;
    request: Partial<DeliveryRequest>;
    label: string;
  }

  const label = (r: DeliveryResult): string => (r.ok ? `status ${r.status}` : r.kind);
  const quick = { connectMs: 300, headersMs: 60_000, bodyMs: 60_000 };

  async function targets(): Promise<Target[]> {
    const https = (cert: HostileCertificates['valid'], status = 204) =>
      started(startHttpsEndpoint(cert, (_q, r) => r.writeHead(status, { location: '/internal' }).end()));
    const rows: Array<[Promise<HostileEndpoint>, Partial<DeliveryRequest>, string]> = [
      [https(certs.valid, 307), {}, 'status 307'],
      [https(certs.wrongHost), {}, 'tls'],
      [https(certs.expired), {}, 'tls'],
      [https(certs.selfSigned), {}, 'tls'],
      [raw(trickle(20)), { deadlineMs: 300 }, 'timeout'],
      [raw(silence()), { timeouts: quick, deadlineMs: 300 }, 'timeout'],
      [raw(endlessBody()), {}, 'status 200'],
      [raw(giganticBody(1024 * MiB)), {}, 'status 200'],
      [raw(informationalFlood(5)), { timeouts: quick }, 'network'],
      [raw(headerBomb(MiB)), {}, 'network'],
      [raw(notHttp()), {}, 'network'],
      [started(startMuteTcpEndpoint()), { timeouts: quick, deadlineMs: 300 }, 'timeout'],
    ];
    return Promise.all(
      rows.map(async ([endpoint, request, l]) => ({ endpoint: await endpoint, request, label: l })),
    );
  }

  /** One attempt at every target at once (never two at one endpoint); the labels, in target order. */
  async function round(c: UndiciDeliveryClient, all: Target[]): Promise<string[]> {
    const results = await Promise.all(all.map((t) => c.send(delivery(t.endpoint.url(), t.request))));
    return results.map(label);
  }

  test('200 attempts: every one a classified result, no connection left open, the heap back where it was', async () => {
    const all = await targets();
    const c = client();
    const rebinding = client({ allowInsecure: false });
    dns.answer(PARTNER_HOST, ['127.0.0.1']);
    const rebind = (): Promise<DeliveryResult> => rebinding.send(delivery(`https://${PARTNER_HOST}:1/hook`));
    const expected = all.map((t) => t.label);
    await round(c, all); // warm-up: code compiled, pools and TLS contexts built
    await round(c, all);
    const baseline = heapAfterGc();

    let attempts = 0;
    while (attempts < 200) {
      const [labels, refused] = await Promise.all([round(c, all), rebind()]);
      assert.deepEqual(labels, expected);
      assert.equal(label(refused), 'forbidden_address');
      attempts += all.length + 1;
    }
    // Only the 307 endpoint answered in full: its one keep-alive connection may stay pooled.
    const open = () => all.reduce((sum, t) => sum + t.endpoint.open, 0);
    await waitFor('every cut-off connection to close', () => open() <= 1);
    const ports = new Set(all.map((t) => t.endpoint.port));
    const openClientSockets = [...clientSockets.values()].filter((port) => ports.has(port)).length;
    const grown = heapAfterGc() - baseline;

    assert.ok(openClientSockets <= 1, `${openClientSockets} client sockets open`);
    assert.ok(
      grown < 4 * MiB,
      `heap and buffers grew by ${(grown / MiB).toFixed(1)} MiB over ${attempts} attempts`,
    );
    await c.close();
    await waitFor('no connection open once the client is closed', () => open() === 0);
  });
});

/** Heap and buffer memory in use after full garbage collections. */
function heapAfterGc(): number {
  const gc = collectGarbage();
  gc();
  gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

/** `global.gc` when the process runs with --expose-gc; otherwise exposed on demand (as Jest's leak detector does). */
function collectGarbage(): () => void {
  if (typeof globalThis.gc === 'function') return globalThis.gc as () => void;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
