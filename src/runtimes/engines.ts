/**
 * Opening the engines the configuration names: the store (SQLite or DynamoDB) and the bus (the
 * embedded log or Kafka). A bus or store that cannot be reached fails the start with a clear error.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BackgroundErrors } from '../common/background-errors.ts';
import type { Config } from '../common/config.ts';
import { ConfigError } from '../common/errors.ts';
import type { Bus } from '../common/ports/bus.ts';
import type { Store } from '../common/ports/store.ts';
import { EmbeddedLog } from '../engines/embedded/log.ts';
import { type KafkaSettings, recordLimitFor } from '../engines/kafka/connection.ts';
import { SqliteStore } from '../engines/sqlite/store.ts';

/** Opens the store engine named by the configuration. */
export async function openStore(config: Config, autoCheckpoint: boolean): Promise<Store> {
  if (config.store === 'sqlite')
    return new SqliteStore(join(config.dataDir, 'store.db'), {
      autoCheckpoint,
      durability: config.durability,
    });
  // Loaded only when used: the AWS SDK is large, and the embedded default never needs it.
  const { DynamoStore } = await import('../engines/dynamodb/store.ts');
  return DynamoStore.open(dynamoOptions(config));
}

/** The DynamoDB store's options from the configuration. */
export function dynamoOptions(config: Config) {
  return {
    region: config.dynamodb.region,
    tablePrefix: config.dynamodb.tablePrefix,
    createTables: config.dynamodb.createTables,
    // History expires by TTL after the retention (0: kept until purged, as the setting says: forever).
    historyTtlDays: config.historyRetentionDays,
    ...(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
  };
}

/** The Kafka bus's settings from the configuration (the CA file read here). */
export function kafkaSettings(config: Config): KafkaSettings {
  const { kafka } = config;
  const settings: KafkaSettings = {
    brokers: config.kafkaBrokers,
    clientId: kafka.clientId,
    topicConfig: kafka.topicConfig,
    sessionTimeoutMs: kafka.sessionTimeoutMs,
    maxRecordBytes: recordLimitFor(config.maxBodyBytes),
  };
  if (kafka.tls) {
    let ca: string | undefined;
    if (kafka.caFile) {
      try {
        ca = readFileSync(kafka.caFile, 'utf8');
      } catch (err) {
        throw new ConfigError(`WEBHOOKS_KAFKA_CA_FILE cannot be read: ${(err as Error).message}`, {
          details: [{ field: 'WEBHOOKS_KAFKA_CA_FILE', message: (err as Error).message }],
        });
      }
    }
    settings.tls = ca ? { ca } : {};
  }
  if (kafka.sasl?.mechanism === 'AWS_MSK_IAM')
    settings.sasl = { mechanism: 'AWS_MSK_IAM', region: kafka.region! };
  else if (kafka.sasl)
    settings.sasl = {
      mechanism: kafka.sasl.mechanism,
      username: kafka.sasl.username!,
      password: kafka.sasl.password!,
    };
  if (kafka.replicationFactor !== undefined) settings.replicationFactor = kafka.replicationFactor;
  return settings;
}

/**
 * Opens the bus engine named by the configuration. A hosted thread leaves the embedded log's WAL
 * checkpoints and retention to its host, which does both for the whole file.
 */
export async function openBus(config: Config, hosted: boolean, background: BackgroundErrors): Promise<Bus> {
  if (config.bus === 'embedded') {
    return new EmbeddedLog(join(config.dataDir, 'bus.db'), {
      onError: background.for('log_retention'),
      defaultPartitions: config.topicPartitions,
      autoCheckpoint: !hosted,
      durability: config.durability,
      unreadRetentionMs: config.unreadRetentionHours * 3_600_000,
      ...(hosted ? { retentionIntervalMs: 0 } : {}),
    });
  }
  // Loaded only when used, like the DynamoDB store: the embedded default never needs the client.
  const { KafkaBus } = await import('../engines/kafka/bus.ts');
  const bus = new KafkaBus(kafkaSettings(config), { defaultPartitions: config.topicPartitions });
  try {
    await bus.connect();
  } catch (err) {
    await bus.close();
    throw err;
  }
  return bus;
}
