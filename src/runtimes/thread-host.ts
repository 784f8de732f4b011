/**
 * The dispatcher in a worker thread of its own. When one process runs the dispatcher together with
 * another role (`webhooks start`, `--role all`), the dispatcher gets a thread and so a second core:
 * it has its own SQLite connections to the same data dir (the engines handle several connections,
 * as they do for `--role` processes) and its own event loop. The host keeps the process one unit:
 * `/metrics` includes the thread's metrics, `/readyz` asks the thread, admin changes invalidate the
 * thread's caches at once (and a 410 that disables a subscription in the thread invalidates the
 * host's), the thread's log lines go through the host's logger, shutdown drains the thread first,
 * and a thread that dies is started again.
 *
 * Its metrics never look like counter resets to a scraper: when the thread cannot answer (slow,
 * restarting) its last answer is shown again, flagged by `webhooks_dispatcher_thread_metrics_stale`,
 * and a restarted thread's counters and histograms continue the dead one's (carried in the host).
 */
import { Worker } from 'node:worker_threads';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/log.ts';
import {
  applyCarry,
  type CarryTable,
  carryTable,
  MetricsRegistry,
  mergeExposition,
} from '../common/metrics.ts';

/** An admin change to a subscription, for cache invalidation. */
export interface SubscriptionChange {
  id: string;
  domain: string;
  event: string;
  partnerId?: string;
}

/** What the host sends the thread. */
export type HostMessage =
  | { type: 'metrics'; id: number }
  | { type: 'ping'; id: number }
  | { type: 'subscription-changed'; change: SubscriptionChange }
  | { type: 'partner-changed'; partnerId: string }
  | { type: 'stop' };

/** A host message that invalidates the thread's caches. */
type Invalidation = Extract<HostMessage, { type: 'subscription-changed' | 'partner-changed' }>;

/** What the thread sends the host. */
export type ThreadMessage =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'reply'; id: number; value?: string; error?: string }
  | { type: 'log'; line: string }
  | { type: 'subscription-changed'; change: SubscriptionChange }
  | { type: 'stopped'; error?: string };

/** Delay before a thread that died is started again (ms). */
const RESTART_DELAY_MS = 1000;
/** How long a request to the thread may take (ms). */
const REQUEST_TIMEOUT_MS = 2000;
/** How long the thread may take to stop before it is terminated (ms). */
const STOP_TIMEOUT_MS = 30_000;
/** At most this many cache invalidations wait for a thread being started again. */
const MAX_QUEUED_CHANGES = 10_000;

export interface DispatcherThreadOptions {
  config: Config;
  logger: Logger;
  /** A subscription changed in the thread (disabled after a 410). */
  onSubscriptionChanged: (change: SubscriptionChange) => void;
}

interface Pending {
  resolve: (value: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class DispatcherThread {
  readonly #options: DispatcherThreadOptions;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | undefined;
  /** The thread once it is ready (its dispatcher consumes, it listens to the host). */
  #running: Worker | undefined;
  /** Invalidations made while no thread was running, keyed by change, oldest first. */
  readonly #queued = new Map<string, Invalidation>();
  #droppedChanges = 0;
  /** The thread's part of `/metrics` as last shown: its last answer, carried. */
  #shown = '';
  #carry: CarryTable = new Map();
  /** Bumped when a thread exits, so a late answer of a dead thread is not carried twice. */
  #generation = 0;
  /** Host-side metrics about the thread, which the thread cannot report itself. */
  readonly #hostMetrics = new MetricsRegistry();
  readonly #stale = this.#hostMetrics.gauge(
    'webhooks_dispatcher_thread_metrics_stale',
    '1 when the dispatcher thread metrics shown are its last answer (it did not answer in time, or is restarting)',
  );
  readonly #restarts = this.#hostMetrics.counter(
    'webhooks_dispatcher_thread_restarts_total',
    'Times the dispatcher thread exited unexpectedly and was started again',
  );
  #nextId = 1;
  #stopping = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #onStopped: ((error?: string) => void) | undefined;
  /** How many times the thread was started (1 once running; more after restarts). */
  starts = 0;

  private constructor(options: DispatcherThreadOptions) {
    this.#options = options;
  }

  /** Starts the thread and resolves once its dispatcher consumes; rejects when it cannot start. */
  static async start(options: DispatcherThreadOptions): Promise<DispatcherThread> {
    const thread = new DispatcherThread(options);
    await thread.#spawn();
    return thread;
  }

