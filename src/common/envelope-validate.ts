/**
 * The one validator behind every content mode: it turns the attributes and data of a CloudEvent
 * (however they arrived) into an `EventEnvelope`, collecting every problem instead of stopping at
 * the first, so a producer can fix a bad event in one round trip.
 */
import type { EventEnvelope } from './envelope-model.ts';
import { LIFTED_EXTENSIONS } from './envelope-model.ts';
import {
  EXTENSION_NAME,
  INT32_MAX,
  INT32_MIN,
  isAbsoluteUri,
  isCloudEventsString,
  isJsonContentType,
  isRfc3339,
  isValidTraceparent,
  parseSchemaVersion,
  schemaVersionFromDataschema,
  splitEventType,
} from './envelope-rules.ts';
import type { ErrorDetail } from './errors.ts';
import { ValidationError } from './errors.ts';
import type { JsonValue } from './json.ts';
import { jsonDepthProblem, MAX_JSON_DEPTH } from './json.ts';

const MAX_ID_LENGTH = 256;
/** A URI-reference naming the producer; 1 KiB is far beyond any real one. */
const MAX_SOURCE_LENGTH = 1024;
const MAX_SUBJECT_LENGTH = 1024;
/** An absolute URI; browsers and proxies commonly handle URLs up to about 2 KiB. */
const MAX_DATASCHEMA_LENGTH = 2048;
const MAX_CORRELATION_ID_LENGTH = 128;
const CORE_ATTRIBUTES = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'time',
  'subject',
  'datacontenttype',
  'dataschema',
]);

/** An event as read from the wire, before validation: attributes by name (nulls already dropped). */
export interface RawEvent {
  attributes: Map<string, unknown>;
  hasData: boolean;
  data: unknown;
  /** An upper bound on the data's nesting, when its text told it (then it is not walked again). */
  dataDepthAtMost?: number;
}

/** Names the field at fault for an attribute (`[3].id` in a batch, `ce-id` in binary mode). */
export type FieldOf = (attribute: string) => string;

/** Validates a raw event; pushes every problem onto `details` and returns undefined if there was any. */
export function buildEnvelope(
  raw: RawEvent,
  fieldOf: FieldOf,
  details: ErrorDetail[],
): EventEnvelope | undefined {
  const before = details.length;
  const problem = (name: string, message: string, code?: string) =>
    details.push({ field: fieldOf(name), message, ...(code === undefined ? {} : { code }) });
  const text = (
    name: string,
    options: { required?: boolean; maxLength?: number; allowEmpty?: boolean } = {},
  ) => {
    const value = raw.attributes.get(name);
    if (value === undefined) {
      if (options.required) problem(name, `${name} is required`);
      return undefined;
    }
    if (typeof value !== 'string') return void problem(name, `${name} must be a string`);
    if (value === '' && !options.allowEmpty) return void problem(name, `${name} must not be empty`);
    if (options.maxLength !== undefined && value.length > options.maxLength) {
      return void problem(name, `${name} must be at most ${options.maxLength} characters`);
    }
    if (!isCloudEventsString(value)) return void problem(name, `${name} must not contain control characters`);
    return value;
  };

  const specversion = text('specversion', { required: true });
  if (specversion !== undefined && specversion !== '1.0') {
    problem('specversion', `specversion must be "1.0" (CloudEvents 1.0), got "${specversion}"`);
  }
  const id = text('id', { required: true, maxLength: MAX_ID_LENGTH });
  const source = text('source', { required: true, maxLength: MAX_SOURCE_LENGTH });
  const type = text('type', { required: true });
  const split = type === undefined ? undefined : splitEventType(type);
  if (type !== undefined && !split) {
    problem(
      'type',
      'type must be "<domain>.<event>": two segments of 1-64 letters, digits, "_" or "-" joined by one dot',
    );
  }
  const time = text('time');
  if (time !== undefined && !isRfc3339(time)) problem('time', 'time must be an RFC 3339 timestamp');
  const subject = text('subject', { maxLength: MAX_SUBJECT_LENGTH });
  const datacontenttype = text('datacontenttype');
  if (datacontenttype !== undefined && !isJsonContentType(datacontenttype)) {
    problem(
      'datacontenttype',
      'only JSON data is supported: datacontenttype must be application/json or */*+json',
    );
  }
  const dataschema = text('dataschema', { maxLength: MAX_DATASCHEMA_LENGTH });
  if (dataschema !== undefined && !isAbsoluteUri(dataschema)) {
    problem('dataschema', 'dataschema must be an absolute URI');
  }
  const correlationId = text('correlationid', { maxLength: MAX_CORRELATION_ID_LENGTH });
  const traceparent = text('traceparent');
  if (traceparent !== undefined && !isValidTraceparent(traceparent)) {
    problem(
      'traceparent',
      'traceparent must be a W3C trace context traceparent (00-<32 hex>-<16 hex>-<2 hex>)',
    );
  }
  const tracestate = text('tracestate', { allowEmpty: true });
  const schemaVersion = readSchemaVersion(raw, dataschema, problem);
  const extensions = readExtensions(raw, problem);
  if (!raw.hasData) problem('data', 'data is required (any JSON value, null included)');
  // Checked before anything recursive (serialising, schema validation) meets the data.
  const shallow = raw.dataDepthAtMost !== undefined && raw.dataDepthAtMost <= MAX_JSON_DEPTH;
  const tooDeep = raw.hasData && !shallow ? jsonDepthProblem(raw.data, 'data') : undefined;
  if (tooDeep) problem('data', `data ${tooDeep.message}`, tooDeep.code);

  if (details.length > before) return undefined;
  const envelope: EventEnvelope = {
    specversion: '1.0',
    id: id!,
    source: source!,
    type: type!,
    domain: split!.domain,
    event: split!.event,
    correlationId: correlationId ?? id!,
    extensions,
    data: raw.data as JsonValue,
  };
  const optional = { schemaVersion, time, subject, datacontenttype, dataschema, traceparent, tracestate };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) Object.assign(envelope, { [key]: value });
  }
  return envelope;
}

