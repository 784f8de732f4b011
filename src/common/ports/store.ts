/**
 * The store port. Components depend on these interfaces only; engines (SQLite, DynamoDB) implement
 * them and must pass the one conformance suite in `test/conformance/store.ts`.
 *
 * Write semantics every engine guarantees:
 * - `insert` is a conditional create: ConflictError `already_exists` when the key is taken.
 * - `update` is a conditional replace on `revision`: it succeeds only if the stored revision equals
 *   the record's, writes `revision + 1` and returns the stored record; otherwise ConflictError
 *   `revision_conflict` (or NotFoundError `not_found` when the key is gone).
 */

import { ValidationError } from '../errors.ts';
import type {
  ApiKeyRecord,
  AuditRecord,
  DeadLetterRecord,
  DeliveryAttempt,
  DeliveryRecord,
  DeliveryStatus,
  LedgerEntry,
  PartnerRecord,
  SchemaRecord,
  SchemaStatus,
  SubscriptionRecord,
  SubscriptionStatus,
} from '../model.ts';
import { type BusMessage, checkBusMessage } from './bus.ts';

/**
 * A page of a listing; `next` is an opaque cursor for the following page. A page holds up to its
 * limit of items, and fewer (with `next`) when they are large: listings of stored messages (dead
 * letters, deliveries) end a page once its items pass MAX_PAGE_BYTES (always at least one item),
 * so that 1,000 dead letters of 1 MiB events are not one gigabyte of response. A filtered listing
 * may also end a page early — with fewer items, even none — once it has looked through many
 * records that do not match (SQLite: after MAX_ROWS_EXAMINED rows); `next` then
 * goes on from where it stopped. Only a page without `next` is the last.
 */
export interface Page<T> {
  items: T[];
  next?: string;
}

export interface PageRequest {
  limit?: number;
  cursor?: string;
}

export interface SchemaRepository {
  insert(record: SchemaRecord): Promise<void>;
  get(domain: string, event: string, version: number): Promise<SchemaRecord | undefined>;
  /** Every version of one event's schema, ascending by version. */
  listVersions(domain: string, event: string): Promise<SchemaRecord[]>;
  /** Schemas ordered by domain, event, version. */
  list(
    filter: { domain?: string; event?: string; status?: SchemaStatus },
    page?: PageRequest,
  ): Promise<Page<SchemaRecord>>;
  update(record: SchemaRecord): Promise<SchemaRecord>;
}

export interface PartnerRepository {
  insert(record: PartnerRecord): Promise<void>;
  get(id: string): Promise<PartnerRecord | undefined>;
  /** Partners ordered by id. */
  list(page?: PageRequest): Promise<Page<PartnerRecord>>;
  update(record: PartnerRecord): Promise<PartnerRecord>;
}

export interface SubscriptionFilter {
  partnerId?: string;
  domain?: string;
  event?: string;
  status?: SubscriptionStatus;
}

/** What a subscription delivers to: one partner endpoint for one event. */
export type SubscriptionEndpoint = Pick<SubscriptionRecord, 'partnerId' | 'domain' | 'event' | 'url'>;

/**
 * `partner_event_subscription`. An endpoint (partner, domain, event, url — the url compared exactly
 * as stored) has at most one subscription, and the store guarantees it, not its callers: two
 * concurrent creations of one endpoint, from any number of processes, leave one subscription. Each
 * subscription holds its endpoint as a second key, written in the same conditional write as the
 * record (in DynamoDB: a transaction with a conditional put of an endpoint item naming the
 * subscription id), and released when the subscription is deleted or moves to another url.
 * Subscriptions written before an engine enforced this may share an endpoint: the oldest (lowest
 * id) holds the key and the others none — they stay readable, updatable and deletable, and when the
 * holder goes (deleted, or moved to another url) the key passes to the next oldest.
 */
