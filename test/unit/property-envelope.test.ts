/**
 * Property-based tests of the CloudEvents parsers (structured, batch, binary, and the HTTP mode
 * choice): whatever arrives, they return envelopes or throw one of the platform's own 4xx errors —
 * never a TypeError, a RangeError or a stack overflow — and valid envelopes round-trip.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type EventEnvelope,
  parseBinaryEvent,
  parseEventBatch,
  parseHttpEvents,
  parseStructuredEvent,
  toStructured,
} from '../../src/common/envelope.ts';
import { isWebhooksError } from '../../src/common/errors.ts';
import { percentEncodedHeader } from '../../src/dispatcher/request.ts';
import fc from '../support/property.ts';

/** Runs `parse`; anything it throws must be a platform error of a 4xx kind (validation, 415). */
function parsesOrRefuses(parse: () => unknown): void {
  try {
    parse();
  } catch (err) {
    assert.ok(isWebhooksError(err), `not a platform error: ${String(err)}`);
    assert.ok(err.kind === 'validation' || err.kind === 'unsupported_media_type', `kind ${err.kind}`);
    assert.ok(err.details.length > 0, 'a refusal names what is wrong');
  }
}

const text = fc.string({ unit: 'binary', maxLength: 40 });
const ATTRIBUTES = [
  'specversion',
  'id',
  'source',
  'type',
  'time',
  'subject',
  'datacontenttype',
  'dataschema',
  'data',
  'data_base64',
  'correlationid',
  'schemaversion',
  'traceparent',
  'tracestate',
  'ext1',
  'Bad-Name',
];

/** Plausible values for each attribute, and arbitrary JSON, so the checks past the first one run too. */
const attributeValue = fc.oneof(
  fc.constantFrom('1.0', 'evt-1', '/shop', 'orders.created', '2024-05-01T10:00:00Z', 'application/json'),
  fc.constantFrom('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'urn:x:v2', 3, -1, 2 ** 31),
  text,
  fc.jsonValue({ maxDepth: 3 }),
);

/** An object shaped like a CloudEvent: mostly valid attributes, some replaced or arbitrary. */
const eventLike = fc
  .record({
    overrides: fc.dictionary(fc.constantFrom(...ATTRIBUTES), attributeValue, { maxKeys: 5 }),
    drop: fc.subarray(['specversion', 'id', 'source', 'type', 'data']),
  })
  .map(({ overrides, drop }) => {
    const event: Record<string, unknown> = {
      specversion: '1.0',
      id: 'evt-1',
      source: '/shop',
      type: 'orders.created',
      data: { orderId: 'o-1' },
      ...overrides,
    };
    for (const name of drop) delete event[name];
    return event;
  });

describe('property: the envelope parsers refuse bad input only with platform errors', () => {
  it('structured mode, on arbitrary JSON and on event-shaped objects', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), eventLike), (value) =>
        parsesOrRefuses(() => parseStructuredEvent(value)),
      ),
      { numRuns: 400 },
    );
  });

  it('batch mode, on arbitrary JSON and on arrays of event-shaped objects', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue(), fc.array(fc.oneof(eventLike, fc.jsonValue()), { maxLength: 5 })),
        (value) => parsesOrRefuses(() => parseEventBatch(value)),
      ),
      { numRuns: 300 },
    );
  });

  const headerName = fc.constantFrom(
    'ce-specversion',
    'ce-id',
    'ce-source',
    'ce-type',
    'ce-time',
    'ce-subject',
    'ce-dataschema',
    'ce-datacontenttype',
    'ce-data',
    'ce-traceparent',
    'ce-schemaversion',
    'ce-ext1',
    'ce-Bad_Name',
    'content-type',
    'traceparent',
    'tracestate',
  );
  const headerValue = fc.oneof(
    text,
    fc.constantFrom(
      '1.0',
      'e',
      '/s',
      'a.b',
      '%',
      '%zz',
      '%C3%28',
      '"quoted\\"',
      '"unterminated',
      'application/json',
    ),
  );
  const headers = fc
    .dictionary(headerName, headerValue, { maxKeys: 8 })
    .map((h) => ({ 'ce-specversion': '1.0', 'ce-id': 'e', 'ce-source': '/s', 'ce-type': 'a.b', ...h }));
  const body = fc.oneof(text, fc.json(), fc.constant(''), fc.constant('  '));
  const contentType = fc.option(
    fc.oneof(
      text,
      fc.constantFrom(
        'application/json',
        'application/cloudevents+json; charset=utf-8',
        'application/cloudevents-batch+json',
        'application/cloudevents+xml',
        'text/plain',
        'application/vnd.x+json',
      ),
    ),
    { nil: undefined },
  );

  it('binary mode, on arbitrary headers and bodies', () => {
    fc.assert(
      fc.property(headers, body, (h, b) => parsesOrRefuses(() => parseBinaryEvent(h, b))),
      { numRuns: 400 },
    );
  });

  it('the HTTP mode choice, on arbitrary content types, headers and bodies', () => {
    const anyBody = fc.oneof(
      body,
      eventLike.map((e) => JSON.stringify(e)),
    );
    fc.assert(
      fc.property(contentType, fc.oneof(headers, fc.constant({})), anyBody, (type, h, b) =>
        parsesOrRefuses(() => parseHttpEvents(type, h, b)),
      ),
      { numRuns: 400 },
    );
  });
});

