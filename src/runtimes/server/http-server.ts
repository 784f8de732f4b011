/**
 * Node's HTTP(S) server in front of the edge: reads the body up to the size limit (413 beyond),
 * writes JSON or text responses. HTTPS, when configured, accepts TLS 1.3 only.
 */
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ApiResponse } from '../../common/http.ts';
import { errorBody, type RawRequest } from '../http/edge.ts';

export interface HttpServerOptions {
  handle: (raw: RawRequest) => Promise<ApiResponse>;
  maxBodyBytes: number;
  tls?: { certFile: string; keyFile: string };
}

/** A Node server wired to the edge; call `listen` to start it. */
export function createNodeServer(options: HttpServerOptions): Server {
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    // A client that goes away mid-request must never take the process down.
    serve(req, res, options).catch(() => res.destroy());
  };
  const server = options.tls
    ? createHttpsServer(
        {
          cert: readFileSync(options.tls.certFile),
          key: readFileSync(options.tls.keyFile),
          minVersion: 'TLSv1.3',
        },
        listener,
      )
    : createHttpServer(listener);
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

/** Starts listening and resolves with the bound port. */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting connections and waits for in-flight requests (idle keep-alive sockets are closed). */
export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

async function serve(req: IncomingMessage, res: ServerResponse, options: HttpServerOptions): Promise<void> {
  const body = await readBody(req, options.maxBodyBytes);
  if (body === undefined) {
    write(res, {
      status: 413,
      body: errorBody('payload_too_large', `the request body is larger than ${options.maxBodyBytes} bytes`, [
        { field: 'body', message: `at most ${options.maxBodyBytes} bytes` },
      ]),
      headers: { connection: 'close' },
    });
    return;
  }
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers))
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  const response = await options.handle({ method: req.method ?? 'GET', url: req.url ?? '/', headers, body });
  write(res, response);
}

/** The body as text, or undefined when it is over the limit (the rest is drained, not buffered). */
function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  return new Promise((resolve, reject) => {
    if (declared > limit) {
      req.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function write(res: ServerResponse, response: ApiResponse): void {
  const headers: Record<string, string> = { ...response.headers };
  let payload = '';
  if (typeof response.body === 'string') {
    payload = response.body;
    headers['content-type'] ??= 'text/plain; charset=utf-8';
  } else if (response.body !== undefined) {
    payload = JSON.stringify(response.body);
    headers['content-type'] = 'application/json';
  }
  headers['content-length'] = String(Buffer.byteLength(payload));
  headers['x-content-type-options'] = 'nosniff';
  headers['cache-control'] ??= 'no-store';
  res.writeHead(response.status, headers);
  res.end(payload);
}
