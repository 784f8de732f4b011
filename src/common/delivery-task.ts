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

/**
 * The delivery id (`webhook-id`) of an event for a subscription: `msg_` + 14 hex digits of the
 * ingest time in µs + 18 hex digits of SHA-256(source, id, subscription). Deterministic — every
 * redelivery of the same ingested event gives the same id, so the ledger absorbs repeats — and
 * ordered by ingest (each event ingested by one process has its own µs stamp), so the store's
 * tables keyed by it grow at the end instead of at random places.
 */
export function deliveryIdFor(
  ingestedAt: number,
  eventSource: string,
  eventId: string,
  subscriptionId: string,
): string {
  const hash = createHash('sha256').update(`${eventSource}\n${eventId}\n${subscriptionId}`).digest('hex');
  const time = Math.max(0, Math.round(ingestedAt * 1000)).toString(16).padStart(14, '0').slice(-14);
  return `msg_${time}${hash.slice(0, 18)}`;
}

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
