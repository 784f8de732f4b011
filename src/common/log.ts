/**
 * Structured JSON logging: one object per line, carrying the ambient correlation id, with secrets
 * redacted before anything is serialised. Lines look like
 * `{"level":"info","time":"<ISO>","msg":"…","correlationId":"…",...bindings,...fields}`.
 */

import { AsyncLocalStorage } from 'node:async_hooks';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Receives one complete JSON document per call, without a trailing newline. */
export interface LogSink {
  write(line: string): void;
}

export interface LoggerOptions {
  /** Lowest level written; default `info`. The caller decides (this module reads no environment). */
  level?: LogLevel;
  /** Default: process.stdout, one line per entry. */
  sink?: LogSink;
  bindings?: Record<string, unknown>;
  clock?: () => Date;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Every level, lowest first. */
export const LOG_LEVELS = Object.keys(LEVELS) as LogLevel[];
// Written by the logger itself; fields or bindings with these names are ignored (as Powertools does).
const RESERVED = new Set(['level', 'time', 'msg']);
const SECRET_KEY =
  /secret|token|password|passwd|authorization|credential|api[-_]?key|private[-_]?key|cookie/i;
/**
 * Credentials recognised in any text, under any field name: signing secrets (`whsec_`), admin
 * tokens (`wha_`), API keys (`whk_`), and the credentials of `Bearer`/`Basic` authorization values.
 */
// Not `\b`: in a URL a credential often follows a percent-escape (`%20whk_…`, `%22whsec_…`), whose
// last hex digit is a word character. Only a letter before it means it is part of another word.
// A credential's `+`, `/` and `=` may come percent-encoded (a query string) or `/` escaped as `\/`
// (some JSON): the redaction runs through them.
const CREDENTIAL =
  /(?<![A-Za-z])(?:whsec|wha|whk)_(?:[A-Za-z0-9+/=_-]|%[0-9A-Fa-f]{2}|\\\/)*|(?<![A-Za-z])(Bearer|Basic)(\s+|%20|\+)(?:[A-Za-z0-9+/=._~-]|%[0-9A-Fa-f]{2}|\\\/){8,}/gi;
const CREDENTIAL_HINT = /whsec_|wha_|whk_|bearer|basic/i;
/** Secret values this process knows (a configured admin token need not look like one). */
const knownSecrets = new Set<string>();
const REDACTED = '[REDACTED]';
const MAX_DEPTH = 12;

const correlation = new AsyncLocalStorage<string>();

const stdoutSink: LogSink = {
  write(line) {
    process.stdout.write(`${line}\n`);
  },
};

/** True when `value` names a log level (for parsing configuration). */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && Object.hasOwn(LEVELS, value);
}

/** Runs fn with a correlation id that every log line written inside it (sync or async) carries. */
export function withCorrelationId<T>(correlationId: string, fn: () => T): T {
  return correlation.run(correlationId, fn);
}

/** The correlation id of the current async context, if any. */
export function currentCorrelationId(): string | undefined {
  return correlation.getStore();
}

