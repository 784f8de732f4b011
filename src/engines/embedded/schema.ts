/**
 * The tables of the embedded log in `bus.db`, and a cache of prepared statements.
 * Migrations are append-only: a database records how many it has applied in `PRAGMA user_version`.
 *
 * - `topic`: name → partition count (the topic administration).
 * - `record`: the log itself, keyed (topic, part, off) WITHOUT ROWID so that fetching a partition
 *   from an offset is one index range scan that reads the rows in place.
 * - `partition_log`: the next offset of each partition (its log end). It is kept apart from `record`
 *   because retention may delete every record of a partition, and offsets must never be reused.
 * - `group_prefix`: which topic prefixes each consumer group reads, and when it was last seen;
 *   retention only deletes what every recently seen group matching the topic has committed.
 * - `committed_offset`: per group and partition, the next offset to process.
 * - `group_member`: live members of a group (heartbeat expiry), to compute each one's fair share.
 * - `lease`: which member owns a (group, topic, partition) and until when.
 * - `log_clock` (v3): a sequence bumped by every append and every offset commit, stamped on the
 *   `partition_log` and `committed_offset` rows they change, and a version of the topic list: a
 *   consumer reads only the partitions whose log end moved since it last looked, retention only the
 *   partitions whose commits moved, and a heartbeat lists topics only when they changed — per-second
 *   work follows what changed, not how many partitions there are.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';

/**
 * The page size of a new `bus.db` (an existing file keeps its own). Records of about 1 KB overflow
 * the 4 KB default page of a WITHOUT ROWID b-tree, which made appends 2-3 times slower in
 * `bench/embedded-log.ts`; 8 KB pages keep records of up to ~2 KB in place (larger ones spill to
 * overflow pages). 16 KB pages did too, but every small commit rewrites the last page of each
 * partition it appends to: at a steady 4,500 events/s (`npm run bench -- --rate 4500`) p99
 * ingest→delivery was 2.6–3.2 s with 16 KB pages and 0.5–1.0 s with 8 KB; bursts equal or faster.
 */
export const PAGE_SIZE = 8192;

export const BUS_MIGRATIONS = [
  `CREATE TABLE topic (
     name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID;`,
  `CREATE TABLE record (
     topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
     key TEXT, value TEXT NOT NULL, headers TEXT, ts INTEGER NOT NULL, not_before INTEGER,
     PRIMARY KEY (topic, part, off)) WITHOUT ROWID;
   CREATE TABLE partition_log (
     topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
     PRIMARY KEY (topic, part)) WITHOUT ROWID;
   CREATE TABLE group_prefix (
     grp TEXT NOT NULL, prefix TEXT NOT NULL, seen_at INTEGER NOT NULL,
     PRIMARY KEY (grp, prefix)) WITHOUT ROWID;
   CREATE TABLE committed_offset (
     grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
     PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
   CREATE TABLE group_member (
     grp TEXT NOT NULL, owner TEXT NOT NULL, expires_at INTEGER NOT NULL,
     PRIMARY KEY (grp, owner)) WITHOUT ROWID;
   CREATE TABLE lease (
     grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
     owner TEXT NOT NULL, expires_at INTEGER NOT NULL,
     PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;`,
  `CREATE TABLE log_clock (
     id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, topics INTEGER NOT NULL);
   INSERT INTO log_clock (id, seq, topics) VALUES (1, 1, 1);
   ALTER TABLE partition_log ADD COLUMN seq INTEGER NOT NULL DEFAULT 1;
   CREATE INDEX partition_log_by_seq ON partition_log (seq);
   ALTER TABLE committed_offset ADD COLUMN seq INTEGER NOT NULL DEFAULT 1;
   CREATE INDEX committed_offset_by_seq ON committed_offset (seq);`,
];

/** Bumps the log's change sequence (inside a write transaction) and returns the new value. */
export function nextSeq(db: DatabaseSync): number {
  return (sql(db, 'UPDATE log_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq').get() as { seq: number })
    .seq;
}

const caches = new WeakMap<DatabaseSync, Map<string, StatementSync>>();

/** The prepared statement for `text` on `db`, prepared once: preparing costs more than running. */
export function sql(db: DatabaseSync, text: string): StatementSync {
  let cache = caches.get(db);
  if (!cache) {
    cache = new Map();
    caches.set(db, cache);
  }
  let statement = cache.get(text);
  if (!statement) {
    statement = db.prepare(text);
    cache.set(text, statement);
  }
  return statement;
}
