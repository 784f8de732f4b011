/**
 * `event_delivery_status` and `delivery_attempt` in SQLite. This is the dispatcher's hot path, so
 * every fixed statement is prepared once, and updates are applied inside SQLite as a JSON merge
 * patch (`json_patch`) instead of a read-modify-write round trip.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { ConflictError, NotFoundError } from '../../common/errors.ts';
import type { DeliveryAttempt, DeliveryRecord } from '../../common/model.ts';
import type {
  DeliveryFilter,
  DeliveryRepository,
  EventRef,
  Page,
  PageRequest,
} from '../../common/ports/store.ts';
import { type Condition, listByTime, StatementCache } from './paging.ts';

/** Fields fixed at creation: an update carrying them leaves them as they were. */
const IMMUTABLE = new Set([
  'id',
  'eventId',
  'eventSource',
  'eventType',
  'subscriptionId',
  'partnerId',
  'createdAt',
]);
/** Fields every record has: `undefined` for them means "unchanged", never "remove". */
const REQUIRED = new Set(['status', 'attempts', 'updatedAt']);

type DeliveryUpdate = Partial<DeliveryRecord> & { updatedAt: string };

/**
 * The update as an RFC 7396 merge patch: immutable fields dropped, an optional field given as
 * `undefined` becomes `null`, which removes it (e.g. `nextAttemptAt` once the delivery succeeded).
 */
function mergePatch(update: DeliveryUpdate): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(update)) {
    if (IMMUTABLE.has(field)) continue;
    if (value === undefined) {
      if (!REQUIRED.has(field)) patch[field] = null;
    } else patch[field] = value;
  }
  return patch;
}

/** A record with the merge patch of an update applied (what SQLite's `json_patch` does to the stored doc). */
function applyUpdate(record: DeliveryRecord, update: DeliveryUpdate): DeliveryRecord {
  const out: Record<string, unknown> = { ...record };
  for (const [field, value] of Object.entries(mergePatch(update))) {
    if (value === null) delete out[field];
    else out[field] = value;
  }
  return out as unknown as DeliveryRecord;
}

/**
 * The SQLite implementation of the delivery repository. `get` and `routed` are the synchronous
 * `read` and `isRouted` here, batched by the store (`ReadBatch`).
 */
export class SqliteDeliveries implements Omit<DeliveryRepository, 'get' | 'routed' | 'purgeBefore'> {
  readonly #lists: StatementCache;
  readonly #insert: StatementSync;
  readonly #route: StatementSync;
  readonly #routed: StatementSync;
  readonly #get: StatementSync;
  readonly #patch: StatementSync;
  readonly #attemptInsert: StatementSync;
  readonly #attemptDelete: StatementSync;
  readonly #attempts: StatementSync;
  readonly #logRoute: StatementSync;
  readonly #oldDeliveries: StatementSync;
  readonly #oldPending: StatementSync;
  /** Where the next page of old PENDING deliveries starts (created_at, id); empty: from the first. */
  #pendingCursor: [string, string] = ['', ''];
  readonly #deleteAttempts: StatementSync;
  readonly #deleteDelivery: StatementSync;
  readonly #oldRoutes: StatementSync;
  readonly #deleteRoute: StatementSync;
  readonly #routeKept: StatementSync;
  readonly #deleteLogged: StatementSync;

