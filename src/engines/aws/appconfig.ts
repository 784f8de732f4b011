/**
 * Settings read from an AWS AppConfig freeform JSON profile (through Powertools Parameters'
 * AppConfigProvider): per-partner delivery overrides and feature flags.
 *
 * Document (validated; the partner settings as `POST /admin/partners` takes them under `delivery`):
 *
 *     { "partners": { "<partnerId>": { "timeouts": { "connectMs": 2000, "headersMs": 5000, "bodyMs": 10000 },
 *                                      "retry": { "maxAttempts": 8, "maxAgeSeconds": 86400, "scheduleSeconds": [5, 30] },
 *                                      "maxConcurrency": 4, "rateLimitPerSecond": 50 } },
 *       "flags": { "ledger": true } }
 *
 * AppConfig is never what fails a delivery:
 * - not configured (WEBHOOKS_APPCONFIG_APPLICATION / _ENVIRONMENT / _PROFILE unset): the empty
 *   document, so partner records are used as they are and flags fall back to their defaults;
 * - the document is fetched at most once per `maxAgeSeconds` (Powertools caches it that long, and
 *   concurrent lookups share one fetch); only the very first fetch is waited for, afterwards lookups
 *   get the last good document at once while a fetch runs;
 * - AppConfig unreachable: the last good document (or the empty one at start) is used, with one
 *   warning per failure streak, and AppConfig is asked again after `maxAgeSeconds`;
 * - an invalid document: refused with an error line naming the field, once per document; the last
 *   good one is kept.
 *
 * The AWS SDK is loaded at the first fetch only: when not configured, it is never loaded.
 */
import type { AppConfigProvider } from '@aws-lambda-powertools/parameters/appconfig';
import type { AppConfigConfig } from '../../common/config.ts';
import type { ErrorDetail } from '../../common/errors.ts';
import { InputReader } from '../../common/input.ts';
import { isJsonObject } from '../../common/json.ts';
import type { Logger } from '../../common/log.ts';
import type { PartnerDeliverySettings } from '../../common/model.ts';
import { readDeliverySettings } from '../../common/retry.ts';
import { NAME_PATTERN, NAME_RULE } from '../../common/topics.ts';
import { awsClientBase } from './client-config.ts';

/** A validated settings document. */
export interface SettingsDocument {
  /** Delivery overrides by partner id. */
  readonly partners: ReadonlyMap<string, PartnerDeliverySettings>;
  readonly flags: ReadonlyMap<string, boolean>;
}

export const EMPTY_SETTINGS: SettingsDocument = Object.freeze({ partners: new Map(), flags: new Map() });

const FLAG_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Reads a settings document; `problems` name each bad field (`partners.acme.timeouts.connectMs`). */
export function parseSettingsDocument(value: unknown): {
  document?: SettingsDocument;
  problems: ErrorDetail[];
} {
  if (!isJsonObject(value)) {
    return { problems: [{ field: '(document)', message: 'must be a JSON object', code: 'type' }] };
  }
  const input = new InputReader(value, ['partners', 'flags']);
  const partners = new Map<string, PartnerDeliverySettings>();
  for (const [id, settings] of Object.entries(input.object('partners') ?? {})) {
    const field = `partners.${id}`;
    if (!NAME_PATTERN.test(id)) {
      input.add([{ field, message: `the partner id must be ${NAME_RULE}` }]);
      continue;
    }
    // The admin API's reader of a partner's `delivery`, its problems renamed to this document's paths.
    const reader = new InputReader({ delivery: settings }, ['delivery']);
    const delivery = readDeliverySettings(reader, true);
    input.add(
      reader.details.map((d) => ({ ...d, field: `${field}${(d.field ?? '').slice('delivery'.length)}` })),
    );
    if (delivery) partners.set(id, delivery);
  }
  const flags = new Map<string, boolean>();
  for (const [name, flag] of Object.entries(input.object('flags') ?? {})) {
    if (!FLAG_NAME.test(name))
      input.problem(`flags.${name}`, 'a flag name must be 1 to 64 characters of A-Z a-z 0-9 _ . -');
    else if (typeof flag !== 'boolean') input.problem(`flags.${name}`, 'must be true or false', 'type');
    else flags.set(name, flag);
  }
  if (input.details.length > 0) return { problems: input.details };
  return { document: { partners, flags }, problems: [] };
}

/** What the partner-overrides decorator needs of a settings source. */
export interface PartnerSettingsSource {
  /** The delivery overrides of one partner, undefined when the document has none. */
  partnerDelivery(partnerId: string): Promise<PartnerDeliverySettings | undefined>;
}

export interface AppConfigSettingsOptions {
  /** AppConfig application, environment and configuration profile; unset (any of them): not configured. */
  application?: string;
  environment?: string;
  profile?: string;
  /** How long a fetched document is used before AppConfig is asked again (default 60). */
  maxAgeSeconds?: number;
  region?: string;
  /** An endpoint of its own (an emulator, tests); dummy credentials then unless given or in the environment. */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  logger: Logger;
}

