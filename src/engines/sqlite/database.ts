/**
 * Opening a SQLite database with the settings every embedded engine uses, and applying its
 * migrations. `node:sqlite` is built into Node 24: no native addon to compile.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Durability } from '../../common/config.ts';
import { type SyncCalls, WalFlusher } from './wal-flush.ts';

/** How long a statement waits for another connection's lock before failing (ms). */
export const BUSY_TIMEOUT_MS = 5000;
/**
 * How long a synchronous transaction (`transaction()`: a consumer's heartbeat or commit, a retention
 * chunk) waits for the write lock, with its thread's event loop frozen: well under a third of the
 * consumer lease (3 s), so a wait never costs a member its partitions. Group commit waits without
 * freezing the loop, for up to BUSY_TIMEOUT_MS.
 */
const SYNC_LOCK_WAIT_MS = 750;
/** The first and the longest pause of the short wait for the write lock in `transaction` (ms). */
const LOCK_POLL_MS = 0.05;
const LOCK_POLL_MAX_MS = 1;
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Opens (creating if needed) a database file in WAL mode and migrates it to the latest version.
 * Safe when several processes open the same new file at once. `pageSize` applies to a new file
 * only: a WAL database keeps the page size it was created with.
 */
export function openDatabase(
  path: string,
  migrations: readonly string[],
  options: {
    pageSize?: number;
    autoCheckpointPages?: number;
    durability?: Durability;
    /** How the WAL is flushed (tests inject a failing disk); the system's `fdatasync` by default. */
    syncCalls?: SyncCalls;
  } = {},
): DatabaseSync {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  // The busy timeout is set at open, so even the first statements wait for a concurrent opener.
  const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
  if (options.pageSize) db.exec(`PRAGMA page_size = ${options.pageSize}`);
  retryWhileBusy(() => db.exec('PRAGMA journal_mode = WAL'));
  // Commits go to the OS in order (NORMAL), surviving a crash of the process. With durability
  // `fsync` (the default) a write is also acknowledged only once the WAL is flushed to disk, so it
  // survives an OS crash or power loss — by `WalFlusher`, off the event loop, instead of FULL's
  // fsync inside every COMMIT. `relaxed`: an OS crash can lose the last commits.
  db.exec('PRAGMA synchronous = NORMAL');
  if ((options.durability ?? 'fsync') === 'fsync' && path !== ':memory:')
    flushers.set(db, new WalFlusher(path, options.syncCalls));
  db.exec('PRAGMA foreign_keys = ON');
  // 32 MiB of page cache (default 2 MiB): index pages of large tables stay in memory instead of being re-read.
  db.exec('PRAGMA cache_size = -32768');
  // Temporary storage in memory: the sub-journals that let a statement (or a savepoint) inside a
  // group commit's transaction be undone alone spilled to a temp file past 64 KB, one pwrite per page
  // (measured: ~5 per delivery, more than the WAL's own writes).
  db.exec('PRAGMA temp_store = MEMORY');
  // 0: this connection never checkpoints; another one does (`checkpointPassive`).
  if (options.autoCheckpointPages !== undefined)
    db.exec(`PRAGMA wal_autocheckpoint = ${options.autoCheckpointPages}`);
  migrate(db, migrations);
  return db;
}

/**
 * Applies the migrations not yet applied, tracked in `PRAGMA user_version`, one per transaction. The
 * version is read inside the write transaction, so a process that waited for another one's
 * migration sees it applied and does not run it again.
 */
function migrate(db: DatabaseSync, migrations: readonly string[]): void {
  // Another process may hold the lock for a while (its own migration): wait for it, not for ever.
  const deadline = Date.now() + 6 * BUSY_TIMEOUT_MS;
  for (;;) {
    let done: boolean;
    try {
      done = migrateOne(db, migrations);
    } catch (err) {
      if (!isBusy(err) || Date.now() > deadline) throw err;
      continue;
    }
    if (done) return;
  }
}

/** Applies the next migration not yet applied; true when there was none. */
function migrateOne(db: DatabaseSync, migrations: readonly string[]): boolean {
  return transaction(db, () => {
    const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
    if (version >= migrations.length) return true;
    db.exec(migrations[version]!);
    db.exec(`PRAGMA user_version = ${version + 1}`);
    return false;
  });
}

