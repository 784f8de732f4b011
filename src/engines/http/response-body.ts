/**
 * How a partner's response body is read without trusting its size (the delivery client's
 * ResponseCollector): keep the first bytes for the delivery record, then drain a little more so the
 * connection can be reused, and cut the connection when the rest is larger than that (a 50 MB
 * answer is never read, let alone buffered).
 */

/** How much past `maxResponseBytes` is read and dropped to keep a connection alive; beyond it, the socket is closed. */
export const DRAIN_LIMIT_BYTES = 64 * 1024;

/** The kept bytes as text; a multi-byte character cut by truncation is dropped rather than mangled. */
export function decodeBody(bytes: Buffer, truncated: boolean): string {
  return new TextDecoder('utf-8').decode(bytes, { stream: truncated });
}
