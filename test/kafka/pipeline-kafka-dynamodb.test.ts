/** The pipeline suite on the Kafka bus (a real Apache Kafka broker) with the DynamoDB store (dynalite). */
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { runPipelineSuite } from '../e2e/pipeline-suite.ts';
import { broker, stopBroker } from '../support/kafka.ts';

let dynamo: Dynalite | undefined;
after(async () => {
  await stopBroker();
  await dynamo?.stop();
});

runPipelineSuite('kafka bus, dynamodb store', async () => {
  dynamo = await startDynalite();
  return {
    WEBHOOKS_BUS: 'kafka',
    WEBHOOKS_KAFKA_BROKERS: (await broker()).bootstrap,
    WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS: '6000',
    WEBHOOKS_STORE: 'dynamodb',
    WEBHOOKS_DYNAMODB_ENDPOINT: dynamo.endpoint,
    WEBHOOKS_DYNAMODB_CREATE_TABLES: '1',
    WEBHOOKS_DYNAMODB_TABLE_PREFIX: `e2e${randomUUID().slice(0, 8)}`,
  };
});
