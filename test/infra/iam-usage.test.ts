/**
 * The DynamoDB calls each function really makes, against the grants of `FUNCTION_ACCESS` (what the
 * stack's IAM policies are built from). Each function's platform is built as its Lambda container
 * builds it (its roles, the Lambda bus over a bus that keeps what is published), on DynamoDB in
 * dynalite, and runs its use cases: the admin API (schemas, partners, subscriptions, keys, listings,
 * redrive, pause and resume), ingest, processor and dispatcher batches (delivered, retried, failed
 * for good, gone, paused), and the scheduler. Every DynamoDB call is checked as IAM would check it
 * — action on table, Query on an index — and one the function is not granted fails with
 * AccessDeniedException, so the use case fails too. IAM itself cannot run here: this is its check,
 * applied to the calls the code makes, so a grant missing from the policies shows before a deploy.
 */
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { FUNCTION_ACCESS } from '../../infra/lib/permissions.ts';
import { loadConfig } from '../../src/common/config.ts';
import type { ApiResponse } from '../../src/common/http.ts';
import type { Bus, BusMessage, ConsumedMessage } from '../../src/common/ports/bus.ts';
import { SecretBox } from '../../src/common/secret-box.ts';
import { createTables } from '../../src/engines/dynamodb/tables.ts';
import { publishDue } from '../../src/operations/scheduled.ts';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import { LambdaBus } from '../../src/runtimes/lambda/lambda-bus.ts';
import { buildPlatform, type Platform } from '../../src/runtimes/platform.ts';
import { type Dynalite, startDynalite } from '../../tools/dynamodb/dynalite.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';

const PREFIX = 'iamuse';
const ADMIN_TOKEN = 'iam-usage-admin-token-0123456789';

interface Call {
  kind: FunctionKind | 'setup';
  action: string;
  table: string;
  index?: string;
}

/** The function whose work is running (set around each use case). */
const running = new AsyncLocalStorage<FunctionKind>();
const calls: Call[] = [];

function granted(call: Call): boolean {
  if (call.kind === 'setup') return true;
  const access = (
    FUNCTION_ACCESS[call.kind].tables as Record<string, { actions: string[]; indexes?: boolean }>
  )[call.table];
  if (call.index !== undefined) return access?.indexes === true && call.action === 'Query';
  return access?.actions.includes(call.action) === true;
}

/** Each DynamoDB call, split into the actions IAM authorizes (a transaction's items one by one). */
function actionsOf(kind: Call['kind'], command: { constructor: { name: string }; input?: any }): Call[] {
  const name = command.constructor.name.replace(/Command$/, '');
  const input = command.input ?? {};
  const table = (t: string) => t.replace(`${PREFIX}-`, '');
  if (name === 'TransactWriteItems') {
    const map: Record<string, string> = {
      Put: 'PutItem',
      Update: 'UpdateItem',
      Delete: 'DeleteItem',
      ConditionCheck: 'ConditionCheckItem',
    };
    return (input.TransactItems as Array<Record<string, { TableName: string }>>).map((item) => {
      const [op, body] = Object.entries(item)[0]!;
      return { kind, action: map[op]!, table: table(body.TableName) };
    });
  }
  if (name === 'BatchGetItem' || name === 'BatchWriteItem') {
    return Object.keys(input.RequestItems).map((t) => ({ kind, action: name, table: table(t) }));
  }
  if (input.TableName === undefined) return [];
  return [
    {
      kind,
      action: name,
      table: table(input.TableName),
      ...(input.IndexName ? { index: input.IndexName as string } : {}),
    },
  ];
}

const send = DynamoDBClient.prototype.send;
function enforceGrants(): void {
  DynamoDBClient.prototype.send = function (this: DynamoDBClient, command: any, ...rest: any[]) {
    const made = actionsOf(running.getStore() ?? 'setup', command);
    calls.push(...made);
    const denied = made.find((c) => !granted(c));
    if (denied) {
      return Promise.reject(
        Object.assign(
          new Error(
            `User: arn:aws:sts::123456789012:assumed-role/${denied.kind} is not authorized to perform: dynamodb:${denied.action} on resource ${denied.table}${denied.index ? `/index/${denied.index}` : ''}`,
          ),
          { name: 'AccessDeniedException', $fault: 'client', $metadata: { httpStatusCode: 400 } },
        ),
      );
    }
    return (send as any).call(this, command, ...rest);
  } as typeof send;
}

/** A bus that keeps what is published, handed out by topic prefix as consumed messages. */
class KeepingBus implements Bus {
  readonly engine = 'kept';
  readonly published: BusMessage[] = [];
  #offset = 0;
  async publish(messages: BusMessage[]): Promise<void> {
    this.published.push(...messages);
  }
  async ensureTopic(name: string, options?: { partitions?: number }) {
    return { name, partitions: options?.partitions ?? 1 };
  }
  async describeTopic(name: string) {
    return { name, partitions: 1 };
  }
  async listTopics(): Promise<string[]> {
    return [];
  }
  async ping(): Promise<void> {}
  consume(): never {
    throw new Error('the Lambda functions do not consume');
  }
  async close(): Promise<void> {}
  take(prefix: string): ConsumedMessage[] {
    const out: ConsumedMessage[] = [];
    for (let i = 0; i < this.published.length; ) {
      const m = this.published[i]!;
      if (!m.topic.startsWith(prefix)) {
        i++;
        continue;
      }
      this.published.splice(i, 1);
      out.push({
        topic: m.topic,
        partition: 0,
        offset: this.#offset++,
        ...(m.key !== undefined ? { key: m.key } : {}),
        value: m.value,
        headers: (m.headers ?? {}) as Record<string, string>,
        timestamp: Date.now(),
      });
    }
    return out;
  }
}

