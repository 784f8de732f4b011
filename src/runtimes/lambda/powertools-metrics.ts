/**
 * The project's metrics registry published as CloudWatch embedded metric format (EMF) through a
 * Powertools `Metrics`, for the Lambda handlers. The components keep counting in their
 * `MetricsRegistry` (Prometheus-style, cumulative); at the end of each invocation the handler calls
 * `flush()`, which prints what changed since the previous flush as EMF documents on stdout.
 *
 * Namespace: `POWERTOOLS_METRICS_NAMESPACE`, else `Webhooks`. Dimension `service`:
 * `POWERTOOLS_SERVICE_NAME`, else `webhooks`. The names below are a contract (CloudWatch alarms
 * are defined on them): keep them.
 *
 * Mapping (every value is the delta since the last flush):
 *
 * | EMF metric (unit)                  | dimensions         | from the registry                                                   |
 * | ---------------------------------- | ------------------ | ------------------------------------------------------------------- |
 * | `events_processed` (Count)         | service            | `events_processed` (processor; no labels)                           |
 * | `events_to_retry` (Count)          | service            | `events_to_retry` (processor; no labels)                            |
 * | `events_to_dlq` (Count)            | service            | `events_to_dlq{reason}`, summed over `reason` (processor)           |
 * | `deliveries_succeeded` (Count)     | service            | `webhook_deliveries_total{outcome="success"}` (dispatcher)          |
 * | `deliveries_retried` (Count)       | service            | `webhook_deliveries_total{outcome="retry"}`                         |
 * | `deliveries_failed` (Count)        | service            | `webhook_deliveries_total{outcome="failed"\|"gone"}`                |
 * | `deliveries_succeeded` (Count)     | service, partner   | `webhook_responses_total{partner,status}`, status classed as below  |
 * | `deliveries_retried` (Count)       | service, partner   | idem                                                                |
 * | `deliveries_failed` (Count)        | service, partner   | idem                                                                |
 * | `delivery_latency` (Milliseconds)  | service, partner   | `webhook_delivery_duration_seconds{partner}` histogram, × 1000      |
 *
 * The other outcomes of `webhook_deliveries_total` (deferred, held_paused, skipped, …: no attempt,
 * or not one of ours to count) are not published. The dispatcher counts outcomes without the
 * partner, so the per-partner counts class each attempt's answer (`webhook_responses_total`) the
 * way the dispatcher does (`classifyAttempt`, a refused address failed): 2xx succeeded; 408, 429,
 * 5xx and network errors retried; 410 and other statuses failed. They count attempts, where the
 * service-wide ones count task outcomes: a retryable answer on the last attempt allowed is
 * "retried" for its partner and "failed" for the service, and a task failed without an attempt
 * (subscription gone) counts for the service alone.
 *
 * Latency: EMF has no `Values`/`Counts` pairs (that is PutMetricData; an EMF value is a number or an
 * array of at most 100 numbers, one sample each), and Powertools only builds such arrays. The
 * registry keeps buckets and a sum, not the observations, so each observation of the flush is
 * published as one value standing for its bucket: the bucket's bounds interpolated at one common
 * fraction, chosen so the values add up to the histogram's exact sum (see `latencySamples`). The
 * sample count, sum and average are exact; each value lies within its observation's bucket
 * (percentiles are as fine as the buckets). More than 100 observations of a partner take several
 * documents.
 *
 * Documents: one with dimension set [service] holding the service-wide counts of every source the
 * registry has (zeros included, so a dispatcher publishes `deliveries_*` and no `events_*`), printed
 * when one of them changed; then per partner with a change, documents with [service, partner].
 * Nothing changed, nothing printed. `flush()` never throws: a failure is logged and that flush's
 * deltas are lost (the baseline moves on before printing, so nothing is ever counted twice).
 */
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Logger } from '../../common/log.ts';
import { Counter, Histogram, type Labels, type MetricsRegistry } from '../../common/metrics.ts';
import { type AttemptClass, classifyAttempt } from '../../dispatcher/retry-math.ts';
import { metricsNamespaceFrom, serviceNameFrom } from './powertools-env.ts';

