/**
 * Each function's IAM statements, exactly: actions and resources as they read once deployed (the
 * template's intrinsics evaluated with an example cluster, region and account). The expectations
 * are written out here, table by table and topic by topic, as the specification of least
 * privilege; `docs/aws.md` ("Permissions") explains them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import {
  allStatements,
  EXAMPLE,
  evaluate,
  groupArn,
  list,
  logicalId,
  resourcesOf,
  roleStatements,
  type Statement,
  synthesized,
  tableArn,
  topicArn,
} from './support.ts';

const { stack, json } = synthesized();
const AT = `${EXAMPLE.region}:${EXAMPLE.account}`;

interface Expected {
  sid: string | undefined;
  actions: string[];
  resources: string[];
  condition?: Record<string, Record<string, unknown>>;
}

function functionIds(kind: FunctionKind): { fn: string; role: string; logs: string } {
  const fn = logicalId(stack, stack.functions[kind]);
  const props = json.Resources[fn]!.Properties!;
  return {
    fn,
    role: (props.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0],
    logs: (props.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref,
  };
}

function onlyId(type: string): string {
  const ids = Object.keys(resourcesOf(json, type));
  assert.equal(ids.length, 1, `one ${type}`);
  return ids[0]!;
}

const keyArn = `arn:aws:kms:${AT}:key/${onlyId('AWS::KMS::Key')}`;
const appConfigArn =
  `arn:aws:appconfig:${AT}:application/${onlyId('AWS::AppConfig::Application')}` +
  `/environment/${onlyId('AWS::AppConfig::Environment')}` +
  `/configuration/${onlyId('AWS::AppConfig::ConfigurationProfile')}`;
const functionArn = (kind: FunctionKind) => `arn:aws:lambda:${AT}:function:${functionIds(kind).fn}`;

const dynamo = (table: string, ...actions: string[]): Expected => ({
  sid: `Dynamo${pascal(table)}`,
  actions: actions.map((a) => `dynamodb:${a}`),
  resources: [tableArn(table)],
});
const indexes = (table: string): Expected => ({
  sid: `Dynamo${pascal(table)}Indexes`,
  actions: ['dynamodb:Query'],
  resources: [`${tableArn(table)}/index/*`],
});
const kafka = (sid: string, actions: string[], resources: string[]): Expected => ({
  sid,
  actions: actions.map((a) => `kafka-cluster:${a}`),
  resources,
});

/** What every function has: X-Ray, its log group, the key through DynamoDB, AppConfig, its ENIs. */
function common(kind: FunctionKind, eventSource: boolean): Expected[] {
  return [
    { sid: undefined, actions: ['xray:PutTelemetryRecords', 'xray:PutTraceSegments'], resources: ['*'] },
    {
      sid: 'Logs',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      resources: [`arn:aws:logs:${AT}:log-group:${functionIds(kind).logs}:*`],
    },
    {
      sid: 'KmsThroughDynamoDb',
      actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'],
      resources: [keyArn],
      condition: { StringEquals: { 'kms:ViaService': `dynamodb.${EXAMPLE.region}.amazonaws.com` } },
    },
    {
      sid: 'AppConfig',
      actions: ['appconfig:GetLatestConfiguration', 'appconfig:StartConfigurationSession'],
      resources: [appConfigArn],
    },
    {
      sid: 'VpcNetworkInterfaces',
      actions: [
        'ec2:AssignPrivateIpAddresses',
        'ec2:CreateNetworkInterface',
        'ec2:DeleteNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:UnassignPrivateIpAddresses',
        ...(eventSource ? ['ec2:DescribeSecurityGroups', 'ec2:DescribeVpcs'] : []),
      ],
      resources: ['*'],
    },
    ...(eventSource
      ? [
          {
            sid: 'MskEventSource',
            actions: ['kafka:DescribeClusterV2', 'kafka:GetBootstrapBrokers'],
            resources: [EXAMPLE.clusterArn],
          },
        ]
      : []),
  ];
}

