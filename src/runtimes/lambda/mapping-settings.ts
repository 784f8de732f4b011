/**
 * The settings of every Kafka event source mapping of the deployment, in one place: the CDK stack
 * declares the static mappings with them (`infra/lib/mappings.ts`) and the admin function creates a
 * mapping for each new ingress or egress topic with them (`triggers.ts`), so the two are identical.
 * Plain data, no AWS import: `mappingRequest` has the shape of both a `CreateEventSourceMapping`
 * request and an `AWS::Lambda::EventSourceMapping` resource (their property names are the same).
 * Why these values: `docs/aws.md`, "Event source mappings".
 */
import { createHash } from 'node:crypto';
import { DLQ_TOPICS } from '../../common/dead-letter-sink.ts';
import { PROCESSOR_RETRY_TOPIC } from '../../processor/retry.ts';
import { DISPATCHER_DUE_TOPIC } from './lambda-bus.ts';

/** The stages an event source mapping feeds. */
export type MappedStage = 'processor' | 'dispatcher';

export const MAPPING_SETTINGS = {
  /** The plan's batch of up to 100 records per invocation. */
  batchSize: 100,
  /** At most 1 s of gathering before a smaller batch is sent: latency stays low at low traffic. */
  maximumBatchingWindowSeconds: 1,
  /** A topic created at runtime may hold records published before its mapping existed: read them all. */
  startingPosition: 'TRIM_HORIZON',
  /** The handlers answer `batchItemFailures` (partial batch response). */
  reportBatchItemFailures: true,
  /**
   * Provisioned mode: required for the Kafka on-failure destination and for bounded retries on
   * Kafka. One poller is the smallest (cheapest) floor per mapping; two bound the cost and the
   * concurrency one topic can take (a poller reads up to ~5 MB/s).
   */
  provisionedPollers: { minimum: 1, maximum: 2 },
  /**
   * Lambda's own retries of a failing record (a crash, a timeout, a record the handler reported
   * failed): the platform retries through its retry topics, so these only cover faults of the
   * invocation itself before the record goes to the stage's DLQ topic.
   */
  maximumRetryAttempts: 5,
  /**
   * Records older than a day are sent to the DLQ topic instead of being processed: long enough to
   * ride out an outage and its fix (nothing is lost: the DLQ is redriven), short of the topics'
   * retention (MSK's default is 7 days), so a stuck backlog ends in the DLQ rather than expiring.
   */
  maximumRecordAgeSeconds: 86_400,
} as const;

/**
 * Mappings share provisioned pollers in poller groups (Event Poller Units are paid per group, not
 * per mapping): the static mappings in one, the mappings made at runtime in groups of up to 100
 * mappings per stage (AWS's limit per group), so that a topic per partner-event does not cost a
 * poller per topic. Groups are named after the deployment (its table prefix): two stacks in one
 * account never share one.
 */
export const MAPPINGS_PER_POLLER_GROUP = 100;

/** The poller group of a deployment's static mappings. */
export function staticPollerGroup(deployment: string): string {
  return `${deployment}-pipeline`;
}

/** The `index`-th poller group of the mappings a stage's topics get at runtime. */
export function pollerGroupName(deployment: string, stage: MappedStage, index: number): string {
  return `${deployment}-${stage}-${index}`;
}

/** Kafka's (and Lambda's) limit on a consumer group id. */
const GROUP_ID_MAX = 200;
const GROUP_HASH_CHARS = 16;

/**
 * The consumer group of a stage's mapping on a topic: `webhooks-<stage>-<topic>` (a group per
 * mapping: Lambda wants them unique). A name over 200 characters keeps its start and ends with a
 * hash of the whole, so it stays unique and under the prefix the IAM policies grant.
 */
export function consumerGroupId(stage: MappedStage, topic: string): string {
  const id = `webhooks-${stage}-${topic}`;
  if (id.length <= GROUP_ID_MAX) return id;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, GROUP_HASH_CHARS);
  return `${id.slice(0, GROUP_ID_MAX - GROUP_HASH_CHARS - 1)}-${hash}`;
}

/** The stages' DLQ topics (the dead-letter sink's), where a mapping sends what it gives up on. */
export const DLQ_TOPIC: Record<MappedStage, string> = DLQ_TOPICS;

/** A mapping's on-failure destination: its stage's DLQ topic on the same cluster. */
export function onFailureDestination(stage: MappedStage): string {
  return `kafka://${DLQ_TOPIC[stage]}`;
}

/**
 * The pipeline's fixed topics, mapped by the stack (the others are created, and mapped, at
 * runtime): the processor's retry topic, and the topic the scheduler republishes due dispatcher
 * retries to.
 */
export const STATIC_MAPPINGS: ReadonlyArray<{ stage: MappedStage; topic: string }> = [
  { stage: 'processor', topic: PROCESSOR_RETRY_TOPIC },
  { stage: 'dispatcher', topic: DISPATCHER_DUE_TOPIC },
];

/** A mapping of a stage on a topic, as a request/resource (without the cluster and the function). */
export interface MappingRequest {
  Topics: string[];
  BatchSize: number;
  MaximumBatchingWindowInSeconds: number;
  StartingPosition: 'TRIM_HORIZON';
  FunctionResponseTypes: Array<'ReportBatchItemFailures'>;
  ProvisionedPollerConfig: { MinimumPollers: number; MaximumPollers: number; PollerGroupName: string };
  MaximumRetryAttempts: number;
  MaximumRecordAgeInSeconds: number;
  DestinationConfig: { OnFailure: { Destination: string } };
  AmazonManagedKafkaEventSourceConfig: { ConsumerGroupId: string };
}

/**
 * The mapping of `stage` on `topic` with the settings above, its pollers shared in `pollerGroup` (a
 * fresh object: callers may add to it).
 */
export function mappingRequest(stage: MappedStage, topic: string, pollerGroup: string): MappingRequest {
  const s = MAPPING_SETTINGS;
  return {
    Topics: [topic],
    BatchSize: s.batchSize,
    MaximumBatchingWindowInSeconds: s.maximumBatchingWindowSeconds,
    StartingPosition: s.startingPosition,
    FunctionResponseTypes: s.reportBatchItemFailures ? ['ReportBatchItemFailures'] : [],
    ProvisionedPollerConfig: {
      MinimumPollers: s.provisionedPollers.minimum,
      MaximumPollers: s.provisionedPollers.maximum,
      PollerGroupName: pollerGroup,
    },
    MaximumRetryAttempts: s.maximumRetryAttempts,
    MaximumRecordAgeInSeconds: s.maximumRecordAgeSeconds,
    DestinationConfig: { OnFailure: { Destination: onFailureDestination(stage) } },
    AmazonManagedKafkaEventSourceConfig: { ConsumerGroupId: consumerGroupId(stage, topic) },
  };
}
