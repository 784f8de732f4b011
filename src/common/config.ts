/**
 * Configuration: the contract's `WEBHOOKS_*` environment variables, optionally added to by a JSON
 * file (`WEBHOOKS_CONFIG_FILE`). The environment wins over the file. Every value is validated at
 * start; all problems are reported at once, one detail per bad value.
 */
import { ConfigError, type ErrorDetail } from './errors.ts';
import { isJsonObject } from './json.ts';
import { LOG_LEVELS, type LogLevel } from './log.ts';

export type BusEngine = 'embedded' | 'kafka';
export type StoreEngine = 'sqlite' | 'dynamodb';
export type Durability = 'fsync' | 'relaxed';

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  adminToken?: string;
  bus: BusEngine;
  kafkaBrokers: string[];
  /** The Kafka bus's connection and topic settings (with WEBHOOKS_BUS=kafka). */
  kafka: KafkaConfig;
  store: StoreEngine;
  dynamodbEndpoint?: string;
  /** The DynamoDB store's settings (with WEBHOOKS_STORE=dynamodb). */
  dynamodb: DynamoConfig;
  dev: boolean;
  /** /metrics with partner labels and /readyz with error text for anyone, not only callers who may read. */
  publicMetrics: boolean;
  secretKey?: string;
  /** Keys that sealed secrets before a rotation: values sealed under them are re-sealed under `secretKey` at start. */
  secretKeysPrevious: string[];
  /**
   * When a write is acknowledged: `fsync` (default) after it is flushed to disk, so a 202 survives an
   * OS crash or power loss; `relaxed` after it is in the OS (survives a crash of the process only).
   */
  durability: Durability;
  /** Failures of one record before the consumer dead-letters it and its partition moves on. */
  maxRecordFailures: number;
  /** Tasks held per PAUSED subscription (or INACTIVE partner) before more are dead-lettered. */
  maxHeldPerSubscription: number;
  /** Bytes of messages a consumer may hold in flight (a cap on memory besides the count). */
  maxInFlightBytes: number;
  maxBodyBytes: number;
  /**
   * Request-body bytes the HTTP server holds in memory at once, over all connections; past them,
   * bodies wait to be read (`runtimes/server/body-budget.ts`). At least `maxBodyBytes`.
   */
  maxBufferedBodyBytes: number;
  /** Connections the HTTP server keeps open at once; more are closed as they come. */
  maxConnections: number;
  logLevel: LogLevel;
  topicPartitions: number;
  secretOverlapSeconds: number;
  partnerApi?: { url: string; timeoutMs: number; cacheTtlMs: number; token?: string };
  /** Idempotency ledger on (default): an event × subscription is delivered at most once successfully. */
  ledger: boolean;
  /** With the dispatcher and another role in one process, the dispatcher runs in its own thread (default). */
  dispatcherThread: boolean;
  /** With the processor and another role in one process, the processor runs in its own thread (default). */
  processorThread: boolean;
  /**
   * The nice value of the processor's and the dispatcher's threads (Linux, where it is per thread):
   * above the API's 0, so that under a full CPU the API and its probes answer first.
   */
  threadNice: number;
  /** Extra CA certificates (PEM file) trusted for partner endpoints. */
  deliveryCaFile?: string;
  /** Concurrent requests per endpoint unless the partner says otherwise. */
  endpointConcurrency: number;
  /** Delay before the processor retries a transiently failed event. */
  processorRetryDelayMs: number;
  /** How long the embedded log keeps records of the DLQ topics while no consumer group reads them, in hours. */
  unreadRetentionHours: number;
  /** Days deliveries, attempts, event routes and dead letters are kept (0: forever). */
  historyRetentionDays: number;
  /** On AWS Lambda: the longest a delayed message waits inside an invocation (longer: kept in the store). */
  lambdaInlineWaitMs: number;
  tls?: { certFile: string; keyFile: string };
  /**
   * AWS KMS envelope encryption of secrets at rest (WEBHOOKS_KMS_KEY_ID): new values are sealed by
   * KMS; values the local key sealed still open with it.
   */
  kms?: KmsConfig;
  /** Per-partner delivery overrides and feature flags from an AppConfig freeform JSON profile. */
  appConfig?: AppConfigConfig;
}