export interface SubscriptionRepository {
  /**
   * Creates a subscription: ConflictError `already_exists` when its id is taken, or when another
   * subscription holds its endpoint (a detail on `url` names that one); nothing is written then.
   */
  insert(record: SubscriptionRecord): Promise<void>;
  get(id: string): Promise<SubscriptionRecord | undefined>;
  /** The subscription holding an endpoint, if any. */
  findByEndpoint(endpoint: SubscriptionEndpoint): Promise<SubscriptionRecord | undefined>;
  /** Subscriptions ordered by id (ids are time-ordered UUIDv7, so by creation). */
  list(filter: SubscriptionFilter, page?: PageRequest): Promise<Page<SubscriptionRecord>>;
  /**
   * Revision-checked replace (see the top). A record moved to another endpoint takes that endpoint's
   * key and frees its old one; ConflictError `already_exists`, writing nothing, when another
   * subscription holds the new endpoint.
   */
  update(record: SubscriptionRecord): Promise<SubscriptionRecord>;
  /** Removes a subscription and frees its endpoint; false when there was none. */
  delete(id: string): Promise<boolean>;
}

export interface DeliveryFilter {
  eventId?: string;
  subscriptionId?: string;
  partnerId?: string;
  status?: DeliveryStatus;
}

/** `event_delivery_status` and `delivery_attempt`. */
/** An event's identity: CloudEvents ids are unique per source. */
export interface EventRef {
  id: string;
  source: string;
}

export interface DeliveryRepository {
  /** Creates the delivery if absent; an existing one is left as it is. Returns the stored record. */
  ensure(record: DeliveryRecord): Promise<DeliveryRecord>;
  get(id: string): Promise<DeliveryRecord | undefined>;
  /**
   * Records one attempt and the delivery's new state together. With `create`, a delivery that does
   * not exist yet is created as `create` with `update` applied (the dispatcher's first attempt: one
   * write instead of an insert and an update); without it, a missing delivery is NotFoundError.
   */
  recordAttempt(
    attempt: DeliveryAttempt,
    update: Partial<DeliveryRecord> & { updatedAt: string },
    create?: DeliveryRecord,
  ): Promise<void>;
  /**
   * Records that an event (its id and source) was routed, to these deliveries (none when no
   * subscription matched): the processor's idempotency marker, and what `list({ eventId })`
   * follows. Creating a delivery records its route too (nothing new when it was recorded).
   * Acknowledged once visible; an engine may lose it in an OS crash (the event is then routed
   * again, under the same webhook-ids).
   */
  recordRouting(event: EventRef, deliveryIds: string[], routedAt: string): Promise<void>;
  /** For each event, whether `recordRouting` was called for it (one read for a whole batch). */
  routed(events: EventRef[]): Promise<boolean[]>;
  /** Changes fields of a delivery (status after a redrive, a failure before any attempt). */
  patch(id: string, update: Partial<DeliveryRecord> & { updatedAt: string }): Promise<void>;
  /** Deliveries, newest first. */
  list(filter: DeliveryFilter, page?: PageRequest): Promise<Page<DeliveryRecord>>;
  /** Attempts of a delivery, in order. */
  attempts(deliveryId: string): Promise<DeliveryAttempt[]>;
  /**
   * History retention: deletes up to `limit` deliveries created before `before` that are no longer
   * PENDING — or are PENDING but were not updated since `before` either and have no task held for
   * their subscription: abandoned, as no task can still be on its way after the retry policy's
   * maximum age (3 days by default) — with their attempts; and up to `limit` routes of events routed
   * before it (so such an event ingested again is routed again) — but not the route of an event one
   * of whose deliveries is kept (PENDING, or created since `before`): it stays, so that delivery is
   * still found by its event, and is looked at again later. Returns how many of each went (of
   * routes, how many were looked at: those kept count too, as a full chunk may have more behind it); call
   * again until both are below `limit`. Abandoned PENDING deliveries may be looked through a page at
   * a time over several calls (those kept are many when subscriptions are paused): a call can come
   * back short while some are still to go, found by the calls of later passes.
   * Absent where the engine deletes history by itself (DynamoDB's TTL, at no write cost).
   */
  purgeBefore?(before: string, limit: number): Promise<{ deliveries: number; routes: number }>;
}

/**
 * What a claim got: the key, with a token that proves this claim (to `complete` or `release` it);
 * or the key is done already; or someone else holds a live claim.
 */
export type LedgerClaim = { status: 'claimed'; token: string } | { status: 'completed' } | { status: 'busy' };

/**
 * `idempotency_ledger`: conditional claims so one key's work is done once. A claim is fenced by its
 * token: once it has lapsed and another claim took the key over, the first claimer can neither
 * complete nor release it (it would otherwise delete a claim that is working right now).
 */
