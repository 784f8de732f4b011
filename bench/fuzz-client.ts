/**
 * A raw HTTP/1.1 client over `node:net` for hostile requests: it sends exactly the bytes it is given
 * (malformed `%`-escapes, invalid UTF-8, megabyte headers, bodies far over the limit, chunked or
 * with `expect: 100-continue`) and tells a response from a cut connection — which `fetch` and
 * `node:http` blur (an EPIPE while writing hides the response that was on its way).
 */
import { connect, type Socket } from 'node:net';

/** A request exactly as it goes on the wire. */
export interface RawHttpRequest {
  method: string;
  /** The request-target, sent as is (it may hold malformed escapes or raw bytes). */
  target: string;
  /**
   * Header lines, sent as is and in order (`host` and the framing headers are added). The request
   * line and headers go out as Latin-1: one byte per character, so `'\xff'` is the byte 0xff.
   */
  headers?: [string, string][];
  body?: Buffer | string;
  /** Sends the body in chunks of this size with `transfer-encoding: chunked` instead of content-length. */
  chunked?: number;
  /** Sends `expect: 100-continue` and the body only after a `100 Continue` (not after a final answer). */
  expectContinue?: boolean;
  /** A content-length to declare instead of the body's (to lie about it). */
  declaredLength?: number;
}

/** A parsed response. */
export interface RawHttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** The informational (1xx) statuses received before the final one. */
  informational: number[];
}

/** What became of a request: its response, and the socket error if there was one (before or after it). */
export interface RawHttpOutcome {
  response?: RawHttpResponse;
  /** The first socket error (`EPIPE`, `ECONNRESET`, …), `closed` when the connection ended with no full response, `timeout`. */
  error?: string;
  /** Whether every byte of the request was written. */
  sentAll: boolean;
}

export interface RawHttpOptions {
  /** Gives up (error `timeout`) after this long; none by default. */
  timeoutMs?: number;
  /** Size of each write of the body. */
  writeSize?: number;
}

/**
 * Sends one request on a new connection (`connection: close`) and resolves once the response is
 * complete and the request fully written, or the connection is gone.
 */
export function rawRequest(
  port: number,
  request: RawHttpRequest,
  options: RawHttpOptions = {},
): Promise<RawHttpOutcome> {
  const body = typeof request.body === 'string' ? Buffer.from(request.body, 'utf8') : request.body;
  const head = [`${request.method} ${request.target} HTTP/1.1`, `host: 127.0.0.1:${port}`];
  for (const [name, value] of request.headers ?? []) head.push(`${name}: ${value}`);
  if (body !== undefined) {
    if (request.chunked) head.push('transfer-encoding: chunked');
    else head.push(`content-length: ${request.declaredLength ?? body.length}`);
  }
  if (request.expectContinue) head.push('expect: 100-continue');
  head.push('connection: close', '', '');
  const writeSize = options.writeSize ?? 64 * 1024;

  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const parser = new ResponseParser(request.method === 'HEAD');
    let sentAll = false;
    let error: string | undefined;
    let settled = false;
    let bodyStarted = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => finish('timeout'), options.timeoutMs).unref();

    const finish = (why?: string): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      error ??= why;
      socket.destroy();
      const response = parser.response;
      resolve({ ...(response ? { response } : {}), ...(error ? { error } : {}), sentAll });
    };
    const settleIfDone = (): void => {
      if (parser.response && (sentAll || !bodyStarted)) finish();
    };

    const sendBody = async (): Promise<void> => {
      bodyStarted = true;
      if (body !== undefined) {
        for (let at = 0; at < body.length; at += writeSize) {
          const piece = body.subarray(at, at + writeSize);
          const framed = request.chunked
            ? [Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]
            : [piece];
          if (!(await write(socket, framed))) return;
        }
        if (request.chunked && !(await write(socket, [Buffer.from('0\r\n\r\n')]))) return;
      }
      sentAll = true;
      settleIfDone();
    };

    socket.on('connect', () => {
      socket.write(Buffer.from(head.join('\r\n'), 'latin1'));
      if (!request.expectContinue || body === undefined) void sendBody();
    });
    socket.on('data', (chunk: Buffer) => {
      parser.push(chunk);
      if (request.expectContinue && !bodyStarted && parser.informational.includes(100)) void sendBody();
      settleIfDone();
    });
    socket.on('end', () => {
      parser.end();
      if (parser.response) finish();
      else finish('closed');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
      parser.end();
      finish();
    });
    socket.on('close', () => {
      parser.end();
      finish(parser.response ? undefined : 'closed');
    });
  });
}

/** Writes buffers, waiting for the socket to drain; false when the socket is gone. */
async function write(socket: Socket, buffers: Buffer[]): Promise<boolean> {
  for (const buffer of buffers) {
    if (socket.destroyed || !socket.writable) return false;
    if (!socket.write(buffer)) {
      const drained = await new Promise<boolean>((resolve) => {
        const onDrain = () => done(true);
        const onClose = () => done(false);
        const done = (ok: boolean) => {
          socket.off('drain', onDrain);
          socket.off('close', onClose);
          resolve(ok);
        };
        socket.once('drain', onDrain);
        socket.once('close', onClose);
      });
      if (!drained) return false;
    }
  }
  return true;
}

/** Incremental parser of one HTTP/1.1 response (after any 1xx), framed by content-length or close. */
class ResponseParser {
  informational: number[] = [];
  response: RawHttpResponse | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #head: { status: number; headers: Record<string, string>; length: number | undefined } | undefined;
  /** The answer to a HEAD: no body, whatever its content-length says. */
  readonly #headRequest: boolean;

  constructor(headRequest: boolean) {
    this.#headRequest = headRequest;
  }

  push(chunk: Buffer): void {
    if (this.response) return;
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      if (!this.#head) {
        const end = this.#buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = this.#buffer.subarray(0, end).toString('latin1').split('\r\n');
        this.#buffer = this.#buffer.subarray(end + 4);
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? Number.NaN);
        if (status >= 100 && status < 200) {
          this.informational.push(status);
          continue;
        }
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          if (colon < 0) continue;
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
        }
        const declared = headers['content-length'];
        const bodiless = this.#headRequest || status === 204 || status === 304;
        const length = bodiless ? 0 : declared === undefined ? undefined : Number(declared);
        this.#head = { status, headers, length };
      }
      const { length } = this.#head;
      if (length !== undefined && this.#buffer.length >= length)
        this.#complete(this.#buffer.subarray(0, length));
      return;
    }
  }

  /** The connection ended: a response framed by the close is complete now. */
  end(): void {
    if (!this.response && this.#head && this.#head.length === undefined) this.#complete(this.#buffer);
  }

  #complete(body: Buffer): void {
    const head = this.#head!;
    this.response = { status: head.status, headers: head.headers, body, informational: this.informational };
  }
}
