import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventEnvelope } from '../../src/common/envelope.ts';
import {
  isValidTraceparent,
  isValidTracestate,
  parseBinaryEvent,
  parseEventBatch,
  parseHttpEvents,
  parseStructuredEvent,
  toStructured,
} from '../../src/common/envelope.ts';
import type { ErrorDetail } from '../../src/common/errors.ts';
import { UnsupportedMediaTypeError, ValidationError } from '../../src/common/errors.ts';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function validEvent(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: 'evt-1',
    source: '/shop',
    type: 'orders.created',
    data: { orderId: 'o-1' },
    ...overrides,
  };
}

function without(name: string): Record<string, unknown> {
  const event = validEvent();
  delete event[name];
  return event;
}

/** Runs `fn`, which must throw, and returns what it threw. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected an error to be thrown');
}

function detailsOf(fn: () => unknown, code = 'envelope_invalid'): ErrorDetail[] {
  const err = thrownBy(fn);
  assert.ok(err instanceof ValidationError, `expected a ValidationError, got ${String(err)}`);
  assert.equal(err.code, code);
  return err.details;
}

describe('parseStructuredEvent: valid events', () => {
  it('splits the type into domain and event and defaults the correlation id to the event id', () => {
    const envelope = parseStructuredEvent(validEvent());

    assert.deepEqual(envelope, {
      specversion: '1.0',
      id: 'evt-1',
      source: '/shop',
      type: 'orders.created',
      domain: 'orders',
      event: 'created',
      correlationId: 'evt-1',
      extensions: {},
      data: { orderId: 'o-1' },
    });
  });

  const cases: Array<{ name: string; input: Record<string, unknown>; expect: Partial<EventEnvelope> }> = [
    { name: 'data may be JSON null', input: validEvent({ data: null }), expect: { data: null } },
    { name: 'data may be a JSON string', input: validEvent({ data: 'hi' }), expect: { data: 'hi' } },
    { name: 'data may be a JSON array', input: validEvent({ data: [1, 2] }), expect: { data: [1, 2] } },
    {
      name: 'type segments may hold "_" and "-"',
      input: validEvent({ type: 'order_lines.item-added' }),
      expect: { domain: 'order_lines', event: 'item-added' },
    },
    {
      name: 'time with fractional seconds and an offset',
      input: validEvent({ time: '2024-05-14T09:30:00.123+02:00' }),
      expect: { time: '2024-05-14T09:30:00.123+02:00' },
    },
    {
      name: 'time on a leap day',
      input: validEvent({ time: '2024-02-29T23:59:60Z' }),
      expect: { time: '2024-02-29T23:59:60Z' },
    },
    {
      name: 'datacontenttype application/json with a charset',
      input: validEvent({ datacontenttype: 'application/json; charset=utf-8' }),
      expect: { datacontenttype: 'application/json; charset=utf-8' },
    },
    {
      name: 'datacontenttype with a +json suffix',
      input: validEvent({ datacontenttype: 'application/vnd.shop.order+json' }),
      expect: { datacontenttype: 'application/vnd.shop.order+json' },
    },
    {
      name: 'datacontenttype text/json',
      input: validEvent({ datacontenttype: 'text/json' }),
      expect: { datacontenttype: 'text/json' },
    },
    {
      name: 'schemaversion as an integer',
      input: validEvent({ schemaversion: 3 }),
      expect: { schemaVersion: 3 },
    },
    {
      name: 'schemaversion as a digit string',
      input: validEvent({ schemaversion: '3' }),
      expect: { schemaVersion: 3 },
    },
    {
      name: 'schema version from a dataschema URL ending in v<N>',
      input: validEvent({ dataschema: 'https://x/schemas/orders/created/v3' }),
      expect: { schemaVersion: 3, dataschema: 'https://x/schemas/orders/created/v3' },
    },
    {
      name: 'schema version from a dataschema URN ending in :v<N>',
      input: validEvent({ dataschema: 'urn:webhooks:orders.created:v3' }),
      expect: { schemaVersion: 3 },
    },
    {
      name: 'schema version from a dataschema ending in a bare number',
      input: validEvent({ dataschema: 'https://x/schemas/orders/created/7' }),
      expect: { schemaVersion: 7 },
    },
    {
      name: 'no schema version from a dataschema without one',
      input: validEvent({ dataschema: 'https://json-schema.org/draft/2020-12/schema' }),
      expect: { schemaVersion: undefined },
    },
    {
      name: 'schemaversion and dataschema that agree',
      input: validEvent({ schemaversion: 2, dataschema: 'https://x/schemas/orders/created/v2' }),
      expect: { schemaVersion: 2 },
    },
    {
      name: 'correlationid becomes correlationId, not an extension',
      input: validEvent({ correlationid: 'req-42' }),
      expect: { correlationId: 'req-42', extensions: {} },
    },
    {
      name: 'trace context attributes are lifted out of the extensions',
      input: validEvent({ traceparent: TRACEPARENT, tracestate: 'vendor=abc' }),
      expect: { traceparent: TRACEPARENT, tracestate: 'vendor=abc', extensions: {} },
    },
    {
      name: 'other extensions are kept with their JSON types',
      input: validEvent({ tenant: 'acme', priority: 5, replay: false }),
      expect: { extensions: { tenant: 'acme', priority: 5, replay: false } },
    },
    {
      name: 'a null attribute counts as absent',
      input: validEvent({ subject: null, tenant: null, time: null }),
      expect: { subject: undefined, time: undefined, extensions: {} },
    },
    {
      name: 'an id of exactly 256 characters',
      input: validEvent({ id: 'a'.repeat(256) }),
      expect: { id: 'a'.repeat(256) },
    },
    {
      name: 'an extension name of exactly 20 characters',
      input: validEvent({ abcdefghij0123456789: 'x' }),
      expect: { extensions: { abcdefghij0123456789: 'x' } },
    },
  ];
  for (const { name, input, expect } of cases) {
    it(`accepts ${name}`, () => {
      const envelope = parseStructuredEvent(input);

      for (const [key, value] of Object.entries(expect)) {
        assert.deepEqual(envelope[key as keyof EventEnvelope], value, key);
      }
    });
  }
});

describe('parseStructuredEvent: invalid events', () => {
  const cases: Array<{ name: string; input: unknown; field: string; message: RegExp }> = [
    { name: 'specversion missing', input: without('specversion'), field: 'specversion', message: /required/ },
    {
      name: 'specversion 0.3',
      input: validEvent({ specversion: '0.3' }),
      field: 'specversion',
      message: /"1.0"/,
    },
    {
      name: 'specversion as a number',
      input: validEvent({ specversion: 1 }),
      field: 'specversion',
      message: /string/,
    },
    { name: 'id missing', input: without('id'), field: 'id', message: /required/ },
    { name: 'id empty', input: validEvent({ id: '' }), field: 'id', message: /empty/ },
    { name: 'id as a number', input: validEvent({ id: 7 }), field: 'id', message: /string/ },
    {
      name: 'id over 256 characters',
      input: validEvent({ id: 'a'.repeat(257) }),
      field: 'id',
      message: /256/,
    },
    { name: 'source missing', input: without('source'), field: 'source', message: /required/ },
    { name: 'source empty', input: validEvent({ source: '' }), field: 'source', message: /empty/ },
    {
      name: 'source with a control character',
      input: validEvent({ source: '/shop\u0007' }),
      field: 'source',
      message: /control/,
    },
    { name: 'type missing', input: without('type'), field: 'type', message: /required/ },
    {
      name: 'type without a dot',
      input: validEvent({ type: 'orders' }),
      field: 'type',
      message: /<domain>.<event>/,
    },
    {
      name: 'type in reverse-DNS form',
      input: validEvent({ type: 'com.example.orders.created' }),
      field: 'type',
      message: /one dot/,
    },
    {
      name: 'type with an empty event',
      input: validEvent({ type: 'orders.' }),
      field: 'type',
      message: /one dot/,
    },
    {
      name: 'type with a segment over 64 characters',
      input: validEvent({ type: `orders.${'e'.repeat(65)}` }),
      field: 'type',
      message: /1-64/,
    },
    {
      name: 'type with a space',
      input: validEvent({ type: 'orders.cre ated' }),
      field: 'type',
      message: /one dot/,
    },
    {
      name: 'time month 13',
      input: validEvent({ time: '2024-13-01T00:00:00Z' }),
      field: 'time',
      message: /RFC 3339/,
    },
    {
      name: 'time on Feb 29 of a common year',
      input: validEvent({ time: '2023-02-29T00:00:00Z' }),
      field: 'time',
      message: /RFC 3339/,
    },
    {
      name: 'time without an offset',
      input: validEvent({ time: '2024-05-14T09:30:00' }),
      field: 'time',
      message: /RFC 3339/,
    },
    {
      name: 'time in free text',
      input: validEvent({ time: 'yesterday' }),
      field: 'time',
      message: /RFC 3339/,
    },
    {
      name: 'datacontenttype text/plain',
      input: validEvent({ datacontenttype: 'text/plain' }),
      field: 'datacontenttype',
      message: /only JSON/,
    },
    {
      name: 'datacontenttype application/xml',
      input: validEvent({ datacontenttype: 'application/xml' }),
      field: 'datacontenttype',
      message: /only JSON/,
    },
    {
      name: 'data_base64',
      input: { ...without('data'), data_base64: 'eyJhIjoxfQ==' },
      field: 'data_base64',
      message: /not supported/,
    },
    { name: 'data missing', input: without('data'), field: 'data', message: /required/ },
    { name: 'subject empty', input: validEvent({ subject: '' }), field: 'subject', message: /empty/ },
    {
      name: 'dataschema relative',
      input: validEvent({ dataschema: 'schemas/orders/v1' }),
      field: 'dataschema',
      message: /absolute URI/,
    },
    {
      name: 'an extension name in camelCase',
      input: validEvent({ correlationId: 'req-1' }),
      field: 'correlationId',
      message: /did you mean "correlationid"/,
    },
    {
      name: 'an extension name with an underscore',
      input: validEvent({ my_ext: 'x' }),
      field: 'my_ext',
      message: /lower-case letters or digits/,
    },
    {
      name: 'an extension name over 20 characters',
      input: validEvent({ abcdefghij0123456789x: 'x' }),
      field: 'abcdefghij0123456789x',
      message: /1-20/,
    },
    {
      name: 'an object extension value',
      input: validEvent({ meta: { a: 1 } }),
      field: 'meta',
      message: /integer/,
    },
    {
      name: 'an array extension value',
      input: validEvent({ tags: ['a'] }),
      field: 'tags',
      message: /integer/,
    },
    {
      name: 'a fractional extension value',
      input: validEvent({ ratio: 1.5 }),
      field: 'ratio',
      message: /integer/,
    },
    {
      name: 'an extension integer beyond 32 bits',
      input: validEvent({ seq: 2_147_483_648 }),
      field: 'seq',
      message: /32-bit/,
    },
    {
      name: 'schemaversion 0',
      input: validEvent({ schemaversion: 0 }),
      field: 'schemaversion',
      message: /positive/,
    },
    {
      name: 'schemaversion negative',
      input: validEvent({ schemaversion: -1 }),
      field: 'schemaversion',
      message: /positive/,
    },
    {
      name: 'schemaversion fractional',
      input: validEvent({ schemaversion: 1.5 }),
      field: 'schemaversion',
      message: /positive/,
    },
    {
      name: 'schemaversion "v3"',
      input: validEvent({ schemaversion: 'v3' }),
      field: 'schemaversion',
      message: /positive/,
    },
    {
      name: 'schemaversion contradicting dataschema',
      input: validEvent({ schemaversion: 2, dataschema: 'https://x/schemas/orders/created/v3' }),
      field: 'schemaversion',
      message: /contradicts/,
    },
    {
      name: 'traceparent with upper-case hex',
      input: validEvent({ traceparent: TRACEPARENT.toUpperCase() }),
      field: 'traceparent',
      message: /W3C/,
    },
    {
      name: 'traceparent garbage',
      input: validEvent({ traceparent: 'abc' }),
      field: 'traceparent',
      message: /W3C/,
    },
    {
      name: 'correlationid over 128 characters',
      input: validEvent({ correlationid: 'c'.repeat(129) }),
      field: 'correlationid',
      message: /128/,
    },
    {
      name: 'correlationid as a number',
      input: validEvent({ correlationid: 42 }),
      field: 'correlationid',
      message: /string/,
    },
  ];
  for (const { name, input, field, message } of cases) {
    it(`refuses ${name}`, () => {
      const details = detailsOf(() => parseStructuredEvent(input));

      assert.equal(details.length, 1, JSON.stringify(details));
      assert.equal(details[0]?.field, field);
      assert.match(details[0]?.message ?? '', message);
    });
  }

  it('reports every problem of one event at once, each with its field', () => {
    const input = { specversion: '0.3', source: '', type: 'orders', time: 'now', Bad: 1 };

    const details = detailsOf(() => parseStructuredEvent(input));

    assert.deepEqual(details.map((d) => d.field).sort(), [
      'Bad',
      'data',
      'id',
      'source',
      'specversion',
      'time',
      'type',
    ]);
  });

  it('refuses a value that is not a JSON object', () => {
    const details = detailsOf(() => parseStructuredEvent('orders.created'));

    assert.match(details[0]?.message ?? '', /JSON object/);
  });

  it('prefixes every field with the given prefix', () => {
    const details = detailsOf(() => parseStructuredEvent(without('id'), 'event.'));

    assert.equal(details[0]?.field, 'event.id');
  });
});

/** JSON text of a value nested `depth` arrays deep: `[[[…1…]]]`. */
function nestedArrays(depth: number): string {
  return `${'['.repeat(depth)}1${']'.repeat(depth)}`;
}

