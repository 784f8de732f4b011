/**
 * Hostile partner endpoints on 127.0.0.1, each misbehaving in one way: bodies that trickle, never
 * end or are gigantic, 1xx responses without end, header bombs, silence after the handshake or no
 * handshake at all, a request never read, redirects, broken certificates, old TLS. Each counts the
 * facts a test asserts on: connections accepted and still open (its side), requests that reached it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import type { TestCertificate } from './tls.ts';

/** What a raw endpoint does once a request has arrived, byte by byte. */
export type Behaviour = (socket: TLSSocket) => void;

/** A running hostile endpoint and what it has seen. */
export class HostileEndpoint {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Connections accepted (TCP) so far. */
  accepted = 0;
  /** Request lines (`POST /hook`) that reached the endpoint: a TLS failure or a refusal leaves none. */
  readonly requests: string[] = [];

  constructor(server: Server) {
    this.#server = server;
    server.on('connection', (socket: Socket) => {
      this.accepted += 1;
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** Connections still open on the endpoint's side. */
  get open(): number {
    return this.#sockets.size;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** `https://127.0.0.1:<port><path>`. */
  url(path = '/hook'): string {
    return `https://127.0.0.1:${this.port}${path}`;
  }

  /** Listens on an ephemeral loopback port. */
  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** A TLS 1.3 endpoint that reads the start of a request, then behaves as told. */
export function startRawEndpoint(cert: TestCertificate, behaviour: Behaviour): Promise<HostileEndpoint> {
  const server = createTlsServer({ ...cert, minVersion: 'TLSv1.3' });
  const endpoint = new HostileEndpoint(server);
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', () => {}); // the client cutting the connection is the point
    socket.once('data', (data: Buffer) => {
      endpoint.requests.push(data.toString('latin1').split(' ', 2).join(' '));
      socket.resume(); // keep reading, so a closed connection is noticed
      behaviour(socket);
    });
  });
  server.on('tlsClientError', () => {});
  return endpoint.listen();
}

/** An HTTPS endpoint (keep-alive, well-formed HTTP) with TLS options of its own: old versions, bad certificates. */
export function startHttpsEndpoint(
  options: TestCertificate & Pick<TlsOptions, 'minVersion' | 'maxVersion' | 'ciphers'>,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<HostileEndpoint> {
  const server = createHttpsServer({ minVersion: 'TLSv1.3', ...options });
  const endpoint = new HostileEndpoint(server);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    endpoint.requests.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => handler(req, res));
  });
  server.on('tlsClientError', () => {});
  return endpoint.listen();
}

/** Accepts TCP connections and never sends a byte: the TLS handshake never completes. */
export function startMuteTcpEndpoint(): Promise<HostileEndpoint> {
  const server = createNetServer((socket) => {
    socket.on('error', () => {});
    socket.resume();
  });
  return new HostileEndpoint(server).listen();
}

/** Completes the TLS handshake, then never reads: a request body larger than the socket buffers cannot be sent. */
export function startDeafEndpoint(cert: TestCertificate): Promise<HostileEndpoint> {
  const server = createTlsServer({ ...cert, minVersion: 'TLSv1.3' }, (socket) => {
    socket.on('error', () => {});
    socket.pause();
  });
  server.on('tlsClientError', () => {});
  return new HostileEndpoint(server).listen();
}

/** The body, one byte every `intervalMs`, of a response that announces a megabyte. */
export function trickle(intervalMs: number): Behaviour {
  return (socket) => {
    socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n');
    const timer = setInterval(() => socket.write('.'), intervalMs);
    socket.on('close', () => clearInterval(timer));
  };
}

/** A chunked body that never ends, written as fast as the client reads. */
export function endlessBody(): Behaviour {
  const chunk = Buffer.from(`4000\r\n${'x'.repeat(0x4000)}\r\n`);
  return (socket) => {
    socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
    pump(socket, chunk, Number.POSITIVE_INFINITY);
  };
}

/** A body announced as `bytes` long, written as fast as the client reads. */
export function giganticBody(bytes: number): Behaviour {
  return (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${bytes}\r\n\r\n`);
    pump(socket, Buffer.alloc(64 * 1024, 'g'), bytes);
  };
}

/** `102 Processing` every `intervalMs`, never a final response. */
export function informationalFlood(intervalMs: number): Behaviour {
  return (socket) => {
    const timer = setInterval(() => socket.write('HTTP/1.1 102 Processing\r\n\r\n'), intervalMs);
    socket.on('close', () => clearInterval(timer));
  };
}

/** A status line, then one header of `bytes` bytes. */
export function headerBomb(bytes: number): Behaviour {
  return (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nx-bomb: ');
    pump(socket, Buffer.alloc(16 * 1024, 'h'), bytes);
  };
}

/** Reads the request and never answers. */
export function silence(): Behaviour {
  return () => {};
}

/** Bytes that are not HTTP at all. */
export function notHttp(): Behaviour {
  return (socket) => socket.write('SSH-2.0-OpenSSH_9.6\r\n\r\n');
}

/** Announces 100 bytes, sends 5, hangs up. */
export function truncatedBody(): Behaviour {
  return (socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort');
}

/** Writes `chunk` until about `bytes` are written, as fast as the socket drains; stops when it closes. */
function pump(socket: TLSSocket, chunk: Buffer, bytes: number): void {
  let left = bytes;
  const go = (): void => {
    while (left > 0 && !socket.destroyed) {
      left -= chunk.length;
      if (!socket.write(chunk)) {
        socket.once('drain', go);
        return;
      }
    }
  };
  go();
}
