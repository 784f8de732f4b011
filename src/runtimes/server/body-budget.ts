/**
 * The request-body bytes one server holds in memory at once, over all its connections: a body is
 * held from its first byte until its request has been answered (its text, and what is parsed from
 * it, live that long). Without a bound, each connection may hold a body of up to the size limit,
 * and a thousand connections a thousand of them.
 *
 * A body with a content-length takes its whole declared size when it is admitted, or waits before
 * its first byte, holding nothing: none is paused halfway, holding bytes while it waits. A chunked
 * body is counted as it comes and paused once the budget is spent (holding what it read). Waiting
 * bodies go on in arrival order as bodies answered give bytes back (their bytes wait in the kernel
 * meanwhile, and TCP slows their clients). One body at a time may go past the budget (the first that
 * would wait while none does), so that a body larger than what is free, or chunked bodies each
 * paused halfway, cannot wait forever. So at most `limitBytes` + one body + a socket read (64 KiB)
 * per chunked body being read are held. (The server hands the budget large bodies only: a body
 * declared small, a single event up to 64 KiB, is neither counted nor made to wait, so that a flood
 * of large bodies cannot hold up the small requests; such bodies are bounded by the connections.)
 *
 * A budget is also a lever for an attacker: bodies admitted and then stalled before their last byte
 * would hold it. So while bodies wait, an admitted one that has received nothing for `stallMs` is
 * cut (the server answers it 408); a slow client is left alone while nobody waits.
 */

/** A body being read, as the budget sees it. */
export interface BudgetReader {
  /** Bytes of its body held now. */
  held: number;
  /** When it last received bytes (ms since the epoch). */
  lastDataAt: number;
  /** Paused by the budget: waiting for bytes to come back. */
  waiting: boolean;
  /** Still reading its body (a finished body holds bytes but cannot stall). */
  reading: boolean;
  /** Its declared size, counted whole once it is admitted (0: a chunked body, counted as it comes; set by `open`). */
  reserve: number;
  pause(): void;
  resume(): void;
  /** Cuts a reader that stalled while others waited (set by whoever reads the body). */
  cut: () => void;
}

export interface BodyBudgetOptions {
  limitBytes: number;
  /** How long a reader may receive nothing while others wait for the budget (ms, default 5,000). */
  stallMs?: number;
  now?: () => number;
}

const DEFAULT_STALL_MS = 5_000;
/** What a resumed reader is reckoned to receive before it can be paused again (a socket read). */
const WAKE_CHUNK_BYTES = 64 * 1024;

export class BodyBudget {
  readonly limitBytes: number;
  readonly #stallMs: number;
  readonly #now: () => number;
  #held = 0;
  #peak = 0;
  /** The reader allowed past the budget, until its bytes are given back. */
  #overdraft: BudgetReader | undefined;
  readonly #waiting: BudgetReader[] = [];
  readonly #readers = new Set<BudgetReader>();
  #sweep: NodeJS.Timeout | undefined;
  /** Readers cut for stalling while others waited. */
  stalledCuts = 0;
  /** Called for each reader cut for stalling (a metric). */
  onStall: (() => void) | undefined;

