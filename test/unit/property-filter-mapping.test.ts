/**
 * Property-based tests of the filter and mapping languages: validation never throws on arbitrary
 * JSON, only reports; a validated document never makes matching or applying throw on arbitrary
 * events — except a mapping's own `mapping_failed` / `mapping_output_too_large`, which are
 * permanent refusals of that event.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWebhooksError } from '../../src/common/errors.ts';
import { matchesFilter, validateFilter } from '../../src/common/filter.ts';
import type { JsonObject } from '../../src/common/json.ts';
import { applyMapping, type MappingDocument, validateMapping } from '../../src/common/mapping.ts';
import fc from '../support/property.ts';

const PATHS = [
  'a',
  'b',
  'a.b',
  'items.0',
  'items.sku',
  'tags',
  '$event.id',
  '$event.type',
  '__proto__',
  'a..b',
  '0',
];
const OPERATORS = [
  '$eq',
  '$neq',
  '$in',
  '$nin',
  '$gt',
  '$gte',
  '$lt',
  '$lte',
  '$exists',
  '$and',
  '$or',
  '$not',
  '$foo',
];

/** Filter-shaped documents: path and operator keys, nested, with arbitrary operands. */
const filterLike = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.jsonValue({ maxDepth: 2 }),
    fc.dictionary(fc.constantFrom(...PATHS, ...OPERATORS), tie('node'), { maxKeys: 4 }),
    fc.array(tie('node'), { maxLength: 3 }),
  ),
})).node;

/** Filters built from valid parts (a few turn out invalid, e.g. `$event` below the top: filtered out). */
const VALID_PATHS = ['a', 'b', 'a.b', 'items.0.sku', 'items.sku', 'tags', '$event.id', '$event.type'];
const validFilter = fc
  .letrec<{ filter: unknown; condition: unknown }>((tie) => {
    const operand = fc.jsonValue({ maxDepth: 2 });
    const ordered = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom('a', 'm', 'z', '2024-05-01'));
    const comparison = fc.oneof(
      fc.record({ $eq: operand }),
      fc.record({ $neq: operand }),
      fc.record({ $in: fc.array(operand, { maxLength: 3 }) }),
      fc.record({ $nin: fc.array(operand, { maxLength: 3 }) }),
      fc.record({ $gt: ordered, $lte: ordered }, { requiredKeys: ['$gt'] }),
      fc.record({ $gte: ordered, $lt: ordered }, { requiredKeys: ['$lt'] }),
      fc.record({ $exists: fc.boolean() }),
    );
    return {
      filter: fc.oneof(
        { depthSize: 'small' },
        fc.dictionary(fc.constantFrom(...VALID_PATHS), tie('condition'), { minKeys: 1, maxKeys: 3 }),
        fc.record({ $and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $not: tie('filter') }),
      ),
      condition: fc.oneof(
        { depthSize: 'small' },
        operand.filter((v) => typeof v !== 'object' || Array.isArray(v) || v === null),
        comparison,
        fc.record({ $not: comparison }),
        tie('filter'),
      ),
    };
  })
  .filter.filter((f) => validateFilter(f).length === 0);

