/**
 * The outbound request of a delivery, where a mutation review found checks no other test held:
 * IPv6 literals and answer order at the SSRF guard, ranges at their far ends, the whole-attempt
 * deadline while a name is still resolving, the default trust store kept beside a partner CA,
 * custom auth header names, and WEBHOOKS_DEV reaching the platform's delivery client. Real
 * loopback HTTPS endpoints and a scripted DNS server, as in `hostile-endpoints.test.ts`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { loadConfig } from '../../src/common/config.ts';
import { Logger } from '../../src/common/log.ts';
import { forbiddenAddressReason } from '../../src/common/net-policy.ts';
import type { DeliveryClient } from '../../src/common/ports/delivery-client.ts';
import { UndiciDeliveryClient } from '../../src/engines/http/delivery-client.ts';
import type { AddressLookup } from '../../src/engines/http/guarded-lookup.ts';
import { buildPlatform } from '../../src/runtimes/platform.ts';
import { reservedHeaderProblem } from '../../src/subscriptions/input.ts';
import { delivery, failure, success } from '../support/delivery.ts';
import { type HostileCertificates, hostileCertificates, PARTNER_HOST } from '../support/hostile-certs.ts';
import { HostileDns } from '../support/hostile-dns.ts';
import { type HostileEndpoint, startHttpsEndpoint } from '../support/hostile-servers.ts';
import { generateCert } from '../support/tls.ts';

const PUBLIC_V4 = '93.184.215.14';

let certs: HostileCertificates;
let dns: HostileDns;
let endpoint: HostileEndpoint;
const clients: UndiciDeliveryClient[] = [];

before(async () => {
  certs = await hostileCertificates();
  dns = await HostileDns.start();
  endpoint = await startHttpsEndpoint(certs.valid, (_q, r) => r.writeHead(204).end());
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await endpoint.close();
  await dns.close();
});

/** A client trusting the test CA, resolving through the test DNS server, outside dev mode unless told. */
function client(options: Partial<ConstructorParameters<typeof UndiciDeliveryClient>[0]> = {}) {
  const c = new UndiciDeliveryClient({ allowInsecure: false, ca: certs.ca, lookup: dns.lookup, ...options });
  clients.push(c);
  return c;
}

describe('net policy at the ends of its ranges', () => {
  const cases: Array<[ip: string, reason: string]> = [
    ['169.254.1.1', 'link-local'],
    ['169.254.255.255', 'link-local'],
    ['::ffff:169.254.1.1', 'link-local'],
    ['feff::1', 'site-local (deprecated)'],
    ['fe80::%eth0', 'link-local'], // a zone id right after `::`
    ['192.0.2.255', 'documentation'],
    ['198.51.100.255', 'documentation'],
    ['203.0.113.255', 'documentation'],
    ['192.88.99.255', '6to4 relay anycast'],
  ];
  for (const [ip, reason] of cases) {
    it(`refuses ${ip} as ${reason}`, () => {
      assert.equal(forbiddenAddressReason(ip), reason);
    });
  }
});

describe('the SSRF guard on the address connected to', () => {
  it('refuses IPv6 literals that are loopback or metadata (Node looks nothing up for them), and nothing connects', async () => {
    const literals: Array<[host: string, reason: RegExp]> = [
      ['[::1]', /loopback/],
      ['[::ffff:127.0.0.1]', /loopback/], // IPv4-mapped; the URL parser writes it [::ffff:7f00:1]
      ['[::ffff:169.254.169.254]', /cloud metadata/],
      ['[fe80::1]', /link-local/],
    ];
    const guarded = client();
    const accepted = endpoint.accepted;

    for (const [host, reason] of literals) {
      const result = failure(await guarded.send(delivery(`https://${host}:${endpoint.port}/hook`)));

      assert.equal(result.kind, 'forbidden_address', host);
      assert.match(result.message, reason, host);
    }
    assert.equal(endpoint.accepted, accepted);
  });

  it('a name answering loopback before a public address is refused (the connection would try loopback first)', async () => {
    const guarded = client();
    const accepted = endpoint.accepted;
    for (const answer of [
      ['127.0.0.1', PUBLIC_V4],
      [PUBLIC_V4, '10.0.0.1', '8.8.8.8'],
    ]) {
      dns.answer(PARTNER_HOST, answer);

      const result = failure(await guarded.send(delivery(`https://${PARTNER_HOST}:${endpoint.port}/hook`)));

      assert.equal(result.kind, 'forbidden_address', answer.join(' '));
      assert.match(result.message, /(127\.0\.0\.1 \(loopback\)|10\.0\.0\.1 \(private\))/);
    }
    assert.equal(endpoint.accepted, accepted);
  });

  it('link-local, CGNAT and multicast answers are refused at connect time', async () => {
    const guarded = client();
    const answers: Array<[address: string, reason: RegExp]> = [
      ['169.254.1.1', /link-local/],
      ['100.64.0.1', /CGNAT/],
      ['224.0.0.251', /multicast/],
      ['fe80::1', /link-local/],
      ['ff02::1', /multicast/],
      ['::ffff:100.100.100.200', /cloud metadata/],
    ];
    for (const [address, reason] of answers) {
      dns.answer(PARTNER_HOST, [address]);

      const result = failure(await guarded.send(delivery(`https://${PARTNER_HOST}:${endpoint.port}/hook`)));

      assert.equal(result.kind, 'forbidden_address', address);
      assert.match(result.message, reason, address);
    }
  });
});

