/**
 * `held_task` in DynamoDB: a subscription's tasks in its partition (sort key `t#<id>`, ids
 * time-ordered), beside one counter item (`#count`, attribute `n`) that is also the marker of a
 * subscription with tasks held: it carries `held`, the key of the sparse `by_held` index, which
 * therefore lists exactly those subscriptions. Every change of tasks and counter is one
 * TransactWriteItems, so the count (and the marker) never drift from the tasks.
 */
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { type HeldTask, type HeldTaskRepository, withinPageBytes } from '../../common/ports/store.ts';
import { backoff, cancellationReasons, type Db, failedCondition, type Item, transactRetrying } from './db.ts';
import { docAttributes, Expr, N, num, readDoc, S, str } from './items.ts';

const COUNTER = '#count';
const TASK = 't#';
/** Tasks removed per transaction (plus the counter: within the service's 100 actions). */
const REMOVE_CHUNK = 99;
const REMOVE_TRIES = 10;

/** The DynamoDB implementation of the held-task repository. */
export class DynamoHeldTasks implements HeldTaskRepository {
  readonly #db: Db;
  readonly #table: string;

  constructor(db: Db, table: string) {
    this.#db = db;
    this.#table = table;
  }

  async hold(task: HeldTask): Promise<void> {
    const p = new Expr();
    const u = new Expr();
    try {
      await transactRetrying(this.#db, [
        {
          Put: {
            TableName: this.#table,
            Item: { sub: S(task.subscriptionId), sk: S(TASK + task.id), ...docAttributes(task) },
            ConditionExpression: `attribute_not_exists(${p.n('sk')})`,
            ...p.params(),
          },
        },
        {
          Update: {
            TableName: this.#table,
            Key: this.#counterKey(task.subscriptionId),
            UpdateExpression: `SET ${u.n('held')} = ${u.v(S('1'))} ADD ${u.n('n')} ${u.v(N(1))}`,
            ...u.params(),
          },
        },
      ]);
    } catch (err) {
      const reasons = cancellationReasons(err);
      // Held already: it stays as it was.
      if (reasons && failedCondition(reasons, 0)) return;
      throw err;
    }
  }

  async list(subscriptionId: string, limit: number, afterId?: string): Promise<HeldTask[]> {
    const e = new Expr();
    // After a task: every key past it is a task (the counter, `#count`, sorts before `t#`).
    const range =
      afterId === undefined
        ? `begins_with(${e.n('sk')}, ${e.v(S(TASK))})`
        : `${e.n('sk')} > ${e.v(S(TASK + afterId))}`;
    const page = await this.#db.query({
      TableName: this.#table,
      KeyConditionExpression: `${e.n('sub')} = ${e.v(S(subscriptionId))} AND ${range}`,
      ConsistentRead: true,
      Limit: Math.max(1, Math.floor(limit)),
      ...e.params(),
    });
    return withinPageBytes(
      page.items,
      (item) => readDoc<HeldTask>(item),
      (task) => task.value.length,
    );
  }

  /**
   * Per chunk of tasks: reads which exist and the count (one consistent BatchGetItem), then deletes
   * them and lowers the count in one transaction conditional on both — the counter item (the
   * marker) deleted when it reaches zero. Another writer in between: read and try again.
   */
  async remove(subscriptionId: string, ids: string[]): Promise<void> {
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += REMOVE_CHUNK) {
      await this.#removeChunk(subscriptionId, unique.slice(i, i + REMOVE_CHUNK));
    }
  }

  async #removeChunk(subscriptionId: string, ids: string[]): Promise<void> {
    const counterKey = this.#counterKey(subscriptionId);
    for (let tries = 1; ; tries++) {
      const found = await this.#db.batchGet(
        this.#table,
        [counterKey, ...ids.map((id) => ({ sub: S(subscriptionId), sk: S(TASK + id) }))],
        true,
      );
      const counter = found.find((i) => str(i, 'sk') === COUNTER);
      const tasks = found.filter((i) => str(i, 'sk') !== COUNTER);
      if (tasks.length === 0) return;
      const actions: TransactWriteItem[] = tasks.map((t) => {
        const e = new Expr();
        return {
          Delete: {
            TableName: this.#table,
            Key: { sub: t.sub!, sk: t.sk! },
            ConditionExpression: `attribute_exists(${e.n('sk')})`,
            ...e.params(),
          },
        };
      });
      const e = new Expr();
      const count = counter ? (num(counter, 'n') ?? 0) : undefined;
      if (count !== undefined) {
        const unchanged = `${e.n('n')} = ${e.v(N(count))}`;
        actions.push(
          count - tasks.length <= 0
            ? {
                Delete: {
                  TableName: this.#table,
                  Key: counterKey,
                  ConditionExpression: unchanged,
                  ...e.params(),
                },
              }
            : {
                Update: {
                  TableName: this.#table,
                  Key: counterKey,
                  UpdateExpression: `ADD ${e.n('n')} ${e.v(N(-tasks.length))}`,
                  ConditionExpression: unchanged,
                  ...e.params(),
                },
              },
        );
      }
      try {
        await transactRetrying(this.#db, actions);
        return;
      } catch (err) {
        const reasons = cancellationReasons(err);
        if (!reasons || tries >= REMOVE_TRIES) throw err;
        await backoff(tries);
      }
    }
  }

  /** The subscriptions whose counter item carries the marker: the whole sparse `by_held` index. */
  async subscriptions(): Promise<string[]> {
    const e = new Expr();
    const items = await this.#db.queryAll({
      TableName: this.#table,
      IndexName: 'by_held',
      KeyConditionExpression: `${e.n('held')} = ${e.v(S('1'))}`,
      ...e.params(),
    });
    return [...new Set(items.map((i) => str(i, 'sub')!))];
  }

  async count(subscriptionId: string): Promise<number> {
    const counter = await this.#db.get(this.#table, this.#counterKey(subscriptionId));
    return Math.max(0, (counter && num(counter, 'n')) ?? 0);
  }

  #counterKey(subscriptionId: string): Item {
    return { sub: S(subscriptionId), sk: S(COUNTER) };
  }
}
