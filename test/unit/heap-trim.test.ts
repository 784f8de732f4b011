/** startHeapTrim: a heap that shrank gives its pooled pages back to the OS. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  type HeapTrim,
  heapTrimCounters,
  SERVING_THREAD_BUSY_ABOVE,
  trimDecision,
} from '../../src/common/heap-trim.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';

test('after a large heap is collected, the trim runs once and the RSS falls by most of what the heap held', async () => {
  const worker = new Worker(new URL('../support/heap-trim-worker.ts', import.meta.url));
  const [report] = (await once(worker, 'message')) as [
    {
      heapBefore: number;
      built: number;
      afterWait: number;
      rssAfterGc: number;
      rssAfterTrim: number;
      trim: HeapTrim;
    },
  ];
  await worker.terminate();
  const mb = (n: number) => Math.round(n / 1024 / 1024);
  const { trim } = report;
  // Everything the worker saw, should an assertion fail (twice in CI the heap read was far too low).
  const seen = `heap ${mb(report.built)} MB built, ${mb(report.afterWait)} MB after the wait; trim: peak ${mb(trim.peak)}, before ${mb(trim.before)}, after ${mb(trim.after)} MB`;
  assert.ok(report.heapBefore > 200 * 1024 * 1024, `the heap reached ${mb(report.heapBefore)} MB (${seen})`);
  assert.ok(trim.peak - trim.before >= 32 * 1024 * 1024, `it ran because the heap had shrunk (${seen})`);
  assert.ok(
    report.rssAfterGc - report.rssAfterTrim > 100 * 1024 * 1024,
    `RSS ${mb(report.rssAfterGc)} MB after V8's own collection, ${mb(report.rssAfterTrim)} MB after the trim`,
  );
});

test('a trim is due only after the heap shrank, past the interval, and while the thread is quiet enough', () => {
  const MB = 1024 * 1024;
  const shrunk = { now: 20_000, lastTrim: 0, peak: 300 * MB, committed: 100 * MB };
  // The defaults: busy above half of the sample, never while busy.
  assert.equal(trimDecision({ ...shrunk, utilization: 0.4 }), 'trim');
  assert.equal(trimDecision({ ...shrunk, utilization: 0.6 }), 'busy');
  assert.equal(
    trimDecision({ ...shrunk, committed: 290 * MB, utilization: 0 }),
    'no',
    'shrank by less than 32 MB',
  );
  assert.equal(trimDecision({ ...shrunk, now: 5_000, utilization: 0 }), 'no', 'within 10 s of the last');
  // A thread that answers requests: busy above 5 %, so a loop busy 20 % of the last second waits…
  const server = { busyAbove: SERVING_THREAD_BUSY_ABOVE };
  assert.equal(trimDecision({ ...shrunk, utilization: 0.2 }, server), 'busy');
  assert.equal(
    trimDecision({ ...shrunk, now: 10_000_000, utilization: 0.2 }, server),
    'busy',
    'however long since the last',
  );
  // …and one nearly idle trims (busy exactly the share still counts as quiet).
  assert.equal(trimDecision({ ...shrunk, utilization: 0.03 }, server), 'trim');
  assert.equal(trimDecision({ ...shrunk, utilization: SERVING_THREAD_BUSY_ABOVE }, server), 'trim');
  // Busy or not, nothing is due before the heap shrank.
  assert.equal(trimDecision({ ...shrunk, committed: 290 * MB, utilization: 0.9 }, server), 'no');
  // A thread no request waits on trims while busy too, once its busy interval has passed.
  const worker = { busyIntervalMs: 60_000 };
  assert.equal(trimDecision({ ...shrunk, utilization: 0.9 }, worker), 'busy');
  assert.equal(trimDecision({ ...shrunk, now: 59_999, utilization: 0.9 }, worker), 'busy');
  assert.equal(trimDecision({ ...shrunk, now: 60_000, utilization: 0.9 }, worker), 'trim');
});

test("the trim's counters: trims run and samples deferred because the thread was busy, by thread", () => {
  const metrics = new MetricsRegistry();
  const api = heapTrimCounters(metrics, 'api');
  const dispatcher = heapTrimCounters(metrics, 'dispatcher');
  api.onDeferred!();
  api.onDeferred!();
  api.onTrim!({ ms: 40, peak: 3, before: 2, after: 1 });
  dispatcher.onTrim!({ ms: 90, peak: 3, before: 2, after: 1 });
  const text = metrics.render();
  assert.match(text, /^webhooks_heap_trim_deferrals_total\{thread="api"\} 2$/m);
  assert.match(text, /^webhooks_heap_trims_total\{thread="api"\} 1$/m);
  assert.match(text, /^webhooks_heap_trims_total\{thread="dispatcher"\} 1$/m);
  assert.doesNotMatch(text, /deferrals_total\{thread="dispatcher"\}/);
});
