/**
 * In-process metrics with Prometheus text exposition (format 0.0.4), served by `GET /metrics`.
 * No dependency: the format is small, and the shared layer must not pull in a metrics client.
 *
 * Label-taking methods accept the labels first; for metrics without labels the labels may be
 * omitted: `c.inc()`, `c.inc(3)`, `g.set(5)`, `h.observe(0.2)`, `c.inc({ topic: 'x' }, 2)`.
 * Labels must name exactly the metric's label names.
 */

import { ConflictError, ValidationError } from './errors.ts';

/** Label values of one series, keyed by label name. */
export type Labels = Readonly<Record<string, string>>;

/** Content type of `render()`'s output, for the `/metrics` response. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Default histogram buckets, in seconds (the Prometheus client default). */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type MetricType = 'counter' | 'gauge' | 'histogram';

/** Cumulative view of one histogram series; the last bucket is `le: Infinity`. */
export interface HistogramSnapshot {
  count: number;
  sum: number;
  buckets: { le: number; count: number }[];
}

abstract class Metric<S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly series = new Map<string, { labels: string[]; state: S }>();

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = [...labelNames];
  }

  abstract readonly type: MetricType;
  protected abstract initial(): S;
  /** Sample lines of one series, given its rendered label pairs (`a="x",b="y"`, or empty). */
  protected abstract sampleLines(pairs: string, state: S): string[];

  protected state(labels: Labels | undefined): S {
    // Hot path (several updates per delivery): the key from the label values alone; the full check
    // of the label names runs when the series is new, or when the labels given are not exactly ours.
    const key = this.#fastKey(labels);
    const known = key === undefined ? undefined : this.series.get(key);
    if (known !== undefined) return known.state;
    const values = this.labelValues(labels);
    const valuesKey = JSON.stringify(values);
    let entry = this.series.get(valuesKey);
    if (entry === undefined) {
      entry = { labels: values, state: this.initial() };
      this.series.set(valuesKey, entry);
    }
    return entry.state;
  }

  /** The series key of `labels` when they name exactly this metric's labels; undefined otherwise. */
  #fastKey(labels: Labels | undefined): string | undefined {
    const names = this.labelNames;
    if (names.length === 0)
      return labels === undefined || Object.keys(labels).length === 0 ? '[]' : undefined;
    if (labels === undefined) return undefined;
    let count = 0;
    for (const _ in labels) count++;
    if (count !== names.length) return undefined;
    const values: string[] = [];
    for (const name of names) {
      const value = labels[name];
      if (value === undefined) return undefined;
      values.push(String(value));
    }
    return JSON.stringify(values);
  }

  protected peek(labels: Labels | undefined): S | undefined {
    return this.series.get(JSON.stringify(this.labelValues(labels)))?.state;
  }

  private labelValues(labels: Labels | undefined): string[] {
    const given = labels ?? {};
    const keys = Object.keys(given);
    const unknown = keys.filter((k) => !this.labelNames.includes(k));
    const missing = this.labelNames.filter((k) => !keys.includes(k));
    if (unknown.length > 0 || missing.length > 0) {
      throw new ValidationError('metric_labels_invalid', `wrong labels for metric ${this.name}`, {
        details: [
          ...unknown.map((field) => ({ field, message: 'not a label of this metric' })),
          ...missing.map((field) => ({ field, message: 'label missing' })),
        ],
      });
    }
    return this.labelNames.map((k) => String(given[k]));
  }

  /** Text exposition of this metric: HELP, TYPE and every series. */
  render(): string[] {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    // An unlabelled metric always exists, so it is exposed as zero before its first update.
    if (this.labelNames.length === 0 && this.series.size === 0) this.state(undefined);
    for (const { labels, state } of this.series.values()) {
      const pairs = labels.map((v, i) => `${this.labelNames[i]}="${escapeLabelValue(v)}"`).join(',');
      lines.push(...this.sampleLines(pairs, state));
    }
    return lines;
  }
}

/** A value that only goes up (requests, events processed). */
export class Counter extends Metric<{ value: number }> {
  readonly type = 'counter';

