/**
 * The HTTP edge shared by every runtime (Node server, API Gateway): route matching, admin auth,
 * JSON parsing, correlation ids, metrics, and the one place where errors become HTTP statuses.
 */
import { type Access, actorOf, type Principal, roleAllows } from '../../common/access.ts';
import {
  type ErrorKind,
  ForbiddenError,
  isWebhooksError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../../common/errors.ts';
import { type ApiRequest, type ApiResponse, declaredQuery, type Router } from '../../common/http.ts';
import { uuidv7 } from '../../common/ids.ts';
import { jsonTextComplexity } from '../../common/json.ts';
import { type Logger, withCorrelationId } from '../../common/log.ts';
import type { MetricsRegistry } from '../../common/metrics.ts';
import type { AuditRecord } from '../../common/model.ts';

/** A request as it arrives from a transport: raw body text, lower-case header names. */
export interface RawRequest {
  method: string;
  /** Path plus query string, e.g. "/admin/schemas?domain=orders". */
  url: string;
  headers: Record<string, string | undefined>;
  body: string;
  /**
   * The caller, when the transport authenticated it already (API Gateway's IAM or JWT authorizer):
   * taken instead of the `Authorization` header, which then holds the transport's own credentials.
   */
  principal?: Principal;
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

/** The answer to a request body over the size limit (every transport refuses it before the edge). */
export function bodyTooLarge(limit: number): ApiResponse {
  return {
    status: 413,
    body: errorBody('payload_too_large', `the request body is larger than ${limit} bytes`, [
      { field: 'body', message: `at most ${limit} bytes` },
    ]),
  };
}

/** The answer to a request body that is not UTF-8 text. */
export function bodyNotUtf8(): ApiResponse {
  return {
    status: 400,
    body: errorBody('invalid_utf8', 'the request body is not valid UTF-8', [
      { field: 'body', message: 'must be UTF-8 text' },
    ]),
  };
}

/** A response as every transport writes it: JSON (or text) with the headers the contract asks for. */
export function renderResponse(response: ApiResponse): { headers: Record<string, string>; payload: string } {
  const headers: Record<string, string> = { ...response.headers };
  let payload = '';
  if (typeof response.body === 'string') {
    payload = response.body;
    headers['content-type'] ??= 'text/plain; charset=utf-8';
  } else if (response.body !== undefined) {
    payload = JSON.stringify(response.body);
    headers['content-type'] = 'application/json';
  }
  headers['x-content-type-options'] = 'nosniff';
  headers['cache-control'] ??= 'no-store';
  return { headers, payload };
}

export interface EdgeOptions {
  router: Router;
  /** The caller named by an `Authorization` header; throws UnauthorizedError (401) when there is none. */
  authenticate: (authorizationHeader: string | undefined) => Promise<Principal>;
  /** Records an admin change (every request but GETs on routes needing `read` … `admin`), after it. */
  audit?: (record: AuditRecord) => Promise<void>;
  logger: Logger;
  metrics: MetricsRegistry;
}

/** A request id a client may choose: short and plain (it is echoed, logged and recorded). */
const PLAIN_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request's id: the client's `x-request-id` (or `x-correlation-id`) when short and plain, else a fresh one. */
export function requestIdOf(headers: Record<string, string | string[] | undefined>): string {
  for (const name of ['x-request-id', 'x-correlation-id']) {
    const id = headers[name];
    if (typeof id === 'string' && PLAIN_REQUEST_ID.test(id)) return id;
  }
  return uuidv7();
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
    // A client's request id is echoed back, carried by every log line and recorded: taken only when
    // short and plain (at most 128 of [A-Za-z0-9._:-]), else a fresh one.
    const correlationId = requestIdOf(raw.headers);
    return withCorrelationId(correlationId, async () => {
      const { path, query } = splitUrl(raw.url);
      const matched = options.router.match(raw.method, path);
      const routeName = 'route' in matched ? matched.route.path : 'unmatched';
      let response: ApiResponse;
      let principal: Principal | undefined;
      let body: unknown;
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
          principal = await authenticate(options, matched.route.access, raw);
          if (principal) assertAllowed(principal, matched.route.access, raw.method, path);
          body = matched.route.rawBody ? undefined : parseJsonBody(raw);
          const request: ApiRequest = {
            method: raw.method,
            path,
            params: matched.params,
            query: declaredQuery(query, matched.route),
            headers: raw.headers,
            body,
            rawBody: raw.body,
            ...(principal ? { principal } : {}),
          };
          response = await matched.route.handler(request);
        }
      } catch (err) {
        response = errorResponse(err, options.logger);
      }
      if (principal && 'route' in matched && isAdminChange(raw.method, matched.route.access)) {
        await recordChange(options, principal, raw.method, body, matched, response, correlationId);
      }
      response.headers = { ...response.headers, 'x-request-id': correlationId };
      if (options.logger.isLevelEnabled('debug')) {
        // The access log, at debug level: the whole request line and headers, credentials redacted.
        options.logger.debug('request', {
          method: raw.method,
          url: raw.url,
          status: response.status,
          ms: Math.round((performance.now() - started) * 10) / 10,
          headers: raw.headers,
        });
      }
      requests.inc({ method: raw.method, route: routeName, status: String(response.status) });
      duration.observe({ method: raw.method, route: routeName }, (performance.now() - started) / 1000);
      return response;
    });
  };
}

