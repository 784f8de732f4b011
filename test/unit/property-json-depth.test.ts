/**
 * Property-based tests of the nesting-depth limit: the iterative checker agrees with a plain
 * recursive measure on arbitrary JSON, never overflows however deep the value, and every entry
 * point of untrusted JSON refuses a value nested one level too deep, wherever it sits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseStructuredEvent } from '../../src/common/envelope.ts';
import { isWebhooksError } from '../../src/common/errors.ts';
import { validateFilter } from '../../src/common/filter.ts';
import { InputReader } from '../../src/common/input.ts';
import {
  exceedsJsonDepth,
  type JsonValue,
  jsonTextComplexity,
  jsonTextDepth,
  jsonTextExceeds,
  MAX_JSON_DEPTH,
} from '../../src/common/json.ts';
import { validateMapping } from '../../src/common/mapping.ts';
import fc from '../support/property.ts';

/** The reference: recursion is fine here, the values are small. */
function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + Math.max(0, ...children.map(depthOf));
}

/** Wraps `inner` in `levels` containers, each an array or an object by `kinds` (cycled), iteratively. */
function nest(inner: JsonValue, levels: number, kinds: readonly boolean[]): JsonValue {
  let value = inner;
  for (let i = 0; i < levels; i++) value = kinds[i % kinds.length] ? [1, value] : { k: value, s: 'x' };
  return value;
}

/** A value of exactly `depth` levels: a chain of mixed containers around a scalar. */
const exactDepth = (min: number, max: number) =>
  fc.record({
    depth: fc.integer({ min, max }),
    kinds: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
    leaf: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
  });

