/**
 * Playing AWS for the Lambda handlers: API Gateway proxy events (REST API 1.0, HTTP API 2.0), the
 * Kafka events of an event source mapping, Lambda's context object, and a small driver that plays an
 * event source mapping against the test broker.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConsumedMessage, ConsumerHandle } from '../../src/common/ports/bus.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import type { KafkaBus } from '../../src/engines/kafka/bus.ts';
import type { ProxyResult } from '../../src/runtimes/lambda/api-gateway.ts';
import type { LambdaContextLike } from '../../src/runtimes/lambda/invocation.ts';
import {
  type KafkaBatchResponse,
  type LambdaKafkaEvent,
  partitionId,
} from '../../src/runtimes/lambda/kafka-event.ts';
import { selfSignedCert } from './tls.ts';

/**
 * Sets the process's environment as a Lambda function of the deployment would see it, against the
 * test broker and dynalite (loopback partners trusted through the test CA); returns what puts the
 * environment back. The containers read it when the first handler of a kind is invoked.
 */
export async function useLambdaEnv(options: {
  bootstrap: string;
  dynamoEndpoint: string;
  adminToken: string;
  extra?: Record<string, string>;
}): Promise<() => void> {
  const saved = { ...process.env };
  const dir = await mkdtemp(join(tmpdir(), 'webhooks-lambda-'));
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, (await selfSignedCert()).cert);
  Object.assign(process.env, {
    WEBHOOKS_BUS: 'kafka',
    WEBHOOKS_KAFKA_BROKERS: options.bootstrap,
    WEBHOOKS_KAFKA_SESSION_TIMEOUT_MS: '6000',
    WEBHOOKS_STORE: 'dynamodb',
    WEBHOOKS_DYNAMODB_ENDPOINT: options.dynamoEndpoint,
    WEBHOOKS_DYNAMODB_CREATE_TABLES: '1',
    WEBHOOKS_DYNAMODB_TABLE_PREFIX: `lambda${randomUUID().slice(0, 8)}`,
    WEBHOOKS_SECRET_KEY: SecretBox.generateKey(),
    WEBHOOKS_ADMIN_TOKEN: options.adminToken,
    WEBHOOKS_DATA_DIR: join(dir, 'data'),
    WEBHOOKS_DEV: '1',
    WEBHOOKS_DELIVERY_CA_FILE: caFile,
    WEBHOOKS_LOG_LEVEL: 'error',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    ...options.extra,
  });
  return () => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  };
}

export type HttpHandler = (event: unknown, context?: LambdaContextLike) => Promise<ProxyResult>;
export type KafkaHandler = (event: unknown, context?: LambdaContextLike) => Promise<KafkaBatchResponse>;

/** A context whose invocation ends `timeoutMs` from now. */
export function lambdaContext(timeoutMs = 60_000): LambdaContextLike {
  const endsAt = Date.now() + timeoutMs;
  return {
    getRemainingTimeInMillis: () => Math.max(0, endsAt - Date.now()),
    awsRequestId: randomUUID(),
    functionName: 'webhooks-test',
  };
}

export interface HttpCall {
  method: string;
  path: string;
  body?: unknown;
  /** A body sent as it is (no JSON encoding). */
  raw?: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  /** The IAM principal an AWS_IAM authorizer names (v2: authorizer.iam.userArn; v1: identity.userArn). */
  iamUser?: string;
  base64?: boolean;
  stage?: string;
}

/** An HTTP API (payload 2.0) proxy event. */
export function httpApiEvent(call: HttpCall): unknown {
  const body = call.raw ?? (call.body === undefined ? undefined : JSON.stringify(call.body));
  const query = new URLSearchParams(call.query ?? {}).toString();
  const stage = call.stage ?? '$default';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: stage === '$default' ? call.path : `/${stage}${call.path}`,
    rawQueryString: query,
    headers: {
      'content-type': 'application/json',
      host: 'abc123.execute-api.eu-west-1.amazonaws.com',
      ...call.headers,
    },
    ...(query ? { queryStringParameters: Object.fromEntries(new URLSearchParams(query)) } : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      http: {
        method: call.method,
        path: call.path,
        protocol: 'HTTP/1.1',
        sourceIp: '203.0.113.9',
        userAgent: 'test',
      },
      requestId: randomUUID(),
      routeKey: '$default',
      stage,
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
      ...(call.iamUser
        ? {
            authorizer: {
              iam: { accessKey: 'AKIA', accountId: '123456789012', userArn: call.iamUser, userId: 'AID' },
            },
          }
        : {}),
    },
    ...(body === undefined
      ? {}
      : call.base64
        ? { body: Buffer.from(body).toString('base64'), isBase64Encoded: true }
        : { body, isBase64Encoded: false }),
  };
}

/** A REST API (payload 1.0) proxy event. */
export function restApiEvent(call: HttpCall): unknown {
  const body = call.raw ?? (call.body === undefined ? null : JSON.stringify(call.body));
  const headers = {
    'Content-Type': 'application/json',
    Host: 'abc123.execute-api.eu-west-1.amazonaws.com',
    ...call.headers,
  };
  return {
    resource: '/{proxy+}',
    path: call.path,
    httpMethod: call.method,
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: call.query ?? null,
    multiValueQueryStringParameters: call.query
      ? Object.fromEntries(Object.entries(call.query).map(([k, v]) => [k, [v]]))
      : null,
    pathParameters: { proxy: call.path.slice(1) },
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      httpMethod: call.method,
      path: `/${call.stage ?? 'prod'}${call.path}`,
      stage: call.stage ?? 'prod',
      requestId: randomUUID(),
      resourcePath: '/{proxy+}',
      identity: { sourceIp: '203.0.113.9', userArn: call.iamUser ?? null, caller: null },
    },
    body: body !== null && call.base64 ? Buffer.from(body).toString('base64') : body,
    isBase64Encoded: call.base64 === true,
  };
}

