/**
 * Powertools for AWS Lambda (TypeScript) adapters of the Lambda runtime: the project's logger,
 * metrics registry and delivery client seen through Powertools' Logger, Metrics (EMF) and Tracer
 * (X-Ray). The components import none of this; the handlers compose them:
 *
 * ```ts
 * // Module scope: once per container.
 * const registry = new MetricsRegistry();
 * const logging = createLambdaLogger({ level: config.logLevel });
 * const metrics = createEmfMetrics({ registry, logger: logging.logger });
 * const tracer = createLambdaTracer();
 * const client = traceDeliveryClient(new UndiciDeliveryClient({ allowInsecure: false }), tracer);
 * const dispatcher = new WebhookDispatcher({ ...deps, client, metrics: registry, logger: logging.logger });
 *
 * export const handler = async (event: MSKEvent, context: Context) => {
 *   logging.addContext(context);
 *   try {
 *     const batch = decodeKafkaEvent(event);
 *     const outcome = await traceBatch(tracer, '### dispatch batch', () => dispatcher.handleBatch(batch), {
 *       records: batch.length,
 *     });
 *     return partialBatchResponse(outcome.failed.map((f) => f.message));
 *   } finally {
 *     metrics.flush();
 *   }
 * };
 * ```
 */
export * from './powertools-env.ts';
export * from './powertools-logger.ts';
export * from './powertools-metrics.ts';
export * from './powertools-tracer.ts';
