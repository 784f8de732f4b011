/**
 * The DynamoDB tables: one per `TABLE_DEFS` entry, each exactly the table the store engine's own
 * `createTables` would create (keys, attributes, indexes, projections, TTL: compared with the
 * requests it sends to a stand-in client), on demand, with point-in-time recovery, encrypted with
 * the stack's customer-managed key, retained and protected from deletion.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createTables, TABLE_DEFS, TTL_ATTRIBUTE, tableNames } from '../../src/engines/dynamodb/tables.ts';
import { type CfnResource, evaluate, resourcesOf, synthesized } from './support.ts';

const { json } = synthesized();
const tables = Object.values(resourcesOf(json, 'AWS::DynamoDB::Table'));
const byName = new Map(tables.map((t) => [t.Properties!.TableName as string, t]));
const names = tableNames('webhooks');

interface EngineRequests {
  create: Map<string, Record<string, unknown>>;
  ttl: Map<string, Record<string, unknown>>;
}

/** What `createTables` sends for every table, to a client that has none yet. */
async function engineRequests(): Promise<EngineRequests> {
  const create = new Map<string, Record<string, unknown>>();
  const ttl = new Map<string, Record<string, unknown>>();
  const client = {
    async send(command: { constructor: { name: string }; input: Record<string, unknown> }) {
      const input = command.input;
      const name = input.TableName as string;
      switch (command.constructor.name) {
        case 'DescribeTableCommand':
          if (!create.has(name))
            throw Object.assign(new Error('no table'), { name: 'ResourceNotFoundException' });
          return { Table: { TableStatus: 'ACTIVE', GlobalSecondaryIndexes: [] } };
        case 'CreateTableCommand':
          create.set(name, input);
          return {};
        case 'DescribeTimeToLiveCommand':
          return { TimeToLiveDescription: { TimeToLiveStatus: 'DISABLED' } };
        case 'UpdateTimeToLiveCommand':
          ttl.set(name, input.TimeToLiveSpecification as Record<string, unknown>);
          return {};
        default:
          throw new Error(`unexpected ${command.constructor.name}`);
      }
    },
  } as unknown as DynamoDBClient;
  await createTables(client, { tablePrefix: 'webhooks' });
  return { create, ttl };
}

const byAttribute = (a: { AttributeName: string }, b: { AttributeName: string }) =>
  a.AttributeName.localeCompare(b.AttributeName);

describe('DynamoDB tables', () => {
  let engine: EngineRequests;
  before(async () => {
    engine = await engineRequests();
  });

  it('one table per TABLE_DEFS entry, named as the engine names them (<prefix>-<table>)', () => {
    assert.deepStrictEqual([...byName.keys()].toSorted(), Object.values(names).toSorted());
    assert.ok(byName.has('webhooks-scheduled_message'), 'the scheduler’s table is there');
  });

  for (const table of Object.keys(TABLE_DEFS) as Array<keyof typeof TABLE_DEFS>) {
    it(`${table}: the keys, attributes, indexes and TTL createTables would create`, () => {
      const name = names[table];
      const props = byName.get(name)!.Properties!;
      const wanted = engine.create.get(name)!;
      assert.deepStrictEqual(props.KeySchema, wanted.KeySchema);
      assert.deepStrictEqual(
        (props.AttributeDefinitions as Array<{ AttributeName: string }>).toSorted(byAttribute),
        (wanted.AttributeDefinitions as Array<{ AttributeName: string }>).toSorted(byAttribute),
      );
      assert.deepStrictEqual(props.GlobalSecondaryIndexes, wanted.GlobalSecondaryIndexes);
      assert.equal(props.BillingMode, 'PAY_PER_REQUEST');
      assert.equal(wanted.BillingMode, 'PAY_PER_REQUEST');
      if (TABLE_DEFS[table].ttl) {
        assert.deepStrictEqual(props.TimeToLiveSpecification, {
          AttributeName: TTL_ATTRIBUTE,
          Enabled: true,
        });
        assert.deepStrictEqual(engine.ttl.get(name), props.TimeToLiveSpecification);
      } else {
        assert.equal(props.TimeToLiveSpecification, undefined);
      }
    });
  }

  it('every table: point-in-time recovery, SSE with the stack’s KMS key, retained, deletion-protected', () => {
    const [keyId] = Object.keys(resourcesOf(json, 'AWS::KMS::Key'));
    for (const t of tables as CfnResource[]) {
      const p = t.Properties!;
      assert.deepStrictEqual(p.PointInTimeRecoverySpecification, { PointInTimeRecoveryEnabled: true });
      assert.deepStrictEqual(p.SSESpecification, {
        KMSMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
        SSEEnabled: true,
        SSEType: 'KMS',
      });
      assert.equal(p.DeletionProtectionEnabled, true);
      assert.equal(t.DeletionPolicy, 'Retain');
    }
  });

  it('the key: customer managed, rotated yearly, retained, its policy naming each action', () => {
    const keys = Object.values(resourcesOf(json, 'AWS::KMS::Key'));
    assert.equal(keys.length, 1);
    const key = keys[0]!;
    assert.equal(key.Properties!.EnableKeyRotation, true);
    assert.equal(key.DeletionPolicy, 'Retain');
    const policy = evaluate(key.Properties!.KeyPolicy, json) as {
      Statement: Array<{ Sid: string; Principal: unknown; Action: string[] }>;
    };
    assert.deepStrictEqual(
      policy.Statement.map((s) => s.Sid),
      ['KeyAdministration', 'KeyUseThroughIam'],
    );
    for (const s of policy.Statement) {
      assert.deepStrictEqual(s.Principal, { AWS: 'arn:aws:iam::123456789012:root' });
      assert.ok(s.Action.every((a) => a.startsWith('kms:') && !a.includes('*')));
    }
  });
});
