/**
 * The scheduler function, run every minute (an EventBridge rule): publishes the retries kept until
 * due (see `LambdaBus`) and re-enqueues tasks held for subscriptions and partners no longer paused.
 * One run at a time (reserved concurrency 1): two would publish the same messages twice.
 */
import { publishDue } from '../../operations/scheduled.ts';
import { container } from './container.ts';
import { invocationDeadline, type LambdaContextLike } from './invocation.ts';

export interface SchedulerResult {
  published: number;
  released: number;
}

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
    if (published + released > 0) platform.logger.info('scheduler run', { published, released });
    return { published, released };
  });
}