/** The WAL flusher of a connection opened with durability `fsync` (none for `relaxed` or in memory). */
export function walFlusherOf(db: DatabaseSync): WalFlusher | undefined {
  return flushers.get(db);
}

const flushers = new WeakMap<DatabaseSync, WalFlusher>();

/**
 * Throws the connection's WAL flush failure, if a flush failed: from then on no write can be
 * acknowledged as durable, so a readiness check says so until the process restarts.
 */
export function assertFlushable(db: DatabaseSync): void {
  const failed = flushers.get(db)?.failed;
  if (failed) throw failed;
}

/** Closes a connection opened by `openDatabase` (and its WAL flusher). */
export function closeDatabase(db: DatabaseSync): void {
  if (db.isOpen) db.close();
  flushers.get(db)?.close();
}

/**
 * Runs `fn` in one write transaction that is not flushed to disk on its own, whatever the
 * connection's durability: for bookkeeping whose loss in an OS crash only repeats work — a
 * consumer's committed offsets and leases, retention's deletes. The WAL is one sequence, so such a
 * commit is lost only together with everything after it, never while a later commit survives; and
 * what it depends on was flushed before it was acknowledged (durability `fsync`), so an offset can
 * never survive the append or the store write it followed.
 */
export function unflushedTransaction<T>(db: DatabaseSync, fn: () => T): T {
  return inTransaction(db, fn);
}

const savepoints = new WeakMap<
  DatabaseSync,
  { begin: StatementSync; undo: StatementSync; end: StatementSync }
>();

/**
 * Runs `fn` inside a savepoint of the current transaction: all of its writes or none, so that one
 * operation of a group commit that fails half-way leaves nothing behind for the others to commit.
 */
export function atomically<T>(db: DatabaseSync, fn: () => T): T {
  let s = savepoints.get(db);
  if (!s) {
    s = {
      begin: db.prepare('SAVEPOINT op'),
      undo: db.prepare('ROLLBACK TO op'),
      end: db.prepare('RELEASE op'),
    };
    savepoints.set(db, s);
  }
  s.begin.run();
  try {
    const result = fn();
    s.end.run();
    return result;
  } catch (err) {
    // Some errors (a full disk, an I/O error) make SQLite roll back the whole transaction, and the
    // savepoint with it: then there is nothing to undo here, and the cause is what counts.
    if (db.isTransaction) {
      s.undo.run();
      s.end.run();
    }
    throw err;
  }
}

/** Runs `fn` in one write transaction; returns once it is committed (and, with `fsync` durability, on disk). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  const result = inTransaction(db, fn);
  flushers.get(db)?.flushSync();
  return result;
}

/**
 * As `transaction`, but without holding the event loop: for writes made on a thread that answers
 * requests (a topic created when a schema is registered). The write lock is waited for in timer
 * turns (another connection's large commit held the API's thread up to ~46 ms in `beginImmediate`
 * in a fuzz run's profile), and the flush to disk (`fsync` durability) runs off the event loop,
 * shared with the commits of the meantime (a synchronous fdatasync held the thread 1–5 ms each).
 */
