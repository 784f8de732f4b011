/**
 * Bundling of the Lambda handlers with esbuild, locally (no Docker): one ESM file per function,
 * `infra/.build/<name>/index.mjs` with its source map, handler `index.handler`. Pure JavaScript, so
 * the bundle runs on arm64 as on x86_64.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where the handlers' entry files are: `<dir>/<name>.ts`. */
export const HANDLERS_DIR = join(root, 'src', 'runtimes', 'lambda');
/** Where the bundles are written (git-ignored). */
export const BUILD_DIR = join(root, 'infra', '.build');

/** A bundle's `require` for the CommonJS dependencies esbuild inlines into an ESM file. */
const ESM_BANNER = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/** The entry file of a handler; throws, naming the file, when it does not exist. */
export function handlerEntry(name: string, handlersDir: string = HANDLERS_DIR): string {
  const entry = join(handlersDir, `${name}.ts`);
  if (!existsSync(entry)) {
    throw new Error(`the Lambda handler ${entry} does not exist: cannot bundle the ${name} function`);
  }
  return entry;
}

/**
 * Bundles the handler `name` (`src/runtimes/lambda/<name>.ts`, exporting `handler`) into
 * `<outDir>/<name>/index.mjs` (+ `.map`), minified, for Node.js 24; returns the directory, which
 * holds nothing else (a `lambda.Code.fromAsset` source).
 */
export function bundleHandler(name: string, options: { handlersDir?: string; outDir?: string } = {}): string {
  const entry = handlerEntry(name, options.handlersDir);
  const dir = join(options.outDir ?? BUILD_DIR, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  buildSync({
    entryPoints: [entry],
    outfile: join(dir, 'index.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minify: true,
    sourcemap: true,
    banner: { js: ESM_BANNER },
    // The bundle must not depend on where it was built, so its asset hash is stable.
    absWorkingDir: root,
    logLevel: 'error',
    legalComments: 'none',
  });
  return dir;
}
