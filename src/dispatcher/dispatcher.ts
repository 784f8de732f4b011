/**
 * Webhook Dispatcher (plan §4). For each delivery task: resolve the subscription (URL, auth,
 * secrets), check the idempotency ledger, respect the endpoint's limits, POST, record the attempt,
 * then succeed, retry on a tier, dead-letter, or disable the subscription on 410.
 */
import { HEADERS } from '../common/bus-headers.ts';
import type { DeadLetterSink } from '../common/dead-letter-sink.ts';
import {
  type DeliveryTask,
  parseDeliveryTask,
  serializeDeliveryTask,
  webhookIdOf,
} from '../common/delivery-task.ts';
import { describeError, isPermanentError, isWebhooksError, permanentErrorCode } from '../common/errors.ts';
import { positionalRecordId, recordId } from '../common/ids.ts';
import { type Logger, withCorrelationId } from '../common/log.ts';
import type { MetricsRegistry } from '../common/metrics.ts';
import type {
  DeliveryAttempt,
  DeliveryAuth,
  DeliveryRecord,
  DeliveryTimeouts,
  PartnerDeliverySettings,
  PartnerRecord,
  SubscriptionRecord,
} from '../common/model.ts';
import type {
  BatchControl,
  BatchOutcome,
  BusMessage,
  ConsumedMessage,
  DeadLetterNotice,
  FailedMessage,
} from '../common/ports/bus.ts';
import type { DeliveryClient, DeliveryResult } from '../common/ports/delivery-client.ts';
import type { DeliveryRepository, HeldTaskRepository, IdempotencyLedger } from '../common/ports/store.ts';
import { DEFAULT_TIMEOUTS, effectiveRetryPolicy } from '../common/retry.ts';
import { DeliveryClaims } from './claims.ts';
import type { EndpointLimiter } from './endpoint-limiter.ts';
import { HeldCap } from './held-cap.ts';
import { PartitionPauses } from './pauses.ts';
import { buildDeliveryRequest } from './request.ts';
import {
  canRetry,
  classifyAttempt,
  HOP_TOLERANCE_MS,
  nextRetryDelayMs,
  retryAfterSecondsOf,
} from './retry-math.ts';
import {
  failureReason,
  newDelivery,
  originTopicOf,
  RETRY_TOPIC_PREFIX,
  retryMessage,
} from './task-messages.ts';

export const DISPATCHER_TOPIC_PREFIXES = ['egress.', RETRY_TOPIC_PREFIX];

/** What the dispatcher reads and changes outside itself. */
export interface DispatcherDeps {
  subscription(id: string): Promise<SubscriptionRecord | undefined>;
  /** The subscription as stored now, past any cache (default: `subscription`). */
  subscriptionNow?(id: string): Promise<SubscriptionRecord | undefined>;
  partner(id: string): Promise<PartnerRecord | undefined>;
  /** The partner as stored now, past any cache (default: `partner`). */
  partnerNow?(id: string): Promise<PartnerRecord | undefined>;
  /** Marks a subscription DISABLED (the endpoint answered 410 Gone). */
  disableSubscription(id: string, reason: string): Promise<void>;
  /**
   * Decrypted signing secrets valid now, and delivery credentials; may answer asynchronously (a KMS
   * sealer opens a subscription's values once per revision, then from its cache).
   */
  credentials: {
    secrets(sub: SubscriptionRecord, now: Date): string[] | Promise<string[]>;
    auth(sub: SubscriptionRecord): DeliveryAuth | undefined | Promise<DeliveryAuth | undefined>;
  };
  deliveries: DeliveryRepository;
  /** Where tasks of PAUSED subscriptions (and INACTIVE partners) wait until they are resumed. */
  heldTasks: Pick<HeldTaskRepository, 'hold' | 'count'>;
  /** Tasks held per subscription before more are dead-lettered (`held_overflow`). */
  maxHeldPerSubscription: number;
  /** The idempotency ledger (absent when turned off). */
  ledger?: IdempotencyLedger;
  /** Whether the ledger is on now (a live flag: AppConfig's `ledger`); absent: on whenever `ledger` is given. */
  ledgerEnabled?: () => boolean;
  ledgerTtlMs: number;
  client: DeliveryClient;
  /**
   * Appends to the bus. `ordered`: for a task moved to a retry tier or back to its egress topic —
   * readable and ordered before the offset commit that follows, which cannot outlive it (one log),
   * so it needs no flush of its own.
   */
  publish: (messages: BusMessage[], options?: { ordered?: boolean }) => Promise<void>;
  deadLetters: DeadLetterSink;
  limiter: EndpointLimiter;
  defaultMaxConcurrency: number;
  /** How much of a response body an attempt record keeps. */
  maxResponseBytes: number;
  userAgent: string;
  metrics: MetricsRegistry;
  logger: Logger;
  clock: () => Date;
  random?: () => number;
  /**
   * The latest time an attempt may end (ms since epoch), when the runtime has one: a Lambda
   * invocation ends at its timeout. With less than the attempt's budget (or 10 s) left, the attempt
   * is not started: the task waits on the smallest retry tier, without counting an attempt. A budget
   * longer than a whole run can give is cut to the time left, so it cannot wait for ever.
   */
  attemptDeadline?: () => number | undefined;
}

