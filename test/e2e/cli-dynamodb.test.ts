/**
 * `webhooks create-tables` against dynalite: creates the DynamoDB store's tables (with their TTL
 * specification) once, and is safe to run again; a store then opens on them without creating anything.
 * And the API on that store, where DynamoDB's own limits show.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DescribeTimeToLiveCommand, DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { SecretBox } from '../../src/common/secret-box.ts';
import { DynamoStore } from '../../src/engines/dynamodb/store.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { CLI, cleanEnv } from '../support/cli.ts';
import { startTestServer } from '../support/server.ts';

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

describe('the API on the DynamoDB store', () => {
  let dynamo: Dynalite;
  before(async () => {
    dynamo = await startDynalite();
  });
  after(() => dynamo.stop());

  test('an id in the path longer than any the platform issues is 404, not the 500 of a key DynamoDB refuses (over 2 KiB)', async () => {
    const server = await startTestServer({
      WEBHOOKS_STORE: 'dynamodb',
      WEBHOOKS_DYNAMODB_ENDPOINT: dynamo.endpoint,
      WEBHOOKS_DYNAMODB_TABLE_PREFIX: `api${randomUUID().slice(0, 8)}`,
      WEBHOOKS_DYNAMODB_REGION: 'eu-west-1',
      WEBHOOKS_DYNAMODB_CREATE_TABLES: '1',
      WEBHOOKS_SECRET_KEY: SecretBox.generateKey(),
    });
    try {
      const long = 'x'.repeat(2100);
      for (const [method, path] of [
        ['GET', `/admin/partners/${long}`],
        ['PATCH', `/admin/partners/${long}`],
        ['GET', `/admin/subscriptions/${long}`],
        ['DELETE', `/admin/subscriptions/${long}`],
        ['GET', `/admin/subscriptions/${long}/held`],
        ['GET', `/admin/api-keys/${long}`],
        ['GET', `/admin/schemas/${long}/created/1`],
      ] as const) {
        const res = await server.request(method, path, method === 'PATCH' ? { name: 'x' } : undefined);
        assert.equal(res.status, 404, `${method} ${path.slice(0, 40)}…: ${JSON.stringify(res.body)}`);
      }
      // A name of the longest allowed length is looked up as usual.
      const found = await server.request('GET', `/admin/partners/${'p'.repeat(64)}`);
      assert.equal(found.body.error.code, 'partner_not_found');
    } finally {
      await server.stop();
    }
  });
});
