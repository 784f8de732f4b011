import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UnprocessableError, ValidationError } from '../../src/common/errors.ts';
import type { JsonValue } from '../../src/common/json.ts';
import type { MappingContext, MappingDocument, MappingRule } from '../../src/common/mapping.ts';
import { applyMapping, assertValidMapping, validateMapping } from '../../src/common/mapping.ts';

function makeContext(): MappingContext {
  return {
    data: {
      orderId: 'o-1',
      amount: 120,
      currency: 'eur',
      internal: { costCenter: 'cc-9' },
      items: [{ sku: 'A-1' }, { sku: 'B-7' }],
      note: null,
    },
    event: { id: 'evt-1', type: 'shop.order_created', source: '/shop', time: '2024-05-01T10:00:00Z' },
    partner: { id: 'acme', name: 'Acme Corp' },
  };
}

/** Validates first (as subscription admin does), then applies (as the processor does). */
function run(mapping: unknown, context: MappingContext = makeContext()): JsonValue {
  assert.deepEqual(validateMapping(mapping), [], 'test mapping must be valid');
  return applyMapping(mapping as MappingDocument, context);
}

function copyWith(transform: string, value: JsonValue): JsonValue | undefined {
  const mapping = { rules: [{ to: 'out', from: 'in', transform }] };
  const output = run(mapping, { data: { in: value }, event: {} });
  return (output as { out?: JsonValue }).out;
}

describe('mapping: building the payload', () => {
  it('builds the output only from rules in replace mode (the default)', () => {
    const output = run({ rules: [{ to: 'order.id', from: 'orderId' }] });
    assert.deepEqual(output, { order: { id: 'o-1' } });
  });

  it('starts from a deep copy of data in merge mode', () => {
    const context = makeContext();
    const output = run({ mode: 'merge', rules: [{ to: 'internal.costCenter', value: 'hidden' }] }, context);
    assert.equal((output as { orderId: string }).orderId, 'o-1');
    assert.deepEqual((output as { internal: unknown }).internal, { costCenter: 'hidden' });
    assert.deepEqual((context.data as { internal: unknown }).internal, { costCenter: 'cc-9' });
  });

  it('copies objects and array elements by path', () => {
    const output = run({
      rules: [
        { to: 'firstSku', from: 'items.0.sku' },
        { to: 'lines', from: 'items' },
      ],
    });
    assert.deepEqual(output, { firstSku: 'A-1', lines: [{ sku: 'A-1' }, { sku: 'B-7' }] });
  });

  it('does not alias the input: later rules cannot modify the event data', () => {
    const context = makeContext();
    run(
      {
        rules: [
          { to: 'copy', from: 'internal' },
          { to: 'copy.costCenter', value: 'changed' },
        ],
      },
      context,
    );
    assert.deepEqual((context.data as { internal: unknown }).internal, { costCenter: 'cc-9' });
  });

  it('reads CloudEvents attributes and partner info', () => {
    const output = run({
      rules: [
        { to: 'eventId', from: '$event.id' },
        { to: 'partnerName', from: '$partner.name' },
      ],
    });
    assert.deepEqual(output, { eventId: 'evt-1', partnerName: 'Acme Corp' });
  });

  it('copies whole roots with $data, $event and $partner', () => {
    const context = makeContext();
    const output = run(
      {
        rules: [
          { to: 'payload', from: '$data' },
          { to: 'meta', from: '$event' },
          { to: 'partner', from: '$partner' },
        ],
      },
      context,
    );
    assert.deepEqual(output, { payload: context.data, meta: context.event, partner: context.partner });
  });

  it('writes constants, never shared between outputs', () => {
    const mapping = { rules: [{ to: 'source', value: { app: 'shop' } }] };
    const first = run(mapping) as { source: { app: string } };
    first.source.app = 'mutated';
    assert.deepEqual(run(mapping), { source: { app: 'shop' } });
  });

  it('uses the default when the source is absent', () => {
    const output = run({
      rules: [
        { to: 'discount', from: 'discount', default: 0 },
        { to: 'amount', from: 'amount', default: 0 },
      ],
    });
    assert.deepEqual(output, { discount: 0, amount: 120 });
  });

  it('leaves the target unset when the source is absent and there is no default', () => {
    const output = run({ rules: [{ to: 'partnerTier', from: '$partner.tier' }] });
    assert.deepEqual(output, {});
  });

  it('treats a missing partner as absent', () => {
    const context = { ...makeContext(), partner: undefined };
    const output = run({ rules: [{ to: 'name', from: '$partner.name', default: 'unknown' }] }, context);
    assert.deepEqual(output, { name: 'unknown' });
  });

  it('copies an explicit null (null is present, not absent)', () => {
    assert.deepEqual(run({ rules: [{ to: 'note', from: 'note', default: 'n/a' }] }), { note: null });
  });

  it('removes a path, including an array element', () => {
    const output = run({
      mode: 'merge',
      rules: [{ remove: 'internal' }, { remove: 'items.0' }, { remove: 'not.there' }],
    });
    assert.deepEqual(output, {
      orderId: 'o-1',
      amount: 120,
      currency: 'eur',
      items: [{ sku: 'B-7' }],
      note: null,
    });
  });

  it('lets a later rule overwrite a non-object in the way', () => {
    const output = run({
      rules: [
        { to: 'order', value: 'scalar' },
        { to: 'order.id', from: 'orderId' },
      ],
    });
    assert.deepEqual(output, { order: { id: 'o-1' } });
  });

  it('writes into an existing array by index and appends at its length', () => {
    const output = run({
      mode: 'merge',
      rules: [
        { to: 'items.0.sku', value: 'X' },
        { to: 'items.2', value: { sku: 'C' } },
      ],
    });
    assert.deepEqual((output as { items: unknown }).items, [{ sku: 'X' }, { sku: 'B-7' }, { sku: 'C' }]);
  });

  it('merges a non-object data into an object once a rule writes', () => {
    const output = run({ mode: 'merge', rules: [{ to: 'a', value: 1 }] }, { data: [1, 2], event: {} });
    assert.deepEqual(output, { a: 1 });
  });

  it('keeps data unchanged in merge mode with no rules', () => {
    const context = makeContext();
    assert.deepEqual(run({ mode: 'merge', rules: [] }, context), context.data);
  });
});

