import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError, ValidationError } from '../../src/common/errors.ts';
import { MetricsRegistry, mergeExposition, processMetrics } from '../../src/common/metrics.ts';

function lines(registry: MetricsRegistry): string[] {
  const text = registry.render();
  assert.ok(text.endsWith('\n'), 'exposition must end with a newline');
  return text.slice(0, -1).split('\n');
}

function sample(registry: MetricsRegistry, name: string): number {
  const line = lines(registry).find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no sample ${name}`);
  return Number(line.slice(name.length + 1));
}

describe('MetricsRegistry', () => {
  it('renders an empty registry as empty text', () => {
    assert.equal(new MetricsRegistry().render(), '');
  });

  it('returns the same metric when a name is registered twice', () => {
    const registry = new MetricsRegistry();

    const a = registry.counter('events_processed_total', 'Events processed.', ['topic']);
    const b = registry.counter('events_processed_total', 'Events processed.', ['topic']);

    assert.equal(a, b);
  });

  it('refuses a name registered with another type or other labels', () => {
    const registry = new MetricsRegistry();
    registry.counter('events_total', 'Events.', ['topic']);

    const isConflict = (err: unknown) => err instanceof ConflictError && err.code === 'metric_conflict';
    assert.throws(() => registry.gauge('events_total', 'Events.', ['topic']), isConflict);
    assert.throws(() => registry.counter('events_total', 'Events.', ['partner']), isConflict);
  });

  it('refuses invalid metric and label names', () => {
    const registry = new MetricsRegistry();

    const code = (c: string) => (err: unknown) => err instanceof ValidationError && err.code === c;
    assert.throws(() => registry.counter('1events', 'x'), code('metric_name_invalid'));
    assert.throws(() => registry.counter('events-total', 'x'), code('metric_name_invalid'));
    assert.throws(() => registry.counter('a_total', 'x', ['bad-label']), code('metric_label_invalid'));
    assert.throws(() => registry.counter('b_total', 'x', ['__reserved']), code('metric_label_invalid'));
    assert.throws(() => registry.counter('c_total', 'x', ['a', 'a']), code('metric_label_invalid'));
    assert.throws(() => registry.histogram('d_seconds', 'x', ['le']), code('metric_label_invalid'));
  });

  it('accepts colons in metric names', () => {
    assert.doesNotThrow(() => new MetricsRegistry().counter('job:events:rate5m', 'x'));
  });
});

describe('Counter', () => {
  it('keeps counting a series whose label value is not a string (updates that skip the fast path)', () => {
    const c = new MetricsRegistry().counter('odd_total', 'help', ['code']);
    const missing = { code: undefined } as unknown as { code: string };

    c.inc(missing);
    c.inc(missing);
    c.inc({ code: 'undefined' });

    assert.equal(c.get(missing), 3);
  });

  it('renders HELP, TYPE and one line per label set', () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter('events_processed_total', 'Events processed.', ['topic', 'outcome']);

    counter.inc({ topic: 'orders', outcome: 'ok' });
    counter.inc({ topic: 'orders', outcome: 'ok' }, 2);
    counter.inc({ outcome: 'dlq', topic: 'users' });

    assert.deepEqual(lines(registry), [
      '# HELP events_processed_total Events processed.',
      '# TYPE events_processed_total counter',
      'events_processed_total{topic="orders",outcome="ok"} 3',
      'events_processed_total{topic="users",outcome="dlq"} 1',
    ]);
  });

  it('exposes an unlabelled counter as zero before its first increment', () => {
    const registry = new MetricsRegistry();
    registry.counter('requests_total', 'Requests.');

    assert.deepEqual(lines(registry), [
      '# HELP requests_total Requests.',
      '# TYPE requests_total counter',
      'requests_total 0',
    ]);
  });

  it('accepts a bare number for an unlabelled counter', () => {
    const counter = new MetricsRegistry().counter('requests_total', 'Requests.');

    counter.inc();
    counter.inc(4);

    assert.equal(counter.get(), 5);
  });

  it('refuses to decrease', () => {
    const counter = new MetricsRegistry().counter('requests_total', 'Requests.');

    assert.throws(
      () => counter.inc(-1),
      (err) => err instanceof ValidationError && err.code === 'metric_value_invalid',
    );
  });

  it('refuses missing or unknown labels', () => {
    const counter = new MetricsRegistry().counter('events_total', 'Events.', ['topic']);

    const invalid = (err: unknown) => err instanceof ValidationError && err.code === 'metric_labels_invalid';
    assert.throws(() => counter.inc(), invalid);
    assert.throws(() => counter.inc({ topic: 'a', partner: 'p' }), invalid);
  });

  it('escapes backslash, double quote and newline in label values', () => {
    const registry = new MetricsRegistry();
    registry.counter('odd_total', 'Odd values.', ['v']).inc({ v: 'a\\b"c\nd' });

    assert.equal(lines(registry)[2], 'odd_total{v="a\\\\b\\"c\\nd"} 1');
  });

  it('escapes backslash and newline in HELP text', () => {
    const registry = new MetricsRegistry();
    registry.counter('help_total', 'first\\second\nthird');

    assert.equal(lines(registry)[0], '# HELP help_total first\\\\second\\nthird');
  });
});

describe('Gauge', () => {
  it('sets, increments and decrements per label set', () => {
    const registry = new MetricsRegistry();
    const gauge = registry.gauge('queue_depth', 'Messages waiting.', ['tier']);

    gauge.set({ tier: '5s' }, 10);
    gauge.inc({ tier: '5s' });
    gauge.dec({ tier: '5s' }, 4);
    gauge.set({ tier: '1m' }, -2.5);

    assert.deepEqual(lines(registry).slice(2), ['queue_depth{tier="5s"} 7', 'queue_depth{tier="1m"} -2.5']);
  });

  it('renders special float values the Prometheus way', () => {
    const registry = new MetricsRegistry();
    const gauge = registry.gauge('odd', 'Odd values.', ['k']);

    gauge.set({ k: 'nan' }, Number.NaN);
    gauge.set({ k: 'pinf' }, Number.POSITIVE_INFINITY);
    gauge.set({ k: 'ninf' }, Number.NEGATIVE_INFINITY);

    assert.deepEqual(lines(registry).slice(2), [
      'odd{k="nan"} NaN',
      'odd{k="pinf"} +Inf',
      'odd{k="ninf"} -Inf',
    ]);
  });

  it('runs its collector before each render', () => {
    const registry = new MetricsRegistry();
    let calls = 0;
    registry.gauge('sampled', 'Sampled on demand.').setCollector((g) => g.set(++calls));

    registry.render();

    assert.equal(lines(registry)[2], 'sampled 2');
  });

  it('keeps rendering when a collector throws', () => {
    const registry = new MetricsRegistry();
    const gauge = registry.gauge('flaky', 'Flaky collector.');
    gauge.set(3);
    gauge.setCollector(() => {
      throw new Error('boom');
    });

    assert.equal(lines(registry)[2], 'flaky 3');
  });
});

describe('Histogram', () => {
  it('renders cumulative buckets with +Inf, then _sum and _count', () => {
    const registry = new MetricsRegistry();
    const histogram = registry.histogram('delivery_seconds', 'Delivery latency.', ['partner'], [0.1, 1, 5]);

    for (const v of [0.05, 0.1, 0.7, 3, 9]) histogram.observe({ partner: 'acme' }, v);

    assert.deepEqual(lines(registry), [
      '# HELP delivery_seconds Delivery latency.',
      '# TYPE delivery_seconds histogram',
      'delivery_seconds_bucket{partner="acme",le="0.1"} 2',
      'delivery_seconds_bucket{partner="acme",le="1"} 3',
      'delivery_seconds_bucket{partner="acme",le="5"} 4',
      'delivery_seconds_bucket{partner="acme",le="+Inf"} 5',
      'delivery_seconds_sum{partner="acme"} 12.85',
      'delivery_seconds_count{partner="acme"} 5',
    ]);
  });

  it('uses the default seconds buckets', () => {
    const registry = new MetricsRegistry();
    registry.histogram('op_seconds', 'Op latency.');

    const les = lines(registry)
      .filter((l) => l.startsWith('op_seconds_bucket'))
      .map((l) => /le="([^"]+)"/.exec(l)?.[1]);

    assert.deepEqual(les, [
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '+Inf',
    ]);
  });

  it('reports a cumulative snapshot', () => {
    const histogram = new MetricsRegistry().histogram('size_bytes', 'Sizes.', [], [10, 100]);

    histogram.observe(5);
    histogram.observe(50);
    histogram.observe(500);

    assert.deepEqual(histogram.snapshot(), {
      count: 3,
      sum: 555,
      buckets: [
        { le: 10, count: 1 },
        { le: 100, count: 2 },
        { le: Number.POSITIVE_INFINITY, count: 3 },
      ],
    });
  });

  it('refuses buckets that do not increase', () => {
    const registry = new MetricsRegistry();

    const invalid = (err: unknown) => err instanceof ValidationError && err.code === 'metric_buckets_invalid';
    assert.throws(() => registry.histogram('a_seconds', 'x', [], [1, 1]), invalid);
    assert.throws(() => registry.histogram('b_seconds', 'x', [], [2, 1]), invalid);
    assert.throws(() => registry.histogram('c_seconds', 'x', [], []), invalid);
  });
});

describe('processMetrics', () => {
  it('exposes memory and uptime gauges sampled at render', () => {
    const registry = new MetricsRegistry();

    processMetrics(registry);

    const text = registry.render();
    assert.match(text, /^# TYPE process_resident_memory_bytes gauge$/m);
    assert.match(text, /^# TYPE process_heap_bytes gauge$/m);
    assert.match(text, /^# TYPE process_uptime_seconds gauge$/m);
    assert.ok(sample(registry, 'process_resident_memory_bytes') > 0);
    assert.ok(sample(registry, 'process_heap_bytes') > 0);
    assert.ok(sample(registry, 'process_uptime_seconds') > 0);
  });
});

describe('mergeExposition', () => {
  it('adds the other registry’s families and leaves out those this one already has', () => {
    const main = new MetricsRegistry();
    main.counter('events_processed', 'Events').inc(3);
    main.gauge('process_uptime_seconds', 'Uptime').set(10);
    const thread = new MetricsRegistry();
    thread.counter('webhook_deliveries_total', 'Deliveries', ['outcome']).inc({ outcome: 'success' }, 2);
    thread.gauge('process_uptime_seconds', 'Uptime').set(99);
    const merged = mergeExposition(main.render(), thread.render());
    assert.match(merged, /^events_processed 3$/m);
    assert.match(merged, /^webhook_deliveries_total\{outcome="success"\} 2$/m);
    assert.match(merged, /^process_uptime_seconds 10$/m);
    assert.doesNotMatch(merged, /process_uptime_seconds 99/);
    assert.equal(merged.match(/^# TYPE process_uptime_seconds /gm)?.length, 1);
    assert.ok(merged.endsWith('\n'));
    assert.equal(mergeExposition(main.render(), ''), main.render());
  });
});
