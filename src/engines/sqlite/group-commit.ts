/**
 * Group commit: writes issued within a short window run together in one transaction, committed
 * once. On the delivery hot path many tasks each write a few rows; a commit writes every page the
 * transaction touched to the WAL, and the same few index pages are touched by every delivery, so
 * one commit for a few hundred operations costs little more than one for a handful. Measured on the
 * dispatcher: commits of ~8 operations (one per event-loop turn) cost ~95 µs of SQLite time per
 * delivery, commits gathered over 3 ms (~200 operations) ~65 µs.
 *
 * The window adapts to the load. While fewer operations arrive than would fill a commit worth
 * gathering (GATHER_MIN within one window, measured over the last 100 ms), each turn's operations
 * are committed at the end of the turn: a lone write — the ledger claim on the delivery path of one
 * event, the append of one `POST /events` — does not wait 3 ms for company that is not coming. Under
 * load, operations gather until the window since the last commit has passed, so commits stay few
 * and big (and so do their fsyncs). With `untilIdle` (the embedded log's appends) they gather only
 * while they keep coming: the first event-loop turn that brings none commits. Producers answered
 * once their write is durable (32 clients each waiting for its 202) are all in the queue long
 * before the window ends, and waiting it out capped them at 32 per 3 ms: one event per request at
 * concurrency 32 went from 9,300–10,600/s to 11,500–12,900/s (api role alone, alternating runs).
 *
 * Every operation must be atomic on its own (one statement, its own SAVEPOINT, or steps that take
 * themselves back on failure), so one failing
 * operation does not undo the others; each caller's promise settles after the COMMIT, so a caller
 * never sees its write acknowledged before it is durable.
 *
 * Another connection (a thread or process on the same file) may hold the write lock. Instead of
 * SQLite's busy handler, which sleeps whole milliseconds with the event loop frozen, `BEGIN` is
 * tried without waiting and, when the lock is taken, tried again on a timer: the event loop keeps
 * running (HTTP, other tasks) while this connection waits its turn.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { BUSY_TIMEOUT_MS, beginImmediate, tryBeginImmediate, walFlusherOf } from './database.ts';

interface Pending {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  /** Acknowledged once flushed to disk (durability `fsync`), not only committed. */
  durable: boolean;
  /** About how many bytes it writes (0 when not told). */
  bytes: number;
}

export interface GroupCommitOptions {
  /** Called after each BEGIN, before the operations run (outside their savepoints: never rolled back alone). */
  onBegin?: () => void;
  /** Called after each COMMIT, before the flush: the writes are visible to other connections now. */
  onCommit?: () => void;
  /** How long the first queued operation waits for others to join it (ms). */
  windowMs?: number;
  /** How long to keep retrying while another connection holds the write lock (ms). */
  busyTimeoutMs?: number;
  /** The clock the arrival rate is measured with (ms); tests set the pace with it. */
  now?: () => number;
  /**
   * While gathering, commit as soon as an event-loop turn passes without a new operation, instead of
   * always waiting out the window: for writers that wait for their commit before writing again
   * (requests answered once their append is durable), where the window would be waited out with
   * every writer already in the queue.
   */
  untilIdle?: boolean;
}

const DEFAULT_WINDOW_MS = 3;
/** Operations expected within one window from which gathering them pays for the wait. */
const GATHER_MIN = 16;
/** How often the arrival rate is measured (ms). */
const RATE_PERIOD_MS = 100;
/** A queue this long is committed at once, without waiting for the window. */
const MAX_OPERATIONS = 1000;
/**
 * Operations that write more than this between them (as their callers count it) are split over
 * transactions, one per event-loop turn: sixteen 1 MiB events appended in one transaction held the
 * API's thread 70 ms, while `/healthz` and every other request waited.
 */
export const MAX_TRANSACTION_BYTES = 2 * 1024 * 1024;

