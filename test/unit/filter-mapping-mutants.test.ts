/**
 * Tests that close gaps found by mutation testing of the filter and mapping languages, their paths
 * and transforms, and how the event processor calls them: limits at their exact boundaries, paths
 * refused at validation rather than at delivery time, transforms at the edges the docs promise, and
 * the CloudEvents attributes the processor hands to filters and mappings.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { parseDeliveryTask } from '../../src/common/delivery-task.ts';
import { UnprocessableError } from '../../src/common/errors.ts';
import { matchesFilter, validateFilter } from '../../src/common/filter.ts';
import type { JsonObject, JsonValue } from '../../src/common/json.ts';
import type { MappingDocument, MappingRule } from '../../src/common/mapping.ts';
import { applyMapping, validateMapping } from '../../src/common/mapping.ts';
import type { BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { partnerRecord, schemaRecord, subscriptionRecord } from '../support/fixtures.ts';
import { storeProcessor } from '../support/processor.ts';

/** Validates (as subscription admin does), then applies (as the processor does). */
function mapped(mapping: unknown, data: unknown, options: { maxOutputBytes?: number } = {}): JsonValue {
  assert.deepEqual(validateMapping(mapping), [], 'test mapping must be valid');
  return applyMapping(mapping as MappingDocument, { data, event: {} }, options);
}

/** The output of one copy rule `in` → `out` with a transform (throws what the mapping throws). */
function transformed(transform: string, value: JsonValue): JsonValue | undefined {
  const output = mapped({ rules: [{ to: 'out', from: 'in', transform }] }, { in: value });
  return (output as { out?: JsonValue }).out;
}

function assertMappingFailed(transform: string, value: JsonValue): void {
  assert.throws(
    () => transformed(transform, value),
    (err: unknown) =>
      err instanceof UnprocessableError &&
      err.code === 'mapping_failed' &&
      err.details[0]?.field === 'mapping.rules[0].transform',
    `${transform} of ${JSON.stringify(value)} must fail with mapping_failed`,
  );
}

function assertTooLarge(fn: () => unknown): void {
  assert.throws(
    fn,
    (err: unknown) => err instanceof UnprocessableError && err.code === 'mapping_output_too_large',
  );
}

