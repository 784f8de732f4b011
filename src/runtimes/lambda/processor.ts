/** The processor function: an MSK (or self-managed Kafka) event source mapping on the ingress topics. */
import { runKafkaBatch } from './batch.ts';
import { container } from './container.ts';
import type { LambdaContextLike } from './invocation.ts';
import type { KafkaBatchResponse } from './kafka-event.ts';

export async function handler(event: unknown, context?: LambdaContextLike): Promise<KafkaBatchResponse> {
  const c = await container('processor');
  const { platform } = c;
  const processor = platform.processor!;
  return c.observe(context, '### process batch', () =>
    runKafkaBatch(
      event,
      {
        handle: (batch) => processor.processBatch(batch),
        giveUp: (m, notice) => processor.giveUp(m, notice),
      },
      platform.logger,
    ),
  );
}
