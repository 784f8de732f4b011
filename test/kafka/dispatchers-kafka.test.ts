/**
 * Two dispatcher processes in one Kafka consumer group (N processes on N machines, here on one):
 * they share the egress partitions — both deliver — and when one is SIGKILLed mid-stream the other
 * takes its partitions over once the group's session timeout has passed: every accepted event
 * reaches the partner, under one webhook-id each.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { api, exitOf, killAll, type StartedCli, startCli } from '../support/cli.ts';
import { startCountingReceiver, startPublisher } from '../support/crash-loop.ts';
import { broker, stopBroker } from '../support/kafka.ts';
import { waitFor } from '../support/wait.ts';

const TOKEN = 'dispatchers-test-token-0123456789';
const SUBSCRIPTIONS = 6;

/** Delivery requests a dispatcher process has made since it started (its own metrics). */
async function deliveriesBy(proc: StartedCli): Promise<number> {
  const text = await (
    await fetch(`${proc.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  ).text();
  let sum = 0;
  for (const m of text.matchAll(/^webhook_deliveries_total\{[^}]*\} (\d+)/gm)) sum += Number(m[1]);
  return sum;
}

describe('two dispatcher processes on Kafka', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    killAll();
    for (const c of cleanup.reverse()) await c().catch(() => {});
    await stopBroker();
  });

  test('share the partitions, and one takes over the other’s after it is SIGKILLed; nothing is lost', {
    timeout: 180_000,
  }, async () => {
    const b = await broker();
    const dataDir = await mkdtemp(join(tmpdir(), 'webhooks-dispatchers-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const env = {
      WEBHOOKS_DEV: '1',
      WEBHOOKS_ADMIN_TOKEN: TOKEN,
      WEBHOOKS_LOG_LEVEL: 'error',
      WEBHOOKS_BUS: 'kafka',
      WEBHOOKS_KAFKA_BROKERS: b.bootstrap,
      WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS: '6000',
      WEBHOOKS_TOPIC_PARTITIONS: '8',
    };
    const start = (role: string) =>
      startCli(['start', '--role', role, '--port', '0', '--data-dir', dataDir], env);
    const partner = await startCountingReceiver(5);
    cleanup.push(() => partner.close());
    const front = await start('api,processor');
    const schema = {
      domain: 'orders',
      event: 'created',
      schema: { type: 'object', required: ['eventId'], properties: { eventId: { type: 'string' } } },
    };
    assert.equal((await api(front.url, TOKEN, 'POST', '/admin/schemas', schema)).status, 201);
    // Tasks of one subscription stay on one egress partition (in order): several subscriptions
    // spread the work over both members.
    for (let i = 0; i < SUBSCRIPTIONS; i++) {
      const partnerId = `acme${i}`;
      const p = await api(front.url, TOKEN, 'POST', '/admin/partners', { id: partnerId, name: `ACME ${i}` });
      assert.equal(p.status, 201);
      const sub = await api(front.url, TOKEN, 'POST', '/admin/subscriptions', {
        partnerId,
        domain: 'orders',
        event: 'created',
        url: `${partner.receiver.url}/hooks/${partnerId}`,
        retry: { scheduleSeconds: [1, 1, 1, 1, 1] },
      });
      assert.equal(sub.status, 201, JSON.stringify(sub.body));
    }
    const dispatchers = [await start('dispatcher'), await start('dispatcher')];

    const publisher = startPublisher(front.url, TOKEN, {
      batchSize: 20,
      intervalMs: 50,
      type: 'orders.created',
    });
    cleanup.push(() => publisher.stop());
    // Both members hold egress partitions: both deliver.
    await waitFor(
      'both dispatchers delivering',
      async () => (await Promise.all(dispatchers.map(deliveriesBy))).every((n) => n > 0),
      60_000,
      200,
    );
    const [victim, survivor] = dispatchers as [StartedCli, StartedCli];
    const before = await deliveriesBy(survivor);
    victim.child.kill('SIGKILL');
    await exitOf(victim.child);
    // Events go on being published for a while after the kill, some onto the dead member's partitions.
    const acceptedAtKill = publisher.accepted.size;
    await waitFor('more events accepted', () => publisher.accepted.size > acceptedAtKill + 200, 30_000);
    await publisher.stop();
    const accepted = publisher.accepted;
    // Every accepted event answered 2xx under as many webhook-ids as there are subscriptions.
    const succeeded = new Map<string, Set<string>>();
    let seen = 0;
    const missing = () => {
      for (const r of partner.requests.slice(seen)) {
        seen += 1;
        if (r.status >= 300) continue;
        if (!succeeded.has(r.eventId)) succeeded.set(r.eventId, new Set());
        succeeded.get(r.eventId)!.add(r.webhookId);
      }
      return [...accepted].filter((id) => (succeeded.get(id)?.size ?? 0) < SUBSCRIPTIONS);
    };
    await waitFor('every accepted event delivered', () => missing().length === 0, 90_000, 200).catch(() => {
      assert.fail(`${missing().length} of ${accepted.size} accepted events never delivered`);
    });
    assert.ok((await deliveriesBy(survivor)) > before, 'the survivor went on delivering');
    // One webhook-id per event × subscription: no event was sent under more ids than that.
    const ids = new Map<string, Set<string>>();
    for (const r of partner.requests) {
      if (!ids.has(r.eventId)) ids.set(r.eventId, new Set());
      ids.get(r.eventId)!.add(r.webhookId);
    }
    assert.deepEqual(
      [...ids].filter(([, set]) => set.size !== SUBSCRIPTIONS).map(([id]) => id),
      [],
    );
    assert.ok(accepted.size > 100, `${accepted.size} events accepted`);
  });
});
