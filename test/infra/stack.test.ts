/**
 * The stack as a whole: environment-agnostic with no lookups, its parameters, the HTTP API (routes
 * to the right function, IAM on the admin routes, throttled stage with access logs), and the
 * alarms (DLQ growth, delivery failure rate, offset lag, the scheduler failing or not running) with their SNS topic and the dashboard.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import { logicalId, resourcesOf, synthesized } from './support.ts';

const { app, stack, template, json } = synthesized();
const fnId = (kind: FunctionKind) => logicalId(stack, stack.functions[kind]);
const onlyId = (type: string) => {
  const ids = Object.keys(resourcesOf(json, type));
  assert.equal(ids.length, 1, type);
  return ids[0]!;
};

describe('the stack', () => {
  it('is environment-agnostic and synthesizes without a lookup (no context missing)', () => {
    assert.equal(stack.environment, 'aws://unknown-account/unknown-region');
    const assembly = app.synth();
    assert.equal(assembly.manifest.missing, undefined);
    assert.deepStrictEqual(Object.keys(stack.node.tryGetContext('availability-zones:') ?? {}), []);
    const text = JSON.stringify(json);
    assert.ok(!/"\d{12}"|\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b/.test(text), 'no account or region written in');
  });

  it('parameters: the MSK cluster, its IAM brokers, the network, the alarm email, API limits, lag threshold', () => {
    const p = json.Parameters;
    assert.equal(p.MskClusterArn?.Type, 'String');
    assert.match(
      'arn:aws:kafka:eu-west-1:123456789012:cluster/main/0f1e2d3c-aaaa-2',
      new RegExp(p.MskClusterArn?.AllowedPattern as string),
    );
    assert.equal(p.KafkaBootstrapBrokers?.Type, 'String');
    assert.equal(p.SubnetIds?.Type, 'List<AWS::EC2::Subnet::Id>');
    assert.equal(p.SecurityGroupId?.Type, 'AWS::EC2::SecurityGroup::Id');
    assert.equal(p.AlarmEmail?.Default, '');
    assert.equal(p.ApiRateLimit?.Type, 'Number');
    assert.equal(p.ApiBurstLimit?.Type, 'Number');
    assert.equal(p.OffsetLagThreshold?.Type, 'Number');
    // A two-broker cluster refuses topics of 3 replicas: the factor is the deployer's to lower.
    assert.deepEqual(p.KafkaReplicationFactor, {
      Type: 'String',
      Default: '3',
      AllowedValues: ['1', '2', '3'],
      Description:
        'Replication factor of the topics the platform creates: at most the number of brokers (3 on three or more)',
    });
    type Env = { Variables?: Record<string, unknown> };
    const fn = Object.values(resourcesOf(json, 'AWS::Lambda::Function')).find(
      (r) => (r.Properties?.Environment as Env | undefined)?.Variables?.WEBHOOKS_BUS,
    );
    const variables = (fn!.Properties!.Environment as Env).Variables!;
    assert.deepEqual(variables.WEBHOOKS_KAFKA_REPLICATION_FACTOR, { Ref: 'KafkaReplicationFactor' });
  });
});

describe('the HTTP API', () => {
  const routes = Object.values(resourcesOf(json, 'AWS::ApiGatewayV2::Route')).map((r) => r.Properties!);
  const integrations = resourcesOf(json, 'AWS::ApiGatewayV2::Integration');
  const target = (route: Record<string, unknown>) => {
    const integrationId = (
      (route.Target as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1][1] as { Ref: string }
    ).Ref;
    const uri = integrations[integrationId]!.Properties!.IntegrationUri as { 'Fn::GetAtt': [string, string] };
    return uri['Fn::GetAtt'][0];
  };

  it('is an HTTP API (v2) with one $default stage: auto-deployed, throttled, JSON access logs', () => {
    template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP' });
    template.resourceCountIs('AWS::ApiGatewayV2::Stage', 1);
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: {
        ThrottlingRateLimit: { Ref: 'ApiRateLimit' },
        ThrottlingBurstLimit: { Ref: 'ApiBurstLimit' },
      },
      AccessLogSettings: {
        DestinationArn: { 'Fn::GetAtt': [Match.anyValue(), 'Arn'] },
        Format: Match.stringLikeRegexp('"requestId":"\\$context.requestId"'),
      },
    });
  });

  it('POST /events goes to the ingest function (the platform’s publisher keys authenticate producers)', () => {
    const events = routes.filter((r) => r.RouteKey === 'POST /events');
    assert.equal(events.length, 1);
    assert.equal(target(events[0]!), fnId('ingest'));
    assert.equal(events[0]!.AuthorizationType, 'NONE');
  });

  it('the admin API and the system routes go to the admin function, behind AWS_IAM', () => {
    const admin = routes.filter((r) => r.RouteKey !== 'POST /events');
    assert.deepStrictEqual(admin.map((r) => r.RouteKey).toSorted(), [
      'ANY /admin/{proxy+}',
      'GET /healthz',
      'GET /metrics',
      'GET /openapi.json',
      'GET /readyz',
    ]);
    for (const route of admin) {
      assert.equal(target(route), fnId('admin'), route.RouteKey as string);
      assert.equal(route.AuthorizationType, 'AWS_IAM', route.RouteKey as string);
    }
  });

  it('API Gateway may invoke only the admin and ingest functions', () => {
    const invoked = Object.values(resourcesOf(json, 'AWS::Lambda::Permission'))
      .filter((p) => p.Properties!.Principal === 'apigateway.amazonaws.com')
      .map((p) => (p.Properties!.FunctionName as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0]);
    assert.deepStrictEqual([...new Set(invoked)].toSorted(), [fnId('admin'), fnId('ingest')].toSorted());
  });
});

describe('alarms and dashboard', () => {
  const topic = onlyId('AWS::SNS::Topic');
  const alarms = Object.values(resourcesOf(json, 'AWS::CloudWatch::Alarm')).map((a) => a.Properties!);

  it('an SNS topic for the alarms, emailed only when AlarmEmail is set', () => {
    template.hasResource('AWS::SNS::Subscription', {
      Condition: 'HasAlarmEmail',
      Properties: { Protocol: 'email', Endpoint: { Ref: 'AlarmEmail' }, TopicArn: { Ref: topic } },
    });
    assert.deepStrictEqual(json.Conditions?.HasAlarmEmail, {
      'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'AlarmEmail' }, ''] }],
    });
    assert.equal(alarms.length, 7);
    for (const alarm of alarms) {
      assert.deepStrictEqual(alarm.AlarmActions, [{ Ref: topic }]);
      assert.deepStrictEqual(alarm.OKActions, [{ Ref: topic }]);
      // Missing data is no failure, except for the alarm on the scheduler not running at all.
      const notRunning = alarm.MetricName === 'Invocations';
      assert.equal(alarm.TreatMissingData, notRunning ? 'breaching' : 'notBreaching');
    }
  });

  it('the scheduler failing (Errors > 0 in 2 periods of 5 min) or not running (Invocations < 1 in 2 periods, no data breaching)', () => {
    const scheduler = { Ref: logicalId(stack, stack.functions.scheduler) };
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: scheduler }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Invocations',
      Dimensions: [{ Name: 'FunctionName', Value: scheduler }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      TreatMissingData: 'breaching',
    });
  });

  type AlarmMetric = {
    Id: string;
    Expression?: string;
    ReturnData?: boolean;
    MetricStat?: {
      Metric: { Namespace: string; MetricName: string; Dimensions: unknown };
      Stat: string;
      Period: number;
    };
  };
  const withExpression = (expression: string) => {
    const found = alarms.filter((a) =>
      (a.Metrics as AlarmMetric[] | undefined)?.some((m) => m.Expression === expression),
    );
    assert.equal(found.length, 1, expression);
    return found[0]!;
  };
  const platformStat = (metrics: AlarmMetric[], id: string, name: string, service: string) => {
    const stat = metrics.find((m) => m.Id === id)!.MetricStat!;
    assert.deepStrictEqual(stat.Metric, {
      Namespace: 'Webhooks',
      MetricName: name,
      Dimensions: [{ Name: 'service', Value: service }],
    });
    assert.equal(stat.Stat, 'Sum');
    assert.equal(stat.Period, 300);
  };

  it('DLQ growth (processor): Webhooks events_to_dlq, service=processor, Sum over 5 min > 0', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Webhooks',
      MetricName: 'events_to_dlq',
      Dimensions: [{ Name: 'service', Value: 'processor' }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
    });
  });

  it('DLQ growth (dispatcher): events_to_dlq + deliveries_failed (what it dead-letters), service=dispatcher, > 0', () => {
    const alarm = withExpression('FILL(dlq, 0) + FILL(failed, 0)');
    assert.equal(alarm.Threshold, 0);
    assert.equal(alarm.EvaluationPeriods, 1);
    assert.equal(alarm.ComparisonOperator, 'GreaterThanThreshold');
    const metrics = alarm.Metrics as AlarmMetric[];
    platformStat(metrics, 'dlq', 'events_to_dlq', 'dispatcher');
    platformStat(metrics, 'failed', 'deliveries_failed', 'dispatcher');
  });

  it('delivery failure rate: failed / (succeeded + failed) of the dispatcher > 0.2 for 3 periods', () => {
    const alarm = withExpression('failed / (succeeded + failed)');
    assert.equal(alarm.Threshold, 0.2);
    assert.equal(alarm.EvaluationPeriods, 3);
    assert.equal(alarm.DatapointsToAlarm, 3);
    assert.equal(alarm.ComparisonOperator, 'GreaterThanThreshold');
    const metrics = alarm.Metrics as AlarmMetric[];
    platformStat(metrics, 'failed', 'deliveries_failed', 'dispatcher');
    platformStat(metrics, 'succeeded', 'deliveries_succeeded', 'dispatcher');
  });

  for (const kind of ['processor', 'dispatcher'] as const) {
    it(`offset lag (${kind}): AWS/Lambda OffsetLag of the function, Maximum > the threshold parameter`, () => {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'OffsetLag',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: fnId(kind) } }],
        Statistic: 'Maximum',
        Threshold: { Ref: 'OffsetLagThreshold' },
        ComparisonOperator: 'GreaterThanThreshold',
      });
    });
  }

  it('a dashboard with the alarms, Lambda errors/duration/throttles and DynamoDB consumed capacity', () => {
    const dashboards = Object.values(resourcesOf(json, 'AWS::CloudWatch::Dashboard'));
    assert.equal(dashboards.length, 1);
    const body = JSON.stringify(dashboards[0]!.Properties!.DashboardBody);
    for (const needle of [
      'events_to_dlq',
      'failed / (succeeded + failed)',
      'OffsetLag',
      '\\"Errors\\"',
      '\\"Duration\\"',
      '\\"Throttles\\"',
      'ConsumedReadCapacityUnits',
      'ConsumedWriteCapacityUnits',
      'scheduled_message',
    ]) {
      assert.ok(body.includes(needle), needle);
    }
  });
});