describe('property: the nesting-depth checker', () => {
  it('agrees with a recursive measure on arbitrary JSON, for every limit', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 0, max: 12 }), (value, limit) => {
        assert.equal(exceedsJsonDepth(value, limit), depthOf(value) > limit);
      }),
      { numRuns: 500 },
    );
  });

  it('measures chains of mixed arrays and objects exactly', () => {
    fc.assert(
      fc.property(exactDepth(0, 300), fc.integer({ min: 0, max: 300 }), ({ depth, kinds, leaf }, limit) => {
        assert.equal(exceedsJsonDepth(nest(leaf, depth, kinds), limit), depth > limit);
      }),
      { numRuns: 200 },
    );
  });

  it('reads the same depth from the text as from the parsed value, up to its limit', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          exactDepth(0, 80).map(({ depth, kinds, leaf }) => nest(leaf, depth, kinds)),
        ),
        fc.boolean(),
        fc.integer({ min: 0, max: 70 }),
        (value, indent, limit) => {
          const text = JSON.stringify(value, null, indent ? 2 : undefined);
          assert.equal(jsonTextDepth(text, limit), Math.min(depthOf(value), limit + 1));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('never overflows the stack: a million levels are simply too deep', () => {
    assert.equal(exceedsJsonDepth(nest(1, 1_000_000, [true, false, false])), true);
    assert.equal(exceedsJsonDepth(JSON.parse(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`)), true);
  });
});

describe('property: every entry point refuses JSON nested one level too deep', () => {
  /** A value exactly at the limit, or one level beyond it, somewhere inside an ordinary document. */
  const placed = fc.record({
    tooDeep: fc.boolean(),
    kinds: fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }),
    siblings: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  });

  /** `{...siblings, deep: <chain>}` whose total depth is `limit` or `limit + 1`. */
  function document(limit: number, p: { tooDeep: boolean; kinds: boolean[]; siblings: object }): JsonValue {
    const chain = nest('leaf', limit - 1 + (p.tooDeep ? 1 : 0), p.kinds);
    return { ...(p.siblings as Record<string, JsonValue>), deep: chain };
  }

  it('event data', () => {
    fc.assert(
      fc.property(placed, (p) => {
        const event = {
          specversion: '1.0',
          id: 'e',
          source: '/s',
          type: 'a.b',
          data: document(MAX_JSON_DEPTH, p),
        };
        try {
          parseStructuredEvent(event);
          assert.equal(p.tooDeep, false);
        } catch (err) {
          assert.ok(isWebhooksError(err) && err.kind === 'validation', String(err));
          assert.equal(p.tooDeep, true, String(err));
          assert.deepEqual(
            err.details.map((d) => [d.field, d.code]),
            [['data', 'too_deep']],
          );
        }
      }),
      { numRuns: 100 },
    );
  });

  it('admin objects read with a depth limit (partner metadata)', () => {
    fc.assert(
      fc.property(placed, (p) => {
        const input = new InputReader({ metadata: document(MAX_JSON_DEPTH, p) }, ['metadata']);
        const metadata = input.object('metadata', { maxDepth: MAX_JSON_DEPTH });
        assert.equal(metadata === undefined, p.tooDeep);
        assert.deepEqual(
          input.details.map((d) => [d.field, d.code]),
          p.tooDeep ? [['metadata', 'too_deep']] : [],
        );
      }),
      { numRuns: 100 },
    );
  });

  it('filter operands and mapping values', () => {
    fc.assert(
      fc.property(placed, fc.constantFrom('$eq', '$neq', '$in', 'literal'), (p, op) => {
        const value = document(MAX_JSON_DEPTH, p);
        const condition = op === 'literal' ? [value] : op === '$in' ? { $in: [value] } : { [op]: value };
        // A literal array and $in add one level around the value: the limit applies to the operand.
        const operandTooDeep = op === 'literal' || op === '$in' ? true : p.tooDeep;
        const filterCodes = validateFilter({ field: condition as JsonValue }).map((d) => d.code);
        assert.deepEqual(filterCodes, operandTooDeep ? ['too_deep'] : []);

        const mappingCodes = validateMapping({ rules: [{ to: 'a', value }] }).map((d) => d.code);
        assert.deepEqual(mappingCodes, p.tooDeep ? ['too_deep'] : []);
      }),
      { numRuns: 100 },
    );
  });
});

/** The reference for the text count: containers, plus the separators between their members. */
function valuesOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + Math.max(0, children.length - 1) + children.reduce((n: number, c) => n + valuesOf(c), 0);
}

describe('property: counting JSON values from the text', () => {
  it('agrees with the parsed value, compact or indented, whatever its strings hold', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), fc.integer({ min: 0, max: 40 }), (value, indent, limit) => {
        const text = JSON.stringify(value, null, indent ? 2 : undefined);
        // Texts shorter than the limit are not scanned (they cannot hold more): measure the rest.
        if (text.length <= limit) assert.equal(jsonTextExceeds(text, limit), false);
        else assert.equal(jsonTextExceeds(text, limit), valuesOf(value) > limit);
      }),
      { numRuns: 1000 },
    );
  });

  it('finds an object of more than maxMembers members, at any depth, as the parsed value has it', () => {
    const widest = (value: unknown): number => {
      if (typeof value !== 'object' || value === null) return 0;
      const children = Array.isArray(value) ? value : Object.values(value);
      const own = Array.isArray(value) ? 0 : children.length;
      return Math.max(own, ...children.map(widest));
    };
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.boolean(),
        fc.integer({ min: 1, max: 6 }),
        (value, indent, maxMembers) => {
          const text = JSON.stringify(value, null, indent ? 2 : undefined);
          const found = jsonTextComplexity(text, Number.POSITIVE_INFINITY, maxMembers);
          if (text.length <= maxMembers) assert.equal(found, undefined);
          else assert.equal(found, widest(value) > maxMembers ? 'members' : undefined);
        },
      ),
      { numRuns: 1000 },
    );
    // Arrays are not objects: their elements are no members, however many.
    assert.equal(jsonTextComplexity(JSON.stringify({ a: [1, 2, 3, 4, 5, 6] }), 100, 2), undefined);
    assert.equal(jsonTextComplexity(JSON.stringify([{ a: 1, b: 2, c: 3 }]), 100, 2), 'members');
    assert.equal(jsonTextComplexity(JSON.stringify({ s: 'a,b,c,d', t: { u: 1 } }), 100, 2), undefined);
  });

  it('skips commas, brackets and escaped quotes inside strings', () => {
    const text = JSON.stringify({ a: ',[{,",{[', b: ['x,y', '\\', '"'] });
    assert.equal(valuesOf(JSON.parse(text)), 5); // the object, its second member, the array, two more elements
    assert.equal(jsonTextExceeds(text, 5), false);
    assert.equal(jsonTextExceeds(text, 4), true);
  });
});
