import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../../src/common/errors.ts';
import { ValidatorCache } from '../../src/common/json-schema.ts';
import {
  COMPATIBILITY_MODES,
  type CompatibilityMode,
  checkCompatibility,
  findIncompatibilities,
  isCompatibilityMode,
} from '../../src/schemas/compatibility.ts';

type Schema = Record<string, unknown> | boolean;

/** An object schema with the given properties plus extra keywords. */
function object(
  properties: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { type: 'object', properties, ...extra };
}

/** Messages explaining why data valid under `writer` may be rejected by `reader`. */
function problems(writer: Schema, reader: Schema): string[] {
  return findIncompatibilities(writer, reader).map((i) => i.message);
}

/** The directions (sorted, joined) in which `next` breaks `old` under `mode`; '' when compatible. */
function broken(old: Schema, next: Schema, mode: CompatibilityMode): string {
  const changes = checkCompatibility(next, [{ version: 1, schema: old }], mode);
  return [...new Set(changes.map((c) => c.direction))].sort().join(',');
}

const order = object(
  { amount: { type: 'number' }, currency: { enum: ['EUR', 'USD'] } },
  { required: ['amount'] },
);
const closedOrder = object(
  { amount: { type: 'number' }, currency: { enum: ['EUR', 'USD'] } },
  { required: ['amount'], additionalProperties: false },
);
const withProperties = (
  base: Schema,
  properties: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) => {
  const b = base as Record<string, unknown>;
  return { ...b, properties: { ...(b.properties as object), ...properties }, ...extra };
};
const without = (base: Schema, name: string, extra: Record<string, unknown> = {}) => {
  const b = base as Record<string, unknown>;
  const properties = { ...(b.properties as Record<string, unknown>) };
  delete properties[name];
  const required = ((b.required as string[] | undefined) ?? []).filter((r) => r !== name);
  return { ...b, properties, required, ...extra };
};

// Each row: a change from `old` to `next`, and whether BACKWARD / FORWARD accept it.
const changes: Array<{ change: string; old: Schema; next: Schema; backward: boolean; forward: boolean }> = [
  {
    change: 'adding an optional property with constraints to an open model',
    old: order,
    next: withProperties(order, { note: { type: 'string' } }),
    backward: false,
    forward: true,
  },
  {
    change: 'adding an optional property to a closed model',
    old: closedOrder,
    next: withProperties(closedOrder, { note: { type: 'string' } }),
    backward: true,
    forward: false,
  },
  {
    change: 'adding an unconstrained ({}) optional property to an open model',
    old: order,
    next: withProperties(order, { note: {} }),
    backward: true,
    forward: true,
  },
  {
    change: 'adding a required property to an open model',
    old: order,
    next: withProperties(order, { note: { type: 'string' } }, { required: ['amount', 'note'] }),
    backward: false,
    forward: true,
  },
  {
    change: 'adding a required property to a closed model',
    old: closedOrder,
    next: withProperties(closedOrder, { note: { type: 'string' } }, { required: ['amount', 'note'] }),
    backward: false,
    forward: false,
  },
  {
    change: 'removing an optional property from an open model',
    old: order,
    next: without(order, 'currency'),
    backward: true,
    forward: false,
  },
  {
    change: 'removing an optional property from a closed model',
    old: closedOrder,
    next: without(closedOrder, 'currency'),
    backward: false,
    forward: true,
  },
  {
    change: 'removing a required property from an open model',
    old: order,
    next: without(order, 'amount'),
    backward: true,
    forward: false,
  },
  {
    change: 'making an optional property required',
    old: order,
    next: { ...(order as object), required: ['amount', 'currency'] },
    backward: false,
    forward: true,
  },
  {
    change: 'making a required property optional',
    old: order,
    next: { ...(order as object), required: [] },
    backward: true,
    forward: false,
  },
  {
    change: 'changing a type from number to string',
    old: order,
    next: withProperties(order, { amount: { type: 'string' } }),
    backward: false,
    forward: false,
  },
  {
    change: 'widening integer to number',
    old: object({ qty: { type: 'integer' } }),
    next: object({ qty: { type: 'number' } }),
    backward: true,
    forward: false,
  },
  {
    change: 'adding a type where there was none',
    old: object({ note: { description: 'free' } }),
    next: object({ note: { type: 'string' } }),
    backward: false,
    forward: true,
  },
  {
    change: 'making a property nullable with a type array',
    old: object({ note: { type: 'string' } }),
    next: object({ note: { type: ['string', 'null'] } }),
    backward: true,
    forward: false,
  },
  {
    change: 'adding an enum value',
    old: order,
    next: withProperties(order, { currency: { enum: ['EUR', 'USD', 'GBP'] } }),
    backward: true,
    forward: false,
  },
  {
    change: 'removing an enum value',
    old: order,
    next: withProperties(order, { currency: { enum: ['EUR'] } }),
    backward: false,
    forward: true,
  },
  {
    change: 'restricting a free string to an enum',
    old: object({ currency: { type: 'string' } }),
    next: object({ currency: { type: 'string', enum: ['EUR', 'USD'] } }),
    backward: false,
    forward: true,
  },
  {
    change: 'closing the model (additionalProperties true → false)',
    old: { ...(order as object), additionalProperties: true },
    next: { ...(order as object), additionalProperties: false },
    backward: false,
    forward: true,
  },
  {
    change: 'opening the model (additionalProperties false → absent)',
    old: closedOrder,
    next: order,
    backward: true,
    forward: false,
  },
];

