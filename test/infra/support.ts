/**
 * Helpers of the CDK tests: the stack synthesized once per test file with a small fixture as every
 * function's code (the real bundles are synthesized by `synth.test.ts`), and an evaluator of the
 * template's intrinsic functions with example parameter values, so IAM statements can be compared
 * as the plain ARNs they become at deploy time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { WebhooksStack } from '../../infra/lib/webhooks-stack.ts';

export const FIXTURE_CODE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'handler');

/** Example deploy-time values of the pseudo parameters and the stack's parameters. */
export const EXAMPLE = {
  partition: 'aws',
  region: 'eu-west-1',
  account: '123456789012',
  clusterArn: 'arn:aws:kafka:eu-west-1:123456789012:cluster/main/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab-2',
  brokers:
    'b-1.main.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.main.abc123.c2.kafka.eu-west-1.amazonaws.com:9098',
  /** The UUID part of the ARN of a cluster the stack creates (`AWS::MSK::ServerlessCluster`). */
  serverlessClusterUuid: '9a8b7c6d-1111-2222-3333-444455556666-s1',
} as const;

/** `arn:aws:kafka:eu-west-1:123456789012:topic/main/<uuid>/<name>` for the example cluster. */
export const topicArn = (name: string) =>
  EXAMPLE.clusterArn.replace(':cluster/', ':topic/').concat(`/${name}`);
export const groupArn = (name: string) =>
  EXAMPLE.clusterArn.replace(':cluster/', ':group/').concat(`/${name}`);
export const tableArn = (name: string) =>
  `arn:aws:dynamodb:${EXAMPLE.region}:${EXAMPLE.account}:table/webhooks-${name}`;

export interface Synthesized {
  app: App;
  stack: WebhooksStack;
  template: Template;
  json: CfnTemplate;
}

export interface CfnTemplate {
  Parameters: Record<string, { Type: string; Default?: unknown; [k: string]: unknown }>;
  Conditions?: Record<string, unknown>;
  Resources: Record<string, CfnResource>;
  Outputs?: Record<string, unknown>;
}

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string[];
  Condition?: string;
  DeletionPolicy?: string;
}

let cached: Synthesized | undefined;

/**
 * The stack as `infra/bin/app.ts` makes it (no environment), with the fixture as code; once per
 * process. The cyclical-dependency check of `Template.fromStack` (seconds) is left to cfn-lint.
 */
export function synthesized(): Synthesized {
  cached ??= synthesizeWith({});
  return cached;
}

/** The same with CDK context (`-c key=value` of the app), synthesized into a temporary directory. */
export function synthesizeWith(context: Record<string, string>): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'webhooks-cdk-test-'));
  process.on('exit', () => rmSync(outdir, { recursive: true, force: true }));
  const app = new App({ outdir, context });
  const stack = new WebhooksStack(app, 'Webhooks', { code: () => lambda.Code.fromAsset(FIXTURE_CODE_DIR) });
  const template = Template.fromStack(stack, { skipCyclicalDependenciesCheck: true });
  return { app, stack, template, json: template.toJSON() as CfnTemplate };
}

/** The resources of a type, by logical id. */
export function resourcesOf(json: CfnTemplate, type: string): Record<string, CfnResource> {
  return Object.fromEntries(Object.entries(json.Resources).filter(([, r]) => r.Type === type));
}

/** The logical id of a construct's CloudFormation resource. */
export function logicalId(stack: WebhooksStack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as never);
}

/**
 * Evaluates a template value with the example parameters: Ref, Fn::GetAtt (…Arn of tables, keys,
 * functions, log groups as their ARN would read), Fn::Join, Fn::Select, Fn::Split. A Ref to
 * another resource is its logical id.
 */
