/**
 * Listings over Query: items in sort-key order from one or several partitions of an index (a
 * sharded time index is several), merged in order; filters are applied by the service, so a page
 * of a Query may hold fewer matches than asked — or none — while more follow: a listing reads on
 * until it has its page (plus one, to know whether another page follows) or the Queries are done.
 */
import type { QueryCommandInput } from '@aws-sdk/client-dynamodb';
import { MAX_PAGE_BYTES, type Page } from '../../common/ports/store.ts';
import type { Db, Item } from './db.ts';
import { encodeCursor, S, str } from './items.ts';

/** The matching items of one Query, page by page, read as they are needed. */
class QueryStream {
  readonly #db: Db;
  readonly #input: QueryCommandInput;
  readonly #pageSize: number;
  #buffer: Item[] = [];
  #next = 0;
  #start: Item | undefined;
  #done = false;

  constructor(db: Db, input: QueryCommandInput, pageSize: number) {
    this.#db = db;
    this.#input = input;
    this.#pageSize = pageSize;
  }

  /** The next item, reading pages (short or empty ones included) until there is one or none is left. */
  async peek(): Promise<Item | undefined> {
    while (this.#next >= this.#buffer.length && !this.#done) {
      const page = await this.#db.query({
        ...this.#input,
        Limit: this.#pageSize,
        ...(this.#start ? { ExclusiveStartKey: this.#start } : {}),
      });
      this.#buffer = page.items;
      this.#next = 0;
      this.#start = page.last;
      this.#done = page.last === undefined;
    }
    return this.#buffer[this.#next];
  }

  take(): void {
    this.#next += 1;
  }
}

/** Compares strings as DynamoDB orders them: by the bytes of their UTF-8. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The items of several Queries over the same sort attribute, merged in their order (each Query must
 * read in that order: `ScanIndexForward` false for descending).
 */
export async function* mergeQueries(
  db: Db,
  inputs: QueryCommandInput[],
  sortAttribute: string,
  descending: boolean,
  pageSize: number,
): AsyncGenerator<Item> {
  const streams = inputs.map((input) => new QueryStream(db, input, pageSize));
  const sortKey = (item: Item): string => item[sortAttribute]?.S ?? item[sortAttribute]?.N ?? '';
  for (;;) {
    const heads = await Promise.all(streams.map((s) => s.peek()));
    let best = -1;
    for (const [i, head] of heads.entries()) {
      if (!head) continue;
      if (best < 0) {
        best = i;
        continue;
      }
      const order = compareBytes(sortKey(head), sortKey(heads[best]!));
      if (descending ? order > 0 : order < 0) best = i;
    }
    if (best < 0) return;
    streams[best]!.take();
    yield heads[best]!;
  }
}

export interface PageSpec<T> {
  /** Names the listing in its cursors (a cursor of another listing is refused). */
  listing: string;
  limit: number;
  /** The index items (or whole items), in listing order. */
  source: AsyncGenerator<Item>;
  /**
   * The records of a run of index items, in their order: undefined for one that is gone, or no
   * longer matches the filter (the index lags the table). Whole items map one to one.
   */
  records: (items: Item[]) => Promise<Array<T | undefined>>;
  /** A record's position in the listing, as its cursor will hold it. */
  position: (record: T) => Array<string | number>;
  /** The record's size as stored, for listings whose pages end after MAX_PAGE_BYTES (see `Page`). */
  sizeOf?: (record: T) => number;
}

/**
 * `PageSpec.records` for an index keyed by `id` whose projection is not the whole item: the items
 * are read again from the table (consistently, in one batch) and kept when they still `match`.
 */
export function rereadById<T>(
  db: Db,
  table: string,
  from: (item: Item) => T,
  match: (record: T) => boolean,
): (items: Item[]) => Promise<Array<T | undefined>> {
  return async (items) => {
    const ids = items.map((i) => str(i, 'id')!);
    const found = await db.batchGet(
      table,
      ids.map((id) => ({ id: S(id) })),
      true,
    );
    const byId = new Map(found.map((i) => [str(i, 'id'), from(i)]));
    return ids.map((id) => {
      const record = byId.get(id);
      return record !== undefined && match(record) ? record : undefined;
    });
  };
}

/** One page: `limit` records (reading one more to know whether there is a next page). */
export async function collectPage<T>(spec: PageSpec<T>): Promise<Page<T>> {
  // The page's size: the limit, or fewer once the records pass the byte budget. One record more
  // (read, or to read) says whether a next page has anything.
  let size = spec.limit;
  let bytes = 0;
  const out: T[] = [];
  let exhausted = false;
  while (out.length <= size && !exhausted) {
    const run: Item[] = [];
    while (run.length <= size - out.length) {
      const next = await spec.source.next();
      if (next.done) {
        exhausted = true;
        break;
      }
      run.push(next.value);
    }
    if (run.length === 0) break;
    for (const record of await spec.records(run)) {
      if (record === undefined) continue;
      out.push(record);
      bytes += spec.sizeOf?.(record) ?? 0;
      if (bytes >= MAX_PAGE_BYTES && out.length < size) size = out.length;
    }
  }
  await spec.source.return(undefined);
  const items = out.slice(0, size);
  const last = items.at(-1);
  return out.length > items.length && last
    ? { items, next: encodeCursor(spec.listing, spec.position(last)) }
    : { items };
}

/** The per-Query page size for a listing of `want` items merged from `streams` Queries. */
export function streamPageSize(want: number, streams: number): number {
  return Math.max(10, Math.ceil(want / streams) + 2);
}
