/**
 * The partitions one group member holds, and its in-flight messages on each: reconciling with the
 * leases after a heartbeat, fetching a batch across them (new messages, and failed ones due again),
 * committing what is handled, and handing back leases over the fair share. The fetch loop around
 * it is in `consumer.ts`.
 */
import type { ConsumedMessage } from '../../common/ports/bus.ts';
import { type BatchEntry, type SkippedRecords, sizeOf } from '../consumer-batch.ts';
import { PartitionCursor, partitionKey } from './cursor.ts';
import type { GroupStore, RecordRow } from './group-store.ts';

/** A handed-out message and the cursor of its partition. */
export type Entry = BatchEntry;

/** A member's held partitions. */
export class Assignment {
  readonly #store: GroupStore;
  readonly #report: (err: unknown) => void;
  readonly #cursors = new Map<string, PartitionCursor>();
  /** Cursors of partitions lost while messages were in flight; re-taking them waits until those settle. */
  readonly #lost = new Map<string, PartitionCursor>();
  /** Commits taken from their cursors whose write failed: written again at the next commit or heartbeat. */
  readonly #unwritten = new Map<PartitionCursor, number>();
  #list: PartitionCursor[] = [];
  #rotation = 0;
  /** The earliest time a held partition waiting on notBefore or a pause becomes fetchable. */
  deadline = Number.POSITIVE_INFINITY;

  constructor(store: GroupStore, report: (err: unknown) => void) {
    this.#store = store;
    this.#report = report;
  }

  /** What the member's heartbeats and fetches have read so far (tests of the work they do). */
  get reads(): GroupStore['reads'] {
    return this.#store.reads;
  }

