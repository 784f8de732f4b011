/**
 * The platform's own tiny HTTP vocabulary: components declare routes over plain request/response
 * objects, so the same handlers serve Node's HTTP server and API Gateway (runtimes adapt both).
 */
import type { Access, Principal } from './access.ts';
import { NotFoundError, ValidationError } from './errors.ts';

/** A request as the components see it: body already read and, for JSON, parsed. */
export interface ApiRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Header names are lower case. */
  headers: Record<string, string | undefined>;
  /** The parsed JSON body (undefined when there was none). */
  body: unknown;
  /** The raw body text (for endpoints that parse it themselves, e.g. CloudEvents binary mode). */
  rawBody: string;
  /** Who is calling: set on every route but `public` ones, and on those when valid credentials came. */
  principal?: Principal;
}

export interface ApiResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type Handler = (request: ApiRequest) => Promise<ApiResponse>;

/** One route: method, a path pattern with `{param}` segments, and what the OpenAPI document says of it. */
export interface Route {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  path: string;
  summary: string;
  /** What the caller needs (see `src/common/access.ts`); every route says. */
  access: Access;
  /** Whether the raw body is passed through unparsed (the handler parses it). */
  rawBody?: boolean;
  /**
   * The query parameters the handler reads, besides `limit` and `cursor` (`paged`). The edge hands
   * the handler these and no others, and the OpenAPI document lists them: neither can drift.
   */
  query?: readonly string[];
  /** A listing paged with `?limit=&cursor=`. */
  paged?: boolean;
  /** OpenAPI fragments: request body schema and success response description. */
  requestSchema?: Record<string, unknown>;
  /** The request body may be left out. */
  optionalBody?: boolean;
  responses?: Record<string, string>;
  tag?: string;
  handler: Handler;
}

/** A JSON response. */
export function json(status: number, body: unknown, headers?: Record<string, string>): ApiResponse {
  return headers ? { status, body, headers } : { status, body };
}

interface CompiledRoute {
  route: Route;
  regex: RegExp;
  names: string[];
}

/** Matches requests to routes; tells "no such path" (404) from "wrong method" (405). */
export class Router {
  readonly #routes: CompiledRoute[] = [];

  constructor(routes: readonly Route[] = []) {
    for (const r of routes) this.add(r);
  }

  add(route: Route): void {
    const names: string[] = [];
    const pattern = route.path
      .replace(/[.*+?^$()|[\]\\]/g, '\\$&')
      .replace(/\\?\{(\w+)\\?\}/g, (_m, name: string) => {
        names.push(name);
        return '([^/]+)';
      });
    this.#routes.push({ route, regex: new RegExp(`^${pattern}/?$`), names });
  }

  get routes(): Route[] {
    return this.#routes.map((r) => r.route);
  }

  /**
   * The route and path parameters for a request, or why there is none. A parameter that does not
   * decode gives its route with a handler answering 400 `invalid_path` (see `refusing`).
   */
  match(
    method: string,
    path: string,
  ):
    | { route: Route; params: Record<string, string> }
    | { error: 'not_found' | 'method_not_allowed'; allow?: string[] } {
    const allow: string[] = [];
    for (const { route, regex, names } of this.#routes) {
      const m = regex.exec(path);
      if (!m) continue;
      // HEAD is a GET without the body (RFC 9110): the server leaves the body out.
      if (route.method !== method && !(method === 'HEAD' && route.method === 'GET')) {
        allow.push(route.method);
        continue;
      }
      const params: Record<string, string> = {};
      let undecodable: string | undefined;
      let tooLong: string | undefined;
      names.forEach((name, i) => {
        const text = m[i + 1]!;
        const value = decodeParam(text);
        if (value === undefined) undecodable ??= name;
        else if (value.length > MAX_PARAM_CHARS) tooLong ??= name;
        params[name] = value ?? text;
      });
      if (undecodable !== undefined) return { route: refusing(route, undecodable), params };
      if (tooLong !== undefined) return { route: unknownId(route, tooLong), params };
      return { route, params };
    }
    return allow.length > 0 ? { error: 'method_not_allowed', allow } : { error: 'not_found' };
  }
}

/**
 * No id, name or version the platform issues or accepts is longer (names are at most 64 characters,
 * ids are UUIDs): a longer path parameter names nothing. Answered 404 before any store is asked
 * (DynamoDB refuses a key over 2 KiB with an error, which would be a 500).
 */
const MAX_PARAM_CHARS = 256;

/** A path parameter decoded, or undefined when it is not a %-encoding of UTF-8 (`%ff`, `%zz`, `%ed%a0%80`). */
function decodeParam(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** The route with its handler replaced by a 404 `not_found` for a parameter too long to name anything. */
function unknownId(route: Route, param: string): Route {
  return {
    ...route,
    handler: async () => {
      throw new NotFoundError(
        'not_found',
        `nothing has a ${param} longer than ${MAX_PARAM_CHARS} characters`,
        {
          details: [{ field: param, message: `at most ${MAX_PARAM_CHARS} characters` }],
        },
      );
    },
  };
}

/**
 * The route with its handler replaced by a 400 `invalid_path` naming the parameter that does not
 * decode: the request still matches its route and goes through the edge (authentication, access,
 * logging, metrics, the error body) like any other refused one. Its params keep that parameter's
 * text as it came.
 */
function refusing(route: Route, param: string): Route {
  return {
    ...route,
    handler: async () => {
      throw new ValidationError('invalid_path', `the path parameter ${param} is not valid %-encoded UTF-8`, {
        details: [{ field: param, message: 'must be %-encoded UTF-8' }],
      });
    },
  };
}

/** The query parameters a route declares (its `query`, and `limit` and `cursor` when paged), the others left out. */
export function declaredQuery(query: URLSearchParams, route: Route): URLSearchParams {
  const names = [...(route.query ?? []), ...(route.paged ? ['limit', 'cursor'] : [])];
  const out = new URLSearchParams();
  for (const name of names) for (const value of query.getAll(name)) out.append(name, value);
  return out;
}

/** The URL of a server listening on `host` and `port` (an IPv6 address in brackets). */
export function serverUrl(tls: boolean, host: string, port: number): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
