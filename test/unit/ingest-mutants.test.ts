/** Event ingest: behaviours pinned down by mutation testing (routing, keys, headers, metrics, field names). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HEADERS } from '../../src/common/bus-headers.ts';
import { isValidTracestate, parseHttpEvents, parseStructuredEvent } from '../../src/common/envelope.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import type { SchemaRecord } from '../../src/common/model.ts';
import type { BusMessage } from '../../src/common/ports/bus.ts';
import { EventIngest } from '../../src/ingest/service.ts';
import { schemaRecord } from '../support/fixtures.ts';

const NOW = new Date('2026-03-04T05:06:07.089Z');

function ingestWith(versions: SchemaRecord[], publishError?: Error) {
  const published: BusMessage[] = [];
  const metrics = new MetricsRegistry();
  const ingest = new EventIngest({
    versions: async (domain, event) =>
      versions.filter((v) => v.domain === domain && v.event === event).sort((a, b) => a.version - b.version),
    publish: async (messages) => {
      await Promise.resolve();
      if (publishError) throw publishError;
      published.push(...messages);
    },
    metrics,
    clock: () => NOW,
  });
  return { ingest, published, metrics };
}

let n = 0;
const event = (type: string, attrs: Record<string, unknown> = {}) => ({
  specversion: '1.0',
  id: `e-${++n}`,
  source: '/shop',
  type,
  data: {},
  ...attrs,
});

const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';

describe('EventIngest (mutation-tested edges)', () => {
  test('an event naming an INACTIVE version is refused (422 schema_inactive on schemaversion), nothing written', async () => {
    const { ingest, published } = ingestWith([
      schemaRecord({ domain: 'orders', event: 'created', version: 1, status: 'INACTIVE' }),
      schemaRecord({ domain: 'orders', event: 'created', version: 2 }),
    ]);
    await assert.rejects(
      ingest.ingest(STRUCTURED, {}, JSON.stringify(event('orders.created', { schemaversion: 1 }))),
      (err: { code?: string; details?: Array<{ field?: string; code?: string }> }) =>
        err.code === 'event_not_routable' &&
        err.details?.[0]?.field === 'schemaversion' &&
        err.details?.[0]?.code === 'schema_inactive',
    );
    assert.equal(published.length, 0, 'nothing written');
    await ingest.ingest(STRUCTURED, {}, JSON.stringify(event('orders.created', { schemaversion: 2 })));
    assert.deepEqual(
      published.map((m) => m.topic),
      ['ingress.orders.created.v2'],
    );
  });

  test('the ingress key is the partitionkey, else the subject, else the id (an empty partitionkey counts as none)', async () => {
    const { ingest, published } = ingestWith([schemaRecord({ domain: 'orders', event: 'created' })]);
    const batch = [
      event('orders.created', { id: 'id-a', subject: 'sub-a', partitionkey: 'pk-a' }),
      event('orders.created', { id: 'id-b', subject: 'sub-b', partitionkey: '' }),
      event('orders.created', { id: 'id-c', subject: 'sub-c' }),
      event('orders.created', { id: 'id-d' }),
    ];
    await ingest.ingest(BATCH, {}, JSON.stringify(batch));
    assert.deepEqual(
      published.map((m) => m.key),
      ['pk-a', 'sub-b', 'sub-c', 'id-d'],
    );
  });

  test('every message carries the ingest time (the service clock) in its header', async () => {
    const { ingest, published } = ingestWith([schemaRecord({ domain: 'orders', event: 'created' })]);
    await ingest.ingest(BATCH, {}, JSON.stringify([event('orders.created'), event('orders.created')]));
    assert.equal(published.length, 2);
    for (const m of published) assert.equal(m.headers?.[HEADERS.ingestedAt], String(NOW.getTime()));
  });

  test('events_ingested counts accepted events by type, and nothing of a refused request', async () => {
    const { ingest, metrics } = ingestWith([
      schemaRecord({ domain: 'orders', event: 'created' }),
      schemaRecord({ domain: 'orders', event: 'paid' }),
    ]);
    const counter = metrics.counter('events_ingested', 'Events accepted at ingest', ['type']);
    await ingest.ingest(
      BATCH,
      {},
      JSON.stringify([event('orders.created'), event('orders.paid'), event('orders.created')]),
    );
    assert.equal(counter.get({ type: 'orders.created' }), 2);
    assert.equal(counter.get({ type: 'orders.paid' }), 1);
    await assert.rejects(
      ingest.ingest(BATCH, {}, JSON.stringify([event('orders.paid'), event('orders.unknown')])),
    );
    assert.equal(counter.get({ type: 'orders.paid' }), 1, 'a refused batch counts nothing');
  });

  test('a batch of one event still names its fields by index ([0].type)', async () => {
    const { ingest } = ingestWith([]);
    await assert.rejects(
      ingest.ingest(BATCH, {}, JSON.stringify([event('orders.created')])),
      (err: { code?: string; details?: Array<{ field?: string }> }) =>
        err.code === 'event_not_routable' && err.details?.[0]?.field === '[0].type',
    );
  });

  test('accepted only once the log took the events: a failed append fails the request and counts nothing', async () => {
    const failure = new Error('bus down');
    const { ingest, metrics } = ingestWith([schemaRecord({ domain: 'orders', event: 'created' })], failure);
    const counter = metrics.counter('events_ingested', 'Events accepted at ingest', ['type']);
    await assert.rejects(ingest.ingest(STRUCTURED, {}, JSON.stringify(event('orders.created'))), failure);
    assert.equal(counter.get({ type: 'orders.created' }), 0);
  });
});

/** Runs `fn`, which must throw, and returns the `[field, code]` pairs of its details and its own code. */
function refusal(fn: () => unknown): { code?: string; fields: Array<string | undefined> } {
  try {
    fn();
  } catch (err) {
    const e = err as { code?: string; details?: Array<{ field?: string }> };
    return { code: e.code, fields: (e.details ?? []).map((d) => d.field) };
  }
  return assert.fail('expected an error to be thrown');
}

