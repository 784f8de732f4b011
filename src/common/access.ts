/**
 * Who is calling and what they may do. A route declares the access it needs; a caller's role
 * decides which accesses it has. Pure: no I/O (the HTTP edge authenticates, this decides).
 */
import type { ApiKeyRole } from './model.ts';

/**
 * What a route needs:
 * - `public`: nothing (liveness, readiness, metrics, the OpenAPI document);
 * - `publish`: publishing events (`POST /events`);
 * - `read`: reading the admin state and the delivery history;
 * - `operate`: acting on deliveries (redrive);
 * - `admin`: changing partners, subscriptions, schemas and API keys, reading keys and the audit log.
 */
export type Access = 'public' | 'publish' | 'read' | 'operate' | 'admin';

/** Every access, for tables and validation. */
export const ACCESSES: readonly Access[] = ['public', 'publish', 'read', 'operate', 'admin'];

/** Every role an API key can have. */
export const API_KEY_ROLES: readonly ApiKeyRole[] = ['admin', 'operator', 'publisher'];

const ALLOWED: Record<ApiKeyRole, ReadonlySet<Access>> = {
  admin: new Set(ACCESSES),
  operator: new Set<Access>(['public', 'read', 'operate']),
  publisher: new Set<Access>(['public', 'publish']),
};

/**
 * An authenticated caller: the bootstrap admin token, an API key, or a caller the transport
 * authenticated before the request reached the platform (API Gateway's IAM or JWT authorizer: `id`
 * is the IAM principal's ARN or the token's subject).
 */
export type Principal =
  | { kind: 'admin-token'; role: 'admin' }
  | { kind: 'gateway'; role: ApiKeyRole; id: string }
  | {
      kind: 'api-key';
      id: string;
      name: string;
      role: ApiKeyRole;
      sources?: readonly string[];
      eventTypes?: readonly string[];
    };

/** The audit log's name of a caller: `admin-token` or `api-key:<id>`. */
export function actorOf(principal: Principal): string {
  if (principal.kind === 'admin-token') return 'admin-token';
  return principal.kind === 'gateway' ? `gateway:${principal.id}` : `api-key:${principal.id}`;
}

/** True when a caller with `role` may use a route that needs `access`. */
export function roleAllows(role: ApiKeyRole, access: Access): boolean {
  return ALLOWED[role].has(access);
}

/**
 * True when `value` is one of `patterns`: equal to one, or starting with one that ends in `*`
 * (`/billing/*` covers `/billing/eu`; a lone `*` covers everything).
 */
export function matchesPattern(patterns: readonly string[], value: string): boolean {
  for (const p of patterns) {
    if (p.endsWith('*') ? value.startsWith(p.slice(0, -1)) : value === p) return true;
  }
  return false;
}

/**
 * Why a caller may not publish an event of this source and type, or undefined when it may. Only
 * publisher keys are scoped; the admin token and admin keys publish anything.
 */
export function publishRefusal(
  principal: Principal | undefined,
  event: { source: string; type: string },
): { field: 'source' | 'type'; message: string } | undefined {
  if (principal?.kind !== 'api-key' || principal.role !== 'publisher') return undefined;
  if (!matchesPattern(principal.sources ?? [], event.source)) {
    return { field: 'source', message: `the key "${principal.name}" may not publish source ${event.source}` };
  }
  if (principal.eventTypes !== undefined && !matchesPattern(principal.eventTypes, event.type)) {
    return { field: 'type', message: `the key "${principal.name}" may not publish type ${event.type}` };
  }
  return undefined;
}