export function evaluate(value: unknown, json: CfnTemplate): unknown {
  if (Array.isArray(value)) return value.map((v) => evaluate(v, json));
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length !== 1) return Object.fromEntries(entries.map(([k, v]) => [k, evaluate(v, json)]));
  const [fn, arg] = entries[0]!;
  switch (fn) {
    case 'Ref':
      return ref(arg as string);
    case 'Fn::GetAtt': {
      const [id, attribute] = arg as [string, string];
      return getAtt(id, attribute, json);
    }
    case 'Fn::Join': {
      const [sep, parts] = arg as [string, unknown[]];
      return (evaluate(parts, json) as unknown[]).map(String).join(sep);
    }
    case 'Fn::Select': {
      const [index, list] = arg as [number, unknown];
      return (evaluate(list, json) as unknown[])[index];
    }
    case 'Fn::Split': {
      const [sep, source] = arg as [string, unknown];
      return String(evaluate(source, json)).split(sep);
    }
    default:
      return Object.fromEntries(entries.map(([k, v]) => [k, evaluate(v, json)]));
  }
}

function ref(name: string): string {
  switch (name) {
    case 'AWS::Partition':
      return EXAMPLE.partition;
    case 'AWS::Region':
      return EXAMPLE.region;
    case 'AWS::AccountId':
      return EXAMPLE.account;
    case 'MskClusterArn':
      return EXAMPLE.clusterArn;
    case 'KafkaBootstrapBrokers':
      return EXAMPLE.brokers;
    case 'KafkaReplicationFactor':
      return '3'; // its default
    default:
      return name;
  }
}

function getAtt(id: string, attribute: string, json: CfnTemplate): string {
  const resource = json.Resources[id];
  const at = `${EXAMPLE.region}:${EXAMPLE.account}`;
  if (attribute === 'Arn') {
    switch (resource?.Type) {
      case 'AWS::DynamoDB::Table':
        return `arn:aws:dynamodb:${at}:table/${resource.Properties?.TableName as string}`;
      case 'AWS::KMS::Key':
        return `arn:aws:kms:${at}:key/${id}`;
      case 'AWS::Lambda::Function':
        return `arn:aws:lambda:${at}:function:${id}`;
      case 'AWS::Logs::LogGroup':
        return `arn:aws:logs:${at}:log-group:${id}:*`;
      case 'AWS::MSK::ServerlessCluster':
        return serverlessClusterArn(resource.Properties?.ClusterName as string);
    }
  }
  return `${id}.${attribute}`;
}

/** The ARN of a cluster the stack creates, as `Fn::GetAtt [<cluster>, Arn]` evaluates. */
export function serverlessClusterArn(clusterName: string): string {
  return `arn:aws:kafka:${EXAMPLE.region}:${EXAMPLE.account}:cluster/${clusterName}/${EXAMPLE.serverlessClusterUuid}`;
}

export interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, unknown>>;
}

/** The statements of the inline policies attached to a role (by the role's logical id), evaluated. */
export function roleStatements(json: CfnTemplate, roleId: string): Statement[] {
  const policies = Object.values(resourcesOf(json, 'AWS::IAM::Policy')).filter((p) =>
    ((p.Properties?.Roles ?? []) as Array<{ Ref: string }>).some((r) => r.Ref === roleId),
  );
  return policies.flatMap(
    (p) => (evaluate(p.Properties?.PolicyDocument, json) as { Statement: Statement[] }).Statement,
  );
}

/** A value that may be one string or a list of them, as a list. */
export function list(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** Every statement of every identity or resource policy in the template, with its resource's id. */
export function allStatements(template: CfnTemplate): Array<[string, Statement]> {
  const out: Array<[string, Statement]> = [];
  for (const [id, r] of Object.entries(template.Resources)) {
    const doc =
      r.Properties?.PolicyDocument ?? r.Properties?.KeyPolicy ?? r.Properties?.AssumeRolePolicyDocument;
    if (!doc) continue;
    for (const s of (evaluate(doc, template) as { Statement: Statement[] }).Statement) out.push([id, s]);
  }
  return out;
}
