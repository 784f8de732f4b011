/** Building the HTTP request of one delivery attempt: body, Standard Webhooks headers, auth, trace context. */
import { type DeliveryTask, webhookIdOf } from '../common/delivery-task.ts';
import { isValidTraceparent, isValidTracestate } from '../common/envelope-rules.ts';
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
  const { body } = task;
  const timestamp = Math.floor(input.now / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': input.userAgent,
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'x-correlation-id': percentEncodedHeader(task.event.correlationId),
  };
  if (input.secrets.length > 0) {
    headers['webhook-signature'] = signWebhook({
      id,
      timestamp,
      body,
      secrets: input.secrets,
    });
  }
  // The trace context came with the event: one that is malformed (or from before ingest checked it)
  // is dropped, as W3C asks, rather than making the attempt fail; tracestate never goes alone.
  const { traceparent, tracestate } = task.event;
  if (traceparent !== undefined && isValidTraceparent(traceparent)) {
    headers.traceparent = traceparent;
    if (tracestate && isValidTracestate(tracestate)) headers.tracestate = tracestate;
  }
  const auth = input.auth;
  if (auth?.type === 'bearer') headers.authorization = `Bearer ${auth.token}`;
  else if (auth?.type === 'basic') {
    headers.authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  } else if (auth?.type === 'header') {
    // The platform's own headers win over a custom one of the same name (refused for new subscriptions).
    const name = auth.name.toLowerCase();
    if (!Object.hasOwn(headers, name)) headers[name] = auth.value;
  }
  return { headers, body };
}

/**
 * A text as an HTTP header value, percent-encoded the way the CloudEvents HTTP binding encodes
 * `ce-*` headers: the UTF-8 bytes of space, `"`, `%` and of everything outside visible ASCII become
 * `%XX`. An event id may be any string, but a header carries only Latin-1 and HTTP clients refuse
 * the rest; encoded, every id goes out, ids of plain visible ASCII (UUIDs, ULIDs, `evt-1`) stay as
 * they are, and any percent-decoder gives the exact id back.
 */
export function percentEncodedHeader(value: string): string {
  if (PLAIN_HEADER_TEXT.test(value)) return value;
  let out = '';
  for (const byte of UTF8.encode(value)) {
    const plain = byte > 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x25;
    out += plain ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Visible ASCII without `"` and `%`: what the encoding leaves unchanged. */
const PLAIN_HEADER_TEXT = /^[\x21\x23\x24\x26-\x7e]*$/;
const UTF8 = new TextEncoder();
