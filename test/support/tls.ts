/**
 * A self-signed certificate for test HTTPS servers on 127.0.0.1 / localhost / ::1. Clients trust it
 * by passing `cert` as their CA. Generated once per test process: key generation is the slow part.
 */
import { generate } from 'selfsigned';

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
export async function generateCert(commonName = 'localhost'): Promise<TestCertificate> {
  const notBeforeDate = new Date(Date.now() - 60_000); // tolerate small clock differences
  const notAfterDate = new Date(Date.now() + 7 * 86_400_000);
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}
