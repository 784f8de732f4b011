/** Record builders for tests: valid by default, any field overridable. */
import type {
  DeadLetterRecord,
  DeliveryAttempt,
  DeliveryRecord,
  PartnerRecord,
  SchemaRecord,
  SubscriptionRecord,
} from '../../src/common/model.ts';
import type { IdempotencyLedger } from '../../src/common/ports/store.ts';

const NOW = '2026-01-01T00:00:00.000Z';
let counter = 0;

/** A unique, time-ordered-looking id for tests. */
export function testId(prefix = ''): string {
  counter += 1;
  return `${prefix}0190a000-0000-7000-8000-${String(counter).padStart(12, '0')}`;
}

/** The fixtures' clock (2026-01-01T00:00:00Z) moved by `seconds`, as an ISO timestamp. */
export function timeAt(seconds: number): string {
  return new Date(Date.parse(NOW) + seconds * 1000).toISOString();
}

export function schemaRecord(overrides: Partial<SchemaRecord> = {}): SchemaRecord {
  const domain = overrides.domain ?? 'orders';
  const event = overrides.event ?? 'created';
  const version = overrides.version ?? 1;
  return {
    id: testId(),
    domain,
    event,
    version,
    status: 'ACTIVE',
    schema: { type: 'object', properties: { id: { type: 'string' } } },
    fingerprint: 'f'.repeat(64),
    compatibility: 'BACKWARD',
    ingressTopic: `ingress.${domain}.${event}.v${version}`,
    createdAt: NOW,
    updatedAt: NOW,
    revision: 1,
    ...overrides,
  };
}

export function partnerRecord(overrides: Partial<PartnerRecord> = {}): PartnerRecord {
  return {
    id: 'acme',
    name: 'ACME Corp',
    status: 'ACTIVE',
    metadata: { tier: 'gold' },
    delivery: { timeouts: { connectMs: 1000 }, maxConcurrency: 8 },
    createdAt: NOW,
    updatedAt: NOW,
    revision: 1,
    ...overrides,
  };
}

export function subscriptionRecord(overrides: Partial<SubscriptionRecord> = {}): SubscriptionRecord {
  const partnerId = overrides.partnerId ?? 'acme';
  const domain = overrides.domain ?? 'orders';
  const event = overrides.event ?? 'created';
  const id = overrides.id ?? testId();
  return {
    id,
    partnerId,
    domain,
    event,
    // One subscription per endpoint (the store refuses a second): each record has a url of its own.
    url: `https://hooks.example.com/in/${id}`,
    status: 'ACTIVE',
    signing: { enabled: true, secrets: [{ sealed: 'enc:v1:x', createdAt: NOW }] },
    filter: { 'customer.tier': 'gold' },
    egressTopic: `egress.${partnerId}.${domain}.${event}`,
    createdAt: NOW,
    updatedAt: NOW,
    revision: 1,
    ...overrides,
  };
}

/** A fresh PENDING delivery of a new event to a new subscription of `acme`. */
export function deliveryRecord(overrides: Partial<DeliveryRecord> = {}): DeliveryRecord {
  return {
    id: testId('dlv-'),
    eventId: testId('evt-'),
    eventSource: '/orders',
    eventType: 'orders.created',
    subscriptionId: testId('sub-'),
    partnerId: 'acme',
    status: 'PENDING',
    attempts: 0,
    correlationId: 'corr-1',
    createdAt: NOW,
    updatedAt: NOW,
    ...overrides,
  };
}

/** A successful first attempt (set `deliveryId` to the delivery it belongs to). */
export function deliveryAttempt(overrides: Partial<DeliveryAttempt> = {}): DeliveryAttempt {
  return {
    deliveryId: testId('dlv-'),
    attempt: 1,
    at: NOW,
    statusCode: 200,
    latencyMs: 42,
    responseBody: 'ok',
    outcome: 'success',
    ...overrides,
  };
}

/** A dispatcher dead letter whose retries ran out. */
export function deadLetterRecord(overrides: Partial<DeadLetterRecord> = {}): DeadLetterRecord {
  return {
    id: testId('dl-'),
    stage: 'dispatcher',
    reason: 'retries_exhausted',
    lastError: 'HTTP 503 Service Unavailable',
    attempts: 8,
    eventId: testId('evt-'),
    eventType: 'orders.created',
    subscriptionId: testId('sub-'),
    partnerId: 'acme',
    topic: 'egress.acme.orders.created',
    key: 'order-1',
    value: '{"id":"order-1"}',
    createdAt: NOW,
    ...overrides,
  };
}

/** Marks a key done in the ledger the way the dispatcher does: a claim, then its completion. */
export async function completeInLedger(
  ledger: IdempotencyLedger,
  key: string,
  ttlMs: number,
  now: number,
): Promise<void> {
  const claim = await ledger.claim(key, 60_000, now);
  if (claim.status !== 'claimed') throw new Error(`cannot claim ${key}: ${claim.status}`);
  if (!(await ledger.complete(key, claim.token, ttlMs, now))) throw new Error(`cannot complete ${key}`);
}
