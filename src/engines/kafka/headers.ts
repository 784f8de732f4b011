/**
 * The record header that carries a message's `notBefore` on Kafka (ms since the epoch, decimal
 * text). The consumer reads it back into `ConsumedMessage.notBefore` and leaves it out of the
 * headers, so a message's headers are what its publisher gave on every engine.
 */
export const NOT_BEFORE_HEADER = 'webhooks-not-before';
