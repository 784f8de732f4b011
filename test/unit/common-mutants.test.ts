import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { BackgroundErrors } from '../../src/common/background-errors.ts';
import { withDeadline } from '../../src/common/deadline.ts';
import {
  type DeliveryTask,
  deliveryIdFor,
  parseDeliveryTask,
  serializeDeliveryTask,
} from '../../src/common/delivery-task.ts';
import { validateDeliveryUrl } from '../../src/common/delivery-url.ts';
import type { ErrorDetail } from '../../src/common/errors.ts';
import { Gate } from '../../src/common/gate.ts';
import { positionalRecordId, uuidv7, uuidv7From, uuidv7Time } from '../../src/common/ids.ts';
import { pointerSegments, pointerTo } from '../../src/common/json.ts';
import { setPath } from '../../src/common/json-path.ts';
import type { LogSink } from '../../src/common/log.ts';
import { Logger, redact, registerSecret, withCorrelationId } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import {
  DEFAULT_RETRY_SCHEDULE_SECONDS,
  effectiveRetryPolicy,
  parseRetryPolicy,
  parseTimeouts,
} from '../../src/common/retry.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import { decodeSigningSecret, signWebhook, verifyWebhook } from '../../src/common/signing.ts';
import { TtlCache } from '../../src/common/ttl-cache.ts';

const KEY = Buffer.alloc(32, 7);
const SECRET = `whsec_${KEY.toString('base64')}`;
const BODY = '{"type":"orders.created"}';

/** A base64/base64url text whose last character is replaced by one decoding to the same bytes. */
function nonCanonical(text: string, alphabet: string): string {
  const body = text.replace(/=+$/, '');
  const padding = text.slice(body.length);
  const last = body.at(-1)!;
  const index = alphabet.indexOf(last);
  return `${body.slice(0, -1)}${alphabet[index ^ 1]}${padding}`;
}
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('signing edges', () => {
  it('refuses a secret whose base64 is not canonical (unused trailing bits set)', () => {
    const encoded = nonCanonical(KEY.toString('base64'), B64);
    assert.deepEqual(Buffer.from(encoded, 'base64'), KEY, 'decodes to the same bytes');
    assert.throws(() => decodeSigningSecret(`whsec_${encoded}`), { code: 'secret_invalid' });
  });

  it('answers false, without throwing, for a v1 signature of another length', () => {
    const header = signWebhook({ id: 'msg_1', timestamp: 1700000000, body: BODY, secrets: [SECRET] });
    for (const extra of ['A', 'AAAA', `${header.slice(3)}x`]) {
      assert.equal(
        verifyWebhook({
          id: 'msg_1',
          timestamp: 1700000000,
          now: 1700000000,
          body: BODY,
          signatureHeader: `v1,${header.slice(3)}${extra}`,
          secrets: [SECRET],
        }),
        false,
      );
    }
  });

  it('refuses a timestamp that is not whole seconds even when its signature matches', () => {
    for (const timestamp of [Number.NaN, 1700000000.5]) {
      const sig = createHmac('sha256', KEY).update(`msg_1.${timestamp}.${BODY}`, 'utf8').digest('base64');
      assert.equal(
        verifyWebhook({
          id: 'msg_1',
          timestamp,
          now: 1700000000,
          body: BODY,
          signatureHeader: `v1,${sig}`,
          secrets: [SECRET],
        }),
        false,
        `timestamp ${timestamp}`,
      );
    }
  });

  it('signs timestamp 0 and refuses a negative one', () => {
    const header = signWebhook({ id: 'msg_1', timestamp: 0, body: BODY, secrets: [SECRET] });
    assert.ok(header.startsWith('v1,'));
    assert.throws(() => signWebhook({ id: 'msg_1', timestamp: -1, body: BODY, secrets: [SECRET] }), {
      code: 'webhook_timestamp_invalid',
    });
  });

  it('refuses an id with a space (a header value loses leading/trailing spaces)', () => {
    assert.throws(() => signWebhook({ id: ' msg_1', timestamp: 1, body: BODY, secrets: [SECRET] }), {
      code: 'webhook_id_invalid',
    });
  });
});

