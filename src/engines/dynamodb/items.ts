/**
 * Hand-written attribute maps (no marshalling library): typed attribute values, JSON documents
 * (compressed when large), expressions with their placeholders, sharding and cursors.
 */
import { createHash } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync } from 'node:zlib';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { invalidCursor } from '../../common/ports/store.ts';
import type { Item } from './db.ts';

export const S = (value: string): AttributeValue => ({ S: value });
export const N = (value: number): AttributeValue => ({ N: String(value) });

export function str(item: Item, name: string): string | undefined {
  return item[name]?.S;
}

export function num(item: Item, name: string): number | undefined {
  const v = item[name]?.N;
  return v === undefined ? undefined : Number(v);
}

/** Documents above this size (bytes of JSON) are stored brotli-compressed, as binary. */
const COMPRESS_ABOVE = 16 * 1024;

/** A JSON document as attributes: `doc` (JSON text), or `docz` (the same, compressed) when large. */
export function docAttributes(value: unknown): Item {
  const json = JSON.stringify(value);
  if (json.length <= COMPRESS_ABOVE) return { doc: S(json) };
  return { docz: { B: brotliCompressSync(Buffer.from(json, 'utf8')) } };
}

/** The JSON document an item holds (see `docAttributes`). */
export function readDoc<T>(item: Item): T {
  const text = item.doc?.S;
  if (text !== undefined) return JSON.parse(text) as T;
  const packed = item.docz?.B;
  if (packed === undefined) throw new Error('a DynamoDB item without its document');
  return JSON.parse(brotliDecompressSync(packed).toString('utf8')) as T;
}

/**
 * One request's expressions and their placeholders: `#name` for attribute names (every one, so
 * reserved words such as `status` need no care) and `:vN` for values. Only what an expression used
 * is sent (the service refuses unused placeholders).
 */
export class Expr {
  readonly #names: Record<string, string> = {};
  readonly #values: Item = {};
  #next = 0;

  /** The placeholder of an attribute name (letters, digits and `_` only). */
  n(attribute: string): string {
    const placeholder = `#${attribute}`;
    this.#names[placeholder] = attribute;
    return placeholder;
  }

  /** The placeholder of a value. */
  v(value: AttributeValue): string {
    const placeholder = `:v${this.#next++}`;
    this.#values[placeholder] = value;
    return placeholder;
  }

  /** `ExpressionAttributeNames` / `ExpressionAttributeValues`, when there are any. */
  params(): { ExpressionAttributeNames?: Record<string, string>; ExpressionAttributeValues?: Item } {
    return {
      ...(Object.keys(this.#names).length > 0 ? { ExpressionAttributeNames: { ...this.#names } } : {}),
      ...(Object.keys(this.#values).length > 0 ? { ExpressionAttributeValues: { ...this.#values } } : {}),
    };
  }
}

/** Conditions joined with AND; undefined when there are none. */
export function and(conditions: Array<string | undefined>): string | undefined {
  const set = conditions.filter((c): c is string => c !== undefined);
  return set.length > 0 ? set.map((c) => `(${c})`).join(' AND ') : undefined;
}

/**
 * Separator of composite sort keys: the lowest code point, so `a\0…` sorts before `a-…` and a
 * composite orders exactly as the tuple of its parts (byte order, as SQLite compares text).
 */
export const SEP = '\u0000';

/** A composite key of parts (none may contain SEP). */
export function composite(...parts: string[]): string {
  return parts.join(SEP);
}

/** The time-and-id sort key of a record: `createdAt␀id`, ordered as (createdAt, id). */
export function timeSort(createdAt: string, id: string): string {
  return composite(createdAt, id);
}

/** Partitions of each sharded time index: writes spread over this many partition keys. */
export const TIME_SHARDS = 8;

/** The shard of a key (FNV-1a of its UTF-16 code units), 0 … TIME_SHARDS - 1. */
export function shardOf(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % TIME_SHARDS;
}

export const SHARDS: readonly number[] = Array.from({ length: TIME_SHARDS }, (_, i) => i);

/** A hex SHA-256, for keys built from values that may be longer than a key may be. */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Epoch seconds of an ISO time plus `days`, for a TTL attribute (undefined for a bad time). */
export function ttlAfter(iso: string, days: number): number | undefined {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? Math.ceil(ms / 1000) + Math.round(days * 86_400) : undefined;
}

/**
 * An opaque cursor: base64url of JSON naming the listing and the position of the last item
 * returned (its sort key: the part of its LastEvaluatedKey that orders it).
 */
export function encodeCursor(listing: string, position: Array<string | number>): string {
  return Buffer.from(JSON.stringify({ l: listing, p: position })).toString('base64url');
}

/** The position in a cursor of `listing`; ValidationError `cursor_invalid` for anything else. */
export function decodeCursor(
  cursor: string,
  listing: string,
  kinds: Array<'string' | 'number'>,
): Array<string | number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  const { l, p } = (parsed ?? {}) as { l?: unknown; p?: unknown };
  if (l !== listing || !Array.isArray(p) || p.length !== kinds.length) throw invalidCursor();
  p.forEach((part, i) => {
    if (typeof part !== kinds[i]) throw invalidCursor();
  });
  return p as Array<string | number>;
}
