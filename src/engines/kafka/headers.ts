/**
 * The record header that carries a message's `notBefore` on Kafka (ms since the epoch, decimal
 * text). The consumer reads it back into `ConsumedMessage.notBefore` and leaves it out of the
 * headers, so a message's headers are what its publisher gave on every engine.
 */
export const NOT_BEFORE_HEADER = 'webhooks-not-before';

/** A record's headers as text, the not-before header read out of them into `notBefore`. */
export function readHeaders(pairs: Iterable<[string, string]>): {
  headers: Record<string, string>;
  notBefore?: number;
} {
  const headers: Record<string, string> = {};
  let notBefore: number | undefined;
  for (const [name, text] of pairs) {
    if (name === NOT_BEFORE_HEADER) {
      const at = Number(text);
      if (Number.isFinite(at)) notBefore = at;
    } else headers[name] = text;
  }
  return notBefore === undefined ? { headers } : { headers, notBefore };
}
