/**
 * The dispatcher's retry decisions, as pure functions (no clock, no randomness unless injected):
 * what an attempt's outcome means, how long to wait before the next one, whether one is still
 * allowed, and which retry tier (topic) holds the message meanwhile. Times are epoch milliseconds.
 */
import { WebhooksError } from '../common/errors.ts';
import type { DeliveryResult } from '../common/ports/delivery-client.ts';

export type AttemptClass = 'success' | 'retry' | 'failed' | 'gone';

/** Jitter spreads retries of many deliveries that failed together (a partner outage) over ±20%. */
export const JITTER_RATIO = 0.2;
export const DEFAULT_MIN_RETRY_AFTER_MS = 1000;
export const DEFAULT_MAX_RETRY_AFTER_MS = 3_600_000;

/** 2xx → success; 410 → gone; 408, 429, 5xx, and every network error/timeout → retry; other statuses (1xx/3xx/4xx) → failed. */
export function classifyAttempt(result: DeliveryResult): AttemptClass {
  if (!result.ok) return 'retry'; // nothing reached the partner's application, or we could not tell: try again
  const { status } = result;
  if (status >= 200 && status <= 299) return 'success';
  if (status === 410) return 'gone';
  if (status === 408 || status === 429 || (status >= 500 && status <= 599)) return 'retry';
  return 'failed';
}

const DELTA_SECONDS = /^\s*(\d+)\s*$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
/** Obsolete RFC 850 form: `Sunday, 06-Nov-94 08:49:37 GMT`. */
const RFC850_DATE =
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
/** Obsolete asctime form: `Sun Nov  6 08:49:37 1994`. */
const ASCTIME_DATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

/** Seconds from a Retry-After header value (delta-seconds or HTTP-date relative to now), or undefined when absent/invalid. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const delta = DELTA_SECONDS.exec(value);
  if (delta) return Number(delta[1]);
  const at = parseHttpDate(value.trim(), now);
  if (at === undefined) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000)); // rounded up: never retry before the time asked for
}

/** The three HTTP-date forms RFC 9110 requires recipients to accept; `Date.parse` would accept far more. */
function parseHttpDate(text: string, now: number): number | undefined {
  let m = IMF_FIXDATE.exec(text);
  if (m) return utc(m[3], m[2], m[1], m[4], m[5], m[6]);
  m = RFC850_DATE.exec(text);
  if (m) {
    // Two-digit years: RFC 9110 §5.6.7 reads one more than 50 years ahead as the past century.
    const yy = Number(m[3]);
    const currentYear = new Date(now).getUTCFullYear();
    let year = Math.floor(currentYear / 100) * 100 + yy;
    if (year > currentYear + 50) year -= 100;
    return utc(String(year), m[2], m[1], m[4], m[5], m[6]);
  }
  m = ASCTIME_DATE.exec(text);
  if (m) return utc(m[6], m[1], m[2], m[3], m[4], m[5]);
  return undefined;
}

function utc(...parts: Array<string | undefined>): number | undefined {
  const [year, monthName, day, hour, minute, second] = parts.map((p) => (p ?? '').trim());
  const month = MONTHS.indexOf(monthName ?? '');
  const [y, d, h, mi, s] = [year, day, hour, minute, second].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 0 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return undefined;
  const ms = Date.UTC(y, month, d, h, mi, Math.min(s, 59));
  return new Date(ms).getUTCDate() === d ? ms : undefined; // rejects 31 Feb and the like
}

/** The Retry-After of a 429 or 503 response, in seconds; undefined for any other result. */
export function retryAfterSecondsOf(result: DeliveryResult, now: number): number | undefined {
  if (!result.ok || (result.status !== 429 && result.status !== 503)) return undefined;
  return parseRetryAfter(result.headers['retry-after'], now);
}

/**
 * Delay in ms before attempt `nextAttempt` (2 = first retry) under the schedule (scheduleSeconds[nextAttempt-2]),
 * with ±20% jitter (random() injectable), never below 0; a Retry-After on 429/503 replaces the schedule delay
 * when larger, clamped to [minRetryAfterMs, maxRetryAfterMs] (defaults 1 s and 1 h); beyond the schedule's end the last delay repeats.
 * The caller passes `retryAfterSeconds` only for 429/503 (see `retryAfterSecondsOf`); attempt 1 is immediate (0).
 */
