/**
 * CloudEvents JSON format (structured and batch content modes), and the JSON text and trace-context
 * helpers the HTTP modes share.
 */
import type { EventEnvelope } from './envelope-model.ts';
import { isValidTraceparent } from './envelope-rules.ts';
import { buildEnvelope, envelopeError } from './envelope-validate.ts';
import type { ErrorDetail } from './errors.ts';
import { ValidationError } from './errors.ts';
import { isJsonObject, jsonTextDepth, MAX_JSON_DEPTH } from './json.ts';

/** The most events one batch may carry. */
export const MAX_BATCH_EVENTS = 1000;

/** Reads one structured-mode event into `details`-collecting validation; `prefix` names its place. */
export function readStructured(
  value: unknown,
  prefix: string,
  details: ErrorDetail[],
  dataDepthAtMost?: number,
): EventEnvelope | undefined {
  if (!isJsonObject(value)) {
    const hint =
      Array.isArray(value) && prefix === '' ? ' (send a batch with application/cloudevents-batch+json)' : '';
    details.push({ ...fieldOrNothing(prefix), message: `a CloudEvent must be a JSON object${hint}` });
    return undefined;
  }
  const before = details.length;
  const attributes = new Map<string, unknown>();
  for (const [name, attribute] of Object.entries(value)) {
    // The JSON format says a null attribute is the same as an absent one.
    if (name === 'data' || attribute === null) continue;
    if (name === 'data_base64') {
      details.push({
        field: `${prefix}data_base64`,
        message: 'data_base64 is not supported: send JSON data in "data"',
      });
      continue;
    }
    attributes.set(name, attribute);
  }
  // When data_base64 was refused, "data is required" would only repeat the same problem.
  const hasData = value.data !== undefined || details.length > before;
  const envelope = buildEnvelope(
    { attributes, hasData, data: value.data, ...(dataDepthAtMost === undefined ? {} : { dataDepthAtMost }) },
    (name) => `${prefix}${name}`,
    details,
  );
  return details.length > before ? undefined : envelope;
}

function fieldOrNothing(prefix: string): { field?: string } {
  const field = prefix.replace(/\.$/, '');
  return field === '' ? {} : { field };
}

/** Parses one structured-mode event (object already JSON-parsed). Throws ValidationError `envelope_invalid`. */
export function parseStructuredEvent(
  value: unknown,
  fieldPrefix = '',
  dataDepthAtMost?: number,
): EventEnvelope {
  const details: ErrorDetail[] = [];
  const envelope = readStructured(value, fieldPrefix, details, dataDepthAtMost);
  if (!envelope || details.length > 0) throw envelopeError(details);
  return envelope;
}

/** Parses a batch (JSON array of structured events); field paths are prefixed "[i]." */
export function parseEventBatch(value: unknown, dataDepthAtMost?: number): EventEnvelope[] {
  if (!Array.isArray(value))
    throw envelopeError([{ message: 'a batch must be a JSON array of CloudEvents' }]);
  if (value.length === 0) throw envelopeError([{ message: 'a batch must contain at least one event' }]);
  if (value.length > MAX_BATCH_EVENTS) {
    throw envelopeError([
      { message: `a batch holds at most ${MAX_BATCH_EVENTS} events, got ${value.length}` },
    ]);
  }
  const details: ErrorDetail[] = [];
  const envelopes: EventEnvelope[] = [];
  value.forEach((item, index) => {
    const envelope = readStructured(item, `[${index}].`, details, dataDepthAtMost);
    if (envelope) envelopes.push(envelope);
  });
  if (details.length > 0) throw envelopeError(details);
  return envelopes;
}

/** One structured-mode event from its JSON text (`field` names the text in errors). */
export function parseStructuredText(text: string, field?: string): EventEnvelope {
  return parseStructuredEvent(parseJsonText(text, field), '', dataDepthBound(text, 1));
}

/** A batch from its JSON text. */
export function parseBatchText(text: string): EventEnvelope[] {
  return parseEventBatch(parseJsonText(text), dataDepthBound(text, 2));
}

/**
 * An upper bound on the depth of the events' data, read from their text (4 KiB or more), when it is within the
 * limit (`wrappers` levels hold the data: 1 for an event, 2 in a batch); else undefined, and the data
 * is measured as parsed, to name the event at fault.
 */
function dataDepthBound(text: string, wrappers: number): number | undefined {
  // A small event's data is walked as quickly as its text is read.
  if (text.length < 4096) return undefined;
  const depth = jsonTextDepth(text, MAX_JSON_DEPTH + wrappers);
  return depth <= MAX_JSON_DEPTH + wrappers ? Math.max(0, depth - wrappers) : undefined;
}

/**
 * Parses JSON text; malformed text is ValidationError `invalid_json`, and so is a number beyond what
 * a double holds (`1e400`, 309 digits): JSON.parse makes it Infinity, which every JSON text after it
 * writes as `null` — a partner would receive another value than the producer sent.
 */
export function parseJsonText(text: string, field?: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    const message = `not valid JSON: ${(cause as Error).message}`;
    return failJson(message, field, cause);
  }
  // Only text that may hold such a number is walked: a 3-digit exponent, or 200 digits in a row (with
  // an exponent of at most 99, a number needs 210 digits to pass 1.8e308).
  if (MAYBE_OUT_OF_RANGE.test(text) && hasNonFinite(value)) {
    const message = 'a number is out of range (beyond ±1.8e308)';
    throw new ValidationError('number_out_of_range', `The request body holds ${message}`, {
      details: [field === undefined ? { message } : { field, message }],
    });
  }
  return value;
}

const MAYBE_OUT_OF_RANGE = /[eE][+-]?\d{3}|\d{200}/;

/** Whether a parsed JSON value holds Infinity anywhere (iterative: the value may be deep). */
function hasNonFinite(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return true;
    } else if (Array.isArray(v)) {
      for (const item of v) stack.push(item);
    } else if (typeof v === 'object' && v !== null) {
      for (const key in v) stack.push((v as Record<string, unknown>)[key]);
    }
  }
  return false;
}

function failJson(message: string, field: string | undefined, cause: unknown): never {
  const detail: ErrorDetail = field === undefined ? { message } : { field, message };
  throw new ValidationError('invalid_json', `The request body is ${message}`, { details: [detail], cause });
}

/** Uses the HTTP request's W3C trace context for an event that carries none of its own. */
export function withHttpTraceContext(
  envelope: EventEnvelope,
  headers: Record<string, string | undefined>,
): EventEnvelope {
  const traceparent = headers.traceparent?.trim();
  // An invalid transport header is ignored, as W3C asks: it must not make a valid event fail.
  if (envelope.traceparent !== undefined || traceparent === undefined || !isValidTraceparent(traceparent)) {
    return envelope;
  }
  // The event's own tracestate (without a traceparent) belongs to no trace we know: only the header's pairs up.
  const { tracestate: _unpaired, ...rest } = envelope;
  const tracestate = headers.tracestate?.trim();
  return tracestate ? { ...rest, traceparent, tracestate } : { ...rest, traceparent };
}
