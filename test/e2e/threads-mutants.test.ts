/**
 * The host side of a worker role's thread, driven directly (no API server): cache invalidations
 * queued while no thread runs (one per thing changed, at most MAX_QUEUED_CHANGES, handed over once),
 * requests in flight when the thread dies, and stop.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/common/config.ts';
import { Logger } from '../../src/common/log.ts';
import { EmbeddedLog } from '../../src/engines/embedded/log.ts';
import { ThreadedSchemaChecks } from '../../src/runtimes/schema-checks.ts';
import { RoleThread } from '../../src/runtimes/thread-host.ts';
import type { CompatibilityMode } from '../../src/schemas/compatibility.ts';
import { orderEvent, publish, startPipelineServer, subscribe } from '../support/pipeline.ts';
import { startReceiver } from '../support/receiver.ts';
import { ADMIN_TOKEN } from '../support/server.ts';
import { metric, waitFor, waitRouted } from '../support/wait.ts';

/** The worker threads of this process (Linux): their thread id and nice value. */
function workerThreads(): Array<{ tid: string; nice: number }> {
  return readdirSync('/proc/self/task').flatMap((tid) => {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'WorkerThread') return [];
      // Field 19 of stat is the nice value; the fields after the command name start at 3.
      const nice = Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
      return [{ tid, nice }];
    } catch {
      return []; // a thread that ended meanwhile
    }
  });
}

const INVALIDATIONS = 'webhooks_dispatcher_thread_invalidations_total';