describe('log redaction edges', () => {
  it('keeps null and undefined under a secret-looking key (nothing to hide)', () => {
    assert.deepEqual(redact({ password: null, token: undefined }), { password: null, token: undefined });
  });

  it('redacts passwd and private_key / private-key fields', () => {
    assert.deepEqual(redact({ passwd: 'p', private_key: 'k', 'private-key': 'k', privateKey: 'k' }), {
      passwd: '[REDACTED]',
      private_key: '[REDACTED]',
      'private-key': '[REDACTED]',
      privateKey: '[REDACTED]',
    });
  });

  it('leaves ordinary words after Basic/Bearer alone (shorter than a credential)', () => {
    assert.equal(redact('Basic setup done'), 'Basic setup done');
    assert.equal(redact('Bearer auth'), 'Bearer auth');
  });

  it('registers a secret of exactly 8 characters', () => {
    registerSecret('k8-chars');
    assert.equal(redact('value k8-chars here'), 'value [REDACTED] here');
  });

  it('truncates very deep values instead of serialising them whole', () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 20; i++) deep = { next: deep };
    assert.ok(JSON.stringify(redact(deep)).includes('[Truncated]'));
  });

  it('writes an object referenced twice (not a cycle) in full both times', () => {
    const shared = { a: 1 };
    assert.deepEqual(redact({ x: shared, y: shared, list: [shared, shared] }), {
      x: { a: 1 },
      y: { a: 1 },
      list: [{ a: 1 }, { a: 1 }],
    });
  });

  it('writes Maps as objects, Sets as arrays, bigints as strings and Dates via toJSON', () => {
    const at = new Date('2025-01-02T03:04:05.000Z');
    assert.deepEqual(
      redact({
        map: new Map<string, unknown>([
          ['k', 1],
          ['apiKey', 'x'],
        ]),
        set: new Set(['whsec_abc', 'b']),
        big: 12n,
        at,
      }),
      {
        map: { k: 1, apiKey: '[REDACTED]' },
        set: ['[REDACTED]', 'b'],
        big: '12',
        at: '2025-01-02T03:04:05.000Z',
      },
    );
  });

  it('writes a line with a bigint field (rather than losing it)', () => {
    const written: string[] = [];
    const sink: LogSink = { write: (line) => written.push(line) };
    new Logger({ sink }).info('n', { big: 1n });
    assert.equal(written.length, 1);
    assert.equal(JSON.parse(written[0]!).big, '1');
  });

  it('keeps the inner errors of an AggregateError', () => {
    const out = redact(new AggregateError([new Error('first')], 'all failed')) as Record<string, unknown>;
    assert.deepEqual(out.errors, [{ name: 'Error', message: 'first' }]);
  });

  it('redacts a credential in the correlation id', () => {
    const written: string[] = [];
    const sink: LogSink = { write: (line) => written.push(line) };
    const apiKey = `whk_${'C'.repeat(43)}`;
    withCorrelationId(`req-${apiKey}`, () => new Logger({ sink }).info('x'));
    assert.ok(!written[0]!.includes(apiKey), written[0]);
  });
});

describe('SecretBox edges', () => {
  const box = new SecretBox(KEY);

  it('refuses a sealed value whose tag is not canonical base64url, as malformed', () => {
    const parts = box.seal('s').split(':');
    parts[5] = nonCanonical(parts[5]!, B64URL);
    assert.deepEqual(Buffer.from(parts[5], 'base64url').length, 16);
    assert.throws(() => box.open(parts.join(':')), /malformed/);
  });

  it('reports an IV of another length as malformed', () => {
    const parts = box.seal('s').split(':');
    parts[3] = Buffer.alloc(16, 1).toString('base64url');
    assert.throws(() => box.open(parts.join(':')), /malformed/);
  });

  it('keyIdOf answers only for the enc:v1 form with a hex key id', () => {
    const sealed = box.seal('s');
    assert.equal(SecretBox.keyIdOf(sealed), box.keyId);
    assert.equal(SecretBox.keyIdOf(sealed.replace('enc:v1:', 'enc:v2:')), undefined);
    assert.equal(SecretBox.keyIdOf(sealed.replace(`:${box.keyId}:`, ':ZZZZZZZZ:')), undefined);
  });

  it('refuses a base64 key that is not canonical', () => {
    const encoded = nonCanonical(KEY.toString('base64'), B64);
    assert.deepEqual(Buffer.from(encoded, 'base64'), KEY);
    assert.throws(() => SecretBox.fromString(encoded), { name: 'ConfigError' });
  });

  it('accepts a key surrounded by whitespace (a key file ending in a newline)', () => {
    assert.equal(SecretBox.fromString(`  ${KEY.toString('base64')}\n`).keyId, box.keyId);
  });

  it('names KMS when given a KMS-sealed value', () => {
    assert.throws(() => box.open('kms:v1:a:b:c:d:e'), /KMS/);
  });

  it('keeps its own copy of the key', () => {
    const key = Buffer.alloc(32, 3);
    const own = new SecretBox(key);
    const sealed = own.seal('kept');
    key.fill(0);
    assert.equal(own.open(sealed), 'kept');
  });
});

