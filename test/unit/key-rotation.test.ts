/**
 * The secret key against the store, on a real SQLite store: a key that cannot open what the store
 * sealed stops the start naming both fingerprints; previous keys are re-sealed under the configured
 * one (concurrent changes retried, corrupted values reported); `webhooks rotate-secret-key` in process.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { loadConfig } from '../../src/common/config.ts';
import { ConfigError } from '../../src/common/errors.ts';
import { Logger } from '../../src/common/log.ts';
import type { SubscriptionRecord } from '../../src/common/model.ts';
import type { SubscriptionRepository } from '../../src/common/ports/store.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { rotateSecretKey } from '../../src/runtimes/cli/rotate-key.ts';
import { loadPreviousSecretBoxes, loadSecretBox } from '../../src/runtimes/local-secrets.ts';
import {
  checkSealedKeys,
  prepareSecretKeys,
  resealSubscriptions,
} from '../../src/subscriptions/key-rotation.ts';
import { authAd, openAuth, sealAuth, sealSigningSecret, signingAd } from '../../src/subscriptions/secrets.ts';
import { subscriptionRecord, testId } from '../support/fixtures.ts';

const A = SecretBox.generateKey();
const B = SecretBox.generateKey();
const boxA = SecretBox.fromString(A);
const boxB = SecretBox.fromString(B);
const NOW = new Date('2026-01-01T00:00:00.000Z');
const SECRET_1 = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SECRET_OLD = 'whsec_b2xkLXNlY3JldC1yb3RhdGVkLW91dC0xMjM0NTY=';
const TOKEN = 'partner-bearer-token-123';

const silent = () => new Logger({ level: 'error', sink: { write: () => {} } });

/** A subscription whose signing secrets and auth are sealed under `box`. */
async function sealedSubscription(
  box: SecretBox,
  overrides: Partial<SubscriptionRecord> = {},
): Promise<SubscriptionRecord> {
  const id = overrides.id ?? testId();
  return subscriptionRecord({
    id,
    signing: {
      enabled: true,
      secrets: [
        await sealSigningSecret(box, id, SECRET_1, NOW),
        // A rotated-out secret (already expired): it is sealed too, so it moves too.
        { ...(await sealSigningSecret(box, id, SECRET_OLD, NOW)), expiresAt: '2026-01-02T00:00:00.000Z' },
      ],
    },
    auth: await sealAuth(box, id, { type: 'bearer', token: TOKEN }),
    ...overrides,
  });
}

/** Every sealed value of a subscription with its associated data. */
function values(sub: SubscriptionRecord): Array<{ sealed: string; ad: string }> {
  return [
    ...sub.signing.secrets.map((s) => ({ sealed: s.sealed, ad: signingAd(sub.id) })),
    ...(sub.auth ? [{ sealed: sub.auth.sealed, ad: authAd(sub.id) }] : []),
  ];
}

const configError = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ConfigError, String(err));
  assert.match(err.message, pattern);
  assert.match(err.details[0]!.message, pattern, 'the CLI prints the details');
  return true;
};

