/**
 * The real app, as CI and a deployment build it: `cdk synth` of `infra/bin/app.ts`, offline (no
 * lookups, no version check, no notices), with every handler really bundled by esbuild; each
 * function's asset is a bundle Node can load on its own; and cfn-lint finds no error in the
 * template (its warnings are printed).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FUNCTION_KINDS } from '../../infra/lib/permissions.ts';
import { pythonTool } from '../../tools/python/env.ts';
import type { CfnTemplate } from './support.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = mkdtempSync(join(tmpdir(), 'webhooks-cdk-out-'));
after(() => rmSync(out, { recursive: true, force: true }));

interface LintFinding {
  Level: string;
  Message: string;
  Rule: { Id: string };
  Location: { Path: Array<string | number> };
}

describe('cdk synth of the real app', () => {
  let template: CfnTemplate;

  before(() => {
    const missing = FUNCTION_KINDS.filter(
      (k) => !existsSync(join(root, 'src', 'runtimes', 'lambda', `${k}.ts`)),
    );
    assert.deepStrictEqual(
      missing,
      [],
      `Lambda handlers missing: ${missing.map((k) => `src/runtimes/lambda/${k}.ts`).join(', ')} (the app bundles all five)`,
    );
    const cdk = spawnSync(
      join(root, 'node_modules', '.bin', 'cdk'),
      [
        'synth',
        '--app',
        `${JSON.stringify(process.execPath)} infra/bin/app.ts`,
        '--output',
        out,
        '--no-lookups',
        '--no-notices',
        '--no-version-reporting',
        '--no-asset-metadata',
        '--quiet',
      ],
      {
        cwd: root,
        encoding: 'utf8',
        env: {
          ...process.env,
          CDK_DISABLE_VERSION_CHECK: '1',
          CDK_DISABLE_CLI_TELEMETRY: 'true',
          // No credentials, no region: nothing may depend on them.
          AWS_ACCESS_KEY_ID: '',
          AWS_SECRET_ACCESS_KEY: '',
          AWS_PROFILE: '',
          AWS_REGION: '',
          AWS_DEFAULT_REGION: '',
        },
        timeout: 120_000,
      },
    );
    assert.equal(cdk.status, 0, `cdk synth failed:\n${cdk.stdout}\n${cdk.stderr}`);
    template = JSON.parse(readFileSync(join(out, 'Webhooks.template.json'), 'utf8')) as CfnTemplate;
  });

  it('synthesizes offline, environment-agnostic, with nothing left to look up', () => {
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as {
      missing?: unknown[];
      artifacts: Record<string, { type: string; environment?: string }>;
    };
    assert.equal(manifest.missing, undefined);
    assert.equal(manifest.artifacts.Webhooks?.environment, 'aws://unknown-account/unknown-region');
    assert.deepStrictEqual(
      Object.keys(template.Resources).filter((id) => template.Resources[id]!.Type === 'AWS::Lambda::Function')
        .length,
      5,
    );
  });

  it('each function’s asset is its handler bundled: index.mjs + source map, loadable, exporting handler', () => {
    const functions = Object.entries(template.Resources).filter(
      ([, r]) => r.Type === 'AWS::Lambda::Function',
    );
    const services = new Set<string>();
    for (const [id, fn] of functions) {
      const key = (fn.Properties!.Code as { S3Key: string }).S3Key;
      const asset = join(out, `asset.${key.replace(/\.zip$/, '')}`);
      assert.deepStrictEqual(readdirSync(asset).toSorted(), ['index.mjs', 'index.mjs.map'], id);
      const script = `import(${JSON.stringify(join(asset, 'index.mjs'))}).then((m) => console.log(typeof m.handler))`;
      const type = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: out,
        encoding: 'utf8',
        timeout: 30_000,
      }).trim();
      assert.equal(type, 'function', `${id}: the bundle exports handler`);
      const env = (fn.Properties!.Environment as { Variables: Record<string, string> }).Variables;
      services.add(env.POWERTOOLS_SERVICE_NAME!);
    }
    assert.deepStrictEqual([...services].toSorted(), [...FUNCTION_KINDS].toSorted());
  });

  it('cfn-lint reports no error on the template', (t) => {
    const lint = spawnSync(
      pythonTool('cfn-lint'),
      ['--format', 'json', '--', join(out, 'Webhooks.template.json')],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.ok(lint.stdout, `cfn-lint printed nothing: ${lint.stderr}`);
    const findings = JSON.parse(lint.stdout) as LintFinding[];
    for (const f of findings.filter((x) => x.Level !== 'Error')) {
      t.diagnostic(`cfn-lint ${f.Level} ${f.Rule.Id} ${f.Location.Path.join('/')}: ${f.Message}`);
    }
    const errors = findings.filter((f) => f.Level === 'Error');
    assert.deepStrictEqual(
      errors.map((f) => `${f.Rule.Id} ${f.Location.Path.join('/')}: ${f.Message}`),
      [],
    );
  });
});