  constructor(db: DatabaseSync) {
    this.#lists = new StatementCache(db);
    this.#insert = db.prepare(
      `INSERT INTO event_delivery_status (id, event_id, subscription_id, partner_id, status, created_at, doc)
       VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    this.#route = db.prepare(
      'INSERT INTO event_route (event_id, source, delivery_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.#routed = db.prepare(
      `SELECT 1 AS found FROM event_route WHERE event_id = ? AND source = ? AND delivery_id = ''`,
    );
    this.#get = db.prepare('SELECT doc FROM event_delivery_status WHERE id = ?');
    this.#patch = db.prepare(
      `UPDATE event_delivery_status SET doc = json_patch(doc, ?), status = coalesce(?, status) WHERE id = ?`,
    );
    this.#attemptInsert = db.prepare(
      'INSERT INTO delivery_attempt (delivery_id, attempt, doc) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    );
    this.#attemptDelete = db.prepare('DELETE FROM delivery_attempt WHERE delivery_id = ? AND attempt = ?');
    this.#attempts = db.prepare('SELECT doc FROM delivery_attempt WHERE delivery_id = ? ORDER BY attempt');
    this.#logRoute = db.prepare(
      'INSERT INTO route_log (routed_at, event_id, source) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    );
    // Old deliveries that are over: through `delivery_by_time` (created_at, id, status), the status
    // checked in the index, no row read.
    this.#oldDeliveries = db.prepare(
      `SELECT id FROM event_delivery_status
       WHERE created_at < ?1 AND status != 'PENDING'
       ORDER BY created_at, id LIMIT ?2`,
    );
    // Old PENDING deliveries, a page at a time after a cursor: each is kept while it was updated
    // within the retention or its subscription holds tasks (paused, or its partner inactive: its
    // task is on its way). The cursor goes round them across chunks and passes, so those kept are
    // not read again by every chunk (100,000 kept rows made each chunk's write transaction 314 ms).
    this.#oldPending = db.prepare(
      `SELECT id, created_at, json_extract(doc, '$.updatedAt') < ?1
         AND subscription_id NOT IN (SELECT subscription_id FROM held_count) AS abandoned
       FROM event_delivery_status
       WHERE created_at < ?1 AND status = 'PENDING' AND (created_at, id) > (?2, ?3)
       ORDER BY created_at, id LIMIT ?4`,
    );
    this.#deleteAttempts = db.prepare('DELETE FROM delivery_attempt WHERE delivery_id = ?');
    this.#deleteDelivery = db.prepare('DELETE FROM event_delivery_status WHERE id = ?');
    this.#oldRoutes = db.prepare(
      'SELECT routed_at, event_id, source FROM route_log WHERE routed_at < ? ORDER BY routed_at LIMIT ?',
    );
    this.#deleteRoute = db.prepare('DELETE FROM event_route WHERE event_id = ? AND source = ?');
    // A route one of whose deliveries is kept (PENDING, or newer than the cutoff): its links are
    // how that delivery is found by its event.
    this.#routeKept = db.prepare(
      `SELECT 1 AS kept FROM event_route r JOIN event_delivery_status d ON d.id = r.delivery_id
       WHERE r.event_id = ?1 AND r.source = ?2 AND (d.status = 'PENDING' OR d.created_at >= ?3) LIMIT 1`,
    );
    this.#deleteLogged = db.prepare(
      'DELETE FROM route_log WHERE routed_at = ? AND event_id = ? AND source = ?',
    );
  }

  async ensure(record: DeliveryRecord): Promise<DeliveryRecord> {
    if (this.#insertRecord(record)) return JSON.parse(JSON.stringify(record)) as DeliveryRecord;
    return this.read(record.id) ?? record;
  }

  /** `get`, synchronously (for read batching). */
  read(id: string): DeliveryRecord | undefined {
    const row = this.#get.get(id) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as DeliveryRecord) : undefined;
  }

  /** Conflict `already_exists` when this attempt number is already recorded; then nothing changes. */
  async recordAttempt(
    attempt: DeliveryAttempt,
    update: DeliveryUpdate,
    create?: DeliveryRecord,
  ): Promise<void> {
    // The attempt row first (a conflict then writes nothing), then the delivery: created in its new
    // state with its first attempt, or updated. If the delivery cannot be written (or is missing),
    // the attempt row is taken back: each step is one statement, so no savepoint (they cost a tenth
    // of this call).
    this.#insertAttempt(attempt);
    try {
      const created = create !== undefined && this.#insertRecord(applyUpdate(create, update));
      if (!created) this.#apply(attempt.deliveryId, update);
    } catch (err) {
      this.#attemptDelete.run(attempt.deliveryId, attempt.attempt);
      throw err;
    }
  }

  async recordRouting(event: EventRef, deliveryIds: string[], routedAt: string): Promise<void> {
    // A marker already there (a redelivered batch) keeps its first time in the log.
    if (this.#route.run(event.id, event.source, '').changes > 0)
      this.#logRoute.run(routedAt, event.id, event.source);
    for (const id of deliveryIds) this.#route.run(event.id, event.source, id);
  }

  /** One chunk of history retention (see the port); run inside one transaction by the store. */
  purgeBefore(before: string, limit: number): { deliveries: number; routes: number } {
    const old = this.#oldDeliveries.all(before, limit) as Array<{ id: string }>;
    // A page of old PENDING ones as well, when this chunk has room (it comes after those that are over).
    if (old.length < limit) {
      const [afterAt, afterId] = this.#pendingCursor;
      const pending = this.#oldPending.all(before, afterAt, afterId, limit - old.length) as Array<{
        id: string;
        created_at: string;
        abandoned: number;
      }>;
      const last = pending.at(-1);
      // The end reached: the next page starts over (new rows, rows no longer kept).
      this.#pendingCursor =
        last && pending.length === limit - old.length ? [last.created_at, last.id] : ['', ''];
      for (const p of pending) if (p.abandoned) old.push({ id: p.id });
    }
    for (const { id } of old) {
      this.#deleteAttempts.run(id);
      this.#deleteDelivery.run(id);
    }
    const routes = this.#oldRoutes.all(before, limit) as Array<{
      routed_at: string;
      event_id: string;
      source: string;
    }>;
    // A route whose delivery is kept (its task held for a paused subscription) stays with it, logged
    // again as of now (or the cutoff, if later): it is looked at again one retention period on.
    const now = new Date().toISOString();
    const again = now > before ? now : before;
    for (const r of routes) {
      this.#deleteLogged.run(r.routed_at, r.event_id, r.source);
      if (this.#routeKept.get(r.event_id, r.source, before)) {
        this.#logRoute.run(again, r.event_id, r.source);
        continue;
      }
      this.#deleteRoute.run(r.event_id, r.source);
    }
    // Routes looked at, kept ones too: a chunk full of them says there may be more to look at.
    return { deliveries: old.length, routes: routes.length };
  }

  /** Whether `recordRouting` was called for the event (synchronous, for read batching). */
  isRouted(event: EventRef): boolean {
    return this.#routed.get(event.id, event.source) !== undefined;
  }

  async patch(id: string, update: DeliveryUpdate): Promise<void> {
    this.#apply(id, update);
  }

  /**
   * Newest first. By event through `event_route` (an event's links, written when it is routed and
   * when each record is created); else through the index of the first filter set (subscription,
   * partner, else time). The other filters are checked row by row, at most MAX_ROWS_EXAMINED rows a
   * page: a filter that matches few rows must not read a million on the thread that answers requests.
   */
  async list(filter: DeliveryFilter, page: PageRequest = {}): Promise<Page<DeliveryRecord>> {
    const conditions: Condition[] = [];
    let index: string | undefined;
    if (filter.eventId !== undefined) {
      conditions.push({
        clause: 'id IN (SELECT delivery_id FROM event_route WHERE event_id = ?)',
        value: filter.eventId,
      });
    }
    for (const [column, value, byIndex] of [
      ['subscription_id', filter.subscriptionId, 'delivery_by_subscription'],
      ['partner_id', filter.partnerId, 'delivery_by_partner'],
    ] as const) {
      if (value === undefined) continue;
      const leading = conditions.length === 0;
      if (leading) index = byIndex;
      conditions.push({ clause: `${column} = ?`, value, residual: !leading });
    }
    if (filter.status !== undefined) {
      if (conditions.length === 0) index = 'delivery_by_time';
      conditions.push({ clause: 'status = ?', value: filter.status, residual: true });
    }
    return listByTime(
      this.#lists,
      { table: 'event_delivery_status', order: 'desc', ...(index ? { index } : {}) },
      conditions,
      page,
    );
  }

  async attempts(deliveryId: string): Promise<DeliveryAttempt[]> {
    const rows = this.#attempts.all(deliveryId) as Array<{ doc: string }>;
    return rows.map((r) => JSON.parse(r.doc) as DeliveryAttempt);
  }

  /** Conflict `already_exists` when this attempt number is already recorded (then nothing is written). */
  #insertAttempt(attempt: DeliveryAttempt): void {
    const { changes } = this.#attemptInsert.run(attempt.deliveryId, attempt.attempt, JSON.stringify(attempt));
    if (changes === 0) {
      throw new ConflictError(
        'already_exists',
        `attempt ${attempt.attempt} of delivery ${attempt.deliveryId} is already recorded`,
      );
    }
  }

  #apply(id: string, update: DeliveryUpdate): void {
    const { changes } = this.#patch.run(JSON.stringify(mergePatch(update)), update.status ?? null, id);
    if (changes === 0) throw new NotFoundError('not_found', `delivery ${id} not found`);
  }

  /** Inserts a delivery unless its id exists; true when it was inserted. */
  #insertRecord(record: DeliveryRecord): boolean {
    const { changes } = this.#insert.run(
      record.id,
      record.eventId,
      record.subscriptionId,
      record.partnerId,
      record.status,
      record.createdAt,
      JSON.stringify(record),
    );
    // After the insert, which may fail. Usually recorded already by the processor: then this reads
    // the event's page and writes nothing.
    this.#route.run(record.eventId, record.eventSource, record.id);
    return changes > 0;
  }
}
