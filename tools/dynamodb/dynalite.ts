/**
 * DynamoDB for tests and benchmarks: dynalite, in memory and in process, on a free loopback port.
 * `node tools/dynamodb/dynalite.ts` runs it on its own and prints `endpoint <url>` (the benchmark
 * runs it so, as a child process whose CPU it counts).
 *
 * dynalite 4.0 implements neither transactions nor `UpdateTimeToLive`, which the DynamoDB store
 * uses. So the endpoint returned here is a small front server: it forwards every other request to
 * dynalite unchanged, and implements
 * - `TransactWriteItems`: all-or-nothing under an exclusive lock (every other request holds a
 *   shared one, so nothing interleaves with a transaction). Each action runs as the matching
 *   single-item call with its condition (a `ConditionCheck` as a conditional rewrite of the item as
 *   it was); if any condition fails, the actions that ran are undone from the images read before,
 *   and the answer is a `TransactionCanceledException` with one cancellation reason per action
 *   (`ConditionalCheckFailed`, with the old item when `ReturnValuesOnConditionCheckFailure` asks for
 *   it, or `None`), as DynamoDB answers. Capacity is reported at twice the single-item writes', as
 *   DynamoDB charges transactional writes.
 * - `UpdateTimeToLive` / `DescribeTimeToLive`: the specification is kept per table and described
 *   back (items are not expired: DynamoDB does that in the background, hours late, anyway).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { forwardRequest } from '../forward.ts';

type Json = Record<string, unknown>;
type AttributeMap = Record<string, unknown>;

const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: Record<string, unknown>) => Server;

/** A running dynalite (behind the transaction shim): its endpoint, and how to stop it. */
export interface Dynalite {
  endpoint: string;
  stop(): Promise<void>;
}

/** Starts dynalite in memory on a free loopback port, with the shim in front of it. */
export async function startDynalite(): Promise<Dynalite> {
  const inner = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  const innerPort = await listen(inner);
  const shim = new Shim(innerPort);
  const outer = createServer((req, res) => {
    shim.handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(JSON.stringify({ __type: 'InternalFailure', message: String(err) }));
    });
  });
  const port = await listen(outer);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      outer.closeAllConnections();
      await new Promise<void>((resolve) => outer.close(() => resolve()));
      inner.closeAllConnections();
      await new Promise<void>((resolve) => inner.close(() => resolve()));
    },
  };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** A readers-writer lock, first come first served: transactions exclusive, everything else shared. */
class RwLock {
  #readers = 0;
  #writer = false;
  readonly #queue: Array<{ exclusive: boolean; grant: () => void }> = [];

  async run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    await new Promise<void>((grant) => {
      this.#queue.push({ exclusive, grant });
      this.#pump();
    });
    try {
      return await fn();
    } finally {
      if (exclusive) this.#writer = false;
      else this.#readers -= 1;
      this.#pump();
    }
  }

  #pump(): void {
    while (this.#queue.length > 0 && !this.#writer) {
      const next = this.#queue[0]!;
      if (next.exclusive && this.#readers > 0) return;
      this.#queue.shift();
      if (next.exclusive) this.#writer = true;
      else this.#readers += 1;
      next.grant();
      if (next.exclusive) return;
    }
  }
}

interface Answer {
  status: number;
  body: Json;
}

const ERROR_PREFIX = 'com.amazonaws.dynamodb.v20120810#';

/** One action of a transaction, as the single-item call that performs it. */
interface Action {
  kind: 'Put' | 'Update' | 'Delete' | 'ConditionCheck';
  table: string;
  key: AttributeMap;
  input: Json;
}

class Shim {
  readonly #innerPort: number;
  readonly #lock = new RwLock();
  readonly #ttl = new Map<string, { AttributeName: string; Enabled: boolean }>();
  readonly #keys = new Map<string, string[]>();

