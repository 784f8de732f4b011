/**
 * The composition root of the standalone runtime: builds engines from the configuration, the
 * components over them, and the HTTP edge. No business rule lives here.
 */
import { join } from 'node:path';
import type { Config } from '../common/config.ts';
import type { HostResolver } from '../common/delivery-url.ts';
import { ConfigError } from '../common/errors.ts';
import type { ApiResponse } from '../common/http.ts';
import { Router } from '../common/http.ts';
import { uuidv7 } from '../common/ids.ts';
import { Logger } from '../common/log.ts';
import { MetricsRegistry, processMetrics } from '../common/metrics.ts';
import type { TopicAdmin } from '../common/ports/bus.ts';
import type { PartnerDirectory } from '../common/ports/partner-directory.ts';
import type { Store } from '../common/ports/store.ts';
import { createDnsResolver } from '../engines/dns-resolver.ts';
import { EmbeddedTopicAdmin } from '../engines/embedded/topic-admin.ts';
import { HttpPartnerDirectory } from '../engines/partner-api/http-directory.ts';
import { SqliteStore } from '../engines/sqlite/store.ts';
import { schemaRoutes } from '../schemas/routes.ts';
import { SchemaAdmin } from '../schemas/service.ts';
import { PartnerAdmin, StorePartnerDirectory } from '../subscriptions/partners.ts';
import { partnerRoutes, subscriptionRoutes } from '../subscriptions/routes.ts';
import { SubscriptionAdmin } from '../subscriptions/service.ts';
import { createEdge, type RawRequest } from './http/edge.ts';
import { buildOpenApi } from './http/openapi.ts';
import { ensureDataDir, type LocalSecret, loadAdminToken, loadSecretBox } from './local-secrets.ts';
import { systemRoutes } from './system-routes.ts';

export const VERSION = '0.1.0';

export interface PlatformOptions {
  logger?: Logger;
  resolve?: HostResolver;
  clock?: () => Date;
}

export interface Platform {
  config: Config;
  logger: Logger;
  metrics: MetricsRegistry;
  store: Store;
  topics: TopicAdmin;
  router: Router;
  adminToken: LocalSecret;
  handle: (raw: RawRequest) => Promise<ApiResponse>;
  close(): Promise<void>;
}

/** Opens the store engine named by the configuration. */
function openStore(config: Config): Store {
  if (config.store === 'sqlite') return new SqliteStore(join(config.dataDir, 'store.db'));
  throw new ConfigError('WEBHOOKS_STORE=dynamodb is not available in this version yet; use sqlite', {
    details: [{ field: 'WEBHOOKS_STORE', message: 'only sqlite is available in this version' }],
  });
}

/** Opens the bus engine's topic administration named by the configuration. */
function openTopicAdmin(config: Config): TopicAdmin {
  if (config.bus === 'embedded') {
    return new EmbeddedTopicAdmin(join(config.dataDir, 'bus.db'), {
      defaultPartitions: config.topicPartitions,
    });
  }
  throw new ConfigError('WEBHOOKS_BUS=kafka is not available in this version yet; use embedded', {
    details: [{ field: 'WEBHOOKS_BUS', message: 'only embedded is available in this version' }],
  });
}

/** Builds the whole platform for one process. */
export async function buildPlatform(config: Config, options: PlatformOptions = {}): Promise<Platform> {
  const logger = options.logger ?? new Logger({ level: config.logLevel, bindings: { service: 'webhooks' } });
  const clock = options.clock ?? (() => new Date());
  const metrics = new MetricsRegistry();
  processMetrics(metrics);

  ensureDataDir(config.dataDir);
  const { box } = loadSecretBox(config.dataDir, config.secretKey);
  const adminToken = loadAdminToken(config.dataDir, config.adminToken);
  const store = openStore(config);
  const topics = openTopicAdmin(config);
  const directory: PartnerDirectory = config.partnerApi
    ? new HttpPartnerDirectory({
        baseUrl: config.partnerApi.url,
        timeoutMs: config.partnerApi.timeoutMs,
        cacheTtlMs: config.partnerApi.cacheTtlMs,
        ...(config.partnerApi.token ? { token: config.partnerApi.token } : {}),
      })
    : new StorePartnerDirectory(store.partners);

  const schemaAdmin = new SchemaAdmin({
    schemas: store.schemas,
    topics,
    newId: uuidv7,
    clock,
    partitions: config.topicPartitions,
  });
  const partnerAdmin = new PartnerAdmin({ partners: store.partners, directory, clock });
  const subscriptionAdmin = new SubscriptionAdmin({
    subscriptions: store.subscriptions,
    schemas: store.schemas,
    directory,
    topics,
    secretBox: box,
    resolve: options.resolve ?? createDnsResolver(),
    dev: config.dev,
    newId: uuidv7,
    clock,
    partitions: config.topicPartitions,
    secretOverlapSeconds: config.secretOverlapSeconds,
  });

  const router = new Router([
    ...schemaRoutes(schemaAdmin),
    ...partnerRoutes(partnerAdmin),
    ...subscriptionRoutes(subscriptionAdmin),
  ]);
  let openapi: unknown;
  for (const route of systemRoutes({
    metrics,
    readiness: { store: () => store.ping(), bus: () => topics.ping() },
    openapi: () => {
      openapi ??= buildOpenApi(router.routes, VERSION);
      return openapi;
    },
  })) {
    router.add(route);
  }
  const handle = createEdge({ router, adminToken: adminToken.value, logger, metrics });

  return {
    config,
    logger,
    metrics,
    store,
    topics,
    router,
    adminToken,
    handle,
    async close() {
      await topics.close();
      await store.close();
    },
  };
}
