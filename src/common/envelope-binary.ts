/**
 * CloudEvents HTTP binary content mode: attributes in `ce-*` headers, data in the body.
 * Header values are decoded as the HTTP binding requires: quoted-string unescaping first, then
 * one round of percent-decoding into strict UTF-8.
 */

import type { EventEnvelope } from './envelope-model.ts';
import { isJsonContentType } from './envelope-rules.ts';
import { parseJsonText, withHttpTraceContext } from './envelope-structured.ts';
import { buildEnvelope, envelopeError } from './envelope-validate.ts';
import type { ErrorDetail } from './errors.ts';
import { UnsupportedMediaTypeError } from './errors.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Decodes one `ce-*` header value; returns the problem as `{ error }` when it cannot be decoded. */
export function decodeHeaderValue(raw: string): string | { error: string } {
  let value = asReceivedText(raw.trim());
  if (value.startsWith('"')) {
    const unquoted = unquote(value);
    if (unquoted === undefined) return { error: 'malformed quoted string' };
    value = unquoted;
  }
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const hex = value.slice(i + 1, i + 3);
    if (value[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
      continue;
    }
    // A "%" not followed by two hex digits, or a raw non-ASCII character, comes from a sender that
    // did not percent-encode (older SDKs); it is taken literally rather than refused.
    const codePoint = value.codePointAt(i)!;
    const char = String.fromCodePoint(codePoint);
    bytes.push(...encoder.encode(char));
    i += char.length - 1;
  }
  try {
    return utf8.decode(new Uint8Array(bytes));
  } catch {
    return { error: 'percent-encoded bytes are not valid UTF-8' };
  }
}

/**
 * Node's HTTP server hands header values over as Latin-1, one character per byte: raw UTF-8 from a
 * sender that did not percent-encode (`ce-subject: café`) arrives as `cafÃ©`. A value whose
 * characters are all bytes, some above ASCII, and whose bytes are valid UTF-8 is read as UTF-8;
 * anything else (real Latin-1 text, a value from a runtime that decoded it already) stays as it is.
 */
function asReceivedText(value: string): string {
  if (!/[\x80-\xff]/.test(value) || /[\u0100-\uffff]/.test(value)) return value;
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

// RFC 7230 quoted-string: the whole value is "...", with backslash escaping the next character.
function unquote(value: string): string | undefined {
  let out = '';
  for (let i = 1; i < value.length; i++) {
    const char = value[i]!;
    if (char === '"') return i === value.length - 1 ? out : undefined;
    if (char === '\\') {
      i++;
      if (i >= value.length) return undefined;
      out += value[i];
    } else {
      out += char;
    }
  }
  return undefined;
}

/**
 * How a protocol binding carries a binary-mode event: the prefix of its attribute headers, how a
 * header value is decoded, and what carries the data and its content type (for messages and fields).
 */
export interface BinaryBinding {
  prefix: string;
  decode: (raw: string) => string | { error: string };
  /** The field name of the data (`body`, `value`) and how messages name it and the content type. */
  dataField: string;
  dataCarrier: string;
  contentTypeCarrier: string;
}

/** The HTTP binding: `ce-*` headers, quoted and percent-encoded; the data in the body. */
const HTTP_BINARY: BinaryBinding = {
  prefix: 'ce-',
  decode: decodeHeaderValue,
  dataField: 'body',
  dataCarrier: 'the body',
  contentTypeCarrier: 'the Content-Type header',
};

/**
 * A binary-mode event from its headers (names lower-cased) and its data text, as `binding` carries
 * them: JSON data only, `<prefix>datacontenttype` and `<prefix>data` refused (the content type and
 * the data carry them). Throws the contract's errors naming the header or the data field.
 */
export function parseBinaryMode(
  binding: BinaryBinding,
  headers: Record<string, string | undefined>,
  body: string,
): EventEnvelope {
  const contentType = headers['content-type'];
  if (contentType !== undefined && !isJsonContentType(contentType)) {
    const message = `only JSON event data is supported, not "${contentType}": use application/json or */*+json`;
    throw new UnsupportedMediaTypeError('unsupported_media_type', message, {
      details: [{ field: 'content-type', message }],
    });
  }
  const details: ErrorDetail[] = [];
  const attributes = new Map<string, unknown>();
  for (const [name, raw] of Object.entries(headers)) {
    if (raw === undefined || !name.startsWith(binding.prefix)) continue;
    const attribute = name.slice(binding.prefix.length);
    if (attribute === 'datacontenttype' || attribute === 'data') {
      const carrier = attribute === 'data' ? binding.dataCarrier : binding.contentTypeCarrier;
      details.push({
        field: name,
        message: `${name} must not be sent in binary mode: ${carrier} carries it`,
      });
      continue;
    }
    const decoded = binding.decode(raw);
    if (typeof decoded === 'string') attributes.set(attribute, decoded);
    else details.push({ field: name, message: `${name}: ${decoded.error}` });
  }
  if (contentType !== undefined) attributes.set('datacontenttype', contentType.trim());
  const hasData = body.trim() !== '';
  const data = hasData ? parseJsonText(body, binding.dataField) : undefined;
  const fieldOf = (attribute: string) =>
    attribute === 'datacontenttype'
      ? 'content-type'
      : attribute === 'data'
        ? binding.dataField
        : `${binding.prefix}${attribute}`;
  const envelope = buildEnvelope({ attributes, hasData, data }, fieldOf, details);
  if (!envelope || details.length > 0) throw envelopeError(details);
  return envelope;
}

/** Parses a binary-mode event from HTTP headers (lower-case names) and the raw body. */
export function parseBinaryEvent(headers: Record<string, string | undefined>, body: string): EventEnvelope {
  const lowered: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers)) lowered[name.toLowerCase()] = value;
  return withHttpTraceContext(parseBinaryMode(HTTP_BINARY, lowered, body), lowered);
}
