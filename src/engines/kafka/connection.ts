/**
 * How the Kafka bus reaches its brokers: bootstrap list, client id, TLS with a custom CA, SASL
 * (PLAIN, SCRAM-SHA-256/512, or Amazon MSK IAM over OAUTHBEARER), and the settings of the topics
 * it creates. Turned into the options of @platformatic/kafka's clients here, once.
 */
import type { SASLOptions } from '@platformatic/kafka';

export type KafkaSasl =
  | { mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512'; username: string; password: string }
  /** Amazon MSK IAM: a SigV4-signed token from the AWS default credential chain, refreshed per connection. */
  | { mechanism: 'AWS_MSK_IAM'; region: string };

export interface KafkaSettings {
  /** `host:port` of one or more brokers. */
  brokers: string[];
  /** Sent to the brokers with every request (quotas, logs); default `webhooks`. */
  clientId?: string;
  /** TLS to the brokers; `ca` (PEM) when their certificates are not signed by a public CA. */
  tls?: { ca?: string };
  sasl?: KafkaSasl;
  /** Replication factor of the topics the bus creates (default 3 when the cluster has 3 brokers or more, else 1). */
  replicationFactor?: number;
  /** Topic configs for the topics the bus creates (e.g. `min.insync.replicas`, `retention.ms`). */
  topicConfig?: Record<string, string>;
  /**
   * The largest record the platform writes (an event as large as the body limit, in its envelope,
   * with its headers; default Kafka's own limit). Topics the bus creates take record batches this
   * large (`max.message.bytes`, unless `topicConfig` says otherwise), and a publish is split into
   * produce requests no larger.
   */
  maxRecordBytes?: number;
  /** A consumer whose process died gives its partitions back after this long (default 10,000 ms). */
  sessionTimeoutMs?: number;
  /**
   * Offsets are committed at most this often (ms, default 100): one request covers everything
   * handled meanwhile. Larger means fewer requests, and more redelivered after a crash.
   */
  commitIntervalMs?: number;
  /** Connecting and each request give up after this long (default 10,000 ms). */
  requestTimeoutMs?: number;
}

/** Kafka's default limit on a record batch (broker `message.max.bytes`, topic `max.message.bytes`). */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/** Room for an event's envelope, its attributes and the records' headers beside its body. */
const RECORD_OVERHEAD_BYTES = 256 * 1024;

/**
 * The record limit that lets an event of `maxBodyBytes` through every topic the platform writes
 * (ingress, egress, retry tiers, DLQs): never below Kafka's default.
 */
export function recordLimitFor(maxBodyBytes: number): number {
  return Math.max(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, maxBodyBytes + RECORD_OVERHEAD_BYTES);
}

/**
 * The most a record may be on the topics the bus creates: their `max.message.bytes` — the one of
 * `topicConfig` when it says, else `maxRecordBytes`, else Kafka's default.
 */
export function recordLimitOf(settings: KafkaSettings): number {
  const configured = Number(settings.topicConfig?.['max.message.bytes']);
  if (Number.isInteger(configured) && configured > 0) return configured;
  return settings.maxRecordBytes ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
}

/** The connection options every client of the bus shares. */
export function clientOptions(settings: KafkaSettings, role: string) {
  const timeout = settings.requestTimeoutMs ?? 10_000;
  const options: {
    clientId: string;
    bootstrapBrokers: string[];
    connectTimeout: number;
    timeout: number;
    requestTimeout: number;
    retries: number;
    retryDelay: number;
    tls?: { ca?: string };
    sasl?: SASLOptions;
  } = {
    clientId: `${settings.clientId ?? 'webhooks'}-${role}`,
    bootstrapBrokers: settings.brokers,
    connectTimeout: timeout,
    timeout,
    requestTimeout: timeout,
    retries: 3,
    retryDelay: 250,
  };
  if (settings.tls) options.tls = settings.tls.ca ? { ca: settings.tls.ca } : {};
  if (settings.sasl) options.sasl = saslOptions(settings.sasl);
  return options;
}

/** The client's SASL options; MSK IAM signs a fresh token each time a connection authenticates. */
export function saslOptions(sasl: KafkaSasl): SASLOptions {
  if (sasl.mechanism === 'AWS_MSK_IAM') {
    const region = sasl.region;
    return {
      mechanism: 'OAUTHBEARER',
      // The signer brings the AWS SDK's credential chain: loaded when a connection first needs a token.
      token: async () => {
        const { generateAuthToken } = await import('aws-msk-iam-sasl-signer-js');
        return (await generateAuthToken({ region })).token;
      },
    };
  }
  return { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password };
}
