/**
 * What the Powertools adapters of the Lambda runtime read from the environment, in one place: the
 * service name (logs, the metrics' `service` dimension, traces) and the metrics namespace.
 */

/** The service name when `POWERTOOLS_SERVICE_NAME` is unset. */
export const DEFAULT_SERVICE_NAME = 'webhooks';
/** The CloudWatch namespace when `POWERTOOLS_METRICS_NAMESPACE` is unset. */
export const DEFAULT_METRICS_NAMESPACE = 'Webhooks';

/** `explicit`, else `POWERTOOLS_SERVICE_NAME`, else `webhooks`. */
export function serviceNameFrom(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return nonEmpty(explicit) ?? nonEmpty(env.POWERTOOLS_SERVICE_NAME) ?? DEFAULT_SERVICE_NAME;
}

/** `explicit`, else `POWERTOOLS_METRICS_NAMESPACE`, else `Webhooks`. */
export function metricsNamespaceFrom(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return nonEmpty(explicit) ?? nonEmpty(env.POWERTOOLS_METRICS_NAMESPACE) ?? DEFAULT_METRICS_NAMESPACE;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}
