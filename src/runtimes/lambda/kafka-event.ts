/**
 * The Kafka events AWS Lambda receives from an event source mapping (Amazon MSK, `aws:kafka`, or
 * self-managed Kafka, `SelfManagedKafka`), as the bus port's `ConsumedMessage`s, and the partial
 * batch response Lambda expects back.
 *
 * The event: records grouped under `"<topic>-<partition>"` keys; key and value base64-encoded (the
 * key absent or null without one); headers an array of one-entry objects whose value is the header's
 * bytes as an array of *signed* Java bytes (-128..127), decoded here with `b & 0xff`. The
 * `webhooks-not-before` header becomes `notBefore`, as the Kafka bus reads it.
 *
 * The response: `{ batchItemFailures: [{ itemIdentifier: { partition: "<topic>-<partition>",
 * offset: <number> } }] }` — an object, never a string (a string fails the whole batch) — naming per
 * partition the first record to deliver again; Lambda redelivers it and everything after it in that
 * partition, and commits the rest.
 */
import { ValidationError } from '../../common/errors.ts';
import type { ConsumedMessage } from '../../common/ports/bus.ts';
import { readHeaders } from '../../engines/kafka/headers.ts';

/** One record of a Lambda Kafka event. */
export interface LambdaKafkaRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  timestampType?: string;
  key?: string | null;
  value?: string | null;
  headers?: Array<Record<string, number[]>>;
}

/** A Lambda Kafka event (MSK or self-managed). */
export interface LambdaKafkaEvent {
  eventSource: 'aws:kafka' | 'SelfManagedKafka';
  eventSourceArn?: string;
  bootstrapServers?: string;
  records: Record<string, LambdaKafkaRecord[]>;
}

/** The partial batch response of a Kafka event source mapping. */
export interface KafkaBatchResponse {
  batchItemFailures: Array<{ itemIdentifier: { partition: string; offset: number } }>;
}

const utf8 = new TextDecoder();

/** The records of an event, by partition and in offset order within each. */
export function decodeKafkaEvent(event: unknown): ConsumedMessage[] {
  const e = event as Partial<LambdaKafkaEvent> | null;
  if (!e || (e.eventSource !== 'aws:kafka' && e.eventSource !== 'SelfManagedKafka')) {
    throw new ValidationError('event_invalid', 'not a Kafka event of an event source mapping', {
      details: [{ field: 'eventSource', message: 'must be aws:kafka or SelfManagedKafka' }],
    });
  }
  if (!e.records || typeof e.records !== 'object') {
    throw new ValidationError('event_invalid', 'the Kafka event has no records', {
      details: [{ field: 'records', message: 'must be an object of record lists by "<topic>-<partition>"' }],
    });
  }
  const out: ConsumedMessage[] = [];
  for (const [group, records] of Object.entries(e.records)) {
    if (!Array.isArray(records)) {
      throw new ValidationError('event_invalid', `records of ${group} are not a list`, {
        details: [{ field: `records.${group}`, message: 'must be an array' }],
      });
    }
    const decoded = records.map(toMessage).sort((a, b) => a.offset - b.offset);
    out.push(...decoded);
  }
  return out;
}

/**
 * The response naming every record of `failed` (the records to deliver again), by partition and
 * offset; an empty list when everything was handled. Every one, not only the first of each
 * partition: if Lambda checkpoints a partition at its lowest failed offset (as it does for
 * streams), the others change nothing; if it retries the records named, one left out would be lost.
 */
export function partialBatchResponse(
  failed: Iterable<Pick<ConsumedMessage, 'topic' | 'partition' | 'offset'>>,
): KafkaBatchResponse {
  const named = new Map<string, { partition: string; offset: number }>();
  for (const m of failed) {
    const partition = partitionId(m.topic, m.partition);
    named.set(`${partition}\n${m.offset}`, { partition, offset: m.offset });
  }
  return {
    batchItemFailures: [...named.values()]
      .sort((a, b) => (a.partition < b.partition ? -1 : a.partition > b.partition ? 1 : a.offset - b.offset))
      .map((itemIdentifier) => ({ itemIdentifier })),
  };
}

/** `"<topic>-<partition>"`: how the event and the response name a partition. */
export function partitionId(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

function toMessage(record: LambdaKafkaRecord): ConsumedMessage {
  const { headers, notBefore } = readHeaders(
    (record.headers ?? []).flatMap((entry) =>
      Object.entries(entry).map(([name, bytes]): [string, string] => [
        name,
        utf8.decode(Uint8Array.from(bytes, (b) => b & 0xff)),
      ]),
    ),
  );
  const message: ConsumedMessage = {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    value: record.value ? Buffer.from(record.value, 'base64').toString('utf8') : '',
    headers,
    timestamp: record.timestamp,
  };
  if (record.key !== undefined && record.key !== null)
    message.key = Buffer.from(record.key, 'base64').toString('utf8');
  if (notBefore !== undefined) message.notBefore = notBefore;
  return message;
}
