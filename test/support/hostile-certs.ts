/**
 * Certificates hostile (or merely broken) endpoints present: a test CA the delivery client trusts,
 * and leaf certificates that fail verification for one reason each — a host name they do not cover,
 * an expiry in the past, no trusted issuer at all. Generated once per test process (EC P-256).
 */
import { generate } from 'selfsigned';
import type { TestCertificate } from './tls.ts';

/** The host name the test DNS server points at loopback; `valid` covers it. */
export const PARTNER_HOST = 'partner.hostile.test';

export interface HostileCertificates {
  /** PEM of the CA the client is given as `ca`: everything below is checked against it. */
  ca: string;
  /** Signed by the CA for PARTNER_HOST, localhost and 127.0.0.1: the one that passes. */
  valid: TestCertificate;
  /** Signed by the CA, but only for `elsewhere.example`. */
  wrongHost: TestCertificate;
  /** Signed by the CA for localhost and 127.0.0.1, expired yesterday. */
  expired: TestCertificate;
  /** Self-signed for localhost and 127.0.0.1: no trusted issuer. */
  selfSigned: TestCertificate;
  /** Signed for localhost and 127.0.0.1 by a CA the client does not trust. */
  untrustedIssuer: TestCertificate;
}

const DAY_MS = 86_400_000;
const LOOPBACK_NAMES = [
  { type: 2 as const, value: 'localhost' },
  { type: 7 as const, ip: '127.0.0.1' },
];

let cached: Promise<HostileCertificates> | undefined;

/** The process-wide set (same keys and certificates on every call). */
export function hostileCertificates(): Promise<HostileCertificates> {
  cached ??= generateAll();
  return cached;
}

async function generateAll(): Promise<HostileCertificates> {
  const [ca, strangerCa] = await Promise.all([authority('Hostile Test CA'), authority('Stranger CA')]);
  const now = Date.now();
  const [valid, wrongHost, expired, selfSigned, untrustedIssuer] = await Promise.all([
    leaf(ca, [{ type: 2, value: PARTNER_HOST }, ...LOOPBACK_NAMES], now - 60_000, now + 7 * DAY_MS),
    leaf(ca, [{ type: 2, value: 'elsewhere.example' }], now - 60_000, now + 7 * DAY_MS),
    leaf(ca, LOOPBACK_NAMES, now - 30 * DAY_MS, now - DAY_MS),
    leaf(undefined, LOOPBACK_NAMES, now - 60_000, now + 7 * DAY_MS),
    leaf(strangerCa, LOOPBACK_NAMES, now - 60_000, now + 7 * DAY_MS),
  ]);
  return { ca: ca.cert, valid, wrongHost, expired, selfSigned, untrustedIssuer };
}

type AltName = { type: 2; value: string } | { type: 7; ip: string };

async function authority(commonName: string): Promise<TestCertificate> {
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - 60_000),
    notAfterDate: new Date(Date.now() + 30 * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

/** A server certificate for `altNames`, signed by `issuer` (self-signed without one). */
async function leaf(
  issuer: TestCertificate | undefined,
  altNames: AltName[],
  notBefore: number,
  notAfter: number,
): Promise<TestCertificate> {
  const pems = await generate([{ name: 'commonName', value: 'hostile endpoint' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: new Date(notBefore),
    notAfterDate: new Date(notAfter),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
    ...(issuer === undefined ? {} : { ca: issuer }),
  });
  return { key: pems.private, cert: pems.cert };
}
