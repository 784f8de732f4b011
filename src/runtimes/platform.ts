/**
 * The composition root of the standalone runtime: builds engines from the configuration, the
 * components over them, and the HTTP edge. No business rule lives here.
 */

import { readFileSync } from 'node:fs';
import { accessRoutes } from '../access/routes.ts';
import { ApiKeyAdmin, Authenticator } from '../access/service.ts';
import { BackgroundErrors } from '../common/background-errors.ts';
import type { Config } from '../common/config.ts';
import type { HostResolver } from '../common/delivery-url.ts';
import type { ApiResponse } from '../common/http.ts';
import { Router } from '../common/http.ts';
import { uuidv7 } from '../common/ids.ts';
import { Logger, registerSecret } from '../common/log.ts';
import { MetricsRegistry, mergeExposition, processMetrics } from '../common/metrics.ts';
import type { SubscriptionRecord } from '../common/model.ts';
import type { Bus, ConsumerHandle } from '../common/ports/bus.ts';
import type { DeliveryClient } from '../common/ports/delivery-client.ts';
import type { PartnerDirectory } from '../common/ports/partner-directory.ts';
import type { Store } from '../common/ports/store.ts';
import { TtlCache } from '../common/ttl-cache.ts';
import type { WebhookDispatcher } from '../dispatcher/dispatcher.ts';
import type { AppConfigSettings } from '../engines/aws/appconfig.ts';
import { createDnsResolver } from '../engines/dns-resolver.ts';
import type { CapacityReport } from '../engines/dynamodb/db.ts';
import { EmbeddedLog } from '../engines/embedded/log.ts';
import { UndiciDeliveryClient } from '../engines/http/delivery-client.ts';
import { HttpPartnerDirectory } from '../engines/partner-api/http-directory.ts';
import { SqliteStore } from '../engines/sqlite/store.ts';
import { ingestRoutes } from '../ingest/routes.ts';
import { EventIngest } from '../ingest/service.ts';
import { operationsRoutes } from '../operations/routes.ts';
import { Operations } from '../operations/service.ts';
import { CachedLookups } from '../processor/lookups.ts';
import type { EventProcessor } from '../processor/processor.ts';
import { schemaRoutes } from '../schemas/routes.ts';
import { SchemaAdmin } from '../schemas/service.ts';
import { prepareSecretKeys } from '../subscriptions/key-rotation.ts';
import { PartnerAdmin, StorePartnerDirectory } from '../subscriptions/partners.ts';
import { partnerRoutes, subscriptionRoutes } from '../subscriptions/routes.ts';
import { SubscriptionAdmin } from '../subscriptions/service.ts';
import { claimDataDir } from './data-dir-users.ts';
import { openBus, openStore } from './engines.ts';
import { createEdge, type RawRequest } from './http/edge.ts';
import { buildOpenApi } from './http/openapi.ts';
import {
  ensureDataDir,
  type LocalSecret,
  loadAdminToken,
  loadPreviousSecretBoxes,
  loadSecretBox,
} from './local-secrets.ts';
import { ThreadedSchemaChecks } from './schema-checks.ts';
import { openSealer } from './sealer.ts';
import { systemRoutes } from './system-routes.ts';
import { RoleThread, type SchemaChange, type SubscriptionChange, type ThreadRole } from './thread-host.ts';
import {
  createDispatcher,
  createProcessor,
  ensurePipelineTopics,
  startDispatcher,
  startProcessor,
  startStorePurge,
} from './workers.ts';

export const VERSION = '0.1.0';

/** What one process runs: the HTTP API, the processor, the dispatcher (all three by default). */
export type Role = 'api' | 'processor' | 'dispatcher';
export const ALL_ROLES: readonly Role[] = ['api', 'processor', 'dispatcher'];

