/**
 * The delivery task: what the processor publishes to an egress topic for one event × subscription,
 * and what the dispatcher consumes, retries and dead-letters. Versioned on the bus (see
 * `serializeDeliveryTask`).
 */
import { createHash } from 'node:crypto';
import { ValidationError } from './errors.ts';
import { isJsonObject } from './json.ts';

export interface DeliveryTask {
  /**
   * The id of the delivery record this task belongs to (ordered by where the event was read, so
   * the store writes records in order). The `webhook-id` the partner sees is `webhookIdOf(task)`.
   */
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
  /**
   * The JSON text POSTed to the partner (the event's data, or the mapping's output), exactly as
   * sent and signed. Kept as text from the processor to the partner: the dispatcher never parses it
   * (1 MB of small JSON values is tens of MB of objects) nor serialises it again.
   */
  body: string;
  /** Attempts already made. */
  attempt: number;
  /**
   * When this copy of the task was due (ms since epoch, the delivery record's `nextAttemptAt` to
   * the millisecond): 0 for the processor's first copy, the retry's due time for a retry. A copy
   * due before the record's next attempt is stale — another copy made an attempt since and
   * scheduled the next (a record handed out again after its retry was published) — and is dropped,
   * so one event × subscription never has two retry chains. Absent on tasks of earlier builds: not checked.
   */
  due?: number;
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
 * The id of a delivery record: `dlv_` + 32 hex digits, namely the ingest second (8), the partition
 * (3) and offset (11) of the record the event was read from, and SHA-256(source, id, subscription)
 * (10). Deterministic — every redelivery and retry copy of the same record gives the same id. And
 * ordered by position: consumers drain partitions at their own pace (one may run minutes behind
 * another), so ids in ingest order — or random ones, like the webhook-id — would land all over the
 * store's tables keyed by them, one page write each (measured: 35 → 125 µs of store time per
 * delivery with random ids); per second and partition these are written in offset order, at the
 * end of their range. It is not what the partner sees: that is the `webhook-id` (`webhookIdFor`).
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
  return `dlv_${hex(second, 8)}${hex(partition, 3)}${hex(offset, 11)}${hash.slice(0, 10)}`;
}

/**
 * The `webhook-id` of an event for a subscription: `msg_` + the first 128 bits of SHA-256 over the
 * event's source and id and the subscription id, as 32 hex digits. It depends on nothing else — not
 * on where or when the event was read — so every copy of one event × subscription carries it:
 * retries, redrives of either stage, the same event ingested again, a crash's redelivery. The
 * idempotency ledger is keyed by it, and Standard Webhooks receivers deduplicate on it.
 */
export function webhookIdFor(eventSource: string, eventId: string, subscriptionId: string): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([eventSource, eventId, subscriptionId]))
    .digest();
  return `msg_${digest.toString('hex', 0, 16)}`;
}

/**
 * The `webhook-id` of a task (see `webhookIdFor`), computed once per task object. A task made
 * before 2026-12-06 (on a retry tier or in the DLQ at the upgrade) keeps the id it was sent under
 * then — its delivery id, `msg_…` — so the partner and the ledger still recognise it.
 */
export function webhookIdOf(task: DeliveryTask): string {
  let id = webhookIds.get(task);
  if (id === undefined) {
    id = webhookIdOfDelivery(task.deliveryId, task.event.source, task.event.id, task.subscriptionId);
    webhookIds.set(task, id);
  }
  return id;
}

/**
 * The `webhook-id` a delivery is sent under: `webhookIdFor(source, eventId, subscriptionId)`, or —
 * for a delivery made before 2026-12-06, whose id is `msg_…` — that id, as it was sent then.
 */
export function webhookIdOfDelivery(
  deliveryId: string,
  source: string,
  eventId: string,
  subscriptionId: string,
): string {
  return deliveryId.startsWith('msg_') ? deliveryId : webhookIdFor(source, eventId, subscriptionId);
}

const webhookIds = new WeakMap<DeliveryTask, string>();

const hex = (n: number, digits: number): string => n.toString(16).padStart(digits, '0');

/**
 * A task as a bus message value, format v2: one line of JSON with every field but the body
 * (`{"v":2,…}`), a newline, then the body as it is. Compact JSON never holds a raw newline, so the
 * first one ends the head; the body is neither escaped (a JSON string inside JSON would grow by a
 * backslash per quote) nor parsed on the way.
 */
export function serializeDeliveryTask(task: DeliveryTask): string {
  const { body, ...head } = task;
  return `${JSON.stringify({ v: 2, ...head })}\n${body}`;
}

/** A JSON object parsed from `text`; undefined when it is not JSON or not an object. */
function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return isJsonObject(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A task value's head and, in v2, its body: the head line and the rest; otherwise (v1, or not a
 * task) the whole value as one document, without a body. Undefined when it is not JSON.
 */
function splitTask(value: string): { head: Record<string, unknown>; body?: string } | undefined {
  const newline = value.indexOf('\n');
  if (newline > 0) {
    const head = jsonObject(value.slice(0, newline));
    if (head?.v === 2) return { head, body: value.slice(newline + 1) };
  }
  const head = jsonObject(value);
  return head ? { head } : undefined;
}

/**
 * The fields of a stored task (a held task's, a dead letter's) without checking them: its head line
 * in v2, the whole document in v1; undefined when it is not JSON. For showing and finding tasks,
 * not for delivering them (`parseDeliveryTask`).
 */
export function deliveryTaskFields(
  value: string,
): ({ deliveryId?: unknown; event?: { id?: unknown } } & Record<string, unknown>) | undefined {
  return splitTask(value)?.head;
}

/**
 * Parses a task from the bus; a malformed one is a ValidationError (it goes to the DLQ). Reads v2
 * (`serializeDeliveryTask`) and v1, one JSON document whose `payload` is the body as a JSON value
 * (what earlier builds published, still found on retry topics, held tasks and dead letters).
 */
export function parseDeliveryTask(value: string): DeliveryTask {
  const split = splitTask(value);
  if (!split) throw new ValidationError('task_invalid', 'the delivery task is not a JSON object');
  const { head } = split;
  const body = split.body ?? (head.v === 1 && 'payload' in head ? JSON.stringify(head.payload) : undefined);
  if (
    body === undefined ||
    body === '' ||
    typeof head.deliveryId !== 'string' ||
    typeof head.subscriptionId !== 'string' ||
    typeof head.partnerId !== 'string' ||
    !isJsonObject(head.event) ||
    typeof head.event.id !== 'string' ||
    typeof head.attempt !== 'number'
  ) {
    throw new ValidationError('task_invalid', 'the delivery task lacks required fields');
  }
  const { v: _version, payload: _payload, ...fields } = head;
  return { ...fields, body } as unknown as DeliveryTask;
}
