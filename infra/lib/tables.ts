/**
 * The DynamoDB tables, every one of `TABLE_DEFS` (the store engine's own definitions: keys, global
 * secondary indexes, projections, TTL) under the engine's names (`tableNames`): what the stack
 * creates is what `createTables` would create. On-demand capacity, point-in-time recovery,
 * encrypted with the stack's key, kept when the stack is deleted.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { TABLE_DEFS, type TableName, TTL_ATTRIBUTE, tableNames } from '../../src/engines/dynamodb/tables.ts';

type KeyPart = readonly [name: string, type: 'S' | 'N'];

interface IndexDef {
  name: string;
  hash: KeyPart;
  range?: KeyPart;
  projection: 'ALL' | 'KEYS_ONLY' | readonly string[];
}

interface TableDef {
  hash: KeyPart;
  range?: KeyPart;
  indexes: readonly IndexDef[];
  ttl: boolean;
}

/** Every table name of the store, in `TABLE_DEFS` order. */
export const TABLES = Object.keys(TABLE_DEFS) as TableName[];

/** The definition of a table (the engine's, read through a structural type). */
export function tableDef(table: TableName): TableDef {
  return TABLE_DEFS[table] as TableDef;
}

export class WebhooksTables extends Construct {
  /** The tables, by their name without the prefix. */
  readonly tables: Record<TableName, dynamodb.Table>;
  readonly prefix: string;

  constructor(scope: Construct, id: string, props: { prefix: string; key: kms.IKey }) {
    super(scope, id);
    this.prefix = props.prefix;
    const names = tableNames(props.prefix);
    const tables = {} as Record<TableName, dynamodb.Table>;
    for (const name of TABLES) tables[name] = this.#table(name, names[name], tableDef(name), props.key);
    this.tables = tables;
  }

  #table(id: string, tableName: string, def: TableDef, key: kms.IKey): dynamodb.Table {
    const table = new dynamodb.Table(this, id, {
      tableName,
      partitionKey: attribute(def.hash),
      ...(def.range ? { sortKey: attribute(def.range) } : {}),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
      ...(def.ttl ? { timeToLiveAttribute: TTL_ATTRIBUTE } : {}),
    });
    const tableKeys = [def.hash[0], ...(def.range ? [def.range[0]] : [])];
    for (const index of def.indexes) {
      const indexKeys = new Set([...tableKeys, index.hash[0], ...(index.range ? [index.range[0]] : [])]);
      table.addGlobalSecondaryIndex({
        indexName: index.name,
        partitionKey: attribute(index.hash),
        ...(index.range ? { sortKey: attribute(index.range) } : {}),
        ...projection(index.projection, indexKeys),
      });
    }
    return table;
  }
}

function attribute([name, type]: KeyPart): dynamodb.Attribute {
  return { name, type: type === 'N' ? dynamodb.AttributeType.NUMBER : dynamodb.AttributeType.STRING };
}

/** An index's projection as the engine creates it: key attributes are never listed in INCLUDE. */
function projection(
  spec: IndexDef['projection'],
  keys: Set<string>,
): { projectionType: dynamodb.ProjectionType; nonKeyAttributes?: string[] } {
  if (spec === 'ALL') return { projectionType: dynamodb.ProjectionType.ALL };
  if (spec === 'KEYS_ONLY') return { projectionType: dynamodb.ProjectionType.KEYS_ONLY };
  return {
    projectionType: dynamodb.ProjectionType.INCLUDE,
    nonKeyAttributes: spec.filter((a) => !keys.has(a)),
  };
}
