/**
 * Topic administration of the embedded durable log (SQLite file `bus.db` in the data dir).
 * Topics and their partition counts are durable; the log's records live in the same file
 * (see `log.ts`, whose `EmbeddedLog` extends this class with publishing and consumer groups).
 */
import type { DatabaseSync } from 'node:sqlite';
import type { Durability } from '../../common/config.ts';
import { checkTopicRequest, type TopicAdmin, type TopicDescription } from '../../common/ports/bus.ts';
import {
  assertFlushable,
  checkpointPassive,
  closeDatabase,
  openDatabase,
  transactionFlushedAsync,
} from '../sqlite/database.ts';
import { BUS_MIGRATIONS, PAGE_SIZE, sql } from './schema.ts';

/** Embedded-log implementation of the topic administration port. */
export class EmbeddedTopicAdmin implements TopicAdmin {
  readonly engine = 'embedded';
  protected readonly db: DatabaseSync;
  readonly #defaultPartitions: number;

  /** `autoCheckpoint: false`: this connection leaves WAL checkpoints to another one (see `checkpoint()`). */
  constructor(
    path: string,
    options: { defaultPartitions?: number; autoCheckpoint?: boolean; durability?: Durability } = {},
  ) {
    this.db = openDatabase(path, BUS_MIGRATIONS, {
      pageSize: PAGE_SIZE,
      ...(options.durability ? { durability: options.durability } : {}),
      ...(options.autoCheckpoint === false ? { autoCheckpointPages: 0 } : {}),
    });
    this.#defaultPartitions = options.defaultPartitions ?? 4;
  }

  async ensureTopic(name: string, options: { partitions?: number } = {}): Promise<TopicDescription> {
    const partitions = checkTopicRequest(name, options.partitions ?? this.#defaultPartitions);
    const existing = this.#describe(name);
    if (existing && existing.partitions >= partitions) return existing;
    return transactionFlushedAsync(this.db, () => {
      const before = this.#describe(name);
      if (before && before.partitions >= partitions) return before;
      sql(
        this.db,
        `INSERT INTO topic (name, partitions, created_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET partitions = max(partitions, excluded.partitions)`,
      ).run(name, partitions, new Date().toISOString());
      // Consumers list the topics again at their next heartbeat.
      sql(this.db, 'UPDATE log_clock SET topics = topics + 1 WHERE id = 1').run();
      return this.#describe(name)!;
    });
  }

  async describeTopic(name: string): Promise<TopicDescription | undefined> {
    return this.#describe(name);
  }

  async listTopics(): Promise<string[]> {
    const rows = sql(this.db, 'SELECT name FROM topic ORDER BY name').all() as Array<{ name: string }>;
    return rows.map((r) => r.name);
  }

  /** Copies what it can of the WAL into the database file without waiting for anyone (PASSIVE). */
  checkpoint(): void {
    checkpointPassive(this.db);
  }

  async ping(): Promise<void> {
    sql(this.db, 'SELECT 1').get();
    assertFlushable(this.db);
  }

  async close(): Promise<void> {
    closeDatabase(this.db);
  }

  #describe(name: string): TopicDescription | undefined {
    const row = sql(this.db, 'SELECT name, partitions FROM topic WHERE name = ?').get(name) as
      | { name: string; partitions: number }
      | undefined;
    return row ? { name: row.name, partitions: row.partitions } : undefined;
  }
}
