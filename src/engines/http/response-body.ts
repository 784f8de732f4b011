/**
 * Reading a partner's response body without trusting its size: keep the first bytes for the
 * delivery record, then drain a little more so the connection can be reused, and cut the
 * connection when the rest is larger than that (a 50 MB answer is never read, let alone buffered).
 */
import type { Readable } from 'node:stream';

/** How much past `maxResponseBytes` is read and dropped to keep a connection alive; beyond it, the socket is closed. */
export const DRAIN_LIMIT_BYTES = 64 * 1024;

/** Reads the stream until `maxBytes` are kept or it ends; leaves it paused. Rejects on a stream error (e.g. body timeout). */
export function readPrefix(body: Readable, maxBytes: number): Promise<Buffer> {
  if (maxBytes <= 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err?: unknown): void => {
      body.off('data', onData).off('end', onEnd).off('close', onEnd).off('error', finish);
      if (err === undefined) resolve(Buffer.concat(chunks, size));
      else reject(err);
    };
    const onEnd = (): void => finish();
    const onData = (chunk: Buffer): void => {
      const room = maxBytes - size;
      const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
      chunks.push(kept);
      size += kept.length;
      if (size >= maxBytes) {
        body.pause();
        finish();
      }
    };
    body.on('data', onData).on('end', onEnd).on('close', onEnd).on('error', finish);
  });
}

/** Discards the rest of the body: to its end when small, else by destroying the stream (closing the connection). */
export async function discardRest(
  body: Readable & { dump(opts?: { limit?: number }): Promise<unknown> },
  keptBytes: number,
): Promise<void> {
  body.on('error', () => {}); // a late body timeout or reset no longer matters
  // undici's dump counts bytes already read, so the limit is measured from the start of the body.
  await body.dump({ limit: keptBytes + DRAIN_LIMIT_BYTES }).catch(() => undefined);
}

/** The kept bytes as text; a multi-byte character cut by truncation is dropped rather than mangled. */
export function decodeBody(bytes: Buffer, truncated: boolean): string {
  return new TextDecoder('utf-8').decode(bytes, { stream: truncated });
}
