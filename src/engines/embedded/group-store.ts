/**
 * The consumer-group side of `bus.db` for one member: membership, partition leases, committed
 * offsets and fetching. Every method is synchronous and every write is one short transaction, so
 * members on one connection never interleave inside a transaction.
 *
 * These writes are bookkeeping, committed without a flush of their own (`unflushedTransaction`): an
 * OS crash that loses them only repeats work (messages redelivered, leases taken again).
 *
 * Work per heartbeat and per fetch follows what changed, not how many partitions there are: the
 * topic list is read again only when its version in `log_clock` moved, the group's leases only
 * when its members, the topics or this member's own leases changed (or it is below its share), and
 * log end offsets only for partitions appended to since the last look (`partition_log.seq`).
 *
 * Lease protocol: each heartbeat (a third of the lease TTL) renews the member row and its leases,
 * drops expired members, and computes the fair share ceil(partitions / live members). A member
 * below its share takes free partitions (no lease, or an expired one); a member above it hands
 * leases back once their in-flight messages are committed. A commit is written only while the
 * member still owns the lease (fencing), so a member that lost a partition cannot move its offset.
 */
import type { DatabaseSync } from 'node:sqlite';
import { unflushedTransaction as transaction } from '../sqlite/database.ts';
import { partitionKey } from './cursor.ts';
import { nextSeq, sql } from './schema.ts';

export interface HeldPartition {
  topic: string;
  partition: number;
  committed: number;
}

export interface HeartbeatResult {
  /** Partitions whose lease this member holds after the heartbeat. */
  held: HeldPartition[];
  /** How many partitions this member should hold. */
  share: number;
  /**
   * Keys (`partitionKey`) of the partitions this heartbeat took rather than renewed. A member that
   * held one of them before lost it unseen meanwhile (its lease expired and another member may have
   * moved the offset on): what it kept of that earlier hold is stale.
   */
  acquired?: ReadonlySet<string>;
}

export interface RecordRow {
  off: number;
  key: string | null;
  value: string;
  headers: string | null;
  ts: number;
  not_before: number | null;
}

/** True when `topic` is read by a consumer subscribed to `prefixes`. */
export function matchesPrefixes(topic: string, prefixes: readonly string[]): boolean {
  return prefixes.some((p) => topic.startsWith(p));
}

/** Database access of one consumer-group member. */
export class GroupStore {
  readonly #db: DatabaseSync;
  readonly #group: string;
  readonly #owner: string;
  readonly #prefixes: readonly string[];
  readonly #ttl: number;
  /** What the last heartbeat saw; while nothing of it changes, a heartbeat only renews. */
  #seen: { topics: number; members: number; held: HeldPartition[]; share: number } | undefined;
  #partitionList: { version: number; partitions: Array<{ topic: string; partition: number }> } | undefined;
  #prefixSeenAt = 0;
  /** Log end offsets of matching partitions as last read, and the log sequence they were read at. */
  readonly #ends = new Map<string, number>();
  #endsSeq = 0;
  /** How many partition rows the heartbeats and fetches read so far (for tests of the work per second). */
  readonly reads = { heartbeats: 0, topicLists: 0, leaseScans: 0, endOffsetRows: 0 };

  constructor(db: DatabaseSync, group: string, owner: string, prefixes: readonly string[], ttlMs: number) {
    this.#db = db;
    this.#group = group;
    this.#owner = owner;
    this.#prefixes = prefixes;
    this.#ttl = ttlMs;
  }

