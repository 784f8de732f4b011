/**
 * Retention of the embedded log: a record is deleted once every consumer group that reads its
 * topic (a recently seen `group_prefix` matching it) has committed past it. Records of the DLQ
 * topics (`unreadPrefixes`: kept for outside consumers, read by no group of the platform) are
 * deleted once they are older than `unreadMaxAgeMs` (7 days by default, like Kafka's
 * `retention.ms`) unless a group reads them. Records of any other topic no group reads are kept:
 * its groups may only be down (a pipeline stage stopped for a week must find its backlog).
 *
 * Deletes run in small transactions (`chunk` records, ~5 µs each), and a paced run rests between
 * them as long as the last one took: a run never takes more than half of its thread, and never
 * holds the write lock for long. The log runs it every second, so each run only has the last
 * second's records to delete. Measured before (one run a minute, 5,000-record chunks with no rest):
 * at a steady 5,000 events/s each run deleted ~600,000 records in ~4 s of back-to-back
 * transactions, during which ingest and the processor nearly stopped (deliveries fell to 100/s and
 * ingest→delivery latency climbed to 8 s).
 */
import type { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { unflushedTransaction } from '../sqlite/database.ts';
import { matchesPrefixes } from './group-store.ts';
import { sql } from './schema.ts';

/** Groups not seen for this long no longer hold records back (like Kafka's offsets retention). */
const GROUP_EXPIRY_MS = 7 * 24 * 3600 * 1000;

export interface RetentionOptions {
  /** Records deleted per transaction (default 1,000). */
  chunk?: number;
  /** Rest between transactions as long as the last one took (default false: back to back). */
  paced?: boolean;
  /** The lowest offset each partition was already cleaned up to; partitions whose low mark did not move are skipped. */
  cleaned?: Map<string, number>;
  /**
   * Only the partitions whose committed offsets moved since `changes.seq` (the log's sequence; the
   * run advances it), except for a whole run once every FULL_RUN_MS (`changes.fullAt`), which also
   * applies the age rule of unread topics and notices groups gone: per-second work follows the
   * commits, not how many partitions there are.
   */
  changes?: { seq: number; fullAt: number };
  /** How long records of the DLQ topics are kept when no group reads them (ms; default 7 days). */
  unreadMaxAgeMs?: number;
  /** The topics that age rule applies to (default `dlq.`). */
  unreadPrefixes?: readonly string[];
  now?: number;
}

export const DEFAULT_UNREAD_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
const DEFAULT_UNREAD_PREFIXES = ['dlq.'];

/** Deletes consumed records; returns how many. */
export async function deleteConsumedRecords(
  db: DatabaseSync,
  options: RetentionOptions = {},
): Promise<number> {
  const now = options.now ?? Date.now();
  const groups = new Map<string, string[]>();
  const prefixRows = sql(db, 'SELECT grp, prefix FROM group_prefix WHERE seen_at >= ?').all(
    now - GROUP_EXPIRY_MS,
  ) as Array<{ grp: string; prefix: string }>;
  for (const { grp, prefix } of prefixRows) groups.set(grp, [...(groups.get(grp) ?? []), prefix]);
  const partitions = partitionsToVisit(db, options, now);
  const committed = sql(
    db,
    'SELECT next_offset FROM committed_offset WHERE grp = ? AND topic = ? AND part = ?',
  );
  const unreadCutoff = now - (options.unreadMaxAgeMs ?? DEFAULT_UNREAD_MAX_AGE_MS);
  let deleted = 0;
  for (const { topic, part } of partitions) {
    const readers = [...groups].filter(([, prefixes]) => matchesPrefixes(topic, prefixes)).map(([g]) => g);
    let low = Number.POSITIVE_INFINITY;
    if (readers.length === 0) {
      if (!matchesPrefixes(topic, options.unreadPrefixes ?? DEFAULT_UNREAD_PREFIXES)) continue;
      low = firstYoungerThan(db, topic, part, unreadCutoff);
    }
    for (const grp of readers) {
      const row = committed.get(grp, topic, part) as { next_offset: number } | undefined;
      low = Math.min(low, row?.next_offset ?? 0);
    }
    const key = `${topic}\n${part}`;
    if (options.cleaned?.get(key) === low) continue;
    deleted += await deleteBelow(db, topic, part, low, options);
    options.cleaned?.set(key, low);
  }
  return deleted;
}

/** How often a run visits every partition (ms). */
const FULL_RUN_MS = 60_000;

/** The partitions a run visits: all of them, or (see `changes`) those whose commits moved. */
function partitionsToVisit(
  db: DatabaseSync,
  options: RetentionOptions,
  now: number,
): Array<{ topic: string; part: number }> {
  const changes = options.changes;
  if (!changes || now - changes.fullAt >= FULL_RUN_MS) {
    if (changes) {
      changes.fullAt = now;
      changes.seq = (sql(db, 'SELECT seq FROM log_clock WHERE id = 1').get() as { seq: number }).seq;
    }
    return sql(db, 'SELECT topic, part FROM partition_log ORDER BY topic, part').all() as Array<{
      topic: string;
      part: number;
    }>;
  }
  const rows = sql(
    db,
    'SELECT DISTINCT topic, part, max(seq) OVER () AS top FROM committed_offset WHERE seq > ?',
  ).all(changes.seq) as Array<{ topic: string; part: number; top: number }>;
  if (rows.length > 0) changes.seq = rows[0]!.top;
  return rows.map((r) => ({ topic: r.topic, part: r.part }));
}

/**
 * The first offset of a partition appended at or after `cutoff` (its log end when every record is
 * older). Appends are in time order, so this reads just the records older than the cutoff.
 */
function firstYoungerThan(db: DatabaseSync, topic: string, part: number, cutoff: number): number {
  const row = sql(
    db,
    'SELECT off FROM record WHERE topic = ? AND part = ? AND ts >= ? ORDER BY off LIMIT 1',
  ).get(topic, part, cutoff) as { off: number } | undefined;
  if (row) return row.off;
  const end = sql(db, 'SELECT next_offset FROM partition_log WHERE topic = ? AND part = ?').get(
    topic,
    part,
  ) as { next_offset: number } | undefined;
  return end?.next_offset ?? 0;
}

async function deleteBelow(
  db: DatabaseSync,
  topic: string,
  part: number,
  low: number,
  options: RetentionOptions,
): Promise<number> {
  const chunk = options.chunk ?? 1000;
  const first = sql(db, 'SELECT min(off) AS off FROM record WHERE topic = ? AND part = ?');
  const remove = sql(db, 'DELETE FROM record WHERE topic = ? AND part = ? AND off < ?');
  let deleted = 0;
  for (;;) {
    const { off } = first.get(topic, part) as { off: number | null };
    if (off === null || off >= low) return deleted;
    const upTo = Math.min(low, off + chunk);
    const started = performance.now();
    // A delete lost in an OS crash leaves records every group has read: they are deleted again.
    deleted += unflushedTransaction(db, () => Number(remove.run(topic, part, upTo).changes));
    // Let publishers and consumers run between chunks (in this thread, and for the write lock).
    if (options.paced) await sleep(Math.max(1, performance.now() - started));
    else await new Promise((resolve) => setImmediate(resolve));
  }
}
