/**
 * The event envelope: CloudEvents 1.0 events as the platform accepts them over HTTP (structured,
 * batch and binary content modes) and as it carries them on the bus (structured JSON).
 * Decisions: `data` is required and may be any JSON value, null included; only JSON data is
 * accepted (`data_base64` and non-JSON content types are refused); `data` nests at most
 * `MAX_JSON_DEPTH` (64) levels of arrays and objects (`too_deep`); an invalid `traceparent` on the
 * event is an error, while an invalid HTTP `traceparent` header is ignored. The id may be any
 * non-empty string: headers made from it are percent-encoded by the dispatcher.
 */
export { parseBinaryEvent } from './envelope-binary.ts';
export { parseHttpEvents } from './envelope-http.ts';
export type { EventEnvelope } from './envelope-model.ts';
export { toStructured } from './envelope-model.ts';
export { isValidTraceparent, isValidTracestate } from './envelope-rules.ts';
export {
  MAX_BATCH_EVENTS,
  parseBatchText,
  parseEventBatch,
  parseStructuredEvent,
  parseStructuredText,
} from './envelope-structured.ts';
