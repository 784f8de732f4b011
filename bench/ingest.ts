/**
 * Single-event ingest and end-to-end latency, one event per request (as most producers send):
 *
 * 1. baseline: the same HTTP client and concurrency against the benchmark receiver (a bare Node
 *    server answering at once) — what the machine's HTTP stack alone does;
 * 2. ingest: `POST /events` with one structured event per request at concurrency 1, 8, 32 and 128,
 *    acknowledgement rate and latency percentiles — by the api role alone (`ingest-api`), and by the
 *    whole platform while it routes and delivers them (one subscription to the receiver);
 * 3. end to end: one event per request at a steady rate (100/s and 500/s by default), publish →
 *    delivery latency measured at the receiver with a sub-millisecond clock.
 *
 *   npm run bench:ingest
 *   npm run bench:ingest -- --requests 20000 --concurrency 1,8,32,128 --rates 100,500 --seconds 20
 *   WEBHOOKS_DURABILITY=relaxed npm run bench:ingest …      # the same without fsync on acknowledge
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { cpuMsOf, startPlatformProcess } from './platform-process.ts';
import { startReceiverProcess } from './receiver-process.ts';
import { latencyLine, rate } from './stats.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '1,8,32,128' },
    rates: { type: 'string', default: '100,500' },
    seconds: { type: 'string', default: '20' },
    skip: { type: 'string', default: '' },
  },
});
const REQUESTS = Number(values.requests);
const LEVELS = values.concurrency.split(',').map(Number);
const RATES = values.rates.split(',').filter(Boolean).map(Number);
const SECONDS = Number(values.seconds);
const SKIP = new Set(values.skip.split(',').filter(Boolean));
const TOKEN = 'bench-token-0123456789abcdef';
const ENV: Record<string, string> = {
  WEBHOOKS_ADMIN_TOKEN: TOKEN,
  WEBHOOKS_DEV: '1',
  WEBHOOKS_LOG_LEVEL: 'error',
  WEBHOOKS_ENDPOINT_CONCURRENCY: '64',
  ...(process.env.WEBHOOKS_DURABILITY ? { WEBHOOKS_DURABILITY: process.env.WEBHOOKS_DURABILITY } : {}),
  ...(process.env.WEBHOOKS_DISPATCHER_THREAD
    ? { WEBHOOKS_DISPATCHER_THREAD: process.env.WEBHOOKS_DISPATCHER_THREAD }
    : {}),
};

const receiver = await startReceiverProcess();
const ask = receiver.ask;
const receiverUrl = receiver.url;

/** One structured CloudEvent of about 300 bytes, stamped with a sub-millisecond send time. */
function eventBody(n: number): string {
  return JSON.stringify({
    specversion: '1.0',
    id: randomUUID(),
    source: '/bench',
    type: 'orders.created',
    data: {
      orderId: `o-${n}`,
      amount: n,
      currency: 'EUR',
      sentAtHr: performance.timeOrigin + performance.now(),
    },
  });
}

/** `count` requests over `concurrency` keep-alive connections; returns the rate and the latencies. */
async function load(
  url: string,
  path: string,
  count: number,
  concurrency: number,
  headers: Record<string, string>,
): Promise<{ perSecond: string; latencies: number[]; failures: number }> {
  const pool = new Pool(url, { connections: concurrency, pipelining: 1 });
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const n = next++;
        const t = performance.now();
        const res = await pool.request({ method: 'POST', path, body: eventBody(n), headers });
        await res.body.dump();
        if (res.statusCode >= 300) failures += 1;
        latencies.push(performance.now() - t);
      }
    }),
  );
  const perSecond = rate(count, performance.now() - started);
  await pool.close();
  return { perSecond, latencies, failures };
}

async function setUp(url: string): Promise<void> {
  const call = async (path: string, body: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  };
  await call('/admin/schemas', {
    domain: 'orders',
    event: 'created',
    schema: {
      type: 'object',
      required: ['orderId', 'amount'],
      properties: { orderId: { type: 'string' }, amount: { type: 'number' }, currency: { type: 'string' } },
    },
  });
  await call('/admin/partners', { id: 'bench', name: 'Bench', delivery: { maxConcurrency: 64 } });
  await call('/admin/subscriptions', {
    partnerId: 'bench',
    domain: 'orders',
    event: 'created',
    url: `${receiverUrl}/hook`,
  });
}

