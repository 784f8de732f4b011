/**
 * The fuzz's `/healthz` poller, run in a worker thread of its own so that the fuzz's busy event loop
 * does not count in what it measures: one GET every `intervalMs` (the next at once when one took
 * longer), each on a new connection as a liveness probe makes it, until the message `stop`; then
 * it posts what it saw.
 */
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';

/** What the poller posts back when stopped. */
export interface HealthReport {
  /** Latency of each answered poll, in ms. */
  latencies: number[];
  /** When each answered poll was sent, in ms since the poller started. */
  sentAt: number[];
  /** Polls that failed (no answer, or not 200), and the last reason. */
  failures: number;
  lastFailure?: string;
}

const { url, intervalMs } = workerData as { url: string; intervalMs: number };
const report: HealthReport = { latencies: [], sentAt: [], failures: 0 };
const origin = performance.now();
let stopping = false;
parentPort!.on('message', (message) => {
  if (message === 'stop') stopping = true;
});

/** One GET /healthz; its latency is recorded when it answers 200. */
function poll(): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    const failed = (why: string) => {
      report.failures += 1;
      report.lastFailure = why;
      resolve();
    };
    const req = request(`${url}/healthz`, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode === 200) {
          report.latencies.push(performance.now() - started);
          report.sentAt.push(started - origin);
          resolve();
        } else failed(`status ${res.statusCode}`);
      });
      res.on('error', (err) => failed(err.message));
    });
    req.on('error', (err) => failed(err.message));
    req.end();
  });
}

while (!stopping) {
  const started = performance.now();
  await poll();
  const wait = intervalMs - (performance.now() - started);
  if (wait > 0) await sleep(wait);
}
parentPort!.postMessage(report);
