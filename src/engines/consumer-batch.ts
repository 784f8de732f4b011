/**
 * What every bus engine's consumer does with a batch once its messages are handed out: run the
 * handler with its `BatchControl`, settle each message on its partition's cursor (handled, failed
 * with the handler's reason, or failed with what it threw), and give up messages to the dead-letter
 * callback. The embedded log and Kafka differ in how they fetch and commit, not in this.
 */
import { ValidationError } from '../common/errors.ts';
import type {
  BatchControl,
  BatchHandler,
  ConsumedMessage,
  ConsumerOptions,
  DeadLetterNotice,
  FailedMessage,
} from '../common/ports/bus.ts';
import type { PartitionCursor, Redelivery, Retry } from './embedded/cursor.ts';

/** A handed-out message and the cursor of its partition. */
export interface BatchEntry {
  cursor: PartitionCursor;
  message: ConsumedMessage;
  /** Its size as counted against `maxInFlightBytes`. */
  bytes: number;
  /** Set when it failed before: its redelivery, or (`retry.deadLetter`) its dead-lettering. */
  retry?: Retry;
}

/** What the runner needs of its consumer. */
export interface BatchRunner<E extends BatchEntry> {
  handler: BatchHandler;
  deadLetter: ((message: ConsumedMessage, notice: DeadLetterNotice) => Promise<void>) | undefined;
  redelivery: Redelivery;
  report(err: unknown): void;
  /** Frees the entry's place in flight; false when its result no longer counts (killed, or its partition lost). */
  release(entry: E): boolean;
  /** The entry was reported done (and succeeded on its cursor): commit it soon. */
  doneEarly(entry: E): void;
  pause(message: ConsumedMessage, until: number): void;
  resume(message: ConsumedMessage): void;
  /** These entries are settled on their cursors: commit how far their partitions' handled prefixes reach. */
  settled(entries: E[]): void;
}

/**
 * Starts the work of handed-out messages: the handler on those handed out to it, the dead-letter
 * callback on each given up on. Returns the work to track (a stop waits for it).
 */
export function startBatch<E extends BatchEntry>(runner: BatchRunner<E>, batch: E[]): Array<Promise<void>> {
  const toHandler = batch.filter((e) => !e.retry?.deadLetter);
  const work = batch.filter((e) => e.retry?.deadLetter).map((entry) => sendToDeadLetter(runner, entry));
  if (toHandler.length > 0) work.unshift(runBatch(runner, toHandler));
  return work;
}

/** Runs the handler on a batch and settles every message of it. */
export async function runBatch<E extends BatchEntry>(runner: BatchRunner<E>, entries: E[]): Promise<void> {
  const open = new Map<ConsumedMessage, E>(entries.map((e) => [e.message, e]));
  const control: BatchControl = {
    done: (message) => {
      const entry = open.get(message);
      if (!entry) return;
      open.delete(message);
      if (!runner.release(entry)) return;
      // Settled now (its place is free at once); the commit waits a little to cover many.
      entry.cursor.succeed(entry.message.offset);
      runner.doneEarly(entry);
    },
    pause: (message, ms) => runner.pause(message, Date.now() + Math.max(0, ms)),
    resume: (message) => runner.resume(message),
  };
  let failures: Map<string, FailedMessage>;
  try {
    const outcome = await runner.handler(
      entries.map((e) => e.message),
      control,
    );
    failures = new Map((outcome?.failed ?? []).map((f) => [positionOf(f.message), f]));
  } catch (err) {
    runner.report(err);
    // Every message not reported done failed with what the handler threw.
    failures = new Map(entries.map((e) => [positionOf(e.message), { message: e.message, error: err }]));
  }
  const rest = [...open.values()];
  open.clear();
  const now = Date.now();
  const settled: E[] = [];
  for (const entry of rest) {
    if (!runner.release(entry)) continue;
    const failure = failures.get(positionOf(entry.message));
    if (failure) {
      entry.cursor.fail(
        entry.message.offset,
        entry.message,
        { error: failure.error, permanent: failure.permanent === true && runner.deadLetter !== undefined },
        now,
        runner.redelivery,
      );
    } else entry.cursor.succeed(entry.message.offset);
    settled.push(entry);
  }
  runner.settled(settled);
}