describe('mapping: transforms', () => {
  const cases: [string, JsonValue, JsonValue][] = [
    ['uppercase', 'eur', 'EUR'],
    ['lowercase', 'EUR', 'eur'],
    ['trim', '  x y  ', 'x y'],
    ['string', 42, '42'],
    ['string', true, 'true'],
    ['string', { a: 1 }, '{"a":1}'],
    ['number', '12.5', 12.5],
    ['number', ' 7 ', 7],
    ['number', true, 1],
    ['boolean', 'TRUE', true],
    ['boolean', '0', false],
    ['boolean', 1, true],
    ['unixSeconds', '2024-05-01T10:00:00Z', 1714557600],
    ['unixSeconds', '2024-05-01T12:00:00+02:00', 1714557600],
    ['unixSeconds', '2024-05-01T10:00:00', 1714557600],
    ['unixSeconds', '2024-05-01', 1714521600],
    ['unixSeconds', 1714557600123, 1714557600],
    ['isoTime', 1714557600, '2024-05-01T10:00:00.000Z'],
    ['isoTime', 1714557600123, '2024-05-01T10:00:00.123Z'],
    ['isoTime', '1714557600', '2024-05-01T10:00:00.000Z'],
    ['isoTime', '2024-05-01T12:00:00+02:00', '2024-05-01T10:00:00.000Z'],
  ];
  for (const [transform, input, expected] of cases) {
    it(`${transform} turns ${JSON.stringify(input)} into ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(copyWith(transform, input), expected);
    });
  }

  it('a time without an offset is UTC whatever the process’s time zone (the tests run in UTC)', () => {
    const zone = process.env.TZ;
    process.env.TZ = 'Asia/Kolkata';
    try {
      assert.equal(copyWith('unixSeconds', '2024-05-01T10:00:00'), 1714557600);
      assert.equal(copyWith('isoTime', '2024-05-01T10:00:00'), '2024-05-01T10:00:00.000Z');
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
  });

  it('passes null through every transform', () => {
    assert.equal(copyWith('number', null), null);
    assert.equal(copyWith('isoTime', null), null);
  });

  it('writes the default as given, without the transform', () => {
    const output = run({ rules: [{ to: 'c', from: 'missing', default: 'eur', transform: 'uppercase' }] });
    assert.deepEqual(output, { c: 'eur' });
  });

  const failures: [string, JsonValue][] = [
    ['uppercase', 5],
    ['number', 'abc'],
    ['boolean', 'maybe'],
    ['unixSeconds', 'yesterday'],
    ['unixSeconds', '2024-02-30'],
    ['isoTime', 'not a time'],
  ];
  for (const [transform, input] of failures) {
    it(`${transform} refuses ${JSON.stringify(input)} with mapping_failed naming the rule`, () => {
      const mapping = {
        rules: [
          { to: 'x', value: 1 },
          { to: 'out', from: 'in', transform },
        ],
      };
      assert.throws(
        () => applyMapping(mapping as MappingDocument, { data: { in: input }, event: {} }),
        (err: unknown) =>
          err instanceof UnprocessableError &&
          err.code === 'mapping_failed' &&
          err.details[0]?.field === 'mapping.rules[1].transform',
      );
    });
  }
});

describe('mapping validation', () => {
  function validRules(count: number): MappingRule[] {
    return Array.from({ length: count }, (_, i) => ({ to: `f${i}`, value: i }));
  }

  it('accepts a valid document', () => {
    assert.deepEqual(validateMapping({ mode: 'merge', rules: validRules(3) }), []);
  });

  it('refuses a mapping that is not an object', () => {
    assert.deepEqual(validateMapping('x'), [{ field: 'mapping', message: 'must be a JSON object' }]);
  });

  it('refuses an unknown mode, missing rules and unknown properties', () => {
    assert.deepEqual(validateMapping({ mode: 'patch', extra: 1 }), [
      { field: 'mapping.extra', message: 'unknown property' },
      { field: 'mapping.mode', message: 'must be "replace" or "merge"' },
      { field: 'mapping.rules', message: 'must be an array of rules' },
    ]);
  });

  it('names the exact rule of an unknown transform', () => {
    const rules = [...validRules(2), { to: 'c', from: 'currency', transform: 'shout' }];
    const details = validateMapping({ rules });
    assert.equal(details.length, 1);
    assert.equal(details[0]?.field, 'mapping.rules[2].transform');
    assert.match(details[0]?.message ?? '', /must be one of uppercase, lowercase/);
  });

  it('uses the given field prefix', () => {
    assert.equal(validateMapping({ rules: [7] }, 'body.mapping')[0]?.field, 'body.mapping.rules[0]');
  });

  it('allows at most 200 rules', () => {
    assert.deepEqual(validateMapping({ rules: validRules(200) }), []);
    assert.deepEqual(validateMapping({ rules: validRules(201) }), [
      { field: 'mapping.rules', message: 'must have at most 200 rules' },
    ]);
  });

  it('needs exactly one of from or value', () => {
    assert.deepEqual(validateMapping({ rules: [{ to: 'a' }, { to: 'b', from: 'x', value: 1 }] }), [
      { field: 'mapping.rules[0]', message: 'needs exactly one of "from" or "value" (or "remove")' },
      { field: 'mapping.rules[1]', message: 'needs exactly one of "from" or "value" (or "remove")' },
    ]);
  });

  it('allows default and transform only with from', () => {
    const details = validateMapping({ rules: [{ to: 'a', value: 1, default: 2, transform: 'trim' }] });
    assert.deepEqual(
      details.map((detail) => detail.field),
      ['mapping.rules[0].default', 'mapping.rules[0].transform'],
    );
  });

  it('refuses a remove rule mixed with other keys', () => {
    assert.deepEqual(validateMapping({ rules: [{ remove: 'a', to: 'b' }] }), [
      { field: 'mapping.rules[0].to', message: 'is not allowed in a remove rule' },
    ]);
  });

  it('refuses empty, $-rooted and malformed target paths', () => {
    const details = validateMapping({
      rules: [
        { to: '', value: 1 },
        { to: '$', value: 1 },
        { to: 'a..b', value: 1 },
        { to: 3, value: 1 },
      ],
    });
    assert.deepEqual(
      details.map((detail) => detail.field),
      ['mapping.rules[0].to', 'mapping.rules[1].to', 'mapping.rules[2].to', 'mapping.rules[3].to'],
    );
  });

  it('refuses an unknown source root', () => {
    assert.deepEqual(
      validateMapping({ rules: [{ to: 'a', from: '$env.HOME' }] }).map((detail) => detail.field),
      ['mapping.rules[0].from'],
    );
  });

  it('refuses unknown rule properties', () => {
    assert.deepEqual(validateMapping({ rules: [{ to: 'a', value: 1, when: 'x' }] }), [
      { field: 'mapping.rules[0].when', message: 'unknown property' },
    ]);
  });

  it('refuses prototype-polluting segments in to, from and remove', () => {
    const details = validateMapping({
      rules: [
        { to: '__proto__.admin', value: true },
        { to: 'a', from: 'constructor.prototype' },
        { to: 'b', from: '$event.__proto__' },
        { remove: 'x.prototype' },
      ],
    });
    assert.deepEqual(
      details.map((detail) => detail.field),
      ['mapping.rules[0].to', 'mapping.rules[1].from', 'mapping.rules[2].from', 'mapping.rules[3].remove'],
    );
    assert.match(details[0]?.message ?? '', /"__proto__" is not allowed/);
  });

  it('never pollutes Object.prototype, even from data carrying a __proto__ key', () => {
    const data = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
    const output = run({ mode: 'merge', rules: [{ to: 'b', from: 'a' }] }, { data, event: {} });
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
    assert.equal(Object.getPrototypeOf(output), Object.prototype);
  });

  it('refuses a value or default nested more than 64 levels deep, a million levels too, with too_deep', () => {
    for (const depth of [65, 1_000_000]) {
      const deep = JSON.parse(`${'['.repeat(depth)}1${']'.repeat(depth)}`);

      const details = validateMapping({
        rules: [
          { to: 'a', value: deep },
          { to: 'b', from: 'x', default: deep },
        ],
      });

      const message = 'nests arrays and objects more than 64 levels deep';
      assert.deepEqual(details, [
        { field: 'mapping.rules[0].value', message, code: 'too_deep' },
        { field: 'mapping.rules[1].default', message, code: 'too_deep' },
      ]);
    }
  });

  it('accepts a constant nested exactly 64 levels deep', () => {
    const value = JSON.parse(`${'['.repeat(64)}1${']'.repeat(64)}`);

    assert.deepEqual(run({ rules: [{ to: 'a', value }] }, { data: {}, event: {} }), { a: value });
  });

  it('assertValidMapping throws invalid_mapping carrying every detail', () => {
    assert.throws(
      () => assertValidMapping({ rules: [{ to: '' }] }),
      (err: unknown) =>
        err instanceof ValidationError && err.code === 'invalid_mapping' && err.details.length === 2,
    );
  });
});

describe('mapping: output size', () => {
  /** An event's data of about `bytes` bytes of JSON. */
  function dataOf(bytes: number): { blob: string } {
    return { blob: 'x'.repeat(bytes - '{"blob":""}'.length) };
  }

  /** Asserts `fn` throws mapping_output_too_large over the default limit, naming `field`. */
  function assertOutputTooLarge(fn: () => unknown, field: string): void {
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof UnprocessableError, `expected UnprocessableError, got ${String(err)}`);
      assert.equal(err.code, 'mapping_output_too_large');
      assert.equal(err.message, "the mapping's output is larger than 1048576 bytes");
      assert.equal(err.details[0]?.field, field);
      assert.match(err.details[0]?.message ?? '', /^the output reached \d+ bytes with /);
      return true;
    });
  }

  it('refuses rules that copy $data over and over beyond 1 MiB (200 copies of 200 KB made 40 MB)', () => {
    const rules = Array.from({ length: 200 }, (_, i) => ({ to: `copy${i}`, from: '$data' }));
    const context = { data: dataOf(200_000), event: {} };
    assert.deepEqual(validateMapping({ rules }), []);

    assertOutputTooLarge(() => applyMapping({ rules } as MappingDocument, context), 'mapping.rules[5]');
  });

  it('refuses merge mode on data larger than the limit, naming the mode; up to the limit is fine', () => {
    const fits = dataOf(1024 * 1024);
    const context = { data: dataOf(1024 * 1024 + 1), event: {} };

    assert.deepEqual(applyMapping({ mode: 'merge', rules: [] }, { data: fits, event: {} }), fits);
    assertOutputTooLarge(() => applyMapping({ mode: 'merge', rules: [] }, context), 'mapping.mode');
  });

  it('counts the output, not what was written: overwrites and removals do not add up', () => {
    const data = dataOf(400_000);
    const rules: MappingRule[] = [
      ...Array.from({ length: 10 }, () => ({ to: 'same', from: '$data' })),
      { to: 'gone', from: '$data' },
      { remove: 'gone' },
      { to: 'other', from: '$data' },
    ];

    const output = applyMapping({ rules }, { data, event: {} }) as Record<string, unknown>;

    assert.deepEqual(Object.keys(output), ['same', 'other']);
  });

  it('counts UTF-8 bytes and transformed values', () => {
    const data = { text: 'é'.repeat(300_000), obj: { quote: '"'.repeat(300_000) } };
    const limit = { maxOutputBytes: 1_000_000 };
    // 600,000 bytes of "é", then the object as JSON text inside a string: every quote escaped.
    const rules: MappingRule[] = [
      { to: 'a', from: 'text' },
      { to: 'b', from: 'obj', transform: 'string' },
    ];

    assert.deepEqual(
      Object.keys(applyMapping({ rules: rules.slice(0, 1) }, { data, event: {} }, limit) as object),
      ['a'],
    );
    assert.throws(
      () => applyMapping({ rules }, { data, event: {} }, limit),
      (err: unknown) => err instanceof UnprocessableError && err.code === 'mapping_output_too_large',
    );
  });

  it('takes the limit from the options', () => {
    const rules: MappingRule[] = [{ to: 'a', value: 'x'.repeat(100) }];

    assert.deepEqual(applyMapping({ rules }, { data: {}, event: {} }, { maxOutputBytes: 200 }), {
      a: 'x'.repeat(100),
    });
    assert.throws(
      () => applyMapping({ rules }, { data: {}, event: {} }, { maxOutputBytes: 100 }),
      (err: unknown) => err instanceof UnprocessableError && err.code === 'mapping_output_too_large',
    );
  });
});

describe('mapping transforms found by the property tests', () => {
  it('unixSeconds of a negative fraction of a millisecond is 0, not -0 (JSON has no -0)', () => {
    const out = applyMapping(
      { rules: [{ to: 'out', from: 'a', transform: 'unixSeconds' }] } as unknown as MappingDocument,
      { data: { a: -5e-324 }, event: {} },
    ) as { out: number };
    assert.ok(Object.is(out.out, 0), String(out.out));
  });
});
