/** Delivery-client test helpers: a request to send, and the result narrowed to what a test expects. */
import assert from 'node:assert/strict';
import type { DeliveryRequest, DeliveryResult } from '../../src/common/ports/delivery-client.ts';

/** A small JSON POST to `url` with generous timeouts, changed by `overrides`. */
export function delivery(url: string, overrides: Partial<DeliveryRequest> = {}): DeliveryRequest {
  return {
    url,
    headers: { 'content-type': 'application/json', 'webhook-id': 'msg_1' },
    body: '{"hello":"world"}',
    timeouts: { connectMs: 2000, headersMs: 2000, bodyMs: 2000 },
    maxResponseBytes: 1024,
    ...overrides,
  };
}

/** The result as a failure (the test fails when it is a response). */
export function failure(result: DeliveryResult): Extract<DeliveryResult, { ok: false }> {
  assert.equal(result.ok, false, `expected a failure, got ${JSON.stringify(result)}`);
  return result as Extract<DeliveryResult, { ok: false }>;
}

/** The result as a response (the test fails when it is a failure). */
export function success(result: DeliveryResult): Extract<DeliveryResult, { ok: true }> {
  assert.equal(result.ok, true, `expected a response, got ${JSON.stringify(result)}`);
  return result as Extract<DeliveryResult, { ok: true }>;
}