export interface KmsConfig {
  /** Key id, key ARN, alias name (`alias/…`) or alias ARN of a symmetric encryption key. */
  keyId: string;
  /** AWS_REGION; otherwise the SDK's default chain decides. */
  region?: string;
  /** An endpoint of its own (an emulator, tests). */
  endpoint?: string;
}

export interface AppConfigConfig {
  application: string;
  environment: string;
  profile: string;
  /** AWS_REGION; otherwise the SDK's default chain decides. */
  region?: string;
  /** An endpoint of its own (an emulator, tests). */
  endpoint?: string;
  /** How long a fetched document is used before AppConfig is asked again. */
  maxAgeSeconds: number;
}

export type KafkaSaslMechanism = 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512' | 'AWS_MSK_IAM';

export interface KafkaConfig {
  clientId: string;
  /** TLS to the brokers (on with a CA file or MSK IAM). */
  tls: boolean;
  /** PEM file of the CA that signed the brokers' certificates, when not a public one. */
  caFile?: string;
  sasl?: { mechanism: KafkaSaslMechanism; username?: string; password?: string };
  /** Region whose credentials sign MSK IAM tokens. */
  region?: string;
  replicationFactor?: number;
  topicConfig: Record<string, string>;
  sessionTimeoutMs: number;
}

export interface DynamoConfig {
  region: string;
  tablePrefix: string;
  /** Create missing tables at start (emulators, tests); off by default. */
  createTables: boolean;
}

/** One configuration entry: its env variable, its key in the config file, and how to read it. */
interface Entry {
  env: string;
  file: string;
  parse: (raw: string) => unknown;
}

type Raw = Record<string, string | undefined>;

const int = (min: number, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw)) throw new Error(`must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new Error(`must be between ${min} and ${max}, got ${n}`);
  return n;
};
const oneOf =
  <T extends string>(...values: T[]) =>
  (raw: string): T => {
    if (!(values as string[]).includes(raw))
      throw new Error(`must be one of ${values.join(', ')}, got "${raw}"`);
    return raw as T;
  };
const bool = (raw: string) => {
  if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no', ''].includes(raw.toLowerCase())) return false;
  throw new Error(`must be 1 or 0, got "${raw}"`);
};
const text = (raw: string) => {
  if (raw.trim() === '') throw new Error('must not be empty');
  return raw;
};
const httpUrl = (raw: string) => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    // Echoed without what could be credentials (`user:password@`).
    throw new Error(`must be an absolute URL, got "${raw.replace(/\/\/.*@/, '//…@')}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('must be an http(s) URL');
  return raw.replace(/\/+$/, '');
};
const brokers = (raw: string) => {
  const list = raw
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  if (list.length === 0) throw new Error('must list at least one host:port');
  for (const b of list) if (!/^[^\s:]+:\d{1,5}$/.test(b)) throw new Error(`"${b}" is not host:port`);
  return list;
};
const topicConfig = (raw: string) => {
  const out: Record<string, string> = {};
  for (const pair of raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const at = pair.indexOf('=');
    const name = pair.slice(0, at).trim();
    if (at < 1 || !/^[a-z0-9.]+$/.test(name)) throw new Error(`"${pair}" is not name=value`);
    out[name] = pair.slice(at + 1).trim();
  }
  return out;
};
/** A KMS key id, key ARN, alias name or alias ARN. */
const kmsKeyId = (raw: string) => {
  const value = raw.trim();
  const ok =
    /^alias\/[A-Za-z0-9/_-]{1,250}$/.test(value) ||
    /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)\/[A-Za-z0-9/_-]{1,250}$/.test(value) ||
    /^(?:mrk-[0-9a-f]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/.test(
      value,
    );
  if (!ok) throw new Error(`must be a KMS key id, key ARN, alias/<name> or alias ARN, got "${raw}"`);
  return value;
};
const token = (raw: string) => {
  if (raw.length < 16) throw new Error('must be at least 16 characters long');
  // `Authorization: Bearer <token>` carries no whitespace in the token: one with a space or a
  // trailing newline (a secret mounted from a file) would lock every caller out.
  if (!/^[\x21-\x7e]+$/.test(raw)) {
    throw new Error('must be printable ASCII without spaces or line breaks (it is sent as a bearer token)');
  }
  return raw;
};