describe('schema compatibility: modes', () => {
  it('lists the seven Confluent modes', () => {
    assert.deepEqual(
      [...COMPATIBILITY_MODES],
      ['NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE'],
    );
  });

  it('recognises mode names and rejects anything else', () => {
    assert.equal(isCompatibilityMode('FULL_TRANSITIVE'), true);
    assert.equal(isCompatibilityMode('backward'), false);
    assert.equal(isCompatibilityMode(undefined), false);
  });

  it('throws a ValidationError for an unknown mode', () => {
    assert.throws(
      () => checkCompatibility({}, [{ version: 1, schema: {} }], 'SIDEWAYS' as CompatibilityMode),
      (err: unknown) => err instanceof ValidationError && err.code === 'compatibility_mode_invalid',
    );
  });

  it('NONE accepts even a change that breaks both directions', () => {
    const next = withProperties(order, { amount: { type: 'string' } });
    assert.deepEqual(checkCompatibility(next, [{ version: 1, schema: order }], 'NONE'), []);
  });

  it('a first version (no previous versions) never breaks', () => {
    assert.deepEqual(checkCompatibility(false, [], 'FULL_TRANSITIVE'), []);
  });

  it('an identical document is compatible in every mode', () => {
    for (const mode of COMPATIBILITY_MODES) assert.equal(broken(order, order, mode), '', mode);
  });
});

describe('schema compatibility: each change in each mode', () => {
  for (const { change, old, next, backward, forward } of changes) {
    const expected = (mode: CompatibilityMode): string => {
      const b = (mode.startsWith('BACKWARD') || mode.startsWith('FULL')) && !backward;
      const f = (mode.startsWith('FORWARD') || mode.startsWith('FULL')) && !forward;
      return [b ? 'backward' : '', f ? 'forward' : ''].filter(Boolean).join(',');
    };
    for (const mode of COMPATIBILITY_MODES) {
      const verdict = expected(mode) === '' ? 'is compatible' : `breaks ${expected(mode)}`;
      it(`${change} ${verdict} under ${mode}`, () => {
        assert.equal(broken(old, next, mode), expected(mode));
      });
    }
  }
});

