/**
 * The system resolver behind the `HostResolver` port. Uses `getaddrinfo` (via `dns.lookup`) rather
 * than querying DNS directly, so that `/etc/hosts` and the search domains are honoured exactly as the
 * HTTP client will honour them when it connects.
 */
import { lookup } from 'node:dns/promises';
import { withDeadline } from '../common/deadline.ts';
import type { HostResolver } from '../common/delivery-url.ts';
import { NotFoundError, TransientError } from '../common/errors.ts';

/** getaddrinfo failures that may go away on retry, as opposed to "this name does not exist". */
const TRANSIENT_CODES = new Set(['EAI_AGAIN', 'ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED']);

/** Looks up every address of a name; the seam lets tests stand in for a slow or failing system resolver. */
export type LookupAll = (hostname: string) => Promise<Array<{ address: string }>>;

const systemLookup: LookupAll = (hostname) => lookup(hostname, { all: true, verbatim: true });

/** Builds a resolver returning every A and AAAA address of a name; rejects after `timeoutMs`. */
export function createDnsResolver(timeoutMs = 3000, lookupAll: LookupAll = systemLookup): HostResolver {
  return async (hostname) => {
    try {
      const answers = await withDeadline(
        lookupAll(hostname),
        timeoutMs,
        () => new TransientError('dns_timeout', `resolving \`${hostname}\` timed out after ${timeoutMs} ms`),
      );
      return answers.map((answer) => answer.address);
    } catch (cause) {
      throw translate(hostname, cause);
    }
  };
}

function translate(hostname: string, cause: unknown): Error {
  if (cause instanceof TransientError) return cause;
  const code = (cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) {
    return new TransientError('dns_unavailable', `resolving \`${hostname}\` failed (${code})`, { cause });
  }
  const reason = typeof code === 'string' ? code : 'unknown error';
  return new NotFoundError('dns_not_found', `host \`${hostname}\` does not resolve (${reason})`, { cause });
}