describe('envelopes: limits', () => {
  it('refuses data nested more than 64 levels deep with too_deep on data, even a million levels', () => {
    for (const depth of [65, 1_000_000]) {
      const event = validEvent({ data: JSON.parse(nestedArrays(depth)) });

      const details = detailsOf(() => parseStructuredEvent(event));

      assert.deepEqual(details, [
        {
          field: 'data',
          message: 'data nests arrays and objects more than 64 levels deep',
          code: 'too_deep',
        },
      ]);
    }
  });

  it('accepts data nested exactly 64 levels deep', () => {
    const data = JSON.parse(nestedArrays(64));

    assert.deepEqual(parseStructuredEvent(validEvent({ data })).data, data);
  });

  it('from text of 4 KiB or more (depth read from the text): 64 levels pass, 65 are named by their place', () => {
    // Data of `depth` levels in an event of over 4 KiB: an array holding a long string and the rest.
    const withData = (data: string) => JSON.stringify(validEvent()).replace(/\}$/, `, "data": ${data}}`);
    const padded = (depth: number) => `["${'x'.repeat(5000)}", ${nestedArrays(depth - 1)}]`;
    for (const [depth, problems] of [
      [64, 0],
      [65, 1],
    ] as const) {
      const deep = padded(depth);
      const single = () => parseHttpEvents('application/cloudevents+json', {}, withData(deep));
      const batch = () =>
        parseHttpEvents('application/cloudevents-batch+json', {}, `[${withData('1')}, ${withData(deep)}]`);
      if (problems === 0) {
        assert.deepEqual(single()[0]!.data, JSON.parse(deep));
        assert.deepEqual(batch()[1]!.data, JSON.parse(deep));
      } else {
        assert.deepEqual(
          detailsOf(single).map((d) => d.field),
          ['data'],
        );
        assert.deepEqual(
          detailsOf(batch).map((d) => d.field),
          ['[1].data'],
        );
      }
    }
  });

  it('names the too-deep data by its place in a batch and in binary mode', () => {
    const deep = nestedArrays(100_000);
    const batch = JSON.parse(
      `[${JSON.stringify(validEvent())}, ${JSON.stringify(validEvent()).replace(/\}$/, `, "data": ${deep}}`)}]`,
    );
    const headers = { 'ce-specversion': '1.0', 'ce-id': 'e', 'ce-source': '/s', 'ce-type': 'orders.created' };

    assert.deepEqual(
      detailsOf(() => parseEventBatch(batch)).map((d) => [d.field, d.code]),
      [['[1].data', 'too_deep']],
    );
    assert.deepEqual(
      detailsOf(() => parseBinaryEvent(headers, deep)).map((d) => [d.field, d.code]),
      [['body', 'too_deep']],
    );
  });

  const caps: Array<[string, number]> = [
    ['source', 1024],
    ['subject', 1024],
    ['dataschema', 2048],
  ];
  for (const [name, max] of caps) {
    it(`caps ${name} at ${max} characters`, () => {
      const value = (length: number) =>
        name === 'dataschema' ? `urn:${'x'.repeat(length - 4)}` : 'x'.repeat(length);

      assert.equal(parseStructuredEvent(validEvent({ [name]: value(max) }))[name as 'source'], value(max));
      assert.deepEqual(
        detailsOf(() => parseStructuredEvent(validEvent({ [name]: value(max + 1) }))),
        [{ field: name, message: `${name} must be at most ${max} characters` }],
      );
    });
  }

  it('keeps an id of any characters, beyond Latin-1 too (CloudEvents allows any non-empty string)', () => {
    assert.equal(parseStructuredEvent(validEvent({ id: 'commande-été-€-🚚' })).id, 'commande-été-€-🚚');
  });
});

