/**
 * The plan gives each schema version its own ingress topic and each partner-event its own egress
 * topic, and the stage reading it a trigger on it. On AWS a trigger is an event source mapping of
 * one topic, so the admin function creates one when it creates a topic (ingress → the processor,
 * egress → the dispatcher), with the settings of the stack's static mappings
 * (`mapping-settings.ts`), and the scheduler retires an egress topic's mapping once the topic has
 * had no subscription for two of its reconciliations in a row (the topic itself stays: what it
 * holds may still be redriven), and makes any that is missing.
 *
 * Calls to Lambda's control plane: per new topic, ListEventSourceMappings (a page per 100 mappings)
 * and one CreateEventSourceMapping; per reconciliation, the dispatcher's listing and one
 * DeleteEventSourceMapping per retired mapping.
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
import { awsClientBase } from '../../engines/aws/client-config.ts';
import { DEFAULT_TABLE_PREFIX } from '../../engines/dynamodb/tables.ts';
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
  /** The deployment's name (its table prefix), which names its poller groups. */
  deployment: string;
}

/** The stage that reads a topic, for the topics that get a mapping of their own. */
export function stageOfTopic(topic: string): MappedStage | undefined {
  if (topic.startsWith('ingress.')) return 'processor';
  if (topic.startsWith('egress.')) return 'dispatcher';
  return undefined;
}

export class EventSourceTriggers {
  readonly #options: EventSourceTriggersOptions;
  /** Egress topics the last reconciliation found mapped but without a subscription. */
  #unused = new Set<string>();

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
      lambda: new LambdaClient(
        awsClientBase(
          { region: env.AWS_REGION || undefined, endpoint: env.WEBHOOKS_LAMBDA_ENDPOINT || undefined },
          env,
        ),
      ),
      clusterArn: env.WEBHOOKS_MSK_CLUSTER_ARN!,
      functions: {
        processor: env.WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION!,
        dispatcher: env.WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION!,
      },
      deployment: env.WEBHOOKS_DYNAMODB_TABLE_PREFIX || DEFAULT_TABLE_PREFIX,
    });
  }

  /**
   * Makes sure the topic's stage has a mapping on it (a topic no stage maps is left alone). The
   * function's mappings are listed afresh each time (another container may have made or removed one):
   * admin changes are rare, and a ListEventSourceMappings is cheap.
   */
  async topicEnsured(topic: string): Promise<void> {
    const stage = stageOfTopic(topic);
    if (!stage) return;
    const mappings = await this.#list(stage);
    if (!mappings.byTopic.has(topic)) await this.#create(stage, topic, mappings);
  }

  /**
   * Retires the mappings of egress topics no subscription uses any more, and makes the missing ones
   * of topics that have subscriptions (run by the scheduler, every 10 minutes). A mapping goes only
   * when two runs in a row found its topic without a subscription: a subscription being created
   * (its topic's mapping found, its record not yet readable through an index) is seen by the next run.
   */
  async reconcile(subscriptions: SubscriptionRepository): Promise<{ created: number; deleted: number }> {
    const wanted = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await subscriptions.list({}, { limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const sub of page.items) wanted.add(egressTopic(sub.partnerId, sub.domain, sub.event));
      cursor = page.next;
    } while (cursor);
    const mappings = await this.#list('dispatcher');
    let created = 0;
    for (const topic of wanted) {
      if (mappings.byTopic.has(topic)) continue;
      await this.#create('dispatcher', topic, mappings);
      created++;
    }
    const unused = new Set<string>();
    let deleted = 0;
    for (const [topic, uuid] of mappings.byTopic) {
      if (stageOfTopic(topic) !== 'dispatcher' || wanted.has(topic)) continue;
      if (!this.#unused.has(topic)) {
        unused.add(topic);
        continue;
      }
      await this.#options.lambda.send(new DeleteEventSourceMappingCommand({ UUID: uuid }));
      deleted++;
    }
    this.#unused = unused;
    return { created, deleted };
  }

  /**
   * Creates the mapping of `topic` in a poller group with room by `mappings` (which it updates).
   * Refused — created meanwhile by another container, or its group filled up meanwhile — it is tried
   * once more from a fresh listing.
   */
  async #create(stage: MappedStage, topic: string, mappings: KnownMappings): Promise<void> {
    let known = mappings;
    for (let tries = 1; ; tries++) {
      const group = freeGroup(this.#options.deployment, stage, known.groups);
      const input: CreateEventSourceMappingCommandInput = {
        ...mappingRequest(stage, topic, group),
        EventSourceArn: this.#options.clusterArn,
        FunctionName: this.#options.functions[stage],
      };
      try {
        const made = await this.#options.lambda.send(new CreateEventSourceMappingCommand(input));
        if (made.UUID) mappings.byTopic.set(topic, made.UUID);
        mappings.groups.set(group, (mappings.groups.get(group) ?? 0) + 1);
        return;
      } catch (err) {
        if (tries >= 2) throw err;
        known = await this.#list(stage);
        if (known.byTopic.has(topic)) return;
      }
    }
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
function freeGroup(deployment: string, stage: MappedStage, groups: Map<string, number>): string {
  for (let i = 0; ; i++) {
    const name = pollerGroupName(deployment, stage, i);
    if ((groups.get(name) ?? 0) < MAPPINGS_PER_POLLER_GROUP) return name;
  }
}