describe('filter validation at its limits', () => {
  it('accepts exactly 256 conditions and refuses 257, operators counted like literals', () => {
    const literals = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, i]));
    const operators = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, { $gt: i }]));
    const tooMany = [{ field: 'filter', message: 'has more than 256 conditions' }];

    assert.deepEqual(validateFilter(literals(256)), []);
    assert.deepEqual(validateFilter(literals(257)), tooMany);
    assert.deepEqual(validateFilter(operators(256)), []);
    assert.deepEqual(validateFilter(operators(257)), tooMany);
  });

  it('$in and $nin take at most 1000 values, naming the field', () => {
    const values = (n: number) => Array.from({ length: n }, (_, i) => i);

    assert.deepEqual(validateFilter({ a: { $in: values(1000) }, b: { $nin: values(1000) } }), []);
    assert.deepEqual(validateFilter({ a: { $in: values(1001) }, b: { $nin: values(1001) } }), [
      { field: 'filter.a.$in', message: '$in expects at most 1000 values' },
      { field: 'filter.b.$nin', message: '$nin expects at most 1000 values' },
    ]);
  });

  it('refuses an empty $not, which would silently match nothing', () => {
    assert.deepEqual(validateFilter({ a: { $not: {} } }), [
      { field: 'filter.a.$not', message: '$not expects a non-empty filter object' },
    ]);
    assert.deepEqual(validateFilter({ $not: {} }), [
      { field: 'filter.$not', message: '$not expects a non-empty filter object' },
    ]);
  });

  it('counts nested paths and $and / $or levels toward the 16 levels of nesting', () => {
    const nestedFields = (levels: number): JsonObject => {
      let node: JsonValue = 1;
      for (let i = 0; i < levels; i++) node = { [`f${i}`]: node };
      return node as JsonObject;
    };
    const nestedLogical = (op: '$and' | '$or', levels: number): JsonObject => {
      let node: JsonObject = { a: 1 };
      for (let i = 0; i < levels; i++) node = { [op]: [node] };
      return node;
    };
    const deeper = /^nests deeper than 16 levels$/;

    // 16 objects, the outer one the filter itself: exactly the limit.
    assert.deepEqual(validateFilter(nestedFields(16)), []);
    assert.match(validateFilter(nestedFields(17))[0]?.message ?? '', deeper);
    for (const op of ['$and', '$or'] as const) {
      assert.deepEqual(validateFilter(nestedLogical(op, 15)), [], op);
      const details = validateFilter(nestedLogical(op, 16));
      assert.equal(details.length, 1, op);
      assert.match(details[0]?.message ?? '', deeper);
    }
  });

  it('refuses an $event path inside the $event object', () => {
    assert.deepEqual(validateFilter({ $event: { '$event.id': 'x' } }), [
      { field: 'filter.$event.$event.id', message: '$event paths are only allowed at the top level' },
    ]);
  });

  it('past 256 problems, what is left is not read: only too_many_conditions follows', () => {
    const filter = { $or: Array.from({ length: 300 }, (_, i) => ({ [`$bogus${i}`]: 1 })) };

    const details = validateFilter(filter);

    assert.deepEqual(
      details.slice(0, 256).map((d) => d.message),
      Array.from({ length: 256 }, (_, i) => `unknown operator $bogus${i}`),
    );
    assert.ok(details.length > 256);
    assert.ok(
      details.slice(256).every((d) => d.code === 'too_many_conditions'),
      JSON.stringify(details.slice(256, 258)),
    );
  });

  it('a $or or $and of thousands of elements is answered with at most 257 details, whatever its elements are', () => {
    for (const element of ['b', { a: 1 }, { $bogus: 1 }]) {
      for (const op of ['$or', '$and']) {
        const details = validateFilter({ [op]: Array.from({ length: 5000 }, () => element) });
        assert.ok(details.length <= 257, `${op} of ${JSON.stringify(element)}: ${details.length} details`);
        assert.ok(details.some((d) => d.code === 'too_many_conditions'));
      }
    }
  });
});