const ENTRIES: Record<string, Entry> = {
  port: { env: 'WEBHOOKS_PORT', file: 'port', parse: int(0, 65535) },
  host: { env: 'WEBHOOKS_HOST', file: 'host', parse: text },
  dataDir: { env: 'WEBHOOKS_DATA_DIR', file: 'dataDir', parse: text },
  adminToken: { env: 'WEBHOOKS_ADMIN_TOKEN', file: 'adminToken', parse: token },
  bus: { env: 'WEBHOOKS_BUS', file: 'bus', parse: oneOf('embedded', 'kafka') },
  kafkaBrokers: { env: 'WEBHOOKS_KAFKA_BROKERS', file: 'kafkaBrokers', parse: brokers },
  kafkaClientId: { env: 'WEBHOOKS_KAFKA_CLIENT_ID', file: 'kafkaClientId', parse: text },
  kafkaTls: { env: 'WEBHOOKS_KAFKA_TLS', file: 'kafkaTls', parse: bool },
  kafkaCaFile: { env: 'WEBHOOKS_KAFKA_CA_FILE', file: 'kafkaCaFile', parse: text },
  kafkaSaslMechanism: {
    env: 'WEBHOOKS_KAFKA_SASL_MECHANISM',
    file: 'kafkaSaslMechanism',
    parse: oneOf('PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512', 'AWS_MSK_IAM'),
  },
  kafkaSaslUsername: { env: 'WEBHOOKS_KAFKA_SASL_USERNAME', file: 'kafkaSaslUsername', parse: text },
  kafkaSaslPassword: { env: 'WEBHOOKS_KAFKA_SASL_PASSWORD', file: 'kafkaSaslPassword', parse: text },
  kafkaRegion: { env: 'WEBHOOKS_KAFKA_AWS_REGION', file: 'kafkaAwsRegion', parse: text },
  kafkaReplicationFactor: {
    env: 'WEBHOOKS_KAFKA_REPLICATION_FACTOR',
    file: 'kafkaReplicationFactor',
    parse: int(1, 32),
  },
  kafkaTopicConfig: { env: 'WEBHOOKS_KAFKA_TOPIC_CONFIG', file: 'kafkaTopicConfig', parse: topicConfig },
  kafkaSessionTimeoutMs: {
    env: 'WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS',
    file: 'kafkaSessionTimeoutMs',
    parse: int(3000, 300_000),
  },
  store: { env: 'WEBHOOKS_STORE', file: 'store', parse: oneOf('sqlite', 'dynamodb') },
  dynamodbEndpoint: { env: 'WEBHOOKS_DYNAMODB_ENDPOINT', file: 'dynamodbEndpoint', parse: httpUrl },
  dynamodbRegion: { env: 'WEBHOOKS_DYNAMODB_REGION', file: 'dynamodbRegion', parse: text },
  dynamodbTablePrefix: {
    env: 'WEBHOOKS_DYNAMODB_TABLE_PREFIX',
    file: 'dynamodbTablePrefix',
    parse: (raw: string) => {
      if (!/^[a-zA-Z0-9_.-]{1,64}$/.test(raw)) throw new Error('must be 1..64 characters of [a-zA-Z0-9_.-]');
      return raw;
    },
  },
  dynamodbCreateTables: { env: 'WEBHOOKS_DYNAMODB_CREATE_TABLES', file: 'dynamodbCreateTables', parse: bool },
  dev: { env: 'WEBHOOKS_DEV', file: 'dev', parse: bool },
  publicMetrics: { env: 'WEBHOOKS_PUBLIC_METRICS', file: 'publicMetrics', parse: bool },
  secretKey: { env: 'WEBHOOKS_SECRET_KEY', file: 'secretKey', parse: text },
  secretKeysPrevious: {
    env: 'WEBHOOKS_SECRET_KEY_PREVIOUS',
    file: 'secretKeyPrevious',
    parse: (raw: string) =>
      raw
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean),
  },
  durability: {
    env: 'WEBHOOKS_DURABILITY',
    file: 'durability',
    parse: oneOf<Durability>('fsync', 'relaxed'),
  },
  maxRecordFailures: { env: 'WEBHOOKS_MAX_RECORD_FAILURES', file: 'maxRecordFailures', parse: int(1, 1000) },
  maxHeldPerSubscription: {
    env: 'WEBHOOKS_MAX_HELD_PER_SUBSCRIPTION',
    file: 'maxHeldPerSubscription',
    parse: int(1, 100_000_000),
  },
  maxInFlightBytes: {
    env: 'WEBHOOKS_MAX_IN_FLIGHT_BYTES',
    file: 'maxInFlightBytes',
    parse: int(1024 * 1024, 16 * 1024 * 1024 * 1024),
  },
  maxBodyBytes: { env: 'WEBHOOKS_MAX_BODY_BYTES', file: 'maxBodyBytes', parse: int(1024, 64 * 1024 * 1024) },
  maxBufferedBodyBytes: {
    env: 'WEBHOOKS_MAX_BUFFERED_BODY_BYTES',
    file: 'maxBufferedBodyBytes',
    parse: int(1024, 16 * 1024 * 1024 * 1024),
  },
  maxConnections: { env: 'WEBHOOKS_MAX_CONNECTIONS', file: 'maxConnections', parse: int(1, 1_000_000) },
  logLevel: { env: 'WEBHOOKS_LOG_LEVEL', file: 'logLevel', parse: oneOf<LogLevel>(...LOG_LEVELS) },
  topicPartitions: { env: 'WEBHOOKS_TOPIC_PARTITIONS', file: 'topicPartitions', parse: int(1, 1024) },
  secretOverlapSeconds: {
    env: 'WEBHOOKS_SECRET_OVERLAP_SECONDS',
    file: 'secretOverlapSeconds',
    parse: int(0, 30 * 86400),
  },
  partnerApiUrl: { env: 'WEBHOOKS_PARTNER_API_URL', file: 'partnerApiUrl', parse: httpUrl },
  partnerApiTimeoutMs: {
    env: 'WEBHOOKS_PARTNER_API_TIMEOUT_MS',
    file: 'partnerApiTimeoutMs',
    parse: int(1, 60000),
  },
  partnerApiCacheTtlMs: {
    env: 'WEBHOOKS_PARTNER_API_CACHE_TTL_MS',
    file: 'partnerApiCacheTtlMs',
    parse: int(0, 86400000),
  },
  partnerApiToken: { env: 'WEBHOOKS_PARTNER_API_TOKEN', file: 'partnerApiToken', parse: text },
  ledger: { env: 'WEBHOOKS_LEDGER', file: 'ledger', parse: bool },
  dispatcherThread: { env: 'WEBHOOKS_DISPATCHER_THREAD', file: 'dispatcherThread', parse: bool },
  processorThread: { env: 'WEBHOOKS_PROCESSOR_THREAD', file: 'processorThread', parse: bool },
  threadNice: { env: 'WEBHOOKS_THREAD_NICE', file: 'threadNice', parse: int(0, 19) },
  deliveryCaFile: { env: 'WEBHOOKS_DELIVERY_CA_FILE', file: 'deliveryCaFile', parse: text },
  endpointConcurrency: {
    env: 'WEBHOOKS_ENDPOINT_CONCURRENCY',
    file: 'endpointConcurrency',
    parse: int(1, 1000),
  },
  processorRetryDelayMs: {
    env: 'WEBHOOKS_PROCESSOR_RETRY_DELAY_MS',
    file: 'processorRetryDelayMs',
    parse: int(0, 86_400_000),
  },
  unreadRetentionHours: {
    env: 'WEBHOOKS_UNREAD_RETENTION_HOURS',
    file: 'unreadRetentionHours',
    parse: int(1, 24 * 365),
  },
  historyRetentionDays: {
    env: 'WEBHOOKS_HISTORY_RETENTION_DAYS',
    file: 'historyRetentionDays',
    parse: int(0, 3650),
  },
  lambdaInlineWaitMs: {
    env: 'WEBHOOKS_LAMBDA_INLINE_WAIT_MS',
    file: 'lambdaInlineWaitMs',
    parse: int(0, 60_000),
  },
  tlsCert: { env: 'WEBHOOKS_TLS_CERT', file: 'tlsCert', parse: text },
  tlsKey: { env: 'WEBHOOKS_TLS_KEY', file: 'tlsKey', parse: text },
  kmsKeyId: { env: 'WEBHOOKS_KMS_KEY_ID', file: 'kmsKeyId', parse: kmsKeyId },
  kmsEndpoint: { env: 'WEBHOOKS_KMS_ENDPOINT', file: 'kmsEndpoint', parse: httpUrl },
  appConfigApplication: { env: 'WEBHOOKS_APPCONFIG_APPLICATION', file: 'appConfigApplication', parse: text },
  appConfigEnvironment: { env: 'WEBHOOKS_APPCONFIG_ENVIRONMENT', file: 'appConfigEnvironment', parse: text },
  appConfigProfile: { env: 'WEBHOOKS_APPCONFIG_PROFILE', file: 'appConfigProfile', parse: text },
  appConfigEndpoint: { env: 'WEBHOOKS_APPCONFIG_ENDPOINT', file: 'appConfigEndpoint', parse: httpUrl },
  appConfigMaxAgeSeconds: {
    env: 'WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS',
    file: 'appConfigMaxAgeSeconds',
    parse: int(1, 86_400),
  },
};

