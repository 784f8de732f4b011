/**
 * Secrets the standalone runtime keeps in its data dir when the environment does not provide them:
 * the at-rest encryption key (`secret.key`) and the admin token (`admin-token`), both mode 0600.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateAdminToken } from '../common/auth.ts';
import { ConfigError } from '../common/errors.ts';
import { SecretBox } from '../common/secret-box.ts';

/** A value from the environment, or from a file in the data dir, or generated into that file. */
export interface LocalSecret {
  value: string;
  source: 'environment' | 'file' | 'generated';
  path?: string;
}

/** Creates the data dir (owner-only) if needed. */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
}

function fileSecret(path: string, generate: () => string): LocalSecret {
  if (existsSync(path)) return { value: readFileSync(path, 'utf8').trim(), source: 'file', path };
  const value = generate();
  // 'wx': never overwrite a file another process created meanwhile.
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return { value, source: 'generated', path };
}

/** The at-rest encryption key: WEBHOOKS_SECRET_KEY, else `<dataDir>/secret.key` (generated on first start). */
export function loadSecretBox(
  dataDir: string,
  fromEnv: string | undefined,
): { box: SecretBox; secret: LocalSecret } {
  const secret = fromEnv
    ? { value: fromEnv, source: 'environment' as const }
    : fileSecret(join(dataDir, 'secret.key'), SecretBox.generateKey);
  try {
    return { box: SecretBox.fromString(secret.value), secret };
  } catch (err) {
    const where = secret.source === 'environment' ? 'WEBHOOKS_SECRET_KEY' : secret.path!;
    throw new ConfigError(`${where} must hold a 32-byte key as base64 (44 chars) or hex (64 chars)`, {
      details: [{ field: where, message: 'not a 32-byte key' }],
      cause: err,
    });
  }
}

/** The admin token: WEBHOOKS_ADMIN_TOKEN, else `<dataDir>/admin-token` (generated on first start). */
export function loadAdminToken(dataDir: string, fromEnv: string | undefined): LocalSecret {
  return fromEnv
    ? { value: fromEnv, source: 'environment' }
    : fileSecret(join(dataDir, 'admin-token'), generateAdminToken);
}
