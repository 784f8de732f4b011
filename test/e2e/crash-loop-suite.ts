/**
 * A crash loop that counts: while events are published steadily to an API process that stays up,
 * the processor and dispatcher processes are SIGKILLed at random moments (seeded: the seed is
 * printed, CRASH_LOOP_SEED=<seed> replays the schedule) and started again, at least 20 times.
 * Then, with the ledger on (the default): every accepted event reached the partner with a 2xx,
 * every request for one event carried the same webhook-id, and every duplicate repeats a
 * webhook-id already answered 2xx before a dispatcher was killed (POST-then-crash, the one window
 * left). The receiver fails the first attempt of ~10 % of the events with a 503, so retries run
 * through the crashes too.
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { api, exitOf, killAll, type StartedCli, startCli } from '../support/cli.ts';
import {
  type CountedRequest,
  seededRandom,
  startCountingReceiver,
  startPublisher,
} from '../support/crash-loop.ts';

const TOKEN = 'crash-loop-test-token-0123456789';
const ENV = {
  WEBHOOKS_DEV: '1',
  WEBHOOKS_ADMIN_TOKEN: TOKEN,
  WEBHOOKS_LOG_LEVEL: 'error',
  // A processor retry (a transient failure, e.g. a lock wait cut short) comes back within the test.
  WEBHOOKS_PROCESSOR_RETRY_DELAY_MS: '1000',
};
const SEED = Number(process.env.CRASH_LOOP_SEED ?? randomInt(2 ** 31));
const MIN_KILLS = 20;
/** The receiver answers after this long, so requests are in flight when a dispatcher dies. */
const ANSWER_DELAY_MS = 20;
/** How much later than a kill the receiver may read a request the killed process sent before it. */
const KILL_SLACK_MS = 1_000;
/** Claim (attempt deadline + 5 s) minus the longest an attempt may take to send: 5 s, less KILL_SLACK_MS. */
const MIN_RESEND_GAP_MS = 4_000;
/** How long the pipeline may take to deliver everything after the last restart. */
const DRAIN_TIMEOUT_MS = 180_000;

type Role = 'processor' | 'dispatcher';

interface Kill {
  at: number;
  role: Role;
  /** What the process had done since it started (events processed, or tasks handled); -1 unknown. */
  work: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Events processed (processor) or delivery tasks handled (dispatcher) by a process since it started. */
async function workDone(proc: StartedCli, role: Role): Promise<number> {
  try {
    const text = await (await fetch(`${proc.url}/metrics`, { signal: AbortSignal.timeout(500) })).text();
    const pattern =
      role === 'processor' ? /^events_processed (\d+)/gm : /^webhook_deliveries_total\{[^}]*\} (\d+)/gm;
    let sum = 0;
    for (const m of text.matchAll(pattern)) sum += Number(m[1]);
    return sum;
  } catch {
    return -1;
  }
}

export interface CrashLoopEngines {
  /** The WEBHOOKS_* settings of the engines (besides the data dir). */
  env: () => Promise<Record<string, string>>;
  /** Messages not yet committed by the processor and dispatcher groups (0 once everything is handled). */
  lag: (dataDir: string) => Promise<number>;
}

