/**
 * The Lambda functions: Node.js 24 on arm64, `index.handler`, X-Ray active, in the VPC of the
 * parameters, a log group each, the environment the platform reads (exactly these variables), and
 * the scheduler run every minute, one run at a time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { type FunctionKind, lambdaConfig } from '../../src/runtimes/lambda/container.ts';
import { EXAMPLE, evaluate, logicalId, resourcesOf, synthesized } from './support.ts';

const { stack, template, json } = synthesized();
const KINDS: FunctionKind[] = ['admin', 'ingest', 'processor', 'dispatcher', 'scheduler'];
const fnId = (kind: FunctionKind) => logicalId(stack, stack.functions[kind]);
const props = (kind: FunctionKind) => json.Resources[fnId(kind)]!.Properties!;
const onlyId = (type: string) => Object.keys(resourcesOf(json, type))[0]!;

/** The environment of every function, evaluated with the example parameters. */
function commonEnvironment(kind: FunctionKind): Record<string, string> {
  return {
    WEBHOOKS_BUS: 'kafka',
    WEBHOOKS_STORE: 'dynamodb',
    WEBHOOKS_KAFKA_BROKERS: EXAMPLE.brokers,
    WEBHOOKS_KAFKA_TLS: '1',
    WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
    WEBHOOKS_KAFKA_AWS_REGION: EXAMPLE.region,
    WEBHOOKS_KAFKA_REPLICATION_FACTOR: '3',
    WEBHOOKS_DYNAMODB_TABLE_PREFIX: 'webhooks',
    WEBHOOKS_DYNAMODB_REGION: EXAMPLE.region,
    WEBHOOKS_KMS_KEY_ID: `arn:aws:kms:${EXAMPLE.region}:${EXAMPLE.account}:key/${onlyId('AWS::KMS::Key')}`,
    WEBHOOKS_APPCONFIG_APPLICATION: onlyId('AWS::AppConfig::Application'),
    WEBHOOKS_APPCONFIG_ENVIRONMENT: onlyId('AWS::AppConfig::Environment'),
    WEBHOOKS_APPCONFIG_PROFILE: onlyId('AWS::AppConfig::ConfigurationProfile'),
    POWERTOOLS_SERVICE_NAME: kind,
    POWERTOOLS_METRICS_NAMESPACE: 'Webhooks',
    WEBHOOKS_LOG_LEVEL: 'info',
    NODE_OPTIONS: '--enable-source-maps',
  };
}

describe('Lambda functions', () => {
  it('five functions, one per handler', () => {
    template.resourceCountIs('AWS::Lambda::Function', 5);
  });

  for (const kind of KINDS) {
    it(`${kind}: nodejs24.x, arm64, index.handler, X-Ray active, in the VPC of the parameters`, () => {
      const p = props(kind);
      assert.equal(p.Runtime, 'nodejs24.x');
      assert.deepStrictEqual(p.Architectures, ['arm64']);
      assert.equal(p.Handler, 'index.handler');
      assert.deepStrictEqual(p.TracingConfig, { Mode: 'Active' });
      assert.deepStrictEqual(p.VpcConfig, {
        SubnetIds: { Ref: 'SubnetIds' },
        SecurityGroupIds: [{ Ref: 'SecurityGroupId' }],
      });
      const logGroup = (p.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      assert.equal(json.Resources[logGroup]?.Type, 'AWS::Logs::LogGroup');
      assert.equal(json.Resources[logGroup]?.Properties?.RetentionInDays, 30);
    });

    it(`${kind}: exactly the environment the platform reads`, () => {
      const env = evaluate((props(kind).Environment as { Variables: unknown }).Variables, json);
      const expected: Record<string, string> = commonEnvironment(kind);
      // The admin maps the topics it creates; the scheduler retires the unused mappings.
      if (kind === 'admin' || kind === 'scheduler') {
        const arn = (k: FunctionKind) =>
          `arn:aws:lambda:${EXAMPLE.region}:${EXAMPLE.account}:function:${fnId(k)}`;
        expected.WEBHOOKS_MSK_CLUSTER_ARN = EXAMPLE.clusterArn;
        expected.WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION = arn('processor');
        expected.WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION = arn('dispatcher');
      }
      assert.deepStrictEqual(env, expected);
    });

    it(`${kind}: the platform accepts that environment as its Lambda configuration`, () => {
      const env = evaluate((props(kind).Environment as { Variables: unknown }).Variables, json) as Record<
        string,
        string
      >;
      const config = lambdaConfig(env);
      assert.equal(config.bus, 'kafka');
      assert.equal(config.store, 'dynamodb');
      assert.equal(config.kafka.sasl?.mechanism, 'AWS_MSK_IAM');
      assert.equal(config.kms?.keyId, env.WEBHOOKS_KMS_KEY_ID);
      assert.equal(config.appConfig?.profile, env.WEBHOOKS_APPCONFIG_PROFILE);
    });
  }

  it('each function is created after its role’s policy (the VPC and the mappings need it)', () => {
    for (const kind of KINDS) {
      const role = (props(kind).Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
      const policy = Object.entries(resourcesOf(json, 'AWS::IAM::Policy')).find(([, p]) =>
        (p.Properties!.Roles as Array<{ Ref: string }>).some((r) => r.Ref === role),
      )![0];
      assert.ok(json.Resources[fnId(kind)]!.DependsOn?.includes(policy), kind);
    }
  });

  it('the scheduler: reserved concurrency 1, run every minute, a late run dropped rather than queued', () => {
    assert.equal(props('scheduler').ReservedConcurrentExecutions, 1);
    for (const kind of KINDS.filter((k) => k !== 'scheduler')) {
      assert.equal(props(kind).ReservedConcurrentExecutions, undefined, kind);
    }
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId('scheduler'), 'Arn'] } })],
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fnId('scheduler') },
      MaximumEventAgeInSeconds: 60,
      MaximumRetryAttempts: 0,
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [fnId('scheduler'), 'Arn'] },
    });
  });

  it('AppConfig: an application, an environment and a freeform profile, deployed', () => {
    template.resourceCountIs('AWS::AppConfig::Application', 1);
    template.resourceCountIs('AWS::AppConfig::Environment', 1);
    template.hasResourceProperties('AWS::AppConfig::ConfigurationProfile', {
      LocationUri: 'hosted',
      Type: 'AWS.Freeform',
    });
    template.hasResourceProperties('AWS::AppConfig::HostedConfigurationVersion', {
      ContentType: 'application/json',
      Content: '{}',
    });
    template.hasResourceProperties('AWS::AppConfig::DeploymentStrategy', {
      GrowthFactor: 100,
      DeploymentDurationInMinutes: 0,
      FinalBakeTimeInMinutes: 0,
    });
    template.hasResourceProperties('AWS::AppConfig::Deployment', {
      DeploymentStrategyId: { Ref: onlyId('AWS::AppConfig::DeploymentStrategy') },
      EnvironmentId: { Ref: onlyId('AWS::AppConfig::Environment') },
      ConfigurationProfileId: { Ref: onlyId('AWS::AppConfig::ConfigurationProfile') },
    });
  });
});
