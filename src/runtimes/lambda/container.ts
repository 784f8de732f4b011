/**
 * What one Lambda container keeps between invocations: the configuration, the store and bus
 * clients, the components — built on the first invocation (of each function kind) and reused by
 * every later one. Configured by the same `WEBHOOKS_*` variables as the standalone server; on
 * Lambda the bus is Kafka (Amazon MSK) and the store DynamoDB, and a secret key (KMS or
 * `WEBHOOKS_SECRET_KEY`) is required: a key generated in one container would seal what no other
 * container can open.
 */
import type { Context } from 'aws-lambda';
import { type Config, loadConfig } from '../../common/config.ts';
import { ConfigError } from '../../common/errors.ts';
import type { Logger } from '../../common/log.ts';
import { buildPlatform, type Platform, type Role } from '../platform.ts';
import { ensurePipelineTopics } from '../workers.ts';
import { invocationDeadline, type LambdaContextLike, withInvocation } from './invocation.ts';
import { DISPATCHER_DUE_TOPIC, LambdaBus } from './lambda-bus.ts';
import {
  createEmfMetrics,
  createLambdaLogger,
  createLambdaTracer,
  serviceNameFrom,
  traceBatch,
  traceDeliveryClient,
} from './powertools.ts';
import { EventSourceTriggers } from './triggers.ts';

/** The functions of the deployment. */
export type FunctionKind = 'admin' | 'ingest' | 'processor' | 'dispatcher' | 'scheduler';

const ROLES: Record<FunctionKind, Role[]> = {
  admin: ['api'],
  ingest: ['api'],
  processor: ['processor'],
  dispatcher: ['dispatcher'],
  scheduler: ['api'],
};

export interface LambdaContainer {
  kind: FunctionKind;
  config: Config;
  platform: Platform;
  /** The bus the components publish through (delayed messages wait in the invocation or the store). */
  bus: LambdaBus;
  /** The event source mappings of new topics (the admin) and their reconciliation (the scheduler), when configured. */
  triggers: EventSourceTriggers | undefined;
  /**
   * Runs one invocation's work observed: the Lambda context on every log line, an X-Ray subsegment
   * named `name` around it (partner requests nest under it), the metrics it moved flushed as
   * CloudWatch EMF at its end.
   */
  observe<T>(
    context: LambdaContextLike | undefined,
    name: string,
    work: () => Promise<T>,
    annotations?: Record<string, string | number | boolean | undefined>,
  ): Promise<T>;
}

export interface ContainerOptions {
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

const containers = new Map<FunctionKind, Promise<LambdaContainer>>();

/** The container of a function kind: built once, then the same for every invocation. */
export function container(kind: FunctionKind, options: ContainerOptions = {}): Promise<LambdaContainer> {
  let built = containers.get(kind);
  if (!built) {
    built = open(kind, options);
    containers.set(kind, built);
    // A failed start is tried again by the next invocation rather than kept.
    built.catch(() => containers.delete(kind));
  }
  return built;
}

/** Closes every container built in this process (tests; Lambda freezes containers instead). */
export async function closeContainers(): Promise<void> {
  const all = [...containers.values()];
  containers.clear();
  await Promise.all(all.map(async (c) => (await c.catch(() => undefined))?.platform.close()));
}

/** The configuration of a function: the server's variables, with Lambda's writable directory as data dir. */
export function lambdaConfig(env: NodeJS.ProcessEnv): Config {
  const config = loadConfig({ WEBHOOKS_DATA_DIR: '/tmp/webhooks', ...env });
  if (config.bus !== 'kafka')
    throw new ConfigError('on AWS Lambda the bus is Kafka (Amazon MSK)', {
      details: [{ field: 'WEBHOOKS_BUS', message: 'must be kafka' }],
    });
  if (config.store !== 'dynamodb')
    throw new ConfigError('on AWS Lambda the store is DynamoDB', {
      details: [{ field: 'WEBHOOKS_STORE', message: 'must be dynamodb' }],
    });
  if (!config.kms && !config.secretKey)
    throw new ConfigError('on AWS Lambda secrets need a key every function shares', {
      details: [{ field: 'WEBHOOKS_KMS_KEY_ID', message: 'set it (or WEBHOOKS_SECRET_KEY)' }],
    });
  return config;
}

async function open(kind: FunctionKind, options: ContainerOptions): Promise<LambdaContainer> {
  const env = options.env ?? process.env;
  const config = lambdaConfig(env);
  const triggers = kind === 'admin' || kind === 'scheduler' ? EventSourceTriggers.fromEnv(env) : undefined;
  const logging = createLambdaLogger({
    level: config.logLevel,
    serviceName: serviceNameFrom(undefined, env),
  });
  const logger = options.logger ?? logging.logger;
  const tracer = createLambdaTracer();
  let bus: LambdaBus | undefined;
  const platform = await buildPlatform(config, {
    roles: ROLES[kind],
    consume: false,
    // KMS seals the secrets: no local key to check against the store on every cold start.
    checkSecretKeys: config.kms === undefined,
    logger,
    wrapDeliveryClient: (client) => traceDeliveryClient(client, tracer),
    attemptDeadline: invocationDeadline,
    wrapBus: (inner, store) => {
      bus = new LambdaBus(inner, {
        scheduled: store.scheduled,
        inlineMaxMs: config.lambdaInlineWaitMs,
        ...(triggers && kind === 'admin'
          ? { onTopicEnsured: (topic: string) => triggers.topicEnsured(topic) }
          : {}),
      });
      return bus;
    },
  });
  // The topics the functions publish to without an admin creating them first. A failure closes the
  // platform just built (its Kafka and DynamoDB connections, its timers): the next invocation builds
  // another, and a warm container would pile them up for as long as topic creation fails.
  if (kind === 'admin' || kind === 'scheduler') {
    try {
      await ensurePipelineTopics(platform.bus, config.topicPartitions);
      await platform.bus.ensureTopic(DISPATCHER_DUE_TOPIC, { partitions: config.topicPartitions });
    } catch (err) {
      await platform.close().catch(() => {});
      throw err;
    }
  }
  const metrics = createEmfMetrics({ registry: platform.metrics, logger });
  return {
    kind,
    config,
    platform,
    bus: bus!,
    triggers,
    async observe(context, name, work, annotations) {
      if (context) logging.addContext(context as Context);
      try {
        return await withInvocation(context, () => traceBatch(tracer, name, work, annotations));
      } finally {
        metrics.flush();
      }
    },
  };
}