describe('the whole-attempt deadline', () => {
  it('ends the attempt while the name is still resolving, and the request is never sent once it connects', async () => {
    const local = await startHttpsEndpoint(certs.valid, (_q, r) => r.writeHead(204).end());
    let release: (() => void) | undefined;
    // The first lookup is held (a slow name server); later ones answer at once.
    const lookup: AddressLookup = (_hostname, _options, callback) => {
      const answer = () => callback(null, [{ address: '127.0.0.1', family: 4 }]);
      if (release === undefined) release = answer;
      else answer();
    };
    const c = client({ allowInsecure: true, lookup });
    const url = (path: string) => `https://${PARTNER_HOST}:${local.port}${path}`;
    const slow = { connectMs: 5000, headersMs: 5000, bodyMs: 5000 };

    try {
      const expired = failure(await c.send(delivery(url('/first'), { timeouts: slow, deadlineMs: 300 })));

      assert.equal(expired.kind, 'timeout');
      assert.match(expired.message, /did not complete within its deadline of 300 ms/);
      assert.ok(release !== undefined, 'the lookup was asked');
      release();
      // The next request to the origin goes after the expired one on the same connection.
      assert.equal(success(await c.send(delivery(url('/second')))).status, 204);
      assert.deepEqual(local.requests, ['POST /second'], 'the expired request was never sent');
    } finally {
      await c.close();
      await local.close();
    }
  });
});

describe('TLS trust', () => {
  it('a partner CA is added to the default trust store, not put in its place', async () => {
    // The endpoint's issuer stands in for a public root (the default store); the client is also
    // given a CA of its own, which must not make it forget the default ones.
    const defaults = getCACertificates('default');
    setDefaultCACertificates([...defaults, certs.ca]);
    try {
      const partnerCa = await generateCert('partner private CA');
      const c = client({ allowInsecure: true, ca: partnerCa.cert, lookup: undefined });

      const result = success(await c.send(delivery(`https://localhost:${endpoint.port}/trusted`)));

      assert.equal(result.status, 204);
    } finally {
      setDefaultCACertificates(defaults);
    }
  });
});

describe('custom auth header names', () => {
  for (const name of ['Content-Encoding', 'HTTP2-Settings', 'Tracestate', 'proxy-anything']) {
    it(`refuses ${name} as a custom auth header`, () => {
      assert.notEqual(reservedHeaderProblem(name), undefined);
    });
  }
});

describe('WEBHOOKS_DEV reaches the platform delivery client', () => {
  for (const dev of ['0', '1']) {
    it(`WEBHOOKS_DEV=${dev}: a loopback target is ${dev === '1' ? 'contacted' : 'refused before any packet'}`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'webhooks-net-'));
      let delivering: DeliveryClient | undefined;
      const platform = await buildPlatform(
        loadConfig({
          WEBHOOKS_DATA_DIR: dir,
          WEBHOOKS_LOG_LEVEL: 'error',
          WEBHOOKS_ADMIN_TOKEN: 'test-admin-token-0123456789',
          WEBHOOKS_DEV: dev,
        }),
        {
          roles: ['dispatcher'],
          consume: false,
          logger: new Logger({ level: 'error', sink: { write: () => {} } }),
          wrapDeliveryClient: (inner) => {
            delivering = inner;
            return inner;
          },
        },
      );
      try {
        assert.ok(delivering, 'the platform built a delivery client');
        const result = await delivering.send(delivery(`https://127.0.0.1:${endpoint.port}/platform`));

        if (dev === '1') {
          // Contacted: the platform's client does not trust the test CA, so the handshake fails.
          assert.equal(failure(result).kind, 'tls');
        } else {
          assert.equal(failure(result).kind, 'forbidden_address');
          assert.match(failure(result).message, /127\.0\.0\.1.*loopback/);
        }
      } finally {
        await platform.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
