/**
 * The HTTP edge shared by every runtime (Node server, API Gateway): route matching, admin auth,
 * JSON parsing, correlation ids, metrics, and the one place where errors become HTTP statuses.
 */
import { checkBearerToken } from '../../common/auth.ts';
import {
  type ErrorKind,
  isWebhooksError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../../common/errors.ts';
import type { ApiRequest, ApiResponse, Router } from '../../common/http.ts';
import { uuidv7 } from '../../common/ids.ts';
import { type Logger, withCorrelationId } from '../../common/log.ts';
import type { MetricsRegistry } from '../../common/metrics.ts';

/** A request as it arrives from a transport: raw body text, lower-case header names. */
export interface RawRequest {
  method: string;
  /** Path plus query string, e.g. "/admin/schemas?domain=orders". */
  url: string;
  headers: Record<string, string | undefined>;
  body: string;
}

const STATUS_BY_KIND: Record<ErrorKind, number> = {
  validation: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  unavailable: 503,
  internal: 500,
};

/** The HTTP status of an error kind. */
export function statusOfKind(kind: ErrorKind): number {
  return STATUS_BY_KIND[kind];
}

/** The JSON error body of the contract: `{ error: { code, message, details } }`. */
export function errorBody(code: string, message: string, details: unknown[] = []): unknown {
  return { error: { code, message, details } };
}

export interface EdgeOptions {
  router: Router;
  adminToken: string;
  logger: Logger;
  metrics: MetricsRegistry;
}

/** Handles one request end to end; never throws. */
export function createEdge(options: EdgeOptions): (raw: RawRequest) => Promise<ApiResponse> {
  const requests = options.metrics.counter('http_requests_total', 'HTTP requests by route and status', [
    'method',
    'route',
    'status',
  ]);
  const duration = options.metrics.histogram('http_request_duration_seconds', 'HTTP request latency', [
    'method',
    'route',
  ]);

  return async (raw) => {
    const started = performance.now();
    const correlationId = raw.headers['x-request-id'] ?? raw.headers['x-correlation-id'] ?? uuidv7();
    return withCorrelationId(correlationId, async () => {
      const { path, query } = splitUrl(raw.url);
      const matched = options.router.match(raw.method, path);
      const routeName = 'route' in matched ? matched.route.path : 'unmatched';
      let response: ApiResponse;
      try {
        if ('error' in matched) {
          response =
            matched.error === 'not_found'
              ? { status: 404, body: errorBody('route_not_found', `no route for ${raw.method} ${path}`) }
              : {
                  status: 405,
                  body: errorBody('method_not_allowed', `${raw.method} is not allowed on ${path}`),
                  headers: { allow: matched.allow!.join(', ') },
                };
        } else {
          if (matched.route.auth !== false) checkBearerToken(raw.headers.authorization, options.adminToken);
          const request: ApiRequest = {
            method: raw.method,
            path,
            params: matched.params,
            query,
            headers: raw.headers,
            body: matched.route.rawBody ? undefined : parseJsonBody(raw),
            rawBody: raw.body,
          };
          response = await matched.route.handler(request);
        }
      } catch (err) {
        response = errorResponse(err, options.logger);
      }
      response.headers = { ...response.headers, 'x-request-id': correlationId };
      requests.inc({ method: raw.method, route: routeName, status: String(response.status) });
      duration.observe({ method: raw.method, route: routeName }, (performance.now() - started) / 1000);
      return response;
    });
  };
}

/** Turns any thrown value into the contract's error response; unknown errors are logged as 500s. */
export function errorResponse(err: unknown, logger: Logger): ApiResponse {
  if (isWebhooksError(err) && err.kind !== 'internal') {
    const headers: Record<string, string> =
      err.kind === 'unauthorized' ? { 'www-authenticate': 'Bearer' } : {};
    return { status: statusOfKind(err.kind), body: errorBody(err.code, err.message, err.details), headers };
  }
  logger.error('request failed', { err });
  return { status: 500, body: errorBody('internal_error', 'the server failed to handle the request') };
}

function splitUrl(url: string): { path: string; query: URLSearchParams } {
  const q = url.indexOf('?');
  return q < 0
    ? { path: url, query: new URLSearchParams() }
    : { path: url.slice(0, q), query: new URLSearchParams(url.slice(q + 1)) };
}

/** Parses a JSON request body; an empty body is `undefined`. */
function parseJsonBody(raw: RawRequest): unknown {
  if (raw.body.length === 0) return undefined;
  const type = raw.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
  if (type !== undefined && type !== 'application/json' && !type.endsWith('+json')) {
    throw new UnsupportedMediaTypeError('unsupported_media_type', `expected application/json, got ${type}`, {
      details: [{ field: 'content-type', message: 'must be application/json' }],
    });
  }
  try {
    return JSON.parse(raw.body);
  } catch (err) {
    throw new ValidationError(
      'invalid_json',
      `the request body is not valid JSON: ${(err as Error).message}`,
      {
        details: [{ field: 'body', message: (err as Error).message }],
        cause: err,
      },
    );
  }
}
