/**
 * The CloudEvents Kafka protocol binding (v1.0.2), for records written by producers outside the
 * platform (the plan's producers write to the ingress topics directly):
 * - structured mode: a `content-type: application/cloudevents+json` header, the value is the event;
 * - binary mode: attributes in `ce_<name>` headers (UTF-8, no percent-encoding in this binding), the
 *   `content-type` header is `datacontenttype`, the value is the data.
 * A record with neither is the platform's own structured JSON (what `POST /events` appends).
 */
import { type BinaryBinding, parseBinaryMode } from './envelope-binary.ts';
import { type EventEnvelope, toStructured } from './envelope-model.ts';
import { mediaTypeOf } from './envelope-rules.ts';
import { parseStructuredText } from './envelope-structured.ts';
import { UnsupportedMediaTypeError } from './errors.ts';

const STRUCTURED = 'application/cloudevents+json';
const BINARY_PREFIX = 'ce_';

/** The Kafka binding's binary mode: `ce_` headers, UTF-8 without percent-encoding; the data in the value. */
const KAFKA_BINARY: BinaryBinding = {
  prefix: BINARY_PREFIX,
  decode: (raw) => raw,
  dataField: 'value',
  dataCarrier: 'the record value',
  contentTypeCarrier: 'the content-type header',
};

/** A record's parts as text: its value and its headers (names compared case-insensitively). */
export interface KafkaRecordText {
  value: string;
  headers: Record<string, string>;
}

/** How a record is encoded: by the binding's structured or binary mode, or neither (the platform's own). */
export function kafkaEventMode(headers: Record<string, string>): 'structured' | 'binary' | 'platform' {
  let binary = false;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'content-type' && mediaTypeOf(value).startsWith('application/cloudevents'))
      return 'structured';
    if (lower === `${BINARY_PREFIX}specversion`) binary = true;
  }
  return binary ? 'binary' : 'platform';
}

/**
 * The event of a record in either mode of the binding; ValidationError (`envelope_invalid`,
 * `invalid_json`) or UnsupportedMediaTypeError naming the header or `value` otherwise.
 */
export function parseKafkaEvent(record: KafkaRecordText): EventEnvelope {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(record.headers)) headers[name.toLowerCase()] = value;
  const contentType = headers['content-type'];
  if (kafkaEventMode(headers) === 'structured') {
    const media = mediaTypeOf(contentType!);
    if (media !== STRUCTURED) {
      const message = `the ${media} event format is not supported on Kafka: use ${STRUCTURED} or binary mode (ce_ headers)`;
      throw new UnsupportedMediaTypeError('unsupported_media_type', message, {
        details: [{ field: 'content-type', message }],
      });
    }
    return parseStructuredText(record.value, 'value');
  }
  return parseBinaryMode(KAFKA_BINARY, headers, record.value);
}

/** The headers that carry a record's event in the binding (`content-type`, `ce_*`), or undefined when none. */
export function bindingHeaders(headers: Record<string, string>): Record<string, string> | undefined {
  if (kafkaEventMode(headers) === 'platform') return undefined;
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'content-type' || lower.startsWith(BINARY_PREFIX)) kept[name] = value;
  }
  return kept;
}

/**
 * An event as a producer outside the platform writes it to its ingress topic, in either mode of the
 * binding: structured (the JSON event, `content-type: application/cloudevents+json`) or binary (the
 * attributes in `ce_` headers, the data — JSON only — in the value). What `webhooks publish --kafka`
 * sends; `parseKafkaEvent` reads both back.
 */
export function toKafkaRecord(envelope: EventEnvelope, mode: 'structured' | 'binary'): KafkaRecordText {
  const structured = toStructured(envelope);
  if (mode === 'structured')
    return { value: JSON.stringify(structured), headers: { 'content-type': STRUCTURED } };
  const headers: Record<string, string> = { 'content-type': envelope.datacontenttype ?? 'application/json' };
  for (const [name, value] of Object.entries(structured)) {
    if (name === 'data' || name === 'datacontenttype') continue;
    headers[`${BINARY_PREFIX}${name}`] = String(value);
  }
  return { value: JSON.stringify(envelope.data), headers };
}