/**
 * Variables of the platform read elsewhere than here: the AWS Lambda functions' event source
 * mappings (`triggers.ts`), set by the CDK stack.
 */
const OTHER_ENV_VARS: readonly string[] = [
  'WEBHOOKS_MSK_CLUSTER_ARN',
  'WEBHOOKS_LAMBDA_PROCESSOR_FUNCTION',
  'WEBHOOKS_LAMBDA_DISPATCHER_FUNCTION',
  'WEBHOOKS_LAMBDA_ENDPOINT',
];

/**
 * A `WEBHOOKS_*` variable the platform does not know is a typo until shown otherwise
 * (`WEBHOOKS_MAX_BODY_BYTE` would leave the limit at its default without a word): refused at
 * start, naming the closest known variable.
 */
function unknownVariables(env: Raw): ErrorDetail[] {
  const known = new Set([...CONFIG_ENV_VARS, ...OTHER_ENV_VARS]);
  const out: ErrorDetail[] = [];
  for (const name of Object.keys(env)) {
    if (!name.startsWith('WEBHOOKS_') || known.has(name)) continue;
    const closest = [...known].map((k) => ({ k, d: editDistance(name, k) })).sort((a, b) => a.d - b.d)[0];
    const hint = closest && closest.d <= 3 ? `; did you mean ${closest.k}?` : '';
    out.push({ field: name, message: `${name} is not a setting of the platform${hint}` });
  }
  return out;
}

