/**
 * The DynamoDB store's tables: their keys, global secondary indexes and TTL attribute (described in
 * `docs/dynamodb.md`), and `createTables`, which creates the missing ones.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AttributeDefinition,
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  type GlobalSecondaryIndex,
  type Projection,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { ConfigError } from '../../common/errors.ts';

export const DEFAULT_TABLE_PREFIX = 'webhooks';

/** The attribute every item with an expiry carries (epoch seconds), named in each table's TTL spec. */
export const TTL_ATTRIBUTE = 'ttl';

type KeyPart = [name: string, type: 'S' | 'N'];

interface IndexDef {
  name: string;
  hash: KeyPart;
  range?: KeyPart;
  /** `ALL`, `KEYS_ONLY`, or the non-key attributes to project (`INCLUDE`). */
  projection: 'ALL' | 'KEYS_ONLY' | string[];
}

interface TableDef {
  hash: KeyPart;
  range?: KeyPart;
  indexes: IndexDef[];
  ttl: boolean;
}

/** Attributes the delivery indexes carry, so every listing filter is applied by the service. */
const DELIVERY_PROJECTION = ['status', 'eventId', 'subscriptionId', 'partnerId'];
const DEAD_LETTER_PROJECTION = ['stage', 'reason', 'redrivenAt', 'subscriptionId', 'eventId'];

/** Every table, by its name without the prefix. */
export const TABLE_DEFS = {
  event_schema: {
    hash: ['pk', 'S'],
    range: ['version', 'N'],
    indexes: [{ name: 'by_name', hash: ['gpk', 'S'], range: ['gsk', 'S'], projection: 'ALL' }],
    ttl: false,
  },
  partner: {
    hash: ['id', 'S'],
    indexes: [{ name: 'by_id', hash: ['gpk', 'S'], range: ['id', 'S'], projection: 'ALL' }],
    ttl: false,
  },
  partner_event_subscription: {
    hash: ['id', 'S'],
    indexes: [
      { name: 'by_partner', hash: ['partnerId', 'S'], range: ['id', 'S'], projection: 'ALL' },
      { name: 'by_event', hash: ['eventKey', 'S'], range: ['id', 'S'], projection: 'ALL' },
      { name: 'by_id', hash: ['gpk', 'S'], range: ['id', 'S'], projection: 'ALL' },
    ],
    ttl: false,
  },
  subscription_endpoint: { hash: ['endpoint', 'S'], indexes: [], ttl: false },
  event_delivery_status: {
    hash: ['id', 'S'],
    indexes: [
      { name: 'by_time', hash: ['tshard', 'N'], range: ['tsort', 'S'], projection: DELIVERY_PROJECTION },
      { name: 'by_event', hash: ['eventId', 'S'], range: ['tsort', 'S'], projection: DELIVERY_PROJECTION },
      {
        name: 'by_subscription',
        hash: ['subscriptionId', 'S'],
        range: ['tsort', 'S'],
        projection: DELIVERY_PROJECTION,
      },
      {
        name: 'by_partner',
        hash: ['partnerId', 'S'],
        range: ['tsort', 'S'],
        projection: DELIVERY_PROJECTION,
      },
    ],
    ttl: true,
  },
  // Only the attempts that no longer fit in their delivery's item (see deliveries.ts).
  delivery_attempt: { hash: ['deliveryId', 'S'], range: ['attempt', 'N'], indexes: [], ttl: true },
  // Routes and ledger entries are only ever read by key, and expire by TTL: no index to write.
  event_route: { hash: ['ek', 'S'], indexes: [], ttl: true },
  idempotency_ledger: { hash: ['key', 'S'], indexes: [], ttl: true },
  dead_letter: {
    hash: ['id', 'S'],
    indexes: [
      { name: 'by_time', hash: ['tshard', 'N'], range: ['tsort', 'S'], projection: DEAD_LETTER_PROJECTION },
      {
        name: 'by_subscription',
        hash: ['subscriptionId', 'S'],
        range: ['tsort', 'S'],
        projection: DEAD_LETTER_PROJECTION,
      },
      { name: 'by_event', hash: ['eventId', 'S'], range: ['tsort', 'S'], projection: DEAD_LETTER_PROJECTION },
    ],
    ttl: true,
  },
  held_task: {
    hash: ['sub', 'S'],
    range: ['sk', 'S'],
    indexes: [{ name: 'by_held', hash: ['held', 'S'], range: ['sub', 'S'], projection: 'KEYS_ONLY' }],
    ttl: false,
  },
  // No TTL: a kept message must never vanish before it is published.
  scheduled_message: {
    hash: ['id', 'S'],
    indexes: [{ name: 'by_due', hash: ['shard', 'N'], range: ['due', 'S'], projection: 'KEYS_ONLY' }],
    ttl: false,
  },
  api_key: {
    hash: ['id', 'S'],
    indexes: [{ name: 'by_id', hash: ['gpk', 'S'], range: ['id', 'S'], projection: 'ALL' }],
    ttl: false,
  },
  audit_log: {
    hash: ['id', 'S'],
    indexes: [
      { name: 'by_id', hash: ['gpk', 'S'], range: ['id', 'S'], projection: 'ALL' },
      { name: 'by_actor', hash: ['actor', 'S'], range: ['id', 'S'], projection: 'ALL' },
    ],
    ttl: false,
  },
} satisfies Record<string, TableDef>;

