/**
 * `partner_event_subscription` in DynamoDB, with `subscription_endpoint`: one item per endpoint
 * (partner, domain, event, url), keyed by the SHA-256 of the four, naming the subscription that
 * holds it. A subscription and its endpoint item are written in one TransactWriteItems, the
 * endpoint's put conditional on `attribute_not_exists(endpoint)`: of any number of concurrent
 * creations of one endpoint, in any number of processes, one wins.
 */
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { ConflictError } from '../../common/errors.ts';
import type { SubscriptionRecord } from '../../common/model.ts';
import type {
  Page,
  PageRequest,
  SubscriptionEndpoint,
  SubscriptionFilter,
  SubscriptionRepository,
} from '../../common/ports/store.ts';
import { pageLimit } from '../../common/ports/store.ts';
import { RevisionedDocs } from './admin.ts';
import {
  cancellationReasons,
  type Db,
  failedCondition,
  type Item,
  isConditionFailed,
  transactRetrying,
} from './db.ts';
import { and, composite, decodeCursor, Expr, N, readDoc, S, sha256, str } from './items.ts';
import { collectPage, mergeQueries, streamPageSize } from './listing.ts';

/** How often a write whose reads went stale (another writer in between) is tried again. */
const WRITE_TRIES = 5;

/** The DynamoDB implementation of the subscription repository. */
export class DynamoSubscriptions implements SubscriptionRepository {
  readonly #db: Db;
  readonly #table: string;
  readonly #endpoints: string;
  readonly #docs: RevisionedDocs<SubscriptionRecord>;

