/**
 * The serverless deployment on this machine, measured for what it costs: the processor and
 * dispatcher Lambda handlers fed by the event source mapping driver (the test suite's) from a real
 * Kafka broker, DynamoDB in dynalite (a child process), a loopback HTTP partner. Prints throughput
 * and end-to-end latency percentiles next to a baseline of the same run (the raw HTTP client against
 * the same receiver), then what one delivery spends — invocations, handler milliseconds, DynamoDB
 * requests and capacity units — and what a million deliveries cost at the list prices below.
 *
 *   node bench/lambda.ts [--events 3000] [--partners 2]
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { toKafkaRecord } from '../src/common/envelope-kafka.ts';
import { parseStructuredEvent } from '../src/common/envelope-structured.ts';
import { SecretBox } from '../src/common/secret-box.ts';
import { ingressTopic } from '../src/common/topics.ts';
import type { CapacityReport } from '../src/engines/dynamodb/db.ts';
import { KafkaBus } from '../src/engines/kafka/bus.ts';
import { handler as adminHandler } from '../src/runtimes/lambda/admin.ts';
import { closeContainers, container } from '../src/runtimes/lambda/container.ts';
import { handler as dispatcherHandler } from '../src/runtimes/lambda/dispatcher.ts';
import { DISPATCHER_DUE_TOPIC } from '../src/runtimes/lambda/lambda-bus.ts';
import { handler as processorHandler } from '../src/runtimes/lambda/processor.ts';
import { callHttp, type KafkaHandler, startEsmDriver } from '../test/support/lambda.ts';
import { ORDERS_SCHEMA } from '../test/support/pipeline.ts';
import { startKafkaBroker } from '../tools/kafka/broker.ts';
import { startDynalite } from './engines.ts';
import { latencyLine, rate } from './stats.ts';

/**
 * List prices, us-east-1, at the time of writing — check them before relying on the totals:
 * Lambda arm64 $0.0000133334 per GB-second and $0.20 per million requests; DynamoDB on-demand
 * $0.625 per million write request units and $0.125 per million read request units.
 */
const PRICE = { gbSecond: 0.0000133334, request: 0.2 / 1e6, wru: 0.625 / 1e6, rru: 0.125 / 1e6 };
/** The functions' memory in the stack (infra/lib/functions.ts): 1,024 MB each. */
const MEMORY_GB = 1;

const { values: args } = parseArgs({
  options: { events: { type: 'string', default: '3000' }, partners: { type: 'string', default: '2' } },
});
const EVENTS = Number(args.events);
const PARTNERS = Number(args.partners);
const DELIVERIES = EVENTS * PARTNERS;

const arrivals: number[] = [];
const latencies: number[] = [];
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const now = Date.now();
    arrivals.push(now);
    try {
      const sentAt = (JSON.parse(Buffer.concat(chunks).toString()) as { sentAt?: number }).sentAt;
      if (typeof sentAt === 'number') latencies.push(now - sentAt);
    } catch {
      // the baseline's bodies
    }
    res.writeHead(204).end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

console.log(`bench/lambda: ${EVENTS} events × ${PARTNERS} partners = ${DELIVERIES} deliveries`);
console.log(`node ${process.version}, ${process.platform}/${process.arch}`);

// Baseline: the raw HTTP client (undici, as the dispatcher's) against the same receiver, 16 at a time.
{
  const t0 = Date.now();
  const own: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < DELIVERIES) {
        next++;
        const t = performance.now();
        const res = await request(`${receiverUrl}/baseline`, { method: 'POST', body: '{"x":1}' });
        await res.body.dump();
        own.push(performance.now() - t);
      }
    }),
  );
  console.log(`baseline  raw undici POSTs: ${rate(DELIVERIES, Date.now() - t0)} · ${latencyLine(own)}`);
  arrivals.length = 0;
}

