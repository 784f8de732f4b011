/**
 * The project's Python tools (moto's server, cfn-lint) in a virtualenv of their own under
 * `.tools/python`, installed from PyPI on first use with the pinned `requirements.txt`, and
 * reinstalled when that file changes. Run directly (`node tools/python/env.ts`) it installs them and
 * prints the virtualenv's bin directory; tests call `pythonTool(name)` for a tool's path.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const venv = join(root, '.tools', 'python');
const requirements = join(here, 'requirements.txt');
const stamp = join(venv, '.requirements.sha256');

/** Installs the tools if they are missing or out of date; returns the virtualenv's bin directory. */
export function ensurePythonTools(): string {
  const bin = join(venv, 'bin');
  const wanted = createHash('sha256').update(readFileSync(requirements)).digest('hex');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === wanted) return bin;
  const python = findPython();
  mkdirSync(dirname(venv), { recursive: true });
  if (!existsSync(join(bin, 'python'))) execFileSync(python, ['-m', 'venv', venv], { stdio: 'inherit' });
  execFileSync(
    join(bin, 'python'),
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  writeFileSync(stamp, wanted);
  return bin;
}

/** The path of one of the tools' executables (e.g. `moto_server`, `cfn-lint`), installed if needed. */
export function pythonTool(name: string): string {
  const path = join(ensurePythonTools(), name);
  if (!existsSync(path)) throw new Error(`${name} is not in ${venv} after installing ${requirements}`);
  return path;
}

function findPython(): string {
  for (const candidate of ['python3', 'python']) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
      const [major, minor] = (/Python (\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
      if (major === 3 && (minor ?? 0) >= 9) return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error('Python 3.9 or later is required for moto and cfn-lint (python3 not found)');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(ensurePythonTools());
}
