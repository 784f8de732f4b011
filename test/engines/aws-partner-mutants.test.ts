/** Partner Info API status mapping at the edges: 408 is transient, 3xx is not an answer. */
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { KMSClient } from '@aws-sdk/client-kms';
import { TransientError } from '../../src/common/errors.ts';
import { KmsSecretSealer } from '../../src/engines/aws/kms-sealer.ts';
import { createDnsResolver } from '../../src/engines/dns-resolver.ts';
import { HttpPartnerDirectory } from '../../src/engines/partner-api/http-directory.ts';

let status = 200;
let server: Server;
let baseUrl: string;

const ACME = { id: 'acme', name: 'Acme Corp' };

function send(res: ServerResponse): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(ACME));
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => assert.fail('expected an error'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TransientError, `expected a TransientError, got ${String(err)}`);
  return err.code;
}

before(async () => {
  server = createServer((_req, res) => send(res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function directory(): HttpPartnerDirectory {
  return new HttpPartnerDirectory({ baseUrl, timeoutMs: 2000, cacheTtlMs: 0 });
}

describe('Partner Info API status edges', () => {
  test('a 408 is unavailable (retryable), not a bad response', async () => {
    status = 408;
    assert.equal(await codeOf(directory().getPartner('acme')), 'partner_directory_unavailable');
  });

  test('a 300 is never read as a partner, even with a valid body', async () => {
    status = 300;
    assert.equal(await codeOf(directory().getPartner('acme')), 'partner_directory_bad_response');
  });

  test('a 299 is still a success', async () => {
    status = 299;
    const partner = await directory().getPartner('acme');
    assert.equal(partner?.name, 'Acme Corp');
  });
});

/** A KMS client whose every call fails with `fault`, as the SDK would throw it. */
function failingKms(fault: Record<string, unknown>): KMSClient {
  return {
    send: async () => {
      throw Object.assign(new Error('kms said no'), fault);
    },
    destroy: () => {},
  } as unknown as KMSClient;
}

describe('KmsSecretSealer error classes', () => {
  test('an unnamed KMS server fault is transient (kms_unavailable)', async () => {
    const sealer = new KmsSecretSealer({
      keyId: 'alias/test',
      client: failingKms({ name: 'SomeNewKmsFault', $fault: 'server', $metadata: { httpStatusCode: 500 } }),
    });
    const err = await sealer.seal('secret').then(
      () => assert.fail('expected an error'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransientError, `expected a TransientError, got ${String(err)}`);
    assert.equal(err.code, 'kms_unavailable');
  });

  test('an unnamed KMS client fault is not transient', async () => {
    const sealer = new KmsSecretSealer({
      keyId: 'alias/test',
      client: failingKms({ name: 'SomeNewKmsFault', $fault: 'client', $metadata: { httpStatusCode: 400 } }),
    });
    const err = await sealer.seal('secret').then(
      () => assert.fail('expected an error'),
      (e: unknown) => e,
    );
    assert.ok(!(err instanceof TransientError), `expected a permanent error, got ${String(err)}`);
    assert.equal((err as { code?: string }).code, 'kms_failed');
  });
});

describe('createDnsResolver', () => {
  async function failure(promise: Promise<unknown>): Promise<{ code?: string }> {
    return promise.then(
      () => assert.fail('expected an error'),
      (e: unknown) => e as { code?: string },
    );
  }

  test('returns every address, not just the first', async () => {
    const resolve = createDnsResolver(1000, async () => [
      { address: '192.0.2.1' },
      { address: '2001:db8::1' },
    ]);
    assert.deepEqual(await resolve('multi.test'), ['192.0.2.1', '2001:db8::1']);
  });

  test('EAI_AGAIN (resolver unreachable) is transient, ENOTFOUND is not found', async () => {
    const failWith = (code: string) =>
      createDnsResolver(1000, async () => {
        throw Object.assign(new Error(code), { code });
      });
    const again = await failure(failWith('EAI_AGAIN')('flaky.test'));
    assert.ok(again instanceof TransientError);
    assert.equal(again.code, 'dns_unavailable');
    const missing = await failure(failWith('ENOTFOUND')('missing.test'));
    assert.ok(!(missing instanceof TransientError));
    assert.equal(missing.code, 'dns_not_found');
  });

  test('a lookup that never answers is a transient dns_timeout', async () => {
    const err = await failure(createDnsResolver(5, () => new Promise(() => {}))('slow.test'));
    assert.ok(err instanceof TransientError);
    assert.equal(err.code, 'dns_timeout');
  });
});