describe('the secret key against the store', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-keys-'));
    store = new SqliteStore(join(dir, 'store.db'));
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('an empty store passes with any key', async () => {
    const report = await checkSealedKeys({ subscriptions: store.subscriptions, box: boxB, previous: [] });
    assert.deepEqual(report, { keyIds: new Map(), stale: [], damaged: [] });
    assert.equal(await prepareSecretKeys({ store, box: boxB, previous: [boxA], logger: silent() }), 0);
  });

  it('another key alone is refused, naming both fingerprints and the fix', async () => {
    await store.subscriptions.insert(await sealedSubscription(boxA));
    await store.subscriptions.insert(await sealedSubscription(boxA));
    await assert.rejects(
      prepareSecretKeys({ store, box: boxB, previous: [], logger: silent() }),
      configError(
        new RegExp(
          `fingerprint ${boxB.keyId}.*sealed under key ${boxA.keyId} \\(6 values.*WEBHOOKS_SECRET_KEY_PREVIOUS`,
        ),
      ),
    );
    // A previous key that is not the right one does not help either; it is named too.
    const boxC = SecretBox.fromString(SecretBox.generateKey());
    await assert.rejects(
      checkSealedKeys({ subscriptions: store.subscriptions, box: boxB, previous: [boxC] }),
      configError(new RegExp(`previous keys: ${boxC.keyId}\\).*${boxA.keyId}`)),
    );
    assert.equal(
      (await checkSealedKeys({ subscriptions: store.subscriptions, box: boxA, previous: [] })).stale.length,
      0,
    );
  });

  it('with the old key as previous, every sealed value moves to the configured key, plaintext unchanged', async () => {
    const full = await sealedSubscription(boxA);
    const headerAuth = await sealedSubscription(boxA, {
      signing: { enabled: false, secrets: [] },
    });
    headerAuth.auth = await sealAuth(boxA, headerAuth.id, {
      type: 'header',
      name: 'x-api-key',
      value: 'k-123',
    });
    const already = await sealedSubscription(boxB);
    for (const sub of [full, headerAuth, already]) await store.subscriptions.insert(sub);
    const lines: string[] = [];
    const logger = new Logger({ sink: { write: (line) => lines.push(line) } });

    assert.equal(await prepareSecretKeys({ store, box: boxB, previous: [boxA], logger }), 2);

    for (const before of [full, headerAuth, already]) {
      const after = (await store.subscriptions.get(before.id))!;
      const expected = values(before).map((v) => (before === already ? boxB : boxA).open(v.sealed, v.ad));
      assert.deepEqual(
        values(after).map((v) => boxB.open(v.sealed, v.ad)),
        expected,
      );
      for (const v of values(after)) {
        assert.equal(SecretBox.keyIdOf(v.sealed), boxB.keyId);
        assert.throws(() => boxA.open(v.sealed, v.ad), /sealed with key/);
      }
      assert.equal(after.revision, before === already ? 1 : 2, 'only re-sealed subscriptions change');
      assert.equal(after.updatedAt, before.updatedAt);
      assert.deepEqual(
        after.signing.secrets.map((s) => [s.createdAt, s.expiresAt]),
        before.signing.secrets.map((s) => [s.createdAt, s.expiresAt]),
      );
      assert.equal(after.auth?.type, before.auth?.type);
      assert.equal(after.auth?.headerName, before.auth?.headerName);
    }
    assert.deepEqual(await openAuth(boxB, (await store.subscriptions.get(full.id))!), {
      type: 'bearer',
      token: TOKEN,
    });

    const text = lines.join('\n');
    assert.match(text, /re-sealed subscription secrets under the configured key/);
    assert.match(text, /"subscriptions":2/);
    assert.match(text, new RegExp(boxB.keyId));
    for (const secret of [SECRET_1, SECRET_OLD, TOKEN, 'k-123', A, B]) assert.ok(!text.includes(secret));

    // Done: the new key alone opens the store, and a second start has nothing to do.
    const report = await checkSealedKeys({ subscriptions: store.subscriptions, box: boxB, previous: [] });
    assert.deepEqual(report.stale, []);
    assert.deepEqual([...report.keyIds], [[boxB.keyId, 7]]);
    assert.equal(await prepareSecretKeys({ store, box: boxB, previous: [boxA], logger: silent() }), 0);
  });

  it('a subscription changed concurrently during the re-seal is read again and re-sealed', async () => {
    const sub = await sealedSubscription(boxA);
    await store.subscriptions.insert(sub);
    let updates = 0;
    // The real repository, with someone else's change landing just before the re-seal's first write.
    const racing: SubscriptionRepository = {
      insert: (r) => store.subscriptions.insert(r),
      get: (id) => store.subscriptions.get(id),
      findByEndpoint: (e) => store.subscriptions.findByEndpoint(e),
      list: (f, p) => store.subscriptions.list(f, p),
      delete: (id) => store.subscriptions.delete(id),
      update: async (record) => {
        updates++;
        if (updates === 1) {
          const current = (await store.subscriptions.get(record.id))!;
          await store.subscriptions.update({ ...current, description: 'changed meanwhile' });
        }
        return store.subscriptions.update(record);
      },
    };

    assert.equal(await resealSubscriptions({ subscriptions: racing, box: boxB, previous: [boxA] }), 1);

    assert.equal(updates, 2, 'the conflicting write was retried once');
    const after = (await store.subscriptions.get(sub.id))!;
    assert.equal(after.description, 'changed meanwhile', 'the concurrent change is kept');
    assert.equal(after.revision, 3);
    assert.deepEqual(
      values(after).map((v) => boxB.open(v.sealed, v.ad)),
      values(sub).map((v) => boxA.open(v.sealed, v.ad)),
    );
  });

  it('a value under the right key but corrupted is reported clearly, and the start goes on', async () => {
    // Listed first (ids are time-ordered), its first value is the first one opened for key B.
    const corrupted = await sealedSubscription(boxB);
    const good = await sealedSubscription(boxB);
    const parts = corrupted.signing.secrets[0]!.sealed.split(':');
    const ciphertext = Buffer.from(parts[4]!, 'base64url');
    ciphertext[0] = ciphertext[0]! ^ 1;
    parts[4] = ciphertext.toString('base64url');
    corrupted.signing.secrets[0]!.sealed = parts.join(':');
    await store.subscriptions.insert(corrupted);
    await store.subscriptions.insert(good);
    const lines: string[] = [];
    const logger = new Logger({ level: 'error', sink: { write: (line) => lines.push(line) } });
    assert.equal(await prepareSecretKeys({ store, box: boxB, previous: [], logger }), 0);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(
      lines[0]!,
      new RegExp(
        `signing.secrets\\[0\\] of subscription ${corrupted.id} cannot be opened: .*authentication failed under key ${boxB.keyId}.*the key is right`,
      ),
    );
    assert.equal((await store.subscriptions.get(corrupted.id))!.revision, 1, 'nothing was written');
  });

  it('a value copied from another subscription, or not in sealed form, is reported; the others are re-sealed', async () => {
    const first = await sealedSubscription(boxA);
    const second = await sealedSubscription(boxA);
    second.auth = { ...second.auth!, sealed: first.auth!.sealed };
    await store.subscriptions.insert(first);
    await store.subscriptions.insert(second);
    const lines: string[] = [];
    const logger = new Logger({ level: 'error', sink: { write: (line) => lines.push(line) } });
    assert.equal(await prepareSecretKeys({ store, box: boxB, previous: [boxA], logger }), 2);
    assert.match(lines.join('\n'), new RegExp(`the auth of subscription ${second.id} cannot be opened`));
    // Everything that opened is under the configured key now; the copied value is marked damaged,
    // naming no key any more.
    const after = (await store.subscriptions.get(second.id))!;
    assert.equal(SecretBox.keyIdOf(after.signing.secrets[0]!.sealed), boxB.keyId);
    assert.equal(after.auth!.sealed, `enc:damaged:${first.auth!.sealed}`);
    // The previous key gone (the rotation over), a start still goes on: the value is reported damaged.
    lines.length = 0;
    assert.equal(await prepareSecretKeys({ store, box: boxB, previous: [], logger }), 0);
    assert.match(
      lines.join('\n'),
      new RegExp(`the auth of subscription ${second.id} cannot be opened.*not in the sealed format`),
    );
    const firstAfter = (await store.subscriptions.get(first.id))!;
    assert.deepEqual(
      values(firstAfter).map((v) => boxB.open(v.sealed, v.ad)),
      values(first).map((v) => boxA.open(v.sealed, v.ad)),
    );

    const broken = await sealedSubscription(boxB);
    broken.signing.secrets[1]!.sealed = 'enc:v1:x';
    await store.subscriptions.delete(first.id);
    await store.subscriptions.delete(second.id);
    await store.subscriptions.insert(broken);
    const report = await checkSealedKeys({ subscriptions: store.subscriptions, box: boxB, previous: [] });
    assert.equal(report.damaged.length, 1);
    assert.match(
      report.damaged[0]!.message,
      new RegExp(`signing.secrets\\[1\\] of subscription ${broken.id} .*not in the sealed format`),
    );
  });
});

