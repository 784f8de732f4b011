/**
 * Secrets the standalone runtime keeps in its data dir when the environment does not provide them:
 * the at-rest encryption key (`secret.key`) and the admin token (`admin-token`), both mode 0600.
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { generateAdminToken } from '../common/auth.ts';
import { ConfigError } from '../common/errors.ts';
import { SecretBox } from '../common/secret-box.ts';

/** The key file in the data dir, and the one an interrupted `webhooks rotate-secret-key` leaves next to it. */
export const SECRET_KEY_FILE = 'secret.key';
export const PREVIOUS_SECRET_KEY_FILE = 'secret.key.previous';

/** A value from the environment, or from a file in the data dir, or generated into that file. */
export interface LocalSecret {
  value: string;
  source: 'environment' | 'file' | 'generated';
  path?: string;
}

/**
 * Creates the data dir if needed and makes it owner-only, at every start: the group's and others'
 * permissions taken from the dir and from each file in it (whatever created them; the owner's stay,
 * an executable stays executable for its owner), and this process's umask 077 so the files it
 * creates next (databases, their WAL and shared-memory files) are born owner-only too. A dir anyone
 * may write to (`/tmp`) is refused: anyone could plant a key file there, and making it owner-only
 * would take it away from everyone else.
 */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // A worker thread may not change the umask; its host did, for the whole process.
  if (isMainThread) process.umask(0o077);
  const mode = statSync(dataDir).mode;
  if ((mode & 0o002) !== 0) {
    const message = `${dataDir} is writable by everyone (mode ${(mode & 0o7777).toString(8)}): give the platform a directory of its own`;
    throw new ConfigError(message, { details: [{ field: 'dataDir', message }] });
  }
  if ((mode & 0o077) !== 0) chmodSync(dataDir, mode & 0o7700);
  for (const entry of readdirSync(dataDir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(dataDir, entry.name);
    const fileMode = statSync(path).mode;
    if ((fileMode & 0o077) !== 0) chmodSync(path, fileMode & 0o7700);
  }
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
    : fileSecret(join(dataDir, SECRET_KEY_FILE), SecretBox.generateKey);
  return {
    box: parseKey(secret.value, secret.source === 'environment' ? 'WEBHOOKS_SECRET_KEY' : secret.path!),
    secret,
  };
}

/**
 * The keys of WEBHOOKS_SECRET_KEY_PREVIOUS, plus `<dataDir>/secret.key.previous` when an
 * interrupted `webhooks rotate-secret-key` left it (so the next start finishes the re-seal).
 */
export function loadPreviousSecretBoxes(dataDir: string, fromConfig: readonly string[]): SecretBox[] {
  const boxes = fromConfig.map((value, i) =>
    parseKey(
      value,
      fromConfig.length === 1 ? 'WEBHOOKS_SECRET_KEY_PREVIOUS' : `WEBHOOKS_SECRET_KEY_PREVIOUS[${i}]`,
    ),
  );
  const path = join(dataDir, PREVIOUS_SECRET_KEY_FILE);
  if (existsSync(path)) boxes.push(parseKey(readFileSync(path, 'utf8').trim(), path));
  return boxes;
}

/**
 * Replaces a key file owner-only and atomically (temp file, fsync, rename, fsync of the dir): after
 * a crash the file holds the old key or the new one, never a part of one.
 */
export function writeKeyFile(path: string, value: string): void {
  const temp = `${path}.tmp-${process.pid}`;
  rmSync(temp, { force: true });
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, `${value}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
  syncDir(dirname(path));
}

/** Removes a key file, durably (the removal survives a crash right after). */
export function removeKeyFile(path: string): void {
  rmSync(path, { force: true });
  syncDir(dirname(path));
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Not every platform can fsync a directory; the rename itself is atomic all the same.
  }
}

/** A box from a key; a ConfigError naming where the key came from, never echoing it, otherwise. */
function parseKey(value: string, where: string): SecretBox {
  try {
    return SecretBox.fromString(value);
  } catch (err) {
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
