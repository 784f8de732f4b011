/**
 * The pipeline workers of the standalone runtime: the processor and the dispatcher, each a consumer
 * group on the bus running the component's core. Thin: wiring only.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BackgroundErrors } from '../common/background-errors.ts';
import type { Config } from '../common/config.ts';
import { DeadLetterSink, DLQ_TOPICS } from '../common/dead-letter-sink.ts';
import { uuidv7 } from '../common/ids.ts';
import { ValidatorCache } from '../common/json-schema.ts';
import type { Logger } from '../common/log.ts';
import type { MetricsRegistry } from '../common/metrics.ts';
import type { SubscriptionRecord } from '../common/model.ts';
import type { Bus, ConsumerHandle } from '../common/ports/bus.ts';
import type { DeliveryClient } from '../common/ports/delivery-client.ts';
import type { PartnerDirectory } from '../common/ports/partner-directory.ts';
import type { Store } from '../common/ports/store.ts';
import type { SecretSealer } from '../common/secret-box.ts';
import type { TtlCache } from '../common/ttl-cache.ts';
import { DISPATCHER_TOPIC_PREFIXES, WebhookDispatcher } from '../dispatcher/dispatcher.ts';
import { EndpointLimiter } from '../dispatcher/endpoint-limiter.ts';
import { RETRY_TIERS_MS, retryTopicName } from '../dispatcher/retry-math.ts';
import type { CachedLookups } from '../processor/lookups.ts';
import { EventProcessor, PROCESSOR_TOPIC_PREFIXES } from '../processor/processor.ts';
import { PROCESSOR_RETRY_TOPIC } from '../processor/retry.ts';
import { CredentialCache } from '../subscriptions/secrets.ts';
import type { SubscriptionAdmin } from '../subscriptions/service.ts';

export const LEDGER_TTL_MS = 7 * 86_400_000;

export interface WorkerDeps {
  config: Config;
  bus: Bus;
  store: Store;
  lookups: CachedLookups;
  /** The partner directory itself (past the lookups' cache). */
  directory: PartnerDirectory;
  /** Where background failures are counted and logged. */
  background: BackgroundErrors;
  subscriptionAdmin: SubscriptionAdmin;
  /** Opens the subscriptions' sealed secrets (the local key box, or KMS: `src/runtimes/sealer.ts`). */
  secretBox: SecretSealer;
  client: DeliveryClient;
  metrics: MetricsRegistry;
  logger: Logger;
  clock: () => Date;
  /** The dispatcher's subscription cache, invalidated by same-process admin changes. */
  subscriptionCache: TtlCache<string, SubscriptionRecord | undefined>;
  /** The latest time an attempt may end (ms since epoch), when the runtime has one (a Lambda invocation's end). */
  attemptDeadline?: () => number | undefined;
  /**
   * Whether the idempotency ledger is on now (AppConfig's `ledger` flag, read live); absent: as
   * `config.ledger` says, for good.
   */
  ledgerEnabled?: () => boolean;
}

/** Topics the workers publish to without an admin creating them first. */
export async function ensurePipelineTopics(bus: Bus, partitions: number): Promise<void> {
  const names = [
    PROCESSOR_RETRY_TOPIC,
    DLQ_TOPICS.processor,
    DLQ_TOPICS.dispatcher,
    ...RETRY_TIERS_MS.map((ms) => retryTopicName('dispatcher', ms)),
  ];
  for (const name of names) await bus.ensureTopic(name, { partitions });
}

/** The processor core as every runtime configures it (a consumer group here, an event source mapping on Lambda). */
export function createProcessor(deps: WorkerDeps): EventProcessor {
  return new EventProcessor({
    lookups: deps.lookups,
    validators: new ValidatorCache(),
    publish: (m) => deps.bus.publish(m),
    deadLetters: sink(deps),
    deliveries: deps.store.deliveries,
    dedupe: deps.ledgerEnabled ?? deps.config.ledger,
    maxAttempts: 5,
    retryDelayMs: deps.config.processorRetryDelayMs,
    // A mapped payload is never larger than an event the API would accept.
    maxPayloadBytes: deps.config.maxBodyBytes,
    metrics: deps.metrics,
    logger: deps.logger.child({ component: 'processor' }),
    clock: deps.clock,
  });
}

