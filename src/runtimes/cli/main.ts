#!/usr/bin/env node
/**
 * The `webhooks` command line: `webhooks start` runs the platform; `webhooks help` lists commands.
 * Runs on Node 24 directly from the TypeScript sources (type stripping).
 */
import { parseArgs } from 'node:util';
import { CONFIG_ENV_VARS, type Config, loadConfig } from '../../common/config.ts';
import { isWebhooksError } from '../../common/errors.ts';
import { dynamoOptions } from '../engines.ts';
import { ALL_ROLES, type Role, VERSION } from '../platform.ts';
import { CLOSE_GRACE_MS, HANDLER_WAIT_MS } from '../server/http-server.ts';
import { startServer } from '../server/server.ts';
import { STOP_TIMEOUT_MS } from '../thread-host.ts';
import { apiKeysCommand } from './api-keys.ts';
import { configure } from './configure.ts';
import { demoCommand } from './demo.ts';
import { publishCommand } from './publish.ts';
import { receiveCommand } from './receive.ts';
import { rotateSecretKey } from './rotate-key.ts';

/** How long `webhooks start` may take to stop on SIGTERM/SIGINT before it exits 1 anyway (ms). */
const SHUTDOWN_LIMIT_MS = CLOSE_GRACE_MS + HANDLER_WAIT_MS + STOP_TIMEOUT_MS + 10_000;

const HELP = `webhooks ${VERSION} — partner-webhook delivery platform

Usage:
  webhooks start [--port N] [--host H] [--data-dir DIR] [--config FILE] [--role all|api|processor|dispatcher[,…]]
      runs the platform; --role splits the API, the processor and the dispatcher across processes
  webhooks receive [--port 9000] [--host 127.0.0.1] [--secret whsec_... (repeatable)] [--tls]
                   [--cert-file FILE] [--status 204] [--fail-first N] [--fail-status 500]
                   [--delay-ms 0] [--quiet]
      a local partner endpoint: verifies Standard Webhooks signatures, prints one JSON line per request
  webhooks publish [FILE|-] [--url U] [--token T] [--batch] [--data-dir DIR] [--config FILE]
      POSTs a CloudEvent (object), a batch (array or JSON lines) from FILE or stdin to /events; without
      --url and --token, the platform is found as \`webhooks start\` is configured (port, host, TLS, token)
  webhooks publish [FILE|-] --kafka HOST:PORT[,…] [--mode binary|structured] [--schema-version N]
      writes the events straight to their ingress topics in the CloudEvents Kafka binding, as an
      outside producer would (TLS and SASL from the WEBHOOKS_KAFKA_* variables)
  webhooks demo [--keep] [--port N] [--data-dir DIR]
      the whole flow in one go: platform + HTTPS receiver, schema, partner, subscription, event, delivery
  webhooks api-keys create --name NAME --role admin|operator|publisher [--source S]… [--event-type T]…
                   [--expires-at ISO] | list | revoke ID   [--url U] [--token T] [--data-dir DIR] [--config FILE]
      API keys through the running platform (a key is printed once; publisher keys only publish their sources)
  webhooks rotate-secret-key [--data-dir DIR] [--config FILE]
      a new at-rest encryption key; with <data dir>/secret.key, re-seals the store under it and replaces
      the file (refused while the platform runs on the data dir); with WEBHOOKS_SECRET_KEY, prints the key and the steps to roll it out
  webhooks create-tables [--config FILE]
      creates the DynamoDB store's missing tables (with their indexes and TTL) under
      WEBHOOKS_DYNAMODB_TABLE_PREFIX in WEBHOOKS_DYNAMODB_REGION, once; safe to run again
  webhooks version
  webhooks help

Configuration comes from the environment (a JSON file named by --config or
WEBHOOKS_CONFIG_FILE adds to it; the environment wins):
  ${CONFIG_ENV_VARS.join('\n  ')}
`;

/** Reads the configuration from the environment, the optional file and the command-line overrides. */
/** `all`, or a comma-separated list of api, processor, dispatcher. */
function parseRoles(text: string): Role[] {
  if (text === 'all') return [...ALL_ROLES];
  const roles = text.split(',').map((r) => r.trim());
  for (const r of roles) {
    if (!(ALL_ROLES as readonly string[]).includes(r)) {
      throw new Error(`--role takes all, or a comma-separated list of ${ALL_ROLES.join(', ')}; got "${r}"`);
    }
  }
  return roles as Role[];
}