describe('TtlCache', () => {
  function clock() {
    let now = 1000;
    return { now: () => now, advance: (ms: number) => (now += ms) };
  }

  it('serves the cached value until the TTL has passed, then loads again', async () => {
    const c = clock();
    const cache = new TtlCache<string, number>({ ttlMs: 100, now: c.now });
    let loads = 0;
    const load = async () => ++loads;
    assert.equal(await cache.get('a', load), 1);
    c.advance(99);
    assert.equal(await cache.get('a', load), 1);
    c.advance(1);
    assert.equal(await cache.get('a', load), 2, 'expired exactly at ttlMs');
  });

  it('shares one load between concurrent callers and does not cache failures', async () => {
    const cache = new TtlCache<string, number>({ ttlMs: 1000 });
    let loads = 0;
    const releases: Array<(v: number) => void> = [];
    const load = () => {
      loads++;
      return new Promise<number>((resolve) => releases.push(resolve));
    };
    const a = cache.get('k', load);
    const b = cache.get('k', load);
    for (const release of releases) release(7);
    assert.deepEqual(await Promise.all([a, b]), [7, 7]);
    assert.equal(loads, 1);

    const failing = new TtlCache<string, number>({ ttlMs: 1000 });
    await assert.rejects(
      failing.get('k', async () => {
        throw new Error('down');
      }),
      /down/,
    );
    assert.equal(await failing.get('k', async () => 5), 5);
  });

  it('evicts the least recently used entry when full', async () => {
    const cache = new TtlCache<string, string>({ ttlMs: 10_000, maxEntries: 2 });
    let loads = 0;
    const load = (v: string) => async () => {
      loads++;
      return v;
    };
    await cache.get('a', load('a'));
    await cache.get('b', load('b'));
    await cache.get('a', load('a2')); // a is now the most recent
    await cache.get('c', load('c')); // b goes
    assert.equal(loads, 3);
    assert.equal(await cache.get('a', load('a3')), 'a');
    assert.equal(await cache.get('b', load('b2')), 'b2', 'b was evicted');
    assert.equal(loads, 4);
  });

  it('does not store the result of a load started before invalidate', async () => {
    const cache = new TtlCache<string, string>({ ttlMs: 10_000 });
    let release!: (v: string) => void;
    const stale = cache.get('k', () => new Promise<string>((resolve) => (release = resolve)));
    cache.invalidate('k');
    const fresh = cache.get('k', async () => 'fresh');
    release('stale');
    assert.equal(await stale, 'stale');
    assert.equal(await fresh, 'fresh');
    assert.equal(await cache.get('k', async () => 'reload'), 'fresh');
  });

  it('does not let a failed load started before invalidate drop the load that replaced it', async () => {
    const cache = new TtlCache<string, string>({ ttlMs: 10_000 });
    let failOld!: (e: Error) => void;
    const old = cache.get('k', () => new Promise<string>((_, reject) => (failOld = reject)));
    cache.invalidate('k');
    let releaseNew!: (v: string) => void;
    let loads = 0;
    const fresh = cache.get('k', () => {
      loads++;
      return new Promise<string>((resolve) => (releaseNew = resolve));
    });
    failOld(new Error('old'));
    await assert.rejects(old, /old/);
    const joined = cache.get('k', async () => {
      loads++;
      return 'third';
    });
    releaseNew('new');
    assert.deepEqual(await Promise.all([fresh, joined]), ['new', 'new']);
    assert.equal(loads, 1);
  });
});

