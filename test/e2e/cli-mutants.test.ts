/**
 * The `webhooks` command line's edges that the other CLI tests leave open: the exit codes and
 * messages of its argument checks, the shared configuration (flags, config file, the URL a platform
 * is found at), the data dir and key files it keeps owner-only, the marks that keep a key rotation
 * and a running platform apart, and the key rotation's messages.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../src/common/config.ts';
import { ConfigError } from '../../src/common/errors.ts';
import { SecretBox, type SecretSealer } from '../../src/common/secret-box.ts';
import { configure, platformUrl } from '../../src/runtimes/cli/configure.ts';
import { rotateSecretKey } from '../../src/runtimes/cli/rotate-key.ts';
import { claimDataDir, markDataDirUse, otherDataDirUsers } from '../../src/runtimes/data-dir-users.ts';
import { dynamoOptions } from '../../src/runtimes/engines.ts';
import {
  ensureDataDir,
  loadAdminToken,
  loadPreviousSecretBoxes,
  loadSecretBox,
  removeKeyFile,
  writeKeyFile,
} from '../../src/runtimes/local-secrets.ts';
import { MigratingSealer } from '../../src/runtimes/sealer.ts';
import { CLI, cleanEnv, exitOf, killAll, startCli } from '../support/cli.ts';

const dirs: string[] = [];
after(() => killAll());
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-cli-mutants-'));
  dirs.push(dir);
  return dir;
}
const mode = (path: string) => statSync(path).mode & 0o7777;

/** Runs `webhooks <args>` to its end. */
async function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const code = await exitOf(child);
  return { code, stdout, stderr };
}

