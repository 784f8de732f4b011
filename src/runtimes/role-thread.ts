/**
 * Entry point of a worker role's thread (see thread-host.ts): the platform with that role only (the
 * processor or the dispatcher), on its own connections to the same data dir, answering the host's
 * requests for metrics, readiness, cache invalidation and shutdown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../common/config.ts';
import { heapTrimCounters, startHeapTrim } from '../common/heap-trim.ts';
import { Logger } from '../common/log.ts';
import { buildPlatform } from './platform.ts';
import { type HostMessage, lowerThreadPriority, type ThreadMessage, type ThreadRole } from './thread-host.ts';

const port = parentPort;
if (!port) throw new Error('role-thread.ts runs as a worker thread only');
const send = (message: ThreadMessage) => port.postMessage(message);
const { config, role, housekeeping } = workerData as {
  config: Config;
  role: ThreadRole;
  housekeeping: boolean;
};
lowerThreadPriority(config.threadNice);

try {
  const platform = await buildPlatform(config, {
    roles: [role],
    hostedThread: role,
    housekeeping,
    logger: new Logger({
      level: config.logLevel,
      bindings: { service: 'webhooks', thread: role },
      sink: { write: (line) => send({ type: 'log', line }) },
    }),
    onSubscriptionChanged: (change) => send({ type: 'subscription-changed', change }),
  });
  // No requests wait on this thread: its heap is trimmed while busy too, at most once a minute.
  const stopTrim = startHeapTrim({
    busyIntervalMs: 60_000,
    logger: platform.logger,
    ...heapTrimCounters(platform.metrics, role),
  });
  // Shows that the host's cache invalidations arrive, restarts included.
  const invalidations = platform.metrics.counter(
    `webhooks_${role}_thread_invalidations_total`,
    `Cache invalidations the ${role} thread received from the host`,
  );
  /** Counts an invalidation applied, and answers it (the host waits for that before it answers the admin change). */
  const invalidated = (id: number | undefined) => {
    invalidations.inc();
    if (id !== undefined) send({ type: 'reply', id, value: 'ok' });
  };
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
        platform.subscriptionChanged(message.change);
        invalidated(message.id);
        break;
      case 'partner-changed':
        platform.partnerChanged(message.partnerId);
        invalidated(message.id);
        break;
      case 'schema-changed':
        platform.schemaChanged(message.change);
        invalidated(message.id);
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