const broker = await startKafkaBroker({ jvm: 'lean' });
const dynamo = await startDynalite();
Object.assign(process.env, {
  WEBHOOKS_BUS: 'kafka',
  WEBHOOKS_KAFKA_BROKERS: broker.bootstrap,
  WEBHOOKS_STORE: 'dynamodb',
  WEBHOOKS_DYNAMODB_ENDPOINT: dynamo.endpoint,
  WEBHOOKS_DYNAMODB_CREATE_TABLES: '1',
  WEBHOOKS_DYNAMODB_TABLE_PREFIX: 'bench',
  WEBHOOKS_SECRET_KEY: SecretBox.generateKey(),
  WEBHOOKS_ADMIN_TOKEN: 'bench-admin-token-0123456789abcdef',
  WEBHOOKS_DATA_DIR: `/tmp/webhooks-bench-lambda-${process.pid}`,
  WEBHOOKS_DEV: '1',
  WEBHOOKS_LOG_LEVEL: 'error',
  // The EMF documents would interleave with this report; their cost is a few lines of JSON per invocation.
  POWERTOOLS_METRICS_DISABLED: 'true',
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
});
const bus = new KafkaBus({ brokers: [broker.bootstrap], clientId: 'bench-producer' });
let driver: { invocations: number; stop(): Promise<void> } | undefined;
try {
  const admin = (method: string, path: string, body?: unknown) =>
    callHttp(adminHandler, { method, path, body, iamUser: 'arn:aws:iam::123456789012:role/bench' });
  await admin('POST', '/admin/schemas', { domain: 'orders', event: 'created', schema: ORDERS_SCHEMA });
  for (let p = 0; p < PARTNERS; p++) {
    await admin('POST', '/admin/partners', { id: `bench-${p}`, name: `Bench ${p}` });
    const s = await admin('POST', '/admin/subscriptions', {
      partnerId: `bench-${p}`,
      domain: 'orders',
      event: 'created',
      url: `${receiverUrl}/hooks/${p}`,
    });
    if (s.status !== 201) throw new Error(`subscription: ${JSON.stringify(s.body)}`);
  }

  // What each invocation spends: counted around the handlers.
  const spent = { processor: { invocations: 0, ms: 0 }, dispatcher: { invocations: 0, ms: 0 } };
  let running = 0;
  const timed =
    (stage: keyof typeof spent, handler: KafkaHandler): KafkaHandler =>
    async (event, context) => {
      const t = performance.now();
      running++;
      try {
        return await handler(event, context);
      } finally {
        running--;
        spent[stage].invocations++;
        spent[stage].ms += performance.now() - t;
      }
    };
  // Warm the containers (a cold start is paid once per container, not per delivery).
  await Promise.all([container('processor'), container('dispatcher')]);
  const capacity = async () => {
    const reports = await Promise.all(
      (['processor', 'dispatcher'] as const).map(async (k) =>
        ((await container(k)).platform.store as unknown as { capacity(): CapacityReport }).capacity(),
      ),
    );
    const calls: Record<string, number> = {};
    for (const r of reports) for (const [op, n] of Object.entries(r.calls)) calls[op] = (calls[op] ?? 0) + n;
    return {
      read: reports.reduce((s, r) => s + r.readUnits, 0),
      write: reports.reduce((s, r) => s + r.writeUnits, 0),
      calls,
    };
  };
  const before = await capacity();

  driver = startEsmDriver(bus, [
    {
      group: 'bench-processor',
      topicPrefixes: ['ingress.', 'retry.processor.'],
      handler: timed('processor', processorHandler),
    },
    {
      group: 'bench-dispatcher',
      topicPrefixes: ['egress.', DISPATCHER_DUE_TOPIC],
      handler: timed('dispatcher', dispatcherHandler),
    },
  ]);
  const t0 = Date.now();
  for (let i = 0; i < EVENTS; i += 500) {
    const n = Math.min(500, EVENTS - i);
    await bus.publish(
      Array.from({ length: n }, (_, k) => {
        const envelope = parseStructuredEvent({
          specversion: '1.0',
          id: `e-${i + k}`,
          source: '/bench',
          type: 'orders.created',
          data: { orderId: `o-${i + k}`, amount: 1, sentAt: Date.now() },
        });
        return {
          topic: ingressTopic('orders', 'created', 1),
          key: `e-${i + k}`,
          ...toKafkaRecord(envelope, 'binary'),
        };
      }),
    );
  }
  while (arrivals.length < DELIVERIES) await new Promise((r) => setTimeout(r, 20));
  const elapsed = Date.now() - t0;
  // The invocations that made the last requests are still recording them: their time and units count.
  while (running > 0) await new Promise((r) => setTimeout(r, 20));
  const after = await capacity();

  console.log(
    `lambda    ${DELIVERIES} deliveries: ${rate(DELIVERIES, elapsed)} · publish→partner ${latencyLine(latencies)}`,
  );
  const per = (n: number) => n / DELIVERIES;
  const invocations = spent.processor.invocations + spent.dispatcher.invocations;
  const ms = spent.processor.ms + spent.dispatcher.ms;
  const read = after.read - before.read;
  const write = after.write - before.write;
  const calls = Object.entries(after.calls)
    .map(([op, n]) => [op, n - (before.calls[op] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([op, n]) => `${op} ${per(n).toFixed(2)}`)
    .join(', ');
  console.log(
    `per delivery: ${per(invocations).toFixed(4)} invocations (processor ${spent.processor.invocations}, dispatcher ${spent.dispatcher.invocations}), ` +
      `${per(ms).toFixed(2)} handler ms, DynamoDB ${per(write).toFixed(2)} WCU + ${per(read).toFixed(2)} RCU (table units, dynalite) in ${calls}`,
  );
  console.log(
    `batch sizes: processor ${(EVENTS / Math.max(1, spent.processor.invocations)).toFixed(1)} records/invocation, dispatcher ${(DELIVERIES / Math.max(1, spent.dispatcher.invocations)).toFixed(1)}`,
  );
  const million = 1e6;
  const lambdaUsd =
    per(invocations) * million * PRICE.request + (per(ms) / 1000) * MEMORY_GB * million * PRICE.gbSecond;
  const dynamoUsd = per(write) * million * PRICE.wru + per(read) * million * PRICE.rru;
  console.log(
    `per million deliveries: Lambda $${lambdaUsd.toFixed(2)} (requests + ${MEMORY_GB} GB × handler time on this machine), ` +
      `DynamoDB $${dynamoUsd.toFixed(2)} (table units only; index writes come on top, see docs/aws.md)`,
  );
} finally {
  await driver?.stop();
  await closeContainers();
  await bus.close();
  await broker.stop();
  dynamo.child.kill();
  receiver.close();
}
