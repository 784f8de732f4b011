/**
 * The processor and the dispatcher in worker threads of their own: each is restarted after a crash
 * and nothing is lost — no event, no delivery, no cache invalidation, and no counter in /metrics
 * goes down; admin changes made on the API's thread reach the threads' caches at once.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { EmbeddedLog } from '../../src/engines/embedded/log.ts';
import type { RoleThread, ThreadRole } from '../../src/runtimes/thread-host.ts';
import { orderEvent, publish, startPipelineServer, subscribe } from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import type { TestServer } from '../support/server.ts';
import { scrapeMetrics, waitFor } from '../support/wait.ts';

/** A pipeline server and a receiver, started before the suite's tests and stopped after them. */
function pipelineSuite(): { server: TestServer; receiver: TestReceiver } {
  const ctx = {} as { server: TestServer; receiver: TestReceiver };
  before(async () => {
    ctx.server = await startPipelineServer();
    ctx.receiver = await startReceiver();
  });
  after(async () => {
    await ctx.server.stop();
    await ctx.receiver.close();
  });
  return ctx;
}

/**
 * Kills the role's thread after one delivery: /readyz says so, the API still accepts events, and the
 * thread started again delivers them all.
 */
async function survivesACrash(ctx: { server: TestServer; receiver: TestReceiver }, role: ThreadRole) {
  const { platform } = ctx.server.running;
  const thread = role === 'processor' ? platform.processorThread : platform.dispatcherThread;
  assert.ok(thread, `the ${role} runs in its own thread`);
  await subscribe(ctx.server, ctx.receiver);
  await publish(ctx.server, orderEvent({ amount: 1 }));
  await ctx.receiver.waitFor(1);
  await thread.kill();
  const ready = await ctx.server.request('GET', '/readyz', undefined, { token: null });
  assert.equal(ready.status, 503);
  assert.match(ready.body.checks[role], /^unavailable/);
  // Accepted meanwhile: they wait in the log for the next thread.
  for (let i = 2; i <= 5; i++) await publish(ctx.server, orderEvent({ amount: i }));
  const got = await ctx.receiver.waitFor(5, 10_000);
  assert.deepEqual(got.map((r) => r.json.amount).sort(), [1, 2, 3, 4, 5]);
  assert.equal(thread.starts, 2);
  assert.equal((await ctx.server.request('GET', '/readyz', undefined, { token: null })).status, 200);
}

describe('processor thread', () => {
  const ctx = pipelineSuite();

  test('the processor runs off the API thread; crashed, it is started again and processes what was accepted meanwhile', async () => {
    assert.equal(ctx.server.running.platform.processor, undefined, 'not on the API thread');
    await survivesACrash(ctx, 'processor');
  });

  test('the worker threads (processor, dispatcher, schema checks) run below the API thread’s CPU priority (nice 5 by default, Linux)', (t) => {
    if (process.platform !== 'linux') return t.skip('nice is per thread on Linux only');
    const threads = readdirSync('/proc/self/task').flatMap((tid) => {
      try {
        const comm = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
        // Field 19 of stat is the nice value; the fields after the command name start at 3.
        const nice = Number(
          readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16],
        );
        return [{ comm, nice }];
      } catch {
        return []; // a thread that ended meanwhile
      }
    });
    assert.equal(threads.find((th) => th.comm === 'MainThread')?.nice, 0);
    const workers = threads.filter((th) => th.comm === 'WorkerThread');
    assert.ok(workers.length >= 2, `the processor and the dispatcher threads: ${JSON.stringify(threads)}`);
    for (const worker of workers) assert.equal(worker.nice, 5);
  });

  test('log retention runs in the processor’s thread, not the API’s: consumed records are deleted', async () => {
    const bus = ctx.server.running.platform.bus;
    assert.ok(bus instanceof EmbeddedLog);
    assert.equal(bus.retaining, false, 'the API thread leaves retention to the processor thread');
    await subscribe(ctx.server, ctx.receiver);
    const event = orderEvent({ amount: 7 });
    await publish(ctx.server, event);
    await waitFor('the event delivered', () =>
      ctx.receiver.received.some((d) => d.json.orderId === event.data.orderId) ? true : undefined,
    );
    const db = new DatabaseSync(join(ctx.server.dataDir, 'bus.db'), { readOnly: true });
    try {
      const left = db.prepare("SELECT count(*) AS n FROM record WHERE topic LIKE 'ingress.%'");
      await waitFor('the consumed ingress records deleted', () =>
        (left.get() as { n: number }).n === 0 ? true : undefined,
      );
    } finally {
      db.close();
    }
  });

  test('a new subscription and a schema made INACTIVE on the API thread reach the processor thread at once', async () => {
    const first = await startReceiver();
    const second = await startReceiver();
    try {
      await subscribe(ctx.server, first);
      // The processor thread has the event's subscriptions and schema cached after this one…
      const warm = orderEvent({ amount: 10 });
      await publish(ctx.server, warm);
      await first.waitFor(1);
      // …a subscription added now (cached for 5 s otherwise) gets the very next event.
      await subscribe(ctx.server, second);
      const next = orderEvent({ amount: 11 });
      await publish(ctx.server, next);
      await second.waitFor(1);
      assert.equal(second.received[0]!.json.orderId, next.data.orderId);

      // The schema made INACTIVE (cached for 30 s otherwise): an event written straight to its
      // ingress topic (as a Kafka producer would) is dead-lettered, not delivered.
      const patched = await ctx.server.request('PATCH', '/admin/schemas/orders/created/1', {
        status: 'INACTIVE',
      });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const late = orderEvent({ amount: 12 });
      await ctx.server.running.platform.bus.publish([
        {
          topic: 'ingress.orders.created.v1',
          key: late.id,
          value: JSON.stringify({ ...late, schemaversion: 1 }),
        },
      ]);
      const letter = await waitFor('the late event dead-lettered by the processor', async () => {
        const res = await ctx.server.request('GET', `/admin/dlq?stage=processor&eventId=${late.id}`);
        return res.body.items[0];
      });
      assert.equal(letter.reason, 'schema_inactive');
      assert.ok(!first.received.some((d) => d.json.orderId === late.data.orderId));
    } finally {
      await ctx.server.request('PATCH', '/admin/schemas/orders/created/1', { status: 'ACTIVE' });
      await first.close();
      await second.close();
    }
  });
});

