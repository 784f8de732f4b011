/**
 * The stack with `-c newCluster=serverless`: it creates an MSK Serverless cluster (IAM auth, in the
 * subnets and security group of the parameters) and everything that uses the cluster parameters
 * otherwise uses that cluster: the functions' brokers (read by a custom resource with
 * `kafka:GetBootstrapBrokers`, not an attribute of the cluster), the admin's cluster ARN, the static
 * mappings, and the Kafka IAM resources. The two cluster parameters are not in the template. The
 * default template (an existing cluster) is what the other test files check.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { WebhooksStack } from '../../infra/lib/webhooks-stack.ts';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import { pythonTool } from '../../tools/python/env.ts';
import {
  allStatements,
  type CfnTemplate,
  EXAMPLE,
  evaluate,
  FIXTURE_CODE_DIR,
  list,
  logicalId,
  resourcesOf,
  roleStatements,
  type Statement,
  type Synthesized,
  serverlessClusterArn,
  synthesized,
  synthesizeWith,
} from './support.ts';

const KINDS: FunctionKind[] = ['admin', 'ingest', 'processor', 'dispatcher', 'scheduler'];
const created = synthesizeWith({ newCluster: 'serverless' });
const { json } = created;

const onlyId = (type: string) => {
  const ids = Object.keys(resourcesOf(json, type));
  assert.equal(ids.length, 1, `one ${type}`);
  return ids[0]!;
};
const clusterId = onlyId('AWS::MSK::ServerlessCluster');
const brokersId = onlyId('Custom::AWS');
const clusterAtt = { 'Fn::GetAtt': [clusterId, 'Arn'] };
const brokersAtt = { 'Fn::GetAtt': [brokersId, 'BootstrapBrokerStringSaslIam'] };
const newClusterArn = serverlessClusterArn('webhooks');

const fnProps = (s: Synthesized, kind: FunctionKind) =>
  s.json.Resources[logicalId(s.stack, s.stack.functions[kind])]!.Properties!;
const roleOf = (s: Synthesized, kind: FunctionKind) =>
  (fnProps(s, kind).Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
const variables = (s: Synthesized, kind: FunctionKind) =>
  (fnProps(s, kind).Environment as { Variables: Record<string, unknown> }).Variables;

describe('a new MSK Serverless cluster (-c newCluster=serverless)', () => {
  it('one AWS::MSK::ServerlessCluster: IAM client auth, in the SubnetIds and SecurityGroupId parameters, retained', () => {
    const cluster = json.Resources[clusterId]!;
    assert.deepStrictEqual(cluster.Properties, {
      ClusterName: 'webhooks',
      ClientAuthentication: { Sasl: { Iam: { Enabled: true } } },
      VpcConfigs: [{ SubnetIds: { Ref: 'SubnetIds' }, SecurityGroups: [{ Ref: 'SecurityGroupId' }] }],
    });
    assert.equal(cluster.DeletionPolicy, 'Retain');
    assert.equal(Object.keys(resourcesOf(json, 'AWS::MSK::Cluster')).length, 0);
  });

  it('no MskClusterArn or KafkaBootstrapBrokers parameter, and nothing refers to them; the others remain', () => {
    assert.deepStrictEqual(Object.keys(json.Parameters).toSorted(), [
      'AlarmEmail',
      'ApiBurstLimit',
      'ApiRateLimit',
      'BootstrapVersion',
      'OffsetLagThreshold',
      'SecurityGroupId',
      'SubnetIds',
    ]);
    const text = JSON.stringify(json.Resources);
    assert.ok(!text.includes('"Ref":"MskClusterArn"'));
    assert.ok(!text.includes('"Ref":"KafkaBootstrapBrokers"'));
  });

  it('the default (no context) still takes the cluster as the two parameters and creates none', () => {
    const { json: existing } = synthesized();
    assert.equal(existing.Parameters.MskClusterArn?.Type, 'String');
    assert.equal(existing.Parameters.KafkaBootstrapBrokers?.Type, 'String');
    assert.equal(Object.keys(resourcesOf(existing, 'AWS::MSK::ServerlessCluster')).length, 0);
    assert.equal(Object.keys(resourcesOf(existing, 'Custom::AWS')).length, 0);
  });

  it('the bootstrap brokers: a custom resource calling kafka:GetBootstrapBrokers on the new cluster', () => {
    const props = json.Resources[brokersId]!.Properties!;
    assert.equal(props.InstallLatestAwsSdk, false);
    for (const phase of ['Create', 'Update']) {
      const call = JSON.parse(evaluate(props[phase], json) as string) as Record<string, unknown>;
      assert.deepStrictEqual(call, {
        service: 'Kafka',
        action: 'GetBootstrapBrokers',
        parameters: { ClusterArn: newClusterArn },
        physicalResourceId: { id: newClusterArn },
        outputPaths: ['BootstrapBrokerStringSaslIam'],
      });
    }
    assert.equal(props.Delete, undefined, 'nothing to do when it goes');
  });

  for (const kind of KINDS) {
    it(`${kind}: WEBHOOKS_KAFKA_BROKERS are the new cluster's IAM brokers`, () => {
      assert.deepStrictEqual(variables(created, kind).WEBHOOKS_KAFKA_BROKERS, brokersAtt);
    });
  }

  it('the admin’s WEBHOOKS_MSK_CLUSTER_ARN is the new cluster (it maps runtime topics on it)', () => {
    assert.deepStrictEqual(variables(created, 'admin').WEBHOOKS_MSK_CLUSTER_ARN, clusterAtt);
  });

  it('every event source mapping reads the new cluster', () => {
    const mappings = Object.values(resourcesOf(json, 'AWS::Lambda::EventSourceMapping'));
    assert.equal(mappings.length, 2);
    for (const m of mappings) assert.deepStrictEqual(m.Properties!.EventSourceArn, clusterAtt);
  });

  it('outputs the new cluster’s ARN and brokers, named as the parameters they would fill', () => {
    const outputs = json.Outputs as Record<string, { Value: unknown }>;
    assert.deepStrictEqual(outputs.MskClusterArn?.Value, clusterAtt);
    assert.deepStrictEqual(outputs.KafkaBootstrapBrokers?.Value, brokersAtt);
  });

  it('still environment-agnostic: no account or region written in', () => {
    assert.equal(created.stack.environment, 'aws://unknown-account/unknown-region');
    const text = JSON.stringify(json);
    assert.ok(!/"\d{12}"|\b(us|eu|ap|sa|ca|me|af)-[a-z]+-\d\b/.test(text), 'no account or region written in');
  });

  it('an unknown newCluster value is refused at synth', () => {
    const app = new App({ context: { newCluster: 'provisioned' } });
    assert.throws(
      () => new WebhooksStack(app, 'Webhooks', { code: () => lambda.Code.fromAsset(FIXTURE_CODE_DIR) }),
      /newCluster: "provisioned" is not one of serverless/,
    );
  });
});

describe('IAM with a new cluster', () => {
  /** The existing-cluster template's statements with the example cluster's ARNs as the new one's. */
  const onNewCluster = (statements: Statement[]) =>
    JSON.parse(
      JSON.stringify(statements).replaceAll(
        EXAMPLE.clusterArn.replace(/^arn:aws:kafka:[^:]+:\d+:cluster\//, ''),
        `webhooks/${EXAMPLE.serverlessClusterUuid}`,
      ),
    ) as Statement[];

  for (const kind of KINDS) {
    it(`${kind}: the same statements as with an existing cluster, the Kafka ones on the new cluster`, () => {
      const existing = synthesized();
      const actual = roleStatements(json, roleOf(created, kind));
      assert.deepStrictEqual(
        normalize(actual),
        normalize(onNewCluster(roleStatements(existing.json, roleOf(existing, kind)))),
      );
      const kafka = actual.filter((s) => list(s.Action).some((a) => a.startsWith('kafka')));
      assert.ok(kafka.length > 0);
      for (const s of kafka) {
        for (const r of list(s.Resource)) {
          assert.match(
            r,
            new RegExp(
              `^arn:aws:kafka:${EXAMPLE.region}:${EXAMPLE.account}:(cluster|topic|group)/webhooks/${EXAMPLE.serverlessClusterUuid}(/|$)`,
            ),
            `${kind} ${s.Sid}`,
          );
        }
      }
    });
  }

  it('the custom resource’s role: GetBootstrapBrokers on that cluster and its own log group, nothing else', () => {
    const provider = Object.entries(resourcesOf(json, 'AWS::Lambda::Function')).find(
      ([id]) => !KINDS.some((k) => id === logicalId(created.stack, created.stack.functions[k])),
    )!;
    assert.equal(
      (json.Resources[brokersId]!.Properties!.ServiceToken as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0],
      provider[0],
    );
    assert.equal(provider[1].Properties!.VpcConfig, undefined, 'MSK’s control plane, outside the VPC');
    const role = (provider[1].Properties!.Role as { 'Fn::GetAtt': [string] })['Fn::GetAtt'][0];
    const logs = (provider[1].Properties!.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
    assert.deepStrictEqual(
      normalize(roleStatements(json, role)),
      normalize([
        {
          Sid: 'Logs',
          Effect: 'Allow',
          Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          Resource: [`arn:aws:logs:${EXAMPLE.region}:${EXAMPLE.account}:log-group:${logs}:*`],
        },
        {
          Sid: 'MskBootstrapBrokers',
          Effect: 'Allow',
          Action: ['kafka:GetBootstrapBrokers'],
          Resource: [newClusterArn],
        },
      ]),
    );
    assert.equal(json.Resources[logs]?.Properties?.RetentionInDays, 30);
  });

  it('no role has a managed policy, and there is no managed policy', () => {
    for (const [id, role] of Object.entries(resourcesOf(json, 'AWS::IAM::Role'))) {
      assert.equal(role.Properties?.ManagedPolicyArns, undefined, id);
    }
    assert.equal(Object.keys(resourcesOf(json, 'AWS::IAM::ManagedPolicy')).length, 0);
  });

  it('no action anywhere is a wildcard', () => {
    for (const [id, statement] of allStatements(json)) {
      for (const action of list(statement.Action)) assert.ok(!action.includes('*'), `${id}: ${action}`);
    }
  });

  it('`*` resources only in the statements that have them with an existing cluster', () => {
    const starActions = (t: CfnTemplate) =>
      new Set(
        allStatements(t)
          .filter(([id, s]) => list(s.Resource).includes('*') && t.Resources[id]?.Type !== 'AWS::KMS::Key')
          .map(([, s]) => list(s.Action).toSorted().join(' ')),
      );
    assert.deepStrictEqual(starActions(json), starActions(synthesized().json));
  });
});

