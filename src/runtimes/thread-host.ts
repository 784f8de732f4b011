/**
 * A pipeline worker (the processor or the dispatcher) in a worker thread of its own. When one
 * process runs a worker role together with another role (`webhooks start`, `--role all`), each
 * worker role gets a thread: its own event loop (the API's thread answers while a batch of large
 * events is being mapped or delivered) and the machine's other cores. A thread has its own SQLite
 * connections to the same data dir (the engines handle several connections, as they do for
 * `--role` processes). The host keeps the process one unit: `/metrics` includes the threads'
 * metrics, `/readyz` asks each thread, admin changes invalidate the threads' caches at once (and a
 * 410 that disables a subscription in the dispatcher's thread invalidates the host's and the
 * others'), the threads' log lines go through the host's logger, shutdown drains the threads first,
 * and a thread that dies is started again.
 *
 * Its metrics never look like counter resets to a scraper: when the thread cannot answer (slow,
 * restarting) its last answer is shown again, flagged by `webhooks_<role>_thread_metrics_stale`,
 * and a restarted thread's counters and histograms continue the dead one's (carried in the host).
 */
import { setPriority } from 'node:os';
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

/** An admin change to a schema (a new version), for cache invalidation. */
export interface SchemaChange {
  domain: string;
  event: string;
  version: number;
}

/** The roles that can run in a thread of their own. */
export type ThreadRole = 'processor' | 'dispatcher';

/** A host message that invalidates the thread's caches. */
export type Invalidation =
  | { type: 'subscription-changed'; change: SubscriptionChange }
  | { type: 'partner-changed'; partnerId: string }
  | { type: 'schema-changed'; change: SchemaChange };

/**
 * What the host sends the thread. An invalidation with an id is answered once applied; the host
 * waits for that before the admin change is answered, so an event accepted after the change's
 * response is handled with it (the event's wake reaches the thread on another channel, in no
 * order with this one).
 */
export type HostMessage =
  | { type: 'metrics'; id: number }
  | { type: 'ping'; id: number }
  | (Invalidation & { id?: number })
  | { type: 'stop' };

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
export const STOP_TIMEOUT_MS = 30_000;
/** At most this many cache invalidations wait for a thread being started again. */
const MAX_QUEUED_CHANGES = 10_000;

export interface RoleThreadOptions {
  /** The worker role the thread runs. */
  role: ThreadRole;
  config: Config;
  logger: Logger;
  /** A subscription changed in the thread (disabled after a 410 in the dispatcher). */
  onSubscriptionChanged: (change: SubscriptionChange) => void;
}

interface Pending {
  resolve: (value: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class RoleThread {
  readonly #options: RoleThreadOptions;
  /** The role, as it names the thread in logs and metrics. */
  readonly role: ThreadRole;
  readonly #pending = new Map<number, Pending>();
  #worker: Worker | undefined;
  /** The thread once it is ready (its worker consumes, it listens to the host). */
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
  readonly #stale;
  readonly #restarts;
  #nextId = 1;
  #stopping = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #onStopped: ((error?: string) => void) | undefined;
  /** How many times the thread was started (1 once running; more after restarts). */
  starts = 0;

  private constructor(options: RoleThreadOptions) {
    this.#options = options;
    this.role = options.role;
    this.#stale = this.#hostMetrics.gauge(
      `webhooks_${options.role}_thread_metrics_stale`,
      `1 when the ${options.role} thread metrics shown are its last answer (it did not answer in time, or is restarting)`,
    );
    this.#restarts = this.#hostMetrics.counter(
      `webhooks_${options.role}_thread_restarts_total`,
      `Times the ${options.role} thread exited unexpectedly and was started again`,
    );
  }

