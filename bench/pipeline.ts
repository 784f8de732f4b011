/**
 * End-to-end benchmark of the embedded engine: ingest (HTTP) → embedded log → processor → egress
 * topic → dispatcher → HTTP receiver, with 1 KB events, Standard Webhooks signing and the
 * idempotency ledger on. The platform runs as a real `webhooks start` process (`--mode single`, the
 * default), or split in two (`--mode split`: `--role api,processor` and `--role dispatcher`). The
 * receiver is a child process too. Printed next to a baseline measured in the same run: the raw HTTP
 * client (undici, same concurrency) against the same receiver.
 *
 *   npm run bench
 *   npm run bench -- --events 100000 --rate 1000 --seconds 30 --backlog 1000000 --mode split
 *   BENCH_LEDGER=0 npm run bench …          # the same with the idempotency ledger off
 *   BENCH_PROFILE=dispatcher BENCH_PROFILE_DIR=/tmp/prof npm run bench …   # CPU profile of one role
 *   BENCH_SERIES=1 npm run bench -- --skip baseline,throughput,backlog --rate 5000   # latency second by second
 *   npm run bench -- --bus both --skip backlog            # embedded, then Kafka (a real broker), same run
 *   npm run bench -- --bus kafka --store dynamodb         # Kafka + DynamoDB (dynalite), capacity units per delivery
 *   npm run bench -- --bus both --skip backlog,latency --warm-events 0   # throughput of cold processes (before 2026-12-08)
 *   BENCH_TRACE=1 npm run bench -- --skip backlog,latency  # events processed and delivered every 250 ms (which stage lags)
 *
 * With Kafka, each phase gets a fresh single-node broker (tools/kafka/broker.ts) whose CPU is
 * counted with the platform's, and a raw produce→consume loop with the same client
 * (@platformatic/kafka) runs first as the bus's own baseline. With DynamoDB, the store runs on
 * dynalite (a child process) and the read/write capacity units the platform consumed are divided
 * by the deliveries.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { type EngineRun, kafkaRawBaseline, startEngines } from './engines.ts';
import { cpuMsOf, type PlatformProcess, startPlatformProcess } from './platform-process.ts';
import { startReceiverProcess } from './receiver-process.ts';
import { latencyLine, mb, rate } from './stats.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '50000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
    backlog: { type: 'string', default: '200000' },
    concurrency: { type: 'string', default: '64' },
    mode: { type: 'string', default: 'single' },
    skip: { type: 'string', default: '' },
    bus: { type: 'string', default: 'embedded' },
    warmup: { type: 'string', default: '5' },
    'warm-events': { type: 'string', default: '15000' },
    store: { type: 'string', default: 'sqlite' },
  },
});
const BUSES = values.bus === 'both' ? ['embedded', 'kafka'] : [values.bus === 'kafka' ? 'kafka' : 'embedded'];
const STORE = values.store === 'dynamodb' ? 'dynamodb' : 'sqlite';
/** Seconds at the latency phase's rate before it is measured. */
const WARMUP = Number(values.warmup);
/**
 * Events delivered before the throughput phase is measured: the platform's JIT and the broker's JVM
 * warm, as in a running system (the latency phase warms up the same way, `--warmup`).
 */
const WARM_EVENTS = Number(values['warm-events']);
const EVENTS = Number(values.events);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const BACKLOG = Number(values.backlog);
const CONCURRENCY = Number(values.concurrency);
const MODE = values.mode === 'split' ? 'split' : 'single';
const SKIP = new Set(values.skip.split(',').filter(Boolean));
const TOKEN = 'bench-token-0123456789abcdef';
const PAD = 'x'.repeat(900);
const BASE_ENV = {
  WEBHOOKS_ADMIN_TOKEN: TOKEN,
  WEBHOOKS_DEV: '1',
  WEBHOOKS_LOG_LEVEL: 'error',
  WEBHOOKS_ENDPOINT_CONCURRENCY: String(CONCURRENCY),
  WEBHOOKS_MAX_BODY_BYTES: String(8 * 1024 * 1024),
  ...(process.env.BENCH_LEDGER ? { WEBHOOKS_LEDGER: process.env.BENCH_LEDGER } : {}),
};

type Stats = {
  count: number;
  firstAt: number;
  lastAt: number;
  latencies: number[];
  unique: number;
  duplicates: number;
};

const receiverProcess = await startReceiverProcess();
const receiver = receiverProcess.child;
const ask = receiverProcess.ask;
const receiverUrl = receiverProcess.url;