/** Starts the processor consumer group. */
export function startProcessor(deps: WorkerDeps, processor = createProcessor(deps)): ConsumerHandle {
  return deps.bus.consume({
    group: 'processor',
    topicPrefixes: PROCESSOR_TOPIC_PREFIXES,
    maxBatch: 100,
    maxInFlightBytes: deps.config.maxInFlightBytes,
    handler: (batch) => processor.processBatch(batch),
    redelivery: { maxFailures: deps.config.maxRecordFailures },
    deadLetter: (message, notice) => processor.giveUp(message, notice),
    onError: consumerErrors(deps, 'processor'),
  });
}

/** The dispatcher core as every runtime configures it. */
export function createDispatcher(deps: WorkerDeps): WebhookDispatcher {
  const { store } = deps;
  const credentials = new CredentialCache(deps.secretBox);
  return new WebhookDispatcher({
    subscription: (id) => deps.subscriptionCache.get(id, () => store.subscriptions.get(id)),
    subscriptionNow: (id) => store.subscriptions.get(id),
    partner: (id) => deps.lookups.partner(id),
    partnerNow: (id) => deps.directory.getPartner(id),
    disableSubscription: (id, reason) => deps.subscriptionAdmin.disable(id, reason),
    credentials,
    deliveries: store.deliveries,
    heldTasks: store.heldTasks,
    maxHeldPerSubscription: deps.config.maxHeldPerSubscription,
    ...(deps.ledgerEnabled
      ? { ledger: store.ledger, ledgerEnabled: deps.ledgerEnabled }
      : deps.config.ledger
        ? { ledger: store.ledger }
        : {}),
    ledgerTtlMs: LEDGER_TTL_MS,
    client: deps.client,
    publish: (m, options) => deps.bus.publish(m, options),
    deadLetters: sink(deps),
    limiter: new EndpointLimiter(),
    defaultMaxConcurrency: deps.config.endpointConcurrency,
    maxResponseBytes: 2048,
    userAgent: 'webhooks-platform/0.1 (+https://www.standardwebhooks.com/)',
    metrics: deps.metrics,
    logger: deps.logger.child({ component: 'dispatcher' }),
    clock: deps.clock,
    ...(deps.attemptDeadline ? { attemptDeadline: deps.attemptDeadline } : {}),
  });
}

/** Starts the dispatcher consumer group. */
export function startDispatcher(deps: WorkerDeps, dispatcher = createDispatcher(deps)): ConsumerHandle {
  return deps.bus.consume({
    group: 'dispatcher',
    topicPrefixes: DISPATCHER_TOPIC_PREFIXES,
    maxBatch: 100,
    // Tasks are reported done one by one, and a saturated endpoint's partition is paused, so what
    // is in flight is what the endpoints are working on: a hanging endpoint holds its concurrency
    // (16 by default) and tasks that waited at most 2 s; 4,000 leave room for ~250 of them at once.
    // Each endpoint reads one partition of its egress topic: 500 per partition keep a busy endpoint
    // fed without letting its backlog take the rest.
    maxInFlight: 4000,
    maxInFlightPerPartition: 500,
    maxInFlightBytes: deps.config.maxInFlightBytes,
    handler: (batch, control) => dispatcher.handleBatch(batch, control),
    redelivery: { maxFailures: deps.config.maxRecordFailures },
    deadLetter: (message, notice) => dispatcher.giveUp(message, notice),
    onError: consumerErrors(deps, 'dispatcher'),
  });
}

/**
 * What a consumer tells about problems it handles itself (a batch that threw, a dead-lettering that
 * failed, records skipped): logged with the group, and counted by code in `consumer_errors_total`.
 */
