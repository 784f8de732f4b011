/** The standalone server: the platform behind Node's HTTP server, with graceful shutdown. */
import type { Server } from 'node:http';
import type { Config } from '../../common/config.ts';
import { heapTrimCounters, SERVING_THREAD_BUSY_ABOVE, startHeapTrim } from '../../common/heap-trim.ts';
import { serverUrl } from '../../common/http.ts';
import type { MetricsRegistry } from '../../common/metrics.ts';
import { buildPlatform, type Platform, type PlatformOptions } from '../platform.ts';
import type { BodyBudget } from './body-budget.ts';
import { bodyBudgetOf, close, createNodeServer, listen } from './http-server.ts';

export interface RunningServer {
  platform: Platform;
  server: Server;
  port: number;
  url: string;
  /** Stops accepting requests, finishes in-flight ones, closes the engines. */
  stop(): Promise<void>;
}

/** Builds the platform and starts listening on the configured host and port. */
export async function startServer(config: Config, options: PlatformOptions = {}): Promise<RunningServer> {
  const platform = await buildPlatform(config, options);
  const server = createNodeServer({
    handle: platform.handle,
    maxBodyBytes: config.maxBodyBytes,
    bodyBudgetBytes: config.maxBufferedBodyBytes,
    maxConnections: config.maxConnections,
    logger: platform.logger,
    ...(config.tls ? { tls: config.tls } : {}),
  });
  serverMetrics(server, bodyBudgetOf(server)!, platform.metrics);
  let port: number;
  try {
    port = await listen(server, config.port, config.host);
  } catch (err) {
    await platform.close();
    throw err;
  }
  // This thread answers requests: its heap is trimmed only while its loop is nearly idle (a trim
  // holds it 20-120 ms, and anyone asking meanwhile waits that long).
  const stopTrim = startHeapTrim({
    busyAbove: SERVING_THREAD_BUSY_ABOVE,
    logger: platform.logger,
    ...heapTrimCounters(platform.metrics, 'api'),
  });
  let stopping: Promise<void> | undefined;
  return {
    platform,
    server,
    port,
    url: serverUrl(config.tls !== undefined, config.host, port),
    stop() {
      stopping ??= (async () => {
        stopTrim();
        await close(server);
        await platform.close();
      })();
      return stopping;
    },
  };
}

/** The HTTP server's bounds at work: request-body bytes held, bodies waiting for them, connections refused. */
function serverMetrics(server: Server, budget: BodyBudget, metrics: MetricsRegistry): void {
  metrics
    .gauge('webhooks_http_body_bytes_held', 'Request-body bytes the HTTP server holds in memory now.')
    .setCollector((g) => g.set(budget.held));
  metrics
    .gauge(
      'webhooks_http_body_bytes_held_max',
      'The most request-body bytes the HTTP server held at once since it started (bounded by WEBHOOKS_MAX_BUFFERED_BODY_BYTES plus one body).',
    )
    .setCollector((g) => g.set(budget.peak));
  metrics
    .gauge('webhooks_http_bodies_waiting', 'Request bodies waiting to be read until held bytes come back.')
    .setCollector((g) => g.set(budget.waiting));
  const stalled = metrics.counter(
    'webhooks_http_bodies_stalled_total',
    'Request bodies cut (408): they stopped arriving while others waited for the bytes they held.',
  );
  budget.onStall = () => stalled.inc();
  const dropped = metrics.counter(
    'webhooks_http_connections_dropped_total',
    'Connections closed as they came because WEBHOOKS_MAX_CONNECTIONS were open.',
  );
  server.on('drop', () => dropped.inc());
}
