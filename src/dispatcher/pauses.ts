/**
 * Egress partitions paused for saturated endpoints: what would be fetched from them meanwhile could
 * only wait, or be parked on a retry tier. Endpoints that share a partition (the same partner and
 * event type) each hold it paused; it resumes when the last of them drains, or after MAX_PAUSE_MS.
 * Retry tiers are shared by every endpoint, so they are never paused.
 */
import type { BatchControl, ConsumedMessage } from '../common/ports/bus.ts';
import type { EndpointLimiter } from './endpoint-limiter.ts';

/** The longest an egress partition stays paused for a saturated endpoint without hearing it drained (ms). */
const MAX_PAUSE_MS = 30_000;

export class PartitionPauses {
  readonly #limiter: EndpointLimiter;
  /** `topic\0partition` → how to resume it, and the endpoints holding it paused, each until when. */
  readonly #pauses = new Map<string, { resume: () => void; holders: Map<string, number> }>();

  constructor(limiter: EndpointLimiter) {
    this.#limiter = limiter;
  }

  /** Stops fetching the message's egress partition until the endpoint drains (or MAX_PAUSE_MS). */
  pauseFor(endpoint: string, message: ConsumedMessage, control: BatchControl): void {
    if (!message.topic.startsWith('egress.')) return;
    const key = `${message.topic}\u0000${message.partition}`;
    const now = Date.now();
    let pause = this.#pauses.get(key);
    if ((pause?.holders.get(endpoint) ?? 0) > now) return;
    if (!pause) {
      pause = { resume: () => {}, holders: new Map() };
      this.#pauses.set(key, pause);
    }
    pause.resume = () => control.resume(message);
    pause.holders.set(endpoint, now + MAX_PAUSE_MS);
    control.pause(message, MAX_PAUSE_MS);
    this.#limiter.whenDrained(endpoint, () => this.#unpause(key, endpoint));
  }

  /** The endpoint no longer holds the partition paused; it resumes when no endpoint does. */
  #unpause(key: string, endpoint: string): void {
    const pause = this.#pauses.get(key);
    if (!pause) return;
    pause.holders.delete(endpoint);
    const now = Date.now();
    for (const [holder, until] of pause.holders) if (until <= now) pause.holders.delete(holder);
    if (pause.holders.size > 0) return;
    this.#pauses.delete(key);
    pause.resume();
  }
}
