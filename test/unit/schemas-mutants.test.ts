/**
 * Tests from a mutation run over schema registration: the limits at their exact boundaries, `$ref`
 * cycles through conditional applicators, the validator cache's bound and recency, the pattern
 * translation's refusals and classes, the compatibility checker's decisions where a bound, a count
 * or a combinator is equal or provably disjoint, and the Schema Admin's versions, modes and 409s.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { WebhooksError } from '../../src/common/errors.ts';
import {
  MAX_SCHEMA_BYTES,
  MAX_SCHEMA_DEPTH,
  MAX_SCHEMA_NODES,
  MAX_SCHEMA_PATTERN_PROGRAM,
  ValidatorCache,
  validateSchemaDocument,
} from '../../src/common/json-schema.ts';
import { estimatePatternSize, matchesPattern, patternProblem } from '../../src/common/safe-regex.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { inlineSchemaChecks } from '../../src/schemas/checks.ts';
import { checkCompatibility, findIncompatibilities } from '../../src/schemas/compatibility.ts';
import { SchemaAdmin } from '../../src/schemas/service.ts';

/** The codes of the problems registration finds with a document. */
function codes(schema: unknown): string[] {
  return validateSchemaDocument(schema).map((d) => d.code ?? '');
}

/** Messages explaining why data valid under `writer` may be rejected by `reader` (empty = compatible). */
function problems(writer: unknown, reader: unknown): string[] {
  return findIncompatibilities(writer, reader).map((i) => i.message);
}

/** `schema` with a `then` keyword (written as a shorthand: an object literal's `then` reads like a promise's). */
function withThen(schema: Record<string, unknown>, then: unknown): Record<string, unknown> {
  return { ...schema, then };
}

describe('schema registration limits at their boundaries', () => {
  test('exactly MAX_SCHEMA_NODES values register; one more is schema_too_complex', () => {
    // The root object, the enum array and its items: 2 + n values.
    const withValues = (n: number) => ({ enum: Array.from({ length: n - 2 }, (_, i) => i) });
    assert.deepEqual(validateSchemaDocument(withValues(MAX_SCHEMA_NODES)), []);
    assert.deepEqual(codes(withValues(MAX_SCHEMA_NODES + 1)), ['schema_too_complex']);
  });

  test('an array nested MAX_SCHEMA_DEPTH - 1 levels below the root registers; one level deeper is schema_too_deep', () => {
    const nested = (levels: number) => {
      let value: unknown = [];
      for (let i = 1; i < levels; i++) value = [value];
      return { const: value }; // the outermost array is one level below the root
    };
    assert.deepEqual(validateSchemaDocument(nested(MAX_SCHEMA_DEPTH - 1)), []);
    assert.deepEqual(codes(nested(MAX_SCHEMA_DEPTH)), ['schema_too_deep']);
  });

  test('a document of exactly MAX_SCHEMA_BYTES of compact JSON registers; one byte more is schema_too_large', () => {
    const sized = (bytes: number) => ({ description: 'x'.repeat(bytes - '{"description":""}'.length) });
    assert.equal(Buffer.byteLength(JSON.stringify(sized(MAX_SCHEMA_BYTES))), MAX_SCHEMA_BYTES);
    assert.deepEqual(validateSchemaDocument(sized(MAX_SCHEMA_BYTES)), []);
    assert.deepEqual(codes(sized(MAX_SCHEMA_BYTES + 1)), ['schema_too_large']);
  });

  test('patterns whose programs add up to exactly the document budget register; one instruction more is refused', () => {
    const count = 4;
    const each = MAX_SCHEMA_PATTERN_PROGRAM / count;
    // A literal pattern of n characters is estimated at n + 2 instructions.
    const patterns = Array.from({ length: count }, (_, i) => `x${i}${'a'.repeat(each - 4)}`);
    assert.equal(
      patterns.reduce((sum, p) => sum + estimatePatternSize(p), 0),
      MAX_SCHEMA_PATTERN_PROGRAM,
    );
    const schema = (ps: string[]) => ({ anyOf: ps.map((pattern) => ({ type: 'string', pattern })) });
    assert.deepEqual(validateSchemaDocument(schema(patterns)), []);
    assert.deepEqual(codes(schema([...patterns.slice(1), `${patterns[0]}a`])), ['schema_patterns_too_large']);
  });

  // The estimates are kept by pattern, so each distinct pattern counts once.
  test('a pattern used several times counts once against the budget', () => {
    const pattern = 'a'.repeat(Math.floor((MAX_SCHEMA_PATTERN_PROGRAM * 2) / 5));
    assert.ok(estimatePatternSize(pattern) * 3 > MAX_SCHEMA_PATTERN_PROGRAM);
    const schema = {
      type: 'object',
      properties: { a: { pattern }, b: { pattern }, c: { pattern } },
    };
    assert.deepEqual(validateSchemaDocument(schema), []);
  });

  test('a pattern the engine cannot run is one problem, not one per check', () => {
    assert.deepEqual(validateSchemaDocument({ type: 'string', pattern: '(?=a)' }), [
      {
        field: 'schema.pattern',
        message:
          'the regular expression "(?=a)" uses a lookahead at character 1, which the linear-time regular expression engine cannot run',
        code: 'pattern_unsupported',
      },
    ]);
  });

  test('another draft is 400 schema_draft_unsupported at $schema, not an exception', () => {
    assert.deepEqual(
      validateSchemaDocument({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'string' }),
      [
        {
          field: 'schema.$schema',
          message:
            'only draft 2020-12 (https://json-schema.org/draft/2020-12/schema) is supported, got "http://json-schema.org/draft-07/schema#"',
          code: 'schema_draft_unsupported',
        },
      ],
    );
  });
});

