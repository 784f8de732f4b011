/**
 * What each function may do, as data: the DynamoDB operations the store engine really sends for
 * the use cases the function runs (read from `src/engines/dynamodb/*.ts`), the Kafka actions of
 * the topics it reads, writes or creates, and its other AWS calls. `policies.ts` turns this into
 * IAM statements; `docs/aws.md` ("Permissions") explains each line.
 *
 * A TransactWriteItems is authorized per action it holds (its Put, Update, Delete, ConditionCheck:
 * PutItem, UpdateItem, DeleteItem, ConditionCheckItem).
 */
import type { TableName } from '../../src/engines/dynamodb/tables.ts';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import { DLQ_TOPIC, type MappedStage } from '../../src/runtimes/lambda/mapping-settings.ts';

/** The functions, in the order the stack creates them. */
export const FUNCTION_KINDS = [
  'admin',
  'ingest',
  'processor',
  'dispatcher',
  'scheduler',
] as const satisfies readonly FunctionKind[];

export type DynamoAction =
  | 'GetItem'
  | 'PutItem'
  | 'UpdateItem'
  | 'DeleteItem'
  | 'ConditionCheckItem'
  | 'Query'
  | 'BatchGetItem'
  | 'DescribeTable';

/** A function's access to one table: item actions on the table, and Query on its indexes. */
export interface TableAccess {
  actions: DynamoAction[];
  /** Query on `<table>/index/*` (listings, the sparse and sharded indexes). */
  indexes?: boolean;
}

export type KafkaClusterAction = 'Connect' | 'DescribeClusterDynamicConfiguration' | 'WriteDataIdempotently';
export type KafkaTopicAction = 'CreateTopic' | 'AlterTopic' | 'DescribeTopic' | 'ReadData' | 'WriteData';
export type KafkaGroupAction = 'DescribeGroup' | 'AlterGroup';

export interface KafkaAccess {
  /** On the cluster. Every client Connects; the idempotent producer (the bus's) needs WriteDataIdempotently. */
  cluster: KafkaClusterAction[];
  /** On topics by name or prefix (`ingress.*`). */
  topics: Array<{ actions: KafkaTopicAction[]; topics: string[] }>;
  /** The consumer groups of the stage's event source mappings (`webhooks-<stage>-*`). */
  groups?: { actions: KafkaGroupAction[]; stage: MappedStage };
}

export interface FunctionAccess {
  tables: Tables;
  kafka: KafkaAccess;
  /** KMS calls of the function itself (the secret sealer): GenerateDataKey seals, Decrypt opens. */
  kms: Array<'GenerateDataKey' | 'Decrypt'>;
  /** Reads the MSK cluster through event source mappings (their pollers use the function's role). */
  eventSource: boolean;
  /**
   * The processor's and dispatcher's event source mappings: `create` (the admin, for the topics it
   * creates: list and create), `reconcile` (the scheduler: list, create the missing, delete the unused).
   */
  manageMappings: false | 'create' | 'reconcile';
}

const INGRESS = 'ingress.*';
const EGRESS = 'egress.*';
const RETRY = 'retry.*';
const DLQ = 'dlq.*';

type Tables = Partial<Record<TableName, TableAccess>>;

/** The held-task release (admin, dispatcher after a 410, scheduler): tasks, and whether still held. */
const RELEASE_HELD: Tables = {
  held_task: { actions: ['GetItem', 'Query', 'BatchGetItem', 'DeleteItem', 'UpdateItem'], indexes: true },
  // A released task's PENDING delivery record is touched (its retention counts from the release).
  event_delivery_status: { actions: ['GetItem', 'UpdateItem'] },
  partner_event_subscription: { actions: ['GetItem'] },
  partner: { actions: ['GetItem'] },
};

/** The union of several tables' accesses (actions in first-seen order). */
function tables(...parts: Tables[]): Tables {
  const out: Tables = {};
  for (const part of parts) {
    for (const [name, access] of Object.entries(part) as Array<[TableName, TableAccess]>) {
      const before = out[name];
      out[name] = {
        actions: [...new Set([...(before?.actions ?? []), ...access.actions])],
        ...(before?.indexes || access.indexes ? { indexes: true } : {}),
      };
    }
  }
  return out;
}

