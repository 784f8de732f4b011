/**
 * Gives the pages of a shrunken V8 heap back to the OS.
 *
 * Since V8 13.6 (Node 24) the pages a garbage collection frees stay in a pool, resident, for reuse;
 * only a memory-reducing collection releases them, and V8's memory reducer, in a server that never
 * goes idle, does not run one. So each thread's RSS stays at the highest its heap ever reached —
 * a burst of 1 MB bodies parsed into millions of small objects leaves hundreds of MB resident long
 * after the objects are gone (measured in a fuzz run: 1.45 GiB of a 2 GiB RSS was such pages; one
 * memory-reducing collection in each thread brought it to 0.45 GiB). This runs that collection in
 * the calling thread when its heap has shrunk well below the highest it reached since the last one.
 * It holds the thread for tens of ms (20–120 ms measured in fuzz runs, more with a large live
 * heap), so a thread that serves requests runs it only while its loop is nearly idle: in a 50,000-
 * request fuzz run, trims of the API's thread while it was up to half busy held it 64–122 ms each,
 * with requests waiting.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from './log.ts';
import type { MetricsRegistry } from './metrics.ts';

type GcFunction = (options?: {
  type?: 'major' | 'minor';
  execution?: 'sync' | 'async';
  flavor?: string;
}) => void;

let gcFunction: GcFunction | undefined;
/** This isolate's trim, shared by every caller (tests start several servers in one process). */
let running: { stop: () => void; users: number } | undefined;

/** V8's `gc` function, as `--expose-gc` gives it, obtained without that flag on the command line. */
export function exposedGc(): GcFunction {
  if (gcFunction) return gcFunction;
  v8.setFlagsFromString('--expose-gc');
  try {
    gcFunction = vm.runInNewContext('gc') as GcFunction;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return gcFunction;
}

/** A thread that answers requests trims only after a sample in which its loop was busy at most this share. */
export const SERVING_THREAD_BUSY_ABOVE = 0.05;

export interface HeapTrim {
  /** How long it held the thread (ms). */
  ms: number;
  /** The committed heap at its highest since the last trim, before this one, and after it (bytes). */
  peak: number;
  before: number;
  after: number;
}

export interface HeapTrimOptions {
  /** How often the committed heap size is read (ms). */
  sampleMs?: number;
  /** Trim when the committed heap is this far below its highest since the last trim (bytes). */
  minShrinkBytes?: number;
  /** At most one trim per this long (ms). */
  minIntervalMs?: number;
  /** The thread counts as busy when its event loop was busy more than this share of the last sample (default 0.5). */
  busyAbove?: number;
  /**
   * While the thread is busy, at most one trim per this long (ms); undefined: never while busy (a
   * thread that answers requests).
   */
  busyIntervalMs?: number;
  /** Told after each trim. */
  onTrim?: (trim: HeapTrim) => void;
  /** Told at each sample where a trim was due but the thread was too busy for it. */
  onDeferred?: () => void;
  /** Each trim is logged here (debug): how long it took, and the MB the heap went from and to. */
  logger?: Logger;
}

/**
 * Starts trimming the calling thread's heap; returns the stop function. A thread has one trim: a
 * second call shares the first's (and its options) until both have stopped.
 */
export function startHeapTrim(options: HeapTrimOptions = {}): () => void {
  running ??= { stop: startTrimming(options), users: 0 };
  const trim = running;
  trim.users += 1;
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    trim.users -= 1;
    if (trim.users === 0) {
      trim.stop();
      if (running === trim) running = undefined;
    }
  };
}

/** What the sampler knows when it decides whether to trim. */
export interface TrimState {
  /** Now, the last trim, in ms of `performance.now()`. */
  now: number;
  lastTrim: number;
  /** The committed heap at its highest since the last trim, and now (bytes). */
  peak: number;
  committed: number;
  /** The share of the last sample the thread's event loop was busy (0..1). */
  utilization: number;
}

/**
 * What a sample decides: `trim` (the heap shrank enough, long enough after the last trim, and the
 * thread is quiet enough), `busy` (due but the thread is too busy for it now), or `no`.
 */
export function trimDecision(state: TrimState, options: HeapTrimOptions = {}): 'trim' | 'busy' | 'no' {
  const minShrink = options.minShrinkBytes ?? 32 * 1024 * 1024;
  const minInterval = options.minIntervalMs ?? 10_000;
  const since = state.now - state.lastTrim;
  if (since < minInterval || state.peak - state.committed < minShrink) return 'no';
  const busy = state.utilization > (options.busyAbove ?? 0.5);
  return !busy || (options.busyIntervalMs !== undefined && since >= options.busyIntervalMs) ? 'trim' : 'busy';
}

/**
 * The trim's callbacks counting into `webhooks_heap_trims_total{thread}` and
 * `webhooks_heap_trim_deferrals_total{thread}` (samples at which a trim was due but the thread too
 * busy: a serving thread that is never quiet keeps its RSS at its peak, and this shows it).
 */
export function heapTrimCounters(
  metrics: MetricsRegistry,
  thread: string,
): Pick<HeapTrimOptions, 'onTrim' | 'onDeferred'> {
  const trims = metrics.counter('webhooks_heap_trims_total', 'Memory-reducing collections run, by thread.', [
    'thread',
  ]);
  const deferrals = metrics.counter(
    'webhooks_heap_trim_deferrals_total',
    'Samples at which a heap trim was due but the thread was too busy for it, by thread.',
    ['thread'],
  );
  return {
    onTrim: () => trims.inc({ thread }),
    onDeferred: () => deferrals.inc({ thread }),
  };
}

function startTrimming(options: HeapTrimOptions): () => void {
  const gc = exposedGc();
  let peak = 0;
  let lastTrim = performance.now();
  let elu = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const committed = v8.getHeapStatistics().total_heap_size;
    peak = Math.max(peak, committed);
    const now = performance.now();
    const current = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(current, elu).utilization;
    elu = current;
    const decision = trimDecision({ now, lastTrim, peak, committed, utilization }, options);
    if (decision === 'busy') options.onDeferred?.();
    if (decision !== 'trim') return;
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    lastTrim = performance.now();
    const after = v8.getHeapStatistics().total_heap_size;
    const trim = { ms: lastTrim - now, peak, before: committed, after };
    options.onTrim?.(trim);
    const mb = (n: number) => Math.round(n / 1024 / 1024);
    options.logger?.debug('heap trimmed', {
      ms: Math.round(trim.ms),
      peakMb: mb(peak),
      beforeMb: mb(committed),
      afterMb: mb(after),
    });
    peak = after;
  }, options.sampleMs ?? 1000);
  timer.unref();
  return () => clearInterval(timer);
}
