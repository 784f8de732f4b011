/**
 * The heap-trim test's worker (an isolate of its own): builds ~300 MB of small objects, lets V8
 * collect them as it does on its own (a regular major collection: the heap shrinks, its pages stay
 * resident), and reports what the trim did and the process RSS around it.
 */
import v8 from 'node:v8';
import { parentPort } from 'node:worker_threads';
import { exposedGc, type HeapTrim, startHeapTrim } from '../../src/common/heap-trim.ts';

const gc = exposedGc();

const trimmed = new Promise<HeapTrim>((resolve) => {
  const stop = startHeapTrim({
    sampleMs: 20,
    minIntervalMs: 0,
    onTrim: (trim) => {
      stop();
      resolve(trim);
    },
  });
});
const tick = () => new Promise((r) => setTimeout(r, 50));
// About 330 MB live (3,000,000 objects, each with a 48-character string of its own), so the heap
// holds far more than the test's 200 MB whatever room V8 commits around it: with 8-character
// strings (~150 MB live) the committed heap read 141 MB in one CI run, under memory pressure.
let garbage: Array<{ n: number; s: string }> | undefined = [];
for (let i = 0; i < 3_000_000; i++) garbage.push({ n: i, s: `v${i}`.padEnd(48, '.') });
const built = v8.getHeapStatistics().total_heap_size;
await tick(); // sampled while the heap is at its highest
// Read after the wait, so the objects are certainly alive across it: twice in CI runs the heap read
// here was far below what they hold (8 and 141 MB against ~350), as if they had been collected.
if (garbage.length !== 3_000_000) throw new Error('the objects are gone');
const afterWait = v8.getHeapStatistics().total_heap_size;
const heapBefore = Math.max(built, afterWait);
garbage = undefined;
gc({ type: 'major', execution: 'sync' }); // V8's own kind of collection: the pages stay
const rssAfterGc = process.memoryUsage.rss();
const keepAlive = setInterval(() => {}, 1000); // the trim's timer does not hold the thread open
const trim = await trimmed;
clearInterval(keepAlive);
parentPort?.postMessage({
  heapBefore,
  built,
  afterWait,
  rssAfterGc,
  rssAfterTrim: process.memoryUsage.rss(),
  trim,
});