describe('schema compatibility: messages and paths', () => {
  it('names a nested property that became required by its dotted path', () => {
    const old = object({ customer: object({ email: { type: 'string' } }) });
    const next = object({ customer: object({ email: { type: 'string' } }, { required: ['email'] }) });
    assert.deepEqual(findIncompatibilities(old, next), [
      { path: '/properties/customer/properties/email', message: 'property `customer.email` became required' },
    ]);
  });

  it('reports a type change with both types and the pointer of the type keyword', () => {
    const result = findIncompatibilities(
      object({ amount: { type: 'string' } }),
      object({ amount: { type: 'number' } }),
    );
    assert.deepEqual(result, [
      { path: '/properties/amount/type', message: 'type of `amount` changed from string to number' },
    ]);
  });

  it('names the enum value that was removed', () => {
    assert.deepEqual(problems(order, withProperties(order, { currency: { enum: ['USD'] } })), [
      'enum value `EUR` of `currency` was removed',
    ]);
  });

  it('explains the open content model when a constrained property is added', () => {
    const result = findIncompatibilities(order, withProperties(order, { note: { type: 'string' } }));
    assert.deepEqual(result, [
      {
        path: '/properties/note',
        message:
          'property `note` was added with constraints, but the previous schema allowed any value for it (open content model)',
      },
    ]);
  });

  it('says a property was removed from a closed model', () => {
    assert.deepEqual(problems(closedOrder, without(closedOrder, 'currency')), [
      'property `currency` was removed and the schema does not allow additional properties',
    ]);
  });

  it('says the model was closed', () => {
    assert.deepEqual(problems(order, { ...(order as object), additionalProperties: false }), [
      'the root value no longer allows additional properties (additionalProperties: false), but the previous schema allowed them (open content model)',
    ]);
  });

  it('words a forward break from the candidate point of view, against the earlier version', () => {
    const next = { ...(order as object), required: [] };
    assert.deepEqual(checkCompatibility(next, [{ version: 4, schema: order }], 'FORWARD'), [
      {
        againstVersion: 4,
        direction: 'forward',
        path: '/properties/amount',
        message: 'property `amount` is no longer required, but the previous schema requires it',
      },
    ]);
  });

  it('reports a FULL break once per direction that fails', () => {
    const next = withProperties(order, { amount: { type: 'string' } });
    const result = checkCompatibility(next, [{ version: 1, schema: order }], 'FULL');
    assert.deepEqual(
      result.map((c) => `${c.direction}: ${c.message}`),
      // Both are worded from the earlier version to the candidate.
      [
        'backward: type of `amount` changed from number to string',
        'forward: type of `amount` changed from number to string',
      ],
    );
  });

  it('checks a property removed under a partly open model against additionalProperties', () => {
    const old = object(
      { a: { type: 'string' }, b: { type: 'number' } },
      { additionalProperties: { type: 'string' } },
    );
    const next = object({}, { additionalProperties: { type: 'string' } });
    assert.deepEqual(problems(old, next), ['type of `b` changed from number to string']);
  });
});

describe('schema compatibility: transitive modes', () => {
  const v1 = object({ amount: { type: 'number' } }, { required: ['amount'] });
  // v2 was registered under FORWARD: it requires `currency`, which v1 data may lack.
  const v2 = object(
    { amount: { type: 'number' }, currency: { type: 'string' } },
    { required: ['amount', 'currency'] },
  );
  const v3 = object(
    { amount: { type: 'number' }, currency: { type: 'string' }, note: {} },
    { required: ['amount', 'currency'] },
  );
  const history = [
    { version: 1, schema: v1 },
    { version: 2, schema: v2 },
  ];

  it('BACKWARD compares with the latest version only', () => {
    assert.deepEqual(checkCompatibility(v3, history, 'BACKWARD'), []);
  });

  it('BACKWARD_TRANSITIVE also compares with older versions and names the one that breaks', () => {
    const result = checkCompatibility(v3, history, 'BACKWARD_TRANSITIVE');
    assert.deepEqual(
      result.map((c) => [c.againstVersion, c.direction, c.path, c.message]),
      [
        [
          1,
          'backward',
          '/properties/currency',
          'property `currency` was added with constraints, but the previous schema allowed any value for it (open content model)',
        ],
        [
          1,
          'backward',
          '/properties/currency',
          'property `currency` was added as required, so data valid under the previous schema may lack it',
        ],
      ],
    );
  });

  it('a chain of backward-compatible versions stays compatible transitively (set inclusion is transitive)', () => {
    const a = object({ id: { type: 'integer' } }, { required: ['id'], additionalProperties: false });
    const b = object(
      { id: { type: 'integer' }, note: { type: 'string' } },
      { required: ['id'], additionalProperties: false },
    );
    const c = object(
      { id: { type: 'number' }, note: { type: ['string', 'null'] } },
      { required: ['id'], additionalProperties: false },
    );
    const chain = [
      { version: 1, schema: a },
      { version: 2, schema: b },
    ];
    assert.deepEqual(checkCompatibility(c, chain, 'BACKWARD_TRANSITIVE'), []);
  });

  it('FORWARD_TRANSITIVE catches an older version the latest one had widened', () => {
    const old1 = object({ currency: { enum: ['EUR'] } });
    const old2 = object({ currency: { enum: ['EUR', 'USD'] } }); // registered under BACKWARD
    const next = object({ currency: { enum: ['EUR', 'USD'] }, note: {} });
    const versions = [
      { version: 1, schema: old1 },
      { version: 2, schema: old2 },
    ];
    assert.deepEqual(checkCompatibility(next, versions, 'FORWARD'), []);
    const result = checkCompatibility(next, versions, 'FORWARD_TRANSITIVE');
    assert.deepEqual(
      result.map((c) => [c.againstVersion, c.direction, c.message]),
      [
        [
          1,
          'forward',
          'enum value `USD` of `currency` was added, but the previous schema does not accept it',
        ],
      ],
    );
  });

  it('FULL_TRANSITIVE checks both directions against every version and reports only what fails', () => {
    const result = checkCompatibility(v3, history, 'FULL_TRANSITIVE');
    assert.deepEqual([...new Set(result.map((c) => `v${c.againstVersion} ${c.direction}`))], ['v1 backward']);
  });

  it('FULL (not transitive) ignores the older version', () => {
    assert.deepEqual(checkCompatibility(v3, history, 'FULL'), []);
  });
});

