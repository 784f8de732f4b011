/**
 * The SSRF guard at connect time. A subscription's URL was checked when it was saved, but DNS may
 * have changed since (DNS rebinding): every connection resolves the host again here and refuses it
 * when any of its addresses is one the net policy forbids. Host names only: Node does not call a
 * `lookup` for IP literals, so the client checks those itself (`refuseTarget`).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { assertDeliveryAddress } from '../../common/delivery-url.ts';

/** A `lookup` for `net.connect`/`tls.connect` that refuses forbidden addresses (unless allowInsecure). */
export function guardedLookup(allowInsecure: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) {
        callback(err, []);
        return;
      }
      try {
        // Refuse the name as a whole, like `validateDeliveryUrl`: a mix of public and private answers is the rebinding trick.
        for (const a of addresses) assertDeliveryAddress(a.address, hostname, allowInsecure);
      } catch (refused) {
        callback(refused as NodeJS.ErrnoException, []);
        return;
      }
      const first = addresses[0];
      if (options.all) callback(null, addresses);
      else if (first === undefined)
        callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []);
      else callback(null, first.address, first.family);
    });
  };
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
