import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConfigError, WebhooksError } from '../../src/common/errors.ts';
import { SecretBox } from '../../src/common/secret-box.ts';

const KEY = Buffer.alloc(32, 1);
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function decryptFailed(messagePattern?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof WebhooksError);
    assert.equal(err.kind, 'internal');
    assert.equal(err.code, 'secret_decrypt_failed');
    if (messagePattern) assert.match(err.message, messagePattern);
    return true;
  };
}

/** Replaces one colon-separated field of a sealed value. */
function withField(sealed: string, index: number, value: string): string {
  const parts = sealed.split(':');
  parts[index] = value;
  return parts.join(':');
}

/** Flips the first bit of a base64url field. */
function flipped(field: string): string {
  const bytes = Buffer.from(field, 'base64url');
  bytes[0] = (bytes[0] ?? 0) ^ 1;
  return bytes.toString('base64url');
}

describe('SecretBox keys', () => {
  it('names its key by the first 8 hex chars of sha256(key)', () => {
    const box = new SecretBox(KEY);

    assert.equal(box.keyId, createHash('sha256').update(KEY).digest('hex').slice(0, 8));
  });

  it('refuses a key that is not 32 bytes', () => {
    assert.throws(() => new SecretBox(Buffer.alloc(16)), ConfigError);
    assert.throws(() => new SecretBox(Buffer.alloc(33)), ConfigError);
  });

  it('parses a base64 key', () => {
    assert.equal(SecretBox.fromString(KEY.toString('base64')).keyId, new SecretBox(KEY).keyId);
  });

  it('parses a hex key', () => {
    assert.equal(SecretBox.fromString(KEY.toString('hex')).keyId, new SecretBox(KEY).keyId);
  });

  it('refuses a key string of another length or alphabet', () => {
    assert.throws(() => SecretBox.fromString(''), ConfigError);
    assert.throws(() => SecretBox.fromString(Buffer.alloc(16).toString('base64')), ConfigError);
    assert.throws(() => SecretBox.fromString(Buffer.alloc(31).toString('hex')), ConfigError);
    assert.throws(() => SecretBox.fromString('z'.repeat(64)), ConfigError);
    assert.throws(() => SecretBox.fromString(`${'*'.repeat(43)}=`), ConfigError);
  });

  it('does not echo the rejected key in the error', () => {
    const almostKey = Buffer.alloc(31, 0xab).toString('hex');

    assert.throws(
      () => SecretBox.fromString(almostKey),
      (err: unknown) => err instanceof ConfigError && !err.message.includes(almostKey),
    );
  });

  it('generates a base64 key that fromString accepts', () => {
    const encoded = SecretBox.generateKey();

    assert.equal(encoded.length, 44);
    assert.doesNotThrow(() => SecretBox.fromString(encoded));
    assert.notEqual(SecretBox.generateKey(), encoded);
  });
});

describe('SecretBox seal/open', () => {
  const box = new SecretBox(KEY);

  it('round-trips a secret', () => {
    assert.equal(box.open(box.seal(SECRET)), SECRET);
  });

  it('round-trips non-ASCII and empty plaintexts', () => {
    assert.equal(box.open(box.seal('pässwörd ✓')), 'pässwörd ✓');
    assert.equal(box.open(box.seal('')), '');
  });

  it('produces the documented sealed form', () => {
    const sealed = box.seal(SECRET);

    assert.match(sealed, /^enc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+:[A-Za-z0-9_-]{22}$/);
    assert.equal(sealed.split(':')[2], box.keyId);
    assert.ok(!sealed.includes(SECRET));
  });

  it('produces a different ciphertext each time for the same plaintext', () => {
    assert.notEqual(box.seal(SECRET), box.seal(SECRET));
  });

  it('is opened by another box built from the same key', () => {
    const sealed = box.seal(SECRET);

    assert.equal(SecretBox.fromString(KEY.toString('hex')).open(sealed), SECRET);
  });

  it('fails under a different key, naming both key ids', () => {
    const other = new SecretBox(randomBytes(32));

    assert.throws(
      () => other.open(box.seal(SECRET)),
      decryptFailed(new RegExp(`${box.keyId}.*${other.keyId}`)),
    );
  });

  it('fails when the key id was rewritten to match a different key', () => {
    const other = new SecretBox(randomBytes(32));
    const relabelled = withField(box.seal(SECRET), 2, other.keyId);

    assert.throws(() => other.open(relabelled), decryptFailed(/authentication failed/));
  });

  it('fails when the tag was tampered with', () => {
    const sealed = box.seal(SECRET);

    assert.throws(() => box.open(withField(sealed, 5, flipped(sealed.split(':')[5]!))), decryptFailed());
  });

  it('fails when the ciphertext was tampered with', () => {
    const sealed = box.seal(SECRET);

    assert.throws(() => box.open(withField(sealed, 4, flipped(sealed.split(':')[4]!))), decryptFailed());
  });

  it('fails when the tag was truncated', () => {
    const sealed = box.seal(SECRET);
    const shortTag = Buffer.from(sealed.split(':')[5]!, 'base64url').subarray(0, 4).toString('base64url');

    assert.throws(() => box.open(withField(sealed, 5, shortTag)), decryptFailed(/malformed/));
  });

  it('opens with the same associated data', () => {
    assert.equal(box.open(box.seal(SECRET, 'sub_1'), 'sub_1'), SECRET);
  });

  it('fails when the associated data differs (a ciphertext moved to another row)', () => {
    const sealed = box.seal(SECRET, 'sub_1');

    assert.throws(() => box.open(sealed, 'sub_2'), decryptFailed());
    assert.throws(() => box.open(sealed), decryptFailed());
  });

  it('fails on a value that is not in sealed form', () => {
    assert.throws(() => box.open(SECRET), decryptFailed(/not in sealed form/));
    assert.throws(() => box.open('enc:v1:abc'), decryptFailed());
  });

  it('fails on an unknown format version', () => {
    assert.throws(() => box.open(withField(box.seal(SECRET), 1, 'v9')), decryptFailed(/version/));
  });
});

describe('SecretBox.isSealed', () => {
  it('recognises a sealed value', () => {
    assert.equal(SecretBox.isSealed(new SecretBox(KEY).seal(SECRET)), true);
  });

  it('does not take a plaintext secret for a sealed one', () => {
    assert.equal(SecretBox.isSealed(SECRET), false);
  });
});