describe('$ref cycles through conditional applicators', () => {
  // `then` and `dependentSchemas` apply only to some instances: the trial values (null, true, 0,
  // '', [], {}) never reach them, so only the static check refuses these.
  const cycles: Array<[string, unknown, string]> = [
    ['if', { if: { $ref: '#' } }, 'schema.if.$ref'],
    ['then', withThen({ if: { required: ['a'] } }, { $ref: '#' }), 'schema.then.$ref'],
    ['dependentSchemas', { dependentSchemas: { a: { $ref: '#' } } }, 'schema.dependentSchemas.a.$ref'],
  ];
  for (const [keyword, schema, field] of cycles) {
    test(`a cycle through ${keyword} is schema_ref_cycle at the reference`, () => {
      const found = validateSchemaDocument(schema);
      assert.deepEqual(
        found.map((p) => [p.field, p.code]),
        [[field, 'schema_ref_cycle']],
      );
    });
  }
});

describe('ValidatorCache: bound, recency and $id reuse', () => {
  // Keys are "<event>.v<n>@<fingerprint>" in real use; here one key is given another schema to see
  // whether the cache still held the first one.
  const asString = { type: 'string' };
  const asInteger = { type: 'integer' };
  const validFor = (cache: ValidatorCache, key: string, schema: unknown, value: unknown) =>
    cache.validate(key, schema, value).length === 0;

  test('holds at most maxEntries validators: the oldest is dropped', () => {
    const cache = new ValidatorCache(2);
    for (const key of ['k1', 'k2', 'k3']) cache.validate(key, asString, 'x');
    assert.equal(validFor(cache, 'k1', asInteger, 5), true, 'k1 was dropped and compiled anew');
    assert.equal(validFor(cache, 'k3', asInteger, 5), false, 'k3 is still cached');
  });

  test('a validator used again is kept over one used less recently', () => {
    const cache = new ValidatorCache(2);
    cache.validate('k1', asString, 'x');
    cache.validate('k2', asString, 'x');
    cache.validate('k1', asString, 'x'); // k1 is now the most recent
    cache.validate('k3', asString, 'x'); // drops k2
    assert.equal(validFor(cache, 'k1', asInteger, 5), false, 'k1 is still cached');
    assert.equal(validFor(cache, 'k2', asInteger, 5), true, 'k2 was dropped');
  });

  test('two versions with the same $id each compile and validate', () => {
    const cache = new ValidatorCache();
    const id = 'https://example.test/schemas/order';
    assert.deepEqual(cache.validate('v1', { $id: id, type: 'string' }, 'x'), []);
    assert.deepEqual(cache.validate('v2', { $id: id, type: 'integer' }, 5), []);
  });
});