describe('Gate', () => {
  it('runs at most `limit` tasks at once, the waiting ones in arrival order', async () => {
    const gate = new Gate(2);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const releases: Array<() => void> = [];
    const task = (n: number) => () => {
      started.push(n);
      running++;
      peak = Math.max(peak, running);
      return new Promise<void>((resolve) =>
        releases.push(() => {
          running--;
          resolve();
        }),
      );
    };
    const all = [1, 2, 3, 4, 5].map((n) => gate.run(task(n)));
    await Promise.resolve();
    assert.deepEqual(started, [1, 2]);
    while (releases.length > 0) {
      const settled = started.length;
      releases.shift()!();
      // Wait for the released place to pass on (or for the end).
      for (let i = 0; i < 10 && started.length === settled && settled < 5; i++) await Promise.resolve();
    }
    await Promise.all(all);
    assert.deepEqual(started, [1, 2, 3, 4, 5]);
    assert.equal(peak, 2);
  });

  it('keeps the place taken when it passes to a waiter, so a later arrival still waits', async () => {
    const gate = new Gate(1);
    const releases: Array<() => void> = [];
    const running = new Set<string>();
    let peak = 0;
    const task = (name: string) => () =>
      new Promise<void>((resolve) => {
        running.add(name);
        peak = Math.max(peak, running.size);
        releases.push(() => {
          running.delete(name);
          resolve();
        });
      });
    const a = gate.run(task('a'));
    const b = gate.run(task('b'));
    releases.shift()!();
    await a;
    while (!running.has('b')) await Promise.resolve();
    const c = gate.run(task('c'));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.deepEqual([...running], ['b'], 'c waits for b');
    releases.shift()!();
    await b;
    while (!running.has('c')) await Promise.resolve();
    releases.shift()!();
    await c;
    assert.equal(peak, 1);
  });

  it('frees the place of a failing task', async () => {
    const gate = new Gate(1);
    await assert.rejects(
      gate.run(async () => {
        throw new Error('x');
      }),
      /x/,
    );
    let inside = 0;
    let peak = 0;
    const task = async () => {
      inside++;
      peak = Math.max(peak, inside);
      await Promise.resolve();
      inside--;
    };
    await Promise.all([gate.run(task), gate.run(task), gate.run(task)]);
    assert.equal(peak, 1);
  });
});

describe('withDeadline', () => {
  it('settles with the work and clears its timer', async () => {
    const cleared: unknown[] = [];
    const original = globalThis.clearTimeout;
    globalThis.clearTimeout = ((t: NodeJS.Timeout) => {
      cleared.push(t);
      original(t);
    }) as typeof clearTimeout;
    try {
      assert.equal(await withDeadline(Promise.resolve(3), 60_000, () => new Error('late')), 3);
    } finally {
      globalThis.clearTimeout = original;
    }
    assert.equal(cleared.length, 1);
  });

  it('rejects with late() when the work does not settle', async () => {
    await assert.rejects(
      withDeadline(new Promise<never>(() => {}), 1, () => new Error('too late')),
      /too late/,
    );
  });
});

describe('metrics edges', () => {
  it('drops a series idle for exactly its family expiry', () => {
    let now = 0;
    const registry = new MetricsRegistry({ now: () => now });
    const counter = registry.counter('idle_total', 'Idle.', ['p'], { expireIdleMs: 3_600_000 });
    counter.inc({ p: 'a' });
    now = 3_600_000;
    assert.doesNotMatch(registry.render(), /p="a"/);
  });

  it('refuses labels with an extra or misnamed label even when a series with those values exists', () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter('labelled_total', 'Labelled.', ['a', 'c']);
    counter.inc({ a: 'x', c: 'undefined' });
    assert.throws(() => counter.inc({ a: 'x', c: 'undefined', extra: 'y' } as Record<string, string>), {
      code: 'metric_labels_invalid',
    });
    assert.throws(() => counter.inc({ a: 'x', b: 'y' }), { code: 'metric_labels_invalid' });
    assert.equal(counter.get({ a: 'x', c: 'undefined' }), 1);
  });

  it('refuses a NaN counter increment', () => {
    const counter = new MetricsRegistry().counter('nan_total', 'NaN.');
    assert.throws(() => counter.inc(Number.NaN), { code: 'metric_value_invalid' });
    assert.equal(counter.get(), 0);
  });
});

