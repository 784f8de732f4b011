/**
 * Reading the parts of a subscription request that are more than plain fields: delivery auth,
 * signing options, filter, mapping and retry overrides. Each problem names its field.
 */
import type { ErrorDetail } from '../common/errors.ts';
import { validateFilter } from '../common/filter.ts';
import type { InputReader } from '../common/input.ts';
import type { JsonObject } from '../common/json.ts';
import { validateMapping } from '../common/mapping.ts';
import type { DeliveryAuth as DeliveryAuthInput, RetryPolicy } from '../common/model.ts';
import { parseRetryPolicy } from '../common/retry.ts';
import { decodeSigningSecret } from '../common/signing.ts';

export type { DeliveryAuth as DeliveryAuthInput } from '../common/model.ts';

// Headers the platform sets itself or that would break the request; a custom auth header may not be one of them.
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
  'traceparent',
  'tracestate',
  'user-agent',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]{1,4096}$/;

/** Reads `auth` (null clears it on PATCH). */
export function readAuth(input: InputReader): DeliveryAuthInput | null | undefined {
  if (input.raw('auth') === null) return null;
  const auth = input.nested('auth', ['type', 'token', 'username', 'password', 'name', 'value']);
  if (!auth) return undefined;
  const type = auth.oneOf('type', ['bearer', 'basic', 'header'] as const, { required: true });
  const allowed: Record<string, string[]> = {
    bearer: ['token'],
    basic: ['username', 'password'],
    header: ['name', 'value'],
  };
  if (type) {
    for (const key of ['token', 'username', 'password', 'name', 'value']) {
      if (auth.has(key) && !allowed[type]!.includes(key))
        auth.problem(key, `is not used by ${type} auth`, 'unknown_field');
    }
  }
  const value = (key: string, pattern = HEADER_VALUE) =>
    auth.string(key, { required: true, max: 4096, pattern, rule: 'printable text without line breaks' });
  switch (type) {
    case 'bearer': {
      const token = value('token');
      return token === undefined ? undefined : { type, token };
    }
    case 'basic': {
      const username = value('username', /^[^:\r\n]{1,256}$/);
      const password = value('password');
      return username === undefined || password === undefined ? undefined : { type, username, password };
    }
    case 'header': {
      const name = auth.string('name', {
        required: true,
        pattern: HEADER_NAME,
        rule: 'a valid HTTP header name',
      });
      if (name && RESERVED_HEADERS.has(name.toLowerCase()))
        auth.problem('name', `\`${name}\` is set by the platform`);
      const headerValue = value('value');
      return name === undefined || headerValue === undefined ? undefined : { type, name, value: headerValue };
    }
    default:
      return undefined;
  }
}

/** Reads `signing`: `{ enabled?: boolean, secret?: "whsec_…" }` (bring-your-own secret). */
export function readSigning(input: InputReader): { enabled?: boolean; secret?: string } | undefined {
  const signing = input.nested('signing', ['enabled', 'secret']);
  if (!signing) return undefined;
  const enabled = signing.boolean('enabled');
  const secret = signing.string('secret');
  if (secret !== undefined) signing.add(signingSecretProblems(secret, signing.field('secret')));
  return { ...(enabled !== undefined ? { enabled } : {}), ...(secret !== undefined ? { secret } : {}) };
}

/** Problems with a bring-your-own signing secret (`whsec_` + base64 of 24..64 bytes). */
export function signingSecretProblems(secret: string, field: string): ErrorDetail[] {
  try {
    decodeSigningSecret(secret, field);
    return [];
  } catch (err) {
    return (
      (err as { details?: ErrorDetail[] }).details ?? [{ field, message: 'is not a valid signing secret' }]
    );
  }
}

/** Reads `filter` (null clears it), validated by the filter language. */
export function readFilter(input: InputReader): JsonObject | null | undefined {
  if (input.raw('filter') === null) return null;
  const filter = input.object('filter');
  if (filter) input.add(validateFilter(filter, input.field('filter')));
  return filter;
}

/** Reads `mapping` (null clears it), validated by the mapping language. */
export function readMapping(input: InputReader): JsonObject | null | undefined {
  if (input.raw('mapping') === null) return null;
  const mapping = input.object('mapping');
  if (mapping) input.add(validateMapping(mapping, input.field('mapping')));
  return mapping;
}

/** Reads `retry` overrides (null clears them). */
export function readRetry(input: InputReader): RetryPolicy | null | undefined {
  if (input.raw('retry') === null) return null;
  return parseRetryPolicy(input.raw('retry'), input.field('retry'), input.details);
}
