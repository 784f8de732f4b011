import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { ValidationError } from '../../src/common/errors.ts';
import {
  decodeSigningSecret,
  generateSigningSecret,
  SECRET_PREFIX,
  signWebhook,
  verifyWebhook,
  webhookHeaders,
} from '../../src/common/signing.ts';
import { rotateSecrets } from '../../src/subscriptions/secrets.ts';

const KEY = Buffer.alloc(32, 7);
const SECRET = `whsec_${KEY.toString('base64')}`;
const OTHER_SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
const BODY = '{"type":"orders.created","data":{"orderId":"o_1","total":12.5,"note":"café"}}';
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function secretInvalid(field: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ValidationError);
    assert.equal(err.code, 'secret_invalid');
    assert.equal(err.details[0]?.field, field);
    return true;
  };
}

describe('generateSigningSecret', () => {
  it('returns whsec_ + base64 of 32 random bytes by default', () => {
    const secret = generateSigningSecret();

    assert.ok(secret.startsWith(SECRET_PREFIX));
    assert.equal(decodeSigningSecret(secret).length, 32);
  });

  it('returns a different secret each time', () => {
    assert.notEqual(generateSigningSecret(), generateSigningSecret());
  });

  it('accepts sizes from 24 to 64 bytes', () => {
    assert.equal(decodeSigningSecret(generateSigningSecret(24)).length, 24);
    assert.equal(decodeSigningSecret(generateSigningSecret(64)).length, 64);
  });

  it('refuses sizes outside 24..64 bytes', () => {
    assert.throws(() => generateSigningSecret(23), secretInvalid('bytes'));
    assert.throws(() => generateSigningSecret(65), secretInvalid('bytes'));
  });
});

describe('decodeSigningSecret', () => {
  it('returns the decoded key bytes', () => {
    assert.deepEqual(decodeSigningSecret(SECRET), KEY);
  });

  it('refuses a secret without the whsec_ prefix, naming the given field', () => {
    assert.throws(
      () => decodeSigningSecret(KEY.toString('base64'), 'signing.secret'),
      secretInvalid('signing.secret'),
    );
  });

  it('refuses a secret that is not padded standard base64', () => {
    assert.throws(() => decodeSigningSecret(`whsec_${KEY.toString('base64url')}!`), secretInvalid('secret'));
    assert.throws(() => decodeSigningSecret('whsec_not*base64'), secretInvalid('secret'));
  });

  it('refuses a secret shorter than 24 bytes', () => {
    assert.throws(
      () => decodeSigningSecret(`whsec_${Buffer.alloc(23).toString('base64')}`),
      secretInvalid('secret'),
    );
  });

  it('refuses a secret longer than 64 bytes', () => {
    assert.throws(
      () => decodeSigningSecret(`whsec_${Buffer.alloc(65).toString('base64')}`),
      secretInvalid('secret'),
    );
  });
});

