/**
 * A flood of large request bodies that never end: `--connections` sockets each send the headers of
 * a `POST /events` of `--body-bytes` and all of its body but the last byte, then stall; a socket
 * answered (408, cut while others waited) connects again at once. Meanwhile `/healthz` is asked
 * every 100 ms, one small event is published every 500 ms and one large one (200 KiB, which waits
 * for the body budget like the flood's) every 2 s. It reports the platform's peak RSS, the most body
 * bytes its HTTP server held at once (`webhooks_http_body_bytes_held_max`), bodies cut, and the
 * latency of `/healthz` and of the small and large events (and how the large ones were answered).
 *
 *   npm run bench:flood
 *   npm run bench:flood -- --connections 1000 --seconds 30
 *   WEBHOOKS_MAX_BUFFERED_BODY_BYTES=17179869184 npm run bench:flood   # the budget out of the way
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { rssOf, startPlatformProcess } from './platform-process.ts';
import { percentile } from './stats.ts';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '500' },
    'body-bytes': { type: 'string', default: String(1024 * 1024) },
    seconds: { type: 'string', default: '20' },
  },
});
const CONNECTIONS = Number(values.connections);
const BODY_BYTES = Number(values['body-bytes']);
const SECONDS = Number(values.seconds);
const TOKEN = 'flood-token-0123456789abcdef';

const dataDir = await mkdtemp(join(os.tmpdir(), 'webhooks-flood-'));
const platform = await startPlatformProcess('all', dataDir, {
  WEBHOOKS_ADMIN_TOKEN: TOKEN,
  WEBHOOKS_DEV: '1',
  WEBHOOKS_LOG_LEVEL: 'error',
});
const { hostname, port } = new URL(platform.url);
const rssBefore = rssOf(platform.child.pid);
console.log(
  `body flood: ${CONNECTIONS} connections, bodies of ${BODY_BYTES} B short of their last byte, ${SECONDS} s; ` +
    `WEBHOOKS_MAX_BUFFERED_BODY_BYTES=${process.env.WEBHOOKS_MAX_BUFFERED_BODY_BYTES ?? '(default)'}`,
);

let stopping = false;
let answered = 0;
const statuses = new Map<string, number>();
const chunk = Buffer.alloc(64 * 1024, 'x');

/** One attacking socket: headers, the body but its last byte, then nothing; again once answered. */
function attack(): void {
  if (stopping) return;
  const socket: Socket = connect({ host: hostname, port: Number(port) });
  let head = '';
  socket.on('data', (d: Buffer) => {
    if (head.length < 64) head += d.toString('latin1');
    const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
    if (status) {
      answered += 1;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      socket.destroy();
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => setImmediate(attack));
  socket.on('connect', async () => {
    socket.write(
      `POST /events HTTP/1.1\r\nhost: ${hostname}\r\nauthorization: Bearer ${TOKEN}\r\n` +
        `content-type: application/cloudevents+json\r\ncontent-length: ${BODY_BYTES}\r\n\r\n`,
    );
    let left = BODY_BYTES - 1;
    while (left > 0 && !socket.destroyed && !stopping) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!socket.write(piece)) await new Promise((r) => socket.once('drain', r).once('close', r));
    }
  });
}

async function timed(
  path: string,
  init: RequestInit = {},
  onStatus?: (status: string) => void,
): Promise<number | undefined> {
  const started = performance.now();
  try {
    const res = await fetch(`${platform.url}${path}`, { ...init, signal: AbortSignal.timeout(60_000) });
    await res.arrayBuffer();
    onStatus?.(String(res.status));
    return res.status < 500 ? performance.now() - started : undefined;
  } catch (err) {
    onStatus?.((err as Error).name);
    return undefined;
  }
}

const publishInit = (id: string, data: unknown): RequestInit => ({
  method: 'POST',
  headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/cloudevents+json' },
  body: JSON.stringify({ specversion: '1.0', id, source: '/flood', type: 'flood.legit', data }),
});

for (let i = 0; i < CONNECTIONS; i++) attack();
const health: number[] = [];
const slow: string[] = [];
const floodStart = performance.now();
const publishes: number[] = [];
let failedPublishes = 0;
const deadline = Date.now() + SECONDS * 1000;
const healthLoop = (async () => {
  while (Date.now() < deadline) {
    const sentAt = performance.now();
    const ms = await timed('/healthz');
    if (ms !== undefined) health.push(ms);
    if (ms !== undefined && ms > 100)
      slow.push(`${Math.round(ms)} ms at ${((sentAt - floodStart) / 1000).toFixed(1)} s`);
    await sleep(100);
  }
})();
const large: number[] = [];
const largeStatuses = new Map<string, number>();
const largeLoop = (async () => {
  let n = 0;
  while (Date.now() < deadline) {
    const ms = await timed(
      '/events',
      publishInit(`flood-large-${n++}`, { pad: 'x'.repeat(200 * 1024) }),
      (s) => largeStatuses.set(s, (largeStatuses.get(s) ?? 0) + 1),
    );
    if (ms !== undefined) large.push(ms);
    await sleep(2000);
  }
})();
const publishLoop = (async () => {
  let n = 0;
  while (Date.now() < deadline) {
    const ms = await timed('/events', publishInit(`flood-legit-${n++}`, { n }));
    // No schema is registered: 202 is not expected, only an answer (a 4xx counts).
    if (ms === undefined) failedPublishes += 1;
    else publishes.push(ms);
    await sleep(500);
  }
})();
await Promise.all([healthLoop, publishLoop, largeLoop]);
stopping = true;
const metrics = await (
  await fetch(`${platform.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
).text();
const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
const ms = (xs: number[], p: number) => `${percentile(xs, p).toFixed(1)} ms`;
console.log(
  `platform RSS: ${Math.round(rssBefore / 2 ** 20)} MiB before, peak ${Math.round(platform.peakRss / 2 ** 20)} MiB`,
);
console.log(
  `body bytes held at most: ${Math.round(metric('webhooks_http_body_bytes_held_max') / 2 ** 20)} MiB; ` +
    `bodies cut for stalling: ${metric('webhooks_http_bodies_stalled_total')}; ` +
    `attack requests answered: ${answered} (${[...statuses].map(([s, n]) => `${s} × ${n}`).join(', ') || 'none'})`,
);
console.log(
  `/healthz: ${health.length} answered, p50 ${ms(health, 50)} · p99 ${ms(health, 99)} · max ${ms(health, 100)}; ` +
    `over 100 ms: ${slow.length}${slow.length > 0 ? ` (${slow.slice(0, 8).join(', ')})` : ''}`,
);
console.log(
  `small events published: ${publishes.length} answered, ${failedPublishes} not; ` +
    `p50 ${ms(publishes, 50)} · p99 ${ms(publishes, 99)} · max ${ms(publishes, 100)}`,
);
console.log(
  `large events (200 KiB) published: ${[...largeStatuses].map(([s, k]) => `${s} × ${k}`).join(', ')}; ` +
    `answered in p50 ${ms(large, 50)} · max ${ms(large, 100)}`,
);
await platform.stop();
await rm(dataDir, { recursive: true, force: true });
process.exit(0);
