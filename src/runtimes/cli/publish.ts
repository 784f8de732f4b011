/**
 * `webhooks publish`: sends CloudEvents from a file or stdin to the platform's `POST /events`, so a
 * developer can try a flow without writing a producer. One object is sent as a structured event; an
 * array or JSON lines go as one batch.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../common/config.ts';
import { toKafkaRecord } from '../../common/envelope-kafka.ts';
import { parseStructuredEvent } from '../../common/envelope-structured.ts';
import { ValidationError } from '../../common/errors.ts';
import { isJsonObject, type JsonObject } from '../../common/json.ts';
import { ingressTopic } from '../../common/topics.ts';
import { ingressKey } from '../../ingest/service.ts';
import { kafkaSettings } from '../engines.ts';
import { callApi } from './api-client.ts';
import { configure, platformUrl } from './configure.ts';

const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';

/** The events read from the input and whether they travel as a batch. */
export interface PublishInput {
  events: JsonObject[];
  batch: boolean;
}

/** Parses one event, an array, or JSON lines; fills in `specversion`, `id` and `time` when missing. */
export function parseEventsInput(text: string, forceBatch = false, now: Date = new Date()): PublishInput {
  if (text.trim() === '')
    throw invalid('input', 'the input is empty: give one event, an array or JSON lines');
  let parsed: unknown;
  let events: unknown[];
  let batch: boolean;
  try {
    parsed = JSON.parse(text);
    batch = Array.isArray(parsed) || forceBatch;
    events = Array.isArray(parsed) ? parsed : [parsed];
  } catch (err) {
    const lines = text.split('\n').filter((line) => line.trim() !== '');
    // A single line that does not parse is plain bad JSON, not JSON lines.
    if (lines.length < 2) throw invalid('input', `not valid JSON: ${(err as Error).message}`);
    events = lines.map((line, i) => {
      try {
        return JSON.parse(line);
      } catch (lineErr) {
        throw invalid(`line ${i + 1}`, `not valid JSON: ${(lineErr as Error).message}`);
      }
    });
    batch = true;
  }
  if (events.length === 0) throw invalid('input', 'the array holds no events');
  const time = now.toISOString();
  return {
    batch,
    events: events.map((event, i) => {
      if (!isJsonObject(event)) throw invalid(batch ? `[${i}]` : 'input', 'an event must be a JSON object');
      return {
        specversion: '1.0',
        id: randomUUID(),
        ...event,
        ...(event.time === undefined ? { time } : {}),
      };
    }),
  };
}

/** The admin token: the flag, else WEBHOOKS_ADMIN_TOKEN, else `<data dir>/admin-token` as `webhooks start` wrote it. */
export function resolveAdminToken(
  flag: string | undefined,
  env: Record<string, string | undefined>,
  dataDir?: string,
): string {
  if (flag) return flag;
  if (env.WEBHOOKS_ADMIN_TOKEN) return env.WEBHOOKS_ADMIN_TOKEN;
  const file = join(dataDir ?? env.WEBHOOKS_DATA_DIR ?? './.webhooks', 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw invalid(
    '--token',
    `no admin token: pass --token, set WEBHOOKS_ADMIN_TOKEN, or run from where ${file} exists`,
  );
}

/**
 * The running platform's URL and admin token: `--url` and `--token` when given, else found as
 * `webhooks start` is configured (environment, config file, port, host, TLS, data dir).
 */
export function platformTarget(
  values: { url?: string; token?: string; 'data-dir'?: string; config?: string },
  env: Record<string, string | undefined> = process.env,
): { url: string; token: string } {
  const needed = values.url === undefined || (values.token === undefined && !env.WEBHOOKS_ADMIN_TOKEN);
  const config = needed
    ? configure({ 'data-dir': values['data-dir'], config: values.config }, env)
    : undefined;
  const url = values.url ?? platformUrl(config!);
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    throw invalid('--url', `--url must be an http(s) URL, got "${url}"`);
  }
  const token = resolveAdminToken(
    values.token,
    { ...env, WEBHOOKS_ADMIN_TOKEN: config?.adminToken ?? env.WEBHOOKS_ADMIN_TOKEN },
    config?.dataDir ?? values['data-dir'],
  );
  return { url, token };
}

/** The call's answer, or undefined (exit code 1, the cause said) when the platform cannot be reached. */
export async function reaching<T>(
  command: string,
  url: string,
  call: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    process.stderr.write(`webhooks ${command}: cannot reach ${url}: ${why}\n`);
    process.exitCode = 1;
    return undefined;
  }
}

/** POSTs the events to `{url}/events`; resolves with the status and the parsed (or raw) body. */
export function publishEvents(
  url: string,
  token: string,
  input: PublishInput,
): Promise<{ status: number; body: unknown }> {
  return callApi(url, token, 'POST', '/events', {
    text: JSON.stringify(input.batch ? input.events : input.events[0]),
    contentType: input.batch ? BATCH : STRUCTURED,
  });
}