  /** Adds `value` (default 1, never negative) to the series of `labels`. */
  inc(labels?: Labels | number, value = 1): void {
    const [l, v] = split(labels, value);
    if (!(v >= 0)) throw new ValidationError('metric_value_invalid', `counter ${this.name} cannot decrease`);
    this.state(l).value += v;
  }

  /** Current value of the series of `labels` (0 before the first increment). */
  get(labels?: Labels): number {
    return this.peek(labels)?.value ?? 0;
  }

  protected initial() {
    return { value: 0 };
  }

  protected sampleLines(pairs: string, state: { value: number }): string[] {
    return [`${this.name}${braces(pairs)} ${formatValue(state.value)}`];
  }
}

/** A value that goes up and down (queue depth, memory). */
export class Gauge extends Metric<{ value: number }> {
  readonly type = 'gauge';
  private collector: ((gauge: Gauge) => void) | undefined;

  /** Sets the series of `labels` to `value`: `set(5)` or `set({ topic }, 5)`. */
  set(labels: Labels | number | undefined, value?: number): void {
    const [l, v] = split(labels, value ?? 0);
    this.state(l).value = v;
  }

  /** Adds `value` (default 1). */
  inc(labels?: Labels | number, value = 1): void {
    const [l, v] = split(labels, value);
    this.state(l).value += v;
  }

  /** Subtracts `value` (default 1). */
  dec(labels?: Labels | number, value = 1): void {
    const [l, v] = split(labels, value);
    this.state(l).value -= v;
  }

  /** Current value of the series of `labels` (0 before the first update). */
  get(labels?: Labels): number {
    return this.peek(labels)?.value ?? 0;
  }

  /** Hook run before each render, for values sampled on demand (memory, uptime). */
  setCollector(fn: ((gauge: Gauge) => void) | undefined): void {
    this.collector = fn;
  }

  /** Runs the collector; a failing collector keeps the last values rather than break `/metrics`. */
  collect(): void {
    try {
      this.collector?.(this);
    } catch {
      // Deliberately ignored: see above.
    }
  }

  protected initial() {
    return { value: 0 };
  }

  protected sampleLines(pairs: string, state: { value: number }): string[] {
    return [`${this.name}${braces(pairs)} ${formatValue(state.value)}`];
  }
}

interface HistogramState {
  counts: number[]; // per bucket, not cumulative; the last slot is +Inf
  sum: number;
  count: number;
}

/** A distribution of observations (latencies, sizes) in fixed buckets. */
export class Histogram extends Metric<HistogramState> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    this.buckets = buckets;
  }

  /** Records one observation: `observe(0.2)` or `observe({ partner }, 0.2)`. */
  observe(labels: Labels | number | undefined, value?: number): void {
    const [l, v] = split(labels, value ?? Number.NaN);
    if (Number.isNaN(v)) throw new ValidationError('metric_value_invalid', `histogram ${this.name}: NaN`);
    const state = this.state(l);
    let i = this.buckets.findIndex((le) => v <= le);
    if (i === -1) i = this.buckets.length;
    state.counts[i]! += 1;
    state.sum += v;
    state.count += 1;
  }

  /** Cumulative counts of the series of `labels` (all zero before the first observation). */
  snapshot(labels?: Labels): HistogramSnapshot {
    const state = this.peek(labels) ?? this.initial();
    let cumulative = 0;
    const buckets = [...this.buckets, Number.POSITIVE_INFINITY].map((le, i) => {
      cumulative += state.counts[i]!;
      return { le, count: cumulative };
    });
    return { count: state.count, sum: state.sum, buckets };
  }

  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected sampleLines(pairs: string, state: HistogramState): string[] {
    const prefix = pairs === '' ? '' : `${pairs},`;
    const lines: string[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.buckets.length; i++) {
      cumulative += state.counts[i]!;
      const le = i < this.buckets.length ? formatValue(this.buckets[i]!) : '+Inf';
      lines.push(`${this.name}_bucket{${prefix}le="${le}"} ${cumulative}`);
    }
    lines.push(`${this.name}_sum${braces(pairs)} ${formatValue(state.sum)}`);
    lines.push(`${this.name}_count${braces(pairs)} ${state.count}`);
    return lines;
  }
}

