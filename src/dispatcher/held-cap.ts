/**
 * The cap on tasks held per subscription (WEBHOOKS_MAX_HELD_PER_SUBSCRIPTION): beyond it, more are
 * dead-lettered (`held_overflow`, redrivable) instead of held. Counted in the store once per
 * COUNT_EVERY holds and in between here, so the cap may be passed by that many at most.
 */
import type { HeldTaskRepository } from '../common/ports/store.ts';

/** Holds between two counts of a subscription's held tasks in the store. */
const COUNT_EVERY = 1000;
/** Subscriptions whose counts are remembered at once. */
const MAX_REMEMBERED = 10_000;

export class HeldCap {
  readonly #held: Pick<HeldTaskRepository, 'count'>;
  readonly #max: number;
  /** Tasks held per subscription as last counted in the store, and holds here since. */
  readonly #counts = new Map<string, { counted: Promise<number>; added: number }>();

  constructor(held: Pick<HeldTaskRepository, 'count'>, max: number) {
    this.#held = held;
    this.#max = max;
  }

  get max(): number {
    return this.#max;
  }

  /** Takes a place for one more held task; false when the subscription holds as many as it may. */
  async take(subscriptionId: string): Promise<boolean> {
    let known = this.#counts.get(subscriptionId);
    if (known === undefined || known.added >= COUNT_EVERY) {
      // Tasks held at once share one count.
      known = { counted: this.#held.count(subscriptionId), added: 0 };
      if (this.#counts.size >= MAX_REMEMBERED) this.#counts.clear();
      this.#counts.set(subscriptionId, known);
    }
    const counted = await known.counted;
    if (counted + known.added >= this.#max) return false;
    known.added += 1;
    return true;
  }
}