export class GroupCommit {
  readonly #db: DatabaseSync;
  readonly #commit: StatementSync;
  readonly #rollback: StatementSync;
  readonly #windowMs: number;
  readonly #busyTimeoutMs: number;
  readonly #now: () => number;
  #queue: Pending[] = [];
  /** The bytes the queued operations write, as their callers said. */
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  readonly #untilIdle: boolean;
  /** The check, once per turn while gathering, whether the queue still grows (`untilIdle`). */
  #idleCheck: NodeJS.Immediate | undefined;
  #seen = 0;
  /** When the current wait for the write lock began (0: not waiting). */
  #busySince = 0;
  readonly #onBegin: (() => void) | undefined;
  readonly #onCommit: (() => void) | undefined;
  /** When the last transaction was begun (on the clock `now`). */
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  /** Operations that arrived since `#countedSince`, and the rate measured before (per ms). */
  #arrived = 0;
  #countedSince = 0;
  #rate = 0;

  constructor(db: DatabaseSync, options: GroupCommitOptions = {}) {
    this.#db = db;
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? BUSY_TIMEOUT_MS;
    this.#onBegin = options.onBegin;
    this.#onCommit = options.onCommit;
    this.#now = options.now ?? (() => performance.now());
    this.#untilIdle = options.untilIdle === true;
  }

