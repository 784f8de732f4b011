import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../../src/common/errors.ts';
import type { FilterContext } from '../../src/common/filter.ts';
import { assertValidFilter, matchesFilter, validateFilter } from '../../src/common/filter.ts';
import type { JsonObject } from '../../src/common/json.ts';

const order = {
  orderId: 'o-1',
  amount: 120,
  currency: 'EUR',
  placedAt: '2024-05-01T10:00:00Z',
  customer: { tier: 'gold', country: 'FR', vip: true, note: null },
  tags: ['new', 'promo'],
  items: [
    { sku: 'A-1', qty: 2 },
    { sku: 'B-7', qty: 1 },
  ],
  dims: [3, 4],
};

const context: FilterContext = {
  data: order,
  event: {
    id: 'evt-1',
    type: 'shop.order_created',
    source: '/shop/eu',
    subject: 'order/o-1',
    time: '2024-05-01T10:00:01Z',
    region: 'eu-west-1',
  },
};

/** Validates first (as subscription admin does), then matches (as the processor does). */
function matches(filter: JsonObject): boolean {
  assert.deepEqual(validateFilter(filter), [], 'test filter must be valid');
  return matchesFilter(filter, context);
}

describe('filter matching: literals and paths', () => {
  it('matches everything with an empty filter', () => {
    assert.equal(matches({}), true);
  });

  it('treats a literal as implicit equality on a dotted path', () => {
    assert.equal(matches({ 'customer.tier': 'gold' }), true);
    assert.equal(matches({ 'customer.tier': 'silver' }), false);
  });

  it('treats a nested object without operators as a nested path', () => {
    assert.equal(matches({ customer: { tier: 'gold', country: 'FR' } }), true);
    assert.equal(matches({ customer: { tier: 'gold', country: 'DE' } }), false);
  });

  it('ANDs several keys in one object', () => {
    assert.equal(matches({ currency: 'EUR', amount: 120 }), true);
    assert.equal(matches({ currency: 'EUR', amount: 121 }), false);
  });

  it('addresses array elements by index', () => {
    assert.equal(matches({ 'items.1.sku': 'B-7' }), true);
    assert.equal(matches({ 'items.0.sku': 'B-7' }), false);
  });

  it('matches a scalar against any element of an array field', () => {
    assert.equal(matches({ tags: 'promo' }), true);
    assert.equal(matches({ tags: 'old' }), false);
  });

  it('continues a named segment into every element of an array', () => {
    assert.equal(matches({ 'items.sku': 'B-7' }), true);
    assert.equal(matches({ 'items.sku': 'Z-9' }), false);
  });

  it('compares an array operand with the whole array, deeply', () => {
    assert.equal(matches({ tags: ['new', 'promo'] }), true);
    assert.equal(matches({ tags: ['promo', 'new'] }), false);
  });

  it('compares objects deeply under $eq, ignoring key order', () => {
    assert.equal(matches({ 'items.0': { $eq: { qty: 2, sku: 'A-1' } } }), true);
    assert.equal(matches({ 'items.0': { $eq: { sku: 'A-1' } } }), false);
  });

  it('$in and $nin: whole values or, for array fields, elements equal to a non-array candidate (key order ignored)', () => {
    assert.equal(matches({ items: { $in: [{ qty: 1, sku: 'B-7' }, 'x'] } }), true, 'an element');
    assert.equal(
      matches({ items: { $in: [[{ sku: 'A-1', qty: 2 }]] } }),
      false,
      'an array is the whole value',
    );
    assert.equal(matches({ dims: { $in: [[3, 4]] } }), true, 'the whole array');
    assert.equal(matches({ dims: { $in: [[4]] } }), false);
    assert.equal(matches({ amount: { $in: ['120', 121] } }), false, 'a string is not a number');
    assert.equal(matches({ amount: { $in: [120] } }), true);
    assert.equal(matches({ tags: { $nin: ['promo'] } }), false);
    assert.equal(matches({ tags: { $nin: ['old', ['new']] } }), true);
    // The same stored filter evaluated twice (its candidates worked out once) gives the same answer.
    const filter = assertValidFilter({ 'customer.tier': { $in: ['silver', 'gold'] } });
    assert.equal(matchesFilter(filter, context), true);
    assert.equal(matchesFilter(filter, { ...context, data: { customer: { tier: 'bronze' } } }), false);
  });

  it('$eq on an object nested under a __proto__ key compares that key too', () => {
    const data = JSON.parse('{"meta": {"__proto__": {"admin": true}}}');
    assert.equal(matchesFilter({ meta: { $eq: {} } }, { ...context, data }), false);
    assert.equal(
      matchesFilter({ meta: { $eq: JSON.parse('{"__proto__": {"admin": true}}') } }, { ...context, data }),
      true,
    );
  });

  it('matches an explicit null only where the value is null', () => {
    assert.equal(matches({ 'customer.note': null }), true);
    assert.equal(matches({ 'customer.missing': null }), false);
  });

  it('reads CloudEvents attributes with $event. paths', () => {
    assert.equal(matches({ '$event.subject': 'order/o-1', '$event.source': '/shop/eu' }), true);
    assert.equal(matches({ '$event.type': 'shop.order_cancelled' }), false);
  });

  it('reads extension attributes and nested $event objects', () => {
    assert.equal(matches({ $event: { region: 'eu-west-1' } }), true);
    assert.equal(matches({ '$event.region': { $in: ['us-east-1'] } }), false);
  });

  it('never reads inherited properties or array length', () => {
    assert.equal(matches({ 'customer.toString': { $exists: true } }), false);
    assert.equal(matches({ 'tags.length': 2 }), false);
  });

  it('does not read $event attributes through a plain data path', () => {
    assert.equal(matches({ subject: 'order/o-1' }), false);
  });
});

