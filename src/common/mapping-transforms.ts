/**
 * Value transforms of the mapping language (`"transform": "uppercase"` …). Each either converts the
 * value or says why it cannot; `null` passes through every transform unchanged, so an explicit null
 * in the event stays null for the partner.
 */
import type { JsonValue } from './json.ts';

export const TRANSFORMS = [
  'uppercase',
  'lowercase',
  'trim',
  'string',
  'number',
  'boolean',
  'unixSeconds',
  'isoTime',
] as const;
export type TransformName = (typeof TRANSFORMS)[number];

export type TransformResult = { ok: true; value: JsonValue } | { ok: false; problem: string };

/** Epoch values at or above this magnitude are milliseconds (1e11 s would be the year 5138). */
const MILLISECONDS_THRESHOLD = 1e11;
const ISO_TIME = /^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([Zz]|[+-]\d{2}:?\d{2})?)?$/;

/** Converts `value` with the named transform, or explains why it cannot. */
export function applyTransform(name: TransformName, value: JsonValue): TransformResult {
  if (value === null) return { ok: true, value };
  switch (name) {
    case 'uppercase':
      return onString(name, value, (text) => text.toUpperCase());
    case 'lowercase':
      return onString(name, value, (text) => text.toLowerCase());
    case 'trim':
      return onString(name, value, (text) => text.trim());
    case 'string':
      return { ok: true, value: typeof value === 'string' ? value : stringOf(value) };
    case 'number':
      return toNumber(value);
    case 'boolean':
      return toBoolean(value);
    case 'unixSeconds':
      return toUnixSeconds(value);
    case 'isoTime':
      return toIsoTime(value);
  }
}

function onString(name: string, value: JsonValue, convert: (text: string) => string): TransformResult {
  if (typeof value !== 'string') return fail(name, value, 'expects a string');
  return { ok: true, value: convert(value) };
}

function stringOf(value: JsonValue): string {
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function toNumber(value: JsonValue): TransformResult {
  if (typeof value === 'number') return { ok: true, value };
  if (typeof value === 'boolean') return { ok: true, value: value ? 1 : 0 };
  if (typeof value === 'string' && value.trim() !== '') {
    const parsed = Number(value.trim());
    if (Number.isFinite(parsed)) return { ok: true, value: parsed };
  }
  return fail('number', value, 'cannot convert to a number');
}

function toBoolean(value: JsonValue): TransformResult {
  if (typeof value === 'boolean') return { ok: true, value };
  const text = typeof value === 'string' ? value.trim().toLowerCase() : value;
  if (text === 'true' || text === '1' || text === 1) return { ok: true, value: true };
  if (text === 'false' || text === '0' || text === 0) return { ok: true, value: false };
  return fail('boolean', value, 'cannot convert to a boolean');
}

function toUnixSeconds(value: JsonValue): TransformResult {
  const millis = typeof value === 'number' ? epochMillis(value) : parseIsoTime(value);
  if (millis === undefined) return fail('unixSeconds', value, 'expects an ISO 8601 time or an epoch number');
  // `|| 0`: a negative fraction of a second floors to -0, which JSON cannot carry (it reads back as 0).
  return { ok: true, value: Math.floor(millis / 1000) || 0 };
}

function toIsoTime(value: JsonValue): TransformResult {
  let millis: number | undefined;
  if (typeof value === 'number') millis = epochMillis(value);
  else if (typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim()))
    millis = epochMillis(Number(value));
  else millis = parseIsoTime(value);
  if (millis === undefined)
    return fail('isoTime', value, 'expects epoch seconds, epoch milliseconds or an ISO time');
  return { ok: true, value: new Date(millis).toISOString() };
}

/** Seconds or milliseconds since the epoch, told apart by magnitude. */
function epochMillis(value: number): number | undefined {
  if (!Number.isFinite(value)) return undefined;
  const millis = Math.abs(value) >= MILLISECONDS_THRESHOLD ? value : value * 1000;
  return Number.isNaN(new Date(millis).getTime()) ? undefined : Math.trunc(millis);
}

/** ISO 8601 / RFC 3339 date or date-time; a time without an offset is taken as UTC, never local. */
function parseIsoTime(value: JsonValue): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = ISO_TIME.exec(value.trim());
  if (!match) return undefined;
  const [, date, time, offset] = match;
  if (!isCalendarDate(date!)) return undefined;
  let text = date!;
  if (time !== undefined) {
    const zone = offset === undefined ? 'Z' : offset.replace(/^([+-]\d{2})(\d{2})$/, '$1:$2');
    text = `${date}T${time}${zone.toUpperCase()}`;
  }
  const millis = Date.parse(text);
  return Number.isNaN(millis) ? undefined : millis;
}

/** Date.parse rolls 2024-02-30 over to March; a partner should never get a different day. */
function isCalendarDate(date: string): boolean {
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  const probe = new Date(Date.UTC(year, month - 1, day));
  return probe.getUTCMonth() === month - 1 && probe.getUTCDate() === day;
}

function fail(name: string, value: JsonValue, reason: string): TransformResult {
  const shown = JSON.stringify(value);
  const preview = shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
  return { ok: false, problem: `${name} ${reason}, got ${preview}` };
}
