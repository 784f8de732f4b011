/**
 * The five Lambda functions: Node.js 24 on arm64, X-Ray active tracing, each with a role of its
 * own (no managed policies: only the statements of `policies.ts`), a log group of its own, and in
 * the VPC given as parameters (they all talk to the MSK cluster).
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';

/** Memory (MB) and timeout of each function. */
export const FUNCTION_SIZING: Record<
  FunctionKind,
  { memory: number; timeout: Duration; description: string }
> = {
  // Behind the HTTP API, whose integrations time out at 30 s.
  admin: {
    memory: 1024,
    timeout: Duration.seconds(29),
    description: 'Admin API: schemas, partners, subscriptions, keys, operations',
  },
  ingest: { memory: 1024, timeout: Duration.seconds(15), description: 'Producer API: POST /events' },
  processor: {
    memory: 1024,
    timeout: Duration.minutes(2),
    description: 'Event processor: ingress and processor retry topics',
  },
  // A batch of up to 100 deliveries to partners' endpoints, each bounded by its own timeout.
  dispatcher: {
    memory: 1024,
    timeout: Duration.minutes(5),
    description: 'Webhook dispatcher: egress and due retry topics',
  },
  // Runs every minute, and must be done before the next run.
  scheduler: {
    memory: 512,
    timeout: Duration.seconds(55),
    description: 'Publishes due retries and releases held tasks',
  },
};

export interface WebhooksFunctionProps {
  kind: FunctionKind;
  code: lambda.Code;
  environment: Record<string, string>;
  subnetIds: string[];
  securityGroupId: string;
  reservedConcurrency?: number;
}

/** One function with its role and log group. */
export class WebhooksFunction extends Construct {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: WebhooksFunctionProps) {
    super(scope, id);
    const sizing = FUNCTION_SIZING[props.kind];
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of the webhooks ${props.kind} function`,
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.function = new lambda.Function(this, 'Function', {
      description: sizing.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      handler: 'index.handler',
      code: props.code,
      memorySize: sizing.memory,
      timeout: sizing.timeout,
      role: this.role,
      logGroup: this.logGroup,
      tracing: lambda.Tracing.ACTIVE,
      environment: props.environment,
      ...(props.reservedConcurrency !== undefined
        ? { reservedConcurrentExecutions: props.reservedConcurrency }
        : {}),
    });
    // The subnets are a List parameter (not known at synth), which the L2's `vpc` cannot take.
    const cfn = this.function.node.defaultChild as lambda.CfnFunction;
    cfn.addPropertyOverride('VpcConfig', {
      SubnetIds: props.subnetIds,
      SecurityGroupIds: [props.securityGroupId],
    });
  }
}
