/**
 * A real single-node Apache Kafka broker (KRaft, broker + controller in one process) for tests and
 * benchmarks, started by the project itself: the jars come from Maven Central through `mvn` (cached
 * in `kafka-libs/`), the broker listens on loopback on free ports, and `stop()` ends it.
 *
 *   const broker = await startKafkaBroker();   // broker.bootstrap = "127.0.0.1:<port>"
 *   await broker.stop();
 *
 * With `scram`, a second listener speaks SASL_SSL with SCRAM-SHA-256 and SCRAM-SHA-512 (credentials
 * added at format time, a self-signed certificate made with `keytool`), for the security tests.
 * Run directly (`node tools/kafka/broker.ts [--scram]`) it starts a broker and prints its address
 * until killed; with `--fetch` it only fetches the jars.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const KAFKA_VERSION = '4.4.0';
const ROOT = join(import.meta.dirname, '..', '..');
const POM = join(import.meta.dirname, 'pom.xml');
/** Where the broker's jars are cached between runs (gitignored). */
export const KAFKA_LIBS = join(ROOT, 'kafka-libs', KAFKA_VERSION);
const READY_LINE = 'Kafka Server started';
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

export interface ScramUser {
  username: string;
  password: string;
}

export interface KafkaBrokerOptions {
  /** Also listen with SASL_SSL (PLAIN, SCRAM-SHA-256/512) for these users. */
  scram?: ScramUser[];
  /** Receives each line the broker prints. */
  log?: (line: string) => void;
  /**
   * The JVM's collector and compiler: `default` (G1 and C2, as Kafka's own scripts), or `lean` —
   * serial GC and C1 only, for a broker sharing two cores with everything else (the benchmarks):
   * at 1,000 msg/s (10 per send) its CPU per message fell from 366 to 207 µs 8 s after start and
   * from 212 to 164 µs after 40 s (2026-12-07). The tests keep the default: with `lean`, two CI
   * runs of three hung on a consumer of the client library that kept heartbeating after the
   * suite's broker stopped (its group leave had failed), a timing the default never showed.
   */
  jvm?: 'default' | 'lean';
}