describe('isValidTracestate', () => {
  const cases: Array<[string, boolean]> = [
    ['vendor=1', true],
    ['rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', true],
    ['tenant@system=v, other=w', true],
    ['a=1,,b=2', true],
    ['', true],
    ['Upper=1', false],
    ['a=', false],
    ['=1', false],
    ['a=1=2', false],
    ['a=v , b=w\t', true],
    ['a=été', false],
    ['a=line\nbreak', false],
    [Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), false],
    [`a=${'v'.repeat(256)}`, true],
    [`a=${'v'.repeat(257)}`, false],
    [Array.from({ length: 3 }, (_, i) => `k${i}=${'v'.repeat(200)}`).join(','), false],
  ];
  for (const [value, expected] of cases) {
    it(`${expected ? 'accepts' : 'refuses'} ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`, () => {
      assert.equal(isValidTracestate(value), expected);
    });
  }
});

describe('isValidTraceparent', () => {
  const cases: Array<[string, boolean]> = [
    [TRACEPARENT, true],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', true],
    ['01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future', true],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', false],
    ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', false],
    ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', false],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', false],
    ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', false],
    ['00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', false],
    ['', false],
  ];
  for (const [value, expected] of cases) {
    it(`${expected ? 'accepts' : 'refuses'} "${value}"`, () => {
      assert.equal(isValidTraceparent(value), expected);
    });
  }
});

