/**
 * The delivery client on undici: HTTP/1.1 with keep-alive, connections pooled per origin, TLS 1.3
 * minimum, the SSRF guard at connect time, no redirects, bounded response reading.
 *
 * Decisions the dispatcher relies on:
 * - `allowInsecure` (WEBHOOKS_DEV) allows `http://` and private/loopback targets; it never weakens
 *   TLS (certificates are always verified, TLS 1.3 is always the minimum).
 * - Without it, an `http://` URL or a forbidden address is refused before any packet is sent, as
 *   kind `forbidden_address` (a policy refusal, not a network fault).
 * - undici sets the connect timeout per connection, not per request, so the client keeps one
 *   Agent per distinct `connectMs` (normally one: the default, plus one per partner override).
 * - `bodyMs` is undici's body timeout: the longest pause between two chunks of the response.
 *   undici checks all three timeouts on a coarse clock: they fire up to ~1 s late.
 * - `deadlineMs` bounds the whole request on a timer of its own: a response that trickles a byte
 *   every second never trips the body timeout, but it cannot outlast the deadline (and with it the
 *   dispatcher's ledger claim).
 * - A 3xx is a response like any other; `Location` is never followed.
 * - Informational (1xx) responses restart undici's headers timeout, so at most
 *   MAX_INFORMATIONAL_RESPONSES are accepted: `102 Processing` sent forever cannot hold a request
 *   open, deadline or not. A `100 Continue` the request did not ask for is the exception: undici
 *   (8.13) takes it as a bad response and closes the connection, so an endpoint that sends one to
 *   every POST fails each attempt as `connect` (UND_ERR_SOCKET) although it got the request —
 *   RFC 9110 §15.2 says to accept it. Not worked around here (it would mean another HTTP client).
 * - Response headers are capped at MAX_RESPONSE_HEADER_BYTES (more is an attempt error).
 */
import type { LookupFunction } from 'node:net';
import { createSecureContext, getCACertificates, type SecureContext } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import type { DeliveryClient, DeliveryRequest, DeliveryResult } from '../../common/ports/delivery-client.ts';
import {
  DEADLINE_CODE,
  describeDeliveryError,
  INFORMATIONAL_FLOOD_CODE,
  MAX_RESPONSE_HEADER_BYTES,
} from './delivery-errors.ts';
import { type AddressLookup, guardedLookup, refuseTarget } from './guarded-lookup.ts';

/**
 * A response body is read without trusting its size: the first `maxResponseBytes` are kept for the
 * delivery record, up to this much more is read and dropped so the connection can be reused, and
 * past that the connection is cut (a 50 MB answer is never read, let alone buffered).
 */
const DRAIN_LIMIT_BYTES = 64 * 1024;

/**
 * The connection cap per origin is only a safety net: how many requests an endpoint gets at once is
 * the dispatcher's endpoint limiter's business (`maxConcurrency`, up to 1,000). A lower cap here
 * would silently override a partner's higher limit (it held the benchmark at 16 connections while
 * the endpoint allowed 64).
 */
const MAX_CONNECTIONS_PER_ORIGIN = 1000;

/** Informational (1xx) responses accepted before the final response; a server sends one or two. */
export const MAX_INFORMATIONAL_RESPONSES = 10;

export interface UndiciDeliveryClientOptions {
  /** Dev mode (WEBHOOKS_DEV=1): allow `http://` and loopback/private addresses. */
  allowInsecure: boolean;
  /** Extra trusted CA certificates (PEM), added to the default root store: a partner's private CA, a test's self-signed cert. */
  ca?: string | string[];
  /**
   * Resolves partner host names; the system resolver (`dns.lookup`) by default. Whatever it answers
   * still passes the SSRF guard, and the connection goes to exactly those addresses. For tests.
   */
  lookup?: AddressLookup;
}

/** Sends webhook deliveries over pooled keep-alive connections; one instance per process. */
export class UndiciDeliveryClient implements DeliveryClient {
  readonly #allowInsecure: boolean;
  /** One guarded lookup for every agent: lookups in flight are shared, and capped, process-wide. */
  readonly #lookup: LookupFunction;
  /**
   * With extra CAs, one TLS context for every connection: built per connection, it would parse the
   * whole root store again each time (milliseconds of CPU per connection attempt).
   */
  readonly #secureContext: SecureContext | undefined;
  readonly #agents = new Map<number, Agent>();
  #closed = false;

  constructor(options: UndiciDeliveryClientOptions) {
    this.#allowInsecure = options.allowInsecure;
    this.#lookup = guardedLookup(options.allowInsecure, options.lookup);
    const extra = options.ca === undefined ? [] : [options.ca].flat();
    // Passing `ca` replaces Node's trust store, so the defaults (bundled, system, NODE_EXTRA_CA_CERTS) are added back.
    this.#secureContext =
      extra.length === 0
        ? undefined
        : createSecureContext({ ca: [...getCACertificates('default'), ...extra], minVersion: 'TLSv1.3' });
  }

