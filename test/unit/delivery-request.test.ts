/** The request of a delivery attempt: headers made from event fields always go out. */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { DeliveryTask } from '../../src/common/delivery-task.ts';
import type { DeliveryAuth } from '../../src/common/model.ts';
import { buildDeliveryRequest, percentEncodedHeader } from '../../src/dispatcher/request.ts';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function task(event: Partial<DeliveryTask['event']> = {}): DeliveryTask {
  return {
    deliveryId: 'dlv_1',
    subscriptionId: 'sub-1',
    partnerId: 'acme',
    event: { id: 'evt-1', source: '/shop', type: 'orders.created', correlationId: 'evt-1', ...event },
    body: JSON.stringify({ orderId: 'o-1' }),
    attempt: 0,
    createdAt: 0,
  };
}

function headersOf(t: DeliveryTask, auth?: DeliveryAuth): Record<string, string> {
  return buildDeliveryRequest({
    task: t,
    secrets: ['whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0'],
    auth,
    now: 0,
    userAgent: 'webhooks/test',
  }).headers;
}

describe('buildDeliveryRequest: headers from event fields', () => {
  let url: string;
  let received: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    received.push(req.headers);
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  });
  after(() => server.close());

  /** POSTs the built request with undici (the delivery client's library); the headers the server saw. */
  async function send(t: DeliveryTask, auth?: DeliveryAuth): Promise<IncomingHttpHeaders> {
    received = [];
    const { headers, body } = buildDeliveryRequest({
      task: t,
      secrets: [],
      auth,
      now: 0,
      userAgent: 'webhooks/test',
    });
    const res = await request(url, { method: 'POST', headers, body });
    await res.body.dump();
    assert.equal(res.statusCode, 204);
    return received[0]!;
  }

  it('an event id beyond Latin-1 goes out percent-encoded as x-correlation-id, and decodes back', async () => {
    const id = 'commande-été-€-🚚 "n°1" 100%';

    const seen = await send(task({ id, correlationId: id }));

    assert.equal(
      seen['x-correlation-id'],
      'commande-%C3%A9t%C3%A9-%E2%82%AC-%F0%9F%9A%9A%20%22n%C2%B01%22%20100%25',
    );
    assert.equal(decodeURIComponent(seen['x-correlation-id'] as string), id);
  });

  it('ids of visible ASCII (UUIDs, ULIDs, evt-1) go out as they are', async () => {
    for (const id of [
      'evt-1',
      '018f2c1e-7b3a-7cde-8f00-123456789abc',
      '01HZX3K4M5N6P7Q8R9S0T1V2W3',
      'a/b:c?d=e&f#g',
    ]) {
      assert.equal((await send(task({ correlationId: id })))['x-correlation-id'], id);
    }
  });

  it('percent-encodes Latin-1 and C1 characters too, which receivers would read differently', () => {
    assert.equal(percentEncodedHeader('café\u0085'), 'caf%C3%A9%C2%85');
    assert.equal(percentEncodedHeader(''), '');
  });

  it('passes a valid trace context on and drops a malformed one instead of failing the attempt', async () => {
    const valid = await send(task({ traceparent: TRACEPARENT, tracestate: 'vendor=1' }));
    assert.equal(valid.traceparent, TRACEPARENT);
    assert.equal(valid.tracestate, 'vendor=1');

    const malformed = await send(task({ traceparent: '00-zz-\u20ac', tracestate: 'vendor=1' }));
    assert.equal(malformed.traceparent, undefined);
    assert.equal(malformed.tracestate, undefined, 'tracestate never goes without its traceparent');

    const badState = await send(task({ traceparent: TRACEPARENT, tracestate: 'vendor=\u20ac' }));
    assert.equal(badState.traceparent, TRACEPARENT);
    assert.equal(badState.tracestate, undefined);
  });

  it('a custom auth header never replaces a header the platform sets', () => {
    const t = task();
    const plain = headersOf(t);
    for (const name of [
      'Webhook-Signature',
      'webhook-id',
      'X-Correlation-Id',
      'Content-Type',
      'user-agent',
    ]) {
      const headers = headersOf(t, { type: 'header', name, value: 'forged' });
      assert.equal(headers[name.toLowerCase()], plain[name.toLowerCase()], name);
    }
    assert.equal(headersOf(t, { type: 'header', name: 'X-Api-Key', value: 'k1' })['x-api-key'], 'k1');
  });
});
