/** Building the HTTP request of one delivery attempt: body, Standard Webhooks headers, auth, trace context. */
import { type DeliveryTask, webhookIdOf } from '../common/delivery-task.ts';
import type { DeliveryAuth } from '../common/model.ts';
import { signWebhook } from '../common/signing.ts';

/** The headers and body of an attempt made at `now` (ms). */
export function buildDeliveryRequest(input: {
  task: DeliveryTask;
  secrets: readonly string[];
  auth: DeliveryAuth | undefined;
  now: number;
  userAgent: string;
}): { headers: Record<string, string>; body: string } {
  const { task } = input;
  const id = webhookIdOf(task);
  const body = JSON.stringify(task.payload);
  const timestamp = Math.floor(input.now / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': input.userAgent,
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'x-correlation-id': task.event.correlationId,
  };
  if (input.secrets.length > 0) {
    headers['webhook-signature'] = signWebhook({
      id,
      timestamp,
      body,
      secrets: input.secrets,
    });
  }
  if (task.event.traceparent) headers.traceparent = task.event.traceparent;
  if (task.event.tracestate) headers.tracestate = task.event.tracestate;
  const auth = input.auth;
  if (auth?.type === 'bearer') headers.authorization = `Bearer ${auth.token}`;
  else if (auth?.type === 'basic') {
    headers.authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  } else if (auth?.type === 'header') headers[auth.name.toLowerCase()] = auth.value;
  return { headers, body };
}