/** A JSON-lines logger; cheap to derive children that add bindings. */
export class Logger {
  private readonly level: LogLevel;
  private readonly sink: LogSink;
  private readonly bindings: Record<string, unknown>;
  private readonly clock: () => Date;

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? 'info';
    if (!isLogLevel(this.level)) throw new TypeError(`unknown log level ${String(this.level)}`);
    this.sink = options.sink ?? stdoutSink;
    this.clock = options.clock ?? (() => new Date());
    // Sanitised once here so a secret in bindings can never reach a line.
    this.bindings = sanitize(options.bindings ?? {}, this.level === 'debug', 0, new Set()) as Record<
      string,
      unknown
    >;
  }

  /** A logger writing to the same sink with extra bindings (the child's win on a clash). */
  /** Writes a line another logger produced (a worker thread's) to this logger's sink, unchanged. */
  forward(line: string): void {
    this.sink.write(line);
  }

  child(bindings: Record<string, unknown>): Logger {
    return new Logger({
      level: this.level,
      sink: this.sink,
      clock: this.clock,
      bindings: { ...this.bindings, ...bindings },
    });
  }

  /** True when a line at `level` would be written. */
  isLevelEnabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.level];
  }

  /** Writes a debug line. */
  debug(message: string, fields?: Record<string, unknown>): void {
    this.write('debug', message, fields);
  }

  /** Writes an info line. */
  info(message: string, fields?: Record<string, unknown>): void {
    this.write('info', message, fields);
  }

  /** Writes a warn line. */
  warn(message: string, fields?: Record<string, unknown>): void {
    this.write('warn', message, fields);
  }

  /** Writes an error line. */
  error(message: string, fields?: Record<string, unknown>): void {
    this.write('error', message, fields);
  }

  private write(level: LogLevel, message: string, fields: Record<string, unknown> | undefined): void {
    if (!this.isLevelEnabled(level)) return;
    const entry: Record<string, unknown> = {
      level,
      time: this.clock().toISOString(),
      msg: redactString(String(message)),
    };
    const ambient = correlation.getStore();
    if (ambient !== undefined) entry.correlationId = redactString(ambient);
    const extra = fields === undefined ? {} : sanitize(fields, this.level === 'debug', 0, new Set());
    for (const source of [this.bindings, extra as Record<string, unknown>]) {
      for (const [key, value] of Object.entries(source)) {
        if (!RESERVED.has(key)) entry[key] = value;
      }
    }
    try {
      this.sink.write(JSON.stringify(entry));
    } catch {
      // A broken sink must not turn logging into a failure of the caller's work.
    }
  }
}

/**
 * Replaces secret-looking values (keys matching secret|token|password|authorization|credential|
 * apikey|api_key|cookie, case-insensitive, at any depth) and `whsec_…` strings with "[REDACTED]".
 * Returns a JSON-safe copy: Errors become plain objects, cycles "[Circular]", bigints strings.
 */
export function redact(value: unknown): unknown {
  return sanitize(value, false, 0, new Set());
}

function sanitize(value: unknown, withStack: boolean, depth: number, ancestors: Set<object>): unknown {
  if (typeof value === 'string') return redactString(value);
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (ancestors.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Truncated]';
  ancestors.add(value);
  try {
    const next = (v: unknown) => sanitize(v, withStack, depth + 1, ancestors);
    if (value instanceof Error) return sanitizeObject(serializeError(value, withStack), next);
    if (Array.isArray(value)) return value.map(next);
    if (value instanceof Map) return sanitizeObject(Object.fromEntries(value), next);
    if (value instanceof Set) return [...value].map(next);
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return next(toJSON.call(value));
    return sanitizeObject(value as Record<string, unknown>, next);
  } finally {
    ancestors.delete(value);
  }
}

function sanitizeObject(
  obj: Record<string, unknown>,
  next: (v: unknown) => unknown,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(obj)) {
    out[key] = SECRET_KEY.test(key) && v !== undefined && v !== null ? REDACTED : next(v);
  }
  return out;
}

// Errors keep name, message and code (what an operator searches by); the stack only when debugging.
function serializeError(err: Error, withStack: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { name: err.name, message: err.message };
  const { code, details, errors } = err as { code?: unknown; details?: unknown; errors?: unknown };
  if (code !== undefined) out.code = code;
  if (Array.isArray(details) && details.length > 0) out.details = details;
  if (err instanceof AggregateError && Array.isArray(errors)) out.errors = errors;
  if (withStack && err.stack !== undefined) out.stack = err.stack;
  if (err.cause !== undefined) out.cause = err.cause;
  return out;
}

/**
 * Adds a value to redact wherever it appears in a log line (e.g. the configured admin token, which
 * may be any string). Values shorter than 8 characters are ignored (they would redact ordinary words).
 */
export function registerSecret(value: string): void {
  if (typeof value === 'string' && value.length >= 8) knownSecrets.add(value);
}

function redactString(value: string): string {
  let out = value;
  for (const secret of knownSecrets) if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
  if (!CREDENTIAL_HINT.test(out)) return out;
  return out.replace(CREDENTIAL, (_m, scheme: string | undefined, space: string | undefined) =>
    scheme === undefined ? REDACTED : `${scheme}${space}${REDACTED}`,
  );
}
