/** Reading the errors of @platformatic/kafka, which nests the broker's codes inside aggregates. */
import { findErrorBy } from '@platformatic/kafka';

/** Whether the error (or one nested in it) carries the broker's error `apiId` (e.g. `TOPIC_ALREADY_EXISTS`). */
export function hasErrorCode(err: unknown, apiId: string): boolean {
  return err instanceof Error && findErrorBy(err, 'apiId', apiId) !== null;
}

/** The error's message with the messages nested in it (the client's aggregates say little on their own). */
export function describeKafkaError(err: unknown, depth = 0): string {
  if (!(err instanceof Error)) return String(err);
  if (depth > 5) return err.message;
  const nested = (err as { errors?: unknown[] }).errors;
  const causes = [...(Array.isArray(nested) ? nested : []), ...(err.cause !== undefined ? [err.cause] : [])];
  const inner = causes.map((e) => describeKafkaError(e, depth + 1)).filter((m) => m !== err.message);
  const unique = [...new Set(inner)];
  return unique.length > 0 ? `${err.message}: ${unique.join('; ')}` : err.message;
}