export async function transactionFlushedAsync<T>(db: DatabaseSync, fn: () => T): Promise<T> {
  // The lock is waited for in timer turns (a try every 1 ms, for up to BUSY_TIMEOUT_MS, as group
  // commit does), but BEGIN, `fn` and COMMIT run in one synchronous stretch: no await may come
  // between them, or the connection's other users (consumers committing offsets, another topic
  // being created) would run their statements inside this transaction. A closed database throws at
  // the next try.
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  while (!tryBeginImmediate(db)) {
    if (Date.now() > deadline) throw lockWaitOver(BUSY_TIMEOUT_MS);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const result = committed(db, fn);
  await flushers.get(db)?.flush();
  return result;
}

function inTransaction<T>(db: DatabaseSync, fn: () => T): T {
  beginImmediate(db);
  return committed(db, fn);
}

/** Runs `fn` in the transaction just begun, and commits it (or rolls it back when `fn` throws). */
function committed<T>(db: DatabaseSync, fn: () => T): T {
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    // SQLite may have rolled back already (a failed COMMIT, an I/O error): the cause is what counts.
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

/** Whether an error is SQLite's "the lock is held by another connection". */
export function isBusy(err: unknown): boolean {
  return (err as { errcode?: number } | null)?.errcode === 5;
}

const beginStatements = new WeakMap<DatabaseSync, StatementSync>();

/**
 * One try at BEGIN IMMEDIATE without SQLite's busy handler: true when begun, false when another
 * connection holds the write lock; other errors are thrown.
 */
export function tryBeginImmediate(db: DatabaseSync): boolean {
  return withoutBusyHandler(db, () => beginOnce(db));
}

/** Runs `fn` with the connection's busy timeout at 0 (SQLite's busy handler off). */
function withoutBusyHandler<T>(db: DatabaseSync, fn: () => T): T {
  // (A prepared PRAGMA statement was seen not to take effect on its first run: exec is reliable.)
  db.exec('PRAGMA busy_timeout = 0');
  try {
    return fn();
  } finally {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  }
}

function beginOnce(db: DatabaseSync): boolean {
  let begin = beginStatements.get(db);
  if (begin === undefined) {
    begin = db.prepare('BEGIN IMMEDIATE');
    beginStatements.set(db, begin);
  }
  try {
    begin.run();
    return true;
  } catch (err) {
    if (isBusy(err)) return false;
    throw err;
  }
}

/** Copies what it can of the WAL into the database file without waiting for anyone (PASSIVE). */
export function checkpointPassive(db: DatabaseSync): void {
  if (db.isOpen) db.exec('PRAGMA wal_checkpoint(PASSIVE)');
}

/**
 * BEGIN IMMEDIATE that waits for another connection's write lock, trying again after 50 µs, then
 * doubling the pause up to 1 ms. SQLite's own busy handler sleeps 1, 2, 5, 10… ms between tries,
 * with the event loop frozen all along, while a group commit holds the lock for well under a
 * millisecond: threads and processes sharing a file (`--role` splits) would lose more time asleep
 * than waiting. The doubling keeps a long hold (a large append) from costing hundreds of tries.
 */
export function beginImmediate(db: DatabaseSync): void {
  const deadline = Date.now() + SYNC_LOCK_WAIT_MS;
  withoutBusyHandler(db, () => {
    let pauseMs = LOCK_POLL_MS;
    while (!beginOnce(db)) {
      if (Date.now() > deadline) throw lockWaitOver(SYNC_LOCK_WAIT_MS);
      Atomics.wait(pause, 0, 0, pauseMs);
      pauseMs = Math.min(pauseMs * 2, LOCK_POLL_MAX_MS);
    }
  });
}

/** SQLite's "locked" error (errcode 5, SQLITE_BUSY), saying how long this side waited for the lock. */
function lockWaitOver(waitedMs: number): Error {
  return Object.assign(
    new Error(`database is locked (waited ${waitedMs} ms for another connection's write)`),
    {
      errcode: 5,
    },
  );
}

/** Switching a new file to WAL can fail as "locked" while another process does the same; it is retried. */
function retryWhileBusy(fn: () => void): void {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      fn();
      return;
    } catch (err) {
      if (!/locked|busy/i.test((err as Error).message) || Date.now() > deadline) throw err;
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

/** An opaque page cursor of a listing (its table) from the sort key of the last row of a page. */
export function encodeCursor(listing: string, key: Array<string | number>): string {
  return Buffer.from(JSON.stringify([listing, ...key])).toString('base64url');
}

/**
 * The sort key inside a cursor of `listing`, or undefined when the cursor is not one of its own: made
 * up, altered (an object where a string was: SQLite refuses to bind it), or another listing's (a
 * partners cursor on the API keys would read as an empty last page).
 */
export function decodeCursor(cursor: string, listing: string): Array<string | number> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed[0] !== listing) return undefined;
  const key = parsed.slice(1);
  const plain = (v: unknown) => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
  return key.every(plain) ? (key as Array<string | number>) : undefined;
}
