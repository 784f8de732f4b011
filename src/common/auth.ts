/** Admin bearer-token authentication for `/admin/*` and `/events`. Pure: no I/O. */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConfigError, UnauthorizedError } from './errors.ts';

const ADMIN_TOKEN_PREFIX = 'wha_';
const ADMIN_TOKEN_BYTES = 32;
// RFC 6750 allows any whitespace run between the scheme and the token; schemes are case-insensitive (RFC 9110).
const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The SHA-256 of a secret: what a presented value is compared with (`matchesDigest`). */
export function secretDigest(secret: string): Buffer {
  return hash('sha256', secret, 'buffer');
}

/**
 * Whether `presented` hashes to `digest`, in constant time. Hashing first gives equal-length inputs,
 * so neither the comparison nor its length check leaks the length.
 */
export function matchesDigest(presented: string, digest: Buffer): boolean {
  return timingSafeEqual(secretDigest(presented), digest);
}

/** Constant-time equality of two strings (both hashed with SHA-256, then timingSafeEqual) — no length leak. */
export function safeEqual(a: string, b: string): boolean {
  return matchesDigest(a, secretDigest(b));
}

/** The token of an `Authorization: Bearer <token>` header; UnauthorizedError code `unauthorized` when missing or malformed. */
export function bearerToken(authorizationHeader: string | undefined): string {
  const match = typeof authorizationHeader === 'string' ? BEARER.exec(authorizationHeader.trim()) : null;
  const token = match?.[1];
  if (token === undefined) {
    const message = 'an "Authorization: Bearer <token>" header is required';
    throw new UnauthorizedError('unauthorized', message, { details: [{ field: 'authorization', message }] });
  }
  return token;
}

/** Checks an HTTP Authorization header against the admin token; throws UnauthorizedError code `unauthorized` (missing/malformed header) or `invalid_token`. */
export function checkBearerToken(authorizationHeader: string | undefined, expectedToken: string): void {
  // An empty configured token would be a misconfiguration, never a reason to let requests in.
  if (typeof expectedToken !== 'string' || expectedToken === '') {
    throw new ConfigError('the admin token is not configured');
  }
  const token = bearerToken(authorizationHeader);
  if (!safeEqual(token, expectedToken)) {
    const message = 'the bearer token is not valid';
    throw new UnauthorizedError('invalid_token', message, { details: [{ field: 'authorization', message }] });
  }
}

/** A new random admin token (32 bytes, base64url, prefixed `wha_`). */
export function generateAdminToken(): string {
  return ADMIN_TOKEN_PREFIX + randomBytes(ADMIN_TOKEN_BYTES).toString('base64url');
}