describe('signWebhook', () => {
  it('signs "<id>.<timestamp>.<body>" with HMAC-SHA256 under the decoded key', () => {
    const expected = createHmac('sha256', KEY).update(`msg_1.1700000000.${BODY}`, 'utf8').digest('base64');

    const header = signWebhook({ id: 'msg_1', timestamp: 1700000000, body: BODY, secrets: [SECRET] });

    assert.equal(header, `v1,${expected}`);
  });

  it('reproduces the published Standard Webhooks example signature', () => {
    const header = signWebhook({
      id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      timestamp: 1614265330,
      body: '{"test": 2432232314}',
      secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
    });

    assert.equal(header, 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('emits one space-separated v1 signature per secret, in order', () => {
    const single = (secret: string) =>
      signWebhook({ id: 'msg_1', timestamp: 1700000000, body: BODY, secrets: [secret] });

    const header = signWebhook({
      id: 'msg_1',
      timestamp: 1700000000,
      body: BODY,
      secrets: [SECRET, OTHER_SECRET],
    });

    assert.equal(header, `${single(SECRET)} ${single(OTHER_SECRET)}`);
  });

  it('refuses an empty secret list', () => {
    assert.throws(
      () => signWebhook({ id: 'msg_1', timestamp: 1, body: BODY, secrets: [] }),
      secretInvalid('secrets'),
    );
  });

  it('refuses an invalid secret, naming its position', () => {
    assert.throws(
      () => signWebhook({ id: 'msg_1', timestamp: 1, body: BODY, secrets: [SECRET, 'whsec_short'] }),
      secretInvalid('secrets.1'),
    );
  });

  it('refuses a timestamp that is not whole seconds', () => {
    assert.throws(
      () => signWebhook({ id: 'msg_1', timestamp: 1700000000.5, body: BODY, secrets: [SECRET] }),
      {
        code: 'webhook_timestamp_invalid',
      },
    );
  });

  it('refuses an id that could not travel as a header value', () => {
    assert.throws(() => signWebhook({ id: 'msg 1\n', timestamp: 1, body: BODY, secrets: [SECRET] }), {
      code: 'webhook_id_invalid',
    });
  });
});

describe('webhookHeaders verified by the standardwebhooks reference', () => {
  it('verifies with a single secret', () => {
    const headers = webhookHeaders({ id: 'msg_1', timestamp: nowSeconds(), body: BODY, secrets: [SECRET] });

    const payload = new Webhook(SECRET).verify(BODY, headers);

    assert.deepEqual(payload, JSON.parse(BODY));
  });

  it('verifies a two-signature header with each secret alone (rotation)', () => {
    const headers = webhookHeaders({
      id: 'msg_1',
      timestamp: nowSeconds(),
      body: BODY,
      secrets: [SECRET, OTHER_SECRET],
    });

    assert.doesNotThrow(() => new Webhook(SECRET).verify(BODY, headers));
    assert.doesNotThrow(() => new Webhook(OTHER_SECRET).verify(BODY, headers));
  });

  it('verifies with a 24-byte and a 64-byte generated secret', () => {
    for (const secret of [generateSigningSecret(24), generateSigningSecret(64)]) {
      const headers = webhookHeaders({ id: 'msg_2', timestamp: nowSeconds(), body: BODY, secrets: [secret] });

      assert.doesNotThrow(() => new Webhook(secret).verify(BODY, headers));
    }
  });

  it('is rejected by the reference when the body was tampered with', () => {
    const headers = webhookHeaders({ id: 'msg_1', timestamp: nowSeconds(), body: BODY, secrets: [SECRET] });

    assert.throws(
      () => new Webhook(SECRET).verify(BODY.replace('12.5', '1.25'), headers),
      /No matching signature/,
    );
  });

  it('is rejected by the reference under a secret that did not sign', () => {
    const headers = webhookHeaders({ id: 'msg_1', timestamp: nowSeconds(), body: BODY, secrets: [SECRET] });

    assert.throws(() => new Webhook(OTHER_SECRET).verify(BODY, headers), /No matching signature/);
  });

  it('carries the id and timestamp that were signed', () => {
    const headers = webhookHeaders({ id: 'msg_1', timestamp: 1700000000, body: BODY, secrets: [SECRET] });

    assert.equal(headers['webhook-id'], 'msg_1');
    assert.equal(headers['webhook-timestamp'], '1700000000');
  });
});

describe('verifyWebhook', () => {
  const message = { id: 'msg_1', timestamp: 1700000000, body: BODY };
  const signed = (secrets: string[]) => signWebhook({ ...message, secrets });
  const verify = (overrides: Partial<Parameters<typeof verifyWebhook>[0]>) =>
    verifyWebhook({
      ...message,
      signatureHeader: signed([SECRET]),
      secrets: [SECRET],
      now: 1700000000,
      ...overrides,
    });

  it('accepts a header it signed', () => {
    assert.equal(verify({}), true);
  });

  it('accepts a signature made by the reference implementation', () => {
    const reference = new Webhook(SECRET).sign('msg_1', new Date(1700000000 * 1000), BODY);

    assert.equal(verify({ signatureHeader: reference }), true);
  });

  it('accepts when any configured secret matches any signature in the header', () => {
    assert.equal(verify({ signatureHeader: signed([OTHER_SECRET]), secrets: [SECRET, OTHER_SECRET] }), true);
    assert.equal(verify({ signatureHeader: signed([OTHER_SECRET, SECRET]), secrets: [SECRET] }), true);
  });

  it('rejects a tampered body', () => {
    assert.equal(verify({ body: `${BODY} ` }), false);
  });

  it('rejects a different id or timestamp', () => {
    assert.equal(verify({ id: 'msg_2' }), false);
    assert.equal(verify({ timestamp: 1700000001, now: 1700000001 }), false);
  });

  it('rejects a signature under another secret', () => {
    assert.equal(verify({ signatureHeader: signed([OTHER_SECRET]) }), false);
  });

  it('ignores signatures of other versions', () => {
    const v1a = signed([SECRET]).replace('v1,', 'v1a,');

    assert.equal(verify({ signatureHeader: v1a }), false);
  });

  it('rejects a malformed header', () => {
    assert.equal(verify({ signatureHeader: '' }), false);
    assert.equal(verify({ signatureHeader: 'v1' }), false);
    assert.equal(verify({ signatureHeader: 'v1,abc' }), false);
  });

  it('accepts a timestamp at the edge of the default 300 s tolerance, in either direction', () => {
    assert.equal(verify({ now: 1700000300 }), true);
    assert.equal(verify({ now: 1699999700 }), true);
  });

  it('rejects a timestamp beyond the tolerance, in either direction', () => {
    assert.equal(verify({ now: 1700000301 }), false);
    assert.equal(verify({ now: 1699999699 }), false);
  });

  it('honours a custom tolerance', () => {
    assert.equal(verify({ now: 1700000061, toleranceSeconds: 60 }), false);
    assert.equal(verify({ now: 1700000060, toleranceSeconds: 60 }), true);
  });
});

describe('rotateSecrets', () => {
  const secret = (id: string, expiresAt?: string) => ({
    sealed: id,
    createdAt: '2026-01-01T00:00:00.000Z',
    ...(expiresAt ? { expiresAt } : {}),
  });
  const now = new Date('2026-06-01T12:00:00.000Z');

  it('keeps the secrets before for the overlap, none past its own end', () => {
    const rotated = rotateSecrets(
      [secret('b'), secret('a', '2026-06-01T18:00:00.000Z')],
      secret('c'),
      now,
      86_400,
    );
    assert.deepEqual(
      rotated.map((s) => [s.sealed, s.expiresAt]),
      [
        ['c', undefined],
        ['b', '2026-06-02T12:00:00.000Z'],
        ['a', '2026-06-01T18:00:00.000Z'],
      ],
    );
  });

  it('an emergency rotation (overlap 0) retires every secret before at once, those still in an earlier overlap too', () => {
    // A→B with a day's overlap, then B→C at once (B leaked): only C signs from now on.
    const afterFirst = rotateSecrets([secret('a')], secret('b'), now, 86_400);
    const later = new Date(now.getTime() + 60_000);
    assert.deepEqual(
      rotateSecrets(afterFirst, secret('c'), later, 0).map((s) => s.sealed),
      ['c'],
    );
  });
});
