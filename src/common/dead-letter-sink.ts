/**
 * Dead-lettering shared by the processor and the dispatcher: the entry is kept in the store (for
 * `/admin/dlq` and redrive) and published to the stage's DLQ topic (for outside consumers).
 */
import { HEADERS } from './bus-headers.ts';
import { isWebhooksError } from './errors.ts';
import { uuidv7From } from './ids.ts';
import type { DeadLetterRecord } from './model.ts';
import type { BusMessage } from './ports/bus.ts';
import type { DeadLetterRepository } from './ports/store.ts';

export const DLQ_TOPICS = { processor: 'dlq.processor', dispatcher: 'dlq.dispatcher' } as const;

/**
 * The reason of a task the dispatcher keeps in the store while its subscription is PAUSED (not a
 * failure: it is re-enqueued when the subscription is resumed, see `Operations.releaseHeld`).
 */
export const HELD_REASON = 'subscription_paused';

export interface DeadLetterSinkDeps {
  deadLetters: DeadLetterRepository;
  publish: (messages: BusMessage[]) => Promise<void>;
  newId: () => string;
  clock: () => Date;
}

export type DeadLetterInput = Omit<DeadLetterRecord, 'id' | 'createdAt' | 'redrivenAt'> & {
  /**
   * Derive the id from this key and time (the record that failed) instead of a new one: the same
   * failure dead-lettered again after its batch was redelivered is stored once.
   */
  idFrom?: { key: string; at: number };
  /** false: stored only, not published to the DLQ topic (a task held while its subscription is paused). */
  publish?: false;
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
    const records: DeadLetterRecord[] = entries.map(({ idFrom, publish: _, ...e }) => ({
      ...e,
      id: idFrom ? uuidv7From(idFrom.at, idFrom.key) : this.#deps.newId(),
      createdAt: this.#deps.clock().toISOString(),
    }));
    const toPublish = records.filter((_, i) => entries[i]!.publish !== false);
    // One already stored (its batch ran before and was redelivered) stays as it was; it is
    // published again all the same (the topic is at-least-once; its id is in the headers).
    await Promise.all(
      records.map((record) =>
        this.#deps.deadLetters.insert(record).catch((err: unknown) => {
          if (!(isWebhooksError(err) && err.code === 'already_exists')) throw err;
        }),
      ),
    );
    if (toPublish.length === 0) return;
    await this.#deps.publish(
      toPublish.map((r) => ({
        topic: DLQ_TOPICS[r.stage],
        ...(r.key !== undefined ? { key: r.key } : {}),
        value: r.value,
        headers: {
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