export interface PlatformOptions {
  logger?: Logger;
  resolve?: HostResolver;
  /** A clock for the components; with one, the dispatcher stays on this thread (a clock cannot cross). */
  clock?: () => Date;
  roles?: readonly Role[];
  /**
   * This platform is a worker role's thread of a host process (the role it runs): the host reports
   * the process gauges (RSS, heap…), and the host checkpoints the WAL, so that this thread never
   * stalls in a checkpoint's fsyncs.
   */
  hostedThread?: ThreadRole;
  /** In a worker role's thread: it runs the process's WAL checkpoints and log retention. */
  housekeeping?: boolean;
  /** Also told of every subscription change made here (a worker thread tells its host). */
  onSubscriptionChanged?: (change: SubscriptionChange) => void;
  /**
   * Builds the worker cores without consumer groups (default true: they consume): a runtime that is
   * handed its batches (AWS Lambda's event source mappings) runs `processor` and `dispatcher` itself.
   */
  consume?: boolean;
  /** Wraps the bus every component uses (AWS Lambda: retries kept in the store, triggers for new topics). */
  wrapBus?: (bus: Bus, store: Store) => Bus;
  /**
   * Checks at start that the local key opens what the store has sealed, re-sealing values of
   * previous keys (default true). It lists every subscription: a Lambda container whose secrets
   * KMS seals skips it on each cold start.
   */
  checkSecretKeys?: boolean;
  /** Wraps the dispatcher's HTTP client (AWS Lambda: an X-Ray subsegment around each partner request). */
  wrapDeliveryClient?: (client: DeliveryClient) => DeliveryClient;
  /** The latest time a delivery attempt may end, when the runtime has one (see `DispatcherDeps.attemptDeadline`). */
  attemptDeadline?: () => number | undefined;
}

export interface Platform {
  config: Config;
  logger: Logger;
  metrics: MetricsRegistry;
  store: Store;
  bus: Bus;
  router: Router;
  roles: readonly Role[];
  adminToken: LocalSecret;
  handle: (raw: RawRequest) => Promise<ApiResponse>;
  /** The dispatcher's worker thread, when it runs in one. */
  dispatcherThread: RoleThread | undefined;
  /** The processor's worker thread, when it runs in one. */
  processorThread: RoleThread | undefined;
  /** The worker cores of the roles this process runs (with `consume: false`, for the runtime to drive). */
  processor: EventProcessor | undefined;
  dispatcher: WebhookDispatcher | undefined;
  /** Redrive, held tasks and the delivery history. */
  operations: Operations;
  /** Drops cached copies of a subscription changed elsewhere (by the dispatcher thread or its host). */
  subscriptionChanged(change: SubscriptionChange): void;
  /** Drops the cached copy of a partner changed elsewhere (a worker thread's host). */
  partnerChanged(id: string): void;
  /** Drops the cached versions of a schema changed elsewhere (a worker thread's host). */
  schemaChanged(change: SchemaChange): void;
  close(): Promise<void>;
}

