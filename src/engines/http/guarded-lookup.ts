/**
 * The SSRF guard at connect time. A subscription's URL was checked when it was saved, but DNS may
 * have changed since (DNS rebinding): every connection resolves the host again here and refuses it
 * when any of its addresses is one the net policy forbids. The addresses checked are the addresses
 * connected to: the socket connects to what this lookup hands back, and nothing resolves the name a
 * second time. Host names only: Node does not call a `lookup` for IP literals, so the client checks
 * those itself (`refuseTarget`).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { Resolver } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { assertDeliveryAddress } from '../../common/delivery-url.ts';
import { Gate } from '../../common/gate.ts';

/**
 * Resolves a host name to every address, shaped like `dns.lookup` with `all: true`. The system
 * resolver (`getaddrinfo`) in production; the seam lets tests answer from a DNS server of their own.
 */
export type AddressLookup = (
  hostname: string,
  options: LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

const systemLookup: AddressLookup = (hostname, options, callback) => dnsLookup(hostname, options, callback);

type LookupCallback = Parameters<AddressLookup>[2];

/** How long one DNS query waits for its answer (ms), and how many times it is sent. */
export const DNS_TIMEOUT_MS = 2000;
export const DNS_TRIES = 2;

/**
 * How delivery targets are resolved by default. With `allowInsecure` (dev mode): the system resolver
 * (`getaddrinfo`), `/etc/hosts` first, at most MAX_CONCURRENT_LOOKUPS at once. Otherwise DNS first,
 * asked directly (`dns.Resolver`, c-ares), which holds no thread while a name server keeps it
 * waiting: partners whose name servers never answer cannot hold up the lookups of the others, as
 * they did when every lookup took one of two `getaddrinfo` slots (a lookup there runs until the
 * system resolver gives up, 10–30 s, whatever the connection's timeout). The system resolver still
 * answers names DNS does not know (`/etc/hosts`), and `localhost`.
 */
export function defaultAddressLookup(allowInsecure: boolean): AddressLookup {
  const system = atMostAtOnce(systemLookup, MAX_CONCURRENT_LOOKUPS);
  if (allowInsecure) return system;
  return dnsThenSystem(resolverLookup(new Resolver({ timeout: DNS_TIMEOUT_MS, tries: DNS_TRIES })), system);
}

/**
 * Every A and AAAA address of a name from `resolver` (A first), shaped like `dns.lookup` with
 * `all: true`; one family's ENODATA is no error when the other has addresses.
 */
export function resolverLookup(resolver: Resolver): AddressLookup {
  return (hostname, options, callback) => {
    const family = options.family;
    const families =
      family === 4 || family === 'IPv4' ? [4] : family === 6 || family === 'IPv6' ? [6] : [4, 6];
    Promise.allSettled(
      families.map((f) => (f === 4 ? resolver.resolve4(hostname) : resolver.resolve6(hostname))),
    ).then((settled) => {
      const addresses = settled.flatMap((s) =>
        s.status === 'fulfilled' ? s.value.map((address) => ({ address, family: isIP(address) })) : [],
      );
      if (addresses.length > 0) {
        callback(null, addresses);
        return;
      }
      const reasons = settled.flatMap((s) =>
        s.status === 'rejected' ? [s.reason as NodeJS.ErrnoException] : [],
      );
      callback(reasons.find((r) => r.code !== 'ENODATA') ?? reasons[0] ?? null, []);
    });
  };
}

/** What DNS answers when a name server does not: these never go on to the system resolver. */
const UNANSWERED = new Set(['ETIMEOUT', 'ECANCELLED', 'EDESTRUCTION']);

/**
 * `dns` first; `system` only for `localhost` names and when DNS failed without waiting (the name
 * is not in DNS, as a name of `/etc/hosts`; no name server reachable). A name server that keeps
 * DNS waiting is never asked again through `system`, whose lookups hold a thread of libuv's pool.
 */
export function dnsThenSystem(dns: AddressLookup, system: AddressLookup): AddressLookup {
  return (hostname, options, callback) => {
    const name = hostname.toLowerCase().replace(/\.$/, '');
    if (name === 'localhost' || name.endsWith('.localhost')) {
      system(hostname, options, callback);
      return;
    }
    dns(hostname, options, (err, addresses) => {
      if (!err || UNANSWERED.has(err.code ?? '')) callback(err, addresses);
      else system(hostname, options, callback);
    });
  };
}

/**
 * A `lookup` for `net.connect`/`tls.connect` that refuses forbidden addresses (unless allowInsecure).
 * `resolveAll` only finds the addresses; every one of them passes the guard before any is returned.
 * Connections opened while a name is being resolved wait for the same lookup (`sharedInFlight`).
 */
export function guardedLookup(
  allowInsecure: boolean,
  resolveAll: AddressLookup = defaultAddressLookup(allowInsecure),
): LookupFunction {
  const resolveShared = sharedInFlight(resolveAll);
  return (hostname, options, callback) => {
    resolveShared(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, []);
        return;
      }
      const refused = refusal(hostname, addresses, allowInsecure);
      if (refused !== undefined) callback(refused, []);
      else if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

/**
 * System lookups (`getaddrinfo`) of different names running at once, at most. They run on libuv's
 * thread pool (4 threads by default), which also runs the WAL flushes that acknowledge every write:
 * names that keep it waiting must not take all of it. Lookups beyond this wait their turn (their
 * connection's connect timeout still bounds each attempt).
 */
export const MAX_CONCURRENT_LOOKUPS = 2;

/** `resolveAll` with at most `max` calls in flight; the others queue in order. */
export function atMostAtOnce(resolveAll: AddressLookup, max: number): AddressLookup {
  const gate = new Gate(max);
  return (hostname, options, callback) => {
    void gate.run(
      () =>
        new Promise<void>((release) => {
          let settled = false;
          const done: LookupCallback = (err, addresses) => {
            if (settled) return;
            settled = true;
            release();
            callback(err, addresses);
          };
          try {
            resolveAll(hostname, options, done);
          } catch (err) {
            done(err as NodeJS.ErrnoException, []);
          }
        }),
    );
  };
}

/**
 * Concurrent lookups of one name share one call of `resolveAll`. `getaddrinfo` holds one of libuv's
 * threads (4 by default) until it answers, however long the partner's name server keeps it waiting:
 * a burst of connections to such a name would otherwise take every thread, and stall the lookups of
 * every other partner (and the process's file I/O) meanwhile. Nothing is cached past the answer.
 */
function sharedInFlight(resolveAll: AddressLookup): AddressLookup {
  const waiting = new Map<string, LookupCallback[]>();
  return (hostname, options, callback) => {
    const key = `${options.family ?? 0}/${options.hints ?? 0}/${hostname}`;
    const callbacks = waiting.get(key);
    if (callbacks !== undefined) {
      callbacks.push(callback);
      return;
    }
    waiting.set(key, [callback]);
    const answer: LookupCallback = (err, addresses) => {
      const all = waiting.get(key) ?? [];
      waiting.delete(key);
      for (const waiter of all) waiter(err, addresses);
    };
    try {
      resolveAll(hostname, options, answer);
    } catch (err) {
      answer(err as NodeJS.ErrnoException, []); // invalid arguments: `dns.lookup` throws instead of calling back
    }
  };
}

/**
 * Why the answers must not be connected to, or undefined. The name is refused as a whole, like
 * `validateDeliveryUrl` does: a mix of public and private answers is the rebinding trick (the
 * connection would try them in turn). No answer at all is "not found", never an empty success.
 */
function refusal(
  hostname: string,
  addresses: LookupAddress[],
  allowInsecure: boolean,
): NodeJS.ErrnoException | undefined {
  if (addresses.length === 0) {
    return Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND', hostname });
  }
  try {
    for (const a of addresses) assertDeliveryAddress(a.address, hostname, allowInsecure);
    return undefined;
  } catch (refused) {
    return refused as NodeJS.ErrnoException;
  }
}

/**
 * Why a URL must not be contacted before any socket is opened, or undefined when it may be:
 * a scheme other than https (http only in dev mode), or an IP literal the net policy forbids.
 */
export function refuseTarget(url: URL, allowInsecure: boolean): string | undefined {
  const allowed = allowInsecure ? ['https:', 'http:'] : ['https:'];
  if (!allowed.includes(url.protocol)) {
    const scheme = url.protocol.slice(0, -1);
    return allowInsecure
      ? `the ${scheme} scheme is not supported; the endpoint must use https or http`
      : `plain ${scheme}:// endpoints are refused outside dev mode (WEBHOOKS_DEV=1); the endpoint must use https`;
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (isIP(host) === 0) return undefined;
  try {
    assertDeliveryAddress(host, url.hostname, allowInsecure);
    return undefined;
  } catch (refused) {
    return (refused as Error).message;
  }
}
