/**
 * The configuration the CLI's commands share: `webhooks start` runs with it, and the commands that
 * call a running platform (`publish`, `api-keys`) find it with it — the same environment, config file
 * (`--config` or WEBHOOKS_CONFIG_FILE), port, host, TLS, data dir and admin token.
 */
import { readFileSync } from 'node:fs';
import { type Config, loadConfig } from '../../common/config.ts';
import { serverUrl } from '../../common/http.ts';

/** The configuration from the environment, the config file and the command's own options. */
export function configure(
  values: Record<string, string | boolean | undefined>,
  env: Record<string, string | undefined> = process.env,
): Config {
  const merged: Record<string, string | undefined> = { ...env };
  if (typeof values.port === 'string') merged.WEBHOOKS_PORT = values.port;
  if (typeof values.host === 'string') merged.WEBHOOKS_HOST = values.host;
  if (typeof values['data-dir'] === 'string') merged.WEBHOOKS_DATA_DIR = values['data-dir'];
  const file = typeof values.config === 'string' ? values.config : merged.WEBHOOKS_CONFIG_FILE;
  let parsed: unknown;
  if (file) {
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read the config file ${file}: ${(err as Error).message}`);
    }
  }
  return loadConfig(merged, parsed);
}

/** Where a platform started with this configuration answers, seen from this machine. */
export function platformUrl(config: Config): string {
  const listening = config.host;
  const host = listening === '0.0.0.0' || listening === '::' || listening === '' ? '127.0.0.1' : listening;
  return serverUrl(config.tls !== undefined, host, config.port);
}