const INGEST_HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/cloudevents+json' };

console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; durability ${ENV.WEBHOOKS_DURABILITY ?? 'default'}`,
);

if (!SKIP.has('baseline')) {
  for (const c of LEVELS) {
    const r = await load(receiverUrl, '/hook', REQUESTS, c, { 'content-type': 'application/json' });
    console.log(
      `baseline  raw POST → receiver, concurrency ${String(c).padStart(3)}: ${r.perSecond}; ${latencyLine(r.latencies)}`,
    );
  }
}

/**
 * Single-event ingest at each concurrency: with `role` `all`, the platform also routes and delivers
 * every event meanwhile (the two cores are shared with the processor, the dispatcher and the
 * receiver); with `api`, the acknowledgement path alone (no processor or dispatcher runs: the events
 * wait in the log; in a split deployment those would run in other processes, on other cores).
 */
async function ingestPhase(role: 'all' | 'api'): Promise<void> {
  const dir = await mkdtemp(join(os.tmpdir(), 'webhooks-bench-ingest-'));
  const platform = await startPlatformProcess(role, dir, ENV);
  await setUp(platform.url);
  const label = role === 'all' ? 'ingest    (whole platform)' : 'ingest    (api role alone)';
  for (const c of LEVELS) {
    const cpu = cpuMsOf(platform.child.pid);
    const r = await load(platform.url, '/events', REQUESTS, c, INGEST_HEADERS);
    const cpuPer = ((cpuMsOf(platform.child.pid) - cpu) * 1000) / REQUESTS;
    console.log(
      `${label} one event per POST /events, concurrency ${String(c).padStart(3)}: ${r.perSecond} acknowledged; ${latencyLine(r.latencies)}; ` +
        `${r.failures} not 202; platform CPU ${cpuPer.toFixed(0)} µs per request`,
    );
  }
  await platform.stop();
  await rm(dir, { recursive: true, force: true });
}

if (!SKIP.has('ingest-api')) await ingestPhase('api');
if (!SKIP.has('ingest')) await ingestPhase('all');

if (!SKIP.has('e2e')) {
  for (const perSecond of RATES) {
    const dir = await mkdtemp(join(os.tmpdir(), 'webhooks-bench-e2e-'));
    const platform = await startPlatformProcess('all', dir, ENV);
    await setUp(platform.url);
    const pool = new Pool(platform.url, { connections: 16 });
    // Warm-up, not measured: the first connections, the compiled schema and subscription lookups, and
    // the JIT (a fresh process is several times slower for its first thousands of events).
    await ask({ cmd: 'reset' });
    await Promise.all(
      Array.from({ length: 8 }, async (_, k) => {
        for (let i = k; i < 4000; i += 8) {
          const res = await pool.request({
            method: 'POST',
            path: '/events',
            body: eventBody(i),
            headers: INGEST_HEADERS,
          });
          await res.body.dump();
        }
      }),
    );
    for (let i = 0; i < 300 && (await ask<{ unique: number }>({ cmd: 'count' })).unique < 4000; i++)
      await new Promise((r) => setTimeout(r, 100));
    await ask({ cmd: 'reset' });
    const total = perSecond * SECONDS;
    const started = performance.now();
    const sends: Promise<void>[] = [];
    for (let n = 0; n < total; n++) {
      const wait = started + (n * 1000) / perSecond - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      sends.push(
        pool
          .request({ method: 'POST', path: '/events', body: eventBody(n), headers: INGEST_HEADERS })
          .then((res) => res.body.dump()),
      );
    }
    await Promise.all(sends);
    let stats = await ask<{ unique: number; latencies: number[] }>({ cmd: 'stats' });
    for (let i = 0; i < 100 && stats.unique < total; i++) {
      await new Promise((r) => setTimeout(r, 100));
      stats = await ask({ cmd: 'stats' });
    }
    console.log(
      `e2e       ${perSecond} events/s, one per request, for ${SECONDS} s: publish → delivery ${latencyLine(stats.latencies)}; delivered ${stats.unique}/${total}`,
    );
    await pool.close();
    await platform.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await receiver.stop();