  /**
   * The thread's metrics in Prometheus text, carried across restarts, with the host's metrics about
   * the thread. When the thread cannot answer, its last answer (/metrics must not fail, and counters
   * missing for a scrape would look like resets), flagged stale.
   */
  async metrics(): Promise<string> {
    this.#stale.set((await this.#refresh()) ? 0 : 1);
    return mergeExposition(this.#shown, this.#hostMetrics.render());
  }

  /** Asks the thread for its metrics and carries them into what is shown; false when it cannot answer. */
  async #refresh(): Promise<boolean> {
    const generation = this.#generation;
    try {
      const answer = await this.#request('metrics');
      if (generation !== this.#generation) return false;
      ({ exposition: this.#shown, table: this.#carry } = applyCarry(this.#carry, answer));
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves when the thread and its engines answer. */
  async ping(): Promise<void> {
    await this.#request('ping');
  }

  /** Invalidates the thread's caches; kept until a thread runs again when it is being restarted. */
  subscriptionChanged(change: SubscriptionChange): void {
    this.#invalidate({ type: 'subscription-changed', change });
  }

  /** Invalidates the thread's cached copy of a partner (its status, its delivery settings). */
  partnerChanged(partnerId: string): void {
    this.#invalidate({ type: 'partner-changed', partnerId });
  }

  #invalidate(message: Invalidation): void {
    if (this.#running) this.#running.postMessage(message satisfies HostMessage);
    else this.#queue(message);
  }

  /**
   * Keeps an invalidation for the next thread, the newest when full: the oldest goes, which is
   * harmless as the new thread starts with empty caches and reads what the change wrote.
   */
  #queue(message: Invalidation): void {
    const key =
      message.type === 'partner-changed'
        ? JSON.stringify(['partner', message.partnerId])
        : JSON.stringify([message.change.id, message.change.domain, message.change.event]);
    this.#queued.delete(key);
    this.#queued.set(key, message);
    if (this.#queued.size <= MAX_QUEUED_CHANGES) return;
    this.#queued.delete(this.#queued.keys().next().value!);
    this.#droppedChanges += 1;
  }

  /** Hands the invalidations made while no thread ran to the thread now ready. */
  #flushQueued(worker: Worker): void {
    for (const message of this.#queued.values()) worker.postMessage(message satisfies HostMessage);
    this.#queued.clear();
    if (this.#droppedChanges === 0) return;
    this.#options.logger.warn(
      'cache invalidations were dropped while the dispatcher thread restarted (its caches started empty)',
      { dropped: this.#droppedChanges, kept: MAX_QUEUED_CHANGES },
    );
    this.#droppedChanges = 0;
  }

  /**
   * Ends the thread at once, as a crash would: in-flight deliveries are abandoned (their tasks are
   * redelivered, the ledger absorbs repeats) and the thread is started again after the restart delay.
   */
  async kill(): Promise<void> {
    await this.#worker?.terminate();
  }

  /** Stops the dispatcher (in-flight deliveries finish), then the thread. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    const worker = this.#worker;
    if (!worker) return;
    const stopped = new Promise<string | undefined>((resolve) => {
      this.#onStopped = resolve;
      worker.once('exit', () => resolve(undefined));
    });
    const timeoutMs = STOP_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    this.#post({ type: 'stop' });
    const outcome = await Promise.race([stopped, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#options.logger.warn('the dispatcher thread did not stop in time; terminating it', { timeoutMs });
    } else if (outcome) {
      this.#options.logger.warn('the dispatcher thread stopped with an error', { error: outcome });
    }
    await worker.terminate();
  }

  #spawn(): Promise<void> {
    this.starts += 1;
    const worker = new Worker(new URL('./dispatcher-thread.ts', import.meta.url), {
      workerData: { config: this.#options.config },
    });
    this.#worker = worker;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: ThreadMessage) => {
        switch (message.type) {
          case 'ready':
            ready = true;
            this.#running = worker;
            this.#flushQueued(worker);
            resolve();
            break;
          case 'failed':
            reject(new Error(`the dispatcher thread could not start: ${message.message}`));
            break;
          case 'reply':
            this.#settle(message);
            break;
          case 'log':
            this.#options.logger.forward(message.line);
            break;
          case 'subscription-changed':
            this.#options.onSubscriptionChanged(message.change);
            break;
          case 'stopped':
            this.#onStopped?.(message.error);
            break;
        }
      });
      worker.on('error', (err) => {
        if (!ready) reject(err);
        else this.#options.logger.error('the dispatcher thread failed', { err });
      });
      worker.on('exit', (code) => {
        if (this.#worker === worker) this.#worker = undefined;
        if (this.#running === worker) this.#running = undefined;
        this.#carryOver();
        for (const [id, p] of this.#pending) {
          clearTimeout(p.timer);
          p.reject(new Error('the dispatcher thread exited'));
          this.#pending.delete(id);
        }
        if (!ready) {
          reject(new Error(`the dispatcher thread exited with code ${code} before it was ready`));
          return;
        }
        if (this.#stopping) return;
        this.#restarts.inc();
        this.#restartLater(code);
      });
    });
  }

  /**
   * The next thread counts from 0: what was shown becomes the offsets added to its counters. Counts
   * the dead thread made after the last scrape are lost (it cannot be asked any more), but nothing
   * shown goes down.
   */
  #carryOver(): void {
    this.#generation += 1;
    this.#carry = carryTable(this.#shown);
  }

  #restartLater(code: number): void {
    const delayMs = RESTART_DELAY_MS;
    this.#options.logger.error('the dispatcher thread exited; starting it again', { code, delayMs });
    this.#restartTimer = setTimeout(() => {
      if (this.#stopping) return;
      this.#spawn().catch((err: unknown) => {
        this.#options.logger.error('the dispatcher thread could not be started again', { err });
        if (!this.#stopping) this.#restartLater(-1);
      });
    }, delayMs);
  }

  #request(type: 'metrics' | 'ping'): Promise<string> {
    if (!this.#worker) return Promise.reject(new Error('the dispatcher thread is not running'));
    const id = this.#nextId++;
    const timeoutMs = REQUEST_TIMEOUT_MS;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the dispatcher thread did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#post({ type, id });
    });
  }

  #settle(message: { id: number; value?: string; error?: string }): void {
    const p = this.#pending.get(message.id);
    if (!p) return;
    this.#pending.delete(message.id);
    clearTimeout(p.timer);
    if (message.error !== undefined) p.reject(new Error(message.error));
    else p.resolve(message.value ?? '');
  }

  #post(message: HostMessage): void {
    this.#worker?.postMessage(message);
  }
}