/** Levenshtein distance (names are short). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Every environment variable the platform reads, for documentation and `webhooks config`. */
export const CONFIG_ENV_VARS: readonly string[] = [
  'WEBHOOKS_CONFIG_FILE',
  ...Object.values(ENTRIES).map((e) => e.env),
];

/**
 * Builds the configuration from environment variables and the parsed config file (if any).
 * Throws ConfigError listing every bad value.
 */
export function loadConfig(env: Raw, file?: unknown): Config {
  const details: ErrorDetail[] = [];
  const fileValues: Raw = {};
  if (file !== undefined) {
    if (!isJsonObject(file)) {
      details.push({ field: 'WEBHOOKS_CONFIG_FILE', message: 'the config file must hold a JSON object' });
    } else {
      const known = new Set(Object.values(ENTRIES).map((e) => e.file));
      for (const [key, value] of Object.entries(file)) {
        if (!known.has(key)) {
          details.push({ field: `file:${key}`, message: `unknown setting "${key}"` });
          continue;
        }
        fileValues[key] = Array.isArray(value) ? value.join(',') : String(value);
      }
    }
  }
  const values: Record<string, unknown> = {};
  for (const [name, entry] of Object.entries(ENTRIES)) {
    const fromEnv = env[entry.env];
    const raw = fromEnv !== undefined && fromEnv !== '' ? fromEnv : fileValues[entry.file];
    if (raw === undefined) continue;
    try {
      values[name] = entry.parse(raw);
    } catch (err) {
      const where = fromEnv !== undefined && fromEnv !== '' ? entry.env : `file:${entry.file}`;
      details.push({ field: where, message: `${where} ${(err as Error).message}` });
    }
  }
  const config: Config = {
    port: (values.port as number | undefined) ?? 8080,
    host: (values.host as string | undefined) ?? '127.0.0.1',
    dataDir: (values.dataDir as string | undefined) ?? './.webhooks',
    adminToken: values.adminToken as string | undefined,
    bus: (values.bus as BusEngine | undefined) ?? 'embedded',
    kafkaBrokers: (values.kafkaBrokers as string[] | undefined) ?? [],
    kafka: {
      clientId: (values.kafkaClientId as string | undefined) ?? 'webhooks',
      tls:
        (values.kafkaTls as boolean | undefined) ??
        (values.kafkaCaFile !== undefined || values.kafkaSaslMechanism === 'AWS_MSK_IAM'),
      topicConfig: (values.kafkaTopicConfig as Record<string, string> | undefined) ?? {},
      sessionTimeoutMs: (values.kafkaSessionTimeoutMs as number | undefined) ?? 10_000,
    },
    store: (values.store as StoreEngine | undefined) ?? 'sqlite',
    dynamodbEndpoint: values.dynamodbEndpoint as string | undefined,
    dynamodb: {
      region: (values.dynamodbRegion as string | undefined) ?? env.AWS_REGION ?? 'us-east-1',
      tablePrefix: (values.dynamodbTablePrefix as string | undefined) ?? 'webhooks',
      createTables: (values.dynamodbCreateTables as boolean | undefined) ?? false,
    },
    dev: (values.dev as boolean | undefined) ?? false,
    publicMetrics: (values.publicMetrics as boolean | undefined) ?? false,
    secretKey: values.secretKey as string | undefined,
    secretKeysPrevious: (values.secretKeysPrevious as string[] | undefined) ?? [],
    durability: (values.durability as Durability | undefined) ?? 'fsync',
    maxRecordFailures: (values.maxRecordFailures as number | undefined) ?? 5,
    maxHeldPerSubscription: (values.maxHeldPerSubscription as number | undefined) ?? 1_000_000,
    maxInFlightBytes: (values.maxInFlightBytes as number | undefined) ?? 64 * 1024 * 1024,
    maxBodyBytes: (values.maxBodyBytes as number | undefined) ?? 1024 * 1024,
    maxBufferedBodyBytes: (values.maxBufferedBodyBytes as number | undefined) ?? 64 * 1024 * 1024,
    maxConnections: (values.maxConnections as number | undefined) ?? 1024,
    logLevel: (values.logLevel as LogLevel | undefined) ?? 'info',
    topicPartitions: (values.topicPartitions as number | undefined) ?? 4,
    secretOverlapSeconds: (values.secretOverlapSeconds as number | undefined) ?? 86400,
    ledger: (values.ledger as boolean | undefined) ?? true,
    dispatcherThread: (values.dispatcherThread as boolean | undefined) ?? true,
    processorThread: (values.processorThread as boolean | undefined) ?? true,
    threadNice: (values.threadNice as number | undefined) ?? 5,
    deliveryCaFile: values.deliveryCaFile as string | undefined,
    endpointConcurrency: (values.endpointConcurrency as number | undefined) ?? 16,
    processorRetryDelayMs: (values.processorRetryDelayMs as number | undefined) ?? 30_000,
    unreadRetentionHours: (values.unreadRetentionHours as number | undefined) ?? 168,
    historyRetentionDays: (values.historyRetentionDays as number | undefined) ?? 30,
    lambdaInlineWaitMs: (values.lambdaInlineWaitMs as number | undefined) ?? 5_000,
  };
  if (values.partnerApiUrl !== undefined) {
    config.partnerApi = {
      url: values.partnerApiUrl as string,
      timeoutMs: (values.partnerApiTimeoutMs as number | undefined) ?? 2000,
      cacheTtlMs: (values.partnerApiCacheTtlMs as number | undefined) ?? 60000,
      token: values.partnerApiToken as string | undefined,
    };
  } else {
    // A setting of a feature that is off would do nothing: said, rather than ignored.
    requires(
      values,
      details,
      ['partnerApiToken', 'partnerApiTimeoutMs', 'partnerApiCacheTtlMs'],
      'WEBHOOKS_PARTNER_API_URL',
    );
  }
  if (values.tlsCert !== undefined || values.tlsKey !== undefined) {
    if (values.tlsCert === undefined || values.tlsKey === undefined) {
      details.push({
        field: 'WEBHOOKS_TLS_CERT',
        message: 'WEBHOOKS_TLS_CERT and WEBHOOKS_TLS_KEY go together',
      });
    } else {
      config.tls = { certFile: values.tlsCert as string, keyFile: values.tlsKey as string };
    }
  }
  if (config.maxBufferedBodyBytes < config.maxBodyBytes) {
    details.push({
      field: 'WEBHOOKS_MAX_BUFFERED_BODY_BYTES',
      message: `WEBHOOKS_MAX_BUFFERED_BODY_BYTES (${config.maxBufferedBodyBytes}) must be at least WEBHOOKS_MAX_BODY_BYTES (${config.maxBodyBytes}): one body of the largest size must fit`,
    });
  }
  if (config.bus === 'kafka' && config.kafkaBrokers.length === 0) {
    details.push({
      field: 'WEBHOOKS_KAFKA_BROKERS',
      message: 'WEBHOOKS_BUS=kafka needs WEBHOOKS_KAFKA_BROKERS',
    });
  }
  readKafkaSecurity(config.kafka, values, env, details);
  readAwsServices(config, values, env, details);
  details.push(...unknownVariables(env));
  if (details.length > 0) {
    throw new ConfigError(`invalid configuration: ${details.map((d) => d.message).join('; ')}`, { details });
  }
  return config;
}

