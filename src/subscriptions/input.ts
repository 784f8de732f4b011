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

/**
 * Headers that belong to the connection or to the framing of the message (RFC 9110 §7.6.1, RFC 9112):
 * the HTTP client sets or refuses them, so as a custom auth header every attempt would fail.
 * `content-encoding` belongs here too: the body is sent unencoded, a partner told otherwise cannot read it.
 */
const CONNECTION_HEADERS = new Set([
  'connection',
  'keep-alive',
  'expect',
  'upgrade',
  'te',
  'trailer',
  'transfer-encoding',
  'content-length',
  'content-encoding',
  'host',
  'http2-settings',
]);
/**
 * Headers the platform sets on every delivery: the Standard Webhooks `webhook-*` headers (a custom
 * one would override the signature a partner verifies), the correlation and trace context, and
 * `content-type` and `user-agent` (the body is JSON; partners allowlist and log the platform by its
 * user agent).
 */
const PLATFORM_HEADERS = new Set([
  'content-type',
  'user-agent',
  'x-correlation-id',
  'traceparent',
  'tracestate',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
/**
 * Valid header text: visible ASCII and Latin-1 (obs-text), with spaces and tabs inside only —
 * no line breaks, nothing beyond U+00FF (HTTP clients refuse both), no whitespace at the ends
 * (the partner's server would strip it).
 */
const HEADER_VALUE = /^(?=[^\t ])[\t\x20-\x7e\x80-\xff]{1,4096}(?<=[^\t ])$/;
const HEADER_VALUE_RULE = 'header text: printable Latin-1, no line breaks, no whitespace at either end';

/** Why a custom auth header cannot have this name; undefined when it can. */
export function reservedHeaderProblem(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (CONNECTION_HEADERS.has(lower) || lower.startsWith('proxy-')) {
    return `\`${name}\` is a connection or framing header the HTTP client manages; it cannot carry credentials`;
  }
  if (PLATFORM_HEADERS.has(lower) || lower.startsWith('webhook-')) {
    return `\`${name}\` is set by the platform on every delivery`;
  }
  return undefined;
}

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
  const value = (key: string, pattern = HEADER_VALUE, rule = HEADER_VALUE_RULE) =>
    auth.string(key, { required: true, max: 4096, pattern, rule });
  switch (type) {
    case 'bearer': {
      const token = value('token');
      return token === undefined ? undefined : { type, token };
    }
    case 'basic': {
      // Sent base64-encoded, so only the separator and line breaks are refused (as before).
      const username = value('username', /^[^:\r\n]{1,256}$/, 'text without ":" or line breaks');
      const password = value(
        'password',
        /^[\t\x20-\x7e\x80-\xff]{1,4096}$/,
        'printable text without line breaks',
      );
      return username === undefined || password === undefined ? undefined : { type, username, password };
    }
    case 'header': {
      const name = auth.string('name', {
        required: true,
        pattern: HEADER_NAME,
        rule: 'a valid HTTP header name',
      });
      const reserved = name === undefined ? undefined : reservedHeaderProblem(name);
      if (reserved) auth.problem('name', reserved, 'reserved_header');
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
