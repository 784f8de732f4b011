/**
 * Operations: the delivery record (`GET /admin/deliveries`, attempts included), the dead letters
 * (`GET /admin/dlq`) and their redrive (`POST /admin/dlq/redrive`), which re-enqueues and keeps history.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { HEADERS } from '../common/bus-headers.ts';
import { deliveryTaskFields, webhookIdOfDelivery } from '../common/delivery-task.ts';
import { isWebhooksError, NotFoundError, ValidationError } from '../common/errors.ts';
import { InputReader } from '../common/input.ts';
import type { DeadLetterRecord, DeliveryAttempt, DeliveryRecord } from '../common/model.ts';
import type { BusMessage } from '../common/ports/bus.ts';
import {
  type DeadLetterFilter,
  type DeadLetterRepository,
  type DeliveryRepository,
  type HeldTaskRepository,
  type IdempotencyLedger,
  invalidCursor,
  type Page,
  type PageRequest,
  pageLimit,
} from '../common/ports/store.ts';

export interface OperationsDeps {
  deliveries: DeliveryRepository;
  deadLetters: DeadLetterRepository;
  publish: (messages: BusMessage[]) => Promise<void>;
  heldTasks: HeldTaskRepository;
  /** Where redrives claim each dead letter before re-publishing it (the store's idempotency ledger). */
  ledger: IdempotencyLedger;
  /**
   * Whether a subscription's tasks are to be held now (it is PAUSED, or its partner INACTIVE): a
   * release stops, or does not start, while they are. False for a deleted subscription (its tasks
   * go back, and the dispatcher dead-letters them with the reason).
   */
  holding: (subscriptionId: string) => Promise<boolean>;
  /** Whether the subscription exists (listing what is held for an unknown one is a 404). */
  subscriptionExists?: (subscriptionId: string) => Promise<boolean>;
  clock: () => Date;
}

const DELIVERY_STATUSES = ['PENDING', 'SUCCESS', 'FAILED'] as const;
const STAGES = ['processor', 'dispatcher'] as const;
const REDRIVE_BATCH = 500;
/**
 * Dead letters one redrive request sends at most (`limit`, default and cap): a request does a
 * bounded amount of work and answers; `more: true` says to call again.
 */
const DEFAULT_REDRIVE_LIMIT = 1000;
const MAX_REDRIVE_LIMIT = 10_000;
/** How long a redrive's claim on a dead letter lasts (while it re-publishes; then it is completed). */
const REDRIVE_LEASE_MS = 60_000;

/** Read the delivery record, inspect and redrive dead letters. */
export class Operations {
  readonly #deps: OperationsDeps;
  /** Subscriptions whose held tasks this process is releasing now. */
  readonly #releasing = new Set<string>();

  constructor(deps: OperationsDeps) {
    this.#deps = deps;
  }

