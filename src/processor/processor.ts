/**
 * Event Processor & Filter (plan §3). Takes a batch of ingress records and returns the partial
 * batch response: deserialize, resolve the schema (read-through cache), validate `data`, match
 * subscriptions and filters, map and enrich, publish one delivery task per match to its egress topic
 * and write the idempotency marker. Transient failures go to the retry topic, permanent ones to the DLQ.
 */
import { HEADERS } from '../common/bus-headers.ts';
import type { DeadLetterInput, DeadLetterSink } from '../common/dead-letter-sink.ts';
import { type DeliveryTask, deliveryIdFor, serializeDeliveryTask } from '../common/delivery-task.ts';
import { type EventEnvelope, parseStructuredText } from '../common/envelope.ts';
import { bindingHeaders, kafkaEventMode, parseKafkaEvent } from '../common/envelope-kafka.ts';
import { describeError, isPermanentError, isWebhooksError, permanentErrorCode } from '../common/errors.ts';
import { matchesFilter } from '../common/filter.ts';
import { recordId } from '../common/ids.ts';
import type { JsonObject, JsonValue } from '../common/json.ts';
import type { ValidatorCache } from '../common/json-schema.ts';
import { type Logger, withCorrelationId } from '../common/log.ts';
import { applyMapping, type MappingDocument } from '../common/mapping.ts';
import type { MetricsRegistry } from '../common/metrics.ts';
import type { SubscriptionRecord } from '../common/model.ts';
import type {
  BatchOutcome,
  BusMessage,
  ConsumedMessage,
  DeadLetterNotice,
  FailedMessage,
} from '../common/ports/bus.ts';
import type { DeliveryRepository, EventRef } from '../common/ports/store.ts';
import { TimeSlicer } from '../common/time-slice.ts';
import type { ProcessorLookups } from './lookups.ts';
import { processorRetryMessage, recordPositionOf } from './retry.ts';

export const PROCESSOR_TOPIC_PREFIXES = ['ingress.', 'retry.processor.'];

export interface ProcessorDeps {
  lookups: ProcessorLookups;
  validators: ValidatorCache;
  publish: (messages: BusMessage[]) => Promise<void>;
  deadLetters: DeadLetterSink;
  /**
   * Where each routed event and its delivery ids are recorded: the idempotency marker, and what
   * `GET /admin/deliveries?eventId=` follows.
   */
  deliveries: Pick<DeliveryRepository, 'recordRouting' | 'routed'>;
  /** Skip an event already routed (the idempotency ledger is on). */
  /** Whether events are deduplicated by their recorded routes: fixed, or asked at each batch (a live flag). */
  dedupe: boolean | (() => boolean);
  /** Processor retries of transient failures before the DLQ. */
  maxAttempts: number;
  /** Delay before a transient failure is tried again. */
  retryDelayMs: number;
  /** Largest payload a mapping may make (UTF-8 bytes); default the mapping module's 1 MiB. */
  maxPayloadBytes?: number;
  metrics: MetricsRegistry;
  logger: Logger;
  clock: () => Date;
}

/** A failure that decides where a record goes. */
class Permanent extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** What processing one record produced, written when the batch is written. */
interface RecordOutputs {
  /** Its delivery tasks, or its copy for the retry topic. */
  messages: BusMessage[];
  dead: DeadLetterInput[];
  /**
   * The route to record (the idempotency marker), when it was routed, and the record's key in the
   * in-flight set (`#routing`).
   */
  route?: { event: EventRef; deliveryIds: string[]; inFlight: string };
}

/** What one record became. */
export type RecordOutcome =
  | { kind: 'published'; tasks: number }
  | { kind: 'duplicate' }
  | { kind: 'retry'; error: string }
  | { kind: 'dlq'; reason: string; error: string }
  /** Its outputs could not be written: the consumer delivers it again (or dead-letters it). */
  | { kind: 'failed'; error: string };

/** The processor core: pure orchestration over small ports, shared by every runtime. */
export class EventProcessor {
  readonly #deps: ProcessorDeps;
  readonly #processed;
  readonly #toRetry;
  readonly #toDlq;
  readonly #tasks;
  /**
   * Markers of events routed by batches still in flight (their markers not yet committed): a copy
   * of the same event in a concurrent batch is a duplicate even before the marker is stored.
   */
  readonly #routing = new Set<string>();
  /**
   * Routes written by this process, by the write's sequence number, while a batch whose dedupe
   * lookup began before that write is still in flight: its lookup may have missed the route, so a
   * copy of the event in it is a duplicate all the same. Dropped once no such batch is left.
   */
  readonly #written = new Map<string, number>();
  /** Route writes completed so far (the sequence of `#written`). */
  #writes = 0;
  /** Batches in flight, by the write sequence when their dedupe lookup began. */
  readonly #lookups = new Map<object, number>();

