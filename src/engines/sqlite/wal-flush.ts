/**
 * Flushing a database's write-ahead log to disk, so that a commit survives an OS crash or a power
 * loss (durability `fsync`). SQLite's own way, `synchronous = FULL`, fsyncs inside COMMIT: with
 * `node:sqlite` that blocks the thread's event loop for the whole flush (measured here: 0.1–0.4 ms
 * each, more while another thread flushes too), once per commit. Instead the connection commits
 * with `synchronous = NORMAL` — its frames are in the OS, in order — and the WAL file is flushed
 * with `fdatasync` from libuv's thread pool: the event loop goes on, and every commit made while a
 * flush runs shares the next one (group commit, as Postgres and Kafka do it). A write is
 * acknowledged only once a flush that began after its commit has completed.
 *
 * Why this is as safe as FULL: a WAL is one sequence of frames, recovered up to the last valid
 * commit; flushing the file makes every frame written before the flush began durable. Checkpoints
 * (which copy frames into the database file) are synced by SQLite itself in NORMAL mode (the WAL
 * before, the database file after). Linux flushes a file's data through any descriptor of it, so
 * flushing our own read-only descriptor of `<db>-wal` covers what SQLite wrote through its own.
 *
 * A failed flush is final: after an `fdatasync` error Linux may have dropped the dirty pages it
 * could not write and marks them clean, so a later flush can succeed while the frames before it are
 * gone — and recovery stops at the first missing frame, losing every commit after it. Every later
 * flush therefore fails with the first error (as PostgreSQL treats a failed fsync); the process
 * must be restarted, and SQLite's recovery then keeps what is really on disk.
 */
import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';

/** The two ways a descriptor is flushed (replaceable to inject a failing disk in tests). */
export interface SyncCalls {
  sync: (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;
  syncNow: (fd: number) => void;
}

const SYSTEM_SYNC: SyncCalls = { sync: fdatasync, syncNow: fdatasyncSync };

/** Flushes one database's WAL file, synchronously or in the background with group commit. */
export class WalFlusher {
  readonly #path: string;
  #fd: number | undefined;
  /** Callers waiting for the flush that will start next. */
  #next: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  #running = false;
  #closing = false;
  readonly #calls: SyncCalls;
  /** The first flush error: every flush after it fails with it. */
  #failed: Error | undefined;

  constructor(databasePath: string, calls: SyncCalls = SYSTEM_SYNC) {
    this.#path = `${databasePath}-wal`;
    this.#calls = calls;
  }

  /** The first flush error, once one failed (every flush after it fails with it); undefined before. */
  get failed(): Error | undefined {
    return this.#failed;
  }

  /** Resolves once everything committed before this call is on disk. */
  flush(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#failed) {
        reject(this.#failed);
        return;
      }
      this.#next.push({ resolve, reject });
      if (!this.#running) this.#start();
    });
  }

  /** Flushes now, blocking the thread (for rare writes that are acknowledged synchronously). */
  flushSync(): void {
    if (this.#failed) throw this.#failed;
    const fd = this.#descriptor();
    try {
      this.#calls.syncNow(fd);
    } catch (err) {
      throw this.#fail(err);
    }
  }

  /** Remembers a flush error as final; returns the error every later flush fails with. */
  #fail(err: unknown): Error {
    const cause = err instanceof Error ? err : new Error(String(err));
    this.#failed ??= Object.assign(
      new Error(
        `flushing ${this.#path} to disk failed (${cause.message}); no later write can be acknowledged as durable until the process restarts`,
        { cause },
      ),
      { code: 'wal_flush_failed' },
    );
    return this.#failed;
  }

  /** Closes the descriptor (after the database is closed; after the flush in progress, if one is). */
  close(): void {
    this.#closing = true;
    if (this.#running) return;
    this.#flushWaitingSync();
    this.#closeDescriptor();
  }

  /** Flushes for the callers still waiting, synchronously (the descriptor is about to close). */
  #flushWaitingSync(): void {
    const waiting = this.#next;
    this.#next = [];
    if (waiting.length === 0) return;
    try {
      this.flushSync();
      for (const w of waiting) w.resolve();
    } catch (err) {
      for (const w of waiting) w.reject(err);
    }
  }

  #closeDescriptor(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #start(): void {
    const waiting = this.#next;
    this.#next = [];
    this.#running = true;
    let fd: number;
    try {
      fd = this.#descriptor();
    } catch (err) {
      this.#running = false;
      for (const w of waiting) w.reject(err);
      return;
    }
    this.#calls.sync(fd, (err) => {
      this.#running = false;
      const failed = err ? this.#fail(err) : this.#failed;
      for (const w of waiting) {
        if (failed) w.reject(failed);
        else w.resolve();
      }
      if (failed) {
        // Whoever joined meanwhile fails too: nothing after a failed flush is durable.
        for (const w of this.#next.splice(0)) w.reject(failed);
        if (this.#closing) this.#closeDescriptor();
        return;
      }
      if (this.#next.length > 0 && !this.#closing) this.#start();
      else if (this.#closing) {
        // Closing: whoever waits for the next flush gets it here and now.
        this.#flushWaitingSync();
        this.#closeDescriptor();
      }
    });
  }

  #descriptor(): number {
    this.#fd ??= openSync(this.#path, 'r');
    return this.#fd;
  }
}
