/** The HTTP partner directory against a real Partner Info API stand-in (node:http on 127.0.0.1). */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { TransientError } from '../../src/common/errors.ts';
import {
  HttpPartnerDirectory,
  type HttpPartnerDirectoryOptions,
} from '../../src/engines/partner-api/http-directory.ts';
import { waitFor } from '../support/wait.ts';

type Route = (req: IncomingMessage, res: ServerResponse) => void;

interface Seen {
  url: string;
  authorization: string | undefined;
}

/** The stand-in API: each test sets `route`; every request is recorded in `seen`. */
let route: Route;
let seen: Seen[] = [];
let server: Server;
let baseUrl: string;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const ACME = { id: 'acme', name: 'Acme Corp', contactEmail: 'ops@acme.test', metadata: { tier: 'gold' } };

/** Answers `GET /v1/partners/<id>` from a table of partners; 404 for the rest. */
function partnersById(table: Record<string, unknown>): Route {
  return (req, res) => {
    const id = decodeURIComponent(req.url!.replace('/v1/partners/', ''));
    const partner = table[id];
    if (partner === undefined) sendJson(res, 404, { error: 'not found' });
    else sendJson(res, 200, partner);
  };
}

function directory(options: Partial<HttpPartnerDirectoryOptions> = {}): HttpPartnerDirectory {
  return new HttpPartnerDirectory({ baseUrl, timeoutMs: 2000, cacheTtlMs: 60_000, ...options });
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<TransientError> {
  const err = await promise.then(
    () => assert.fail(`expected a ${code} error`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TransientError, `expected a TransientError, got ${String(err)}`);
  assert.equal(err.code, code);
  return err;
}

before(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url!, authorization: req.headers.authorization });
    route(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  seen = [];
  route = partnersById({ acme: ACME });
});

describe('getPartner', () => {
  test('maps a found partner to a record with defaults', async () => {
    const partner = await directory({ clock: () => Date.parse('2025-01-02T03:04:05.000Z') }).getPartner(
      'acme',
    );

    assert.deepEqual(partner, {
      id: 'acme',
      name: 'Acme Corp',
      status: 'ACTIVE',
      contactEmail: 'ops@acme.test',
      metadata: { tier: 'gold' },
      delivery: {},
      createdAt: '2025-01-02T03:04:05.000Z',
      updatedAt: '2025-01-02T03:04:05.000Z',
      revision: 0,
    });
  });

  test('accepts a body wrapped as { partner } and keeps its timestamps and settings', async () => {
    route = partnersById({
      acme: {
        partner: {
          ...ACME,
          status: 'INACTIVE',
          delivery: { maxConcurrency: 4, retry: { maxAttempts: 3 } },
          createdAt: '2024-05-01T00:00:00Z',
          updatedAt: '2024-06-01T00:00:00Z',
        },
      },
    });

    const partner = await directory().getPartner('acme');

    assert.equal(partner?.status, 'INACTIVE');
    assert.deepEqual(partner?.delivery, { maxConcurrency: 4, retry: { maxAttempts: 3 } });
    assert.equal(partner?.createdAt, '2024-05-01T00:00:00.000Z');
    assert.equal(partner?.updatedAt, '2024-06-01T00:00:00.000Z');
  });

  test('URL-encodes the id in the path', async () => {
    route = partnersById({ 'a/b c': { id: 'a/b c', name: 'Odd' } });

    const partner = await directory().getPartner('a/b c');

    assert.equal(partner?.name, 'Odd');
    assert.equal(seen[0]?.url, '/v1/partners/a%2Fb%20c');
  });

  test('returns undefined on 404 and caches that answer too', async () => {
    const dir = directory();

    const first = await dir.getPartner('nobody');
    const second = await dir.getPartner('nobody');

    assert.equal(first, undefined);
    assert.equal(second, undefined);
    assert.equal(seen.length, 1);
  });

  test('sends the bearer token when one is configured', async () => {
    await directory({ token: 's3cret' }).getPartner('acme');

    assert.equal(seen[0]?.authorization, 'Bearer s3cret');
  });

  test('sends a user and password in the base URL as Basic credentials, never in a message', async () => {
    const withUser = baseUrl.replace('http://', 'http://directory:S3cr%40t-pass-word@');
    const found = await directory({ baseUrl: withUser }).getPartner('acme');
    assert.equal(found?.id, 'acme');
    assert.equal(
      seen[0]?.authorization,
      `Basic ${Buffer.from('directory:S3cr@t-pass-word').toString('base64')}`,
    );

    route = (_req, res) => sendJson(res, 500, { error: 'boom' });
    const err = await rejectsWithCode(
      directory({ baseUrl: withUser }).getPartner('acme'),
      'partner_directory_unavailable',
    );
    assert.ok(err.message.includes(`${baseUrl}/partners/acme`), err.message);
    assert.ok(!/S3cr/.test(err.message), err.message);
  });

  test('refuses a base URL with a user and password when a token is set too', () => {
    assert.throws(
      () => directory({ baseUrl: baseUrl.replace('http://', 'http://u:p@'), token: 'tok-xyz' }),
      (err: Error & { details?: { field: string }[] }) => err.details?.[0]?.field === 'baseUrl',
    );
  });

  test('sends no Authorization header without a token', async () => {
    await directory().getPartner('acme');

    assert.equal(seen[0]?.authorization, undefined);
  });
});

