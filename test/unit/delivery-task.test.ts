/** The delivery task on the bus: format v2 (head line + body as it is), and v1 still read. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type DeliveryTask,
  deliveryTaskFields,
  parseDeliveryTask,
  serializeDeliveryTask,
} from '../../src/common/delivery-task.ts';

const task: DeliveryTask = {
  deliveryId: 'dlv_1',
  subscriptionId: 'sub-1',
  partnerId: 'acme',
  event: { id: 'evt-1', source: '/shop', type: 'orders.created', correlationId: 'c-1' },
  body: JSON.stringify({ note: 'a "quoted"\nline', items: [1, 2, { x: null }] }),
  attempt: 2,
  firstAttemptAt: 1_000,
  createdAt: 900,
  ingestedAt: 800,
};

const invalid = (err: unknown) => (err as { code?: string }).code === 'task_invalid';

describe('delivery task', () => {
  it('round-trips through v2, the body byte for byte and unescaped after one head line', () => {
    const value = serializeDeliveryTask(task);
    const [head, ...rest] = value.split('\n');
    const { body: _body, ...fields } = task;
    assert.deepEqual(JSON.parse(head!), { v: 2, ...fields });
    assert.deepEqual(deliveryTaskFields(value), { v: 2, ...fields });
    assert.equal(rest.join('\n'), task.body, 'the body follows as it is (no backslash added per quote)');
    assert.deepEqual(parseDeliveryTask(value), task);
    assert.equal(serializeDeliveryTask(parseDeliveryTask(value)), value, 'a retry copy is the same text');
  });

  it('reads v1 — one JSON document whose payload is the body as a JSON value — as the same task', () => {
    const { body, ...head } = task;
    const v1 = JSON.stringify({ v: 1, ...head, payload: JSON.parse(body) });
    assert.deepEqual(parseDeliveryTask(v1), task);
    // A v1 payload that is a string or null is a body all the same.
    assert.equal(parseDeliveryTask(JSON.stringify({ v: 1, ...head, payload: null })).body, 'null');
    assert.equal(parseDeliveryTask(JSON.stringify({ v: 1, ...head, payload: 'x' })).body, '"x"');
  });

  it('refuses what is neither, as task_invalid (the record goes to the DLQ)', () => {
    const { body: _body, ...head } = task;
    for (const value of [
      'not json',
      `${JSON.stringify({ v: 2, ...head })}\n`, // no body
      `${JSON.stringify({ v: 2, ...head, deliveryId: 5 })}\n{}`,
      `${JSON.stringify({ v: 3, ...head })}\n{}`, // an unknown version: read as one document, which it is not
      JSON.stringify({ v: 1, ...head }), // v1 without a payload
      JSON.stringify({ v: 2, ...head, body: '{}' }), // v2 fields in one document
      '[]',
    ]) {
      assert.throws(() => parseDeliveryTask(value), invalid, value.slice(0, 60));
    }
  });
});
