/** The pipeline suite (`pipeline-suite.ts`) on the embedded log with the DynamoDB store (dynalite). */
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { runPipelineSuite } from './pipeline-suite.ts';

let dynamo: Dynalite | undefined;
after(() => dynamo?.stop());

runPipelineSuite('embedded bus, dynamodb store', async () => {
  dynamo = await startDynalite();
  return {
    WEBHOOKS_STORE: 'dynamodb',
    WEBHOOKS_DYNAMODB_ENDPOINT: dynamo.endpoint,
    WEBHOOKS_DYNAMODB_CREATE_TABLES: '1',
    WEBHOOKS_DYNAMODB_TABLE_PREFIX: `e2e${randomUUID().slice(0, 8)}`,
  };
});