describe('webhooks rotate-secret-key (in process)', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  /** A data dir whose secret.key is `key`, with subscriptions sealed under the given boxes. */
  async function dataDir(
    key: string,
    sealedUnder: SecretBox[],
  ): Promise<{ dir: string; subs: SubscriptionRecord[] }> {
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-rotate-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'secret.key'), `${key}\n`, { mode: 0o600 });
    const store = new SqliteStore(join(dir, 'store.db'));
    const subs = await Promise.all(sealedUnder.map((box) => sealedSubscription(box)));
    for (const sub of subs) await store.subscriptions.insert(sub);
    await store.close();
    return { dir, subs };
  }
  const config = (dir: string, env: Record<string, string> = {}) =>
    loadConfig({ WEBHOOKS_DATA_DIR: dir, WEBHOOKS_LOG_LEVEL: 'error', ...env });
  async function read(dir: string, id: string): Promise<SubscriptionRecord> {
    const store = new SqliteStore(join(dir, 'store.db'));
    try {
      return (await store.subscriptions.get(id))!;
    } finally {
      await store.close();
    }
  }

  it('with the key in the data dir: a new key file (0600), the store re-sealed under it, no previous file left', async () => {
    const { dir, subs } = await dataDir(A, [boxA, boxA]);
    const out: string[] = [];
    await rotateSecretKey(config(dir), (line) => out.push(line));

    const { box: next } = loadSecretBox(dir, undefined);
    assert.notEqual(next.keyId, boxA.keyId);
    assert.equal(statSync(join(dir, 'secret.key')).mode & 0o777, 0o600);
    assert.equal(existsSync(join(dir, 'secret.key.previous')), false);
    assert.match(out.join('\n'), new RegExp(`${boxA.keyId} → ${next.keyId}; 2 subscriptions re-sealed`));
    assert.ok(
      !out.join('\n').includes(readFileSync(join(dir, 'secret.key'), 'utf8').trim()),
      'no key printed',
    );
    for (const sub of subs) {
      const after = await read(dir, sub.id);
      assert.deepEqual(
        values(after).map((v) => next.open(v.sealed, v.ad)),
        values(sub).map((v) => boxA.open(v.sealed, v.ad)),
      );
    }
  });

  it('after a crash midway, a start (and the command again) finish the re-seal from secret.key.previous', async () => {
    // The state a crash during the re-seal leaves: the new key in place, the old one next to it, a mixed store.
    const { dir, subs } = await dataDir(B, [boxA, boxB, boxA]);
    writeFileSync(join(dir, 'secret.key.previous'), `${A}\n`, { mode: 0o600 });
    const previous = loadPreviousSecretBoxes(dir, []);
    assert.deepEqual(
      previous.map((b) => b.keyId),
      [boxA.keyId],
    );
    const store = new SqliteStore(join(dir, 'store.db'));
    await assert.rejects(checkSealedKeys({ subscriptions: store.subscriptions, box: boxB, previous: [] }));
    assert.equal(
      await prepareSecretKeys({ store, box: loadSecretBox(dir, undefined).box, previous, logger: silent() }),
      2,
    );
    await store.close();

    // The command run again instead of a start: it finishes, then rotates on.
    writeFileSync(join(dir, 'secret.key.previous'), `${A}\n`, { mode: 0o600 });
    await rotateSecretKey(config(dir), () => {});
    const { box: next } = loadSecretBox(dir, undefined);
    assert.equal(existsSync(join(dir, 'secret.key.previous')), false);
    for (const [i, sub] of subs.entries()) {
      const after = await read(dir, sub.id);
      assert.deepEqual(
        values(after).map((v) => next.open(v.sealed, v.ad)),
        values(sub).map((v) => (i === 1 ? boxB : boxA).open(v.sealed, v.ad)),
      );
    }
  });

  it('refuses a data dir without a key file, and a key that does not open the store, changing nothing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'webhooks-rotate-'));
    dirs.push(empty);
    await assert.rejects(
      rotateSecretKey(config(empty), () => {}),
      /there is no .*secret.key: nothing to rotate/,
    );
    assert.equal(existsSync(join(empty, 'store.db')), false);

    const { dir } = await dataDir(B, [boxA]);
    await assert.rejects(
      rotateSecretKey(config(dir), () => {}),
      configError(new RegExp(boxA.keyId)),
    );
    assert.equal(readFileSync(join(dir, 'secret.key'), 'utf8').trim(), B, 'the key file is untouched');
  });

  it('with the key in the environment: prints a new key and the steps, changes nothing', async () => {
    const { dir } = await dataDir(A, [boxA]);
    const out: string[] = [];
    await rotateSecretKey(config(dir, { WEBHOOKS_SECRET_KEY: B }), (line) => out.push(line));
    const text = out.join('\n');
    const fresh = /new secret key \(fingerprint ([0-9a-f]{8})\): (\S+)/.exec(text);
    assert.ok(fresh, text);
    assert.equal(SecretBox.fromString(fresh[2]!).keyId, fresh[1]);
    assert.match(text, new RegExp(`WEBHOOKS_SECRET_KEY=${fresh[2]!.replace(/[+/]/g, '\\$&')}`));
    assert.match(
      text,
      new RegExp(
        `WEBHOOKS_SECRET_KEY_PREVIOUS to the current WEBHOOKS_SECRET_KEY \\(fingerprint ${boxB.keyId}\\)`,
      ),
    );
    assert.ok(!text.includes(B), 'the current key is not echoed');
    assert.equal(readFileSync(join(dir, 'secret.key'), 'utf8').trim(), A);
  });
});
