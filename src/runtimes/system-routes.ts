/**
 * Operational routes: liveness, readiness, metrics and the OpenAPI document, open to all. What they
 * reveal depends on the caller: without credentials that may read, readiness names no error and
 * metrics carry no partner ids (unless the setting `WEBHOOKS_PUBLIC_METRICS` opens both).
 */
import { roleAllows } from '../common/access.ts';
import { type ApiRequest, json, type Route } from '../common/http.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../common/metrics.ts';

export interface SystemRouteDeps {
  /** The Prometheus text of everything this process runs. */
  metrics: () => Promise<string>;
  /** Engines to ping for /readyz, by name. */
  readiness: Record<string, () => Promise<void>>;
  openapi: () => unknown;
  /** Show everything to everyone (WEBHOOKS_PUBLIC_METRICS). */
  publicDetails?: boolean;
}

/** Labels that name a partner (or one of its endpoints): kept from anonymous callers. */
const IDENTIFYING_LABEL = /[{,](partner|subscription|endpoint)="/;

/** The Prometheus text without the series whose labels name a partner. */
export function anonymousExposition(text: string): string {
  return text
    .split('\n')
    .filter((line) => line.startsWith('#') || !IDENTIFYING_LABEL.test(line))
    .join('\n');
}

/** /healthz, /readyz, /metrics, /openapi.json. */
export function systemRoutes(deps: SystemRouteDeps): Route[] {
  const tag = 'operations';
  const detailed = (req: ApiRequest) =>
    deps.publicDetails === true || (req.principal !== undefined && roleAllows(req.principal.role, 'read'));
  return [
    {
      method: 'GET',
      path: '/healthz',
      tag,
      access: 'public',
      summary: 'Liveness: the process is up',
      handler: async () => json(200, { status: 'ok' }),
    },
    {
      method: 'GET',
      path: '/readyz',
      tag,
      access: 'public',
      summary:
        'Readiness: every engine answers (503 naming the ones that do not; their errors only to a caller who may read)',
      handler: async (req) => {
        const withErrors = detailed(req);
        const checks: Record<string, string> = {};
        await Promise.all(
          Object.entries(deps.readiness).map(async ([name, ping]) => {
            try {
              await ping();
              checks[name] = 'ok';
            } catch (err) {
              checks[name] = withErrors ? `unavailable: ${(err as Error).message}` : 'unavailable';
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
      access: 'public',
      summary:
        'Prometheus metrics (text format 0.0.4); the series labelled by partner only to a caller who may read',
      handler: async (req) => {
        const text = await deps.metrics();
        return {
          status: 200,
          body: detailed(req) ? text : anonymousExposition(text),
          headers: { 'content-type': PROMETHEUS_CONTENT_TYPE },
        };
      },
    },
    {
      method: 'GET',
      path: '/openapi.json',
      tag,
      access: 'public',
      summary: 'This API as an OpenAPI 3.1 document',
      handler: async () => json(200, deps.openapi()),
    },
  ];
}
