/**
 * The cap on tasks held per subscription (WEBHOOKS_MAX_HELD_PER_SUBSCRIPTION): beyond it, more are
 * dead-lettered (`held_overflow`, redrivable) instead of held. The store keeps the count with the
 * tasks (one point read per hold); tasks held at the same moment all see the count before them, so
 * the cap may be passed by as many as are held at once.
 */
import type { HeldTaskRepository } from '../common/ports/store.ts';

export class HeldCap {
  readonly #held: Pick<HeldTaskRepository, 'count'>;
  readonly max: number;

  constructor(held: Pick<HeldTaskRepository, 'count'>, max: number) {
    this.#held = held;
    this.max = max;
  }

  /** Whether one more task may be held for the subscription. */
  async take(subscriptionId: string): Promise<boolean> {
    return (await this.#held.count(subscriptionId)) < this.max;
  }
}