/** Gives a message up to the dead-letter callback; if that fails, it is tried again after the backoff. */
export async function sendToDeadLetter<E extends BatchEntry>(
  runner: BatchRunner<E>,
  entry: E,
): Promise<void> {
  const retry = entry.retry!;
  let sent = false;
  try {
    await runner.deadLetter!(entry.message, {
      error: retry.error,
      failures: retry.failures,
      permanent: retry.permanent,
    });
    sent = true;
  } catch (err) {
    runner.report(err);
  }
  if (!runner.release(entry)) return;
  if (sent) entry.cursor.succeed(entry.message.offset);
  else entry.cursor.deadLetterFailed(entry.message.offset, Date.now(), runner.redelivery);
  runner.settled([entry]);
}

/** Records deleted (by retention) before a member read them: the fetch skipped them, loudly. */
export interface SkippedRecords {
  topic: string;
  partition: number;
  from: number;
  to: number;
}

/** Records deleted before this group read them; the consumer went on after them. */
export class RecordsSkippedError extends Error {
  readonly code = 'records_skipped';
  readonly skipped: SkippedRecords;
  constructor(skipped: SkippedRecords) {
    super(
      `records ${skipped.from}..${skipped.to - 1} of ${skipped.topic}/${skipped.partition} were deleted before this group read them; going on from ${skipped.to}`,
    );
    this.name = 'RecordsSkippedError';
    this.skipped = skipped;
  }
}

/** A group offset past the end of its partition's log, and where reading starts again. */
export interface OffsetPastEnd {
  topic: string;
  partition: number;
  offset: number;
  /** The log's end offset. */
  end: number;
  /** The earliest offset of the log: reading goes on from here. */
  from: number;
}

/**
 * The group's offset was past the end of the log (the topic made again, a log cut short): the
 * consumer goes on from the earliest record, so what the log holds now is read at least once.
 */
export class OffsetPastEndError extends Error {
  readonly code = 'offset_reset';
  readonly reset: OffsetPastEnd;
  constructor(reset: OffsetPastEnd) {
    super(
      `offset ${reset.offset} of ${reset.topic}/${reset.partition} is past the end of its log (${reset.end}); reading again from the earliest, ${reset.from}`,
    );
    this.name = 'OffsetPastEndError';
    this.reset = reset;
  }
}

/** A consumer's limits from its options, checked: whole numbers of at least 1, and a group. */
export function consumerLimits(options: ConsumerOptions): {
  maxBatch: number;
  maxInFlight: number;
  maxPerPartition: number;
  maxInFlightBytes: number;
} {
  const maxBatch = positiveInteger(options.maxBatch ?? 100, 'maxBatch');
  const maxInFlight = positiveInteger(options.maxInFlight ?? maxBatch, 'maxInFlight');
  const maxPerPartition = positiveInteger(
    options.maxInFlightPerPartition ?? maxInFlight,
    'maxInFlightPerPartition',
  );
  if (!options.group) {
    throw new ValidationError('consumer_group_invalid', 'a consumer needs a group', {
      details: [{ field: 'group', message: 'must be a non-empty string' }],
    });
  }
  const maxInFlightBytes = positiveInteger(
    options.maxInFlightBytes ?? Number.MAX_SAFE_INTEGER,
    'maxInFlightBytes',
  );
  return { maxBatch, maxInFlight, maxPerPartition, maxInFlightBytes };
}

/** What a message counts against `maxInFlightBytes`: its value, key and headers (text). */
export function sizeOf(message: ConsumedMessage): number {
  let size = message.value.length + (message.key?.length ?? 0);
  for (const name in message.headers) size += name.length + message.headers[name]!.length;
  return size;
}

/** A message's place in the log, to match a handler's `failed` list (which may hold copies). */
function positionOf(message: ConsumedMessage): string {
  return `${message.topic}\u0000${message.partition}\u0000${message.offset}`;
}

function positiveInteger(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new ValidationError('consumer_options_invalid', `${field} must be a whole number of at least 1`, {
      details: [{ field, message: `got ${value}` }],
    });
  }
  return value;
}