/** Builds the whole platform for one process. */
export async function buildPlatform(configured: Config, options: PlatformOptions = {}): Promise<Platform> {
  const logger =
    options.logger ?? new Logger({ level: configured.logLevel, bindings: { service: 'webhooks' } });
  const appConfig = configured.appConfig ? await openAppConfig(configured.appConfig, logger) : undefined;
  // AppConfig's feature flags over the environment's settings (which stand when AppConfig cannot be read).
  const config: Config = appConfig
    ? { ...configured, ledger: await appConfig.flag('ledger', configured.ledger) }
    : configured;
  const clock = options.clock ?? (() => new Date());
  const metrics = new MetricsRegistry();
  if (!options.hostedThread) processMetrics(metrics);

  ensureDataDir(config.dataDir);
  // A key rotation must not run under a platform using the data dir's store (see data-dir-users.ts).
  const unmark =
    !options.hostedThread && config.store === 'sqlite' ? claimDataDir(config.dataDir, 'platform') : () => {};
  const { box } = loadSecretBox(config.dataDir, config.secretKey);
  // KMS with WEBHOOKS_KMS_KEY_ID (what the local key sealed still opens with it), else the local key.
  const sealer = await openSealer(config, box);
  const adminToken = loadAdminToken(config.dataDir, config.adminToken);
  // Wherever they might turn up in a log line (an error echoing a header, a URL), they are redacted.
  for (const secret of [
    adminToken.value,
    config.secretKey,
    config.partnerApi?.token,
    config.kafka.sasl?.password,
    ...config.secretKeysPrevious,
  ])
    if (secret) registerSecret(secret);
  const roles = options.roles ?? ALL_ROLES;
  // A worker role gets a thread of its own when it shares the process with another role (a clock
  // cannot cross to a thread; a runtime that drives the cores itself has nothing to run there).
  const threadedRoles = (['processor', 'dispatcher'] as const).filter(
    (role) =>
      roles.includes(role) &&
      roles.length > 1 &&
      (role === 'processor' ? config.processorThread : config.dispatcherThread) &&
      options.clock === undefined &&
      options.consume !== false,
  );
  const threaded = threadedRoles.length > 0;
  // The process's WAL checkpoints (one a second besides those commits trigger) and log retention run
  // on one thread: the processor's when it has one (their fsyncs and deletes never hold the API's
  // thread, nor the dispatcher's), else the main thread.
  const housekeeping = options.hostedThread
    ? options.housekeeping === true
    : !threadedRoles.includes('processor');
  const store = await openStore(config, !options.hostedThread || housekeeping);
  // The key must open what the store has sealed (and previous keys' values are re-sealed under it):
  // a wrong key would otherwise fail every delivery, for ever. The host did it for its thread.
  if (!options.hostedThread && options.checkSecretKeys !== false) {
    await prepareSecretKeys({
      store,
      box,
      previous: loadPreviousSecretBoxes(config.dataDir, config.secretKeysPrevious),
      logger,
    }).catch(async (err: unknown) => {
      await store.close();
      throw err;
    });
  }
  const background = new BackgroundErrors(logger, metrics);
  storeCostMetrics(store, metrics, options.hostedThread ?? 'main');
  let bus: Bus;
  try {
    bus = await openBus(config, options.hostedThread !== undefined && !housekeeping, background);
    if (options.wrapBus) bus = options.wrapBus(bus, store);
  } catch (err) {
    await store.close();
    throw err;
  }
  const directory: PartnerDirectory = config.partnerApi
    ? new HttpPartnerDirectory({
        baseUrl: config.partnerApi.url,
        timeoutMs: config.partnerApi.timeoutMs,
        cacheTtlMs: config.partnerApi.cacheTtlMs,
        ...(config.partnerApi.token ? { token: config.partnerApi.token } : {}),
      })
    : new StorePartnerDirectory(store.partners);
  // What the pipeline reads of partners: with AppConfig, its per-partner delivery settings over the
  // partner's own (the admin API still reads and writes the partner's own).
  const pipelineDirectory = appConfig ? await overridden(directory, appConfig) : directory;

  const lookups = new CachedLookups({
    schemas: store.schemas,
    subscriptions: store.subscriptions,
    directory: pipelineDirectory,
  });
  const subscriptionCache = new TtlCache<string, SubscriptionRecord | undefined>({ ttlMs: 5_000 });
  // In a long-running process, a registration's checks run off the API's thread (Lambda: inline).
  const schemaChecks =
    roles.includes('api') && options.consume !== false
      ? new ThreadedSchemaChecks({ nice: config.threadNice })
      : undefined;
  const schemaAdmin = new SchemaAdmin({
    ...(schemaChecks ? { checks: schemaChecks } : {}),
    schemas: store.schemas,
    ledger: store.ledger,
    topics: bus,
    newId: uuidv7,
    clock,
    partitions: config.topicPartitions,
    // Answered once this thread's caches and the worker threads' have dropped the old copy.
    onSchemaChanged: async (domain, event, version) => {
      const change = { domain, event, version };
      schemaChanged(change);
      await inEveryThread((thread) => thread.schemaChanged(change));
    },
  });
  const partnerAdmin = new PartnerAdmin({
    partners: store.partners,
    directory,
    clock,
    onPartnerChanged: async (partner, previous) => {
      partnerChanged(partner.id);
      await inEveryThread((thread) => thread.partnerChanged(partner.id));
      // Active again: what was held while it was INACTIVE goes back to its egress topics now.
      if (partner.status === 'ACTIVE' && previous?.status === 'INACTIVE') {
        operations.releaseHeld().catch((err: unknown) =>
          logger.warn('could not release the tasks held for an inactive partner', {
            err,
            partnerId: partner.id,
          }),
        );
      }
    },
  });
  const partnerChanged = (id: string) => lookups.partnerChanged(id);
  const schemaChanged = (change: SchemaChange) =>
    lookups.schemaChanged(change.domain, change.event, change.version);
  const subscriptionAdmin = new SubscriptionAdmin({
    subscriptions: store.subscriptions,
    schemas: store.schemas,
    directory,
    topics: bus,
    secretBox: sealer,
    resolve: options.resolve ?? createDnsResolver(),
    dev: config.dev,
    newId: uuidv7,
    clock,
    partitions: config.topicPartitions,
    secretOverlapSeconds: config.secretOverlapSeconds,
    onSubscriptionChanged: async (sub) => {
      const change = { id: sub.id, domain: sub.domain, event: sub.event, partnerId: sub.partnerId };
      subscriptionChanged(change);
      await inEveryThread((thread) => thread.subscriptionChanged(change));
      options.onSubscriptionChanged?.(change);
      // Resumed (or disabled) while tasks were held for it: they go back to its egress topic now.
      if (sub.status !== 'PAUSED') {
        operations.releaseHeld(sub.id).catch((err: unknown) =>
          logger.warn('could not release the tasks held for a paused subscription', {
            err,
            subscriptionId: sub.id,
          }),
        );
      }
    },
  });
  const subscriptionChanged = (change: SubscriptionChange) => {
    lookups.subscriptionsChanged(change.domain, change.event);
    subscriptionCache.invalidate(change.id);
    // A new subscription may have a new egress topic: consumers here look for it now, not at their next listing.
    bus.topicsChanged?.();
  };
  /** The worker threads started so far (none until the API is built). */
  const threads: RoleThread[] = [];
  const threadOf = (role: ThreadRole) => threads.find((thread) => thread.role === role);
  /** Tells every worker thread of an admin change; resolves once each has applied it. */
  const inEveryThread = async (tell: (thread: RoleThread) => Promise<void>) => {
    await Promise.all(threads.map(tell));
  };
  const publish = (messages: Parameters<Bus['publish']>[0]) => bus.publish(messages);
  const ingest = new EventIngest({
    versions: (domain, event) => lookups.versions(domain, event),
    publish,
    metrics,
    clock,
  });
  const operations = new Operations({
    deliveries: store.deliveries,
    deadLetters: store.deadLetters,
    publish,
    heldTasks: store.heldTasks,
    ledger: store.ledger,
    // Held while the subscription is PAUSED or its partner INACTIVE, as stored now.
    holding: async (id) => {
      const sub = await store.subscriptions.get(id);
      if (sub?.status === 'PAUSED') return true;
      return sub !== undefined && (await directory.getPartner(sub.partnerId))?.status === 'INACTIVE';
    },
    subscriptionExists: async (id) => (await store.subscriptions.get(id)) !== undefined,
    clock,
  });

  const authenticator = new Authenticator({
    adminToken: adminToken.value,
    apiKeys: store.apiKeys,
    clock,
    onTouchError: background.for('api_key_last_used'),
  });
  const apiKeyAdmin = new ApiKeyAdmin({
    apiKeys: store.apiKeys,
    newId: uuidv7,
    clock,
    onRevoked: (key) => authenticator.forget(key.keyHash),
  });
  const router = new Router(
    roles.includes('api')
      ? [
          ...accessRoutes(apiKeyAdmin, store.audit),
          ...schemaRoutes(schemaAdmin),
          ...partnerRoutes(partnerAdmin),
          ...subscriptionRoutes(subscriptionAdmin),
          ...ingestRoutes(ingest),
          ...operationsRoutes(operations),
        ]
      : [],
  );
  let openapi: unknown;
  for (const route of systemRoutes({
    metrics: async () => {
      const own = metrics.render();
      const theirs = await Promise.all(threads.map((thread) => thread.metrics()));
      return theirs.reduce((all, one) => mergeExposition(all, one), own);
    },
    readiness: {
      store: () => store.ping(),
      bus: () => bus.ping(),
      ...Object.fromEntries(
        threadedRoles.map((role) => [
          role,
          () => threadOf(role)?.ping() ?? Promise.reject(new Error('not started')),
        ]),
      ),
    },
    openapi: () => {
      openapi ??= buildOpenApi(router.routes, VERSION);
      return openapi;
    },
    publicDetails: config.publicMetrics,
  })) {
    router.add(route);
  }
  const handle = createEdge({
    router,
    authenticate: (header) => authenticator.authenticate(header),
    audit: (record) => store.audit.append(record),
    logger,
    metrics,
  });

  const consumers: ConsumerHandle[] = [];
  let processor: EventProcessor | undefined;
  let dispatcher: WebhookDispatcher | undefined;
  let stopPurge = () => {};
  const workerRoles = roles.filter((r) => r !== 'api' && !threadedRoles.includes(r as ThreadRole));
  let client: DeliveryClient | undefined = workerRoles.includes('dispatcher')
    ? new UndiciDeliveryClient({
        allowInsecure: config.dev,
        ...(config.deliveryCaFile ? { ca: readFileSync(config.deliveryCaFile, 'utf8') } : {}),
      })
    : undefined;
  if (client && options.wrapDeliveryClient) client = options.wrapDeliveryClient(client);
  // The pipeline topics are ensured once per process group: here, not again in a hosted thread.
  if ((workerRoles.length > 0 || threaded) && !options.hostedThread && options.consume !== false) {
    await ensurePipelineTopics(bus, config.topicPartitions);
  }
  if (workerRoles.length > 0) {
    const workerDeps = {
      config,
      bus,
      store,
      lookups,
      directory: pipelineDirectory,
      background,
      subscriptionAdmin,
      secretBox: sealer,
      client: client!,
      metrics,
      logger,
      clock,
      subscriptionCache,
      ...(options.attemptDeadline ? { attemptDeadline: options.attemptDeadline } : {}),
      // AppConfig's `ledger` flag is read live (a warm Lambda container lives for hours); the value
      // at start stands while AppConfig cannot be read.
      ...(appConfig?.configured
        ? { ledgerEnabled: () => appConfig.flagNow('ledger', configured.ledger) }
        : {}),
    };
    // The ledger holds the dispatcher's claims: it is purged where the dispatcher runs.
    if (workerRoles.includes('dispatcher') && options.consume !== false)
      stopPurge = startStorePurge(store, logger, {
        onError: background.for('store_purge'),
        historyRetentionDays: config.historyRetentionDays,
        clock,
        releaseHeld: () => operations.releaseHeld(),
      });
    if (workerRoles.includes('processor')) processor = createProcessor(workerDeps);
    if (workerRoles.includes('dispatcher')) dispatcher = createDispatcher(workerDeps);
    if (options.consume !== false) {
      if (processor) consumers.push(startProcessor(workerDeps, processor));
      if (dispatcher) consumers.push(startDispatcher(workerDeps, dispatcher));
    }
  }
  let checkpointer: NodeJS.Timeout | undefined;
  const close = async () => {
    await Promise.all(threads.map((thread) => thread.stop()));
    await schemaChecks?.close();
    clearInterval(checkpointer);
    stopPurge();
    await Promise.all(consumers.map((c) => c.stop()));
    await client?.close();
    await bus.close();
    await store.close();
    unmark();
  };
  if (housekeeping && (threaded || options.hostedThread)) {
    // Threads leave WAL checkpoints to this one: besides the ones this thread's own commits
    // trigger, one every second keeps the WAL short while other threads write.
    checkpointer = setInterval(() => {
      try {
        if (store instanceof SqliteStore) store.checkpoint();
        if (bus instanceof EmbeddedLog) bus.checkpoint();
      } catch (err) {
        background.report('wal_checkpoint', err);
      }
    }, 1000);
    checkpointer.unref();
    // …and deletes consumed records for them (even when no consumer of its own runs here).
    if (bus instanceof EmbeddedLog) bus.startRetention();
  }
  if (threaded) {
    try {
      for (const role of threadedRoles) {
        const thread = await RoleThread.start({
          role,
          config,
          logger,
          // A change made in one thread (the dispatcher disabling a subscription after a 410)
          // reaches this thread's caches and the other threads'.
          onSubscriptionChanged: (change) => {
            subscriptionChanged(change);
            for (const other of threads) if (other !== thread) void other.subscriptionChanged(change);
          },
        });
        threads.push(thread);
      }
    } catch (err) {
      await close();
      throw err;
    }
  }

  return {
    config,
    logger,
    metrics,
    store,
    bus,
    router,
    roles,
    adminToken,
    handle,
    dispatcherThread: threadOf('dispatcher'),
    processorThread: threadOf('processor'),
    processor,
    dispatcher,
    operations,
    subscriptionChanged,
    partnerChanged,
    schemaChanged,
    close,
  };
}