describe('parseEventBatch', () => {
  it('parses every event of a valid batch in order', () => {
    const batch = [validEvent({ id: 'a' }), validEvent({ id: 'b', type: 'users.deleted' })];

    const envelopes = parseEventBatch(batch);

    assert.deepEqual(
      envelopes.map((e) => [e.id, e.domain, e.event]),
      [
        ['a', 'orders', 'created'],
        ['b', 'users', 'deleted'],
      ],
    );
  });

  it('reports each problem at the index of the event it belongs to', () => {
    const batch = [validEvent(), validEvent({ type: 'orders' }), without('id'), 42];

    const details = detailsOf(() => parseEventBatch(batch));

    assert.deepEqual(
      details.map((d) => d.field),
      ['[1].type', '[2].id', '[3]'],
    );
  });

  it('refuses an empty batch', () => {
    const details = detailsOf(() => parseEventBatch([]));

    assert.match(details[0]?.message ?? '', /at least one event/);
  });

  it('refuses a batch that is not an array', () => {
    const details = detailsOf(() => parseEventBatch(validEvent()));

    assert.match(details[0]?.message ?? '', /JSON array/);
  });

  it('refuses a batch of more than 1000 events', () => {
    const batch = Array.from({ length: 1001 }, (_, i) => validEvent({ id: `e${i}` }));

    const details = detailsOf(() => parseEventBatch(batch));

    assert.match(details[0]?.message ?? '', /at most 1000/);
  });

  it('accepts a batch of exactly 1000 events', () => {
    const batch = Array.from({ length: 1000 }, (_, i) => validEvent({ id: `e${i}` }));

    assert.equal(parseEventBatch(batch).length, 1000);
  });
});

