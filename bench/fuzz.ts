/**
 * The fuzz: starts the platform in a child process (a fresh data dir, dev mode, a receiver in this
 * process), throws generated hostile requests at every route its OpenAPI document lists — oversized,
 * deeply nested and huge JSON, invalid UTF-8, malformed `%`-escapes, header abuse, hostile JSON
 * Schemas and the events that match them, abusive subscriptions, secret rotations in a loop, odd
 * CloudEvents (`bench/fuzz-requests.ts` has the families) — and meanwhile polls `/healthz` every
 * 50 ms from a thread of its own. Then it publishes sentinel events and waits for their delivery.
 *
 * It reports the requests sent, the answers by status class and by family, each distinct 5xx with a
 * sample request and the platform's log line for it, the requests that got no answer, whether the
 * platform died, its peak and final RSS, and the /healthz latency. Exit code 1 on any 5xx, dropped
 * connection, crash or undelivered sentinel.
 *
 *   npm run fuzz
 *   npm run fuzz -- --requests 20000 --concurrency 32 --seed 7
 *   npm run fuzz -- --families bad-path,header-abuse,invalid-utf8
 *   npm run fuzz -- --seed 7 --case 1234          # makes case 1234 of seed 7 again, shows its answer
 *   npm run fuzz -- --json fuzz-report.json       # the figures as JSON too
 *
 * The same seed makes the same requests against the same build (the routes come from its OpenAPI
 * document); the server's state may differ with the interleaving.
 */

import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os, { setPriority } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { rawRequest } from './fuzz-client.ts';
import type { HealthReport } from './fuzz-health.ts';
import {
  describeCase,
  FAMILIES,
  type Family,
  type FuzzRoute,
  type FuzzTarget,
  generateCase,
} from './fuzz-requests.ts';
import { countOf, describeAnswer, type Finding, type FuzzRunResult, runFuzz } from './fuzz-run.ts';
import { startPlatformProcess } from './platform-process.ts';
import { percentile } from './stats.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    seed: { type: 'string', default: '1' },
    families: { type: 'string', default: FAMILIES.join(',') },
    case: { type: 'string' },
    json: { type: 'string' },
    'sentinel-events': { type: 'string', default: '20' },
    'sentinel-timeout': { type: 'string', default: '120' },
    keep: { type: 'boolean', default: false },
    // Seconds to leave the platform idle after the sentinels, then read its RSS again (0: not at all).
    settle: { type: 'string', default: '30' },
  },
});
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const SEED = Number(values.seed);
const SELECTED = values.families.split(',').filter(Boolean) as Family[];
for (const f of SELECTED)
  if (!FAMILIES.includes(f)) throw new Error(`unknown family ${f}; known: ${FAMILIES.join(', ')}`);
const SENTINELS = Number(values['sentinel-events']);
const TOKEN = process.env.WEBHOOKS_ADMIN_TOKEN ?? 'fuzz-admin-token-0123456789abcdef';
const MAX_BODY_BYTES = Number(process.env.WEBHOOKS_MAX_BODY_BYTES ?? 1024 * 1024);
const ENV: Record<string, string> = {
  WEBHOOKS_ADMIN_TOKEN: TOKEN,
  WEBHOOKS_DEV: '1',
  WEBHOOKS_LOG_LEVEL: 'error',
  WEBHOOKS_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
};

// ---------------------------------------------------------------------------------------------
// The receiver: counts deliveries of the fuzz's subscriptions, records the sentinels by number.

const sentinelsSeen = new Set<number>();
let deliveries = 0;
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  const sentinel = req.url?.startsWith('/sentinel') ?? false;
  req.on('data', (chunk: Buffer) => {
    if (sentinel) chunks.push(chunk);
  });
  req.on('end', () => {
    deliveries += 1;
    if (sentinel) {
      try {
        const n = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { n?: unknown }).n;
        if (typeof n === 'number') sentinelsSeen.add(n);
      } catch {
        // Not a sentinel's payload: counted as a delivery only.
      }
    }
    res.writeHead(204);
    res.end();
  });
});
receiver.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