/**
 * On DynamoDB, cost is behaviour: the capacity units and requests this process's store has used
 * since it started, per thread (the dispatcher's thread has a store of its own).
 */
function storeCostMetrics(store: Store, metrics: MetricsRegistry, thread: string): void {
  const costed = store as Store & { capacity?: () => CapacityReport };
  if (typeof costed.capacity !== 'function') return;
  metrics
    .gauge(
      'dynamodb_consumed_capacity_units',
      'DynamoDB read and write capacity units consumed since start (ReturnConsumedCapacity).',
      ['kind', 'thread'],
    )
    .setCollector((g) => {
      const report = costed.capacity!();
      g.set({ kind: 'read', thread }, report.readUnits);
      g.set({ kind: 'write', thread }, report.writeUnits);
    });
  metrics
    .gauge('dynamodb_requests', 'DynamoDB requests made since start, by operation.', ['operation', 'thread'])
    .setCollector((g) => {
      for (const [operation, n] of Object.entries(costed.capacity!().calls)) g.set({ operation, thread }, n);
    });
}

/** AppConfig's settings (per-partner delivery settings, feature flags); the AWS SDK is loaded only then. */
async function openAppConfig(
  config: NonNullable<Config['appConfig']>,
  logger: Logger,
): Promise<AppConfigSettings> {
  const { appConfigSettings } = await import('../engines/aws/appconfig.ts');
  return appConfigSettings(config, logger.child({ component: 'appconfig' }));
}

/** The directory with AppConfig's per-partner delivery settings over the partners' own. */
async function overridden(
  directory: PartnerDirectory,
  settings: AppConfigSettings,
): Promise<PartnerDirectory> {
  const { PartnerOverridesDirectory } = await import('../engines/aws/partner-overrides.ts');
  return new PartnerOverridesDirectory(directory, settings);
}