describe('filter matching: comparison operators', () => {
  const cases: [string, JsonObject, boolean][] = [
    ['$eq true', { currency: { $eq: 'EUR' } }, true],
    ['$eq false', { currency: { $eq: 'USD' } }, false],
    ['$neq true', { currency: { $neq: 'USD' } }, true],
    ['$neq false', { currency: { $neq: 'EUR' } }, false],
    ['$neq on a missing field', { coupon: { $neq: 'X' } }, true],
    ['$neq against any array element', { tags: { $neq: 'promo' } }, false],
    ['$in true', { 'customer.tier': { $in: ['gold', 'platinum'] } }, true],
    ['$in false', { 'customer.tier': { $in: ['silver'] } }, false],
    ['$in on an array field', { tags: { $in: ['x', 'new'] } }, true],
    ['$in with an empty list', { currency: { $in: [] } }, false],
    ['$nin true', { 'customer.tier': { $nin: ['silver'] } }, true],
    ['$nin false', { 'customer.tier': { $nin: ['gold'] } }, false],
    ['$nin on a missing field', { coupon: { $nin: ['X'] } }, true],
    ['$gt true', { amount: { $gt: 100 } }, true],
    ['$gt false on equality', { amount: { $gt: 120 } }, false],
    ['$gte true on equality', { amount: { $gte: 120 } }, true],
    ['$gte false', { amount: { $gte: 121 } }, false],
    ['$lt true', { amount: { $lt: 121 } }, true],
    ['$lt false on equality', { amount: { $lt: 120 } }, false],
    ['$lte true on equality', { amount: { $lte: 120 } }, true],
    ['$lte false', { amount: { $lte: 119 } }, false],
    ['$gt compares ISO times as strings', { placedAt: { $gt: '2024-04-30T23:59:59Z' } }, true],
    ['$lt compares ISO times as strings', { placedAt: { $lt: '2024-04-30T23:59:59Z' } }, false],
    ['$gt never compares a number with a string', { amount: { $gt: '100' } }, false],
    ['$lt never compares a string with a number', { currency: { $lt: 5 } }, false],
    ['$gt on a missing field', { coupon: { $gt: 0 } }, false],
    ['$gt matches any array element', { dims: { $gt: 3 } }, true],
    ['$gt fails when no array element matches', { dims: { $gt: 4 } }, false],
    ['range on one field', { amount: { $gt: 100, $lte: 120 } }, true],
    ['$exists true on a present field', { 'customer.vip': { $exists: true } }, true],
    ['$exists true on a null field', { 'customer.note': { $exists: true } }, true],
    ['$exists true on a missing field', { coupon: { $exists: true } }, false],
    ['$exists false on a missing field', { coupon: { $exists: false } }, true],
    ['$exists false on a present field', { currency: { $exists: false } }, false],
    ['$exists on an out-of-range index', { 'items.5': { $exists: true } }, false],
  ];
  for (const [name, filter, expected] of cases) {
    it(name, () => {
      assert.equal(matches(filter), expected);
    });
  }
});