// ---------------------------------------------------------------------------------------------
// The platform, and what its process does meanwhile: exit, error log lines, memory.

const dataDir = await mkdtemp(join(os.tmpdir(), 'webhooks-fuzz-'));
const platform = await startPlatformProcess('all', dataDir, ENV);
const pid = platform.child.pid!;
const port = Number(new URL(platform.url).port);
let stopping = false;
let crash: string | undefined;
platform.child.once('exit', (code, signal) => {
  if (!stopping) crash = `exited with ${signal ?? `code ${code}`}`;
});
// The platform never outlives the fuzz, however the fuzz ends.
process.once('exit', () => platform.child.kill('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

/** Error log lines of the platform: by request id (for the 5xx), and distinct ones with counts. */
const errorsByRequestId = new Map<string, string>();
const distinctErrors = new Map<string, number>();
let partialLine = '';
platform.child.stdout!.on('data', (chunk: Buffer) => {
  const lines = (partialLine + chunk.toString('utf8')).split('\n');
  partialLine = lines.pop() ?? '';
  for (const line of lines) {
    let entry: {
      level?: string;
      msg?: string;
      correlationId?: string;
      err?: { name?: string; message?: string };
    };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry.level !== 'error') continue;
    const what = `${entry.msg}${entry.err ? `: ${entry.err.name}: ${String(entry.err.message).slice(0, 200)}` : ''}`;
    distinctErrors.set(what, (distinctErrors.get(what) ?? 0) + 1);
    if (entry.correlationId && errorsByRequestId.size < 100_000)
      errorsByRequestId.set(entry.correlationId, what);
  }
});

/** VmRSS and VmHWM (the peak the kernel saw) of the platform, in bytes; 0 when unknown. */
function memoryOf(processId: number): { rss: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${processId}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

// ---------------------------------------------------------------------------------------------
// Set-up: the routes, the fuzz's own resources, the sentinel's (which no generated request knows).

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

const openapi = await call('GET', '/openapi.json');
const routes: FuzzRoute[] = [];
for (const [path, operations] of Object.entries<Record<string, { security?: unknown[] }>>(openapi.paths)) {
  for (const [method, operation] of Object.entries(operations)) {
    routes.push({
      method: method.toUpperCase(),
      path,
      public: Array.isArray(operation.security) && operation.security.length === 0,
    });
  }
}

await call('POST', '/admin/schemas', { domain: 'fuzz', event: 'created', schema: { type: 'object' } });
await call('POST', '/admin/partners', { id: 'fuzz-partner', name: 'Fuzz partner' });
const subscription = await call('POST', '/admin/subscriptions', {
  partnerId: 'fuzz-partner',
  domain: 'fuzz',
  event: 'created',
  url: `${receiverUrl}/hook`,
});
await call('POST', '/admin/schemas', {
  domain: 'fuzzsentinel',
  event: 'ping',
  schema: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } },
});
await call('POST', '/admin/partners', { id: 'fuzz-sentinel', name: 'Fuzz sentinel' });
await call('POST', '/admin/subscriptions', {
  partnerId: 'fuzz-sentinel',
  domain: 'fuzzsentinel',
  event: 'ping',
  url: `${receiverUrl}/sentinel`,
});

const target: FuzzTarget = {
  routes,
  token: TOKEN,
  maxBodyBytes: MAX_BODY_BYTES,
  known: {
    domain: 'fuzz',
    event: 'created',
    version: 1,
    partnerId: 'fuzz-partner',
    subscriptionId: subscription.id,
  },
  hookUrl: `${receiverUrl}/hook`,
  selfUrl: platform.url,
};

async function shutDown(): Promise<void> {
  stopping = true;
  // A platform still busy with what the fuzz left it gets 10 s to stop, then SIGKILL.
  const killer = setTimeout(() => platform.child.kill('SIGKILL'), 10_000);
  if (platform.child.exitCode === null && platform.child.signalCode === null) await platform.stop();
  clearTimeout(killer);
  await new Promise((resolve) => receiver.close(resolve));
  receiver.closeAllConnections();
  if (!values.keep) await rm(dataDir, { recursive: true, force: true });
  else console.log(`data dir kept: ${dataDir}`);
}