function event(n: number) {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source: '/bench',
    type: 'orders.created',
    data: { orderId: `o-${n}`, amount: n, currency: 'EUR', sentAt: Date.now(), pad: PAD },
  };
}

async function waitForCount(target: number, timeoutMs: number): Promise<Stats> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { unique } = await ask<{ unique: number }>({ cmd: 'count' });
    if (unique >= target || Date.now() > deadline) return ask<Stats>({ cmd: 'stats' });
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The platform in the chosen mode; `withDispatcher: false` leaves the dispatcher out (backlog phase). */
async function startPlatform(
  dataDir: string,
  engines: EngineRun,
  withDispatcher = true,
): Promise<PlatformProcess[]> {
  const env = { ...BASE_ENV, ...engines.env };
  if (MODE === 'single')
    return [await startPlatformProcess(withDispatcher ? 'all' : 'api,processor', dataDir, env)];
  const procs = [await startPlatformProcess('api,processor', dataDir, env)];
  if (withDispatcher) procs.push(await startPlatformProcess('dispatcher', dataDir, env));
  return procs;
}

async function call(
  url: string,
  method: string,
  path: string,
  body: unknown,
  contentType = 'application/json',
) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function setUp(url: string): Promise<void> {
  await call(url, 'POST', '/admin/schemas', {
    domain: 'orders',
    event: 'created',
    schema: {
      type: 'object',
      required: ['orderId', 'amount', 'sentAt'],
      properties: {
        orderId: { type: 'string' },
        amount: { type: 'number' },
        currency: { type: 'string' },
        sentAt: { type: 'integer' },
        pad: { type: 'string' },
      },
    },
  });
  await call(url, 'POST', '/admin/partners', {
    id: 'bench',
    name: 'Bench',
    delivery: { maxConcurrency: CONCURRENCY },
  });
  await call(url, 'POST', '/admin/subscriptions', {
    partnerId: 'bench',
    domain: 'orders',
    event: 'created',
    url: `${receiverUrl}/hook`,
  });
}

/** BENCH_SERIES=1: the latency phase second by second (deliveries, p50, p99, max by arrival time). */
async function printSeries(started: number): Promise<void> {
  const { latencies, arrivals } = await ask<{ latencies: number[]; arrivals: number[] }>({ cmd: 'series' });
  const seconds = new Map<number, number[]>();
  arrivals.forEach((at, i) => {
    const s = Math.floor((at - started) / 1000);
    const bucket = seconds.get(s) ?? [];
    if (bucket.length === 0) seconds.set(s, bucket);
    bucket.push(latencies[i]!);
  });
  for (const [s, values] of [...seconds].sort((a, b) => a[0] - b[0]))
    console.log(
      `  second ${String(s).padStart(3)}: ${String(values.length).padStart(5)} delivered; ${latencyLine(values)}`,
    );
}

