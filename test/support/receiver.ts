/**
 * A partner endpoint for end-to-end tests: a real HTTPS (TLS 1.3 by default) or HTTP server on
 * 127.0.0.1 that verifies every request with the public `standardwebhooks` package and answers
 * whatever the test scripts.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SecureVersion } from 'node:tls';
import { Webhook } from 'standardwebhooks';
import { selfSignedCert } from './tls.ts';

export interface ReceivedDelivery {
  at: number;
  path: string;
  headers: Record<string, string | undefined>;
  body: string;
  json: any;
  /** Verified by standardwebhooks with the receiver's secret (null when it has none). */
  verified: boolean | null;
  verifyError?: string;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  delayMs?: number;
  /** The answer is held back until this settles (after `delayMs`, if any): a partner that hangs until the test lets it go. */
  until?: Promise<unknown>;
}

export interface TestReceiver {
  url: string;
  received: ReceivedDelivery[];
  /** The secret to verify with (set it after the subscription returns one). */
  secret?: string;
  /** Waits until `count` requests arrived (or fails after timeoutMs). */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedDelivery[]>;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  tls?: boolean;
  /** TLS versions the server accepts (default TLS 1.3 only). */
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  /** The answer to the n-th request (0-based); default 204. */
  answer?: (n: number, delivery: ReceivedDelivery) => Answer;
}

/** Starts a receiver; close it in an `after` hook. */
export async function startReceiver(options: ReceiverOptions = {}): Promise<TestReceiver> {
  const received: ReceivedDelivery[] = [];
  const sockets = new Set<import('node:net').Socket>();
  let n = 0;
  const receiver: TestReceiver = {
    url: '',
    received,
    async waitFor(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        if (Date.now() > deadline)
          throw new Error(`expected ${count} deliveries, got ${received.length} in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return received;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      const delivery: ReceivedDelivery = {
        at: Date.now(),
        path: req.url ?? '/',
        headers,
        body,
        json: safeJson(body),
        verified: null,
      };
      if (receiver.secret) {
        try {
          new Webhook(receiver.secret).verify(body, {
            'webhook-id': headers['webhook-id'] ?? '',
            'webhook-timestamp': headers['webhook-timestamp'] ?? '',
            'webhook-signature': headers['webhook-signature'] ?? '',
          });
          delivery.verified = true;
        } catch (err) {
          delivery.verified = false;
          delivery.verifyError = (err as Error).message;
        }
      }
      received.push(delivery);
      const answer = options.answer?.(n++, delivery) ?? { status: 204 };
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(answer.status, answer.headers);
        res.end();
      };
      const release = () => (answer.until ? void answer.until.then(send, send) : send());
      if (answer.delayMs) setTimeout(release, answer.delayMs);
      else release();
    });
  };
  let server: Server;
  if (options.tls === false) {
    server = createHttpServer(listener);
  } else {
    const { key, cert } = await selfSignedCert();
    server = createHttpsServer(
      {
        key,
        cert,
        minVersion: options.minVersion ?? 'TLSv1.3',
        ...(options.maxVersion ? { maxVersion: options.maxVersion } : {}),
      },
      listener,
    );
  }
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  receiver.url = `${options.tls === false ? 'http' : 'https'}://127.0.0.1:${port}`;
  return receiver;
}

function safeJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