  constructor(deps: ProcessorDeps) {
    this.#deps = deps;
    this.#processed = deps.metrics.counter('events_processed', 'Events the processor handled (any outcome)');
    this.#toRetry = deps.metrics.counter('events_to_retry', 'Events sent to the processor retry topic');
    this.#toDlq = deps.metrics.counter('events_to_dlq', 'Events or deliveries sent to the processor DLQ', [
      'reason',
    ]);
    this.#tasks = deps.metrics.counter(
      'delivery_tasks_published',
      'Delivery tasks published to egress topics',
    );
  }

  /**
   * Processes a batch; the outcome lists the records that failed (partial batch response). The
   * outputs of the whole batch are written together (one publish, one DLQ send, the routes); when
   * that fails, they are written again record by record, so that a record whose outputs can never
   * be written (a task for a topic that is gone) fails alone — permanently when the error says
   * so — and the rest of the batch goes on.
   */
  async processBatch(batch: ConsumedMessage[]): Promise<BatchOutcome & { outcomes: RecordOutcome[] }> {
    const outputs: RecordOutputs[] = [];
    const outcomes: RecordOutcome[] = [];
    // Large events take milliseconds each to parse, validate and map: the API on this thread must
    // not wait for a whole batch of them.
    const slicer = new TimeSlicer();
    const lookup = {};
    try {
      return await this.#processParsed(batch, outputs, outcomes, slicer, lookup);
    } finally {
      this.#lookups.delete(lookup);
      this.#forgetWritten();
    }
  }

  async #processParsed(
    batch: ConsumedMessage[],
    outputs: RecordOutputs[],
    outcomes: RecordOutcome[],
    slicer: TimeSlicer,
    lookup: object,
  ): Promise<BatchOutcome & { outcomes: RecordOutcome[] }> {
    try {
      const parsed: Array<EventEnvelope | Unparsable> = [];
      for (const message of batch) {
        parsed.push(parseRecord(message));
        await slicer.maybeYield();
      }
      this.#lookups.set(lookup, this.#writes);
      const seen = await this.#routedBefore(batch, parsed);
      for (const [i, message] of batch.entries()) {
        await slicer.maybeYield();
        const output: RecordOutputs = { messages: [], dead: [] };
        outputs.push(output);
        const outcome = await this.#processRecord(message, parsed[i]!, seen[i]!, output, lookup);
        outcomes.push(outcome);
        this.#processed.inc();
        if (outcome.kind === 'retry') this.#toRetry.inc();
      }
    } catch (err) {
      // A lookup that failed for the whole batch (the store): every record is tried again.
      this.#deps.logger.error('processor could not read what it needs; the batch will be redelivered', {
        err,
      });
      this.#forget(outputs);
      return { failed: batch.map((message) => ({ message, error: err })), outcomes };
    }
    try {
      await this.#write(outputs);
      return { failed: [], outcomes };
    } catch (err) {
      this.#deps.logger.warn('processor could not write a batch; writing it record by record', { err });
    }
    const failed: FailedMessage[] = [];
    for (const [i, message] of batch.entries()) {
      try {
        await this.#write([outputs[i]!]);
      } catch (error) {
        const permanent = isPermanentError(error);
        this.#deps.logger.error('processor could not write the outputs of a record', {
          err: error,
          permanent,
          topic: message.topic,
          partition: message.partition,
          offset: message.offset,
        });
        outcomes[i] = { kind: 'failed', error: describeError(error) };
        failed.push({ message, error, permanent });
      }
    }
    this.#forget(outputs);
    return { failed, outcomes };
  }

  /**
   * Writes records' outputs: their tasks and retries in one publish, their dead letters, then their
   * routes (the markers). A crash in between means redelivery, and the dispatcher's ledger (stable
   * delivery ids) absorbs the repeat.
   */
  async #write(outputs: RecordOutputs[]): Promise<void> {
    try {
      // Flushed before the routes are written: a route is in the other file (store.db) and must
      // never outlive the tasks it marks as published (the event would be taken for a duplicate).
      await this.#deps.publish(outputs.flatMap((o) => o.messages));
      await this.#deps.deadLetters.send(outputs.flatMap((o) => o.dead));
      const routedAt = this.#deps.clock().toISOString();
      await Promise.all(
        outputs.flatMap((o) =>
          o.route ? [this.#deps.deliveries.recordRouting(o.route.event, o.route.deliveryIds, routedAt)] : [],
        ),
      );
      for (const o of outputs) if (o.route) this.#written.set(markerOf(o.route.event), ++this.#writes);
    } finally {
      this.#forget(outputs);
    }
  }

  /** Drops the written routes no batch in flight can have missed (its lookup began after them). */
  #forgetWritten(): void {
    if (this.#written.size === 0) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const began of this.#lookups.values()) oldest = Math.min(oldest, began);
    for (const [marker, seq] of this.#written) if (seq <= oldest) this.#written.delete(marker);
  }

  /** The in-flight markers of these records' events are no longer needed (written, or given up). */
  #forget(outputs: RecordOutputs[]): void {
    for (const o of outputs) if (o.route) this.#routing.delete(o.route.inFlight);
  }

  /**
   * What the consumer calls when it gives up on a record (it failed `failures` times, or for good):
   * the record goes to the processor DLQ with the last error.
   */
  async giveUp(message: ConsumedMessage, notice: DeadLetterNotice): Promise<void> {
    const reason = notice.permanent ? permanentErrorCode(notice.error) : 'redelivery_exhausted';
    const parsed = parseRecord(message);
    const envelope = parsed instanceof Unparsable ? undefined : parsed;
    this.#toDlq.inc({ reason });
    const attempt = Number(message.headers[HEADERS.attempt] ?? '0');
    await this.#deps.deadLetters.send([
      deadLetterFor(
        message,
        originTopicOf(message),
        reason,
        describeError(notice.error),
        attempt + notice.failures,
        envelope,
      ),
    ]);
  }

  /**
   * Which records' events were routed before (deduplication), looked up for the whole batch at
   * once; a redriven event is processed again whatever its record says (that is the point of a redrive).
   */
  async #routedBefore(
    batch: ConsumedMessage[],
    parsed: Array<EventEnvelope | Unparsable>,
  ): Promise<boolean[]> {
    const seen = batch.map(() => false);
    const { dedupe } = this.#deps;
    if (!(typeof dedupe === 'function' ? dedupe() : dedupe)) return seen;
    const asked: number[] = [];
    batch.forEach((message, i) => {
      const p = parsed[i]!;
      if (!(p instanceof Unparsable) && message.headers[HEADERS.redrive] === undefined) asked.push(i);
    });
    if (asked.length === 0) return seen;
    const answers = await this.#deps.deliveries.routed(
      asked.map((i) => {
        const e = parsed[i] as EventEnvelope;
        return { id: e.id, source: e.source };
      }),
    );
    asked.forEach((i, k) => {
      seen[i] = answers[k]!;
    });
    return seen;
  }

  async #processRecord(
    message: ConsumedMessage,
    parsedRecord: EventEnvelope | Unparsable,
    routedBefore: boolean,
    output: RecordOutputs,
    lookup: object,
  ): Promise<RecordOutcome> {
    const { messages: out, dead } = output;
    const attempt = Number(message.headers[HEADERS.attempt] ?? '0');
    const originTopic = originTopicOf(message);
    let envelope: EventEnvelope | undefined;
    try {
      if (parsedRecord instanceof Unparsable) throw parsedRecord.error;
      const parsed = parsedRecord;
      envelope = parsed;
      const event = { id: parsed.id, source: parsed.source };
      const redrive = message.headers[HEADERS.redrive];
      const redriven = redrive !== undefined;
      // In flight, a redriven record is one dead letter of its event: two dead letters of one event
      // (one per subscription whose mapping failed) redriven together are both routed, each to its
      // own subscription. Only a second copy of the same one is a duplicate.
      const marker = redriven ? `${markerOf(event)}\n${redrive}` : markerOf(event);
      const missed =
        (this.#written.get(markerOf(event)) ?? -1) > (this.#lookups.get(lookup) ?? Number.POSITIVE_INFINITY);
      if (this.#routing.has(marker) || routedBefore || (!redriven && missed)) return { kind: 'duplicate' };
      // Taken before the lookups below wait: a copy in a batch running meanwhile is a duplicate.
      this.#routing.add(marker);
      let routed: Array<{ deliveryId: string; message: BusMessage }>;
      try {
        // Everything logged while this event is routed carries its correlation id.
        routed = await withCorrelationId(parsed.correlationId, () =>
          this.#fanOut(parsed, message, originTopic, dead),
        );
      } catch (err) {
        this.#routing.delete(marker);
        throw err;
      }
      for (const d of dead) this.#toDlq.inc({ reason: d.reason });
      const tasks = routed.map((r) => r.message);
      out.push(...tasks);
      output.route = { event, deliveryIds: routed.map((r) => r.deliveryId), inFlight: marker };
      return { kind: 'published', tasks: tasks.length };
    } catch (err) {
      const error = describeError(err);
      // The whole record is retried or dead-lettered: dead letters of single subscriptions made on
      // this pass (a mapping that failed) would be made again by the retry, or are covered by the
      // record's own dead letter, whose redrive fans the event out again.
      dead.length = 0;
      if (
        err instanceof Permanent ||
        (isWebhooksError(err) && err.kind !== 'unavailable' && err.kind !== 'internal') ||
        err instanceof SyntaxError
      ) {
        const reason =
          err instanceof Permanent
            ? err.reason
            : err instanceof SyntaxError
              ? 'invalid_json'
              : (err as { code: string }).code;
        this.#toDlq.inc({ reason });
        dead.push(deadLetterFor(message, originTopic, reason, error, attempt + 1, envelope));
        return { kind: 'dlq', reason, error };
      }
      if (attempt + 1 >= this.#deps.maxAttempts) {
        this.#toDlq.inc({ reason: 'retries_exhausted' });
        dead.push(deadLetterFor(message, originTopic, 'retries_exhausted', error, attempt + 1, envelope));
        return { kind: 'dlq', reason: 'retries_exhausted', error };
      }
      this.#deps.logger.warn('transient processor failure; event goes to the retry topic', {
        error,
        attempt,
        ...(envelope ? { correlationId: envelope.correlationId, eventId: envelope.id } : {}),
      });
      out.push(
        processorRetryMessage(
          message,
          originTopic,
          attempt + 1,
          error,
          this.#deps.clock().getTime(),
          this.#deps.retryDelayMs,
        ),
      );
      return { kind: 'retry', error };
    }
  }

  /** Validates the event and builds one task per matching subscription. */
  async #fanOut(
    envelope: EventEnvelope,
    message: ConsumedMessage,
    originTopic: string,
    dead: DeadLetterInput[],
  ): Promise<Array<{ deliveryId: string; message: BusMessage }>> {
    const { domain, event } = envelope;
    const version = envelope.schemaVersion ?? versionFromTopic(originTopic);
    if (version === undefined)
      throw new Permanent('schema_version_missing', 'the event names no schema version');
    const schema = await this.#deps.lookups.schema(domain, event, version);
    if (!schema) throw new Permanent('schema_unknown', `no schema ${domain}.${event} v${version}`);
    if (schema.status !== 'ACTIVE')
      throw new Permanent('schema_inactive', `schema ${domain}.${event} v${version} is INACTIVE`);
    const problems = this.#deps.validators.validate(
      `${schema.id}:${schema.fingerprint}`,
      schema.schema,
      envelope.data,
    );
    if (problems.length > 0) {
      throw new Permanent(
        'data_invalid',
        `data does not match ${domain}.${event} v${version}: ${problems.map((p) => `${p.field} ${p.message}`).join('; ')}`,
      );
    }
    const subscriptions = await this.#deps.lookups.subscriptions(domain, event);
    const eventAttributes = attributesOf(envelope);
    const now = this.#deps.clock().getTime();
    const position = recordPositionOf(message);
    const { ingestedAt } = position;
    const tasks: Array<{ deliveryId: string; message: BusMessage }> = [];
    // A redrive of one subscription's dead letter (e.g. a mapping that failed) goes to that subscription only.
    const only = message.headers[HEADERS.onlySubscription];
    // The event's data as JSON text, made once for every subscription without a mapping.
    let dataText: string | undefined;
    for (const sub of subscriptions) {
      if (only !== undefined && sub.id !== only) continue;
      if (sub.schemaVersion !== undefined && sub.schemaVersion !== version) continue;
      if (sub.filter && !matchesFilter(sub.filter, { data: envelope.data, event: eventAttributes })) continue;
      const deliveryId = deliveryIdFor(position, envelope.source, envelope.id, sub.id);
      let body: string;
      try {
        if (sub.mapping) body = JSON.stringify(await this.#mapped(sub, envelope, eventAttributes));
        else {
          dataText ??= JSON.stringify(envelope.data);
          body = dataText;
        }
      } catch (err) {
        if (!isWebhooksError(err) || err.kind === 'unavailable') throw err;
        // A mapping that fails for this event dead-letters this subscription's delivery only.
        // Counted once the record is routed: a record retried whole drops this dead letter.
        const reason = err.code === 'mapping_output_too_large' ? err.code : 'mapping_failed';
        dead.push({
          ...deadLetterFor(message, originTopic, reason, describeError(err), 1, envelope, sub.id),
          subscriptionId: sub.id,
          partnerId: sub.partnerId,
        });
        continue;
      }
      const task: DeliveryTask = {
        deliveryId,
        subscriptionId: sub.id,
        partnerId: sub.partnerId,
        event: {
          id: envelope.id,
          source: envelope.source,
          type: envelope.type,
          ...(envelope.time ? { time: envelope.time } : {}),
          ...(envelope.subject ? { subject: envelope.subject } : {}),
          correlationId: envelope.correlationId,
          ...(envelope.traceparent ? { traceparent: envelope.traceparent } : {}),
          ...(envelope.tracestate ? { tracestate: envelope.tracestate } : {}),
        },
        body,
        attempt: 0,
        due: 0,
        createdAt: now,
        ingestedAt,
      };
      tasks.push({
        deliveryId,
        message: { topic: sub.egressTopic, key: sub.id, value: serializeDeliveryTask(task) },
      });
    }
    this.#tasks.inc(undefined, tasks.length);
    return tasks;
  }

  /** The mapping's output for a subscription that has one (enriched with the partner). */
  async #mapped(sub: SubscriptionRecord, envelope: EventEnvelope, event: JsonObject): Promise<JsonValue> {
    const partner = await this.#deps.lookups.partner(sub.partnerId);
    const partnerInfo = partner
      ? {
          id: partner.id,
          name: partner.name,
          metadata: partner.metadata,
          ...(partner.contactEmail ? { contactEmail: partner.contactEmail } : {}),
        }
      : undefined;
    return applyMapping(
      sub.mapping as unknown as MappingDocument,
      { data: envelope.data, event, ...(partnerInfo ? { partner: partnerInfo } : {}) },
      this.#deps.maxPayloadBytes === undefined ? {} : { maxOutputBytes: this.#deps.maxPayloadBytes },
    );
  }
}

