/**
 * AppConfig settings (per-partner delivery overrides, flags) through Powertools Parameters and the
 * AWS SDK, against a loopback fake of the two AppConfigData operations the SDK calls: moto has no
 * AppConfig data plane, and AppConfig itself cannot run here.
 *
 * - `StartConfigurationSession` (POST /configurationsessions) → 201 `{ InitialConfigurationToken }`;
 * - `GetLatestConfiguration` (GET /configuration?configuration_token=…) → 200 with the document, or
 *   an empty body when the session has seen the current version, and `Next-Poll-Configuration-Token`
 *   (each token is good for one call, as AppConfig's).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { loadConfig } from '../../src/common/config.ts';
import { Logger } from '../../src/common/log.ts';
import type { PartnerRecord } from '../../src/common/model.ts';
import type { PartnerDirectory } from '../../src/common/ports/partner-directory.ts';
import {
  AppConfigSettings,
  appConfigSettings,
  parseSettingsDocument,
} from '../../src/engines/aws/appconfig.ts';
import { PartnerOverridesDirectory } from '../../src/engines/aws/partner-overrides.ts';
import { buildPlatform } from '../../src/runtimes/platform.ts';
import { waitFor } from '../support/wait.ts';

const APP = { application: 'webhooks', environment: 'test', profile: 'delivery-settings' };

/** The fake AppConfigData: one profile's document, versioned; requests counted per operation. */
class FakeAppConfigData {
  readonly server: Server;
  endpoint = '';
  document = '{}';
  /** Answer 500 InternalServerException to everything. */
  down = false;
  readonly counts = { StartConfigurationSession: 0, GetLatestConfiguration: 0 };
  #version = 1;
  /** token → the version the session last received (0: none yet). */
  readonly #tokens = new Map<string, number>();

  constructor() {
    this.server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        res.writeHead(500).end(String(err));
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Deploys a new document (a new version). */
  deploy(document: unknown): void {
    this.document = typeof document === 'string' ? document : JSON.stringify(document);
    this.#version += 1;
  }

  reset(): void {
    this.down = false;
    this.counts.StartConfigurationSession = 0;
    this.counts.GetLatestConfiguration = 0;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake');
    const operation =
      url.pathname === '/configuration' ? 'GetLatestConfiguration' : 'StartConfigurationSession';
    this.counts[operation]++;
    if (this.down) return error(res, 500, 'InternalServerException', 'AppConfig is having a bad day');
    if (req.method === 'POST' && url.pathname === '/configurationsessions') {
      const input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, string>;
      if (
        input.ApplicationIdentifier !== APP.application ||
        input.EnvironmentIdentifier !== APP.environment ||
        input.ConfigurationProfileIdentifier !== APP.profile
      ) {
        return error(res, 404, 'ResourceNotFoundException', 'no such application, environment or profile');
      }
      const token = randomUUID();
      this.#tokens.set(token, 0);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ InitialConfigurationToken: token }));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/configuration') {
      const token = url.searchParams.get('configuration_token') ?? '';
      const seen = this.#tokens.get(token);
      if (seen === undefined) return error(res, 400, 'BadRequestException', 'the token is not valid');
      this.#tokens.delete(token);
      const next = randomUUID();
      this.#tokens.set(next, this.#version);
      const body = seen === this.#version ? Buffer.alloc(0) : Buffer.from(this.document, 'utf8');
      res.writeHead(200, {
        'content-type': 'application/json',
        'next-poll-configuration-token': next,
        'next-poll-interval-in-seconds': '60',
        'version-label': String(this.#version),
        'content-length': String(body.length),
      });
      res.end(body);
      return;
    }
    return error(res, 404, 'UnknownOperationException', `${req.method} ${url.pathname}`);
  }
}

function error(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type });
  res.end(JSON.stringify({ Message: message }));
}

/** A logger whose lines are kept. */
function capture(): { logger: Logger; lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const logger = new Logger({
    level: 'info',
    sink: {
      write: (line) => {
        const entry = JSON.parse(line) as { level: string; msg?: string; message?: string };
        lines.push({ level: entry.level, msg: entry.msg ?? entry.message ?? '' });
      },
    },
  });
  return { logger, lines };
}

