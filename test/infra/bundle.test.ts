/**
 * The bundler (`infra/lib/bundle.ts`): one minified ESM file with its source map per handler,
 * loadable by Node.js outside the repository (no node_modules next to it), its CommonJS
 * dependencies able to `require` Node built-ins; a missing handler file is named in the error.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bundleHandler, handlerEntry } from '../../infra/lib/bundle.ts';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'handlers');
const out = mkdtempSync(join(tmpdir(), 'webhooks-bundle-'));
after(() => rmSync(out, { recursive: true, force: true }));

describe('bundleHandler', () => {
  it('writes <name>/index.mjs and its source map, nothing else, minified, with the require banner', () => {
    const dir = bundleHandler('sample', { handlersDir: fixtures, outDir: out });
    assert.equal(dir, join(out, 'sample'));
    assert.deepStrictEqual(readdirSync(dir).toSorted(), ['index.mjs', 'index.mjs.map']);
    const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
    assert.ok(
      code.startsWith(
        "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
      ),
    );
    assert.match(code, /\/\/# sourceMappingURL=index\.mjs\.map\s*$/);
    assert.ok(code.split('\n').length < 10, 'minified');
    const map = JSON.parse(readFileSync(join(dir, 'index.mjs.map'), 'utf8')) as { sources: string[] };
    assert.ok(map.sources.some((s) => s.endsWith('fixtures/handlers/sample.ts')));
  });

  it('the bundle runs on its own: Node imports it from a directory with no node_modules', () => {
    const dir = bundleHandler('sample', { handlersDir: fixtures, outDir: out });
    const script = `import(${JSON.stringify(join(dir, 'index.mjs'))}).then(async (m) => console.log(JSON.stringify(await m.handler())))`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: out,
      encoding: 'utf8',
    });
    assert.deepStrictEqual(JSON.parse(output), { platform: process.platform });
  });

  it('a missing handler file is an error naming the file', () => {
    assert.throws(
      () => handlerEntry('nowhere', fixtures),
      (err: Error) =>
        err.message.includes(join(fixtures, 'nowhere.ts')) && err.message.includes('does not exist'),
    );
    assert.throws(
      () => bundleHandler('nowhere', { handlersDir: fixtures, outDir: out }),
      /nowhere\.ts does not exist/,
    );
  });
});
