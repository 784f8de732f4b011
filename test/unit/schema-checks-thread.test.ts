/**
 * Schema registration checks in their own thread: the same answers as inline, a check past its
 * time limit refused as schema_too_complex, and the thread started again for the next check.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { schemaFingerprint } from '../../src/common/json-schema.ts';
import { ThreadedSchemaChecks } from '../../src/runtimes/schema-checks.ts';
import { inlineSchemaChecks } from '../../src/schemas/checks.ts';

/** A legal schema that takes tens of milliseconds to check: 250 properties with patterns. */
function patternedSchema(properties: number, required: string[] = []): Record<string, unknown> {
  return {
    type: 'object',
    required,
    properties: Object.fromEntries(
      Array.from({ length: properties }, (_, i) => [`p${i}`, { type: 'string', pattern: '^[a-z]{1,8}$' }]),
    ),
  };
}

describe('schema checks in a thread', () => {
  const checks = new ThreadedSchemaChecks();
  after(() => checks.close());

  test('a valid document: no problems and the fingerprint of the inline check', async () => {
    const schema = patternedSchema(250);
    const threaded = await checks.document(schema, 'schema');
    assert.deepEqual(threaded, await inlineSchemaChecks.document(schema, 'schema'));
    assert.equal(threaded.fingerprint, schemaFingerprint(schema));
  });

  test('an invalid document: the problems of the inline check, no fingerprint', async () => {
    for (const schema of [{ type: 'strin' }, { $ref: '#' }, { type: 'string', pattern: '(a)\\1' }, 'nope']) {
      const threaded = await checks.document(schema, 'body.schema');
      assert.ok(threaded.problems.length > 0, JSON.stringify(schema));
      assert.deepEqual(threaded, await inlineSchemaChecks.document(schema, 'body.schema'));
      assert.equal(threaded.fingerprint, undefined);
    }
  });

  test('a document nested 100,000 levels deep is refused before it is handed over (the clone would overflow)', async () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 100_000; i++) deep = { properties: { a: deep } };
    const threaded = await checks.document(deep, 'schema');
    assert.equal(threaded.problems[0]!.code, 'schema_too_deep');
  });

  test('compatibility: the breaking changes of the inline check', async () => {
    const before = patternedSchema(20);
    const after = patternedSchema(20, ['p1', 'p2']);
    const previous = [{ version: 1, schema: before }];
    const threaded = await checks.compatibility(after, previous, 'BACKWARD');
    assert.equal(threaded.length, 2, 'two properties became required');
    assert.deepEqual(threaded, await inlineSchemaChecks.compatibility(after, previous, 'BACKWARD'));
    assert.deepEqual(await checks.compatibility(before, [{ version: 1, schema: after }], 'BACKWARD'), []);
  });

  test('a check past its time limit is schema_too_complex, and the next check gets a new thread', async () => {
    const strict = new ThreadedSchemaChecks({ timeoutMs: 1 });
    try {
      const first = await strict.document(patternedSchema(250), 'schema');
      assert.equal(first.problems.length, 1);
      assert.equal(first.problems[0]!.code, 'schema_too_complex');
      assert.match(first.problems[0]!.message, /took longer than 1 ms/);
      await assert.rejects(
        strict.compatibility(patternedSchema(250), [{ version: 1, schema: patternedSchema(250) }], 'FULL'),
        (err: { code?: string; kind?: string }) =>
          err.code === 'schema_too_complex' && err.kind === 'validation',
      );
      assert.equal(strict.counts.checks, 2);
      assert.equal(strict.counts.starts, 2, 'the thread of the first check was ended, a new one started');
    } finally {
      await strict.close();
    }
    // The same checks with time to spare.
    assert.deepEqual((await checks.document(patternedSchema(250), 'schema')).problems, []);
  });

  test('checks asked for after close fail', async () => {
    const closed = new ThreadedSchemaChecks();
    await closed.close();
    await assert.rejects(closed.document({ type: 'string' }, 'schema'), /closed/);
  });
});