export interface IdempotencyLedger {
  /** Claims the key when it is absent or its claim has lapsed (at `now`); the new claim lasts `leaseMs`. */
  claim(key: string, leaseMs: number, now: number): Promise<LedgerClaim>;
  /**
   * Marks the key done while `token`'s claim still holds it (lapsed or not, as long as no other
   * claim took it over); it stays for `ttlMs` (then may be purged). False, changing nothing, otherwise.
   */
  complete(key: string, token: string, ttlMs: number, now: number): Promise<boolean>;
  /** Drops `token`'s claim so the key can be claimed again at once (after a failed attempt); false, changing nothing, when the claim is not the holder. */
  release(key: string, token: string): Promise<boolean>;
  get(key: string): Promise<LedgerEntry | undefined>;
  /**
   * Removes entries expired before `now`; returns how many. Absent where the engine deletes
   * expired entries by itself (DynamoDB's TTL): an expired entry may then be read for a while, and
   * counts as absent to `claim` (a lapsed claim) or as done until it goes (a completed one).
   */
  purge?(now: number): Promise<number>;
}

export interface DeadLetterFilter {
  stage?: 'processor' | 'dispatcher';
  subscriptionId?: string;
  eventId?: string;
  /** Only entries with this reason (e.g. `http_400`, `retries_exhausted`). */
  reason?: string;
  /** Only entries not yet redriven. */
  pending?: boolean;
}

/** Dead letters kept for inspection and redrive (history is kept: redriven ones are marked). */
export interface DeadLetterRepository {
  insert(record: DeadLetterRecord): Promise<void>;
  list(filter: DeadLetterFilter, page?: PageRequest): Promise<Page<DeadLetterRecord>>;
  markRedriven(id: string, at: string): Promise<boolean>;
  /**
   * History retention: deletes up to `limit` dead letters created before `before`; returns how many.
   * Absent where the engine deletes history by itself (TTL).
   */
  purgeBefore?(before: string, limit: number): Promise<number>;
}

/** A delivery task the dispatcher keeps while its subscription is PAUSED: the bus message as it was read. */
export interface HeldTask {
  /** Derived from the record read, so a redelivered record is held once. */
  id: string;
  subscriptionId: string;
  heldAt: string;
  topic: string;
  key?: string;
  value: string;
  headers: Record<string, string>;
}

/**
 * `held_task`: tasks of PAUSED subscriptions, in the order they were held, until the subscription
 * is resumed (then they are published again and removed). Not history: never purged by age.
 */
export interface HeldTaskRepository {
  /** Keeps a task; one already held under the same id stays as it was. */
  hold(task: HeldTask): Promise<void>;
  /**
   * The oldest tasks held for a subscription, in the order held: at most `limit`, and fewer when
   * they are large — the list ends with the task whose values, counted from the first, pass
   * MAX_PAGE_BYTES (always at least one task), so a release does not read and publish 500 tasks of
   * 1 MiB at once. With `afterId`, the tasks held after that one (a listing's next page).
   */
  list(subscriptionId: string, limit: number, afterId?: string): Promise<HeldTask[]>;
  remove(subscriptionId: string, ids: string[]): Promise<void>;
  /** The subscriptions that have tasks held. */
  subscriptions(): Promise<string[]>;
  /** How many tasks are held for a subscription (for the cap on them). */
  count(subscriptionId: string): Promise<number>;
}

/** A bus message kept until it is due (a retry on AWS Lambda, where a consumer cannot wait). */
export interface ScheduledMessage {
  /** Unique; scheduling an id already kept leaves the kept one as it is. */
  id: string;
  /** When to publish it (ms since epoch). */
  dueAt: number;
  message: BusMessage;
}

/**
 * `scheduled_message`: messages that must wait (a retry due in 30 min or 2 h) kept until they are
 * due, when a scheduled function publishes them and removes them. Not history: a kept message never
 * expires, whatever its age, until it is removed.
 */
export interface ScheduledMessageRepository {
  /**
   * Keeps the messages until they are due (all or none not required). One entry per id: the same id
   * kept again (a redelivered batch) leaves it as it is, unless the new one is due later, which
   * replaces it — a message published when due and kept again before its entry was removed (a
   * deferral of the published copy) must not be lost to that removal.
   */
  schedule(items: ScheduledMessage[]): Promise<void>;
  /** Up to `limit` messages due at or before `now`, earliest first. */
  due(now: number, limit: number): Promise<ScheduledMessage[]>;
  /**
   * Forgets messages (once published) as they were read: an id whose entry was replaced since
   * (kept again, due later) stays; ids not kept are ignored.
   */
  remove(items: ScheduledMessage[]): Promise<void>;
  /** How many messages are kept (for metrics and tests); may be approximate on engines that say so in the doc comment. */
  count(): Promise<number>;
}

