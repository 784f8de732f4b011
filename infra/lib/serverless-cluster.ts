/**
 * An Amazon MSK Serverless cluster of the stack's own (`-c newCluster=serverless`), in the subnets
 * and security group given as parameters, with IAM client authentication (the only one MSK
 * Serverless has, and the one the platform and the mappings use). It gives what the two cluster
 * parameters give otherwise: the cluster's ARN and its IAM bootstrap brokers.
 *
 * The bootstrap brokers are not an attribute of `AWS::MSK::ServerlessCluster` (its only one is
 * `Arn`), so a custom resource reads them with `kafka:GetBootstrapBrokers`, an MSK control-plane
 * call, on create and whenever the cluster's ARN changes. Its function has a role of its own with
 * that one action on that one cluster, plus writing to its own log group: no managed policy.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as msk from 'aws-cdk-lib/aws-msk';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import type { KafkaCluster } from './parameters.ts';

/** The kinds of cluster the stack can create (`-c newCluster=<kind>`). */
export const NEW_CLUSTER_KINDS = ['serverless'] as const;
export type NewClusterKind = (typeof NEW_CLUSTER_KINDS)[number];

/** The `newCluster` context (or prop) as a kind, or undefined for an existing cluster. */
export function newClusterKind(value: unknown): NewClusterKind | undefined {
  if (value === undefined) return undefined;
  if ((NEW_CLUSTER_KINDS as readonly unknown[]).includes(value)) return value as NewClusterKind;
  throw new Error(
    `newCluster: ${JSON.stringify(value)} is not one of ${NEW_CLUSTER_KINDS.join(', ')} ` +
      '(leave it unset to use an existing cluster, given as parameters)',
  );
}

export interface ServerlessClusterProps {
  /** 1 to 64 characters: letters, digits and hyphens, starting with a letter or digit. */
  clusterName: string;
  subnetIds: string[];
  securityGroupId: string;
}

export class WebhooksServerlessCluster extends Construct implements KafkaCluster {
  readonly cluster: msk.CfnServerlessCluster;
  readonly clusterArn: string;
  readonly bootstrapBrokers: string;

  constructor(scope: Construct, id: string, props: ServerlessClusterProps) {
    super(scope, id);
    this.cluster = new msk.CfnServerlessCluster(this, 'Cluster', {
      clusterName: props.clusterName,
      clientAuthentication: { sasl: { iam: { enabled: true } } },
      vpcConfigs: [{ subnetIds: props.subnetIds, securityGroups: [props.securityGroupId] }],
    });
    // Retained like the tables: its topics hold the events in flight and the dead letters. The
    // outputs give the values of the cluster parameters, to deploy on it as an existing cluster.
    this.cluster.applyRemovalPolicy(RemovalPolicy.RETAIN);
    this.clusterArn = this.cluster.attrArn;

    const role = new iam.Role(this, 'BrokersRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'Execution role of the custom resource that reads the MSK cluster bootstrap brokers',
    });
    const logGroup = new logs.LogGroup(this, 'BrokersLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'Logs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    // Not an attribute of the cluster: MSK's control plane (GetBootstrapBrokers) has them.
    const call: cr.AwsSdkCall = {
      service: 'Kafka',
      action: 'GetBootstrapBrokers',
      parameters: { ClusterArn: this.clusterArn },
      physicalResourceId: cr.PhysicalResourceId.of(this.clusterArn),
      outputPaths: ['BootstrapBrokerStringSaslIam'],
    };
    const brokers = new cr.AwsCustomResource(this, 'BootstrapBrokers', {
      onUpdate: call, // also the create call
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({
          sid: 'MskBootstrapBrokers',
          actions: ['kafka:GetBootstrapBrokers'],
          resources: [this.clusterArn],
        }),
      ]),
      role,
      logGroup,
      timeout: Duration.minutes(1),
      // The SDK of Lambda's Node.js runtime has the Kafka client: nothing to download.
      installLatestAwsSdk: false,
    });
    this.bootstrapBrokers = brokers.getResponseField('BootstrapBrokerStringSaslIam');
  }
}
