#!/usr/bin/env node
// Launcher for `npx webhooks` / a global install: runs the TypeScript CLI on Node >= 24.
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  process.stderr.write(`webhooks needs Node.js 24 or newer (this is ${process.version})\n`);
  process.exit(1);
}
await import('../src/runtimes/cli/main.ts');