  /** Renews membership and leases; when `acquire`, takes free partitions up to the fair share. */
  heartbeat(now: number, acquire: boolean): HeartbeatResult {
    const db = this.#db;
    this.reads.heartbeats += 1;
    return transaction(db, () => {
      const expires = now + this.#ttl;
      sql(
        db,
        `INSERT INTO group_member (grp, owner, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (grp, owner) DO UPDATE SET expires_at = excluded.expires_at`,
      ).run(this.#group, this.#owner, expires);
      sql(db, 'DELETE FROM group_member WHERE grp = ? AND expires_at < ?').run(this.#group, now);
      // Retention only needs to know the group was seen this week: a minute is plenty.
      if (now - this.#prefixSeenAt >= 60_000) {
        this.#prefixSeenAt = now;
        for (const prefix of this.#prefixes) {
          sql(
            db,
            `INSERT INTO group_prefix (grp, prefix, seen_at) VALUES (?, ?, ?)
             ON CONFLICT (grp, prefix) DO UPDATE SET seen_at = excluded.seen_at`,
          ).run(this.#group, prefix, now);
        }
      }
      const renewed = Number(
        sql(db, 'UPDATE lease SET expires_at = ? WHERE grp = ? AND owner = ?').run(
          expires,
          this.#group,
          this.#owner,
        ).changes,
      );
      const members = (
        sql(db, 'SELECT count(*) AS n FROM group_member WHERE grp = ?').get(this.#group) as { n: number }
      ).n;
      const topics = (sql(db, 'SELECT topics FROM log_clock WHERE id = 1').get() as { topics: number })
        .topics;
      const seen = this.#seen;
      if (
        seen &&
        seen.topics === topics &&
        seen.members === members &&
        seen.held.length === renewed &&
        (!acquire || seen.held.length >= seen.share)
      ) {
        return { held: seen.held, share: seen.share };
      }
      const partitions = this.#partitions(topics);
      const share = Math.ceil(partitions.length / Math.max(1, members));
      const acquired = acquire ? this.#acquire(partitions, share, now, expires) : undefined;
      const held = sql(
        db,
        `SELECT l.topic, l.part, coalesce(c.next_offset, 0) AS committed
         FROM lease l LEFT JOIN committed_offset c ON c.grp = l.grp AND c.topic = l.topic AND c.part = l.part
         WHERE l.grp = ? AND l.owner = ?`,
      ).all(this.#group, this.#owner) as Array<{ topic: string; part: number; committed: number }>;
      const mine = held
        .filter((h) => matchesPrefixes(h.topic, this.#prefixes))
        .map((h) => ({ topic: h.topic, partition: h.part, committed: h.committed }));
      // Leases of topics this member does not read (none normally) would make the count differ.
      this.#seen = mine.length === held.length ? { topics, members, held: mine, share } : undefined;
      return acquired && acquired.size > 0 ? { held: mine, share, acquired } : { held: mine, share };
    });
  }

  /** Writes the commits of partitions this member still owns; returns the ones it no longer owns. */
  commit(commits: Array<{ topic: string; partition: number; committed: number }>): Array<{
    topic: string;
    partition: number;
  }> {
    const db = this.#db;
    const lost: Array<{ topic: string; partition: number }> = [];
    // The next heartbeat reads the leases again when one was lost.
    const forget = (): void => {
      this.#seen = undefined;
    };
    transaction(db, () => {
      const seq = nextSeq(db);
      for (const c of commits) {
        const owner = sql(db, 'SELECT owner FROM lease WHERE grp = ? AND topic = ? AND part = ?').get(
          this.#group,
          c.topic,
          c.partition,
        ) as { owner: string } | undefined;
        if (owner?.owner !== this.#owner) {
          lost.push(c);
          forget();
          continue;
        }
        sql(
          db,
          `INSERT INTO committed_offset (grp, topic, part, next_offset, seq) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset = excluded.next_offset, seq = excluded.seq`,
        ).run(this.#group, c.topic, c.partition, c.committed, seq);
      }
    });
    return lost;
  }

  /** Hands one partition's lease back so another member can take it at once. */
  release(topic: string, partition: number): void {
    this.#seen = undefined;
    // In a transaction like every other write here: its lock wait is capped below the lease TTL,
    // where a statement on its own would wait out the connection's busy timeout (5 s).
    transaction(this.#db, () =>
      sql(this.#db, 'DELETE FROM lease WHERE grp = ? AND topic = ? AND part = ? AND owner = ?').run(
        this.#group,
        topic,
        partition,
        this.#owner,
      ),
    );
  }

  /** Leaves the group: releases every lease and the membership. */
  leave(): void {
    transaction(this.#db, () => {
      sql(this.#db, 'DELETE FROM lease WHERE grp = ? AND owner = ?').run(this.#group, this.#owner);
      sql(this.#db, 'DELETE FROM group_member WHERE grp = ? AND owner = ?').run(this.#group, this.#owner);
    });
  }

  /**
   * Log end offsets of the partitions of matching topics, keyed `topic\0partition`: the ones
   * appended to since the last call are read (through the sequence index), the rest remembered.
   */
  endOffsets(): Map<string, number> {
    const rows = sql(
      this.#db,
      'SELECT topic, part, next_offset, seq FROM partition_log WHERE seq > ? ORDER BY seq',
    ).all(this.#endsSeq) as Array<{ topic: string; part: number; next_offset: number; seq: number }>;
    this.reads.endOffsetRows += rows.length;
    for (const r of rows) {
      if (matchesPrefixes(r.topic, this.#prefixes))
        this.#ends.set(partitionKey(r.topic, r.part), r.next_offset);
      this.#endsSeq = Math.max(this.#endsSeq, r.seq);
    }
    return this.#ends;
  }

  /** Up to `limit` records of one partition from offset `from`, in offset order. */
  fetch(topic: string, partition: number, from: number, limit: number): RecordRow[] {
    return sql(
      this.#db,
      `SELECT off, key, value, headers, ts, not_before FROM record
       WHERE topic = ? AND part = ? AND off >= ? ORDER BY off LIMIT ?`,
    ).all(topic, partition, from, limit) as unknown as RecordRow[];
  }

  /** The partitions of matching topics, listed again only when the topic list's version moved. */
  #partitions(version: number): Array<{ topic: string; partition: number }> {
    if (this.#partitionList?.version === version) return this.#partitionList.partitions;
    this.reads.topicLists += 1;
    const topics = sql(this.#db, 'SELECT name, partitions FROM topic ORDER BY name').all() as Array<{
      name: string;
      partitions: number;
    }>;
    const out: Array<{ topic: string; partition: number }> = [];
    for (const t of topics) {
      if (!matchesPrefixes(t.name, this.#prefixes)) continue;
      for (let p = 0; p < t.partitions; p++) out.push({ topic: t.name, partition: p });
    }
    this.#partitionList = { version, partitions: out };
    return out;
  }

  #acquire(
    partitions: Array<{ topic: string; partition: number }>,
    share: number,
    now: number,
    expires: number,
  ): Set<string> {
    const db = this.#db;
    const acquired = new Set<string>();
    this.reads.leaseScans += 1;
    const leases = sql(db, 'SELECT topic, part, owner, expires_at FROM lease WHERE grp = ?').all(
      this.#group,
    ) as Array<{ topic: string; part: number; owner: string; expires_at: number }>;
    const taken = new Map(leases.map((l) => [partitionKey(l.topic, l.part), l]));
    let mine = leases.filter(
      (l) => l.owner === this.#owner && matchesPrefixes(l.topic, this.#prefixes),
    ).length;
    for (const { topic, partition } of partitions) {
      if (mine >= share) break;
      const lease = taken.get(partitionKey(topic, partition));
      if (lease && lease.expires_at >= now) continue;
      sql(
        db,
        `INSERT INTO lease (grp, topic, part, owner, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (grp, topic, part) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at`,
      ).run(this.#group, topic, partition, this.#owner, expires);
      acquired.add(partitionKey(topic, partition));
      mine++;
    }
    return acquired;
  }
}
