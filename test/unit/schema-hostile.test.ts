/**
 * Hostile JSON Schemas: boolean schemas, patterns that backtrack catastrophically in JavaScript's
 * engine, documents too large or too deep, and `$ref` cycles that never move into the data — what
 * registration refuses (with the field and a code), and what the validator cache does with schemas
 * stored before these checks existed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { isPermanentError } from '../../src/common/errors.ts';
import {
  MAX_SCHEMA_BRANCHES,
  MAX_SCHEMA_BYTES,
  MAX_SCHEMA_DEPTH,
  MAX_SCHEMA_NODES,
  MAX_SCHEMA_PATTERN_PROGRAM,
  MAX_SCHEMA_PATTERN_PROPERTIES,
  MAX_SCHEMA_PATTERNS,
  SchemaEvaluationError,
  ValidatorCache,
  validateSchemaDocument,
} from '../../src/common/json-schema.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';
import {
  compiledPatternCount,
  MAX_PATTERN_PROGRAM_SIZE,
  matchesPattern,
  PATTERN_CACHE_SIZE,
  patternProblem,
} from '../../src/common/safe-regex.ts';
import { SqliteStore } from '../../src/engines/sqlite/store.ts';
import { CachedLookups } from '../../src/processor/lookups.ts';
import { EventProcessor } from '../../src/processor/processor.ts';
import { StorePartnerDirectory } from '../../src/subscriptions/partners.ts';
import { schemaRecord } from '../support/fixtures.ts';
import { recordingDeadLetterSink } from '../support/sinks.ts';

/** The codes of the problems registration finds with a document. */
function codes(schema: unknown): string[] {
  return validateSchemaDocument(schema).map((d) => d.code ?? '');
}

/** A schema nested `levels` deep through `properties` (built without recursion). */
function nestedProperties(levels: number): unknown {
  let schema: unknown = { type: 'string' };
  for (let i = 0; i < levels; i++) schema = { type: 'object', properties: { a: schema } };
  return schema;
}

/**
 * The evil patterns, each with hostile inputs of about 100,000 characters and the right answers.
 * JavaScript's backtracking engine takes seconds on 25 characters of them (and doubles with each
 * added one); these tests would not end before the change.
 */
const LONG = 100_000;
const EVIL: Array<{ pattern: string; cases: Array<[string, boolean]> }> = [
  {
    pattern: '^(a+)+$',
    cases: [
      [`${'a'.repeat(LONG)}!`, false],
      ['a'.repeat(LONG), true],
    ],
  },
  {
    pattern: '(a|a)*b',
    cases: [
      ['a'.repeat(LONG), false],
      [`${'a'.repeat(LONG)}b`, true],
    ],
  },
  {
    pattern: '(.*a){20}',
    cases: [
      [`${'a'.repeat(19)}${'b'.repeat(LONG)}`, false],
      [`${'a'.repeat(20)}${'b'.repeat(LONG)}`, true],
    ],
  },
  {
    pattern: '^(\\w+\\s?)*$',
    cases: [
      [`${'a'.repeat(LONG)}!`, false],
      ['ab '.repeat(LONG / 3), true],
    ],
  },
];

/**
 * Runs `body` (a function body over `m`, the exports of the source module `module`, and `data`) in a
 * worker thread and returns its result. Not a timing assertion (the linear engine takes
 * milliseconds): a regression to a backtracking engine would block a thread for hours, and the
 * watchdog makes that a failure rather than a test process that never ends.
 */