/** Calls an HTTP handler with a v2 (default) or v1 event; the body comes back parsed. */
export async function callHttp(
  handler: HttpHandler,
  call: HttpCall,
  version: '1.0' | '2.0' = '2.0',
): Promise<{ status: number; body: any; headers: Record<string, string> }> {
  const result = await handler(version === '2.0' ? httpApiEvent(call) : restApiEvent(call), lambdaContext());
  let body: unknown = result.body;
  if ((result.headers['content-type'] ?? '').startsWith('application/json')) body = JSON.parse(result.body);
  return { status: result.statusCode, body, headers: result.headers };
}

/** Header bytes as Lambda sends them: Java's signed bytes (-128..127). */
export function signedBytes(text: string): number[] {
  return [...Buffer.from(text, 'utf8')].map((b) => (b > 127 ? b - 256 : b));
}

/** The `aws:kafka` event an MSK event source mapping would send for these records. */
export function mskEvent(records: ConsumedMessage[]): LambdaKafkaEvent {
  const grouped: LambdaKafkaEvent['records'] = {};
  for (const m of records) {
    const id = partitionId(m.topic, m.partition);
    grouped[id] ??= [];
    grouped[id].push({
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
      timestamp: m.timestamp,
      timestampType: 'CREATE_TIME',
      ...(m.key !== undefined ? { key: Buffer.from(m.key).toString('base64') } : {}),
      value: Buffer.from(m.value).toString('base64'),
      headers: [
        ...Object.entries(m.headers).map(([name, value]) => ({ [name]: signedBytes(value) })),
        ...(m.notBefore !== undefined ? [{ 'webhooks-not-before': signedBytes(String(m.notBefore)) }] : []),
      ],
    });
  }
  return {
    eventSource: 'aws:kafka',
    eventSourceArn:
      'arn:aws:kafka:eu-west-1:123456789012:cluster/webhooks/abcd1234-0000-0000-0000-000000000000-1',
    bootstrapServers: 'b-1.webhooks.kafka.eu-west-1.amazonaws.com:9098',
    records: grouped,
  };
}

/** The records a partial batch response names again: per partition, the named offset and everything after it. */
export function redelivered(batch: ConsumedMessage[], response: KafkaBatchResponse): ConsumedMessage[] {
  const first = new Map(
    response.batchItemFailures.map((f) => [f.itemIdentifier.partition, f.itemIdentifier.offset]),
  );
  return batch.filter((m) => {
    const from = first.get(partitionId(m.topic, m.partition));
    return from !== undefined && m.offset >= from;
  });
}

export interface EsmDriverStage {
  /** The consumer group (one per stage, as the mappings' consumer group ids). */
  group: string;
  topicPrefixes: string[];
  handler: KafkaHandler;
  /** The function's timeout (default 60 s). */
  timeoutMs?: number;
}

/**
 * Plays event source mappings against the test broker: polls the stage's topics in batches of up to
 * 100, invokes the handler with the MSK event, and commits per the partial batch response — the
 * records it names (and the rest of their partition) come again. One batch per partition at a time,
 * as Lambda runs them; partitions run concurrently. After 5 failed deliveries of a record it goes to
 * the on-failure destination (`dlq.<stage>`), as the mappings' bounded retries do.
 */
export function startEsmDriver(
  bus: KafkaBus,
  stages: EsmDriverStage[],
): { invocations: number; stop(): Promise<void> } {
  const handles: ConsumerHandle[] = [];
  const driver = {
    invocations: 0,
    async stop() {
      await Promise.all(handles.map((h) => h.stop()));
    },
  };
  for (const stage of stages) {
    handles.push(
      bus.consume({
        group: stage.group,
        topicPrefixes: stage.topicPrefixes,
        maxBatch: 100,
        maxInFlight: 1000,
        maxInFlightPerPartition: 100,
        redelivery: { maxFailures: 5, initialDelayMs: 100, maxDelayMs: 1000 },
        // A mapping reads one topic: the records of each topic go to an invocation of their own.
        handler: async (batch) => {
          const byTopic = Map.groupBy(batch, (m) => m.topic);
          const failed = await Promise.all(
            [...byTopic.values()].map(async (records) => {
              driver.invocations += 1;
              const response = await stage.handler(mskEvent(records), lambdaContext(stage.timeoutMs));
              return redelivered(records, response);
            }),
          );
          return {
            failed: failed.flat().map((message) => ({
              message,
              error: new Error('named in the partial batch response'),
            })),
          };
        },
        deadLetter: async (message) => {
          await bus.publish([
            {
              topic: `dlq.${stage.group.includes('processor') ? 'processor' : 'dispatcher'}`,
              ...(message.key !== undefined ? { key: message.key } : {}),
              value: message.value,
              headers: message.headers,
            },
          ]);
        },
      }),
    );
  }
  return driver;
}
