/** The standalone server: the platform behind Node's HTTP server, with graceful shutdown. */
import type { Server } from 'node:http';
import type { Config } from '../../common/config.ts';
import { heapTrimCounters, SERVING_THREAD_BUSY_ABOVE, startHeapTrim } from '../../common/heap-trim.ts';
import { serverUrl } from '../../common/http.ts';
import { buildPlatform, type Platform, type PlatformOptions } from '../platform.ts';
import { close, createNodeServer, listen } from './http-server.ts';

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
    logger: platform.logger,
    ...(config.tls ? { tls: config.tls } : {}),
  });
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
