/**
 * Runs generated cases against a server and tallies what came back: answers by status class and by
 * family, each distinct 5xx with a sample request, and every request that got no answer (a dropped
 * connection, or none within the timeout). Shared by `npm run fuzz` and the fuzz smoke test.
 */
import { type RawHttpOutcome, rawRequest } from './fuzz-client.ts';
import { describeCase, type Family, type FuzzCase, type FuzzTarget, generateCase } from './fuzz-requests.ts';

export interface FuzzRunOptions {
  port: number;
  target: FuzzTarget;
  seed: number;
  /** Cases 0 … requests-1 are sent. */
  requests: number;
  concurrency: number;
  families?: readonly Family[];
  /** A request without an answer after this long counts as hung (dropped). */
  timeoutMs?: number;
  /** Called after each answered or dropped request, with the count so far. */
  onProgress?: (done: number, result: FuzzRunResult) => void;
}

/** One distinct finding (a kind of 5xx, or of dropped connection) with its first sample. */
export interface Finding {
  count: number;
  /** The families that produced it. */
  families: Set<Family>;
  /** The first case that did: its number (replay with `--case`), what it sent, what came back. */
  index: number;
  request: string;
  answer: string;
  /** The request id of the answer, to find the platform's log line. */
  requestId?: string;
}

export interface FuzzRunResult {
  sent: number;
  /** Answers by status class: "2xx" … "5xx". */
  byClass: Record<string, number>;
  byStatus: Map<number, number>;
  /** Per family: requests, answers by status class (and "dropped"), and each request's time to its outcome in ms. */
  byFamily: Map<Family, { sent: number; byClass: Record<string, number>; latencies: number[] }>;
  /** Distinct 5xx answers, by "status route code". */
  serverErrors: Map<string, Finding>;
  /** Requests that got no answer, by "family route error". */
  dropped: Map<string, Finding>;
  /** Answers after which the socket was reset (the answer was read; counted, not a failure). */
  resetAfterAnswer: number;
}

/** Sends the cases `concurrency` at a time, each on a connection of its own. */
export async function runFuzz(options: FuzzRunOptions): Promise<FuzzRunResult> {
  const result: FuzzRunResult = {
    sent: 0,
    byClass: {},
    byStatus: new Map(),
    byFamily: new Map(),
    serverErrors: new Map(),
    dropped: new Map(),
    resetAfterAnswer: 0,
  };
  let next = 0;
  const worker = async () => {
    while (next < options.requests) {
      const index = next++;
      const made = generateCase(options.seed, index, options.target, options.families);
      const started = performance.now();
      const outcome = await rawRequest(options.port, made, { timeoutMs: options.timeoutMs ?? 35_000 });
      tally(result, index, made, outcome, performance.now() - started);
      options.onProgress?.(result.sent, result);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return result;
}

/** The total of a map of findings. */
export function countOf(findings: Map<string, Finding>): number {
  let total = 0;
  for (const f of findings.values()) total += f.count;
  return total;
}

/** What an answer says, briefly: status, error code and message, or the start of the body. */
export function describeAnswer(outcome: RawHttpOutcome): string {
  const { response } = outcome;
  if (!response)
    return `no answer (${outcome.error ?? 'closed'}; request ${outcome.sentAll ? '' : 'not '}fully sent)`;
  const text = response.body.subarray(0, 400).toString('utf8');
  return `${response.status} ${text}${response.body.length > 400 ? '…' : ''}`;
}

function tally(
  result: FuzzRunResult,
  index: number,
  made: FuzzCase,
  outcome: RawHttpOutcome,
  ms: number,
): void {
  result.sent += 1;
  let family = result.byFamily.get(made.family);
  if (!family) {
    family = { sent: 0, byClass: {}, latencies: [] };
    result.byFamily.set(made.family, family);
  }
  family.sent += 1;
  family.latencies.push(ms);
  const { response } = outcome;
  if (!response) {
    record(result.dropped, `${made.family} ${made.route} ${outcome.error ?? 'closed'}`, index, made, outcome);
    family.byClass.dropped = (family.byClass.dropped ?? 0) + 1;
    return;
  }
  if (outcome.error) result.resetAfterAnswer += 1;
  const statusClass = `${Math.floor(response.status / 100)}xx`;
  result.byClass[statusClass] = (result.byClass[statusClass] ?? 0) + 1;
  family.byClass[statusClass] = (family.byClass[statusClass] ?? 0) + 1;
  result.byStatus.set(response.status, (result.byStatus.get(response.status) ?? 0) + 1);
  if (response.status >= 500) {
    record(
      result.serverErrors,
      `${response.status} ${made.route} ${errorCode(response.body)}`,
      index,
      made,
      outcome,
    );
  }
}

function record(
  findings: Map<string, Finding>,
  key: string,
  index: number,
  made: FuzzCase,
  outcome: RawHttpOutcome,
): void {
  const found = findings.get(key);
  if (found) {
    found.count += 1;
    found.families.add(made.family);
    return;
  }
  const requestId = outcome.response?.headers['x-request-id'];
  findings.set(key, {
    count: 1,
    families: new Set([made.family]),
    index,
    request: describeCase(made),
    answer: describeAnswer(outcome),
    ...(requestId ? { requestId } : {}),
  });
}

function errorCode(body: Buffer): string {
  try {
    return String(JSON.parse(body.toString('utf8'))?.error?.code ?? '-');
  } catch {
    return '-';
  }
}