/** Refuses the settings in `keys` that are set while what they belong to (`needs`) is not. */
function requires(
  values: Record<string, unknown>,
  details: ErrorDetail[],
  keys: string[],
  needs: string,
): void {
  for (const key of keys) {
    if (values[key] === undefined) continue;
    const env = ENTRIES[key]!.env;
    details.push({ field: env, message: `${env} does nothing without ${needs}` });
  }
}

/** KMS sealing and AppConfig settings: each on when its names are set, the AppConfig names together. */
function readAwsServices(
  config: Config,
  values: Record<string, unknown>,
  env: Raw,
  details: ErrorDetail[],
): void {
  const region = env.AWS_REGION || undefined;
  if (values.kmsKeyId !== undefined) {
    config.kms = {
      keyId: values.kmsKeyId as string,
      ...(region ? { region } : {}),
      ...(values.kmsEndpoint !== undefined ? { endpoint: values.kmsEndpoint as string } : {}),
    };
  } else if (values.kmsEndpoint !== undefined) {
    details.push({
      field: 'WEBHOOKS_KMS_ENDPOINT',
      message: 'WEBHOOKS_KMS_ENDPOINT needs WEBHOOKS_KMS_KEY_ID',
    });
  }
  const names = {
    WEBHOOKS_APPCONFIG_APPLICATION: values.appConfigApplication as string | undefined,
    WEBHOOKS_APPCONFIG_ENVIRONMENT: values.appConfigEnvironment as string | undefined,
    WEBHOOKS_APPCONFIG_PROFILE: values.appConfigProfile as string | undefined,
  };
  const missing = Object.entries(names).filter(([, v]) => v === undefined);
  if (missing.length === 3) {
    requires(
      values,
      details,
      ['appConfigEndpoint', 'appConfigMaxAgeSeconds'],
      'WEBHOOKS_APPCONFIG_APPLICATION, _ENVIRONMENT and _PROFILE',
    );
    return;
  }
  if (missing.length > 0) {
    details.push({
      field: missing[0]![0],
      message: `WEBHOOKS_APPCONFIG_APPLICATION, _ENVIRONMENT and _PROFILE go together: ${missing.map(([k]) => k).join(', ')} missing`,
    });
    return;
  }
  config.appConfig = {
    application: names.WEBHOOKS_APPCONFIG_APPLICATION!,
    environment: names.WEBHOOKS_APPCONFIG_ENVIRONMENT!,
    profile: names.WEBHOOKS_APPCONFIG_PROFILE!,
    ...(region ? { region } : {}),
    ...(values.appConfigEndpoint !== undefined ? { endpoint: values.appConfigEndpoint as string } : {}),
    maxAgeSeconds: (values.appConfigMaxAgeSeconds as number | undefined) ?? 60,
  };
}

