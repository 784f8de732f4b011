/** A dead-letter sink over a real store whose DLQ-topic messages go to an array (for core tests). */
import { DeadLetterSink } from '../../src/common/dead-letter-sink.ts';
import { uuidv7 } from '../../src/common/ids.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import type { Store } from '../../src/common/ports/store.ts';

export function recordingDeadLetterSink(store: Store, published: () => BusMessage[]): DeadLetterSink {
  return new DeadLetterSink({
    deadLetters: store.deadLetters,
    publish: async (m) => {
      published().push(...m);
    },
    newId: uuidv7,
    clock: () => new Date(),
  });
}