describe('filter matching: logical operators', () => {
  it('$and requires every filter', () => {
    assert.equal(matches({ $and: [{ currency: 'EUR' }, { amount: { $gt: 100 } }] }), true);
    assert.equal(matches({ $and: [{ currency: 'EUR' }, { amount: { $gt: 500 } }] }), false);
  });

  it('$or requires one filter', () => {
    assert.equal(matches({ $or: [{ currency: 'USD' }, { 'customer.tier': 'gold' }] }), true);
    assert.equal(matches({ $or: [{ currency: 'USD' }, { 'customer.tier': 'silver' }] }), false);
  });

  it('$not negates a filter', () => {
    assert.equal(matches({ $not: { currency: 'USD' } }), true);
    assert.equal(matches({ $not: { currency: 'EUR' } }), false);
  });

  it('$not negates operators on one field', () => {
    assert.equal(matches({ amount: { $not: { $gt: 500 } } }), true);
    assert.equal(matches({ amount: { $not: { $gt: 100 } } }), false);
  });

  it('$or inside a nested path applies relative to that path', () => {
    assert.equal(matches({ customer: { $or: [{ tier: 'silver' }, { country: 'FR' }] } }), true);
    assert.equal(matches({ customer: { $or: [{ tier: 'silver' }, { country: 'DE' }] } }), false);
  });

  it('combines logical operators with fields and $event paths', () => {
    const filter: JsonObject = {
      '$event.type': 'shop.order_created',
      $or: [{ amount: { $gte: 1000 } }, { $and: [{ 'customer.vip': true }, { $not: { tags: 'test' } }] }],
    };
    assert.equal(matches(filter), true);
    assert.equal(matches({ ...filter, '$event.type': 'shop.other' }), false);
  });
});

