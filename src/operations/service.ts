/**
 * Operations: the delivery record (`GET /admin/deliveries`, attempts included), the dead letters
 * (`GET /admin/dlq`) and their redrive (`POST /admin/dlq/redrive`), which re-enqueues and keeps history.
 */
import { HEADERS } from '../common/bus-headers.ts';
import { HELD_REASON } from '../common/dead-letter-sink.ts';
import { isWebhooksError, ValidationError } from '../common/errors.ts';
import { InputReader } from '../common/input.ts';
import type {
  DeadLetterRecord,
  DeliveryAttempt,
  DeliveryRecord,
  SubscriptionStatus,
} from '../common/model.ts';
import type { BusMessage } from '../common/ports/bus.ts';
import type {
  DeadLetterFilter,
  DeadLetterRepository,
  DeliveryRepository,
  Page,
  PageRequest,
} from '../common/ports/store.ts';

export interface OperationsDeps {
  deliveries: DeliveryRepository;
  deadLetters: DeadLetterRepository;
  publish: (messages: BusMessage[]) => Promise<void>;
  /** A subscription's status now (undefined: deleted), to release tasks held while it was PAUSED. */
  subscriptionStatus: (id: string) => Promise<SubscriptionStatus | undefined>;
  clock: () => Date;
}

const DELIVERY_STATUSES = ['PENDING', 'SUCCESS', 'FAILED'] as const;
const STAGES = ['processor', 'dispatcher'] as const;
const REDRIVE_BATCH = 500;

/** Read the delivery record, inspect and redrive dead letters. */
export class Operations {
  readonly #deps: OperationsDeps;

  constructor(deps: OperationsDeps) {
    this.#deps = deps;
  }

  /** Deliveries (newest first) with their attempts. */
  async deliveries(
    query: Record<string, string>,
    page: PageRequest,
  ): Promise<Page<DeliveryRecord & { attemptLog: DeliveryAttempt[] }>> {
    const input = new InputReader(query, ['eventId', 'subscriptionId', 'partnerId', 'status']);
    const status = input.oneOf('status', DELIVERY_STATUSES);
    input.done('the query is invalid');
    const found = await this.#deps.deliveries.list(
      { eventId: query.eventId, subscriptionId: query.subscriptionId, partnerId: query.partnerId, status },
      page,
    );
    const items = await Promise.all(
      found.items.map(async (d) => ({ ...d, attemptLog: await this.#deps.deliveries.attempts(d.id) })),
    );
    return found.next ? { items, next: found.next } : { items };
  }

  /** Dead letters, oldest first. */
  async deadLetters(query: Record<string, string>, page: PageRequest): Promise<Page<DeadLetterRecord>> {
    const filter = readDeadLetterFilter(query, ['stage', 'subscriptionId', 'eventId', 'reason', 'pending']);
    return this.#deps.deadLetters.list(filter, page);
  }

  /**
   * Re-publishes pending dead letters matching the filter to the topic they came from, marks them
   * redriven (they stay listed) and sets their deliveries back to PENDING.
   */
  async redrive(body: unknown): Promise<{ redriven: number; ids: string[] }> {
    const input = new InputReader(body ?? {}, ['stage', 'subscriptionId', 'eventId', 'all']);
    const stage = input.oneOf('stage', STAGES);
    const subscriptionId = input.string('subscriptionId');
    const eventId = input.string('eventId');
    const all = input.boolean('all');
    input.done('the redrive request is invalid');
    if (!all && subscriptionId === undefined && eventId === undefined && stage === undefined) {
      throw new ValidationError(
        'redrive_scope_missing',
        'say what to redrive: subscriptionId, eventId, stage, or all: true',
        {
          details: [{ field: 'all', message: 'set all: true to redrive every pending dead letter' }],
        },
      );
    }
    return this.#redrive({
      pending: true,
      ...(stage ? { stage } : {}),
      ...(subscriptionId ? { subscriptionId } : {}),
      ...(eventId ? { eventId } : {}),
    });
  }

