/**
 * The delivery task: what the processor publishes to an egress topic for one event × subscription,
 * and what the dispatcher consumes, retries and dead-letters. Versioned JSON on the bus.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from './errors.ts';
import { isJsonObject, type JsonValue } from './json.ts';

export interface DeliveryTask {
  v: 1;
  /** The stable `webhook-id` of this event × subscription (same on every retry and redrive). */
  deliveryId: string;
  subscriptionId: string;
  partnerId: string;
  event: {
    id: string;
    source: string;
    type: string;
    time?: string;
    subject?: string;
    correlationId: string;
    traceparent?: string;
    tracestate?: string;
  };
  /** The JSON body POSTed to the partner (after mapping). */
  payload: JsonValue;
  /** Attempts already made. */
  attempt: number;
  /** When the first attempt was made (ms since epoch); absent before it. */
  firstAttemptAt?: number;
  /** When the processor created the task (ms since epoch): ingest→delivery latency starts here or earlier. */
  createdAt: number;
  /** When the event was accepted at ingest (ms since epoch), for end-to-end latency. */
  ingestedAt?: number;
}

/** Where an event was read from: the ingest time and the record's position in its topic. */
export interface RecordPosition {
  ingestedAt: number;
  partition: number;
  offset: number;
}

/**
 * The delivery id (`webhook-id`) of an event for a subscription: `msg_` + 32 hex digits, namely
 * the ingest second (8), the partition (3) and offset (11) of the record the event was read from,
 * and SHA-256(source, id, subscription) (10). Deterministic — every redelivery of the same record
 * gives the same id, so the ledger absorbs repeats. And ordered by position: consumers drain
 * partitions at their own pace (one may run minutes behind another), so ids in ingest order would
 * land all over the store's tables keyed by them, one page write each; per second and partition
 * they are written in offset order, at the end of their range.
 */
export function deliveryIdFor(
  position: RecordPosition,
  eventSource: string,
  eventId: string,
  subscriptionId: string,
): string {
  const hash = createHash('sha256').update(`${eventSource}\n${eventId}\n${subscriptionId}`).digest('hex');
  const second = Math.max(0, Math.floor(position.ingestedAt / 1000)) % 0x1_0000_0000;
  const partition = position.partition % 0x1000;
  const offset = position.offset % 0x1000_0000_0000;
  return `msg_${hex(second, 8)}${hex(partition, 3)}${hex(offset, 11)}${hash.slice(0, 10)}`;
}

const hex = (n: number, digits: number): string => n.toString(16).padStart(digits, '0');

/** Parses a task from the bus; a malformed one is a ValidationError (it goes to the DLQ). */
export function parseDeliveryTask(value: string): DeliveryTask {
  let task: unknown;
  try {
    task = JSON.parse(value);
  } catch (err) {
    throw new ValidationError('task_invalid', 'the delivery task is not JSON', { cause: err });
  }
  if (
    !isJsonObject(task) ||
    task.v !== 1 ||
    typeof task.deliveryId !== 'string' ||
    typeof task.subscriptionId !== 'string' ||
    typeof task.partnerId !== 'string' ||
    !isJsonObject(task.event) ||
    typeof task.event.id !== 'string' ||
    typeof task.attempt !== 'number' ||
    !('payload' in task)
  ) {
    throw new ValidationError('task_invalid', 'the delivery task lacks required fields');
  }
  return task as unknown as DeliveryTask;
}