describe('retry policies', () => {
  it('defaults to one attempt more than the schedule has delays, within 3 days', () => {
    assert.deepEqual(effectiveRetryPolicy(), {
      scheduleSeconds: [...DEFAULT_RETRY_SCHEDULE_SECONDS],
      maxAttempts: DEFAULT_RETRY_SCHEDULE_SECONDS.length + 1,
      maxAgeSeconds: 3 * 86400,
    });
    assert.equal(effectiveRetryPolicy({ scheduleSeconds: [1, 2] }).maxAttempts, 3);
  });

  it('lets a later layer (the subscription) override an earlier one (the partner), field by field', () => {
    assert.deepEqual(
      effectiveRetryPolicy({ maxAttempts: 4, maxAgeSeconds: 60 }, undefined, { maxAttempts: 2 }),
      { scheduleSeconds: [...DEFAULT_RETRY_SCHEDULE_SECONDS], maxAttempts: 2, maxAgeSeconds: 60 },
    );
  });

  function policyProblems(value: unknown): string[] {
    const details: ErrorDetail[] = [];
    parseRetryPolicy(value, 'retry', details);
    return details.map((d) => d.field ?? '');
  }

  it('accepts the bounds of a retry policy and refuses one past them', () => {
    const week = 7 * 86400;
    assert.deepEqual(
      policyProblems({
        scheduleSeconds: [0, week, ...new Array(48).fill(1)],
        maxAttempts: 51,
        maxAgeSeconds: 30 * 86400,
      }),
      [],
    );
    assert.deepEqual(policyProblems({ scheduleSeconds: [week + 1] }), ['retry.scheduleSeconds[0]']);
    assert.deepEqual(policyProblems({ scheduleSeconds: new Array(51).fill(1) }), ['retry.scheduleSeconds']);
    assert.deepEqual(policyProblems({ maxAttempts: 52 }), ['retry.maxAttempts']);
    assert.deepEqual(policyProblems({ maxAttempts: 0 }), ['retry.maxAttempts']);
    assert.deepEqual(policyProblems({ maxAgeSeconds: 30 * 86400 + 1 }), ['retry.maxAgeSeconds']);
  });

  it('accepts timeouts from 1 ms to 120 s and refuses 0', () => {
    const details: ErrorDetail[] = [];
    assert.deepEqual(parseTimeouts({ connectMs: 1, headersMs: 120_000 }, 'timeouts', details), {
      connectMs: 1,
      headersMs: 120_000,
    });
    assert.equal(details.length, 0);
    parseTimeouts({ bodyMs: 0, headersMs: 120_001 }, 'timeouts', details);
    assert.deepEqual(
      details.map((d) => d.field ?? ''),
      ['timeouts.bodyMs', 'timeouts.headersMs'],
    );
  });
});

describe('uuidv7 within one millisecond', () => {
  /** Runs fn with Date.now frozen at `ms` (ahead of any id made so far, so it is a fresh millisecond). */
  function frozenAt<T>(ms: number, fn: () => T): T {
    const original = Date.now;
    Date.now = () => ms;
    try {
      return fn();
    } finally {
      Date.now = original;
    }
  }
  const counterOf = (id: string): number => Number.parseInt(id.slice(15, 18), 16);

  it('stays strictly increasing past the 12-bit counter, borrowing the next millisecond', () => {
    const start = Date.now() + 3_600_000;
    const ids = frozenAt(start, () => Array.from({ length: 6000 }, () => uuidv7()));
    for (let i = 1; i < ids.length; i++) {
      assert.ok(ids[i - 1]! < ids[i]!, `id ${i} (${ids[i]}) does not sort after ${ids[i - 1]}`);
    }
    assert.ok(uuidv7Time(ids.at(-1)!) > start, 'the counter overflowed into the next millisecond');
  });

  it('seeds the counter of a fresh millisecond in its lower half (2048 ids fit before borrowing)', () => {
    const base = Date.now() + 7_200_000;
    for (let i = 0; i < 32; i++) {
      const id = frozenAt(base + i * 10, () => uuidv7());
      assert.equal(uuidv7Time(id), base + i * 10);
      assert.ok(counterOf(id) <= 0x7ff, `counter ${counterOf(id).toString(16)} of ${id}`);
    }
  });
});

describe('record ids', () => {
  it('gives a record without a timestamp (-1, as Kafka may send) the time 0, not the far future', () => {
    assert.equal(uuidv7Time(uuidv7From(-1, 'k')), 0);
    assert.equal(
      uuidv7Time(positionalRecordId('held', { topic: 't', partition: 0, offset: 1, timestamp: -1 })),
      0,
    );
  });

  it('sorts positional ids by offset across bits 24 and 29 of the offset', () => {
    const at = Date.UTC(2026, 11, 7);
    const offsets = [2 ** 24 - 1, 2 ** 24, 2 ** 24 + 1, 2 ** 25, 2 ** 29 - 1, 2 ** 29];
    const ids = offsets.map((offset) =>
      positionalRecordId('held', { topic: 't', partition: 0, offset, timestamp: at }),
    );
    assert.deepEqual([...ids].sort(), ids);
  });
});