/** BENCH_TRACE=1: every 250 ms, events the processor handled and deliveries that succeeded, cumulative. */
function traceStages(api: string, started: number) {
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const text = await (
        await fetch(`${api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).text();
      const processed = /^events_processed (\d+)/m.exec(text)?.[1];
      const delivered = /^webhook_deliveries_total\{[^}]*outcome="success"[^}]*\} (\d+)/m.exec(text)?.[1];
      console.log(
        `  ${String(Date.now() - started).padStart(6)} ms: processed ${processed}, delivered ${delivered}`,
      );
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return { stop: () => (stopped = true) };
}

const publishBatch = (url: string, events: unknown[]) =>
  call(url, 'POST', '/events', events, 'application/cloudevents-batch+json');

/** The processes whose CPU counts: the platform's, the engines' (broker, emulator) and the receiver. */
const counted = (procs: PlatformProcess[], engines: EngineRun) => [
  ...procs.map((p) => [p.role, p.child.pid] as const),
  ...engines.processes,
  ['receiver', receiver.pid] as const,
];
/** CPU used per delivery by each process since `before` (µs), the receiver included. */
const cpuPerDelivery = (procs: PlatformProcess[], engines: EngineRun, before: number[], deliveries: number) =>
  counted(procs, engines)
    .map(([role, pid], i) => `${role} ${(((cpuMsOf(pid) - before[i]!) * 1000) / deliveries).toFixed(0)} µs`)
    .join(', ');
const cpuNow = (procs: PlatformProcess[], engines: EngineRun) =>
  counted(procs, engines).map(([, pid]) => cpuMsOf(pid));

/** DynamoDB: capacity units the platform's processes consumed per delivery (from their metrics). */
async function capacityPerDelivery(procs: PlatformProcess[], deliveries: number): Promise<string> {
  if (STORE !== 'dynamodb') return '';
  let read = 0;
  let write = 0;
  for (const p of procs) {
    const text = await (
      await fetch(`${p.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).text();
    for (const m of text.matchAll(
      /^dynamodb_consumed_capacity_units\{kind="(read|write)",thread="[a-z]+"\} ([\d.e+]+)/gm,
    ))
      if (m[1] === 'read') read += Number(m[2]);
      else write += Number(m[2]);
  }
  return `; DynamoDB capacity per delivery: ${(read / deliveries).toFixed(2)} RCU, ${(write / deliveries).toFixed(2)} WCU`;
}

const peaks = (procs: PlatformProcess[]) => procs.map((p) => `${p.role} ${mb(p.peakRss)}`).join(', ');

console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${mb(os.totalmem())} RAM, Node ${process.version}; platform mode: ${MODE}`,
);

// 1. Baseline: the raw HTTP client against the same receiver.
if (!SKIP.has('baseline')) {
  const n = 50_000;
  const pool = new Pool(receiverUrl, { connections: CONCURRENCY });
  const body = JSON.stringify(event(0).data);
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        next += 1;
        const t = performance.now();
        const res = await pool.request({
          method: 'POST',
          path: '/hook',
          body,
          headers: { 'content-type': 'application/json' },
        });
        await res.body.dump();
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = performance.now() - started;
  await pool.close();
  console.log(
    `baseline   raw undici POST → receiver, ${n} requests, concurrency ${CONCURRENCY}: ${rate(n, elapsed)}; latency ${latencyLine(latencies)}`,
  );
}

for (const bus of BUSES) {
  const label = `[${bus} bus, ${STORE} store]`;
  console.log(`\n${label}`);

  // 1b. Kafka's own baseline: a raw produce→consume loop with the same client, same messages.
  if (bus === 'kafka' && !SKIP.has('baseline')) {
    for (const line of await kafkaRawBaseline({
      events: EVENTS,
      rate: RATE,
      seconds: SECONDS,
      valueBytes: 1024,
    }))
      console.log(line);
  }

  // 2. Throughput: publish as fast as ingest takes it (after WARM_EVENTS); deliveries/s measured at the receiver.
  if (!SKIP.has('throughput')) {
    const engines = await startEngines(bus, STORE);
    const dir = await mkdtemp(join(os.tmpdir(), 'webhooks-bench-'));
    const procs = await startPlatform(dir, engines);
    const api = procs[0]!.url;
    await setUp(api);
    for (let sent = 0; sent < WARM_EVENTS; sent += 500)
      await publishBatch(
        api,
        Array.from({ length: Math.min(500, WARM_EVENTS - sent) }, (_, i) => event(-1 - sent - i)),
      );
    if (WARM_EVENTS > 0) await waitForCount(WARM_EVENTS, 900_000);
    await ask({ cmd: 'reset' });
    const cpuBefore = cpuNow(procs, engines);
    const started = Date.now();
    const trace = process.env.BENCH_TRACE ? traceStages(api, started) : undefined;
    let sent = 0;
    await Promise.all(
      [0, 1].map(async () => {
        while (sent < EVENTS) {
          const size = Math.min(500, EVENTS - sent);
          const from = sent;
          sent += size;
          await publishBatch(
            api,
            Array.from({ length: size }, (_, i) => event(from + i)),
          );
        }
      }),
    );
    const ingestMs = Date.now() - started;
    const stats = await waitForCount(EVENTS, 900_000);
    trace?.stop();
    console.log(
      `throughput ${EVENTS} events of 1 KB${WARM_EVENTS > 0 ? ` (after ${WARM_EVENTS} to warm up)` : ''}: ingest ${rate(EVENTS, ingestMs)}; deliveries ${rate(stats.unique, stats.lastAt - stats.firstAt)} ` +
        `(first→last delivery), ${rate(stats.unique, stats.lastAt - started)} from first publish; duplicates ${stats.duplicates}; peak RSS ${peaks(procs)}; ` +
        `CPU per delivery: ${cpuPerDelivery(procs, engines, cpuBefore, stats.unique)}${await capacityPerDelivery(procs, stats.unique)}`,
    );
    for (const p of procs) await p.stop();
    await engines.stop();
    if (process.env.BENCH_KEEP) console.log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }

  // 3. Latency at a steady rate: ingest→delivery (sentAt in the event → arrival at the receiver).
  if (!SKIP.has('latency')) {
    const engines = await startEngines(bus, STORE);
    const dir = await mkdtemp(join(os.tmpdir(), 'webhooks-bench-'));
    const procs = await startPlatform(dir, engines);
    const api = procs[0]!.url;
    await setUp(api);
    // Warm-up at the same rate (WARMUP seconds, not measured): the subscription's topic read by the
    // dispatcher, the JIT of the platform (and of the broker's JVM) done, as in a running system.
    const warmTicks = WARMUP * 100;
    const warmStart = Date.now();
    const perWarmTick = Math.max(1, Math.round(RATE / 100));
    for (let t = 0; t < warmTicks; t++) {
      const wait = warmStart + t * 10 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      void publishBatch(
        api,
        Array.from({ length: perWarmTick }, (_, i) => event(-1 - t * perWarmTick - i)),
      );
    }
    if (warmTicks === 0) await publishBatch(api, [event(-1)]);
    await waitForCount(Math.max(1, warmTicks * perWarmTick), 120_000);
    await ask({ cmd: 'reset' });
    const cpuBefore = cpuNow(procs, engines);
    const perTick = Math.max(1, Math.round(RATE / 100));
    const ticks = SECONDS * 100;
    const started = Date.now();
    const inflight: Promise<unknown>[] = [];
    for (let t = 0; t < ticks; t++) {
      const wait = started + t * 10 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inflight.push(
        publishBatch(
          api,
          Array.from({ length: perTick }, (_, i) => event(t * perTick + i)),
        ),
      );
    }
    await Promise.all(inflight);
    const total = ticks * perTick;
    const stats = await waitForCount(total, 120_000);
    console.log(
      `latency    ${rate(total, SECONDS * 1000)} for ${SECONDS} s (${total} events, batches of ${perTick} every 10 ms): ingest→delivery ${latencyLine(stats.latencies)}; delivered ${stats.unique}/${total}; ` +
        `CPU per delivery: ${cpuPerDelivery(procs, engines, cpuBefore, stats.unique)}${await capacityPerDelivery(procs, stats.unique)}`,
    );
    if (process.env.BENCH_SERIES) await printSeries(started);
    for (const p of procs) await p.stop();
    await engines.stop();
    if (process.env.BENCH_KEEP) console.log(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }

  // 4. Backlog: BACKLOG delivery tasks wait in the egress topic, then the dispatcher drains them.
  if (!SKIP.has('backlog') && BACKLOG > 0) {
    const engines = await startEngines(bus, STORE);
    const dir = await mkdtemp(join(os.tmpdir(), 'webhooks-bench-'));
    const producers = await startPlatform(dir, engines, false);
    const api = producers[0]!.url;
    await setUp(api);
    await ask({ cmd: 'reset' });
    const filled = Date.now();
    for (let sent = 0; sent < BACKLOG; sent += 1000) {
      const size = Math.min(1000, BACKLOG - sent);
      await publishBatch(
        api,
        Array.from({ length: size }, (_, i) => event(sent + i)),
      );
    }
    const processed = async () =>
      Number(/^events_processed (\d+)/m.exec(await (await fetch(`${api}/metrics`)).text())?.[1] ?? 0);
    while ((await processed()) < BACKLOG) await new Promise((r) => setTimeout(r, 500));
    const backlogMs = Date.now() - filled;
    const drainStart = Date.now();
    const dispatcher = await startPlatformProcess('dispatcher', dir, { ...BASE_ENV, ...engines.env });
    const cpuBefore = cpuNow([dispatcher], engines);
    const stats = await waitForCount(BACKLOG, 3_600_000);
    console.log(
      `backlog    ${BACKLOG} delivery tasks queued in ${(backlogMs / 1000).toFixed(0)} s (ingest + processor, no dispatcher running); ` +
        `drained at ${rate(stats.unique, stats.lastAt - drainStart)}; peak RSS ${peaks([...producers, dispatcher])}; duplicates ${stats.duplicates}; ` +
        `CPU per delivery: ${cpuPerDelivery([dispatcher], engines, cpuBefore, stats.unique)}`,
    );
    for (const p of [...producers, dispatcher]) await p.stop();
    await engines.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await receiverProcess.stop();
