/**
 * Schema registration checks in a worker thread of their own. Meta-validating, trial-compiling and
 * comparing a large legal schema takes a few hundred milliseconds of CPU; on the API's thread that
 * would be as long a wait for every request behind it (`/healthz` included). Here the API's thread
 * only hands the document over (a structured clone) and waits without blocking.
 *
 * One check runs at a time, each within CHECK_TIMEOUT_MS: a check that takes longer (a document
 * built to be slow to check) ends its thread, which is started again for the next, and its
 * registration is refused as `schema_too_complex`. The thread is started on the first check and
 * does not keep the process alive.
 */
import { Worker } from 'node:worker_threads';
import { type ErrorDetail, ValidationError } from '../common/errors.ts';
import { Gate } from '../common/gate.ts';
import { schemaShapeProblems } from '../common/json-schema.ts';
import type { DocumentCheck, SchemaChecks } from '../schemas/checks.ts';
import type { BreakingChange, CompatibilityMode } from '../schemas/compatibility.ts';

/** How long one check may take (ms). */
export const CHECK_TIMEOUT_MS = 10_000;

/** What the host sends the thread. */
export type CheckRequest =
  | { id: number; kind: 'document'; schema: unknown; fieldPrefix: string }
  | {
      id: number;
      kind: 'compatibility';
      candidate: unknown;
      previous: ReadonlyArray<{ version: number; schema: unknown }>;
      mode: CompatibilityMode;
    };

/** A request before it is given an id. */
type Check = WithoutId<CheckRequest>;
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** What the thread answers. */
export type CheckReply = { id: number; result: unknown } | { id: number; error: string };

/** Why a check gave no answer. */
class CheckAbandoned extends Error {}

export class ThreadedSchemaChecks implements SchemaChecks {
  readonly #gate = new Gate(1);
  readonly #timeoutMs: number;
  #worker: Worker | undefined;
  #nextId = 1;
  #closed = false;
  /** Checks run in the thread so far, and threads started (tests of the thread's use). */
  readonly counts = { checks: 0, starts: 0 };

  readonly #nice: number;

  /** `nice`: the thread's nice value (Linux), as the worker roles' threads have. */
  constructor(options: { timeoutMs?: number; nice?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? CHECK_TIMEOUT_MS;
    this.#nice = options.nice ?? 0;
  }

  async document(schema: unknown, fieldPrefix: string): Promise<DocumentCheck> {
    // Here first: a document nested 100,000 levels deep would overflow the clone that hands it over.
    const shape = schemaShapeProblems(schema, fieldPrefix);
    if (shape.length > 0) return { problems: shape };
    try {
      return (await this.#run({ kind: 'document', schema, fieldPrefix })) as DocumentCheck;
    } catch (err) {
      if (!(err instanceof CheckAbandoned)) throw err;
      return { problems: [tooComplex(fieldPrefix, err.message)] };
    }
  }

  async compatibility(
    candidate: unknown,
    previous: ReadonlyArray<{ version: number; schema: unknown }>,
    mode: CompatibilityMode,
  ): Promise<BreakingChange[]> {
    try {
      return (await this.#run({ kind: 'compatibility', candidate, previous, mode })) as BreakingChange[];
    } catch (err) {
      if (!(err instanceof CheckAbandoned)) throw err;
      const detail = tooComplex('schema', err.message);
      throw new ValidationError('schema_too_complex', detail.message, { details: [detail] });
    }
  }

  /** Ends the thread; checks asked for afterwards fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #run(request: Check): Promise<unknown> {
    return this.#gate.run(() => this.#ask(request));
  }

  #ask(request: Check): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('the schema checks are closed'));
    const worker = this.#thread();
    const id = this.#nextId++;
    this.counts.checks += 1;
    return new Promise((resolve, reject) => {
      const settle = (fn: () => void) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        fn();
      };
      const onMessage = (reply: CheckReply) => {
        if (reply.id !== id) return;
        settle(() => ('error' in reply ? reject(new Error(reply.error)) : resolve(reply.result)));
      };
      const onExit = (code: number) =>
        settle(() => reject(new CheckAbandoned(`the check ended its thread (exit code ${code})`)));
      const timer = setTimeout(() => {
        settle(() =>
          reject(new CheckAbandoned(`checking the schema took longer than ${this.#timeoutMs} ms`)),
        );
        // The thread is still busy with it: it goes, and the next check starts a new one.
        if (this.#worker === worker) this.#worker = undefined;
        void worker.terminate();
      }, this.#timeoutMs);
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      worker.postMessage({ ...request, id } as CheckRequest);
    });
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL('./schema-check-thread.ts', import.meta.url), {
      workerData: { nice: this.#nice },
    });
    this.counts.starts += 1;
    worker.unref();
    worker.on('error', () => {
      // Reported to the check in flight by its exit.
    });
    worker.once('exit', () => {
      if (this.#worker === worker) this.#worker = undefined;
    });
    this.#worker = worker;
    return worker;
  }
}

function tooComplex(field: string, why: string): ErrorDetail {
  return {
    field,
    message: `the schema could not be checked: ${why}; make it smaller or simpler`,
    code: 'schema_too_complex',
  };
}
