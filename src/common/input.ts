/**
 * Reading request bodies field by field with precise errors. A reader collects every problem and
 * throws one ValidationError listing them all, each with the field's path.
 */
import { type ErrorDetail, ValidationError } from './errors.ts';
import { isJsonObject, type JsonObject, jsonDepthProblem } from './json.ts';

/** Collects field problems while a handler reads its input. */
export class InputReader {
  readonly details: ErrorDetail[];
  readonly #object: JsonObject;
  readonly #prefix: string;

  /**
   * Starts reading `value`, which must be a JSON object; `allowed` lists the accepted keys.
   * Nested readers share their parent's `details` so that all problems are reported together.
   */
  constructor(value: unknown, allowed: readonly string[], prefix = '', details: ErrorDetail[] = []) {
    this.details = details;
    this.#prefix = prefix;
    if (!isJsonObject(value)) {
      this.#object = {};
      this.details.push({ field: prefix || 'body', message: 'must be a JSON object', code: 'type' });
      return;
    }
    this.#object = value;
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        this.details.push({
          field: this.field(key),
          message: `unknown field \`${key}\``,
          code: 'unknown_field',
        });
      }
    }
  }

  /** The full field path of a key (with the reader's prefix). */
  field(key: string): string {
    return this.#prefix ? `${this.#prefix}.${key}` : key;
  }

  has(key: string): boolean {
    return this.#object[key] !== undefined;
  }

  raw(key: string): unknown {
    return this.#object[key];
  }

  /** Records a problem with a field. */
  problem(key: string, message: string, code = 'invalid'): undefined {
    this.details.push({ field: this.field(key), message, code });
    return undefined;
  }

  string(
    key: string,
    opts: { required?: boolean; max?: number; pattern?: RegExp; rule?: string } = {},
  ): string | undefined {
    const v = this.#object[key];
    if (v === undefined || v === null)
      return opts.required ? this.problem(key, 'is required', 'required') : undefined;
    if (typeof v !== 'string') return this.problem(key, `must be a string, got ${typeOf(v)}`, 'type');
    if (opts.required && v.length === 0) return this.problem(key, 'must not be empty', 'required');
    if (opts.max !== undefined && v.length > opts.max)
      return this.problem(key, `must be at most ${opts.max} characters`);
    if (opts.pattern && !opts.pattern.test(v))
      return this.problem(key, `must be ${opts.rule ?? `like ${opts.pattern}`}`);
    return v;
  }

  integer(key: string, opts: { required?: boolean; min?: number; max?: number } = {}): number | undefined {
    const v = this.#object[key];
    if (v === undefined || v === null)
      return opts.required ? this.problem(key, 'is required', 'required') : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v))
      return this.problem(key, `must be an integer, got ${typeOf(v)}`, 'type');
    if (opts.min !== undefined && v < opts.min) return this.problem(key, `must be at least ${opts.min}`);
    if (opts.max !== undefined && v > opts.max) return this.problem(key, `must be at most ${opts.max}`);
    return v;
  }

  boolean(key: string): boolean | undefined {
    const v = this.#object[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') return this.problem(key, `must be true or false, got ${typeOf(v)}`, 'type');
    return v;
  }

  oneOf<T extends string>(
    key: string,
    values: readonly T[],
    opts: { required?: boolean } = {},
  ): T | undefined {
    const v = this.string(key, opts);
    if (v === undefined) return undefined;
    if (!(values as readonly string[]).includes(v))
      return this.problem(key, `must be one of ${values.join(', ')}`);
    return v as T;
  }

  /**
   * An object field; with `maxDepth`, one that nests arrays and objects deeper is refused
   * (`too_deep`) — check it before anything recursive, serialising included, touches the value.
   */
  object(key: string, opts: { required?: boolean; maxDepth?: number } = {}): JsonObject | undefined {
    const v = this.#object[key];
    if (v === undefined || v === null)
      return opts.required ? this.problem(key, 'is required', 'required') : undefined;
    if (!isJsonObject(v)) return this.problem(key, `must be a JSON object, got ${typeOf(v)}`, 'type');
    const tooDeep =
      opts.maxDepth === undefined ? undefined : jsonDepthProblem(v, this.field(key), opts.maxDepth);
    if (tooDeep) {
      this.details.push(tooDeep);
      return undefined;
    }
    return v;
  }

  /** A nested reader for an object field (its problems join this reader's). */
  nested(key: string, allowed: readonly string[]): InputReader | undefined {
    const v = this.object(key);
    if (v === undefined) return undefined;
    return new InputReader(v, allowed, this.field(key), this.details);
  }

  /** Adds details found by another validator. */
  add(details: readonly ErrorDetail[]): void {
    this.details.push(...details);
  }

  /** Throws one ValidationError listing every problem, if there was any. */
  done(message = 'the request body is invalid'): void {
    if (this.details.length > 0) {
      const first = this.details[0]!;
      const summary =
        this.details.length === 1 ? `${first.field}: ${first.message}` : `${this.details.length} problems`;
      throw new ValidationError('validation_failed', `${message} (${summary})`, { details: this.details });
    }
  }
}

/** A short name of a JSON value's type for messages. */
export function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** The page request of a listing from `?limit=&cursor=` (limit 1..1000). */
export function readPage(query: URLSearchParams): { limit?: number; cursor?: string } {
  const page: { limit?: number; cursor?: string } = {};
  const limit = query.get('limit');
  if (limit !== null) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000) {
      throw new ValidationError('validation_failed', 'limit must be a whole number from 1 to 1000', {
        details: [{ field: 'limit', message: 'must be a whole number from 1 to 1000', code: 'invalid' }],
      });
    }
    page.limit = Number(limit);
  }
  const cursor = query.get('cursor');
  if (cursor !== null && cursor !== '') page.cursor = cursor;
  return page;
}

/** The query parameters named, as a plain object (absent ones left out). */
export function queryObject(query: URLSearchParams, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const v = query.get(name);
    if (v !== null && v !== '') out[name] = v;
  }
  return out;
}
