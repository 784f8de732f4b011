/**
 * The store port. Components depend on these interfaces only; engines (SQLite, DynamoDB) implement
 * them and must pass the one conformance suite in `test/conformance/store.ts`.
 *
 * Write semantics every engine guarantees:
 * - `insert` is a conditional create: ConflictError `already_exists` when the key is taken.
 * - `update` is a conditional replace on `revision`: it succeeds only if the stored revision equals
 *   the record's, writes `revision + 1` and returns the stored record; otherwise ConflictError
 *   `revision_conflict` (or NotFoundError `not_found` when the key is gone).
 */
import type {
  PartnerRecord,
  SchemaRecord,
  SchemaStatus,
  SubscriptionRecord,
  SubscriptionStatus,
} from '../model.ts';

/** A page of a listing; `next` is an opaque cursor for the following page. */
export interface Page<T> {
  items: T[];
  next?: string;
}

export interface PageRequest {
  limit?: number;
  cursor?: string;
}

export interface SchemaRepository {
  insert(record: SchemaRecord): Promise<void>;
  get(domain: string, event: string, version: number): Promise<SchemaRecord | undefined>;
  /** Every version of one event's schema, ascending by version. */
  listVersions(domain: string, event: string): Promise<SchemaRecord[]>;
  /** Schemas ordered by domain, event, version. */
  list(
    filter: { domain?: string; event?: string; status?: SchemaStatus },
    page?: PageRequest,
  ): Promise<Page<SchemaRecord>>;
  update(record: SchemaRecord): Promise<SchemaRecord>;
}

export interface PartnerRepository {
  insert(record: PartnerRecord): Promise<void>;
  get(id: string): Promise<PartnerRecord | undefined>;
  /** Partners ordered by id. */
  list(page?: PageRequest): Promise<Page<PartnerRecord>>;
  update(record: PartnerRecord): Promise<PartnerRecord>;
}

export interface SubscriptionFilter {
  partnerId?: string;
  domain?: string;
  event?: string;
  status?: SubscriptionStatus;
}

export interface SubscriptionRepository {
  insert(record: SubscriptionRecord): Promise<void>;
  get(id: string): Promise<SubscriptionRecord | undefined>;
  /** Subscriptions ordered by id (ids are time-ordered UUIDv7, so by creation). */
  list(filter: SubscriptionFilter, page?: PageRequest): Promise<Page<SubscriptionRecord>>;
  update(record: SubscriptionRecord): Promise<SubscriptionRecord>;
  /** Removes a subscription; false when there was none. */
  delete(id: string): Promise<boolean>;
}

/** The whole store: one repository per table, plus health and lifecycle. */
export interface Store {
  readonly engine: string;
  readonly schemas: SchemaRepository;
  readonly partners: PartnerRepository;
  readonly subscriptions: SubscriptionRepository;
  /** Throws when the engine cannot be reached (used by /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_PAGE_LIMIT = 100;
export const MAX_PAGE_LIMIT = 1000;
