/**
 * `api_key` and `audit_log` in DynamoDB. An API key is two items of its table: the key (by id) and
 * its hash's item (`hash#<sha256>`), which guards the hash's uniqueness and holds a copy of the
 * record, so authentication is one point read. Both are written in one transaction; `lastUsedAt`
 * is an attribute of its own on both (`touch` sets it without touching the revision). Audit
 * entries are listed newest first by their time-ordered ids, through `by_id` or `by_actor`.
 */
import { ConflictError } from '../../common/errors.ts';
import type { ApiKeyRecord, AuditRecord } from '../../common/model.ts';
import type {
  ApiKeyRepository,
  AuditFilter,
  AuditRepository,
  Page,
  PageRequest,
} from '../../common/ports/store.ts';
import { listById, RevisionedDocs } from './admin.ts';
import {
  cancellationReasons,
  type Db,
  failedCondition,
  type Item,
  isConditionFailed,
  transactRetrying,
} from './db.ts';
import { docAttributes, Expr, N, readDoc, S, str } from './items.ts';

const HASH = 'hash#';

function keyFrom(item: Item): ApiKeyRecord {
  const record = readDoc<ApiKeyRecord>(item);
  const lastUsedAt = str(item, 'lastUsedAt');
  return lastUsedAt === undefined ? record : { ...record, lastUsedAt };
}

/** The DynamoDB implementation of the API-key repository. */
export class DynamoApiKeys implements ApiKeyRepository {
  readonly #db: Db;
  readonly #table: string;
  readonly #docs: RevisionedDocs<ApiKeyRecord>;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
    this.#docs = new RevisionedDocs<ApiKeyRecord>(db, {
      table,
      label: 'api_key',
      key: (r) => ({ id: S(r.id) }),
      attributes: (r) => ({ gpk: S('api_key'), keyHash: S(r.keyHash) }),
      describe: (r) => r.id,
    });
  }

  /** The item of a key, or of its hash: the document without `lastUsedAt`, which is an attribute. */
  #item(record: ApiKeyRecord, hashItem: boolean): Item {
    const { lastUsedAt, ...doc } = record;
    const base = hashItem
      ? {
          id: S(HASH + record.keyHash),
          keyId: S(record.id),
          revision: N(record.revision),
          ...docAttributes(doc),
        }
      : this.#docs.item(doc as ApiKeyRecord);
    return lastUsedAt === undefined ? base : { ...base, lastUsedAt: S(lastUsedAt) };
  }

  async insert(record: ApiKeyRecord): Promise<void> {
    const stored = { ...record, revision: 1 };
    const a = new Expr();
    const b = new Expr();
    try {
      await transactRetrying(this.#db, [
        {
          Put: {
            TableName: this.#table,
            Item: this.#item(stored, false),
            ConditionExpression: `attribute_not_exists(${a.n('id')})`,
            ...a.params(),
          },
        },
        {
          Put: {
            TableName: this.#table,
            Item: this.#item(stored, true),
            ConditionExpression: `attribute_not_exists(${b.n('id')})`,
            ...b.params(),
          },
        },
      ]);
    } catch (err) {
      const reasons = cancellationReasons(err);
      if (reasons && (failedCondition(reasons, 0) || failedCondition(reasons, 1)))
        throw this.#docs.exists(record);
      throw err;
    }
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const item = await this.#db.get(this.#table, { id: S(id) });
    return item ? keyFrom(item) : undefined;
  }

  async findByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const item = await this.#db.get(this.#table, { id: S(HASH + keyHash) });
    return item ? keyFrom(item) : undefined;
  }

  list(page: PageRequest = {}): Promise<Page<ApiKeyRecord>> {
    return listById<ApiKeyRecord>(
      this.#db,
      { table: this.#table, gpk: 'api_key', listing: 'api-keys', read: keyFrom },
      page,
    );
  }

  /**
   * Revision-checked replace of both items in one transaction (the hash's item moved if the hash
   * changed). `lastUsedAt` is left to `touch`, unless the stored key has none yet.
   */
  async update(record: ApiKeyRecord): Promise<ApiKeyRecord> {
    const before = await this.get(record.id);
    if (!before || before.revision !== record.revision) throw await this.#docs.refused(record);
    const stored = { ...record, revision: record.revision + 1 };
    const lastUsedAt = before.lastUsedAt ?? record.lastUsedAt;
    const kept = lastUsedAt === undefined ? { ...stored, lastUsedAt: undefined } : { ...stored, lastUsedAt };
    const a = new Expr();
    const b = new Expr();
    const actions = [
      {
        Put: {
          TableName: this.#table,
          Item: this.#item(kept, false),
          ConditionExpression: `${a.n('revision')} = ${a.v(N(record.revision))}`,
          ...a.params(),
        },
      },
      {
        Put: {
          TableName: this.#table,
          Item: this.#item(kept, true),
          ConditionExpression:
            before.keyHash === record.keyHash
              ? `${b.n('keyId')} = ${b.v(S(record.id))}`
              : `attribute_not_exists(${b.n('id')})`,
          ...b.params(),
        },
      },
      ...(before.keyHash === record.keyHash
        ? []
        : [{ Delete: { TableName: this.#table, Key: { id: S(HASH + before.keyHash) } } }]),
    ];
    try {
      await transactRetrying(this.#db, actions);
    } catch (err) {
      const reasons = cancellationReasons(err);
      if (!reasons) throw err;
      if (failedCondition(reasons, 0)) throw await this.#docs.refused(record);
      if (failedCondition(reasons, 1)) throw this.#docs.exists(record);
      throw err;
    }
    return { ...stored, ...(lastUsedAt !== undefined ? { lastUsedAt } : {}) };
  }

  /** Sets `lastUsedAt` on the key and its hash's item (two UpdateItems; not revision-checked). */
  async touch(id: string, at: string): Promise<void> {
    const key = await this.get(id);
    if (!key) return;
    await Promise.all(
      [{ id: S(id) }, { id: S(HASH + key.keyHash) }].map(async (Key) => {
        const e = new Expr();
        try {
          await this.#db.update({
            TableName: this.#table,
            Key,
            UpdateExpression: `SET ${e.n('lastUsedAt')} = ${e.v(S(at))}`,
            ConditionExpression: `attribute_exists(${e.n('id')})`,
            ...e.params(),
          });
        } catch (err) {
          if (!isConditionFailed(err)) throw err;
        }
      }),
    );
  }
}

/** The DynamoDB implementation of the audit log. */
export class DynamoAudit implements AuditRepository {
  readonly #db: Db;
  readonly #table: string;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
  }

  async append(record: AuditRecord): Promise<void> {
    const e = new Expr();
    try {
      await this.#db.put({
        TableName: this.#table,
        Item: { id: S(record.id), gpk: S('audit'), actor: S(record.actor), ...docAttributes(record) },
        ConditionExpression: `attribute_not_exists(${e.n('id')})`,
        ...e.params(),
      });
    } catch (err) {
      if (isConditionFailed(err))
        throw new ConflictError('already_exists', `audit_log ${record.id} already exists`);
      throw err;
    }
  }

  list(filter: AuditFilter, page: PageRequest = {}): Promise<Page<AuditRecord>> {
    const actor = filter.actor;
    return listById<AuditRecord>(
      this.#db,
      { table: this.#table, gpk: 'audit', listing: 'audit', descending: true },
      page,
      actor === undefined ? undefined : () => ({ index: 'by_actor', partition: 'actor', value: actor }),
    );
  }
}