/** Per-partner delivery overrides and feature flags from AppConfig, with the fallbacks above. */
export class AppConfigSettings implements PartnerSettingsSource {
  /** False when the application, environment or profile is not set: the empty document, always. */
  readonly configured: boolean;
  readonly #options: AppConfigSettingsOptions;
  readonly #maxAgeSeconds: number;
  readonly #logger: Logger;
  #provider: Promise<AppConfigProvider> | undefined;
  #document: SettingsDocument = EMPTY_SETTINGS;
  /** The value the document was read from (Powertools hands back the same one while it is cached). */
  #source: unknown;
  /** ms since the epoch after which AppConfig is asked again. */
  #freshUntil = 0;
  #refreshing: Promise<void> | undefined;
  /** A first fetch (good or not) has ended: lookups no longer wait for one. */
  #started = false;
  #failing = false;
  /** The JSON of the last document refused (it is said once, not at every fetch). */
  #refused: string | undefined;

  constructor(options: AppConfigSettingsOptions) {
    this.#options = options;
    this.configured = Boolean(options.application && options.environment && options.profile);
    this.#maxAgeSeconds = options.maxAgeSeconds ?? 60;
    this.#logger = options.logger.child({
      component: 'appconfig',
      ...(this.configured
        ? { application: options.application, environment: options.environment, profile: options.profile }
        : {}),
    });
  }

  /** The last good document (fetching a newer one when it is older than `maxAgeSeconds`). */
  async document(): Promise<SettingsDocument> {
    if (!this.configured) return EMPTY_SETTINGS;
    if (Date.now() > this.#freshUntil && !this.#refreshing) {
      this.#refreshing = this.#refresh().finally(() => {
        this.#refreshing = undefined;
      });
    }
    if (!this.#started) await this.#refreshing;
    return this.#document;
  }

  /** Resolves once no fetch is running (tests; a runtime may await it at start). */
  async settled(): Promise<void> {
    await this.#refreshing;
  }

  async partnerDelivery(partnerId: string): Promise<PartnerDeliverySettings | undefined> {
    return (await this.document()).partners.get(partnerId);
  }

  /** A feature flag: the document's value, else `fallback` (the environment's setting). */
  async flag(name: string, fallback: boolean): Promise<boolean> {
    return (await this.document()).flags.get(name) ?? fallback;
  }

  /**
   * A feature flag as last read, without waiting: for a check made at every batch. A stale document
   * starts a fetch of a newer one, which the next checks see.
   */
  flagNow(name: string, fallback: boolean): boolean {
    void this.document().catch(() => {});
    return this.#document.flags.get(name) ?? fallback;
  }

  async #refresh(): Promise<void> {
    try {
      const provider = await this.#providerOnce();
      const value = await provider.get(this.#options.profile!, {
        maxAge: this.#maxAgeSeconds,
        transform: 'json',
      });
      this.#accept(value);
      if (this.#failing) {
        this.#failing = false;
        this.#logger.info('AppConfig settings can be read again');
      }
    } catch (err) {
      if ((err as Error).name === 'TransformParameterError') {
        this.#refuse(String((err as Error).message), [
          { field: '(document)', message: `is not JSON: ${(err as Error).message}` },
        ]);
      } else if (!this.#failing) {
        this.#failing = true;
        this.#logger.warn('AppConfig settings cannot be read: the last good document is used', {
          err,
          partners: this.#document.partners.size,
          retryInSeconds: this.#maxAgeSeconds,
        });
      }
    } finally {
      this.#freshUntil = Date.now() + this.#maxAgeSeconds * 1000;
      this.#started = true;
    }
  }

  #accept(value: unknown): void {
    if (value === this.#source) return;
    if (value === undefined) return; // nothing deployed yet: the last good document stays
    this.#source = value;
    const { document, problems } = parseSettingsDocument(value);
    if (document) {
      this.#document = document;
      this.#refused = undefined;
      return;
    }
    this.#refuse(JSON.stringify(value), problems);
  }

  #refuse(text: string, problems: ErrorDetail[]): void {
    if (text === this.#refused) return;
    this.#refused = text;
    const first = problems[0]!;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    this.#logger.error(
      `AppConfig settings document refused: ${first.field} ${first.message}${more}; the last good document is kept`,
      { problems },
    );
  }

  #providerOnce(): Promise<AppConfigProvider> {
    if (!this.#provider) {
      const made = this.#newProvider();
      // A provider that could not be made (a bad region…) is tried again at the next fetch.
      made.catch(() => {
        if (this.#provider === made) this.#provider = undefined;
      });
      this.#provider = made;
    }
    return this.#provider;
  }

  async #newProvider(): Promise<AppConfigProvider> {
    const [{ AppConfigProvider }, { AppConfigDataClient }] = await Promise.all([
      import('@aws-lambda-powertools/parameters/appconfig'),
      import('@aws-sdk/client-appconfigdata'),
    ]);
    const client = new AppConfigDataClient({
      ...awsClientBase(this.#options),
      // A lookup may wait for the first fetch: AppConfig that hangs is given up on in seconds.
      maxAttempts: 2,
      requestHandler: { connectionTimeout: 1_000, requestTimeout: 3_000 },
    });
    return new AppConfigProvider({
      application: this.#options.application!,
      environment: this.#options.environment!,
      awsSdkV3Client: client,
    });
  }
}

/** The settings source of the configuration (not configured without WEBHOOKS_APPCONFIG_*). */
export function appConfigSettings(config: AppConfigConfig | undefined, logger: Logger): AppConfigSettings {
  if (!config) return new AppConfigSettings({ logger });
  return new AppConfigSettings({
    application: config.application,
    environment: config.environment,
    profile: config.profile,
    maxAgeSeconds: config.maxAgeSeconds,
    ...(config.region ? { region: config.region } : {}),
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    logger,
  });
}