  constructor(innerPort: number) {
    this.#innerPort = innerPort;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
    let answer: Answer | undefined;
    if (operation === 'TransactWriteItems') {
      answer = await this.#lock.run(true, () => this.#transactWrite(JSON.parse(body.toString('utf8'))));
    } else if (operation === 'UpdateTimeToLive') {
      answer = await this.#updateTimeToLive(JSON.parse(body.toString('utf8')));
    } else if (operation === 'DescribeTimeToLive') {
      answer = await this.#describeTimeToLive(JSON.parse(body.toString('utf8')));
    }
    if (answer) {
      res.writeHead(answer.status, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(JSON.stringify(answer.body));
      return;
    }
    await this.#lock.run(false, () => forwardRequest(req, body, res, this.#innerPort));
  }

  /** One call to dynalite itself (inside a transaction: the lock is held already). */
  async #call(operation: string, input: Json): Promise<Answer> {
    const res = await fetch(`http://127.0.0.1:${this.#innerPort}/`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': `DynamoDB_20120810.${operation}`,
        'x-amz-date': '20240101T000000Z',
        authorization:
          'AWS4-HMAC-SHA256 Credential=shim/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00',
      },
      body: JSON.stringify(input),
    });
    return { status: res.status, body: (await res.json()) as Json };
  }

  async #keyNames(table: string): Promise<string[] | Answer> {
    const known = this.#keys.get(table);
    if (known) return known;
    const described = await this.#call('DescribeTable', { TableName: table });
    if (described.status !== 200) return described;
    const schema = (described.body.Table as { KeySchema: Array<{ AttributeName: string }> }).KeySchema;
    const names = schema.map((k) => k.AttributeName);
    this.#keys.set(table, names);
    return names;
  }

  async #transactWrite(input: Json): Promise<Answer> {
    const items = (input.TransactItems ?? []) as Array<Record<string, Json>>;
    if (items.length === 0 || items.length > 100) {
      return validation('Member must have length less than or equal to 100 and greater than or equal to 1');
    }
    const actions: Action[] = [];
    for (const item of items) {
      const [kind, spec] = Object.entries(item)[0] as [Action['kind'], Json];
      const table = spec.TableName as string;
      const names = await this.#keyNames(table);
      if (!Array.isArray(names)) return names;
      const source = (kind === 'Put' ? spec.Item : spec.Key) as AttributeMap;
      const key = Object.fromEntries(names.map((n) => [n, source[n]]));
      actions.push({ kind, table, key, input: spec });
    }
    const identities = actions.map((a) => `${a.table}\u0000${JSON.stringify(a.key)}`);
    if (new Set(identities).size !== identities.length) {
      return validation('Transaction request cannot include multiple operations on one item');
    }
    const before: Array<AttributeMap | undefined> = [];
    for (const action of actions) {
      const got = await this.#call('GetItem', {
        TableName: action.table,
        Key: action.key,
        ConsistentRead: true,
      });
      if (got.status !== 200) return got;
      before.push(got.body.Item as AttributeMap | undefined);
    }
    const reasons: Json[] = [];
    const done: number[] = [];
    const units = new Map<string, number>();
    let failure: Answer | undefined;
    for (const [i, action] of actions.entries()) {
      const answer = await this.#perform(action, before[i]);
      if (answer.status === 200) {
        done.push(i);
        reasons.push({ Code: 'None' });
        const consumed = answer.body.ConsumedCapacity as { CapacityUnits?: number } | undefined;
        units.set(action.table, (units.get(action.table) ?? 0) + 2 * (consumed?.CapacityUnits ?? 1));
        continue;
      }
      const type = String(answer.body.__type ?? '');
      if (type.endsWith('#ConditionalCheckFailedException')) {
        const reason: Json = { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' };
        if (action.input.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' && before[i])
          reason.Item = before[i];
        reasons.push(reason);
      } else {
        failure ??= answer;
        reasons.push({ Code: 'ValidationError', Message: String(answer.body.message ?? '') });
      }
    }
    if (done.length === actions.length) {
      const body: Json = {};
      if (input.ReturnConsumedCapacity === 'TOTAL' || input.ReturnConsumedCapacity === 'INDEXES') {
        body.ConsumedCapacity = [...units].map(([TableName, CapacityUnits]) => ({
          TableName,
          CapacityUnits,
        }));
      }
      return { status: 200, body };
    }
    for (const i of done.reverse()) {
      const action = actions[i]!;
      if (action.kind === 'ConditionCheck') continue;
      const old = before[i];
      const undo = old
        ? await this.#call('PutItem', { TableName: action.table, Item: old })
        : await this.#call('DeleteItem', { TableName: action.table, Key: action.key });
      if (undo.status !== 200)
        throw new Error(`cannot undo a transaction action: ${JSON.stringify(undo.body)}`);
    }
    if (failure) return failure;
    const codes = reasons.map((r) => r.Code).join(', ');
    return {
      status: 400,
      body: {
        __type: `${ERROR_PREFIX}TransactionCanceledException`,
        message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${codes}]`,
        CancellationReasons: reasons,
      },
    };
  }

  /** One action as its single-item call (a condition check rewrites the item as it was, or deletes nothing). */
  #perform(action: Action, before: AttributeMap | undefined): Promise<Answer> {
    const { ReturnValuesOnConditionCheckFailure: _, ...spec } = action.input;
    const common = { ...spec, ReturnConsumedCapacity: 'TOTAL' };
    switch (action.kind) {
      case 'Put':
        return this.#call('PutItem', common);
      case 'Update':
        return this.#call('UpdateItem', common);
      case 'Delete':
        return this.#call('DeleteItem', common);
      case 'ConditionCheck':
        return before
          ? this.#call('PutItem', { ...common, Key: undefined, Item: before })
          : this.#call('DeleteItem', common);
    }
  }

  async #updateTimeToLive(input: Json): Promise<Answer> {
    const table = input.TableName as string;
    const described = await this.#call('DescribeTable', { TableName: table });
    if (described.status !== 200) return described;
    const spec = input.TimeToLiveSpecification as { AttributeName: string; Enabled: boolean };
    const current = this.#ttl.get(table);
    if (current && current.Enabled === spec.Enabled) {
      return validation(`TimeToLive is already ${spec.Enabled ? 'enabled' : 'disabled'}`);
    }
    this.#ttl.set(table, { AttributeName: spec.AttributeName, Enabled: spec.Enabled });
    return { status: 200, body: { TimeToLiveSpecification: spec } };
  }

  async #describeTimeToLive(input: Json): Promise<Answer> {
    const table = input.TableName as string;
    const described = await this.#call('DescribeTable', { TableName: table });
    if (described.status !== 200) return described;
    const spec = this.#ttl.get(table);
    return {
      status: 200,
      body: {
        TimeToLiveDescription: spec?.Enabled
          ? { TimeToLiveStatus: 'ENABLED', AttributeName: spec.AttributeName }
          : { TimeToLiveStatus: 'DISABLED' },
      },
    };
  }
}

function validation(message: string): Answer {
  return { status: 400, body: { __type: 'com.amazon.coral.validate#ValidationException', message } };
}

if (import.meta.main) {
  const running = await startDynalite();
  process.stdout.write(`endpoint ${running.endpoint}\n`);
  const stop = () => void running.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