const EXPECTED: Record<FunctionKind, Expected[]> = {
  admin: [
    ...common('admin', false),
    dynamo('event_schema', 'GetItem', 'PutItem', 'Query', 'DescribeTable'),
    indexes('event_schema'),
    dynamo('partner', 'GetItem', 'PutItem'),
    indexes('partner'),
    dynamo('partner_event_subscription', 'GetItem', 'PutItem', 'DeleteItem', 'ConditionCheckItem'),
    indexes('partner_event_subscription'),
    dynamo('subscription_endpoint', 'GetItem', 'PutItem', 'DeleteItem'),
    dynamo('event_delivery_status', 'GetItem', 'BatchGetItem', 'UpdateItem'),
    indexes('event_delivery_status'),
    dynamo('delivery_attempt', 'Query'),
    dynamo('idempotency_ledger', 'GetItem', 'UpdateItem', 'DeleteItem'),
    dynamo('dead_letter', 'BatchGetItem', 'UpdateItem'),
    indexes('dead_letter'),
    dynamo('held_task', 'GetItem', 'Query', 'BatchGetItem', 'DeleteItem', 'UpdateItem'),
    indexes('held_task'),
    dynamo('api_key', 'GetItem', 'PutItem', 'UpdateItem', 'DeleteItem'),
    indexes('api_key'),
    dynamo('audit_log', 'PutItem'),
    indexes('audit_log'),
    dynamo('scheduled_message', 'PutItem'),
    kafka('KafkaCluster', ['Connect', 'WriteDataIdempotently'], [EXAMPLE.clusterArn]),
    kafka(
      'KafkaTopics1',
      ['CreateTopic', 'DescribeTopic', 'AlterTopic'],
      ['ingress.*', 'egress.*', 'retry.*', 'dlq.*'].map(topicArn),
    ),
    kafka('KafkaTopics2', ['WriteData'], ['ingress.*', 'egress.*', 'retry.*'].map(topicArn)),
    { sid: 'KmsSecrets', actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: [keyArn] },
    {
      sid: 'CreateEventSourceMappings',
      actions: ['lambda:CreateEventSourceMapping'],
      resources: ['*'],
      condition: {
        ArnEquals: { 'lambda:FunctionArn': [functionArn('processor'), functionArn('dispatcher')] },
      },
    },
    { sid: 'ListEventSourceMappings', actions: ['lambda:ListEventSourceMappings'], resources: ['*'] },
  ],
  ingest: [
    ...common('ingest', false),
    dynamo('event_schema', 'Query'),
    dynamo('api_key', 'GetItem', 'UpdateItem'),
    kafka('KafkaCluster', ['Connect', 'WriteDataIdempotently'], [EXAMPLE.clusterArn]),
    kafka('KafkaTopics1', ['DescribeTopic', 'WriteData'], [topicArn('ingress.*')]),
  ],
  processor: [
    ...common('processor', true),
    dynamo('event_schema', 'GetItem', 'Query'),
    dynamo('partner', 'GetItem'),
    indexes('partner_event_subscription'),
    dynamo('event_route', 'PutItem', 'BatchGetItem'),
    dynamo('dead_letter', 'PutItem'),
    dynamo('scheduled_message', 'PutItem'),
    kafka(
      'KafkaCluster',
      ['Connect', 'DescribeClusterDynamicConfiguration', 'WriteDataIdempotently'],
      [EXAMPLE.clusterArn],
    ),
    kafka(
      'KafkaTopics1',
      ['DescribeTopic', 'ReadData'],
      [topicArn('ingress.*'), topicArn('retry.processor.*')],
    ),
    kafka(
      'KafkaTopics2',
      ['DescribeTopic', 'WriteData'],
      [topicArn('egress.*'), topicArn('retry.processor.*'), topicArn('dlq.processor')],
    ),
    kafka('KafkaGroups', ['DescribeGroup', 'AlterGroup'], [groupArn('webhooks-processor-*')]),
  ],
  dispatcher: [
    ...common('dispatcher', true),
    dynamo('partner_event_subscription', 'GetItem', 'PutItem'),
    dynamo('partner', 'GetItem'),
    dynamo('event_delivery_status', 'GetItem', 'PutItem', 'UpdateItem'),
    dynamo('delivery_attempt', 'PutItem'),
    dynamo('idempotency_ledger', 'GetItem', 'UpdateItem', 'DeleteItem'),
    dynamo('held_task', 'GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem', 'DeleteItem'),
    indexes('held_task'),
    dynamo('dead_letter', 'PutItem'),
    dynamo('scheduled_message', 'PutItem'),
    kafka(
      'KafkaCluster',
      ['Connect', 'DescribeClusterDynamicConfiguration', 'WriteDataIdempotently'],
      [EXAMPLE.clusterArn],
    ),
    kafka(
      'KafkaTopics1',
      ['DescribeTopic', 'ReadData'],
      [topicArn('egress.*'), topicArn('retry.dispatcher.*')],
    ),
    kafka(
      'KafkaTopics2',
      ['DescribeTopic', 'WriteData'],
      [topicArn('egress.*'), topicArn('retry.dispatcher.*'), topicArn('dlq.dispatcher')],
    ),
    kafka('KafkaGroups', ['DescribeGroup', 'AlterGroup'], [groupArn('webhooks-dispatcher-*')]),
    { sid: 'KmsSecrets', actions: ['kms:Decrypt'], resources: [keyArn] },
  ],
  scheduler: [
    ...common('scheduler', false),
    dynamo('held_task', 'GetItem', 'Query', 'BatchGetItem', 'DeleteItem', 'UpdateItem'),
    indexes('held_task'),
    dynamo('event_delivery_status', 'GetItem', 'UpdateItem'),
    dynamo('partner_event_subscription', 'GetItem'),
    indexes('partner_event_subscription'),
    dynamo('partner', 'GetItem'),
    dynamo('scheduled_message', 'BatchGetItem', 'DeleteItem'),
    indexes('scheduled_message'),
    kafka('KafkaCluster', ['Connect', 'WriteDataIdempotently'], [EXAMPLE.clusterArn]),
    kafka(
      'KafkaTopics1',
      ['CreateTopic', 'DescribeTopic', 'AlterTopic'],
      [topicArn('retry.*'), topicArn('dlq.*')],
    ),
    kafka(
      'KafkaTopics2',
      ['DescribeTopic', 'WriteData'],
      [topicArn('ingress.*'), topicArn('egress.*'), topicArn('retry.*')],
    ),
    {
      sid: 'CreateEventSourceMappings',
      actions: ['lambda:CreateEventSourceMapping'],
      resources: ['*'],
      condition: {
        ArnEquals: { 'lambda:FunctionArn': [functionArn('processor'), functionArn('dispatcher')] },
      },
    },
    {
      sid: 'DeleteEventSourceMappings',
      actions: ['lambda:DeleteEventSourceMapping'],
      resources: [`arn:aws:lambda:${AT}:event-source-mapping:*`],
      condition: {
        ArnEquals: { 'lambda:FunctionArn': [functionArn('processor'), functionArn('dispatcher')] },
      },
    },
    { sid: 'ListEventSourceMappings', actions: ['lambda:ListEventSourceMappings'], resources: ['*'] },
  ],
};

