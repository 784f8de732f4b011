/**
 * The webhooks platform on AWS: DynamoDB tables and a KMS key, five Lambda functions (admin and
 * ingest behind an HTTP API, processor and dispatcher fed by MSK event source mappings, a
 * scheduler run every minute), AppConfig, alarms and a dashboard. Environment-agnostic: the MSK
 * cluster and the network are parameters, nothing is looked up at synth. `docs/aws.md` describes it.
 * Opt-in (`newCluster: 'serverless'`, context or prop): the stack creates an MSK Serverless cluster
 * in the parameters' network and uses it instead of an existing one (no cluster parameters then).
 */
import { Aws, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import { STATIC_MAPPINGS } from '../../src/runtimes/lambda/mapping-settings.ts';
import { WebhooksApi } from './api.ts';
import { WebhooksAppConfig } from './app-config.ts';
import { bundleHandler } from './bundle.ts';
import { WebhooksFunction } from './functions.ts';
import { webhooksKey } from './key.ts';
import { staticMapping } from './mappings.ts';
import { MskArns } from './msk.ts';
import { WebhooksObservability } from './observability.ts';
import { stackParameters } from './parameters.ts';
import { FUNCTION_ACCESS, FUNCTION_KINDS } from './permissions.ts';
import { functionStatements } from './policies.ts';
import { type NewClusterKind, newClusterKind, WebhooksServerlessCluster } from './serverless-cluster.ts';
import { WebhooksTables } from './tables.ts';

/** The code of a function: its esbuild bundle by default (tests pass a small fixture instead). */
export type CodeForFunction = (kind: FunctionKind) => lambda.Code;

export interface WebhooksStackProps extends StackProps {
  /** Each function's code; by default `bundleHandler(kind)` of `src/runtimes/lambda/<kind>.ts`. */
  code?: CodeForFunction;
  /** Tables are named `<prefix>-<table>` (`tableNames`); by default the stack name in lower case. */
  tablePrefix?: string;
  /**
   * Create the MSK cluster instead of taking an existing one as parameters: `serverless` (MSK
   * Serverless, IAM auth, in the `SubnetIds` and `SecurityGroupId` of the parameters). By default
   * the context `newCluster` (`-c newCluster=serverless`); unset, the cluster is a parameter.
   */
  newCluster?: NewClusterKind;
}

/** The real code: each handler bundled with esbuild. */
export const bundledCode: CodeForFunction = (kind) => lambda.Code.fromAsset(bundleHandler(kind));

export class WebhooksStack extends Stack {
  readonly functions: Record<FunctionKind, lambda.Function>;

  constructor(scope: Construct, id: string, props: WebhooksStackProps = {}) {
    super(scope, id, props);
    const code = props.code ?? bundledCode;
    const newCluster = newClusterKind(props.newCluster ?? this.node.tryGetContext('newCluster'));
    const params = stackParameters(this, { existingCluster: newCluster === undefined });
    const cluster =
      params.cluster ??
      new WebhooksServerlessCluster(this, 'Kafka', {
        clusterName: this.stackName.toLowerCase().slice(0, 64),
        subnetIds: params.subnetIds,
        securityGroupId: params.securityGroupId,
      });
    const msk = new MskArns(cluster.clusterArn);
    const key = webhooksKey(this);
    const { tables, prefix } = new WebhooksTables(this, 'Tables', {
      prefix: props.tablePrefix ?? this.stackName.toLowerCase(),
      key,
    });
    const config = new WebhooksAppConfig(this, 'AppConfig');

    const common = {
      WEBHOOKS_BUS: 'kafka',
      WEBHOOKS_STORE: 'dynamodb',
      WEBHOOKS_KAFKA_BROKERS: cluster.bootstrapBrokers,
      WEBHOOKS_KAFKA_TLS: '1',
      WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
      WEBHOOKS_KAFKA_AWS_REGION: Aws.REGION,
      WEBHOOKS_KAFKA_REPLICATION_FACTOR: params.kafkaReplicationFactor,
      WEBHOOKS_DYNAMODB_TABLE_PREFIX: prefix,
      WEBHOOKS_DYNAMODB_REGION: Aws.REGION,
      WEBHOOKS_KMS_KEY_ID: key.keyArn,
      WEBHOOKS_APPCONFIG_APPLICATION: config.applicationId,
      WEBHOOKS_APPCONFIG_ENVIRONMENT: config.environmentId,
      WEBHOOKS_APPCONFIG_PROFILE: config.profileId,
      POWERTOOLS_METRICS_NAMESPACE: 'Webhooks',
      WEBHOOKS_LOG_LEVEL: 'info',
      NODE_OPTIONS: '--enable-source-maps',
    };
    const made = {} as Record<FunctionKind, WebhooksFunction>;
    for (const kind of FUNCTION_KINDS) {
      made[kind] = new WebhooksFunction(this, title(kind), {
        kind,
        code: code(kind),
        environment: { ...common, POWERTOOLS_SERVICE_NAME: kind },
        subnetIds: params.subnetIds,
        securityGroupId: params.securityGroupId,
        // One run at a time: a run that overlaps the next minute's is refused, not doubled.
        ...(kind === 'scheduler' ? { reservedConcurrency: 1 } : {}),
      });
    }
    const functions = Object.fromEntries(FUNCTION_KINDS.map((k) => [k, made[k].function])) as Record<
      FunctionKind,
      lambda.Function
    >;
    this.functions = functions;

    // The admin creates the mappings of the topics it creates at runtime; the scheduler retires those
    // of egress topics left without a subscription (and makes any missing).
    for (const fn of [functions.admin, functions.scheduler]) {
      fn.addEnvironment('WEBHOOKS_MSK_CLUSTER_ARN', cluster.clusterArn);
      fn.addEnvironment('WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION', functions.processor.functionArn);
      fn.addEnvironment('WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION', functions.dispatcher.functionArn);
    }

    for (const kind of FUNCTION_KINDS) {
      const statements = functionStatements(FUNCTION_ACCESS[kind], {
        tables,
        key,
        msk,
        logGroup: made[kind].logGroup,
        appConfigResource: config.profileArn,
        mappedFunctionArns: [functions.processor.functionArn, functions.dispatcher.functionArn],
      });
      for (const statement of statements) made[kind].role.addToPrincipalPolicy(statement);
    }

    for (const { stage, topic } of STATIC_MAPPINGS) {
      staticMapping(this, `${title(stage)}Mapping${title(topic.replace(/[^A-Za-z0-9]+/g, ' '))}`, {
        stage,
        topic,
        clusterArn: cluster.clusterArn,
        fn: functions[stage],
        deployment: prefix,
      });
    }

    // A run that waits (the previous one still going) longer than a minute is dropped, not queued.
    functions.scheduler.configureAsyncInvoke({ maxEventAge: Duration.minutes(1), retryAttempts: 0 });
    new events.Rule(this, 'SchedulerEveryMinute', {
      description: 'Publishes due retries and releases held tasks',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A missed run is made up by the next one, a minute later.
      targets: [
        new targets.LambdaFunction(functions.scheduler, {
          retryAttempts: 0,
          maxEventAge: Duration.minutes(1),
        }),
      ],
    });

    const api = new WebhooksApi(this, 'Api', {
      admin: functions.admin,
      ingest: functions.ingest,
      rateLimit: params.apiRateLimit,
      burstLimit: params.apiBurstLimit,
    });

    new WebhooksObservability(this, 'Observability', {
      functions,
      tables,
      alarmEmail: params.alarmEmail,
      hasAlarmEmail: params.hasAlarmEmail,
      offsetLagThreshold: params.offsetLagThreshold,
    });

    new CfnOutput(this, 'ApiUrl', { value: api.api.apiEndpoint, description: 'Base URL of the HTTP API' });
    new CfnOutput(this, 'KeyArn', { value: key.keyArn, description: 'KMS key of the tables and secrets' });
    new CfnOutput(this, 'TablePrefix', { value: prefix, description: 'DynamoDB tables: <prefix>-<table>' });
    if (cluster instanceof WebhooksServerlessCluster) {
      // Named as the parameters they would fill to deploy on this (retained) cluster as an existing one.
      new CfnOutput(this, 'MskClusterArn', {
        value: cluster.clusterArn,
        description: 'ARN of the MSK Serverless cluster the stack created',
      });
      new CfnOutput(this, 'KafkaBootstrapBrokers', {
        value: cluster.bootstrapBrokers,
        description: 'Bootstrap brokers of that cluster for IAM auth',
      });
    }
  }
}

function title(words: string): string {
  return words
    .split(/[\s_-]+/)
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
