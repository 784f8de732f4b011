/**
 * Tests from a mutation run over the Subscription Admin, partners, signing secrets, their sealing
 * and the at-rest key rotation: each one passes on main and fails with the mutant it is named for.
 * Real HTTP on loopback (the in-process server, a TLS receiver verifying with `standardwebhooks`),
 * real SQLite in temp dirs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { Logger } from '../../src/common/log.ts';
import type { PartnerRecord, SubscriptionRecord } from '../../src/common/model.ts';
import type { SubscriptionRepository } from '../../src/common/ports/store.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import {
  checkSealedKeys,
  prepareSecretKeys,
  resealSubscriptions,
} from '../../src/subscriptions/key-rotation.ts';
import { PartnerAdmin } from '../../src/subscriptions/partners.ts';
import {
  activeSigningSecrets,
  CredentialCache,
  sealAuth,
  sealSigningSecret,
} from '../../src/subscriptions/secrets.ts';
import { partnerRecord, subscriptionRecord, testId } from '../support/fixtures.ts';
import { orderEvent, publish, startPipelineServer, subscribe } from '../support/pipeline.ts';
import { startReceiver } from '../support/receiver.ts';
import { ORDER_SCHEMA, seed, startTestServer, type TestServer } from '../support/server.ts';

const base = { partnerId: 'acme', domain: 'orders', event: 'created' };
const SECRET_1 = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SECRET_2 = `whsec_${Buffer.alloc(32, 2).toString('base64')}`;
const silent = () => new Logger({ level: 'error', sink: { write: () => {} } });

/** The fields of an error answer's details. */
const fields = (res: { body: any }): string[] =>
  (res.body.error?.details ?? []).map((d: { field: string }) => d.field);

