/**
 * Cooperative time slicing: long synchronous work in a loop (a processor batch of large events)
 * hands the event loop back every few milliseconds, so requests on the same thread (`/healthz`, the
 * API) wait for one slice, not for the whole loop.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Milliseconds of work between two turns of the event loop. */
export const SLICE_MS = 10;

/** Call `maybeYield()` between the steps of a loop; it yields once a slice has been used up. */
export class TimeSlicer {
  #since = performance.now();
  readonly #sliceMs: number;

  constructor(sliceMs = SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  /** Resolves at once while the slice lasts; otherwise after the event loop has had a turn. */
  async maybeYield(): Promise<void> {
    if (performance.now() - this.#since < this.#sliceMs) return;
    await nextTurn();
    this.#since = performance.now();
  }
}
