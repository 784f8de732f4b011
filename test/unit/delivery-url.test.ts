import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  assertDeliveryAddress,
  type HostResolver,
  validateDeliveryUrl,
} from '../../src/common/delivery-url.ts';
import {
  TransientError,
  UnprocessableError,
  ValidationError,
  type WebhooksError,
} from '../../src/common/errors.ts';
import { createDnsResolver } from '../../src/engines/dns-resolver.ts';

/** A resolver answering from a table, recording what it was asked. */
function fakeResolver(answers: Record<string, string[]>): HostResolver & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (hostname: string): Promise<string[]> => {
    asked.push(hostname);
    const found = answers[hostname];
    if (found === undefined)
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return found;
  };
  return Object.assign(resolve, { asked });
}

const publicDns = fakeResolver({
  'partner.example.com': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
});
const strict = { allowInsecure: false, resolve: publicDns };
const dev = { allowInsecure: true, resolve: publicDns };

/** Asserts `promise` rejects with a platform error of `type`, `code` and a detail naming `field`. */
async function rejectsWith(
  promise: Promise<unknown>,
  type: typeof ValidationError | typeof UnprocessableError,
  code: string,
  field = 'url',
): Promise<WebhooksError> {
  let caught: unknown;
  await assert.rejects(promise, (err) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof type, `expected ${type.name}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.details.length, 1);
  assert.equal(caught.details[0]?.field, field);
  return caught;
}

describe('validateDeliveryUrl: shape', () => {
  it('returns the normalised URL of a public https endpoint', async () => {
    const url = await validateDeliveryUrl('HTTPS://Partner.Example.com:443/hooks?x=1', strict);
    assert.equal(url, 'https://partner.example.com/hooks?x=1');
  });

  it('strips the fragment', async () => {
    assert.equal(
      await validateDeliveryUrl('https://partner.example.com/h#frag', strict),
      'https://partner.example.com/h',
    );
  });

  it('keeps a non-default port', async () => {
    assert.equal(
      await validateDeliveryUrl('https://partner.example.com:8443/h', strict),
      'https://partner.example.com:8443/h',
    );
  });

  for (const raw of [undefined, null, 42, { href: 'https://partner.example.com/' }]) {
    it(`refuses the non-string ${JSON.stringify(raw)}`, async () => {
      await rejectsWith(validateDeliveryUrl(raw, strict), ValidationError, 'url_invalid');
    });
  }

  it('refuses a URL longer than 2048 characters', async () => {
    const raw = `https://partner.example.com/${'a'.repeat(2048)}`;
    await rejectsWith(validateDeliveryUrl(raw, strict), ValidationError, 'url_invalid');
  });

  for (const raw of ['', 'partner.example.com/hooks', '/relative', 'https://', 'https://exa mple.com/']) {
    it(`refuses ${JSON.stringify(raw)}, which is not an absolute URL`, async () => {
      await rejectsWith(validateDeliveryUrl(raw, strict), ValidationError, 'url_invalid');
    });
  }

  it('refuses credentials in the URL', async () => {
    await rejectsWith(
      validateDeliveryUrl('https://user:pass@partner.example.com/', strict),
      ValidationError,
      'url_invalid',
    );
  });

  it('refuses a user name alone in the URL', async () => {
    await rejectsWith(
      validateDeliveryUrl('https://user@partner.example.com/', strict),
      ValidationError,
      'url_invalid',
    );
  });

  it('refuses port 0', async () => {
    await rejectsWith(
      validateDeliveryUrl('https://partner.example.com:0/', strict),
      ValidationError,
      'url_invalid',
    );
  });

  it('refuses http by default', async () => {
    await rejectsWith(
      validateDeliveryUrl('http://partner.example.com/', strict),
      ValidationError,
      'url_not_https',
    );
  });

  it('allows http with allowInsecure', async () => {
    assert.equal(
      await validateDeliveryUrl('http://partner.example.com/', dev),
      'http://partner.example.com/',
    );
  });

  for (const raw of [
    'ftp://partner.example.com/',
    'file:///etc/passwd',
    'ws://partner.example.com/',
    'javascript:alert(1)',
  ]) {
    it(`refuses the scheme of ${raw} even with allowInsecure`, async () => {
      await rejectsWith(validateDeliveryUrl(raw, dev), ValidationError, 'url_not_https');
    });
  }

  it('names the configured field in the error details', async () => {
    const err = await rejectsWith(
      validateDeliveryUrl('http://partner.example.com/', { ...strict, field: 'endpoint.url' }),
      ValidationError,
      'url_not_https',
      'endpoint.url',
    );
    assert.match(err.message, /endpoint\.url/);
  });
});

