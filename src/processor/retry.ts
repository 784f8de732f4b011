/** The processor's retry topic: transient failures come back after a delay, counted in a header. */
import { HEADERS } from '../common/bus-headers.ts';
import type { RecordPosition } from '../common/delivery-task.ts';
import type { BusMessage, ConsumedMessage } from '../common/ports/bus.ts';

export const PROCESSOR_RETRY_TOPIC = 'retry.processor.30s';

/** The message that sends a record to the processor retry topic for attempt `attempt + 1`. */
export function processorRetryMessage(
  message: ConsumedMessage,
  originTopic: string,
  attempt: number,
  error: string,
  now: number,
  delayMs: number,
): BusMessage {
  const first = recordPositionOf(message);
  return {
    topic: PROCESSOR_RETRY_TOPIC,
    ...(message.key !== undefined ? { key: message.key } : {}),
    value: message.value,
    headers: {
      ...message.headers,
      [HEADERS.attempt]: String(attempt),
      [HEADERS.originTopic]: originTopic,
      // Where and when the record was first read: a copy gets the same delivery ids as its original.
      [HEADERS.originPosition]: `${first.partition}:${first.offset}`,
      [HEADERS.ingestedAt]: String(first.ingestedAt),
      [HEADERS.lastError]: error.slice(0, 500),
    },
    notBefore: now + delayMs,
  };
}

/**
 * Where and when the record was first read: its own position and ingest time, or for a copy on
 * the retry topic its original's (carried in headers), so that the copy gets the same delivery ids.
 */
export function recordPositionOf(message: ConsumedMessage): RecordPosition {
  const ingestedAt = Number(message.headers[HEADERS.ingestedAt] ?? message.timestamp);
  const [partition, offset] = (message.headers[HEADERS.originPosition] ?? '').split(':').map(Number);
  return Number.isSafeInteger(partition) && Number.isSafeInteger(offset)
    ? { ingestedAt, partition: partition!, offset: offset! }
    : { ingestedAt, partition: message.partition, offset: message.offset };
}
