/**
 * The engines a benchmark phase runs on: a fresh Kafka broker (tools/kafka/broker.ts) for the Kafka
 * bus, dynalite in a child process for the DynamoDB store; and the Kafka bus's own baseline, a raw
 * produce→consume loop with the same client the bus uses.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { startKafkaBroker } from '../tools/kafka/broker.ts';
import { latencyLine, rate } from './stats.ts';

export interface EngineRun {
  /** WEBHOOKS_* settings of the engines. */
  env: Record<string, string>;
  /** Processes whose CPU counts with the platform's: [name, pid]. */
  processes: Array<readonly [string, number | undefined]>;
  stop(): Promise<void>;
}

/** Starts what the bus and store need for one phase (nothing for the embedded log and SQLite). */
export async function startEngines(bus: string, store: string): Promise<EngineRun> {
  const env: Record<string, string> = {};
  const processes: Array<readonly [string, number | undefined]> = [];
  const stops: Array<() => Promise<void>> = [];
  if (bus === 'kafka') {
    const broker = await startKafkaBroker({ jvm: 'lean' });
    env.WEBHOOKS_BUS = 'kafka';
    env.WEBHOOKS_KAFKA_BROKERS = broker.bootstrap;
    processes.push(['kafka broker', broker.pid]);
    stops.push(() => broker.stop());
  }
  if (store === 'dynamodb') {
    const { child, endpoint } = await startDynalite();
    env.WEBHOOKS_STORE = 'dynamodb';
    env.WEBHOOKS_DYNAMODB_ENDPOINT = endpoint;
    env.WEBHOOKS_DYNAMODB_CREATE_TABLES = '1';
    env.WEBHOOKS_DYNAMODB_TABLE_PREFIX = `bench${randomUUID().slice(0, 8)}`;
    env.AWS_ACCESS_KEY_ID ??= 'bench';
    env.AWS_SECRET_ACCESS_KEY ??= 'bench';
    processes.push(['dynalite', child.pid]);
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        }),
    );
  }
  return {
    env,
    processes,
    stop: async () => {
      for (const stop of stops.reverse()) await stop();
    },
  };
}

/** dynalite (in memory, with the project's transaction front) in a child process, so its CPU is its own. */
export async function startDynalite(): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, '../tools/dynamodb/dynalite.ts')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`dynalite did not start: ${out}`)), 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /endpoint (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, endpoint: m[1]! });
      }
    });
    child.once('exit', (code) => reject(new Error(`dynalite exited with ${code}: ${out}`)));
  });
}

/**
 * The Kafka bus's baseline: the same client (@platformatic/kafka), an idempotent producer sending
 * batches of 500 values of `valueBytes`, a consumer group reading them on a 4-partition topic:
 * throughput, then latency at `rate`/s for `seconds` (batches every 10 ms; latency = consume time −
 * the send time written in the value). A fresh broker.
 */
export async function kafkaRawBaseline(options: {
  events: number;
  rate: number;
  seconds: number;
  valueBytes: number;
}): Promise<string[]> {
  const broker = await startKafkaBroker({ jvm: 'lean' });
  const lines: string[] = [];
  try {
    const base = { bootstrapBrokers: [broker.bootstrap], retries: 3 };
    const admin = new Admin({ ...base, clientId: 'raw-admin' });
    await admin.createTopics({ topics: ['raw'], partitions: 4, replicas: 1 });
    await admin.close();
    const producer = new Producer({
      ...base,
      clientId: 'raw-producer',
      idempotent: true,
      serializers: stringSerializers,
    });
    const consumer = new Consumer({
      ...base,
      clientId: 'raw-consumer',
      groupId: 'raw',
      deserializers: stringDeserializers,
      maxWaitTime: 100,
    });
    const stream = await consumer.consume({ topics: ['raw'], mode: 'earliest' });
    let received = 0;
    let latencies: number[] = [];
    stream.on('data', (message) => {
      received += 1;
      latencies.push(Date.now() - Number(message.value.slice(0, 13)));
    });
    const pad = 'x'.repeat(options.valueBytes - 13);
    const value = () => `${Date.now()}${pad}`;
    const started = Date.now();
    let sent = 0;
    await Promise.all(
      [0, 1].map(async () => {
        while (sent < options.events) {
          const size = Math.min(500, options.events - sent);
          sent += size;
          await producer.send({
            messages: Array.from({ length: size }, (_, i) => ({
              topic: 'raw',
              key: `k${i}`,
              value: value(),
            })),
          });
        }
      }),
    );
    const produced = Date.now() - started;
    while (received < options.events) await new Promise((r) => setTimeout(r, 20));
    lines.push(
      `baseline   raw @platformatic/kafka produce→consume, ${options.events} messages of ${options.valueBytes} B: produce ${rate(options.events, produced)}, consume ${rate(options.events, Date.now() - started)} from first send`,
    );
    received = 0;
    latencies = [];
    const perTick = Math.max(1, Math.round(options.rate / 100));
    const ticks = options.seconds * 100;
    const t0 = Date.now();
    const inflight: Promise<unknown>[] = [];
    for (let t = 0; t < ticks; t++) {
      const wait = t0 + t * 10 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      inflight.push(
        producer.send({
          messages: Array.from({ length: perTick }, (_, i) => ({
            topic: 'raw',
            key: `k${i}`,
            value: value(),
          })),
        }),
      );
    }
    await Promise.all(inflight);
    while (received < ticks * perTick) await new Promise((r) => setTimeout(r, 20));
    lines.push(
      `baseline   raw @platformatic/kafka at ${rate(ticks * perTick, options.seconds * 1000)}: produce→consume ${latencyLine(latencies)}`,
    );
    await stream.close();
    await consumer.close();
    await producer.close();
  } finally {
    await broker.stop();
  }
  return lines;
}