describe('parseHttpEvents (mutation-tested edges)', () => {
  const binary = { 'ce-id': 'e-1', 'ce-source': '/shop', 'ce-type': 'orders.created' };

  test('ce-id without ce-specversion is binary mode missing its specversion, not a structured body', () => {
    assert.deepEqual(
      refusal(() => parseHttpEvents('application/json', binary, '{"orderId":"o-1"}')),
      { code: 'envelope_invalid', fields: ['ce-specversion'] },
    );
  });

  test('a quoted header value with text after its closing quote is refused, naming the header', () => {
    const headers = { ...binary, 'ce-specversion': '1.0', 'ce-subject': '"order"-1' };
    assert.deepEqual(
      refusal(() => parseHttpEvents('application/json', headers, '{}')),
      { code: 'envelope_invalid', fields: ['ce-subject'] },
    );
    const quoted = { ...headers, 'ce-subject': '"order \\"1\\""' };
    assert.equal(parseHttpEvents('application/json', quoted, '{}')[0]?.subject, 'order "1"');
  });

  test('a binary-mode body of whitespace only is missing data (envelope_invalid on body), not bad JSON', () => {
    const headers = { ...binary, 'ce-specversion': '1.0' };
    assert.deepEqual(
      refusal(() => parseHttpEvents('application/json', headers, ' \r\n ')),
      { code: 'envelope_invalid', fields: ['body'] },
    );
  });
});