describe('schema compatibility: numbers, strings and arrays', () => {
  it('raising a minimum breaks backward; lowering it does not', () => {
    assert.deepEqual(problems({ type: 'number', minimum: 0 }, { type: 'number', minimum: 1 }), [
      'lower bound of the root value changed from >= 0 to >= 1',
    ]);
    assert.deepEqual(problems({ type: 'number', minimum: 1 }, { type: 'number', minimum: 0 }), []);
  });

  it('a number minimum 0 made exclusive breaks backward: 0 was valid and is not any more', () => {
    assert.deepEqual(problems({ type: 'number', minimum: 0 }, { type: 'number', exclusiveMinimum: 0 }), [
      'lower bound of the root value changed from >= 0 to > 0',
    ]);
    assert.deepEqual(problems({ type: 'number', exclusiveMinimum: 0 }, { type: 'number', minimum: 0 }), []);
  });

  it('treats integer minimum 1 and exclusiveMinimum 0 as the same bound', () => {
    assert.deepEqual(problems({ type: 'integer', minimum: 1 }, { type: 'integer', exclusiveMinimum: 0 }), []);
  });

  it('an added maximum breaks backward', () => {
    assert.deepEqual(problems({ type: 'number' }, { type: 'number', exclusiveMaximum: 100 }), [
      'upper bound of the root value was added (< 100)',
    ]);
  });

  it('multipleOf may only become coarser in the writer: 4 → 2 is fine, 2 → 4 breaks', () => {
    assert.deepEqual(problems({ type: 'integer', multipleOf: 4 }, { type: 'integer', multipleOf: 2 }), []);
    assert.deepEqual(problems({ type: 'integer', multipleOf: 2 }, { type: 'integer', multipleOf: 4 }), [
      'multipleOf of the root value changed from 2 to 4',
    ]);
  });

  it('multipleOf with decimal steps: only an equal step is proven, as the validator divides in floating point', () => {
    const validators = new ValidatorCache();
    const valid = (schema: Schema, value: number) =>
      validators.validate(JSON.stringify(schema), schema, value).length === 0;
    for (const [from, to, witness] of [
      [0.01, 0.001, 0.35],
      [0.1, 0.001, 16.1],
      [0.3, 0.1, 0.3],
    ] as const) {
      const writer = { type: 'number', multipleOf: from };
      const reader = { type: 'number', multipleOf: to };
      // The validator's view: the witness fits the old step, not the new one.
      assert.ok(valid(writer, witness) && !valid(reader, witness), `${witness} under ${from} and ${to}`);
      assert.notDeepEqual(problems(writer, reader), [], `${from} → ${to} is reported`);
    }
    assert.deepEqual(problems({ type: 'number', multipleOf: 0.1 }, { type: 'number', multipleOf: 0.1 }), []);
    // An enum value checked as the validator does: 0.3 is not a multiple of 0.1 for it.
    assert.ok(!valid({ multipleOf: 0.1 }, 0.3));
    assert.notDeepEqual(problems({ enum: [0.3] }, { type: 'number', multipleOf: 0.1 }), []);
    // Integers are proven to fit a step of 1 or a power-of-two fraction; 0.3 they do not fit.
    assert.deepEqual(problems({ type: 'integer' }, { type: 'number', multipleOf: 0.5 }), []);
    assert.ok(!valid({ multipleOf: 0.3 }, 1));
    assert.notDeepEqual(problems({ type: 'integer' }, { type: 'number', multipleOf: 0.3 }), []);
  });

  it('a schema embedding a resource with its own $id: a change is breaking (its references are not compared), no change is fine', () => {
    const version = (amount: Record<string, unknown>) => ({
      type: 'object',
      $defs: {
        Line: { $id: 'https://example.com/line', type: 'object', properties: { amount } },
      },
      properties: { line: { $ref: 'https://example.com/line' } },
    });
    const v1 = version({ type: 'integer' });
    const v2 = version({ type: 'string' });
    const validators = new ValidatorCache();
    const event = { line: { amount: 5 } };
    assert.deepEqual(validators.validate('v1', v1, event), []);
    assert.notDeepEqual(validators.validate('v2', v2, event), [], 'v2 refuses what v1 accepted');
    assert.equal(broken(v1, v2, 'FULL'), 'backward,forward');
    assert.equal(broken(v1, structuredClone(v1), 'FULL'), '');
  });

  it('a lowered maxLength breaks backward', () => {
    assert.deepEqual(
      problems(
        object({ code: { type: 'string', maxLength: 5 } }),
        object({ code: { type: 'string', maxLength: 3 } }),
      ),
      ['maxLength of `code` changed from 5 to 3'],
    );
  });

  it('a changed pattern is treated as breaking because regex inclusion cannot be proven', () => {
    const [message] = problems(
      { type: 'string', pattern: '^[A-Z]{3}$' },
      { type: 'string', pattern: '^[A-Z]+$' },
    );
    assert.match(
      message ?? '',
      /pattern of the root value changed from .* cannot compare two different patterns/,
    );
  });

  it('an unchanged pattern and an added format on a non-string are fine', () => {
    assert.deepEqual(problems({ type: 'string', pattern: '^a' }, { type: 'string', pattern: '^a' }), []);
    assert.deepEqual(problems({ type: 'integer' }, { type: 'integer', format: 'int32' }), []);
  });

  it('an added format breaks backward', () => {
    assert.deepEqual(problems({ type: 'string' }, { type: 'string', format: 'email' }), [
      'format of the root value was added (email)',
    ]);
  });

  it('enum values are checked against the new constraints one by one', () => {
    assert.deepEqual(
      problems({ enum: ['EUR', 'USD'] }, { type: 'string', maxLength: 3, pattern: '^[A-Z]+$' }),
      [],
    );
    assert.deepEqual(problems({ enum: ['EUR', 'EURO'] }, { type: 'string', maxLength: 3 }), [
      'value `EURO` of the root value no longer satisfies maxLength 3',
    ]);
  });

  it('compares array items and names them with []', () => {
    const result = findIncompatibilities(
      object({ tags: { type: 'array', items: { type: 'string' } } }),
      object({ tags: { type: 'array', items: { type: 'integer' } } }),
    );
    assert.deepEqual(result, [
      { path: '/properties/tags/items/type', message: 'type of `tags[]` changed from string to integer' },
    ]);
  });

  it('compares prefixItems position by position', () => {
    const old = { type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }], items: false };
    const next = { type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer' }], items: false };
    assert.deepEqual(problems(old, next), ['type of `[1]` changed from number to integer']);
    assert.deepEqual(problems(next, old), []);
  });

  it('minItems raised and uniqueItems added break backward', () => {
    assert.deepEqual(
      problems({ type: 'array', minItems: 1 }, { type: 'array', minItems: 2, uniqueItems: true }),
      [
        'minItems of the root value changed from 1 to 2',
        'items of the root value must now be unique (uniqueItems)',
      ],
    );
  });
});

