import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkBearerToken, generateAdminToken, safeEqual } from '../../src/common/auth.ts';
import { ConfigError, UnauthorizedError } from '../../src/common/errors.ts';

const TOKEN = 'wha_0123456789abcdefghijklmnopqrstuvwxyzABCDE';

function unauthorized(code: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof UnauthorizedError);
    assert.equal(err.kind, 'unauthorized');
    assert.equal(err.code, code);
    return true;
  };
}

describe('safeEqual', () => {
  it('is true for equal strings', () => {
    assert.equal(safeEqual(TOKEN, `${TOKEN}`), true);
  });

  it('is false for strings that differ in one character', () => {
    assert.equal(safeEqual(TOKEN, `${TOKEN.slice(0, -1)}F`), false);
  });

  it('is false for strings of different lengths (without throwing)', () => {
    assert.equal(safeEqual(TOKEN, `${TOKEN}x`), false);
    assert.equal(safeEqual('', TOKEN), false);
  });
});

describe('checkBearerToken', () => {
  it('accepts the right token', () => {
    assert.doesNotThrow(() => checkBearerToken(`Bearer ${TOKEN}`, TOKEN));
  });

  it('accepts the scheme in any case', () => {
    assert.doesNotThrow(() => checkBearerToken(`bearer ${TOKEN}`, TOKEN));
    assert.doesNotThrow(() => checkBearerToken(`BEARER ${TOKEN}`, TOKEN));
  });

  it('rejects a missing header as unauthorized', () => {
    assert.throws(() => checkBearerToken(undefined, TOKEN), unauthorized('unauthorized'));
    assert.throws(() => checkBearerToken('', TOKEN), unauthorized('unauthorized'));
  });

  it('rejects another scheme as unauthorized', () => {
    const basic = `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`;

    assert.throws(() => checkBearerToken(basic, TOKEN), unauthorized('unauthorized'));
    assert.throws(() => checkBearerToken(TOKEN, TOKEN), unauthorized('unauthorized'));
  });

  it('rejects a scheme without a token, or with extra words, as unauthorized', () => {
    assert.throws(() => checkBearerToken('Bearer', TOKEN), unauthorized('unauthorized'));
    assert.throws(() => checkBearerToken('Bearer ', TOKEN), unauthorized('unauthorized'));
    assert.throws(() => checkBearerToken(`Bearer ${TOKEN} extra`, TOKEN), unauthorized('unauthorized'));
  });

  it('rejects a wrong token as invalid_token', () => {
    assert.throws(() => checkBearerToken('Bearer wha_wrong', TOKEN), unauthorized('invalid_token'));
  });

  it('compares the token case-sensitively', () => {
    assert.throws(
      () => checkBearerToken(`Bearer ${TOKEN.toUpperCase()}`, TOKEN),
      unauthorized('invalid_token'),
    );
  });

  it('refuses to run without a configured token', () => {
    assert.throws(() => checkBearerToken('Bearer ', ''), ConfigError);
  });
});

describe('generateAdminToken', () => {
  it('is wha_ + base64url of 32 bytes', () => {
    const token = generateAdminToken();

    assert.match(token, /^wha_[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(token.slice(4), 'base64url').length, 32);
  });

  it('is different each time', () => {
    assert.notEqual(generateAdminToken(), generateAdminToken());
  });

  it('is accepted by checkBearerToken', () => {
    const token = generateAdminToken();

    assert.doesNotThrow(() => checkBearerToken(`Bearer ${token}`, token));
  });
});
