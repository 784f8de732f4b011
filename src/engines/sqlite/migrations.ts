/**
 * The SQLite store's schema, one migration per entry, applied in order and tracked in
 * `PRAGMA user_version`. Append only: an entry that has shipped is never edited, so every existing
 * database upgrades by running the entries it has not seen.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE event_schema (
     domain TEXT NOT NULL, event TEXT NOT NULL, version INTEGER NOT NULL,
     id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, revision INTEGER NOT NULL, doc TEXT NOT NULL,
     PRIMARY KEY (domain, event, version)) WITHOUT ROWID;
   CREATE TABLE partner (
     id TEXT PRIMARY KEY, status TEXT NOT NULL, revision INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE partner_event_subscription (
     id TEXT PRIMARY KEY, partner_id TEXT NOT NULL, domain TEXT NOT NULL, event TEXT NOT NULL,
     status TEXT NOT NULL, revision INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX subscription_by_event ON partner_event_subscription (domain, event, id);
   CREATE INDEX subscription_by_partner ON partner_event_subscription (partner_id, id);`,
  // v2: delivery records, their attempts, the idempotency ledger and dead letters. Every listing
  // filter has an index ending in (created_at, id), the listing order, so a page is an index range.
  // Deliveries are written on the hot path, where each index costs a WAL page per write: `status`
  // rides in the time index (checked there without reading the row) instead of an index of its own.
  `CREATE TABLE event_delivery_status (
     id TEXT PRIMARY KEY, event_id TEXT NOT NULL, subscription_id TEXT NOT NULL, partner_id TEXT NOT NULL,
     status TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX delivery_by_time ON event_delivery_status (created_at, id, status);
   CREATE INDEX delivery_by_event ON event_delivery_status (event_id, created_at, id);
   CREATE INDEX delivery_by_subscription ON event_delivery_status (subscription_id, created_at, id);
   CREATE INDEX delivery_by_partner ON event_delivery_status (partner_id, created_at, id);
   CREATE TABLE delivery_attempt (
     delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, doc TEXT NOT NULL,
     PRIMARY KEY (delivery_id, attempt)) WITHOUT ROWID;
   CREATE TABLE idempotency_ledger (
     key TEXT PRIMARY KEY, status TEXT NOT NULL, expires_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX ledger_by_expiry ON idempotency_ledger (expires_at);
   CREATE TABLE dead_letter (
     id TEXT PRIMARY KEY, stage TEXT NOT NULL, event_id TEXT, subscription_id TEXT,
     created_at TEXT NOT NULL, redriven_at TEXT, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX dead_letter_by_time ON dead_letter (created_at, id);
   CREATE INDEX dead_letter_by_stage ON dead_letter (stage, created_at, id);
   CREATE INDEX dead_letter_by_event ON dead_letter (event_id, created_at, id);
   CREATE INDEX dead_letter_by_subscription ON dead_letter (subscription_id, created_at, id);
   CREATE INDEX dead_letter_pending ON dead_letter (created_at, id) WHERE redriven_at IS NULL;`,
  // v3: deliveries by event through `event_delivery`, one row per delivery keyed by event. Event ids
  // are random, so an index on them costs a random page write per row; the processor writes an
  // event's rows together when it routes it (one page per event, whatever the fan-out), and the
  // dispatcher's later insert of the same row only reads that page. Was the `delivery_by_event`
  // index, written by the dispatcher once per delivery.
  `CREATE TABLE event_delivery (
     event_id TEXT NOT NULL, delivery_id TEXT NOT NULL,
     PRIMARY KEY (event_id, delivery_id)) WITHOUT ROWID;
   INSERT INTO event_delivery (event_id, delivery_id) SELECT event_id, id FROM event_delivery_status;
   DROP INDEX delivery_by_event;`,
  // v4: `event_route` replaces `event_delivery` and also holds the processor's idempotency marker:
  // one row per (event id, source) with delivery_id '' once the event is routed, plus one per
  // delivery. The marker used to be a ledger row of its own (`event:<source>:<id>`), a second random
  // page write per event; now the marker and the links share a page. Links copied from
  // `event_delivery` take their source from the delivery record ('' when it did not exist yet).
  `CREATE TABLE event_route (
     event_id TEXT NOT NULL, source TEXT NOT NULL, delivery_id TEXT NOT NULL,
     PRIMARY KEY (event_id, source, delivery_id)) WITHOUT ROWID;
   INSERT INTO event_route (event_id, source, delivery_id)
     SELECT e.event_id, coalesce(json_extract(d.doc, '$.eventSource'), ''), e.delivery_id
     FROM event_delivery e LEFT JOIN event_delivery_status d ON d.id = e.delivery_id;
   INSERT OR IGNORE INTO event_route (event_id, source, delivery_id)
     SELECT event_id, source, '' FROM event_route;
   DROP TABLE event_delivery;`,
  // v5: history retention. `route_log` lists routed events by time (appended in order, one row per
  // event), so the routes of events older than the retention can be found and deleted;
  // `event_route` itself is keyed by the random event id. Events routed before this migration are
  // logged as routed now, so they go one retention period after the upgrade.
  `CREATE TABLE route_log (
     routed_at TEXT NOT NULL, event_id TEXT NOT NULL, source TEXT NOT NULL,
     PRIMARY KEY (routed_at, event_id, source)) WITHOUT ROWID;
   INSERT INTO route_log (routed_at, event_id, source)
     SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), event_id, source FROM event_route WHERE delivery_id = '';`,
  // v6: tasks held while their subscription is PAUSED, per subscription in the order held (ids
  // are time-ordered UUIDv7).
  `CREATE TABLE held_task (
     subscription_id TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
     PRIMARY KEY (subscription_id, id)) WITHOUT ROWID;`,
  // v7: fenced ledger claims. Each claim writes a random token; complete and release must name it,
  // so a worker whose claim lapsed cannot delete (or complete) the claim another worker holds now.
  // Claims taken before the upgrade have no token: they lapse as before.
  `ALTER TABLE idempotency_ledger ADD COLUMN token TEXT;`,
  // v8: one subscription per endpoint. `subscription_endpoint` is the endpoint's key (partner,
  // domain, event, url — the url exactly as stored, normalised by the Subscription Admin) naming
  // the subscription that holds it; a subscription's writes change it in the same transaction, so a
  // second subscription of an endpoint fails on the primary key. A table rather than a unique
  // index: a database may already hold duplicates, which a unique index would refuse; and a table
  // is the shape of the other engines' uniqueness item (DynamoDB: a conditional put). Of each
  // group of duplicates the oldest (lowest id, ids being time-ordered) takes the key — the one the
  // upsert updated until now; the others stay as they are, and take the key over when it goes. A
  // document without a url (never written by the platform) holds no key rather than stop the upgrade.
  `CREATE TABLE subscription_endpoint (
     partner_id TEXT NOT NULL, domain TEXT NOT NULL, event TEXT NOT NULL, url TEXT NOT NULL,
     subscription_id TEXT NOT NULL,
     PRIMARY KEY (partner_id, domain, event, url)) WITHOUT ROWID;
   INSERT INTO subscription_endpoint (partner_id, domain, event, url, subscription_id)
     SELECT partner_id, domain, event, json_extract(doc, '$.url'), min(id) FROM partner_event_subscription
     WHERE json_extract(doc, '$.url') IS NOT NULL
     GROUP BY partner_id, domain, event, json_extract(doc, '$.url');`,
  // v9: how many tasks each subscription holds, kept with the tasks, so the cap on them is one
  // point read instead of a count over a subscription's rows (a million at the cap).
  `CREATE TABLE held_count (subscription_id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
   INSERT INTO held_count (subscription_id, n) SELECT subscription_id, count(*) FROM held_task GROUP BY subscription_id;`,
  // v10: API keys (found by the SHA-256 of the key, never the key itself) and the audit log of
  // admin changes (ids are time-ordered UUIDv7: the key is the listing order, newest first read
  // backwards; one index for the listing by actor).
  `CREATE TABLE api_key (
     id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, revision INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE audit_log (id TEXT PRIMARY KEY, actor TEXT NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX audit_by_actor ON audit_log (actor, id);`,
  // v11: messages that must wait until they are due (retries on AWS Lambda, where a consumer cannot
  // pause), keyed by id (scheduling an id kept already changes nothing); `due` is a range of the
  // (due_at, id) index, earliest first. `message` is the bus message as JSON.
  `CREATE TABLE scheduled_message (
     id TEXT PRIMARY KEY, due_at INTEGER NOT NULL, message TEXT NOT NULL) WITHOUT ROWID;
   CREATE INDEX scheduled_by_due ON scheduled_message (due_at, id);`,
  // v12: a dead letter's document (its message, up to a megabyte) in a table of its own, and its
  // reason a column with an index. Filters read the row of every dead letter they pass over, and
  // with the document in the row SQLite read all of it (its overflow pages): over a fuzz run's DLQ
  // one `GET /admin/dlq?reason=x` (a json_extract of every document) held the API's thread 1.2 s;
  // `pending=false` over 1,000 dead letters of 100 KB took 148 ms. Now filters read rows of a few
  // dozen bytes, and documents are read for the page's items only.
  `CREATE TABLE dead_letter_doc (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
   INSERT INTO dead_letter_doc (id, doc) SELECT id, doc FROM dead_letter;
   CREATE TABLE dead_letter_entry (
     id TEXT PRIMARY KEY, stage TEXT NOT NULL, event_id TEXT, subscription_id TEXT,
     created_at TEXT NOT NULL, redriven_at TEXT, reason TEXT) WITHOUT ROWID;
   INSERT INTO dead_letter_entry (id, stage, event_id, subscription_id, created_at, redriven_at, reason)
     SELECT id, stage, event_id, subscription_id, created_at, redriven_at, json_extract(doc, '$.reason')
     FROM dead_letter;
   DROP TABLE dead_letter;
   ALTER TABLE dead_letter_entry RENAME TO dead_letter;
   CREATE INDEX dead_letter_by_time ON dead_letter (created_at, id);
   CREATE INDEX dead_letter_by_stage ON dead_letter (stage, created_at, id);
   CREATE INDEX dead_letter_by_event ON dead_letter (event_id, created_at, id);
   CREATE INDEX dead_letter_by_subscription ON dead_letter (subscription_id, created_at, id);
   CREATE INDEX dead_letter_by_reason ON dead_letter (reason, created_at, id);
   CREATE INDEX dead_letter_pending ON dead_letter (created_at, id) WHERE redriven_at IS NULL;`,
];
