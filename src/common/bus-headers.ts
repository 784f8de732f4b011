/** Names of the bus message headers the platform uses between its stages. */
export const HEADERS = {
  /** When ingest accepted the event (ms since epoch), for end-to-end latency. */
  ingestedAt: 'x-webhooks-ingested-at',
  /** Processor attempts made so far (on the processor retry topic). */
  attempt: 'x-webhooks-attempt',
  /** The topic a message came from before a retry tier or the DLQ. */
  originTopic: 'x-webhooks-origin-topic',
  /**
   * On the processor retry topic: `<partition>:<offset>` of the record first read, so that a retried
   * copy gets the same delivery ids as its original (the ledger absorbs a copy routed twice).
   */
  originPosition: 'x-webhooks-origin-position',
  lastError: 'x-webhooks-last-error',
  /**
   * On a dispatcher retry tier: when the task is due (ms since epoch). A task read from a tier
   * earlier than that waits what is left in the next tier (see `retryPlacement`).
   */
  dueAt: 'x-webhooks-due-at',
  /** On a DLQ topic message: the dead letter's id, its reason and the attempts made. */
  dlqId: 'x-webhooks-dlq-id',
  reason: 'x-webhooks-reason',
  attempts: 'x-webhooks-attempts',
  /** Set on a message re-published from the DLQ: the id of the dead letter. */
  redrive: 'x-webhooks-redrive',
  /** On a redriven processor message: fan out to this subscription only. */
  onlySubscription: 'x-webhooks-only-subscription',
} as const;
