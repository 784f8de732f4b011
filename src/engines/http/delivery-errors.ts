/**
 * Turns what undici and Node throw into the port's `DeliveryErrorKind` and a message a partner's
 * operator can act on. Messages are built from error codes, hosts and ports only: never from the
 * request (header values can be secrets) nor from the URL's path or query (they can hold tokens).
 */
import type { DeliveryErrorKind, DeliveryRequest } from '../../common/ports/delivery-client.ts';

/** A classified delivery failure, ready for `DeliveryResult`. */
export interface DeliveryFailure {
  kind: DeliveryErrorKind;
  message: string;
}

interface ErrorLike {
  code?: unknown;
  message?: unknown;
  name?: unknown;
  hostname?: unknown;
  address?: unknown;
  port?: unknown;
  errors?: unknown;
}

const CONNECT_CODES: Record<string, string> = {
  ECONNREFUSED: 'the connection was refused',
  ECONNRESET: 'the connection was reset by the endpoint',
  UND_ERR_SOCKET: 'the endpoint closed the connection before a complete response',
  ECONNABORTED: 'the connection was aborted',
  EPIPE: 'the endpoint closed the connection while the request was being sent',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  EHOSTDOWN: 'the host is down',
  EADDRNOTAVAIL: 'no local address is available to connect from',
};

const DNS_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EAI_NONAME',
  'ENODATA',
  'ESERVFAIL',
  'ENONAME',
]);

/** OpenSSL alerts and Node codes that mean the two sides share no protocol version. */
const TLS_VERSION_CODES = new Set([
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
  'ERR_SSL_TLSV1_ALERT_INAPPROPRIATE_FALLBACK',
]);

const CERT_CODES: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the certificate is self-signed and not trusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'the certificate chain ends in an untrusted self-signed root',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the certificate is not signed by a trusted authority',
  UNABLE_TO_GET_ISSUER_CERT: 'the certificate issuer is unknown',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the certificate issuer is not trusted',
  CERT_HAS_EXPIRED: 'the certificate has expired',
  CERT_NOT_YET_VALID: 'the certificate is not yet valid',
  CERT_REVOKED: 'the certificate has been revoked',
  CERT_SIGNATURE_FAILURE: 'the certificate signature is invalid',
  CERT_UNTRUSTED: 'the certificate is not trusted',
  CERT_REJECTED: 'the certificate was rejected',
  INVALID_CA: 'a certificate in the chain is not a valid CA',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the certificate does not match the host name',
  HOSTNAME_MISMATCH: 'the certificate does not match the host name',
};

/** The code of the error a request is cut off with when its whole deadline passed. */
export const DEADLINE_CODE = 'webhooks_deadline';

/** The code of the error a request is cut off with when the endpoint sends 1xx responses without end. */
export const INFORMATIONAL_FLOOD_CODE = 'webhooks_informational_flood';

/** The most bytes of response headers the client reads (undici's `maxHeaderSize`); more is an error. */
export const MAX_RESPONSE_HEADER_BYTES = 16 * 1024;

/** Classifies an error thrown by a delivery attempt. */
export function describeDeliveryError(err: unknown, timeouts: DeliveryRequest['timeouts']): DeliveryFailure {
  const e = primaryError(err);
  const code = typeof e.code === 'string' ? e.code : '';
  switch (code) {
    case 'url_forbidden_address':
      return { kind: 'forbidden_address', message: String(e.message) };
    case 'UND_ERR_CONNECT_TIMEOUT':
      return {
        kind: 'timeout',
        message: `connecting to ${target(e)}timed out after ${timeouts.connectMs} ms`,
      };
    case 'UND_ERR_HEADERS_TIMEOUT':
      return { kind: 'timeout', message: `no response headers within ${timeouts.headersMs} ms` };
    case 'UND_ERR_BODY_TIMEOUT':
      return { kind: 'timeout', message: `the response body stalled for more than ${timeouts.bodyMs} ms` };
    case DEADLINE_CODE:
      return { kind: 'timeout', message: String(e.message) };
    case INFORMATIONAL_FLOOD_CODE:
      return { kind: 'network', message: String(e.message) };
    case 'ETIMEDOUT':
      return { kind: 'timeout', message: `the connection to ${target(e)}timed out (ETIMEDOUT)` };
  }
  const connect = CONNECT_CODES[code];
  if (connect !== undefined) return { kind: 'connect', message: `${connect} (${code}${at(e)})` };
  if (DNS_CODES.has(code)) return { kind: 'dns', message: dnsMessage(code, e) };
  const tls = tlsMessage(code);
  if (tls !== undefined) return { kind: 'tls', message: `TLS handshake failed: ${tls}` };
  return { kind: 'network', message: otherMessage(code, e) };
}

/** Node's happy-eyeballs connect reports an AggregateError; its first attempt says what went wrong. */
function primaryError(err: unknown): ErrorLike {
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as ErrorLike;
  if (typeof e.code === 'string') return e;
  if (Array.isArray(e.errors) && e.errors.length > 0) return primaryError(e.errors[0]);
  const cause = (e as { cause?: unknown }).cause;
  if (typeof cause === 'object' && cause !== null) return primaryError(cause);
  return e;
}

function tlsMessage(code: string): string | undefined {
  if (TLS_VERSION_CODES.has(code)) return `the endpoint does not support TLS 1.3 (${code})`;
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return `the endpoint did not answer with TLS; is it plain HTTP on this port? (${code})`;
  }
  const cert = CERT_CODES[code];
  if (cert !== undefined) return `${cert} (${code})`;
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code.startsWith('CERT_')) {
    return `${code}`;
  }
  return undefined;
}

function dnsMessage(code: string, e: ErrorLike): string {
  const host = typeof e.hostname === 'string' ? `\`${e.hostname}\`` : 'the host';
  if (code === 'EAI_AGAIN' || code === 'ESERVFAIL') return `resolving ${host} failed temporarily (${code})`;
  return `${host} does not resolve (${code})`;
}

function otherMessage(code: string, e: ErrorLike): string {
  if (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED')
    return `the delivery client is closed (${code})`;
  if (code === 'UND_ERR_HEADERS_OVERFLOW') {
    return `the response headers are larger than ${MAX_RESPONSE_HEADER_BYTES / 1024} KiB (${code})`;
  }
  if (code.startsWith('HPE_') || e.name === 'HTTPParserError') return invalidResponseMessage(code, e);
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return 'the response body did not match its content-length (UND_ERR_RES_CONTENT_LENGTH_MISMATCH)';
  }
  // Node and undici messages name codes, hosts and header names, never header values; capped all the same.
  const text = typeof e.message === 'string' ? e.message.slice(0, 200) : 'unknown error';
  const label = code !== '' ? code : typeof e.name === 'string' ? e.name : 'Error';
  return `the request failed: ${label}: ${text}`;
}

/** llhttp's reason names what it expected (`Expected HTTP/`), never what the endpoint sent. */
function invalidResponseMessage(code: string, e: ErrorLike): string {
  const reason = typeof e.message === 'string' && e.message !== '' ? `: ${e.message.slice(0, 200)}` : '';
  return `the endpoint sent an invalid HTTP response (${code !== '' ? code : 'HTTPParserError'})${reason}`;
}

/** `host:port ` when the error names them (connect errors do), else empty. */
function target(e: ErrorLike): string {
  const where = at(e);
  return where === '' ? 'the endpoint ' : `${where.slice(1)} `;
}

function at(e: ErrorLike): string {
  if (typeof e.address !== 'string') return '';
  return typeof e.port === 'number' ? ` ${e.address}:${e.port}` : ` ${e.address}`;
}