describe('envelope attributes (mutation-tested edges)', () => {
  const valid = (attrs: Record<string, unknown>) => ({
    specversion: '1.0',
    id: 'e-1',
    source: '/shop',
    type: 'orders.created',
    data: {},
    ...attrs,
  });

  test('an integer extension holds exactly the signed 32-bit range, the lowest value included', () => {
    assert.equal(parseStructuredEvent(valid({ level: -2_147_483_648 })).extensions.level, -2_147_483_648);
    assert.equal(parseStructuredEvent(valid({ level: 2_147_483_647 })).extensions.level, 2_147_483_647);
    assert.deepEqual(
      refusal(() => parseStructuredEvent(valid({ level: -2_147_483_649 }))),
      { code: 'envelope_invalid', fields: ['level'] },
    );
  });

  test('an empty tracestate on the event is allowed (W3C allows an empty list)', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    assert.equal(parseStructuredEvent(valid({ traceparent, tracestate: '' })).tracestate, '');
  });

  test('control characters are refused at the edges of both C0/DEL and C1 ranges; their neighbours pass', () => {
    for (const char of ['\u001f', '\u007f', '\u009f']) {
      assert.deepEqual(
        refusal(() => parseStructuredEvent(valid({ subject: `a${char}b` }))),
        { code: 'envelope_invalid', fields: ['subject'] },
        `U+${char.charCodeAt(0).toString(16)}`,
      );
    }
    for (const char of [' ', '~', '\u00a0']) {
      assert.equal(parseStructuredEvent(valid({ subject: `a${char}b` })).subject, `a${char}b`);
    }
  });

  test('a lone surrogate in the id is refused; a full astral character (beyond Latin-1) is kept', () => {
    assert.deepEqual(
      refusal(() => parseStructuredEvent(valid({ id: 'order-\ud83d' }))),
      { code: 'envelope_invalid', fields: ['id'] },
    );
    assert.equal(parseStructuredEvent(valid({ id: 'order-\ud83d\ude9a' })).id, 'order-🚚');
  });

  test('a tracestate of exactly 512 characters is passed on; 513 is dropped', () => {
    // Two valid members (values of at most 256 characters each), 512 and 513 characters in all.
    const of = (length: number) => `a=${'v'.repeat(255)},b=${'v'.repeat(length - 260)}`;
    assert.equal(of(512).length, 512);
    assert.equal(isValidTracestate(of(512)), true);
    assert.equal(isValidTracestate(of(513)), false);
  });

  test('time: an offset of +24:00 is refused, +23:59 and a leap second are taken', () => {
    assert.deepEqual(
      refusal(() => parseStructuredEvent(valid({ time: '2026-01-01T00:00:00+24:00' }))),
      { code: 'envelope_invalid', fields: ['time'] },
    );
    assert.equal(
      parseStructuredEvent(valid({ time: '2026-01-01T00:00:00+23:59' })).time,
      '2026-01-01T00:00:00+23:59',
    );
    assert.equal(parseStructuredEvent(valid({ time: '2016-12-31T23:59:60Z' })).time, '2016-12-31T23:59:60Z');
  });

  test('time: 29 February of a year divisible by 400 exists; of a century year otherwise not', () => {
    assert.equal(parseStructuredEvent(valid({ time: '2000-02-29T00:00:00Z' })).time, '2000-02-29T00:00:00Z');
    assert.deepEqual(
      refusal(() => parseStructuredEvent(valid({ time: '1900-02-29T00:00:00Z' }))),
      { code: 'envelope_invalid', fields: ['time'] },
    );
  });

  test('a dataschema with whitespace is not an absolute URI', () => {
    assert.deepEqual(
      refusal(() =>
        parseStructuredEvent(valid({ dataschema: 'https://example.com/schemas/orders created/v1' })),
      ),
      { code: 'envelope_invalid', fields: ['dataschema'] },
    );
  });

  test('schemaversion beyond the 32-bit range is refused, the largest one is taken', () => {
    assert.equal(parseStructuredEvent(valid({ schemaversion: '2147483647' })).schemaVersion, 2_147_483_647);
    assert.deepEqual(
      refusal(() => parseStructuredEvent(valid({ schemaversion: '2147483648' }))),
      { code: 'envelope_invalid', fields: ['schemaversion'] },
    );
  });

  test('a type segment holds at most 64 characters', () => {
    const ok = `${'d'.repeat(64)}.${'e'.repeat(64)}`;
    assert.equal(parseStructuredEvent(valid({ type: ok })).domain, 'd'.repeat(64));
    for (const type of [`${'d'.repeat(65)}.created`, `orders.${'e'.repeat(65)}`]) {
      assert.deepEqual(
        refusal(() => parseStructuredEvent(valid({ type }))),
        {
          code: 'envelope_invalid',
          fields: ['type'],
        },
      );
    }
  });

  test('media types are matched case-insensitively (Application/CloudEvents+JSON is structured mode)', () => {
    const body = JSON.stringify(valid({}));
    assert.equal(parseHttpEvents('Application/CloudEvents+JSON; charset=UTF-8', {}, body)[0]?.id, 'e-1');
    assert.equal(parseHttpEvents('APPLICATION/CLOUDEVENTS-BATCH+JSON', {}, `[${body}]`).length, 1);
  });
});
