/**
 * The pipeline end to end over real sockets: ingest → embedded log → processor → egress topic →
 * dispatcher → a real HTTPS receiver (TLS 1.3) that verifies every request with `standardwebhooks`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { webhookIdFor } from '../../src/common/delivery-task.ts';
import {
  orderEvent,
  publish,
  startPipelineServer,
  subscribe,
  waitForDeliveries,
} from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import type { TestServer } from '../support/server.ts';

describe('pipeline end to end (embedded engine)', () => {
  let server: TestServer;
  const receivers: TestReceiver[] = [];
  const receiver = async (options: Parameters<typeof startReceiver>[0] = {}) => {
    const r = await startReceiver(options);
    receivers.push(r);
    return r;
  };
  before(async () => {
    server = await startPipelineServer();
  });
  after(async () => {
    await server.stop();
    await Promise.all(receivers.map((r) => r.close()));
  });

  test('an event reaches the partner over TLS 1.3, signed so that standardwebhooks verifies it', async () => {
    const r = await receiver();
    const { subscriptionId } = await subscribe(server, r);
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const event = orderEvent({ amount: 10 }, { traceparent, correlationid: 'corr-1' });
    await publish(server, event);
    const [got] = await r.waitFor(1);
    assert.equal(got!.verified, true, got!.verifyError);
    assert.deepEqual(got!.json, event.data);
    assert.equal(got!.headers.traceparent, traceparent, 'the W3C trace context travels to the partner');
    assert.match(got!.headers['webhook-id'] ?? '', /^msg_[0-9a-f]{32}$/);
    const [delivery] = await waitForDeliveries(
      server,
      `subscriptionId=${subscriptionId}`,
      (d) => d[0]?.status === 'SUCCESS',
    );
    assert.equal(delivery.eventId, event.id);
    assert.equal(delivery.attempts, 1);
    assert.equal(delivery.attemptLog[0].statusCode, 204);
    assert.equal(delivery.correlationId, 'corr-1');
  });

  test('a TLS 1.2-only receiver is refused with a clear attempt error', async () => {
    const r = await receiver({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    const { subscriptionId } = await subscribe(server, r, { retry: { maxAttempts: 1 } });
    await publish(server, orderEvent());
    const [delivery] = await waitForDeliveries(
      server,
      `subscriptionId=${subscriptionId}`,
      (d) => d[0]?.status === 'FAILED',
    );
    assert.equal(r.received.length, 0, 'nothing was sent over TLS 1.2');
    assert.match(delivery.attemptLog[0].error, /TLS/);
    assert.match(delivery.attemptLog[0].error, /1\.3/);
  });

  test('500 then 200: the delivery is retried with the same webhook-id and succeeds', async () => {
    const r = await receiver({ answer: (n) => ({ status: n === 0 ? 500 : 200 }) });
    const { subscriptionId } = await subscribe(server, r, { retry: { scheduleSeconds: [1] } });
    await publish(server, orderEvent());
    const [delivery] = await waitForDeliveries(
      server,
      `subscriptionId=${subscriptionId}`,
      (d) => d[0]?.status === 'SUCCESS',
    );
    assert.equal(delivery.attempts, 2);
    assert.deepEqual(
      delivery.attemptLog.map((a: any) => a.statusCode),
      [500, 200],
    );
    assert.equal(r.received[0]!.headers['webhook-id'], r.received[1]!.headers['webhook-id']);
    assert.ok(r.received.every((d) => d.verified));
  });

  test('a 400 is not retried: FAILED and in the DLQ with the reason', async () => {
    const r = await receiver({ answer: () => ({ status: 400 }) });
    const { subscriptionId } = await subscribe(server, r);
    await publish(server, orderEvent());
    const [delivery] = await waitForDeliveries(
      server,
      `subscriptionId=${subscriptionId}`,
      (d) => d[0]?.status === 'FAILED',
    );
    assert.equal(delivery.attempts, 1);
    const dlq = await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}`);
    assert.equal(dlq.body.items.length, 1);
    assert.equal(dlq.body.items[0].reason, 'http_400');
    assert.equal(dlq.body.items[0].stage, 'dispatcher');
  });

  test('a 410 disables the subscription', async () => {
    const r = await receiver({ answer: () => ({ status: 410 }) });
    const { subscriptionId } = await subscribe(server, r);
    await publish(server, orderEvent());
    await waitForDeliveries(server, `subscriptionId=${subscriptionId}`, (d) => d[0]?.status === 'FAILED');
    const sub = await server.request('GET', `/admin/subscriptions/${subscriptionId}`);
    assert.equal(sub.body.status, 'DISABLED');
    assert.match(sub.body.statusReason, /410/);
    await publish(server, orderEvent());
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(r.received.length, 1, 'a disabled subscription receives nothing more');
    // The dispatcher (its own thread) disabled it, and the processor heard at once: the second
    // event was not even routed to it (no second delivery record, no "subscription_disabled").
    const deliveries = await server.request('GET', `/admin/deliveries?subscriptionId=${subscriptionId}`);
    assert.equal(deliveries.body.items.length, 1);
  });

  test('Retry-After is respected', async () => {
    const r = await receiver({
      answer: (n) => (n === 0 ? { status: 429, headers: { 'retry-after': '2' } } : { status: 200 }),
    });
    await subscribe(server, r, { retry: { scheduleSeconds: [0] } });
    await publish(server, orderEvent());
    const [first, second] = await r.waitFor(2);
    const gap = second!.at - first!.at;
    assert.ok(gap >= 1900, `second attempt came ${gap} ms after the first; Retry-After asked for 2 s`);
  });

  test('the same event id ingested twice is delivered once', async () => {
    const r = await receiver();
    const { subscriptionId } = await subscribe(server, r);
    const event = orderEvent();
    await publish(server, event);
    await publish(server, event);
    await r.waitFor(1);
    await new Promise((res) => setTimeout(res, 700));
    assert.equal(r.received.length, 1);
    const deliveries = await server.request('GET', `/admin/deliveries?subscriptionId=${subscriptionId}`);
    assert.equal(deliveries.body.items.length, 1);
  });

  /** Delivery tasks the dispatcher skipped (delivered already), from /metrics. */
  async function skippedCount(): Promise<number> {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('webhook_deliveries_total{outcome="skipped"}'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  test('one webhook-id per event × subscription: ingested again after the dedupe window, or redriven at the processor, it is not sent again', async () => {
    const r = await receiver();
    const { subscriptionId } = await subscribe(server, r);
    const event = orderEvent();
    await publish(server, event);
    const [first] = await r.waitFor(1);
    const { store } = server.running.platform;
    const skippedBefore = await skippedCount();
    // The dedupe window passes: the event's route (and record) are purged by the history retention.
    const later = new Date(Date.now() + 3_600_000).toISOString();
    while ((await store.deliveries.purgeBefore(later, 1000)).routes > 0);
    await publish(server, event);
    // …and a processor dead letter of the same event is redriven (it routes the event once more).
    await store.deadLetters.insert({
      id: `dlq-${event.id}`,
      stage: 'processor',
      reason: 'schema_unknown',
      lastError: 'no schema (then)',
      attempts: 1,
      eventId: event.id,
      eventType: event.type,
      topic: 'ingress.orders.created.v1',
      value: JSON.stringify({ ...event, schemaversion: 1 }),
      createdAt: new Date().toISOString(),
    });
    const redrive = await server.request('POST', '/admin/dlq/redrive', {
      stage: 'processor',
      eventId: event.id,
    });
    assert.equal(redrive.body.redriven, 1);
    // Both copies reach the dispatcher, which recognises the webhook-id in the ledger and skips them.
    for (let i = 0; i < 400 && (await skippedCount()) < skippedBefore + 2; i++) await sleep(25);
    assert.ok((await skippedCount()) >= skippedBefore + 2, 'both copies were skipped');
    assert.deepEqual(
      r.received.map((d) => d.json.orderId),
      [event.data.orderId],
      'the event was sent once',
    );
    assert.equal(first!.headers['webhook-id'], webhookIdFor(event.source, event.id, subscriptionId));
  });

  test('a filter that does not match delivers nothing; one that matches delivers', async () => {
    const r = await receiver();
    await subscribe(server, r, { filter: { 'customer.tier': 'gold', amount: { $gte: 100 } } });
    await publish(server, orderEvent({ amount: 500, customer: { tier: 'silver' } }));
    await publish(server, orderEvent({ amount: 50, customer: { tier: 'gold' } }));
    const match = orderEvent({ amount: 150, customer: { tier: 'gold' } });
    await publish(server, match);
    await r.waitFor(1);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(r.received.length, 1);
    assert.equal(r.received[0]!.json.orderId, match.data.orderId);
  });

  test('a mapping changes the payload as specified, enriched with the partner', async () => {
    const r = await receiver();
    const { partnerId } = await subscribe(
      server,
      r,
      {
        mapping: {
          rules: [
            { to: 'order.id', from: 'orderId' },
            { to: 'order.total', from: 'amount' },
            { to: 'order.currency', from: 'currency', transform: 'lowercase' },
            { to: 'meta.eventId', from: '$event.id' },
            { to: 'meta.partner', from: '$partner.name' },
            { to: 'meta.version', value: 'v1' },
          ],
        },
      },
      { name: 'Mapped Partner' },
    );
    const event = orderEvent({ amount: 99, currency: 'EUR' });
    await publish(server, event);
    const [got] = await r.waitFor(1);
    assert.deepEqual(got!.json, {
      order: { id: event.data.orderId, total: 99, currency: 'eur' },
      meta: { eventId: event.id, partner: 'Mapped Partner', version: 'v1' },
    });
    assert.ok(partnerId);
    assert.equal(got!.verified, true);
  });

  test('an event whose data does not match its schema goes to the processor DLQ with the reason', async () => {
    const r = await receiver();
    await subscribe(server, r);
    const bad = orderEvent({ amount: 'lots' });
    await publish(server, bad);
    const deadline = Date.now() + 10_000;
    let items: any[] = [];
    while (Date.now() < deadline) {
      items = (await server.request('GET', `/admin/dlq?eventId=${bad.id}`)).body.items;
      if (items.length > 0) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(items[0]?.stage, 'processor');
    assert.equal(items[0]?.reason, 'data_invalid');
    assert.match(items[0]?.lastError, /amount/);
    assert.equal(r.received.length, 0);
  });

  test('a slow receiver does not delay another partner’s deliveries', async () => {
    const slow = await receiver({ answer: () => ({ status: 200, delayMs: 10_000 }) });
    const fast = await receiver();
    await subscribe(
      server,
      slow,
      { retry: { maxAttempts: 1 } },
      { delivery: { timeouts: { headersMs: 15_000 } } },
    );
    await subscribe(server, fast);
    // Keep the slow partner busy first, then send events that only the fast partner... both get every event.
    for (let i = 0; i < 20; i++) await publish(server, orderEvent({ amount: i }));
    const started = Date.now();
    await fast.waitFor(20, 5_000);
    const elapsed = Date.now() - started;
    assert.ok(
      elapsed < 3_000,
      `the fast partner got 20 deliveries in ${elapsed} ms while the slow one hangs`,
    );
    assert.ok(slow.received.length >= 1, 'the slow partner is being delivered to meanwhile');
  });

  test('thirty hanging partners do not hold up a fast one (dispatcher capacity is not theirs to take)', async () => {
    const hanging = await receiver({ answer: () => ({ status: 200, delayMs: 10_000 }) });
    const fast = await receiver();
    for (let i = 0; i < 30; i++) {
      await subscribe(
        server,
        hanging,
        { retry: { maxAttempts: 1 } },
        { delivery: { timeouts: { headersMs: 15_000 } } },
      );
    }
    await subscribe(server, fast);
    const events = Array.from({ length: 40 }, (_, i) => orderEvent({ amount: i }));
    for (let i = 0; i < events.length; i += 10) await publish(server, ...events.slice(i, i + 10));
    const started = Date.now();
    await fast.waitFor(40, 8_000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 4_000, `the fast partner got 40 deliveries in ${elapsed} ms while 30 others hang`);
    assert.ok(hanging.received.length >= 30, 'the hanging partners are being delivered to meanwhile');
  });

  test('the subscription’s credentials reach the partner: bearer, basic and a custom header', async () => {
    const r = await receiver();
    const bearer = await subscribe(server, r, { auth: { type: 'bearer', token: 'tok-123' } });
    const basic = await subscribe(server, r, { auth: { type: 'basic', username: 'acme', password: 'p@ss' } });
    const header = await subscribe(server, r, {
      auth: { type: 'header', name: 'X-Api-Key', value: 'key-9' },
    });
    await publish(server, orderEvent());
    const got = await r.waitFor(3);
    const to = (partnerId: string) => got.find((d) => d.path === `/hooks/${partnerId}`)!;
    assert.equal(to(bearer.partnerId).headers.authorization, 'Bearer tok-123');
    assert.equal(
      to(basic.partnerId).headers.authorization,
      `Basic ${Buffer.from('acme:p@ss').toString('base64')}`,
    );
    assert.equal(to(header.partnerId).headers['x-api-key'], 'key-9');
    assert.equal(to(header.partnerId).headers.authorization, undefined);
  });

  test('the partner’s timeouts apply: an answer slower than its headers timeout is a timeout', async () => {
    const r = await receiver({ answer: () => ({ status: 200, delayMs: 3_000 }) });
    const { subscriptionId } = await subscribe(
      server,
      r,
      { retry: { maxAttempts: 1 } },
      { delivery: { timeouts: { headersMs: 300 } } },
    );
    await publish(server, orderEvent());
    const [delivery] = await waitForDeliveries(
      server,
      `subscriptionId=${subscriptionId}`,
      (d) => d[0]?.status === 'FAILED',
    );
    assert.match(delivery.attemptLog[0].error, /timeout/i);
    assert.ok(
      delivery.attemptLog[0].latencyMs < 2_000,
      `gave up after ${delivery.attemptLog[0].latencyMs} ms`,
    );
  });

  test('the partner’s retry policy caps attempts; the subscription’s overrides it field by field', async () => {
    const r = await receiver({ answer: () => ({ status: 500 }) });
    const partner = { delivery: { retry: { maxAttempts: 2, scheduleSeconds: [0.2] } } };
    const capped = await subscribe(server, r, {}, partner);
    const overridden = await subscribe(server, r, { retry: { maxAttempts: 3 } }, partner);
    await publish(server, orderEvent());
    const [a] = await waitForDeliveries(
      server,
      `subscriptionId=${capped.subscriptionId}`,
      (d) => d[0]?.status === 'FAILED',
    );
    const [b] = await waitForDeliveries(
      server,
      `subscriptionId=${overridden.subscriptionId}`,
      (d) => d[0]?.status === 'FAILED',
    );
    assert.equal(a.attempts, 2, 'the partner allows 2 attempts');
    assert.equal(b.attempts, 3, 'the subscription allows 3, at the partner’s pace');
    const dlq = await server.request('GET', `/admin/dlq?subscriptionId=${capped.subscriptionId}`);
    assert.equal(dlq.body.items[0]?.reason, 'retries_exhausted');
  });

  test('redrive by event and redrive of everything pending', async () => {
    let fail = true;
    const r = await receiver({ answer: () => ({ status: fail ? 422 : 200 }) });
    const mine = [await subscribe(server, r), await subscribe(server, r)].map((s) => s.subscriptionId);
    const one = orderEvent();
    const two = orderEvent();
    await publish(server, one);
    await publish(server, two);
    // Other tests' subscriptions get these events too: only this test's two are looked at.
    const ofEvent = (eventId: string) => async (status: string) =>
      waitForDeliveries(
        server,
        `eventId=${eventId}`,
        (d) => d.filter((x) => mine.includes(x.subscriptionId) && x.status === status).length === 2,
      );
    await ofEvent(one.id)('FAILED');
    await ofEvent(two.id)('FAILED');
    fail = false;
    const byEvent = await server.request('POST', '/admin/dlq/redrive', { eventId: one.id });
    assert.ok(byEvent.body.redriven >= 2, `redrove ${byEvent.body.redriven} dead letters of the event`);
    await ofEvent(one.id)('SUCCESS');
    await new Promise((res) => setTimeout(res, 300));
    const untouched = await server.request('GET', `/admin/deliveries?eventId=${two.id}`);
    assert.deepEqual(
      untouched.body.items.filter((d: any) => mine.includes(d.subscriptionId)).map((d: any) => d.status),
      ['FAILED', 'FAILED'],
      'the other event is untouched',
    );
    const all = await server.request('POST', '/admin/dlq/redrive', { all: true });
    assert.ok(all.body.redriven >= 2, `redrove ${all.body.redriven}`);
    await ofEvent(two.id)('SUCCESS');
    for (const subscriptionId of mine) {
      const pending = await server.request(
        'GET',
        `/admin/dlq?eventId=${two.id}&subscriptionId=${subscriptionId}&pending=true`,
      );
      assert.equal(pending.body.items.length, 0, 'nothing of it left to redrive');
      const history = await server.request(
        'GET',
        `/admin/dlq?eventId=${two.id}&subscriptionId=${subscriptionId}`,
      );
      assert.equal(history.body.items.length, 1, 'the dead letter is kept');
      assert.ok(history.body.items[0].redrivenAt);
    }
  });

  test('a PAUSED subscription’s deliveries are held, and all sent once it is ACTIVE again', async () => {
    const r = await receiver();
    const { subscriptionId } = await subscribe(server, r);
    const paused = await server.request('PATCH', `/admin/subscriptions/${subscriptionId}`, {
      status: 'PAUSED',
    });
    assert.equal(paused.status, 200);
    const events = Array.from({ length: 5 }, (_, i) => orderEvent({ amount: 1000 + i }));
    await publish(server, ...events);
    const heldQuery = `/admin/subscriptions/${subscriptionId}/held`;
    let held: any[] = [];
    for (let i = 0; i < 400 && held.length < 5; i++) {
      held = (await server.request('GET', heldQuery)).body.items;
      await new Promise((res) => setTimeout(res, 25));
    }
    assert.equal(held.length, 5, 'held in the store, listed for the subscription');
    assert.deepEqual(held.map((h) => h.eventId).sort(), events.map((e) => e.id).sort());
    assert.equal(r.received.length, 0, 'nothing is sent while paused');
    const metrics = (await server.request('GET', '/metrics')).body as string;
    assert.match(metrics, /webhook_deliveries_total\{outcome="held_paused"\} [1-9]/);
    const resumedAt = Date.now();
    await server.request('PATCH', `/admin/subscriptions/${subscriptionId}`, { status: 'ACTIVE' });
    const got = await r.waitFor(5, 10_000);
    const took = Date.now() - resumedAt;
    assert.ok(took < 3_000, `sent ${took} ms after the resume`);
    assert.deepEqual(got.map((d) => d.json.amount).sort(), events.map((e) => e.data.amount).sort());
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(r.received.length, 5, 'each once');
    assert.equal((await server.request('GET', heldQuery)).body.items.length, 0, 'released');
  });

  test('a W3C traceparent sent as an HTTP header at ingest reaches the partner', async () => {
    const r = await receiver();
    await subscribe(server, r);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const res = await server.request('POST', '/events', orderEvent(), {
      headers: { 'content-type': 'application/cloudevents+json', traceparent, tracestate: 'vendor=1' },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const [got] = await r.waitFor(1);
    assert.equal(got!.headers.traceparent, traceparent);
    assert.equal(got!.headers.tracestate, 'vendor=1');
  });

  test('an event in CloudEvents binary mode (ce-* headers) is delivered like a structured one', async () => {
    const r = await receiver();
    await subscribe(server, r);
    const id = `bin-${Date.now()}`;
    const res = await server.request('POST', '/events', undefined, {
      raw: JSON.stringify({ orderId: 'o-bin', amount: 7 }),
      headers: {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': id,
        'ce-source': '%2Fshop',
        'ce-type': 'orders.created',
      },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const [got] = await r.waitFor(1);
    assert.deepEqual(got!.json, { orderId: 'o-bin', amount: 7 });
    assert.equal(got!.verified, true);
  });

  test('a mapping that fails dead-letters that subscription only; after a fix, redrive delivers to it alone', async () => {
    const good = await receiver();
    const bad = await receiver();
    await subscribe(server, good, { filter: { currency: 'JPY' } });
    const broken = await subscribe(server, bad, {
      filter: { currency: 'JPY' },
      mapping: { rules: [{ to: 'total', from: 'currency', transform: 'number' }] },
    });
    const event = orderEvent({ currency: 'JPY' });
    await publish(server, event);
    await good.waitFor(1);
    let dead: any[] = [];
    for (let i = 0; i < 100 && dead.length === 0; i++) {
      dead = (await server.request('GET', `/admin/dlq?subscriptionId=${broken.subscriptionId}`)).body.items;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(dead[0]?.reason, 'mapping_failed');
    const fixed = await server.request('PATCH', `/admin/subscriptions/${broken.subscriptionId}`, {
      mapping: { rules: [{ to: 'total', from: 'amount' }] },
    });
    assert.equal(fixed.status, 200);
    const redrive = await server.request('POST', '/admin/dlq/redrive', {
      subscriptionId: broken.subscriptionId,
    });
    assert.equal(redrive.body.redriven, 1);
    const [got] = await bad.waitFor(1);
    assert.deepEqual(got!.json, { total: event.data.amount });
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(good.received.length, 1, 'the other subscription is not delivered to again');
  });

  test('redrive re-enqueues a dead letter, keeps its history, and the delivery succeeds', async () => {
    let fail = true;
    const r = await receiver({ answer: () => ({ status: fail ? 400 : 200 }) });
    const { subscriptionId } = await subscribe(server, r);
    await publish(server, orderEvent());
    // The delivery is FAILED first, then dead-lettered: wait for the dead letter.
    for (let i = 0; i < 400; i++) {
      const dlq = await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}`);
      if (dlq.body.items.length > 0) break;
      await sleep(25);
    }
    fail = false;
    const redrive = await server.request('POST', '/admin/dlq/redrive', { subscriptionId });
    assert.equal(redrive.body.redriven, 1);
    const [delivery] = await waitForDeliveries(
      server,
      `subscriptionId=${subscriptionId}`,
      (d) => d[0]?.status === 'SUCCESS',
    );
    assert.deepEqual(
      delivery.attemptLog.map((a: any) => a.statusCode),
      [400, 200],
    );
    const dlq = await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}`);
    assert.ok(dlq.body.items[0].redrivenAt, 'the dead letter is kept, marked redriven');
  });
});
