/**
 * Node's HTTP(S) server in front of the edge: reads the body up to the size limit, writes JSON or
 * text responses. HTTPS, when configured, accepts TLS 1.3 only.
 *
 * A hostile or broken request gets an answer, not a cut connection. Closing a socket while the client
 * is still sending makes the kernel reset the connection, and the client sees EPIPE or ECONNRESET
 * instead of the answer that was on its way; so:
 * - a body over the limit is read to its end and dropped (up to `maxDrainBytes` in all), then
 *   answered 413 — the connection stays usable; `expect: 100-continue` with a content-length over
 *   the limit is answered 413 at once, without the 100 (and the connection closed);
 * - a body that is not UTF-8 is answered 400 `invalid_utf8` (it would otherwise reach the edge with
 *   U+FFFD in place of its bad bytes);
 * - a request Node's parser refuses (headers over its 16 KiB, malformed framing, a request timeout)
 *   is answered 431, 400 or 408 with the JSON error body, and the socket lingers, reading and dropping
 *   what the client still sends, until the client closes or a bound is reached; a CONNECT (this is
 *   no proxy) is answered 405;
 * - a failure between the socket and the edge is logged and answered 500 when nothing was sent yet.
 */
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { withDeadline } from '../../common/deadline.ts';
import { Gate } from '../../common/gate.ts';
import type { ApiResponse } from '../../common/http.ts';
import type { Logger } from '../../common/log.ts';
import {
  bodyNotUtf8,
  bodyTooLarge,
  errorBody,
  errorResponse,
  type RawRequest,
  renderResponse,
  requestIdOf,
} from '../http/edge.ts';
import { BodyBudget, type BudgetReader } from './body-budget.ts';

export interface HttpServerOptions {
  handle: (raw: RawRequest) => Promise<ApiResponse>;
  maxBodyBytes: number;
  /**
   * Bytes of an oversized body read (and dropped) before its 413, so that the client, still sending,
   * reads the answer; beyond them the 413 is sent at once and the connection closed. Default 64 MiB.
   */
  maxDrainBytes?: number;
  /**
   * Request-body bytes held in memory at once over all connections (`body-budget.ts`); past them,
   * bodies wait to be read. Default 64 MiB, and never below `maxBodyBytes`.
   */
  bodyBudgetBytes?: number;
  /** How long a body may receive nothing while others wait for the budget before it is cut (ms, default 5,000). */
  bodyStallMs?: number;
  /** Connections open at once; more are closed as they come (default 1,024). */
  maxConnections?: number;
  /** Where failures between the socket and the edge are logged. */
  logger: Logger;
  tls?: { certFile: string; keyFile: string };
}

/** Default of `maxDrainBytes`. */
export const DEFAULT_MAX_DRAIN_BYTES = 64 * 1024 * 1024;
/**
 * What a connection's streams buffer before reading stops: a body waiting for the budget has this
 * much read into Node (and one socket read more), not counted by the budget. Node's default is 64 KiB.
 */
const SOCKET_BUFFER_BYTES = 16 * 1024;
/** Default of `bodyBudgetBytes`. */
export const DEFAULT_BODY_BUDGET_BYTES = 64 * 1024 * 1024;
/** Default of `maxConnections`. */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/**
 * How long a socket answered for a parse error keeps being read (and for as many more bytes as an
 * oversized body is drained before its 413: `maxDrainBytes`), so a client sending a body after
 * headers too large reads its 431 instead of EPIPE.
 */
const LINGER_MS = 5_000;