function binaryHeaders(
  overrides: Record<string, string | undefined> = {},
): Record<string, string | undefined> {
  return {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': 'evt-1',
    'ce-source': '/shop',
    'ce-type': 'orders.created',
    ...overrides,
  };
}

describe('parseBinaryEvent', () => {
  it('reads attributes from ce-* headers and data from the JSON body', () => {
    const envelope = parseBinaryEvent(binaryHeaders({ 'ce-tenant': 'acme' }), '{"orderId":"o-1"}');

    assert.equal(envelope.id, 'evt-1');
    assert.equal(envelope.type, 'orders.created');
    assert.equal(envelope.datacontenttype, 'application/json');
    assert.deepEqual(envelope.extensions, { tenant: 'acme' });
    assert.deepEqual(envelope.data, { orderId: 'o-1' });
  });

  it('percent-decodes header values as UTF-8 (the binding spec example)', () => {
    const headers = binaryHeaders({ 'ce-subject': 'Euro%20%E2%82%AC%20%F0%9F%98%80' });

    const envelope = parseBinaryEvent(headers, '{}');

    assert.equal(envelope.subject, 'Euro \u20ac \u{1f600}');
  });

  it('accepts lower-case hex and unnecessarily encoded characters', () => {
    const headers = binaryHeaders({ 'ce-source': '%2fshop%2Fe%75', 'ce-tenant': '%c3%a9t%C3%A9' });

    const envelope = parseBinaryEvent(headers, '{}');

    assert.equal(envelope.source, '/shop/eu');
    assert.equal(envelope.extensions.tenant, 'été');
  });

  it('unescapes a double-quoted header value before percent-decoding', () => {
    const headers = binaryHeaders({ 'ce-subject': '"a \\"quoted\\" %41"' });

    const envelope = parseBinaryEvent(headers, '{}');

    assert.equal(envelope.subject, 'a "quoted" A');
  });

  it('reads raw UTF-8 in a header as UTF-8 (Node hands it over one Latin-1 character per byte); Latin-1 text stays', () => {
    const asNodeGivesIt = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
    const raw = parseBinaryEvent(binaryHeaders({ 'ce-subject': asNodeGivesIt('café €') }), '{}');
    assert.equal(raw.subject, 'café €');
    // Bytes that are no UTF-8 (a Latin-1 é alone) are taken as the characters they are.
    const latin1 = parseBinaryEvent(binaryHeaders({ 'ce-subject': 'caf\u00e9' }), '{}');
    assert.equal(latin1.subject, 'café');
    // A value already decoded (API Gateway's, with characters above U+00FF) is left as it is.
    const decoded = parseBinaryEvent(binaryHeaders({ 'ce-subject': 'Ã© €' }), '{}');
    assert.equal(decoded.subject, 'Ã© €');
  });

  it('keeps a "%" that starts no escape, as senders that do not encode produce', () => {
    const envelope = parseBinaryEvent(binaryHeaders({ 'ce-subject': '50% off' }), '{}');

    assert.equal(envelope.subject, '50% off');
  });

  it('refuses percent-encoded bytes that are not valid UTF-8 (overlong encoding)', () => {
    const details = detailsOf(() => parseBinaryEvent(binaryHeaders({ 'ce-subject': 'a%C0%A0b' }), '{}'));

    assert.equal(details[0]?.field, 'ce-subject');
    assert.match(details[0]?.message ?? '', /UTF-8/);
  });

  it('reads the schema version from a ce-schemaversion header', () => {
    const envelope = parseBinaryEvent(binaryHeaders({ 'ce-schemaversion': '4' }), '{}');

    assert.equal(envelope.schemaVersion, 4);
  });

  it('names missing attributes by their header', () => {
    const details = detailsOf(() =>
      parseBinaryEvent(binaryHeaders({ 'ce-type': undefined, 'ce-specversion': undefined }), '{}'),
    );

    assert.deepEqual(details.map((d) => d.field).sort(), ['ce-specversion', 'ce-type']);
  });

  it('refuses an empty body, since data is required', () => {
    const details = detailsOf(() => parseBinaryEvent(binaryHeaders(), ''));

    assert.equal(details[0]?.field, 'body');
  });

  it('refuses a body that is not valid JSON with invalid_json', () => {
    const details = detailsOf(() => parseBinaryEvent(binaryHeaders(), '{"orderId":'), 'invalid_json');

    assert.equal(details[0]?.field, 'body');
  });

  it('refuses a non-JSON content type as an unsupported media type', () => {
    const err = thrownBy(() => parseBinaryEvent(binaryHeaders({ 'content-type': 'text/plain' }), 'hello'));

    assert.ok(err instanceof UnsupportedMediaTypeError);
    assert.equal(err.code, 'unsupported_media_type');
  });

  it('refuses a ce-datacontenttype header, which the binding forbids', () => {
    const headers = binaryHeaders({ 'ce-datacontenttype': 'application/json' });

    const details = detailsOf(() => parseBinaryEvent(headers, '{}'));

    assert.equal(details[0]?.field, 'ce-datacontenttype');
  });

  it('uses the HTTP traceparent and tracestate headers when the event has no trace context', () => {
    const headers = binaryHeaders({ traceparent: TRACEPARENT, tracestate: 'vendor=1' });

    const envelope = parseBinaryEvent(headers, '{}');

    assert.equal(envelope.traceparent, TRACEPARENT);
    assert.equal(envelope.tracestate, 'vendor=1');
  });

  it('never pairs the HTTP traceparent with an unrelated tracestate the event carried alone', () => {
    const withState = binaryHeaders({ traceparent: TRACEPARENT, 'ce-tracestate': 'event=own' });
    assert.equal(parseBinaryEvent(withState, '{}').tracestate, undefined);
    const both = binaryHeaders({
      traceparent: TRACEPARENT,
      tracestate: 'vendor=1',
      'ce-tracestate': 'event=own',
    });
    assert.equal(parseBinaryEvent(both, '{}').tracestate, 'vendor=1');
  });

  it('prefers the event trace context (ce-traceparent) over the HTTP header', () => {
    const own = '00-11111111111111111111111111111111-2222222222222222-01';
    const headers = binaryHeaders({
      'ce-traceparent': own,
      traceparent: TRACEPARENT,
      tracestate: 'vendor=1',
    });

    const envelope = parseBinaryEvent(headers, '{}');

    assert.equal(envelope.traceparent, own);
    assert.equal(envelope.tracestate, undefined);
  });
});

