/**
 * Identifiers. UUIDv7 (RFC 9562 §5.7) because its leading 48-bit timestamp makes ids sort by
 * creation time, which keeps store indexes append-mostly and log listings in order.
 */

import { createHash } from 'node:crypto';
import { ValidationError } from './errors.ts';

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const UUID_V7_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const COUNTER_MAX = 0xfff;

// RFC 9562 §6.2 method 1: a 12-bit counter in rand_a. A fresh millisecond seeds it randomly in the
// lower half, so at least 2048 ids fit in one millisecond before we borrow the next one.
let lastMs = -1;
let counter = 0;

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

// Random bytes drawn 4 KiB at a time: one call to the CSPRNG per 409 ids instead of one per id
// (each call costs microseconds, and every request takes an id).
const POOL_BYTES = 4096;
let pool = new Uint8Array(0);
let poolAt = 0;

function randomTen(): Uint8Array {
  if (poolAt + 10 > pool.length) {
    pool = crypto.getRandomValues(new Uint8Array(POOL_BYTES));
    poolAt = 0;
  }
  poolAt += 10;
  return pool.subarray(poolAt - 10, poolAt);
}

/** A new RFC 9562 UUIDv7 (time-ordered; monotonic within the same millisecond in this process). */
export function uuidv7(): string {
  const random = randomTen();
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    counter = ((random[0]! << 8) | random[1]!) & 0x7ff;
  } else {
    // Same millisecond, or the clock stepped back: keep counting on the last timestamp so ids
    // never go backwards; on counter overflow advance the timestamp by one millisecond.
    counter += 1;
    if (counter > COUNTER_MAX) {
      lastMs += 1;
      counter = 0;
    }
  }

  const bytes = timedBytes(lastMs);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (random[2]! & 0x3f);
  bytes.set(random.subarray(3), 9);
  return format(bytes);
}

/** The 16 bytes of a UUIDv7 with its first 48 bits set to `ms` (whole ms since the epoch, at least 0). */
function timedBytes(ms: number): Uint8Array {
  const bytes = new Uint8Array(16);
  let t = Math.max(0, Math.floor(ms));
  for (let i = 5; i >= 0; i--) {
    bytes[i] = t % 256;
    t = Math.floor(t / 256);
  }
  return bytes;
}

function format(bytes: Uint8Array): string {
  let hex = '';
  for (const byte of bytes) hex += HEX[byte];
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A UUIDv7 made from a time and a key instead of the clock and randomness: the same key and time
 * always give the same id (an entry written again after a redelivery is recognised), and ids still
 * sort by time. The 74 "random" bits are the first bits of SHA-256(key).
 */
export function uuidv7From(ms: number, key: string): string {
  const digest = createHash('sha256').update(key).digest();
  const bytes = timedBytes(ms);
  bytes[6] = 0x70 | (digest[0]! & 0x0f);
  bytes[7] = digest[1]!;
  bytes[8] = 0x80 | (digest[2]! & 0x3f);
  bytes.set(digest.subarray(3, 10), 9);
  return format(bytes);
}

/**
 * The id of what one stage writes about one record it read (a dead letter, a held task): the same
 * for every read of the record, so a batch redelivered after a crash writes it once.
 */
export function recordId(
  kind: string,
  record: { topic: string; partition: number; offset: number; timestamp: number },
  extra = '',
): string {
  return uuidv7From(record.timestamp, recordKey(kind, record, extra));
}

/** What the ids of `recordId` and `positionalRecordId` hash: the kind, the record's position, `extra`. */
function recordKey(
  kind: string,
  record: { topic: string; partition: number; offset: number },
  extra: string,
) {
  return `${kind}\n${record.topic}\n${record.partition}\n${record.offset}\n${extra}`;
}

/**
 * As `recordId`, but ordered by the record's position as well as its time: a UUIDv7 whose 42 bits
 * after the timestamp are the record's offset, then 32 bits of SHA-256(kind, topic, partition,
 * offset, extra). Records of one append share their timestamp (every record of an embedded-log
 * append, often a Kafka producer batch), so ids whose bits after the time are a hash list them in
 * hash order; held tasks are released in the order of their ids, and must keep their partition's.
 */
export function positionalRecordId(
  kind: string,
  record: { topic: string; partition: number; offset: number; timestamp: number },
  extra = '',
): string {
  const digest = createHash('sha256')
    .update(recordKey(kind, record, extra))
    .digest();
  const bytes = timedBytes(record.timestamp);
  // 42 bits of the offset: 12 in rand_a, 30 in rand_b (after the version and variant bits).
  const offset = Math.max(0, Math.floor(record.offset)) % 2 ** 42;
  const high = Math.floor(offset / 2 ** 30); // 12 bits
  const low = offset % 2 ** 30; // 30 bits
  bytes[6] = 0x70 | (high >> 8);
  bytes[7] = high & 0xff;
  bytes[8] = 0x80 | (low >>> 24);
  bytes[9] = (low >>> 16) & 0xff;
  bytes[10] = (low >>> 8) & 0xff;
  bytes[11] = low & 0xff;
  bytes.set(digest.subarray(0, 4), 12);
  return format(bytes);
}

/** True for a syntactically valid UUID (any version), lower or upper case. */
export function isUuid(value: unknown): boolean {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}

/** Milliseconds since epoch encoded in a UUIDv7; throws ValidationError for anything else. */
export function uuidv7Time(id: string): number {
  if (!UUID_V7_PATTERN.test(id)) {
    throw new ValidationError('invalid_uuid', 'expected a UUIDv7', {
      details: [{ field: 'id', message: 'not a version 7 UUID' }],
    });
  }
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
