/**
 * The admin tables in DynamoDB (`event_schema`, `partner`): each record is a JSON document beside
 * its key and filter attributes, written with conditions (insert if absent, update if the revision
 * is the one read). Listings in key order go through an index whose partition key is a constant
 * (`gpk`): admin tables are small and rarely written, so one partition serves them.
 */

import { ConflictError, NotFoundError } from '../../common/errors.ts';
import type { PartnerRecord, SchemaRecord, SchemaStatus } from '../../common/model.ts';
import type { Page, PageRequest, PartnerRepository, SchemaRepository } from '../../common/ports/store.ts';
import { pageLimit } from '../../common/ports/store.ts';
import { type Db, type Item, isConditionFailed } from './db.ts';
import { and, composite, decodeCursor, docAttributes, Expr, N, readDoc, S, SEP } from './items.ts';
import { collectPage, compareBytes, mergeQueries, streamPageSize } from './listing.ts';

/** Conditional create and revision-checked replace of documents keyed by `key(record)`. */
export class RevisionedDocs<T extends { revision: number }> {
  readonly #db: Db;
  readonly #table: string;
  readonly #label: string;
  readonly #key: (record: T) => Item;
  readonly #attributes: (record: T) => Item;
  readonly #describe: (record: T) => string;

  constructor(
    db: Db,
    spec: {
      table: string;
      /** The record type in messages (the plan's table name). */
      label: string;
      key: (record: T) => Item;
      /** Attributes beside the key and the document (index keys, filters). */
      attributes: (record: T) => Item;
      describe: (record: T) => string;
    },
  ) {
    this.#db = db;
    this.#table = spec.table;
    this.#label = spec.label;
    this.#key = spec.key;
    this.#attributes = spec.attributes;
    this.#describe = spec.describe;
  }

  /** The whole item of a record. */
  item(record: T): Item {
    return {
      ...this.#key(record),
      ...this.#attributes(record),
      revision: N(record.revision),
      ...docAttributes(record),
    };
  }

  async insert(record: T): Promise<void> {
    const stored = { ...record, revision: 1 };
    const e = new Expr();
    try {
      await this.#db.put({
        TableName: this.#table,
        Item: this.item(stored),
        ConditionExpression: `attribute_not_exists(${e.n(Object.keys(this.#key(record))[0]!)})`,
        ...e.params(),
      });
    } catch (err) {
      if (isConditionFailed(err)) throw this.exists(record);
      throw err;
    }
  }

  async get(key: Item): Promise<T | undefined> {
    const item = await this.#db.get(this.#table, key);
    return item ? readDoc<T>(item) : undefined;
  }

  async update(record: T): Promise<T> {
    const stored = { ...record, revision: record.revision + 1 };
    const e = new Expr();
    try {
      await this.#db.put({
        TableName: this.#table,
        Item: this.item(stored),
        ConditionExpression: `${e.n('revision')} = ${e.v(N(record.revision))}`,
        ...e.params(),
      });
    } catch (err) {
      if (isConditionFailed(err)) throw await this.refused(record);
      throw err;
    }
    return stored;
  }

  /** The error of a revision-checked write refused by its condition: not_found or revision_conflict. */
  async refused(record: T): Promise<Error> {
    if (!(await this.#db.get(this.#table, this.#key(record)))) {
      return new NotFoundError('not_found', `${this.#label} ${this.#describe(record)} not found`);
    }
    return new ConflictError(
      'revision_conflict',
      `${this.#label} ${this.#describe(record)} was changed by someone else; read it again and retry`,
    );
  }

  exists(record: T): ConflictError {
    return new ConflictError('already_exists', `${this.#label} ${this.#describe(record)} already exists`);
  }
}

const VERSION_WIDTH = 10;
const schemaPk = (domain: string, event: string) => composite(domain, event);
const schemaSort = (domain: string, event: string, version: number) =>
  composite(domain, event, String(version).padStart(VERSION_WIDTH, '0'));