export type TableName = keyof typeof TABLE_DEFS;

/** The full table names under a prefix. */
export type TableNames = Record<TableName, string>;

/** Table names under `prefix` (`<prefix>-<table>`); ConfigError for a prefix DynamoDB would refuse. */
export function tableNames(prefix: string = DEFAULT_TABLE_PREFIX): TableNames {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(prefix)) {
    throw new ConfigError('the DynamoDB table prefix is not valid', {
      details: [{ field: 'tablePrefix', message: 'letters, digits, _ . - only; 1 to 200 characters' }],
    });
  }
  return Object.fromEntries(Object.keys(TABLE_DEFS).map((t) => [t, `${prefix}-${t}`])) as TableNames;
}

/** How long `createTables` waits for a table (and its indexes) to become ACTIVE. */
const ACTIVE_TIMEOUT_MS = 10 * 60_000;

/**
 * Creates the store's tables that do not exist yet under the prefix (on-demand capacity), with
 * their indexes, waits until each is ACTIVE, and enables TTL where a table has one. Safe to run
 * again, and from several processes at once. Existing tables are left as they are.
 */
export async function createTables(
  client: DynamoDBClient,
  options: { tablePrefix?: string } = {},
): Promise<void> {
  const names = tableNames(options.tablePrefix);
  await Promise.all(
    (Object.entries(TABLE_DEFS) as Array<[TableName, TableDef]>).map(([table, def]) =>
      createTable(client, names[table], def),
    ),
  );
}

async function createTable(client: DynamoDBClient, name: string, def: TableDef): Promise<void> {
  if (!(await tableStatus(client, name))) {
    try {
      await client.send(new CreateTableCommand(tableInput(name, def)));
    } catch (err) {
      if ((err as { name?: string }).name !== 'ResourceInUseException') throw err;
    }
  }
  const deadline = Date.now() + ACTIVE_TIMEOUT_MS;
  for (let pause = 10; (await tableStatus(client, name)) !== 'ACTIVE'; pause = Math.min(pause * 2, 2_000)) {
    if (Date.now() > deadline) throw new Error(`DynamoDB table ${name} did not become ACTIVE`);
    await sleep(pause);
  }
  if (def.ttl) await enableTtl(client, name);
}

/** ACTIVE once the table and all its indexes are; undefined when there is no such table. */
async function tableStatus(client: DynamoDBClient, name: string): Promise<string | undefined> {
  try {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
    const indexes = Table?.GlobalSecondaryIndexes ?? [];
    if (Table?.TableStatus === 'ACTIVE' && indexes.some((i) => i.IndexStatus !== 'ACTIVE')) return 'UPDATING';
    return Table?.TableStatus;
  } catch (err) {
    if ((err as { name?: string }).name === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

async function enableTtl(client: DynamoDBClient, name: string): Promise<void> {
  const { TimeToLiveDescription: ttl } = await client.send(
    new DescribeTimeToLiveCommand({ TableName: name }),
  );
  if (ttl?.TimeToLiveStatus === 'ENABLED' || ttl?.TimeToLiveStatus === 'ENABLING') return;
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: name,
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      }),
    );
  } catch (err) {
    // Another process enabled it meanwhile.
    if (!/already enabled/i.test((err as { message?: string }).message ?? '')) throw err;
  }
}

function tableInput(name: string, def: TableDef) {
  const attributes = new Map<string, 'S' | 'N'>();
  const keyOf = (hash: KeyPart, range?: KeyPart) => {
    attributes.set(hash[0], hash[1]);
    if (range) attributes.set(range[0], range[1]);
    return [
      { AttributeName: hash[0], KeyType: 'HASH' as const },
      ...(range ? [{ AttributeName: range[0], KeyType: 'RANGE' as const }] : []),
    ];
  };
  const tableKeys = [def.hash[0], ...(def.range ? [def.range[0]] : [])];
  const indexes: GlobalSecondaryIndex[] = def.indexes.map((index) => {
    const keys = keyOf(index.hash, index.range);
    const indexKeys = new Set([...tableKeys, ...keys.map((k) => k.AttributeName)]);
    const projection: Projection =
      typeof index.projection === 'string'
        ? { ProjectionType: index.projection }
        : { ProjectionType: 'INCLUDE', NonKeyAttributes: index.projection.filter((a) => !indexKeys.has(a)) };
    return { IndexName: index.name, KeySchema: keys, Projection: projection };
  });
  const keySchema = keyOf(def.hash, def.range);
  const definitions: AttributeDefinition[] = [...attributes].map(([AttributeName, AttributeType]) => ({
    AttributeName,
    AttributeType,
  }));
  return {
    TableName: name,
    BillingMode: 'PAY_PER_REQUEST' as const,
    AttributeDefinitions: definitions,
    KeySchema: keySchema,
    ...(indexes.length > 0 ? { GlobalSecondaryIndexes: indexes } : {}),
  };
}