function readSchemaVersion(
  raw: RawEvent,
  dataschema: string | undefined,
  problem: (name: string, message: string) => void,
): number | undefined {
  const fromSchema = dataschema === undefined ? undefined : schemaVersionFromDataschema(dataschema);
  const value = raw.attributes.get('schemaversion');
  if (value === undefined) return fromSchema;
  const fromExtension = parseSchemaVersion(value);
  if (fromExtension === undefined) {
    problem('schemaversion', 'schemaversion must be a positive integer (or a string of digits)');
  } else if (fromSchema !== undefined && fromSchema !== fromExtension) {
    problem(
      'schemaversion',
      `schemaversion ${fromExtension} contradicts dataschema, which names version ${fromSchema}`,
    );
  }
  return fromExtension;
}

function readExtensions(
  raw: RawEvent,
  problem: (name: string, message: string) => void,
): Record<string, string | number | boolean> {
  const extensions: Record<string, string | number | boolean> = {};
  for (const [name, value] of raw.attributes) {
    if (CORE_ATTRIBUTES.has(name) || LIFTED_EXTENSIONS.has(name)) continue;
    if (!EXTENSION_NAME.test(name)) {
      const lower = name.toLowerCase();
      const hint = lower !== name && EXTENSION_NAME.test(lower) ? ` (did you mean "${lower}"?)` : '';
      problem(name, `"${name}" is not a valid attribute name: use 1-20 lower-case letters or digits${hint}`);
    } else if (typeof value === 'string') {
      if (isCloudEventsString(value)) extensions[name] = value;
      else problem(name, `${name} must not contain control characters`);
    } else if (typeof value === 'boolean') {
      extensions[name] = value;
    } else if (
      typeof value === 'number' &&
      Number.isInteger(value) &&
      value >= INT32_MIN &&
      value <= INT32_MAX
    ) {
      extensions[name] = value;
    } else {
      problem(name, `${name} must be a string, a boolean or a 32-bit integer`);
    }
  }
  return extensions;
}

/** The one error for an invalid event or batch, carrying every problem found. */
export function envelopeError(details: ErrorDetail[]): ValidationError {
  const shown = details.slice(0, 3).map((d) => (d.field ? `${d.field}: ${d.message}` : d.message));
  const more = details.length > 3 ? ` (and ${details.length - 3} more)` : '';
  return new ValidationError('envelope_invalid', `Invalid CloudEvent: ${shown.join('; ')}${more}`, {
    details,
  });
}
