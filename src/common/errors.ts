/**
 * Errors of the platform. Every error has a stable `code` (lower snake case, part of the API
 * contract), a `name`, an optional `cause`, and `details` naming the fields at fault.
 * They become HTTP statuses only at the edge (see `src/runtimes/http/errors-to-http.ts`), by `kind`.
 */

/** One precise problem: which field (a JSON pointer-ish dotted path) and what is wrong with it. */
export interface ErrorDetail {
  field?: string;
  message: string;
  code?: string;
}

/** The broad class of an error; the HTTP edge maps each kind to one status. */
export type ErrorKind =
  | 'validation' // 400: the request itself is malformed
  | 'unauthorized' // 401
  | 'forbidden' // 403
  | 'not_found' // 404
  | 'conflict' // 409: state conflict, incompatible schema version
  | 'payload_too_large' // 413
  | 'unsupported_media_type' // 415
  | 'unprocessable' // 422: well-formed but refers to something unusable (inactive schema, refused URL)
  | 'unavailable' // 503: transient; retrying may succeed
  | 'internal'; // 500: a real fault

export interface WebhooksErrorOptions {
  details?: ErrorDetail[];
  cause?: unknown;
}

/** Base class of every error the platform raises on purpose. */
export class WebhooksError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly details: ErrorDetail[];

  constructor(kind: ErrorKind, code: string, message: string, options: WebhooksErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WebhooksError';
    this.kind = kind;
    this.code = code;
    this.details = options.details ?? [];
  }
}

/** The request or document is malformed (400). */
export class ValidationError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('validation', code, message, options);
    this.name = 'ValidationError';
  }
}

/** Missing or wrong credentials (401). */
export class UnauthorizedError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('unauthorized', code, message, options);
    this.name = 'UnauthorizedError';
  }
}

/** Authenticated, but the credentials do not allow this request (403). */
export class ForbiddenError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('forbidden', code, message, options);
    this.name = 'ForbiddenError';
  }
}

/** The thing asked for does not exist (404). */
export class NotFoundError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('not_found', code, message, options);
    this.name = 'NotFoundError';
  }
}

/** The request conflicts with the current state (409). */
export class ConflictError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('conflict', code, message, options);
    this.name = 'ConflictError';
  }
}

/** Well-formed, but refers to something that cannot be used (422). */
export class UnprocessableError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('unprocessable', code, message, options);
    this.name = 'UnprocessableError';
  }
}

/** The request body is over the configured limit (413). */
export class PayloadTooLargeError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('payload_too_large', code, message, options);
    this.name = 'PayloadTooLargeError';
  }
}

/** The request's content type is not one the endpoint takes (415). */
export class UnsupportedMediaTypeError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('unsupported_media_type', code, message, options);
    this.name = 'UnsupportedMediaTypeError';
  }
}

/** A dependency is unreachable or timed out; the same call may succeed later (503). */
export class TransientError extends WebhooksError {
  constructor(code: string, message: string, options: WebhooksErrorOptions = {}) {
    super('unavailable', code, message, options);
    this.name = 'TransientError';
  }
}

/** Configuration is invalid; raised at start with one detail per bad value. */
export class ConfigError extends WebhooksError {
  constructor(message: string, options: WebhooksErrorOptions = {}) {
    super('internal', 'config_invalid', message, options);
    this.name = 'ConfigError';
  }
}

/** True when `err` is one of the platform's own errors. */
export function isWebhooksError(err: unknown): err is WebhooksError {
  return err instanceof WebhooksError;
}

const PERMANENT_KINDS: ReadonlySet<ErrorKind> = new Set([
  'validation',
  'not_found',
  'unprocessable',
  'payload_too_large',
  'unsupported_media_type',
]);

/**
 * True when doing the same work again cannot succeed — a malformed input, something that does not
 * exist — so a consumer dead-letters the record at once instead of redelivering it. Anything else
 * (a store or bus that failed, a conflict, an unknown error) may pass on a later try.
 */
export function isPermanentError(err: unknown): boolean {
  if (err instanceof SyntaxError) return true;
  return isWebhooksError(err) && PERMANENT_KINDS.has(err.kind);
}

/** A short description of an error for dead letters and logs: its message and the fields at fault. */
export function describeError(err: unknown): string {
  if (isWebhooksError(err) && err.details.length > 0) {
    return `${err.message}: ${err.details.map((d) => `${d.field ?? ''} ${d.message}`.trim()).join('; ')}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The stable code of an error given up on for good, for a dead letter's reason. */
export function permanentErrorCode(err: unknown): string {
  if (err instanceof SyntaxError) return 'invalid_json';
  return isWebhooksError(err) ? err.code : 'permanent_failure';
}