/** Refuses a scheduled message no engine can keep: a due time that is not a time, an invalid message. */
export function checkScheduledMessage(item: ScheduledMessage): void {
  if (typeof item.id !== 'string' || item.id === '' || !Number.isFinite(item.dueAt)) {
    throw new ValidationError('message_invalid', 'a scheduled message is invalid', {
      details: [
        typeof item.id !== 'string' || item.id === ''
          ? { field: 'id', message: 'must be a non-empty string' }
          : { field: 'dueAt', message: 'must be a time in ms since the epoch' },
      ],
    });
  }
  checkBusMessage(item.message);
}

/** `api_key`: credentials for producers and operators, found by the hash of the key. */
export interface ApiKeyRepository {
  /** Conditional create: ConflictError `already_exists` when the id or the key hash is taken. */
  insert(record: ApiKeyRecord): Promise<void>;
  get(id: string): Promise<ApiKeyRecord | undefined>;
  /** The key whose `keyHash` this is (one point read: authentication asks it per request). */
  findByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  /** Keys ordered by id (time-ordered: by creation). */
  list(page?: PageRequest): Promise<Page<ApiKeyRecord>>;
  /** Revision-checked replace, as for the admin tables. */
  update(record: ApiKeyRecord): Promise<ApiKeyRecord>;
  /**
   * Sets `lastUsedAt` without changing the revision (a key in use must stay revocable with the
   * revision last read); may be lost in a crash.
   */
  touch(id: string, at: string): Promise<void>;
}

export interface AuditFilter {
  /** Only changes by this actor (`admin-token` or `api-key:<id>`). */
  actor?: string;
}

/** `audit_log`: every admin change, kept (not history: never purged by age). */
export interface AuditRepository {
  append(record: AuditRecord): Promise<void>;
  /** Newest first. */
  list(filter: AuditFilter, page?: PageRequest): Promise<Page<AuditRecord>>;
}

/** The whole store: one repository per table, plus health and lifecycle. */
export interface Store {
  readonly engine: string;
  readonly schemas: SchemaRepository;
  readonly partners: PartnerRepository;
  readonly subscriptions: SubscriptionRepository;
  readonly deliveries: DeliveryRepository;
  readonly ledger: IdempotencyLedger;
  readonly deadLetters: DeadLetterRepository;
  readonly heldTasks: HeldTaskRepository;
  readonly scheduled: ScheduledMessageRepository;
  readonly apiKeys: ApiKeyRepository;
  readonly audit: AuditRepository;
  /** Throws when the engine cannot be reached (used by /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;
/**
 * A page of stored messages ends after the item that takes it past this many bytes (as stored:
 * rendered as JSON it may grow by its escapes). Well below the 6 MB an AWS Lambda response holds.
 */
export const MAX_PAGE_BYTES = 2 * 1024 * 1024;

/**
 * The items of `rows`, in order, up to the one whose sizes (`bytesOf`), counted from the first, pass
 * MAX_PAGE_BYTES (always at least one); the rows after it are never read (nor `read`).
 */
export function withinPageBytes<R, T>(
  rows: Iterable<R>,
  read: (row: R) => T,
  bytesOf: (item: T) => number,
): T[] {
  const items: T[] = [];
  let bytes = 0;
  for (const row of rows) {
    if (bytes >= MAX_PAGE_BYTES) break;
    const item = read(row);
    bytes += bytesOf(item);
    items.push(item);
  }
  return items;
}

/** The page size to use: the default when absent, clamped to 1..MAX_PAGE_LIMIT otherwise. */
export function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_LIMIT;
  return Math.max(1, Math.min(MAX_PAGE_LIMIT, Math.floor(limit)));
}

/** The error for a cursor this store did not issue (or issued for another listing). */
export function invalidCursor(): ValidationError {
  return new ValidationError('cursor_invalid', 'the page cursor is not valid', {
    details: [{ field: 'cursor', message: 'not a cursor returned by this listing' }],
  });
}
