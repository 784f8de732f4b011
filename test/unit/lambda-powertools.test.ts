/**
 * The Powertools adapters of the Lambda runtime, against the real Powertools packages: the project
 * logger's lines as Powertools JSON on stdout/stderr (fields, correlation id, redaction), the
 * registry's deltas as CloudWatch EMF documents, and X-Ray subsegments of partner requests sent to
 * a fake X-Ray daemon (a UDP socket) in the X-Ray SDK's Lambda mode — driven here as Lambda does it:
 * `LAMBDA_TASK_ROOT` set before the SDK loads, the invocation's trace header in `_X_AMZN_TRACE_ID`.
 * Ends with one dispatcher "invocation" through all three.
 *
 * The environment must be in place before the X-Ray SDK is loaded, so everything but Node's own
 * modules is imported dynamically below (each test file runs in a process of its own).
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

// --- A fake X-Ray daemon, and the environment of a Lambda invocation with active tracing. ---
const daemon = createSocket('udp4');
const xrayDocuments: Record<string, any>[] = [];
daemon.on('message', (msg) => {
  // `{"format":"json","version":1}\n{…segment document…}`
  const text = msg.toString('utf8');
  xrayDocuments.push(JSON.parse(text.slice(text.indexOf('\n') + 1)));
});
await new Promise<void>((resolve) => daemon.bind(0, '127.0.0.1', resolve));
daemon.unref();

const TRACE_ROOT = `1-${Math.floor(Date.now() / 1000).toString(16)}-0123456789abcdef01234567`;
const FACADE_PARENT = '53995c3f42cd8ad8';
const SERVICE = 'webhooks-test';
Object.assign(process.env, {
  AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${(daemon.address() as AddressInfo).port}`,
  _X_AMZN_TRACE_ID: `Root=${TRACE_ROOT};Parent=${FACADE_PARENT};Sampled=1`,
  LAMBDA_TASK_ROOT: process.cwd(),
  AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
  AWS_LAMBDA_FUNCTION_NAME: 'webhooks-dispatcher',
  AWS_REGION: 'eu-west-1',
  POWERTOOLS_SERVICE_NAME: SERVICE,
  AWS_XRAY_LOG_LEVEL: 'silent',
});
for (const key of [
  'POWERTOOLS_METRICS_NAMESPACE',
  'POWERTOOLS_DEV',
  'POWERTOOLS_LOG_LEVEL',
  'AWS_LAMBDA_LOG_LEVEL',
])
  delete process.env[key];

const {
  createEmfMetrics,
  createLambdaLogger,
  createLambdaTracer,
  EMF_METRICS,
  latencySamples,
  SOURCE_METRICS,
  traceBatch,
  traceDeliveryClient,
} = await import('../../src/runtimes/lambda/powertools.ts');
const { Logger, registerSecret, withCorrelationId } = await import('../../src/common/log.ts');
const { Counter, DEFAULT_BUCKETS, Histogram, MetricsRegistry } = await import('../../src/common/metrics.ts');
const { EventProcessor } = await import('../../src/processor/processor.ts');
const { WebhookDispatcher } = await import('../../src/dispatcher/dispatcher.ts');
const { EndpointLimiter } = await import('../../src/dispatcher/endpoint-limiter.ts');
const { UndiciDeliveryClient } = await import('../../src/engines/http/delivery-client.ts');
const { SqliteStore } = await import('../../src/engines/sqlite/store.ts');
const { webhookIdOf } = await import('../../src/common/delivery-task.ts');
const { partnerRecord, subscriptionRecord } = await import('../support/fixtures.ts');
const { startReceiver } = await import('../support/receiver.ts');
const { recordingDeadLetterSink } = await import('../support/sinks.ts');
const { Tracer } = await import('@aws-lambda-powertools/tracer');

type Registry = InstanceType<typeof MetricsRegistry>;
type CounterT = InstanceType<typeof Counter>;
type HistogramT = InstanceType<typeof Histogram>;

/** What `fn` writes to stdout and stderr, line by line (Powertools writes through `Console`s on both). */
function capture(fn: () => void): { stdout: string[]; stderr: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const realOut = process.stdout.write;
  const realErr = process.stderr.write;
  const into = (lines: string[]) =>
    ((chunk: string | Uint8Array) => {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = into(out);
  process.stderr.write = into(err);
  try {
    fn();
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
  return { stdout: out, stderr: err };
}

const parseAll = (lines: string[]) => lines.map((l) => JSON.parse(l) as Record<string, any>);

async function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(10);
  }
}

const counter = (registry: Registry, name: string) => registry.find(name) as CounterT;
const histogram = (registry: Registry, name: string) => registry.find(name) as HistogramT;
/** The EMF documents among lines, each as `{ dims, values, doc }`. */
function emf(lines: string[]) {
  return parseAll(lines).map((doc) => {
    const directive = doc._aws.CloudWatchMetrics[0];
    const values: Record<string, number | number[]> = {};
    for (const m of directive.Metrics) values[m.Name] = doc[m.Name];
    return { doc, directive, dims: directive.Dimensions as string[][], values };
  });
}

describe('Lambda logger through Powertools', () => {
  test('lines go out as Powertools JSON: level, message, service, the project fields, correlation_id', () => {
    const { logger } = createLambdaLogger({
      level: 'debug',
      bindings: { service: SERVICE, component: 'dispatcher' },
    });
    const { stdout, stderr } = capture(() => {
      withCorrelationId('corr-42', () => logger.info('delivered', { deliveryId: 'dlv_1', status: 204 }));
      logger.debug('detail', { step: 2 });
      logger.warn('slow partner', { partner: 'acme', message: 'field named message', timestamp: 'x' });
      withCorrelationId('corr-43', () => logger.error('failed', { err: new Error('boom') }));
    });
    const [info, debug] = parseAll(stdout);
    const [warn, error] = parseAll(stderr);
    assert.equal(stdout.length, 2, 'info and debug on stdout');
    assert.equal(stderr.length, 2, 'warn and error on stderr, as Powertools writes them');
    assert.equal(info!.level, 'INFO');
    assert.equal(info!.message, 'delivered');
    assert.equal(info!.service, SERVICE);
    assert.equal(typeof info!.timestamp, 'string');
    assert.equal(info!.deliveryId, 'dlv_1');
    assert.equal(info!.status, 204);
    assert.equal(info!.component, 'dispatcher');
    assert.equal(info!.correlationId, 'corr-42', 'the project field stays');
    assert.equal(info!.correlation_id, 'corr-42', 'and is Powertools’ correlation id');
    assert.equal(info!.xray_trace_id, TRACE_ROOT);
    assert.equal(info!.msg, undefined);
    assert.equal(info!.time, undefined);
    assert.equal(
      info!.app_service,
      undefined,
      'the service binding repeating the Powertools service is dropped',
    );
    assert.equal(debug!.level, 'DEBUG');
    assert.equal(debug!.correlation_id, undefined, 'no correlation id outside withCorrelationId');
    assert.equal(warn!.level, 'WARN');
    assert.equal(warn!.message, 'slow partner');
    assert.equal(warn!.app_message, 'field named message', 'a reserved name is renamed, not dropped');
    assert.equal(warn!.app_timestamp, 'x');
    assert.equal(error!.level, 'ERROR');
    assert.equal(error!.correlation_id, 'corr-43', 'per line: not left over from another line');
    assert.equal(error!.err.name, 'Error');
    assert.equal(error!.err.message, 'boom');
    assert.ok(![...stdout, ...stderr].some((l) => l.includes('reserved key')), 'no Powertools warnings');
  });

  test('secrets the project logger redacts never reach the Powertools lines', () => {
    const adminToken = 'adm-0123456789-secret-value';
    registerSecret(adminToken);
    const { logger } = createLambdaLogger({ level: 'info' });
    const { stdout, stderr } = capture(() =>
      withCorrelationId(`corr-${adminToken}`, () =>
        logger.error(`token ${adminToken} refused`, {
          authorization: 'Bearer abcdefghijklmnop',
          signing: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
          nested: { password: 'hunter2hunter2', note: `has ${adminToken}` },
        }),
      ),
    );
    const all = [...stdout, ...stderr].join('\n');
    for (const secret of [
      adminToken,
      'abcdefghijklmnop',
      'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
      'hunter2hunter2',
    ])
      assert.ok(!all.includes(secret), `${secret} leaked: ${all}`);
    const [line] = parseAll(stderr);
    assert.equal(line!.message, 'token [REDACTED] refused');
    assert.equal(line!.correlation_id, 'corr-[REDACTED]');
    assert.equal(line!.nested.password, '[REDACTED]');
  });

  test('addContext puts the invocation’s Lambda context on every line; the level follows Powertools', () => {
    const logging = createLambdaLogger();
    assert.equal(logging.powertools.getLevelName(), 'INFO');
    assert.equal(logging.logger.isLevelEnabled('debug'), false, 'Powertools prints no debug: not written');
    logging.addContext({
      callbackWaitsForEmptyEventLoop: true,
      functionName: 'webhooks-dispatcher',
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:webhooks-dispatcher',
      memoryLimitInMB: '512',
      awsRequestId: 'req-1',
      logGroupName: '/aws/lambda/webhooks-dispatcher',
      logStreamName: 's',
      getRemainingTimeInMillis: () => 1000,
      done: () => {},
      fail: () => {},
      succeed: () => {},
    });
    const { stdout } = capture(() => logging.logger.info('hello'));
    const [line] = parseAll(stdout);
    assert.equal(line!.function_request_id, 'req-1');
    assert.equal(line!.function_name, 'webhooks-dispatcher');
    assert.equal(typeof line!.cold_start, 'boolean');
  });
});

describe('EMF metrics from the registry', () => {
  /** A registry with the families the real components register (their constructors register them). */
  function componentRegistry(): Registry {
    const registry = new MetricsRegistry();
    const logger = new Logger({ sink: { write() {} } });
    new EventProcessor({ metrics: registry, logger } as never);
    new WebhookDispatcher({ metrics: registry, logger, limiter: new EndpointLimiter() } as never);
    return registry;
  }

  test('the first flush publishes everything counted so far, by service and by partner', () => {
    const registry = componentRegistry();
    counter(registry, SOURCE_METRICS.eventsProcessed).inc(5);
    counter(registry, SOURCE_METRICS.eventsToRetry).inc(2);
    counter(registry, SOURCE_METRICS.eventsToDlq).inc({ reason: 'schema_invalid' }, 1);
    counter(registry, SOURCE_METRICS.eventsToDlq).inc({ reason: 'retries_exhausted' }, 2);
    const outcomes = counter(registry, SOURCE_METRICS.deliveries);
    outcomes.inc({ outcome: 'success' }, 4);
    outcomes.inc({ outcome: 'retry' }, 2);
    outcomes.inc({ outcome: 'failed' }, 1);
    outcomes.inc({ outcome: 'gone' }, 1);
    outcomes.inc({ outcome: 'deferred' }, 3);
    const responses = counter(registry, SOURCE_METRICS.responses);
    responses.inc({ partner: 'acme', status: '200' }, 3);
    responses.inc({ partner: 'acme', status: '503' }, 1);
    for (const status of ['410', 'timeout', 'forbidden_address', '400'])
      responses.inc({ partner: 'globex', status });
    const latency = histogram(registry, SOURCE_METRICS.deliveryDuration);
    for (const s of [0.03, 0.04, 0.2]) latency.observe({ partner: 'acme' }, s);
    latency.observe({ partner: 'globex' }, 1.5);

    const metrics = createEmfMetrics({ registry });
    const docs = emf(capture(() => metrics.flush()).stdout);
    assert.equal(docs.length, 3, 'one [service] document, one per partner');
    const [service, acme, globex] = docs;
    for (const d of docs) {
      assert.equal(d.directive.Namespace, 'Webhooks');
      assert.equal(d.doc.service, SERVICE);
      assert.equal(typeof d.doc._aws.Timestamp, 'number');
    }
    assert.deepEqual(service!.dims, [['service']]);
    assert.deepEqual(service!.values, {
      events_processed: 5,
      events_to_retry: 2,
      events_to_dlq: 3,
      deliveries_succeeded: 4,
      deliveries_retried: 2,
      deliveries_failed: 2,
    });
    for (const m of service!.directive.Metrics) assert.equal(m.Unit, 'Count');

    assert.deepEqual(acme!.dims, [['service', 'partner']]);
    assert.equal(acme!.doc.partner, 'acme');
    const { delivery_latency: acmeLatency, ...acmeCounts } = acme!.values;
    assert.deepEqual(acmeCounts, { deliveries_succeeded: 3, deliveries_retried: 1, deliveries_failed: 0 });
    assert.equal(
      acme!.directive.Metrics.find((m: any) => m.Name === EMF_METRICS.deliveryLatency).Unit,
      'Milliseconds',
    );
    assert.ok(Array.isArray(acmeLatency) && acmeLatency.length === 3, 'one value per observation');
    const values = acmeLatency as number[];
    assert.ok(Math.abs(values.reduce((a, b) => a + b, 0) - 270) < 1e-6, `exact sum: ${values}`);
    assert.ok(values[0]! > 25 && values[0]! <= 50 && values[1]! > 25 && values[1]! <= 50, 'in its bucket');
    assert.ok(values[2]! > 100 && values[2]! <= 250, 'in its bucket');

    assert.equal(globex!.doc.partner, 'globex');
    assert.deepEqual(globex!.values, {
      deliveries_succeeded: 0,
      deliveries_retried: 1,
      deliveries_failed: 3,
      delivery_latency: 1500,
    });
  });

  test('a flush with nothing new prints nothing; the next prints only the new deltas', () => {
    const registry = componentRegistry();
    const metrics = createEmfMetrics({ registry });
    counter(registry, SOURCE_METRICS.eventsProcessed).inc(3);
    counter(registry, SOURCE_METRICS.responses).inc({ partner: 'acme', status: '204' }, 2);
    assert.equal(emf(capture(() => metrics.flush()).stdout).length, 2);

    const quiet = capture(() => metrics.flush());
    assert.deepEqual(quiet, { stdout: [], stderr: [] }, 'nothing changed: no document, no warning');

    counter(registry, SOURCE_METRICS.eventsProcessed).inc(1);
    counter(registry, SOURCE_METRICS.deliveries).inc({ outcome: 'success' });
    counter(registry, SOURCE_METRICS.responses).inc({ partner: 'acme', status: '204' });
    counter(registry, SOURCE_METRICS.responses).inc({ partner: 'initech', status: '500' }, 0);
    histogram(registry, SOURCE_METRICS.deliveryDuration).observe({ partner: 'acme' }, 0.01);
    const docs = emf(capture(() => metrics.flush()).stdout);
    assert.equal(docs.length, 2, 'initech did not change: no document for it');
    assert.deepEqual(docs[0]!.values, {
      events_processed: 1,
      events_to_retry: 0,
      events_to_dlq: 0,
      deliveries_succeeded: 1,
      deliveries_retried: 0,
      deliveries_failed: 0,
    });
    assert.deepEqual(docs[1]!.values, {
      deliveries_succeeded: 1,
      deliveries_retried: 0,
      deliveries_failed: 0,
      delivery_latency: 10,
    });
    assert.equal(capture(() => metrics.flush()).stdout.length, 0);
  });

  test('only the families the registry has are published (a processor has no deliveries)', () => {
    const registry = new MetricsRegistry();
    new EventProcessor({ metrics: registry, logger: new Logger({ sink: { write() {} } }) } as never);
    counter(registry, SOURCE_METRICS.eventsProcessed).inc(2);
    const docs = emf(capture(() => createEmfMetrics({ registry, namespace: 'Custom' }).flush()).stdout);
    assert.equal(docs.length, 1);
    assert.equal(docs[0]!.directive.Namespace, 'Custom');
    assert.deepEqual(docs[0]!.values, { events_processed: 2, events_to_retry: 0, events_to_dlq: 0 });
  });

  test('more than 100 latencies of a partner take several documents, the counts in the first', () => {
    const registry = componentRegistry();
    const latency = histogram(registry, SOURCE_METRICS.deliveryDuration);
    let sum = 0;
    for (let i = 0; i < 250; i++) {
      const s = 0.001 + (i % 50) * 0.004;
      sum += s;
      latency.observe({ partner: 'acme' }, s);
    }
    counter(registry, SOURCE_METRICS.responses).inc({ partner: 'acme', status: '200' }, 250);
    const docs = emf(capture(() => createEmfMetrics({ registry }).flush()).stdout);
    assert.equal(docs.length, 3);
    const lengths = docs.map((d) => (d.values.delivery_latency as number[]).length);
    assert.deepEqual(lengths, [100, 100, 50]);
    assert.equal(docs[0]!.values.deliveries_succeeded, 250);
    assert.equal(docs[1]!.values.deliveries_succeeded, undefined, 'counted once');
    for (const d of docs) assert.deepEqual(d.dims, [['service', 'partner']]);
    const total = docs.flatMap((d) => d.values.delivery_latency as number[]).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - sum * 1000) < 1e-3, `sum kept: ${total} vs ${sum * 1000}`);
  });

  test('a partner series dropped as idle and counted again counts from zero; reading keeps none alive', () => {
    let now = 0;
    const registry = new MetricsRegistry({ now: () => now });
    new WebhookDispatcher({
      metrics: registry,
      logger: new Logger({ sink: { write() {} } }),
      limiter: new EndpointLimiter(),
    } as never);
    const responses = counter(registry, SOURCE_METRICS.responses);
    const metrics = createEmfMetrics({ registry });
    responses.inc({ partner: 'acme', status: '200' }, 5);
    assert.equal(emf(capture(() => metrics.flush()).stdout)[0]!.values.deliveries_succeeded, 5);
    now += 2 * 3_600_000;
    assert.deepEqual(responses.labelSets(), [{ partner: 'acme', status: '200' }]);
    capture(() => metrics.flush());
    responses.inc({ partner: 'globex', status: '200' }); // an update sweeps: acme, idle 2 h, goes
    assert.deepEqual(responses.labelSets(), [{ partner: 'globex', status: '200' }]);
    responses.inc({ partner: 'acme', status: '200' }, 2);
    const docs = emf(capture(() => metrics.flush()).stdout);
    assert.deepEqual(
      docs.map((d) => [d.doc.partner, d.values.deliveries_succeeded]),
      [
        ['acme', 2],
        ['globex', 1],
      ],
    );
  });

  test('flush never throws: a failure is logged', () => {
    const lines: string[] = [];
    const registry = {
      find() {
        throw new Error('registry broken');
      },
    } as unknown as Registry;
    const metrics = createEmfMetrics({
      registry,
      logger: new Logger({ sink: { write: (l) => lines.push(l) } }),
    });
    assert.doesNotThrow(() => metrics.flush());
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /publishing the metrics \(EMF\) failed.*registry broken/);
  });

  test('latency samples: one per observation, within its bucket, adding up to the exact sum', () => {
    const buckets = [0.1, 1];
    assert.deepEqual(latencySamples(buckets, [0, 2, 0], 1.0), [0.5, 0.5], 'a lone bucket: the mean');
    assert.deepEqual(
      latencySamples(buckets, [1, 0, 2], 6.05),
      [0.05, 3, 3],
      'above the last bound: the rest',
    );
    const low = latencySamples(buckets, [0, 1, 1], 1.25);
    assert.equal(low.length, 2);
    assert.ok(low[0]! > 0.1 && low[0]! <= 1 && low[1]! >= 1);
    assert.ok(Math.abs(low[0]! + low[1]! - 1.25) < 1e-12);
    assert.deepEqual(latencySamples(DEFAULT_BUCKETS, new Array(DEFAULT_BUCKETS.length + 1).fill(0), 0), []);
  });
});

