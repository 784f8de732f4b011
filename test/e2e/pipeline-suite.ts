/**
 * The pipeline end to end over real sockets: ingest → bus → processor → egress topic → dispatcher →
 * a real HTTPS receiver (TLS 1.3) that verifies every request with `standardwebhooks`. Every mix of
 * engines runs it: the embedded log and SQLite here (`pipeline.test.ts`), Kafka with SQLite and with
 * DynamoDB in `test/kafka/`.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { DeleteItemCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { webhookIdFor } from '../../src/common/delivery-task.ts';
import type { EventRef } from '../../src/common/ports/store.ts';
import { awsClientBase } from '../../src/engines/aws/client-config.ts';
import { routeKey } from '../../src/engines/dynamodb/deliveries.ts';
import { DynamoStore } from '../../src/engines/dynamodb/store.ts';
import {
  orderEvent,
  publish,
  startPipelineServer,
  subscribe,
  waitForDeliveries,
} from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import type { TestServer } from '../support/server.ts';
import { latch, metric, waitFor, waitRouted } from '../support/wait.ts';

/** Registers the pipeline suite on one mix of engines; `engineEnv` gives its WEBHOOKS_* settings. */
export function runPipelineSuite(engines: string, engineEnv: () => Promise<Record<string, string>>): void {
  describe(`pipeline end to end (${engines})`, () => {
    let server: TestServer;
    const receivers: TestReceiver[] = [];
    const receiver = async (options: Parameters<typeof startReceiver>[0] = {}) => {
      const r = await startReceiver(options);
      receivers.push(r);
      return r;
    };
    let env: Record<string, string>;
    before(async () => {
      env = await engineEnv();
      server = await startPipelineServer(env);
    });
    /**
     * The dedupe window passes for an event: its route marker goes, as the history retention
     * purges it — or, on a store that expires it by TTL (DynamoDB), as TTL deletes it.
     */
    const forgetRoute = async (event: EventRef): Promise<void> => {
      const { store } = server.running.platform;
      if (store.deliveries.purgeBefore) {
        const later = new Date(Date.now() + 3_600_000).toISOString();
        while ((await store.deliveries.purgeBefore(later, 1000)).routes > 0);
        return;
      }
      assert.ok(store instanceof DynamoStore, `no purge and no TTL to stand in for on ${store.engine}`);
      const client = new DynamoDBClient(awsClientBase({ endpoint: env.WEBHOOKS_DYNAMODB_ENDPOINT }));
      try {
        const Key = { ek: { S: routeKey(event) } };
        await client.send(new DeleteItemCommand({ TableName: store.tables.event_route, Key }));
      } finally {
        client.destroy();
      }
    };
    after(async () => {
      await server.stop();
      await Promise.all(receivers.map((r) => r.close()));
    });
    // Each test's subscriptions go with it: every event would otherwise fan out to every earlier
    // test's partners too (thousands of deliveries by the end), and a slow store falls behind.
    afterEach(async () => {
      for (;;) {
        const page = await server.request('GET', '/admin/subscriptions?limit=100');
        const items: Array<{ id: string }> = page.body.items ?? [];
        if (items.length === 0) break;
        await Promise.all(items.map((s) => server.request('DELETE', `/admin/subscriptions/${s.id}`)));
      }
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

    test('events as large as the body limit allows are delivered whole: exactly the limit, and one of escaped quotes', async () => {
      const r = await receiver();
      await subscribe(server, r);
      // Under the 1 MiB body limit as sent: every quote is two bytes of the request (\"), and the
      // data's text (what the partner gets) keeps them so: nothing on the way may unescape or
      // escape it again.
      const escaped = orderEvent({ note: '"'.repeat(480_000) });
      // Exactly the limit (1 MiB) as sent: with its headers and key, the record is over Kafka's
      // default limit of a record batch (1,048,588 bytes).
      const sized = orderEvent({ note: '' });
      const plain = {
        ...sized,
        data: { ...sized.data, note: 'x'.repeat(1024 * 1024 - JSON.stringify(sized).length) },
      };
      assert.equal(JSON.stringify(plain).length, 1024 * 1024);
      await publish(server, escaped);
      await publish(server, plain);
      const got = await r.waitFor(2);
      for (const g of got) assert.equal(g.verified, true, g.verifyError);
      const bodies = new Set(got.map((g) => JSON.stringify(g.json)));
      for (const event of [escaped, plain])
        assert.ok(bodies.has(JSON.stringify(event.data)), 'delivered whole');
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
      // The dead letter is written after the delivery reads FAILED: wait for it, not for the status.
      const items: any[] = await waitFor('the dead letter', async () => {
        const found: any[] = (await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}`)).body
          .items;
        return found.length > 0 && found;
      });
      assert.equal(items.length, 1);
      assert.equal(items[0].reason, 'http_400');
      assert.equal(items[0].stage, 'dispatcher');
    });

    test('a 410 disables the subscription', async () => {
      const r = await receiver({ answer: () => ({ status: 410 }) });
      const { subscriptionId } = await subscribe(server, r);
      await publish(server, orderEvent());
      await waitForDeliveries(server, `subscriptionId=${subscriptionId}`, (d) => d[0]?.status === 'FAILED');
      const sub = await server.request('GET', `/admin/subscriptions/${subscriptionId}`);
      assert.equal(sub.body.status, 'DISABLED');
      assert.match(sub.body.statusReason, /410/);
      // The dead letter is written after the delivery reads FAILED: wait for it, not for the status.
      const dead: any[] = await waitFor('the dead letter', async () => {
        const found: any[] = (await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}`)).body
          .items;
        return found.length > 0 && found;
      });
      assert.deepEqual(
        dead.map((d: { reason: string }) => d.reason),
        ['endpoint_gone'],
        'dead-lettered with the reason operators filter on',
      );
      // The dispatcher (its own thread) disabled it, and the processor heard at once: the second
      // event is not even routed to it (no second delivery record, no "subscription_disabled").
      const witness = await receiver();
      await subscribe(server, witness);
      const tasksBefore = await metric(server.url, 'delivery_tasks_published');
      const second = orderEvent();
      await publish(server, second);
      await waitRouted(server, second);
      // Every delivery the event was routed to (the witness's, other tests' subscriptions') gets a
      // record once the dispatcher has handled it: a task for the disabled subscription would get one
      // too (FAILED, subscription_disabled).
      const routedTo = (await metric(server.url, 'delivery_tasks_published')) - tasksBefore;
      assert.ok(routedTo >= 1, 'routed to the witness at least');
      const records = await waitForDeliveries(server, `eventId=${second.id}`, (d) => d.length >= routedTo);
      assert.deepEqual(
        records.filter((d) => d.subscriptionId === subscriptionId),
        [],
        'the second event was not routed to the disabled subscription',
      );
      assert.ok(witness.received.some((d) => d.json.orderId === second.data.orderId));
      assert.equal(r.received.length, 1, 'a disabled subscription receives nothing more');
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
      const tasks = () => metric(server.url, 'delivery_tasks_published');
      const processedBefore = await metric(server.url, 'events_processed');
      const tasksBefore = await tasks();
      await publish(server, event);
      await publish(server, event);
      // A record is counted processed after its delivery tasks are counted.
      await waitFor(
        'the processor to handle both copies',
        async () => (await metric(server.url, 'events_processed')) >= processedBefore + 2,
      );
      const tasksOfCopies = (await tasks()) - tasksBefore;
      // A sentinel behind both copies: the same key (ingest keys by subject, else id), so the same
      // ingress partition, and the same subscription, so the same egress partition.
      const sentinel = orderEvent({}, { subject: event.id });
      await publish(server, sentinel);
      await waitRouted(server, sentinel);
      assert.equal(
        tasksOfCopies,
        (await tasks()) - tasksBefore - tasksOfCopies,
        'the two copies made as many delivery tasks as the one sentinel: the second was routed to no one',
      );
      const orderIds = () => r.received.map((d) => d.json.orderId).sort();
      const expected = [event.data.orderId, sentinel.data.orderId].sort();
      await waitFor('the event and the sentinel to be delivered', () =>
        expected.every((id) => orderIds().includes(id)),
      );
      assert.deepEqual(orderIds(), expected, 'the event was delivered once');
      // A delivery's record is written once the partner has answered.
      const deliveries = await waitForDeliveries(
        server,
        `subscriptionId=${subscriptionId}`,
        (d) => d.filter((x) => x.status === 'SUCCESS').length >= 2,
      );
      assert.equal(deliveries.length, 2, 'one delivery record for the event, one for the sentinel');
    });

    /** Delivery tasks the dispatcher skipped (delivered already), from /metrics. */
    const skippedCount = () => metric(server.url, 'webhook_deliveries_total{outcome="skipped"}');

    test('one webhook-id per event × subscription: ingested again after the dedupe window, or redriven at the processor, it is not sent again', async () => {
      const r = await receiver();
      const { subscriptionId } = await subscribe(server, r);
      const event = orderEvent();
      await publish(server, event);
      const [first] = await r.waitFor(1);
      const { store } = server.running.platform;
      const skippedBefore = await skippedCount();
      await forgetRoute(event);
      await publish(server, event);
      // The dispatcher skips that copy before the redrive below: two copies of one event in flight at
      // once are one for the processor (its in-flight dedupe), and only one would reach the dispatcher.
      await waitFor(
        'the copy ingested again to be skipped',
        async () => (await skippedCount()) >= skippedBefore + 1,
      );
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
      await waitFor('both copies to be skipped', async () => (await skippedCount()) >= skippedBefore + 2);
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
      const silver = orderEvent({ amount: 500, customer: { tier: 'silver' } });
      const small = orderEvent({ amount: 50, customer: { tier: 'gold' } });
      await publish(server, silver);
      await publish(server, small);
      // The processor has decided on both (and published whatever tasks it made for them)…
      await waitRouted(server, silver, small);
      // …so the match, the sentinel, comes after any task of theirs in the subscription's egress partition.
      const match = orderEvent({ amount: 150, customer: { tier: 'gold' } });
      await publish(server, match);
      await waitFor('the matching event to be delivered', () =>
        r.received.some((d) => d.json.orderId === match.data.orderId),
      );
      assert.deepEqual(
        r.received.map((d) => d.json.orderId),
        [match.data.orderId],
      );
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
      const items = await waitFor('the dead letter', async () => {
        const found: any[] = (await server.request('GET', `/admin/dlq?eventId=${bad.id}`)).body.items;
        return found.length > 0 && found;
      });
      assert.equal(items[0]?.stage, 'processor');
      assert.equal(items[0]?.reason, 'data_invalid');
      assert.match(items[0]?.lastError, /amount/);
      assert.equal(r.received.length, 0);
    });

    test('a slow receiver does not delay another partner’s deliveries', async () => {
      // The slow partner answers nothing until the test lets it (its timeout is far beyond the test).
      const gate = latch();
      const slow = await receiver({ answer: () => ({ status: 200, until: gate.opened }) });
      const fast = await receiver();
      const { subscriptionId: slowId } = await subscribe(
        server,
        slow,
        { retry: { maxAttempts: 1 } },
        { delivery: { timeouts: { headersMs: 60_000 } } },
      );
      await subscribe(server, fast);
      try {
        // Both get every event. The slow partner holds a request first…
        await publish(server, orderEvent({ amount: 0 }));
        await waitFor('the slow partner to hold a request', () => slow.received.length >= 1);
        // …and the fast partner's 20 deliveries all arrive while it still does.
        for (let i = 1; i < 20; i++) await publish(server, orderEvent({ amount: i }));
        await fast.waitFor(20);
        const slowRecords = await server.request('GET', `/admin/deliveries?subscriptionId=${slowId}`);
        assert.deepEqual(
          slowRecords.body.items,
          [],
          'no attempt to the slow partner has ended (answered or timed out) meanwhile',
        );
      } finally {
        gate.open();
      }
    });

    test('thirty hanging partners do not hold up a fast one (dispatcher capacity is not theirs to take)', async () => {
      // The hanging partners answer nothing until the test lets them (their timeout is far beyond the test).
      const gate = latch();
      const hanging = await receiver({ answer: () => ({ status: 200, until: gate.opened }) });
      const fast = await receiver();
      const hangingIds: string[] = [];
      for (let i = 0; i < 30; i++) {
        const { subscriptionId } = await subscribe(
          server,
          hanging,
          { retry: { maxAttempts: 1 } },
          { delivery: { timeouts: { headersMs: 60_000 } } },
        );
        hangingIds.push(subscriptionId);
      }
      await subscribe(server, fast);
      const events = Array.from({ length: 40 }, (_, i) => orderEvent({ amount: i }));
      try {
        // Every hanging partner holds requests first…
        await publish(server, ...events.slice(0, 10));
        await waitFor(
          'each of the thirty hanging partners to hold a request',
          () => new Set(hanging.received.map((d) => d.path)).size === 30,
        );
        // …and the fast partner's 40 deliveries all arrive while they still do (their attempts last
        // 60 s: waiting up to 45 s for the fact leaves room for a loaded machine, not for a hang).
        for (let i = 10; i < events.length; i += 10) await publish(server, ...events.slice(i, i + 10));
        await fast.waitFor(40, 45_000);
        const ended = await Promise.all(
          hangingIds.map(
            async (id) => (await server.request('GET', `/admin/deliveries?subscriptionId=${id}`)).body.items,
          ),
        );
        assert.deepEqual(
          ended.flat(),
          [],
          'no attempt to a hanging partner has ended (answered or timed out) meanwhile',
        );
      } finally {
        gate.open();
      }
      // The thirty partners now answer: their 1,200 deliveries (many deferred to the 1 s retry tier
      // while their endpoints were saturated) are let through before the next test, whose retries
      // would otherwise queue behind them on the same tier (on dynalite, for tens of seconds).
      await waitFor(
        'every delivery to the hanging partners to succeed',
        async () => {
          for (const id of hangingIds) {
            const items: any[] = (
              await server.request('GET', `/admin/deliveries?subscriptionId=${id}&limit=100`)
            ).body.items;
            if (items.length < events.length || items.some((d) => d.status !== 'SUCCESS')) return false;
          }
          return true;
        },
        120_000,
        200,
      );
    });

    test('the subscription’s credentials reach the partner: bearer, basic and a custom header', async () => {
      const r = await receiver();
      const bearer = await subscribe(server, r, { auth: { type: 'bearer', token: 'tok-123' } });
      const basic = await subscribe(server, r, {
        auth: { type: 'basic', username: 'acme', password: 'p@ss' },
      });
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
      // FAILED at all means the 300 ms applied: under the default (15 s) the 3 s answer would be a success.
      assert.match(delivery.attemptLog[0].error, /^timeout: no response headers within 300 ms/);
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
      const [dead] = await waitFor('the dead letter', async () => {
        const found: any[] = (
          await server.request('GET', `/admin/dlq?subscriptionId=${capped.subscriptionId}`)
        ).body.items;
        return found.length > 0 && found;
      });
      assert.equal(dead.reason, 'retries_exhausted');
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
      // A delivery is FAILED first, then dead-lettered: wait for the four dead letters.
      const pendingOf = async (eventId: string, subscriptionId: string): Promise<any[]> =>
        (
          await server.request(
            'GET',
            `/admin/dlq?eventId=${eventId}&subscriptionId=${subscriptionId}&pending=true`,
          )
        ).body.items;
      for (const eventId of [one.id, two.id]) {
        for (const subscriptionId of mine) {
          await waitFor(
            'the dead letter',
            async () => (await pendingOf(eventId, subscriptionId)).length === 1,
          );
        }
      }
      fail = false;
      const byEvent = await server.request('POST', '/admin/dlq/redrive', { eventId: one.id });
      assert.ok(byEvent.body.redriven >= 2, `redrove ${byEvent.body.redriven} dead letters of the event`);
      // The redrive marks what it re-enqueues before it answers: the other event's are still pending…
      for (const subscriptionId of mine) {
        assert.equal(
          (await pendingOf(two.id, subscriptionId)).length,
          1,
          'the other event’s dead letter is not redriven',
        );
      }
      // …and once the redriven tasks are delivered (the same egress partitions the other event's would
      // be re-enqueued to), its deliveries are still FAILED.
      await ofEvent(one.id)('SUCCESS');
      const untouched = await server.request('GET', `/admin/deliveries?eventId=${two.id}`);
      assert.deepEqual(
        untouched.body.items.filter((d: any) => mine.includes(d.subscriptionId)).map((d: any) => d.status),
        ['FAILED', 'FAILED'],
        'the other event is untouched',
      );
      const all = await server.request('POST', '/admin/dlq/redrive', { all: true });
      assert.ok(
        all.body.redriven >= 2,
        `redrove ${all.body.redriven}: ${all.status} ${JSON.stringify(all.body)}`,
      );
      await ofEvent(two.id)('SUCCESS');
      for (const subscriptionId of mine) {
        assert.equal((await pendingOf(two.id, subscriptionId)).length, 0, 'nothing of it left to redrive');
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
      const heldPaused = () => metric(server.url, 'webhook_deliveries_total{outcome="held_paused"}');
      const heldBefore = await heldPaused();
      const events = Array.from({ length: 5 }, (_, i) => orderEvent({ amount: 1000 + i }));
      await publish(server, ...events);
      const heldQuery = `/admin/subscriptions/${subscriptionId}/held`;
      const held = await waitFor('the five tasks to be held', async () => {
        const items: any[] = (await server.request('GET', heldQuery)).body.items;
        return items.length >= 5 && items;
      });
      assert.equal(held.length, 5, 'held in the store, listed for the subscription');
      assert.equal((await server.request('GET', heldQuery)).body.total, 5, 'how many are held in all');
      assert.deepEqual(held.map((h) => h.eventId).sort(), events.map((e) => e.id).sort());
      // Page by page (two at a time): the same five, in the same order, and no page after the last.
      const paged: any[] = [];
      let cursor: string | null = null;
      do {
        const page: any = (
          await server.request('GET', `${heldQuery}?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
        ).body;
        paged.push(...page.items);
        cursor = page.next;
      } while (cursor);
      assert.deepEqual(
        paged.map((h) => h.id),
        held.map((h) => h.id),
      );
      const unknown = await server.request(
        'GET',
        '/admin/subscriptions/0190a000-0000-7000-8000-00000000dead/held',
      );
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.error.code, 'subscription_not_found');
      assert.equal(r.received.length, 0, 'nothing is sent while paused');
      // Each task is counted once its handling is over (just after it is stored).
      await waitFor('the five held tasks to be counted', async () => (await heldPaused()) >= heldBefore + 5);
      await server.request('PATCH', `/admin/subscriptions/${subscriptionId}`, { status: 'ACTIVE' });
      // A sentinel published after the resume: the resume itself (not the sweep a minute later)
      // releases the held tasks, so by the time the sentinel has been through the pipeline to the
      // same egress partition and been delivered, they are released, and delivered alongside it.
      const sentinel = orderEvent({ amount: 2000 });
      await publish(server, sentinel);
      await waitFor('the sentinel to be delivered', () => r.received.some((d) => d.json.amount === 2000));
      // The release removes each list after publishing it: wait for that fact, not the delivery.
      await waitFor(
        'the held tasks to be removed',
        async () => (await server.request('GET', heldQuery)).body.total === 0,
      );
      assert.deepEqual(
        (await server.request('GET', heldQuery)).body,
        { items: [], total: 0, next: null },
        'released on the resume',
      );
      const amounts = [...events.map((e) => e.data.amount), 2000].sort();
      await waitFor('the held tasks to be delivered', () => r.received.length >= amounts.length);
      assert.deepEqual(
        r.received.map((d) => d.json.amount).sort(),
        amounts,
        'each held task sent once, and the sentinel',
      );
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
      const dead = await waitFor('the mapping’s dead letter', async () => {
        const items: any[] = (
          await server.request('GET', `/admin/dlq?subscriptionId=${broken.subscriptionId}`)
        ).body.items;
        return items.length > 0 && items;
      });
      assert.equal(dead[0]?.reason, 'mapping_failed');
      const fixed = await server.request('PATCH', `/admin/subscriptions/${broken.subscriptionId}`, {
        mapping: { rules: [{ to: 'total', from: 'amount' }] },
      });
      assert.equal(fixed.status, 200);
      const tasksBefore = await metric(server.url, 'delivery_tasks_published');
      const redrive = await server.request('POST', '/admin/dlq/redrive', {
        subscriptionId: broken.subscriptionId,
      });
      assert.equal(redrive.body.redriven, 1);
      const [got] = await bad.waitFor(1);
      assert.deepEqual(got!.json, { total: event.data.amount });
      // The processor routed the redriven event (before the task reached `bad`) to one subscription
      // only: there is no task on its way to the other.
      assert.equal(
        (await metric(server.url, 'delivery_tasks_published')) - tasksBefore,
        1,
        'the redrive made one delivery task',
      );
      assert.equal(good.received.length, 1, 'the other subscription is not delivered to again');
    });

    test('redrive re-enqueues a dead letter, keeps its history, and the delivery succeeds', async () => {
      let fail = true;
      const r = await receiver({ answer: () => ({ status: fail ? 400 : 200 }) });
      const { subscriptionId } = await subscribe(server, r);
      await publish(server, orderEvent());
      // The delivery is FAILED first, then dead-lettered: wait for the dead letter.
      await waitFor(
        'the dead letter',
        async () =>
          (await server.request('GET', `/admin/dlq?subscriptionId=${subscriptionId}`)).body.items.length > 0,
      );
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
}