describe('parseHttpEvents', () => {
  const body = JSON.stringify(validEvent());

  it('parses application/cloudevents+json as one structured event', () => {
    const events = parseHttpEvents('application/cloudevents+json; charset=UTF-8', {}, body);

    assert.deepEqual(
      events.map((e) => e.id),
      ['evt-1'],
    );
  });

  it('parses application/json without ce-* headers as one structured event', () => {
    const events = parseHttpEvents('application/json', {}, body);

    assert.equal(events[0]?.type, 'orders.created');
  });

  it('parses application/cloudevents-batch+json as a batch', () => {
    const batch = JSON.stringify([validEvent({ id: 'a' }), validEvent({ id: 'b' })]);

    const events = parseHttpEvents('application/cloudevents-batch+json', {}, batch);

    assert.deepEqual(
      events.map((e) => e.id),
      ['a', 'b'],
    );
  });

  it('parses binary mode when ce-specversion is present', () => {
    const events = parseHttpEvents('application/json', binaryHeaders(), '{"orderId":"o-9"}');

    assert.deepEqual(events[0]?.data, { orderId: 'o-9' });
  });

  it('takes the content type from the headers when none is passed', () => {
    const headers = { 'Content-Type': 'application/cloudevents+json' };

    const events = parseHttpEvents(undefined, headers, body);

    assert.equal(events.length, 1);
  });

  const unsupported: Array<[string, string | undefined]> = [
    ['text/plain', 'text/plain'],
    ['a non-JSON CloudEvents format', 'application/cloudevents+xml'],
    ['no content type at all', undefined],
  ];
  for (const [name, contentType] of unsupported) {
    it(`refuses ${name} as an unsupported media type`, () => {
      const err = thrownBy(() => parseHttpEvents(contentType, {}, body));

      assert.ok(err instanceof UnsupportedMediaTypeError);
      assert.equal(err.code, 'unsupported_media_type');
    });
  }

  it('refuses malformed JSON with invalid_json', () => {
    detailsOf(() => parseHttpEvents('application/cloudevents+json', {}, '{"id": '), 'invalid_json');
  });

  it('points a JSON array sent as a single event to the batch content type', () => {
    const details = detailsOf(() => parseHttpEvents('application/json', {}, `[${body}]`));

    assert.match(details[0]?.message ?? '', /cloudevents-batch\+json/);
  });

  it('gives every event of a batch the HTTP trace context when it has none', () => {
    const own = '00-11111111111111111111111111111111-2222222222222222-01';
    const batch = JSON.stringify([validEvent({ id: 'a' }), validEvent({ id: 'b', traceparent: own })]);

    const events = parseHttpEvents('application/cloudevents-batch+json', { traceparent: TRACEPARENT }, batch);

    assert.deepEqual(
      events.map((e) => e.traceparent),
      [TRACEPARENT, own],
    );
  });

  it('ignores an invalid HTTP traceparent header instead of refusing the event', () => {
    const events = parseHttpEvents('application/json', { traceparent: 'garbage' }, body);

    assert.equal(events[0]?.traceparent, undefined);
  });
});