/** One series of the thread's metrics (0 while absent). */
async function sample(thread: RoleThread, series: string): Promise<number> {
  const line = (await thread.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** Resolves once a thread answers again. */
function running(thread: RoleThread): Promise<boolean> {
  return waitFor('the dispatcher thread to run again', () =>
    thread.ping().then(
      () => true,
      () => undefined,
    ),
  );
}

describe('a dispatcher thread seen from its host', () => {
  const lines: string[] = [];
  let dir: string;
  let thread: RoleThread;
  const logged = (msg: string) => lines.filter((l) => JSON.parse(l).msg === msg).map((l) => JSON.parse(l));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webhooks-threads-'));
    const config = loadConfig({
      WEBHOOKS_DATA_DIR: dir,
      WEBHOOKS_ADMIN_TOKEN: ADMIN_TOKEN,
      WEBHOOKS_LOG_LEVEL: 'warn',
      WEBHOOKS_DEV: '1',
      // The lowest priority: what a thread gets whatever the test process's own nice value.
      WEBHOOKS_THREAD_NICE: '19',
    });
    thread = await RoleThread.start({
      role: 'dispatcher',
      config,
      logger: new Logger({ level: 'debug', sink: { write: (line) => lines.push(line) } }),
      onSubscriptionChanged: () => {},
    });
  });
  after(async () => {
    await thread.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('its thread runs at the configured nice value (Linux)', (t) => {
    if (process.platform !== 'linux') return t.skip('nice is per thread on Linux only');
    assert.ok(
      workerThreads().some((w) => w.nice === 19),
      `a worker thread at nice 19: ${JSON.stringify(workerThreads())}`,
    );
  });

  test('its log lines go through the host logger, marked with the thread', async () => {
    // A task the dispatcher cannot read, on an egress topic: dead-lettered, with a warning.
    const bus = new EmbeddedLog(join(dir, 'bus.db'));
    try {
      await bus.ensureTopic('egress.threads-test');
      await bus.publish([{ topic: 'egress.threads-test', key: 'k', value: 'not a task' }]);
    } finally {
      await bus.close();
    }
    const line = await waitFor('the thread’s warning in the host log', () =>
      logged('delivery dead-lettered').find((l) => l.thread === 'dispatcher'),
    );
    assert.equal(line.level, 'warn');
  });

  test('an invalidation resolves once the thread applied it: before a ping sent after it is answered', async () => {
    await thread.ping();
    const first = await Promise.race([
      thread.partnerChanged('p-answered').then(() => 'invalidation'),
      thread.ping().then(() => 'ping'),
    ]);
    assert.equal(first, 'invalidation');
  });

  test('invalidations queued while it restarts: one per thing changed, handed to the next thread once', async () => {
    await thread.ping();
    const before = await sample(thread, INVALIDATIONS);
    await thread.kill();
    const orders = { domain: 'orders', event: 'created' };
    // Repeats of one change replace each other; different subscriptions, schema versions and
    // partners are different changes: 5 in all.
    const changes = [
      thread.subscriptionChanged({ id: 's-1', ...orders }),
      thread.subscriptionChanged({ id: 's-1', ...orders }),
      thread.subscriptionChanged({ id: 's-2', ...orders }),
      thread.schemaChanged({ ...orders, version: 1 }),
      thread.schemaChanged({ ...orders, version: 2 }),
      thread.schemaChanged({ ...orders, version: 2 }),
      thread.partnerChanged('p-1'),
      thread.partnerChanged('p-1'),
    ];
    await Promise.all(changes); // resolved at once: kept for the next thread
    await running(thread);
    await thread.ping(); // answered after the queued invalidations were applied
    assert.equal(await sample(thread, INVALIDATIONS), before + 5);

    // The next restart gets only what was queued for it, not the earlier ones again.
    await thread.kill();
    await thread.partnerChanged('p-2');
    await running(thread);
    await thread.ping();
    assert.equal(await sample(thread, INVALIDATIONS), before + 6);
  });

  test('at most 10,000 invalidations wait for the next thread: the oldest go, said once in the log', async () => {
    await thread.ping();
    const before = await sample(thread, INVALIDATIONS);
    await thread.kill();
    for (let i = 0; i <= 10_000; i++) await thread.partnerChanged(`p-${i}`);
    await running(thread);
    await thread.ping();
    assert.equal(await sample(thread, INVALIDATIONS), before + 10_000);
    const warned = logged(
      'cache invalidations were dropped while a worker thread restarted (its caches started empty)',
    );
    assert.equal(warned.length, 1);
    assert.equal(warned[0].dropped, 1);
    assert.equal(warned[0].kept, 10_000);

    // The count starts again: a restart that drops nothing says nothing.
    await thread.kill();
    await thread.partnerChanged('p-again');
    await running(thread);
    await thread.ping();
    assert.equal(await sample(thread, INVALIDATIONS), before + 10_001);
    assert.equal(
      logged('cache invalidations were dropped while a worker thread restarted (its caches started empty)')
        .length,
      1,
    );
  });

  test('requests in flight when the thread dies: a ping fails at once with the exit, an invalidation resolves', async () => {
    await thread.ping();
    const killed = thread.kill();
    const ping = thread.ping();
    const invalidation = thread.partnerChanged('p-in-flight');
    await assert.rejects(ping, /the dispatcher thread exited/);
    await invalidation; // never rejects: the next thread starts with empty caches
    await killed;
    await running(thread);
  });

  test('stop: the thread drains and ends in time, and is not started again', async () => {
    await thread.ping();
    const starts = thread.starts;
    const restartsLogged = logged('a worker thread exited; starting it again').length;
    await thread.stop();
    assert.deepEqual(logged('a worker thread did not stop in time; terminating it'), []);
    assert.deepEqual(logged('a worker thread stopped with an error'), []);
    assert.equal(logged('a worker thread exited; starting it again').length, restartsLogged);
    await assert.rejects(thread.ping(), /not running/);
    assert.equal(thread.starts, starts);
  });
});

describe('the schema-check thread', () => {
  test('it runs at the nice value asked for (Linux)', async (t) => {
    if (process.platform !== 'linux') return t.skip('nice is per thread on Linux only');
    const before = new Set(workerThreads().map((w) => w.tid));
    const checks = new ThreadedSchemaChecks({ nice: 19 });
    try {
      assert.deepEqual((await checks.document({ type: 'string' }, 'schema')).problems, []);
      const started = workerThreads().filter((w) => !before.has(w.tid));
      assert.deepEqual(
        started.map((w) => w.nice),
        [19],
      );
    } finally {
      await checks.close();
    }
  });

  test('a check that throws in the thread fails with its error (not as too complex)', async () => {
    const checks = new ThreadedSchemaChecks();
    try {
      await assert.rejects(
        checks.compatibility(
          { type: 'object' },
          [{ version: 1, schema: { type: 'object' } }],
          'NOPE' as CompatibilityMode,
        ),
        (err: Error & { code?: string }) =>
          /unknown compatibility mode "NOPE"/.test(err.message) && err.code === undefined,
      );
    } finally {
      await checks.close();
    }
  });

  test('the thread of a check past its time limit ends, and so does the thread of closed checks (Linux)', async (t) => {
    if (process.platform !== 'linux') return t.skip('threads are listed from /proc on Linux only');
    const ended = (tids: string[]) => () => {
      const alive = new Set(workerThreads().map((w) => w.tid));
      return tids.every((tid) => !alive.has(tid)) ? true : undefined;
    };
    const pattern = Object.fromEntries(
      Array.from({ length: 250 }, (_, i) => [`p${i}`, { type: 'string', pattern: '^[a-z]{1,8}$' }]),
    );
    let known = new Set(workerThreads().map((w) => w.tid));
    const started = () => {
      const fresh = workerThreads()
        .filter((w) => !known.has(w.tid))
        .map((w) => w.tid);
      known = new Set([...known, ...fresh]);
      return fresh;
    };
    const strict = new ThreadedSchemaChecks({ timeoutMs: 1 });
    try {
      const first = await strict.document({ type: 'object', properties: pattern }, 'schema');
      assert.equal(first.problems[0]!.code, 'schema_too_complex');
      const timedOut = started();
      assert.ok(timedOut.length <= 1, 'ended already, or listed once');
      await waitFor('the thread of the check past its limit to end', ended(timedOut));
    } finally {
      await strict.close();
    }
    const checks = new ThreadedSchemaChecks();
    assert.deepEqual((await checks.document({ type: 'string' }, 'schema')).problems, []);
    const running = started();
    assert.equal(running.length, 1);
    await checks.close();
    await waitFor('the thread of closed checks to end', ended(running));
  });

  test('it does not keep the process alive: a process that checked a schema and never closed the checks exits', async () => {
    const module = new URL('../../src/runtimes/schema-checks.ts', import.meta.url).href;
    const script = [
      `const { ThreadedSchemaChecks } = await import(${JSON.stringify(module)});`,
      'const checks = new ThreadedSchemaChecks();',
      "const result = await checks.document({ type: 'string' }, 'schema');",
      'console.log(JSON.stringify(result.problems));',
    ].join('\n');
    const dir = await mkdtemp(join(tmpdir(), 'webhooks-checks-'));
    const file = join(dir, 'check.mjs');
    await writeFile(file, script);
    try {
      // The timeout only turns a hang into a failure.
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, [file], { timeout: 60_000 }, (err, out) =>
          err ? reject(err) : resolve(out),
        );
      });
      assert.equal(stdout.trim(), '[]');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a subscription disabled in the dispatcher thread', () => {
  test('reaches the processor thread at once, with no admin change to help: its next event is not routed there', async () => {
    const server = await startPipelineServer();
    const gone = await startReceiver({ answer: () => ({ status: 410 }) });
    try {
      const { subscriptionId } = await subscribe(server, gone);
      const invalidations = 'webhooks_processor_thread_invalidations_total';
      const before = await metric(server.url, invalidations);
      const first = orderEvent();
      await publish(server, first);
      await waitFor('the subscription disabled after the 410', async () => {
        const sub = await server.request('GET', `/admin/subscriptions/${subscriptionId}`);
        return sub.body.status === 'DISABLED';
      });
      // The dispatcher's thread told the host, which told the processor's thread.
      await waitFor('the processor thread invalidated', async () =>
        (await metric(server.url, invalidations)) > before ? true : undefined,
      );
      const tasks = await metric(server.url, 'delivery_tasks_published');
      const second = orderEvent();
      await publish(server, second);
      await waitRouted(server, second);
      assert.equal(
        await metric(server.url, 'delivery_tasks_published'),
        tasks,
        'the second event was routed to no subscription (its only one is disabled)',
      );
    } finally {
      await server.stop();
      await gone.close();
    }
  });
});

describe('a partner made INACTIVE on the API thread', () => {
  test('reaches the dispatcher thread’s cache at once: its next delivery is held, not sent', async () => {
    const server = await startPipelineServer();
    const receiver = await startReceiver();
    try {
      const { partnerId } = await subscribe(server, receiver);
      await publish(server, orderEvent({ amount: 1 }));
      await receiver.waitFor(1); // the dispatcher thread has the partner cached (ACTIVE)
      const patched = await server.request('PATCH', `/admin/partners/${partnerId}`, { status: 'INACTIVE' });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      await publish(server, orderEvent({ amount: 2 }));
      await waitFor('the second delivery held', async () =>
        (await metric(server.url, 'webhook_deliveries_total{outcome="held_paused"}')) === 1
          ? true
          : undefined,
      );
      assert.equal(receiver.received.length, 1);
    } finally {
      await server.stop();
      await receiver.close();
    }
  });
});
