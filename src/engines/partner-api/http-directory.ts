/**
 * The external Partner Info API as a `PartnerDirectory` (read-only, over HTTP, cached).
 *
 * Protocol (what a Partner Info API must serve):
 * - `GET {baseUrl}/partners/{id}` (id URL-encoded), `Accept: application/json`, plus
 *   `Authorization: Bearer <token>` when a token is configured, or `Authorization: Basic …` when the
 *   base URL carries a user and password (`https://user:pass@host/v1`; taken out of the URL, which
 *   fetch refuses with credentials in it; not both).
 * - An answer's body is read up to `MAX_BODY_BYTES` (1 MiB); a longer one is a bad response, so a
 *   directory that streams without end cannot fill the process's memory.
 *   200 → `{ id, name, status?, contactEmail?, metadata?, delivery?, createdAt?, updatedAt? }`, or the
 *   same object wrapped as `{ partner: {...} }`. `status` is `ACTIVE` (default) or `INACTIVE`;
 *   `metadata` is any JSON object (default `{}`); `delivery` takes the same settings as
 *   `POST /admin/partners` (`timeouts`, `retry`, `maxConcurrency`, `rateLimitPerSecond`; default `{}`);
 *   timestamps default to the time of the fetch; `null` counts as absent; unknown fields are ignored.
 *   The answer's `id` must equal the id asked for. 404 → the partner does not exist.
 * - `GET {baseUrl}/partners?limit=&cursor=` (each parameter only when given) → 200
 *   `{ items: [partner...], next?: "<opaque cursor>" }` or a bare array `[partner...]` (one page).
 * - Failures, all `TransientError` (none is the caller's fault, and each may clear up):
 *   timeout (whole request, `timeoutMs`), connection error, 408, 429, 5xx →
 *   `partner_directory_unavailable`; 401/403 → `partner_directory_unauthorized` (the platform's
 *   token is wrong); anything else (non-JSON, wrong field types, another id, other statuses) →
 *   `partner_directory_bad_response`. Messages name the URL, never the token.
 *
 * Cache: per id, found and not-found alike, for `cacheTtlMs` (0 disables it); at most
 * `maxCacheEntries`, dropping the oldest; concurrent lookups of one id share a single request;
 * errors and listings are never cached. `invalidate(id?)` forgets one id or everything.
 */
import { ConfigError, type ErrorDetail, TransientError } from '../../common/errors.ts';
import { registerSecret } from '../../common/log.ts';
import type { PartnerRecord } from '../../common/model.ts';
import type { PartnerDirectory } from '../../common/ports/partner-directory.ts';
import type { Page, PageRequest } from '../../common/ports/store.ts';
import { TtlCache } from '../../common/ttl-cache.ts';
import { parsePartnerAnswer, parsePartnerPage } from './partner-body.ts';

const DEFAULT_MAX_CACHE_ENTRIES = 10_000;
/** The largest answer read: a partner listing page of a few hundred partners fits many times over. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface HttpPartnerDirectoryOptions {
  /** e.g. `http://127.0.0.1:9000/v1`; a trailing slash is ignored. */
  baseUrl: string;
  /** Whole-request timeout (connect, headers and body). */
  timeoutMs: number;
  /** How long an answer (found or not) is reused; 0 disables caching. */
  cacheTtlMs: number;
  /** Sent as `Authorization: Bearer <token>` when set. */
  token?: string;
  /** Defaults to `DEFAULT_MAX_CACHE_ENTRIES`. */
  maxCacheEntries?: number;
  fetch?: typeof fetch;
  /** Milliseconds; only drives cache expiry. */
  clock?: () => number;
}

type Answer = { found: false } | { found: true; body: unknown };

/** Looks partners up in an external Partner Info API, caching answers per id. */
export class HttpPartnerDirectory implements PartnerDirectory {
  readonly kind = 'http';
  readonly #baseUrl: string;
  readonly #timeoutMs: number;
  readonly #headers: Record<string, string>;
  readonly #fetch: typeof fetch;
  readonly #clock: () => number;
  readonly #cache: TtlCache<string, PartnerRecord | undefined>;

