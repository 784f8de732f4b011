/**
 * The DynamoDB store engine: one table per record family of the plan (`event_schema`,
 * `partner_event_subscription`, `event_delivery_status`, `idempotency_ledger`, …) under a
 * configurable prefix, with conditional writes and transactions where the port promises
 * atomicity, Query on keys and indexes for every request-path read (no Scan), and TTL for history.
 * The design is in `docs/dynamodb.md`.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type {
  ApiKeyRepository,
  AuditRepository,
  DeadLetterRepository,
  DeliveryRepository,
  HeldTaskRepository,
  IdempotencyLedger,
  PartnerRepository,
  ScheduledMessageRepository,
  SchemaRepository,
  Store,
  SubscriptionRepository,
} from '../../common/ports/store.ts';
import { awsClientBase } from '../aws/client-config.ts';
import { DynamoApiKeys, DynamoAudit } from './access.ts';
import { DynamoPartners, DynamoSchemas } from './admin.ts';
import { type CapacityReport, Db } from './db.ts';
import { DynamoDeadLetters } from './dead-letters.ts';
import { DynamoDeliveries } from './deliveries.ts';
import { DynamoHeldTasks } from './held-tasks.ts';
import { DynamoLedger } from './ledger.ts';
import { DynamoScheduled } from './scheduled.ts';
import { DynamoSubscriptions } from './subscriptions.ts';
import { createTables, DEFAULT_TABLE_PREFIX, type TableNames, tableNames } from './tables.ts';

export type { CapacityReport } from './db.ts';
export { createTables, DEFAULT_TABLE_PREFIX, tableNames } from './tables.ts';

/** Days history items (deliveries, attempts, routes, dead letters) live after their last write, by default. */
export const DEFAULT_HISTORY_TTL_DAYS = 30;

export interface DynamoStoreOptions {
  client: DynamoDBClient;
  /** Table names are `<prefix>-<table>`; `webhooks` by default. */
  tablePrefix?: string;
  /** Create missing tables first (every call waits for it); off by default. */
  createTables?: boolean;
  /**
   * The TTL of history items, in days after their last write (match the history retention);
   * 0 writes no TTL attribute: history is kept for ever. 30 by default. The store has no purge
   * methods: DynamoDB's TTL deletes history and expired ledger entries at no write cost.
   */
  historyTtlDays?: number;
  /** Whether `close()` destroys the client (true when the store created it). */
  ownsClient?: boolean;
}

export interface DynamoOpenOptions {
  region?: string;
  /** An endpoint of its own (an emulator: dynalite, DynamoDB Local, LocalStack). */
  endpoint?: string;
  tablePrefix?: string;
  createTables?: boolean;
  historyTtlDays?: number;
  /** A client to use instead of one made here (the store then leaves it open on close). */
  client?: DynamoDBClient;
}

/** The DynamoDB implementation of the store port. */
export class DynamoStore implements Store {
  readonly engine = 'dynamodb';
  readonly schemas: SchemaRepository;
  readonly partners: PartnerRepository;
  readonly subscriptions: SubscriptionRepository;
  readonly deliveries: DeliveryRepository;
  readonly ledger: IdempotencyLedger;
  readonly deadLetters: DeadLetterRepository;
  readonly heldTasks: HeldTaskRepository;
  /** `count` is approximate (read from an index): see `scheduled.ts`. */
  readonly scheduled: ScheduledMessageRepository;
  readonly apiKeys: ApiKeyRepository;
  readonly audit: AuditRepository;
  /** The full table names. */
  readonly tables: TableNames;
  readonly #db: Db;
  readonly #ownsClient: boolean;
  #closed = false;

  constructor(options: DynamoStoreOptions) {
    const prefix = options.tablePrefix ?? DEFAULT_TABLE_PREFIX;
    this.tables = tableNames(prefix);
    const ready = options.createTables ? createTables(options.client, { tablePrefix: prefix }) : undefined;
    this.#db = new Db(options.client, ready);
    this.#ownsClient = options.ownsClient ?? false;
    const ttlDays = options.historyTtlDays ?? DEFAULT_HISTORY_TTL_DAYS;
    const t = this.tables;
    this.schemas = new DynamoSchemas(this.#db, t.event_schema);
    this.partners = new DynamoPartners(this.#db, t.partner);
    this.subscriptions = new DynamoSubscriptions(this.#db, {
      subscriptions: t.partner_event_subscription,
      endpoints: t.subscription_endpoint,
    });
    this.deliveries = new DynamoDeliveries(
      this.#db,
      { deliveries: t.event_delivery_status, attempts: t.delivery_attempt, routes: t.event_route },
      ttlDays,
    );
    this.ledger = new DynamoLedger(this.#db, t.idempotency_ledger);
    this.deadLetters = new DynamoDeadLetters(this.#db, t.dead_letter, ttlDays);
    this.heldTasks = new DynamoHeldTasks(this.#db, t.held_task);
    this.scheduled = new DynamoScheduled(this.#db, t.scheduled_message);
    this.apiKeys = new DynamoApiKeys(this.#db, t.api_key);
    this.audit = new DynamoAudit(this.#db, t.audit_log);
  }

  /**
   * A store over a client of its own (or the one given): credentials and region from the SDK's
   * default chain; with an `endpoint` and no credentials in the environment, dummy static ones (an
   * emulator accepts any). Tables are created first when `createTables` is set.
   */
  static async open(options: DynamoOpenOptions = {}): Promise<DynamoStore> {
    const client = options.client ?? newClient(options);
    const store = new DynamoStore({
      client,
      ownsClient: options.client === undefined,
      ...(options.tablePrefix !== undefined ? { tablePrefix: options.tablePrefix } : {}),
      ...(options.createTables !== undefined ? { createTables: options.createTables } : {}),
      ...(options.historyTtlDays !== undefined ? { historyTtlDays: options.historyTtlDays } : {}),
    });
    try {
      await store.#db.ready();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** Capacity units consumed through this store (as DynamoDB reported them) and calls per operation. */
  capacity(): CapacityReport {
    return this.#db.capacity();
  }

  /** A DescribeTable (no capacity): throws when DynamoDB cannot be reached or the tables are missing. */
  async ping(): Promise<void> {
    await this.#db.describe(this.tables.event_schema);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsClient) this.#db.client.destroy();
  }
}

/** Connections to DynamoDB per client (the SDK's default is 50). */
const MAX_SOCKETS = 256;

function newClient(options: DynamoOpenOptions): DynamoDBClient {
  return new DynamoDBClient({
    ...awsClientBase({ region: options.region, endpoint: options.endpoint }),
    // The SDK's default of 50 sockets queues a busy dispatcher's calls (each delivery makes several):
    // more connections, kept alive.
    requestHandler: {
      httpAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
      httpsAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
    },
  });
}
