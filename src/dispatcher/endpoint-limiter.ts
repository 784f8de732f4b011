/**
 * Isolation between endpoints: each endpoint (subscription) gets a concurrency limit, an optional
 * rate limit (token bucket) and a wait queue bounded by *expected waiting time*. The limiter keeps
 * an estimate of the endpoint's latency (moving average, and at least the age of the oldest request
 * in flight, so a hanging endpoint is recognised before it answers). When waiting would take longer
 * than `maxQueueWaitMs`, `acquire` answers "defer" at once and the dispatcher parks the task on a
 * retry tier instead of holding it: a fast endpoint absorbs bursts in memory, a slow or dead one can
 * hold only a few tasks, and other partners keep flowing. A task that has waited `maxQueueWaitMs`
 * all the same (the endpoint hung after it was queued) is told to defer too.
 *
 * `saturated` tells the dispatcher when an endpoint has enough waiting (its queue is past
 * `softQueueFactor` × its concurrency, or waiting would take too long, or its rate limit's next
 * token is further away than `maxRateWaitMs`), so that it stops fetching the endpoint's partition;
 * `whenDrained` calls back once the queue is down to its concurrency and a token is near again.
 *
 * Tasks deferred for the rate limit are spread out at that rate: the k-th deferred in a row is told
 * to come back k tokens later, not all at the next token (a backlog of N tasks would otherwise go
 * round the retry tiers every second, each round a ledger claim and several publishes, to send
 * `rate` of them).
 */

export interface EndpointLimits {
  maxConcurrency: number;
  /** Requests per second; undefined = unlimited. */
  ratePerSecond?: number;
}

/** A granted slot; `release` takes the request's own latency (measured by the HTTP client) when known. */
export type Acquired = { ok: true; release: (latencyMs?: number) => void } | { ok: false; retryInMs: number };

interface Waiter {
  /** true: the slot is handed over; false: waited too long, defer. */
  resolve: (granted: boolean) => void;
  /** When it stops waiting (`maxQueueWaitMs` after it began, or its caller's own limit if sooner). */
  until: number;
}

interface EndpointState {
  active: number;
  waiters: Waiter[];
  /** Evicts waiters that waited `maxQueueWaitMs` (set while any wait). */
  evictTimer: NodeJS.Timeout | undefined;
  /** Called once the endpoint is drained (see `whenDrained`). */
  drained: Array<() => void>;
  /** The limits of the latest acquire. */
  limits: EndpointLimits;
  /** Start times of the requests in flight. */
  started: Set<number>;
  latencyMs: number;
  tokens: number;
  refilledAt: number;
  /** When the last task deferred for the rate limit was told to come back (ms). */
  deferredUntil: number;
  /** Checks for drained once the rate limit's next token is near again (set while callbacks wait). */
  rateTimer: NodeJS.Timeout | undefined;
  /** Last acquire (ms), for forgetting endpoints idle for long. */
  usedAt: number;
}

const INITIAL_LATENCY_MS = 50;
const EWMA_WEIGHT = 0.2;
/** A request in flight this long marks the endpoint as slow even before it answers. */
const HANG_MS = 1000;
/** Idle endpoints are forgotten after this long (looked for at most once per interval). */
const IDLE_FORGET_MS = 10 * 60_000;

/** Per-endpoint concurrency and rate limiting with queues bounded by expected wait. */
export class EndpointLimiter {
  readonly #states = new Map<string, EndpointState>();
  readonly #maxQueueWaitMs: number;
  readonly #maxQueue: number;
  readonly #maxRateWaitMs: number;
  readonly #softQueueFactor: number;
  readonly #now: () => number;
  #sweptAt = 0;

  constructor(
    options: {
      maxQueueWaitMs?: number;
      maxQueue?: number;
      maxRateWaitMs?: number;
      softQueueFactor?: number;
      now?: () => number;
    } = {},
  ) {
    this.#maxQueueWaitMs = options.maxQueueWaitMs ?? 2000;
    this.#maxQueue = options.maxQueue ?? 1000;
    this.#maxRateWaitMs = options.maxRateWaitMs ?? 1000;
    this.#softQueueFactor = options.softQueueFactor ?? 4;
    this.#now = options.now ?? Date.now;
  }

  /** The longest `acquire` waits for a slot (rate and queue together) before it says defer. */
  get maxWaitMs(): number {
    return this.#maxQueueWaitMs;
  }

  /** Whether the endpoint has enough tasks waiting that fetching more for it only adds to the wait. */
  saturated(endpoint: string, limits: EndpointLimits): boolean {
    const state = this.#states.get(endpoint);
    return state !== undefined && this.#saturated(state, limits);
  }

