/**
 * `webhooks rotate-secret-key`: moves the at-rest encryption key to a new one. With the key in
 * `<dataDir>/secret.key`, the command does the whole rotation on the store of a stopped platform;
 * with the key in the environment it cannot change it, so it makes a new key and says how to roll it
 * out (the next start re-seals the store).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../common/config.ts';
import { ConfigError } from '../../common/errors.ts';
import { Logger } from '../../common/log.ts';
import { SecretBox } from '../../common/secret-box.ts';
import { SqliteStore } from '../../engines/sqlite/store.ts';
import { prepareSecretKeys } from '../../subscriptions/key-rotation.ts';
import { claimDataDir } from '../data-dir-users.ts';
import {
  loadPreviousSecretBoxes,
  loadSecretBox,
  PREVIOUS_SECRET_KEY_FILE,
  removeKeyFile,
  SECRET_KEY_FILE,
  writeKeyFile,
} from '../local-secrets.ts';

type Out = (line: string) => void;
const stdout: Out = (line) => process.stdout.write(`${line}\n`);

/** Rotates the secret key of this configuration; `out` receives the lines for the operator. */
export async function rotateSecretKey(config: Config, out: Out = stdout): Promise<void> {
  if (config.secretKey !== undefined) return explainEnvironmentRotation(config, out);
  return rotateKeyFile(config, out);
}

/** The key is the operator's to change: a new key, and the steps that roll it out. */
function explainEnvironmentRotation(config: Config, out: Out): void {
  const { box: current } = loadSecretBox(config.dataDir, config.secretKey);
  loadPreviousSecretBoxes(config.dataDir, config.secretKeysPrevious); // a bad previous key is said now
  const fresh = SecretBox.generateKey();
  const next = SecretBox.fromString(fresh);
  const keep = config.secretKeysPrevious.length > 0 ? ', after the keys already listed there' : '';
  out(`new secret key (fingerprint ${next.keyId}): ${fresh}`);
  out(
    `The current key (fingerprint ${current.keyId}) comes from WEBHOOKS_SECRET_KEY (or secretKey in the config file), so nothing was changed. To rotate:`,
  );
  out(`  1. set WEBHOOKS_SECRET_KEY=${fresh}`);
  out(
    `  2. set WEBHOOKS_SECRET_KEY_PREVIOUS to the current WEBHOOKS_SECRET_KEY (fingerprint ${current.keyId})${keep}`,
  );
  out(
    `  3. restart every process of the platform: at start, the secrets sealed under key ${current.keyId} are re-sealed under key ${next.keyId}`,
  );
  out('  4. then remove WEBHOOKS_SECRET_KEY_PREVIOUS');
}

/**
 * The whole rotation in the data dir. Order matters for a crash at any point: the new key is on disk
 * before anything is sealed under it, and the old key stays in `secret.key.previous` until every
 * value has moved (a start reads that file as a previous key, and finishes the re-seal).
 */
async function rotateKeyFile(config: Config, out: Out): Promise<void> {
  if (config.store !== 'sqlite') {
    throw new ConfigError('rotate-secret-key rotates the key file of the sqlite store only', {
      details: [{ field: 'WEBHOOKS_STORE', message: 'set WEBHOOKS_SECRET_KEY instead' }],
    });
  }
  const keyPath = join(config.dataDir, SECRET_KEY_FILE);
  const previousPath = join(config.dataDir, PREVIOUS_SECRET_KEY_FILE);
  // Without this check a mistyped --data-dir would get a fresh key and an empty store.
  if (!existsSync(keyPath)) {
    const message = `there is no ${keyPath}: nothing to rotate (the key is made at the first start)`;
    throw new ConfigError(message, { details: [{ field: '--data-dir', message }] });
  }
  // Not under a running platform: it would keep the old key (see data-dir-users.ts).
  const unmark = claimDataDir(config.dataDir, 'rotation');
  const { box: current, secret } = loadSecretBox(config.dataDir, undefined);
  const previous = loadPreviousSecretBoxes(config.dataDir, config.secretKeysPrevious);
  const logger = new Logger({ level: config.logLevel, bindings: { service: 'webhooks' } });
  const store = new SqliteStore(join(config.dataDir, 'store.db'));
  try {
    // First everything under the current key: an earlier rotation cut short is finished, and a key
    // that cannot open the store stops the command before anything changes.
    await prepareSecretKeys({ store, box: current, previous, logger });
    const fresh = SecretBox.generateKey();
    const next = SecretBox.fromString(fresh);
    writeKeyFile(previousPath, secret.value);
    writeKeyFile(keyPath, fresh);
    const resealed = await prepareSecretKeys({ store, box: next, previous: [current], logger });
    removeKeyFile(previousPath);
    out(
      `secret key rotated: fingerprint ${current.keyId} → ${next.keyId}; ${resealed} subscription${resealed === 1 ? '' : 's'} re-sealed; the new key is in ${keyPath}`,
    );
  } finally {
    await store.close();
    unmark();
  }
}
