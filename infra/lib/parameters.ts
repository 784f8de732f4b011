/**
 * The stack's CloudFormation parameters: what differs between deployments and is known only at
 * deploy time (the MSK cluster, the network, the alarm recipient). Nothing is looked up at synth.
 * When the stack creates its own cluster (`-c newCluster=serverless`), the two cluster parameters
 * are left out of the template: CloudFormation would ask for them otherwise.
 */
import { CfnCondition, CfnParameter, Fn } from 'aws-cdk-lib';
import type { Construct } from 'constructs';

/** The MSK cluster the functions and the mappings use. */
export interface KafkaCluster {
  /** `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>`. */
  clusterArn: string;
  /** The cluster's bootstrap brokers for IAM auth (`b-1.…:9098,b-2.…:9098`). */
  bootstrapBrokers: string;
}

export interface StackParameters {
  /** The existing MSK cluster (parameters); undefined when the stack creates its own. */
  cluster: KafkaCluster | undefined;
  /** Private subnets (with a route to the cluster, and a NAT for the partners' endpoints). */
  subnetIds: string[];
  /** The security group of the functions (the cluster's must admit it on 9098). */
  securityGroupId: string;
  /** Where alarms are emailed; empty for none (the SNS topic is there to subscribe to either way). */
  alarmEmail: string;
  hasAlarmEmail: CfnCondition;
  /** The HTTP API's steady-state request rate and burst (per second, over all routes). */
  apiRateLimit: number;
  apiBurstLimit: number;
  /** The offset lag (records) of a stage above which its alarm fires. */
  offsetLagThreshold: number;
  /**
   * The replication factor of the topics the functions create: the `KafkaReplicationFactor`
   * parameter on an existing cluster (a two-broker cluster refuses 3), 3 on a new serverless one.
   */
  kafkaReplicationFactor: string;
}

/** `existingCluster: false` leaves out `MskClusterArn` and `KafkaBootstrapBrokers`. */
export function stackParameters(scope: Construct, options = { existingCluster: true }): StackParameters {
  const cluster = options.existingCluster ? clusterParameters(scope) : undefined;
  const subnets = new CfnParameter(scope, 'SubnetIds', {
    type: 'List<AWS::EC2::Subnet::Id>',
    description:
      'Private subnets for the functions: a route to the cluster and a NAT gateway to the internet',
  });
  const securityGroup = new CfnParameter(scope, 'SecurityGroupId', {
    type: 'AWS::EC2::SecurityGroup::Id',
    description: 'Security group of the functions; the cluster must admit it on port 9098',
  });
  const alarmEmail = new CfnParameter(scope, 'AlarmEmail', {
    type: 'String',
    default: '',
    description: 'Email address the alarms are sent to (empty: none)',
    allowedPattern: '^$|^[^@\\s]+@[^@\\s]+$',
    constraintDescription: 'an email address, or empty',
  });
  const rate = new CfnParameter(scope, 'ApiRateLimit', {
    type: 'Number',
    default: 1000,
    minValue: 1,
    description: 'Steady-state requests per second the HTTP API accepts',
  });
  const burst = new CfnParameter(scope, 'ApiBurstLimit', {
    type: 'Number',
    default: 2000,
    minValue: 1,
    description: 'Burst of requests the HTTP API accepts',
  });
  const lag = new CfnParameter(scope, 'OffsetLagThreshold', {
    type: 'Number',
    default: 10000,
    minValue: 1,
    description: 'Records behind (OffsetLag, maximum) above which the processor or dispatcher alarm fires',
  });
  const replication = options.existingCluster
    ? new CfnParameter(scope, 'KafkaReplicationFactor', {
        // A String of three values: a Number would let 2.5 or 1e0 deploy, which every function's
        // configuration check then refuses at start.
        type: 'String',
        default: '3',
        allowedValues: ['1', '2', '3'],
        description:
          'Replication factor of the topics the platform creates: at most the number of brokers (3 on three or more)',
      }).valueAsString
    : '3';
  const hasAlarmEmail = new CfnCondition(scope, 'HasAlarmEmail', {
    expression: Fn.conditionNot(Fn.conditionEquals(alarmEmail.valueAsString, '')),
  });
  return {
    cluster,
    subnetIds: subnets.valueAsList,
    securityGroupId: securityGroup.valueAsString,
    alarmEmail: alarmEmail.valueAsString,
    hasAlarmEmail,
    apiRateLimit: rate.valueAsNumber,
    apiBurstLimit: burst.valueAsNumber,
    offsetLagThreshold: lag.valueAsNumber,
    kafkaReplicationFactor: replication,
  };
}

/** The existing cluster: its ARN and its IAM bootstrap brokers. */
function clusterParameters(scope: Construct): KafkaCluster {
  const clusterArn = new CfnParameter(scope, 'MskClusterArn', {
    type: 'String',
    description: 'ARN of the existing Amazon MSK cluster (IAM access control enabled)',
    allowedPattern: '^arn:aws[a-z-]*:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9-]+/[A-Za-z0-9-]+$',
    constraintDescription: 'arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>',
  });
  const bootstrapBrokers = new CfnParameter(scope, 'KafkaBootstrapBrokers', {
    type: 'String',
    description:
      'Bootstrap brokers of the cluster for IAM auth (aws kafka get-bootstrap-brokers: BootstrapBrokerStringSaslIam)',
    allowedPattern: '^[A-Za-z0-9.-]+:[0-9]+(,[A-Za-z0-9.-]+:[0-9]+)*$',
    constraintDescription: 'comma-separated host:port',
  });
  return { clusterArn: clusterArn.valueAsString, bootstrapBrokers: bootstrapBrokers.valueAsString };
}