  /**
   * Calls `callback` once the endpoint is drained — not saturated, and no more waiting than its
   * concurrency — at once if it is; checked whenever a request of it ends or a waiter is evicted.
   */
  whenDrained(endpoint: string, callback: () => void): void {
    const state = this.#states.get(endpoint);
    if (!state || this.#drained(state)) callback();
    else {
      state.drained.push(callback);
      this.#scheduleRateCheck(state);
    }
  }

  #saturated(state: EndpointState, limits: EndpointLimits): boolean {
    const rate = limits.ratePerSecond;
    if (rate !== undefined && this.#rateWait(state, rate) > this.#maxRateWaitMs) return true;
    if (state.active < limits.maxConcurrency) return false;
    if (state.waiters.length >= limits.maxConcurrency * this.#softQueueFactor) return true;
    return this.#expectedWait(state, limits) > this.#maxQueueWaitMs;
  }

  #drained(state: EndpointState): boolean {
    return state.waiters.length <= state.limits.maxConcurrency && !this.#saturated(state, state.limits);
  }

  /**
   * Waits for a slot (when that is expected to be quick) or says how long to defer. All waiting —
   * for a rate token and for a free slot — ends by `waitUntil` (default: `maxWaitMs` from now), so
   * the caller's deadline for the whole attempt holds.
   */
  async acquire(endpoint: string, limits: EndpointLimits, waitUntil?: number): Promise<Acquired> {
    const state = this.#state(endpoint, limits);
    state.limits = limits;
    const until = Math.min(waitUntil ?? Number.POSITIVE_INFINITY, this.#now() + this.#maxQueueWaitMs);
    const rate = limits.ratePerSecond;
    if (rate !== undefined) {
      const maxWait = Math.min(this.#maxRateWaitMs, until - this.#now());
      const wait = this.#takeToken(state, rate, maxWait);
      if (wait > maxWait) return { ok: false, retryInMs: this.#rateDeferral(state, rate, wait) };
      if (wait > 0) await sleep(wait);
    }
    // A token taken is given back when the task does not go out after all.
    const giveBack = () => {
      if (rate !== undefined) state.tokens = Math.min(rate, state.tokens + 1);
    };
    if (state.active >= limits.maxConcurrency) {
      const expectedWait = this.#expectedWait(state, limits);
      if (
        expectedWait > this.#maxQueueWaitMs ||
        state.waiters.length >= this.#maxQueue ||
        until <= this.#now()
      ) {
        giveBack();
        return { ok: false, retryInMs: expectedWait };
      }
      const granted = await new Promise<boolean>((resolve) => {
        state.waiters.push({ resolve, until });
        this.#scheduleEviction(state);
      });
      if (!granted) {
        giveBack();
        return { ok: false, retryInMs: Math.max(this.#maxQueueWaitMs, this.#expectedWait(state, limits)) };
      }
    } else {
      state.active += 1;
    }
    const startedAt = this.#uniqueStart(state);
    let released = false;
    return {
      ok: true,
      release: (latencyMs?: number) => {
        if (released) return;
        released = true;
        state.started.delete(startedAt);
        // The HTTP client's own measure excludes time spent waiting for this process's event loop.
        const took = latencyMs ?? this.#now() - startedAt;
        state.latencyMs = state.latencyMs * (1 - EWMA_WEIGHT) + took * EWMA_WEIGHT;
        const next = state.waiters.shift();
        // Hand the slot straight to the next waiter; otherwise free it.
        if (next) next.resolve(true);
        else state.active -= 1;
        this.#checkDrained(state);
      },
    };
  }

  /** How long one more task would wait: rounds of `maxConcurrency` requests at the estimated latency. */
  #expectedWait(state: EndpointState, limits: EndpointLimits): number {
    return Math.ceil((state.waiters.length + 1) / limits.maxConcurrency) * this.#estimate(state);
  }

  /** Sets the timer that evicts waiters once they have waited as long as they may. */
  #scheduleEviction(state: EndpointState): void {
    if (state.evictTimer !== undefined || state.waiters.length === 0) return;
    let first = Number.POSITIVE_INFINITY;
    for (const w of state.waiters) first = Math.min(first, w.until);
    state.evictTimer = setTimeout(
      () => {
        state.evictTimer = undefined;
        const now = this.#now();
        const evicted = state.waiters.filter((w) => w.until <= now);
        if (evicted.length > 0) state.waiters = state.waiters.filter((w) => w.until > now);
        for (const waiter of evicted) waiter.resolve(false);
        this.#checkDrained(state);
        this.#scheduleEviction(state);
      },
      Math.max(1, first - this.#now()),
    );
    state.evictTimer.unref();
  }

  #checkDrained(state: EndpointState): void {
    if (state.drained.length === 0 || !this.#drained(state)) return;
    const callbacks = state.drained;
    state.drained = [];
    for (const callback of callbacks) callback();
  }

  /** Tasks running or waiting for an endpoint, and its latency estimate (for tests and metrics). */
  load(endpoint: string): { active: number; waiting: number; latencyMs: number } {
    const s = this.#states.get(endpoint);
    return { active: s?.active ?? 0, waiting: s?.waiters.length ?? 0, latencyMs: s ? this.#estimate(s) : 0 };
  }

  /**
   * Latency estimate: the moving average, or the age of the oldest request in flight once that is
   * past HANG_MS (younger ages mostly measure this process's own busy event loop, not the endpoint).
   */
  #estimate(state: EndpointState): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const t of state.started) if (t < oldest) oldest = t;
    const age = oldest === Number.POSITIVE_INFINITY ? 0 : this.#now() - oldest;
    return age >= HANG_MS ? Math.max(state.latencyMs, age) : state.latencyMs;
  }

  /** A start time not yet in the set (several requests may start in the same millisecond). */
  #uniqueStart(state: EndpointState): number {
    let t = this.#now();
    while (state.started.has(t)) t += 0.001;
    state.started.add(t);
    return t;
  }

  #state(endpoint: string, limits: EndpointLimits): EndpointState {
    const now = this.#now();
    if (now - this.#sweptAt >= IDLE_FORGET_MS) this.#forgetIdle(now);
    let state = this.#states.get(endpoint);
    if (!state) {
      state = {
        active: 0,
        waiters: [],
        evictTimer: undefined,
        drained: [],
        limits,
        started: new Set(),
        latencyMs: INITIAL_LATENCY_MS,
        tokens: limits.ratePerSecond ?? 0,
        refilledAt: now,
        deferredUntil: 0,
        rateTimer: undefined,
        usedAt: now,
      };
      this.#states.set(endpoint, state);
    }
    state.usedAt = now;
    return state;
  }

  /** Forgets endpoints with nothing running or waiting that were last used long ago (deleted subscriptions). */
  #forgetIdle(now: number): void {
    this.#sweptAt = now;
    for (const [endpoint, s] of this.#states) {
      if (
        s.active === 0 &&
        s.waiters.length === 0 &&
        s.drained.length === 0 &&
        now - s.usedAt >= IDLE_FORGET_MS
      )
        this.#states.delete(endpoint);
    }
  }

  /** Endpoints the limiter keeps state for (for tests). */
  get size(): number {
    return this.#states.size;
  }

  /** Ms until a token is free for one more task (0: one is free now), taking none. */
  #rateWait(state: EndpointState, rate: number): number {
    const tokens = Math.min(rate, state.tokens + ((this.#now() - state.refilledAt) / 1000) * rate);
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / rate) * 1000);
  }

  /**
   * When a task deferred for the rate limit comes back: at its token (`wait` from now), or one token
   * after the task deferred before it, whichever is later.
   */
  #rateDeferral(state: EndpointState, rate: number, wait: number): number {
    const now = this.#now();
    const at = Math.max(now + wait, state.deferredUntil + 1000 / rate);
    state.deferredUntil = at;
    return Math.ceil(at - now);
  }

  /** Checks for drained once a rate-saturated endpoint's next token is within `maxRateWaitMs`. */
  #scheduleRateCheck(state: EndpointState): void {
    const rate = state.limits.ratePerSecond;
    if (state.rateTimer !== undefined || rate === undefined || state.drained.length === 0) return;
    const over = this.#rateWait(state, rate) - this.#maxRateWaitMs;
    if (over <= 0) return;
    state.rateTimer = setTimeout(() => {
      state.rateTimer = undefined;
      this.#checkDrained(state);
      this.#scheduleRateCheck(state);
    }, over + 1);
    state.rateTimer.unref();
  }

  /**
   * Takes a token; returns 0 when one was free, else the ms until the reserved token is due. A wait
   * over `maxWait` reserves nothing: the caller defers instead.
   */
  #takeToken(state: EndpointState, rate: number, maxWait: number): number {
    const now = this.#now();
    state.tokens = Math.min(rate, state.tokens + ((now - state.refilledAt) / 1000) * rate);
    state.refilledAt = now;
    state.tokens -= 1;
    if (state.tokens >= 0) return 0;
    const wait = Math.ceil((-state.tokens / rate) * 1000);
    if (wait > maxWait) state.tokens += 1;
    return wait;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