/** The set of metrics one process exposes. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Counter | Gauge | Histogram>();

  /** Registers (or returns the already registered) counter `name`. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.register('counter', name, labelNames, () => new Counter(name, help, labelNames));
  }

  /** Registers (or returns the already registered) gauge `name`. */
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.register('gauge', name, labelNames, () => new Gauge(name, help, labelNames));
  }

  /** Registers (or returns the already registered) histogram `name`; buckets default to seconds. */
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = DEFAULT_BUCKETS,
  ): Histogram {
    if (labelNames.includes('le')) {
      throw new ValidationError('metric_label_invalid', `histogram ${name}: "le" is reserved`);
    }
    const finite = buckets.filter((b) => b !== Number.POSITIVE_INFINITY);
    if (finite.length === 0 || finite.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= finite[i - 1]!))) {
      throw new ValidationError('metric_buckets_invalid', `histogram ${name}: buckets must increase`);
    }
    const metric = this.register(
      'histogram',
      name,
      labelNames,
      () => new Histogram(name, help, labelNames, finite),
    );
    if (metric.buckets.join() !== finite.join()) {
      throw new ConflictError('metric_conflict', `histogram ${name} already registered with other buckets`);
    }
    return metric;
  }

  /** The whole registry in Prometheus text format (ends with a newline). */
  render(): string {
    const lines: string[] = [];
    for (const metric of this.metrics.values()) {
      if (metric instanceof Gauge) metric.collect();
      lines.push(...metric.render());
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  private register<M extends Counter | Gauge | Histogram>(
    type: M['type'],
    name: string,
    labelNames: readonly string[],
    create: () => M,
  ): M {
    const existing = this.metrics.get(name);
    if (existing !== undefined) {
      if (existing.type !== type || existing.labelNames.join() !== labelNames.join()) {
        throw new ConflictError(
          'metric_conflict',
          `metric ${name} already registered as another type or labels`,
        );
      }
      return existing as M;
    }
    if (!METRIC_NAME.test(name)) {
      throw new ValidationError('metric_name_invalid', `invalid metric name ${JSON.stringify(name)}`);
    }
    const bad = labelNames.filter((l) => !LABEL_NAME.test(l) || l.startsWith('__'));
    if (bad.length > 0 || new Set(labelNames).size !== labelNames.length) {
      throw new ValidationError('metric_label_invalid', `metric ${name}: invalid or duplicate label names`, {
        details: bad.map((field) => ({ field, message: 'invalid label name' })),
      });
    }
    const metric = create();
    this.metrics.set(name, metric);
    return metric;
  }
}

/** Registers process gauges (RSS, heap, uptime) that sample themselves at each render. */
export function processMetrics(registry: MetricsRegistry): void {
  registry
    .gauge('process_resident_memory_bytes', 'Resident memory size in bytes.')
    .setCollector((g) => g.set(process.memoryUsage.rss()));
  registry
    .gauge('process_heap_bytes', 'Process heap size in bytes.')
    .setCollector((g) => g.set(process.memoryUsage().heapUsed));
  registry
    .gauge('process_uptime_seconds', 'Time since the process started, in seconds.')
    .setCollector((g) => g.set(process.uptime()));
}

function split(labels: Labels | number | undefined, value: number): [Labels | undefined, number] {
  return typeof labels === 'number' ? [undefined, labels] : [labels, value];
}

function braces(pairs: string): string {
  return pairs === '' ? '' : `{${pairs}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/**
 * Appends another registry's exposition (a worker thread's) to this one's, leaving out the
 * families this one already has, so the result names every family once.
 */
export function mergeExposition(primary: string, extra: string): string {
  const have = new Set<string>();
  for (const m of primary.matchAll(/^# TYPE (\S+)/gm)) have.add(m[1]!);
  const kept: string[] = [];
  let keep = true;
  for (const line of extra.split('\n')) {
    if (line === '') continue;
    const header = /^# (?:HELP|TYPE) (\S+)/.exec(line);
    if (header) keep = !have.has(header[1]!);
    if (keep) kept.push(line);
  }
  return kept.length === 0 ? primary : `${primary}${kept.join('\n')}\n`;
}
