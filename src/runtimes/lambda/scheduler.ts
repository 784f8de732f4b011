/**
 * The scheduler function, run every minute (an EventBridge rule): publishes the retries kept until
 * due (see `LambdaBus`), re-enqueues tasks held for subscriptions and partners no longer paused, and
 * every 10 minutes reconciles the event source mappings with the subscriptions.
 * One run at a time (reserved concurrency 1): two would publish the same messages twice.
 */
import { publishDue } from '../../operations/scheduled.ts';
import { container } from './container.ts';
import { invocationDeadline, type LambdaContextLike } from './invocation.ts';

export interface SchedulerResult {
  published: number;
  released: number;
  /** Event source mappings made and retired, on the runs that reconcile them. */
  mappings?: { created: number; deleted: number };
}

/** How often the event source mappings are reconciled with the subscriptions (see `triggers.ts`). */
const RECONCILE_EVERY_MS = 10 * 60_000;
let reconciledAt = 0;

export async function handler(_event: unknown, context?: LambdaContextLike): Promise<SchedulerResult> {
  const c = await container('scheduler');
  const { platform } = c;
  return c.observe(context, '### publish due retries', async () => {
    const published = await publishDue({
      scheduled: platform.store.scheduled,
      publish: (messages) => platform.bus.publish(messages),
      clock: Date.now,
      ...(invocationDeadline() !== undefined ? { deadline: invocationDeadline()! } : {}),
    });
    const released = await platform.operations.releaseHeld();
    let mappings: SchedulerResult['mappings'];
    if (c.triggers && Date.now() - reconciledAt >= RECONCILE_EVERY_MS) {
      reconciledAt = Date.now();
      mappings = await c.triggers.reconcile(platform.store.subscriptions).catch((err: unknown) => {
        platform.logger.warn('could not reconcile the event source mappings', { err });
        return undefined;
      });
    }
    if (published + released + (mappings?.created ?? 0) + (mappings?.deleted ?? 0) > 0)
      platform.logger.info('scheduler run', { published, released, ...mappings });
    return { published, released, ...(mappings ? { mappings } : {}) };
  });
}