/** A Node server wired to the edge; call `listen` to start it. */
export function createNodeServer(options: HttpServerOptions): Server {
  const maxDrainBytes = options.maxDrainBytes ?? DEFAULT_MAX_DRAIN_BYTES;
  const budget = new BodyBudget({
    limitBytes: Math.max(options.bodyBudgetBytes ?? DEFAULT_BODY_BUDGET_BYTES, options.maxBodyBytes),
    ...(options.bodyStallMs !== undefined ? { stallMs: options.bodyStallMs } : {}),
  });
  const state: ServerState = { closing: false, requests: new Map(), budget };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    // Closing: this answer is the connection's last (a busy keep-alive client would otherwise keep
    // it, and the server's close, open for as long as it sends). Answers under way when the close
    // begins are told so by `close`.
    if (state.closing) res.setHeader('connection', 'close');
    // A client that goes away mid-request must never take the process down.
    const work = serve(req, res, options, maxDrainBytes, budget).catch((err: unknown) =>
      failed(err, res, options.logger),
    );
    state.requests.set(res, work);
    void work.finally(() => state.requests.delete(res));
  };
  // A missing Host is answered by `serve`, with the JSON error body (Node's own 400 has none).
  const server = options.tls
    ? createHttpsServer(
        {
          cert: readFileSync(options.tls.certFile),
          key: readFileSync(options.tls.keyFile),
          minVersion: 'TLSv1.3',
          requireHostHeader: false,
          highWaterMark: SOCKET_BUFFER_BYTES,
        },
        listener,
      )
    : createHttpServer({ requireHostHeader: false, highWaterMark: SOCKET_BUFFER_BYTES }, listener);
  states.set(server, state);
  server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  server.requestTimeout = 30_000;
  server.headersTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (declaredLength(req) > options.maxBodyBytes) {
      // Refused before the body is sent; Node closes the connection after a final answer without a
      // 100, as the client may send the body anyway.
      write(res, {
        ...tooLarge(options.maxBodyBytes),
        headers: { 'x-request-id': requestIdOf(req.headers) },
      });
      return;
    }
    res.writeContinue();
    listener(req, res);
  });
  // An `expect` other than 100-continue: Node's own 417 has no body.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('connection', 'close');
    write(res, {
      status: 417,
      body: errorBody('expectation_failed', 'the only expectation this server meets is 100-continue', [
        { field: 'expect', message: 'must be 100-continue' },
      ]),
      headers: { 'x-request-id': requestIdOf(req.headers) },
    });
    req.resume();
  });
  // Sockets answered for a parse error, lingering: their bytesRead when the answer was sent.
  const lingering = new WeakMap<Socket, number>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) =>
    answerClientError(err, socket, lingering, options.logger, maxDrainBytes),
  );
  // Without a listener Node drops a CONNECT without a word; this server is no proxy.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => socket.destroy());
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    socket.resume(); // what the client sends into its would-be tunnel is dropped
    endLingering(
      socket,
      rawAnswer(405, 'method_not_allowed', 'CONNECT is not allowed: this server is no proxy'),
    );
  });
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

/**
 * A server's requests in progress, each with its handler (which may go on after its connection was
 * closed), and whether it is being closed (its answers then close their connections).
 */
interface ServerState {
  closing: boolean;
  requests: Map<ServerResponse, Promise<void>>;
  budget: BodyBudget;
}
const states = new WeakMap<Server, ServerState>();

/** The request-body budget of a server made by `createNodeServer` (for its metrics). */
export function bodyBudgetOf(server: Server): BodyBudget | undefined {
  return states.get(server)?.budget;
}

/** How long `close` waits, after the connections are closed, for handlers still running. */
export const HANDLER_WAIT_MS = 10_000;

/** How long `close` lets requests in progress finish before it closes their connections too. */
export const CLOSE_GRACE_MS = 5_000;

/**
 * Stops accepting connections and waits for the requests in progress: idle keep-alive connections
 * are closed at once, busy ones after their answer (which says `connection: close`), and any still
 * open after `graceMs` are closed then.
 */
