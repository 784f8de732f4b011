/**
 * In-process metrics with Prometheus text exposition (format 0.0.4), served by `GET /metrics`.
 * No dependency: the format is small, and the shared layer must not pull in a metrics client.
 *
 * Label-taking methods accept the labels first; for metrics without labels the labels may be
 * omitted: `c.inc()`, `c.inc(3)`, `g.set(5)`, `h.observe(0.2)`, `c.inc({ topic: 'x' }, 2)`.
 * Labels must name exactly the metric's label names.
 *
 * Every family is bounded (10,000 series; more label sets fold into an `_other` series), and a
 * family labelled by values that come and go (partners) can drop series idle for a while.
 * `carryTable`/`applyCarry` continue a restarted worker thread's counters from the dead one's.
 */

import { monitorEventLoopDelay } from 'node:perf_hooks';
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

/** Default bound on the number of series of one family. */
export const DEFAULT_MAX_SERIES = 10_000;
/** Label value (every label) of the series taking the updates of label sets beyond a family's bound. */
export const OVERFLOW_LABEL_VALUE = '_other';
/** How often, at most, a family with idle expiry looks for idle series (ms). */
const SWEEP_INTERVAL_MS = 60_000;

/** How a family keeps its series. */
export interface SeriesOptions {
  /**
   * Drops (and frees) a series not updated for this long (ms): for labels whose values come and go,
   * such as partners. Checked lazily, at most once a minute, on an update or a render — no timer.
   * Unset: series are kept for ever. Labelled families only.
   */
  expireIdleMs?: number;
  /**
   * At most this many series (default 10,000). Updates of further label sets are folded into one
   * series whose labels are all `_other`, so sums over the family stay right (a dropped update would
   * make them wrong); `metrics_series_overflow_total{metric}` counts the folded updates.
   */
  maxSeries?: number;
}

/** A histogram's buckets (seconds by default) and how it keeps its series. */
export interface HistogramOptions extends SeriesOptions {
  buckets?: readonly number[];
}

/** What a family gets from its registry besides its options: the clock, and where folds are counted. */
interface SeriesPolicy extends SeriesOptions {
  now?: () => number;
  onFold?: (metric: string) => void;
}

