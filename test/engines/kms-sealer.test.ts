/**
 * KMS envelope encryption of secrets at rest, against moto's KMS server (a real HTTP KMS API
 * emulator; its front counts the requests it receives and refuses disabled keys as KMS does).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  KMSClient,
} from '@aws-sdk/client-kms';
import { loadConfig } from '../../src/common/config.ts';
import type { SubscriptionRecord } from '../../src/common/model.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import { KmsSecretSealer } from '../../src/engines/aws/kms-sealer.ts';
import { MigratingSealer, openSealer } from '../../src/runtimes/sealer.ts';
import {
  authAd,
  CredentialCache,
  sealAuth,
  sealSigningSecret,
  signingAd,
} from '../../src/subscriptions/secrets.ts';
import { type Moto, startMoto } from '../../tools/aws/moto.ts';
import { ORDERS_SCHEMA, orderEvent } from '../support/pipeline.ts';
import { startReceiver } from '../support/receiver.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const AD = signingAd('sub-1');
const SEALED_FORM = /^kms:v1:[0-9a-f]{8}:[A-Za-z0-9_-]+:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+:[A-Za-z0-9_-]{22}$/;

const decryptFailed = (pattern: RegExp) => (err: any) => {
  assert.equal(err.code, 'secret_decrypt_failed');
  assert.match(err.message, pattern);
  return true;
};

describe('KmsSecretSealer (moto KMS)', { timeout: 120_000 }, () => {
  let moto: Moto;
  let client: KMSClient;
  let keyId: string;
  let keyArn: string;
  const clients: KMSClient[] = [];

  /** A client of its own (as another process would have), with dummy credentials for moto. */
  const newClient = () => {
    const c = new KMSClient({
      region: 'us-east-1',
      endpoint: moto.endpoint,
      credentials: { accessKeyId: 'AKIDTESTTESTTEST', secretAccessKey: 'test-secret-access-key' },
    });
    clients.push(c);
    return c;
  };
  const sealer = (options: { now?: () => number; cacheMaxEntries?: number; key?: string } = {}) =>
    new KmsSecretSealer({ keyId: options.key ?? keyId, client: newClient(), ...options });

  before(async () => {
    moto = await startMoto();
    client = newClient();
    const created = await client.send(new CreateKeyCommand({ Description: 'webhooks secrets' }));
    keyId = created.KeyMetadata!.KeyId!;
    keyArn = created.KeyMetadata!.Arn!;
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await moto?.stop();
  });

  it('seals and opens a secret: 1 GenerateDataKey to seal, 1 Decrypt to open', async () => {
    moto.resetCounts();
    const sealed = await sealer().seal(SECRET, AD);
    assert.match(sealed, SEALED_FORM);
    assert.equal(moto.requests('GenerateDataKey'), 1);
    assert.equal(moto.requests(), 1);
    // Opened by another sealer (another process: nothing cached).
    assert.equal(await sealer().open(sealed, AD), SECRET);
    assert.equal(moto.requests('Decrypt'), 1);
    assert.equal(moto.requests(), 2);
  });

  it('every sealed value has its own data key', async () => {
    const box = sealer();
    const [a, b] = [await box.seal(SECRET, AD), await box.seal(SECRET, AD)];
    assert.notEqual(a, b);
    assert.notEqual(a.split(':')[3], b.split(':')[3], 'the encrypted data keys differ');
    assert.equal(await sealer().open(a, AD), SECRET);
    assert.equal(await sealer().open(b, AD), SECRET);
  });

  it('the stored form holds the encrypted data key only, never the plaintext one', async () => {
    const spied = newClient();
    const keys: Array<{ copy: Buffer; original: Uint8Array }> = [];
    spied.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        const output = result.output as { Plaintext?: Uint8Array };
        if (context.commandName === 'GenerateDataKeyCommand' && output.Plaintext)
          keys.push({ copy: Buffer.from(output.Plaintext), original: output.Plaintext });
        return result;
      },
      { step: 'initialize', name: 'spyOnDataKeys' },
    );
    const box = new KmsSecretSealer({ keyId, client: spied });
    const sealed = await box.seal(SECRET, AD);
    assert.equal(keys.length, 1);
    const [{ copy, original }] = keys as [{ copy: Buffer; original: Uint8Array }];
    assert.equal(copy.length, 32);
    for (const encoding of ['base64', 'base64url', 'hex'] as const) {
      assert.equal(sealed.includes(copy.toString(encoding)), false, `no data key in ${encoding}`);
      assert.equal(
        sealed.includes(copy.toString(encoding).slice(0, 16)),
        false,
        `nor a part of it (${encoding})`,
      );
    }
    assert.equal(sealed.includes(SECRET), false);
    assert.ok(
      original.every((b) => b === 0),
      'the SDK buffer of the plaintext data key is zeroed once sealed',
    );
    assert.equal(await sealer().open(sealed, AD), SECRET);
  });

  it('another associated data (encryption context) fails, at KMS and with the data key cached', async () => {
    const sealed = await sealer().seal(SECRET, AD);
    await assert.rejects(
      sealer().open(sealed, signingAd('sub-2')),
      decryptFailed(/KMS refused to decrypt the data key.*encryption context/),
    );
    await assert.rejects(sealer().open(sealed), decryptFailed(/KMS refused/));
    // With the data key cached under the right context, another context is still refused.
    const opener = sealer();
    assert.equal(await opener.open(sealed, AD), SECRET);
    await assert.rejects(opener.open(sealed, authAd('sub-1')), decryptFailed(/KMS refused/));
  });

  it('a tampered ciphertext, tag or encrypted data key fails', async () => {
    const sealed = await sealer().seal(SECRET, AD);
    const tamper = (index: number) => {
      const parts = sealed.split(':');
      const bytes = Buffer.from(parts[index]!, 'base64url');
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
      parts[index] = bytes.toString('base64url');
      return parts.join(':');
    };
    await assert.rejects(sealer().open(tamper(5), AD), decryptFailed(/authentication failed.*tampered/));
    await assert.rejects(sealer().open(tamper(6), AD), decryptFailed(/authentication failed.*tampered/));
    await assert.rejects(sealer().open(tamper(3), AD), decryptFailed(/KMS refused to decrypt the data key/));
    await assert.rejects(sealer().open(`${sealed}:x`, AD), decryptFailed(/not in the KMS sealed form/));
    await assert.rejects(
      sealer().open(sealed.replace('kms:v1:', 'kms:v9:'), AD),
      decryptFailed(/unsupported KMS sealed format version "v9"/),
    );
  });

  it('opening one value 100 times makes 1 Decrypt; the cache is bounded (LRU) and expires (TTL)', async () => {
    const sealed = await sealer().seal(SECRET, AD);
    let now = 1_000_000;
    const opener = sealer({ now: () => now, cacheMaxEntries: 2 });
    moto.resetCounts();
    // Concurrent opens share one Decrypt, later ones hit the cache.
    const first = await Promise.all(Array.from({ length: 50 }, () => opener.open(sealed, AD)));
    for (let i = 0; i < 50; i++) first.push(await opener.open(sealed, AD));
    assert.deepEqual(new Set(first), new Set([SECRET]));
    assert.equal(first.length, 100);
    assert.equal(moto.requests('Decrypt'), 1, '100 opens, 1 KMS Decrypt');
    assert.equal(moto.requests(), 1);

    now += 5 * 60_000 + 1;
    assert.equal(await opener.open(sealed, AD), SECRET);
    assert.equal(moto.requests('Decrypt'), 2, 'after 5 minutes the data key is decrypted again');

    // Two more values used after it: the least recently used one (the first) is dropped.
    const others = [await sealer().seal('a', AD), await sealer().seal('b', AD)];
    moto.resetCounts();
    await opener.open(others[0]!, AD);
    await opener.open(sealed, AD); // still cached, and now the most recently used
    await opener.open(others[1]!, AD); // evicts others[0]
    assert.equal(moto.requests('Decrypt'), 2);
    await opener.open(sealed, AD);
    assert.equal(moto.requests('Decrypt'), 2, 'the recently used value stayed');
    await opener.open(others[0]!, AD);
    assert.equal(moto.requests('Decrypt'), 3, 'the least recently used value was dropped');
  });

  it('a delivery costs no KMS call once its subscription revision is opened (CredentialCache)', async () => {
    const box = sealer();
    const sub = {
      id: 'sub-1',
      revision: 1,
      signing: { enabled: true, secrets: [await sealSigningSecret(box, 'sub-1', SECRET, new Date())] },
      auth: await sealAuth(box, 'sub-1', { type: 'bearer', token: 'partner-token' }),
    } as SubscriptionRecord;
    const credentials = new CredentialCache(sealer());
    moto.resetCounts();
    const now = new Date();
    const first = await Promise.all(
      Array.from({ length: 20 }, async () => [
        await credentials.secrets(sub, now),
        await credentials.auth(sub),
      ]),
    );
    assert.deepEqual(first[0], [[SECRET], { type: 'bearer', token: 'partner-token' }]);
    assert.equal(moto.requests('Decrypt'), 2, 'one Decrypt per sealed value, for 20 concurrent deliveries');
    for (let i = 0; i < 100; i++) await credentials.secrets(sub, now);
    assert.equal(moto.requests('Decrypt'), 2, 'then none');
  });

  it('a disabled key is refused with a clear error, for sealing and for opening', async () => {
    const own = await client.send(new CreateKeyCommand({}));
    const disabledKey = own.KeyMetadata!.KeyId!;
    const sealed = await sealer({ key: disabledKey }).seal(SECRET, AD);
    const warm = sealer({ key: disabledKey });
    assert.equal(await warm.open(sealed, AD), SECRET);
    await client.send(new DisableKeyCommand({ KeyId: disabledKey }));
    try {
      const disabled = (operation: string) => (err: any) => {
        assert.equal(err.code, 'kms_key_disabled');
        assert.match(
          err.message,
          new RegExp(`KMS key ${disabledKey} is disabled, so ${operation} was refused`),
        );
        assert.match(err.message, /enable the key, or set WEBHOOKS_KMS_KEY_ID/);
        return true;
      };
      await assert.rejects(sealer({ key: disabledKey }).seal(SECRET, AD), disabled('GenerateDataKey'));
      await assert.rejects(sealer({ key: disabledKey }).open(sealed, AD), disabled('Decrypt'));
      // A data key decrypted before the key was disabled keeps opening until it expires from the cache.
      assert.equal(await warm.open(sealed, AD), SECRET);
    } finally {
      await client.send(new EnableKeyCommand({ KeyId: disabledKey }));
    }
    assert.equal(await sealer({ key: disabledKey }).open(sealed, AD), SECRET);
  });

  it('an unknown key is named', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    await assert.rejects(sealer({ key: missing }).seal(SECRET, AD), (err: any) => {
      assert.equal(err.code, 'kms_key_not_found');
      assert.match(err.message, new RegExp(`KMS key ${missing} does not exist`));
      return true;
    });
  });

  it('a key given by alias or ARN seals and opens; a value sealed under a former key still opens', async () => {
    await client.send(new CreateAliasCommand({ AliasName: 'alias/webhooks-secrets', TargetKeyId: keyId }));
    const byAlias = await sealer({ key: 'alias/webhooks-secrets' }).seal(SECRET, AD);
    assert.equal(await sealer({ key: 'alias/webhooks-secrets' }).open(byAlias, AD), SECRET);
    const byArn = await sealer({ key: keyArn }).seal(SECRET, AD);
    assert.equal(await sealer({ key: keyArn }).open(byArn, AD), SECRET);
    // The configured key changed (another fingerprint): KMS finds the key in the encrypted data key.
    const next = (await client.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    assert.notEqual(byAlias.split(':')[2], sealer({ key: next }).keyId);
    assert.equal(await sealer({ key: next }).open(byAlias, AD), SECRET);
  });

  it('a value sealed by the local key is refused by KMS, and the reverse, naming both kinds', async () => {
    const local = SecretBox.fromString(SecretBox.generateKey());
    await assert.rejects(
      sealer().open(local.seal(SECRET, AD), AD),
      decryptFailed(/sealed by the local key \(enc:v1\), but was given to AWS KMS \(kms:v1\)/),
    );
    const sealed = await sealer().seal(SECRET, AD);
    assert.throws(
      () => local.open(sealed, AD),
      decryptFailed(
        /sealed by AWS KMS \(kms:v1\), but was given to the local key \(enc:v1\).*WEBHOOKS_KMS_KEY_ID/,
      ),
    );
  });

  it('openSealer: KMS when WEBHOOKS_KMS_KEY_ID is set (local values still open), else the local key', async () => {
    const local = SecretBox.fromString(SecretBox.generateKey());
    assert.equal(await openSealer(loadConfig({}), local), local);

    const env = { WEBHOOKS_KMS_KEY_ID: keyId, WEBHOOKS_KMS_ENDPOINT: moto.endpoint, AWS_REGION: 'us-east-1' };
    const config = loadConfig(env);
    assert.deepEqual(config.kms, { keyId, region: 'us-east-1', endpoint: moto.endpoint });
    const migrating = await openSealer(config, local);
    assert.ok(migrating instanceof MigratingSealer);
    assert.equal(migrating.kind, 'kms');
    const fresh = await migrating.seal(SECRET, AD);
    assert.match(fresh, SEALED_FORM);
    assert.equal(await migrating.open(fresh, AD), SECRET);
    assert.equal(await migrating.open(local.seal('old', AD), AD), 'old', 'a value the local key sealed');
    await assert.rejects(
      Promise.resolve().then(() => migrating.open(local.seal('old', AD), authAd('sub-1'))),
      decryptFailed(/authentication failed/),
    );
  });

  it('the platform moved to KMS: old secrets open with the local key, new ones are sealed by KMS, deliveries sign', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-kms-'));
    const receiver = await startReceiver({ tls: false });
    receiver.secret = SECRET;
    const subscribe = (server: TestServer, path: string) =>
      server.request('POST', '/admin/subscriptions', {
        partnerId: 'acme',
        domain: 'orders',
        event: 'created',
        url: `${receiver.url}${path}`,
        signing: { secret: SECRET },
        auth: { type: 'bearer', token: `token-${path.slice(1)}` },
      });
    const sealedOf = async (server: TestServer, id: string) => {
      const record = await server.running.platform.store.subscriptions.get(id);
      return [record!.signing.secrets[0]!.sealed, record!.auth!.sealed];
    };
    const publish = async (server: TestServer, n: number) => {
      const res = await server.request('POST', '/events', orderEvent({ n }), {
        headers: { 'content-type': 'application/cloudevents+json' },
      });
      assert.equal(res.status, 202);
    };
    try {
      // Before: the local key only.
      const local = await startTestServer({ WEBHOOKS_DEV: '1' }, dataDir);
      assert.equal(
        (
          await local.request('POST', '/admin/schemas', {
            domain: 'orders',
            event: 'created',
            schema: ORDERS_SCHEMA,
          })
        ).status,
        201,
      );
      assert.equal(
        (await local.request('POST', '/admin/partners', { id: 'acme', name: 'Acme' })).status,
        201,
      );
      const old = await subscribe(local, '/old');
      assert.equal(old.status, 201);
      for (const sealed of await sealedOf(local, old.body.id)) assert.match(sealed, /^enc:v1:/);
      await local.stop();

      // After: WEBHOOKS_KMS_KEY_ID.
      const server = await startTestServer(
        { WEBHOOKS_DEV: '1', WEBHOOKS_KMS_KEY_ID: keyId, WEBHOOKS_KMS_ENDPOINT: moto.endpoint },
        dataDir,
      );
      try {
        moto.resetCounts();
        const fresh = await subscribe(server, '/new');
        assert.equal(fresh.status, 201);
        for (const sealed of await sealedOf(server, fresh.body.id)) assert.match(sealed, SEALED_FORM);
        assert.equal(moto.requests('GenerateDataKey'), 2, 'a signing secret and credentials: 2 data keys');

        await publish(server, 1);
        await receiver.waitFor(2);
        assert.equal(moto.requests('Decrypt'), 2, 'the first delivery of the KMS subscription: 2 Decrypts');
        await publish(server, 2);
        await receiver.waitFor(4);
        assert.equal(moto.requests('Decrypt'), 2, 'later deliveries: no KMS call');
        assert.equal(moto.requests(), 4);
        for (const delivery of receiver.received) assert.equal(delivery.verified, true, delivery.verifyError);
        assert.deepEqual(receiver.received.map((d) => `${d.path} ${d.headers.authorization}`).sort(), [
          '/new Bearer token-new',
          '/new Bearer token-new',
          '/old Bearer token-old',
          '/old Bearer token-old',
        ]);
      } finally {
        await server.stop();
      }
    } finally {
      await receiver.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('configuration: a bad key id and an endpoint without a key are refused', () => {
    assert.throws(
      () => loadConfig({ WEBHOOKS_KMS_KEY_ID: 'not a key' }),
      /WEBHOOKS_KMS_KEY_ID must be a KMS key id/,
    );
    assert.throws(
      () => loadConfig({ WEBHOOKS_KMS_ENDPOINT: 'http://127.0.0.1:1' }),
      /WEBHOOKS_KMS_ENDPOINT needs WEBHOOKS_KMS_KEY_ID/,
    );
    assert.equal(loadConfig({ WEBHOOKS_KMS_KEY_ID: 'alias/webhooks' }).kms?.keyId, 'alias/webhooks');
    const arn = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    assert.equal(loadConfig({ WEBHOOKS_KMS_KEY_ID: arn }).kms?.keyId, arn);
  });
});