describe('filter validation', () => {
  function fieldsOf(filter: unknown): string[] {
    return validateFilter(filter).map((detail) => detail.field ?? '');
  }

  it('accepts a valid document', () => {
    assert.deepEqual(validateFilter({ 'customer.tier': { $in: ['gold'] }, $not: { tags: 'test' } }), []);
  });

  it('refuses a filter that is not an object', () => {
    assert.deepEqual(validateFilter(['a']), [{ field: 'filter', message: 'must be a JSON object' }]);
  });

  it('names the exact field of a bad comparison operand', () => {
    assert.deepEqual(validateFilter({ customer: { tier: { $gt: true } } }), [
      { field: 'filter.customer.tier.$gt', message: '$gt expects a number or string' },
    ]);
  });

  it('uses the given field prefix', () => {
    assert.equal(
      validateFilter({ amount: { $lt: null } }, 'body.filter')[0]?.field,
      'body.filter.amount.$lt',
    );
  });

  it('refuses an unknown operator', () => {
    assert.deepEqual(validateFilter({ amount: { $foo: 1 } }), [
      { field: 'filter.amount.$foo', message: 'unknown operator $foo' },
    ]);
  });

  it('refuses an unknown top-level operator', () => {
    assert.deepEqual(validateFilter({ $nor: [] }), [
      { field: 'filter.$nor', message: 'unknown operator $nor' },
    ]);
  });

  it('refuses bad operands of $in, $nin and $exists', () => {
    assert.deepEqual(validateFilter({ a: { $in: 'x' }, b: { $nin: 1 }, c: { $exists: 'yes' } }), [
      { field: 'filter.a.$in', message: '$in expects an array' },
      { field: 'filter.b.$nin', message: '$nin expects an array' },
      { field: 'filter.c.$exists', message: '$exists expects true or false' },
    ]);
  });

  it('refuses empty or malformed $and / $or and non-object $not', () => {
    assert.deepEqual(validateFilter({ $and: [], $or: [{ a: 1 }, 'b'], $not: 3 }), [
      { field: 'filter.$and', message: '$and expects a non-empty array of filters' },
      { field: 'filter.$or[1]', message: 'expects a filter object' },
      { field: 'filter.$not', message: '$not expects a non-empty filter object' },
    ]);
  });

  it('names fields inside logical operators with their index', () => {
    assert.deepEqual(fieldsOf({ $or: [{ a: 1 }, { b: { $gte: [] } }] }), ['filter.$or[1].b.$gte']);
  });

  it('refuses mixing operators and field names in one object', () => {
    assert.deepEqual(fieldsOf({ customer: { $eq: 'x', tier: 'gold' } }), ['filter.customer']);
  });

  it('refuses a comparison operator with no field', () => {
    assert.deepEqual(validateFilter({ $eq: 1 }), [{ field: 'filter.$eq', message: '$eq needs a field' }]);
  });

  it('refuses an empty object as a field condition', () => {
    assert.deepEqual(fieldsOf({ customer: {} }), ['filter.customer']);
  });

  it('refuses empty path segments', () => {
    assert.deepEqual(fieldsOf({ 'customer..tier': 'gold', '$event.': 'x' }), [
      'filter.customer..tier',
      'filter.$event.',
    ]);
  });

  it('refuses $event paths below the top level', () => {
    assert.deepEqual(validateFilter({ customer: { '$event.id': 'x' } }), [
      { field: 'filter.customer.$event.id', message: '$event paths are only allowed at the top level' },
    ]);
  });

  it('refuses prototype-polluting path segments', () => {
    const filter = JSON.parse('{"__proto__": {"admin": true}, "a.constructor": 1, "b": {"prototype": 2}}');
    assert.deepEqual(fieldsOf(filter), ['filter.__proto__', 'filter.a.constructor', 'filter.b.prototype']);
  });

  it('limits nesting depth', () => {
    let filter: JsonObject = { a: 1 };
    for (let i = 0; i < 20; i++) filter = { $not: filter };
    const details = validateFilter(filter);
    assert.equal(details.length, 1);
    assert.match(details[0]?.message ?? '', /deeper than 16 levels/);
  });

  it('limits the number of conditions', () => {
    const filter: JsonObject = {};
    for (let i = 0; i < 257; i++) filter[`f${i}`] = i;
    assert.deepEqual(validateFilter(filter), [{ field: 'filter', message: 'has more than 256 conditions' }]);
  });

  it('stops reading a filter of 100,000 conditions at once: one problem, not one per key', () => {
    const filter: JsonObject = {};
    for (let i = 0; i < 100_000; i++) filter[`$bogus${i}`] = i;
    assert.deepEqual(validateFilter(filter), [
      { field: 'filter', message: 'has more than 256 conditions', code: 'too_many_conditions' },
    ]);
  });

  it('refuses operands and literals nested more than 64 levels deep, a million levels too, with too_deep', () => {
    for (const depth of [65, 1_000_000]) {
      const deep = JSON.parse(`${'['.repeat(depth)}1${']'.repeat(depth)}`);
      const filter = { a: { $eq: deep }, b: { $in: [deep] }, c: deep, d: { $not: { $neq: deep } } };

      const details = validateFilter(filter);

      const message = 'nests arrays and objects more than 64 levels deep';
      assert.deepEqual(details, [
        { field: 'filter.a.$eq', message, code: 'too_deep' },
        { field: 'filter.b.$in', message, code: 'too_deep' },
        { field: 'filter.c', message, code: 'too_deep' },
        { field: 'filter.d.$not.$neq', message, code: 'too_deep' },
      ]);
    }
  });

  it('accepts an operand nested exactly 64 levels deep and matches with it', () => {
    const value = JSON.parse(`${'['.repeat(64)}1${']'.repeat(64)}`);
    const filter = assertValidFilter({ deep: { $eq: value } });

    assert.equal(matchesFilter(filter, { data: { deep: value }, event: {} }), true);
  });

  it('assertValidFilter throws invalid_filter carrying every detail', () => {
    assert.throws(
      () => assertValidFilter({ a: { $gt: {} }, b: { $bad: 1 } }),
      (err: unknown) =>
        err instanceof ValidationError && err.code === 'invalid_filter' && err.details.length === 2,
    );
  });
});