describe('schema compatibility: references and boolean schemas', () => {
  it('resolves local $refs in each document, whatever the definitions are called', () => {
    const old = { $defs: { Money: { type: 'number' } }, ...object({ amount: { $ref: '#/$defs/Money' } }) };
    const next = {
      definitions: { Amount: { type: 'number' } },
      ...object({ amount: { $ref: '#/definitions/Amount' } }),
    };
    assert.deepEqual(problems(old, next), []);
  });

  it('reports a change inside $defs with a pointer into $defs', () => {
    const old = { $defs: { Money: { type: 'number' } }, ...object({ amount: { $ref: '#/$defs/Money' } }) };
    const next = { $defs: { Money: { type: 'integer' } }, ...object({ amount: { $ref: '#/$defs/Money' } }) };
    assert.deepEqual(findIncompatibilities(old, next), [
      { path: '/$defs/Money/type', message: 'type of `amount` changed from number to integer' },
    ]);
  });

  it('terminates on recursive schemas and still finds a change deep inside', () => {
    const tree = (leaf: unknown) => ({
      $defs: { node: object({ value: leaf, children: { type: 'array', items: { $ref: '#/$defs/node' } } }) },
      $ref: '#/$defs/node',
    });
    assert.deepEqual(problems(tree({ type: 'string' }), tree({ type: 'string' })), []);
    assert.ok(
      problems(tree({ type: 'string' }), tree({ type: 'integer' })).includes(
        'type of `value` changed from string to integer',
      ),
    );
  });

  it('treats versions nested too deeply to compare (stored before registration limited nesting) as breaking', () => {
    const nested = (levels: number, leaf: Schema): Schema => {
      let schema = leaf;
      for (let i = 0; i < levels; i++) schema = { type: 'object', properties: { a: schema } };
      return schema;
    };
    const deep = nested(20_000, { type: 'string' });
    assert.deepEqual(problems(deep, nested(20_000, { type: 'integer' })), [
      'the schemas are nested too deeply to compare, so the change is treated as breaking',
    ]);
  });

  it('treats a $ref it cannot resolve as breaking', () => {
    const [message] = problems({ type: 'object' }, { $ref: 'https://example.com/other.json' });
    assert.match(message ?? '', /cannot be resolved within the document, so it is treated as breaking/);
  });

  it('true → false breaks, false → anything is fine, {} equals true', () => {
    assert.deepEqual(problems(true, false), ['the root value no longer accepts any value (schema `false`)']);
    assert.deepEqual(problems(false, { type: 'string' }), []);
    assert.deepEqual(problems({}, true), []);
    assert.deepEqual(problems(true, {}), []);
  });

  it('a property whose schema becomes false is no longer allowed', () => {
    assert.deepEqual(problems(object({ legacy: { type: 'string' } }), object({ legacy: false })), [
      'property `legacy` is no longer allowed',
    ]);
  });
});