  constructor(options: BodyBudgetOptions) {
    this.limitBytes = options.limitBytes;
    this.#stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.#now = options.now ?? Date.now;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** The most bytes held at once since the server started. */
  get peak(): number {
    return this.#peak;
  }

  /** Readers paused, waiting for bytes to come back. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * A new body begins: with `reserve`, its declared size, it is admitted whole or waits before its
   * first byte; without (chunked), it waits before its first byte while the budget is spent.
   */
  open(reader: BudgetReader, reserve = 0): void {
    this.#readers.add(reader);
    reader.reserve = reserve;
    if (reserve > 0) {
      // Its whole declared size, at once: it is never paused halfway (holding bytes while it waits).
      if (this.#waiting.length === 0 && this.#fits(reader)) this.#admit(reader);
      else this.#queue(reader);
      return;
    }
    if (this.#held >= this.limitBytes) this.#spent(reader);
  }

  /** A reserving reader fits: its size is free, or it may be the one past the budget. */
  #fits(reader: BudgetReader): boolean {
    return this.#held + reader.reserve <= this.limitBytes || this.#overdraft === undefined;
  }

  /** Counts a reserving reader's declared size as held (past the budget: it is the overdraft). */
  #admit(reader: BudgetReader): void {
    if (this.#held + reader.reserve > this.limitBytes) this.#overdraft = reader;
    this.#count(reader, reader.reserve);
  }

  #count(reader: BudgetReader, bytes: number): void {
    reader.held += bytes;
    this.#held += bytes;
    if (this.#held > this.#peak) this.#peak = this.#held;
  }

  /**
   * `reader` received `bytes` (already in memory): counted, and the reader is paused if the budget
   * is spent and it may not go past it.
   */
  add(reader: BudgetReader, bytes: number): void {
    reader.lastDataAt = this.#now();
    // A reserving one was counted when it was admitted (a body cannot outgrow its content-length).
    if (reader.reserve > 0) return;
    this.#count(reader, bytes);
    if (this.#held > this.limitBytes) this.#spent(reader);
  }

  /** The budget is spent: `reader` waits, unless it may go past it. */
  #spent(reader: BudgetReader): void {
    if (reader === this.#overdraft || reader.waiting) return;
    if (this.#overdraft === undefined) {
      this.#overdraft = reader;
      return;
    }
    this.#queue(reader);
  }

  #queue(reader: BudgetReader): void {
    reader.waiting = true;
    reader.pause();
    this.#waiting.push(reader);
    this.#startSweep();
  }

  /** `reader` dropped all it held (a chunked body found too large is dropped as it is read). */
  dropHeld(reader: BudgetReader): void {
    this.#held -= reader.held;
    reader.held = 0;
    this.#wakeWaiting();
  }

  /** `reader` has its whole body (or stopped reading it): it holds its bytes, but cannot stall. */
  finishedReading(reader: BudgetReader): void {
    reader.reading = false;
  }

  /** `reader`'s request is over: everything it held comes back. Safe to call more than once. */
  close(reader: BudgetReader): void {
    if (!this.#readers.delete(reader)) return;
    this.#held -= reader.held;
    reader.held = 0;
    reader.reading = false;
    if (reader.waiting) {
      reader.waiting = false;
      const i = this.#waiting.indexOf(reader);
      if (i !== -1) this.#waiting.splice(i, 1);
    }
    if (this.#overdraft === reader) this.#overdraft = undefined;
    this.#wakeWaiting();
  }

  /**
   * Waiting readers go on, in arrival order: a reserving one once its size is free (or it may be
   * the one past the budget); a chunked one while bytes are free (reckoned a socket read each, as it
   * gets one before it can be paused again), or, when none are and no reader is past the budget,
   * the first, past it.
   */
  #wakeWaiting(): void {
    let credit = this.limitBytes - this.#held;
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0]!;
      if (next.reserve > 0) {
        if (!this.#fits(next)) break;
        this.#admit(next);
        credit = Math.min(credit, this.limitBytes - this.#held);
      } else if (credit > 0) {
        credit -= WAKE_CHUNK_BYTES;
      } else if (this.#overdraft === undefined) {
        this.#overdraft = next;
      } else {
        break;
      }
      this.#waiting.shift();
      this.#go(next);
    }
    if (this.#waiting.length === 0) this.#stopSweep();
  }

  #go(reader: BudgetReader): void {
    reader.waiting = false;
    reader.lastDataAt = this.#now();
    reader.resume();
  }

  #startSweep(): void {
    if (this.#sweep) return;
    const every = Math.max(10, Math.min(1_000, Math.floor(this.#stallMs / 4)));
    this.#sweep = setInterval(() => this.#cutStalled(), every);
    this.#sweep.unref();
  }

  #stopSweep(): void {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  /** While readers wait: readers holding bytes that received nothing for `stallMs` are cut. */
  #cutStalled(): void {
    if (this.#waiting.length === 0) {
      this.#stopSweep();
      return;
    }
    const before = this.#now() - this.#stallMs;
    for (const reader of [...this.#readers]) {
      if (reader.reading && !reader.waiting && reader.held > 0 && reader.lastDataAt <= before) {
        this.stalledCuts += 1;
        this.onStall?.();
        reader.cut();
        this.close(reader);
      }
    }
  }
}