export async function close(server: Server, graceMs = CLOSE_GRACE_MS): Promise<void> {
  const state = states.get(server);
  if (state) state.closing = true;
  for (const res of state?.requests.keys() ?? []) if (!res.headersSent) res.setHeader('connection', 'close');
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
  // A handler whose connection was closed under it may still be at work (a schema registration
  // waiting for its event's claim): what runs after this — the platform's close — would close the
  // store and the bus under it. It gets HANDLER_WAIT_MS more.
  if (state && state.requests.size > 0) {
    await withDeadline(
      Promise.allSettled(state.requests.values()),
      HANDLER_WAIT_MS,
      () => new Error('handlers still running'),
    ).catch(() => {});
  }
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  options: HttpServerOptions,
  maxDrainBytes: number,
  budget: BodyBudget,
): Promise<void> {
  // HTTP/1.1 requires Host (RFC 9112 §3.2); Node's own refusal of its absence has no body.
  if (req.httpVersion === '1.1' && req.headers.host === undefined) {
    write(res, {
      status: 400,
      body: errorBody('host_required', 'an HTTP/1.1 request must have a Host header', [
        { field: 'host', message: 'is required' },
      ]),
      headers: { connection: 'close', 'x-request-id': requestIdOf(req.headers) },
    });
    req.resume();
    return;
  }
  // A large body's bytes are held until the request is answered (its text and what is parsed from
  // it live that long), within the budget: a declared one takes its whole size when it is admitted, a
  // chunked one is counted as it comes. A request without a body (GET /healthz), or declaring a small
  // one (a single event), is not counted and never waits: those are bounded by the connections
  // (WEBHOOKS_MAX_CONNECTIONS) and must not queue behind a flood of large bodies. A body declared
  // over the limit is read and dropped (its 413), holding nothing.
  const declared = declaredLength(req);
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked && (declared <= SMALL_BODY_BYTES || declared > options.maxBodyBytes)) {
    await readAndServe(req, res, options, maxDrainBytes);
    return;
  }
  const reader = bodyReader(req);
  budget.open(reader, chunked ? 0 : declared);
  try {
    await readAndServe(req, res, options, maxDrainBytes, { budget, reader });
  } finally {
    budget.close(reader);
  }
}

/** A body counted by the budget, and how it sees it. */
interface Tracked {
  budget: BodyBudget;
  reader: BudgetReader;
}

async function readAndServe(
  req: IncomingMessage,
  res: ServerResponse,
  options: HttpServerOptions,
  maxDrainBytes: number,
  tracked?: Tracked,
): Promise<void> {
  const body = await readBody(req, options.maxBodyBytes, maxDrainBytes, tracked);
  // Answered here, outside the edge: they carry the request's id as the edge's answers do.
  const withId = (response: ApiResponse): ApiResponse => ({
    ...response,
    headers: { ...response.headers, 'x-request-id': requestIdOf(req.headers) },
  });
  switch (body.kind) {
    case 'gone':
      return;
    case 'too_large':
      write(res, withId(tooLarge(options.maxBodyBytes, !body.drained)));
      return;
    case 'invalid_utf8':
      write(res, withId(bodyNotUtf8()));
      return;
    case 'stalled':
      write(res, withId(bodyStalled()));
      return;
  }
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers))
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  const raw = { method: req.method ?? 'GET', url: req.url ?? '/', headers, body: body.text };
  const response =
    body.text.length < LARGE_BODY_CHARS
      ? await options.handle(raw)
      : await (await handleLarge(raw, options)).handled;
  write(res, response);
}

/**
 * A large request, in its turn at the gate: the place is held while the request parses and checks
 * its body, but no longer than LARGE_BODY_HOLD_MS once it waits for something else (a store, the
 * bus, a schema registration's claim held elsewhere for seconds): what it waits for then is not this
 * thread's time, and the large requests behind it (even unauthenticated ones) would wait for it all.
 */
