/** Helpers for tests of the embedded log's parts: a bare bus database with records, and a consumed message. */
import type { DatabaseSync } from 'node:sqlite';
import type { ConsumedMessage } from '../../src/common/ports/bus.ts';
import { appendMessages, appendTransaction } from '../../src/engines/embedded/appender.ts';
import { BUS_MIGRATIONS } from '../../src/engines/embedded/schema.ts';
import { openDatabase, unflushedTransaction } from '../../src/engines/sqlite/database.ts';

/** A consumed message of topic `t`, partition 0, at `offset`. */
export const msg = (offset: number) =>
  ({ topic: 't', partition: 0, offset, value: '', headers: {}, timestamp: 0 }) as ConsumedMessage;

/** A bus database at `path` with topic `t.x` of `partitions` partitions and `count` keyed records (`k<i>` → `<i>`). */
export function bareLog(path: string, partitions: number, count: number): DatabaseSync {
  const db = openDatabase(path, BUS_MIGRATIONS, { durability: 'relaxed' });
  db.exec(`INSERT INTO topic (name, partitions, created_at) VALUES ('t.x', ${partitions}, 'now')`);
  unflushedTransaction(db, () =>
    appendMessages(
      db,
      Array.from({ length: count }, (_, i) => ({ topic: 't.x', key: `k${i}`, value: String(i) })),
      new Map(),
      appendTransaction(db),
    ),
  );
  return db;
}