/**
 * The caller, when the route needs one (401 without valid credentials). Public routes take valid
 * credentials when they come (they may show more to a caller who can read) and ignore bad ones.
 */
async function authenticate(
  options: EdgeOptions,
  access: Access,
  raw: RawRequest,
): Promise<Principal | undefined> {
  if (raw.principal) return raw.principal;
  if (access !== 'public') return options.authenticate(raw.headers.authorization);
  if (raw.headers.authorization === undefined) return undefined;
  return options.authenticate(raw.headers.authorization).catch(() => undefined);
}

/** 403 when the caller's role does not allow the route. */
function assertAllowed(principal: Principal, access: Access, method: string, path: string): void {
  if (!roleAllows(principal.role, access)) {
    const who =
      principal.kind === 'api-key' ? `the ${principal.role} key "${principal.name}"` : 'this caller';
    const message = `${who} may not ${method} ${path}`;
    throw new ForbiddenError('forbidden', message, { details: [{ field: 'authorization', message }] });
  }
}

/** Admin changes are audited: every method but GET on the routes of the admin API (not events). */
function isAdminChange(method: string, access: Access): boolean {
  return method !== 'GET' && method !== 'HEAD' && access !== 'public' && access !== 'publish';
}

/** Appends the audit record of a change (refused ones too); a failure to record is logged, not answered. */
async function recordChange(
  options: EdgeOptions,
  principal: Principal,
  method: string,
  body: unknown,
  matched: { route: { path: string }; params: Record<string, string> },
  response: ApiResponse,
  requestId: string,
): Promise<void> {
  if (!options.audit) return;
  const target = { ...matched.params };
  const created = response.body as { id?: unknown } | undefined;
  if (target.id === undefined && typeof created?.id === 'string') target.id = created.id;
  const record: AuditRecord = {
    id: uuidv7(),
    at: new Date().toISOString(),
    actor: actorOf(principal),
    ...(principal.kind === 'api-key' ? { actorName: principal.name } : {}),
    action: `${method} ${matched.route.path}`,
    target,
    // The names of the body's top-level fields (never their values: they may hold secrets).
    fields:
      body !== null && typeof body === 'object' && !Array.isArray(body) ? Object.keys(body).slice(0, 50) : [],
    status: response.status,
    requestId,
  };
  try {
    await options.audit(record);
  } catch (err) {
    options.logger.error('could not record an admin change in the audit log', { err, action: record.action });
  }
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

/**
 * The most JSON values a request body the edge parses may hold (events are parsed by their route,
 * within the body size limit). Far above what any admin request needs, far below a megabyte of
 * empty objects, whose parse would hold the thread for tens of milliseconds.
 */
export const MAX_BODY_JSON_VALUES = 100_000;
/**
 * The most members one object of such a body may have: twice what the largest admin object needs (a
 * schema has at most 5,000 nodes, partner metadata 16 KiB), far below the 60,000 of a megabyte of
 * `"keyN":N`, whose parse held the thread 17–45 ms.
 */
export const MAX_BODY_OBJECT_MEMBERS = 10_000;

/** How a body refused unparsed is told: its message and the detail on `body`. */
const TOO_COMPLEX = {
  values: {
    message: `the request body holds more than ${MAX_BODY_JSON_VALUES} JSON values`,
    detail: `at most ${MAX_BODY_JSON_VALUES} values (arrays, objects, elements)`,
  },
  members: {
    message: `an object in the request body has more than ${MAX_BODY_OBJECT_MEMBERS} members`,
    detail: `at most ${MAX_BODY_OBJECT_MEMBERS} members per object`,
  },
} as const;

/** Parses a JSON request body; an empty body is `undefined`. */
function parseJsonBody(raw: RawRequest): unknown {
  if (raw.body.length === 0) return undefined;
  const type = raw.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
  if (type !== undefined && type !== 'application/json' && !type.endsWith('+json')) {
    throw new UnsupportedMediaTypeError('unsupported_media_type', `expected application/json, got ${type}`, {
      details: [{ field: 'content-type', message: 'must be application/json' }],
    });
  }
  // Refused before it is parsed: no admin request needs more (a schema holds at most 5,000 values).
  const complexity = jsonTextComplexity(raw.body, MAX_BODY_JSON_VALUES, MAX_BODY_OBJECT_MEMBERS);
  if (complexity !== undefined) {
    const { message, detail } = TOO_COMPLEX[complexity];
    throw new PayloadTooLargeError('body_too_complex', message, {
      details: [{ field: 'body', message: detail }],
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
