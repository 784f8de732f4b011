/** A sleep that ends early when woken: how the consumer loop waits for new work or a deadline. */
export class Waker {
  /**
   * With `unref`, a wait does not keep the process alive by itself (a Kafka consumer's loop: its
   * connections do while they are open; once they are gone, an abandoned consumer must not).
   */
  readonly #unref: boolean;
  #pending = false;
  #resolve: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { unref?: boolean } = {}) {
    this.#unref = options.unref ?? false;
  }

  /** Ends the current or the next wait at once. */
  wake(): void {
    this.#pending = true;
    this.#resolve?.();
  }

  /** Resolves after `ms`, or sooner when woken. */
  wait(ms: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#resolve = undefined;
        this.#pending = false;
        resolve();
      };
      this.#resolve = done;
      this.#timer = setTimeout(done, Math.max(0, ms));
      if (this.#unref) this.#timer.unref();
    });
  }
}
