/**
 * Access: API keys (created, listed, revoked; found by the hash of the key), and the authenticator
 * that turns an `Authorization` header into a caller. (The audit log is the store's: the edge
 * appends to it, the routes list it.)
 */
import { createHash, randomBytes } from 'node:crypto';
import { API_KEY_ROLES, type Principal } from '../common/access.ts';
import { bearerToken, matchesDigest, safeEqual, secretDigest } from '../common/auth.ts';
import { ConfigError, NotFoundError, UnauthorizedError } from '../common/errors.ts';
import { InputReader } from '../common/input.ts';
import type { ApiKeyRecord, ApiKeyRole } from '../common/model.ts';
import type { ApiKeyRepository, Page, PageRequest } from '../common/ports/store.ts';
import { TtlCache } from '../common/ttl-cache.ts';

/** Every API key starts with this, so a leaked one is recognisable (and redacted from logs). */
export const API_KEY_PREFIX = 'whk_';
const API_KEY_BYTES = 32;
/** Characters of the key kept in the clear, to recognise it in a listing. */
const SHOWN_PREFIX_LENGTH = 12;
/** Limits of a key's input. */
const MAX_NAME_LENGTH = 200;
const MAX_PATTERNS = 100;
const MAX_PATTERN_LENGTH = 1024;

/** SHA-256 (hex) of an API key: what the store keeps. Keys are 256 random bits, so no slow hash is needed. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new random API key. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(API_KEY_BYTES).toString('base64url');
}

/** An API key as the API shows it: never the key nor its hash. */
export type ApiKeyView = Omit<ApiKeyRecord, 'keyHash' | 'revision'> & {
  status: 'active' | 'expired' | 'revoked';
};

/** The view of a record at `now`. */
export function apiKeyView(record: ApiKeyRecord, now: Date): ApiKeyView {
  const { keyHash: _hash, revision: _revision, ...rest } = record;
  return { ...rest, status: keyStatus(record, now) };
}

function keyStatus(record: ApiKeyRecord, now: Date): ApiKeyView['status'] {
  if (record.revokedAt !== undefined) return 'revoked';
  if (record.expiresAt !== undefined && Date.parse(record.expiresAt) <= now.getTime()) return 'expired';
  return 'active';
}

export interface ApiKeyAdminDeps {
  apiKeys: ApiKeyRepository;
  newId: () => string;
  clock: () => Date;
  /** Called when a key is revoked, so authenticators forget it at once. */
  onRevoked?: (record: ApiKeyRecord) => void;
}

/** Creating, listing and revoking API keys. */
export class ApiKeyAdmin {
  readonly #deps: ApiKeyAdminDeps;

  constructor(deps: ApiKeyAdminDeps) {
    this.#deps = deps;
  }

  /** Creates a key from `{ name, role, sources?, eventTypes?, expiresAt? }`; the key is returned this once. */
  async create(body: unknown, actor: string): Promise<ApiKeyView & { key: string }> {
    const now = this.#deps.clock();
    const input = readKeyInput(body, now);
    const key = generateApiKey();
    const record: ApiKeyRecord = {
      id: this.#deps.newId(),
      name: input.name,
      role: input.role,
      ...(input.sources ? { sources: input.sources } : {}),
      ...(input.eventTypes ? { eventTypes: input.eventTypes } : {}),
      keyHash: hashApiKey(key),
      prefix: key.slice(0, SHOWN_PREFIX_LENGTH),
      createdAt: now.toISOString(),
      createdBy: actor,
      ...(input.expiresAt ? { expiresAt: input.expiresAt } : {}),
      revision: 1,
    };
    await this.#deps.apiKeys.insert(record);
    return { ...apiKeyView(record, now), key };
  }

  async list(page: PageRequest): Promise<Page<ApiKeyView>> {
    const now = this.#deps.clock();
    const found = await this.#deps.apiKeys.list(page);
    return { items: found.items.map((r) => apiKeyView(r, now)), ...(found.next ? { next: found.next } : {}) };
  }

  async get(id: string): Promise<ApiKeyView> {
    return apiKeyView(await this.#find(id), this.#deps.clock());
  }

  /** Revokes a key (it stays listed, `revoked`); revoking a revoked key changes nothing. */
  async revoke(id: string): Promise<ApiKeyView> {
    const now = this.#deps.clock();
    let record = await this.#find(id);
    if (record.revokedAt === undefined) {
      record = await this.#deps.apiKeys.update({ ...record, revokedAt: now.toISOString() });
    }
    this.#deps.onRevoked?.(record);
    return apiKeyView(record, now);
  }

  async #find(id: string): Promise<ApiKeyRecord> {
    const record = await this.#deps.apiKeys.get(id);
    if (!record) throw new NotFoundError('api_key_not_found', `API key ${id} not found`);
    return record;
  }
}

interface KeyInput {
  name: string;
  role: ApiKeyRole;
  sources?: string[];
  eventTypes?: string[];
  expiresAt?: string;
}

