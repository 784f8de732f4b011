/** Operational routes: liveness, readiness, metrics and the OpenAPI document (no admin token). */
import { json, type Route } from '../common/http.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../common/metrics.ts';

export interface SystemRouteDeps {
  /** The Prometheus text of everything this process runs. */
  metrics: () => Promise<string>;
  /** Engines to ping for /readyz, by name. */
  readiness: Record<string, () => Promise<void>>;
  openapi: () => unknown;
}

/** /healthz, /readyz, /metrics, /openapi.json. */
export function systemRoutes(deps: SystemRouteDeps): Route[] {
  const tag = 'operations';
  return [
    {
      method: 'GET',
      path: '/healthz',
      tag,
      auth: false,
      summary: 'Liveness: the process is up',
      handler: async () => json(200, { status: 'ok' }),
    },
    {
      method: 'GET',
      path: '/readyz',
      tag,
      auth: false,
      summary: 'Readiness: every engine answers (503 naming the ones that do not)',
      handler: async () => {
        const checks: Record<string, string> = {};
        await Promise.all(
          Object.entries(deps.readiness).map(async ([name, ping]) => {
            try {
              await ping();
              checks[name] = 'ok';
            } catch (err) {
              checks[name] = `unavailable: ${(err as Error).message}`;
            }
          }),
        );
        const ready = Object.values(checks).every((c) => c === 'ok');
        return json(ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', checks });
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      tag,
      auth: false,
      summary: 'Prometheus metrics (text format 0.0.4)',
      handler: async () => ({
        status: 200,
        body: await deps.metrics(),
        headers: { 'content-type': PROMETHEUS_CONTENT_TYPE },
      }),
    },
    {
      method: 'GET',
      path: '/openapi.json',
      tag,
      auth: false,
      summary: 'This API as an OpenAPI 3.1 document',
      handler: async () => json(200, deps.openapi()),
    },
  ];
}
