/**
 * The delivery-client port: one HTTP POST to a partner endpoint. The dispatcher decides what the
 * result means (retry, fail, disable); the engine (undici) only sends and reports precisely.
 */

export interface DeliveryRequest {
  url: string;
  /** Header names lower case; includes content-type and the Standard Webhooks headers. */
  headers: Record<string, string>;
  body: string;
  timeouts: { connectMs: number; headersMs: number; bodyMs: number };
  /**
   * The most the whole request may take — connecting, the headers and the whole body, however
   * slowly it trickles in — after which it is cut off as a timeout.
   */
  deadlineMs?: number;
  /** How much of the response body to keep (the rest is discarded). */
  maxResponseBytes: number;
}

/** Why no HTTP response came back. */
export type DeliveryErrorKind =
  | 'timeout' // connect, headers or body timeout, or the whole request's deadline
  | 'dns' // the host did not resolve
  | 'connect' // refused, reset, unreachable
  | 'tls' // handshake failed: protocol version, certificate, …
  | 'forbidden_address' // the host resolved to an address the SSRF policy refuses
  | 'network'; // anything else below HTTP

export type DeliveryResult =
  | {
      ok: true;
      status: number;
      /** Response headers, lower-case names. */
      headers: Record<string, string>;
      /** The start of the response body, up to maxResponseBytes, as text. */
      body: string;
      latencyMs: number;
    }
  | { ok: false; kind: DeliveryErrorKind; message: string; latencyMs: number };

export interface DeliveryClient {
  send(request: DeliveryRequest): Promise<DeliveryResult>;
  close(): Promise<void>;
}
