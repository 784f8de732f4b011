/**
 * API Gateway proxy events (REST API, payload 1.0; HTTP API, payload 2.0) as the HTTP edge's
 * requests, and the edge's responses as proxy results: the admin and ingest functions serve the
 * same route table, responses and errors as the standalone server.
 */
import { isUtf8 } from 'node:buffer';
import type { Principal } from '../../common/access.ts';
import type { ApiResponse } from '../../common/http.ts';
import { bodyNotUtf8, bodyTooLarge, errorBody, type RawRequest, renderResponse } from '../http/edge.ts';

/** The parts of a REST API (v1) proxy event the adapter reads. */
export interface ApiGatewayV1Event {
  version?: '1.0';
  httpMethod: string;
  path: string;
  headers?: Record<string, string | undefined> | null;
  multiValueHeaders?: Record<string, string[] | undefined> | null;
  queryStringParameters?: Record<string, string | undefined> | null;
  multiValueQueryStringParameters?: Record<string, string[] | undefined> | null;
  body?: string | null;
  isBase64Encoded?: boolean;
  requestContext?: {
    stage?: string;
    identity?: { userArn?: string | null; caller?: string | null } | null;
    authorizer?: { principalId?: string; claims?: Record<string, unknown> } | null;
  };
}

/** The parts of an HTTP API (v2) proxy event the adapter reads. */
export interface ApiGatewayV2Event {
  version: '2.0';
  rawPath: string;
  rawQueryString?: string;
  headers?: Record<string, string | undefined>;
  cookies?: string[];
  body?: string;
  isBase64Encoded?: boolean;
  requestContext: {
    stage?: string;
    http: { method: string; path?: string };
    authorizer?: {
      iam?: { userArn?: string };
      jwt?: { claims?: Record<string, unknown> };
      lambda?: Record<string, unknown>;
    };
  };
}

export type ApiGatewayEvent = ApiGatewayV1Event | ApiGatewayV2Event;

/** A proxy result (both payload versions take this shape). */
export interface ProxyResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  isBase64Encoded: false;
}

/** Whether the event is an API Gateway proxy event of either version. */
export function isApiGatewayEvent(event: unknown): event is ApiGatewayEvent {
  if (!event || typeof event !== 'object') return false;
  const e = event as Record<string, unknown>;
  return (
    (e.version === '2.0' && typeof e.rawPath === 'string') ||
    (typeof e.httpMethod === 'string' && typeof e.path === 'string')
  );
}

/**
 * The request of a proxy event, or the response refusing it (a body over `maxBodyBytes`, a body that
 * is not UTF-8) as the standalone server refuses it. `trustAuthorizer`: the caller the gateway's IAM
 * authorization named is taken as an admin (the admin API behind AWS_IAM).
 */
export function toRawRequest(
  event: ApiGatewayEvent,
  options: { maxBodyBytes: number; trustAuthorizer: boolean },
): RawRequest | ApiResponse {
  const v2 = event.version === '2.0';
  const body = event.body ?? '';
  const bytes = event.isBase64Encoded ? Buffer.from(body, 'base64') : undefined;
  const size = bytes ? bytes.length : Buffer.byteLength(body);
  if (size > options.maxBodyBytes) return bodyTooLarge(options.maxBodyBytes);
  if (bytes && !isUtf8(bytes)) return bodyNotUtf8();
  const raw: RawRequest = {
    method: v2
      ? (event as ApiGatewayV2Event).requestContext.http.method
      : (event as ApiGatewayV1Event).httpMethod,
    url: v2 ? v2Url(event as ApiGatewayV2Event) : v1Url(event as ApiGatewayV1Event),
    headers: v2 ? lowerCase(event.headers ?? {}) : v1Headers(event as ApiGatewayV1Event),
    body: bytes ? bytes.toString('utf8') : body,
  };
  const principal = options.trustAuthorizer ? authorizedCaller(event) : undefined;
  if (principal) raw.principal = principal;
  return raw;
}

/** The proxy result of a response. */
export function toProxyResult(response: ApiResponse): ProxyResult {
  const { headers, payload } = renderResponse(response);
  return { statusCode: response.status, headers, body: payload, isBase64Encoded: false };
}

/** A 400 for an event that is not an API Gateway proxy event (a misconfigured trigger). */
export function notAnApiGatewayEvent(): ProxyResult {
  return toProxyResult({
    status: 400,
    body: errorBody('event_invalid', 'not an API Gateway proxy event', [
      { field: 'event', message: 'expected a REST API (1.0) or HTTP API (2.0) proxy event' },
    ]),
  });
}

/**
 * The caller the gateway's IAM (SigV4) authorization named: the IAM principal's ARN. Only IAM: a JWT
 * authorizer's subject may be anyone its identity provider knows (a partner-facing route's users
 * too), so it is never taken as an admin.
 */
function authorizedCaller(event: ApiGatewayEvent): Principal | undefined {
  const id =
    event.version === '2.0'
      ? event.requestContext.authorizer?.iam?.userArn
      : (event.requestContext?.identity?.userArn ?? undefined);
  return id ? { kind: 'gateway', role: 'admin', id } : undefined;
}

function v2Url(event: ApiGatewayV2Event): string {
  let path = event.rawPath;
  // A named stage prefixes the raw path; routes know only their own paths.
  const stage = event.requestContext.stage;
  if (stage && stage !== '$default' && (path === `/${stage}` || path.startsWith(`/${stage}/`)))
    path = path.slice(stage.length + 1) || '/';
  return event.rawQueryString ? `${path}?${event.rawQueryString}` : path;
}

function v1Url(event: ApiGatewayV1Event): string {
  const query = new URLSearchParams();
  const multi = event.multiValueQueryStringParameters;
  if (multi) {
    for (const [name, values] of Object.entries(multi)) for (const v of values ?? []) query.append(name, v);
  } else {
    for (const [name, v] of Object.entries(event.queryStringParameters ?? {}))
      if (v !== undefined) query.append(name, v);
  }
  const text = query.toString();
  return text ? `${event.path}?${text}` : event.path;
}

function v1Headers(event: ApiGatewayV1Event): Record<string, string | undefined> {
  if (!event.multiValueHeaders) return lowerCase(event.headers ?? {});
  const out: Record<string, string | undefined> = {};
  for (const [name, values] of Object.entries(event.multiValueHeaders))
    if (values) out[name.toLowerCase()] = values.join(', ');
  return out;
}

function lowerCase(headers: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  return out;
}
