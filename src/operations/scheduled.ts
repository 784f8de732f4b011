/**
 * Publishing the messages kept until due (retries on AWS Lambda, see `LambdaBus`): what is due is
 * published, then forgotten. At least once: a crash between the two publishes them again, which the
 * stages absorb (the ledger, the processor's routes).
 */
import type { BusMessage } from '../common/ports/bus.ts';
import type { ScheduledMessageRepository } from '../common/ports/store.ts';

export interface PublishDueOptions {
  scheduled: ScheduledMessageRepository;
  publish: (messages: BusMessage[]) => Promise<void>;
  clock: () => number;
  /** Stop starting new rounds after this time (ms since epoch). */
  deadline?: number;
  /** Messages per round (default 500). */
  batch?: number;
}

/** Publishes every message due now, round after round; returns how many. */
export async function publishDue(options: PublishDueOptions): Promise<number> {
  const batch = options.batch ?? 500;
  let published = 0;
  for (;;) {
    const now = options.clock();
    if (options.deadline !== undefined && now >= options.deadline) return published;
    const due = await options.scheduled.due(now, batch);
    if (due.length === 0) return published;
    // Due now: published without the time it had to wait for (a consumer would wait for it again).
    await options.publish(due.map(({ message: { notBefore: _, ...message } }) => message));
    await options.scheduled.remove(due);
    published += due.length;
    if (due.length < batch) return published;
  }
}
