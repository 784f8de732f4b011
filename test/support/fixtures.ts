/** Record builders for tests: valid by default, any field overridable. */
import type { PartnerRecord, SchemaRecord, SubscriptionRecord } from '../../src/common/model.ts';

const NOW = '2026-01-01T00:00:00.000Z';
let counter = 0;

/** A unique, time-ordered-looking id for tests. */
export function testId(prefix = ''): string {
  counter += 1;
  return `${prefix}0190a000-0000-7000-8000-${String(counter).padStart(12, '0')}`;
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
  return {
    id: testId(),
    partnerId,
    domain,
    event,
    url: 'https://hooks.example.com/in',
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
