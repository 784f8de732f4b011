/**
 * Validation of a partner's delivery endpoint. Checked once when a subscription is saved
 * (`validateDeliveryUrl`) and again at connect time (`assertDeliveryAddress`), because a host name
 * that resolved to a public address yesterday may point at the metadata service today (DNS rebinding).
 * I/O only through the injected resolver, so the rules stay testable without a network.
 */
import { isIP } from 'node:net';
import { TransientError, UnprocessableError, ValidationError } from './errors.ts';
import { forbiddenAddressReason } from './net-policy.ts';

/** Resolves a host name to all its IP addresses (A and AAAA). Rejects when the name does not resolve. */
export type HostResolver = (hostname: string) => Promise<string[]>;

export interface DeliveryUrlOptions {
  /** Dev mode (`WEBHOOKS_DEV=1`): also `http:`, and any address, without resolving. */
  allowInsecure: boolean;
  resolve: HostResolver;
  /** The request field reported in errors; default `url`. */
  field?: string;
}

const MAX_URL_LENGTH = 2048;

/** Checks a partner endpoint URL and returns it normalised (WHATWG URL href); throws a platform error naming the field. */
export async function validateDeliveryUrl(raw: unknown, options: DeliveryUrlOptions): Promise<string> {
  const field = options.field ?? 'url';
  const url = parseUrl(raw, field);
  const allowed = options.allowInsecure ? ['https:', 'http:'] : ['https:'];
  if (!allowed.includes(url.protocol)) {
    const expected = options.allowInsecure ? 'https or http' : 'https';
    throw invalid('url_not_https', field, `must use ${expected}, not ${url.protocol.slice(0, -1)}`);
  }
  if (url.username !== '' || url.password !== '') {
    throw invalid('url_invalid', field, "must not contain credentials; put them in the subscription's auth");
  }
  if (url.port === '0') throw invalid('url_invalid', field, 'must not use port 0');
  url.hash = ''; // never sent over the wire; keeping it would only make equal endpoints look different
  if (!options.allowInsecure) await assertPublicHost(url.hostname, options.resolve, field);
  return url.href;
}

/** Throws UnprocessableError `url_forbidden_address` when the address is forbidden (unless allowInsecure). */
export function assertDeliveryAddress(ip: string, host: string, allowInsecure: boolean): void {
  if (allowInsecure) return;
  checkAddress(ip, host, 'url');
}

function parseUrl(raw: unknown, field: string): URL {
  if (typeof raw !== 'string') throw invalid('url_invalid', field, 'must be a string');
  if (raw.length > MAX_URL_LENGTH) {
    throw invalid('url_invalid', field, `must be at most ${MAX_URL_LENGTH} characters`);
  }
  const url = URL.parse(raw);
  if (url === null) throw invalid('url_invalid', field, 'must be an absolute URL');
  return url;
}

async function assertPublicHost(hostname: string, resolve: HostResolver, field: string): Promise<void> {
  const literal = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (isIP(literal) !== 0) {
    checkAddress(literal, hostname, field);
    return;
  }
  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname; // `localhost.` is `localhost`
  const nameReason = forbiddenNameReason(name);
  if (nameReason !== undefined) {
    throw forbidden(
      field,
      `host \`${hostname}\` is a ${nameReason} name, which is not an allowed delivery target`,
    );
  }
  let addresses: string[];
  try {
    addresses = await resolve(name);
  } catch (cause) {
    // A name server that timed out or failed for now (503) is not a name that does not exist (422).
    if (cause instanceof TransientError) throw cause;
    throw unresolvable(field, hostname, cause);
  }
  if (addresses.length === 0) throw unresolvable(field, hostname, undefined);
  for (const address of addresses) checkAddress(address, hostname, field);
}

/** Names that point inside the host or the cloud by convention, whatever DNS says. */
function forbiddenNameReason(name: string): string | undefined {
  if (name === 'localhost' || name.endsWith('.localhost')) return 'loopback';
  if (name === 'metadata.google.internal') return 'cloud metadata';
  if (name.endsWith('.internal')) return 'internal';
  return undefined;
}

function checkAddress(ip: string, host: string, field: string): void {
  const reason = forbiddenAddressReason(ip);
  if (reason === undefined) return;
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  const subject = bare === ip ? `address ${ip}` : `host \`${host}\` resolves to ${ip}`;
  throw forbidden(field, `${subject} (${reason}), which is not an allowed delivery target`);
}

function invalid(code: string, field: string, message: string): ValidationError {
  return new ValidationError(code, `${field} ${message}`, { details: [{ field, message }] });
}

function forbidden(field: string, message: string): UnprocessableError {
  return new UnprocessableError('url_forbidden_address', message, { details: [{ field, message }] });
}

function unresolvable(field: string, host: string, cause: unknown): UnprocessableError {
  const message = `host \`${host}\` does not resolve`;
  return new UnprocessableError('url_unresolvable', message, { details: [{ field, message }], cause });
}