describe('validateDeliveryUrl: addresses', () => {
  const dns = fakeResolver({
    'public.example': ['1.1.1.1', '2606:4700:4700::1111'],
    'private.example': ['10.0.0.5'],
    'mixed.example': ['1.1.1.1', '169.254.169.254'],
    'nothing.example': [],
  });
  const options = { allowInsecure: false, resolve: dns };

  it('accepts a host whose addresses are all public', async () => {
    assert.equal(await validateDeliveryUrl('https://public.example/h', options), 'https://public.example/h');
  });

  it('refuses a host resolving to a private address, naming host, address and reason', async () => {
    const err = await rejectsWith(
      validateDeliveryUrl('https://private.example/', options),
      UnprocessableError,
      'url_forbidden_address',
    );
    assert.equal(
      err.message,
      'host `private.example` resolves to 10.0.0.5 (private), which is not an allowed delivery target',
    );
  });

  it('refuses a host when any one of its addresses is forbidden', async () => {
    const err = await rejectsWith(
      validateDeliveryUrl('https://mixed.example/', options),
      UnprocessableError,
      'url_forbidden_address',
    );
    assert.match(err.message, /169\.254\.169\.254 \(cloud metadata\)/);
  });

  it('reports a host that does not resolve as url_unresolvable', async () => {
    await rejectsWith(
      validateDeliveryUrl('https://unknown.example/', options),
      UnprocessableError,
      'url_unresolvable',
    );
  });

  it('a name server that timed out or failed for now is a transient error (503), not url_unresolvable', async () => {
    const failing = async (): Promise<string[]> => {
      throw new TransientError('dns_timeout', 'the name server did not answer within 5000 ms');
    };
    await assert.rejects(
      validateDeliveryUrl('https://hooks.partner.example/', { allowInsecure: false, resolve: failing }),
      (err: unknown) => err instanceof TransientError && err.code === 'dns_timeout',
    );
  });

  it('reports a host with no addresses as url_unresolvable', async () => {
    await rejectsWith(
      validateDeliveryUrl('https://nothing.example/', options),
      UnprocessableError,
      'url_unresolvable',
    );
  });

  const literals: ReadonlyArray<[raw: string, reason: string]> = [
    ['https://127.0.0.1/', 'loopback'],
    ['https://10.1.2.3:8443/', 'private'],
    ['https://169.254.169.254/latest/meta-data/', 'cloud metadata'],
    ['https://[::1]/', 'loopback'],
    ['https://[::ffff:127.0.0.1]/', 'loopback'],
    ['https://[fd00:ec2::254]/', 'cloud metadata'],
    ['https://2130706433/', 'loopback'],
    ['https://0x7f.1/', 'loopback'],
    ['https://0177.0.0.1/', 'loopback'],
  ];
  for (const [raw, reason] of literals) {
    it(`refuses the IP literal in ${raw} as ${reason} without resolving`, async () => {
      const before = dns.asked.length;
      const err = await rejectsWith(
        validateDeliveryUrl(raw, options),
        UnprocessableError,
        'url_forbidden_address',
      );
      assert.match(err.message, new RegExp(`\\(${reason}\\)`));
      assert.equal(dns.asked.length, before);
    });
  }

  it('accepts a public IP literal without resolving', async () => {
    const before = dns.asked.length;
    assert.equal(
      await validateDeliveryUrl('https://[2606:4700:4700::1111]/', options),
      'https://[2606:4700:4700::1111]/',
    );
    assert.equal(dns.asked.length, before);
  });

  for (const host of [
    'localhost',
    'LOCALHOST.',
    'api.localhost',
    'metadata.google.internal',
    'db.corp.internal',
  ]) {
    it(`refuses the name ${host} without resolving`, async () => {
      const named = fakeResolver({ [host.toLowerCase()]: ['1.1.1.1'] });
      await rejectsWith(
        validateDeliveryUrl(`https://${host}/`, { allowInsecure: false, resolve: named }),
        UnprocessableError,
        'url_forbidden_address',
      );
      assert.deepEqual(named.asked, []);
    });
  }

  it('allows loopback and private targets with allowInsecure, without resolving', async () => {
    const before = dns.asked.length;
    assert.equal(
      await validateDeliveryUrl('http://private.example:8080/h', { ...options, allowInsecure: true }),
      'http://private.example:8080/h',
    );
    assert.equal(
      await validateDeliveryUrl('http://127.0.0.1:9000/', { ...options, allowInsecure: true }),
      'http://127.0.0.1:9000/',
    );
    assert.equal(dns.asked.length, before);
  });
});

