/**
 * The SQLite store engine: the plan's tables with key columns for lookups and the whole record as
 * a JSON document. Conditional writes (insert-if-absent, update-if-revision) make it behave like the
 * DynamoDB engine, so both pass the same conformance suite. The admin tables share `DocumentTable`;
 * the delivery-path tables (deliveries, ledger, dead letters) have hand-written statements.
 */
import type { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Durability } from '../../common/config.ts';
import type { PartnerRecord, SchemaRecord } from '../../common/model.ts';
import {
  type ApiKeyRepository,
  type AuditRepository,
  type DeadLetterRepository,
  type DeliveryRepository,
  type HeldTaskRepository,
  type IdempotencyLedger,
  MAX_PAGE_LIMIT,
  type PartnerRepository,
  type ScheduledMessageRepository,
  type SchemaRepository,
  type Store,
  type SubscriptionRepository,
} from '../../common/ports/store.ts';
import { SqliteApiKeys, SqliteAudit } from './access.ts';
import { assertFlushable, atomically, checkpointPassive, closeDatabase, openDatabase } from './database.ts';
import { SqliteDeadLetters } from './dead-letters.ts';
import { SqliteDeliveries } from './deliveries.ts';
import { DocumentTable } from './document-table.ts';
import { GroupCommit } from './group-commit.ts';
import { SqliteHeldTasks } from './held-tasks.ts';
import { SqliteLedger } from './ledger.ts';
import { MIGRATIONS } from './migrations.ts';
import { ReadBatch } from './read-batch.ts';
import { SqliteScheduled } from './scheduled.ts';
import { SqliteSubscriptions } from './subscriptions.ts';

/** Ledger entries deleted per transaction by a purge, and the rest between two of them (ms). */
const PURGE_CHUNK = 1000;
const PURGE_REST_MS = 10;

/** WAL pages between automatic checkpoints (SQLite's default is 1,000). */
const WAL_AUTOCHECKPOINT_PAGES = 10_000;

/** The SQLite implementation of the store port. */
export class SqliteStore implements Store {
  readonly engine = 'sqlite';
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
  readonly #db: DatabaseSync;
  readonly #group: GroupCommit;