describe('cache', () => {
  test('reuses an answer within the TTL and fetches again after it', async () => {
    let now = 1_000_000;
    const dir = directory({ cacheTtlMs: 5000, clock: () => now });

    await dir.getPartner('acme');
    now += 4999;
    await dir.getPartner('acme');
    const requestsWithinTtl = seen.length;
    now += 1;
    await dir.getPartner('acme');

    assert.equal(requestsWithinTtl, 1);
    assert.equal(seen.length, 2);
  });

  test('does not cache when the TTL is 0', async () => {
    const dir = directory({ cacheTtlMs: 0 });

    await dir.getPartner('acme');
    await dir.getPartner('acme');

    assert.equal(seen.length, 2);
  });

  test('shares one request between concurrent lookups of the same id', async () => {
    const dir = directory();
    route = (req, res) => setTimeout(() => partnersById({ acme: ACME })(req, res), 50);

    const partners = await Promise.all(Array.from({ length: 10 }, () => dir.getPartner('acme')));

    assert.equal(seen.length, 1);
    assert.ok(partners.every((p) => p?.name === 'Acme Corp'));
  });

  test('gives each caller its own copy, so edits do not leak into the cache', async () => {
    const dir = directory();
    const first = await dir.getPartner('acme');

    first!.metadata.tier = 'tampered';
    const second = await dir.getPartner('acme');

    assert.equal(second?.metadata.tier, 'gold');
  });

  test('does not cache errors', async () => {
    const dir = directory();
    route = (_req, res) => sendJson(res, 500, { error: 'boom' });
    await rejectsWithCode(dir.getPartner('acme'), 'partner_directory_unavailable');
    route = partnersById({ acme: ACME });

    const partner = await dir.getPartner('acme');

    assert.equal(partner?.name, 'Acme Corp');
    assert.equal(seen.length, 2);
  });

  test('invalidate(id) forgets that id, invalidate() everything', async () => {
    const dir = directory();
    route = partnersById({ acme: ACME, beta: { id: 'beta', name: 'Beta' } });
    await dir.getPartner('acme');
    await dir.getPartner('beta');

    dir.invalidate('acme');
    await dir.getPartner('acme');
    await dir.getPartner('beta');
    const afterOne = seen.map((s) => s.url);
    dir.invalidate();
    await dir.getPartner('beta');

    assert.deepEqual(afterOne, ['/v1/partners/acme', '/v1/partners/beta', '/v1/partners/acme']);
    assert.equal(seen.at(-1)?.url, '/v1/partners/beta');
    assert.equal(seen.length, 4);
  });

  test('does not cache an answer that was in flight when its id was invalidated', async () => {
    const dir = directory({ timeoutMs: 60_000 });
    // The API holds its answer until the test has invalidated the id.
    let answerStale: (() => void) | undefined;
    route = (req, res) => {
      answerStale = () => partnersById({ acme: ACME })(req, res);
    };
    const stale = dir.getPartner('acme');
    await waitFor('the lookup to reach the API', () => answerStale);

    dir.invalidate('acme');
    route = partnersById({ acme: ACME });
    answerStale!();
    await stale;
    await dir.getPartner('acme');

    assert.equal(seen.length, 2);
  });

  test('drops the oldest entry beyond maxCacheEntries', async () => {
    const dir = directory({ maxCacheEntries: 2 });
    route = partnersById({});

    await dir.getPartner('a');
    await dir.getPartner('b');
    await dir.getPartner('c'); // evicts a
    await dir.getPartner('b');
    await dir.getPartner('a');

    assert.deepEqual(
      seen.map((s) => s.url),
      ['/v1/partners/a', '/v1/partners/b', '/v1/partners/c', '/v1/partners/a'],
    );
  });
});