  constructor(db: Db, tables: { subscriptions: string; endpoints: string }) {
    this.#db = db;
    this.#table = tables.subscriptions;
    this.#endpoints = tables.endpoints;
    this.#docs = new RevisionedDocs<SubscriptionRecord>(db, {
      table: this.#table,
      label: 'partner_event_subscription',
      key: (r) => ({ id: S(r.id) }),
      attributes: (r) => ({
        gpk: S('subscription'),
        partnerId: S(r.partnerId),
        eventKey: S(composite(r.domain, r.event)),
        domain: S(r.domain),
        event: S(r.event),
        url: S(r.url),
        status: S(r.status),
      }),
      describe: (r) => r.id,
    });
  }

  async insert(record: SubscriptionRecord): Promise<void> {
    const stored = { ...record, revision: 1 };
    for (let tries = 1; ; tries++) {
      const e = new Expr();
      try {
        await transactRetrying(this.#db, [
          {
            Put: {
              TableName: this.#table,
              Item: this.#docs.item(stored),
              ConditionExpression: `attribute_not_exists(${e.n('id')})`,
              ...e.params(),
            },
          },
          this.#take(record),
        ]);
        return;
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        if (failedCondition(reasons, 0)) throw this.#docs.exists(record);
        if (failedCondition(reasons, 1)) {
          const holder = str(reasons[1]?.Item ?? {}, 'subscriptionId') ?? (await this.#holder(record));
          // The holder left between the write and the read: try again.
          if (holder !== undefined || tries >= WRITE_TRIES) throw endpointTaken(record, holder);
          continue;
        }
        throw err;
      }
    }
  }

  get(id: string): Promise<SubscriptionRecord | undefined> {
    return this.#docs.get({ id: S(id) });
  }

  async findByEndpoint(endpoint: SubscriptionEndpoint): Promise<SubscriptionRecord | undefined> {
    const holder = await this.#holder(endpoint);
    return holder === undefined ? undefined : this.get(holder);
  }

  /**
   * By partner through `by_partner`, by event through `by_event`, otherwise through `by_id` (one
   * partition: subscriptions are admin data); the other filters are applied by the service.
   */
  async list(filter: SubscriptionFilter, page: PageRequest = {}): Promise<Page<SubscriptionRecord>> {
    const listing = 'subscriptions';
    const limit = pageLimit(page.limit);
    const after = page.cursor ? (decodeCursor(page.cursor, listing, ['string'])[0] as string) : undefined;
    const e = new Expr();
    const eq = (attribute: string, value: string | undefined) =>
      value === undefined ? undefined : `${e.n(attribute)} = ${e.v(S(value))}`;
    let index: string;
    let partition: string;
    let rest: Array<string | undefined>;
    if (filter.partnerId !== undefined) {
      index = 'by_partner';
      partition = eq('partnerId', filter.partnerId)!;
      rest = [eq('domain', filter.domain), eq('event', filter.event)];
    } else if (filter.domain !== undefined && filter.event !== undefined) {
      index = 'by_event';
      partition = eq('eventKey', composite(filter.domain, filter.event))!;
      rest = [];
    } else {
      index = 'by_id';
      partition = eq('gpk', 'subscription')!;
      rest = [eq('domain', filter.domain), eq('event', filter.event)];
    }
    const query = {
      TableName: this.#table,
      IndexName: index,
      KeyConditionExpression: and([
        partition,
        after !== undefined ? `${e.n('id')} > ${e.v(S(after))}` : undefined,
      ]),
      FilterExpression: and([...rest, eq('status', filter.status)]),
      ...e.params(),
    };
    return collectPage<SubscriptionRecord>({
      listing,
      limit,
      source: mergeQueries(this.#db, [query], 'id', false, streamPageSize(limit + 1, 1)),
      records: async (items) => items.map((i) => readDoc<SubscriptionRecord>(i)),
      position: (r) => [r.id],
    });
  }

  async update(record: SubscriptionRecord): Promise<SubscriptionRecord> {
    const stored = { ...record, revision: record.revision + 1 };
    for (let tries = 1; ; tries++) {
      const before = await this.get(record.id);
      if (!before || before.revision !== record.revision) throw await this.#docs.refused(record);
      if (sameEndpoint(before, record)) return this.#docs.update(record);
      // Moving to another endpoint: take the new one, and free the old one if this subscription held it.
      const held = (await this.#holder(before)) === record.id;
      const e = new Expr();
      const actions: TransactWriteItem[] = [
        {
          Put: {
            TableName: this.#table,
            Item: this.#docs.item(stored),
            ConditionExpression: `${e.n('revision')} = ${e.v(N(record.revision))}`,
            ...e.params(),
          },
        },
        this.#take(record),
      ];
      if (held) actions.push(this.#free(before));
      try {
        // A conflict with another transaction on the endpoint item (two writers of one endpoint at
        // once) is tried again; then the loser finds the endpoint taken.
        await transactRetrying(this.#db, actions);
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        if (failedCondition(reasons, 0)) throw await this.#docs.refused(record);
        if (failedCondition(reasons, 1)) {
          const holder = str(reasons[1]?.Item ?? {}, 'subscriptionId') ?? (await this.#holder(record));
          if (holder !== undefined || tries >= WRITE_TRIES) throw endpointTaken(record, holder);
        } else if (!failedCondition(reasons, 2) || tries >= WRITE_TRIES) throw err;
        continue;
      }
      if (held) await this.#handOver(before);
      return stored;
    }
  }

  async delete(id: string): Promise<boolean> {
    for (let tries = 1; ; tries++) {
      const before = await this.get(id);
      if (!before) return false;
      const held = (await this.#holder(before)) === id;
      const e = new Expr();
      const remove = {
        TableName: this.#table,
        Key: { id: S(id) },
        ConditionExpression: `${e.n('revision')} = ${e.v(N(before.revision))}`,
        ...e.params(),
      };
      try {
        if (held) await this.#db.transact([{ Delete: remove }, this.#free(before)]);
        else await this.#db.delete(remove);
      } catch (err) {
        // Changed (or deleted) by someone else since it was read: read it again.
        const refused = isConditionFailed(err) || cancellationReasons(err) !== undefined;
        if (!refused || tries >= WRITE_TRIES) throw err;
        continue;
      }
      if (held) await this.#handOver(before);
      return true;
    }
  }

  /** The id of the subscription holding an endpoint. */
  async #holder(endpoint: SubscriptionEndpoint): Promise<string | undefined> {
    const item = await this.#db.get(this.#endpoints, { endpoint: S(endpointKey(endpoint)) });
    return item ? str(item, 'subscriptionId') : undefined;
  }

  /** The conditional put of an endpoint item naming the record (fails when any subscription holds it). */
  #take(record: SubscriptionRecord): TransactWriteItem {
    const e = new Expr();
    return {
      Put: {
        TableName: this.#endpoints,
        Item: endpointItem(record, record.id),
        ConditionExpression: `attribute_not_exists(${e.n('endpoint')})`,
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        ...e.params(),
      },
    };
  }

  /** The delete of the endpoint item `record` holds (conditional on its holding it). */
  #free(record: SubscriptionRecord): TransactWriteItem {
    const e = new Expr();
    return {
      Delete: {
        TableName: this.#endpoints,
        Key: { endpoint: S(endpointKey(record)) },
        ConditionExpression: `${e.n('subscriptionId')} = ${e.v(S(record.id))}`,
        ...e.params(),
      },
    };
  }

  /**
   * Passes a freed endpoint to the oldest other subscription of it, if any: only subscriptions
   * copied in from a store that did not enforce endpoints can share one (see the port). One Query of
   * the partner's subscriptions, through `by_partner`.
   */
  async #handOver(left: SubscriptionRecord): Promise<void> {
    const e = new Expr();
    const items = await this.#db.queryAll({
      TableName: this.#table,
      IndexName: 'by_partner',
      KeyConditionExpression: `${e.n('partnerId')} = ${e.v(S(left.partnerId))}`,
      FilterExpression: and([
        `${e.n('domain')} = ${e.v(S(left.domain))}`,
        `${e.n('event')} = ${e.v(S(left.event))}`,
        `${e.n('url')} = ${e.v(S(left.url))}`,
      ]),
      ...e.params(),
    });
    const candidates = items
      .map((i) => str(i, 'id')!)
      .filter((id) => id !== left.id)
      .sort();
    for (const candidate of candidates) {
      // The index lags: a candidate it lists may have moved to another endpoint since. It is read
      // (consistently) and handed the endpoint only while it is still on it, as read.
      const heir = await this.get(candidate);
      if (!heir || !sameEndpoint(heir, left)) continue;
      const c = new Expr();
      const h = new Expr();
      try {
        await transactRetrying(this.#db, [
          {
            Put: {
              TableName: this.#endpoints,
              Item: endpointItem(left, heir.id),
              ConditionExpression: `attribute_not_exists(${c.n('endpoint')})`,
              ...c.params(),
            },
          },
          {
            ConditionCheck: {
              TableName: this.#table,
              Key: { id: S(heir.id) },
              ConditionExpression: `${h.n('revision')} = ${h.v(N(heir.revision))}`,
              ...h.params(),
            },
          },
        ]);
        return;
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons) throw err;
        // Taken meanwhile (by an insert): nothing to hand over.
        if (failedCondition(reasons, 0)) return;
        // The heir changed meanwhile: the next candidate, or none.
        if (failedCondition(reasons, 1)) continue;
        throw err;
      }
    }
  }
}

/** The endpoint item's key: SHA-256 of the four parts (a url may be longer than a key may be). */
function endpointKey(e: SubscriptionEndpoint): string {
  return sha256(JSON.stringify([e.partnerId, e.domain, e.event, e.url]));
}

function endpointItem(e: SubscriptionEndpoint, subscriptionId: string): Item {
  return {
    endpoint: S(endpointKey(e)),
    subscriptionId: S(subscriptionId),
    partnerId: S(e.partnerId),
    domain: S(e.domain),
    event: S(e.event),
    url: S(e.url),
  };
}

function sameEndpoint(a: SubscriptionEndpoint, b: SubscriptionEndpoint): boolean {
  return a.partnerId === b.partnerId && a.domain === b.domain && a.event === b.event && a.url === b.url;
}

function endpointTaken(record: SubscriptionRecord, holder: string | undefined): ConflictError {
  const who = holder ?? 'another subscription';
  return new ConflictError(
    'already_exists',
    `subscription ${who} already has partner ${record.partnerId}, event ${record.domain}.${record.event} and url ${record.url}`,
    { details: [{ field: 'url', message: `subscription ${who} has this partner, event and url` }] },
  );
}
