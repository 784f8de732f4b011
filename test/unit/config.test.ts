/** Configuration from the environment and an optional file. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/common/config.ts';

describe('loadConfig', () => {
  test('defaults follow the contract', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.dataDir, './.webhooks');
    assert.equal(c.bus, 'embedded');
    assert.equal(c.store, 'sqlite');
    assert.equal(c.dev, false);
    assert.equal(c.adminToken, undefined);
    assert.equal(c.partnerApi, undefined);
  });

  test('environment variables are parsed and typed', () => {
    const c = loadConfig({
      WEBHOOKS_PORT: '9090',
      WEBHOOKS_DEV: '1',
      WEBHOOKS_BUS: 'kafka',
      WEBHOOKS_KAFKA_BROKERS: 'a:9092, b:9093',
      WEBHOOKS_PARTNER_API_URL: 'https://partners.example/v1/',
    });
    assert.equal(c.port, 9090);
    assert.equal(c.dev, true);
    assert.deepEqual(c.kafkaBrokers, ['a:9092', 'b:9093']);
    assert.deepEqual(c.partnerApi, {
      url: 'https://partners.example/v1',
      timeoutMs: 2000,
      cacheTtlMs: 60000,
      token: undefined,
    });
  });

  test('a WEBHOOKS_ variable the platform does not know is refused at start, naming the closest one', () => {
    assert.throws(
      () => loadConfig({ WEBHOOKS_MAX_BODY_BYTE: '10485760' }),
      (err: Error & { details?: Array<{ field: string; message: string }> }) => {
        assert.deepEqual(err.details, [
          {
            field: 'WEBHOOKS_MAX_BODY_BYTE',
            message:
              'WEBHOOKS_MAX_BODY_BYTE is not a setting of the platform; did you mean WEBHOOKS_MAX_BODY_BYTES?',
          },
        ]);
        return true;
      },
    );
    // Other variables, and those of the Lambda functions' mappings, are left alone.
    assert.equal(loadConfig({ HOME: '/root', WEBHOOKS_MSK_CLUSTER_ARN: 'arn:aws:kafka:x' }).port, 8080);
  });

  test('the file adds settings and the environment wins over it', () => {
    const c = loadConfig(
      { WEBHOOKS_PORT: '7000' },
      { port: 6000, dataDir: '/var/lib/webhooks', kafkaBrokers: ['k:9092'] },
    );
    assert.equal(c.port, 7000);
    assert.equal(c.dataDir, '/var/lib/webhooks');
    assert.deepEqual(c.kafkaBrokers, ['k:9092']);
  });

  test('a setting of a feature that is off is refused, not ignored', () => {
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [
        { WEBHOOKS_PARTNER_API_TOKEN: 'tok-0123456789' },
        'WEBHOOKS_PARTNER_API_TOKEN',
        /without WEBHOOKS_PARTNER_API_URL/,
      ],
      [
        { WEBHOOKS_PARTNER_API_TIMEOUT_MS: '500' },
        'WEBHOOKS_PARTNER_API_TIMEOUT_MS',
        /without WEBHOOKS_PARTNER_API_URL/,
      ],
      [
        { WEBHOOKS_APPCONFIG_ENDPOINT: 'http://127.0.0.1:1/' },
        'WEBHOOKS_APPCONFIG_ENDPOINT',
        /without WEBHOOKS_APPCONFIG/,
      ],
      [
        { WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS: '30' },
        'WEBHOOKS_APPCONFIG_MAX_AGE_SECONDS',
        /without WEBHOOKS_APPCONFIG/,
      ],
      [
        {
          WEBHOOKS_BUS: 'kafka',
          WEBHOOKS_KAFKA_BROKERS: 'b:9098',
          WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
          WEBHOOKS_KAFKA_AWS_REGION: 'eu-west-1',
          WEBHOOKS_KAFKA_SASL_USERNAME: 'u',
        },
        'WEBHOOKS_KAFKA_SASL_USERNAME',
        /not used with AWS_MSK_IAM/,
      ],
    ];
    for (const [env, field, message] of cases) {
      assert.throws(
        () => loadConfig(env),
        (err: any) =>
          err.details?.some(
            (d: { field: string; message: string }) => d.field === field && message.test(d.message),
          ),
        JSON.stringify(env),
      );
    }
  });

  test('an admin token with a space or a line break is refused (no bearer header could carry it)', () => {
    for (const token of [
      'correct horse battery staple',
      '0123456789abcdef0123\n',
      '0123456789abcdef\t0123',
    ]) {
      assert.throws(
        () => loadConfig({ WEBHOOKS_ADMIN_TOKEN: token }),
        (err: any) =>
          err.details?.[0]?.field === 'WEBHOOKS_ADMIN_TOKEN' && /without spaces/.test(err.details[0].message),
        JSON.stringify(token),
      );
    }
    assert.equal(
      loadConfig({ WEBHOOKS_ADMIN_TOKEN: 'wha_0123456789abcdef-._~+/=' }).adminToken,
      'wha_0123456789abcdef-._~+/=',
    );
  });

  test('every bad value is reported at once, naming its variable', () => {
    assert.throws(
      () =>
        loadConfig({
          WEBHOOKS_PORT: '70000',
          WEBHOOKS_STORE: 'mongo',
          WEBHOOKS_ADMIN_TOKEN: 'short',
          WEBHOOKS_DEV: 'maybe',
        }),
      (err: any) => {
        assert.equal(err.code, 'config_invalid');
        assert.deepEqual(err.details.map((d: { field: string }) => d.field).sort(), [
          'WEBHOOKS_ADMIN_TOKEN',
          'WEBHOOKS_DEV',
          'WEBHOOKS_PORT',
          'WEBHOOKS_STORE',
        ]);
        return true;
      },
    );
  });

  test('kafka without brokers, half a TLS pair and unknown file keys are errors', () => {
    assert.throws(() => loadConfig({ WEBHOOKS_BUS: 'kafka' }), /WEBHOOKS_KAFKA_BROKERS/);
    assert.throws(() => loadConfig({ WEBHOOKS_TLS_CERT: '/c.pem' }), /go together/);
    assert.throws(() => loadConfig({}, { prot: 1 }), /unknown setting "prot"/);
  });

  test("the HTTP server's bounds: body bytes held at once (at least one body of the largest size) and connections", () => {
    const d = loadConfig({});
    assert.deepEqual([d.maxBufferedBodyBytes, d.maxConnections], [64 * 1024 * 1024, 1024]);
    const c = loadConfig({
      WEBHOOKS_MAX_BUFFERED_BODY_BYTES: String(8 * 1024 * 1024),
      WEBHOOKS_MAX_CONNECTIONS: '100',
    });
    assert.deepEqual([c.maxBufferedBodyBytes, c.maxConnections], [8 * 1024 * 1024, 100]);
    assert.throws(
      () => loadConfig({ WEBHOOKS_MAX_BUFFERED_BODY_BYTES: '500000' }),
      (err: Error & { details?: Array<{ field: string }> }) =>
        /must be at least WEBHOOKS_MAX_BODY_BYTES \(1048576\)/.test(err.message) &&
        err.details?.[0]?.field === 'WEBHOOKS_MAX_BUFFERED_BODY_BYTES',
    );
  });
});
