/**
 * A stage's core (the processor, the dispatcher) run on the Kafka event of an event source mapping:
 * the batch is handled as a consumer group would hand it over, and what failed becomes the partial
 * batch response. A record that failed for good (the core says `permanent`) is dead-lettered here
 * and counts as handled; one whose failure may pass is tried again inside the invocation a few
 * times, then named in the response — Lambda delivers it again, with the rest of its partition
 * after it, and commits the partitions that were handled.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/log.ts';
import type {
  BatchControl,
  BatchOutcome,
  ConsumedMessage,
  DeadLetterNotice,
  FailedMessage,
} from '../../common/ports/bus.ts';
import { invocationDeadline } from './invocation.ts';
import { decodeKafkaEvent, type KafkaBatchResponse, partialBatchResponse } from './kafka-event.ts';

/** What a stage's core offers the runner. */
export interface StageCore {
  handle(batch: ConsumedMessage[], control: BatchControl): Promise<BatchOutcome | undefined>;
  giveUp(message: ConsumedMessage, notice: DeadLetterNotice): Promise<void>;
}

/** Tries of a failing record inside one invocation, and the wait before the first try again (doubled after). */
const TRIES = 3;
const FIRST_WAIT_MS = 200;

/**
 * An event source mapping hands batches over and takes the response: nothing to free early nor a
 * partition to pause (the batch is the unit, and a partition's next batch waits for this one).
 */
const NO_CONTROL: BatchControl = { done() {}, pause() {}, resume() {} };

/** Handles the records of a Kafka event; returns the partial batch response. */
export async function runKafkaBatch(
  event: unknown,
  core: StageCore,
  logger: Logger,
): Promise<KafkaBatchResponse> {
  let pending = decodeKafkaEvent(event);
  for (let tries = 1; ; tries++) {
    let outcome: BatchOutcome | undefined;
    try {
      outcome = await core.handle(pending, NO_CONTROL);
    } catch (err) {
      logger.error('a batch failed as a whole', { err, records: pending.length });
      outcome = { failed: pending.map((message) => ({ message, error: err })) };
    }
    const again: FailedMessage[] = [];
    for (const failure of outcome?.failed ?? []) {
      if (!failure.permanent) {
        again.push(failure);
        continue;
      }
      try {
        await core.giveUp(failure.message, { error: failure.error, failures: tries, permanent: true });
      } catch (err) {
        again.push({ message: failure.message, error: err });
      }
    }
    if (again.length === 0) return { batchItemFailures: [] };
    const wait = FIRST_WAIT_MS * 2 ** (tries - 1);
    const latest = invocationDeadline();
    if (tries >= TRIES || (latest !== undefined && Date.now() + wait >= latest)) {
      logger.warn('records left to the event source mapping to deliver again', {
        records: again.length,
        error: String((again[0]?.error as Error | undefined)?.message ?? again[0]?.error),
      });
      return partialBatchResponse(again.map((f) => f.message));
    }
    await sleep(wait);
    pending = again.map((f) => f.message).sort(byPosition);
  }
}

function byPosition(a: ConsumedMessage, b: ConsumedMessage): number {
  return a.topic === b.topic ? a.partition - b.partition || a.offset - b.offset : a.topic < b.topic ? -1 : 1;
}