/** `event_schema`: keyed (domain␀event, version); every schema in name order through `by_name`. */
export class DynamoSchemas implements SchemaRepository {
  readonly #db: Db;
  readonly #table: string;
  readonly #docs: RevisionedDocs<SchemaRecord>;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
    this.#docs = new RevisionedDocs<SchemaRecord>(db, {
      table,
      label: 'event_schema',
      key: (r) => ({ pk: S(schemaPk(r.domain, r.event)), version: N(r.version) }),
      attributes: (r) => ({
        gpk: S('schema'),
        gsk: S(schemaSort(r.domain, r.event, r.version)),
        domain: S(r.domain),
        event: S(r.event),
        status: S(r.status),
      }),
      describe: (r) => `${r.domain}/${r.event}/${r.version}`,
    });
  }

  insert(record: SchemaRecord): Promise<void> {
    return this.#docs.insert(record);
  }

  get(domain: string, event: string, version: number): Promise<SchemaRecord | undefined> {
    return this.#docs.get({ pk: S(schemaPk(domain, event)), version: N(version) });
  }

  async listVersions(domain: string, event: string): Promise<SchemaRecord[]> {
    const e = new Expr();
    const items = await this.#db.queryAll({
      TableName: this.#table,
      KeyConditionExpression: `${e.n('pk')} = ${e.v(S(schemaPk(domain, event)))}`,
      ConsistentRead: true,
      ...e.params(),
    });
    return items.map((i) => readDoc<SchemaRecord>(i));
  }

  async list(
    filter: { domain?: string; event?: string; status?: SchemaStatus },
    page: PageRequest = {},
  ): Promise<Page<SchemaRecord>> {
    const listing = 'schemas';
    const after = page.cursor
      ? (decodeCursor(page.cursor, listing, ['string', 'string', 'number']) as [string, string, number])
      : undefined;
    const limit = pageLimit(page.limit);
    const e = new Expr();
    const status = filter.status !== undefined ? `${e.n('status')} = ${e.v(S(filter.status))}` : undefined;
    let input: Parameters<Db['query']>[0];
    if (filter.domain !== undefined && filter.event !== undefined) {
      // One event's versions: the table's own partition, read consistently.
      let versionAfter: string | undefined;
      if (after) {
        const order = compareTuple([after[0], after[1]], [filter.domain, filter.event]);
        if (order > 0) return { items: [] };
        if (order === 0) versionAfter = `${e.n('version')} > ${e.v(N(after[2]))}`;
      }
      input = {
        TableName: this.#table,
        KeyConditionExpression: and([
          `${e.n('pk')} = ${e.v(S(schemaPk(filter.domain, filter.event)))}`,
          versionAfter,
        ]),
        FilterExpression: status,
        ConsistentRead: true,
      };
    } else {
      // (`#gsk` is named only where a range uses it: DynamoDB refuses an unused attribute name.)
      const from = after ? schemaSort(after[0], after[1], after[2]) + SEP : undefined;
      let range: string | undefined;
      if (filter.domain !== undefined) {
        // The domain's names lie between `domain␀` and `domain\u0001`.
        const high = `${filter.domain}\u0001`;
        const low = from && compareBytes(from, filter.domain + SEP) > 0 ? from : filter.domain + SEP;
        if (compareBytes(low, high) > 0) return { items: [] };
        range = `${e.n('gsk')} BETWEEN ${e.v(S(low))} AND ${e.v(S(high))}`;
      } else if (from) range = `${e.n('gsk')} >= ${e.v(S(from))}`;
      input = {
        TableName: this.#table,
        IndexName: 'by_name',
        KeyConditionExpression: and([`${e.n('gpk')} = ${e.v(S('schema'))}`, range]),
        FilterExpression: and([
          status,
          filter.event !== undefined ? `${e.n('event')} = ${e.v(S(filter.event))}` : undefined,
        ]),
      };
    }
    const query = { ...input, ...e.params() };
    return collectPage<SchemaRecord>({
      listing,
      limit,
      source: mergeQueries(this.#db, [query], 'gsk', false, streamPageSize(limit + 1, 1)),
      records: async (items) => items.map((i) => readDoc<SchemaRecord>(i)),
      position: (r) => [r.domain, r.event, r.version],
    });
  }

  update(record: SchemaRecord): Promise<SchemaRecord> {
    return this.#docs.update(record);
  }
}

/** Compares tuples of strings part by part, as DynamoDB (and SQLite) compare text: by UTF-8 bytes. */
function compareTuple(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    const order = Buffer.compare(Buffer.from(a[i]!, 'utf8'), Buffer.from(b[i]!, 'utf8'));
    if (order !== 0) return order;
  }
  return 0;
}

/** Records of an admin table listed by id through its `by_id` index (constant partition `gpk`). */
export async function listById<T extends { id: string }>(
  db: Db,
  spec: { table: string; gpk: string; listing: string; descending?: boolean; read?: (item: Item) => T },
  page: PageRequest,
  filter?: (e: Expr) => { index: string; partition: string; value: string; filter?: string },
): Promise<Page<T>> {
  const limit = pageLimit(page.limit);
  const after = page.cursor ? (decodeCursor(page.cursor, spec.listing, ['string'])[0] as string) : undefined;
  const e = new Expr();
  const scope = filter?.(e) ?? { index: 'by_id', partition: 'gpk', value: spec.gpk };
  const query = {
    TableName: spec.table,
    IndexName: scope.index,
    KeyConditionExpression: and([
      `${e.n(scope.partition)} = ${e.v(S(scope.value))}`,
      after !== undefined ? `${e.n('id')} ${spec.descending ? '<' : '>'} ${e.v(S(after))}` : undefined,
    ]),
    FilterExpression: 'filter' in scope ? scope.filter : undefined,
    ScanIndexForward: !spec.descending,
    ...e.params(),
  };
  const read = spec.read ?? ((item: Item) => readDoc<T>(item));
  return collectPage<T>({
    listing: spec.listing,
    limit,
    source: mergeQueries(db, [query], 'id', spec.descending ?? false, streamPageSize(limit + 1, 1)),
    records: async (items) => items.map(read),
    position: (r) => [r.id],
  });
}

/** `partner`: keyed by id; listed by id through `by_id`. */
export class DynamoPartners implements PartnerRepository {
  readonly #db: Db;
  readonly #table: string;
  readonly #docs: RevisionedDocs<PartnerRecord>;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
    this.#docs = new RevisionedDocs<PartnerRecord>(db, {
      table,
      label: 'partner',
      key: (r) => ({ id: S(r.id) }),
      attributes: (r) => ({ gpk: S('partner'), status: S(r.status) }),
      describe: (r) => r.id,
    });
  }

  insert(record: PartnerRecord): Promise<void> {
    return this.#docs.insert(record);
  }

  get(id: string): Promise<PartnerRecord | undefined> {
    return this.#docs.get({ id: S(id) });
  }

  list(page: PageRequest = {}): Promise<Page<PartnerRecord>> {
    return listById<PartnerRecord>(
      this.#db,
      { table: this.#table, gpk: 'partner', listing: 'partners' },
      page,
    );
  }

  update(record: PartnerRecord): Promise<PartnerRecord> {
    return this.#docs.update(record);
  }
}