describe('dispatcher thread', () => {
  const ctx = pipelineSuite();

  test('a crashed dispatcher thread is started again and delivers what was published meanwhile', async () => {
    await survivesACrash(ctx, 'dispatcher');
  });
});

describe('dispatcher thread restarts seen from the host', () => {
  const ctx = pipelineSuite();

  const scrape = () => scrapeMetrics(ctx.server.url);

  /** Resolves once a thread answers again. */
  function running(thread: RoleThread): Promise<boolean> {
    return waitFor('the dispatcher thread to run again', () =>
      thread.ping().then(
        () => true,
        () => undefined,
      ),
    );
  }

  test('its counters never go down in /metrics: kept while it restarts, then carried on', async () => {
    const thread = ctx.server.running.platform.dispatcherThread!;
    const { partnerId } = await subscribe(ctx.server, ctx.receiver);
    const delivered = 'webhook_deliveries_total{outcome="success"}';
    const attempts = `webhook_delivery_duration_seconds_count{partner="${partnerId}"}`;
    await publish(ctx.server, orderEvent({ amount: 1 }));
    await waitFor('the first delivery counted', async () =>
      (await scrape()).get(delivered) === 1 ? true : undefined,
    );

    await thread.kill();
    const down = await scrape();
    assert.equal(down.get('webhooks_dispatcher_thread_metrics_stale'), 1);
    assert.equal(down.get('webhooks_dispatcher_thread_restarts_total'), 1);
    assert.equal(down.get(delivered), 1, 'the dead thread counters are still shown');
    assert.equal(down.get(attempts), 1);

    await running(thread);
    const back = await scrape();
    assert.equal(back.get('webhooks_dispatcher_thread_metrics_stale'), 0);
    assert.equal(back.get(delivered), 1, 'carried onto the new thread, which counts from 0');
    assert.equal(back.get(attempts), 1, 'a series the new thread has not seen yet is carried too');

    await publish(ctx.server, orderEvent({ amount: 2 }));
    await ctx.receiver.waitFor(2);
    const later = await waitFor('the second delivery counted', async () => {
      const m = await scrape();
      return m.get(delivered) === 2 ? m : undefined; // counted once the attempt was recorded
    });
    assert.equal(later.get(attempts), 2);
    assert.equal(later.get(`webhook_delivery_duration_seconds_bucket{partner="${partnerId}",le="+Inf"}`), 2);
  });

  test('cache invalidations made while it restarts reach the new thread', async () => {
    const thread = ctx.server.running.platform.dispatcherThread!;
    const invalidations = 'webhooks_dispatcher_thread_invalidations_total';
    await thread.ping(); // answered after every invalidation sent before it was handled
    const before = (await scrape()).get(invalidations) ?? 0;

    await thread.kill();
    for (const id of ['s-1', 's-2', 's-3'])
      thread.subscriptionChanged({ id, domain: 'orders', event: 'created' });
    await running(thread);
    // The queued invalidations went out when the thread said it was ready, before this ping.
    await thread.ping();

    assert.equal((await scrape()).get(invalidations), before + 3);
  });
});