export const FUNCTION_ACCESS: Record<FunctionKind, FunctionAccess> = {
  admin: {
    tables: tables(RELEASE_HELD, {
      // Schemas: insert/update are conditional PutItems; listings Query the table or `by_name`;
      // DescribeTable is /readyz's store check.
      event_schema: { actions: ['GetItem', 'PutItem', 'Query', 'DescribeTable'], indexes: true },
      partner: { actions: ['GetItem', 'PutItem'], indexes: true },
      // Subscriptions with their endpoint items: transactions of Put/Delete on both tables; an
      // endpoint handed over to the subscription left on it is conditioned on that subscription's
      // revision (a ConditionCheck, authorized by ConditionCheckItem).
      partner_event_subscription: {
        actions: ['GetItem', 'PutItem', 'DeleteItem', 'ConditionCheckItem'],
        indexes: true,
      },
      subscription_endpoint: { actions: ['GetItem', 'PutItem', 'DeleteItem'] },
      // Delivery listings: an index Query, then the items read again (BatchGetItem); a redriven
      // dispatcher dead letter sets its delivery back to PENDING (UpdateItem).
      event_delivery_status: { actions: ['GetItem', 'BatchGetItem', 'UpdateItem'], indexes: true },
      delivery_attempt: { actions: ['Query'] },
      // Redrive claims each dead letter in the ledger.
      idempotency_ledger: { actions: ['GetItem', 'UpdateItem', 'DeleteItem'] },
      dead_letter: { actions: ['BatchGetItem', 'UpdateItem'], indexes: true },
      // Keys: two items written in one transaction; authentication reads by hash, `touch` updates.
      api_key: { actions: ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem'], indexes: true },
      audit_log: { actions: ['PutItem'], indexes: true },
      // A publish with a later due time (through the Lambda bus) is kept here for the scheduler.
      scheduled_message: { actions: ['PutItem'] },
    }),
    kafka: {
      // No DescribeCluster: the bus asks for metadata (Connect), never Kafka's DescribeCluster.
      cluster: ['Connect', 'WriteDataIdempotently'],
      topics: [
        // Schema and subscription admin ensure ingress/egress topics; the pipeline's retry and DLQ
        // topics are ensured at start (createPartitions, AlterTopic, when one has too few).
        { actions: ['CreateTopic', 'DescribeTopic', 'AlterTopic'], topics: [INGRESS, EGRESS, RETRY, DLQ] },
        // Redrive publishes to the topic a dead letter came from; held tasks go back to egress.
        { actions: ['WriteData'], topics: [INGRESS, EGRESS, RETRY] },
      ],
    },
    kms: ['GenerateDataKey', 'Decrypt'],
    eventSource: false,
    manageMappings: 'create',
  },
  ingest: {
    tables: tables({
      // The event's schema versions (one Query of the table).
      event_schema: { actions: ['Query'] },
      // Authentication by key hash, and its `lastUsedAt`.
      api_key: { actions: ['GetItem', 'UpdateItem'] },
    }),
    kafka: {
      cluster: ['Connect', 'WriteDataIdempotently'],
      topics: [{ actions: ['DescribeTopic', 'WriteData'], topics: [INGRESS] }],
    },
    kms: [],
    eventSource: false,
    manageMappings: false,
  },
  processor: {
    tables: tables({
      event_schema: { actions: ['GetItem', 'Query'] },
      partner: { actions: ['GetItem'] },
      // Matching subscriptions of an event: the `by_event` index.
      partner_event_subscription: { actions: [], indexes: true },
      // Routes: the dedupe read (BatchGetItem) and the routing marker (PutItem).
      event_route: { actions: ['PutItem', 'BatchGetItem'] },
      dead_letter: { actions: ['PutItem'] },
      // A retry due later than the invocation can wait.
      scheduled_message: { actions: ['PutItem'] },
    }),
    kafka: {
      cluster: ['Connect', 'DescribeClusterDynamicConfiguration', 'WriteDataIdempotently'],
      topics: [
        { actions: ['DescribeTopic', 'ReadData'], topics: [INGRESS, 'retry.processor.*'] },
        // Delivery tasks, short retries, and the DLQ topic (also the mapping's on-failure destination).
        {
          actions: ['DescribeTopic', 'WriteData'],
          topics: [EGRESS, 'retry.processor.*', DLQ_TOPIC.processor],
        },
      ],
      groups: { actions: ['DescribeGroup', 'AlterGroup'], stage: 'processor' },
    },
    kms: [],
    eventSource: true,
    manageMappings: false,
  },
  dispatcher: {
    // A 410 disables the subscription (GetItem, revision-checked PutItem), which releases its held tasks.
    tables: tables(RELEASE_HELD, {
      partner_event_subscription: { actions: ['GetItem', 'PutItem'] },
      // Deliveries: created with their first attempt (PutItem), later attempts in the item
      // (UpdateItem) or, once they outgrow it, apart in a transaction with the delivery's write.
      event_delivery_status: { actions: ['GetItem', 'PutItem', 'UpdateItem'] },
      delivery_attempt: { actions: ['PutItem'] },
      // The idempotency ledger: claim and complete (UpdateItem), release (DeleteItem).
      idempotency_ledger: { actions: ['GetItem', 'UpdateItem', 'DeleteItem'] },
      // Holding a task is a transaction of a Put and the counter's Update.
      held_task: { actions: ['PutItem', 'UpdateItem'] },
      dead_letter: { actions: ['PutItem'] },
      scheduled_message: { actions: ['PutItem'] },
    }),
    kafka: {
      cluster: ['Connect', 'DescribeClusterDynamicConfiguration', 'WriteDataIdempotently'],
      topics: [
        { actions: ['DescribeTopic', 'ReadData'], topics: [EGRESS, 'retry.dispatcher.*'] },
        // Due retries go back to their egress topic; short retries; the DLQ topic.
        {
          actions: ['DescribeTopic', 'WriteData'],
          topics: [EGRESS, 'retry.dispatcher.*', DLQ_TOPIC.dispatcher],
        },
      ],
      groups: { actions: ['DescribeGroup', 'AlterGroup'], stage: 'dispatcher' },
    },
    kms: ['Decrypt'],
    eventSource: true,
    manageMappings: false,
  },
  scheduler: {
    tables: tables(RELEASE_HELD, {
      // Due messages: a Query per shard of `by_due`, a consistent BatchGetItem, conditional DeleteItems.
      scheduled_message: { actions: ['BatchGetItem', 'DeleteItem'], indexes: true },
      // Reconciling the event source mappings lists every subscription (the `by_id` index).
      partner_event_subscription: { actions: [], indexes: true },
    }),
    kafka: {
      cluster: ['Connect', 'WriteDataIdempotently'],
      topics: [
        // The pipeline's retry and DLQ topics are ensured at start.
        { actions: ['CreateTopic', 'DescribeTopic', 'AlterTopic'], topics: [RETRY, DLQ] },
        // Due messages go back where they were meant to go; released tasks to egress.
        { actions: ['DescribeTopic', 'WriteData'], topics: [INGRESS, EGRESS, RETRY] },
      ],
    },
    kms: [],
    eventSource: false,
    manageMappings: 'reconcile',
  },
};
