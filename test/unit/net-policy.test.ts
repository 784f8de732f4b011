import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forbiddenAddressReason } from '../../src/common/net-policy.ts';

const forbidden: ReadonlyArray<[ip: string, reason: string]> = [
  ['0.0.0.0', 'unspecified'],
  ['0.255.255.255', 'unspecified'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['100.64.0.1', 'shared address space (CGNAT)'],
  ['100.127.255.255', 'shared address space (CGNAT)'],
  ['127.0.0.1', 'loopback'],
  ['127.255.0.9', 'loopback'],
  ['169.254.0.1', 'link-local'],
  ['169.254.169.254', 'cloud metadata'],
  ['169.254.170.2', 'cloud metadata'],
  ['100.100.100.200', 'cloud metadata'],
  ['168.63.129.16', 'cloud metadata'],
  ['172.16.0.1', 'private'],
  ['172.31.255.254', 'private'],
  ['192.0.0.8', 'IETF protocol assignment'],
  ['192.0.2.1', 'documentation'],
  ['192.88.99.1', '6to4 relay anycast'],
  ['192.168.1.1', 'private'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['::ffff:10.1.2.3', 'private'],
  ['::ffff:169.254.169.254', 'cloud metadata'],
  ['::127.0.0.1', 'IPv4-compatible (deprecated)'],
  ['64:ff9b::127.0.0.1', 'loopback'],
  ['64:ff9b::a9fe:a9fe', 'cloud metadata'],
  ['64:ff9b:1::1', 'NAT64 local use'],
  ['2002:7f00:1::1', 'loopback'],
  ['2002:c0a8:101::', 'private'],
  ['fc00::1', 'private (unique local)'],
  ['fdff:ffff::1', 'private (unique local)'],
  ['fd00:ec2::254', 'cloud metadata'],
  ['fe80::1', 'link-local'],
  ['febf:ffff::1', 'link-local'],
  ['fec0::1', 'site-local (deprecated)'],
  ['ff02::1', 'multicast'],
  ['ff05::1:3', 'multicast'],
  ['2001:db8::1', 'documentation'],
  ['2001:db8:ffff::1', 'documentation'],
  ['100::1', 'discard'],
  ['100::ffff:ffff:ffff:ffff', 'discard'],
  ['::ffff:0:7f00:1', 'loopback'], // IPv4-translated (SIIT) 127.0.0.1
  ['::ffff:0:a9fe:a9fe', 'cloud metadata'],
  ['2001::1', 'Teredo'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
  ['2001:2::1', 'benchmarking'],
  ['2001:10::1', 'ORCHID (deprecated)'],
  ['2001:20::1', 'ORCHIDv2 (not routable)'],
  ['3fff::1', 'documentation'],
  ['3fff:fff:ffff::1', 'documentation'],
  ['5f00::1', 'SRv6 segment identifiers'],
];

const allowed: readonly string[] = [
  '1.1.1.1',
  '8.8.8.8',
  '9.9.9.9',
  '11.0.0.1',
  '100.63.255.255',
  '100.128.0.0',
  '172.15.255.255',
  '172.32.0.0',
  '169.253.255.255',
  '192.0.1.255',
  '192.169.0.1',
  '198.17.255.255',
  '198.20.0.0',
  '223.255.255.255',
  '2606:4700:4700::1111',
  '2001:4860:4860::8888',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
  '2002:808:808::1',
  '100:0:0:1::1',
  '2001:db9::1',
  '2001:1::1', // PCP anycast: globally reachable
  '2001:3::1', // AMT
  '2001:4860::1',
  '3fff:1000::1',
  '::ffff:0:808:808', // IPv4-translated public 8.8.8.8
];

describe('forbiddenAddressReason', () => {
  for (const [ip, reason] of forbidden) {
    it(`refuses ${ip} as ${reason}`, () => {
      assert.equal(forbiddenAddressReason(ip), reason);
    });
  }

  for (const ip of allowed) {
    it(`allows the public address ${ip}`, () => {
      assert.equal(forbiddenAddressReason(ip), undefined);
    });
  }

  it('ignores an IPv6 zone id', () => {
    assert.equal(forbiddenAddressReason('fe80::1%eth0'), 'link-local');
  });

  it('ignores a percent-encoded zone id inside brackets', () => {
    assert.equal(forbiddenAddressReason('[fe80::1%25eth0]'), 'link-local');
  });

  it('accepts a bracketed IPv6 address', () => {
    assert.equal(forbiddenAddressReason('[::1]'), 'loopback');
  });

  it('accepts upper-case hex digits', () => {
    assert.equal(forbiddenAddressReason('FD00:EC2::254'), 'cloud metadata');
  });

  for (const text of ['localhost', '', '127.1', '0x7f.0.0.1', '1.2.3.256', '::1::2', '[::1', 'example.com']) {
    it(`reports ${JSON.stringify(text)} as not an IP address`, () => {
      assert.equal(forbiddenAddressReason(text), 'not an IP address');
    });
  }
});