async function start(values: Record<string, string | boolean | undefined>): Promise<void> {
  const role = String(values.role ?? 'all');
  const roles = parseRoles(role);
  const config = configure(values);
  // The signals are heard from the start: one that arrives while the platform starts stops it once
  // it has started (without a listener, Node would end the process at once, mid-start).
  let stopRequested: string | undefined;
  let shutdown = (signal: string) => {
    stopRequested ??= signal;
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  const running = await startServer(config, { roles });
  const { platform } = running;
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(
    `webhooks ${VERSION} listening on ${running.url} (role ${role}, bus ${config.bus}, store ${config.store}, data dir ${config.dataDir})`,
  );
  if (config.dev)
    out('WEBHOOKS_DEV=1: http:// and private delivery targets are allowed — never use this in production');
  const token = platform.adminToken;
  if (token.source === 'generated') out(`admin token (generated, stored in ${token.path}): ${token.value}`);
  else if (token.source === 'file') out(`admin token: stored in ${token.path}`);
  else out('admin token: from WEBHOOKS_ADMIN_TOKEN');
  out(`OpenAPI document: ${running.url}/openapi.json`);

  shutdown = (signal: string) => {
    platform.logger.info('shutting down', { signal });
    // The stop has bounds of its own: requests in progress get CLOSE_GRACE_MS (their handlers
    // HANDLER_WAIT_MS more), each worker thread
    // STOP_TIMEOUT_MS to finish the deliveries it has in flight (a partner answering in 12 s is
    // recorded, not cut off and sent again after the restart). This is the backstop beyond them.
    const force = setTimeout(() => process.exit(1), SHUTDOWN_LIMIT_MS);
    force.unref();
    running.stop().then(
      () => process.exit(0),
      (err) => {
        platform.logger.error('shutdown failed', { err });
        process.exit(1);
      },
    );
  };
  if (stopRequested) shutdown(stopRequested);
}

/** `webhooks create-tables`: creates the DynamoDB store's missing tables once (what WEBHOOKS_DYNAMODB_CREATE_TABLES=1 does at every start). */
async function createTablesCommand(config: Config): Promise<void> {
  const { DynamoStore } = await import('../../engines/dynamodb/store.ts');
  const { tableNames } = await import('../../engines/dynamodb/tables.ts');
  const store = await DynamoStore.open({ ...dynamoOptions(config), createTables: true });
  await store.close();
  const names = Object.values(tableNames(config.dynamodb.tablePrefix)).sort();
  process.stdout.write(`DynamoDB tables ready (${config.dynamodb.region}): ${names.join(', ')}\n`);
}

/** Entry point: parses the command and runs it; prints configuration errors one per line. */
export async function main(argv: string[]): Promise<void> {
  // These commands have options of their own, so they parse their arguments themselves.
  const commands: Record<string, (args: string[]) => Promise<void>> = {
    receive: receiveCommand,
    publish: publishCommand,
    demo: demoCommand,
    'api-keys': apiKeysCommand,
  };
  const own = argv[0] === undefined ? undefined : commands[argv[0]];
  // Each command's options are in the one help (a command's own parser would refuse `--help`).
  if (own && argv.slice(1).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(HELP);
    return;
  }
  if (own) return own(argv.slice(1));
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      'data-dir': { type: 'string' },
      config: { type: 'string' },
      role: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = values.help ? 'help' : (positionals[0] ?? 'help');
  switch (command) {
    case 'start':
      return start(values);
    case 'rotate-secret-key':
      return rotateSecretKey(configure(values));
    case 'create-tables':
      return createTablesCommand(configure(values));
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return;
    case 'help':
      process.stdout.write(HELP);
      return;
    default:
      throw new Error(`unknown command "${command}"; run \`webhooks help\``);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (isWebhooksError(err) && err.details.length > 0) {
    process.stderr.write(
      `webhooks: ${err.code === 'config_invalid' ? 'invalid configuration' : err.message}\n`,
    );
    for (const d of err.details) process.stderr.write(`  - ${d.field ? `${d.field}: ` : ''}${d.message}\n`);
  } else {
    process.stderr.write(`webhooks: ${(err as Error).message}\n`);
  }
  process.exit(2);
});
