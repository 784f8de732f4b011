/**
 * The CDK app: one environment-agnostic stack (region and account come from the deploying
 * credentials; the MSK cluster and the network are parameters). `npm run synth`, or
 * `cdk deploy --app "node infra/bin/app.ts" --parameters …` (`docs/aws.md`, "Deploying").
 * Context: `stackName` (default `Webhooks`), `tablePrefix` (default: the stack name in lower case),
 * `newCluster=serverless` (the stack creates an MSK Serverless cluster instead of taking an existing
 * one as parameters; the stack reads it from the context itself).
 */
import { App } from 'aws-cdk-lib';
import { WebhooksStack } from '../lib/webhooks-stack.ts';

const app = new App();
const stackName = (app.node.tryGetContext('stackName') as string | undefined) ?? 'Webhooks';
const tablePrefix = app.node.tryGetContext('tablePrefix') as string | undefined;
new WebhooksStack(app, stackName, {
  description: 'Webhooks platform: partner webhook delivery on Lambda, MSK and DynamoDB',
  ...(tablePrefix ? { tablePrefix } : {}),
});
app.synth();