describe('the linear engine refuses and translates', () => {
  test('a named backreference (\\k<name>) is refused as a backreference', () => {
    const problem = patternProblem('(?<a>x)\\k<a>');
    assert.equal(problem?.reason, 'unsupported');
    assert.match(problem?.message ?? '', /uses a backreference at character 8/);
  });

  test('Script_Extensions (no RE2 equivalent) is refused, Script is translated', () => {
    for (const pattern of ['\\p{Script_Extensions=Greek}', '\\p{scx=Greek}']) {
      const problem = patternProblem(pattern);
      assert.equal(problem?.reason, 'unsupported', pattern);
      assert.match(problem?.message ?? '', /uses this Unicode property at character 1/);
    }
    assert.equal(matchesPattern('^\\p{sc=Greek}$', 'α'), true);
  });

  test('an inline modifier group is refused naming it', () => {
    for (const pattern of ['(?i:a)', '(?-i:a)']) {
      const problem = patternProblem(pattern);
      assert.equal(problem?.reason, 'unsupported', pattern);
      assert.match(problem?.message ?? '', /uses an inline modifier group at character 1/);
    }
  });

  test('\\p{ASCII} and \\P{ASCII} match as in JavaScript', () => {
    const cases: Array<[string, string, boolean]> = [
      ['^\\p{ASCII}+$', 'abc~', true],
      ['^\\p{ASCII}$', 'é', false],
      ['^\\P{ASCII}$', 'é', true],
      ['^\\P{ASCII}$', 'a', false],
      ['^[\\p{ASCII}]$', '\u007f', true],
    ];
    for (const [pattern, text, expected] of cases) {
      assert.equal(new RegExp(pattern, 'u').test(text), expected, `JavaScript: ${pattern}`);
      assert.equal(matchesPattern(pattern, text), expected, `linear engine: ${pattern} on ${text}`);
    }
  });

  test('a dash last in a class is a literal dash, not a range', () => {
    for (const [pattern, text, expected] of [
      ['^[a-]$', '-', true],
      ['^[a-]$', 'a', true],
      ['^[a-]$', 'b', false],
      ['^[^a-]$', '-', false],
      ['^[+-]+$', '+-+', true],
    ] as const) {
      assert.equal(new RegExp(pattern, 'u').test(text), expected, `JavaScript: ${pattern}`);
      assert.equal(matchesPattern(pattern, text), expected, `linear engine: ${pattern} on ${text}`);
    }
  });
});