const ROLES: Record<FunctionKind, Array<'api' | 'processor' | 'dispatcher'>> = {
  admin: ['api'],
  ingest: ['api'],
  processor: ['processor'],
  dispatcher: ['dispatcher'],
  scheduler: ['api'],
};

describe('IAM: every DynamoDB call each function makes is one its policy grants', () => {
  let dynamo: Dynalite;
  let receiver: TestReceiver;
  const bus = new KeepingBus();
  const platforms = {} as Record<FunctionKind, Platform>;
  const dirs: string[] = [];

  before(async () => {
    dynamo = await startDynalite();
    const client = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    await createTables(client, { tablePrefix: PREFIX });
    client.destroy();
    receiver = await startReceiver({
      tls: false,
      answer: (_n, d) => ({
        status: d.path.includes('gone')
          ? 410
          : d.path.includes('fail')
            ? 500
            : d.path.includes('bad')
              ? 400
              : 200,
      }),
    });
    const secretKey = SecretBox.generateKey();
    enforceGrants();
    for (const kind of Object.keys(ROLES) as FunctionKind[]) {
      const dir = mkdtempSync(join(tmpdir(), `webhooks-iam-${kind}-`));
      dirs.push(dir);
      const config = loadConfig({
        WEBHOOKS_STORE: 'dynamodb',
        WEBHOOKS_DYNAMODB_ENDPOINT: dynamo.endpoint,
        WEBHOOKS_DYNAMODB_TABLE_PREFIX: PREFIX,
        WEBHOOKS_DYNAMODB_REGION: 'eu-west-1',
        WEBHOOKS_SECRET_KEY: secretKey,
        WEBHOOKS_ADMIN_TOKEN: ADMIN_TOKEN,
        WEBHOOKS_DEV: '1',
        WEBHOOKS_DATA_DIR: dir,
        WEBHOOKS_LOG_LEVEL: 'error',
      });
      platforms[kind] = await running.run(kind, () =>
        buildPlatform(config, {
          roles: ROLES[kind],
          consume: false,
          checkSecretKeys: false,
          wrapBus: (_inner, store) => new LambdaBus(bus, { scheduled: store.scheduled, inlineMaxMs: 0 }),
        }),
      );
    }
  });

  after(async () => {
    DynamoDBClient.prototype.send = send;
    for (const p of Object.values(platforms)) await p.close().catch(() => {});
    await receiver?.close();
    await dynamo?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A request to a function's API, as API Gateway hands it over (the admin's caller named by IAM). */
  const call = (kind: FunctionKind, method: string, url: string, body?: unknown, token = ADMIN_TOKEN) =>
    running.run(kind, () =>
      platforms[kind].handle({
        method,
        url,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: body === undefined ? '' : JSON.stringify(body),
      }),
    );
  const ok = (res: ApiResponse, what: string) =>
    assert.ok(res.status < 400, `${what}: ${res.status} ${JSON.stringify(res.body)}`);

  test('admin, ingest, processor, dispatcher and scheduler use cases: no call outside the grants', async () => {
    const base = receiver.url.replace(/\/$/, '');
    const schema = { type: 'object', required: ['orderId'], properties: { orderId: { type: 'string' } } };
    ok(
      await call('admin', 'POST', '/admin/schemas', { domain: 'orders', event: 'created', schema }),
      'schema',
    );
    ok(
      await call('admin', 'PATCH', '/admin/schemas/orders/created/1', { description: 'orders' }),
      'schema patch',
    );
    ok(await call('admin', 'POST', '/admin/partners', { id: 'acme', name: 'ACME' }), 'partner');
    ok(await call('admin', 'PATCH', '/admin/partners/acme', { name: 'ACME 2' }), 'partner patch');
    const subs: Record<string, string> = {};
    for (const path of ['ok', 'fail', 'gone', 'bad', 'paused']) {
      const res = await call('admin', 'POST', '/admin/subscriptions', {
        partnerId: 'acme',
        domain: 'orders',
        event: 'created',
        url: `${base}/${path}`,
        retry: { maxAttempts: 2 },
      });
      ok(res, `subscription ${path}`);
      subs[path] = (res.body as { id: string }).id;
    }
    ok(await call('admin', 'PATCH', `/admin/subscriptions/${subs.ok}`, { url: `${base}/ok2` }), 'url moved');
    ok(await call('admin', 'PATCH', `/admin/subscriptions/${subs.ok}`, { url: `${base}/ok` }), 'url back');
    ok(await call('admin', 'PATCH', `/admin/subscriptions/${subs.paused}`, { status: 'PAUSED' }), 'pause');
    ok(await call('admin', 'POST', `/admin/subscriptions/${subs.ok}/rotate-secret`, {}), 'rotate');
    const publisher = await call('admin', 'POST', '/admin/api-keys', {
      name: 'shop',
      role: 'publisher',
      sources: ['/shop'],
    });
    ok(publisher, 'publisher key');
    const operator = await call('admin', 'POST', '/admin/api-keys', { name: 'ops', role: 'operator' });
    ok(operator, 'operator key');
    for (const url of [
      '/admin/schemas',
      '/admin/schemas?domain=orders&event=created',
      '/admin/schemas?status=ACTIVE',
      '/admin/schemas/orders/created/1',
      '/admin/partners',
      '/admin/partners/acme',
      '/admin/subscriptions',
      '/admin/subscriptions?partnerId=acme',
      `/admin/subscriptions/${subs.ok}`,
      '/admin/api-keys',
      `/admin/api-keys/${(publisher.body as { id: string }).id}`,
      '/admin/audit',
      '/readyz',
    ]) {
      ok(await call('admin', 'GET', url), url);
    }
    ok(
      await call('admin', 'GET', '/admin/partners', undefined, (operator.body as { key: string }).key),
      'operator',
    );

    // Ingest (a publisher key), the processor, the dispatcher.
    for (let i = 0; i < 3; i++) {
      const event = {
        specversion: '1.0',
        id: `e${i}`,
        source: '/shop',
        type: 'orders.created',
        data: { orderId: `o${i}` },
      };
      const res = await call('ingest', 'POST', '/events', event, (publisher.body as { key: string }).key);
      assert.equal(res.status, 202, JSON.stringify(res.body));
    }
    const processor = platforms.processor.processor!;
    const ingress = bus.take('ingress.');
    assert.equal(ingress.length, 3);
    await running.run('processor', () => processor.processBatch(ingress));
    const poison: ConsumedMessage = {
      topic: 'ingress.orders.created.v1',
      partition: 0,
      offset: 1_000_000,
      value: '{not json',
      headers: {},
      timestamp: Date.now(),
    };
    const failed = await running.run('processor', () => processor.processBatch([poison]));
    for (const f of failed?.failed ?? []) {
      await running.run('processor', () =>
        processor.giveUp(f.message, { error: f.error, failures: 1, permanent: true }),
      );
    }
    const dispatcher = platforms.dispatcher.dispatcher!;
    const dispatch = async (messages: ConsumedMessage[]) => {
      const result = await running.run('dispatcher', () => dispatcher.handleBatch(messages));
      for (const f of result?.failed ?? []) {
        await running.run('dispatcher', () =>
          dispatcher.giveUp(f.message, { error: f.error, failures: 1, permanent: true }),
        );
      }
    };
    const egress = bus.take('egress.');
    assert.equal(egress.length, 15, 'three events for five subscriptions');
    await dispatch(egress);
    // The scheduler publishes the retries kept for later; the dispatcher handles them.
    await running.run('scheduler', () =>
      publishDue({
        scheduled: platforms.scheduler.store.scheduled,
        publish: (m) => platforms.scheduler.bus.publish(m),
        clock: () => Date.now() + 86_400_000,
      }),
    );
    await dispatch(bus.take('retry.dispatcher.due'));
    await dispatch(bus.take('egress.'));
    await running.run('scheduler', () => platforms.scheduler.operations.releaseHeld());

    // The operator's views after the pipeline, a redrive of everything, a resume, deletions.
    for (const url of [
      '/admin/deliveries',
      '/admin/deliveries?partnerId=acme',
      `/admin/deliveries?subscriptionId=${subs.fail}`,
      '/admin/deliveries?eventId=e0',
      '/admin/deliveries?status=FAILED',
      '/admin/dlq',
      '/admin/dlq?stage=dispatcher',
      `/admin/subscriptions/${subs.paused}/held`,
    ]) {
      ok(await call('admin', 'GET', url), url);
    }
    const redrive = await call('admin', 'POST', '/admin/dlq/redrive', { all: true });
    ok(redrive, 'redrive');
    assert.ok((redrive.body as { redriven: number }).redriven > 0, JSON.stringify(redrive.body));
    ok(await call('admin', 'PATCH', `/admin/subscriptions/${subs.paused}`, { status: 'ACTIVE' }), 'resume');
    ok(await call('admin', 'DELETE', `/admin/subscriptions/${subs.bad}`), 'delete subscription');
    ok(await call('admin', 'DELETE', `/admin/api-keys/${(operator.body as { id: string }).id}`), 'revoke');

    const outside = calls.filter((c) => !granted(c));
    assert.deepEqual(
      [
        ...new Set(
          outside.map((c) => `${c.kind}: ${c.action} ${c.table}${c.index ? `/index/${c.index}` : ''}`),
        ),
      ],
      [],
    );
    // The use cases did reach every function's store.
    for (const kind of Object.keys(ROLES))
      assert.ok(
        calls.some((c) => c.kind === kind),
        `${kind} made no call`,
      );
  });
});
