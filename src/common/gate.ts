/** A gate that lets at most `limit` tasks run at once; the others wait their turn, in arrival order. */
export class Gate {
  #running = 0;
  readonly #queue: Array<() => void> = [];
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Runs `task` once a place is free; the place is given back when it settles. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#limit) await new Promise<void>((resolve) => this.#queue.push(resolve));
    else this.#running += 1;
    try {
      return await task();
    } finally {
      // The place passes straight to the next waiter, if any.
      const next = this.#queue.shift();
      if (next) next();
      else this.#running -= 1;
    }
  }
}
