/**
 * Topic administration of the embedded durable log (SQLite file `bus.db` in the data dir).
 * Topics and their partition counts are durable; the log's records live in the same file.
 */
import type { DatabaseSync } from 'node:sqlite';
import { ValidationError } from '../../common/errors.ts';
import { isValidTopicName, type TopicAdmin, type TopicDescription } from '../../common/ports/bus.ts';
import { openDatabase, transaction } from '../sqlite/database.ts';

export const BUS_MIGRATIONS = [
  `CREATE TABLE topic (
     name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID;`,
];

/** Embedded-log implementation of the topic administration port. */
export class EmbeddedTopicAdmin implements TopicAdmin {
  readonly engine = 'embedded';
  readonly #db: DatabaseSync;
  readonly #defaultPartitions: number;

  constructor(path: string, options: { defaultPartitions?: number } = {}) {
    this.#db = openDatabase(path, BUS_MIGRATIONS);
    this.#defaultPartitions = options.defaultPartitions ?? 4;
  }

  async ensureTopic(name: string, options: { partitions?: number } = {}): Promise<TopicDescription> {
    if (!isValidTopicName(name)) {
      throw new ValidationError('topic_name_invalid', `"${name}" is not a valid topic name`, {
        details: [{ field: 'topic', message: 'topic names are 1..249 characters of [a-zA-Z0-9._-]' }],
      });
    }
    const partitions = options.partitions ?? this.#defaultPartitions;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
      throw new ValidationError('partitions_invalid', 'partitions must be a whole number from 1 to 1024', {
        details: [{ field: 'partitions', message: `got ${partitions}` }],
      });
    }
    return transaction(this.#db, () => {
      this.#db
        .prepare(
          `INSERT INTO topic (name, partitions, created_at) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET partitions = max(partitions, excluded.partitions)`,
        )
        .run(name, partitions, new Date().toISOString());
      return this.#describe(name)!;
    });
  }

  async describeTopic(name: string): Promise<TopicDescription | undefined> {
    return this.#describe(name);
  }

  async listTopics(): Promise<string[]> {
    const rows = this.#db.prepare('SELECT name FROM topic ORDER BY name').all() as Array<{ name: string }>;
    return rows.map((r) => r.name);
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }

  #describe(name: string): TopicDescription | undefined {
    const row = this.#db.prepare('SELECT name, partitions FROM topic WHERE name = ?').get(name) as
      | { name: string; partitions: number }
      | undefined;
    return row ? { name: row.name, partitions: row.partitions } : undefined;
  }
}