/** The registry families read (the components' metric names). */
export const SOURCE_METRICS = {
  eventsProcessed: 'events_processed',
  eventsToRetry: 'events_to_retry',
  eventsToDlq: 'events_to_dlq',
  deliveries: 'webhook_deliveries_total',
  responses: 'webhook_responses_total',
  deliveryDuration: 'webhook_delivery_duration_seconds',
} as const;

/** The EMF metric names published (the alarms' contract). */
export const EMF_METRICS = {
  eventsProcessed: 'events_processed',
  eventsToRetry: 'events_to_retry',
  eventsToDlq: 'events_to_dlq',
  deliveriesSucceeded: 'deliveries_succeeded',
  deliveriesRetried: 'deliveries_retried',
  deliveriesFailed: 'deliveries_failed',
  deliveryLatency: 'delivery_latency',
} as const;

/** The EMF dimension naming the partner. */
export const PARTNER_DIMENSION = 'partner';
/** Values of one metric in one EMF document, at most (the EMF limit). */
export const MAX_VALUES_PER_DOCUMENT = 100;

type DeliveryClass = 'succeeded' | 'retried' | 'failed';

const OUTCOME_CLASS: Readonly<Record<string, DeliveryClass>> = {
  success: 'succeeded',
  retry: 'retried',
  failed: 'failed',
  gone: 'failed',
};

const CLASS_METRIC: Readonly<Record<DeliveryClass, string>> = {
  succeeded: EMF_METRICS.deliveriesSucceeded,
  retried: EMF_METRICS.deliveriesRetried,
  failed: EMF_METRICS.deliveriesFailed,
};

export interface EmfMetricsOptions {
  /** The registry the components count in. */
  registry: MetricsRegistry;
  /** Default: `POWERTOOLS_METRICS_NAMESPACE`, else `Webhooks`. */
  namespace?: string;
  /** The `service` dimension. Default: `POWERTOOLS_SERVICE_NAME`, else `webhooks`. */
  serviceName?: string;
  /** Where a failed flush is reported (default: stderr). */
  logger?: Logger;
  /** A Powertools `Metrics` to publish with instead of a new one (its namespace and service then rule). */
  powertools?: Metrics;
}

/** One histogram series' state, non-cumulative per bucket (the last slot is +Inf). */
interface HistogramReading {
  counts: number[];
  sum: number;
  count: number;
}

/** Publishes the registry's deltas as EMF on `flush()`; one per container, created at module scope. */
export class EmfMetricsPublisher {
  readonly powertools: Metrics;
  readonly #registry: MetricsRegistry;
  readonly #logger: Logger | undefined;
  /** Counter values at the last flush, by family, then by series (JSON of the labels). */
  #counters = new Map<string, Map<string, number>>();
  /** Histogram states at the last flush, by family, then by series. */
  #histograms = new Map<string, Map<string, HistogramReading>>();

  constructor(options: EmfMetricsOptions) {
    this.#registry = options.registry;
    this.#logger = options.logger;
    this.powertools =
      options.powertools ??
      new Metrics({
        namespace: metricsNamespaceFrom(options.namespace),
        serviceName: serviceNameFrom(options.serviceName),
      });
  }

  /** Prints the deltas since the previous flush as EMF (nothing when nothing changed). Never throws. */
  flush(): void {
    try {
      this.#publishService();
      this.#publishPartners();
    } catch (err) {
      try {
        this.powertools.clearMetrics();
        this.powertools.clearDimensions();
      } catch {
        // Nothing more to do.
      }
      if (this.#logger) this.#logger.error('publishing the metrics (EMF) failed', { err });
      else process.stderr.write(`publishing the metrics (EMF) failed: ${String(err)}\n`);
    }
  }

  /** The [service] document: the service-wide counts of every family the registry has. */
  #publishService(): void {
    const values: [string, number][] = [];
    const total = (family: string, name: string) => {
      const deltas = this.#counterDeltas(family);
      if (deltas) values.push([name, deltas.reduce((sum, d) => sum + d.delta, 0)]);
    };
    total(SOURCE_METRICS.eventsProcessed, EMF_METRICS.eventsProcessed);
    total(SOURCE_METRICS.eventsToRetry, EMF_METRICS.eventsToRetry);
    total(SOURCE_METRICS.eventsToDlq, EMF_METRICS.eventsToDlq);
    const outcomes = this.#counterDeltas(SOURCE_METRICS.deliveries);
    if (outcomes) {
      const byClass: Record<DeliveryClass, number> = { succeeded: 0, retried: 0, failed: 0 };
      for (const { labels, delta } of outcomes) {
        const klass = OUTCOME_CLASS[labels.outcome ?? ''];
        if (klass) byClass[klass] += delta;
      }
      for (const klass of ['succeeded', 'retried', 'failed'] as const)
        values.push([CLASS_METRIC[klass], byClass[klass]]);
    }
    if (!values.some(([, value]) => value > 0)) return;
    for (const [name, value] of values) this.powertools.addMetric(name, MetricUnit.Count, value);
    this.#publish();
  }

