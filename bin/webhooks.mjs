#!/usr/bin/env node
// Launcher for `npx webhooks` in this checkout and `npm install -g .` / `npm link` (which link to
// it): runs the TypeScript CLI on Node >= 24. A copy installed under node_modules cannot run, as
// Node does not strip types from files there (the package is private: never published).
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`webhooks needs Node.js 24 or newer (this is ${process.version})\n`);
  process.exit(1);
}
await import('../src/runtimes/cli/main.ts');