/** Registers the crash loop on one mix of engines. */
export function runCrashLoop(engines: string, options: CrashLoopEngines): void {
  describe(`crash loop (child processes, SIGKILL; ${engines})`, () => {
    const cleanup: Array<() => Promise<unknown>> = [];
    after(async () => {
      killAll();
      for (const c of cleanup.reverse()) await c().catch(() => {});
    });

    test('no accepted event is lost and duplicates only repeat a webhook-id, through 20+ SIGKILLs under load', {
      timeout: 330_000,
    }, async (t) => {
      const report = (line: string) => {
        t.diagnostic(line);
        console.log(`crash-loop: ${line}`);
      };
      report(`seed ${SEED} (replay with CRASH_LOOP_SEED=${SEED})`);
      const random = seededRandom(SEED);
      const began = Date.now();

      const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-crash-loop-'));
      cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
      const partner = await startCountingReceiver(ANSWER_DELAY_MS);
      cleanup.push(() => partner.close());
      const env = { ...ENV, ...(await options.env()) };
      const start = (role: string) =>
        startCli(['start', '--role', role, '--port', '0', '--data-dir', dataDir], env);

      const apiProcess = await start('api');
      const schema = {
        domain: 'orders',
        event: 'created',
        schema: {
          type: 'object',
          required: ['eventId', 'seq'],
          properties: { eventId: { type: 'string' }, seq: { type: 'integer' } },
        },
      };
      assert.equal((await api(apiProcess.url, TOKEN, 'POST', '/admin/schemas', schema)).status, 201);
      // Short timeouts: a claim cut off by a crash lapses in about 11 s (2 s queue + 4 s + 5 s margin).
      const partnerBody = {
        id: 'acme',
        name: 'ACME',
        delivery: { timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 1000 } },
      };
      assert.equal((await api(apiProcess.url, TOKEN, 'POST', '/admin/partners', partnerBody)).status, 201);
      const sub = await api(apiProcess.url, TOKEN, 'POST', '/admin/subscriptions', {
        partnerId: 'acme',
        domain: 'orders',
        event: 'created',
        url: `${partner.receiver.url}/hooks`,
        retry: { scheduleSeconds: [1, 1, 1, 1, 1] },
      });
      assert.equal(sub.status, 201, JSON.stringify(sub.body));
      partner.receiver.secret = sub.body.secret;

      // The workers start after the subscription exists, so their caches see it at once.
      const workers: Record<Role, StartedCli> = {
        processor: await start('processor'),
        dispatcher: await start('dispatcher'),
      };
      const publisher = startPublisher(apiProcess.url, TOKEN, {
        batchSize: 25,
        intervalMs: 100,
        type: 'orders.created',
      });
      cleanup.push(() => publisher.stop());
      const firstDeadline = Date.now() + 30_000;
      while (partner.delivered.size === 0) {
        assert.ok(Date.now() < firstDeadline, 'nothing was delivered within 30 s of the first publish');
        await sleep(50);
      }

      // The crash loop: pick the processor, the dispatcher or both; in most rounds first wait until
      // they work (a restarted member takes its partitions once the dead one's leases lapse, ~3 s);
      // then a random pause, SIGKILL, and start them again.
      const chaosBegan = Date.now();
      const kills: Kill[] = [];
      while (kills.length < MIN_KILLS) {
        const pick = random();
        const roles: Role[] =
          pick < 0.35 ? ['processor'] : pick < 0.7 ? ['dispatcher'] : ['processor', 'dispatcher'];
        if (random() < 0.6) {
          const until = Date.now() + 5_000;
          for (const role of roles) {
            while (Date.now() < until && (await workDone(workers[role], role)) <= 0) await sleep(50);
          }
        }
        await sleep(100 + Math.floor(random() * 1400));
        const work = await Promise.all(roles.map((role) => workDone(workers[role], role)));
        roles.forEach((role, i) => {
          kills.push({ at: Date.now(), role, work: work[i]! });
          workers[role].child.kill('SIGKILL');
        });
        await Promise.all(roles.map((role) => exitOf(workers[role].child)));
        const restarted = await Promise.all(roles.map((role) => start(role)));
        roles.forEach((role, i) => {
          workers[role] = restarted[i]!;
        });
      }
      await publisher.stop();
      const chaosMs = Date.now() - chaosBegan;
      const accepted = publisher.accepted;

      // Wait for facts: every accepted event answered 2xx, and nothing left in the log for either group
      // (no retry waiting, no task redelivered after a crash still to come).
      const drainBegan = Date.now();
      const missing = () => [...accepted].filter((id) => !partner.delivered.has(id));
      let lag = -1;
      for (;;) {
        const left = missing();
        try {
          lag = await options.lag(dataDir);
        } catch {
          lag = -1;
        }
        if (left.length === 0 && lag === 0) break;
        if (Date.now() - drainBegan > DRAIN_TIMEOUT_MS) {
          const states = await Promise.all(
            left.slice(0, 5).map(async (id) => {
              const res = await api(apiProcess.url, TOKEN, 'GET', `/admin/deliveries?eventId=${id}`);
              return `${id}: ${JSON.stringify(res.body?.items ?? res.body)}`;
            }),
          );
          assert.fail(
            `after ${DRAIN_TIMEOUT_MS / 1000} s (seed ${SEED}): ${left.length} of ${accepted.size} accepted events ` +
              `never answered 2xx, consumer lag ${lag}. Missing: ${left.slice(0, 50).join(', ')}` +
              `\nTheir deliveries:\n${states.join('\n')}`,
          );
        }
        await sleep(200);
      }
      const drainMs = Date.now() - drainBegan;

      // Counting.
      const requests = partner.requests;
      const idsOfEvent = new Map<string, Set<string>>();
      const eventsOfId = new Map<string, Set<string>>();
      const successes = new Map<string, CountedRequest[]>();
      for (const r of requests) {
        if (!idsOfEvent.has(r.eventId)) idsOfEvent.set(r.eventId, new Set());
        idsOfEvent.get(r.eventId)!.add(r.webhookId);
        if (!eventsOfId.has(r.webhookId)) eventsOfId.set(r.webhookId, new Set());
        eventsOfId.get(r.webhookId)!.add(r.eventId);
        if (r.status < 300) {
          if (!successes.has(r.webhookId)) successes.set(r.webhookId, []);
          successes.get(r.webhookId)!.push(r);
        }
      }
      const delivered2xx = [...successes.values()].reduce((n, list) => n + list.length, 0);
      const duplicates = delivered2xx - successes.size;
      const dispatcherKills = kills.filter((k) => k.role === 'dispatcher');
      const counts = {
        kills: kills.length,
        processorKills: kills.filter((k) => k.role === 'processor').length,
        dispatcherKills: dispatcherKills.length,
        killsOfWorkingProcess: kills.filter((k) => k.work > 0).length,
        // Requests the receiver was still answering when a dispatcher died.
        requestsInFlightAtKills: dispatcherKills.reduce(
          (n, k) => n + requests.filter((r) => r.at <= k.at && r.at > k.at - ANSWER_DELAY_MS).length,
          0,
        ),
        accepted: accepted.size,
        uncertain: publisher.uncertain.size,
        publishFailures: publisher.failures.length,
        requests: requests.length,
        deliveries2xx: delivered2xx,
        distinctWebhookIds: successes.size,
        duplicates,
        retries503: partner.failedOnPurpose(),
        chaosSeconds: Math.round(chaosMs / 100) / 10,
        drainSeconds: Math.round(drainMs / 100) / 10,
        totalSeconds: Math.round((Date.now() - began) / 100) / 10,
      };
      report(JSON.stringify(counts));
      if (publisher.failures.length > 0)
        report(`publish failures: ${publisher.failures.slice(0, 5).join(' | ')}`);

      // Zero lost (waited for above), and nothing delivered that was never published.
      assert.deepEqual(missing(), []);
      const unknown = [...partner.delivered].filter(
        (id) => !accepted.has(id) && !publisher.uncertain.has(id),
      );
      assert.deepEqual(unknown, [], 'only published events are delivered');
      // One webhook-id per event × subscription, and one event per webhook-id.
      const split = [...idsOfEvent].filter(([, ids]) => ids.size !== 1);
      assert.deepEqual(
        split.map(([event, ids]) => `${event}: ${[...ids].join(', ')}`),
        [],
        'an event reached the partner under more than one webhook-id',
      );
      const shared = [...eventsOfId].filter(([, events]) => events.size !== 1);
      assert.deepEqual(
        shared.map(([id, events]) => `${id}: ${[...events].join(', ')}`),
        [],
        'a webhook-id was used for more than one event',
      );
      // Every duplicate repeats a webhook-id answered 2xx before, with a dispatcher kill in between
      // (the partner got the request, the process died before it recorded the answer). A request
      // sent just before a kill may be read here just after it: KILL_SLACK_MS allows for that. And
      // it comes only once the dead process's ledger claim lapsed: the claim lasts 5 s longer than
      // the attempt's deadline, so two requests with one webhook-id are at least ~5 s apart.
      const unexplained: string[] = [];
      let minGapMs = Number.POSITIVE_INFINITY;
      for (const [id, list] of successes) {
        list.forEach((dup, i) => {
          if (i === 0) return;
          const first = list[0]!;
          const previous = list[i - 1]!;
          minGapMs = Math.min(minGapMs, dup.at - previous.at);
          const crashed = dispatcherKills.some((k) => k.at >= first.at - KILL_SLACK_MS && k.at <= dup.at);
          if (!crashed)
            unexplained.push(`${id} (event ${dup.eventId}): 2xx at ${first.at}, again at ${dup.at}`);
          if (dup.at - previous.at < MIN_RESEND_GAP_MS)
            unexplained.push(
              `${id} (event ${dup.eventId}): sent again ${dup.at - previous.at} ms after a 2xx`,
            );
        });
      }
      report(
        `shortest time between two 2xx requests of one webhook-id: ${duplicates ? `${minGapMs} ms` : 'none'}`,
      );
      assert.deepEqual(
        unexplained,
        [],
        'duplicates only after a dispatcher crash, once its ledger claim lapsed',
      );
      assert.ok(
        partner.receiver.received.every((d) => d.verified === true),
        'every request carries a valid Standard Webhooks signature',
      );
      // Nothing failed for good along the way.
      const dlq = await api(apiProcess.url, TOKEN, 'GET', '/admin/dlq');
      assert.deepEqual(dlq.body.items, [], 'no dead letters');
      const failed = await api(apiProcess.url, TOKEN, 'GET', '/admin/deliveries?status=FAILED');
      assert.deepEqual(failed.body.items, [], 'no FAILED deliveries');
      assert.ok(counts.retries503 > 0, 'the receiver made some first attempts fail');
      assert.ok(kills.length >= MIN_KILLS);

      for (const p of [apiProcess, workers.processor, workers.dispatcher]) p.child.kill('SIGKILL');
    });
  });
}