/**
 * Writes the events to their ingress topics on Kafka as a producer outside the platform would: in
 * the CloudEvents Kafka binding (binary mode by default, or structured), keyed like `POST /events`
 * keys them. The topic is `ingress.<domain>.<event>.v<version>`: the version from `schemaVersion`,
 * else the event's `schemaversion`/`dataschema`, else 1. Connection settings come from the
 * WEBHOOKS_KAFKA_* variables (TLS, SASL), the brokers from `brokers`.
 */
export async function publishToKafka(
  brokers: string,
  input: PublishInput,
  options: { mode: 'binary' | 'structured'; schemaVersion?: number },
  env: Record<string, string | undefined> = process.env,
): Promise<Array<{ id: string; topic: string }>> {
  const envelopes = input.events.map((event) => parseStructuredEvent(event));
  const config = loadConfig({ ...env, WEBHOOKS_BUS: 'kafka', WEBHOOKS_KAFKA_BROKERS: brokers });
  const { KafkaBus } = await import('../../engines/kafka/bus.ts');
  const bus = new KafkaBus(kafkaSettings(config));
  try {
    const messages = envelopes.map((envelope) => {
      const record = toKafkaRecord(envelope, options.mode);
      const version = options.schemaVersion ?? envelope.schemaVersion ?? 1;
      return {
        topic: ingressTopic(envelope.domain, envelope.event, version),
        key: ingressKey(envelope),
        ...record,
      };
    });
    await bus.publish(messages);
    return messages.map((m, i) => ({ id: envelopes[i]!.id, topic: m.topic }));
  } finally {
    await bus.close();
  }
}

/** `webhooks publish [FILE|-] [--url U] [--token T] [--batch]`: exit code 0 on 2xx, 1 otherwise. */
export async function publishCommand(argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      batch: { type: 'boolean' },
      'data-dir': { type: 'string' },
      kafka: { type: 'string' },
      mode: { type: 'string' },
      'schema-version': { type: 'string' },
      config: { type: 'string' },
    },
  });
  if (positionals.length > 1) {
    throw invalid(
      'FILE',
      `one file at a time (or - for stdin), got ${positionals.length}: ${positionals.join(' ')}`,
    );
  }
  if (values.kafka === undefined) {
    for (const option of ['mode', 'schema-version'] as const) {
      if (values[option] !== undefined)
        throw invalid(`--${option}`, `--${option} goes with --kafka (the API reads both from the events)`);
    }
  }
  if (values.kafka !== undefined) {
    const mode = values.mode ?? 'binary';
    if (mode !== 'binary' && mode !== 'structured')
      throw invalid('--mode', `--mode is binary or structured, got "${mode}"`);
    const version = values['schema-version'];
    if (version !== undefined && !/^[1-9]\d{0,8}$/.test(version))
      throw invalid('--schema-version', `--schema-version must be a whole number from 1, got "${version}"`);
    const file = positionals[0] ?? '-';
    const input = parseEventsInput(file === '-' ? await readStdin() : await readFile(file, 'utf8'), true);
    const written = await publishToKafka(values.kafka, input, {
      mode,
      ...(version !== undefined ? { schemaVersion: Number(version) } : {}),
    });
    process.stdout.write(`${JSON.stringify({ published: written }, null, 2)}\n`);
    return;
  }
  const { url, token } = platformTarget(values);
  const file = positionals[0] ?? '-';
  const input = parseEventsInput(
    file === '-' ? await readStdin() : await readFile(file, 'utf8'),
    values.batch,
  );

  const result = await reaching('publish', url, () => publishEvents(url, token, input));
  if (!result) return;
  process.stdout.write(`${JSON.stringify(result.body, null, 2)}\n`);
  if (result.status >= 200 && result.status < 300) return;
  process.exitCode = 1;
  process.stderr.write(`webhooks publish: HTTP ${result.status}${describeError(result.body)}\n`);
}

/** The contract's error body as text for a terminal: ` code: message` and one line per detail. */
export function describeError(body: unknown): string {
  const error = isJsonObject(body) && isJsonObject(body.error) ? body.error : undefined;
  if (!error) return '';
  let text = ` ${String(error.code)}: ${String(error.message)}`;
  for (const d of Array.isArray(error.details) ? error.details : []) {
    if (isJsonObject(d)) text += `\n  - ${d.field ? `${String(d.field)}: ` : ''}${String(d.message)}`;
  }
  return text;
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('reading events from stdin (end with Ctrl-D)\n');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** A command-line input error naming the option. */
export function invalid(field: string, message: string): ValidationError {
  return new ValidationError('input_invalid', message, { details: [{ field, message }] });
}