  /** The [service, partner] documents: per partner, the attempts by class and their latencies. */
  #publishPartners(): void {
    const partners = new Map<string, { counts?: Record<DeliveryClass, number>; latencies: number[] }>();
    const entry = (partner: string | undefined) => {
      const key = partner === undefined || partner === '' ? 'unknown' : partner;
      const found = partners.get(key) ?? { latencies: [] };
      partners.set(key, found);
      return found;
    };
    for (const { labels, delta } of this.#counterDeltas(SOURCE_METRICS.responses) ?? []) {
      const partner = entry(labels.partner);
      partner.counts ??= { succeeded: 0, retried: 0, failed: 0 };
      partner.counts[classOfStatus(labels.status ?? '')] += delta;
    }
    const duration = this.#registry.find(SOURCE_METRICS.deliveryDuration);
    for (const { labels, reading } of this.#histogramDeltas(SOURCE_METRICS.deliveryDuration) ?? []) {
      if (reading.count === 0 || !(duration instanceof Histogram)) continue;
      const seconds = latencySamples(duration.buckets, reading.counts, reading.sum);
      entry(labels.partner).latencies.push(...seconds.map(toMilliseconds));
    }
    for (const [partner, { counts, latencies }] of [...partners].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const changed =
        counts !== undefined && (counts.succeeded > 0 || counts.retried > 0 || counts.failed > 0);
      if (!changed && latencies.length === 0) continue;
      let first = true;
      for (let at = 0; first || at < latencies.length; at += MAX_VALUES_PER_DOCUMENT) {
        this.powertools.addDimension(PARTNER_DIMENSION, partner);
        if (first && counts)
          for (const klass of ['succeeded', 'retried', 'failed'] as const)
            this.powertools.addMetric(CLASS_METRIC[klass], MetricUnit.Count, counts[klass]);
        for (const ms of latencies.slice(at, at + MAX_VALUES_PER_DOCUMENT))
          this.powertools.addMetric(EMF_METRICS.deliveryLatency, MetricUnit.Milliseconds, ms);
        this.#publish();
        first = false;
      }
    }
  }

  /** Prints the stored document, if any (Powertools prints by itself on its 100th value of a metric). */
  #publish(): void {
    if (this.powertools.hasStoredMetrics()) this.powertools.publishStoredMetrics();
    else this.powertools.clearDimensions();
  }

  /**
   * The increase of each series of counter `family` since the last call (a series that went down —
   * dropped as idle, then counted again — counts from zero); undefined when the family is not
   * registered. Moves the baseline on.
   */
  #counterDeltas(family: string): { labels: Labels; delta: number }[] | undefined {
    const metric = this.#registry.find(family);
    if (!(metric instanceof Counter)) return undefined;
    const previous = this.#counters.get(family) ?? new Map<string, number>();
    const current = new Map<string, number>();
    const deltas: { labels: Labels; delta: number }[] = [];
    for (const labels of metric.labelSets()) {
      const key = JSON.stringify(labels);
      const value = metric.get(labels);
      const before = previous.get(key) ?? 0;
      current.set(key, value);
      deltas.push({ labels, delta: value >= before ? value - before : value });
    }
    this.#counters.set(family, current);
    return deltas;
  }

  /** Like `#counterDeltas`, for the series of histogram `family`. */
  #histogramDeltas(family: string): { labels: Labels; reading: HistogramReading }[] | undefined {
    const metric = this.#registry.find(family);
    if (!(metric instanceof Histogram)) return undefined;
    const previous = this.#histograms.get(family) ?? new Map<string, HistogramReading>();
    const current = new Map<string, HistogramReading>();
    const deltas: { labels: Labels; reading: HistogramReading }[] = [];
    for (const labels of metric.labelSets()) {
      const key = JSON.stringify(labels);
      const snapshot = metric.snapshot(labels);
      const counts = snapshot.buckets.map((b, i) => b.count - (i === 0 ? 0 : snapshot.buckets[i - 1]!.count));
      const now: HistogramReading = { counts, sum: snapshot.sum, count: snapshot.count };
      current.set(key, now);
      const before = previous.get(key);
      const reset = before === undefined || before.counts.some((c, i) => counts[i]! < c);
      deltas.push({
        labels,
        reading: reset
          ? now
          : {
              counts: counts.map((c, i) => c - before.counts[i]!),
              sum: now.sum - before.sum,
              count: now.count - before.count,
            },
      });
    }
    this.#histograms.set(family, current);
    return deltas;
  }
}

