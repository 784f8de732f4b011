/** The dispatcher function: event source mappings on the egress topics and on the due retries. */
import { runKafkaBatch } from './batch.ts';
import { container } from './container.ts';
import type { LambdaContextLike } from './invocation.ts';
import type { KafkaBatchResponse } from './kafka-event.ts';

export async function handler(event: unknown, context?: LambdaContextLike): Promise<KafkaBatchResponse> {
  const c = await container('dispatcher');
  const { platform } = c;
  const dispatcher = platform.dispatcher!;
  return c.observe(context, '### dispatch batch', () =>
    runKafkaBatch(
      event,
      {
        handle: (batch, control) => dispatcher.handleBatch(batch, control),
        giveUp: (m, notice) => dispatcher.giveUp(m, notice),
      },
      platform.logger,
    ),
  );
}
