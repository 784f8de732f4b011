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

/** The deterministic delivery id of an event (by source and id) for a subscription: `msg_<32 hex>`. */
export function deliveryIdFor(eventSource: string, eventId: string, subscriptionId: string): string {
  const hash = createHash('sha256').update(`${eventSource}\n${eventId}\n${subscriptionId}`).digest('hex');
  return `msg_${hash.slice(0, 32)}`;
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