const ACME: PartnerRecord = {
  id: 'acme',
  name: 'Acme',
  status: 'ACTIVE',
  metadata: {},
  delivery: {
    timeouts: { connectMs: 1000, headersMs: 9000 },
    retry: { maxAttempts: 3, scheduleSeconds: [1, 2] },
    maxConcurrency: 2,
  },
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  revision: 1,
};
const GLOBEX: PartnerRecord = { ...ACME, id: 'globex', name: 'Globex', delivery: { maxConcurrency: 7 } };

/** The built-in directory, as far as the decorator sees it. */
const records: PartnerDirectory = {
  kind: 'builtin',
  getPartner: async (id) => [ACME, GLOBEX].find((p) => p.id === id),
  listPartners: async () => ({ items: [ACME, GLOBEX] }),
};

const OVERRIDES = {
  partners: {
    acme: {
      timeouts: { connectMs: 2000, bodyMs: 10000 },
      retry: { maxAttempts: 8, maxAgeSeconds: 86400 },
      rateLimitPerSecond: 50,
    },
  },
  flags: { ledger: false },
};

describe('AppConfig settings', { timeout: 60_000 }, () => {
  const fake = new FakeAppConfigData();
  const settings = (logger: Logger, maxAgeSeconds = 60, endpoint = fake.endpoint) =>
    new AppConfigSettings({
      ...APP,
      maxAgeSeconds,
      endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      logger,
    });

  before(() => fake.start());
  after(() => fake.stop());
  beforeEach(() => {
    fake.reset();
    fake.deploy(OVERRIDES);
  });

  it('a platform takes its feature flags (the ledger) from AppConfig, and the environment’s when AppConfig is down', async () => {
    const env = (dir: string) => ({
      WEBHOOKS_DATA_DIR: dir,
      WEBHOOKS_LOG_LEVEL: 'error',
      WEBHOOKS_LEDGER: '1',
      WEBHOOKS_APPCONFIG_APPLICATION: APP.application,
      WEBHOOKS_APPCONFIG_ENVIRONMENT: APP.environment,
      WEBHOOKS_APPCONFIG_PROFILE: APP.profile,
      WEBHOOKS_APPCONFIG_ENDPOINT: fake.endpoint,
    });
    fake.deploy({ ...OVERRIDES, flags: { ledger: false } });
    const flagged = await buildPlatform(
      loadConfig(env(await mkdtemp(join(tmpdir(), 'webhooks-appconfig-')))),
      {
        roles: ['api'],
        logger: capture().logger,
      },
    );
    try {
      assert.equal(flagged.config.ledger, false, 'AppConfig turned the ledger off');
    } finally {
      await flagged.close();
    }
    fake.down = true;
    const fallback = await buildPlatform(
      loadConfig(env(await mkdtemp(join(tmpdir(), 'webhooks-appconfig-')))),
      {
        roles: ['api'],
        logger: capture().logger,
      },
    );
    try {
      assert.equal(fallback.config.ledger, true, 'AppConfig down: WEBHOOKS_LEDGER stands');
    } finally {
      await fallback.close();
    }
  });

  it('merges a partner’s overrides over its record: AppConfig wins, the rest comes from the record', async () => {
    const directory = new PartnerOverridesDirectory(records, settings(capture().logger));
    assert.equal(directory.kind, 'builtin');
    const acme = await directory.getPartner('acme');
    assert.deepEqual(acme?.delivery, {
      timeouts: { connectMs: 2000, headersMs: 9000, bodyMs: 10000 },
      retry: { maxAttempts: 8, scheduleSeconds: [1, 2], maxAgeSeconds: 86400 },
      maxConcurrency: 2,
      rateLimitPerSecond: 50,
    });
    assert.deepEqual({ ...acme, delivery: ACME.delivery }, ACME, 'nothing else changes');
    assert.deepEqual(
      ACME.delivery.timeouts,
      { connectMs: 1000, headersMs: 9000 },
      'the record is not changed',
    );
    assert.equal(await directory.getPartner('globex'), GLOBEX, 'a partner without overrides as it is');
    assert.equal(await directory.getPartner('nobody'), undefined);
    const listed = await directory.listPartners();
    assert.deepEqual(
      listed.items.map((p) => p.delivery),
      [acme?.delivery, GLOBEX.delivery],
    );
  });

  it('fetches once per maxAge: many lookups, one GetLatestConfiguration; a new document after maxAge', async () => {
    const source = settings(capture().logger, 1);
    const directory = new PartnerOverridesDirectory(records, source);
    const looked = await Promise.all(Array.from({ length: 50 }, () => directory.getPartner('acme')));
    for (let i = 0; i < 50; i++) looked.push(await directory.getPartner('acme'));
    assert.ok(looked.every((p) => p?.delivery.rateLimitPerSecond === 50));
    assert.equal(fake.counts.StartConfigurationSession, 1);
    assert.equal(fake.counts.GetLatestConfiguration, 1, '100 lookups within maxAge, 1 fetch');

    fake.deploy({ partners: { acme: { rateLimitPerSecond: 5 } } });
    assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 50, 'within maxAge');
    const changed = await waitFor('the new document after maxAge', async () => {
      const acme = await directory.getPartner('acme');
      return acme?.delivery.rateLimitPerSecond === 5 && acme;
    });
    assert.deepEqual(changed.delivery, { ...ACME.delivery, rateLimitPerSecond: 5 });
    assert.equal(fake.counts.GetLatestConfiguration, 2);
    assert.equal(fake.counts.StartConfigurationSession, 1, 'the session goes on with its next token');

    // Unchanged (an empty body): the document stays, still one fetch per maxAge.
    await waitFor('another fetch', async () => {
      await source.document();
      return fake.counts.GetLatestConfiguration === 3;
    });
    await source.settled();
    assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 5);
  });

  it('AppConfig down: the last good document is kept, lookups never throw, one warning per failure streak', async () => {
    const { logger, lines } = capture();
    const source = settings(logger, 1);
    const directory = new PartnerOverridesDirectory(records, source);
    assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 50);
    fake.down = true;
    const before = fake.counts.GetLatestConfiguration;
    // Through at least two failed fetches (one per maxAge), lookups go on with the last good document.
    await waitFor('two failed fetches', async () => {
      assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 50);
      assert.equal(await source.flag('ledger', true), false);
      return fake.counts.GetLatestConfiguration >= before + 4; // the SDK tries each fetch twice
    });
    await source.settled();
    const warnings = lines.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1, 'one warning for the whole streak');
    assert.match(warnings[0]!.msg, /AppConfig settings cannot be read: the last good document is used/);
    assert.ok(fake.counts.GetLatestConfiguration <= before + 8, 'no fetch between maxAges');

    fake.down = false;
    fake.deploy({ partners: { acme: { rateLimitPerSecond: 9 } } });
    await waitFor(
      'recovery',
      async () => (await directory.getPartner('acme'))?.delivery.rateLimitPerSecond === 9,
    );
    assert.ok(lines.some((l) => l.level === 'info' && /can be read again/.test(l.msg)));
  });

  it('unreachable from the start: the empty document, partner records unchanged', async () => {
    const { logger, lines } = capture();
    const unreachable = new FakeAppConfigData();
    await unreachable.start();
    const endpoint = unreachable.endpoint;
    await unreachable.stop(); // nothing listens there any more
    const source = settings(logger, 60, endpoint);
    const directory = new PartnerOverridesDirectory(records, source);
    assert.equal(await directory.getPartner('acme'), ACME);
    assert.equal(await source.flag('ledger', true), true);
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
  });

  it('an invalid document is refused, naming the field, once; the last good one is kept', async () => {
    const { logger, lines } = capture();
    const source = settings(logger, 1);
    const directory = new PartnerOverridesDirectory(records, source);
    assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 50);
    fake.deploy({ partners: { acme: { timeouts: { connectMs: 0 } } } });
    // Fetches happen on lookups: look up until the next fetch has read the new document.
    const refused = await waitFor('the refusal', async () => {
      await directory.getPartner('acme');
      return lines.find((l) => l.level === 'error');
    });
    assert.match(
      refused.msg,
      /AppConfig settings document refused: partners\.acme\.timeouts\.connectMs must be an integer number of milliseconds from 1 to 120000; the last good document is kept/,
    );
    assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 50);
    // Fetched again (unchanged, an empty body): not said again.
    const fetched = fake.counts.GetLatestConfiguration;
    await waitFor('another fetch', async () => {
      await source.document();
      return fake.counts.GetLatestConfiguration > fetched;
    });
    await source.settled();
    assert.equal(lines.filter((l) => l.level === 'error').length, 1);

    fake.deploy('{"partners": ');
    await waitFor('the refusal of non-JSON', async () => {
      await directory.getPartner('acme');
      return lines.filter((l) => l.level === 'error').length === 2;
    });
    assert.match(lines.at(-1)!.msg, /refused: \(document\) is not JSON/);
    assert.equal((await directory.getPartner('acme'))?.delivery.rateLimitPerSecond, 50);
  });

  it('not configured: the empty document, no call to AppConfig, partner records unchanged', async () => {
    const source = appConfigSettings(loadConfig({}).appConfig, capture().logger);
    assert.equal(source.configured, false);
    const directory = new PartnerOverridesDirectory(records, source);
    assert.equal(await directory.getPartner('acme'), ACME);
    assert.equal(await source.flag('ledger', true), true);
    assert.equal(await source.flag('ledger', false), false);
    assert.equal(fake.counts.StartConfigurationSession + fake.counts.GetLatestConfiguration, 0);
  });

  it('flags are read, with the environment’s value as the fallback', async () => {
    fake.deploy({ flags: { ledger: true, newRetryMath: false } });
    const source = settings(capture().logger);
    assert.equal(await source.flag('ledger', false), true);
    assert.equal(await source.flag('newRetryMath', true), false);
    assert.equal(await source.flag('unknown', true), true);
  });

  it('flagNow answers at once from the last document, and sees a new deployment once it is stale', async () => {
    fake.deploy({ flags: { ledger: false } });
    const source = settings(capture().logger, 1);
    assert.equal(await source.flag('ledger', true), false);
    fake.deploy({ flags: { ledger: true } });
    assert.equal(source.flagNow('ledger', false), false, 'the last document, without waiting');
    // Checked as a dispatcher checks it, at every batch: a check after the max age starts the fetch.
    await waitFor('the new deployment', () => source.flagNow('ledger', false));
  });

  it('the configuration: all three names or none, a default max age, an endpoint', () => {
    const config = loadConfig({
      WEBHOOKS_APPCONFIG_APPLICATION: 'webhooks',
      WEBHOOKS_APPCONFIG_ENVIRONMENT: 'prod',
      WEBHOOKS_APPCONFIG_PROFILE: 'delivery',
      WEBHOOKS_APPCONFIG_ENDPOINT: 'http://127.0.0.1:9999/',
      AWS_REGION: 'eu-west-1',
    });
    assert.deepEqual(config.appConfig, {
      application: 'webhooks',
      environment: 'prod',
      profile: 'delivery',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:9999',
      maxAgeSeconds: 60,
    });
    assert.equal(
      loadConfig({ ...APP_ENV, WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS: '15' }).appConfig?.maxAgeSeconds,
      15,
    );
    assert.throws(
      () => loadConfig({ WEBHOOKS_APPCONFIG_APPLICATION: 'webhooks' }),
      /go together: WEBHOOKS_APPCONFIG_ENVIRONMENT, WEBHOOKS_APPCONFIG_PROFILE missing/,
    );
    assert.throws(
      () => loadConfig({ ...APP_ENV, WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS: '0' }),
      /WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS must be between 1 and 86400/,
    );
  });

  it('document validation names every bad field', () => {
    const { problems } = parseSettingsDocument({
      partners: {
        acme: { retry: { maxAttempts: 0, scheduleSeconds: 'soon' }, color: 'red' },
        'bad id!': {},
        globex: 'fast',
      },
      flags: { ledger: 'yes' },
      extra: 1,
    });
    assert.deepEqual(problems.map((p) => p.field).sort(), [
      'extra',
      'flags.ledger',
      'partners.acme.color',
      'partners.acme.retry.maxAttempts',
      'partners.acme.retry.scheduleSeconds',
      'partners.bad id!',
      'partners.globex',
    ]);
    assert.deepEqual(
      parseSettingsDocument([]).problems.map((p) => p.field),
      ['(document)'],
    );
    const { document } = parseSettingsDocument({});
    assert.equal(document?.partners.size, 0);
  });
});

const APP_ENV = {
  WEBHOOKS_APPCONFIG_APPLICATION: 'webhooks',
  WEBHOOKS_APPCONFIG_ENVIRONMENT: 'prod',
  WEBHOOKS_APPCONFIG_PROFILE: 'delivery',
};
