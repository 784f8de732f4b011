/**
 * Retention of the embedded log: a record is deleted once every consumer group that reads its
 * topic (a recently seen `group_prefix` matching it) has committed past it. Records of a topic no
 * group reads are kept: nobody has consumed them yet. Deletes run in small transactions so
 * publishers are never blocked for long.
 */
import type { DatabaseSync } from 'node:sqlite';
import { transaction } from '../sqlite/database.ts';
import { matchesPrefixes } from './group-store.ts';
import { sql } from './schema.ts';

/** Groups not seen for this long no longer hold records back (like Kafka's offsets retention). */
const GROUP_EXPIRY_MS = 7 * 24 * 3600 * 1000;
const CHUNK = 5000;

/** Deletes consumed records; returns how many. */
export async function deleteConsumedRecords(db: DatabaseSync, now = Date.now()): Promise<number> {
  const groups = new Map<string, string[]>();
  const prefixRows = sql(db, 'SELECT grp, prefix FROM group_prefix WHERE seen_at >= ?').all(
    now - GROUP_EXPIRY_MS,
  ) as Array<{ grp: string; prefix: string }>;
  for (const { grp, prefix } of prefixRows) groups.set(grp, [...(groups.get(grp) ?? []), prefix]);
  const partitions = sql(db, 'SELECT topic, part FROM partition_log ORDER BY topic, part').all() as Array<{
    topic: string;
    part: number;
  }>;
  let deleted = 0;
  for (const { topic, part } of partitions) {
    const readers = [...groups].filter(([, prefixes]) => matchesPrefixes(topic, prefixes)).map(([g]) => g);
    if (readers.length === 0) continue;
    let low = Number.POSITIVE_INFINITY;
    for (const grp of readers) {
      const row = sql(
        db,
        'SELECT next_offset FROM committed_offset WHERE grp = ? AND topic = ? AND part = ?',
      ).get(grp, topic, part) as { next_offset: number } | undefined;
      low = Math.min(low, row?.next_offset ?? 0);
    }
    deleted += await deleteBelow(db, topic, part, low);
  }
  return deleted;
}

async function deleteBelow(db: DatabaseSync, topic: string, part: number, low: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const first = sql(db, 'SELECT min(off) AS off FROM record WHERE topic = ? AND part = ?').get(
      topic,
      part,
    ) as {
      off: number | null;
    };
    if (first.off === null || first.off >= low) return deleted;
    const upTo = Math.min(low, first.off + CHUNK);
    deleted += transaction(db, () =>
      Number(
        sql(db, 'DELETE FROM record WHERE topic = ? AND part = ? AND off < ?').run(topic, part, upTo).changes,
      ),
    );
    // Let publishers and consumers of this process run between chunks.
    await new Promise((resolve) => setImmediate(resolve));
  }
}
