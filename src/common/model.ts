/**
 * The records of the plan's tables: `event_schema`, `partner`, `partner_event_subscription`.
 * Shared by the components (which build them) and the store engines (which persist them).
 */
import type { JsonObject, JsonValue } from './json.ts';

export type SchemaStatus = 'ACTIVE' | 'INACTIVE';
export type PartnerStatus = 'ACTIVE' | 'INACTIVE';
export type SubscriptionStatus = 'ACTIVE' | 'PAUSED' | 'DISABLED';

/** Compatibility modes, Confluent style; the checker lives in `src/schemas/compatibility.ts`. */
export type SchemaCompatibility =
  | 'NONE'
  | 'BACKWARD'
  | 'BACKWARD_TRANSITIVE'
  | 'FORWARD'
  | 'FORWARD_TRANSITIVE'
  | 'FULL'
  | 'FULL_TRANSITIVE';

/** One version of an event's JSON Schema (`event_schema`). Key: domain + event + version. */
export interface SchemaRecord {
  id: string;
  domain: string;
  event: string;
  version: number;
  status: SchemaStatus;
  schema: JsonValue;
  /** SHA-256 of the canonical JSON of `schema`: equal documents, equal fingerprints. */
  fingerprint: string;
  compatibility: SchemaCompatibility;
  ingressTopic: string;
  description?: string;
  createdAt: string;
  updatedAt: string;
  /** Optimistic-concurrency revision; 1 on insert, +1 on each update. */
  revision: number;
}

/** Per-partner delivery timeouts (milliseconds). */
export interface DeliveryTimeouts {
  connectMs?: number;
  headersMs?: number;
  bodyMs?: number;
}

/** Retry settings; a partner's apply to all its subscriptions, a subscription's override them. */
export interface RetryPolicy {
  /** Delay before each retry, in seconds; attempt 1 is immediate. */
  scheduleSeconds?: number[];
  maxAttempts?: number;
  maxAgeSeconds?: number;
}

/** How deliveries to one partner behave (isolation and retries). */
export interface PartnerDeliverySettings {
  timeouts?: DeliveryTimeouts;
  retry?: RetryPolicy;
  maxConcurrency?: number;
  rateLimitPerSecond?: number;
}

/** A partner (`partner`): who receives webhooks. */
export interface PartnerRecord {
  id: string;
  name: string;
  status: PartnerStatus;
  contactEmail?: string;
  metadata: JsonObject;
  delivery: PartnerDeliverySettings;
  createdAt: string;
  updatedAt: string;
  revision: number;
}

/** A signing secret, sealed at rest; `expiresAt` is set on the old one when it is rotated out. */
export interface SigningSecretRecord {
  sealed: string;
  createdAt: string;
  expiresAt?: string;
}

/** Delivery credentials in clear (only in memory: sealed at rest). */
export type DeliveryAuth =
  | { type: 'bearer'; token: string }
  | { type: 'basic'; username: string; password: string }
  | { type: 'header'; name: string; value: string };

/** Delivery credentials: the kind is visible, the values are sealed as one JSON blob. */
export interface SealedDeliveryAuth {
  type: 'bearer' | 'basic' | 'header';
  /** Header name for `header` auth (not secret). */
  headerName?: string;
  sealed: string;
}

/** A partner's subscription to an event (`partner_event_subscription`). */
export interface SubscriptionRecord {
  id: string;
  partnerId: string;
  domain: string;
  event: string;
  /** Only this schema version, or every version when absent. */
  schemaVersion?: number;
  url: string;
  status: SubscriptionStatus;
  statusReason?: string;
  signing: { enabled: boolean; secrets: SigningSecretRecord[] };
  auth?: SealedDeliveryAuth;
  filter?: JsonObject;
  mapping?: JsonObject;
  retry?: RetryPolicy;
  egressTopic: string;
  description?: string;
  createdAt: string;
  updatedAt: string;
  revision: number;
}

/** Delivery status of one event to one subscription (`event_delivery_status`). */
export type DeliveryStatus = 'PENDING' | 'SUCCESS' | 'FAILED';