  /** Starts the thread and resolves once its worker consumes; rejects when it cannot start. */
  static async start(options: RoleThreadOptions): Promise<RoleThread> {
    const thread = new RoleThread(options);
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
      const answer = await this.#ask({ type: 'metrics' });
      if (generation !== this.#generation) return false;
      ({ exposition: this.#shown, table: this.#carry } = applyCarry(this.#carry, answer));
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves when the thread and its engines answer. */
  async ping(): Promise<void> {
    await this.#ask({ type: 'ping' });
  }

  /**
   * Invalidates the thread's caches; resolves once the thread has (or could not answer in time).
   * Kept until a thread runs again when it is being restarted (a new thread starts with empty caches).
   */
  subscriptionChanged(change: SubscriptionChange): Promise<void> {
    return this.#invalidate({ type: 'subscription-changed', change });
  }

  /** Invalidates the thread's cached copy of a partner (its status, its delivery settings). */
  partnerChanged(partnerId: string): Promise<void> {
    return this.#invalidate({ type: 'partner-changed', partnerId });
  }

  /** Invalidates the thread's cached versions of a schema. */
  schemaChanged(change: SchemaChange): Promise<void> {
    return this.#invalidate({ type: 'schema-changed', change });
  }

  /** Never rejects: a thread that does not answer in time is being restarted or is stuck. */
  async #invalidate(message: Invalidation): Promise<void> {
    if (!this.#running) {
      this.#queue(message);
      return;
    }
    await this.#ask(message).catch(() => {});
  }

  /**
   * Keeps an invalidation for the next thread, the newest when full: the oldest goes, which is
   * harmless as the new thread starts with empty caches and reads what the change wrote.
   */
  #queue(message: Invalidation): void {
    const key = invalidationKey(message);
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
      'cache invalidations were dropped while a worker thread restarted (its caches started empty)',
      { thread: this.role, dropped: this.#droppedChanges, kept: MAX_QUEUED_CHANGES },
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

  /** Stops the worker (in-flight batches finish), then the thread. */
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
      this.#options.logger.warn('a worker thread did not stop in time; terminating it', {
        thread: this.role,
        timeoutMs,
      });
    } else if (outcome) {
      this.#options.logger.warn('a worker thread stopped with an error', {
        thread: this.role,
        error: outcome,
      });
    }
    await worker.terminate();
  }

  #spawn(): Promise<void> {
    this.starts += 1;
    const worker = new Worker(new URL('./role-thread.ts', import.meta.url), {
      // The processor's thread runs the process's WAL checkpoints and log retention (see platform.ts).
      workerData: { config: this.#options.config, role: this.role, housekeeping: this.role === 'processor' },
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
            reject(new Error(`the ${this.role} thread could not start: ${message.message}`));
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
        else this.#options.logger.error('a worker thread failed', { thread: this.role, err });
      });
      worker.on('exit', (code) => {
        if (this.#worker === worker) this.#worker = undefined;
        if (this.#running === worker) this.#running = undefined;
        this.#carryOver();
        for (const [id, p] of this.#pending) {
          clearTimeout(p.timer);
          p.reject(new Error(`the ${this.role} thread exited`));
          this.#pending.delete(id);
        }
        if (!ready) {
          reject(new Error(`the ${this.role} thread exited with code ${code} before it was ready`));
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
    this.#options.logger.error('a worker thread exited; starting it again', {
      thread: this.role,
      code,
      delayMs,
    });
    this.#restartTimer = setTimeout(() => {
      if (this.#stopping) return;
      this.#spawn().catch((err: unknown) => {
        this.#options.logger.error('a worker thread could not be started again', { thread: this.role, err });
        if (!this.#stopping) this.#restartLater(-1);
      });
    }, delayMs);
  }

  /** Sends a message with a new id and resolves with the thread's reply to it. */
  #ask(message: { type: 'metrics' | 'ping' } | Invalidation): Promise<string> {
    if (!this.#worker) return Promise.reject(new Error(`the ${this.role} thread is not running`));
    const id = this.#nextId++;
    const timeoutMs = REQUEST_TIMEOUT_MS;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the ${this.role} thread did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#post({ ...message, id });
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

/** Invalidations of one thing replace each other while queued: the key of that thing. */
function invalidationKey(message: Invalidation): string {
  switch (message.type) {
    case 'partner-changed':
      return JSON.stringify(['partner', message.partnerId]);
    case 'schema-changed':
      return JSON.stringify(['schema', message.change.domain, message.change.event, message.change.version]);
    case 'subscription-changed':
      return JSON.stringify([message.change.id, message.change.domain, message.change.event]);
  }
}

/**
 * Called on a worker thread: runs it below the API's priority, so that under a full CPU the API's
 * thread (requests, probes) runs first. Linux keeps the nice value per thread; elsewhere it would
 * lower the whole process, so it is left alone there.
 */
export function lowerThreadPriority(nice: number): void {
  if (process.platform !== 'linux' || nice <= 0) return;
  try {
    setPriority(0, nice);
  } catch {
    // Not allowed here (a container's seccomp profile): the thread keeps the process's priority.
  }
}
