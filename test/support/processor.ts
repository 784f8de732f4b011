/** The event processor over a real store, publishing into an array (for core tests). */
import { ValidatorCache } from '../../src/common/json-schema.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import type { Store } from '../../src/common/ports/store.ts';
import { CachedLookups } from '../../src/processor/lookups.ts';
import { EventProcessor } from '../../src/processor/processor.ts';
import { StorePartnerDirectory } from '../../src/subscriptions/partners.ts';
import { recordingDeadLetterSink } from './sinks.ts';

/** A processor on `store` (deduplicating, 3 attempts) whose output and dead letters go to `published()`. */
export function storeProcessor(store: Store, published: () => BusMessage[]): EventProcessor {
  return new EventProcessor({
    lookups: new CachedLookups({
      schemas: store.schemas,
      subscriptions: store.subscriptions,
      directory: new StorePartnerDirectory(store.partners),
    }),
    validators: new ValidatorCache(),
    publish: async (m) => {
      published().push(...m);
    },
    deadLetters: recordingDeadLetterSink(store, published),
    deliveries: store.deliveries,
    dedupe: true,
    maxAttempts: 3,
    retryDelayMs: 1000,
    metrics: new MetricsRegistry(),
    logger: new Logger({ level: 'error', sink: { write: () => {} } }),
    clock: () => new Date(),
  });
}