  /** Renews the leases and adopts the result; returns false when the heartbeat failed. */
  heartbeat(now: number, acquire: boolean): boolean {
    let result: ReturnType<GroupStore['heartbeat']>;
    try {
      result = this.#store.heartbeat(now, acquire);
    } catch (err) {
      this.#report(err);
      return false;
    }
    for (const [key, cursor] of this.#lost) if (cursor.inFlight === 0) this.#lost.delete(key);
    const held = new Set<string>();
    for (const h of result.held) {
      const key = partitionKey(h.topic, h.partition);
      held.add(key);
      // Taken again after losing it unseen (a stall longer than the lease): the cursor kept from
      // before would commit its old position over what the member in between committed.
      if (result.acquired?.has(key)) this.#drop(key);
      if (this.#cursors.has(key) || !acquire) continue;
      // Never hand out a message still in flight here from before the partition was lost.
      if (this.#lost.has(key)) continue;
      this.#cursors.set(key, new PartitionCursor(h.topic, h.partition, h.committed));
    }
    // A lease that expired and was taken over (this process stalled): its results no longer count.
    for (const key of [...this.#cursors.keys()]) if (!held.has(key)) this.#drop(key);
    let over = this.#cursors.size - result.share;
    for (const cursor of this.#cursors.values()) if (cursor.releasing) over--;
    if (over > 0) {
      const idleFirst = [...this.#cursors.values()]
        .filter((c) => !c.releasing)
        .sort((a, b) => a.inFlight - b.inFlight || (a.key < b.key ? 1 : -1));
      for (const cursor of idleFirst.slice(0, over)) cursor.releasing = true;
    }
    this.#list = [...this.#cursors.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
    // A quiet partition whose last commit failed to be written would keep it unwritten for good.
    if (this.#unwritten.size > 0) this.commit([]);
    else this.#releaseIdle();
    return true;
  }

  /**
   * Takes up to `limit` messages across the held partitions — failed ones due again first, then new
   * ones by offset range from each position — at most `perPartition` in flight per partition and
   * about `bytes` bytes in all (at least one message). `onSkip` hears of records that were deleted
   * before they were read.
   */
  fetch(
    limit: number,
    now: number,
    perPartition: number,
    bytes: number,
    onSkip: (skipped: SkippedRecords) => void,
  ): Entry[] {
    const ends = this.#store.endOffsets();
    const out: Entry[] = [];
    let budget = bytes;
    let deadline = Number.POSITIVE_INFINITY;
    const n = this.#list.length;
    // Start at a different partition each time so a deep backlog on one cannot starve the others.
    const start = n === 0 ? 0 : this.#rotation++ % n;
    for (let i = 0; i < n && out.length < limit && budget > 0; i++) {
      const cursor = this.#list[(start + i) % n]!;
      if (this.#cursors.get(cursor.key) !== cursor) continue;
      const retryAt = cursor.retryAt();
      if (retryAt !== undefined) {
        if (retryAt > now) deadline = Math.min(deadline, retryAt);
        else {
          for (const retry of cursor.takeDue(now, limit - out.length)) {
            const size = sizeOf(retry.message);
            budget -= size;
            out.push({ cursor, message: retry.message, bytes: size, retry });
          }
          const next = cursor.retryAt();
          if (next !== undefined) deadline = Math.min(deadline, next);
        }
      }
      const readyAt = cursor.readyAt();
      if (readyAt === undefined) continue;
      if (readyAt > now) {
        deadline = Math.min(deadline, readyAt);
        continue;
      }
      const end = ends.get(cursor.key) ?? 0;
      if (cursor.position >= end) continue;
      const room = Math.min(limit - out.length, perPartition - cursor.inFlight);
      if (room <= 0) continue;
      const rows = this.#store.fetch(cursor.topic, cursor.partition, cursor.position, room);
      // Nothing (or a gap) at the position: retention removed records this group had not read.
      const first = rows[0]?.off ?? end;
      if (first > cursor.position) {
        onSkip({ topic: cursor.topic, partition: cursor.partition, from: cursor.position, to: first });
        cursor.position = first;
      }
      for (const row of rows) {
        if (row.not_before !== null && row.not_before > now) {
          // Head-of-line within this partition only: its later messages wait, other partitions flow.
          cursor.blockedUntil = row.not_before;
          deadline = Math.min(deadline, row.not_before);
          break;
        }
        if (budget <= 0 && out.length > 0) break;
        cursor.handOut(row.off);
        const message = toMessage(cursor, row);
        const size = sizeOf(message);
        budget -= size;
        out.push({ cursor, message, bytes: size });
      }
    }
    this.deadline = deadline;
    return out;
  }

  /** Whether a cursor is still one of the held partitions (a lost one's results no longer count). */
  holds(cursor: PartitionCursor): boolean {
    return this.#cursors.get(cursor.key) === cursor;
  }

  /** Commits how far the partitions' handled prefixes reach, and hands back leases being released. */
  commit(touched: Iterable<PartitionCursor>): void {
    const held = new Set([...touched, ...this.#unwritten.keys()].filter((cursor) => this.holds(cursor)));
    const commits: Array<{ topic: string; partition: number; committed: number; cursor: PartitionCursor }> =
      [];
    for (const cursor of held) {
      const committed = cursor.takeCommit() ?? this.#unwritten.get(cursor);
      if (committed !== undefined)
        commits.push({ topic: cursor.topic, partition: cursor.partition, committed, cursor });
    }
    if (commits.length > 0) {
      try {
        const lost = this.#store.commit(commits);
        for (const c of commits) this.#unwritten.delete(c.cursor);
        for (const l of lost) this.#drop(partitionKey(l.topic, l.partition));
      } catch (err) {
        // The cursors have moved on in memory: keep what they took, to be written again.
        for (const c of commits) this.#unwritten.set(c.cursor, c.committed);
        this.#report(err);
      }
    }
    this.#releaseIdle();
  }

  /** Pauses fetching from a held partition until `until` (0 resumes it); false when it is not held. */
  pause(topic: string, partition: number, until: number): boolean {
    const cursor = this.#cursors.get(partitionKey(topic, partition));
    if (!cursor) return false;
    cursor.pausedUntil = until;
    return true;
  }

  /** Leaves the group, releasing every lease. */
  leave(): void {
    try {
      this.#store.leave();
    } catch (err) {
      this.#report(err);
    }
  }

  /** Hands back the leases being released whose messages are all settled (and so committed). */
  #releaseIdle(): void {
    for (const cursor of [...this.#cursors.values()]) {
      // Handed back only once everything handled is committed: a lease released over an unwritten
      // commit would have the next owner handle those messages again.
      if (!cursor.releasing || cursor.inFlight > 0 || this.#unwritten.has(cursor)) continue;
      try {
        this.#store.release(cursor.topic, cursor.partition);
      } catch (err) {
        this.#report(err);
        continue;
      }
      this.#drop(cursor.key);
    }
  }

  #drop(key: string): void {
    const cursor = this.#cursors.get(key);
    if (!cursor) return;
    this.#cursors.delete(key);
    this.#unwritten.delete(cursor);
    if (cursor.inFlight > 0) this.#lost.set(key, cursor);
    this.#list = this.#list.filter((c) => c !== cursor);
  }
}

function toMessage(cursor: PartitionCursor, row: RecordRow): ConsumedMessage {
  const message: ConsumedMessage = {
    topic: cursor.topic,
    partition: cursor.partition,
    offset: row.off,
    value: row.value,
    headers: row.headers === null ? {} : (JSON.parse(row.headers) as Record<string, string>),
    timestamp: row.ts,
  };
  if (row.key !== null) message.key = row.key;
  if (row.not_before !== null) message.notBefore = row.not_before;
  return message;
}