export interface KafkaBroker {
  /** `host:port` of the PLAINTEXT listener. */
  bootstrap: string;
  /** `host:port` of the SASL_SSL listener, with the CA certificate (PEM) that signed its certificate. */
  sasl?: { bootstrap: string; caPem: string };
  /** The broker's process id (benchmarks count its CPU; it changes with `restart`). */
  pid: number;
  /** Stops the broker (SIGTERM, as a rolling restart does) and starts it again on the same ports and data. */
  restart(): Promise<void>;
  /** The broker's own output so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/** Fetches the broker's jars into KAFKA_LIBS unless they are there; throws with mvn's output otherwise. */
export async function ensureKafkaJars(): Promise<string> {
  if (existsSync(KAFKA_LIBS) && readdirSync(KAFKA_LIBS).some((f) => f.startsWith('kafka_2.13-'))) {
    return KAFKA_LIBS;
  }
  mkdirSync(KAFKA_LIBS, { recursive: true });
  try {
    await run(
      'mvn',
      [
        '-q',
        '-B',
        '-f',
        POM,
        'dependency:copy-dependencies',
        `-DoutputDirectory=${KAFKA_LIBS}`,
        '-DincludeScope=runtime',
      ],
      { maxBuffer: 16 * 1024 * 1024 },
    );
  } catch (err) {
    rmSync(KAFKA_LIBS, { recursive: true, force: true });
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `cannot fetch the Kafka ${KAFKA_VERSION} jars with mvn (Java 17+ and Maven are needed): ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`,
    );
  }
  return KAFKA_LIBS;
}

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts a broker and resolves once it has said it started; rejects with its output otherwise. */
export async function startKafkaBroker(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
  const libs = await ensureKafkaJars();
  const dir = mkdtempSync(join(tmpdir(), 'webhooks-kafka-'));
  const [port, controllerPort, saslPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const scram = options.scram && options.scram.length > 0 ? options.scram : undefined;
  const tls = scram ? await makeKeystore(dir) : undefined;
  const listeners = [`PLAINTEXT://127.0.0.1:${port}`, `CONTROLLER://127.0.0.1:${controllerPort}`];
  if (scram) listeners.push(`SASL_SSL://127.0.0.1:${saslPort}`);
  const properties = [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.bootstrap.servers=127.0.0.1:${controllerPort}`,
    `listeners=${listeners.join(',')}`,
    `advertised.listeners=${listeners.join(',')}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${scram ? ',SASL_SSL:SASL_SSL' : ''}`,
    `log.dirs=${join(dir, 'data')}`,
    'num.partitions=1',
    'auto.create.topics.enable=false',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=8',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'group.consumer.heartbeat.interval.ms=1000',
    'group.consumer.min.heartbeat.interval.ms=1000',
    'group.consumer.session.timeout.ms=10000',
    'group.consumer.min.session.timeout.ms=6000',
    'group.min.session.timeout.ms=3000',
    'log.flush.interval.messages=9223372036854775807',
    ...(scram && tls
      ? [
          'sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
          // PLAIN checks the same users against the listener's own list (over TLS only).
          `listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${scram
            .map((u) => `user_${u.username}="${u.password}"`)
            .join(' ')};`,
          `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
          `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
          `ssl.keystore.location=${tls.keystore}`,
          `ssl.keystore.password=${tls.password}`,
          'ssl.keystore.type=PKCS12',
          'ssl.enabled.protocols=TLSv1.3,TLSv1.2',
        ]
      : []),
  ];
  const config = join(dir, 'server.properties');
  writeFileSync(config, `${properties.join('\n')}\n`);
  const classpath = `${libs}/*`;
  const formatArgs = [
    '-cp',
    classpath,
    'kafka.tools.StorageTool',
    'format',
    '--standalone',
    // One argument with "=": an id that starts with "-" (1 in 64) is otherwise read as an option.
    `--cluster-id=${clusterId()}`,
    '-c',
    config,
    ...(scram ?? []).flatMap((u) => [
      '--add-scram',
      `SCRAM-SHA-256=[name=${u.username},password=${u.password}]`,
      '--add-scram',
      `SCRAM-SHA-512=[name=${u.username},password=${u.password}]`,
    ]),
  ];
  try {
    await run('java', formatArgs, { maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`formatting the Kafka storage failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  let output = '';
  const onData = (d: Buffer) => {
    const text = d.toString();
    output += text;
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
    if (options.log) for (const line of text.split('\n')) if (line) options.log(line);
  };
  /** Starts the broker process on the formatted storage and waits until it serves. */
  const launch = async (): Promise<ChildProcess> => {
    const started = output.length;
    const child = spawn(
      'java',
      [
        '-Xms256m',
        '-Xmx768m',
        ...(options.jvm === 'lean' ? ['-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1'] : ['-XX:+UseG1GC']),
        `-Dlog4j.configuration=`,
        '-cp',
        classpath,
        'kafka.Kafka',
        config,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    try {
      await waitForReady(child, () => output.slice(started));
    } catch (err) {
      await stopChild(child);
      throw err;
    }
    return child;
  };
  let child: ChildProcess;
  try {
    child = await launch();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const broker: KafkaBroker = {
    bootstrap: `127.0.0.1:${port}`,
    ...(scram && tls ? { sasl: { bootstrap: `127.0.0.1:${saslPort}`, caPem: tls.certPem } } : {}),
    pid: child.pid!,
    output: () => output,
    stop: () => stopChild(child).finally(() => rmSync(dir, { recursive: true, force: true })),
    restart: async () => {
      await stopChild(child);
      child = await launch();
      broker.pid = child.pid!;
    },
  };
  return broker;
}

/** A random KRaft cluster id (16 bytes, base64url without padding, as `kafka-storage random-uuid`). */
function clusterId(): string {
  return Buffer.from(randomUUID().replace(/-/g, ''), 'hex').toString('base64url');
}

function waitForReady(child: ChildProcess, output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(`the Kafka broker did not start within ${START_TIMEOUT_MS} ms:\n${output().slice(-5000)}`),
      );
    }, START_TIMEOUT_MS);
    const check = () => {
      if (output().includes(READY_LINE)) {
        cleanup();
        resolve();
      }
    };
    const exited = (code: number | null) => {
      cleanup();
      reject(new Error(`the Kafka broker exited with ${code} while starting:\n${output().slice(-5000)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      child.off('exit', exited);
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', exited);
    check();
  });
}

/** TERM, then KILL if it has not exited in STOP_TIMEOUT_MS. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** A PKCS12 keystore with a self-signed certificate for 127.0.0.1, and that certificate as PEM. */
async function makeKeystore(dir: string): Promise<{ keystore: string; password: string; certPem: string }> {
  const keystore = join(dir, 'broker.p12');
  const password = randomUUID();
  await run('keytool', [
    '-genkeypair',
    '-alias',
    'broker',
    '-keyalg',
    'EC',
    '-groupname',
    'secp256r1',
    '-dname',
    'CN=127.0.0.1',
    '-ext',
    'SAN=IP:127.0.0.1,DNS:localhost',
    '-validity',
    '2',
    '-storetype',
    'PKCS12',
    '-keystore',
    keystore,
    '-storepass',
    password,
  ]);
  const { stdout } = await run('keytool', [
    '-exportcert',
    '-rfc',
    '-alias',
    'broker',
    '-keystore',
    keystore,
    '-storepass',
    password,
  ]);
  return { keystore, password, certPem: stdout };
}

if (import.meta.main && process.argv.includes('--fetch')) {
  process.stdout.write(`kafka ${KAFKA_VERSION} jars in ${await ensureKafkaJars()}\n`);
} else if (import.meta.main) {
  const broker = await startKafkaBroker({
    ...(process.argv.includes('--scram')
      ? { scram: [{ username: 'webhooks', password: 'webhooks-secret' }] }
      : {}),
  });
  process.stdout.write(
    `kafka ${KAFKA_VERSION} at ${broker.bootstrap}${broker.sasl ? ` (SASL_SSL ${broker.sasl.bootstrap})` : ''}\n`,
  );
  const shutdown = () => void broker.stop().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
