/**
 * Which IP addresses a webhook may be delivered to. Pure: no DNS, no sockets. The guard against
 * SSRF: a partner endpoint must never make the platform call its own network, loopback or the
 * cloud metadata service. Addresses that embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are
 * judged by that IPv4 address, since that is where the packets end up.
 */
import { isIP } from 'node:net';

interface Rule {
  family: 4 | 6;
  base: bigint;
  prefix: number;
  /** Why the range is refused; absent when the range is judged by its embedded IPv4 address. */
  reason?: string;
  /** Bit offset (from the most significant bit) of the embedded IPv4 address. */
  embeddedAt?: number;
}

const METADATA = 'cloud metadata';

/** The most specific ranges come first: the first match decides. */
const RULES: readonly Rule[] = [
  rule('169.254.169.254/32', METADATA), // AWS, GCP, Azure, OpenStack IMDS
  rule('169.254.170.2/32', METADATA), // AWS ECS task metadata
  rule('100.100.100.200/32', METADATA), // Alibaba Cloud
  rule('168.63.129.16/32', METADATA), // Azure wire server: a public-looking address only reachable in Azure
  rule('0.0.0.0/8', 'unspecified'),
  rule('10.0.0.0/8', 'private'),
  rule('100.64.0.0/10', 'shared address space (CGNAT)'),
  rule('127.0.0.0/8', 'loopback'),
  rule('169.254.0.0/16', 'link-local'),
  rule('172.16.0.0/12', 'private'),
  rule('192.0.0.0/24', 'IETF protocol assignment'),
  rule('192.0.2.0/24', 'documentation'),
  rule('192.88.99.0/24', '6to4 relay anycast'),
  rule('192.168.0.0/16', 'private'),
  rule('198.18.0.0/15', 'benchmarking'),
  rule('198.51.100.0/24', 'documentation'),
  rule('203.0.113.0/24', 'documentation'),
  rule('224.0.0.0/4', 'multicast'),
  rule('255.255.255.255/32', 'broadcast'),
  rule('240.0.0.0/4', 'reserved'),
  rule('::/128', 'unspecified'),
  rule('::1/128', 'loopback'),
  embedding('::ffff:0:0/96', 96),
  embedding('::ffff:0:0:0/96', 96), // IPv4-translated (SIIT): `::ffff:0:7f00:1` is 127.0.0.1
  rule('::/96', 'IPv4-compatible (deprecated)'),
  embedding('64:ff9b::/96', 96),
  rule('64:ff9b:1::/48', 'NAT64 local use'),
  rule('100::/64', 'discard'),
  rule('2001::/32', 'Teredo'), // its IPv4 addresses are hidden (XORed) inside: refused whole
  rule('2001:2::/48', 'benchmarking'),
  rule('2001:10::/28', 'ORCHID (deprecated)'),
  rule('2001:20::/28', 'ORCHIDv2 (not routable)'),
  rule('2001:db8::/32', 'documentation'),
  rule('3fff::/20', 'documentation'),
  rule('5f00::/16', 'SRv6 segment identifiers'),
  embedding('2002::/16', 16),
  rule('fd00:ec2::254/128', METADATA), // AWS IMDS over IPv6
  rule('fc00::/7', 'private (unique local)'),
  rule('fe80::/10', 'link-local'),
  rule('fec0::/10', 'site-local (deprecated)'),
  rule('ff00::/8', 'multicast'),
];

/** Why an address must not be a delivery target, or undefined when it is a public unicast address. */
export function forbiddenAddressReason(ip: string): string | undefined {
  const parsed = parseAddress(ip);
  if (parsed === undefined) return 'not an IP address';
  return reasonFor(parsed.family, parsed.value);
}

function reasonFor(family: 4 | 6, value: bigint): string | undefined {
  const bits = family === 4 ? 32n : 128n;
  for (const r of RULES) {
    if (r.family !== family) continue;
    const shift = bits - BigInt(r.prefix);
    if (value >> shift !== r.base >> shift) continue;
    if (r.embeddedAt === undefined) return r.reason;
    const v4 = (value >> (bits - BigInt(r.embeddedAt) - 32n)) & 0xffff_ffffn;
    return reasonFor(4, v4);
  }
  return undefined;
}

/** Accepts `1.2.3.4`, `::1`, `[::1]`, `fe80::1%eth0` and `[fe80::1%25eth0]`; undefined otherwise. */
function parseAddress(raw: string): { family: 4 | 6; value: bigint } | undefined {
  if (typeof raw !== 'string') return undefined;
  let text = raw.trim();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const family = isIP(text);
  if (family === 4) return { family, value: parseIPv4(text) };
  if (family === 6) return { family, value: parseIPv6(text) };
  return undefined;
}

/** Input already validated by `isIP`. */
function parseIPv4(text: string): bigint {
  return text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/** Input already validated by `isIP`, zone removed. */
function parseIPv6(text: string): bigint {
  let hex = text;
  const lastColon = hex.lastIndexOf(':');
  const tail = hex.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIPv4(tail);
    hex = `${hex.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = hex.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  const groups = rest === undefined ? headGroups : [...headGroups, ...zeros, ...restGroups];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}

function rule(cidr: string, reason: string): Rule {
  return { ...parseCidr(cidr), reason };
}

function embedding(cidr: string, embeddedAt: number): Rule {
  return { ...parseCidr(cidr), embeddedAt };
}

function parseCidr(cidr: string): { family: 4 | 6; base: bigint; prefix: number } {
  const [address = '', prefix = ''] = cidr.split('/');
  const parsed = parseAddress(address);
  if (parsed === undefined) throw new Error(`bad CIDR in net policy: ${cidr}`);
  return { family: parsed.family, base: parsed.value, prefix: Number(prefix) };
}