describe('compatibility decisions at the edges', () => {
  test('a root $id is no embedded resource: a compatible change under it stays compatible', () => {
    const v1 = { $id: 'https://example.test/order', type: 'object', properties: { c: { enum: ['EUR'] } } };
    const v2 = { ...v1, properties: { c: { enum: ['EUR', 'USD'] } } };
    assert.deepEqual(problems(v1, v2), []);
  });

  test('the latest version is the highest number, whatever order the versions come in', () => {
    const open = { type: 'object' };
    const closed = { type: 'object', additionalProperties: false };
    // v2 (closed) is the latest: closing again is no change.
    const versions = [
      { version: 2, schema: closed },
      { version: 1, schema: open },
    ];
    assert.deepEqual(checkCompatibility(closed, versions, 'BACKWARD'), []);
  });

  test('integer bounds: an exclusive bound equals the next integer inside it', () => {
    assert.deepEqual(problems({ type: 'integer', exclusiveMinimum: 0 }, { type: 'integer', minimum: 1 }), []);
    assert.deepEqual(
      problems({ type: 'integer', exclusiveMaximum: 10 }, { type: 'integer', maximum: 9 }),
      [],
    );
    assert.notDeepEqual(problems({ type: 'integer', minimum: 0 }, { type: 'integer', minimum: 1 }), []);
  });

  test('an inclusive and an exclusive bound at the same value: the exclusive one holds', () => {
    assert.deepEqual(
      problems({ type: 'number', minimum: 0, exclusiveMinimum: 0 }, { type: 'number', exclusiveMinimum: 0 }),
      [],
    );
    assert.deepEqual(
      problems({ type: 'number', maximum: 9, exclusiveMaximum: 9 }, { type: 'number', exclusiveMaximum: 9 }),
      [],
    );
  });

  test('a number maximum 10 made exclusive breaks backward: 10 was valid and is not any more', () => {
    assert.deepEqual(problems({ type: 'number', maximum: 10 }, { type: 'number', exclusiveMaximum: 10 }), [
      'upper bound of the root value changed from <= 10 to < 10',
    ]);
  });

  test('enum values against a new bound: the bound itself is in or out as the keyword says', () => {
    assert.deepEqual(problems({ enum: [10] }, { maximum: 10 }), []);
    assert.deepEqual(problems({ enum: [10] }, { exclusiveMaximum: 10 }), [
      'value `10` of the root value no longer satisfies exclusiveMaximum 10',
    ]);
    assert.deepEqual(problems({ enum: [0] }, { minimum: 0 }), []);
    assert.deepEqual(problems({ enum: [0] }, { exclusiveMinimum: 0 }), [
      'value `0` of the root value no longer satisfies exclusiveMinimum 0',
    ]);
  });

  test('string lengths count code points, as the validator does', () => {
    const validators = new ValidatorCache();
    assert.deepEqual(validators.validate('k', { maxLength: 2 }, '😀😀'), []);
    assert.deepEqual(problems({ enum: ['😀😀'] }, { type: 'string', maxLength: 2 }), []);
  });

  test('equal or trivial length bounds are no change', () => {
    assert.deepEqual(problems({ type: 'string' }, { type: 'string', minLength: 0 }), []);
    assert.deepEqual(
      problems(
        { type: 'string', minLength: 3, maxLength: 5, title: 'a' },
        { type: 'string', minLength: 3, maxLength: 5, title: 'b' },
      ),
      [],
    );
  });

  test('booleans and null are finite: an enum listing all of them is no restriction', () => {
    assert.deepEqual(problems({ type: 'boolean' }, { enum: [true, false] }), []);
    assert.deepEqual(problems({ type: ['boolean', 'null'] }, { enum: [false, null, true] }), []);
    assert.deepEqual(problems({ type: 'boolean' }, { const: true }), [
      'the root value must now be `true`, so value `false` is no longer accepted',
    ]);
  });

  test("enum values the writer's own constraints exclude do not count", () => {
    assert.deepEqual(problems({ enum: ['a', 'abcd'], maxLength: 3 }, { enum: ['a', 'b'] }), []);
  });

  test('arrays: equal counts are no change; uniqueItems on at most one item is no change', () => {
    assert.deepEqual(
      problems(
        { type: 'array', minItems: 2, maxItems: 4, title: 'a' },
        { type: 'array', minItems: 2, maxItems: 4, title: 'b' },
      ),
      [],
    );
    assert.deepEqual(problems({ type: 'array', maxItems: 1 }, { type: 'array', uniqueItems: true }), []);
  });

  test('a closed tuple has at most its prefix length of items', () => {
    const pair = { type: 'array', prefixItems: [{}, {}], items: false };
    assert.deepEqual(problems(pair, { type: 'array', maxItems: 2 }), []);
    assert.deepEqual(problems(pair, { type: 'array', maxItems: 1 }), [
      'maxItems of the root value changed from 2 to 1',
    ]);
  });

  test('contains: minContains 0 asks nothing; a higher minContains than the writer guarantees breaks', () => {
    assert.deepEqual(
      problems({ type: 'array' }, { type: 'array', contains: { type: 'string' }, minContains: 0 }),
      [],
    );
    const one = { type: 'array', contains: { type: 'string' } };
    assert.deepEqual(problems(one, { ...one, minContains: 1 }), []);
    assert.deepEqual(problems(one, { ...one, minContains: 2 }), [
      'the root value must now contain items matching `contains`, which the previous schema did not guarantee',
    ]);
  });

  test('object counts: required properties satisfy minProperties; a closed model satisfies maxProperties', () => {
    const required = { type: 'object', required: ['a', 'b'] };
    assert.deepEqual(problems(required, { ...required, minProperties: 2 }), []);
    assert.notDeepEqual(problems(required, { ...required, minProperties: 3 }), []);
    const closed = { type: 'object', properties: { a: {}, b: {} }, additionalProperties: false };
    assert.deepEqual(problems(closed, { ...closed, maxProperties: 2 }), []);
    assert.notDeepEqual(problems(closed, { ...closed, maxProperties: 1 }), []);
  });

  test('dependentRequired: no change when the trigger is forbidden or the property already required', () => {
    const forbidden = { type: 'object', properties: { card: false, cvc: { type: 'string' } } };
    assert.deepEqual(problems(forbidden, { ...forbidden, dependentRequired: { card: ['cvc'] } }), []);
    const required = { type: 'object', properties: { card: {}, cvc: {} }, required: ['cvc'] };
    assert.deepEqual(problems(required, { ...required, dependentRequired: { card: ['cvc'] } }), []);
  });

  test('an added conditional whose `if` the old data can never match is compatible', () => {
    const old = { type: 'string' };
    const next = withThen(
      { type: ['string', 'number'], if: { type: 'number' } },
      { type: 'number', minimum: 5 },
    );
    assert.deepEqual(problems(old, next), []);
  });

  test('an added `not` of a value the old constraints already exclude is compatible', () => {
    const old = { type: 'string', maxLength: 3 };
    assert.deepEqual(problems(old, { ...old, not: { const: 'toolong' } }), []);
  });

  test('`not` in both: the old one excluding more is compatible, excluding less is not', () => {
    const old = { type: 'string', not: { enum: ['a', 'b'] } };
    assert.deepEqual(problems(old, { type: 'string', not: { const: 'a' } }), []);
    const narrow = { type: 'string', not: { const: 'a' } };
    assert.match(
      problems(narrow, { type: 'string', not: { enum: ['a', 'b'] } })[0] ?? '',
      /must now not match the schema under `not`/,
    );
  });

  test('a property declared without constraints and then constrained is reported as the change of its type', () => {
    assert.deepEqual(
      findIncompatibilities(
        { type: 'object', properties: { note: {} } },
        { type: 'object', properties: { note: { type: 'string' } } },
      ),
      [{ path: '/properties/note/type', message: 'type of `note` changed from any type to string' }],
    );
  });

  test('unevaluatedItems: false added is breaking (it cannot be compared)', () => {
    assert.deepEqual(problems({ type: 'array' }, { type: 'array', unevaluatedItems: false }), [
      'keyword `unevaluatedItems` of the root value differs between the versions and cannot be compared, so it is treated as breaking',
    ]);
  });

  test('writer alternatives nested two levels deep are compared case by case', () => {
    const old = { anyOf: [{ anyOf: [{ type: 'string' }, { type: 'integer' }] }, { type: 'null' }] };
    assert.deepEqual(problems(old, { type: ['string', 'number', 'null'] }), []);
    assert.deepEqual(problems(old, { type: ['string', 'null'] }), [
      'type of the root value changed from integer to string|null',
    ]);
  });
});

