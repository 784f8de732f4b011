import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deliveryIdFor, webhookIdFor, webhookIdOf } from '../../src/common/delivery-task.ts';

const AT = Date.parse('2026-01-01T00:00:00.000Z');

describe('deliveryIdFor', () => {
  it('is dlv_ + 32 hex digits: ingest second, partition, offset, then the hash', () => {
    const id = deliveryIdFor(
      { ingestedAt: AT + 999, partition: 3, offset: 0x1d6f },
      '/test',
      'evt-1',
      'sub-1',
    );

    assert.match(id, /^dlv_[0-9a-f]{32}$/);
    assert.equal(id.slice(4, 12), (AT / 1000).toString(16));
    assert.equal(id.slice(12, 15), '003');
    assert.equal(id.slice(15, 26), '00000001d6f');
  });

  it('sorts the records of one partition in offset order, whatever their event ids, within and across seconds', () => {
    const ids = Array.from({ length: 1000 }, (_, i) =>
      deliveryIdFor(
        { ingestedAt: AT + i * 5, partition: 1, offset: 5000 + i },
        '/test',
        `evt-${999 - i}`,
        'sub-1',
      ),
    );

    assert.deepEqual([...ids].sort(), ids);
  });

  it('is deterministic for one record, and differs by subscription, event id, source and position', () => {
    const at = { ingestedAt: AT, partition: 0, offset: 7 };
    const id = deliveryIdFor(at, '/test', 'evt-1', 'sub-1');

    assert.equal(deliveryIdFor({ ...at }, '/test', 'evt-1', 'sub-1'), id);
    assert.notEqual(deliveryIdFor(at, '/test', 'evt-1', 'sub-2'), id);
    assert.notEqual(deliveryIdFor(at, '/test', 'evt-2', 'sub-1'), id);
    assert.notEqual(deliveryIdFor(at, '/other', 'evt-1', 'sub-1'), id);
    assert.notEqual(deliveryIdFor({ ...at, offset: 8 }, '/test', 'evt-1', 'sub-1'), id);
    assert.notEqual(deliveryIdFor({ ...at, partition: 1 }, '/test', 'evt-1', 'sub-1'), id);
  });
});

describe('webhookIdFor', () => {
  it('is msg_ + 32 hex digits', () => {
    assert.match(webhookIdFor('/test', 'evt-1', 'sub-1'), /^msg_[0-9a-f]{32}$/);
  });

  it('depends on the event source and id and the subscription only, and on each of them', () => {
    const id = webhookIdFor('/test', 'evt-1', 'sub-1');
    assert.equal(webhookIdFor('/test', 'evt-1', 'sub-1'), id);
    assert.notEqual(webhookIdFor('/test', 'evt-1', 'sub-2'), id);
    assert.notEqual(webhookIdFor('/test', 'evt-2', 'sub-1'), id);
    assert.notEqual(webhookIdFor('/other', 'evt-1', 'sub-1'), id);
  });

  it('cannot be made to collide by moving text between the fields', () => {
    assert.notEqual(webhookIdFor('/a', 'b\nc', 's'), webhookIdFor('/a\nb', 'c', 's'));
    assert.notEqual(webhookIdFor('/a', 'bc', 's'), webhookIdFor('/ab', 'c', 's'));
  });
});

describe('webhookIdOf', () => {
  it('keeps the id a task made before the stable webhook-id was sent under (its msg_ delivery id)', () => {
    const task = {
      deliveryId: 'msg_6b1588cb003000000000005036dcc0fd',
      subscriptionId: 'sub-1',
      partnerId: 'acme',
      event: { id: 'evt-1', source: '/test', type: 'orders.created', correlationId: 'c' },
      body: '{}',
      attempt: 2,
      createdAt: 0,
    };
    assert.equal(webhookIdOf(task), 'msg_6b1588cb003000000000005036dcc0fd');
    assert.equal(webhookIdOf({ ...task, deliveryId: 'dlv_1' }), webhookIdFor('/test', 'evt-1', 'sub-1'));
  });
});