  /**
   * Re-enqueues the tasks held while a subscription was PAUSED — of one subscription (it was just
   * resumed), or of every subscription that is not PAUSED any more (the periodic sweep, which also
   * catches tasks a dispatcher held after the resume, before it heard of it). A subscription
   * deleted or DISABLED meanwhile gets its tasks back too: the dispatcher dead-letters them with
   * the real reason.
   */
  async releaseHeld(subscriptionId?: string): Promise<number> {
    const filter: DeadLetterFilter = { pending: true, stage: 'dispatcher', reason: HELD_REASON };
    if (subscriptionId !== undefined) return (await this.#redrive({ ...filter, subscriptionId })).redriven;
    const held = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await this.#deps.deadLetters.list(filter, {
        limit: REDRIVE_BATCH,
        ...(cursor ? { cursor } : {}),
      });
      for (const d of page.items) if (d.subscriptionId) held.add(d.subscriptionId);
      cursor = page.next;
    } while (cursor);
    let released = 0;
    for (const id of held) {
      if ((await this.#deps.subscriptionStatus(id)) === 'PAUSED') continue;
      released += (await this.#redrive({ ...filter, subscriptionId: id })).redriven;
    }
    return released;
  }

  async #redrive(filter: DeadLetterFilter): Promise<{ redriven: number; ids: string[] }> {
    const ids: string[] = [];
    // Each round takes the first page of what is still pending: redriven entries drop out of it.
    for (;;) {
      const { items } = await this.#deps.deadLetters.list(filter, { limit: REDRIVE_BATCH });
      if (items.length === 0) break;
      const now = this.#deps.clock().toISOString();
      // Deliveries back to PENDING before their tasks are re-enqueued: a dispatcher may deliver a
      // task within milliseconds, and a later PENDING would overwrite its SUCCESS.
      // All of a page at once: the reads share one read transaction, the writes one commit.
      await Promise.all(
        items.map(async (d) => {
          const deliveryId = d.stage === 'dispatcher' ? deliveryIdOf(d.value) : undefined;
          if (deliveryId && (await this.#deps.deliveries.get(deliveryId))) {
            // Gone meanwhile (history retention): the redriven task records it anew.
            await this.#deps.deliveries
              .patch(deliveryId, { status: 'PENDING', updatedAt: now })
              .catch((err: unknown) => {
                if (!(isWebhooksError(err) && err.code === 'not_found')) throw err;
              });
          }
        }),
      );
      await this.#deps.publish(
        items.map((d) => ({
          topic: d.topic,
          ...(d.key !== undefined ? { key: d.key } : {}),
          value: d.value,
          headers: {
            [HEADERS.redrive]: d.id,
            [HEADERS.originTopic]: d.topic,
            ...(d.stage === 'processor' && d.subscriptionId
              ? { [HEADERS.onlySubscription]: d.subscriptionId }
              : {}),
          },
        })),
      );
      await Promise.all(items.map((d) => this.#deps.deadLetters.markRedriven(d.id, now)));
      ids.push(...items.map((d) => d.id));
      if (items.length < REDRIVE_BATCH) break;
    }
    return { redriven: ids.length, ids };
  }
}

function readDeadLetterFilter(query: Record<string, string>, allowed: string[]): DeadLetterFilter {
  const input = new InputReader(query, allowed);
  const stage = input.oneOf('stage', STAGES);
  const pending = input.oneOf('pending', ['true', 'false'] as const);
  input.done('the query is invalid');
  return {
    ...(stage ? { stage } : {}),
    ...(query.subscriptionId ? { subscriptionId: query.subscriptionId } : {}),
    ...(query.eventId ? { eventId: query.eventId } : {}),
    ...(query.reason ? { reason: query.reason } : {}),
    ...(pending ? { pending: pending === 'true' } : {}),
  };
}

function deliveryIdOf(value: string): string | undefined {
  try {
    const task = JSON.parse(value) as { deliveryId?: unknown };
    return typeof task.deliveryId === 'string' ? task.deliveryId : undefined;
  } catch {
    return undefined;
  }
}