/** CloudEvents String: no control characters (the generator makes well-formed UTF-16 only). */
const ceString = (maxLength: number) =>
  fc.string({ unit: 'binary', minLength: 1, maxLength }).filter((s) =>
    [...s].every((char) => {
      const code = char.codePointAt(0)!;
      return code > 0x1f && (code < 0x7f || code > 0x9f);
    }),
  );
const typeSegment = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const validEvent = fc
  .record(
    {
      id: ceString(30),
      source: ceString(30),
      type: fc.tuple(typeSegment, typeSegment).map(([d, e]) => `${d}.${e}`),
      time: fc
        .date({
          min: new Date('1970-01-01T00:00:00Z'),
          max: new Date('9999-12-31T23:59:59Z'),
          noInvalidDate: true,
        })
        .map((d) => d.toISOString()),
      subject: ceString(30),
      correlationid: ceString(30),
      schemaversion: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      traceparent: fc.constant('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
      tracestate: fc.constantFrom('vendor=1', 'a=b,c=d'),
      extensions: fc.dictionary(
        fc.stringMatching(/^x[a-z0-9]{0,19}$/),
        fc.oneof(ceString(20), fc.boolean(), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
        { maxKeys: 3 },
      ),
      // Through JSON text: the JSON format has no -0 (or undefined) to round-trip.
      data: fc.json({ maxDepth: 4 }).map((json) => JSON.parse(json)),
    },
    { requiredKeys: ['id', 'source', 'type', 'data'] },
  )
  .map(({ extensions, ...attributes }) => ({ specversion: '1.0', ...extensions, ...attributes }));

describe('property: valid envelopes round-trip', () => {
  it('structured: parse → toStructured → JSON text → parse gives the same envelope', () => {
    fc.assert(
      fc.property(validEvent, (event) => {
        const envelope = parseStructuredEvent(event);
        const again = parseStructuredEvent(JSON.parse(JSON.stringify(toStructured(envelope))));
        assert.deepEqual(again, envelope);
        assert.deepEqual(envelope.data, event.data);
        assert.equal(envelope.id, event.id);
      }),
      { numRuns: 300 },
    );
  });

  it('batch: every event comes back, in order', () => {
    fc.assert(
      fc.property(fc.array(validEvent, { minLength: 1, maxLength: 5 }), (events) => {
        const envelopes = events.map((event) => parseStructuredEvent(event));
        const batch = JSON.parse(JSON.stringify(envelopes.map(toStructured)));
        assert.deepEqual(parseEventBatch(batch), envelopes);
      }),
      { numRuns: 100 },
    );
  });

  it('binary: attributes percent-encoded into ce-* headers, data as the body, give the same envelope', () => {
    // Binary mode carries every attribute as a string: only string extensions round-trip as they are.
    const stringExtensions = validEvent.filter((event) =>
      Object.entries(event).every(([name, value]) => !name.startsWith('x') || typeof value === 'string'),
    );
    fc.assert(
      fc.property(stringExtensions, (event) => {
        const envelope = parseStructuredEvent(event);
        const { data, ...attributes } = toStructured(envelope);
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        for (const [name, value] of Object.entries(attributes))
          headers[`ce-${name}`] = percentEncodedHeader(String(value));
        const expected: EventEnvelope = { ...envelope, datacontenttype: 'application/json' };
        assert.deepEqual(parseBinaryEvent(headers, JSON.stringify(data)), expected);
      }),
      { numRuns: 300 },
    );
  });
});
