/**
 * A self-signed certificate for test HTTPS servers on 127.0.0.1 / localhost / ::1. Clients trust it
 * by passing `cert` as their CA. Generated once per test process: key generation is the slow part.
 */
import { localhostCertificate } from '../../src/runtimes/cli/local-cert.ts';

/** PEM-encoded private key and certificate, ready for `https.createServer({ key, cert })`. */
export interface TestCertificate {
  key: string;
  cert: string;
}

let cached: Promise<TestCertificate> | undefined;

/** The process-wide test certificate (same key and cert on every call). */
export function selfSignedCert(): Promise<TestCertificate> {
  cached ??= generateCert();
  return cached;
}

/** A fresh certificate, for tests that need one the client does not trust. */
export function generateCert(commonName = 'localhost'): Promise<TestCertificate> {
  return localhostCertificate(commonName);
}