/** The claim an attempt works under, when it must be over, and whether its request went out. */
interface AttemptClaim {
  token: string | undefined;
  /** ms since the epoch: the limiter wait, connect, headers and the whole body end by then. */
  deadline: number;
  sent: boolean;
  /** Handed back already (before the request went out): not to be released twice. */
  released?: boolean;
}

/** How long a partner's metric series stay without an update before they are dropped. */
const PARTNER_SERIES_IDLE_MS = 60 * 60_000;

/** How long a task waits when the runtime has no time left for its attempt (the smallest retry tier). */
const DEFER_NO_TIME_MS = 1_000;
/** The shortest attempt started when the runtime's time is short; with less left, the task waits. */
const MIN_ATTEMPT_MS = 10_000;

/** How much longer a ledger claim lasts than the attempt's deadline. */
const LEASE_MARGIN_MS = 5_000;

type TaskOutcome =
  | 'success'
  | 'retry'
  | 'failed'
  | 'gone'
  | 'deferred'
  | 'deferred_busy'
  | 'held_paused'
  | 'rescheduled'
  | 'forwarded'
  | 'skipped'
  | 'stale';

/** The dispatcher core, shared by every runtime. */
export class WebhookDispatcher {
  readonly #deps: DispatcherDeps;
  readonly #outcomes;
  readonly #latency;
  readonly #responses;
  readonly #endToEnd;
  readonly #claims: DeliveryClaims;
  readonly #pauses: PartitionPauses;
  readonly #heldCap: HeldCap;

