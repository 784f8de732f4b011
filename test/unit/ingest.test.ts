import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import { deliveryIdFor } from '../../src/common/delivery-task.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import { EventIngest } from '../../src/ingest/service.ts';
import { schemaRecord } from '../support/fixtures.ts';

const NOW = Date.parse('2026-01-01T00:00:00.000Z');

function ingestWith(published: BusMessage[], clockMs: () => number): EventIngest {
  return new EventIngest({
    versions: async () => [schemaRecord({ domain: 'orders', event: 'created', status: 'ACTIVE' })],
    publish: async (messages) => {
      published.push(...messages);
    },
    metrics: new MetricsRegistry(),
    clock: () => new Date(clockMs()),
  });
}

const batchOf = (n: number, from = 0) =>
  JSON.stringify(
    Array.from({ length: n }, (_, i) => ({
      specversion: '1.0',
      id: `evt-${from + i}`,
      source: '/test',
      type: 'orders.created',
      data: {},
    })),
  );

describe('ingest stamps', () => {
  it('gives every event of a batch (one clock reading) its own increasing ingest time, 1 µs apart', async () => {
    const published: BusMessage[] = [];
    const ingest = ingestWith(published, () => NOW);

    await ingest.ingest('application/cloudevents-batch+json', {}, batchOf(500));

    const stamps = published.map((m) => Number(m.headers?.[HEADERS.ingestedAt]));
    assert.equal(stamps[0], NOW);
    for (let i = 1; i < stamps.length; i++) {
      assert.equal(Math.round((stamps[i]! - stamps[i - 1]!) * 1000), 1, `stamp ${i}: ${stamps[i]}`);
    }
  });

  it('keeps increasing across requests even when the clock stands still or steps back', async () => {
    const published: BusMessage[] = [];
    let clock = NOW;
    const ingest = ingestWith(published, () => clock);

    await ingest.ingest('application/cloudevents-batch+json', {}, batchOf(3));
    clock = NOW - 1000;
    await ingest.ingest('application/cloudevents-batch+json', {}, batchOf(3, 3));
    clock = NOW + 5;
    await ingest.ingest('application/cloudevents-batch+json', {}, batchOf(1, 6));

    const stamps = published.map((m) => Number(m.headers?.[HEADERS.ingestedAt]));
    assert.deepEqual(
      stamps.map((s) => Math.round((s - NOW) * 1000)),
      [0, 1, 2, 3, 4, 5, 5000],
    );
  });
});

describe('deliveryIdFor', () => {
  it('sorts delivery ids in ingest order: the time part is the µs stamp, the hash only breaks ties', () => {
    const stamps = Array.from({ length: 1000 }, (_, i) => (NOW * 1000 + i) / 1000);

    const ids = stamps.map((at, i) => deliveryIdFor(at, '/test', `evt-${999 - i}`, 'sub-1'));

    assert.deepEqual([...ids].sort(), ids);
    assert.match(ids[0]!, /^msg_[0-9a-f]{32}$/);
    assert.equal(ids[0]!.slice(4, 18), (NOW * 1000).toString(16).padStart(14, '0'));
  });

  it('is deterministic, and differs by subscription, event id and source', () => {
    const id = deliveryIdFor(NOW, '/test', 'evt-1', 'sub-1');

    assert.equal(deliveryIdFor(NOW, '/test', 'evt-1', 'sub-1'), id);
    assert.notEqual(deliveryIdFor(NOW, '/test', 'evt-1', 'sub-2'), id);
    assert.notEqual(deliveryIdFor(NOW, '/test', 'evt-2', 'sub-1'), id);
    assert.notEqual(deliveryIdFor(NOW, '/other', 'evt-1', 'sub-1'), id);
  });
});
