/**
 * The Kafka bus's settings: WEBHOOKS_KAFKA_* checked together at start (a mechanism without what it
 * needs is refused, naming the variable), turned into the client's options (the CA file read, TLS on
 * for MSK IAM), and MSK IAM's token: a SigV4-presigned kafka-cluster:Connect URL, signed locally from
 * the AWS default credential chain (here the environment's keys), base64url-encoded.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/common/config.ts';
import { saslOptions } from '../../src/engines/kafka/connection.ts';
import { kafkaSettings } from '../../src/runtimes/engines.ts';

const base = { WEBHOOKS_BUS: 'kafka', WEBHOOKS_KAFKA_BROKERS: 'k1:9092,k2:9092' };
const refusal = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (err) {
    return (err as { details: Array<{ field: string; message: string }> }).details;
  }
  return assert.fail('the configuration was accepted');
};

describe('WEBHOOKS_KAFKA_* settings', () => {
  test('SCRAM without its password, MSK IAM without a region, a bad topic config: each refused, naming the variable', () => {
    const fields = refusal({
      ...base,
      WEBHOOKS_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      WEBHOOKS_KAFKA_SASL_USERNAME: 'svc',
      WEBHOOKS_KAFKA_TOPIC_CONFIG: 'min.insync.replicas',
    }).map((d) => d.field);
    assert.deepEqual(fields.sort(), ['WEBHOOKS_KAFKA_SASL_USERNAME', 'WEBHOOKS_KAFKA_TOPIC_CONFIG']);
    const iam = refusal({ ...base, WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM' });
    assert.equal(iam[0]!.field, 'WEBHOOKS_KAFKA_AWS_REGION');
    assert.equal(
      refusal({ ...base, WEBHOOKS_KAFKA_SASL_MECHANISM: 'GSSAPI' })[0]!.field,
      'WEBHOOKS_KAFKA_SASL_MECHANISM',
    );
    assert.equal(refusal({ WEBHOOKS_BUS: 'kafka' })[0]!.field, 'WEBHOOKS_KAFKA_BROKERS');
  });

  test('a full configuration becomes the client settings: brokers, TLS with the CA read, SCRAM, topic configs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'webhooks-kafka-ca-'));
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const config = loadConfig({
      ...base,
      WEBHOOKS_KAFKA_CA_FILE: caFile,
      WEBHOOKS_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
      WEBHOOKS_KAFKA_SASL_USERNAME: 'svc',
      WEBHOOKS_KAFKA_SASL_PASSWORD: 'secret-password',
      WEBHOOKS_KAFKA_TOPIC_CONFIG: 'min.insync.replicas=2, retention.ms=604800000',
      WEBHOOKS_KAFKA_REPLICATION_FACTOR: '3',
      WEBHOOKS_KAFKA_CLIENT_ID: 'billing-webhooks',
    });
    const settings = kafkaSettings(config);
    assert.deepEqual(settings.brokers, ['k1:9092', 'k2:9092']);
    assert.equal(settings.clientId, 'billing-webhooks');
    assert.match(settings.tls?.ca ?? '', /BEGIN CERTIFICATE/);
    assert.deepEqual(settings.sasl, {
      mechanism: 'SCRAM-SHA-256',
      username: 'svc',
      password: 'secret-password',
    });
    assert.deepEqual(settings.topicConfig, { 'min.insync.replicas': '2', 'retention.ms': '604800000' });
    assert.equal(settings.replicationFactor, 3);
    assert.throws(
      () => kafkaSettings(loadConfig({ ...base, WEBHOOKS_KAFKA_CA_FILE: join(dir, 'missing.pem') })),
      (err: { details?: Array<{ field: string }> }) => err.details?.[0]?.field === 'WEBHOOKS_KAFKA_CA_FILE',
    );
  });

  test('MSK IAM: TLS on, SASL OAUTHBEARER whose token is a presigned kafka-cluster:Connect URL for the region', async () => {
    const config = loadConfig({
      ...base,
      WEBHOOKS_KAFKA_SASL_MECHANISM: 'AWS_MSK_IAM',
      AWS_REGION: 'eu-west-1',
    });
    const settings = kafkaSettings(config);
    assert.deepEqual(settings.tls, {});
    assert.deepEqual(settings.sasl, { mechanism: 'AWS_MSK_IAM', region: 'eu-west-1' });
    const sasl = saslOptions(settings.sasl!);
    assert.equal(sasl.mechanism, 'OAUTHBEARER');
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEEXAMPLE00',
      AWS_SECRET_ACCESS_KEY: 'example-secret-access-key-0000000000000',
    });
    delete process.env.AWS_PROFILE;
    try {
      const token = await (sasl.token as () => Promise<string>)();
      const url = new URL(Buffer.from(token, 'base64url').toString('utf8'));
      assert.equal(url.host, 'kafka.eu-west-1.amazonaws.com');
      assert.equal(url.searchParams.get('Action'), 'kafka-cluster:Connect');
      assert.match(
        url.searchParams.get('X-Amz-Credential') ?? '',
        /^AKIAEXAMPLEEXAMPLE00\/\d{8}\/eu-west-1\/kafka-cluster\/aws4_request$/,
      );
      assert.match(url.searchParams.get('X-Amz-Signature') ?? '', /^[0-9a-f]{64}$/);
    } finally {
      for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });
});