async function inWorker<T>(module: string, body: string, data: unknown): Promise<T> {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     import(workerData.url).then((m) => {
       parentPort.postMessage(new Function('m', 'data', workerData.body)(m, workerData.data));
     });`,
    { eval: true, workerData: { url: new URL(module, import.meta.url).href, body, data } },
  );
  let watchdog: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      new Promise<T>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
      new Promise<never>((_, reject) => {
        watchdog = setTimeout(() => reject(new Error('the work did not end within 60 s')), 60_000);
      }),
    ]);
  } finally {
    clearTimeout(watchdog);
    await worker.terminate();
  }
}

/** Whether each value is valid under `schema`, checked by a ValidatorCache in a worker thread. */
function validInWorker(schema: unknown, values: unknown[]): Promise<boolean[]> {
  return inWorker(
    '../../src/common/json-schema.ts',
    `const cache = new m.ValidatorCache();
     return data.values.map((v) => cache.validate('k', data.schema, v).length === 0);`,
    { schema, values },
  );
}

describe('schema registration: boolean schemas', () => {
  test('true and false are valid schemas, at the root as anywhere else, and events validate against them', () => {
    assert.deepEqual(validateSchemaDocument(true), []);
    assert.deepEqual(validateSchemaDocument(false), []);
    const nested = { type: 'object', properties: { a: true, b: false }, additionalProperties: false };
    assert.deepEqual(validateSchemaDocument(nested), []);
    const cache = new ValidatorCache();
    assert.deepEqual(cache.validate('t', true, { any: 'thing' }), []);
    assert.equal(cache.validate('f', false, { any: 'thing' }).length, 1);
    assert.deepEqual(cache.validate('n', nested, { a: 1 }), []);
    assert.equal(cache.validate('n', nested, { b: 1 }).length, 1);
  });
});

describe('event data is plain JSON to the validator', () => {
  test('properties and required look at the data’s own members, never Object.prototype’s', () => {
    const cache = new ValidatorCache();
    const optional = {
      type: 'object',
      properties: { constructor: { type: 'object' }, valueOf: { type: 'number' } },
    };
    assert.deepEqual(cache.validate('opt', optional, { orderId: 'o1' }), [], 'absent, so not checked');
    const required = { type: 'object', required: ['constructor', 'toString'] };
    assert.deepEqual(
      cache.validate('req', required, { orderId: 'o1' }).map((d) => d.message),
      ['must have required property `constructor`', 'must have required property `toString`'],
    );
  });

  test('uniqueItems: equal as JSON whatever the key order, 1 and 1.0 alike, a string and a number not; Ajv’s message', () => {
    const cache = new ValidatorCache();
    const unique = { type: 'array', uniqueItems: true };
    assert.deepEqual(cache.validate('u', unique, [1, '1', [1], [[1]], { a: 1 }]), []);
    assert.deepEqual(cache.validate('u', unique, [1, { a: 1, b: 2 }, { b: 2, a: 1 }]), [
      {
        field: 'data',
        message: 'must NOT have duplicate items (items ## 1 and 2 are identical)',
        code: 'uniqueItems',
      },
    ]);
    assert.equal(cache.validate('u', unique, [2, 2.0]).length, 1);
    assert.deepEqual(cache.validate('off', { type: 'array', uniqueItems: false }, [1, 1]), []);
  });

  test('Infinity is not a number', () => {
    const cache = new ValidatorCache();
    assert.equal(cache.validate('n', { type: 'number' }, Number.POSITIVE_INFINITY).length, 1);
  });
});

describe('schema patterns: a linear-time engine', () => {
  for (const { pattern, cases } of EVIL) {
    test(`${pattern} is registered, and gives the right answer on ~100,000 hostile characters`, async () => {
      const schema = { type: 'string', pattern };
      assert.deepEqual(validateSchemaDocument(schema), []);
      const inputs = cases.map(([input]) => input);
      assert.deepEqual(
        await validInWorker(schema, inputs),
        cases.map(([, valid]) => valid),
      );
    });
  }

  test('patternProperties and propertyNames run on the linear engine too', async () => {
    const hostileName = `${'a'.repeat(LONG)}!`;
    const byPattern = { type: 'object', patternProperties: { '^(a+)+$': { type: 'integer' } } };
    const matching = { [hostileName.slice(0, -1)]: 'not an integer' };
    assert.deepEqual(await validInWorker(byPattern, [{ [hostileName]: 'no match' }, matching]), [
      true,
      false,
    ]);
    const names = { type: 'object', propertyNames: { pattern: '^(a|a)*$' } };
    const valid = await validInWorker(names, [{ [hostileName]: 1 }, { [hostileName.slice(0, -1)]: 1 }]);
    assert.deepEqual(valid, [false, true]);
  });

  test('the compatibility check tests patterns on the linear engine too (an old enum value against a new pattern)', async () => {
    const previous = { type: 'string', enum: [`${'a'.repeat(LONG)}!`, 'aaa'] };
    const messages = await inWorker<string[]>(
      '../../src/schemas/compatibility.ts',
      'return m.findIncompatibilities(data.previous, data.next).map((i) => i.message);',
      { previous, next: { type: 'string', pattern: '^(a+)+$' } },
    );
    assert.equal(messages.length, 1, messages.join('; '));
    assert.match(messages[0] ?? '', /pattern/);
  });

  test('a lookahead, a lookbehind, a backreference: 400 naming the field, with a clear message', () => {
    const problems = validateSchemaDocument({
      type: 'object',
      properties: { x: { type: 'string', pattern: '^(?=a)' } },
      patternProperties: { '(a)\\1': true },
      $defs: { later: { type: 'string', pattern: '(?<!a)b' } },
    });
    const byField = Object.fromEntries(problems.map((p) => [p.field, p]));
    assert.deepEqual(Object.keys(byField).sort(), [
      'schema.$defs.later.pattern',
      'schema.patternProperties.(a)\\1',
      'schema.properties.x.pattern',
    ]);
    assert.equal(byField['schema.properties.x.pattern']?.code, 'pattern_unsupported');
    assert.match(
      byField['schema.properties.x.pattern']?.message ?? '',
      /"\^\(\?=a\)" uses a lookahead at character 2, which the linear-time regular expression engine cannot run/,
    );
    assert.match(byField['schema.patternProperties.(a)\\1']?.message ?? '', /a backreference/);
    assert.match(byField['schema.$defs.later.pattern']?.message ?? '', /a lookbehind/);
  });

  test('a pattern that is no ECMA-262 regular expression, or repeats more than 1000 times, is refused', () => {
    const [invalid] = validateSchemaDocument({ pattern: '\\a' });
    assert.equal(invalid?.code, 'pattern_invalid');
    assert.equal(invalid?.field, 'schema.pattern');
    const [repeat] = validateSchemaDocument({ pattern: 'a{1001}' });
    assert.equal(repeat?.code, 'pattern_unsupported');
    assert.match(repeat?.message ?? '', /repetitions are limited to 1000/);
  });

  test('patterns too large for the engine, alone or together, are refused', () => {
    const huge = '\\w{1,1000}'.repeat(Math.ceil(MAX_PATTERN_PROGRAM_SIZE / 2000) + 1);
    assert.deepEqual(codes({ pattern: huge }), ['pattern_too_large']);
    const big = (i: number) => `^[a-z]{1,1000}\\d{1,1000}x${i}$`; // about 4,000 instructions each
    const count = Math.ceil(MAX_SCHEMA_PATTERN_PROGRAM / 4000) + 1;
    const together = { allOf: Array.from({ length: count }, (_, i) => ({ pattern: big(i) })) };
    assert.deepEqual(codes(together), ['schema_patterns_too_large']);
  });

  test('the linear engine keeps ECMA-262 semantics where RE2 differs', () => {
    const cases: Array<[string, string, boolean]> = [
      ['^\\s$', '\u00a0', true], // RE2's \s is ASCII only
      ['^\\s$', '\ufeff', true],
      ['^\\S$', '\u2028', false],
      ['^.$', '\u2028', false], // . excludes the four line terminators, not only \n
      ['^.$', '\r', false],
      ['^.$', '😀', true], // code points, not UTF-16 units
      ['^a$', 'a\n', false], // $ is the end of the input
      ['^\\d$', '٣', false], // \d is ASCII
      ['^\\w$', 'é', false],
      ['^\\p{Lu}+$', 'ÉA', true],
      ['^\\p{Letter}$', 'ж', true],
      ['^\\p{Script=Greek}$', 'α', true],
      ['^[^]$', '\n', true],
      ['[]', 'anything', false],
      ['^\\u{1F600}$', '😀', true],
      ['^\\uD83D\\uDE00$', '😀', true],
      ['^[\\b]$', '\b', true],
      ['^\\cJ$', '\n', true],
      ['^(?<year>\\d{4})-\\d{2}$', '2026-01', true],
    ];
    for (const [pattern, text, expected] of cases) {
      assert.equal(new RegExp(pattern, 'u').test(text), expected, `JavaScript: ${pattern}`);
      assert.equal(
        matchesPattern(pattern, text),
        expected,
        `linear engine: ${pattern} on ${JSON.stringify(text)}`,
      );
    }
  });

  test('the linear engine agrees with JavaScript on generated patterns and strings', () => {
    const atom = fc.constantFrom(
      'a',
      'b',
      '1',
      '-',
      ' ',
      'é',
      '😀',
      '.',
      '\\d',
      '\\D',
      '\\w',
      '\\W',
      '\\s',
      '\\S',
      '\\n',
      '\\u00a0',
      '\\x2d',
      '\\p{L}',
      '\\P{L}',
      '[ab]',
      '[^ab]',
      '[\\s1]',
      '[^\\S]',
      '[\\w-]',
      '[a-z]',
      '[^\\d\\s]',
      '[]',
      '[^]',
      '\\.',
      '\\u{1F600}',
      '[😀-😂]',
      '\\b',
    );
    const quantifier = fc.constantFrom('', '', '*', '+', '?', '{0,2}', '{2}', '*?', '{1,}');
    // Quantifiers on atoms only: nested ones would make JavaScript's own engine the slow part.
    const term = fc.tuple(atom, quantifier).map(([a, q]) => (a === '\\b' ? a : a + q));
    const { alternation } = fc.letrec((tie) => ({
      group: fc.oneof(
        { maxDepth: 3, depthIdentifier: 'pattern' },
        term,
        tie('alternation').map((a) => `(${a})`),
        tie('alternation').map((a) => `(?:${a})`),
      ),
      sequence: fc.array(tie('group'), { maxLength: 4 }).map((xs) => xs.join('')),
      alternation: fc.array(tie('sequence'), { minLength: 1, maxLength: 3 }).map((xs) => xs.join('|')),
    }));
    const pattern = fc
      .tuple(fc.boolean(), alternation as fc.Arbitrary<string>, fc.boolean())
      .map(([start, p, end]) => `${start ? '^' : ''}${p}${end ? '$' : ''}`);
    const char = fc.constantFrom(
      'a',
      'b',
      '1',
      '-',
      ' ',
      '\n',
      'é',
      '😀',
      '\u00a0',
      '_',
      'z',
      '😁',
      '\u2028',
      '.',
    );
    const text = fc.array(char, { maxLength: 10 }).map((xs) => xs.join(''));
    fc.assert(
      fc.property(pattern, fc.array(text, { minLength: 1, maxLength: 8 }), (p, texts) => {
        assert.equal(patternProblem(p), undefined, p);
        const native = new RegExp(p, 'u');
        for (const t of texts)
          assert.equal(matchesPattern(p, t), native.test(t), `${p} on ${JSON.stringify(t)}`);
      }),
      { numRuns: 500 },
    );
  });

  test('compiled patterns are kept in a bounded cache', () => {
    for (let i = 0; i < PATTERN_CACHE_SIZE + 50; i++) assert.equal(matchesPattern(`^p${i}$`, `p${i}`), true);
    assert.equal(compiledPatternCount(), PATTERN_CACHE_SIZE);
    assert.equal(matchesPattern('^p0$', 'p0'), true, 'a pattern dropped from the cache is compiled again');
  });
});

describe('schema registration: limits', () => {
  test('nesting deeper than the limit is refused (schema_too_deep), however deep, without recursion', () => {
    assert.deepEqual(codes(nestedProperties(2_000)), ['schema_too_deep']);
    let deep: unknown = {};
    for (let i = 0; i < 100_000; i++) deep = { not: deep };
    const [problem] = validateSchemaDocument(deep);
    assert.equal(problem?.code, 'schema_too_deep');
    assert.equal(problem?.field, 'schema');
    assert.match(problem?.message ?? '', new RegExp(`limit of ${MAX_SCHEMA_DEPTH} levels`));
    // Each level of `properties` is two levels of JSON: half the limit (less the root) still registers.
    assert.deepEqual(validateSchemaDocument(nestedProperties(MAX_SCHEMA_DEPTH / 2 - 1)), []);
  });

  test('5,000 patternProperties and anyOf × 20,000 are refused before compiling (schema_too_complex)', () => {
    const patterned = {
      type: 'object',
      patternProperties: Object.fromEntries(
        Array.from({ length: 5000 }, (_, i) => [`^p${i}_[a-z]+$`, { type: 'string' }]),
      ),
    };
    const [problem] = validateSchemaDocument(patterned);
    assert.equal(problem?.code, 'schema_too_complex');
    assert.match(problem?.message ?? '', new RegExp(`limit of ${MAX_SCHEMA_NODES} values`));
    const anyOf = { anyOf: Array.from({ length: 20_000 }, (_, i) => ({ const: i })) };
    assert.deepEqual(codes(anyOf), ['schema_too_complex']);
  });

  test('a document over the size limit is refused (schema_too_large)', () => {
    assert.deepEqual(codes({ description: 'x'.repeat(MAX_SCHEMA_BYTES) }), ['schema_too_large']);
    assert.deepEqual(codes({ description: 'x'.repeat(MAX_SCHEMA_BYTES / 2) }), []);
  });

  test('too many branches in one combinator, too many patterns or patternProperties: refused, naming the limit', () => {
    const branches = (n: number) => Array.from({ length: n }, (_, i) => ({ const: i }));
    const [wide] = validateSchemaDocument({
      properties: { a: { oneOf: branches(MAX_SCHEMA_BRANCHES + 1) } },
    });
    assert.equal(wide?.code, 'schema_too_many_branches');
    assert.equal(wide?.field, 'schema.properties.a.oneOf');
    assert.deepEqual(codes({ oneOf: branches(MAX_SCHEMA_BRANCHES) }), []);
    const patterns = (n: number) => ({
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, { pattern: `^x${i}-` }])),
    });
    assert.deepEqual(codes(patterns(MAX_SCHEMA_PATTERNS + 1)), ['schema_too_many_patterns']);
    assert.deepEqual(codes(patterns(MAX_SCHEMA_PATTERNS)), []);
    // patternProperties are tested against every property name of every event: fewer of them.
    const keyed = (n: number) => ({
      type: 'object',
      patternProperties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`^x${i}-`, true])),
    });
    const [tooMany] = validateSchemaDocument(keyed(MAX_SCHEMA_PATTERN_PROPERTIES + 1));
    assert.equal(tooMany?.code, 'schema_too_many_pattern_properties');
    assert.match(tooMany?.message ?? '', new RegExp(`limit of ${MAX_SCHEMA_PATTERN_PROPERTIES}$`));
    assert.deepEqual(codes(keyed(MAX_SCHEMA_PATTERN_PROPERTIES)), []);
  });
});

describe('schema registration: $ref cycles that never move into the data', () => {
  const cycles: Array<[string, unknown, string]> = [
    ['{"$ref": "#"}', { $ref: '#' }, 'schema.$ref'],
    [
      'two $defs referring to each other',
      { $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' },
      'schema.$defs.b.$ref',
    ],
    ['allOf: [{$ref: "#"}]', { allOf: [{ $ref: '#' }] }, 'schema.allOf.0.$ref'],
    [
      'a branch of anyOf, behind a type',
      { type: 'object', anyOf: [{ type: 'string' }, { $ref: '#' }] },
      'schema.anyOf.1.$ref',
    ],
    [
      'else, through an $anchor',
      { $defs: { a: { $anchor: 'A', if: false, else: { $ref: '#A' } } }, $ref: '#A' },
      'schema.$defs.a.else.$ref',
    ],
    [
      'a subschema with its own $id referring to itself',
      { $id: 'https://example.test/order', properties: { x: { $id: 'item', not: { $ref: '#' } } } },
      'schema.properties.x.not.$ref',
    ],
    [
      '$dynamicRef',
      { $dynamicAnchor: 'node', allOf: [{ $dynamicRef: '#node' }] },
      'schema.allOf.0.$dynamicRef',
    ],
  ];
  for (const [name, schema, field] of cycles) {
    test(`${name} is refused at the reference closing the cycle`, () => {
      const problems = validateSchemaDocument(schema);
      assert.equal(problems.length, 1);
      assert.equal(problems[0]?.code, 'schema_ref_cycle');
      assert.equal(problems[0]?.field, field);
      assert.match(
        problems[0]?.message ?? '',
        /never moves into the data .*: validating would recurse forever/,
      );
    });
  }

  test('recursion that moves into the data (a tree) is fine; the same tree recursing in place is not', () => {
    const tree = {
      $defs: {
        node: {
          type: 'object',
          properties: {
            value: { type: 'string' },
            children: { type: 'array', items: { $ref: '#/$defs/node' } },
          },
        },
      },
      $ref: '#/$defs/node',
    };
    assert.deepEqual(validateSchemaDocument(tree), []);
    const cache = new ValidatorCache();
    assert.deepEqual(
      cache.validate('tree', tree, { value: 'a', children: [{ value: 'b', children: [] }] }),
      [],
    );
    const inPlace = { ...tree, $defs: { node: { ...tree.$defs.node, anyOf: [{ $ref: '#/$defs/node' }] } } };
    assert.deepEqual(codes(inPlace), ['schema_ref_cycle']);
  });
});

describe('ValidatorCache: schemas stored before these checks', () => {
  test('a $ref cycle is a permanent SchemaEvaluationError, not a stack overflow', () => {
    const cache = new ValidatorCache();
    for (const data of [{ a: 1 }, 1]) {
      assert.throws(
        () => cache.validate('k', { $ref: '#' }, data),
        (err: unknown) =>
          err instanceof SchemaEvaluationError &&
          err.permanent &&
          err.code === 'schema_evaluation_failed' &&
          isPermanentError(err) &&
          /`\$ref` cycle that never moves into the data/.test(err.message),
      );
    }
  });

  test('a stack overflow while validating deeply nested data is a permanent SchemaEvaluationError', () => {
    const recursive = { type: ['object', 'string'], properties: { a: { $ref: '#' } } };
    let data: unknown = 'leaf';
    for (let i = 0; i < 50_000; i++) data = { a: data };
    const cache = new ValidatorCache();
    assert.deepEqual(cache.validate('r', recursive, { a: { a: 'leaf' } }), []);
    assert.throws(
      () => cache.validate('r', recursive, data),
      (err: unknown) =>
        err instanceof SchemaEvaluationError && err.permanent && /overflowed the stack/.test(err.message),
    );
  });

  test('a schema nested too deeply for Ajv to compile is a permanent SchemaEvaluationError', () => {
    let deep: unknown = {};
    for (let i = 0; i < 100_000; i++) deep = { not: deep };
    assert.throws(
      () => new ValidatorCache().validate('deep', deep, {}),
      (err: unknown) => err instanceof SchemaEvaluationError && /does not compile/.test(err.message),
    );
  });

  test('a pattern the linear engine cannot run makes the schema a permanent SchemaEvaluationError', () => {
    const cache = new ValidatorCache();
    assert.throws(
      () => cache.validate('old', { type: 'string', pattern: '^(?!admin)' }, 'x'),
      (err: unknown) =>
        err instanceof SchemaEvaluationError && /"\^\(\?!admin\)" uses a lookahead/.test(err.message),
    );
  });

  test('the processor dead-letters an event of such a schema at once (no retries)', async () => {
    const store = new SqliteStore(':memory:');
    await store.schemas.insert(schemaRecord({ schema: { $ref: '#' } }));
    const processor = new EventProcessor({
      lookups: new CachedLookups({
        schemas: store.schemas,
        subscriptions: store.subscriptions,
        directory: new StorePartnerDirectory(store.partners),
      }),
      validators: new ValidatorCache(),
      publish: async () => {},
      deadLetters: recordingDeadLetterSink(store, () => []),
      deliveries: store.deliveries,
      dedupe: true,
      maxAttempts: 5,
      retryDelayMs: 1000,
      metrics: new MetricsRegistry(),
      logger: new Logger({ level: 'error', sink: { write: () => {} } }),
      clock: () => new Date(),
    });
    const event = { specversion: '1.0', id: 'e-1', source: '/t', type: 'orders.created', schemaversion: 1 };
    const result = await processor.processBatch([
      {
        topic: 'ingress.orders.created.v1',
        partition: 0,
        offset: 0,
        value: JSON.stringify({ ...event, data: { amount: 1 } }),
        headers: {},
        timestamp: Date.now(),
      },
    ]);
    assert.deepEqual(
      result.outcomes.map((o) => (o.kind === 'dlq' ? o.reason : o.kind)),
      ['schema_evaluation_failed'],
    );
    await store.close();
  });
});