describe('delivery tasks', () => {
  const base: DeliveryTask = {
    deliveryId: 'dlv_1',
    subscriptionId: 'sub_1',
    partnerId: 'p_1',
    event: { id: 'e_1', source: 's', type: 't', correlationId: 'c' },
    body: '{"a":1}',
    attempt: 0,
    createdAt: 1,
  };

  it('refuses a task without a numeric attempt or a string event id', () => {
    const text = serializeDeliveryTask(base);
    assert.doesNotThrow(() => parseDeliveryTask(text));
    for (const broken of [
      text.replace('"attempt":0', '"attempt":"0"'),
      text.replace('"id":"e_1"', '"id":1'),
    ]) {
      assert.throws(() => parseDeliveryTask(broken), { code: 'task_invalid' });
    }
  });

  it('places the partition in its own 3 hex digits of the delivery id', () => {
    const id = (partition: number) =>
      deliveryIdFor({ ingestedAt: 1_700_000_000_000, partition, offset: 5 }, 's', 'e', 'sub');
    assert.equal(id(256).slice(12, 15), '100');
    assert.equal(id(4096).slice(12, 15), '000');
  });
});

describe('setPath', () => {
  it('refuses prototype segments itself (not only when a path is parsed)', () => {
    for (const segment of ['__proto__', 'constructor', 'prototype']) {
      assert.throws(() => setPath({}, [segment, 'polluted'], 1), RangeError);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('BackgroundErrors pacing', () => {
  it('logs again exactly a minute after the last line, then waits another minute from there', () => {
    let now = 0;
    const lines: Array<Record<string, unknown>> = [];
    const errors = new BackgroundErrors(
      new Logger({ sink: { write: (line) => lines.push(JSON.parse(line)) } }),
      new MetricsRegistry(),
      () => now,
    );
    errors.report('purge', new Error('a')); // logged
    now = 30_000;
    errors.report('purge', new Error('b')); // counted in failedSinceLastLog
    now = 60_000;
    errors.report('purge', new Error('c')); // logged: a minute since the first line
    now = 61_000;
    errors.report('purge', new Error('d')); // within a minute of the second line
    now = 120_000;
    errors.report('purge', new Error('e')); // logged
    assert.deepEqual(
      lines.map((l) => l.failedSinceLastLog),
      [undefined, 1, 1],
    );
  });
});

describe('JSON pointers', () => {
  it('escapes ~ before / when building a pointer', () => {
    assert.equal(pointerTo('', 'a/b', 'c~d', 0), '/a~1b/c~0d/0');
    assert.equal(pointerTo('/x', '~1'), '/x/~01');
  });

  it('unescapes ~1 before ~0 when reading one (RFC 6901)', () => {
    assert.deepEqual(pointerSegments('/~01/a~1b/c~0d'), ['~1', 'a/b', 'c~d']);
    assert.deepEqual(pointerSegments(pointerTo('', '~1', '/~0')), ['~1', '/~0']);
  });
});

describe('delivery URL edges', () => {
  const resolve = async () => ['93.184.215.14'];
  const strict = { allowInsecure: false, resolve };

  it('accepts a URL of exactly 2048 characters and refuses 2049', async () => {
    const prefix = 'https://partner.example.com/';
    const exact = `${prefix}${'a'.repeat(2048 - prefix.length)}`;
    assert.equal(await validateDeliveryUrl(exact, strict), exact);
    await assert.rejects(validateDeliveryUrl(`${exact}a`, strict), { code: 'url_invalid' });
  });

  it('refuses a password without a user name in the URL', async () => {
    await assert.rejects(validateDeliveryUrl('https://:pass@partner.example.com/', strict), {
      code: 'url_invalid',
    });
  });

  it('names the cloud metadata host as such', async () => {
    await assert.rejects(validateDeliveryUrl('https://metadata.google.internal/x', strict), (err) => {
      assert.equal((err as { code?: string }).code, 'url_forbidden_address');
      assert.match((err as Error).message, /cloud metadata/);
      return true;
    });
  });
});