  /**
   * Runs `op` in the next group transaction; resolves with its result once committed and — with
   * durability `fsync`, unless `durable: false` — flushed to disk. `durable: false` is for writes
   * whose loss in an OS crash only repeats work, and that others must see at once (a ledger claim).
   * `bytes`: about how much it writes; a transaction takes operations up to MAX_TRANSACTION_BYTES
   * (at least one), the others wait for the next.
   */
  run<T>(op: () => T | Promise<T>, options: { durable?: boolean; bytes?: number } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const bytes = options.bytes ?? 0;
      this.#queue.push({
        run: op,
        resolve: resolve as (v: unknown) => void,
        reject,
        durable: options.durable !== false,
        bytes,
      });
      this.#queuedBytes += bytes;
      // Every write counts toward the rate, also those that join a commit already scheduled.
      const now = this.#now();
      const gathering = this.#gathering(now);
      if (this.#busySince !== 0) return; // a retry is already scheduled
      if (this.#queue.length >= MAX_OPERATIONS || this.#queuedBytes >= MAX_TRANSACTION_BYTES)
        this.#flushSoon();
      else if (this.#timer === undefined && this.#immediate === undefined) {
        const wait = gathering ? this.#lastFlushAt + this.#windowMs - now : 0;
        if (wait <= 0) this.#flushSoon();
        else {
          this.#timer = setTimeout(() => this.#flush(), wait);
          if (this.#untilIdle) this.#watchIdle();
        }
      }
    });
  }

  /** Counts an arrival; true when enough arrive that a commit should gather a window's worth. */
  #gathering(now: number): boolean {
    this.#arrived += 1;
    const elapsed = now - this.#countedSince;
    if (elapsed >= RATE_PERIOD_MS) {
      this.#rate = this.#arrived / elapsed;
      this.#arrived = 0;
      this.#countedSince = now;
    }
    // The period under way counts too once a window of it has passed: a burst gathers at once.
    const current = elapsed >= this.#windowMs ? this.#arrived / elapsed : 0;
    return Math.max(this.#rate, current) * this.#windowMs >= GATHER_MIN;
  }

  /** Commits everything queued now, waiting for the write lock if need be (before closing the database). */
  drain(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    clearImmediate(this.#idleCheck);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#idleCheck = undefined;
    this.#busySince = 0;
    while (this.#queue.length > 0 && this.#db.isOpen) this.#flush(true);
  }

  /** Commits at the end of the first turn in which the queue did not grow (`untilIdle`). */
  #watchIdle(): void {
    this.#seen = this.#queue.length;
    this.#idleCheck = setImmediate(() => {
      this.#idleCheck = undefined;
      if (this.#timer === undefined) return;
      if (this.#queue.length > this.#seen) this.#watchIdle();
      else this.#flush();
    });
  }

  #flushSoon(): void {
    if (this.#immediate !== undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#immediate = setImmediate(() => this.#flush());
  }

  #flush(wait = false): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#idleCheck);
    this.#idleCheck = undefined;
    this.#timer = undefined;
    this.#immediate = undefined;
    if (this.#queue.length === 0) return;
    if (!this.#db.isOpen) {
      this.#busySince = 0;
      this.#settleAll(this.#takeAll(), new Error('the store is closed'));
      return;
    }
    const begun = this.#tryBegin(wait);
    if (begun !== true) {
      const now = Date.now();
      if (begun === 'busy') {
        if (this.#busySince === 0) this.#busySince = now;
        if (now - this.#busySince < this.#busyTimeoutMs) {
          this.#timer = setTimeout(() => this.#flush(), 1);
          return;
        }
      }
      this.#busySince = 0;
      this.#settleAll(this.#takeAll(), begun === 'busy' ? new Error('database is locked') : begun);
      return;
    }
    this.#busySince = 0;
    this.#lastFlushAt = this.#now();
    const batch = this.#take();
    if (this.#queue.length > 0 && !wait) this.#flushSoon();
    try {
      this.#onBegin?.();
    } catch (err) {
      if (this.#db.isTransaction) this.#rollback.run();
      this.#settleAll(batch, err);
      return;
    }
    const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    for (const p of batch) {
      try {
        const value = p.run();
        // An async operation's rejection is handed to its caller later (after the flush): marked
        // handled now, so it is not reported as unhandled meanwhile.
        if (value instanceof Promise) value.catch(() => {});
        results.push({ ok: true, value });
      } catch (error) {
        results.push({ ok: false, error });
      }
      if (!this.#db.isTransaction) {
        // SQLite rolled the whole transaction back by itself (a full disk, an I/O error): the
        // operations before this one are undone too, and the next ones would run outside any
        // transaction, each committed on its own. None of the batch is committed; all of it hears
        // the cause, and the operations not yet run go to the next transaction.
        const last = results.at(-1)!;
        const cause = last.ok ? new Error('the transaction was rolled back by SQLite') : last.error;
        const rest = batch.splice(results.length);
        for (const p of rest) this.#queuedBytes += p.bytes;
        this.#queue.unshift(...rest);
        this.#settleAll(batch, cause);
        if (this.#queue.length > 0 && !wait) this.#flushSoon();
        return;
      }
    }
    try {
      this.#commit.run();
    } catch (err) {
      if (this.#db.isTransaction) this.#rollback.run();
      this.#settleAll(batch, err);
      return;
    }
    this.#onCommit?.();
    const settle = (durable: boolean): void =>
      batch.forEach((p, i) => {
        if (p.durable !== durable) return;
        const r = results[i]!;
        // resolve() adopts a promise the operation returned (an async operation that threw rejects).
        if (r.ok) p.resolve(r.value);
        else p.reject(r.error);
      });
    // With fsync durability, acknowledged once the WAL is on disk (flushed off the event loop; the
    // commits of the meantime share the next flush). The others are acknowledged now.
    const flusher = walFlusherOf(this.#db);
    const flushFailed = (err: unknown) =>
      this.#settleAll(
        batch.filter((p) => p.durable),
        err,
      );
    settle(false);
    if (!flusher) settle(true);
    else if (wait) {
      // Draining before the database closes: flushed here and now.
      try {
        flusher.flushSync();
        settle(true);
      } catch (err) {
        flushFailed(err);
      }
    } else if (batch.some((p) => p.durable)) flusher.flush().then(() => settle(true), flushFailed);
  }

  /** The operations of the next transaction: at most MAX_OPERATIONS and MAX_TRANSACTION_BYTES (at least one). */
  #take(): Pending[] {
    let bytes = 0;
    let count = 0;
    for (const p of this.#queue) {
      if (count === MAX_OPERATIONS || (count > 0 && bytes + p.bytes > MAX_TRANSACTION_BYTES)) break;
      bytes += p.bytes;
      count += 1;
    }
    this.#queuedBytes -= bytes;
    return this.#queue.splice(0, count);
  }

  #takeAll(): Pending[] {
    this.#queuedBytes = 0;
    return this.#queue.splice(0);
  }

  /** BEGIN IMMEDIATE (without waiting for the write lock unless `wait`): true, 'busy', or the error. */
  #tryBegin(wait: boolean): true | 'busy' | unknown {
    try {
      if (wait) beginImmediate(this.#db);
      else if (!tryBeginImmediate(this.#db)) return 'busy';
      return true;
    } catch (err) {
      return err;
    }
  }

  #settleAll(batch: Pending[], err: unknown): void {
    for (const p of batch) p.reject(err);
  }
}
