/**
 * A function's IAM statements, from its entry in `FUNCTION_ACCESS`: every action named, on the
 * named tables, topics, groups and key. `*` resources only where AWS requires them — each one says
 * why here, and `docs/aws.md` ("Permissions") lists them.
 */
import { Aws, Fn } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { TableName } from '../../src/engines/dynamodb/tables.ts';
import { consumerGroupId } from '../../src/runtimes/lambda/mapping-settings.ts';
import type { MskArns } from './msk.ts';
import type { FunctionAccess } from './permissions.ts';

export interface PolicyContext {
  tables: Record<TableName, dynamodb.Table>;
  key: kms.IKey;
  msk: MskArns;
  logGroup: logs.ILogGroup;
  /** `arn:…:appconfig:…:application/<app>/environment/<env>/configuration/<profile>` */
  appConfigResource: string;
  /** The functions whose event source mappings the admin manages (their ARNs). */
  mappedFunctionArns: string[];
}

/** The statements of one function's role (X-Ray's are added by Lambda's tracing: see the stack). */
export function functionStatements(access: FunctionAccess, ctx: PolicyContext): iam.PolicyStatement[] {
  return [
    logStatement(ctx.logGroup),
    ...tableStatements(access, ctx.tables),
    ...kafkaStatements(access, ctx.msk),
    ...kmsStatements(access, ctx.key),
    appConfigStatement(ctx.appConfigResource),
    ...networkStatements(access),
    ...(access.eventSource ? [mskControlPlaneStatement(ctx.msk)] : []),
    ...(access.manageMappings ? mappingStatements(ctx.mappedFunctionArns, access.manageMappings) : []),
  ];
}

function logStatement(logGroup: logs.ILogGroup): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'Logs',
    actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
    resources: [logGroup.logGroupArn],
  });
}

function tableStatements(
  access: FunctionAccess,
  tables: Record<TableName, dynamodb.Table>,
): iam.PolicyStatement[] {
  const out: iam.PolicyStatement[] = [];
  for (const [name, table] of Object.entries(access.tables) as Array<
    [TableName, FunctionAccess['tables'][TableName]]
  >) {
    if (!table) continue;
    const arn = tables[name].tableArn;
    const sid = `Dynamo${pascal(name)}`;
    if (table.actions.length > 0) {
      out.push(
        new iam.PolicyStatement({
          sid,
          actions: table.actions.map((a) => `dynamodb:${a}`),
          resources: [arn],
        }),
      );
    }
    if (table.indexes) {
      out.push(
        new iam.PolicyStatement({
          sid: `${sid}Indexes`,
          actions: ['dynamodb:Query'],
          resources: [`${arn}/index/*`],
        }),
      );
    }
  }
  return out;
}

function kafkaStatements(access: FunctionAccess, msk: MskArns): iam.PolicyStatement[] {
  const { kafka } = access;
  const out = [
    new iam.PolicyStatement({
      sid: 'KafkaCluster',
      actions: kafka.cluster.map((a) => `kafka-cluster:${a}`),
      resources: [msk.cluster],
    }),
    ...kafka.topics.map(
      (t, i) =>
        new iam.PolicyStatement({
          sid: `KafkaTopics${i + 1}`,
          actions: t.actions.map((a) => `kafka-cluster:${a}`),
          resources: t.topics.map((name) => msk.topic(name)),
        }),
    ),
  ];
  if (kafka.groups) {
    // The groups consumerGroupId names for the stage, whatever the topic.
    const prefix = consumerGroupId(kafka.groups.stage, '');
    out.push(
      new iam.PolicyStatement({
        sid: 'KafkaGroups',
        actions: kafka.groups.actions.map((a) => `kafka-cluster:${a}`),
        resources: [msk.group(`${prefix}*`)],
      }),
    );
  }
  return out;
}

function kmsStatements(access: FunctionAccess, key: kms.IKey): iam.PolicyStatement[] {
  return [
    // The tables are encrypted with the key: DynamoDB uses it on the caller's behalf, so only
    // through DynamoDB (kms:ViaService).
    new iam.PolicyStatement({
      sid: 'KmsThroughDynamoDb',
      actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'],
      resources: [key.keyArn],
      conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Aws.REGION}.amazonaws.com` } },
    }),
    ...(access.kms.length > 0
      ? [
          new iam.PolicyStatement({
            sid: 'KmsSecrets',
            actions: access.kms.map((a) => `kms:${a}`),
            resources: [key.keyArn],
          }),
        ]
      : []),
  ];
}

function appConfigStatement(resource: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'AppConfig',
    actions: ['appconfig:StartConfigurationSession', 'appconfig:GetLatestConfiguration'],
    resources: [resource],
  });
}

/**
 * The network interfaces of a function in a VPC (and, for an MSK event source, of its pollers in
 * the cluster's VPC). `*`: the Describe actions have no resource-level permissions, and Lambda
 * checks the create/delete permissions of the execution role without a resource (as in AWS's
 * AWSLambdaVPCAccessExecutionRole and AWSLambdaMSKExecutionRole policies).
 */
function networkStatements(access: FunctionAccess): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'VpcNetworkInterfaces',
      actions: [
        'ec2:CreateNetworkInterface',
        'ec2:DeleteNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
        ...(access.eventSource ? ['ec2:DescribeVpcs', 'ec2:DescribeSecurityGroups'] : []),
      ],
      resources: ['*'],
    }),
  ];
}

/** The event source mapping's pollers find the cluster's brokers and network (MSK's control plane). */
function mskControlPlaneStatement(msk: MskArns): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'MskEventSource',
    actions: ['kafka:DescribeClusterV2', 'kafka:GetBootstrapBrokers'],
    resources: [msk.cluster],
  });
}

/**
 * The admin creates a mapping per runtime topic; the scheduler creates missing ones and deletes
 * those of topics left without a subscription. CreateEventSourceMapping and ListEventSourceMappings
 * take no resource (`*`, AWS requires it); creation is limited to the processor and dispatcher by
 * `lambda:FunctionArn`, as is deletion, on mapping ARNs.
 */
function mappingStatements(functionArns: string[], use: 'create' | 'reconcile'): iam.PolicyStatement[] {
  const onFunctions = { ArnEquals: { 'lambda:FunctionArn': functionArns } };
  return [
    new iam.PolicyStatement({
      sid: 'CreateEventSourceMappings',
      actions: ['lambda:CreateEventSourceMapping'],
      resources: ['*'],
      conditions: onFunctions,
    }),
    ...(use === 'create' ? [] : [deleteMappings(onFunctions)]),
    new iam.PolicyStatement({
      sid: 'ListEventSourceMappings',
      actions: ['lambda:ListEventSourceMappings'],
      resources: ['*'],
    }),
  ];
}

function deleteMappings(onFunctions: Record<string, unknown>): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'DeleteEventSourceMappings',
    actions: ['lambda:DeleteEventSourceMapping'],
    resources: [
      Fn.join('', [
        'arn:',
        Aws.PARTITION,
        ':lambda:',
        Aws.REGION,
        ':',
        Aws.ACCOUNT_ID,
        ':event-source-mapping:*',
      ]),
    ],
    conditions: onFunctions,
  });
}

function pascal(name: string): string {
  return name
    .split('_')
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join('');
}