/** Events with the fields the filters name (or not), and attributes with the usual names. */
const small = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom('a', 'm', 'z', '2024-05-01'),
  fc.constant(null),
);
const eventContext = fc.record({
  data: fc.oneof(
    fc.record(
      {
        a: fc.oneof(small, fc.record({ b: small })),
        b: small,
        items: fc.array(fc.record({ sku: small }), { maxLength: 3 }),
        tags: fc.array(small, { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    fc.jsonValue({ maxDepth: 4 }),
  ),
  event: fc.record({ id: fc.oneof(small, fc.string()), type: fc.string(), source: fc.string() }),
});

describe('property: filters', () => {
  it('validation only reports problems, on arbitrary JSON and on filter-shaped documents', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), filterLike), (filter) => {
        const details = validateFilter(filter);
        for (const detail of details) {
          assert.equal(typeof detail.message, 'string');
          assert.ok(detail.field?.startsWith('filter'));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a validated filter matches arbitrary events without throwing; $not is its exact negation', () => {
    fc.assert(
      fc.property(fc.oneof(validFilter, filterLike), eventContext, (filter, context) => {
        if (validateFilter(filter).length > 0) return;
        const matched = matchesFilter(filter as JsonObject, context);
        assert.equal(typeof matched, 'boolean');
        assert.equal(matchesFilter({ $not: filter as JsonObject }, context), !matched);
      }),
      { numRuns: 300 },
    );
  });
});

const SOURCES = [
  'a',
  'a.b',
  'items.0',
  '$data',
  '$data.a',
  '$event',
  '$event.id',
  '$event.time',
  '$partner',
  '$partner.name',
];
const TARGETS = ['out', 'out.x', 'out.0', 'a', 'a.b.c', 'items.1', 'items.0.sku'];
const TRANSFORMS = [
  'uppercase',
  'lowercase',
  'trim',
  'string',
  'number',
  'boolean',
  'unixSeconds',
  'isoTime',
];

/** Rules built from valid parts (the validity filter below drops the rare invalid mix). */
const rule = fc.oneof(
  fc.record(
    {
      to: fc.constantFrom(...TARGETS),
      from: fc.constantFrom(...SOURCES),
      default: fc.jsonValue({ maxDepth: 2 }),
      transform: fc.constantFrom(...TRANSFORMS),
    },
    { requiredKeys: ['to', 'from'] },
  ),
  fc.record({ to: fc.constantFrom(...TARGETS), value: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ remove: fc.constantFrom(...TARGETS) }),
);
const validMapping = fc
  .record(
    { mode: fc.constantFrom('replace', 'merge'), rules: fc.array(rule, { maxLength: 8 }) },
    { requiredKeys: ['rules'] },
  )
  .filter((m) => validateMapping(m).length === 0);

/** Mapping-shaped documents with wrong parts mixed in, and arbitrary JSON. */
const mappingLike = fc.oneof(
  validMapping,
  fc.record(
    {
      mode: fc.constantFrom('replace', 'merge', 'patch', 7),
      rules: fc.array(
        fc.oneof(
          rule,
          fc.dictionary(
            fc.constantFrom('to', 'from', 'value', 'default', 'transform', 'remove', 'extra'),
            fc.oneof(
              fc.constantFrom(...SOURCES, ...TARGETS, '$env.X', '$bad', '', '__proto__.x', 'shout'),
              fc.jsonValue({ maxDepth: 2 }),
            ),
            { maxKeys: 4 },
          ),
          fc.jsonValue({ maxDepth: 2 }),
        ),
        { maxLength: 8 },
      ),
      other: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  ),
  fc.jsonValue(),
);

describe('property: mappings', () => {
  it('validation only reports problems, on arbitrary JSON and on mapping-shaped documents', () => {
    fc.assert(
      fc.property(mappingLike, (mapping) => {
        for (const detail of validateMapping(mapping)) {
          assert.equal(typeof detail.message, 'string');
          assert.ok(detail.field?.startsWith('mapping'));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a validated mapping builds a JSON payload from arbitrary events, or refuses the event for good', () => {
    const context = fc.record(
      {
        data: fc.jsonValue({ maxDepth: 4 }),
        event: fc.record({ id: fc.string(), time: fc.oneof(fc.string(), fc.date().map(String)) }),
        partner: fc.record({ name: fc.string() }),
      },
      { requiredKeys: ['data', 'event'] },
    );
    fc.assert(
      fc.property(
        validMapping,
        context,
        fc.integer({ min: 2, max: 4096 }),
        (mapping, ctx, maxOutputBytes) => {
          const before = JSON.stringify(ctx);
          try {
            const output = applyMapping(mapping as unknown as MappingDocument, ctx, { maxOutputBytes });
            assert.ok(Buffer.byteLength(JSON.stringify(output)) <= maxOutputBytes, 'within the limit');
            assert.deepEqual(JSON.parse(JSON.stringify(output)), output, 'plain JSON');
          } catch (err) {
            assert.ok(isWebhooksError(err), `not a platform error: ${String(err)}`);
            assert.equal(err.kind, 'unprocessable');
            assert.ok(['mapping_failed', 'mapping_output_too_large'].includes(err.code), err.code);
          }
          assert.equal(JSON.stringify(ctx), before, 'the event is never modified');
        },
      ),
      { numRuns: 500 },
    );
  });
});
