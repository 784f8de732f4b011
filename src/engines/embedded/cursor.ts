/**
 * One partition as a consumer member sees it while it holds the partition's lease: where to fetch
 * next, which handed-out offsets are still in flight, and how far the commit may advance.
 *
 * Commit rule: the committed offset advances only over the contiguous prefix of handed-out offsets
 * whose batches completed successfully. A failed offset stops it there, and the partition rewinds
 * to that offset (redelivering it and every later one) once no later offset is still in flight,
 * so a message is never handed out twice at the same time.
 */

const IN_FLIGHT = 0;
const DONE = 1;
const FAILED = 2;

/** The key of a partition in maps. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/** A held partition's fetch position and in-flight offsets. */
export class PartitionCursor {
  readonly topic: string;
  readonly partition: number;
  /** `topic\0partition`: the partition's key in maps. */
  readonly key: string;
  /** Next offset to process, as committed in the database. */
  committed: number;
  /** Next offset to fetch. */
  position: number;
  /** No fetching before this time: the pause after a failure. */
  resumeAt = 0;
  /** The message at `position` is not due before this time (its notBefore). */
  blockedUntil = 0;
  /** Paused by the handler (`BatchControl.pause`) until this time. */
  pausedUntil = 0;
  /** Handing the lease back (over the fair share): fetch nothing more, release once idle. */
  releasing = false;
  #pending: number[] = [];
  #head = 0;
  readonly #status = new Map<number, number>();
  #rewindTo: number | undefined;
  #inFlight = 0;

  constructor(topic: string, partition: number, committed: number) {
    this.topic = topic;
    this.partition = partition;
    this.key = partitionKey(topic, partition);
    this.committed = committed;
    this.position = committed;
  }

  /** Messages of this partition handed out and not yet settled. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** When a fetch may next take from it (0: now), or undefined while it waits for in-flight messages. */
  readyAt(): number | undefined {
    if (this.releasing || this.#rewindTo !== undefined) return undefined;
    return Math.max(this.resumeAt, this.blockedUntil, this.pausedUntil);
  }

  /** Records that the message at `offset` was handed to a handler. */
  handOut(offset: number): void {
    this.#pending.push(offset);
    this.#status.set(offset, IN_FLIGHT);
    this.#inFlight++;
    this.position = offset + 1;
  }

  /** Records the outcome of a handed-out message; a failure schedules a rewind to it. */
  settle(offset: number, failed: boolean): void {
    if (this.#status.get(offset) !== IN_FLIGHT) return;
    this.#status.set(offset, failed ? FAILED : DONE);
    this.#inFlight--;
    if (failed && (this.#rewindTo === undefined || offset < this.#rewindTo)) this.#rewindTo = offset;
  }

  /** Advances `committed` over the completed prefix; returns the new value when it moved. */
  takeCommit(): number | undefined {
    let next: number | undefined;
    while (this.#head < this.#pending.length) {
      const offset = this.#pending[this.#head]!;
      if (this.#status.get(offset) !== DONE) break;
      this.#status.delete(offset);
      next = offset + 1;
      this.#head++;
    }
    this.#compact();
    if (next === undefined) return undefined;
    this.committed = next;
    return next;
  }

  /**
   * Rewinds to the first failed offset once nothing at or after it is in flight; fetching resumes
   * at `resumeAt`. Returns whether it rewound.
   */
  rewindIfSettled(resumeAt: number): boolean {
    const to = this.#rewindTo;
    if (to === undefined) return false;
    let keep = this.#pending.length;
    for (let i = this.#pending.length - 1; i >= this.#head; i--) {
      const offset = this.#pending[i]!;
      if (offset < to) break;
      if (this.#status.get(offset) === IN_FLIGHT) return false;
      keep = i;
    }
    for (let i = keep; i < this.#pending.length; i++) this.#status.delete(this.#pending[i]!);
    this.#pending.length = keep;
    this.#compact();
    this.#rewindTo = undefined;
    this.position = to;
    this.resumeAt = resumeAt;
    this.blockedUntil = 0;
    return true;
  }

  #compact(): void {
    if (this.#head > 0 && this.#head * 2 >= this.#pending.length) {
      this.#pending = this.#pending.slice(this.#head);
      this.#head = 0;
    }
  }
}