describe('X-Ray subsegments of partner requests (Lambda mode, fake daemon)', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let refusedUrl: string;
  const undici = new UndiciDeliveryClient({ allowInsecure: true });
  const tracer = createLambdaTracer();

  before(async () => {
    receiver = await startReceiver({
      tls: false,
      answer: (_n, d) => ({ status: d.path.startsWith('/down') ? 503 : 204 }),
    });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    refusedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/hook`;
    await new Promise((r) => closed.close(r));
  });
  after(async () => {
    await undici.close();
    await receiver.close();
  });

  const request = (url: string, headers: Record<string, string> = {}) => ({
    url,
    headers: { 'content-type': 'application/json', 'webhook-id': `msg_${Math.random()}`, ...headers },
    body: '{}',
    timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 2000 },
    maxResponseBytes: 1024,
  });
  const subsegmentOf = (webhookId: string) =>
    waitFor(`the subsegment of ${webhookId}`, () =>
      xrayDocuments.find((d) => d.annotations?.webhook_id === webhookId),
    );

  test('tracing is on in the Lambda environment', () => {
    assert.equal(tracer.isTracingEnabled(), true);
  });

  test('a request becomes a remote subsegment naming the host, with its status; headers go untouched', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const client = traceDeliveryClient(undici, tracer);
    const sent = request(`${receiver.url}/hooks?token=not-in-traces`, {
      traceparent,
      tracestate: 'vendor=x',
      'x-correlation-id': 'corr-7',
    });
    const snapshot = structuredClone(sent);
    const batch = await traceBatch(
      tracer,
      '### test batch',
      async () => Promise.all([client.send(sent), client.send(request(`${receiver.url}/down`))]),
      { records: 2 },
    );
    assert.equal(batch[0].ok && batch[0].status, 204);
    assert.deepEqual(sent, snapshot, 'the request is not changed');
    const host = new URL(receiver.url).host;

    const ok = await subsegmentOf(sent.headers['webhook-id']);
    assert.equal(ok.type, 'subsegment');
    assert.equal(ok.name, host);
    assert.equal(ok.namespace, 'remote');
    assert.equal(ok.trace_id, TRACE_ROOT);
    assert.deepEqual(ok.http, { request: { method: 'POST', url: receiver.url }, response: { status: 204 } });
    assert.equal(ok.annotations.host, host);
    assert.equal(ok.annotations.http_status, 204);
    assert.equal(ok.annotations.correlation_id, 'corr-7');
    assert.equal(typeof ok.metadata[SERVICE].latency_ms, 'number');
    assert.equal(ok.fault, undefined);
    assert.equal(ok.error, undefined);
    assert.ok(!JSON.stringify(ok).includes('not-in-traces'), 'no path or query in the trace');

    const batchDoc = await waitFor('the batch subsegment', () =>
      xrayDocuments.find((d) => d.name === '### test batch'),
    );
    assert.equal(ok.parent_id, batchDoc.id, 'nested under the batch subsegment');
    assert.equal(batchDoc.parent_id, FACADE_PARENT, 'the batch under the function’s segment');
    assert.equal(batchDoc.annotations.records, 2);

    const down = xrayDocuments.find((d) => d.annotations?.http_status === 503);
    assert.equal(down?.fault, true, 'a 5xx is a fault');

    const received = receiver.received.find((r) => r.path.startsWith('/hooks'))!;
    assert.equal(received.headers.traceparent, traceparent, 'traceparent sent unchanged');
    assert.equal(received.headers.tracestate, 'vendor=x');
    assert.equal(received.headers['x-amzn-trace-id'], undefined, 'no X-Ray header added to partner requests');
  });

  test('a refused connection is a fault subsegment with the error kind as a remote exception', async () => {
    const client = traceDeliveryClient(undici, tracer);
    const sent = request(refusedUrl);
    const result = await traceBatch(tracer, '### refused', () => client.send(sent));
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.kind, 'connect');
    const doc = await subsegmentOf(sent.headers['webhook-id']);
    assert.equal(doc.name, new URL(refusedUrl).host);
    assert.equal(doc.fault, true);
    assert.equal(doc.annotations.error_kind, 'connect');
    assert.equal(doc.http.response, undefined);
    assert.equal(doc.cause.exceptions[0].type, 'connect');
    assert.equal(doc.cause.exceptions[0].remote, true);
    assert.match(doc.metadata[SERVICE].error, /^connect: /);
  });

  test('a send that throws closes its subsegment with the error and throws it on', async () => {
    const failing = {
      send: async () => {
        throw new Error('client broken');
      },
      close: async () => {},
    };
    const client = traceDeliveryClient(failing, tracer);
    const sent = request('https://partner.example/hook');
    await assert.rejects(
      traceBatch(tracer, '### throws', () => client.send(sent)),
      /client broken/,
    );
    const doc = await subsegmentOf(sent.headers['webhook-id']);
    assert.equal(doc.fault, true);
    assert.equal(doc.cause.exceptions[0].message, 'client broken');
    const batchDoc = await waitFor('the failed batch', () =>
      xrayDocuments.find((d) => d.name === '### throws'),
    );
    assert.equal(batchDoc.fault, true);
  });

  test('with tracing off the decorator passes the same request straight through', async () => {
    const off = new Tracer({ enabled: false });
    const seen: unknown[] = [];
    const inner = {
      send: async (r: unknown) => {
        seen.push(r);
        return { ok: true as const, status: 204, headers: {}, body: '', latencyMs: 1 };
      },
      close: async () => {},
    };
    const sent = request('https://partner.example/hook', { traceparent: '00-aa-bb-01' });
    const before = xrayDocuments.length;
    const result = await traceBatch(off, '### off', () => traceDeliveryClient(inner, off).send(sent));
    assert.equal(result.ok, true);
    assert.equal(seen[0], sent, 'the same object');
    await sleep(50);
    assert.equal(xrayDocuments.length, before, 'nothing sent to the daemon');
  });
});

describe('one dispatcher invocation through the three adapters', () => {
  test('deliveries traced, EMF by partner, the partner sees the trace context it was given', async () => {
    const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const receiver = await startReceiver({
      tls: false,
      answer: (_n, d) => ({ status: d.path.startsWith('/globex') ? 503 : 204 }),
    });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const refusedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const store = new SqliteStore(':memory:');
    const undici = new UndiciDeliveryClient({ allowInsecure: true });
    try {
      const urls: Record<string, string> = {
        acme: `${receiver.url}/acme`,
        globex: `${receiver.url}/globex`,
        initech: `http://127.0.0.1:${refusedPort}/in`,
      };
      const subscriptions: Record<string, string> = {};
      for (const [partner, url] of Object.entries(urls)) {
        await store.partners.insert(partnerRecord({ id: partner }));
        const sub = subscriptionRecord({ partnerId: partner, url, filter: undefined });
        subscriptions[partner] = sub.id;
        await store.subscriptions.insert(sub);
      }

      // Module scope of the handler.
      const registry = new MetricsRegistry();
      const logging = createLambdaLogger({ level: 'error' });
      const metrics = createEmfMetrics({ registry, logger: logging.logger });
      const tracer = createLambdaTracer();
      const published: unknown[] = [];
      const dispatcher = new WebhookDispatcher({
        subscription: (id) => store.subscriptions.get(id),
        partner: (id) => store.partners.get(id),
        disableSubscription: async () => {},
        credentials: { secrets: () => [SECRET], auth: () => undefined },
        deliveries: store.deliveries,
        heldTasks: store.heldTasks,
        maxHeldPerSubscription: 1000,
        ledger: store.ledger,
        ledgerTtlMs: 86_400_000,
        client: traceDeliveryClient(undici, tracer),
        publish: async (m) => {
          published.push(...m);
        },
        deadLetters: recordingDeadLetterSink(store, () => published as never),
        limiter: new EndpointLimiter(),
        defaultMaxConcurrency: 4,
        maxResponseBytes: 2048,
        userAgent: 'test',
        metrics: registry,
        logger: logging.logger,
        clock: () => new Date(),
      });

      const traceparents: Record<string, string> = {};
      const tasks = Object.keys(urls).map((partner, i) => {
        const traceparent = `00-${String(i + 1).padStart(32, 'a')}-${String(i + 1).padStart(16, 'b')}-01`;
        traceparents[partner] = traceparent;
        const task = {
          v: 1 as const,
          deliveryId: `dlv_${String(i + 1).padStart(32, '0')}`,
          subscriptionId: subscriptions[partner]!,
          partnerId: partner,
          event: {
            id: `e-${i}`,
            source: '/t',
            type: 'orders.created',
            correlationId: `corr-${i}`,
            traceparent,
          },
          payload: { n: i },
          attempt: 0,
          createdAt: Date.now(),
        };
        return {
          task,
          message: {
            topic: `egress.${partner}.orders.created`,
            partition: 0,
            offset: i,
            value: JSON.stringify(task),
            headers: {},
            timestamp: Date.now(),
          },
        };
      });

      // The invocation.
      const outcome = await traceBatch(
        tracer,
        '### dispatch batch',
        () => dispatcher.handleBatch(tasks.map((t) => t.message)),
        { records: tasks.length },
      );
      assert.deepEqual(outcome.failed, []);
      const { stdout } = capture(() => metrics.flush());

      const docs = emf(stdout);
      assert.deepEqual(
        docs.map((d) => [d.dims, d.doc.partner ?? null]),
        [
          [[['service']], null],
          [[['service', 'partner']], 'acme'],
          [[['service', 'partner']], 'globex'],
          [[['service', 'partner']], 'initech'],
        ],
      );
      assert.deepEqual(docs[0]!.values, {
        deliveries_succeeded: 1,
        deliveries_retried: 2,
        deliveries_failed: 0,
      });
      const counts = (d: (typeof docs)[number]) => {
        const { delivery_latency, ...rest } = d.values;
        assert.equal(typeof delivery_latency, 'number', 'one attempt, one latency');
        return rest;
      };
      assert.deepEqual(counts(docs[1]!), {
        deliveries_succeeded: 1,
        deliveries_retried: 0,
        deliveries_failed: 0,
      });
      assert.deepEqual(counts(docs[2]!), {
        deliveries_succeeded: 0,
        deliveries_retried: 1,
        deliveries_failed: 0,
      });
      assert.deepEqual(counts(docs[3]!), {
        deliveries_succeeded: 0,
        deliveries_retried: 1,
        deliveries_failed: 0,
      });

      const batchDoc = await waitFor('the dispatch batch subsegment', () =>
        xrayDocuments.find((d) => d.name === '### dispatch batch'),
      );
      for (const { task } of tasks) {
        const doc = await waitFor(`${task.partnerId}'s subsegment`, () =>
          xrayDocuments.find((d) => d.annotations?.webhook_id === webhookIdOf(task as never)),
        );
        assert.equal(doc.parent_id, batchDoc.id);
        assert.equal(doc.annotations.correlation_id, task.event.correlationId);
        assert.equal(doc.name, new URL(urls[task.partnerId]!).host);
        if (task.partnerId === 'acme') assert.equal(doc.annotations.http_status, 204);
        if (task.partnerId === 'globex') assert.equal(doc.fault, true);
        if (task.partnerId === 'initech') assert.equal(doc.annotations.error_kind, 'connect');
      }
      // Powertools' own undici instrumentation is off: no subsegment of its own (named by the bare hostname).
      assert.ok(!xrayDocuments.some((d) => d.name === '127.0.0.1'));
      for (const partner of ['acme', 'globex']) {
        const got = receiver.received.find((r) => r.path === `/${partner}`);
        assert.equal(got?.headers.traceparent, traceparents[partner]);
        assert.equal(got?.headers['x-amzn-trace-id'], undefined);
      }
    } finally {
      await undici.close();
      await receiver.close();
      store.close?.();
    }
  });
});