describe('schema compatibility: combinators', () => {
  it('a type array with null equals anyOf with a null branch, both ways', () => {
    const array = { type: ['string', 'null'] };
    const anyOf = { anyOf: [{ type: 'string' }, { type: 'null' }] };
    assert.deepEqual(problems(array, anyOf), []);
    assert.deepEqual(problems(anyOf, array), []);
  });

  it('checks writer anyOf branch by branch', () => {
    assert.deepEqual(
      problems({ anyOf: [{ type: 'string' }, { type: 'integer' }] }, { type: ['string', 'number'] }),
      [],
    );
    assert.deepEqual(problems({ anyOf: [{ type: 'string' }, { type: 'boolean' }] }, { type: 'string' }), [
      'type of the root value changed from boolean to string',
    ]);
  });

  it('removing an anyOf branch breaks backward', () => {
    const old = { anyOf: [{ type: 'string' }, { type: 'integer' }] };
    const [message] = problems(old, { anyOf: [{ type: 'string' }] });
    assert.match(message ?? '', /may no longer match any branch of anyOf/);
  });

  it('adding a discriminated oneOf branch is backward compatible', () => {
    const branch = (kind: string) =>
      object({ kind: { const: kind }, id: { type: 'string' } }, { required: ['kind'] });
    assert.deepEqual(
      problems({ oneOf: [branch('a'), branch('b')] }, { oneOf: [branch('a'), branch('b'), branch('c')] }),
      [],
    );
  });

  it('overlapping oneOf branches in the reader are breaking (a value could match two)', () => {
    const [message] = problems({ type: 'integer' }, { oneOf: [{ type: 'number' }, { type: 'integer' }] });
    assert.match(message ?? '', /may no longer match exactly one branch of oneOf/);
  });

  it('reader allOf needs every branch; writer allOf constraints count', () => {
    const closed = { allOf: [object({ id: { type: 'string' } }, { additionalProperties: false })] };
    assert.deepEqual(problems(closed, object({ id: { type: 'string' }, note: { type: 'string' } })), []);
    assert.deepEqual(problems(object({ id: { type: 'string' } }), { allOf: [{ required: ['id'] }] }), [
      'property `id` became required',
    ]);
  });

  it('an added not is fine only when provably disjoint from the old data', () => {
    assert.deepEqual(problems({ type: 'string' }, { type: 'string', not: { type: 'null' } }), []);
    const [message] = problems({ type: 'string' }, { type: 'string', not: { const: 'x' } });
    assert.match(message ?? '', /must now not match the schema under `not`/);
  });

  it('an unchanged if/then/else is fine; a changed one is conservative', () => {
    const conditional = (then: unknown) => ({
      ...object({ country: { type: 'string' }, vat: { type: 'string' } }),
      if: object({ country: { const: 'FR' } }, { required: ['country'] }),
      then,
    });
    assert.deepEqual(problems(conditional({ required: ['vat'] }), conditional({ required: ['vat'] })), []);
    const [message] = problems(conditional({}), conditional({ required: ['vat'] }));
    assert.match(message ?? '', /conditional \(if\/then\/else\)/);
  });
});