describe('events produced by the official CloudEvents JS SDK', () => {
  // What HTTP.structured / HTTP.binary of the `cloudevents` npm package emit for
  // new CloudEvent({ type: 'orders.created', source: '/shop', data: { orderId: 'o-1001', total: 42.5 } }).
  const id = '7a0e8f52-3b3e-4b8e-9a39-5d2f0c6a1b7e';
  const time = '2024-05-14T09:30:00.000Z';
  const data = { orderId: 'o-1001', total: 42.5 };

  it('accepts the structured-mode message as it is', () => {
    const headers = { 'content-type': 'application/cloudevents+json; charset=utf-8' };
    const sdkBody = `{"id":"${id}","time":"${time}","type":"orders.created","source":"/shop","specversion":"1.0","data":{"orderId":"o-1001","total":42.5}}`;

    const [envelope] = parseHttpEvents(headers['content-type'], headers, sdkBody);

    assert.deepEqual(envelope, {
      specversion: '1.0',
      id,
      source: '/shop',
      type: 'orders.created',
      domain: 'orders',
      event: 'created',
      time,
      correlationId: id,
      extensions: {},
      data,
    });
  });

  it('accepts the binary-mode message as it is', () => {
    const headers = {
      'content-type': 'application/json; charset=utf-8',
      'ce-id': id,
      'ce-time': time,
      'ce-type': 'orders.created',
      'ce-source': '/shop',
      'ce-specversion': '1.0',
    };
    const sdkBody = '{"orderId":"o-1001","total":42.5}';

    const [envelope] = parseHttpEvents(headers['content-type'], headers, sdkBody);

    assert.deepEqual(envelope, {
      specversion: '1.0',
      id,
      source: '/shop',
      type: 'orders.created',
      domain: 'orders',
      event: 'created',
      time,
      datacontenttype: 'application/json; charset=utf-8',
      correlationId: id,
      extensions: {},
      data,
    });
  });
});