/** The Kafka bus's CA file, SASL mechanism and what each mechanism needs, checked together. */
function readKafkaSecurity(
  kafka: KafkaConfig,
  values: Record<string, unknown>,
  env: Raw,
  details: ErrorDetail[],
): void {
  if (values.kafkaCaFile !== undefined) kafka.caFile = values.kafkaCaFile as string;
  if (values.kafkaReplicationFactor !== undefined)
    kafka.replicationFactor = values.kafkaReplicationFactor as number;
  const mechanism = values.kafkaSaslMechanism as KafkaSaslMechanism | undefined;
  const username = values.kafkaSaslUsername as string | undefined;
  const password = values.kafkaSaslPassword as string | undefined;
  if (mechanism === undefined) {
    if (username !== undefined || password !== undefined) {
      details.push({
        field: 'WEBHOOKS_KAFKA_SASL_MECHANISM',
        message: 'WEBHOOKS_KAFKA_SASL_USERNAME and _PASSWORD need WEBHOOKS_KAFKA_SASL_MECHANISM',
      });
    }
    return;
  }
  if (mechanism === 'AWS_MSK_IAM') {
    if (username !== undefined || password !== undefined) {
      details.push({
        field: 'WEBHOOKS_KAFKA_SASL_USERNAME',
        message:
          'WEBHOOKS_KAFKA_SASL_USERNAME and _PASSWORD are not used with AWS_MSK_IAM (the AWS credentials sign in)',
      });
    }
    const region = (values.kafkaRegion as string | undefined) ?? env.AWS_REGION;
    if (!region) {
      details.push({
        field: 'WEBHOOKS_KAFKA_AWS_REGION',
        message: 'WEBHOOKS_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs WEBHOOKS_KAFKA_AWS_REGION (or AWS_REGION)',
      });
      return;
    }
    kafka.region = region;
    kafka.sasl = { mechanism };
    return;
  }
  if (username === undefined || password === undefined) {
    details.push({
      field: 'WEBHOOKS_KAFKA_SASL_USERNAME',
      message: `WEBHOOKS_KAFKA_SASL_MECHANISM=${mechanism} needs WEBHOOKS_KAFKA_SASL_USERNAME and WEBHOOKS_KAFKA_SASL_PASSWORD`,
    });
    return;
  }
  kafka.sasl = { mechanism, username, password };
}