/** CloudEvents attributes (without data) as filters and mappings see them under `$event.`. */
function attributesOf(envelope: EventEnvelope): JsonObject {
  const attrs: JsonObject = {
    id: envelope.id,
    source: envelope.source,
    type: envelope.type,
    specversion: envelope.specversion,
    domain: envelope.domain,
    event: envelope.event,
    correlationid: envelope.correlationId,
    ...envelope.extensions,
  };
  if (envelope.time) attrs.time = envelope.time;
  if (envelope.subject) attrs.subject = envelope.subject;
  if (envelope.schemaVersion !== undefined) attrs.schemaversion = envelope.schemaVersion;
  return attrs;
}

/** The ingress topic a record belongs to (its header once it has been on the retry topic). */
function originTopicOf(message: ConsumedMessage): string {
  return message.headers[HEADERS.originTopic] ?? message.topic;
}

function versionFromTopic(topic: string): number | undefined {
  const m = /\.v(\d+)$/.exec(topic);
  return m ? Number(m[1]) : undefined;
}

function deadLetterFor(
  message: ConsumedMessage,
  topic: string,
  reason: string,
  error: string,
  attempts: number,
  envelope: EventEnvelope | undefined,
  subscriptionId?: string,
): DeadLetterInput {
  const binding = bindingHeaders(message.headers);
  // A redrive of one subscription's dead letter stays that subscription's when it is dead-lettered
  // again: a redrive of the new one must not fan the event out to every subscription of its type.
  const scope = subscriptionId ?? message.headers[HEADERS.onlySubscription];
  return {
    stage: 'processor',
    reason,
    lastError: error,
    attempts,
    ...(envelope ? { eventId: envelope.id, eventType: envelope.type } : {}),
    ...(scope !== undefined ? { subscriptionId: scope } : {}),
    topic,
    ...(message.key !== undefined ? { key: message.key } : {}),
    value: message.value,
    ...(binding ? { headers: binding } : {}),
    // One dead letter per record read (and subscription, for a mapping), however often it is read.
    id: recordId('processor', message, subscriptionId),
  };
}

/** A record whose value is not a valid event (the error says why; the record goes to the DLQ). */
class Unparsable {
  readonly error: unknown;
  constructor(error: unknown) {
    this.error = error;
  }
}

/**
 * The event of a record: the platform's own structured JSON, or a record of the CloudEvents Kafka
 * binding (structured or binary mode) written to an ingress topic by a producer outside the platform.
 */
function parseRecord(message: ConsumedMessage): EventEnvelope | Unparsable {
  try {
    if (kafkaEventMode(message.headers) !== 'platform') return parseKafkaEvent(message);
    return parseStructuredText(message.value, 'value');
  } catch (err) {
    return new Unparsable(err);
  }
}

/** An event's key in the in-flight set. */
function markerOf(event: EventRef): string {
  return `${event.source}\n${event.id}`;
}
