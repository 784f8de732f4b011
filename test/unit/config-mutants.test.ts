/**
 * Configuration edges the mutation review found untested: the README's defaults, each number's
 * bounds (both ends, off by one), boolean spellings, combinations refused at start, and secrets
 * never echoed in the refusal.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Config, loadConfig } from '../../src/common/config.ts';

type Detail = { field: string; message: string };
const refusal = (env: Record<string, string>, file?: unknown): Detail[] => {
  try {
    loadConfig(env, file);
  } catch (err) {
    return (err as { details: Detail[] }).details;
  }
  return assert.fail(`accepted: ${JSON.stringify(env)}`);
};
const kafka = { WEBHOOKS_BUS: 'kafka', WEBHOOKS_KAFKA_BROKERS: 'k1:9092' };
const envs = (...list: Array<Record<string, string>>) => list;

describe('loadConfig: the README table', () => {
  test('every default the README states', () => {
    const c = loadConfig({});
    const picked: Partial<Record<keyof Config, unknown>> = {
      host: c.host,
      kafkaBrokers: c.kafkaBrokers,
      publicMetrics: c.publicMetrics,
      secretKeysPrevious: c.secretKeysPrevious,
      durability: c.durability,
      maxRecordFailures: c.maxRecordFailures,
      maxHeldPerSubscription: c.maxHeldPerSubscription,
      maxInFlightBytes: c.maxInFlightBytes,
      maxBodyBytes: c.maxBodyBytes,
      maxBufferedBodyBytes: c.maxBufferedBodyBytes,
      maxConnections: c.maxConnections,
      logLevel: c.logLevel,
      topicPartitions: c.topicPartitions,
      secretOverlapSeconds: c.secretOverlapSeconds,
      ledger: c.ledger,
      dispatcherThread: c.dispatcherThread,
      processorThread: c.processorThread,
      threadNice: c.threadNice,
      endpointConcurrency: c.endpointConcurrency,
      processorRetryDelayMs: c.processorRetryDelayMs,
      unreadRetentionHours: c.unreadRetentionHours,
      historyRetentionDays: c.historyRetentionDays,
      lambdaInlineWaitMs: c.lambdaInlineWaitMs,
      tls: c.tls,
      kms: c.kms,
      appConfig: c.appConfig,
    };
    assert.deepEqual(picked, {
      host: '127.0.0.1',
      kafkaBrokers: [],
      publicMetrics: false,
      secretKeysPrevious: [],
      durability: 'fsync',
      maxRecordFailures: 5,
      maxHeldPerSubscription: 1_000_000,
      maxInFlightBytes: 67_108_864,
      maxBodyBytes: 1_048_576,
      maxBufferedBodyBytes: 67_108_864,
      maxConnections: 1024,
      logLevel: 'info',
      topicPartitions: 4,
      secretOverlapSeconds: 86_400,
      ledger: true,
      dispatcherThread: true,
      processorThread: true,
      threadNice: 5,
      endpointConcurrency: 16,
      processorRetryDelayMs: 30_000,
      unreadRetentionHours: 168,
      historyRetentionDays: 30,
      lambdaInlineWaitMs: 5000,
      tls: undefined,
      kms: undefined,
      appConfig: undefined,
    });
    assert.deepEqual(c.kafka, {
      clientId: 'webhooks',
      tls: false,
      topicConfig: {},
      sessionTimeoutMs: 10_000,
    });
    assert.deepEqual(c.dynamodb, { region: 'us-east-1', tablePrefix: 'webhooks', createTables: false });
    assert.equal(loadConfig({ AWS_REGION: 'eu-west-3' }).dynamodb.region, 'eu-west-3');
    assert.equal(
      loadConfig({ AWS_REGION: 'eu-west-3', WEBHOOKS_DYNAMODB_REGION: 'ap-south-1' }).dynamodb.region,
      'ap-south-1',
    );
  });

  test('AppConfig max age defaults to 60 s; AWS_REGION reaches KMS and AppConfig', () => {
    const c = loadConfig({
      AWS_REGION: 'eu-central-1',
      WEBHOOKS_KMS_KEY_ID: 'alias/webhooks',
      WEBHOOKS_APPCONFIG_APPLICATION: 'app',
      WEBHOOKS_APPCONFIG_ENVIRONMENT: 'prod',
      WEBHOOKS_APPCONFIG_PROFILE: 'delivery',
    });
    assert.deepEqual(c.kms, { keyId: 'alias/webhooks', region: 'eu-central-1' });
    assert.deepEqual(c.appConfig, {
      application: 'app',
      environment: 'prod',
      profile: 'delivery',
      region: 'eu-central-1',
      maxAgeSeconds: 60,
    });
  });

  test('each number is accepted at both ends of its range and refused one past either end', () => {
    const ranges: Array<[string, number, number, Record<string, string>?]> = [
      ['WEBHOOKS_PORT', 0, 65535],
      ['WEBHOOKS_KAFKA_REPLICATION_FACTOR', 1, 32],
      ['WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS', 3000, 300_000],
      ['WEBHOOKS_MAX_RECORD_FAILURES', 1, 1000],
      ['WEBHOOKS_MAX_HELD_PER_SUBSCRIPTION', 1, 100_000_000],
      ['WEBHOOKS_MAX_IN_FLIGHT_BYTES', 1024 * 1024, 16 * 1024 ** 3],
      [
        'WEBHOOKS_MAX_BODY_BYTES',
        1024,
        64 * 1024 * 1024,
        { WEBHOOKS_MAX_BUFFERED_BODY_BYTES: String(2 ** 34) },
      ],
      ['WEBHOOKS_MAX_BUFFERED_BODY_BYTES', 1024, 16 * 1024 ** 3, { WEBHOOKS_MAX_BODY_BYTES: '1024' }],
      ['WEBHOOKS_MAX_CONNECTIONS', 1, 1_000_000],
      ['WEBHOOKS_TOPIC_PARTITIONS', 1, 1024],
      ['WEBHOOKS_SECRET_OVERLAP_SECONDS', 0, 30 * 86400],
      ['WEBHOOKS_PARTNER_API_TIMEOUT_MS', 1, 60_000, { WEBHOOKS_PARTNER_API_URL: 'https://p.example' }],
      ['WEBHOOKS_PARTNER_API_CACHE_TTL_MS', 0, 86_400_000, { WEBHOOKS_PARTNER_API_URL: 'https://p.example' }],
      ['WEBHOOKS_THREAD_NICE', 0, 19],
      ['WEBHOOKS_ENDPOINT_CONCURRENCY', 1, 1000],
      ['WEBHOOKS_PROCESSOR_RETRY_DELAY_MS', 0, 86_400_000],
      ['WEBHOOKS_UNREAD_RETENTION_HOURS', 1, 24 * 365],
      ['WEBHOOKS_HISTORY_RETENTION_DAYS', 0, 3650],
      ['WEBHOOKS_LAMBDA_INLINE_WAIT_MS', 0, 60_000],
      [
        'WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS',
        1,
        86_400,
        {
          WEBHOOKS_APPCONFIG_APPLICATION: 'a',
          WEBHOOKS_APPCONFIG_ENVIRONMENT: 'e',
          WEBHOOKS_APPCONFIG_PROFILE: 'p',
        },
      ],
    ];
    for (const [name, min, max, extra = {}] of ranges) {
      for (const ok of [min, max]) {
        assert.doesNotThrow(() => loadConfig({ ...extra, [name]: String(ok) }), `${name}=${ok}`);
      }
      for (const bad of [min - 1, max + 1]) {
        if (bad < 0) continue; // "-1" fails as not a whole number, which says nothing of the bound
        const details = refusal({ ...extra, [name]: String(bad) });
        assert.deepEqual(
          details.map((d) => d.field),
          [name],
          `${name}=${bad}`,
        );
        assert.match(
          details[0]!.message,
          new RegExp(`^${name} must be between ${min} and ${max}, got ${bad}$`),
        );
      }
    }
  });

  test('a number must be written as plain digits (no exponent, hex, sign, fraction or spaces)', () => {
    for (const raw of ['1e3', '0x10', '+80', '80.0', ' 80', '-1']) {
      const details = refusal({ WEBHOOKS_PORT: raw });
      assert.equal(details[0]!.field, 'WEBHOOKS_PORT', raw);
      assert.match(details[0]!.message, /must be a whole number/, raw);
    }
    assert.equal(loadConfig({ WEBHOOKS_PORT: '0080' }).port, 80);
  });

  test('booleans: 1/true/yes and 0/false/no in any case; anything else refused', () => {
    for (const raw of ['1', 'true', 'TRUE', 'yes', 'Yes']) {
      assert.equal(loadConfig({ WEBHOOKS_PUBLIC_METRICS: raw }).publicMetrics, true, raw);
    }
    for (const raw of ['0', 'false', 'False', 'no', 'NO']) {
      assert.equal(loadConfig({ WEBHOOKS_LEDGER: raw }).ledger, false, raw);
    }
    assert.equal(loadConfig({ WEBHOOKS_DISPATCHER_THREAD: '0' }).dispatcherThread, false);
    assert.equal(loadConfig({ WEBHOOKS_PROCESSOR_THREAD: '0' }).processorThread, false);
    assert.equal(loadConfig({ WEBHOOKS_DYNAMODB_CREATE_TABLES: '1' }).dynamodb.createTables, true);
    for (const raw of ['on', '2', 'y', 'enabled']) {
      assert.equal(refusal({ WEBHOOKS_LEDGER: raw })[0]!.field, 'WEBHOOKS_LEDGER', raw);
    }
  });

  test('an empty variable is unset: the default (or the file) applies', () => {
    assert.equal(loadConfig({ WEBHOOKS_PORT: '' }).port, 8080);
    assert.equal(loadConfig({ WEBHOOKS_PORT: '' }, { port: 7001 }).port, 7001);
    assert.equal(loadConfig({ WEBHOOKS_LEDGER: '' }).ledger, true);
  });

  test('the file: a non-object refused; arrays joined; a bad file value named as file:<key>', () => {
    assert.equal(refusal({}, ['port'])[0]!.field, 'WEBHOOKS_CONFIG_FILE');
    assert.deepEqual(loadConfig({}, { secretKeyPrevious: ['k1', 'k2'] }).secretKeysPrevious, ['k1', 'k2']);
    assert.deepEqual(refusal({}, { maxConnections: 0 })[0], {
      field: 'file:maxConnections',
      message: 'file:maxConnections must be between 1 and 1000000, got 0',
    });
  });

  test('a body budget equal to the body limit is enough; one byte less is refused', () => {
    const c = loadConfig({ WEBHOOKS_MAX_BODY_BYTES: '4096', WEBHOOKS_MAX_BUFFERED_BODY_BYTES: '4096' });
    assert.deepEqual([c.maxBodyBytes, c.maxBufferedBodyBytes], [4096, 4096]);
    assert.equal(
      refusal({ WEBHOOKS_MAX_BODY_BYTES: '4096', WEBHOOKS_MAX_BUFFERED_BODY_BYTES: '4095' })[0]!.field,
      'WEBHOOKS_MAX_BUFFERED_BODY_BYTES',
    );
  });
});

describe('loadConfig: value formats', () => {
  test('Kafka topic configs: names are lower-case dotted words; a bad name is refused', () => {
    assert.deepEqual(
      loadConfig({ ...kafka, WEBHOOKS_KAFKA_TOPIC_CONFIG: 'retention.ms=1' }).kafka.topicConfig,
      {
        'retention.ms': '1',
      },
    );
    for (const raw of ['Retention.MS=1', 'retention ms=1', 'x;y=1', '=1']) {
      assert.equal(
        refusal({ ...kafka, WEBHOOKS_KAFKA_TOPIC_CONFIG: raw })[0]!.field,
        'WEBHOOKS_KAFKA_TOPIC_CONFIG',
        raw,
      );
    }
  });

  test('the DynamoDB table prefix: 1..64 of [a-zA-Z0-9_.-]', () => {
    assert.equal(
      loadConfig({ WEBHOOKS_DYNAMODB_TABLE_PREFIX: 'p'.repeat(64) }).dynamodb.tablePrefix,
      'p'.repeat(64),
    );
    for (const raw of ['p'.repeat(65), 'a/b', 'a b']) {
      assert.equal(
        refusal({ WEBHOOKS_DYNAMODB_TABLE_PREFIX: raw })[0]!.field,
        'WEBHOOKS_DYNAMODB_TABLE_PREFIX',
        raw,
      );
    }
  });

  test('the admin token: 16 characters are enough, 15 are refused', () => {
    assert.equal(loadConfig({ WEBHOOKS_ADMIN_TOKEN: 'a'.repeat(16) }).adminToken, 'a'.repeat(16));
    assert.match(refusal({ WEBHOOKS_ADMIN_TOKEN: 'a'.repeat(15) })[0]!.message, /at least 16 characters/);
  });

  test('text settings refuse blanks; URLs must be http(s); log levels from the list only', () => {
    assert.equal(refusal({ WEBHOOKS_HOST: '   ' })[0]!.field, 'WEBHOOKS_HOST');
    assert.equal(refusal({}, { dataDir: ' ' })[0]!.field, 'file:dataDir');
    for (const raw of ['ftp://p.example', 'file:///etc/passwd', 'p.example/v1']) {
      assert.equal(refusal({ WEBHOOKS_PARTNER_API_URL: raw })[0]!.field, 'WEBHOOKS_PARTNER_API_URL', raw);
    }
    for (const level of ['debug', 'info', 'warn', 'error']) {
      assert.equal(loadConfig({ WEBHOOKS_LOG_LEVEL: level }).logLevel, level);
    }
    assert.equal(refusal({ WEBHOOKS_LOG_LEVEL: 'INFO' })[0]!.field, 'WEBHOOKS_LOG_LEVEL');
  });

  test('previous secret keys: comma-separated, trimmed, blanks dropped', () => {
    assert.deepEqual(loadConfig({ WEBHOOKS_SECRET_KEY_PREVIOUS: ' k1 ,, k2 ,' }).secretKeysPrevious, [
      'k1',
      'k2',
    ]);
  });
});

describe('loadConfig: combinations refused at start, one detail each', () => {
  test('SASL credentials without a mechanism', () => {
    for (const extra of envs(
      { WEBHOOKS_KAFKA_SASL_USERNAME: 'svc' },
      { WEBHOOKS_KAFKA_SASL_PASSWORD: 'pw-123' },
    )) {
      assert.deepEqual(refusal({ ...kafka, ...extra }), [
        {
          field: 'WEBHOOKS_KAFKA_SASL_MECHANISM',
          message: 'WEBHOOKS_KAFKA_SASL_USERNAME and _PASSWORD need WEBHOOKS_KAFKA_SASL_MECHANISM',
        },
      ]);
    }
  });

  test('PLAIN/SCRAM need both username and password; with both, SASL is on and TLS stays as set', () => {
    for (const mechanism of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
      for (const half of envs(
        { WEBHOOKS_KAFKA_SASL_USERNAME: 'svc' },
        { WEBHOOKS_KAFKA_SASL_PASSWORD: 'pw-123' },
        {},
      )) {
        const details = refusal({ ...kafka, WEBHOOKS_KAFKA_SASL_MECHANISM: mechanism, ...half });
        assert.deepEqual(
          details.map((d) => d.field),
          ['WEBHOOKS_KAFKA_SASL_USERNAME'],
          `${mechanism} ${JSON.stringify(half)}`,
        );
      }
    }
    const c = loadConfig({
      ...kafka,
      WEBHOOKS_KAFKA_SASL_MECHANISM: 'PLAIN',
      WEBHOOKS_KAFKA_SASL_USERNAME: 'svc',
      WEBHOOKS_KAFKA_SASL_PASSWORD: 'pw-123',
    });
    assert.deepEqual(c.kafka.sasl, { mechanism: 'PLAIN', username: 'svc', password: 'pw-123' });
    assert.equal(c.kafka.tls, false);
  });

  test('MSK IAM: its own region wins over AWS_REGION and turns TLS on; the password is refused too', () => {
    const c = loadConfig({
      ...kafka,
      WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
      WEBHOOKS_KAFKA_AWS_REGION: 'eu-west-1',
      AWS_REGION: 'us-west-2',
    });
    assert.equal(c.kafka.region, 'eu-west-1');
    assert.deepEqual(c.kafka.sasl, { mechanism: 'AWS_MSK_IAM' });
    assert.equal(c.kafka.tls, true);
    assert.equal(
      loadConfig({
        ...kafka,
        WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
        WEBHOOKS_KAFKA_AWS_REGION: 'eu-west-1',
        WEBHOOKS_KAFKA_TLS: '0',
      }).kafka.tls,
      false,
    );
    assert.deepEqual(
      refusal({
        ...kafka,
        WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
        WEBHOOKS_KAFKA_AWS_REGION: 'eu-west-1',
        WEBHOOKS_KAFKA_SASL_PASSWORD: 'pw-123',
      }).map((d) => d.field),
      ['WEBHOOKS_KAFKA_SASL_USERNAME'],
    );
  });

  test('a Kafka CA file turns TLS on unless WEBHOOKS_KAFKA_TLS=0; TLS=1 alone turns it on', () => {
    assert.equal(loadConfig({ ...kafka, WEBHOOKS_KAFKA_CA_FILE: '/ca.pem' }).kafka.tls, true);
    assert.equal(
      loadConfig({ ...kafka, WEBHOOKS_KAFKA_CA_FILE: '/ca.pem', WEBHOOKS_KAFKA_TLS: '0' }).kafka.tls,
      false,
    );
    assert.equal(loadConfig({ ...kafka, WEBHOOKS_KAFKA_TLS: '1' }).kafka.tls, true);
  });

  test('brokers: each must be host:port; an empty list is refused', () => {
    for (const raw of ['k1', 'k1:', 'k1:123456', 'k 1:9092', 'k1:9092,bad']) {
      assert.equal(
        refusal({ ...kafka, WEBHOOKS_KAFKA_BROKERS: raw })[0]!.field,
        'WEBHOOKS_KAFKA_BROKERS',
        raw,
      );
    }
    assert.equal(refusal({ ...kafka, WEBHOOKS_KAFKA_BROKERS: ' , ' })[0]!.field, 'WEBHOOKS_KAFKA_BROKERS');
  });

  test('KMS endpoint without a key id; a malformed key id', () => {
    assert.deepEqual(refusal({ WEBHOOKS_KMS_ENDPOINT: 'http://127.0.0.1:4566' }), [
      { field: 'WEBHOOKS_KMS_ENDPOINT', message: 'WEBHOOKS_KMS_ENDPOINT needs WEBHOOKS_KMS_KEY_ID' },
    ]);
    assert.equal(refusal({ WEBHOOKS_KMS_KEY_ID: 'my-key' })[0]!.field, 'WEBHOOKS_KMS_KEY_ID');
    assert.equal(
      loadConfig({ WEBHOOKS_KMS_KEY_ID: 'alias/k', WEBHOOKS_KMS_ENDPOINT: 'http://127.0.0.1:4566/' }).kms
        ?.endpoint,
      'http://127.0.0.1:4566',
    );
  });

  test('AppConfig names go together: one or two of three refused, naming the missing ones', () => {
    assert.deepEqual(refusal({ WEBHOOKS_APPCONFIG_APPLICATION: 'app' }), [
      {
        field: 'WEBHOOKS_APPCONFIG_ENVIRONMENT',
        message:
          'WEBHOOKS_APPCONFIG_APPLICATION, _ENVIRONMENT and _PROFILE go together: WEBHOOKS_APPCONFIG_ENVIRONMENT, WEBHOOKS_APPCONFIG_PROFILE missing',
      },
    ]);
    assert.equal(
      refusal({ WEBHOOKS_APPCONFIG_APPLICATION: 'app', WEBHOOKS_APPCONFIG_ENVIRONMENT: 'prod' })[0]!.field,
      'WEBHOOKS_APPCONFIG_PROFILE',
    );
  });

  test('the partner API cache TTL without the URL; the TLS key without the cert', () => {
    assert.deepEqual(refusal({ WEBHOOKS_PARTNER_API_CACHE_TTL_MS: '1000' }), [
      {
        field: 'WEBHOOKS_PARTNER_API_CACHE_TTL_MS',
        message: 'WEBHOOKS_PARTNER_API_CACHE_TTL_MS does nothing without WEBHOOKS_PARTNER_API_URL',
      },
    ]);
    assert.equal(refusal({ WEBHOOKS_TLS_KEY: '/k.pem' })[0]!.field, 'WEBHOOKS_TLS_CERT');
    assert.deepEqual(loadConfig({ WEBHOOKS_TLS_CERT: '/c.pem', WEBHOOKS_TLS_KEY: '/k.pem' }).tls, {
      certFile: '/c.pem',
      keyFile: '/k.pem',
    });
  });

  test('an unknown variable far from every known one gets no guess', () => {
    assert.deepEqual(refusal({ WEBHOOKS_COMPLETELY_UNRELATED: 'x' }), [
      {
        field: 'WEBHOOKS_COMPLETELY_UNRELATED',
        message: 'WEBHOOKS_COMPLETELY_UNRELATED is not a setting of the platform',
      },
    ]);
    assert.match(refusal({ WEBHOOKS_LOG_LEVLE: 'x' })[0]!.message, /did you mean WEBHOOKS_LOG_LEVEL\?$/);
  });
});

describe('loadConfig: secrets are never echoed in a refusal', () => {
  test('bad admin tokens, SASL passwords and partner tokens set without their feature, misspelt secret variables', () => {
    const cases: Array<[Record<string, string>, unknown, string]> = [
      [{ WEBHOOKS_ADMIN_TOKEN: 'sekrit-short' }, undefined, 'sekrit-short'],
      [{ WEBHOOKS_ADMIN_TOKEN: 'sekrit token with spaces' }, undefined, 'sekrit token'],
      [{}, { adminToken: 'sekrit-file' }, 'sekrit-file'],
      [{ WEBHOOKS_SECRET_KEY_TYPO: 'sekrit-key-value' }, undefined, 'sekrit-key-value'],
      [{ WEBHOOKS_KAFKA_SASL_PASSWORD: 'sekrit-pw' }, undefined, 'sekrit-pw'],
      [
        { ...kafka, WEBHOOKS_KAFKA_SASL_MECHANISM: 'PLAIN', WEBHOOKS_KAFKA_SASL_PASSWORD: 'sekrit-pw' },
        undefined,
        'sekrit-pw',
      ],
      [{ WEBHOOKS_PARTNER_API_TOKEN: 'sekrit-partner' }, undefined, 'sekrit-partner'],
      // A URL that does not parse is echoed, its credentials left out.
      [{ WEBHOOKS_PARTNER_API_URL: 'https://svc:sekrit-url@partners example' }, undefined, 'sekrit-url'],
      [{ WEBHOOKS_DYNAMODB_ENDPOINT: 'http://u:sek/rit-ddb@[::1' }, undefined, 'rit-ddb'],
    ];
    for (const [env, file, secret] of cases) {
      let error: (Error & { details: Detail[] }) | undefined;
      try {
        loadConfig(env, file);
      } catch (err) {
        error = err as Error & { details: Detail[] };
      }
      assert.ok(error, `accepted: ${JSON.stringify(env)}`);
      assert.ok(!error.message.includes(secret), error.message);
      assert.ok(!JSON.stringify(error.details).includes(secret), JSON.stringify(error.details));
    }
  });
});
