/**
 * The dispatcher's side of the idempotency ledger: a delivery is claimed by its `webhook-id` before
 * its request goes out, and completed or released with the claim's fencing token after. A refusal
 * (the claim lapsed and another worker took it over while this one worked) changes nothing and is
 * counted in `ledger_claims_lost_total`.
 */
import { type DeliveryTask, webhookIdOf } from '../common/delivery-task.ts';
import type { Logger } from '../common/log.ts';
import type { MetricsRegistry } from '../common/metrics.ts';
import type { IdempotencyLedger } from '../common/ports/store.ts';

/** A ledger claim as the dispatcher sees it: claimed without a token when the ledger is off. */
export type Claim =
  | { status: 'claimed'; token: string | undefined }
  | { status: 'completed' }
  | { status: 'busy' };

/** Claims, completions and releases of deliveries in the ledger (all no-ops without one). */
export class DeliveryClaims {
  readonly #ledger: IdempotencyLedger | undefined;
  readonly #enabled: () => boolean;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #lost;

  /** `enabled`: whether new claims are made now (a live flag); a claim made is completed or released whatever it says since. */
  constructor(
    ledger: IdempotencyLedger | undefined,
    ttlMs: number,
    metrics: MetricsRegistry,
    logger: Logger,
    enabled: () => boolean = () => true,
  ) {
    this.#ledger = ledger;
    this.#enabled = enabled;
    this.#ttlMs = ttlMs;
    this.#logger = logger;
    this.#lost = metrics.counter(
      'ledger_claims_lost_total',
      'Ledger claims taken over by another worker while an attempt ran (release or complete refused)',
      ['step'],
    );
  }

  /** Claims the delivery for `leaseMs`. */
  async claim(task: DeliveryTask, leaseMs: number, now: Date): Promise<Claim> {
    if (!this.#ledger || !this.#enabled()) return { status: 'claimed', token: undefined };
    return this.#ledger.claim(webhookIdOf(task), leaseMs, now.getTime());
  }

  /** Hands the claim back (the attempt failed, or never started), so the next try may claim at once. */
  async release(task: DeliveryTask, token: string | undefined): Promise<void> {
    if (token === undefined || !this.#ledger) return;
    if (!(await this.#ledger.release(webhookIdOf(task), token))) this.#fenced(task, 'release');
  }

  /** Marks the delivery done (kept for the ledger's TTL). */
  async complete(task: DeliveryTask, token: string | undefined, now: Date): Promise<void> {
    if (token === undefined || !this.#ledger) return;
    const done = await this.#ledger.complete(webhookIdOf(task), token, this.#ttlMs, now.getTime());
    if (!done) this.#fenced(task, 'complete');
  }

  /** Whether the ledger says the delivery was done. */
  async completed(task: DeliveryTask): Promise<boolean> {
    if (!this.#enabled()) return false;
    return (await this.#ledger?.get(webhookIdOf(task)))?.status === 'COMPLETED';
  }

  /**
   * The claim was taken over by another worker while this one worked (this process stalled past
   * the lease): its release or completion changed nothing, and is counted.
   */
  #fenced(task: DeliveryTask, step: 'release' | 'complete'): void {
    this.#lost.inc({ step });
    this.#logger.warn('the ledger claim lapsed and was taken over during the attempt', {
      step,
      deliveryId: task.deliveryId,
    });
  }
}
