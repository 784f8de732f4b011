/**
 * Errors of background work — log retention, store housekeeping, WAL checkpoints, consumer
 * bookkeeping — that no request is waiting for. Each one is counted (`background_errors_total{task}`)
 * and logged with its task and context; one that keeps failing every second is logged once a
 * minute with how many times it failed meanwhile, so the log says it without drowning.
 */
import type { Logger } from './log.ts';
import type { MetricsRegistry } from './metrics.ts';

/** The least time between two log lines of one task's failures (ms). */
const LOG_EVERY_MS = 60_000;

export class BackgroundErrors {
  readonly #logger: Logger;
  readonly #errors;
  readonly #now: () => number;
  readonly #lastLogged = new Map<string, { at: number; since: number }>();

  constructor(logger: Logger, metrics: MetricsRegistry, now: () => number = Date.now) {
    this.#logger = logger;
    this.#now = now;
    this.#errors = metrics.counter('background_errors_total', 'Failures of background work, by task', [
      'task',
    ]);
  }

  /** Counts a failure of `task`, and logs it unless this task was logged less than a minute ago. */
  report(task: string, err: unknown, context: Record<string, unknown> = {}): void {
    this.#errors.inc({ task });
    this.log(task, err, context);
  }

  /** Logs a failure (once a minute per task) that a metric of its own counts already. */
  log(task: string, err: unknown, context: Record<string, unknown> = {}): void {
    const now = this.#now();
    const last = this.#lastLogged.get(task);
    if (last && now - last.at < LOG_EVERY_MS) {
      last.since += 1;
      return;
    }
    this.#lastLogged.set(task, { at: now, since: 0 });
    this.#logger.error(`background work failed: ${task}`, {
      err,
      task,
      ...context,
      ...(last && last.since > 0 ? { failedSinceLastLog: last.since } : {}),
    });
  }

  /** A reporter bound to one task (for an `onError` callback). */
  for(task: string, context: Record<string, unknown> = {}): (err: unknown) => void {
    return (err) => this.report(task, err, context);
  }
}
