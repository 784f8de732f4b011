/**
 * The plan gives each schema version its own ingress topic and each partner-event its own egress
 * topic, and the stage reading it a trigger on it. On AWS a trigger is an event source mapping of
 * one topic, so the admin function creates one when it creates a topic (ingress → the processor,
 * egress → the dispatcher), with the settings of the stack's static mappings
 * (`mapping-settings.ts`), and deletes an egress topic's mapping with the topic's last
 * subscription (the topic itself stays: what it holds may still be redriven).
 *
 * Calls to Lambda's control plane, per topic: ListEventSourceMappings once per container and
 * function (then a cache), CreateEventSourceMapping once per new topic.
 */
import {
  CreateEventSourceMappingCommand,
  type CreateEventSourceMappingCommandInput,
  DeleteEventSourceMappingCommand,
  type EventSourceMappingConfiguration,
  LambdaClient,
  ListEventSourceMappingsCommand,
} from '@aws-sdk/client-lambda';
import { ConfigError } from '../../common/errors.ts';
import type { SubscriptionRepository } from '../../common/ports/store.ts';
import { egressTopic } from '../../common/topics.ts';
import type { SubscriptionChange } from '../thread-host.ts';
import {
  MAPPINGS_PER_POLLER_GROUP,
  type MappedStage,
  mappingRequest,
  pollerGroupName,
} from './mapping-settings.ts';

export interface EventSourceTriggersOptions {
  lambda: LambdaClient;
  /** The MSK cluster's ARN (the mappings' event source). */
  clusterArn: string;
  /** The function (name or ARN) each stage runs in. */
  functions: Record<MappedStage, string>;
}

/** The stage that reads a topic, for the topics that get a mapping of their own. */
export function stageOfTopic(topic: string): MappedStage | undefined {
  if (topic.startsWith('ingress.')) return 'processor';
  if (topic.startsWith('egress.')) return 'dispatcher';
  return undefined;
}

export class EventSourceTriggers {
  readonly #options: EventSourceTriggersOptions;
  /** The mappings of each function (read once per container, then kept up to date here). */
  readonly #known = new Map<MappedStage, Promise<KnownMappings>>();

  constructor(options: EventSourceTriggersOptions) {
    this.#options = options;
  }

  /**
   * From `WEBHOOKS_MSK_CLUSTER_ARN`, `WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION` and
   * `WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION` (all three, or none: no mappings are managed);
   * `WEBHOOKS_LAMBDA_ENDPOINT` points the client elsewhere (tests).
   */
  static fromEnv(env: NodeJS.ProcessEnv): EventSourceTriggers | undefined {
    const names = [
      'WEBHOOKS_MSK_CLUSTER_ARN',
      'WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION',
      'WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION',
    ] as const;
    const set = names.filter((n) => env[n]);
    if (set.length === 0) return undefined;
    if (set.length < names.length)
      throw new ConfigError('event source mappings need the cluster and both functions', {
        details: names
          .filter((n) => !env[n])
          .map((field) => ({ field, message: 'required with the others' })),
      });
    return new EventSourceTriggers({
      lambda: new LambdaClient({
        ...(env.WEBHOOKS_LAMBDA_ENDPOINT ? { endpoint: env.WEBHOOKS_LAMBDA_ENDPOINT } : {}),
        ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
      }),
      clusterArn: env.WEBHOOKS_MSK_CLUSTER_ARN!,
      functions: {
        processor: env.WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION!,
        dispatcher: env.WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION!,
      },
    });
  }

  /** Makes sure the topic's stage has a mapping on it (a topic no stage maps is left alone). */
  async topicEnsured(topic: string): Promise<void> {
    const stage = stageOfTopic(topic);
    if (!stage) return;
    const mappings = await this.#mappings(stage);
    if (mappings.byTopic.has(topic)) return;
    const group = freeGroup(stage, mappings.groups);
    const input: CreateEventSourceMappingCommandInput = {
      ...mappingRequest(stage, topic, group),
      EventSourceArn: this.#options.clusterArn,
      FunctionName: this.#options.functions[stage],
    };
    try {
      const created = await this.#options.lambda.send(new CreateEventSourceMappingCommand(input));
      if (created.UUID) {
        mappings.byTopic.set(topic, created.UUID);
        mappings.groups.set(group, (mappings.groups.get(group) ?? 0) + 1);
      }
    } catch (err) {
      // Created meanwhile by another admin container: read the mappings again.
      if ((err as { name?: string }).name !== 'ResourceConflictException') throw err;
      this.#known.delete(stage);
      if (!(await this.#mappings(stage)).byTopic.has(topic)) throw err;
    }
  }

  /** After a subscription is deleted: its egress topic's mapping goes with the topic's last subscription. */
  async subscriptionChanged(
    change: SubscriptionChange,
    subscriptions: SubscriptionRepository,
  ): Promise<void> {
    if (!change.partnerId || (await subscriptions.get(change.id))) return;
    const left = await subscriptions.list(
      { partnerId: change.partnerId, domain: change.domain, event: change.event },
      { limit: 1 },
    );
    if (left.items.length > 0) return;
    const topic = egressTopic(change.partnerId, change.domain, change.event);
    const mappings = await this.#mappings('dispatcher');
    const uuid = mappings.byTopic.get(topic);
    if (!uuid) return;
    await this.#options.lambda.send(new DeleteEventSourceMappingCommand({ UUID: uuid }));
    mappings.byTopic.delete(topic);
    // Its group's count is not lowered: a group's members are known again at the next listing.
  }

  #mappings(stage: MappedStage): Promise<KnownMappings> {
    let known = this.#known.get(stage);
    if (!known) {
      known = this.#list(stage);
      this.#known.set(stage, known);
      known.catch(() => this.#known.delete(stage));
    }
    return known;
  }

  async #list(stage: MappedStage): Promise<KnownMappings> {
    const known: KnownMappings = { byTopic: new Map(), groups: new Map() };
    let marker: string | undefined;
    do {
      const page = await this.#options.lambda.send(
        new ListEventSourceMappingsCommand({
          EventSourceArn: this.#options.clusterArn,
          FunctionName: this.#options.functions[stage],
          ...(marker ? { Marker: marker } : {}),
        }),
      );
      for (const m of page.EventSourceMappings ?? []) addMapping(known, m);
      marker = page.NextMarker;
    } while (marker);
    return known;
  }
}

/** A function's mappings: their UUIDs by topic, and how many each poller group holds. */
interface KnownMappings {
  byTopic: Map<string, string>;
  groups: Map<string, number>;
}

function addMapping(known: KnownMappings, mapping: EventSourceMappingConfiguration): void {
  if (!mapping.UUID) return;
  for (const topic of mapping.Topics ?? []) known.byTopic.set(topic, mapping.UUID);
  const group = mapping.ProvisionedPollerConfig?.PollerGroupName;
  if (group) known.groups.set(group, (known.groups.get(group) ?? 0) + 1);
}

/** The first of the stage's poller groups with room for another mapping. */
function freeGroup(stage: MappedStage, groups: Map<string, number>): string {
  for (let i = 0; ; i++) {
    const name = pollerGroupName(stage, i);
    if ((groups.get(name) ?? 0) < MAPPINGS_PER_POLLER_GROUP) return name;
  }
}