describe('cfn-lint on the new-cluster template', () => {
  it('reports no error', (t) => {
    const artifact = created.app.synth().getStackByName(created.stack.stackName);
    const lint = spawnSync(pythonTool('cfn-lint'), ['--format', 'json', '--', artifact.templateFullPath], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.ok(lint.stdout, `cfn-lint printed nothing: ${lint.stderr}`);
    const findings = JSON.parse(lint.stdout) as Array<{
      Level: string;
      Message: string;
      Rule: { Id: string };
      Location: { Path: Array<string | number> };
    }>;
    for (const f of findings.filter((x) => x.Level !== 'Error')) {
      t.diagnostic(`cfn-lint ${f.Level} ${f.Rule.Id} ${f.Location.Path.join('/')}: ${f.Message}`);
    }
    assert.deepStrictEqual(
      findings
        .filter((f) => f.Level === 'Error')
        .map((f) => `${f.Rule.Id} ${f.Location.Path.join('/')}: ${f.Message}`),
      [],
    );
  });
});

/** Statements as comparable values: lists for actions and resources, sorted; in a fixed order. */
function normalize(statements: Statement[]): Statement[] {
  return statements
    .map((s) => ({
      ...s,
      Action: list(s.Action).toSorted(),
      ...(s.Resource !== undefined ? { Resource: list(s.Resource).toSorted() } : {}),
    }))
    .toSorted((a, b) => canonical(a).localeCompare(canonical(b)));
}

function canonical(s: Statement): string {
  return JSON.stringify([s.Sid, s.Effect, s.Action, s.Resource, s.Condition]);
}
