/**
 * The platform's view of one CloudEvents 1.0 event, and its structured-mode JSON form (what goes on
 * the bus). Parsing and validation live in `envelope-parse.ts` / `envelope-binary.ts`.
 */
import type { JsonValue } from './json.ts';

/** One validated CloudEvents 1.0 event with the platform's attributes lifted out. */
export interface EventEnvelope {
  specversion: '1.0';
  id: string;
  source: string;
  /** `<domain>.<event>`: exactly one dot. */
  type: string;
  domain: string;
  event: string;
  /** From the `schemaversion` extension, or else from the last segment of `dataschema` (`v3` or `3`). */
  schemaVersion?: number;
  time?: string;
  subject?: string;
  datacontenttype?: string;
  dataschema?: string;
  /** The `correlationid` extension; the event id when the producer sent none. */
  correlationId: string;
  traceparent?: string;
  tracestate?: string;
  /** Every other extension attribute, as received (binary mode can only carry strings). */
  extensions: Record<string, string | number | boolean>;
  /** Required; may be JSON null (the JSON format distinguishes an explicit null from absence). */
  data: JsonValue;
}

/** Attribute names the envelope lifts out of the extensions. */
export const LIFTED_EXTENSIONS: ReadonlySet<string> = new Set([
  'schemaversion',
  'correlationid',
  'traceparent',
  'tracestate',
]);

/** The structured-mode JSON object of an envelope (what goes on the bus). */
export function toStructured(envelope: EventEnvelope): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {
    specversion: envelope.specversion,
    id: envelope.id,
    source: envelope.source,
    type: envelope.type,
  };
  const optional: Array<[string, string | number | undefined]> = [
    ['time', envelope.time],
    ['subject', envelope.subject],
    ['datacontenttype', envelope.datacontenttype],
    ['dataschema', envelope.dataschema],
    // Written explicitly so consumers on the bus never re-derive it differently.
    ['correlationid', envelope.correlationId],
    ['schemaversion', envelope.schemaVersion],
    ['traceparent', envelope.traceparent],
    ['tracestate', envelope.tracestate],
  ];
  for (const [name, value] of optional) if (value !== undefined) out[name] = value;
  for (const [name, value] of Object.entries(envelope.extensions)) {
    // A hand-built envelope must not let an extension overwrite a core attribute.
    if (!(name in out) && name !== 'data') out[name] = value;
  }
  out.data = envelope.data;
  return out;
}
