/** Waiting for work with a limit: the one way the code bounds a promise in time. */

/**
 * `work`'s outcome, or a rejection with `late()` once `ms` have passed without it settling. The
 * timer does not keep the process alive, and is cleared as soon as the work settles.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
    timer.unref();
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
