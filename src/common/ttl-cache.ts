/**
 * A small read-through cache with a TTL, single flight per key, bounded size (the least recently
 * used entry goes first) and invalidation. Used for schemas, subscriptions and partners on the
 * processor and dispatcher hot paths, opened credentials and KMS data keys.
 */
export class TtlCache<K, V> {
  readonly #entries = new Map<K, { value: V; expiresAt: number }>();
  readonly #inflight = new Map<K, Promise<V>>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: { ttlMs: number; maxEntries?: number; now?: () => number }) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** The cached value, or the loader's (shared by concurrent callers); failures are not cached. */
  async get(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.#entries.get(key);
    if (hit && hit.expiresAt > this.#now()) {
      // Moved to the end: the entries are kept in order of use, and the first one goes when full.
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return hit.value;
    }
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const promise = load().then(
      (value) => {
        if (this.#inflight.get(key) === promise) {
          this.#entries.delete(key);
          this.#entries.set(key, { value, expiresAt: this.#now() + this.#ttlMs });
          if (this.#entries.size > this.#maxEntries) {
            const oldest = this.#entries.keys().next().value as K;
            this.#entries.delete(oldest);
          }
          this.#inflight.delete(key);
        }
        return value;
      },
      (err: unknown) => {
        if (this.#inflight.get(key) === promise) this.#inflight.delete(key);
        throw err;
      },
    );
    this.#inflight.set(key, promise);
    return promise;
  }

  /** Forgets one key (and any load in flight for it), or everything. */
  invalidate(key?: K): void {
    if (key === undefined) {
      this.#entries.clear();
      this.#inflight.clear();
    } else {
      this.#entries.delete(key);
      this.#inflight.delete(key);
    }
  }
}
