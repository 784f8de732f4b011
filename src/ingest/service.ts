/**
 * Event ingest: accepts CloudEvents (structured, binary and batch modes), picks each event's schema
 * version (the one it names, or the latest ACTIVE one), and appends it to its ingress topic
 * `ingress.<domain>.<event>.v<version>`. It does not wait for delivery.
 */
import { type Principal, publishRefusal } from '../common/access.ts';
import { HEADERS } from '../common/bus-headers.ts';
import { type EventEnvelope, parseHttpEvents, toStructured } from '../common/envelope.ts';
import { type ErrorDetail, ForbiddenError, UnprocessableError } from '../common/errors.ts';
import type { MetricsRegistry } from '../common/metrics.ts';
import type { SchemaRecord } from '../common/model.ts';
import type { BusMessage } from '../common/ports/bus.ts';
import { ingressTopic } from '../common/topics.ts';

export interface IngestDeps {
  /** Every version of an event's schema, ascending (read-through cached by the caller). */
  versions(domain: string, event: string): Promise<SchemaRecord[]>;
  publish(messages: BusMessage[]): Promise<void>;
  metrics: MetricsRegistry;
  clock: () => Date;
}

/** Accepting events from producers. */
export class EventIngest {
  readonly #deps: IngestDeps;
  readonly #ingested;

  constructor(deps: IngestDeps) {
    this.#deps = deps;
    this.#ingested = deps.metrics.counter('events_ingested', 'Events accepted at ingest', ['type']);
  }

  /**
   * Parses an HTTP request's events and appends them; all or none (every problem is reported). A
   * publisher key publishes only its own sources (and types): anything else is refused (403)
   * before a thing is written, so no producer can claim — and deduplicate away — another's ids.
   */
  async ingest(
    contentType: string | undefined,
    headers: Record<string, string | undefined>,
    body: string,
    principal?: Principal,
  ) {
    const events = parseHttpEvents(contentType, headers, body);
    const batch = events.length > 1 || contentType?.includes('batch');
    assertMayPublish(principal, events, batch === true);
    const problems: ErrorDetail[] = [];
    const messages: BusMessage[] = [];
    const now = this.#deps.clock().getTime();
    for (const [i, envelope] of events.entries()) {
      const prefix = batch ? `[${i}].` : '';
      const version = await this.#resolveVersion(envelope, prefix, problems);
      if (version === undefined) continue;
      const routed: EventEnvelope = { ...envelope, schemaVersion: version };
      messages.push({
        topic: ingressTopic(envelope.domain, envelope.event, version),
        key: ingressKey(envelope),
        value: JSON.stringify(toStructured(routed)),
        headers: { [HEADERS.ingestedAt]: String(now) },
      });
    }
    if (problems.length > 0) {
      throw new UnprocessableError(
        'event_not_routable',
        `${problems.length} event(s) cannot be routed: ${problems[0]!.message}`,
        {
          details: problems,
        },
      );
    }
    await this.#deps.publish(messages);
    for (const e of events) this.#ingested.inc({ type: e.type });
    return events.map((e) => ({ id: e.id, type: e.type }));
  }

  async #resolveVersion(
    envelope: EventEnvelope,
    prefix: string,
    problems: ErrorDetail[],
  ): Promise<number | undefined> {
    const versions = await this.#deps.versions(envelope.domain, envelope.event);
    if (versions.length === 0) {
      problems.push({
        field: `${prefix}type`,
        message: `no schema is registered for ${envelope.type}`,
        code: 'event_type_unknown',
      });
      return undefined;
    }
    if (envelope.schemaVersion !== undefined) {
      const named = versions.find((v) => v.version === envelope.schemaVersion);
      if (!named) {
        problems.push({
          field: `${prefix}schemaversion`,
          message: `${envelope.type} has no version ${envelope.schemaVersion}`,
          code: 'schema_version_unknown',
        });
        return undefined;
      }
      if (named.status !== 'ACTIVE') {
        problems.push({
          field: `${prefix}schemaversion`,
          message: `${envelope.type} v${named.version} is INACTIVE`,
          code: 'schema_inactive',
        });
        return undefined;
      }
      return named.version;
    }
    const active = versions.filter((v) => v.status === 'ACTIVE').at(-1);
    if (!active) {
      problems.push({
        field: `${prefix}type`,
        message: `${envelope.type} has no ACTIVE schema version`,
        code: 'schema_inactive',
      });
      return undefined;
    }
    return active.version;
  }
}

/** 403 naming each event the caller may not publish. */
function assertMayPublish(principal: Principal | undefined, events: EventEnvelope[], batch: boolean): void {
  const refused: ErrorDetail[] = [];
  for (const [i, envelope] of events.entries()) {
    const refusal = publishRefusal(principal, envelope);
    if (refusal)
      refused.push({ field: `${batch ? `[${i}].` : ''}${refusal.field}`, message: refusal.message });
  }
  if (refused.length > 0) {
    throw new ForbiddenError('publish_not_allowed', refused[0]!.message, { details: refused });
  }
}

/**
 * The key of an event on its ingress topic: the CloudEvents `partitionkey` extension when the
 * producer set one, else its subject, else its id — the events of one key stay in order.
 */
export function ingressKey(envelope: EventEnvelope): string {
  const partitionKey = envelope.extensions.partitionkey;
  if (partitionKey !== undefined && partitionKey !== '') return String(partitionKey);
  return envelope.subject ?? envelope.id;
}
