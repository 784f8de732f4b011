/**
 * Background WAL checkpoints for a SQLite database file. A checkpoint ends with fsync calls that
 * can take tens of milliseconds; run from a write (SQLite's auto-checkpoint) they stall the event
 * loop on the delivery hot path. Here a worker thread with its own connection checkpoints
 * periodically (PASSIVE: never blocks writers), and the main connection's auto-checkpoint is
 * raised so it only acts as a backstop if the worker falls behind.
 */
import type { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';

/** Pages the WAL may hold before the main connection checkpoints itself (~40 MB at 4 KB pages). */
const BACKSTOP_PAGES = 10_000;
const INTERVAL_MS = 250;
const STOP_TIMEOUT_MS = 5_000;

// Inline (eval) so that a bundled build needs no separate worker file. CommonJS: `require` works.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(workerData.path);
db.exec('PRAGMA busy_timeout = 1000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try { checkpoint.get(); } catch { /* busy or closing: the next tick tries again */ }
}, workerData.intervalMs);
parentPort.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/** A running background checkpointer; `stop` before closing the main connection. */
export interface Checkpointer {
  stop(): Promise<void>;
}

/** Starts checkpointing `path` in the background and raises `db`'s own auto-checkpoint threshold. */
export function startCheckpointer(db: DatabaseSync, path: string): Checkpointer {
  db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, intervalMs: INTERVAL_MS } });
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  // A failing checkpointer only costs speed (the backstop still checkpoints): never crash for it.
  worker.on('error', () => {});
  let stopping: Promise<void> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        worker.postMessage('stop');
        const timeout = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timeout);
      })();
      return stopping;
    },
  };
}