describe('failures', () => {
  test('times out after timeoutMs when the API never answers', async () => {
    route = () => {}; // holds the request open
    const started = performance.now();

    const err = await rejectsWithCode(
      directory({ timeoutMs: 200 }).getPartner('acme'),
      'partner_directory_unavailable',
    );

    // It waited (a lower bound), and it was the 200 ms timeout that ended the wait.
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 150, `took ${elapsed} ms`);
    assert.match(err.message, /timed out after 200 ms/);
  });

  test('a 500 is unavailable, naming the URL but not the token', async () => {
    route = (_req, res) => sendJson(res, 500, { error: 'boom' });

    const err = await rejectsWithCode(
      directory({ token: 'tok-xyz' }).getPartner('acme'),
      'partner_directory_unavailable',
    );

    assert.ok(err.message.includes(`${baseUrl}/partners/acme`), err.message);
    assert.ok(!err.message.includes('tok-xyz'));
  });

  test('a 429 is unavailable', async () => {
    route = (_req, res) => sendJson(res, 429, {});

    await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_unavailable');
  });

  test('a refused connection is unavailable, with the cause kept', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));

    const err = await rejectsWithCode(
      directory({ baseUrl: `http://127.0.0.1:${port}/v1` }).getPartner('acme'),
      'partner_directory_unavailable',
    );

    assert.ok(err.cause instanceof Error);
  });

  test('401 and 403 are unauthorized', async () => {
    for (const status of [401, 403]) {
      route = (_req, res) => sendJson(res, status, {});

      await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_unauthorized');
    }
  });

  test('a body that is not JSON is a bad response', async () => {
    route = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"id": "acme",');

    await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');
  });

  test('an answer longer than 1 MiB is a bad response, read no further', async () => {
    let written = 0;
    route = (_req, res) => {
      // No content-length: streams spaces (valid JSON padding) until the client stops reading.
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const more = () => {
        while (written < 64 * 1024 * 1024 && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('close', () => res.destroy());
      more();
    };
    const err = await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');
    assert.match(err.message, /over 1048576 bytes/);
    assert.ok(written < 16 * 1024 * 1024, `the API wrote ${written} bytes before the client stopped`);

    route = (_req, res) =>
      res
        .writeHead(200, { 'content-type': 'application/json', 'content-length': String(2 * 1024 * 1024) })
        .end();
    const declared = await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');
    assert.match(declared.message, /over 1048576 bytes/);
  });

  test('metadata nested deeper than 64 levels is a bad response, not a stack for the pipeline to walk', async () => {
    let deep: unknown = {};
    for (let i = 0; i < 70; i++) deep = { d: deep };
    route = partnersById({ acme: { ...ACME, metadata: deep } });
    const err = await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');
    assert.equal(err.details[0]?.field, 'metadata');
  });

  test('a partner without a name is a bad response naming the field', async () => {
    route = partnersById({ acme: { id: 'acme' } });

    const err = await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');

    assert.equal(err.details[0]?.field, 'name');
  });

  test('a field of the wrong type is a bad response', async () => {
    route = partnersById({ acme: { ...ACME, metadata: 'gold' } });

    const err = await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');

    assert.equal(err.details[0]?.field, 'metadata');
  });

  test('an answer about another id is a bad response', async () => {
    route = partnersById({ acme: { id: 'other', name: 'Other' } });

    await rejectsWithCode(directory().getPartner('acme'), 'partner_directory_bad_response');
  });
});

describe('listPartners', () => {
  test('reads { items, next } and passes limit and cursor', async () => {
    route = (_req, res) => sendJson(res, 200, { items: [ACME, { id: 'beta', name: 'Beta' }], next: 'c2' });

    const page = await directory().listPartners({ limit: 2, cursor: 'c1' });

    assert.deepEqual(
      page.items.map((p) => p.id),
      ['acme', 'beta'],
    );
    assert.equal(page.next, 'c2');
    assert.equal(seen[0]?.url, '/v1/partners?limit=2&cursor=c1');
  });

  test('reads a bare array as a single page', async () => {
    route = (_req, res) => sendJson(res, 200, [ACME]);

    const page = await directory().listPartners();

    assert.deepEqual(
      page.items.map((p) => p.name),
      ['Acme Corp'],
    );
    assert.equal(page.next, undefined);
    assert.equal(seen[0]?.url, '/v1/partners');
  });

  test('is never cached', async () => {
    route = (_req, res) => sendJson(res, 200, [ACME]);
    const dir = directory();

    await dir.listPartners();
    await dir.listPartners();

    assert.equal(seen.length, 2);
  });

  test('an invalid item makes the listing a bad response naming it', async () => {
    route = (_req, res) => sendJson(res, 200, { items: [ACME, { id: 'beta', name: 7 }] });

    const err = await rejectsWithCode(directory().listPartners(), 'partner_directory_bad_response');

    assert.equal(err.details[0]?.field, 'items[1].name');
  });
});
