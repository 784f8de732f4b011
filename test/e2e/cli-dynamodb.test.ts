/**
 * `webhooks create-tables` against dynalite: creates the DynamoDB store's tables (with their TTL
 * specification) once, and is safe to run again; a store then opens on them without creating anything.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DescribeTimeToLiveCommand, DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { DynamoStore } from '../../src/engines/dynamodb/store.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { CLI, cleanEnv } from '../support/cli.ts';

const run = promisify(execFile);

describe('webhooks create-tables', () => {
  let dynamo: Dynalite;
  before(async () => {
    dynamo = await startDynalite();
  });
  after(() => dynamo.stop());

  test('creates the tables once, and again changes nothing; the store then opens on them', async () => {
    const prefix = `cli${randomUUID().slice(0, 8)}`;
    const env = cleanEnv({
      WEBHOOKS_STORE: 'dynamodb',
      WEBHOOKS_DYNAMODB_ENDPOINT: dynamo.endpoint,
      WEBHOOKS_DYNAMODB_TABLE_PREFIX: prefix,
      WEBHOOKS_DYNAMODB_REGION: 'eu-west-1',
    });
    const first = await run(process.execPath, [CLI, 'create-tables'], { env });
    assert.match(first.stdout, new RegExp(`DynamoDB tables ready \\(eu-west-1\\): ${prefix}-`));
    const client = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const tables = (await client.send(new ListTablesCommand({}))).TableNames!.filter((t) =>
      t.startsWith(`${prefix}-`),
    );
    assert.ok(tables.length >= 9, `${tables.length} tables: ${tables.join(', ')}`);
    assert.ok(tables.includes(`${prefix}-event_schema`));
    assert.ok(tables.includes(`${prefix}-idempotency_ledger`));
    const ttl = await client.send(
      new DescribeTimeToLiveCommand({ TableName: `${prefix}-idempotency_ledger` }),
    );
    assert.equal(ttl.TimeToLiveDescription?.TimeToLiveStatus, 'ENABLED');
    const again = await run(process.execPath, [CLI, 'create-tables'], { env });
    assert.match(again.stdout, /DynamoDB tables ready/);
    const store = await DynamoStore.open({
      endpoint: dynamo.endpoint,
      region: 'eu-west-1',
      tablePrefix: prefix,
    });
    await store.ping();
    await store.close();
    client.destroy();
  });
});
