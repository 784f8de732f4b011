/**
 * `webhooks receive`: a local partner endpoint for trying the platform out. It verifies Standard
 * Webhooks signatures like a real partner would, can answer failures or slowly to show retries and
 * timeouts, and serves HTTPS (TLS 1.3 only) with a throw-away self-signed certificate.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ValidationError } from '../../common/errors.ts';
import { decodeSigningSecret, verifyWebhook } from '../../common/signing.ts';
import { localhostCertificate } from './local-cert.ts';

/** How the receiver listens and answers; every field has the CLI's default. */
export interface ReceiverOptions {
  port?: number;
  host?: string;
  /** Requests are verified against all of them (rotation); none means "accept unverified". */
  secrets?: readonly string[];
  tls?: boolean;
  /** Where to write the certificate PEM with `tls`; default a temp file removed on close. */
  certFile?: string;
  status?: number;
  failFirst?: number;
  failStatus?: number;
  delayMs?: number;
  toleranceSeconds?: number;
  /**
   * How many records `received` keeps (oldest dropped; default 10,000), so a long run does not grow
   * without bound. `webhooks receive` keeps none: it prints each one, and a record holds its body
   * (up to 5 MB).
   */
  keep?: number;
  onRequest?: (record: ReceivedRequest) => void;
}

/** What the receiver saw and answered for one request (one JSON line on the CLI). */
export interface ReceivedRequest {
  time: string;
  webhookId: string | null;
  timestamp: number | null;
  /** null when no secret was configured. */
  verified: boolean | null;
  status: number;
  reason?: string;
  path: string;
  headers: { traceparent: string | null; authorization: boolean };
  body: unknown;
}

/** A running receiver. */
export interface Receiver {
  url: string;
  port: number;
  certPem?: string;
  certFile?: string;
  received: ReceivedRequest[];
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 5 * 1024 * 1024;

/** Starts the receiver and resolves once it listens; secrets are checked first (ValidationError). */
export async function startReceiver(options: ReceiverOptions = {}): Promise<Receiver> {
  const secrets = [...(options.secrets ?? [])];
  for (const [i, secret] of secrets.entries()) decodeSigningSecret(secret, `secrets.${i}`);
  const host = options.host ?? '127.0.0.1';
  const keep = options.keep ?? 10_000;
  const received: ReceivedRequest[] = [];
  let failuresLeft = options.failFirst ?? 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') return answer(res, 405, { code: 'method_not_allowed', message: 'POST only' });
    const time = new Date().toISOString();
    const raw = await readBody(req);
    if (raw === undefined) return answer(res, 413, { code: 'payload_too_large', message: 'body over 5 MB' });
    const header = (name: string) => {
      const value = req.headers[name];
      return typeof value === 'string' ? value : null;
    };
    const check =
      secrets.length === 0
        ? { verified: null }
        : checkSignature(
            { id: header('webhook-id'), timestamp: header('webhook-timestamp') },
            header('webhook-signature'),
            raw,
            secrets,
            options.toleranceSeconds,
          );
    let status = options.status ?? 204;
    let error: { code: string; message: string } | undefined;
    if (check.verified === false) {
      status = 401;
      error = { code: check.code, message: check.reason };
    } else if (failuresLeft > 0) {
      failuresLeft -= 1;
      status = options.failStatus ?? 500;
      error = { code: 'simulated_failure', message: 'failing on purpose (--fail-first)' };
    }
    const timestamp = header('webhook-timestamp') ?? '';
    const record: ReceivedRequest = {
      time,
      webhookId: header('webhook-id'),
      timestamp: /^\d{1,15}$/.test(timestamp) ? Number(timestamp) : null,
      verified: check.verified,
      status,
      ...(error && check.verified === false ? { reason: error.message } : {}),
      path: req.url ?? '/',
      headers: { traceparent: header('traceparent'), authorization: req.headers.authorization !== undefined },
      body: parseBody(raw),
    };
    if (options.delayMs) await sleep(options.delayMs);
    answer(res, status, error);
    received.push(record);
    if (received.length > keep) received.shift();
    options.onRequest?.(record);
  };

  const tls = options.tls ? await certificate(options.certFile) : undefined;
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => res.destroy());
  };
  const server = tls
    ? createHttpsServer({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.3' }, listener)
    : createHttpServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new Error(`cannot listen on ${host}:${options.port ?? 9000}: ${err.message}`)),
    );
    server.listen(options.port ?? 9000, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `${tls ? 'https' : 'http'}://${shownHost}:${port}`,
    port,
    ...(tls ? { certPem: tls.cert, certFile: tls.file } : {}),
    received,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      if (tls?.tempDir) await rm(tls.tempDir, { recursive: true, force: true });
    },
  };
}

