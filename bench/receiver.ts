/**
 * Benchmark receiver, run as a child process (its own core): answers 204 to every POST, counts
 * requests, and records ingest→delivery latency from the `sentAt` (ms) each event carries.
 * Talks to the driver over IPC: { cmd: 'reset' } and { cmd: 'stats' }.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

let count = 0;
let firstAt = 0;
let lastAt = 0;
let latencies: number[] = [];
/** Arrival times (ms) of the latencies, for a time series. */
let arrivals: number[] = [];
const ids = new Set<string>();
let duplicates = 0;

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const now = Date.now();
    count += 1;
    if (firstAt === 0) firstAt = now;
    lastAt = now;
    const id = req.headers['webhook-id'];
    if (typeof id === 'string') {
      if (ids.has(id)) duplicates += 1;
      else ids.add(id);
    }
    const body = Buffer.concat(chunks).toString('utf8');
    // `sentAtHr`: a sub-millisecond wall clock (timeOrigin + now) for latencies of a few ms.
    const hr = /"sentAtHr":([\d.]+)/.exec(body);
    const m = hr ?? /"sentAt":(\d+)/.exec(body);
    if (m) {
      latencies.push((hr ? performance.timeOrigin + performance.now() : now) - Number(m[1]));
      arrivals.push(now);
    }
    res.writeHead(204);
    res.end();
  });
});
server.keepAliveTimeout = 60_000;

server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});

process.on('message', (msg: { cmd: string }) => {
  if (msg.cmd === 'reset') {
    count = 0;
    firstAt = 0;
    lastAt = 0;
    latencies = [];
    arrivals = [];
    ids.clear();
    duplicates = 0;
    process.send?.({ ok: true });
  } else if (msg.cmd === 'count') {
    // Polled while waiting: no latencies array over IPC (the receiver's CPU is part of the results).
    process.send?.({ unique: ids.size });
  } else if (msg.cmd === 'stats') {
    process.send?.({ count, firstAt, lastAt, latencies, unique: ids.size, duplicates });
  } else if (msg.cmd === 'series') {
    process.send?.({ latencies, arrivals });
  } else if (msg.cmd === 'exit') {
    server.close();
    process.exit(0);
  }
});