function readKeyInput(body: unknown, now: Date): KeyInput {
  const r = new InputReader(body, ['name', 'role', 'sources', 'eventTypes', 'expiresAt']);
  const name = r.string('name', { required: true, max: MAX_NAME_LENGTH });
  const role = r.oneOf('role', API_KEY_ROLES, { required: true });
  const sources = readPatterns(r, 'sources');
  const eventTypes = readPatterns(r, 'eventTypes');
  // `sources: null` is no list either: a key without sources could publish nothing.
  if (role === 'publisher' && sources === undefined) {
    r.problem('sources', 'a publisher key needs the sources it may publish (e.g. ["/billing"])', 'required');
  }
  if (role !== undefined && role !== 'publisher') {
    for (const key of ['sources', 'eventTypes'] as const) {
      if (r.has(key)) r.problem(key, `only publisher keys are scoped; a ${role} key has no ${key}`);
    }
  }
  let expiresAt: string | undefined;
  const expires = r.string('expiresAt');
  if (expires !== undefined) {
    const at = Date.parse(expires);
    if (Number.isNaN(at)) r.problem('expiresAt', 'must be an RFC 3339 date-time');
    else if (at <= now.getTime()) r.problem('expiresAt', 'must be in the future');
    else expiresAt = new Date(at).toISOString();
  }
  r.done('the API key is invalid');
  return {
    name: name!,
    role: role!,
    ...(sources ? { sources } : {}),
    ...(eventTypes ? { eventTypes } : {}),
    ...(expiresAt ? { expiresAt } : {}),
  };
}

/** A non-empty list of patterns (exact values, or prefixes ending in `*`). */
function readPatterns(r: InputReader, key: string): string[] | undefined {
  const v = r.raw(key);
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_PATTERNS) {
    r.problem(key, `must be an array of 1 to ${MAX_PATTERNS} strings`, 'type');
    return undefined;
  }
  const out: string[] = [];
  for (const [i, p] of v.entries()) {
    if (typeof p !== 'string' || p.length === 0 || p.length > MAX_PATTERN_LENGTH) {
      r.problem(`${key}[${i}]`, `must be a string of 1 to ${MAX_PATTERN_LENGTH} characters`, 'type');
      continue;
    }
    if (p.indexOf('*') !== -1 && p.indexOf('*') !== p.length - 1) {
      r.problem(`${key}[${i}]`, 'a `*` may only end a pattern (a prefix)');
      continue;
    }
    out.push(p);
  }
  return out;
}

export interface AuthenticatorDeps {
  /** The bootstrap admin token (always an admin). */
  adminToken: string;
  apiKeys: ApiKeyRepository;
  clock: () => Date;
  /** How long a key read is reused by this process (a revocation elsewhere takes this long here). */
  cacheTtlMs?: number;
  /** How often a key's `lastUsedAt` is written at most. */
  touchEveryMs?: number;
  onTouchError?: (err: unknown) => void;
}

const UNKNOWN_KEY = 'the bearer token is not valid';

/** Turns an `Authorization` header into a caller, or throws UnauthorizedError (401). */
export class Authenticator {
  readonly #deps: AuthenticatorDeps;
  readonly #adminDigest: Buffer;
  readonly #keys: TtlCache<string, ApiKeyRecord | undefined>;
  readonly #touched = new Map<string, number>();
  readonly #touchEveryMs: number;

  constructor(deps: AuthenticatorDeps) {
    // An empty configured token would be a misconfiguration, never a reason to let requests in.
    if (typeof deps.adminToken !== 'string' || deps.adminToken === '') {
      throw new ConfigError('the admin token is not configured');
    }
    this.#deps = deps;
    // Hashed once: every request compares its token with it.
    this.#adminDigest = secretDigest(deps.adminToken);
    this.#keys = new TtlCache({ ttlMs: deps.cacheTtlMs ?? 5_000, maxEntries: 10_000 });
    this.#touchEveryMs = deps.touchEveryMs ?? 60_000;
  }

  /** The caller named by the header: code `unauthorized` (none), `invalid_token`, `key_revoked`, `key_expired`. */
  async authenticate(authorizationHeader: string | undefined): Promise<Principal> {
    const token = bearerToken(authorizationHeader);
    if (matchesDigest(token, this.#adminDigest)) return { kind: 'admin-token', role: 'admin' };
    if (!token.startsWith(API_KEY_PREFIX)) throw unauthorized('invalid_token', UNKNOWN_KEY);
    const hash = hashApiKey(token);
    const record = await this.#keys.get(hash, () => this.#deps.apiKeys.findByHash(hash));
    // The lookup was by hash; comparing the hashes again in constant time costs nothing.
    if (!record || !safeEqual(record.keyHash, hash)) throw unauthorized('invalid_token', UNKNOWN_KEY);
    const now = this.#deps.clock();
    // The same judgement the listing shows as the key's status.
    const status = keyStatus(record, now);
    if (status === 'revoked') throw unauthorized('key_revoked', `the API key "${record.name}" is revoked`);
    if (status === 'expired') {
      throw unauthorized('key_expired', `the API key "${record.name}" expired at ${record.expiresAt}`);
    }
    this.#touch(record, now);
    return {
      kind: 'api-key',
      id: record.id,
      name: record.name,
      role: record.role,
      ...(record.sources ? { sources: record.sources } : {}),
      ...(record.eventTypes ? { eventTypes: record.eventTypes } : {}),
    };
  }

  /** Forgets a key read (after it was revoked here), so the next request reads it again. */
  forget(keyHash: string): void {
    this.#keys.invalidate(keyHash);
  }

  /** Records the use, at most once per `touchEveryMs` per key; a failure only loses the time. */
  #touch(record: ApiKeyRecord, now: Date): void {
    const at = now.getTime();
    const last = Math.max(
      this.#touched.get(record.id) ?? 0,
      record.lastUsedAt ? Date.parse(record.lastUsedAt) : 0,
    );
    if (at - last < this.#touchEveryMs) return;
    this.#touched.set(record.id, at);
    if (this.#touched.size > 10_000) this.#touched.delete(this.#touched.keys().next().value as string);
    this.#deps.apiKeys
      .touch(record.id, now.toISOString())
      .catch((err: unknown) => this.#deps.onTouchError?.(err));
  }
}

function unauthorized(code: string, message: string): UnauthorizedError {
  return new UnauthorizedError(code, message, { details: [{ field: 'authorization', message }] });
}
