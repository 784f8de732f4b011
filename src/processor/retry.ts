/** The processor's retry topic: transient failures come back after a delay, counted in a header. */
import { HEADERS } from '../common/bus-headers.ts';
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
  return {
    topic: PROCESSOR_RETRY_TOPIC,
    ...(message.key !== undefined ? { key: message.key } : {}),
    value: message.value,
    headers: {
      ...message.headers,
      [HEADERS.attempt]: String(attempt),
      [HEADERS.originTopic]: originTopic,
      // Where and when the record was first read: a copy gets the same delivery ids as its original.
      [HEADERS.originPosition]:
        message.headers[HEADERS.originPosition] ?? `${message.partition}:${message.offset}`,
      [HEADERS.ingestedAt]: message.headers[HEADERS.ingestedAt] ?? String(message.timestamp),
      [HEADERS.lastError]: error.slice(0, 500),
    },
    notBefore: now + delayMs,
  };
}
