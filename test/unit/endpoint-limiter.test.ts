/** Per-endpoint isolation: concurrency slots, a bounded wait queue, and rate limiting. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BatchControl, ConsumedMessage } from '../../src/common/ports/bus.ts';
import { EndpointLimiter } from '../../src/dispatcher/endpoint-limiter.ts';
import { PartitionPauses } from '../../src/dispatcher/pauses.ts';

describe('EndpointLimiter', () => {
  test('grants up to maxConcurrency at once and queues the next until a release', async () => {
    const limiter = new EndpointLimiter();
    const a = await limiter.acquire('e', { maxConcurrency: 2 });
    const b = await limiter.acquire('e', { maxConcurrency: 2 });
    assert.ok(a.ok && b.ok);
    let third = false;
    const pending = limiter.acquire('e', { maxConcurrency: 2 }).then((r) => {
      third = true;
      return r;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(third, false);
    assert.equal(limiter.load('e').waiting, 1);
    if (a.ok) a.release();
    const c = await pending;
    assert.ok(c.ok);
    assert.equal(limiter.load('e').active, 2);
    assert.equal(limiter.load('e').waiting, 0);
  });

  test('a fast endpoint absorbs a burst in its queue', async () => {
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 2000 });
    await limiter.acquire('fast', { maxConcurrency: 10 });
    for (let i = 0; i < 9; i++) await limiter.acquire('fast', { maxConcurrency: 10 });
    // Latency estimate 50 ms: 300 queued tasks wait about 30 × 50 ms = 1.5 s, under the bound.
    for (let i = 0; i < 300; i++) void limiter.acquire('fast', { maxConcurrency: 10 });
    assert.equal(limiter.load('fast').waiting, 300);
  });

  test('a hanging endpoint is recognised by the age of its requests: new tasks are deferred', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 2000, now: () => now });
    await limiter.acquire('slow', { maxConcurrency: 1 });
    now = 5000; // the request in flight has hung for 5 s
    const res = await limiter.acquire('slow', { maxConcurrency: 1 });
    assert.equal(res.ok, false);
    if (!res.ok) assert.ok(res.retryInMs >= 5000);
  });

  test('a task queued before the endpoint hung is deferred once it has waited the bound', async () => {
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 100 });
    const running = await limiter.acquire('hung', { maxConcurrency: 1 });
    assert.ok(running.ok);
    const started = Date.now();
    const queued = await limiter.acquire('hung', { maxConcurrency: 1 });
    assert.equal(queued.ok, false);
    assert.ok(Date.now() - started >= 90, 'it waited the bound first');
    assert.equal(limiter.load('hung').waiting, 0);
    // The slot still belongs to the request in flight.
    assert.equal(limiter.load('hung').active, 1);
  });

  test('saturated: once 4 × its concurrency wait, or waiting would take too long', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 2000, now: () => now });
    const limits = { maxConcurrency: 2 };
    assert.equal(limiter.saturated('e', limits), false, 'unknown endpoint');
    await limiter.acquire('e', limits);
    await limiter.acquire('e', limits);
    assert.equal(limiter.saturated('e', limits), false, 'busy, nothing waiting');
    for (let i = 0; i < 7; i++) void limiter.acquire('e', limits);
    assert.equal(limiter.saturated('e', limits), false, '7 waiting');
    void limiter.acquire('e', limits);
    assert.equal(limiter.saturated('e', limits), true, '8 waiting = 4 × 2');
    const slow = new EndpointLimiter({ maxQueueWaitMs: 2000, now: () => now });
    await slow.acquire('s', { maxConcurrency: 1 });
    assert.equal(slow.saturated('s', { maxConcurrency: 1 }), false);
    now = 3000; // its request has hung for 3 s
    assert.equal(slow.saturated('s', { maxConcurrency: 1 }), true);
  });

  test('whenDrained calls back once the queue is down to the concurrency', async () => {
    const limiter = new EndpointLimiter();
    const limits = { maxConcurrency: 1 };
    const slots = [await limiter.acquire('e', limits)];
    const waiting = [limiter.acquire('e', limits), limiter.acquire('e', limits)];
    let drained = 0;
    limiter.whenDrained('e', () => drained++);
    assert.equal(drained, 0, 'two waiting, concurrency 1');
    const first = slots[0]!;
    if (first.ok) first.release();
    assert.equal(drained, 1, 'one waiting now');
    const second = await waiting[0]!;
    if (second.ok) second.release();
    assert.equal(drained, 1, 'called once');
    limiter.whenDrained('e', () => drained++);
    assert.equal(drained, 2, 'at once when already drained');
    const third = await waiting[1]!;
    if (third.ok) third.release();
  });

  test('a hanging endpoint is not drained, however short its queue, until its requests end', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 2000, now: () => now });
    const limits = { maxConcurrency: 1 };
    const slot = await limiter.acquire('hung', limits);
    now = 3000; // hanging for 3 s, nothing queued
    let drained = 0;
    limiter.whenDrained('hung', () => drained++);
    assert.equal(drained, 0, 'saturated: waiting would take too long');
    if (slot.ok) slot.release(3000);
    assert.equal(drained, 1, 'its request ended: drained');
  });

  test('idle endpoints are forgotten after ten minutes', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ now: () => now });
    const slot = await limiter.acquire('old', { maxConcurrency: 1 });
    if (slot.ok) slot.release();
    const busy = await limiter.acquire('busy', { maxConcurrency: 1 });
    assert.equal(limiter.size, 2);
    now = 11 * 60_000;
    await limiter.acquire('new', { maxConcurrency: 1 });
    assert.equal(limiter.size, 2, 'the idle one is forgotten; the one with a request in flight is kept');
    assert.equal(limiter.load('old').active, 0);
    if (busy.ok) busy.release();
  });

  test('the latency estimate follows the measured request durations', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ now: () => now });
    for (let i = 0; i < 20; i++) {
      const slot = await limiter.acquire('e', { maxConcurrency: 1 });
      now += 1000;
      if (slot.ok) slot.release();
    }
    assert.ok(limiter.load('e').latencyMs > 900);
  });

  test('endpoints are independent: a saturated one does not block another', async () => {
    const limiter = new EndpointLimiter();
    await limiter.acquire('slow', { maxConcurrency: 1 });
    void limiter.acquire('slow', { maxConcurrency: 1 });
    const other = await limiter.acquire('fast', { maxConcurrency: 1 });
    assert.ok(other.ok);
  });

  test('a rate limit defers when the next token is further away than the wait bound', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ maxRateWaitMs: 100, now: () => now });
    const first = await limiter.acquire('r', { maxConcurrency: 10, ratePerSecond: 1 });
    assert.ok(first.ok);
    const second = await limiter.acquire('r', { maxConcurrency: 10, ratePerSecond: 1 });
    assert.equal(second.ok, false);
    if (!second.ok) assert.ok(second.retryInMs > 100 && second.retryInMs <= 1000);
    now = 1000;
    const third = await limiter.acquire('r', { maxConcurrency: 10, ratePerSecond: 1 });
    assert.ok(third.ok, 'a token is back after a second');
  });
  test('tasks deferred for the rate limit are spread out at the rate, not all sent back for the next token', async () => {
    const now = 0;
    const limiter = new EndpointLimiter({ maxRateWaitMs: 0, now: () => now });
    const limits = { maxConcurrency: 10, ratePerSecond: 10 };
    for (let i = 0; i < 10; i++) assert.ok((await limiter.acquire('r', limits)).ok, 'the bucket holds 10');
    const back: number[] = [];
    for (let i = 0; i < 5; i++) {
      const deferred = await limiter.acquire('r', limits);
      assert.equal(deferred.ok, false);
      if (!deferred.ok) back.push(deferred.retryInMs);
    }
    // The next token is 100 ms away; each task deferred after the first comes back one token later.
    assert.deepEqual(back, [100, 200, 300, 400, 500]);
  });

  test('a rate-limited endpoint whose next token is further away than the wait bound is saturated until a token is near', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ maxRateWaitMs: 50, now: () => now });
    const limits = { maxConcurrency: 10, ratePerSecond: 20 };
    // The bucket's 20 tokens, then one more waited for (50 ms, the bound).
    for (let i = 0; i < 21; i++) {
      const slot = await limiter.acquire('r', limits);
      assert.ok(slot.ok);
      slot.release(1);
    }
    assert.equal(limiter.saturated('r', limits), true, 'the next token is 100 ms away');
    // No request is running or waiting: only the refilling bucket can end the saturation.
    const drained = new Promise<void>((resolve) => limiter.whenDrained('r', resolve));
    now = 1_000;
    await drained;
    assert.equal(limiter.saturated('r', limits), false);
  });

  test('a token taken is given back when the task is deferred for concurrency after all', async () => {
    let now = 0;
    const limiter = new EndpointLimiter({ maxRateWaitMs: 0, maxQueueWaitMs: 10, now: () => now });
    const limits = { maxConcurrency: 1, ratePerSecond: 2 };
    const running = await limiter.acquire('r', limits);
    assert.ok(running.ok);
    now = 2_000; // the one running hangs: new tasks are deferred for concurrency
    assert.equal((await limiter.acquire('r', limits)).ok, false);
    assert.equal((await limiter.acquire('r', limits)).ok, false);
    running.release(5);
    // Two tokens in the bucket (it holds two), none spent on the two deferrals.
    assert.ok((await limiter.acquire('r', limits)).ok);
    now += 1;
    const second = await limiter.acquire('r', { maxConcurrency: 5, ratePerSecond: 2 });
    assert.ok(second.ok, 'the second token is still there');
  });

  test('a wait for a slot ends by the caller’s own deadline when it is sooner than the queue bound', async () => {
    // The queue bound is ten minutes: were the caller's deadline ignored, this would wait that long
    // (and the test time out) instead of answering "not now" once its 100 ms are up.
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 600_000 });
    const running = await limiter.acquire('e', { maxConcurrency: 1 });
    assert.ok(running.ok);
    const waited = await limiter.acquire('e', { maxConcurrency: 1 }, Date.now() + 100);
    assert.equal(waited.ok, false);
    if (running.ok) running.release();
  });

  test('a task that waited for a slot and was evicted gives its rate token back', async () => {
    const limiter = new EndpointLimiter({ maxQueueWaitMs: 200, maxRateWaitMs: 0 });
    const limits = { maxConcurrency: 1, ratePerSecond: 2 };
    const running = await limiter.acquire('r', limits); // token 1 of 2
    assert.ok(running.ok);
    const evicted = await limiter.acquire('r', limits); // takes token 2, queues, evicted after 200 ms
    assert.equal(evicted.ok, false);
    if (running.ok) running.release(5);
    // ~0.4 tokens refilled in 200 ms: only the token given back lets this one go at once.
    const next = await limiter.acquire('r', limits);
    assert.ok(next.ok, 'the evicted task’s token was given back');
  });
});

describe('PartitionPauses: an egress partition paused for saturated endpoints', () => {
  /** Two endpoints of one partition pause it; `drained(e)` says endpoint e drained. */
  function setup() {
    const drained = new Map<string, () => void>();
    const limiter = {
      whenDrained: (endpoint: string, cb: () => void) => drained.set(endpoint, cb),
    } as unknown as EndpointLimiter;
    const resumed: ConsumedMessage[] = [];
    const control = {
      done: () => {},
      pause: () => {},
      resume: (m: ConsumedMessage) => resumed.push(m),
    } as BatchControl;
    const message = { topic: 'egress.acme.orders.created', partition: 0, offset: 7 } as ConsumedMessage;
    const pauses = new PartitionPauses(limiter);
    pauses.pauseFor('https://a.example/hooks', message, control);
    pauses.pauseFor('https://b.example/hooks', message, control);
    return { drained: (e: string) => drained.get(`https://${e}.example/hooks`)!(), resumed };
  }

  test('resumes when the last endpoint holding it drains, not before', () => {
    const { drained, resumed } = setup();
    drained('a');
    assert.equal(resumed.length, 0, 'b still holds it');
    drained('b');
    assert.equal(resumed.length, 1);
  });

  test('an endpoint whose pause ran out without draining holds it no longer: the next drain resumes it', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const { drained, resumed } = setup();
    // b's pause (30 s) ran out; the consumer fetched again meanwhile, and b never drained.
    t.mock.timers.tick(30_001);
    drained('a');
    assert.equal(resumed.length, 1);
  });
});
