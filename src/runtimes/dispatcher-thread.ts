/**
 * Entry point of the dispatcher's worker thread (see thread-host.ts): the platform with the
 * dispatcher role only, on its own connections to the same data dir, answering the host's requests
 * for metrics, readiness, cache invalidation and shutdown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../common/config.ts';
import { startHeapTrim } from '../common/heap-trim.ts';
import { Logger } from '../common/log.ts';
import { buildPlatform } from './platform.ts';
import type { HostMessage, ThreadMessage } from './thread-host.ts';

const port = parentPort;
if (!port) throw new Error('dispatcher-thread.ts runs as a worker thread only');
const send = (message: ThreadMessage) => port.postMessage(message);
const { config } = workerData as { config: Config };

try {
  const platform = await buildPlatform(config, {
    roles: ['dispatcher'],
    hostedThread: true,
    logger: new Logger({
      level: config.logLevel,
      bindings: { service: 'webhooks', thread: 'dispatcher' },
      sink: { write: (line) => send({ type: 'log', line }) },
    }),
    onSubscriptionChanged: (change) => send({ type: 'subscription-changed', change }),
  });
  // No requests wait on this thread: its heap is trimmed while busy too, at most once a minute.
  const stopTrim = startHeapTrim({ busyIntervalMs: 60_000, logger: platform.logger });
  // Shows that the host's cache invalidations arrive, restarts included.
  const invalidations = platform.metrics.counter(
    'webhooks_dispatcher_thread_invalidations_total',
    'Cache invalidations the dispatcher thread received from the host',
  );
  port.on('message', (message: HostMessage) => {
    switch (message.type) {
      case 'metrics':
        send({ type: 'reply', id: message.id, value: platform.metrics.render() });
        break;
      case 'ping':
        Promise.all([platform.store.ping(), platform.bus.ping()]).then(
          () => send({ type: 'reply', id: message.id, value: 'ok' }),
          (err: unknown) => send({ type: 'reply', id: message.id, error: (err as Error).message }),
        );
        break;
      case 'subscription-changed':
        invalidations.inc();
        platform.subscriptionChanged(message.change);
        break;
      case 'partner-changed':
        invalidations.inc();
        platform.partnerChanged(message.partnerId);
        break;
      case 'stop':
        stopTrim();
        platform.close().then(
          () => {
            send({ type: 'stopped' });
            port.close();
          },
          (err: unknown) => {
            send({ type: 'stopped', error: (err as Error).message });
            port.close();
          },
        );
        break;
    }
  });
  send({ type: 'ready' });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
  port.close();
}