  /** POSTs the body; never throws: every failure becomes a classified `{ ok: false }` result. */
  async send(request: DeliveryRequest): Promise<DeliveryResult> {
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    const url = URL.parse(request.url);
    if (url === null) {
      return { ok: false, kind: 'network', message: 'the delivery URL is not a valid URL', latencyMs: 0 };
    }
    const refused = refuseTarget(url, this.#allowInsecure);
    if (refused !== undefined) {
      return { ok: false, kind: 'forbidden_address', message: refused, latencyMs: 0 };
    }
    let agent: Agent;
    try {
      agent = this.#agentFor(request.timeouts.connectMs);
    } catch (err) {
      return { ok: false, ...describeDeliveryError(err, request.timeouts), latencyMs: elapsed() };
    }
    const result = await new Promise<DeliveryResult>((resolve) => {
      agent.dispatch(
        {
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers: request.headers,
          body: request.body,
          headersTimeout: request.timeouts.headersMs,
          bodyTimeout: request.timeouts.bodyMs,
        },
        new ResponseCollector(request, elapsed, resolve),
      );
    });
    // undici hands a socket back to the pool once the response is complete; waiting one turn lets a
    // caller's next send to this origin reuse the connection instead of opening another.
    await new Promise((resolve) => setImmediate(resolve));
    return result;
  }

  /** Closes every pooled connection; later sends fail with kind `network`. */
  async close(): Promise<void> {
    this.#closed = true;
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((agent) => agent.close()));
  }

  #agentFor(connectMs: number): Agent {
    if (this.#closed)
      throw Object.assign(new Error('the delivery client is closed'), { code: 'UND_ERR_CLOSED' });
    let agent = this.#agents.get(connectMs);
    if (agent === undefined) {
      agent = new Agent({
        connections: MAX_CONNECTIONS_PER_ORIGIN,
        allowH2: false,
        maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
        connect: {
          timeout: connectMs,
          minVersion: 'TLSv1.3',
          lookup: this.#lookup,
          ...(this.#secureContext === undefined ? {} : { secureContext: this.#secureContext }),
        },
      });
      this.#agents.set(connectMs, agent);
    }
    return agent;
  }
}

/**
 * Collects one response with undici's handler interface, without a stream per response: the status
 * and headers, the first `maxResponseBytes` of the body (the rest is read and dropped up to
 * DRAIN_LIMIT_BYTES so the connection can be reused; past that the connection is cut), and the
 * latency up to the kept prefix. Errors before the response is complete are classified.
 */
class ResponseCollector implements Dispatcher.DispatchHandler {
  readonly #request: DeliveryRequest;
  readonly #elapsed: () => number;
  readonly #resolve: (result: DeliveryResult) => void;
  #status = 0;
  #headers: Record<string, string> = {};
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  #seen = 0;
  #informational = 0;
  #latencyMs: number | undefined;
  /** Set when the body outgrew the drain limit and the connection was cut on purpose. */
  #cut = false;
  #done = false;
  #controller: Dispatcher.DispatchController | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #expired: Error | undefined;

  constructor(request: DeliveryRequest, elapsed: () => number, resolve: (result: DeliveryResult) => void) {
    this.#request = request;
    this.#elapsed = elapsed;
    this.#resolve = resolve;
    if (request.deadlineMs !== undefined) {
      const ms = request.deadlineMs;
      this.#deadline = setTimeout(() => this.#expire(ms), ms);
    }
  }

  /** The whole request's deadline passed: it is cut off (or, not started yet, never sent). */
  #expire(ms: number): void {
    this.#expired = Object.assign(
      new Error(
        `the request did not complete within its deadline of ${ms} ms (connect, headers and the whole body)`,
      ),
      { code: DEADLINE_CODE },
    );
    if (this.#controller) this.#controller.abort(this.#expired);
    // Still connecting (or queued): it is aborted as soon as it starts; the attempt ends now.
    else
      this.#finish({
        ok: false,
        kind: 'timeout',
        message: this.#expired.message,
        latencyMs: this.#elapsed(),
      });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#expired) controller.abort(this.#expired);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) {
      this.#informational += 1; // 1xx: the final response follows, unless the endpoint stalls with them
      if (this.#informational > MAX_INFORMATIONAL_RESPONSES) controller.abort(informationalFlood());
      return;
    }
    this.#status = statusCode;
    this.#headers = flattenHeaders(headers);
    if (this.#request.maxResponseBytes <= 0) this.#latencyMs = this.#elapsed();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#seen += chunk.length;
    const room = this.#request.maxResponseBytes - this.#kept;
    if (room > 0) {
      const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.#chunks.push(kept);
      this.#kept += kept.length;
      if (this.#kept >= this.#request.maxResponseBytes) this.#latencyMs = this.#elapsed();
    }
    if (this.#seen > this.#kept + DRAIN_LIMIT_BYTES) {
      this.#cut = true;
      controller.abort(new Error('the response body is too large to drain; the connection is closed'));
    }
  }

  onResponseEnd(): void {
    this.#succeed();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#cut) this.#succeed();
    else
      this.#finish({
        ok: false,
        ...describeDeliveryError(err, this.#request.timeouts),
        latencyMs: this.#elapsed(),
      });
  }

  #succeed(): void {
    const bytes = Buffer.concat(this.#chunks, this.#kept);
    this.#finish({
      ok: true,
      status: this.#status,
      headers: this.#headers,
      body: decodeBody(bytes, bytes.length >= this.#request.maxResponseBytes),
      latencyMs: this.#latencyMs ?? this.#elapsed(),
    });
  }

  #finish(result: DeliveryResult): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#deadline);
    this.#resolve(result);
  }
}

/** The error a request is cut off with when the endpoint sends 1xx responses without end. */
function informationalFlood(): Error {
  return Object.assign(
    new Error(
      `the endpoint sent more than ${MAX_INFORMATIONAL_RESPONSES} informational (1xx) responses without a final response`,
    ),
    { code: INFORMATIONAL_FLOOD_CODE },
  );
}

/** Lower-case names; repeated headers joined with ", " (HTTP's list syntax). */
function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return flat;
}

/** The kept bytes as text; a multi-byte character cut by truncation is dropped rather than mangled. */
function decodeBody(bytes: Buffer, truncated: boolean): string {
  return new TextDecoder('utf-8').decode(bytes, { stream: truncated });
}