// ---------------------------------------------------------------------------------------------
// One case again, shown in full.

if (values.case !== undefined) {
  const made = generateCase(SEED, Number(values.case), target, SELECTED);
  console.log(
    `case ${values.case} of seed ${SEED} (${made.family}, aimed at ${made.route}):\n  ${describeCase(made)}`,
  );
  const outcome = await rawRequest(port, made, { timeoutMs: 35_000 });
  console.log(`answer: ${describeAnswer(outcome)}`);
  const requestId = outcome.response?.headers['x-request-id'];
  await sleep(200);
  if (requestId && errorsByRequestId.has(requestId))
    console.log(`platform log: ${errorsByRequestId.get(requestId)}`);
  await shutDown();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// The fuzz, /healthz polled meanwhile, memory sampled.

/** The nice value of the request generator. */
const LOAD_NICE = 10;

const before = memoryOf(pid);
console.log(
  `fuzz: seed ${SEED}, ${REQUESTS.toLocaleString('en-US')} requests at concurrency ${CONCURRENCY}, ` +
    `${SELECTED.length} families, ${routes.length} routes; platform pid ${pid} (${platform.url}), ` +
    `body limit ${MAX_BODY_BYTES} B, RSS ${mib(before.rss)} before`,
);
const health = new Worker(new URL('./fuzz-health.ts', import.meta.url), {
  workerData: { url: platform.url, intervalMs: 50 },
});
// The request generator (this thread) runs at a lower CPU priority than the platform and the
// /healthz poller (a thread started just before, at normal priority): on a machine with few cores
// the generator's own CPU would otherwise show up as the platform's latency. Linux sets it per thread.
try {
  setPriority(LOAD_NICE);
} catch {
  // not allowed here: the figures then include the generator's competition for the CPU
}
let sampledPeak = before.rss;
const sampler = setInterval(() => {
  sampledPeak = Math.max(sampledPeak, memoryOf(pid).rss);
}, 250);
const started = performance.now();
let soFar: FuzzRunResult | undefined;
const progress = setInterval(() => {
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  console.log(
    `  ${seconds} s: ${(soFar?.sent ?? 0).toLocaleString('en-US')} answered or dropped, 5xx ${soFar?.byClass['5xx'] ?? 0}, ` +
      `dropped ${soFar ? countOf(soFar.dropped) : 0}, RSS ${mib(memoryOf(pid).rss)}`,
  );
}, 10_000);
const result = await runFuzz({
  port,
  target,
  seed: SEED,
  requests: REQUESTS,
  concurrency: CONCURRENCY,
  families: SELECTED,
  onProgress(_done, so) {
    soFar = so;
  },
});
clearInterval(progress);
const elapsedMs = performance.now() - started;
const healthReport = await new Promise<HealthReport>((resolve) => {
  health.once('message', resolve);
  health.postMessage('stop');
});
await health.terminate();
const afterFuzz = memoryOf(pid);
// The platform's own view: how long its main thread's event loop was held (since it started).
const loopDelay = crash
  ? undefined
  : {
      max: await metricOf('nodejs_eventloop_delay_max_seconds'),
      p99: await metricOf('nodejs_eventloop_delay_p99_seconds'),
    };

// ---------------------------------------------------------------------------------------------
// Sentinels: valid events published after the fuzz must all be delivered.

const sentinelStarted = performance.now();
let sentinelsAccepted = 0;
for (let n = 0; n < SENTINELS && !crash; n++) {
  const res = await fetch(`${platform.url}/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({
      specversion: '1.0',
      id: `sentinel-${SEED}-${n}`,
      source: '/fuzz-sentinel',
      type: 'fuzzsentinel.ping',
      data: { n },
    }),
  }).catch(() => undefined);
  if (res?.status === 202) sentinelsAccepted += 1;
  await res?.body?.cancel();
}
const sentinelDeadline = Date.now() + Number(values['sentinel-timeout']) * 1000;
while (sentinelsSeen.size < SENTINELS && Date.now() < sentinelDeadline && !crash) await sleep(100);
const sentinelMs = performance.now() - sentinelStarted;
clearInterval(sampler);
const final = memoryOf(pid);
const heapUsed = crash ? Number.NaN : await metricOf('process_heap_bytes');
// Idle afterwards: what the platform keeps once the burst is over (its threads trim their heaps).
const SETTLE_S = Number(values.settle);
if (SETTLE_S > 0 && !crash) await sleep(SETTLE_S * 1000);
const settled = SETTLE_S > 0 && !crash ? memoryOf(pid) : undefined;

// ---------------------------------------------------------------------------------------------
// The report.

const serverErrors = countOf(result.serverErrors);
const dropped = countOf(result.dropped);
const healthLatencies = healthReport.latencies;
/** The polls over 100 ms: their latency, and when they were sent (s into the fuzz). */
const slowPolls = healthLatencies.flatMap((l, i) =>
  l > 100 ? [`${Math.round(l)} ms at ${(healthReport.sentAt[i]! / 1000).toFixed(1)} s`] : [],
);
/** The five slowest polls, slowest first (the first ten are listed as they came). */
const slowestPolls = healthLatencies
  .map((l, i) => ({ l, at: healthReport.sentAt[i]! }))
  .filter((p) => p.l > 100)
  .sort((a, b) => b.l - a.l)
  .slice(0, 5)
  .map((p) => `${Math.round(p.l)} ms at ${(p.at / 1000).toFixed(1)} s`);
const lines: string[] = [];
lines.push(
  `requests sent: ${result.sent.toLocaleString('en-US')} in ${(elapsedMs / 1000).toFixed(1)} s (${Math.round((result.sent / elapsedMs) * 1000)}/s)`,
);
const classes = ['2xx', '3xx', '4xx', '5xx'].map((c) => `${c} ${result.byClass[c] ?? 0}`).join(' · ');
lines.push(`answers: ${classes} · dropped ${dropped} (answered, then reset: ${result.resetAfterAnswer})`);
const statuses = [...result.byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`);
lines.push(`statuses: ${statuses.join(' ')}`);
lines.push('by family:                 sent    2xx    4xx    5xx  dropped   time p50 / p99 / max');
for (const family of FAMILIES) {
  const f = result.byFamily.get(family);
  if (!f) continue;
  const col = (k: string) => String(f.byClass[k] ?? 0).padStart(7);
  const times = [50, 99, 100].map((p) => ms(percentile(f.latencies, p))).join(' / ');
  lines.push(
    `  ${family.padEnd(22)}${String(f.sent).padStart(6)}${col('2xx')}${col('4xx')}${col('5xx')}${col('dropped')}   ${times}`,
  );
}
lines.push(`5xx: ${serverErrors} (${result.serverErrors.size} distinct)`);
for (const [key, finding] of result.serverErrors) lines.push(...describeFinding(key, finding));
lines.push(`dropped connections (no answer): ${dropped} (${result.dropped.size} distinct)`);
for (const [key, finding] of result.dropped) lines.push(...describeFinding(key, finding));
lines.push(`platform process: ${crash ? `CRASHED (${crash})` : 'alive'}`);
lines.push(
  `platform RSS: ${mib(before.rss)} before, peak ${mib(Math.max(final.peak, sampledPeak))} (VmHWM), ` +
    `${mib(afterFuzz.rss)} after the fuzz, ${mib(final.rss)} at the end (V8 heap in use then: ${mib(heapUsed)})` +
    (settled ? `, ${mib(settled.rss)} after ${SETTLE_S} s idle` : ''),
);
lines.push(
  `/healthz every 50 ms during the fuzz: ${healthLatencies.length} answered, ${healthReport.failures} failed` +
    `${healthReport.lastFailure ? ` (last: ${healthReport.lastFailure})` : ''}; latency p50 ${ms(percentile(healthLatencies, 50))}, ` +
    `p99 ${ms(percentile(healthLatencies, 99))}, max ${ms(Math.max(0, ...healthLatencies))}; ` +
    `over 100 ms: ${slowPolls.length}${slowPolls.length > 0 ? ` (${slowPolls.slice(0, 10).join(', ')})` : ''}` +
    (slowPolls.length > 10 ? `; slowest: ${slowestPolls.join(', ')}` : ''),
);
if (loopDelay) {
  lines.push(
    `platform main-thread event-loop delay: p99 ${ms(loopDelay.p99 * 1000)}, max ${ms(loopDelay.max * 1000)}`,
  );
}
lines.push(
  `sentinel: ${sentinelsSeen.size}/${SENTINELS} delivered (${sentinelsAccepted} accepted) in ${(sentinelMs / 1000).toFixed(1)} s; ` +
    `${deliveries.toLocaleString('en-US')} deliveries received in all`,
);
if (distinctErrors.size > 0) {
  lines.push(`platform error log lines (distinct, most frequent first):`);
  for (const [what, n] of [...distinctErrors].sort((a, b) => b[1] - a[1]).slice(0, 25))
    lines.push(`  ${String(n).padStart(6)} × ${what}`);
}
console.log(lines.join('\n'));

if (values.json) {
  const findings = (map: Map<string, Finding>) =>
    [...map].map(([key, f]) => ({
      key,
      ...f,
      families: [...f.families],
      ...(f.requestId && errorsByRequestId.has(f.requestId)
        ? { log: errorsByRequestId.get(f.requestId) }
        : {}),
    }));
  await writeFile(
    values.json,
    JSON.stringify(
      {
        seed: SEED,
        requests: result.sent,
        concurrency: CONCURRENCY,
        elapsedMs,
        byClass: result.byClass,
        byStatus: Object.fromEntries(result.byStatus),
        byFamily: Object.fromEntries(
          [...result.byFamily].map(([family, f]) => [
            family,
            {
              sent: f.sent,
              byClass: f.byClass,
              p99Ms: percentile(f.latencies, 99),
              maxMs: percentile(f.latencies, 100),
            },
          ]),
        ),
        serverErrors: findings(result.serverErrors),
        dropped: findings(result.dropped),
        resetAfterAnswer: result.resetAfterAnswer,
        crash: crash ?? null,
        rss: {
          before: before.rss,
          peak: Math.max(final.peak, sampledPeak),
          afterFuzz: afterFuzz.rss,
          final: final.rss,
          ...(settled ? { settled: settled.rss, settleSeconds: SETTLE_S } : {}),
        },
        heapUsed,
        healthz: {
          polls: healthLatencies.length,
          failures: healthReport.failures,
          p50: percentile(healthLatencies, 50),
          p99: percentile(healthLatencies, 99),
          max: Math.max(0, ...healthLatencies),
        },
        sentinel: { expected: SENTINELS, delivered: sentinelsSeen.size, ms: sentinelMs },
        platformErrors: Object.fromEntries(distinctErrors),
      },
      null,
      2,
    ),
  );
}

const failed = serverErrors > 0 || dropped > 0 || crash !== undefined || sentinelsSeen.size < SENTINELS;
await shutDown();
process.exit(failed ? 1 : 0);

function describeFinding(key: string, finding: Finding): string[] {
  const log = finding.requestId ? errorsByRequestId.get(finding.requestId) : undefined;
  return [
    `  ${key} × ${finding.count} [${[...finding.families].join(', ')}]`,
    `    case ${finding.index}: ${finding.request}`,
    `    answer: ${finding.answer}`,
    ...(log ? [`    platform log: ${log}`] : []),
  ];
}

/** The first sample of a metric in the platform's /metrics, NaN when there is none. */
async function metricOf(name: string): Promise<number> {
  const text = await fetch(`${platform.url}/metrics`)
    .then((res) => res.text())
    .catch(() => '');
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

function mib(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MiB`;
}

function ms(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(1)} ms` : '-';
}