  constructor(o: HttpPartnerDirectoryOptions) {
    const { baseUrl, basic } = checkOptions(o);
    this.#baseUrl = baseUrl;
    this.#timeoutMs = o.timeoutMs;
    this.#headers = { accept: 'application/json' };
    if (o.token) this.#headers.authorization = `Bearer ${o.token}`;
    else if (basic) this.#headers.authorization = `Basic ${basic}`;
    this.#fetch = o.fetch ?? globalThis.fetch;
    this.#clock = o.clock ?? Date.now;
    this.#cache = new TtlCache({
      ttlMs: o.cacheTtlMs,
      maxEntries: o.maxCacheEntries ?? DEFAULT_MAX_CACHE_ENTRIES,
      now: this.#clock,
    });
  }

  /** The partner, from the cache while fresh, else from the API (one request per id at a time). */
  async getPartner(id: string): Promise<PartnerRecord | undefined> {
    const partner = await this.#cache.get(id, () => this.#fetchPartner(id));
    // Each caller gets its own copy, so one caller's edits cannot leak into the cache or another's result.
    return structuredClone(partner);
  }

  /** One page of partners, always fresh from the API. */
  async listPartners(page: PageRequest = {}): Promise<Page<PartnerRecord>> {
    const query = new URLSearchParams();
    if (page.limit !== undefined) query.set('limit', String(page.limit));
    if (page.cursor !== undefined) query.set('cursor', page.cursor);
    const url = `${this.#baseUrl}/partners${query.size > 0 ? `?${query}` : ''}`;
    const answer = await this.#get(url, false);
    const parsed = parsePartnerPage(
      answer.found ? answer.body : undefined,
      new Date(this.#clock()).toISOString(),
    );
    if (!parsed.ok) throw badResponse(url, 'sent an unusable partner listing', parsed.details);
    return parsed.value;
  }

  /** Forgets one id (or everything), including a lookup in flight, whose answer will not be cached. */
  invalidate(id?: string): void {
    this.#cache.invalidate(id);
  }

  async #fetchPartner(id: string): Promise<PartnerRecord | undefined> {
    const url = `${this.#baseUrl}/partners/${encodeURIComponent(id)}`;
    const answer = await this.#get(url, true);
    if (!answer.found) return undefined;
    const parsed = parsePartnerAnswer(answer.body, new Date(this.#clock()).toISOString());
    if (!parsed.ok) throw badResponse(url, 'sent an unusable partner', parsed.details);
    if (parsed.value.id !== id) {
      throw badResponse(url, 'answered with another partner', [
        { field: 'id', message: `is \`${parsed.value.id}\`, not the requested \`${id}\`` },
      ]);
    }
    return parsed.value;
  }

  /** GETs JSON, turning every way it can fail into the directory's TransientErrors. */
  async #get(url: string, notFoundIsAnswer: boolean): Promise<Answer> {
    const where = `GET ${redact(url)}`;
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let response: Response;
    try {
      response = await this.#fetch(url, { method: 'GET', headers: this.#headers, signal });
    } catch (cause) {
      throw unavailable(`${where} ${failure(cause, signal, this.#timeoutMs)}`, cause);
    }
    const status = response.status;
    if (status < 200 || status > 299) {
      response.body?.cancel().catch(() => {}); // frees the connection; the body is of no use
      if (status === 404 && notFoundIsAnswer) return { found: false };
      if (status === 401 || status === 403) {
        throw new TransientError(
          'partner_directory_unauthorized',
          `the Partner Info API refused the platform's credentials (HTTP ${status}) at ${where}; check the token`,
        );
      }
      if (status === 408 || status === 429 || status >= 500)
        throw unavailable(`${where} answered HTTP ${status}`);
      throw badResponse(url, `answered HTTP ${status}`, []);
    }
    let text: string | undefined;
    try {
      text = await boundedText(response);
    } catch (cause) {
      throw unavailable(`${where} ${failure(cause, signal, this.#timeoutMs)} while reading the body`, cause);
    }
    if (text === undefined) throw badResponse(url, `answered with a body over ${MAX_BODY_BYTES} bytes`, []);
    try {
      return { found: true, body: JSON.parse(text) };
    } catch (cause) {
      throw badResponse(url, 'answered with a body that is not JSON', [], cause);
    }
  }
}