/** A statement as a comparable value: sorted actions and resources. */
function normalize(s: Statement): Expected {
  assert.equal(s.Effect, 'Allow', `only Allow statements (${s.Sid})`);
  return {
    sid: s.Sid,
    actions: list(s.Action).toSorted(),
    resources: list(s.Resource).toSorted(),
    ...(s.Condition ? { condition: s.Condition } : {}),
  };
}

function sorted(statements: Expected[]): Expected[] {
  return statements
    .map((s) => ({ ...s, actions: s.actions.toSorted(), resources: s.resources.toSorted() }))
    .toSorted((a, b) => (a.sid ?? '').localeCompare(b.sid ?? ''));
}

describe('IAM: each function may do exactly what it calls', () => {
  for (const kind of Object.keys(EXPECTED) as FunctionKind[]) {
    it(`${kind}: its role's statements, actions and resources`, () => {
      const actual = roleStatements(json, functionIds(kind).role).map(normalize);
      assert.deepStrictEqual(sorted(actual), sorted(EXPECTED[kind]));
    });
  }

  it('each function has a role of its own, with no managed policy and no other policy', () => {
    const roles = Object.keys(EXPECTED).map((k) => functionIds(k as FunctionKind).role);
    assert.equal(new Set(roles).size, roles.length);
    for (const id of roles) {
      const role = json.Resources[id]!;
      assert.equal(role.Properties?.ManagedPolicyArns, undefined, `${id} has managed policies`);
      assert.deepStrictEqual(evaluate(role.Properties?.AssumeRolePolicyDocument, json), {
        Statement: [
          { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } },
        ],
        Version: '2012-10-17',
      });
    }
    assert.equal(Object.keys(resourcesOf(json, 'AWS::IAM::ManagedPolicy')).length, 0);
  });

  it('no action anywhere is a wildcard: no `*`, no `kafka-cluster:*`, no `service:Prefix*`', () => {
    for (const [id, statement] of allStatements(json)) {
      for (const action of list(statement.Action)) {
        assert.ok(!action.includes('*'), `${id}: ${action}`);
      }
    }
  });

  it('`*` resources only where AWS requires them (X-Ray, ENIs, listing and creating mappings, key policy)', () => {
    const allowed = new Set([
      'xray:PutTelemetryRecords xray:PutTraceSegments',
      'ec2:AssignPrivateIpAddresses ec2:CreateNetworkInterface ec2:DeleteNetworkInterface ec2:DescribeNetworkInterfaces ec2:DescribeSubnets ec2:UnassignPrivateIpAddresses',
      'ec2:AssignPrivateIpAddresses ec2:CreateNetworkInterface ec2:DeleteNetworkInterface ec2:DescribeNetworkInterfaces ec2:DescribeSecurityGroups ec2:DescribeSubnets ec2:DescribeVpcs ec2:UnassignPrivateIpAddresses',
      'lambda:CreateEventSourceMapping',
      'lambda:ListEventSourceMappings',
    ]);
    for (const [id, statement] of allStatements(json)) {
      if (!list(statement.Resource).includes('*')) continue;
      if (json.Resources[id]?.Type === 'AWS::KMS::Key') continue; // a key policy's `*` is the key itself
      assert.ok(
        allowed.has(list(statement.Action).toSorted().join(' ')),
        `${id}: ${JSON.stringify(statement)}`,
      );
    }
  });

  it('every role policy fits IAM’s limit on inline policies (10,240 characters per role)', () => {
    for (const kind of Object.keys(EXPECTED) as FunctionKind[]) {
      const size = JSON.stringify({
        Version: '2012-10-17',
        Statement: roleStatements(json, functionIds(kind).role),
      }).length;
      assert.ok(size < 10_240, `${kind}: ${size} characters`);
    }
  });
});

function pascal(name: string): string {
  return name
    .split('_')
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join('');
}
