/**
 * moto's server (an HTTP emulator of AWS APIs: KMS here) for tests, on a free loopback port.
 * `node tools/aws/moto.ts` runs it on its own and prints `endpoint <url>`.
 *
 * The endpoint returned is a small front server that forwards every request to moto unchanged,
 * except that
 * - it counts requests per operation (`requests('Decrypt')`): what the code under test really sent,
 *   SDK retries included;
 * - it refuses KMS cryptographic operations on a key that is not enabled, as KMS does
 *   (`DisabledException`, `KMSInvalidStateException` for a key pending deletion): moto 5.2.6
 *   records DisableKey but still encrypts and decrypts with the key. The key is the request's
 *   `KeyId`, or for a Decrypt without one the key id moto writes at the start of its ciphertext blobs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { forwardRequest } from '../forward.ts';
import { pythonTool } from '../python/env.ts';

/** A running moto (behind the counting front): its endpoint, request counts, and how to stop it. */
export interface Moto {
  endpoint: string;
  /** Requests received for an operation (e.g. `Decrypt`), or for all of them. */
  requests(operation?: string): number;
  /** Starts the counts again from zero. */
  resetCounts(): void;
  stop(): Promise<void>;
}

/** How long moto may take to answer its first request. */
const START_TIMEOUT_MS = 60_000;
/** KMS operations that need the key enabled. */
const KEY_OPERATIONS = new Set([
  'Encrypt',
  'Decrypt',
  'ReEncrypt',
  'GenerateDataKey',
  'GenerateDataKeyWithoutPlaintext',
  'GenerateDataKeyPair',
  'GenerateDataKeyPairWithoutPlaintext',
  'GenerateMac',
  'VerifyMac',
  'Sign',
  'Verify',
]);
/** The length of the key id at the start of moto's ciphertext blobs (moto/kms/utils.py). */
const MOTO_BLOB_KEY_ID_LEN = 36;

/** Starts moto's server on a free loopback port, with the counting front before it. */
export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const child = spawn(pythonTool('moto_server'), ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  // moto logs every request: read it (a full pipe would stall moto), keep the end for errors.
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  });
  try {
    await waitUntilAnswering(child, port, () => output);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const counts = new Map<string, number>();
  const front = createServer((req, res) => {
    handle(req, res, port, counts).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'InternalFailure', message: String(err) }));
    });
  });
  const frontPort = await listen(front);
  return {
    endpoint: `http://127.0.0.1:${frontPort}`,
    requests: (operation) =>
      operation === undefined
        ? [...counts.values()].reduce((a, b) => a + b, 0)
        : (counts.get(operation) ?? 0),
    resetCounts: () => counts.clear(),
    stop: async () => {
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  motoPort: number,
  counts: Map<string, number>,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const target = String(req.headers['x-amz-target'] ?? '');
  const operation = target.includes('.') ? target.slice(target.indexOf('.') + 1) : target || 'other';
  counts.set(operation, (counts.get(operation) ?? 0) + 1);
  if (target.startsWith('TrentService.') && KEY_OPERATIONS.has(operation)) {
    const refusal = await keyStateRefusal(req, body, motoPort);
    if (refusal) {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(refusal));
      return;
    }
  }
  await forwardRequest(req, body, res, motoPort);
}

/** KMS's answer to a cryptographic operation on a key that is not enabled; undefined when it is. */
async function keyStateRefusal(
  req: IncomingMessage,
  body: Buffer,
  motoPort: number,
): Promise<{ __type: string; message: string } | undefined> {
  let input: { KeyId?: unknown; CiphertextBlob?: unknown };
  try {
    input = JSON.parse(body.toString('utf8')) as typeof input;
  } catch {
    return undefined; // moto answers a malformed request itself
  }
  let keyId = typeof input.KeyId === 'string' ? input.KeyId : undefined;
  if (!keyId && typeof input.CiphertextBlob === 'string') {
    keyId = Buffer.from(input.CiphertextBlob, 'base64').subarray(0, MOTO_BLOB_KEY_ID_LEN).toString('utf8');
  }
  if (!keyId) return undefined;
  const described = await call(motoPort, req, 'DescribeKey', { KeyId: keyId });
  const metadata = (described.body as { KeyMetadata?: { Arn?: string; KeyState?: string } }).KeyMetadata;
  if (described.status !== 200 || !metadata) return undefined; // an unknown key: moto says so itself
  const arn = metadata.Arn ?? keyId;
  if (metadata.KeyState === 'Disabled')
    return { __type: 'DisabledException', message: `${arn} is disabled.` };
  if (metadata.KeyState === 'PendingDeletion')
    return { __type: 'KMSInvalidStateException', message: `${arn} is pending deletion.` };
  return undefined;
}

/** One KMS call to moto, signed as the request being handled was (moto reads the region from it). */
async function call(
  motoPort: number,
  req: IncomingMessage,
  operation: string,
  input: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://127.0.0.1:${motoPort}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': `TrentService.${operation}`,
      'x-amz-date': String(req.headers['x-amz-date'] ?? '20240101T000000Z'),
      authorization: String(req.headers.authorization ?? ''),
    },
    body: JSON.stringify(input),
  });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

async function waitUntilAnswering(child: ChildProcess, port: number, output: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  for (;;) {
    if (exited) throw new Error(`moto_server exited before answering:\n${output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/moto-api/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`moto_server did not answer within ${START_TIMEOUT_MS} ms:\n${output()}`);
    await sleep(100);
  }
}

async function freePort(): Promise<number> {
  const probe = createServer();
  const port = await listen(probe);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

if (import.meta.main) {
  const running = await startMoto();
  process.stdout.write(`endpoint ${running.endpoint}\n`);
  const stop = () => void running.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