describe('assertDeliveryAddress', () => {
  it('accepts a public address', () => {
    assert.doesNotThrow(() => assertDeliveryAddress('8.8.8.8', 'partner.example.com', false));
  });

  it('refuses a rebound private address at connect time', () => {
    assert.throws(
      () => assertDeliveryAddress('192.168.0.10', 'partner.example.com', false),
      (err: unknown) =>
        err instanceof UnprocessableError &&
        err.code === 'url_forbidden_address' &&
        err.message ===
          'host `partner.example.com` resolves to 192.168.0.10 (private), which is not an allowed delivery target' &&
        err.details[0]?.field === 'url',
    );
  });

  it('lets any address through with allowInsecure', () => {
    assert.doesNotThrow(() => assertDeliveryAddress('127.0.0.1', 'localhost', true));
  });
});

describe('validateDeliveryUrl with the system resolver', () => {
  const system = { allowInsecure: false, resolve: createDnsResolver() };

  it('resolves localhost to loopback addresses only', async () => {
    const addresses = await createDnsResolver()('localhost');
    assert.ok(addresses.length > 0);
    for (const address of addresses) assert.ok(['127.0.0.1', '::1'].includes(address), address);
  });

  it('refuses https://localhost/x as loopback', async () => {
    const err = await rejectsWith(
      validateDeliveryUrl('https://localhost/x', system),
      UnprocessableError,
      'url_forbidden_address',
    );
    assert.match(err.message, /loopback/);
  });

  it('reports https://no-such-host.invalid/ as url_unresolvable', async () => {
    await rejectsWith(
      validateDeliveryUrl('https://no-such-host.invalid/', system),
      UnprocessableError,
      'url_unresolvable',
    );
  });
});

describe('createDnsResolver', () => {
  it('rejects with dns_timeout when resolution outlasts the timeout', async () => {
    const never = () => new Promise<Array<{ address: string }>>(() => {});
    await assert.rejects(createDnsResolver(20, never)('slow.example.com'), { code: 'dns_timeout' });
  });

  it('translates a temporary resolver failure into a transient error', async () => {
    const failing = () =>
      Promise.reject(Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' }));
    await assert.rejects(createDnsResolver(1000, failing)('partner.example.com'), {
      code: 'dns_unavailable',
      kind: 'unavailable',
    });
  });

  it('translates an unknown name into dns_not_found', async () => {
    await assert.rejects(createDnsResolver()('no-such-host.invalid'), {
      code: 'dns_not_found',
      kind: 'not_found',
    });
  });
});