/** The body as text, or undefined (the rest left unread) once it is longer than `MAX_BODY_BYTES`. */
async function boundedText(response: Response): Promise<string | undefined> {
  const declared = Number(response.headers.get('content-length'));
  if (declared > MAX_BODY_BYTES || response.body === null) {
    response.body?.cancel().catch(() => {});
    return declared > MAX_BODY_BYTES ? undefined : '';
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) {
      await response.body.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function checkOptions(o: HttpPartnerDirectoryOptions): { baseUrl: string; basic?: string } {
  const details: ErrorDetail[] = [];
  let base: URL | undefined;
  try {
    base = new URL(o.baseUrl);
  } catch {
    details.push({ field: 'baseUrl', message: 'must be an absolute URL' });
  }
  if (base && base.protocol !== 'http:' && base.protocol !== 'https:') {
    details.push({ field: 'baseUrl', message: 'must be an http:// or https:// URL' });
  }
  if (!(o.timeoutMs > 0)) details.push({ field: 'timeoutMs', message: 'must be a positive number' });
  if (!(o.cacheTtlMs >= 0)) details.push({ field: 'cacheTtlMs', message: 'must be zero or more' });
  const max = o.maxCacheEntries;
  if (max !== undefined && !(Number.isInteger(max) && max >= 1)) {
    details.push({ field: 'maxCacheEntries', message: 'must be a positive integer' });
  }
  const credentials = base !== undefined && (base.username !== '' || base.password !== '');
  if (credentials && o.token) {
    details.push({
      field: 'baseUrl',
      message: 'carries a user and password while a token is set too: give one or the other',
    });
  }
  if (details.length > 0) throw new ConfigError('the Partner Info API settings are invalid', { details });
  if (!credentials) return { baseUrl: o.baseUrl.replace(/\/+$/, '') };
  const user = decoded(base!.username);
  const password = decoded(base!.password);
  registerSecret(password);
  return {
    baseUrl: redact(o.baseUrl).replace(/\/+$/, ''),
    basic: Buffer.from(`${user}:${password}`).toString('base64'),
  };
}

/** A URL's user or password as typed (the URL keeps them percent-encoded). */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part; // a lone `%` stays as it is
  }
}

/** Why a request failed, in words: its own timeout, or the network error under undici's "fetch failed". */
function failure(cause: unknown, signal: AbortSignal, timeoutMs: number): string {
  if (signal.aborted) return `timed out after ${timeoutMs} ms`;
  const inner = (cause as { cause?: { message?: unknown } } | undefined)?.cause?.message;
  const outer = (cause as { message?: unknown } | undefined)?.message;
  return `failed: ${String(inner ?? outer ?? cause)}`;
}

function unavailable(what: string, cause?: unknown): TransientError {
  return new TransientError('partner_directory_unavailable', `the Partner Info API is unavailable: ${what}`, {
    cause,
  });
}

function badResponse(url: string, what: string, details: ErrorDetail[], cause?: unknown): TransientError {
  const first = details[0];
  const summary = first ? ` (${first.field ? `${first.field}: ` : ''}${first.message})` : '';
  return new TransientError(
    'partner_directory_bad_response',
    `the Partner Info API ${what} at GET ${redact(url)}${summary}`,
    { details, cause },
  );
}

/** The URL without any user-info, so credentials placed in the base URL never reach logs. */
function redact(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.toString();
}