  constructor(deps: DispatcherDeps) {
    this.#deps = deps;
    this.#outcomes = deps.metrics.counter('webhook_deliveries_total', 'Delivery task outcomes', ['outcome']);
    this.#latency = deps.metrics.histogram(
      'webhook_delivery_duration_seconds',
      'Latency of delivery attempts',
      ['partner'],
      // Partners come and go: a partner's series goes once it has been idle for an hour.
      { expireIdleMs: PARTNER_SERIES_IDLE_MS },
    );
    this.#responses = deps.metrics.counter(
      'webhook_responses_total',
      'Partner answers by status code or error kind',
      ['partner', 'status'],
      { expireIdleMs: PARTNER_SERIES_IDLE_MS },
    );
    this.#endToEnd = deps.metrics.histogram(
      'webhook_end_to_end_seconds',
      'From ingest to successful delivery',
      [],
      [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 60, 300, 3600],
    );
    this.#claims = new DeliveryClaims(
      deps.ledger,
      deps.ledgerTtlMs,
      deps.metrics,
      deps.logger,
      deps.ledgerEnabled,
    );
    this.#pauses = new PartitionPauses(deps.limiter);
    this.#heldCap = new HeldCap(deps.heldTasks, deps.maxHeldPerSubscription);
  }

  /**
   * Handles a batch concurrently; messages whose handling hit an infrastructure failure are
   * redelivered. Each task is reported done as soon as it is handled (a slow endpoint's request does
   * not keep the fast ones of the batch in flight), and the egress partition of an endpoint that
   * has enough waiting is paused until its queue drains.
   */
  async handleBatch(batch: ConsumedMessage[], control?: BatchControl): Promise<BatchOutcome> {
    const failed: FailedMessage[] = [];
    await Promise.all(
      batch.map(async (message) => {
        try {
          this.#outcomes.inc({ outcome: await this.#handle(message, control) });
          control?.done(message);
        } catch (err) {
          const permanent = isPermanentError(err);
          this.#deps.logger.error('dispatcher failed to handle a task', { err, permanent });
          failed.push({ message, error: err, permanent });
        }
      }),
    );
    return { failed };
  }

  /**
   * What the consumer calls when it gives up on a task that kept failing (or failed for good)
   * before an outcome could be recorded: FAILED, and dead-lettered with the last error.
   */
  async giveUp(message: ConsumedMessage, notice: DeadLetterNotice): Promise<void> {
    const reason = notice.permanent ? permanentErrorCode(notice.error) : 'redelivery_exhausted';
    const error = describeError(notice.error);
    this.#outcomes.inc({ outcome: 'failed' });
    let task: DeliveryTask | undefined;
    try {
      task = parseDeliveryTask(message.value);
    } catch {
      // An unreadable task is dead-lettered as it was read.
    }
    if (task) {
      const now = this.#deps.clock().toISOString();
      // Best effort: the store may be what keeps failing; the dead letter is what must not be lost.
      await this.#deps.deliveries
        .patch(task.deliveryId, { status: 'FAILED', lastError: error, updatedAt: now, completedAt: now })
        .catch(() => {});
    }
    await this.#deadLetter(message, task, reason, error, task?.attempt ?? 0);
  }

  async #handle(message: ConsumedMessage, control: BatchControl | undefined): Promise<TaskOutcome> {
    let task: DeliveryTask;
    try {
      task = parseDeliveryTask(message.value);
    } catch (err) {
      await this.#deadLetter(message, undefined, 'task_invalid', (err as Error).message, 0);
      return 'failed';
    }
    // Out of its tier before it is due (a delay longer than the tier): it waits the rest in the next one.
    const dueAt = Number(message.headers[HEADERS.dueAt]);
    const early = dueAt - this.#deps.clock().getTime();
    if (early > HOP_TOLERANCE_MS) {
      await this.#defer(message, task, early);
      return 'rescheduled';
    }
    // Due: back to its egress topic, keyed by its subscription. Every request to an endpoint is then
    // made by the one member of the dispatcher group that holds the endpoint's egress partition, so
    // the partner's concurrency and rate limits hold for the whole group, not once per member.
    if (message.topic.startsWith(RETRY_TOPIC_PREFIX)) {
      await this.#deps.publish(
        [{ topic: originTopicOf(message, task), key: task.subscriptionId, value: message.value }],
        { ordered: true },
      );
      return 'forwarded';
    }
    // Everything logged while this task is handled carries the event's correlation id.
    return withCorrelationId(task.event.correlationId, () => this.#handleTask(message, task, control));
  }

  async #handleTask(
    message: ConsumedMessage,
    task: DeliveryTask,
    control: BatchControl | undefined,
  ): Promise<TaskOutcome> {
    const now = this.#deps.clock();
    let sub = await this.#deps.subscription(task.subscriptionId);
    // A task is held only for a subscription PAUSED as stored now: the tasks a resume releases may
    // arrive before the news of it reaches the cache.
    if (sub?.status === 'PAUSED') sub = await (this.#deps.subscriptionNow ?? this.#deps.subscription)(sub.id);
    if (!sub || sub.status === 'DISABLED') {
      const delivery = await this.#deps.deliveries.ensure(newDelivery(task, now));
      if (delivery.status === 'SUCCESS') return 'skipped';
      const reason = sub ? 'subscription_disabled' : 'subscription_deleted';
      await this.#fail(
        message,
        task,
        reason,
        sub ? `subscription is disabled: ${sub.statusReason ?? ''}` : 'subscription was deleted',
      );
      return 'failed';
    }
    if (sub.status === 'PAUSED') return this.#hold(message, task, now);
    let partner = await this.#deps.partner(sub.partnerId);
    // An INACTIVE partner's deliveries are held like a PAUSED subscription's (checked as stored now,
    // as for PAUSED: a reactivation's released tasks may arrive before the news reaches the cache).
    if (partner?.status === 'INACTIVE') {
      partner = await (this.#deps.partnerNow ?? this.#deps.partner)(sub.partnerId);
      if (partner?.status === 'INACTIVE') return this.#hold(message, task, now);
    }
    const settings = partner?.delivery ?? {};
    const timeouts = { ...DEFAULT_TIMEOUTS, ...settings.timeouts };
    // One deadline for the whole attempt — the wait for a slot of the endpoint, connect, headers and
    // the whole body — shorter than the claim's lease: the claim cannot lapse while the attempt runs
    // (only when this process stalls, and then the fencing token keeps it from undoing another's claim).
    let budgetMs = this.#deps.limiter.maxWaitMs + timeouts.connectMs + timeouts.headersMs + timeouts.bodyMs;
    const latestEnd = this.#deps.attemptDeadline?.();
    if (latestEnd !== undefined) {
      const left = latestEnd - now.getTime();
      // Too little time left in this run for the attempt: it waits for a run of its own.
      if (left < Math.min(budgetMs, MIN_ATTEMPT_MS)) {
        await this.#defer(message, task, DEFER_NO_TIME_MS);
        return 'deferred';
      }
      // Longer than any run can give (a partner's timeouts beyond the function's): cut to what is left.
      budgetMs = Math.min(budgetMs, left);
    }
    // The delivery row is written with the first attempt (one write); until then it is only read.
    const [read, claimed] = await Promise.allSettled([
      this.#deps.deliveries.get(task.deliveryId),
      this.#claims.claim(task, budgetMs + LEASE_MARGIN_MS, now),
    ]);
    if (read.status === 'rejected') {
      // Claimed for nothing: handed back at once, or the task's next try would find it busy.
      if (claimed.status === 'fulfilled' && claimed.value.status === 'claimed')
        await this.#claims.release(task, claimed.value.token);
      throw read.reason;
    }
    if (claimed.status === 'rejected') throw claimed.reason;
    const delivery = read.value;
    const claim = claimed.value;
    if (claim.status === 'completed' || delivery?.status === 'SUCCESS') {
      if (claim.status === 'claimed') await this.#claims.complete(task, claim.token, now);
      await this.#markSucceeded(task, delivery, now);
      return 'skipped';
    }
    if (isStaleCopy(task, delivery)) {
      // Another copy of this step attempted since and scheduled the next attempt: that copy's
      // retry carries the delivery on, and this one would start a second chain.
      if (claim.status === 'claimed') await this.#claims.release(task, claim.token);
      return 'stale';
    }
    if (claim.status === 'busy') {
      await this.#defer(message, task, 5_000);
      return 'deferred_busy';
    }
    const attempt: AttemptClaim = { token: claim.token, deadline: now.getTime() + budgetMs, sent: false };
    try {
      return await this.#attempt(message, task, sub, delivery, settings, timeouts, attempt, control);
    } catch (err) {
      // Before the request went out, the claim is handed back; after it, it is kept until it lapses:
      // a partner that answered 2xx is not sent the request again at once because recording it failed.
      if (!attempt.sent && !attempt.released) await this.#claims.release(task, attempt.token);
      throw err;
    }
  }

  /**
   * A delivery found done (the ledger says so, or its record): its record says SUCCESS too. Without
   * a record of its own, the webhook-id was delivered under another record (the event routed again:
   * a processor redrive, or ingested again): nothing to write.
   */
  async #markSucceeded(task: DeliveryTask, delivery: DeliveryRecord | undefined, now: Date): Promise<void> {
    if (!delivery || delivery.status === 'SUCCESS') return;
    await this.#deps.deliveries.patch(task.deliveryId, { status: 'SUCCESS', updatedAt: now.toISOString() });
  }

  /**
   * Keeps the task of a PAUSED subscription in the store, as it was read (its attempts, its due
   * time), until the subscription is resumed and it is published again (`Operations.releaseHeld`):
   * no copies go round a retry tier while the pause lasts. One delivered already is only skipped.
   */
  async #hold(message: ConsumedMessage, task: DeliveryTask, now: Date): Promise<TaskOutcome> {
    const [delivery, done] = await Promise.all([
      this.#deps.deliveries.get(task.deliveryId),
      this.#claims.completed(task),
    ]);
    if (delivery?.status === 'SUCCESS' || done) return 'skipped';
    if (!(await this.#heldCap.take(task.subscriptionId))) {
      const error = `more than ${this.#heldCap.max} tasks are held for the subscription (paused, or its partner inactive)`;
      await this.#deadLetter(message, task, 'held_overflow', error, task.attempt);
      return 'failed';
    }
    // Its delivery record (when an attempt made one) is touched: its retention counts from now, so a
    // pause shorter than the history retention never purges the record of a task on its way.
    if (delivery?.status === 'PENDING') {
      await this.#deps.deliveries.patch(task.deliveryId, { updatedAt: now.toISOString() });
    }
    await this.#deps.heldTasks.hold({
      // One per record read, however often it is read.
      id: positionalRecordId('held', message),
      subscriptionId: task.subscriptionId,
      heldAt: now.toISOString(),
      topic: message.topic,
      ...(message.key !== undefined ? { key: message.key } : {}),
      value: message.value,
      headers: message.headers,
    });
    return 'held_paused';
  }

  /** One HTTP attempt within the endpoint's limits, and what follows from its result. */
  async #attempt(
    message: ConsumedMessage,
    task: DeliveryTask,
    sub: SubscriptionRecord,
    delivery: DeliveryRecord | undefined,
    settings: PartnerDeliverySettings,
    timeouts: Required<DeliveryTimeouts>,
    claim: AttemptClaim,
    control: BatchControl | undefined,
  ): Promise<TaskOutcome> {
    const recordedAttempts = delivery?.attempts ?? 0;
    const limits = {
      maxConcurrency: settings.maxConcurrency ?? this.#deps.defaultMaxConcurrency,
      ...(settings.rateLimitPerSecond !== undefined ? { ratePerSecond: settings.rateLimitPerSecond } : {}),
    };
    if (control && this.#deps.limiter.saturated(sub.id, limits))
      this.#pauses.pauseFor(sub.id, message, control);
    const slot = await this.#deps.limiter.acquire(sub.id, limits, claim.deadline);
    if (!slot.ok) {
      await this.#claims.release(task, claim.token);
      claim.released = true;
      await this.#defer(message, task, slot.retryInMs);
      return 'deferred';
    }
    let result: DeliveryResult | undefined;
    const started = this.#deps.clock();
    try {
      const { headers, body } = buildDeliveryRequest({
        task,
        secrets: await this.#deps.credentials.secrets(sub, started),
        auth: await this.#deps.credentials.auth(sub),
        now: started.getTime(),
        userAgent: this.#deps.userAgent,
      });
      claim.sent = true;
      result = await this.#deps.client.send({
        url: sub.url,
        headers,
        body,
        timeouts,
        deadlineMs: Math.max(1, claim.deadline - this.#deps.clock().getTime()),
        maxResponseBytes: this.#deps.maxResponseBytes,
      });
    } finally {
      slot.release(result?.latencyMs);
    }
    // The retry budget counts this task's attempts (a redrive starts a new budget); the record numbers every attempt.
    const attemptNo = task.attempt + 1;
    const recordNo = recordedAttempts + 1;
    const firstAttemptAt = task.firstAttemptAt ?? started.getTime();
    const statusLabel = result.ok ? String(result.status) : result.kind;
    this.#responses.inc({ partner: sub.partnerId, status: statusLabel });
    this.#latency.observe({ partner: sub.partnerId }, result.latencyMs / 1000);
    const klass = result.ok || result.kind !== 'forbidden_address' ? classifyAttempt(result) : 'failed';
    const now = this.#deps.clock();
    const attempt = {
      deliveryId: task.deliveryId,
      attempt: recordNo,
      at: started.toISOString(),
      latencyMs: Math.round(result.latencyMs),
      ...(result.ok ? { statusCode: result.status, responseBody: result.body } : {}),
      ...(klass === 'success'
        ? {}
        : { error: result.ok ? `HTTP ${result.status}` : `${result.kind}: ${result.message}` }),
    };
    // The record is created with its first attempt; one that exists is only updated.
    const create = delivery ? undefined : newDelivery(task, started);
    const common = {
      attempts: recordNo,
      updatedAt: now.toISOString(),
      ...(result.ok ? { lastStatusCode: result.status } : {}),
      ...(attempt.error ? { lastError: attempt.error } : {}),
    };

    if (klass === 'success') {
      await Promise.all([
        this.#recordAttempt(
          { ...attempt, outcome: 'success' },
          { ...common, status: 'SUCCESS', completedAt: now.toISOString() },
          create,
        ),
        this.#claims.complete(task, claim.token, now),
      ]);
      if (task.ingestedAt) this.#endToEnd.observe(undefined, (now.getTime() - task.ingestedAt) / 1000);
      return 'success';
    }
    await this.#claims.release(task, claim.token);
    if (klass === 'retry') {
      const policy = effectiveRetryPolicy(settings.retry, sub.retry);
      const retryAfter = retryAfterSecondsOf(result, now.getTime());
      const delay = nextRetryDelayMs({
        nextAttempt: attemptNo + 1,
        scheduleSeconds: policy.scheduleSeconds,
        ...(retryAfter !== undefined ? { retryAfterSeconds: retryAfter } : {}),
        ...(this.#deps.random ? { random: this.#deps.random } : {}),
      });
      // To the millisecond, as the record keeps it: the retry's `due` is compared with it.
      const retryAt = Math.floor(now.getTime() + delay);
      if (
        canRetry({
          attemptsMade: attemptNo,
          maxAttempts: policy.maxAttempts,
          firstAttemptAt,
          maxAgeSeconds: policy.maxAgeSeconds,
          retryAt,
        })
      ) {
        // The retry is published before the attempt is recorded: a crash in between leaves this
        // copy to come again and find itself not stale (the record has not moved), so it tries
        // again and the retry published first is the stale one. The other way round, the record
        // would mark this copy stale with no retry to carry the delivery on.
        const next: DeliveryTask = { ...task, attempt: attemptNo, firstAttemptAt, due: retryAt };
        await this.#deps.publish([retryMessage(message, next, retryAt - now.getTime(), now.getTime())], {
          ordered: true,
        });
        await this.#recordAttempt(
          { ...attempt, outcome: 'retry' },
          { ...common, status: 'PENDING', nextAttemptAt: new Date(retryAt).toISOString() },
          create,
        );
        return 'retry';
      }
    }
    // Every other outcome is final: FAILED, dead-lettered with its reason (and 410 disables the subscription).
    const reason = failureReason(klass, result);
    // Disabled first: once the delivery reads FAILED (410), its subscription reads DISABLED, on any
    // store; a crash in between leaves the task to come again and fail as subscription_disabled.
    if (klass === 'gone') {
      await this.#deps.disableSubscription(sub.id, `the endpoint answered 410 Gone at ${now.toISOString()}`);
    }
    await this.#recordAttempt(
      { ...attempt, outcome: 'failed' },
      { ...common, status: 'FAILED', completedAt: now.toISOString() },
      create,
    );
    await this.#deadLetter(message, { ...task, attempt: attemptNo }, reason, attempt.error ?? '', attemptNo);
    return klass === 'gone' ? 'gone' : 'failed';
  }

  /**
   * Records an attempt. Its number follows the delivery's record; should another copy of the task
   * have recorded that number meanwhile (the ledger off, or a claim that lapsed), the attempt takes
   * the next free number instead of failing for ever.
   */
  async #recordAttempt(
    attempt: DeliveryAttempt,
    update: Partial<DeliveryRecord> & { updatedAt: string; attempts: number },
    create: DeliveryRecord | undefined,
  ): Promise<void> {
    for (let tries = 0; ; tries++) {
      try {
        await this.#deps.deliveries.recordAttempt(attempt, update, create);
        return;
      } catch (err) {
        if (!(isWebhooksError(err) && err.code === 'already_exists') || tries >= 3) throw err;
        const stored = await this.#deps.deliveries.get(attempt.deliveryId);
        const next = Math.max(stored?.attempts ?? 0, attempt.attempt) + 1;
        attempt = { ...attempt, attempt: next };
        update = { ...update, attempts: next };
        // Another copy finished the delivery meanwhile (its retry ran before this attempt was
        // recorded): this attempt joins the history, but its outcome does not undo the end.
        if (stored && stored.status !== 'PENDING' && update.status !== 'SUCCESS')
          update = { attempts: next, updatedAt: update.updatedAt };
        create = undefined;
      }
    }
  }

  /** Parks a task on a retry tier without counting an attempt. */
  async #defer(message: ConsumedMessage, task: DeliveryTask, delayMs: number): Promise<void> {
    await this.#deps.publish([retryMessage(message, task, delayMs, this.#deps.clock().getTime())], {
      ordered: true,
    });
  }

  /** FAILED before any attempt could be made (subscription gone or disabled). */
  async #fail(message: ConsumedMessage, task: DeliveryTask, reason: string, error: string): Promise<void> {
    await this.#deps.deliveries.patch(task.deliveryId, {
      status: 'FAILED',
      lastError: error,
      updatedAt: this.#deps.clock().toISOString(),
      completedAt: this.#deps.clock().toISOString(),
    });
    await this.#deadLetter(message, task, reason, error, task.attempt);
  }

  async #deadLetter(
    message: ConsumedMessage,
    task: DeliveryTask | undefined,
    reason: string,
    error: string,
    attempts: number,
  ): Promise<void> {
    const origin = task ? originTopicOf(message, task) : message.topic;
    // Within the task's correlation context (when it has one), so the line carries its correlation id.
    this.#deps.logger.warn('delivery dead-lettered', {
      reason,
      attempts,
      error,
      ...(task
        ? {
            deliveryId: task.deliveryId,
            webhookId: webhookIdOf(task),
            subscriptionId: task.subscriptionId,
            eventId: task.event.id,
          }
        : {}),
    });
    // Redrive starts over: the stored task has no attempts, no first-attempt time and no due time
    // (the chain it ended is over; the redriven copy starts one of its own).
    const value = task
      ? serializeDeliveryTask({ ...task, attempt: 0, firstAttemptAt: undefined, due: undefined })
      : message.value;
    await this.#deps.deadLetters.send([
      {
        stage: 'dispatcher',
        // One dead letter per record read, however often it is read (a redelivery after a crash).
        id: recordId('dispatcher', message),
        reason,
        lastError: error,
        attempts,
        ...(task
          ? {
              eventId: task.event.id,
              eventType: task.event.type,
              subscriptionId: task.subscriptionId,
              partnerId: task.partnerId,
            }
          : {}),
        topic: origin,
        ...(message.key !== undefined ? { key: message.key } : {}),
        value,
      },
    ]);
  }
}

/**
 * Whether a task is a stale copy: its delivery is PENDING with a next attempt due after this copy
 * was (see `DeliveryTask.due`). Copies of one step share its due time, so they are not stale to
 * each other (the ledger claim keeps them from sending twice); a retry published before its record
 * was written is due after the record's next attempt, so it is not stale either.
 */
export function isStaleCopy(task: DeliveryTask, delivery: DeliveryRecord | undefined): boolean {
  if (task.due === undefined || delivery === undefined) return false;
  // FAILED is final: a redrive sets the delivery PENDING before it publishes (and its copy carries
  // no due time), so a copy with one that finds FAILED is a leftover of the chain that ended.
  if (delivery.status === 'FAILED') return true;
  if (delivery.status !== 'PENDING' || delivery.nextAttemptAt === undefined) return false;
  return task.due < Date.parse(delivery.nextAttemptAt);
}