async function handleLarge(
  raw: RawRequest,
  options: HttpServerOptions,
): Promise<{ handled: Promise<ApiResponse> }> {
  return largeBodies.run(async () => {
    // A turn of the event loop before each: requests that arrived meanwhile (/healthz, small ones)
    // are read between two large bodies, not after the whole queue of them.
    await nextTurn();
    const handled = options.handle(raw);
    // Its place is given up when it is handled, or LARGE_BODY_HOLD_MS on, whichever is first.
    await withDeadline(handled, LARGE_BODY_HOLD_MS, () => new Error('still waiting')).catch(() => {});
    return { handled };
  });
}

/**
 * Bodies from this size on take milliseconds of the event loop each to parse and check (a 1 MiB
 * event: ~10–50 ms). At most LARGE_BODIES_AT_ONCE of them are handled at a time, the others wait
 * their turn without holding the loop: a burst of large requests cannot make `/healthz` and the
 * small requests behind it wait for the whole burst.
 */
const LARGE_BODY_CHARS = 64 * 1024;
/** A body declared (content-length) at most this large is not counted by the body budget, and never waits for it. */
const SMALL_BODY_BYTES = 64 * 1024;
const LARGE_BODIES_AT_ONCE = 1;
/** How long one large request keeps its place at most (its parse and checks take ~10–50 ms). */
const LARGE_BODY_HOLD_MS = 100;

const largeBodies = new Gate(LARGE_BODIES_AT_ONCE);

/**
 * A request whose handling failed outside the edge (which answers its own errors): logged, and
 * answered when nothing was sent yet (a 4xx for the platform's own errors, else 500); a response
 * already under way can only be cut.
 */
function failed(err: unknown, res: ServerResponse, logger: Logger): void {
  // errorResponse logs the unexpected errors (500); the platform's own should have been answered by the edge.
  const response = errorResponse(err, logger);
  if (response.status < 500) logger.error('request failed outside the edge', { err });
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  try {
    write(res, { ...response, headers: { ...response.headers, connection: 'close' } });
  } catch (writeErr) {
    logger.error('could not answer a failed request', { err: writeErr });
    res.destroy();
  }
}

/** The body of a request, or what stands in the way of handling it. */
type Body =
  | { kind: 'text'; text: string }
  /** Over the limit; `drained` when it was read to its end (else the connection is closed after the 413). */
  | { kind: 'too_large'; drained: boolean }
  | { kind: 'invalid_utf8' }
  /** Cut by the budget: it received nothing for a while and others waited for the bytes it held. */
  | { kind: 'stalled' }
  /** The client went away before the end of the request. */
  | { kind: 'gone' };

/** A body being read, as the budget sees it (`readBody` sets how it is cut). */
function bodyReader(req: IncomingMessage): BudgetReader {
  return {
    held: 0,
    lastDataAt: Date.now(),
    waiting: false,
    reading: true,
    reserve: 0,
    pause: () => req.pause(),
    resume: () => req.resume(),
    cut: () => {},
  };
}

/** The answer to a body cut for stalling while others waited: the connection is closed after it. */
function bodyStalled(): ApiResponse {
  return {
    status: 408,
    body: errorBody(
      'request_timeout',
      'the request body stopped arriving while other requests waited for it',
      [{ field: 'body', message: 'must keep arriving' }],
    ),
    headers: { connection: 'close' },
  };
}

/**
 * Reads the body: buffered up to `limit`; an oversized one is read to its end and dropped, unless
 * it is (or says it is) over `maxDrainBytes`.
 */
