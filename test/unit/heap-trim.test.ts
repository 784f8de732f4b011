/** startHeapTrim: a heap that shrank gives its pooled pages back to the OS. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { HeapTrim } from '../../src/common/heap-trim.ts';

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