describe('webhooks arguments and exit codes', () => {
  test('version prints the version; help, --help and -h print the help', async () => {
    const version = await run(['version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\S*\n$/);
    for (const args of [['help'], ['--help'], ['start', '-h'], ['api-keys', '-h'], []]) {
      const help = await run(args);
      assert.equal(help.code, 0, args.join(' '));
      assert.match(help.stdout, /^webhooks \S+ — partner-webhook delivery platform/, args.join(' '));
    }
  });

  test('an unknown command, a bad --role and a bad api-keys action exit 2 with one message', async () => {
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, '');
    assert.match(unknown.stderr, /^webhooks: unknown command "frobnicate"; run `webhooks help`\n$/);

    const dataDir = await tempDir();
    const role = await run(['start', '--role', 'api,bogus', '--data-dir', dataDir]);
    assert.equal(role.code, 2);
    assert.match(
      role.stderr,
      /--role takes all, or a comma-separated list of api, processor, dispatcher; got "bogus"/,
    );
    assert.doesNotMatch(role.stdout, /listening on/);

    const revoke = await run(['api-keys', 'revoke', '--url', 'http://127.0.0.1:9', '--token', 't']);
    assert.equal(revoke.code, 2);
    assert.match(revoke.stderr, /usage:/);
  });

  test('--role takes a list with spaces after the commas; SIGTERM then stops the start with exit 0', async () => {
    const dataDir = await tempDir();
    const running = await startCli(
      ['start', '--role', 'api, processor, dispatcher', '--port', '0', '--data-dir', dataDir],
      {
        WEBHOOKS_ADMIN_TOKEN: 'cli-mutants-token-0123456789',
      },
    );
    assert.match(
      running.output(),
      /\(role api, processor, dispatcher, bus embedded, store sqlite, data dir /,
    );
    assert.match(running.output(), /admin token: from WEBHOOKS_ADMIN_TOKEN/);
    running.child.kill('SIGTERM');
    assert.equal(await exitOf(running.child), 0);
  });

  test('a SIGTERM that arrives while the platform starts stops it once started, with exit 0', {
    timeout: 120_000,
  }, async () => {
    const dataDir = await tempDir();
    // The platform marks its use of the data dir early in its start, well before it listens.
    const marked = new Promise<void>((resolve) => {
      const watcher = watch(dataDir, (_event, name) => {
        if (name?.startsWith('in-use.') && name.endsWith('.platform')) {
          watcher.close();
          resolve();
        }
      });
    });
    const child = spawn(process.execPath, [CLI, 'start', '--port', '0', '--data-dir', dataDir], {
      env: cleanEnv({ WEBHOOKS_ADMIN_TOKEN: 'cli-mutants-token-0123456789' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    await marked;
    child.kill('SIGTERM');
    assert.equal(await exitOf(child), 0, out);
    assert.match(out, /listening on/);
  });

  test('a configuration error names each field: "invalid configuration", then "  - FIELD: message"', async () => {
    const dataDir = await tempDir();
    const result = await run(['rotate-secret-key', '--data-dir', dataDir], { WEBHOOKS_SECRET_KEY: 'short' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^webhooks: invalid configuration\n/);
    assert.match(result.stderr, /\n {2}- WEBHOOKS_SECRET_KEY: /);
  });
});

describe('configure and platformUrl', () => {
  test('--port, --host and --data-dir override the environment; the config file comes from WEBHOOKS_CONFIG_FILE too', async () => {
    const dir = await tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ port: 9123 }));
    const env = { WEBHOOKS_PORT: '8000', WEBHOOKS_HOST: '10.0.0.1', WEBHOOKS_DATA_DIR: '/nowhere' };
    const flags = configure({ port: '8111', host: '127.0.0.2', 'data-dir': dir }, env);
    assert.equal(flags.port, 8111);
    assert.equal(flags.host, '127.0.0.2');
    assert.equal(flags.dataDir, dir);
    assert.equal(configure({}, { WEBHOOKS_CONFIG_FILE: file }).port, 9123);
    assert.throws(() => configure({ config: join(dir, 'missing.json') }, {}), /cannot read the config file/);
  });

  test('a platform listening on every address is reached on 127.0.0.1', () => {
    for (const host of ['0.0.0.0', '::']) {
      const url = platformUrl(loadConfig({ WEBHOOKS_HOST: host, WEBHOOKS_PORT: '8081' }));
      assert.equal(url, 'http://127.0.0.1:8081', host);
    }
    assert.equal(
      platformUrl(loadConfig({ WEBHOOKS_HOST: '127.0.0.5', WEBHOOKS_PORT: '8082' })),
      'http://127.0.0.5:8082',
    );
  });
});

describe('the data dir and its key files', () => {
  test('a dir only the group may write to is made owner-only, not refused; sub-directories are left alone', async () => {
    const dir = await tempDir();
    chmodSync(dir, 0o770);
    writeFileSync(join(dir, 'store.db'), '', { mode: 0o604 });
    chmodSync(join(dir, 'store.db'), 0o604);
    mkdirSync(join(dir, 'backups'), { mode: 0o755 });
    chmodSync(join(dir, 'backups'), 0o755);
    ensureDataDir(dir);
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(join(dir, 'store.db')), 0o600);
    assert.equal(mode(join(dir, 'backups')), 0o755);
    chmodSync(dir, 0o705);
    ensureDataDir(dir);
    assert.equal(mode(dir), 0o700);
  });

  test('files created after the start are born owner-only (umask 077)', async () => {
    const dir = await tempDir();
    const before = process.umask();
    try {
      ensureDataDir(join(dir, 'data'));
      writeFileSync(join(dir, 'data', 'later.db'), '');
      assert.equal(mode(join(dir, 'data', 'later.db')), 0o600);
    } finally {
      process.umask(before);
    }
  });

  test('generated key and admin token files are 0600 under any umask, trimmed when read back, and kept', async () => {
    const dir = await tempDir();
    const before = process.umask(0o000);
    try {
      const first = loadSecretBox(dir, undefined);
      assert.equal(first.secret.source, 'generated');
      assert.equal(mode(join(dir, 'secret.key')), 0o600);
      const token = loadAdminToken(dir, undefined);
      assert.equal(token.path, join(dir, 'admin-token'));
      assert.equal(mode(join(dir, 'admin-token')), 0o600);
      const again = loadSecretBox(dir, undefined);
      assert.equal(again.secret.source, 'file');
      assert.equal(again.secret.value, first.secret.value);
      assert.equal(again.box.keyId, first.box.keyId);
      assert.equal(loadAdminToken(dir, undefined).value, token.value);
    } finally {
      process.umask(before);
    }
    const key = SecretBox.generateKey();
    const fromEnv = loadSecretBox(dir, key);
    assert.equal(fromEnv.secret.source, 'environment');
    assert.equal(fromEnv.box.keyId, SecretBox.fromString(key).keyId);
    assert.equal(loadAdminToken(dir, 'env-token').source, 'environment');
  });

  test('a bad key names where it came from: the file, WEBHOOKS_SECRET_KEY_PREVIOUS, or its place in the list', async () => {
    const dir = await tempDir();
    writeFileSync(join(dir, 'secret.key'), 'not-a-key\n');
    assert.throws(
      () => loadSecretBox(dir, undefined),
      (err: unknown) => {
        return err instanceof ConfigError && err.message.startsWith(`${join(dir, 'secret.key')} must hold`);
      },
    );
    const good = SecretBox.generateKey();
    assert.throws(
      () => loadPreviousSecretBoxes(dir, ['bad']),
      (err: unknown) =>
        err instanceof ConfigError && err.message.startsWith('WEBHOOKS_SECRET_KEY_PREVIOUS must hold'),
    );
    assert.throws(
      () => loadPreviousSecretBoxes(dir, [good, 'bad']),
      (err: unknown) =>
        err instanceof ConfigError && err.message.startsWith('WEBHOOKS_SECRET_KEY_PREVIOUS[1] must hold'),
    );
  });

  test('writeKeyFile replaces a key file owner-only, leaving no temp file; removeKeyFile removes it', async () => {
    const dir = await tempDir();
    const path = join(dir, 'secret.key.previous');
    const before = process.umask(0o000);
    try {
      writeKeyFile(path, 'one');
      writeKeyFile(path, 'two');
    } finally {
      process.umask(before);
    }
    assert.equal(readFileSync(path, 'utf8'), 'two\n');
    assert.equal(mode(path), 0o600);
    assert.deepEqual(readdirSync(dir), ['secret.key.previous']);
    removeKeyFile(path);
    assert.equal(existsSync(path), false);
  });
});

describe('marks of use of the data dir', () => {
  test('a rotation and a platform refuse each other; marks of the same kind, this process and dead ones do not count', async () => {
    const dir = await tempDir();
    const platform = markDataDirUse(dir, 'platform');
    // Another platform in this process does not block this process's rotation check for platforms…
    assert.deepEqual(otherDataDirUsers(dir, 'platform'), []);
    // …a live other process does (the parent of this test process stands in for it).
    writeFileSync(join(dir, `in-use.${process.ppid}.1.platform`), 'host\n');
    assert.deepEqual(otherDataDirUsers(dir, 'rotation'), []);
    assert.throws(() => claimDataDir(dir, 'rotation'), /the platform is running on .* \(process \d+\)/);
    assert.equal(
      readdirSync(dir).some((n) => n.endsWith('.rotation')),
      false,
      'a refused claim takes its mark away',
    );
    // A crashed process's mark is stale: removed when found, and the claim goes ahead.
    const dead = spawn(process.execPath, ['-e', '0']);
    await exitOf(dead);
    rmSync(join(dir, `in-use.${process.ppid}.1.platform`));
    writeFileSync(join(dir, `in-use.${dead.pid}.1.platform`), 'host\n');
    const unmark = claimDataDir(dir, 'rotation');
    assert.equal(existsSync(join(dir, `in-use.${dead.pid}.1.platform`)), false);
    unmark();
    unmark();
    platform();
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a mark is taken away when the process exits without closing', async () => {
    const dir = await tempDir();
    const script = `import { markDataDirUse } from ${JSON.stringify(join(import.meta.dirname, '../../src/runtimes/data-dir-users.ts'))};
markDataDirUse(${JSON.stringify(dir)}, 'platform'); process.exit(0);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    assert.equal(await exitOf(child), 0);
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe('rotate-secret-key', () => {
  test('with the key in the environment, a bad previous key is said at once, and keys already listed are kept', async () => {
    const dir = await tempDir();
    const config = (env: Record<string, string>) =>
      loadConfig({ WEBHOOKS_DATA_DIR: dir, WEBHOOKS_SECRET_KEY: SecretBox.generateKey(), ...env });
    const out: string[] = [];
    await rotateSecretKey(config({ WEBHOOKS_SECRET_KEY_PREVIOUS: SecretBox.generateKey() }), (l) =>
      out.push(l),
    );
    assert.match(out.join('\n'), /, after the keys already listed there/);
    assert.equal(existsSync(join(dir, 'secret.key')), false, 'no key file made');
  });

  test('a store other than sqlite is refused; an empty store rotates with "0 subscriptions re-sealed"', async () => {
    const dir = await tempDir();
    await assert.rejects(
      rotateSecretKey(loadConfig({ WEBHOOKS_DATA_DIR: dir, WEBHOOKS_STORE: 'dynamodb' }), () => {}),
      /rotates the key file of the sqlite store only/,
    );
    loadSecretBox(dir, undefined);
    const out: string[] = [];
    await rotateSecretKey(loadConfig({ WEBHOOKS_DATA_DIR: dir, WEBHOOKS_LOG_LEVEL: 'error' }), (l) =>
      out.push(l),
    );
    assert.match(out.join('\n'), /; 0 subscriptions re-sealed;/);
  });
});

describe('the sealer and the engines from the configuration', () => {
  test('MigratingSealer seals with the primary and opens each value with the sealer of its kind', async () => {
    const local = SecretBox.fromString(SecretBox.generateKey());
    const calls: string[] = [];
    const kms: SecretSealer = {
      kind: 'kms',
      keyId: 'kms-key',
      seal: (p) => {
        calls.push(`seal ${p}`);
        return `kms:v1:${p}`;
      },
      open: (s) => {
        calls.push(`open ${s}`);
        return s.replace('kms:v1:', '');
      },
    } as SecretSealer;
    const sealer = new MigratingSealer(kms, [local]);
    assert.equal(sealer.kind, 'kms');
    assert.equal(sealer.keyId, 'kms-key');
    const old = local.seal('old secret', 'ad');
    assert.equal(await sealer.open(old, 'ad'), 'old secret');
    assert.deepEqual(calls, []);
    assert.equal(await sealer.seal('new secret', 'ad'), 'kms:v1:new secret');
    assert.equal(await sealer.open('kms:v1:new secret', 'ad'), 'new secret');
    assert.deepEqual(calls, ['seal new secret', 'open kms:v1:new secret']);
  });

  test('the DynamoDB options carry the retention as TTL, the endpoint and whether to create tables', () => {
    const config = loadConfig({
      WEBHOOKS_STORE: 'dynamodb',
      WEBHOOKS_DYNAMODB_ENDPOINT: 'http://127.0.0.1:8000',
      WEBHOOKS_HISTORY_RETENTION_DAYS: '30',
    });
    const options = dynamoOptions(config);
    assert.equal(options.historyTtlDays, 30);
    assert.equal(options.endpoint, 'http://127.0.0.1:8000');
    assert.equal(options.createTables, false);
    assert.equal('endpoint' in dynamoOptions(loadConfig({ WEBHOOKS_STORE: 'dynamodb' })), false);
  });
});