describe('Schema Admin: versions, modes and 409 details', () => {
  function admin(store: SqliteStore, withLedger = true): SchemaAdmin {
    return new SchemaAdmin({
      schemas: store.schemas,
      ...(withLedger ? { ledger: store.ledger } : {}),
      topics: { ensureTopic: async (name) => ({ name, partitions: 1 }) },
      newId: () => crypto.randomUUID(),
      clock: () => new Date(),
      partitions: 1,
      checks: inlineSchemaChecks,
    });
  }
  const order = (properties: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    type: 'object',
    properties,
    ...extra,
  });

  test('a new version without a mode keeps the latest version’s mode', async () => {
    const store = new SqliteStore(':memory:');
    const schemas = admin(store);
    const body = { domain: 'orders', event: 'created' };
    await schemas.register({ ...body, compatibility: 'NONE', schema: order({ a: { type: 'string' } }) });
    const v2 = await schemas.register({ ...body, schema: order({ a: { type: 'integer' } }) });
    assert.equal(v2.record.version, 2);
    assert.equal(v2.record.compatibility, 'NONE');
    await store.close();
  });

  test('a breaking change is 409 with a detail per change: the field, the direction and the version', async () => {
    const store = new SqliteStore(':memory:');
    const schemas = admin(store);
    const body = { domain: 'orders', event: 'created' };
    await schemas.register({ ...body, schema: order({ currency: { type: 'string' } }) });
    await assert.rejects(
      schemas.register({
        ...body,
        schema: order({ currency: { type: 'string' } }, { required: ['currency'] }),
      }),
      (err: WebhooksError) => {
        assert.equal(err.code, 'schema_incompatible');
        assert.deepEqual(err.details, [
          {
            field: 'schema.properties.currency',
            message: 'property `currency` became required (backward incompatible with v1)',
            code: 'backward_incompatible',
          },
        ]);
        return true;
      },
    );
    await store.close();
  });

  test('the same document registered as an explicit new version is a new version', async () => {
    const store = new SqliteStore(':memory:');
    const schemas = admin(store);
    const body = { domain: 'orders', event: 'created', schema: order({ a: { type: 'string' } }) };
    assert.equal((await schemas.register(body)).record.version, 1);
    const again = await schemas.register({ ...body, version: 2 });
    assert.deepEqual([again.created, again.record.version], [true, 2]);
    const same = await schemas.register(body);
    assert.deepEqual([same.created, same.record.version], [false, 1]);
    await store.close();
  });

  test('after an explicit version, the next one follows it, not the count of versions', async () => {
    const store = new SqliteStore(':memory:');
    const schemas = admin(store);
    const body = { domain: 'orders', event: 'created', compatibility: 'NONE' };
    await schemas.register({ ...body, schema: order({ a: {} }) });
    await schemas.register({ ...body, version: 5, schema: order({ b: {} }) });
    const next = await schemas.register({ ...body, schema: order({ c: {} }) });
    assert.equal(next.record.version, 6);
    assert.equal(next.record.ingressTopic, 'ingress.orders.created.v6');
    await store.close();
  });

  test('without a ledger, the same document registered twice at once is one version: 201 and 200', async () => {
    const store = new SqliteStore(':memory:');
    const schemas = admin(store, false);
    const body = { domain: 'orders', event: 'created', schema: order({ a: { type: 'string' } }) };
    const results = await Promise.all([schemas.register(body), schemas.register(body)]);
    assert.deepEqual(results.map((r) => r.created).sort(), [false, true]);
    assert.equal(results[0]?.record.id, results[1]?.record.id);
    assert.equal((await store.schemas.listVersions('orders', 'created')).length, 1);
    await store.close();
  });

  test('a description of more than 1000 characters is 400 at description', async () => {
    const store = new SqliteStore(':memory:');
    const schemas = admin(store);
    const body = { domain: 'orders', event: 'created', schema: order({}) };
    assert.equal((await schemas.register({ ...body, description: 'd'.repeat(1000) })).created, true);
    await assert.rejects(
      schemas.register({ ...body, event: 'updated', description: 'd'.repeat(1001) }),
      (err: WebhooksError) => {
        assert.equal(err.code, 'validation_failed');
        assert.deepEqual(
          err.details.map((d) => d.field),
          ['description'],
        );
        return true;
      },
    );
    await store.close();
  });
});