/**
 * One event × subscription: the unit of delivery. Its `webhook-id` is `webhookIdFor(eventSource,
 * eventId, subscriptionId)` — or its `id` for a delivery made before 2026-12-06 (`msg_…`), see
 * `webhookIdOfDelivery`; `id` keys the record (ordered by where the event was read).
 */
export interface DeliveryRecord {
  id: string;
  eventId: string;
  eventSource: string;
  eventType: string;
  subscriptionId: string;
  partnerId: string;
  status: DeliveryStatus;
  /** Attempts made so far. */
  attempts: number;
  lastStatusCode?: number;
  lastError?: string;
  /** When the next attempt is due (while PENDING after a failure). */
  nextAttemptAt?: string;
  correlationId?: string;
  createdAt: string;
  updatedAt: string;
  completedAt?: string;
}

/** One HTTP attempt of a delivery (`delivery_attempt`). */
export interface DeliveryAttempt {
  deliveryId: string;
  attempt: number;
  at: string;
  /** HTTP status, absent when no response came (network error, timeout). */
  statusCode?: number;
  latencyMs: number;
  /** What went wrong, in words (absent on 2xx). */
  error?: string;
  /** The start of the response body (truncated). */
  responseBody?: string;
  outcome: 'success' | 'retry' | 'failed';
}

/** A message that could not be processed or delivered, kept for inspection and redrive. */
export interface DeadLetterRecord {
  id: string;
  stage: 'processor' | 'dispatcher';
  reason: string;
  lastError?: string;
  attempts: number;
  eventId?: string;
  eventType?: string;
  subscriptionId?: string;
  partnerId?: string;
  /** The topic and JSON message to re-publish on redrive. */
  topic: string;
  key?: string;
  value: string;
  /**
   * The record's CloudEvents Kafka binding headers (`content-type`, `ce_*`), when it came from a
   * producer outside the platform: re-published with the value, which is data alone in binary mode.
   */
  headers?: Record<string, string>;
  createdAt: string;
  redrivenAt?: string;
}

/** An idempotency-ledger entry: a key claimed while work is in progress, then completed. */
export interface LedgerEntry {
  key: string;
  status: 'IN_PROGRESS' | 'COMPLETED';
  /** IN_PROGRESS: when the claim lapses; COMPLETED: when the entry may be purged. */
  expiresAt: number;
  updatedAt: number;
}

/** What an API key may do: `admin` everything; `operator` read and redrive; `publisher` `POST /events` only. */
export type ApiKeyRole = 'admin' | 'operator' | 'publisher';

/** An API key (`api_key`). The key itself is never stored: only its SHA-256. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  role: ApiKeyRole;
  /** A publisher's CloudEvents sources: exact values, or prefixes ending in `*`. */
  sources?: string[];
  /** A publisher's event types (exact, or prefixes ending in `*`); every type when absent. */
  eventTypes?: string[];
  /** SHA-256 (hex) of the whole key. */
  keyHash: string;
  /** The key's first characters, to recognise it in a listing. */
  prefix: string;
  createdAt: string;
  /** Who created it (an audit actor, e.g. `admin-token` or `api-key:<id>`). */
  createdBy: string;
  expiresAt?: string;
  revokedAt?: string;
  /** When it last authenticated a request (kept to the minute). */
  lastUsedAt?: string;
  revision: number;
}

/** One admin change (`audit_log`): who did what, when, and how it ended. */
export interface AuditRecord {
  /** Time-ordered (UUIDv7): listing by id is listing by time. */
  id: string;
  at: string;
  /** `admin-token`, or `api-key:<id>`. */
  actor: string;
  /** The API key's name, when the actor is one. */
  actorName?: string;
  /** E.g. `POST /admin/subscriptions`. */
  action: string;
  /** The route's path parameters (what was changed), e.g. `{ "id": "…" }`. */
  target: Record<string, string>;
  /** The names of the request body's top-level fields (never their values: they may hold secrets). */
  fields: string[];
  status: number;
  requestId: string;
}