/** `webhooks receive [...]`: runs the receiver until SIGINT/SIGTERM, one JSON line per request. */
export async function receiveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      secret: { type: 'string', multiple: true },
      tls: { type: 'boolean' },
      'cert-file': { type: 'string' },
      status: { type: 'string' },
      'fail-first': { type: 'string' },
      'fail-status': { type: 'string' },
      'delay-ms': { type: 'string' },
      quiet: { type: 'boolean' },
    },
  });
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const receiver = await startReceiver({
    port: intOption(values.port, '--port', 9000, 0, 65535),
    host: values.host ?? '127.0.0.1',
    secrets: values.secret ?? [],
    tls: values.tls ?? false,
    ...(values['cert-file'] ? { certFile: values['cert-file'] } : {}),
    status: intOption(values.status, '--status', 204, 200, 599),
    failFirst: intOption(values['fail-first'], '--fail-first', 0, 0, Number.MAX_SAFE_INTEGER),
    failStatus: intOption(values['fail-status'], '--fail-status', 500, 200, 599),
    delayMs: intOption(values['delay-ms'], '--delay-ms', 0, 0, 3_600_000),
    keep: 0,
    ...(values.quiet ? {} : { onRequest: (record: ReceivedRequest) => out(JSON.stringify(record)) }),
  });
  out(`receiving on ${receiver.url}`);
  if (receiver.certFile) {
    out(`certificate (self-signed, 127.0.0.1 and localhost, TLS 1.3 only): ${receiver.certFile}`);
    out(`  trust it in the platform, e.g. NODE_EXTRA_CA_CERTS=${receiver.certFile}`);
  }
  if (!values.secret?.length) out('no --secret given: requests are accepted unverified');
  const stop = () => {
    receiver.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

function answer(res: ServerResponse, status: number, error?: { code: string; message: string }): void {
  if (status === 204 || status === 304) {
    res.writeHead(status).end();
    return;
  }
  const body = JSON.stringify(error ? { error } : { ok: true });
  res.writeHead(status, { 'content-type': 'application/json' }).end(body);
}

// Resolves undefined when the body is over the limit, so the caller answers 413 instead of buffering it.
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseBody(raw: string): unknown {
  if (raw === '') return null;
  try {
    return JSON.parse(raw);
  } catch {
    return raw; // a partner endpoint sees whatever arrives; showing it beats hiding it
  }
}

async function certificate(
  certFile: string | undefined,
): Promise<{ key: string; cert: string; file: string; tempDir?: string }> {
  const pems = await localhostCertificate();
  const tempDir = certFile ? undefined : await mkdtemp(join(tmpdir(), 'webhooks-receive-'));
  const file = certFile ?? join(tempDir!, 'cert.pem');
  await writeFile(file, pems.cert);
  return { key: pems.key, cert: pems.cert, file, ...(tempDir ? { tempDir } : {}) };
}

type SignatureCheck = { verified: true } | { verified: false; code: string; reason: string };

// Checked in steps (rather than verifyWebhook's bare boolean) so a 401 says which part was wrong.
function checkSignature(
  message: { id: string | null; timestamp: string | null },
  signatureHeader: string | null,
  body: string,
  secrets: readonly string[],
  toleranceSeconds = 300,
): SignatureCheck {
  if (!message.id || !message.timestamp || !signatureHeader) {
    const reason = 'the webhook-id, webhook-timestamp and webhook-signature headers are required';
    return { verified: false, code: 'webhook_headers_missing', reason };
  }
  const timestamp = /^\d{1,15}$/.test(message.timestamp) ? Number(message.timestamp) : Number.NaN;
  const skew = Math.floor(Date.now() / 1000) - timestamp;
  if (!(Math.abs(skew) <= toleranceSeconds)) {
    const reason = Number.isNaN(timestamp)
      ? `webhook-timestamp must be unix seconds, got "${message.timestamp}"`
      : `webhook-timestamp is ${Math.abs(skew)} s ${skew > 0 ? 'old' : 'in the future'} (tolerance ${toleranceSeconds} s)`;
    return { verified: false, code: 'webhook_timestamp_invalid', reason };
  }
  const ok = verifyWebhook({ id: message.id, timestamp, body, signatureHeader, secrets, toleranceSeconds });
  if (ok) return { verified: true };
  const reason = `no v1 signature matches any of the ${secrets.length} secret(s)`;
  return { verified: false, code: 'webhook_signature_invalid', reason };
}

function intOption(
  raw: string | undefined,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return fallback;
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= min && value <= max)) {
    const message = `${name} must be a whole number from ${min} to ${max}, got "${raw}"`;
    throw new ValidationError('option_invalid', message, { details: [{ field: name, message }] });
  }
  return value;
}
