/** Names of the bus message headers the platform uses between its stages. */
export const HEADERS = {
  /** When ingest accepted the event (ms since epoch), for end-to-end latency. */
  ingestedAt: 'x-webhooks-ingested-at',
  /** Processor attempts made so far (on the processor retry topic). */
  attempt: 'x-webhooks-attempt',
  /** The topic a message came from before a retry tier or the DLQ. */
  originTopic: 'x-webhooks-origin-topic',
  lastError: 'x-webhooks-last-error',
} as const;
