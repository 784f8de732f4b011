/** Event ingest: the schema version an event is routed to, and a batch written all or none. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { SchemaRecord } from '../../src/common/model.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import { EventIngest } from '../../src/ingest/service.ts';
import { schemaRecord } from '../support/fixtures.ts';

function ingestWith(versions: SchemaRecord[]) {
  const published: BusMessage[] = [];
  const ingest = new EventIngest({
    versions: async (domain, event) =>
      versions.filter((v) => v.domain === domain && v.event === event).sort((a, b) => a.version - b.version),
    publish: async (messages) => {
      published.push(...messages);
    },
    metrics: new MetricsRegistry(),
    clock: () => new Date(),
  });
  return { ingest, published };
}

const event = (type: string, attrs: Record<string, unknown> = {}) => ({
  specversion: '1.0',
  id: `e-${Math.random()}`,
  source: '/shop',
  type,
  data: {},
  ...attrs,
});

describe('EventIngest', () => {
  test('an event that names no version goes to the latest ACTIVE one, not the first', async () => {
    const { ingest, published } = ingestWith([
      schemaRecord({ domain: 'orders', event: 'created', version: 1 }),
      schemaRecord({ domain: 'orders', event: 'created', version: 2 }),
      schemaRecord({ domain: 'orders', event: 'created', version: 3, status: 'INACTIVE' }),
    ]);
    await ingest.ingest('application/cloudevents+json', {}, JSON.stringify(event('orders.created')));
    assert.deepEqual(
      published.map((m) => m.topic),
      ['ingress.orders.created.v2'],
    );
  });

  test('a batch with one event that cannot be routed writes none of them (422 naming it)', async () => {
    const { ingest, published } = ingestWith([
      schemaRecord({ domain: 'orders', event: 'created', version: 1 }),
    ]);
    const batch = [event('orders.created'), event('orders.unknown'), event('orders.created')];
    await assert.rejects(
      ingest.ingest('application/cloudevents-batch+json', {}, JSON.stringify(batch)),
      (err: { code?: string; details?: Array<{ field?: string }> }) =>
        err.code === 'event_not_routable' && err.details?.[0]?.field === '[1].type',
    );
    assert.deepEqual(published, [], 'all or none');
  });
});