describe('toStructured', () => {
  it('writes the lifted attributes back as CloudEvents extensions, with data last', () => {
    const envelope = parseStructuredEvent(
      validEvent({
        schemaversion: '2',
        traceparent: TRACEPARENT,
        tenant: 'acme',
        time: '2024-05-14T09:30:00Z',
      }),
    );

    const structured = toStructured(envelope);

    assert.deepEqual(structured, {
      specversion: '1.0',
      id: 'evt-1',
      source: '/shop',
      type: 'orders.created',
      time: '2024-05-14T09:30:00Z',
      correlationid: 'evt-1',
      schemaversion: 2,
      traceparent: TRACEPARENT,
      tenant: 'acme',
      data: { orderId: 'o-1' },
    });
    assert.equal(Object.keys(structured).at(-1), 'data');
  });

  it('round-trips: parsing the structured form gives the same envelope', () => {
    const envelope = parseBinaryEvent(
      binaryHeaders({ 'ce-subject': 'caf%C3%A9', 'ce-correlationid': 'req-1', 'ce-tenant': 'acme' }),
      '[1,null]',
    );

    const reparsed = parseStructuredEvent(JSON.parse(JSON.stringify(toStructured(envelope))));

    assert.deepEqual(reparsed, envelope);
  });

  it('keeps data null as an explicit null', () => {
    const structured = toStructured(parseStructuredEvent(validEvent({ data: null })));

    assert.ok(Object.hasOwn(structured, 'data'));
    assert.equal(structured.data, null);
  });
});

describe('numbers a double cannot hold', () => {
  it('1e400 or 309 digits in the data are refused (400 number_out_of_range), in either mode; 1e300 and a string "1e400" are fine', () => {
    const event = (data: string) =>
      `{"specversion":"1.0","id":"n1","source":"/s","type":"orders.created","data":${data}}`;
    for (const data of [
      '{"amount":1e400}',
      `{"n":${'9'.repeat(309)}}`,
      '[[-1E+999]]',
      `{"n":1${'0'.repeat(300)}e9}`,
      `{"n":${'9'.repeat(308)}e1}`,
    ]) {
      assert.throws(
        () => parseHttpEvents('application/cloudevents+json', {}, event(data)),
        (err: unknown) => err instanceof ValidationError && err.code === 'number_out_of_range',
        data,
      );
      assert.throws(
        () =>
          parseBinaryEvent(
            {
              'ce-specversion': '1.0',
              'ce-id': 'n1',
              'ce-source': '/s',
              'ce-type': 'orders.created',
              'content-type': 'application/json',
            },
            data,
          ),
        (err: unknown) => err instanceof ValidationError && err.code === 'number_out_of_range',
        data,
      );
    }
    const fine = parseHttpEvents(
      'application/cloudevents+json',
      {},
      event('{"a":1e300,"b":"1e400","c":123456}'),
    );
    assert.deepEqual(fine[0]?.data, { a: 1e300, b: '1e400', c: 123456 });
  });
});