function readBody(
  req: IncomingMessage,
  limit: number,
  maxDrainBytes: number,
  tracked?: Tracked,
): Promise<Body> {
  const reading = new Promise<Body>((resolve) => {
    const declared = declaredLength(req);
    if (declared > maxDrainBytes) {
      resolve({ kind: 'too_large', drained: false });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = declared > limit;
    let stalled = false;
    if (tracked) {
      tracked.reader.cut = () => {
        stalled = true;
        chunks.length = 0;
        resolve({ kind: 'stalled' });
      };
    }
    req.on('data', (chunk: Buffer) => {
      if (stalled) return;
      size += chunk.length;
      if (over) {
        if (size > maxDrainBytes) resolve({ kind: 'too_large', drained: false });
      } else if (size > limit) {
        over = true;
        chunks.length = 0;
        tracked?.budget.dropHeld(tracked.reader);
      } else {
        chunks.push(chunk);
        tracked?.budget.add(tracked.reader, chunk.length);
      }
    });
    req.on('end', () => {
      if (stalled) return;
      if (over) {
        resolve({ kind: 'too_large', drained: true });
        return;
      }
      const bytes = Buffer.concat(chunks, size);
      resolve(isUtf8(bytes) ? { kind: 'text', text: bytes.toString('utf8') } : { kind: 'invalid_utf8' });
    });
    // After 'end' this changes nothing; before it, the client is gone (an aborted request closes).
    req.on('close', () => resolve({ kind: 'gone' }));
  });
  return tracked ? reading.finally(() => tracked.budget.finishedReading(tracked.reader)) : reading;
}

/** The content-length a request declares (Node's parser has checked it is a number), 0 when none. */
function declaredLength(req: IncomingMessage): number {
  return Number(req.headers['content-length'] ?? 0);
}

function tooLarge(limit: number, closing = false): ApiResponse {
  const response = bodyTooLarge(limit);
  return closing ? { ...response, headers: { connection: 'close' } } : response;
}

/** What Node's parser refused, as status, code and message. */
function parseErrorAnswer(code: string | undefined): { status: number; code: string; message: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        code: 'headers_too_large',
        message: 'the request line and headers are larger than the server accepts',
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'request_timeout', message: 'the request did not arrive in time' };
    default:
      return { status: 400, code: 'malformed_request', message: 'the request is not valid HTTP/1.1' };
  }
}

/**
 * Answers a request Node's parser refused, then lingers: the write side is closed at once, what the
 * client still sends is read and dropped until it closes, `lingerBytes` more arrive or LINGER_MS pass.
 * The parser, failed, reports every later chunk again; those reports are ignored.
 */
function answerClientError(
  err: NodeJS.ErrnoException,
  socket: Socket,
  lingering: WeakMap<Socket, number>,
  logger: Logger,
  lingerBytes: number,
): void {
  const answeredAt = lingering.get(socket);
  if (answeredAt !== undefined) {
    if (socket.bytesRead > answeredAt + lingerBytes) socket.destroy();
    return;
  }
  // Node's own check: no answer over a response whose bytes are already on the wire.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  lingering.set(socket, socket.bytesRead);
  const answer = parseErrorAnswer(err.code);
  logger.debug('refused a malformed request', { code: err.code, status: answer.status });
  endLingering(socket, rawAnswer(answer.status, answer.code, answer.message));
}

/**
 * Writes a whole answer and closes the write side; the socket is destroyed once the client closes
 * its side, or after LINGER_MS.
 */
function endLingering(socket: Socket, answer: string): void {
  socket.end(answer);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('end', () => socket.destroy());
  socket.once('close', () => clearTimeout(timer));
}

/** A whole response with the JSON error body, for a socket without a ServerResponse; the connection closes after it. */
function rawAnswer(status: number, code: string, message: string): string {
  const payload = JSON.stringify(errorBody(code, message));
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    'content-type: application/json\r\n' +
    `content-length: ${Buffer.byteLength(payload)}\r\n` +
    'x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n\r\n' +
    payload
  );
}

function write(res: ServerResponse, response: ApiResponse): void {
  const { headers, payload } = renderResponse(response);
  // A 204 has no body, and no content-length (RFC 9110 §8.6).
  if (response.status !== 204) headers['content-length'] = String(Buffer.byteLength(payload));
  res.writeHead(response.status, headers);
  res.end(payload);
}
