/**
 * What the SQLite store's statements on the delivery path cost, one by one: the dispatcher's
 * delivery read, ledger claim, first attempt (delivery row + attempt row) and ledger completion,
 * and the commits, in transactions of `group` deliveries as group commit makes them. The processor's
 * route records are written first, as in the pipeline. Optionally another connection commits
 * between the transactions (`resets`), which empties this connection's page cache, as the other
 * thread's commits do in the platform.
 *
 *   ./node_modules/.bin/node bench/store-statements.ts [deliveries=12000] [group=60]
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { deliveryIdFor } from '../src/common/delivery-task.ts';
import type { DeliveryRecord } from '../src/common/model.ts';
import { openDatabase } from '../src/engines/sqlite/database.ts';
import { SqliteDeliveries } from '../src/engines/sqlite/deliveries.ts';
import { SqliteLedger } from '../src/engines/sqlite/ledger.ts';
import { MIGRATIONS } from '../src/engines/sqlite/migrations.ts';

const total = Number(process.argv[2] ?? 12_000);
const group = Number(process.argv[3] ?? 60);
const dir = await mkdtemp(join(tmpdir(), 'bench-store-'));
const db = openDatabase(join(dir, 'store.db'), MIGRATIONS, { autoCheckpointPages: 0 });
const other = new DatabaseSync(join(dir, 'store.db'));
other.exec('CREATE TABLE poke (k INTEGER PRIMARY KEY, v INTEGER)');
const poke = other.prepare('INSERT OR REPLACE INTO poke VALUES (1, ?)');
const deliveries = new SqliteDeliveries(db);
const ledger = new SqliteLedger(db);

let seq = 0;
/** Ids as the pipeline makes them, in the order it writes them: one partition's offsets. */
function record(): DeliveryRecord {
  const now = new Date().toISOString();
  const eventId = randomUUID();
  const subscriptionId = '01a22819-29a9-763c-b6de-4c3f68c37a0a';
  return {
    id: deliveryIdFor(
      { ingestedAt: Date.now(), partition: 1, offset: seq++ },
      '/bench',
      eventId,
      subscriptionId,
    ),
    eventId,
    eventSource: '/bench',
    eventType: 'orders.created',
    subscriptionId,
    partnerId: 'bench',
    status: 'PENDING',
    attempts: 0,
    correlationId: randomUUID(),
    createdAt: now,
    updatedAt: now,
  };
}

const spent: Record<string, number> = {};
function timed(what: string, fn: () => unknown): void {
  const t = process.hrtime.bigint();
  fn();
  spent[what] = (spent[what] ?? 0) + Number(process.hrtime.bigint() - t) / 1000;
}

async function run(count: number, resets: boolean): Promise<Record<string, number>> {
  for (const k of Object.keys(spent)) delete spent[k];
  for (let done = 0; done < count; done += group) {
    const records = Array.from({ length: group }, record);
    db.exec('BEGIN IMMEDIATE');
    for (const r of records)
      await deliveries.recordRouting({ id: r.eventId, source: r.eventSource }, [r.id], r.createdAt);
    db.exec('COMMIT');
    if (resets) poke.run(done);
    // In one read transaction, as the store batches the reads of one turn.
    timed('read', () => {
      db.exec('BEGIN');
      for (const r of records) deliveries.read(r.id);
      db.exec('COMMIT');
    });
    timed('commit', () => db.exec('BEGIN IMMEDIATE'));
    const tokens = new Map<string, string>();
    timed('claim', () => {
      // The statements run synchronously; the results arrive a microtask later.
      for (const r of records)
        void ledger.claim(r.id, 30_000, Date.now()).then((c) => {
          if (c.status === 'claimed') tokens.set(r.id, c.token);
        });
    });
    await Promise.resolve();
    timed('commit', () => db.exec('COMMIT'));
    if (resets) poke.run(done + 1);
    timed('commit', () => db.exec('BEGIN IMMEDIATE'));
    timed('first attempt', () => {
      for (const r of records) {
        const at = r.createdAt;
        deliveries.recordAttempt(
          {
            deliveryId: r.id,
            attempt: 1,
            at,
            latencyMs: 3,
            statusCode: 204,
            responseBody: '',
            outcome: 'success',
          },
          { status: 'SUCCESS', attempts: 1, updatedAt: at, completedAt: at, lastStatusCode: 204 },
          r,
        );
      }
    });
    timed('complete', () => {
      for (const r of records) void ledger.complete(r.id, tokens.get(r.id) ?? '', 7 * 86_400_000, Date.now());
    });
    timed('commit', () => db.exec('COMMIT'));
    if (done % 3000 === 0) timed('checkpoint', () => db.exec('PRAGMA wal_checkpoint(PASSIVE)'));
  }
  return Object.fromEntries(Object.entries(spent).map(([k, v]) => [k, v / count]));
}

const line = (r: Record<string, number>) =>
  `${Object.entries(r)
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join(' · ')} | total ${Object.values(r)
    .reduce((a, b) => a + b, 0)
    .toFixed(1)} µs per delivery`;

await run(60_000, false); // a table of some size first
console.log(
  `store statements, ${group} deliveries per transaction (µs per delivery, wall time on one thread):`,
);
console.log(`  own cache kept:            ${line(await run(total, false))}`);
console.log(`  cache emptied per commit:  ${line(await run(total, true))}`);
other.close();
db.close();
await rm(dir, { recursive: true, force: true });