describe('subscription admin: status, rotation and PATCH rules over HTTP', () => {
  let server: TestServer;
  let box: SecretBox;
  let n = 0;
  /** A new subscription of acme to orders.created at a URL of its own. */
  const create = async (extra: Record<string, unknown> = {}) => {
    n += 1;
    const res = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: `https://hooks.partner.test/mut-${n}`,
      ...extra,
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body;
  };
  const stored = async (id: string) => (await server.running.platform.store.subscriptions.get(id))!;

  before(async () => {
    server = await startTestServer();
    await seed(server);
    box = SecretBox.fromString(readFileSync(join(server.dataDir, 'secret.key'), 'utf8'));
  });
  after(() => server.stop());

  test('posting the endpoint of a PAUSED subscription again without a status keeps it PAUSED', async () => {
    const created = await create({ status: 'PAUSED' });
    assert.equal(created.status, 'PAUSED');
    const again = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: created.url,
      description: 'redeployed',
    });
    assert.equal(again.status, 200);
    assert.equal(again.body.status, 'PAUSED', 'an upsert that does not name a status does not resume');
    assert.equal(again.body.description, 'redeployed');
    const resumed = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: created.url,
      status: 'ACTIVE',
    });
    assert.equal(resumed.body.status, 'ACTIVE');
  });

  test('a subscription cannot be created or upserted DISABLED: 400 naming status', async () => {
    const res = await server.request('POST', '/admin/subscriptions', {
      ...base,
      url: 'https://hooks.partner.test/mut-disabled',
      status: 'DISABLED',
    });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.deepEqual(fields(res), ['status']);
  });

  test('PATCH PAUSED or DISABLED records who did it; ACTIVE again clears the reason', async () => {
    const created = await create();
    for (const status of ['PAUSED', 'DISABLED']) {
      const res = await server.request('PATCH', `/admin/subscriptions/${created.id}`, { status });
      assert.equal(res.status, 200);
      assert.equal(res.body.status, status);
      assert.equal(res.body.statusReason, 'set by an administrator');
      const active = await server.request('PATCH', `/admin/subscriptions/${created.id}`, {
        status: 'ACTIVE',
      });
      assert.equal(active.body.status, 'ACTIVE');
      assert.equal(active.body.statusReason, undefined, `no stale reason after ${status}`);
      assert.equal((await stored(created.id)).statusReason, undefined);
    }
  });

  test('a version of its own that is INACTIVE is refused on version, even while another version is ACTIVE', async () => {
    const event = { domain: 'billing', event: 'issued' };
    const v1 = await server.request('POST', '/admin/schemas', { ...event, schema: ORDER_SCHEMA });
    assert.equal(v1.status, 201);
    const v2 = await server.request('POST', '/admin/schemas', {
      ...event,
      schema: { ...ORDER_SCHEMA, properties: { ...ORDER_SCHEMA.properties, note: { type: 'string' } } },
    });
    assert.equal(v2.status, 201, JSON.stringify(v2.body));
    assert.equal(v2.body.version, 2);
    assert.equal(
      (await server.request('PATCH', '/admin/schemas/billing/issued/1', { status: 'INACTIVE' })).status,
      200,
    );
    const url = 'https://hooks.partner.test/mut-versions';
    const old = await server.request('POST', '/admin/subscriptions', { ...base, ...event, url, version: 1 });
    assert.equal(old.status, 422, JSON.stringify(old.body));
    assert.equal(old.body.error.code, 'schema_inactive');
    assert.deepEqual(fields(old), ['version']);
    const any = await server.request('POST', '/admin/subscriptions', { ...base, ...event, url });
    assert.equal(any.status, 201, 'without a version, the ACTIVE v2 is enough');
  });

  test('rotate-secret on a subscription whose signing is off is 409 signing_disabled and changes nothing', async () => {
    const created = await create({ signing: { enabled: false, secret: SECRET_1 } });
    const res = await server.request('POST', `/admin/subscriptions/${created.id}/rotate-secret`, {});
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'signing_disabled');
    assert.deepEqual(fields(res), ['signing.enabled']);
    const record = await stored(created.id);
    assert.equal(record.signing.enabled, false, 'a refused rotation does not turn signing on');
    assert.equal(record.revision, 1);
  });

  test('rotate-secret with a secret brought by the caller uses it and does not echo it', async () => {
    const created = await create();
    const res = await server.request('POST', `/admin/subscriptions/${created.id}/rotate-secret`, {
      secret: SECRET_2,
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.secret, undefined);
    assert.equal(JSON.stringify(res.body).includes(SECRET_2), false);
    assert.deepEqual(await activeSigningSecrets(box, await stored(created.id), new Date()), [
      SECRET_2,
      created.secret,
    ]);
  });

  test('rotate-secret refuses a secret that is not whsec_ base64 of 24..64 bytes, on secret', async () => {
    const created = await create();
    for (const secret of ['whsec_short', SECRET_1.slice('whsec_'.length), `${SECRET_1}!`]) {
      const res = await server.request('POST', `/admin/subscriptions/${created.id}/rotate-secret`, {
        secret,
      });
      assert.equal(res.status, 400, secret);
      assert.deepEqual(fields(res), ['secret'], secret);
    }
    assert.equal((await stored(created.id)).signing.secrets.length, 1, 'nothing was rotated');
  });

  test('rotate-secret takes an overlap of up to 30 days, not a second more', async () => {
    const created = await create();
    const max = 30 * 86400;
    const tooLong = await server.request('POST', `/admin/subscriptions/${created.id}/rotate-secret`, {
      overlapSeconds: max + 1,
    });
    assert.equal(tooLong.status, 400);
    assert.deepEqual(fields(tooLong), ['overlapSeconds']);
    const before = Date.now();
    const ok = await server.request('POST', `/admin/subscriptions/${created.id}/rotate-secret`, {
      overlapSeconds: max,
    });
    assert.equal(ok.status, 200);
    const expires = Date.parse(ok.body.signing.secrets[1].expiresAt);
    assert.ok(expires >= before + max * 1000 && expires <= Date.now() + max * 1000, String(expires));
  });

  test('PATCH cannot change the secret: 400 on signing, nothing changed', async () => {
    const created = await create();
    const res = await server.request('PATCH', `/admin/subscriptions/${created.id}`, {
      signing: { secret: SECRET_2 },
      description: 'not applied',
    });
    assert.equal(res.status, 400);
    assert.deepEqual(fields(res), ['signing']);
    const record = await stored(created.id);
    assert.equal(record.description, undefined);
    assert.deepEqual(await activeSigningSecrets(box, record, new Date()), [created.secret]);
  });

  test('PATCH turning signing on for a subscription that never had a secret makes one', async () => {
    const created = await create({ signing: { enabled: false } });
    assert.equal(created.signing.secrets.length, 0);
    const res = await server.request('PATCH', `/admin/subscriptions/${created.id}`, {
      signing: { enabled: true },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.signing.enabled, true);
    assert.equal(res.body.signing.secrets.length, 1, 'never "signing on" with nothing to sign with');
    const secrets = await activeSigningSecrets(box, await stored(created.id), new Date());
    assert.equal(secrets.length, 1);
    assert.match(secrets[0]!, /^whsec_/);
  });

  test('PATCH version: an unknown one is 422 on version; null clears it', async () => {
    const created = await create({ version: 1 });
    assert.equal(created.schemaVersion, 1);
    const unknown = await server.request('PATCH', `/admin/subscriptions/${created.id}`, { version: 9 });
    assert.equal(unknown.status, 422);
    assert.equal(unknown.body.error.code, 'schema_version_not_found');
    assert.deepEqual(fields(unknown), ['version']);
    assert.equal((await stored(created.id)).schemaVersion, 1);
    const cleared = await server.request('PATCH', `/admin/subscriptions/${created.id}`, { version: null });
    assert.equal(cleared.status, 200);
    assert.equal(cleared.body.schemaVersion, undefined);
    assert.equal((await stored(created.id)).schemaVersion, undefined);
  });

  test('PATCH url goes through the same checks as creation (https, SSRF), on url', async () => {
    const created = await create();
    const cases: Array<[string, number, string]> = [
      ['http://hooks.partner.test/in', 400, 'url_not_https'],
      ['https://private.partner.test/in', 422, 'url_forbidden_address'],
      ['https://169.254.169.254/latest', 422, 'url_forbidden_address'],
      ['not a url', 400, 'url_invalid'],
    ];
    for (const [url, status, code] of cases) {
      const res = await server.request('PATCH', `/admin/subscriptions/${created.id}`, { url });
      assert.equal(res.status, status, url);
      assert.equal(res.body.error.code, code, url);
      assert.deepEqual(fields(res), ['url'], url);
    }
    assert.equal((await stored(created.id)).url, created.url);
  });
});

