/** The dispatcher's pure retry decisions: outcome classes, Retry-After, delays, limits and tiers. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WebhooksError } from '../../src/common/errors.ts';
import type { DeliveryErrorKind, DeliveryResult } from '../../src/common/ports/delivery-client.ts';
import { DEFAULT_RETRY_SCHEDULE_SECONDS } from '../../src/common/retry.ts';
import {
  canRetry,
  classifyAttempt,
  nextRetryDelayMs,
  parseRetryAfter,
  RETRY_TIERS_MS,
  retryAfterSecondsOf,
  retryPlacement,
  retryTierFor,
  retryTopicName,
} from '../../src/dispatcher/retry-math.ts';

const NOW = Date.parse('2025-03-10T12:00:00.000Z');
const MIDDLE = (): number => 0.5; // no jitter

function response(status: number, headers: Record<string, string> = {}): DeliveryResult {
  return { ok: true, status, headers, body: '', latencyMs: 12 };
}

function networkError(kind: DeliveryErrorKind): DeliveryResult {
  return { ok: false, kind, message: 'boom', latencyMs: 12 };
}

describe('classifyAttempt', () => {
  const expected: Array<[number, string]> = [
    [100, 'failed'],
    [199, 'failed'],
    [200, 'success'],
    [201, 'success'],
    [202, 'success'],
    [204, 'success'],
    [299, 'success'],
    [300, 'failed'],
    [301, 'failed'],
    [302, 'failed'],
    [304, 'failed'],
    [307, 'failed'],
    [400, 'failed'],
    [401, 'failed'],
    [403, 'failed'],
    [404, 'failed'],
    [405, 'failed'],
    [408, 'retry'],
    [409, 'failed'],
    [410, 'gone'],
    [413, 'failed'],
    [422, 'failed'],
    [429, 'retry'],
    [499, 'failed'],
    [500, 'retry'],
    [502, 'retry'],
    [503, 'retry'],
    [504, 'retry'],
    [599, 'retry'],
    [600, 'failed'],
  ];
  for (const [status, outcome] of expected) {
    test(`status ${status} → ${outcome}`, () => {
      assert.equal(classifyAttempt(response(status)), outcome);
    });
  }

  for (const kind of ['timeout', 'dns', 'connect', 'tls', 'forbidden_address', 'network'] as const) {
    test(`a ${kind} error → retry`, () => {
      assert.equal(classifyAttempt(networkError(kind)), 'retry');
    });
  }
});

describe('parseRetryAfter', () => {
  test('reads delta-seconds', () => {
    assert.equal(parseRetryAfter('120', NOW), 120);
    assert.equal(parseRetryAfter('0', NOW), 0);
    assert.equal(parseRetryAfter(' 30 ', NOW), 30);
  });

  test('reads an IMF-fixdate as seconds from now', () => {
    assert.equal(parseRetryAfter('Mon, 10 Mar 2025 12:01:30 GMT', NOW), 90);
  });

  test('reads the obsolete RFC 850 and asctime date forms', () => {
    assert.equal(parseRetryAfter('Monday, 10-Mar-25 12:02:00 GMT', NOW), 120);
    assert.equal(parseRetryAfter('Mon Mar 10 12:00:45 2025', NOW), 45);
    assert.equal(parseRetryAfter('Sat Mar  1 12:00:00 2025', NOW), 0);
  });

  test('rounds a date up to the next whole second, so the retry is never early', () => {
    assert.equal(parseRetryAfter('Mon, 10 Mar 2025 12:00:10 GMT', NOW - 500), 11);
  });

  test('gives 0 for a date in the past', () => {
    assert.equal(parseRetryAfter('Sun, 09 Mar 2025 12:00:00 GMT', NOW), 0);
  });

  test('gives undefined when absent or invalid', () => {
    for (const value of [
      undefined,
      '',
      'soon',
      '-5',
      '1.5',
      '1e3',
      '2025-03-10T12:01:00Z',
      'Mon, 10 Mar 2025 12:01:30 UTC',
      'Mon, 31 Feb 2025 12:01:30 GMT',
      'Mon, 10 Foo 2025 12:01:30 GMT',
      'Mon, 10 Mar 2025 25:01:30 GMT',
    ]) {
      assert.equal(parseRetryAfter(value, NOW), undefined, `value ${JSON.stringify(value)}`);
    }
  });
});

describe('retryAfterSecondsOf', () => {
  test('reads Retry-After of a 429 and of a 503', () => {
    assert.equal(retryAfterSecondsOf(response(429, { 'retry-after': '7' }), NOW), 7);
    assert.equal(retryAfterSecondsOf(response(503, { 'retry-after': '8' }), NOW), 8);
  });

  test('ignores Retry-After on other statuses and on network errors', () => {
    assert.equal(retryAfterSecondsOf(response(500, { 'retry-after': '7' }), NOW), undefined);
    assert.equal(retryAfterSecondsOf(response(301, { 'retry-after': '7' }), NOW), undefined);
    assert.equal(retryAfterSecondsOf(networkError('timeout'), NOW), undefined);
  });

  test('is undefined when a 429 has no Retry-After', () => {
    assert.equal(retryAfterSecondsOf(response(429), NOW), undefined);
  });
});

describe('nextRetryDelayMs', () => {
  const schedule = [5, 300, 1800];

  test('takes the delay of the first retry from the first schedule entry', () => {
    assert.equal(nextRetryDelayMs({ nextAttempt: 2, scheduleSeconds: schedule, random: MIDDLE }), 5000);
  });

  test('takes each later retry from the next entry', () => {
    assert.equal(nextRetryDelayMs({ nextAttempt: 3, scheduleSeconds: schedule, random: MIDDLE }), 300_000);
    assert.equal(nextRetryDelayMs({ nextAttempt: 4, scheduleSeconds: schedule, random: MIDDLE }), 1_800_000);
  });

  test('repeats the last delay beyond the end of the schedule', () => {
    assert.equal(nextRetryDelayMs({ nextAttempt: 5, scheduleSeconds: schedule, random: MIDDLE }), 1_800_000);
    assert.equal(nextRetryDelayMs({ nextAttempt: 50, scheduleSeconds: schedule, random: MIDDLE }), 1_800_000);
  });

  test('follows the default schedule: 5s, 5m, 30m, 2h, 5h, 10h, 10h', () => {
    const delays = [2, 3, 4, 5, 6, 7, 8].map((nextAttempt) =>
      nextRetryDelayMs({ nextAttempt, scheduleSeconds: DEFAULT_RETRY_SCHEDULE_SECONDS, random: MIDDLE }),
    );
    assert.deepEqual(delays, [5e3, 3e5, 18e5, 72e5, 18e6, 36e6, 36e6]);
  });

  test('jitters by at most ±20%', () => {
    const at = (r: number): number =>
      nextRetryDelayMs({ nextAttempt: 3, scheduleSeconds: schedule, random: () => r });
    assert.equal(at(0), 240_000);
    assert.equal(at(0.75), 330_000);
    assert.ok(at(0.999_999) <= 360_000 && at(0.999_999) > 359_999);
    for (let i = 0; i < 1000; i++) {
      const d = nextRetryDelayMs({ nextAttempt: 3, scheduleSeconds: schedule });
      assert.ok(d >= 240_000 && d <= 360_000, `delay ${d}`);
    }
  });

  test('makes the first attempt immediate', () => {
    assert.equal(nextRetryDelayMs({ nextAttempt: 1, scheduleSeconds: schedule, random: MIDDLE }), 0);
  });

  test('is never below 0, whatever the schedule', () => {
    assert.equal(nextRetryDelayMs({ nextAttempt: 2, scheduleSeconds: [0], random: () => 0 }), 0);
    assert.equal(nextRetryDelayMs({ nextAttempt: 2, scheduleSeconds: [-10], random: () => 0 }), 0);
    assert.equal(nextRetryDelayMs({ nextAttempt: 2, scheduleSeconds: [], random: MIDDLE }), 0);
  });

  test('uses a Retry-After larger than the scheduled delay', () => {
    const delay = nextRetryDelayMs({
      nextAttempt: 2,
      scheduleSeconds: schedule,
      retryAfterSeconds: 60,
      random: MIDDLE,
    });
    assert.equal(delay, 60_000);
  });

  test('keeps the scheduled delay when Retry-After is smaller', () => {
    const delay = nextRetryDelayMs({
      nextAttempt: 3,
      scheduleSeconds: schedule,
      retryAfterSeconds: 60,
      random: MIDDLE,
    });
    assert.equal(delay, 300_000);
  });

  test('caps Retry-After at maxRetryAfterMs (1 h by default)', () => {
    const input = { nextAttempt: 2, scheduleSeconds: schedule, retryAfterSeconds: 86_400, random: MIDDLE };
    assert.equal(nextRetryDelayMs(input), 3_600_000);
    assert.equal(nextRetryDelayMs({ ...input, maxRetryAfterMs: 600_000 }), 600_000);
  });

  test('raises Retry-After to minRetryAfterMs (1 s by default)', () => {
    const input = { nextAttempt: 2, scheduleSeconds: [0], retryAfterSeconds: 0, random: MIDDLE };
    assert.equal(nextRetryDelayMs(input), 1000);
    assert.equal(nextRetryDelayMs({ ...input, minRetryAfterMs: 2500 }), 2500);
  });

  test('ignores a negative or non-finite Retry-After', () => {
    for (const retryAfterSeconds of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const delay = nextRetryDelayMs({
        nextAttempt: 2,
        scheduleSeconds: schedule,
        retryAfterSeconds,
        random: MIDDLE,
      });
      assert.equal(delay, 5000, `retryAfterSeconds ${retryAfterSeconds}`);
    }
  });
});

describe('canRetry', () => {
  const base = {
    attemptsMade: 3,
    maxAttempts: 8,
    firstAttemptAt: NOW,
    maxAgeSeconds: 3600,
    retryAt: NOW + 60_000,
  };

  test('allows a retry with attempts left, within the maximum age', () => {
    assert.equal(canRetry(base), true);
  });

  test('refuses once maxAttempts attempts were made', () => {
    assert.equal(canRetry({ ...base, attemptsMade: 7 }), true);
    assert.equal(canRetry({ ...base, attemptsMade: 8 }), false);
    assert.equal(canRetry({ ...base, attemptsMade: 9 }), false);
  });

  test('refuses a retry that would run when the first attempt is maxAgeSeconds old or older', () => {
    assert.equal(canRetry({ ...base, retryAt: NOW + 3_599_999 }), true);
    assert.equal(canRetry({ ...base, retryAt: NOW + 3_600_000 }), false);
    assert.equal(canRetry({ ...base, retryAt: NOW + 7_200_000 }), false);
  });
});

describe('retry tiers', () => {
  test('are 1 s, 5 s, 1 min, 5 min, 30 min, 2 h and 6 h', () => {
    assert.deepEqual(RETRY_TIERS_MS, [1_000, 5_000, 60_000, 300_000, 1_800_000, 7_200_000, 21_600_000]);
  });

  test('a delay goes to the largest tier not above it', () => {
    assert.equal(retryTierFor(5_000), 5_000);
    assert.equal(retryTierFor(59_999), 5_000);
    assert.equal(retryTierFor(60_000), 60_000);
    assert.equal(retryTierFor(299_000), 60_000);
    assert.equal(retryTierFor(1_800_000), 1_800_000);
    assert.equal(retryTierFor(18_000_000), 7_200_000);
    assert.equal(retryTierFor(36_000_000), 21_600_000);
  });

  test('a delay below every tier goes to the smallest', () => {
    assert.equal(retryTierFor(0), 1_000);
    assert.equal(retryTierFor(999), 1_000);
    assert.equal(retryTierFor(1_000), 1_000);
    assert.equal(retryTierFor(4_999), 1_000);
  });

  test("a message waits in its tier for the tier's own delay at most, and is due at the whole delay", () => {
    assert.deepEqual(retryPlacement(5 * 3_600_000, NOW), {
      tierMs: 7_200_000,
      notBefore: NOW + 7_200_000,
      dueAt: NOW + 5 * 3_600_000,
    });
    assert.deepEqual(retryPlacement(60_000, NOW), {
      tierMs: 60_000,
      notBefore: NOW + 60_000,
      dueAt: NOW + 60_000,
    });
    // Below the smallest tier: exactly the delay.
    assert.deepEqual(retryPlacement(400, NOW), { tierMs: 1_000, notBefore: NOW + 400, dueAt: NOW + 400 });
    // Between tiers: the smaller one's delay, then what is left.
    assert.deepEqual(retryPlacement(2_500, NOW), {
      tierMs: 1_000,
      notBefore: NOW + 1_000,
      dueAt: NOW + 2_500,
    });
  });

  test('within a tier notBefore follows the publish order, whatever the delays (no message waits behind a later-due one)', () => {
    // Delays of the default schedule with jitter, and Retry-After values, published one ms apart.
    const delays = [5 * 3_600_000, 2 * 3_600_000, 3 * 3_600_000, 7_500_000, 2.4 * 3_600_000, 7_200_000];
    const placed = delays.map((d, i) => retryPlacement(d, NOW + i));
    assert.ok(placed.every((p) => p.tierMs === 7_200_000));
    const notBefores = placed.map((p) => p.notBefore);
    assert.deepEqual(
      notBefores,
      [...notBefores].sort((a, b) => a - b),
    );
  });

  test('hops through the tiers add up to the delay', () => {
    for (const delay of [5 * 3_600_000, 10 * 3_600_000, 61_000, 7_000, 3_000]) {
      let now = NOW;
      const due = NOW + delay;
      let hops = 0;
      for (;;) {
        const { notBefore, dueAt } = retryPlacement(due - now, now);
        assert.equal(dueAt, due);
        now = notBefore;
        hops += 1;
        if (due - now <= 0) break;
      }
      assert.equal(now, due, `delay ${delay}`);
      assert.ok(hops <= 8, `delay ${delay} took ${hops} hops`);
    }
  });

  test('topic names carry the stage and the tier in its largest whole unit', () => {
    assert.deepEqual(
      RETRY_TIERS_MS.map((tier) => retryTopicName('dispatcher', tier)),
      [
        'retry.dispatcher.1s',
        'retry.dispatcher.5s',
        'retry.dispatcher.1m',
        'retry.dispatcher.5m',
        'retry.dispatcher.30m',
        'retry.dispatcher.2h',
        'retry.dispatcher.6h',
      ],
    );
    assert.equal(retryTopicName('processor', 30_000), 'retry.processor.30s');
    assert.equal(retryTopicName('processor', 1_500), 'retry.processor.1500ms');
  });

  test('a tier that is not a positive whole number of milliseconds is a programming error', () => {
    for (const tier of [0, -5_000, 1.5, Number.NaN]) {
      assert.throws(() => retryTopicName('dispatcher', tier), WebhooksError, `tier ${tier}`);
    }
  });
});
