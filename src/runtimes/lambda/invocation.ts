/**
 * The invocation a piece of work belongs to, for the code below the handlers: when it must be over
 * (the function's timeout), so that a delivery attempt or a wait inside the invocation is never cut
 * off by it. Kept per asynchronous context, so concurrent invocations in one process (tests, the
 * local event source mapping driver) each see their own.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** What the handlers read of Lambda's context object. */
export interface LambdaContextLike {
  getRemainingTimeInMillis(): number;
  awsRequestId?: string;
  functionName?: string;
}

/**
 * Time kept back at the end of an invocation for what follows the work: recording outcomes,
 * publishing, building the response. Work that would end later is not started.
 */
export const INVOCATION_MARGIN_MS = 3_000;

const current = new AsyncLocalStorage<{ endsAt: number }>();

/** Runs `fn` as the work of the invocation `context` describes (no deadline without one). */
export function withInvocation<T>(context: LambdaContextLike | undefined, fn: () => Promise<T>): Promise<T> {
  if (!context) return fn();
  return current.run({ endsAt: Date.now() + context.getRemainingTimeInMillis() }, fn);
}

/** The latest time (ms since epoch) work of the current invocation may end, margin kept back. */
export function invocationDeadline(): number | undefined {
  const invocation = current.getStore();
  return invocation ? invocation.endsAt - INVOCATION_MARGIN_MS : undefined;
}