  /** Deliveries (newest first) with their attempts. */
  async deliveries(
    query: Record<string, string>,
    page: PageRequest,
  ): Promise<Page<DeliveryRecord & { webhookId: string; attemptLog: DeliveryAttempt[] }>> {
    const input = new InputReader(query, ['eventId', 'subscriptionId', 'partnerId', 'status']);
    const status = input.oneOf('status', DELIVERY_STATUSES);
    input.done('the query is invalid');
    const found = await this.#deps.deliveries.list(
      { eventId: query.eventId, subscriptionId: query.subscriptionId, partnerId: query.partnerId, status },
      page,
    );
    const items = await Promise.all(
      found.items.map(async (d) => ({
        ...d,
        webhookId: webhookIdOfDelivery(d.id, d.eventSource, d.eventId, d.subscriptionId),
        attemptLog: await this.#deps.deliveries.attempts(d.id),
      })),
    );
    return found.next ? { items, next: found.next } : { items };
  }

  /**
   * What is held for a PAUSED subscription, oldest first, a page at a time: `limit` (default 100,
   * up to 1,000), fewer when they are large (a page ends after MAX_PAGE_BYTES of tasks), `next` for
   * the page after, and how many are held in all. 404 for a subscription that does not exist and
   * has nothing held.
   */
  async held(
    subscriptionId: string,
    page: PageRequest,
  ): Promise<{
    items: Array<{ id: string; heldAt: string; deliveryId?: string; eventId?: string }>;
    total: number;
    next: string | null;
  }> {
    const afterId = page.cursor === undefined ? undefined : heldCursorId(page.cursor, subscriptionId);
    const held = this.#deps.heldTasks;
    const tasks = await held.list(subscriptionId, pageLimit(page.limit), afterId);
    const total = await held.count(subscriptionId);
    if (tasks.length === 0 && total === 0 && this.#deps.subscriptionExists) {
      if (!(await this.#deps.subscriptionExists(subscriptionId))) {
        throw new NotFoundError('subscription_not_found', `no subscription \`${subscriptionId}\``, {
          details: [{ field: 'id', message: 'no such subscription' }],
        });
      }
    }
    // A short page is not the last (large tasks end it early): whether one more follows is asked.
    const last = tasks.at(-1);
    const more = last !== undefined && (await held.list(subscriptionId, 1, last.id)).length > 0;
    return {
      total,
      next: more ? heldCursor(subscriptionId, last.id) : null,
      items: tasks.map((t) => {
        const task = deliveryTaskFields(t.value);
        return {
          id: t.id,
          heldAt: t.heldAt,
          ...(typeof task?.deliveryId === 'string' ? { deliveryId: task.deliveryId } : {}),
          ...(typeof task?.event?.id === 'string' ? { eventId: task.event.id } : {}),
        };
      }),
    };
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
  async redrive(body: unknown): Promise<{ redriven: number; ids: string[]; more: boolean }> {
    const input = new InputReader(body ?? {}, ['stage', 'subscriptionId', 'eventId', 'all', 'limit']);
    const stage = input.oneOf('stage', STAGES);
    // An empty id would filter nothing: `{ "subscriptionId": "" }` must not redrive every dead letter.
    const subscriptionId = input.string('subscriptionId', { pattern: /./, rule: 'a non-empty id' });
    const eventId = input.string('eventId', { pattern: /./, rule: 'a non-empty id' });
    const all = input.boolean('all');
    const limit = input.integer('limit', { min: 1, max: MAX_REDRIVE_LIMIT }) ?? DEFAULT_REDRIVE_LIMIT;
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
    return this.#redrive(
      {
        pending: true,
        ...(stage ? { stage } : {}),
        ...(subscriptionId !== undefined ? { subscriptionId } : {}),
        ...(eventId !== undefined ? { eventId } : {}),
      },
      limit,
    );
  }

  /**
   * Publishes again, in the order they were held, the tasks kept while a subscription was PAUSED,
   * and removes them: of one subscription (just resumed), or of every subscription that is not
   * PAUSED any more (the sweep every minute, which also catches a task held while a resume was
   * being released). A subscription deleted or DISABLED meanwhile gets its tasks back too: the
   * dispatcher dead-letters them with the real reason. Stops when the subscription is paused again.
   * One release per subscription at a time in this process; a second process releasing the same
   * subscription at once may publish a task twice, which the ledger absorbs.
   */
  async releaseHeld(subscriptionId?: string): Promise<number> {
    if (subscriptionId !== undefined) return this.#release(subscriptionId);
    let released = 0;
    let failure: unknown;
    for (const id of await this.#deps.heldTasks.subscriptions()) {
      // One subscription's failure does not keep the others' tasks held; it is reported after them.
      try {
        released += await this.#release(id);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
    return released;
  }

  async #release(subscriptionId: string): Promise<number> {
    if (this.#releasing.has(subscriptionId)) return 0;
    this.#releasing.add(subscriptionId);
    let released = 0;
    let removed = new Set<string>();
    try {
      for (;;) {
        if (await this.#deps.holding(subscriptionId)) break;
        const tasks = await this.#deps.heldTasks.list(subscriptionId, REDRIVE_BATCH);
        if (tasks.length === 0) break;
        // Tasks just removed listed again: the store did not remove them. Stop rather than publish
        // them again and again; the next release (the sweep) tries once more.
        if (removed.has(tasks[0]!.id)) throw new Error(`held tasks of ${subscriptionId} were not removed`);
        // Their delivery records are touched first: held no more, each is "on its way" again from
        // now for the history retention, until the dispatcher reaches its task in the egress topic.
        await this.#touchPending(tasks.map((t) => t.value));
        await this.#deps.publish(
          tasks.map((t) => ({
            topic: t.topic,
            ...(t.key !== undefined ? { key: t.key } : {}),
            value: t.value,
            headers: t.headers,
          })),
        );
        removed = new Set(tasks.map((t) => t.id));
        await this.#deps.heldTasks.remove(subscriptionId, [...removed]);
        released += tasks.length;
        // A short list is not the last: lists of large tasks end after MAX_PAGE_BYTES.
      }
    } finally {
      this.#releasing.delete(subscriptionId);
    }
    return released;
  }

  /** Sets `updatedAt` of the PENDING delivery records of these tasks (those that have one) to now. */
  async #touchPending(values: string[]): Promise<void> {
    const now = this.#deps.clock().toISOString();
    await Promise.all(
      values.map(async (value) => {
        const id = deliveryTaskFields(value)?.deliveryId;
        if (typeof id !== 'string') return;
        if ((await this.#deps.deliveries.get(id))?.status !== 'PENDING') return;
        await this.#deps.deliveries.patch(id, { updatedAt: now }).catch((err: unknown) => {
          if (!isWebhooksError(err) || err.code !== 'not_found') throw err; // purged meanwhile: nothing to touch
        });
      }),
    );
  }

  async #redrive(
    filter: DeadLetterFilter,
    limit: number,
  ): Promise<{ redriven: number; ids: string[]; more: boolean }> {
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.#deps.deadLetters.list(filter, {
        limit: Math.min(REDRIVE_BATCH, limit - ids.length),
        ...(cursor ? { cursor } : {}),
      });
      cursor = page.next;
      const now = this.#deps.clock();
      // Each dead letter is claimed before it is re-published: of two redrives at once, one sends it.
      const claims = await Promise.all(
        page.items.map((d) => this.#deps.ledger.claim(`redrive:${d.id}`, REDRIVE_LEASE_MS, now.getTime())),
      );
      const mine = page.items.flatMap((d, i) => {
        const claim = claims[i]!;
        return claim.status === 'claimed' ? [{ d, token: claim.token }] : [];
      });
      if (mine.length === 0) {
        // A page may come back empty after examining many rows (a filter matching few): the event
        // loop gets a turn before the next, so requests are answered between them.
        await nextTurn();
        continue;
      }
      try {
        await this.#republish(
          mine.map((m) => m.d),
          now.toISOString(),
        );
      } catch (err) {
        await Promise.all(mine.map((m) => this.#deps.ledger.release(`redrive:${m.d.id}`, m.token)));
        throw err;
      }
      await Promise.all(
        mine.map((m) =>
          this.#deps.ledger.complete(`redrive:${m.d.id}`, m.token, REDRIVE_LEASE_MS, now.getTime()),
        ),
      );
      ids.push(...mine.map((m) => m.d.id));
    } while (cursor && ids.length < limit);
    return { redriven: ids.length, ids, more: cursor !== undefined };
  }

  /** Sets the dead letters' deliveries back to PENDING, re-publishes them, and marks them redriven. */
  async #republish(items: DeadLetterRecord[], now: string): Promise<void> {
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
          // A record of the CloudEvents Kafka binding needs its headers again (binary mode: its attributes).
          ...d.headers,
          [HEADERS.redrive]: d.id,
          [HEADERS.originTopic]: d.topic,
          ...(d.stage === 'processor' && d.subscriptionId
            ? { [HEADERS.onlySubscription]: d.subscriptionId }
            : {}),
        },
      })),
    );
    await Promise.all(items.map((d) => this.#deps.deadLetters.markRedriven(d.id, now)));
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

/** The fields of a stored delivery task that operations show (undefined when it is not a task). */
function deliveryIdOf(value: string): string | undefined {
  const deliveryId = deliveryTaskFields(value)?.deliveryId;
  return typeof deliveryId === 'string' ? deliveryId : undefined;
}

/** The cursor of a held-task listing: the subscription and the last task's id. */
function heldCursor(subscriptionId: string, lastId: string): string {
  return Buffer.from(JSON.stringify(['held', subscriptionId, lastId])).toString('base64url');
}

/** The id inside a held-task cursor of this subscription; ValidationError `cursor_invalid` otherwise. */
function heldCursorId(cursor: string, subscriptionId: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    Array.isArray(parsed) &&
    parsed.length === 3 &&
    parsed[0] === 'held' &&
    parsed[1] === subscriptionId &&
    typeof parsed[2] === 'string' &&
    parsed[2].length <= 256 // a task id is far shorter; DynamoDB refuses a sort key over 1 KiB
  ) {
    return parsed[2];
  }
  throw invalidCursor();
}