function consumerErrors(deps: WorkerDeps, group: string): (err: unknown) => void {
  const errors = deps.metrics.counter(
    'consumer_errors_total',
    'Problems a consumer group handled by itself',
    ['group', 'code'],
  );
  return (err) => {
    const raw = (err as { code?: unknown } | null)?.code;
    const code = typeof raw === 'string' ? raw : 'error';
    errors.inc({ group, code });
    // Records skipped and offsets reset are said every time; a failure that repeats (an outage) once a minute.
    if (code === 'records_skipped') deps.logger.error('consumer skipped records', { err, group });
    else if (code === 'offset_reset')
      deps.logger.error('consumer offset past the log end, reset', { err, group });
    else deps.background.log(`consumer:${group}:${code}`, err, { group });
  };
}

function sink(deps: WorkerDeps): DeadLetterSink {
  return new DeadLetterSink({
    deadLetters: deps.store.deadLetters,
    publish: (m) => deps.bus.publish(m),
    newId: uuidv7,
    clock: deps.clock,
  });
}

/** Rows deleted per chunk of history retention, and the rest between chunks (ms). */
const HISTORY_CHUNK = 500;
const HISTORY_REST_MS = 10;

/**
 * Store housekeeping every `intervalMs`, one run at a time: expired idempotency-ledger entries
 * (completed deliveries expire after 7 days), and with a history retention of N days the
 * deliveries (with their attempts), event routes and dead letters older than that, in small chunks
 * with rests, so the delivery path's writes never wait long. Often, so that each run has only the
 * last interval's rows to delete.
 */
export function startStorePurge(
  store: Store,
  logger: Logger,
  options: {
    historyRetentionDays: number;
    intervalMs?: number;
    clock?: () => Date;
    /** Re-enqueues tasks held for subscriptions no longer PAUSED; returns how many. */
    releaseHeld?: () => Promise<number>;
    /** Told when a run fails (default: a warning in the log). */
    onError?: (err: unknown) => void;
  },
): () => void {
  let running = false;
  let stopped = false;
  const clock = options.clock ?? (() => new Date());
  const report = (err: unknown): void => {
    if (stopped) return;
    if (options.onError) options.onError(err);
    else logger.warn('store purge failed', { err });
  };
  const run = async (): Promise<void> => {
    // A release that fails (the Partner Info API down, a store error) is reported on its own: the
    // purge after it still runs, or the ledger and the history would grow for as long as it fails.
    try {
      const released = (await options.releaseHeld?.()) ?? 0;
      if (released > 0) logger.info('re-enqueued tasks held for resumed subscriptions', { released });
    } catch (err) {
      report(err);
    }
    // What an engine expires by itself (DynamoDB's TTL) has no purge method: nothing to delete here.
    const { deliveries, deadLetters, ledger } = store;
    const now = clock();
    if (ledger.purge) {
      const removed = await ledger.purge(now.getTime());
      if (removed > 0) logger.debug('purged expired ledger entries', { removed });
    }
    if (options.historyRetentionDays <= 0) return;
    const before = new Date(now.getTime() - options.historyRetentionDays * 86_400_000).toISOString();
    const removed = { deliveries: 0, routes: 0, deadLetters: 0 };
    // Chunk after chunk, with a rest between, until a chunk comes back short.
    const inChunks = async (chunk: () => Promise<boolean>): Promise<void> => {
      while ((await chunk()) && !stopped) await sleep(HISTORY_REST_MS);
    };
    if (deliveries.purgeBefore) {
      const purge = deliveries.purgeBefore.bind(deliveries);
      await inChunks(async () => {
        const n = await purge(before, HISTORY_CHUNK);
        removed.deliveries += n.deliveries;
        removed.routes += n.routes;
        return n.deliveries === HISTORY_CHUNK || n.routes === HISTORY_CHUNK;
      });
    }
    if (stopped) return;
    if (deadLetters.purgeBefore) {
      const purge = deadLetters.purgeBefore.bind(deadLetters);
      await inChunks(async () => {
        const n = await purge(before, HISTORY_CHUNK);
        removed.deadLetters += n;
        return n === HISTORY_CHUNK;
      });
    }
    if (removed.deliveries + removed.routes + removed.deadLetters > 0)
      logger.info('history retention removed old records', { before, ...removed });
  };
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    run()
      .catch(report)
      .finally(() => {
        running = false;
      });
  }, options.intervalMs ?? 60_000);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