describe('schema compatibility: other keywords', () => {
  it('ignores annotation changes (title, description, examples, default)', () => {
    const old = { type: 'string', title: 'A', description: 'x', examples: ['a'] };
    assert.deepEqual(problems(old, { type: 'string', title: 'B', default: 'b', deprecated: true }), []);
  });

  it('treats an unknown keyword it cannot compare as breaking, but not when it is unchanged', () => {
    assert.deepEqual(problems({ type: 'string' }, { type: 'string', 'x-internal': true }), []);
    const [message] = problems({ type: 'string' }, { type: 'string', maxGrapheme: 3 });
    assert.equal(
      message,
      'keyword `maxGrapheme` of the root value differs between the versions and cannot be compared, so it is treated as breaking',
    );
    assert.deepEqual(problems({ type: 'string', maxGrapheme: 3 }, { type: 'string', maxGrapheme: 3 }), []);
  });

  it('patternProperties added to an open model breaks; an unchanged one is fine', () => {
    const open = object({});
    const patterned = object({}, { patternProperties: { '^x-': { type: 'string' } } });
    assert.match(
      problems(open, patterned)[0] ?? '',
      /matching `\^x-` are now constrained by patternProperties/,
    );
    assert.deepEqual(problems(patterned, patterned), []);
  });

  it('unevaluatedProperties: false closes the model like additionalProperties: false', () => {
    const old = object({ id: { type: 'string' } }, { unevaluatedProperties: false });
    const next = object(
      { id: { type: 'string' }, note: { type: 'string' } },
      { unevaluatedProperties: false },
    );
    assert.deepEqual(problems(old, next), []);
    assert.deepEqual(problems(next, old), [
      'property `note` was removed and the schema does not allow additional properties',
    ]);
  });

  it('dependentRequired added breaks backward', () => {
    const old = object({ card: { type: 'string' }, cvc: { type: 'string' } });
    assert.deepEqual(problems(old, { ...(old as object), dependentRequired: { card: ['cvc'] } }), [
      'property `cvc` became required when `card` is present',
    ]);
  });

  it('rejects a document that is not a schema', () => {
    assert.throws(
      () => findIncompatibilities('string', {}),
      (err: unknown) => err instanceof ValidationError && err.code === 'schema_invalid',
    );
  });
});