describe('paths at their limits', () => {
  it('a path has at most 512 characters, in filters and mappings', () => {
    const fits = `${'x'.repeat(509)}.ab`; // 512 characters, 2 segments
    const over = `${'x'.repeat(510)}.ab`;
    assert.equal(fits.length, 512);

    assert.deepEqual(validateFilter({ [fits]: 1 }), []);
    assert.deepEqual(validateFilter({ [over]: 1 }), [
      { field: `filter.${over}`, message: 'path is longer than 512 characters' },
    ]);
    assert.deepEqual(validateMapping({ rules: [{ to: fits, from: fits }] }), []);
    assert.deepEqual(validateMapping({ rules: [{ to: over, from: over }] }), [
      { field: 'mapping.rules[0].to', message: 'path is longer than 512 characters' },
      { field: 'mapping.rules[0].from', message: 'path is longer than 512 characters' },
    ]);
  });

  it('a path has at most 32 segments, in filters and mappings', () => {
    const segments = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`).join('.');

    assert.deepEqual(validateFilter({ [segments(32)]: 1 }), []);
    assert.deepEqual(validateFilter({ [segments(33)]: 1 }), [
      { field: `filter.${segments(33)}`, message: 'path has more than 32 segments' },
    ]);
    assert.deepEqual(validateMapping({ rules: [{ to: segments(32), from: `$event.${segments(31)}` }] }), []);
    assert.deepEqual(validateMapping({ rules: [{ remove: segments(33) }] }), [
      { field: 'mapping.rules[0].remove', message: 'path has more than 32 segments' },
    ]);
  });

  it('a segment with a leading zero is a name, never an array index', () => {
    const data = { items: [{ sku: 'A-1' }, { sku: 'B-7' }] };
    const context = { data, event: {} };

    assert.equal(matchesFilter({ 'items.1.sku': 'B-7' }, context), true);
    assert.equal(matchesFilter({ 'items.01.sku': 'B-7' }, context), false);
    assert.equal(matchesFilter({ 'items.01': { $exists: true } }, context), false);
    assert.deepEqual(mapped({ rules: [{ to: 'sku', from: 'items.01.sku', default: 'none' }] }, data), {
      sku: 'none',
    });
    // Writing by name into an array replaces it with an object (never throws).
    assert.deepEqual(mapped({ mode: 'merge', rules: [{ to: 'items.01', value: 'x' }] }, data), {
      items: { '01': 'x' },
    });
  });

  it('remove with a name (not an index) on an array leaves the array as it is', () => {
    const data = { tags: ['t0', 't1'] };

    assert.deepEqual(
      mapped(
        {
          mode: 'merge',
          rules: [{ remove: 'tags.x' }, { remove: 'tags.01' }, { remove: 'tags.2' }],
        },
        data,
      ),
      { tags: ['t0', 't1'] },
    );
  });
});

describe('mapping documents and rules', () => {
  it('refuses empty segments in a source under any root, at validation time', () => {
    const details = validateMapping({
      rules: [
        { to: 'a', from: '$event..id' },
        { to: 'b', from: '$data.x..y' },
        { to: 'c', from: '$partner.' },
        { to: 'd', from: 'x.' },
      ],
    });

    assert.deepEqual(
      details.map((d) => d.field),
      ['mapping.rules[0].from', 'mapping.rules[1].from', 'mapping.rules[2].from', 'mapping.rules[3].from'],
    );
    for (const detail of details) assert.match(detail.message, /empty/);
  });

  it('refuses default and transform in a remove rule', () => {
    assert.deepEqual(validateMapping({ rules: [{ remove: 'a', default: 1, transform: 'trim' }] }), [
      { field: 'mapping.rules[0].default', message: 'is not allowed in a remove rule' },
      { field: 'mapping.rules[0].transform', message: 'is not allowed in a remove rule' },
    ]);
  });

  it('merge mode on an event without data starts from {} and applies the rules', () => {
    assert.deepEqual(mapped({ mode: 'merge', rules: [] }, undefined), {});
    assert.deepEqual(mapped({ mode: 'merge', rules: [{ to: 'a', value: 1 }] }, undefined), { a: 1 });
  });

  it('$data.<path> reads a path in the data', () => {
    const data = { order: { id: 'o-1' }, $event: 'not the attributes' };

    assert.deepEqual(mapped({ rules: [{ to: 'id', from: '$data.order.id' }] }, data), { id: 'o-1' });
  });
});

describe('mapping output size', () => {
  it('counts what the target path adds, not only the value', () => {
    const rules: MappingRule[] = [{ to: 'k'.repeat(300), value: 1 }];
    // The output, {"kkk…":1}, is 306 bytes for a 1-byte value.

    assert.equal(JSON.stringify(mapped({ rules }, {}, { maxOutputBytes: 306 })).length, 306);
    assertTooLarge(() => mapped({ rules }, {}, { maxOutputBytes: 200 }));
  });

  it('counts a transformed value at its size after the transform', () => {
    // The copy is ~208 bytes of JSON; as JSON text in a string (every quote and backslash escaped) ~414.
    const data = { obj: { q: '"'.repeat(100) } };
    const rules: MappingRule[] = [{ to: 'b', from: 'obj', transform: 'string' }];
    const size = JSON.stringify(mapped({ rules }, data)).length;
    assert.ok(size > 400, String(size));

    assert.equal(JSON.stringify(mapped({ rules }, data, { maxOutputBytes: size })).length, size);
    assertTooLarge(() => mapped({ rules }, data, { maxOutputBytes: 300 }));
  });
});

describe('mapping transforms at their edges', () => {
  it('number refuses blank strings and non-finite numbers (JSON has no Infinity)', () => {
    for (const value of ['', '   ', 'Infinity', '-Infinity', '1e999', 'NaN'])
      assertMappingFailed('number', value);
    assert.equal(transformed('number', '-1e3'), -1000);
  });

  it('boolean takes 0 and 1, nothing else numeric', () => {
    assert.equal(transformed('boolean', 0), false);
    assert.equal(transformed('boolean', 1), true);
    assertMappingFailed('boolean', 2);
    assertMappingFailed('boolean', 'yes');
  });

  it('epoch numbers are milliseconds from 1e11 on (magnitude, negatives too), seconds below', () => {
    assert.equal(transformed('isoTime', 1e11), '1973-03-03T09:46:40.000Z');
    assert.equal(transformed('isoTime', 99_999_999_999), '5138-11-16T09:46:39.000Z');
    assert.equal(transformed('isoTime', -1e12), '1938-04-24T22:13:20.000Z');
    assert.equal(transformed('unixSeconds', 1e11), 100_000_000);
    assert.equal(transformed('unixSeconds', -1e12), -1_000_000_000);
  });

  it('unixSeconds floors times before the epoch (not toward zero)', () => {
    assert.equal(transformed('unixSeconds', '1969-12-31T23:59:59.500Z'), -1);
    assert.equal(transformed('unixSeconds', -1500), -1500);
    assert.equal(transformed('unixSeconds', -1e11 - 500), -100_000_001);
  });

  it('an epoch number outside the range of dates is mapping_failed, not a RangeError', () => {
    for (const value of [1e20, -1e20, 8.64e15 + 1]) {
      assertMappingFailed('isoTime', value);
      assertMappingFailed('unixSeconds', value);
    }
    assertMappingFailed('isoTime', '100000000000000000000');
  });

  it('only a whole string is an ISO time, never a date found inside other text', () => {
    for (const value of ['on 2024-05-01', 'x2024-05-01T10:00:00Z', '2024-05-01T10:00:00Z!']) {
      assertMappingFailed('unixSeconds', value);
      assertMappingFailed('isoTime', value);
    }
  });
});

describe('the processor hands filters and mappings the CloudEvents attributes', () => {
  let store: SqliteStore;
  let published: BusMessage[];
  let offset = 0;

  const processor = () => storeProcessor(store, () => published);

  const record = (attrs: Record<string, unknown>): ConsumedMessage => ({
    topic: 'ingress.orders.created.v1',
    partition: 0,
    offset: offset++,
    value: JSON.stringify({
      specversion: '1.0',
      id: `e-${offset}`,
      source: '/shop/eu',
      type: 'orders.created',
      schemaversion: 1,
      data: { amount: 5 },
      ...attrs,
    }),
    headers: {},
    timestamp: Date.now(),
  });

  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    published = [];
    await store.schemas.insert(schemaRecord({ schema: { type: 'object' } }));
    await store.partners.insert(partnerRecord({ id: 'acme' }));
  });

  it('routes by $event filters and maps $event attributes (subject, time, extensions)', async () => {
    const filter = {
      '$event.source': '/shop/eu',
      '$event.subject': 'order/o-1',
      '$event.region': 'eu-west-1',
    };
    const mapping = {
      rules: [
        { to: 'type', from: '$event.type' },
        { to: 'subject', from: '$event.subject' },
        { to: 'time', from: '$event.time' },
        { to: 'region', from: '$event.region' },
        { to: 'partner', from: '$partner.name' },
      ],
    };
    assert.deepEqual(validateFilter(filter), []);
    assert.deepEqual(validateMapping(mapping), []);
    await store.subscriptions.insert(subscriptionRecord({ id: 'by-event', filter, mapping }));

    const matching = { subject: 'order/o-1', time: '2024-05-01T10:00:00Z', region: 'eu-west-1' };
    const result = await processor().processBatch([
      record(matching),
      record({ ...matching, subject: 'order/o-2' }),
      record({ ...matching, region: 'us-east-1' }),
    ]);

    assert.deepEqual(result.failed, []);
    const egress = published.filter((m) => m.topic.startsWith('egress.'));
    assert.equal(egress.length, 1, 'only the event whose attributes match');
    assert.deepEqual(JSON.parse(parseDeliveryTask(egress[0]!.value).body), {
      type: 'orders.created',
      subject: 'order/o-1',
      time: '2024-05-01T10:00:00Z',
      region: 'eu-west-1',
      partner: 'ACME Corp',
    });
  });
});
