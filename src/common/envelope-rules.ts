/**
 * Pure syntax rules of CloudEvents 1.0 attributes and of the W3C trace context, used by the
 * envelope parsers. Each returns a verdict; none throws.
 */

/** CloudEvents attribute names: lower-case ASCII letters and digits, at most 20 characters. */
export const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

/** The CloudEvents Integer type is a signed 32-bit integer. */
export const INT32_MIN = -2_147_483_648;
export const INT32_MAX = 2_147_483_647;

const EVENT_TYPE = /^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{1,64})$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(.*)$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;
const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** Splits `<domain>.<event>`; undefined when the type does not have that shape. */
export function splitEventType(type: string): { domain: string; event: string } | undefined {
  const match = EVENT_TYPE.exec(type);
  if (!match) return undefined;
  return { domain: match[1]!, event: match[2]! };
}

/** W3C traceparent syntax check. */
export function isValidTraceparent(value: string): boolean {
  const match = TRACEPARENT.exec(value);
  if (!match) return false;
  const [, version, traceId, parentId, , rest] = match;
  if (version === 'ff' || /^0+$/.test(traceId!) || /^0+$/.test(parentId!)) return false;
  // Version 00 has exactly four fields; later versions may append "-<more>" that we must tolerate.
  if (version === '00') return rest === '';
  return rest === '' || rest!.startsWith('-');
}

/**
 * The longest `tracestate` passed on. W3C asks vendors to propagate at least 512 characters and lets
 * them drop a longer one; a longer one would also eat into the header budget of the partner's server.
 */
export const MAX_TRACESTATE_LENGTH = 512;
const TRACESTATE_MAX_MEMBERS = 32;
const TRACESTATE_KEY = /^(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** W3C tracestate syntax check: up to 32 `key=value` members (empty ones allowed), at most 512 characters. */
export function isValidTracestate(value: string): boolean {
  if (value.length > MAX_TRACESTATE_LENGTH) return false;
  const members = value.split(',');
  if (members.length > TRACESTATE_MAX_MEMBERS) return false;
  return members.every((member) => {
    const trimmed = member.replace(/^[ \t]+|[ \t]+$/g, '');
    if (trimmed === '') return true;
    const equals = trimmed.indexOf('=');
    return (
      equals > 0 &&
      TRACESTATE_KEY.test(trimmed.slice(0, equals)) &&
      TRACESTATE_VALUE.test(trimmed.slice(equals + 1))
    );
  });
}

/** True for an RFC 3339 date-time with real calendar values (leap years, leap second 60). */
export function isRfc3339(value: string): boolean {
  const match = RFC3339.exec(value);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as number[];
  const offsetHour = match[7] === undefined ? 0 : Number(match[7]);
  const offsetMinute = match[8] === undefined ? 0 : Number(match[8]);
  if (month! < 1 || month! > 12 || day! < 1 || day! > daysInMonth(year!, month!)) return false;
  return hour! <= 23 && minute! <= 59 && second! <= 60 && offsetHour <= 23 && offsetMinute <= 59;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** The bare, lower-cased media type of a Content-Type value (parameters dropped). */
export function mediaTypeOf(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

/** True when a content type declares JSON data: `*\/json` or `*\/*+json`, as the JSON format defines. */
export function isJsonContentType(contentType: string): boolean {
  const mediaType = mediaTypeOf(contentType);
  if (!MEDIA_TYPE.test(mediaType)) return false;
  const subtype = mediaType.slice(mediaType.indexOf('/') + 1);
  return subtype === 'json' || subtype.endsWith('+json');
}

/** True for an absolute URI (has a scheme), as `dataschema` requires. */
export function isAbsoluteUri(value: string): boolean {
  return URI_SCHEME.test(value) && !/\s/.test(value);
}

/** True when a string is allowed by the CloudEvents String type (no control chars, no lone surrogates). */
export function isCloudEventsString(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code <= 0x1f || (code >= 0x7f && code <= 0x9f)) return false;
  }
  return value.isWellFormed();
}

/**
 * The schema version named by a `dataschema` URI: its last path segment `v<N>` or `<N>`
 * (`https://x/schemas/orders/created/v3`, `urn:webhooks:orders.created:v3`); undefined otherwise.
 */
export function schemaVersionFromDataschema(dataschema: string): number | undefined {
  const withoutSuffix = dataschema.replace(/[?#].*$/, '').replace(/\/+$/, '');
  const lastSegment = withoutSuffix.split(/[/:]/).pop() ?? '';
  const match = /^[vV]?(\d{1,9})$/.exec(lastSegment);
  if (!match) return undefined;
  const version = Number(match[1]);
  return version >= 1 ? version : undefined;
}

/** A positive schema version from the `schemaversion` extension (integer or digit string). */
export function parseSchemaVersion(value: unknown): number | undefined {
  const version = typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : value;
  if (typeof version !== 'number' || !Number.isInteger(version)) return undefined;
  return version >= 1 && version <= INT32_MAX ? version : undefined;
}
