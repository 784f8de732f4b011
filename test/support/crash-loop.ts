/**
 * Helpers for the crash-loop test: a seeded RNG, a receiver that counts deliveries per event and
 * webhook-id (and fails the first attempt of some events), a steady publisher, and a look at the
 * embedded log's consumer-group lag (whether anything is still to be processed).
 */
import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { startReceiver, type TestReceiver } from './receiver.ts';

/** mulberry32: a small seeded PRNG in [0, 1), so a run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whether the receiver fails the first attempt of this event: ~10 % of events, by a hash of the id. */
export function failsFirstAttempt(eventId: string): boolean {
  return createHash('sha256').update(eventId).digest()[0]! < 26;
}

export interface CountedRequest {
  at: number;
  webhookId: string;
  eventId: string;
  seq: number;
  status: number;
}

export interface CountingReceiver {
  receiver: TestReceiver;
  requests: CountedRequest[];
  /** Event ids answered with a 2xx at least once. */
  delivered: Set<string>;
  /** How many requests were answered 503 (a first attempt failed on purpose). */
  failedOnPurpose(): number;
  close(): Promise<void>;
}

/**
 * An HTTP receiver on loopback: records every request's webhook-id and event (the body carries
 * `eventId` and `seq`), answers 503 to the first request of the events `failsFirstAttempt` picks,
 * 204 otherwise, after `delayMs` (requests stay in flight a while, so a crash can cut them off).
 * A request counts as received (and, for its status, answered) when its body has arrived.
 */
export async function startCountingReceiver(delayMs = 0): Promise<CountingReceiver> {
  const requests: CountedRequest[] = [];
  const delivered = new Set<string>();
  const failedOnce = new Set<string>();
  let failed = 0;
  const receiver = await startReceiver({
    tls: false,
    answer: (_n, d) => {
      const eventId = String(d.json?.eventId);
      let status = 204;
      if (failsFirstAttempt(eventId) && !failedOnce.has(eventId)) {
        failedOnce.add(eventId);
        failed += 1;
        status = 503;
      }
      requests.push({
        at: d.at,
        webhookId: d.headers['webhook-id'] ?? '',
        eventId,
        seq: Number(d.json?.seq),
        status,
      });
      if (status < 300) delivered.add(eventId);
      return { status, delayMs };
    },
  });
  return {
    receiver,
    requests,
    delivered,
    failedOnPurpose: () => failed,
    close: () => receiver.close(),
  };
}

export interface Publisher {
  /** Event ids answered 202. */
  accepted: Set<string>;
  /** Event ids of batches without an answer or with another status (maybe accepted, maybe not). */
  uncertain: Set<string>;
  /** Non-202 answers and transport errors, for the report. */
  failures: string[];
  /** Stops publishing and waits for the batch in flight. */
  stop(): Promise<void>;
}

/**
 * Publishes `batchSize` events every `intervalMs` to POST /events (batch mode) until stopped;
 * each event has a unique id and its sequence number in `data`.
 */
export function startPublisher(
  url: string,
  token: string,
  options: { batchSize: number; intervalMs: number; type: string },
): Publisher {
  const accepted = new Set<string>();
  const uncertain = new Set<string>();
  const failures: string[] = [];
  let seq = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      const batch = Array.from({ length: options.batchSize }, () => {
        const id = randomUUID();
        return {
          specversion: '1.0',
          id,
          source: '/crash-loop',
          type: options.type,
          data: { eventId: id, seq: seq++ },
        };
      });
      let status = 0;
      try {
        const res = await fetch(`${url}/events`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/cloudevents-batch+json',
          },
          body: JSON.stringify(batch),
          signal: AbortSignal.timeout(15_000),
        });
        status = res.status;
        const text = await res.text();
        if (status !== 202) failures.push(`HTTP ${status}: ${text.slice(0, 200)}`);
      } catch (err) {
        failures.push(String(err));
      }
      for (const e of batch) (status === 202 ? accepted : uncertain).add(e.id);
      const wait = options.intervalMs - (Date.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return {
    accepted,
    uncertain,
    failures,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/**
 * How many records the consumer groups of the embedded log in `dataDir` have not committed yet
 * (ingress and egress, and the retry tiers, including retries not due yet): 0 once the pipeline
 * has nothing left to do. Read from `bus.db` with a read-only connection.
 */
export function consumerLag(dataDir: string): number {
  const db = new DatabaseSync(join(dataDir, 'bus.db'), { readOnly: true });
  try {
    db.exec('PRAGMA busy_timeout = 2000');
    const row = db
      .prepare(
        `SELECT COALESCE(SUM(p.next_offset - COALESCE(c.next_offset, 0)), 0) AS lag
           FROM group_prefix g
           JOIN partition_log p ON substr(p.topic, 1, length(g.prefix)) = g.prefix
           LEFT JOIN committed_offset c ON c.grp = g.grp AND c.topic = p.topic AND c.part = p.part`,
      )
      .get() as { lag: number };
    return Number(row.lag);
  } finally {
    db.close();
  }
}