interface Series<S> {
  labels: string[];
  state: S;
  /** Time of the last update (kept only with idle expiry). */
  touchedAt: number;
}

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
  readonly expireIdleMs: number | undefined;
  readonly maxSeries: number;
  protected readonly series = new Map<string, Series<S>>();
  readonly #now: () => number;
  readonly #onFold: (metric: string) => void;
  #sweptAt = 0;

  constructor(name: string, help: string, labelNames: readonly string[], policy: SeriesPolicy = {}) {
    this.name = name;
    this.help = help;
    this.labelNames = [...labelNames];
    this.expireIdleMs = policy.expireIdleMs;
    this.maxSeries = policy.maxSeries ?? DEFAULT_MAX_SERIES;
    this.#now = policy.now ?? Date.now;
    this.#onFold = policy.onFold ?? (() => {});
    if (this.expireIdleMs !== undefined) this.#sweptAt = this.#now();
  }

  abstract readonly type: MetricType;
  protected abstract initial(): S;
  /** Sample lines of one series, given its rendered label pairs (`a="x",b="y"`, or empty). */
  protected abstract sampleLines(pairs: string, state: S): string[];

  protected state(labels: Labels | undefined): S {
    // Hot path (several updates per delivery): the key from the label values alone; the full check
    // of the label names runs when the series is new, or when the labels given are not exactly ours.
    const key = this.#fastKey(labels);
    const entry = (key === undefined ? undefined : this.series.get(key)) ?? this.#entry(labels);
    if (this.expireIdleMs !== undefined) this.#touch(entry);
    return entry.state;
  }

  /** The series of `labels` after the full check; created when new, or the overflow series when full. */
  #entry(labels: Labels | undefined): Series<S> {
    const values = this.labelValues(labels);
    const key = JSON.stringify(values);
    const known = this.series.get(key);
    if (known !== undefined) return known;
    // Full: the idle series due to go make room first.
    if (this.series.size >= this.maxSeries && this.expireIdleMs !== undefined) this.#sweepIfDue(this.#now());
    if (this.series.size < this.maxSeries) return this.#create(key, values);
    this.#onFold(this.name);
    const overflow = this.labelNames.map(() => OVERFLOW_LABEL_VALUE);
    const overflowKey = JSON.stringify(overflow);
    return this.series.get(overflowKey) ?? this.#create(overflowKey, overflow);
  }

  #create(key: string, values: string[]): Series<S> {
    const entry = { labels: values, state: this.initial(), touchedAt: 0 };
    this.series.set(key, entry);
    return entry;
  }

  /** Notes the update of `entry` (touched first, so the sweep it may trigger keeps it). */
  #touch(entry: Series<S>): void {
    const now = this.#now();
    entry.touchedAt = now;
    this.#sweepIfDue(now);
  }

  /** Drops the series idle for the family's expiry, at most once a minute (so updates stay cheap). */
  #sweepIfDue(now: number): void {
    const idleMs = this.expireIdleMs;
    if (idleMs === undefined || now - this.#sweptAt < SWEEP_INTERVAL_MS) return;
    this.#sweptAt = now;
    for (const [key, entry] of this.series) if (now - entry.touchedAt >= idleMs) this.series.delete(key);
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

  /**
   * The labels of every series the family has now, in creation order (one empty set for an
   * unlabelled metric once updated): for exporters that read the values with `get`/`snapshot`.
   * Reading is not an update: it neither keeps a series from expiring nor sweeps idle ones.
   */
  labelSets(): Labels[] {
    return [...this.series.values()].map(({ labels }) =>
      Object.fromEntries(this.labelNames.map((name, i) => [name, labels[i]!])),
    );
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
    if (this.expireIdleMs !== undefined) this.#sweepIfDue(this.#now());
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

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
    policy: SeriesPolicy = {},
  ) {
    super(name, help, labelNames, policy);
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
  readonly #now: () => number;

  /** `now` (ms) times series updates for idle expiry; tests pass a fake clock. */
  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** Registers (or returns the already registered) counter `name`. */
  counter(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    options: SeriesOptions = {},
  ): Counter {
    return this.register(
      'counter',
      name,
      labelNames,
      options,
      (policy) => new Counter(name, help, labelNames, policy),
    );
  }

  /** Registers (or returns the already registered) gauge `name`. */
  gauge(name: string, help: string, labelNames: readonly string[] = [], options: SeriesOptions = {}): Gauge {
    return this.register(
      'gauge',
      name,
      labelNames,
      options,
      (policy) => new Gauge(name, help, labelNames, policy),
    );
  }

  /** Registers (or returns the already registered) histogram `name`; buckets (or options) default to seconds. */
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    bucketsOrOptions: readonly number[] | HistogramOptions = {},
  ): Histogram {
    const { buckets = DEFAULT_BUCKETS, ...options } = isBuckets(bucketsOrOptions)
      ? { buckets: bucketsOrOptions }
      : bucketsOrOptions;
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
      options,
      (policy) => new Histogram(name, help, labelNames, finite, policy),
    );
    if (metric.buckets.join() !== finite.join()) {
      throw new ConflictError('metric_conflict', `histogram ${name} already registered with other buckets`);
    }
    return metric;
  }

  /** The metric registered as `name`, if any (for exporters: reading it never registers it). */
  find(name: string): Counter | Gauge | Histogram | undefined {
    return this.metrics.get(name);
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
    options: SeriesOptions,
    create: (policy: SeriesPolicy) => M,
  ): M {
    const existing = this.metrics.get(name);
    if (existing !== undefined) {
      if (existing.type !== type || existing.labelNames.join() !== labelNames.join()) {
        throw new ConflictError(
          'metric_conflict',
          `metric ${name} already registered as another type or labels`,
        );
      }
      if (
        existing.expireIdleMs !== options.expireIdleMs ||
        existing.maxSeries !== (options.maxSeries ?? DEFAULT_MAX_SERIES)
      ) {
        throw new ConflictError(
          'metric_conflict',
          `metric ${name} already registered with other series options`,
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
    checkSeriesOptions(name, labelNames, options);
    const metric = create({ ...options, now: this.#now, onFold: (metric) => this.#countFold(metric) });
    this.metrics.set(name, metric);
    return metric;
  }

  /** Counts an update folded into a family's overflow series (the counter appears with the first). */
  #countFold(metric: string): void {
    this.counter(
      'metrics_series_overflow_total',
      'Updates of label sets beyond their family series bound, folded into its _other series',
      ['metric'],
    ).inc({ metric });
  }
}

function isBuckets(value: readonly number[] | HistogramOptions): value is readonly number[] {
  return Array.isArray(value);
}

/** Refuses series options that cannot work (an unlabelled series expiring would reappear at zero). */
function checkSeriesOptions(name: string, labelNames: readonly string[], options: SeriesOptions): void {
  const { expireIdleMs, maxSeries } = options;
  const problems: { field: string; message: string }[] = [];
  if (expireIdleMs !== undefined && !(expireIdleMs > 0))
    problems.push({ field: 'expireIdleMs', message: 'must be positive' });
  if (expireIdleMs !== undefined && labelNames.length === 0)
    problems.push({ field: 'expireIdleMs', message: 'only for labelled metrics' });
  if (maxSeries !== undefined && !(Number.isInteger(maxSeries) && maxSeries >= 1))
    problems.push({ field: 'maxSeries', message: 'must be a positive integer' });
  if (problems.length > 0) {
    throw new ValidationError('metric_options_invalid', `metric ${name}: invalid series options`, {
      details: problems,
    });
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
  // How long the main thread's event loop was held: what every request on it waits at worst.
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  registry
    .gauge(
      'nodejs_eventloop_delay_max_seconds',
      'Longest event-loop delay of the main thread since the process started.',
    )
    .setCollector((g) => g.set(delay.max / 1e9));
  registry
    .gauge(
      'nodejs_eventloop_delay_p99_seconds',
      '99th percentile of the main thread’s event-loop delay since the process started.',
    )
    .setCollector((g) => g.set(delay.percentile(99) / 1e9));
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
 * Adds to one exposition (the host's) the families of another (a worker thread's). A family both
 * have keeps the primary's samples and gains the other's series it does not have (a series labelled
 * per thread); a series both have is the primary's alone. Samples stay grouped by family.
 */
export function mergeExposition(primary: string, extra: string): string {
  const lines = primary.split('\n').filter((line) => line !== '');
  const have = new Set<string>();
  const series = new Set<string>();
  /** Index of the last line of each family in `lines`. */
  const lastLine = new Map<string, number>();
  let family = '';
  lines.forEach((line, i) => {
    const header = /^# (?:HELP|TYPE) (\S+)/.exec(line);
    if (header) {
      family = header[1]!;
      have.add(family);
    } else if (!line.startsWith('#')) series.add(sampleKey(line));
    lastLine.set(family, i);
  });
  const appended: string[] = [];
  const inserted = new Map<string, string[]>();
  let shared = false;
  for (const line of extra.split('\n')) {
    if (line === '') continue;
    const header = /^# (?:HELP|TYPE) (\S+)/.exec(line);
    if (header) {
      family = header[1]!;
      shared = have.has(family);
      if (!shared) appended.push(line);
      continue;
    }
    if (!shared) appended.push(line);
    else if (!line.startsWith('#') && !series.has(sampleKey(line))) {
      const list = inserted.get(family) ?? [];
      if (list.length === 0) inserted.set(family, list);
      list.push(line);
    }
  }
  if (appended.length === 0 && inserted.size === 0) return primary;
  const out: string[] = [];
  const after = new Map<number, string[]>();
  for (const [name, samples] of inserted) after.set(lastLine.get(name)!, samples);
  lines.forEach((line, i) => {
    out.push(line);
    const more = after.get(i);
    if (more) out.push(...more);
  });
  out.push(...appended);
  return `${out.join('\n')}\n`;
}

/** A sample line's series: its name and labels, without the value. */
function sampleKey(line: string): string {
  const close = line.lastIndexOf('}');
  return close >= 0 ? line.slice(0, close + 1) : line.split(' ')[0]!;
}

/** Types whose samples only go up, so a restarted thread's are carried on from its predecessor's. */
const CARRIED_TYPES = new Set(['counter', 'histogram']);

/** One carried sample: the replaced threads' total, and whether the running thread has shown it. */
interface CarriedSample {
  value: number;
  reported: boolean;
}

/**
 * Counter and histogram samples (buckets, sums, counts) of replaced worker threads, by family, with
 * the family's HELP and TYPE lines: offsets added to the running thread's, which count from 0.
 */
export type CarryTable = ReadonlyMap<
  string,
  { header: readonly string[]; samples: ReadonlyMap<string, CarriedSample> }
>;

/** The carry table of a thread's last exposition, for the thread started in its place. */
export function carryTable(exposition: string): CarryTable {
  const table = new Map<string, { header: readonly string[]; samples: Map<string, CarriedSample> }>();
  for (const family of parseFamilies(exposition)) {
    if (!CARRIED_TYPES.has(family.type)) continue;
    const samples = new Map<string, CarriedSample>();
    for (const line of family.samples) {
      const [key, value] = splitSample(line);
      samples.set(key, { value, reported: false });
    }
    table.set(family.name, { header: family.header, samples });
  }
  return table;
}

/**
 * `exposition` (a restarted thread's) with each counter and histogram sample raised by its carried
 * value and the carried series it lacks added, so none goes down across a restart; gauges pass as
 * they are. Returns the table for the next call: a carried series the thread showed and no longer
 * shows was expired by it, so it is dropped rather than shown at its carried value alone.
 */
export function applyCarry(table: CarryTable, exposition: string): { exposition: string; table: CarryTable } {
  const lines: string[] = [];
  const next = new Map<string, { header: readonly string[]; samples: ReadonlyMap<string, CarriedSample> }>();
  const families = parseFamilies(exposition);
  const present = new Set(families.map((f) => f.name));
  for (const family of families) {
    const carried = table.get(family.name);
    if (carried === undefined || !CARRIED_TYPES.has(family.type)) {
      lines.push(...family.header, ...family.samples);
      continue;
    }
    const { samples, kept } = carryFamily(carried.samples, family.samples);
    lines.push(...family.header, ...samples);
    next.set(family.name, { header: family.header, samples: kept });
  }
  for (const [name, carried] of table) {
    if (present.has(name)) continue;
    const { samples, kept } = carryFamily(carried.samples, []);
    if (kept.size === 0) continue;
    lines.push(...carried.header, ...samples);
    next.set(name, { header: carried.header, samples: kept });
  }
  return { exposition: lines.length === 0 ? '' : `${lines.join('\n')}\n`, table: next };
}

/** `current` (a restarted thread's exposition) continuing `previous` (the replaced thread's last). */
export function carryCounters(previous: string, current: string): string {
  return applyCarry(carryTable(previous), current).exposition;
}

/** One family's sample lines raised by their carried values, then its carried-only series. */
function carryFamily(
  carried: ReadonlyMap<string, CarriedSample>,
  current: readonly string[],
): { samples: string[]; kept: Map<string, CarriedSample> } {
  const samples: string[] = [];
  const kept = new Map<string, CarriedSample>();
  for (const line of current) {
    const [key, value] = splitSample(line);
    const offset = carried.get(key);
    if (offset === undefined) {
      samples.push(line);
      continue;
    }
    samples.push(`${key} ${formatValue(offset.value + value)}`);
    kept.set(key, { value: offset.value, reported: true });
  }
  for (const [key, offset] of carried) {
    if (kept.has(key) || offset.reported) continue;
    samples.push(`${key} ${formatValue(offset.value)}`);
    kept.set(key, offset);
  }
  return { samples, kept };
}

interface ExpositionFamily {
  name: string;
  type: string;
  header: string[];
  samples: string[];
}

/** The families of a text exposition as `render()` writes it: HELP and TYPE, then the samples. */
function parseFamilies(text: string): ExpositionFamily[] {
  const families: ExpositionFamily[] = [];
  let current: ExpositionFamily | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const header = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (header === null && line.startsWith('#')) continue;
    const name = header === null ? current?.name : header[2]!;
    if (current === undefined || current.name !== name) {
      current = { name: name ?? '', type: 'untyped', header: [], samples: [] };
      families.push(current);
    }
    if (header === null) current.samples.push(line);
    else current.header.push(line);
    if (header?.[1] === 'TYPE') current.type = header[3] ?? 'untyped';
  }
  return families;
}

/** A sample line's series (name and labels) and value; `render()` writes no timestamps. */
function splitSample(line: string): [string, number] {
  const at = line.lastIndexOf(' ');
  return [line.slice(0, at), parseValue(line.slice(at + 1))];
}

function parseValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}
