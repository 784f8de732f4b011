/**
 * The static event source mappings (the pipeline's fixed topics, `STATIC_MAPPINGS`), declared with
 * the same `mappingRequest` the admin function sends for the topics it maps at runtime. The L1
 * resource on purpose: the L2 `ManagedKafkaEventSource` attaches AWSLambdaMSKExecutionRole and
 * `kafka:ListScramSecrets` to the role when bound; here the roles hold only `policies.ts`'s
 * statements. MSK IAM authentication needs no SourceAccessConfigurations (no SASL secret).
 */
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import {
  type MappedStage,
  mappingRequest,
  staticPollerGroup,
} from '../../src/runtimes/lambda/mapping-settings.ts';

/** A mapping of `stage`'s function on `topic` of the cluster. */
export function staticMapping(
  scope: Construct,
  id: string,
  props: { stage: MappedStage; topic: string; clusterArn: string; fn: lambda.IFunction; deployment: string },
): lambda.CfnEventSourceMapping {
  const r = mappingRequest(props.stage, props.topic, staticPollerGroup(props.deployment));
  return new lambda.CfnEventSourceMapping(scope, id, {
    eventSourceArn: props.clusterArn,
    functionName: props.fn.functionArn,
    topics: r.Topics,
    batchSize: r.BatchSize,
    maximumBatchingWindowInSeconds: r.MaximumBatchingWindowInSeconds,
    startingPosition: r.StartingPosition,
    functionResponseTypes: r.FunctionResponseTypes,
    provisionedPollerConfig: {
      minimumPollers: r.ProvisionedPollerConfig.MinimumPollers,
      maximumPollers: r.ProvisionedPollerConfig.MaximumPollers,
      pollerGroupName: r.ProvisionedPollerConfig.PollerGroupName,
    },
    maximumRetryAttempts: r.MaximumRetryAttempts,
    maximumRecordAgeInSeconds: r.MaximumRecordAgeInSeconds,
    destinationConfig: { onFailure: { destination: r.DestinationConfig.OnFailure.Destination } },
    amazonManagedKafkaEventSourceConfig: {
      consumerGroupId: r.AmazonManagedKafkaEventSourceConfig.ConsumerGroupId,
    },
  });
}
