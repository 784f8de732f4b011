/**
 * Retry policies: the default schedule (Svix's), validation of per-partner and per-subscription
 * overrides, and merging them. The retry math of the dispatcher builds on these.
 */
import type { ErrorDetail } from './errors.ts';
import type { InputReader } from './input.ts';
import { isJsonObject } from './json.ts';
import type { DeliveryTimeouts, PartnerDeliverySettings, RetryPolicy } from './model.ts';

/** Delay before each attempt after the first, in seconds: immediately, 5s, 5m, 30m, 2h, 5h, 10h, 10h. */
export const DEFAULT_RETRY_SCHEDULE_SECONDS: readonly number[] = [5, 300, 1800, 7200, 18000, 36000, 36000];
export const DEFAULT_TIMEOUTS: Required<DeliveryTimeouts> = {
  connectMs: 5000,
  headersMs: 15000,
  bodyMs: 15000,
};

const MAX_DELAY_SECONDS = 7 * 86400;
const MAX_TIMEOUT_MS = 120_000;

/** Reads a retry policy object, reporting problems under `field`. */
export function parseRetryPolicy(
  value: unknown,
  field: string,
  details: ErrorDetail[],
): RetryPolicy | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value)) {
    details.push({ field, message: 'must be a JSON object', code: 'type' });
    return undefined;
  }
  const policy: RetryPolicy = {};
  for (const key of Object.keys(value)) {
    if (!['scheduleSeconds', 'maxAttempts', 'maxAgeSeconds'].includes(key)) {
      details.push({ field: `${field}.${key}`, message: `unknown field \`${key}\``, code: 'unknown_field' });
    }
  }
  const schedule = value.scheduleSeconds;
  if (schedule !== undefined) {
    if (!Array.isArray(schedule) || schedule.length === 0 || schedule.length > 50) {
      details.push({
        field: `${field}.scheduleSeconds`,
        message: 'must be an array of 1 to 50 delays in seconds',
      });
    } else {
      schedule.forEach((d, i) => {
        if (typeof d !== 'number' || !Number.isFinite(d) || d < 0 || d > MAX_DELAY_SECONDS) {
          details.push({
            field: `${field}.scheduleSeconds[${i}]`,
            message: `must be a number of seconds from 0 to ${MAX_DELAY_SECONDS}`,
          });
        }
      });
      policy.scheduleSeconds = schedule as number[];
    }
  }
  const maxAttempts = value.maxAttempts;
  if (maxAttempts !== undefined) {
    if (!Number.isInteger(maxAttempts) || (maxAttempts as number) < 1 || (maxAttempts as number) > 51) {
      details.push({ field: `${field}.maxAttempts`, message: 'must be an integer from 1 to 51' });
    } else policy.maxAttempts = maxAttempts as number;
  }
  const maxAge = value.maxAgeSeconds;
  if (maxAge !== undefined) {
    if (!Number.isInteger(maxAge) || (maxAge as number) < 1 || (maxAge as number) > 30 * 86400) {
      details.push({
        field: `${field}.maxAgeSeconds`,
        message: 'must be an integer from 1 to 2592000 (30 days)',
      });
    } else policy.maxAgeSeconds = maxAge as number;
  }
  return policy;
}

/** Reads delivery timeouts (milliseconds), reporting problems under `field`. */
export function parseTimeouts(
  value: unknown,
  field: string,
  details: ErrorDetail[],
): DeliveryTimeouts | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value)) {
    details.push({ field, message: 'must be a JSON object', code: 'type' });
    return undefined;
  }
  const timeouts: DeliveryTimeouts = {};
  for (const [key, v] of Object.entries(value)) {
    if (key !== 'connectMs' && key !== 'headersMs' && key !== 'bodyMs') {
      details.push({ field: `${field}.${key}`, message: `unknown field \`${key}\``, code: 'unknown_field' });
    } else if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > MAX_TIMEOUT_MS) {
      details.push({
        field: `${field}.${key}`,
        message: `must be an integer number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`,
      });
    } else timeouts[key] = v as number;
  }
  return timeouts;
}

/** The effective policy: subscription overrides partner overrides defaults, field by field. */
export function effectiveRetryPolicy(...layers: Array<RetryPolicy | undefined>): Required<RetryPolicy> {
  const merged: RetryPolicy = {};
  for (const layer of layers) if (layer) Object.assign(merged, layer);
  const schedule = merged.scheduleSeconds ?? [...DEFAULT_RETRY_SCHEDULE_SECONDS];
  return {
    scheduleSeconds: schedule,
    maxAttempts: merged.maxAttempts ?? schedule.length + 1,
    maxAgeSeconds: merged.maxAgeSeconds ?? 3 * 86400,
  };
}

/**
 * Reads a partner's `delivery` settings (timeouts, retry policy, per-endpoint concurrency and rate
 * limit); `strict` refuses unknown fields (the admin API), otherwise they are ignored (answers of an
 * external Partner Info API). Undefined when absent.
 */
export function readDeliverySettings(
  input: InputReader,
  strict: boolean,
): PartnerDeliverySettings | undefined {
  const reader = input.nested(
    'delivery',
    strict ? ['timeouts', 'retry', 'maxConcurrency', 'rateLimitPerSecond'] : [],
  );
  if (!reader) return undefined;
  const settings: PartnerDeliverySettings = {};
  const timeouts = parseTimeouts(reader.raw('timeouts'), reader.field('timeouts'), reader.details);
  if (timeouts) settings.timeouts = timeouts;
  const retry = parseRetryPolicy(reader.raw('retry'), reader.field('retry'), reader.details);
  if (retry) settings.retry = retry;
  const maxConcurrency = reader.integer('maxConcurrency', { min: 1, max: 1000 });
  if (maxConcurrency !== undefined) settings.maxConcurrency = maxConcurrency;
  const rate = reader.integer('rateLimitPerSecond', { min: 1, max: 100_000 });
  if (rate !== undefined) settings.rateLimitPerSecond = rate;
  return settings;
}
