/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): the signature is the base64
 * HMAC-SHA256, keyed with the secret's decoded bytes, of `<id>.<timestamp>.<body>`. Pure: no I/O.
 * Any receiver using the public `standardwebhooks` package must accept what `webhookHeaders` emits.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { ValidationError } from './errors.ts';

export const SECRET_PREFIX = 'whsec_';

const MIN_SECRET_BYTES = 24;
const MAX_SECRET_BYTES = 64;
const DEFAULT_SECRET_BYTES = 32;
const DEFAULT_TOLERANCE_SECONDS = 300;
const SIGNATURE_VERSION = 'v1';
// Padded standard base64, because that is what the reference verifier's decoder accepts.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// Decoding and validating a secret on every delivery would be wasted work on the hot path;
// the bound keeps a long-running dispatcher from growing it without limit during rotations.
const KEY_CACHE_LIMIT = 256;
/** Decoded secrets as key objects: createHmac then skips preparing the key on every signature. */
const keyCache = new Map<string, KeyObject>();

/** A new signing secret: `whsec_` + base64 of `bytes` random bytes (24..64, default 32). */
export function generateSigningSecret(bytes: number = DEFAULT_SECRET_BYTES): string {
  if (!Number.isInteger(bytes) || bytes < MIN_SECRET_BYTES || bytes > MAX_SECRET_BYTES) {
    const message = `a signing secret must have ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes, got ${bytes}`;
    throw new ValidationError('secret_invalid', message, { details: [{ field: 'bytes', message }] });
  }
  return SECRET_PREFIX + randomBytes(bytes).toString('base64');
}

/** Decodes and checks a `whsec_` secret (base64 of 24..64 bytes); throws ValidationError `secret_invalid` with the field. */
export function decodeSigningSecret(secret: string, field = 'secret'): Buffer {
  const invalid = (message: string): ValidationError =>
    new ValidationError('secret_invalid', message, { details: [{ field, message }] });
  if (typeof secret !== 'string' || !secret.startsWith(SECRET_PREFIX)) {
    throw invalid(`a signing secret must start with "${SECRET_PREFIX}"`);
  }
  const encoded = secret.slice(SECRET_PREFIX.length);
  const key = Buffer.from(encoded, 'base64');
  // Node's decoder silently skips bad characters; the re-encode check makes the accepted form canonical.
  if (!BASE64.test(encoded) || key.toString('base64') !== encoded) {
    throw invalid(`a signing secret must be "${SECRET_PREFIX}" followed by padded standard base64`);
  }
  if (key.length < MIN_SECRET_BYTES || key.length > MAX_SECRET_BYTES) {
    throw invalid(
      `a signing secret must decode to ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes, got ${key.length}`,
    );
  }
  return key;
}

/** The `webhook-signature` header value for a message, one `v1,<sig>` per secret, space-separated. */
export function signWebhook(input: {
  id: string;
  timestamp: number /* unix seconds */;
  body: string;
  secrets: readonly string[];
}): string {
  checkMessage(input.id, input.timestamp);
  if (input.secrets.length === 0) {
    const message = 'at least one signing secret is required to sign';
    throw new ValidationError('secret_invalid', message, { details: [{ field: 'secrets', message }] });
  }
  return input.secrets
    .map(
      (secret, i) =>
        `${SIGNATURE_VERSION},${hmac(cachedKey(secret, `secrets.${i}`), input).toString('base64')}`,
    )
    .join(' ');
}

/** Verifies a header against secrets with a timestamp tolerance (default 300 s); used by our own receiver CLI. Returns true/false, constant-time. */
export function verifyWebhook(input: {
  id: string;
  timestamp: number;
  body: string;
  signatureHeader: string;
  secrets: readonly string[];
  now?: number;
  toleranceSeconds?: number;
}): boolean {
  const { timestamp } = input;
  if (!Number.isSafeInteger(timestamp) || typeof input.signatureHeader !== 'string') return false;
  const now = input.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return false;

  const expected = input.secrets.map((secret, i) =>
    Buffer.from(hmac(cachedKey(secret, `secrets.${i}`), input).toString('base64')),
  );
  let matched = false;
  for (const entry of input.signatureHeader.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== SIGNATURE_VERSION) continue; // other schemes (v1a) are not ours
    const given = Buffer.from(entry.slice(comma + 1));
    for (const candidate of expected) {
      // The expected length is public (always 44), so checking it first leaks nothing secret.
      if (given.length === candidate.length && timingSafeEqual(given, candidate)) matched = true;
    }
  }
  return matched;
}

/** The three Standard Webhooks headers for one delivery attempt. */
export function webhookHeaders(input: {
  id: string;
  timestamp: number;
  body: string;
  secrets: readonly string[];
}): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  return {
    'webhook-id': input.id,
    'webhook-timestamp': String(input.timestamp),
    'webhook-signature': signWebhook(input),
  };
}

function hmac(key: KeyObject, message: { id: string; timestamp: number; body: string }): Buffer {
  return createHmac('sha256', key)
    .update(`${message.id}.${message.timestamp}.${message.body}`, 'utf8')
    .digest();
}

function cachedKey(secret: string, field: string): KeyObject {
  let key = keyCache.get(secret);
  if (key === undefined) {
    key = createSecretKey(decodeSigningSecret(secret, field));
    if (keyCache.size >= KEY_CACHE_LIMIT) {
      const oldest = keyCache.keys().next();
      if (!oldest.done) keyCache.delete(oldest.value);
    }
    keyCache.set(secret, key);
  }
  return key;
}

// A receiver parses the timestamp header as an integer and the id as a header value, so anything
// else would produce a signature no receiver could reproduce.
function checkMessage(id: string, timestamp: number): void {
  if (typeof id !== 'string' || !/^[\x21-\x7e]+$/.test(id)) {
    const message = 'a webhook id must be non-empty visible ASCII (it travels as a header value)';
    throw new ValidationError('webhook_id_invalid', message, { details: [{ field: 'id', message }] });
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    const message = `a webhook timestamp must be whole unix seconds, got ${timestamp}`;
    throw new ValidationError('webhook_timestamp_invalid', message, {
      details: [{ field: 'timestamp', message }],
    });
  }
}
