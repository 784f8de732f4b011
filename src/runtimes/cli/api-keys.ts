/**
 * `webhooks api-keys create|list|revoke`: API keys through the running platform's admin API (so
 * each change is authenticated and audited like any other), with the admin token of the data dir.
 */
import { parseArgs } from 'node:util';
import { isJsonObject } from '../../common/json.ts';
import { callApi } from './api-client.ts';
import { describeError, invalid, platformTarget, reaching } from './publish.ts';

const USAGE = `webhooks api-keys create --name NAME --role admin|operator|publisher [--source S]… [--event-type T]… [--expires-at ISO]
webhooks api-keys list
webhooks api-keys revoke ID
  (each also takes [--url http://127.0.0.1:8080] [--token T] [--data-dir DIR])`;

/** One admin API call with a JSON body (if any). */
function callAdmin(url: string, token: string, method: string, path: string, body?: unknown) {
  return callApi(
    url,
    token,
    method,
    path,
    body === undefined ? undefined : { text: JSON.stringify(body), contentType: 'application/json' },
  );
}

/** Runs the subcommand; exit code 0 on 2xx, 1 otherwise. */
export async function apiKeysCommand(argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      role: { type: 'string' },
      source: { type: 'string', multiple: true },
      'event-type': { type: 'string', multiple: true },
      'expires-at': { type: 'string' },
      url: { type: 'string' },
      token: { type: 'string' },
      'data-dir': { type: 'string' },
      config: { type: 'string' },
    },
  });
  const [action, id] = positionals;
  const { url, token } = platformTarget(values);
  let request: () => Promise<{ status: number; body: unknown }>;
  if (action === 'create') {
    request = () =>
      callAdmin(url, token, 'POST', '/admin/api-keys', {
        name: values.name,
        role: values.role,
        ...(values.source ? { sources: values.source } : {}),
        ...(values['event-type'] ? { eventTypes: values['event-type'] } : {}),
        ...(values['expires-at'] ? { expiresAt: values['expires-at'] } : {}),
      });
  } else if (action === 'list') {
    request = () => callAdmin(url, token, 'GET', '/admin/api-keys?limit=1000');
  } else if (action === 'revoke' && id !== undefined) {
    request = () => callAdmin(url, token, 'DELETE', `/admin/api-keys/${encodeURIComponent(id)}`);
  } else {
    throw invalid('command', `usage:\n${USAGE}`);
  }
  const result = await reaching('api-keys', url, request);
  if (!result) return;
  process.stdout.write(`${JSON.stringify(result.body, null, 2)}\n`);
  if (result.status >= 200 && result.status < 300) {
    if (action === 'create' && isJsonObject(result.body)) {
      process.stderr.write('the key is shown this once: keep it now (the platform stores only its hash)\n');
    }
    return;
  }
  process.exitCode = 1;
  process.stderr.write(`webhooks api-keys: HTTP ${result.status}${describeError(result.body)}\n`);
}
