/**
 * Dead-lettering shared by the processor and the dispatcher: the entry is kept in the store (for
 * `/admin/dlq` and redrive) and published to the stage's DLQ topic (for outside consumers).
 */
import { HEADERS } from './bus-headers.ts';
import { isWebhooksError } from './errors.ts';
import type { DeadLetterRecord } from './model.ts';
import type { BusMessage } from './ports/bus.ts';
import type { DeadLetterRepository } from './ports/store.ts';

export const DLQ_TOPICS = { processor: 'dlq.processor', dispatcher: 'dlq.dispatcher' } as const;

export interface DeadLetterSinkDeps {
  deadLetters: DeadLetterRepository;
  publish: (messages: BusMessage[]) => Promise<void>;
  newId: () => string;
  clock: () => Date;
}

export type DeadLetterInput = Omit<DeadLetterRecord, 'id' | 'createdAt' | 'redrivenAt'> & {
  /**
   * The id (`recordId` of the record that failed) instead of a new one: the same failure
   * dead-lettered again after its batch was redelivered is stored once.
   */
  id?: string;
};

/** Stores dead letters and publishes them to the DLQ topics. */
export class DeadLetterSink {
  readonly #deps: DeadLetterSinkDeps;

  constructor(deps: DeadLetterSinkDeps) {
    this.#deps = deps;
  }

  /** Dead-letters a batch of entries (one publish call). */
  async send(entries: DeadLetterInput[]): Promise<void> {
    if (entries.length === 0) return;
    const records: DeadLetterRecord[] = entries.map((e) => ({
      ...e,
      id: e.id ?? this.#deps.newId(),
      createdAt: this.#deps.clock().toISOString(),
    }));
    // One already stored (its batch ran before and was redelivered) stays as it was; it is
    // published again all the same (the topic is at-least-once; its id is in the headers).
    await Promise.all(
      records.map((record) =>
        this.#deps.deadLetters.insert(record).catch((err: unknown) => {
          if (!(isWebhooksError(err) && err.code === 'already_exists')) throw err;
        }),
      ),
    );
    await this.#deps.publish(
      records.map((r) => ({
        topic: DLQ_TOPICS[r.stage],
        ...(r.key !== undefined ? { key: r.key } : {}),
        value: r.value,
        headers: {
          // A record of the CloudEvents Kafka binding in binary mode is its headers as much as its
          // value (`ce_id`, `ce_source`, `ce_type`…): kept, so a reader of the DLQ topic can tell it.
          ...r.headers,
          [HEADERS.dlqId]: r.id,
          [HEADERS.reason]: r.reason,
          [HEADERS.originTopic]: r.topic,
          [HEADERS.attempts]: String(r.attempts),
          ...(r.lastError ? { [HEADERS.lastError]: r.lastError.slice(0, 500) } : {}),
        },
      })),
    );
  }
}