export function nextRetryDelayMs(input: {
  nextAttempt: number;
  scheduleSeconds: readonly number[];
  retryAfterSeconds?: number;
  random?: () => number;
  minRetryAfterMs?: number;
  maxRetryAfterMs?: number;
}): number {
  const { nextAttempt, scheduleSeconds } = input;
  if (!(nextAttempt >= 2) || scheduleSeconds.length === 0) return 0;
  const index = Math.min(Math.floor(nextAttempt) - 2, scheduleSeconds.length - 1);
  const baseMs = Math.max(0, (scheduleSeconds[index] ?? 0) * 1000);
  const random = input.random ?? Math.random;
  const factor = 1 + (random() * 2 - 1) * JITTER_RATIO;
  let delay = Math.max(0, Math.round(baseMs * factor));
  const retryAfter = input.retryAfterSeconds;
  if (retryAfter !== undefined && Number.isFinite(retryAfter) && retryAfter >= 0) {
    const min = input.minRetryAfterMs ?? DEFAULT_MIN_RETRY_AFTER_MS;
    const max = input.maxRetryAfterMs ?? DEFAULT_MAX_RETRY_AFTER_MS;
    // Not jittered: the partner named a time, and the clamp already bounds how long one can stall us.
    const asked = Math.round(Math.min(max, Math.max(min, retryAfter * 1000)));
    if (asked > delay) delay = asked;
  }
  return delay;
}

/** Whether another attempt is allowed: attempts made < maxAttempts and the first attempt is younger than maxAgeSeconds at the time the retry would run. */
export function canRetry(input: {
  attemptsMade: number;
  maxAttempts: number;
  firstAttemptAt: number;
  maxAgeSeconds: number;
  retryAt: number;
}): boolean {
  if (!(input.attemptsMade < input.maxAttempts)) return false;
  return input.retryAt - input.firstAttemptAt < input.maxAgeSeconds * 1000;
}

/**
 * Retry tiers of the bus (delays in ms, ascending): 1 s, 5 s, 1 min, 5 min, 30 min, 2 h, 6 h. The
 * 1 s tier keeps short delays (Retry-After: 2, a short schedule, a busy endpoint) within a second
 * of their time: below the smallest tier a message can wait behind another for up to that tier.
 */
export const RETRY_TIERS_MS: readonly number[] = Object.freeze([
  1_000, 5_000, 60_000, 300_000, 1_800_000, 7_200_000, 21_600_000,
]);

/**
 * The tier a delay goes to: the largest tier ≤ delay (the smallest when delay is below all).
 * A tier never holds a message past its due time: its consumer waits for each message's `notBefore`.
 */
export function retryTierFor(delayMs: number): number {
  let tier = RETRY_TIERS_MS[0] ?? 0;
  for (const t of RETRY_TIERS_MS) if (t <= delayMs) tier = t;
  return tier;
}

/** A message read from a tier this close to its due time is handled at once instead of hopping again (ms). */
export const HOP_TOLERANCE_MS = 100;

/**
 * Where a message that must wait `delayMs` goes, and when: the tier of `retryTierFor`, held there
 * for the tier's own delay — never longer — and due at `dueAt`. Within a tier every message waits
 * the same time, so `notBefore` follows the order of publishing: a tier's consumer, which holds a
 * partition until its first message is due, never keeps a message behind one due later (a 5 h retry
 * ahead of a 2 h retry in the 2 h tier held that one back for 3 h). What is left of a longer delay
 * when the message comes out of the tier is waited in the next tier (a hop, which is not an attempt:
 * 5 h = 2 h + 2 h + 30 min + 30 min). Delays below the smallest tier wait exactly their delay in
 * it, so there a message can wait behind another for at most the smallest tier's delay (1 s).
 */
export function retryPlacement(
  delayMs: number,
  now: number,
): { tierMs: number; notBefore: number; dueAt: number } {
  const delay = Math.max(0, Math.round(delayMs));
  const tierMs = retryTierFor(delay);
  return { tierMs, notBefore: now + Math.min(delay, tierMs), dueAt: now + delay };
}

/** `retry.<stage>.<tier>` with the tier in its largest whole unit, e.g. `retry.dispatcher.5s`, `retry.dispatcher.30m`, `retry.dispatcher.2h`. */
export function retryTopicName(stage: 'dispatcher' | 'processor', tierMs: number): string {
  if (!Number.isSafeInteger(tierMs) || tierMs <= 0) {
    const message = `retry tier must be a positive whole number of milliseconds, got ${tierMs}`;
    throw new WebhooksError('internal', 'retry_tier_invalid', message); // a programming error, never user input
  }
  return `retry.${stage}.${durationLabel(tierMs)}`;
}

function durationLabel(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