/** The EMF publisher of `registry`; create it once per container, call `flush()` at the end of each invocation. */
export function createEmfMetrics(options: EmfMetricsOptions): EmfMetricsPublisher {
  return new EmfMetricsPublisher(options);
}

/** How the dispatcher classes an attempt answered with `status` (a status code, or an error kind). */
function classOfStatus(status: string): DeliveryClass {
  let klass: AttemptClass;
  if (/^\d{3}$/.test(status)) {
    klass = classifyAttempt({ ok: true, status: Number(status), headers: {}, body: '', latencyMs: 0 });
  } else {
    // An error kind: the dispatcher fails a refused address for good; any other is classed like a network error.
    klass =
      status === 'forbidden_address'
        ? 'failed'
        : classifyAttempt({ ok: false, kind: 'network', message: '', latencyMs: 0 });
  }
  return klass === 'success' ? 'succeeded' : klass === 'retry' ? 'retried' : 'failed';
}

/**
 * One value per observation of a histogram's delta, standing for its bucket: with bucket i spanning
 * (lo_i, hi_i] (lo_0 = 0), each finite bucket's value is lo_i + t·(hi_i − lo_i) with one t ∈ [0, 1]
 * for all, chosen so the values add up to `sum`; the observations above the last bound take what
 * remains (at least the last bound), the finite buckets their midpoints. The true observations
 * satisfy the same bounds, so `sum` is always reachable (a lone bucket gets the exact mean).
 * `buckets`: the finite upper bounds; `counts`: per bucket, not cumulative, the last slot +Inf.
 */
export function latencySamples(buckets: readonly number[], counts: readonly number[], sum: number): number[] {
  const last = buckets.length;
  const lower = (i: number) => (i === 0 ? 0 : buckets[i - 1]!);
  let base = 0; // Σ c·lo over every bucket
  let span = 0; // Σ c·(hi − lo) over the finite buckets
  for (let i = 0; i <= last; i++) {
    const c = counts[i] ?? 0;
    base += c * lower(i);
    if (i < last) span += c * (buckets[i]! - lower(i));
  }
  const overflow = counts[last] ?? 0;
  let t = span > 0 ? clamp((sum - base) / span, 0, 1) : 0;
  let overflowValue = lower(last);
  if (overflow > 0) {
    const finiteAtMid = base - overflow * lower(last) + span / 2;
    const rest = (sum - finiteAtMid) / overflow;
    if (rest >= lower(last)) {
      t = 0.5;
      overflowValue = rest;
    }
  }
  const samples: number[] = [];
  for (let i = 0; i <= last; i++) {
    const value = i < last ? lower(i) + t * (buckets[i]! - lower(i)) : overflowValue;
    for (let n = 0; n < (counts[i] ?? 0); n++) samples.push(value);
  }
  return samples;
}

function clamp(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : min;
}

/** Seconds to milliseconds (not rounded: rounding each value would move the sum). */
function toMilliseconds(seconds: number): number {
  return seconds * 1000;
}
