/**
 * Chooses the CloudEvents HTTP content mode of a request (structured, batch or binary) from its
 * Content-Type and `ce-*` headers, the way the HTTP protocol binding tells receivers to.
 */

import { parseBinaryEvent } from './envelope-binary.ts';
import type { EventEnvelope } from './envelope-model.ts';
import { mediaTypeOf } from './envelope-rules.ts';
import { parseBatchText, parseStructuredText, withHttpTraceContext } from './envelope-structured.ts';
import { UnsupportedMediaTypeError } from './errors.ts';

const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';

/** Chooses the mode from the content type and `ce-specversion` header and parses; body is raw text. */
export function parseHttpEvents(
  contentType: string | undefined,
  headers: Record<string, string | undefined>,
  body: string,
): EventEnvelope[] {
  const lowered: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers)) lowered[name.toLowerCase()] = value;
  const effectiveType = contentType ?? lowered['content-type'];
  const mediaType = effectiveType === undefined ? '' : mediaTypeOf(effectiveType);

  if (mediaType === BATCH) {
    return parseBatchText(body).map((event) => withHttpTraceContext(event, lowered));
  }
  if (mediaType === STRUCTURED) return [withHttpTraceContext(parseStructuredText(body), lowered)];
  if (mediaType.startsWith('application/cloudevents')) {
    throw unsupported(`the ${mediaType} event format is not supported: use ${STRUCTURED} or ${BATCH}`);
  }
  // Binary mode is recognised by its headers; ce-id too, so a missing ce-specversion is reported as such.
  if (lowered['ce-specversion'] !== undefined || lowered['ce-id'] !== undefined) {
    return [parseBinaryEvent({ ...lowered, 'content-type': effectiveType }, body)];
  }
  if (mediaType === 'application/json') {
    return [withHttpTraceContext(parseStructuredText(body), lowered)];
  }
  const got = effectiveType === undefined ? 'no Content-Type' : `Content-Type "${effectiveType}"`;
  throw unsupported(
    `${got} is not a CloudEvents request: use ${STRUCTURED}, application/json, ${BATCH}, or binary mode (ce-* headers)`,
  );
}

function unsupported(message: string): UnsupportedMediaTypeError {
  return new UnsupportedMediaTypeError('unsupported_media_type', message, {
    details: [{ field: 'content-type', message }],
  });
}
