/**
 * `partner_event_subscription` in SQLite: the documents in a `DocumentTable`, and each endpoint's key
 * (partner, domain, event, url) in `subscription_endpoint` (migration v8), naming the subscription
 * that holds it. Every write changes both in one savepoint, so a second subscription of an endpoint
 * fails on the key's primary key — whichever connection, thread or process writes it.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { ConflictError } from '../../common/errors.ts';
import type { SubscriptionRecord } from '../../common/model.ts';
import type {
  Page,
  PageRequest,
  SubscriptionEndpoint,
  SubscriptionFilter,
} from '../../common/ports/store.ts';
import { atomically } from './database.ts';
import { DocumentTable } from './document-table.ts';

/** The SQLite implementation of the subscription repository (synchronous; the store wraps it). */
export class SqliteSubscriptions {
  readonly #table: DocumentTable<SubscriptionRecord>;
  readonly #claim: StatementSync;
  readonly #holder: StatementSync;
  readonly #find: StatementSync;
  readonly #free: StatementSync;
  readonly #handOver: StatementSync;
  readonly #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#table = new DocumentTable<SubscriptionRecord>(db, {
      table: 'partner_event_subscription',
      key: [['id', (r) => r.id]],
      columns: [
        ['partner_id', (r) => r.partnerId],
        ['domain', (r) => r.domain],
        ['event', (r) => r.event],
        ['status', (r) => r.status],
      ],
    });
    const endpoint = 'partner_id = ? AND domain = ? AND event = ? AND url = ?';
    this.#claim = db.prepare(
      `INSERT INTO subscription_endpoint (partner_id, domain, event, url, subscription_id)
       VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    this.#holder = db.prepare(`SELECT subscription_id FROM subscription_endpoint WHERE ${endpoint}`);
    this.#find = db.prepare(
      `SELECT s.doc FROM subscription_endpoint e JOIN partner_event_subscription s ON s.id = e.subscription_id
       WHERE e.partner_id = ? AND e.domain = ? AND e.event = ? AND e.url = ?`,
    );
    this.#free = db.prepare(`DELETE FROM subscription_endpoint WHERE ${endpoint} AND subscription_id = ?`);
    // A duplicate kept from before v8 takes over the key its holder left: the oldest one (by the
    // partner index, then the document's url — a partner has few subscriptions).
    this.#handOver = db.prepare(
      `INSERT INTO subscription_endpoint (partner_id, domain, event, url, subscription_id)
       SELECT partner_id, domain, event, json_extract(doc, '$.url'), id FROM partner_event_subscription
       WHERE partner_id = ? AND domain = ? AND event = ? AND json_extract(doc, '$.url') = ?
       ORDER BY id LIMIT 1`,
    );
  }

  /** Creates the subscription and takes its endpoint's key; ConflictError `already_exists` if either is taken. */
  insert(record: SubscriptionRecord): void {
    atomically(this.#db, () => {
      this.#table.insert(record);
      this.#take(record);
    });
  }

  /** One subscription by id. */
  get(id: string): SubscriptionRecord | undefined {
    return this.#table.get([id]);
  }

  /** The subscription holding an endpoint's key. */
  findByEndpoint(endpoint: SubscriptionEndpoint): SubscriptionRecord | undefined {
    const row = this.#find.get(...endpointKey(endpoint)) as { doc: string } | undefined;
    return row ? (JSON.parse(row.doc) as SubscriptionRecord) : undefined;
  }

  /** Subscriptions matching the filter, by id. */
  list(filter: SubscriptionFilter, page?: PageRequest): Page<SubscriptionRecord> {
    return this.#table.list(
      { partner_id: filter.partnerId, domain: filter.domain, event: filter.event, status: filter.status },
      page,
    );
  }

  /** Revision-checked replace; a new endpoint's key is taken and the old one freed, in the same write. */
  update(record: SubscriptionRecord): SubscriptionRecord {
    return atomically(this.#db, () => {
      const before = this.#table.get([record.id]);
      const stored = this.#table.update(record);
      if (before && !sameEndpoint(before, record)) {
        this.#take(record);
        this.#leave(before);
      }
      return stored;
    });
  }

  /** Deletes the subscription and frees its endpoint's key; false when there was none. */
  delete(id: string): boolean {
    return atomically(this.#db, () => {
      const before = this.#table.get([id]);
      if (!before || !this.#table.delete([id])) return false;
      this.#leave(before);
      return true;
    });
  }

  /** Takes the key of the record's endpoint for it, or throws naming the subscription that holds it. */
  #take(record: SubscriptionRecord): void {
    const key = endpointKey(record);
    if (this.#claim.run(...key, record.id).changes > 0) return;
    const holder = (this.#holder.get(...key) as { subscription_id: string }).subscription_id;
    throw new ConflictError(
      'already_exists',
      `subscription ${holder} already has partner ${record.partnerId}, event ${record.domain}.${record.event} and url ${record.url}`,
      { details: [{ field: 'url', message: `subscription ${holder} has this partner, event and url` }] },
    );
  }

  /** Frees the key of `record`'s endpoint if `record` held it, handing it to a remaining duplicate. */
  #leave(record: SubscriptionRecord): void {
    const key = endpointKey(record);
    if (this.#free.run(...key, record.id).changes > 0) this.#handOver.run(...key);
  }
}

/** The endpoint's key columns, in the order of `subscription_endpoint`'s primary key. */
function endpointKey(e: SubscriptionEndpoint): [string, string, string, string] {
  return [e.partnerId, e.domain, e.event, e.url];
}

function sameEndpoint(a: SubscriptionEndpoint, b: SubscriptionEndpoint): boolean {
  return a.partnerId === b.partnerId && a.domain === b.domain && a.event === b.event && a.url === b.url;
}
