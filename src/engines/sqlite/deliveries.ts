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
 * The SQLite implementation of the delivery repository. A delivery's attempts live in its row
 * (`attempt_log`); those recorded before migration v5 in `delivery_attempt`. `get` and `routed` are
 * the synchronous `read` and `isRouted`, batched by the store (`ReadBatch`).
 */
export class SqliteDeliveries implements Omit<DeliveryRepository, 'get' | 'routed'> {
  readonly #lists: StatementCache;
  readonly #insert: StatementSync;
  readonly #route: StatementSync;
  readonly #routed: StatementSync;
  readonly #get: StatementSync;
  readonly #patch: StatementSync;
  readonly #append: StatementSync;
  readonly #exists: StatementSync;
  readonly #attemptLog: StatementSync;
  readonly #legacyAttempts: StatementSync;

  constructor(db: DatabaseSync) {
    this.#lists = new StatementCache(db);
    this.#insert = db.prepare(
      `INSERT INTO event_delivery_status (id, event_id, subscription_id, partner_id, status, created_at, doc, attempt_log)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
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
    // One statement: the update and the attempt appended to the log, unless that attempt number is
    // recorded already (in the log, or in the table of attempts recorded before v5).
    this.#append = db.prepare(
      `UPDATE event_delivery_status
       SET doc = json_patch(doc, ?1), status = coalesce(?2, status),
           attempt_log = json_insert(coalesce(attempt_log, '[]'), '$[#]', json(?3))
       WHERE id = ?4
         AND NOT EXISTS (SELECT 1 FROM json_each(coalesce(attempt_log, '[]')) WHERE value ->> 'attempt' = ?5)
         AND NOT EXISTS (SELECT 1 FROM delivery_attempt WHERE delivery_id = ?4 AND attempt = ?5)`,
    );
    this.#exists = db.prepare('SELECT 1 AS found FROM event_delivery_status WHERE id = ?');
    this.#attemptLog = db.prepare('SELECT attempt_log FROM event_delivery_status WHERE id = ?');
    this.#legacyAttempts = db.prepare('SELECT doc FROM delivery_attempt WHERE delivery_id = ?');
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
    const attemptJson = JSON.stringify(attempt);
    // First attempt (the usual case when `create` is given): one insert, the delivery in its new
    // state with its attempt log. Otherwise, or when it exists after all: one conditional update.
    if (create !== undefined && this.#insertRecord(applyUpdate(create, update), `[${attemptJson}]`)) return;
    const { changes } = this.#append.run(
      JSON.stringify(mergePatch(update)),
      update.status ?? null,
      attemptJson,
      attempt.deliveryId,
      attempt.attempt,
    );
    if (changes > 0) return;
    if (this.#exists.get(attempt.deliveryId) === undefined) {
      throw new NotFoundError('not_found', `delivery ${attempt.deliveryId} not found`);
    }
    throw new ConflictError(
      'already_exists',
      `attempt ${attempt.attempt} of delivery ${attempt.deliveryId} is already recorded`,
    );
  }

  async recordRouting(event: EventRef, deliveryIds: string[]): Promise<void> {
    this.#route.run(event.id, event.source, '');
    for (const id of deliveryIds) this.#route.run(event.id, event.source, id);
  }

  /** Whether `recordRouting` was called for the event (synchronous, for read batching). */
  isRouted(event: EventRef): boolean {
    return this.#routed.get(event.id, event.source) !== undefined;
  }

  async patch(id: string, update: DeliveryUpdate): Promise<void> {
    this.#apply(id, update);
  }

  async list(filter: DeliveryFilter, page: PageRequest = {}): Promise<Page<DeliveryRecord>> {
    const conditions: Condition[] = [];
    if (filter.eventId !== undefined) {
      // Through `event_route` (primary-key lookups, then sorted); `event_id = ?` keeps it exact.
      conditions.push({
        clause: 'id IN (SELECT delivery_id FROM event_route WHERE event_id = ?)',
        value: filter.eventId,
      });
      conditions.push({ clause: 'event_id = ?', value: filter.eventId });
    }
    if (filter.subscriptionId !== undefined)
      conditions.push({ clause: 'subscription_id = ?', value: filter.subscriptionId });
    if (filter.partnerId !== undefined)
      conditions.push({ clause: 'partner_id = ?', value: filter.partnerId });
    if (filter.status !== undefined) conditions.push({ clause: 'status = ?', value: filter.status });
    return listByTime(this.#lists, { table: 'event_delivery_status', order: 'desc' }, conditions, page);
  }

  async attempts(deliveryId: string): Promise<DeliveryAttempt[]> {
    const row = this.#attemptLog.get(deliveryId) as { attempt_log: string | null } | undefined;
    const logged = row?.attempt_log ? (JSON.parse(row.attempt_log) as DeliveryAttempt[]) : [];
    const legacy = (this.#legacyAttempts.all(deliveryId) as Array<{ doc: string }>).map(
      (r) => JSON.parse(r.doc) as DeliveryAttempt,
    );
    return [...legacy, ...logged].sort((a, b) => a.attempt - b.attempt);
  }

  #apply(id: string, update: DeliveryUpdate): void {
    if (!this.#tryApply(id, update)) throw new NotFoundError('not_found', `delivery ${id} not found`);
  }

  /** Applies an update; false when there is no such delivery. */
  #tryApply(id: string, update: DeliveryUpdate): boolean {
    return this.#patch.run(JSON.stringify(mergePatch(update)), update.status ?? null, id).changes > 0;
  }

  /** Inserts a delivery (with its attempt log, if any) unless its id exists; true when it was inserted. */
  #insertRecord(record: DeliveryRecord, attemptLog: string | null = null): boolean {
    const { changes } = this.#insert.run(
      record.id,
      record.eventId,
      record.subscriptionId,
      record.partnerId,
      record.status,
      record.createdAt,
      JSON.stringify(record),
      attemptLog,
    );
    // After the insert, which may fail. Usually recorded already by the processor: then this reads
    // the event's page and writes nothing.
    this.#route.run(record.eventId, record.eventSource, record.id);
    return changes > 0;
  }
}