  /**
   * Opens the store at `path` (a file, or ':memory:'). With `autoCheckpoint: false` this connection
   * never checkpoints the WAL itself: another one must (`checkpoint()`), as the dispatcher thread's
   * host does, so the thread never stalls in a checkpoint's fsyncs.
   */
  constructor(path: string, options: { autoCheckpoint?: boolean; durability?: Durability } = {}) {
    // Each checkpoint ends in fsyncs that stall the (synchronous) writer. Delivery writes touch the
    // same hot pages again and again, so checkpointing less often also copies far fewer pages:
    // ~40 MB of WAL between checkpoints instead of SQLite's 4 MB raised the measured delivery
    // rate ~1.3x; larger values gained nothing more.
    this.#db = openDatabase(path, MIGRATIONS, {
      autoCheckpointPages: options.autoCheckpoint === false ? 0 : WAL_AUTOCHECKPOINT_PAGES,
      ...(options.durability ? { durability: options.durability } : {}),
    });
    const schemas = new DocumentTable<SchemaRecord>(this.#db, {
      table: 'event_schema',
      key: [
        ['domain', (r) => r.domain],
        ['event', (r) => r.event],
        ['version', (r) => r.version],
      ],
      columns: [
        ['id', (r) => r.id],
        ['status', (r) => r.status],
      ],
    });
    const partners = new DocumentTable<PartnerRecord>(this.#db, {
      table: 'partner',
      key: [['id', (r) => r.id]],
      columns: [['status', (r) => r.status]],
    });
    // Admin writes join the group commit too (each one statement: atomic on its own), so they are
    // acknowledged once durable, like every other write.
    this.schemas = {
      insert: (r) => this.#group.run(() => schemas.insert(r)),
      get: async (domain, event, version) => schemas.get([domain, event, version]),
      listVersions: async (domain, event) => schemas.list({ domain, event }, { limit: MAX_PAGE_LIMIT }).items,
      list: async (f, page) => schemas.list({ domain: f.domain, event: f.event, status: f.status }, page),
      update: (r) => this.#group.run(() => schemas.update(r)),
    };
    this.partners = {
      insert: (r) => this.#group.run(() => partners.insert(r)),
      get: async (id) => partners.get([id]),
      list: async (page) => partners.list({}, page),
      update: (r) => this.#group.run(() => partners.update(r)),
    };
    const subscriptions = new SqliteSubscriptions(this.#db);
    // Writes join the group commit (each in its own savepoint): they wait for the write lock without
    // freezing the event loop, and are acknowledged once durable. The group exists by the time any
    // of them runs.
    this.subscriptions = {
      insert: (r) => this.#group.run(() => subscriptions.insert(r)),
      get: async (id) => subscriptions.get(id),
      findByEndpoint: async (endpoint) => subscriptions.findByEndpoint(endpoint),
      list: async (f, page) => subscriptions.list(f, page),
      update: (r) => this.#group.run(() => subscriptions.update(r)),
      delete: (id) => this.#group.run(() => subscriptions.delete(id)),
    };
    // Hot-path writes go through group commit: one transaction per event-loop turn.
    const group = new GroupCommit(this.#db);
    this.#group = group;
    const reads = new ReadBatch(this.#db);
    const deliveries = new SqliteDeliveries(this.#db);
    const ledger = new SqliteLedger(this.#db);
    const deadLetters = new SqliteDeadLetters(this.#db);
    const held = new SqliteHeldTasks(this.#db);
    this.deliveries = {
      ensure: (r) => group.run(() => deliveries.ensure(r)),
      get: (id) => reads.run(() => deliveries.read(id)),
      recordAttempt: (a, u, c) => group.run(() => deliveries.recordAttempt(a, u, c)),
      // Acknowledged at commit: a route lost in an OS crash only lets the event be routed again
      // (same webhook-ids: the ledger recognises them).
      recordRouting: (event, ids, at) =>
        group.run(() => deliveries.recordRouting(event, ids, at), { durable: false }),
      // Each event's lookup joins the turn's read transaction: one for the processor's whole batch.
      routed: (events) => Promise.all(events.map((e) => reads.run(() => deliveries.isRouted(e)))),
      patch: (id, u) => group.run(() => deliveries.patch(id, u)),
      list: (f, page) => deliveries.list(f, page),
      attempts: (id) => deliveries.attempts(id),
      purgeBefore: (before, limit) => group.run(() => deliveries.purgeBefore(before, limit)),
    };
    this.ledger = {
      // A claim is acknowledged once committed (others see it), not flushed: lost in an OS crash, it
      // lets the delivery be sent again under the same webhook-id — the window the POST has anyway.
      claim: (key, leaseMs, now) => group.run(() => ledger.claim(key, leaseMs, now), { durable: false }),
      complete: (key, token, ttlMs, now) => group.run(() => ledger.complete(key, token, ttlMs, now)),
      release: (key, token) => group.run(() => ledger.release(key, token)),
      get: (key) => ledger.get(key),
      purge: async (now) => {
        // In chunks, each in its own group commit with a rest after it: a week's worth of
        // expired entries must not stop the delivery path's writes while it is deleted.
        let removed = 0;
        for (;;) {
          const n = await group.run(() => ledger.purgeChunk(now, PURGE_CHUNK));
          removed += n;
          if (n < PURGE_CHUNK || !this.#db.isOpen) return removed;
          await sleep(PURGE_REST_MS);
        }
      },
    };
    this.deadLetters = {
      insert: (r) =>
        group.run(() => atomically(this.#db, () => deadLetters.insert(r)), { bytes: r.value.length }),
      list: (f, page) => deadLetters.list(f, page),
      // One statement on the small row: nothing for a savepoint to undo.
      markRedriven: (id, at) => group.run(() => deadLetters.markRedriven(id, at)),
      purgeBefore: (before, limit) =>
        group.run(() => atomically(this.#db, () => deadLetters.purgeChunk(before, limit))),
    };
    this.heldTasks = {
      hold: (task) =>
        group.run(() => atomically(this.#db, () => held.hold(task)), { bytes: task.value.length }),
      list: async (subscriptionId, limit, afterId) => held.list(subscriptionId, limit, afterId),
      remove: (subscriptionId, ids) =>
        group.run(() => atomically(this.#db, () => held.remove(subscriptionId, ids))),
      subscriptions: async () => held.subscriptions(),
      count: async (subscriptionId) => held.count(subscriptionId),
    };
    const scheduled = new SqliteScheduled(this.#db);
    this.scheduled = {
      schedule: (items) => group.run(() => atomically(this.#db, () => scheduled.schedule(items))),
      due: async (now, limit) => scheduled.due(now, limit),
      remove: (items) => group.run(() => atomically(this.#db, () => scheduled.remove(items))),
      count: async () => scheduled.count(),
    };
    const apiKeys = new SqliteApiKeys(this.#db);
    this.apiKeys = {
      insert: (r) => group.run(() => apiKeys.insert(r)),
      get: async (id) => apiKeys.get(id),
      findByHash: async (hash) => apiKeys.findByHash(hash),
      list: async (page) => apiKeys.list(page),
      update: (r) => group.run(() => apiKeys.update(r)),
      touch: (id, at) => group.run(() => apiKeys.touch(id, at), { durable: false }),
    };
    const audit = new SqliteAudit(this.#db);
    this.audit = {
      append: (r) => group.run(() => audit.append(r)),
      list: async (f, page) => audit.list(f, page),
    };
  }

  /** Copies what it can of the WAL into the database file without waiting for anyone (PASSIVE). */
  checkpoint(): void {
    checkpointPassive(this.#db);
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
    assertFlushable(this.#db);
  }

  async close(): Promise<void> {
    if (!this.#db.isOpen) return;
    this.#group.drain();
    closeDatabase(this.#db);
  }
}
