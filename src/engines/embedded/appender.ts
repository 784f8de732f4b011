/**
 * Appending messages to the embedded log. The publish calls of one event-loop turn (or of a short
 * window under load) share one write transaction through group commit, so one `POST /events` does
 * not pay a whole commit (and, with fsync, a whole disk flush) of its own. Offsets are taken from
 * `partition_log` inside the transaction, so concurrent writers (other processes on the same file)
 * never hand out the same offset. Each call is checked entirely before it writes anything, so a call
 * that fails (an unknown topic) appends nothing and does not fail the other calls of its group.
 */
import type { DatabaseSync } from 'node:sqlite';
import { type BusMessage, checkBusMessage, topicNotFound } from '../../common/ports/bus.ts';
import { partitionKey } from './cursor.ts';
import { partitionForKey } from './partitioner.ts';
import { nextSeq, sql } from './schema.ts';

/** Round-robin counters for unkeyed messages, per topic. */
export type RoundRobin = Map<string, number>;

/**
 * What the appends of one write transaction share: the change sequence it stamps (bumped once, when
 * the transaction begins) and the partition counts of the topics read so far (they cannot change
 * while it holds the write lock).
 */
export interface AppendTransaction {
  seq: number;
  partitions: Map<string, number>;
}

/** Begins what the appends of a write transaction share (call it inside the transaction). */
export function appendTransaction(db: DatabaseSync): AppendTransaction {
  return { seq: nextSeq(db), partitions: new Map() };
}

/**
 * Appends every message or none (an unknown topic fails the whole call with `topic_not_found`);
 * runs inside the caller's write transaction, with what it shares with that transaction's other
 * appends (`appendTransaction`).
 */
export function appendMessages(
  db: DatabaseSync,
  messages: BusMessage[],
  roundRobin: RoundRobin,
  transaction: AppendTransaction,
): void {
  const now = Date.now();
  const partitionsOf = transaction.partitions;
  const byPartition = new Map<string, { topic: string; part: number; messages: BusMessage[] }>();
  for (const message of messages) {
    checkBusMessage(message);
    let partitions = partitionsOf.get(message.topic);
    if (partitions === undefined) {
      partitions = topicPartitions(db, message.topic);
      partitionsOf.set(message.topic, partitions);
    }
    const part = choosePartition(message, partitions, roundRobin);
    const slot = partitionKey(message.topic, part);
    let group = byPartition.get(slot);
    if (!group) {
      group = { topic: message.topic, part, messages: [] };
      byPartition.set(slot, group);
    }
    group.messages.push(message);
  }
  const { seq } = transaction;
  const reserve = sql(
    db,
    `INSERT INTO partition_log (topic, part, next_offset, seq) VALUES (?, ?, ?, ?)
     ON CONFLICT (topic, part) DO UPDATE SET next_offset = next_offset + excluded.next_offset, seq = excluded.seq
     RETURNING next_offset`,
  );
  const insert = sql(
    db,
    `INSERT INTO record (topic, part, off, key, value, headers, ts, not_before)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const { topic, part, messages: batch } of byPartition.values()) {
    const end = (reserve.get(topic, part, batch.length, seq) as { next_offset: number }).next_offset;
    let offset = end - batch.length;
    for (const m of batch) {
      const headers = m.headers && Object.keys(m.headers).length > 0 ? JSON.stringify(m.headers) : null;
      insert.run(topic, part, offset++, m.key ?? null, m.value, headers, now, m.notBefore ?? null);
    }
  }
}

function topicPartitions(db: DatabaseSync, topic: string): number {
  const row = sql(db, 'SELECT partitions FROM topic WHERE name = ?').get(topic) as
    | { partitions: number }
    | undefined;
  if (!row) throw topicNotFound(topic);
  return row.partitions;
}

function choosePartition(message: BusMessage, partitions: number, roundRobin: RoundRobin): number {
  if (message.key !== undefined) return partitionForKey(message.key, partitions);
  // A random start spreads unkeyed messages of several processes over all partitions.
  const next = roundRobin.get(message.topic) ?? Math.floor(Math.random() * partitions);
  roundRobin.set(message.topic, next + 1);
  return next % partitions;
}