describe('partner admin: bad input names its field; an external directory refuses every write', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('a contactEmail that is not an e-mail address is 400 on contactEmail (POST and PATCH)', async () => {
    const bad = await server.request('POST', '/admin/partners', {
      id: 'mail',
      name: 'M',
      contactEmail: 'nope',
    });
    assert.equal(bad.status, 400);
    assert.deepEqual(fields(bad), ['contactEmail']);
    assert.equal((await server.request('POST', '/admin/partners', { id: 'mail', name: 'M' })).status, 201);
    const patch = await server.request('PATCH', '/admin/partners/mail', { contactEmail: 'a b@c' });
    assert.equal(patch.status, 400);
    assert.deepEqual(fields(patch), ['contactEmail']);
  });

  test('metadata is at most 16 KiB of JSON: 16,384 characters pass, one more is 400 on metadata', async () => {
    // {"a":"…"} is the text plus 8 characters.
    const fits = { a: 'x'.repeat(16_384 - 8) };
    const over = { a: 'x'.repeat(16_384 - 7) };
    assert.equal(JSON.stringify(fits).length, 16_384);
    const ok = await server.request('POST', '/admin/partners', { id: 'meta', name: 'M', metadata: fits });
    assert.equal(ok.status, 201, JSON.stringify(ok.body).slice(0, 300));
    for (const [method, path, body] of [
      ['POST', '/admin/partners', { id: 'meta2', name: 'M', metadata: over }],
      ['PATCH', '/admin/partners/meta', { metadata: over }],
    ] as const) {
      const res = await server.request(method, path, body);
      assert.equal(res.status, 400, method);
      assert.deepEqual(fields(res), ['metadata'], method);
    }
  });

  test('with an external directory, PATCH is refused like POST and the store is not written', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-partners-'));
    const store = new SqliteStore(join(dir, 'store.db'));
    try {
      const partner = partnerRecord({ id: 'globex' });
      await store.partners.insert(partner);
      const admin = new PartnerAdmin({
        partners: store.partners,
        directory: {
          kind: 'http',
          getPartner: async (id) => (id === 'globex' ? partner : undefined),
          listPartners: async () => ({ items: [partner] }),
        },
        clock: () => new Date(),
      });
      await assert.rejects(admin.update('globex', { status: 'INACTIVE' }), {
        code: 'partner_directory_external',
      });
      const kept = (await store.partners.get('globex')) as PartnerRecord;
      assert.equal(kept.status, 'ACTIVE');
      assert.equal(kept.revision, 1);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('signing secrets at delivery time (CredentialCache)', () => {
  const box = new SecretBox(Buffer.alloc(32, 5));

  test('a rotated-out secret signs until its expiry, not at the instant itself', async () => {
    const id = testId();
    const expiresAt = '2026-03-01T00:00:00.000Z';
    const sub = subscriptionRecord({
      id,
      signing: {
        enabled: true,
        secrets: [
          await sealSigningSecret(box, id, SECRET_2, new Date('2026-02-01T00:00:00.000Z')),
          {
            ...(await sealSigningSecret(box, id, SECRET_1, new Date('2026-01-01T00:00:00.000Z'))),
            expiresAt,
          },
        ],
      },
    });
    const at = Date.parse(expiresAt);
    assert.deepEqual(await activeSigningSecrets(box, sub, new Date(at - 1)), [SECRET_2, SECRET_1]);
    assert.deepEqual(await activeSigningSecrets(box, sub, new Date(at)), [SECRET_2]);
  });

  test('signing off: no secret is used, even when the subscription keeps one', async () => {
    const id = testId();
    const sub = subscriptionRecord({
      id,
      signing: { enabled: false, secrets: [await sealSigningSecret(box, id, SECRET_1, new Date())] },
    });
    assert.deepEqual(await new CredentialCache(box).secrets(sub, new Date()), []);
    assert.deepEqual(await activeSigningSecrets(box, sub, new Date()), []);
  });

  test('one cache answers each revision of a subscription with that revision’s secrets', async () => {
    const id = testId();
    const cache = new CredentialCache(box);
    const now = new Date();
    const v1 = subscriptionRecord({
      id,
      signing: { enabled: true, secrets: [await sealSigningSecret(box, id, SECRET_1, now)] },
    });
    assert.deepEqual(await cache.secrets(v1, now), [SECRET_1]);
    const v2 = {
      ...v1,
      revision: 2,
      signing: { enabled: true, secrets: [await sealSigningSecret(box, id, SECRET_2, now)] },
      auth: await sealAuth(box, id, { type: 'bearer', token: 'token-2' }),
    };
    assert.deepEqual(await cache.secrets(v2, now), [SECRET_2]);
    assert.deepEqual(await cache.auth(v2), { type: 'bearer', token: 'token-2' });
  });
});

describe('what a partner receives after a rotation and with signing turned off (TLS receiver, standardwebhooks)', () => {
  let server: TestServer;
  before(async () => {
    server = await startPipelineServer();
  });
  after(() => server.stop());

  test('after rotate-secret the new secret signs at once; with signing off, no signature is sent', async () => {
    const receiver = await startReceiver();
    try {
      const { subscriptionId, secret } = await subscribe(server, receiver, { signing: { secret: SECRET_1 } });
      assert.equal(secret, undefined, 'a secret brought is not echoed');
      receiver.secret = SECRET_1;
      const verifies = (n: number, key: string): boolean => {
        const d = receiver.received[n]!;
        try {
          new Webhook(key).verify(d.body, {
            'webhook-id': d.headers['webhook-id'] ?? '',
            'webhook-timestamp': d.headers['webhook-timestamp'] ?? '',
            'webhook-signature': d.headers['webhook-signature'] ?? '',
          });
          return true;
        } catch {
          return false;
        }
      };

      await publish(server, orderEvent());
      await receiver.waitFor(1);
      assert.equal(verifies(0, SECRET_1), true, receiver.received[0]!.verifyError);

      // An emergency rotation (overlap 0) to a secret the operator brings: only it signs from now on.
      const rotated = await server.request('POST', `/admin/subscriptions/${subscriptionId}/rotate-secret`, {
        secret: SECRET_2,
        overlapSeconds: 0,
      });
      assert.equal(rotated.status, 200);
      await publish(server, orderEvent());
      await receiver.waitFor(2);
      assert.equal(verifies(1, SECRET_2), true, 'the new secret signs the next delivery');
      assert.equal(verifies(1, SECRET_1), false, 'the leaked secret no longer does');
      assert.equal(receiver.received[1]!.headers['webhook-signature']!.split(' ').length, 1);

      const off = await server.request('PATCH', `/admin/subscriptions/${subscriptionId}`, {
        signing: { enabled: false },
      });
      assert.equal(off.status, 200);
      assert.equal(off.body.signing.secrets.length, 1, 'the secret is kept for when signing is on again');
      await publish(server, orderEvent());
      await receiver.waitFor(3);
      assert.equal(receiver.received[2]!.headers['webhook-signature'], undefined, 'signing off: unsigned');
      assert.ok(receiver.received[2]!.headers['webhook-id'], 'the id and timestamp still travel');

      const on = await server.request('PATCH', `/admin/subscriptions/${subscriptionId}`, {
        signing: { enabled: true },
      });
      assert.equal(on.status, 200);
      await publish(server, orderEvent());
      await receiver.waitFor(4);
      assert.equal(verifies(3, SECRET_2), true, 'on again: signed with the kept secret');
    } finally {
      await receiver.close();
    }
  });
});

describe('re-sealing under the configured key: what is counted and what is read', () => {
  const boxA = SecretBox.fromString(SecretBox.generateKey());
  const boxB = SecretBox.fromString(SecretBox.generateKey());
  let dir: string;
  let store: SqliteStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-keys-mut-'));
    store = new SqliteStore(join(dir, 'store.db'));
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A subscription whose signing secret and bearer token are sealed under `box`. */
  async function sealed(box: SecretBox): Promise<SubscriptionRecord> {
    const id = testId();
    return subscriptionRecord({
      id,
      signing: { enabled: true, secrets: [await sealSigningSecret(box, id, SECRET_1, new Date())] },
      auth: await sealAuth(box, id, { type: 'bearer', token: 'token-1' }),
    });
  }

  test('a value under an unknown key past the first page of 500 still stops the start', async () => {
    // 500 subscriptions with nothing sealed fill the first page; the wrong key is on the second.
    for (let i = 0; i < 500; i++)
      await store.subscriptions.insert(subscriptionRecord({ signing: { enabled: false, secrets: [] } }));
    const late = await sealed(boxA);
    await store.subscriptions.insert(late);
    await assert.rejects(
      prepareSecretKeys({ store, box: boxB, previous: [], logger: silent() }),
      (err: Error) => {
        assert.match(err.message, new RegExp(`sealed under key ${boxA.keyId} .*subscription ${late.id}`));
        return true;
      },
    );
    const report = await checkSealedKeys({ subscriptions: store.subscriptions, box: boxB, previous: [boxA] });
    assert.deepEqual(report.stale, [late.id]);
  });

  test('re-sealing everything counts and writes only the subscriptions under a previous key', async () => {
    const old = await sealed(boxA);
    const current = await sealed(boxB);
    const plain = subscriptionRecord({ signing: { enabled: false, secrets: [] } });
    for (const sub of [old, current, plain]) await store.subscriptions.insert(sub);
    assert.equal(
      await resealSubscriptions({ subscriptions: store.subscriptions, box: boxB, previous: [boxA] }),
      1,
    );
    assert.equal((await store.subscriptions.get(old.id))!.revision, 2);
    assert.equal(
      (await store.subscriptions.get(current.id))!.revision,
      1,
      'already under the key: untouched',
    );
    assert.equal((await store.subscriptions.get(plain.id))!.revision, 1);
    // Done once, a second pass (another process starting, the command run again) has nothing to do.
    assert.equal(
      await resealSubscriptions({ subscriptions: store.subscriptions, box: boxB, previous: [boxA] }),
      0,
    );
    assert.equal(
      await resealSubscriptions({ subscriptions: store.subscriptions, box: boxB, previous: [boxA] }, [
        old.id,
      ]),
      0,
    );
  });

  test('a subscription deleted while it is re-sealed is skipped, and the start goes on', async () => {
    const doomed = await sealed(boxA);
    const kept = await sealed(boxA);
    await store.subscriptions.insert(doomed);
    await store.subscriptions.insert(kept);
    // The real repository, with an admin deleting `doomed` just before the re-seal writes it.
    const racing: SubscriptionRepository = {
      insert: (r) => store.subscriptions.insert(r),
      get: (id) => store.subscriptions.get(id),
      findByEndpoint: (e) => store.subscriptions.findByEndpoint(e),
      list: (f, p) => store.subscriptions.list(f, p),
      delete: (id) => store.subscriptions.delete(id),
      update: async (record) => {
        if (record.id === doomed.id) await store.subscriptions.delete(doomed.id);
        return store.subscriptions.update(record);
      },
    };
    assert.equal(
      await prepareSecretKeys({
        store: { subscriptions: racing },
        box: boxB,
        previous: [boxA],
        logger: silent(),
      }),
      1,
    );
    assert.equal(await store.subscriptions.get(doomed.id), undefined);
    const after = (await store.subscriptions.get(kept.id))!;
    assert.equal(SecretBox.keyIdOf(after.signing.secrets[0]!.sealed), boxB.keyId);
  });
});
