import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError, ValidationError } from '../../src/common/errors.ts';
import {
  applyCarry,
  carryCounters,
  carryTable,
  MetricsRegistry,
  mergeExposition,
  processMetrics,
} from '../../src/common/metrics.ts';

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

  it('a family both have gains the other’s series it lacks, grouped with the family', () => {
    const main = new MetricsRegistry();
    main
      .gauge('dynamodb_consumed_capacity_units', 'Units', ['kind', 'thread'])
      .set({ kind: 'write', thread: 'main' }, 5);
    main.counter('events_processed', 'Events').inc(1);
    const thread = new MetricsRegistry();
    thread
      .gauge('dynamodb_consumed_capacity_units', 'Units', ['kind', 'thread'])
      .set({ kind: 'write', thread: 'dispatcher' }, 7);
    const merged = mergeExposition(main.render(), thread.render());
    const lines = merged.split('\n');
    const at = (text: string) => lines.findIndex((l) => l.startsWith(text));
    assert.ok(at('dynamodb_consumed_capacity_units{kind="write",thread="main"} 5') >= 0);
    const added = at('dynamodb_consumed_capacity_units{kind="write",thread="dispatcher"} 7');
    assert.ok(added >= 0, merged);
    assert.ok(added < at('# HELP events_processed'), 'inside its family, before the next one');
    assert.equal(merged.match(/^# TYPE dynamodb_consumed_capacity_units /gm)?.length, 1);
  });
});

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** A registry on a clock the test moves. */
function clocked(): { registry: MetricsRegistry; clock: { ms: number } } {
  const clock = { ms: 0 };
  return { registry: new MetricsRegistry({ now: () => clock.ms }), clock };
}

/** The sample lines of `name` (any labels) in an exposition. */
function samplesOf(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('idle series expiry', () => {
  it('drops a series not updated for its family expiry, and counts it from zero if it comes back', () => {
    const { registry, clock } = clocked();
    const responses = registry.counter('responses_total', 'Answers.', ['partner'], { expireIdleMs: HOUR });
    responses.inc({ partner: 'gone' }, 5);
    responses.inc({ partner: 'busy' });
    clock.ms = 30 * MINUTE;
    responses.inc({ partner: 'busy' });

    clock.ms = HOUR + MINUTE;
    assert.deepEqual(samplesOf(registry.render(), 'responses_total'), ['responses_total{partner="busy"} 2']);

    responses.inc({ partner: 'gone' });
    assert.equal(responses.get({ partner: 'gone' }), 1);
  });

  it('looks for idle series at most once a minute, on an update or a render', () => {
    const { registry, clock } = clocked();
    const responses = registry.counter('responses_total', 'Answers.', ['partner'], { expireIdleMs: HOUR });
    responses.inc({ partner: 'a' });
    clock.ms = HOUR - 30_000;
    responses.inc({ partner: 'b' }); // checks: `a` is not idle long enough yet

    clock.ms = HOUR;
    assert.equal(samplesOf(registry.render(), 'responses_total').length, 2, 'checked 30 s ago');
    clock.ms = HOUR + 30_000;
    assert.deepEqual(samplesOf(registry.render(), 'responses_total'), ['responses_total{partner="b"} 1']);
  });

  it('expires histogram series too', () => {
    const { registry, clock } = clocked();
    const latency = registry.histogram('latency_seconds', 'Latency.', ['partner'], { expireIdleMs: HOUR });
    latency.observe({ partner: 'gone' }, 0.2);
    clock.ms = 2 * HOUR;
    latency.observe({ partner: 'busy' }, 0.3);

    const text = registry.render();
    assert.doesNotMatch(text, /partner="gone"/);
    assert.match(text, /^latency_seconds_count\{partner="busy"\} 1$/m);
    assert.deepEqual(latency.snapshot({ partner: 'gone' }).count, 0);
  });

  it('keeps every series of a family without expiry', () => {
    const { registry, clock } = clocked();
    registry.counter('kept_total', 'Kept.', ['partner']).inc({ partner: 'a' });
    clock.ms = 100 * HOUR;

    assert.deepEqual(samplesOf(registry.render(), 'kept_total'), ['kept_total{partner="a"} 1']);
  });

  it('refuses expiry on an unlabelled metric, and options that cannot work', () => {
    const registry = new MetricsRegistry();

    const invalid = (err: unknown) => err instanceof ValidationError && err.code === 'metric_options_invalid';
    assert.throws(() => registry.counter('a_total', 'x', [], { expireIdleMs: HOUR }), invalid);
    assert.throws(() => registry.counter('b_total', 'x', ['p'], { expireIdleMs: 0 }), invalid);
    assert.throws(() => registry.gauge('c', 'x', ['p'], { maxSeries: 0 }), invalid);
    assert.throws(() => registry.histogram('d_seconds', 'x', ['p'], { maxSeries: 1.5 }), invalid);
  });

  it('refuses a name registered again with other series options', () => {
    const registry = new MetricsRegistry();
    registry.counter('responses_total', 'Answers.', ['partner'], { expireIdleMs: HOUR });

    const isConflict = (err: unknown) => err instanceof ConflictError && err.code === 'metric_conflict';
    assert.throws(() => registry.counter('responses_total', 'Answers.', ['partner']), isConflict);
    assert.doesNotThrow(() =>
      registry.counter('responses_total', 'Answers.', ['partner'], { expireIdleMs: HOUR }),
    );
  });
});

describe('series bound', () => {
  it('folds the label sets beyond the bound into one _other series and counts the folded updates', () => {
    const registry = new MetricsRegistry();
    const responses = registry.counter('responses_total', 'Answers.', ['partner', 'status'], {
      maxSeries: 2,
    });
    responses.inc({ partner: 'a', status: '200' });
    responses.inc({ partner: 'b', status: '200' });
    responses.inc({ partner: 'c', status: '200' }, 3);
    responses.inc({ partner: 'd', status: '500' });
    responses.inc({ partner: 'a', status: '200' });

    const text = registry.render();
    assert.deepEqual(samplesOf(text, 'responses_total'), [
      'responses_total{partner="a",status="200"} 2',
      'responses_total{partner="b",status="200"} 1',
      'responses_total{partner="_other",status="_other"} 4',
    ]);
    assert.match(text, /^metrics_series_overflow_total\{metric="responses_total"\} 2$/m);
  });

  it('folds histogram observations too, so counts and sums over the family stay right', () => {
    const registry = new MetricsRegistry();
    const latency = registry.histogram('latency_seconds', 'Latency.', ['partner'], {
      buckets: [1],
      maxSeries: 1,
    });
    latency.observe({ partner: 'a' }, 0.5);
    latency.observe({ partner: 'b' }, 2);
    latency.observe({ partner: 'c' }, 0.5);

    assert.deepEqual(latency.snapshot({ partner: '_other' }), {
      count: 2,
      sum: 2.5,
      buckets: [
        { le: 1, count: 1 },
        { le: Number.POSITIVE_INFINITY, count: 2 },
      ],
    });
  });

  it('gives a new label set its own series again once expiry made room', () => {
    const { registry, clock } = clocked();
    const responses = registry.counter('responses_total', 'Answers.', ['partner'], {
      expireIdleMs: HOUR,
      maxSeries: 1,
    });
    responses.inc({ partner: 'old' });
    clock.ms = 2 * HOUR;
    responses.inc({ partner: 'new' });

    assert.deepEqual(samplesOf(registry.render(), 'responses_total'), ['responses_total{partner="new"} 1']);
  });

  it('bounds every family at 10,000 series by default', () => {
    const registry = new MetricsRegistry();
    const counter = registry.counter('many_total', 'Many.', ['id']);
    for (let i = 0; i <= 10_000; i++) counter.inc({ id: String(i) });

    const text = registry.render();
    assert.equal(samplesOf(text, 'many_total').length, 10_001, '10,000 series and the _other one');
    assert.match(text, /^many_total\{id="_other"\} 1$/m);
  });
});

describe('carrying counters across a thread restart', () => {
  /** A thread's registry: a counter by partner, a histogram, a gauge. */
  function threadRegistry(clock?: { ms: number }) {
    const registry = new MetricsRegistry(clock ? { now: () => clock.ms } : {});
    return {
      registry,
      responses: registry.counter('responses_total', 'Answers.', ['partner'], { expireIdleMs: HOUR }),
      latency: registry.histogram('latency_seconds', 'Latency.', ['partner'], [1]),
      queue: registry.gauge('queue_depth', 'Waiting.'),
    };
  }

  it('adds the dead thread counters and histograms to the new thread, not its gauges', () => {
    const dead = threadRegistry();
    dead.responses.inc({ partner: 'a' }, 5);
    dead.responses.inc({ partner: 'b w"x' }, 2);
    dead.latency.observe({ partner: 'a' }, 0.5);
    dead.latency.observe({ partner: 'a' }, 3);
    dead.queue.set(40);
    const fresh = threadRegistry();
    fresh.responses.inc({ partner: 'a' });
    fresh.latency.observe({ partner: 'a' }, 0.25);
    fresh.queue.set(3);

    const text = carryCounters(dead.registry.render(), fresh.registry.render());

    assert.deepEqual(samplesOf(text, 'responses_total'), [
      'responses_total{partner="a"} 6',
      'responses_total{partner="b w\\"x"} 2',
    ]);
    assert.deepEqual(
      text.split('\n').filter((l) => l.startsWith('latency_seconds')),
      [
        'latency_seconds_bucket{partner="a",le="1"} 2',
        'latency_seconds_bucket{partner="a",le="+Inf"} 3',
        'latency_seconds_sum{partner="a"} 3.75',
        'latency_seconds_count{partner="a"} 3',
      ],
    );
    assert.deepEqual(samplesOf(text, 'queue_depth'), ['queue_depth 3']);
    assert.equal(text.match(/^# TYPE responses_total counter$/gm)?.length, 1);
  });

  it('shows a family the new thread lacks with its HELP and TYPE', () => {
    const text = carryCounters('# HELP old_total Old.\n# TYPE old_total counter\nold_total 4\n', '');

    assert.equal(text, '# HELP old_total Old.\n# TYPE old_total counter\nold_total 4\n');
  });

  it('never lets a counter go down over scrapes and restarts', () => {
    let table = carryTable('');
    let shown = '';
    const seen: number[] = [];
    const scrape = (thread: ReturnType<typeof threadRegistry>) => {
      ({ exposition: shown, table } = applyCarry(table, thread.registry.render()));
      const line = samplesOf(shown, 'responses_total').find((l) => l.includes('partner="a"'));
      seen.push(Number(line?.split(' ')[1]));
    };
    let thread = threadRegistry();
    for (const [increments, restart] of [
      [3, false],
      [2, true],
      [0, false],
      [4, true],
      [1, true],
    ] as const) {
      if (restart) {
        table = carryTable(shown);
        thread = threadRegistry();
      }
      thread.responses.inc({ partner: 'a' }, increments);
      scrape(thread);
    }

    assert.deepEqual(seen, [3, 5, 5, 9, 10]);
  });

  it('drops a carried series once the new thread showed it and then expired it', () => {
    const clock = { ms: 0 };
    const dead = threadRegistry();
    dead.responses.inc({ partner: 'a' }, 5);
    let table = carryTable(dead.registry.render());
    const fresh = threadRegistry(clock);
    fresh.responses.inc({ partner: 'a' });
    ({ table } = applyCarry(table, fresh.registry.render()));

    clock.ms = 2 * HOUR;
    const { exposition } = applyCarry(table, fresh.registry.render());

    assert.deepEqual(samplesOf(exposition, 'responses_total'), [], 'not shown at 5 after 6');
  });

  it('keeps a carried series the new thread has not shown yet', () => {
    const dead = threadRegistry();
    dead.responses.inc({ partner: 'quiet' }, 5);
    let table = carryTable(dead.registry.render());
    const fresh = threadRegistry();
    let exposition = '';

    for (let scrape = 0; scrape < 3; scrape++)
      ({ exposition, table } = applyCarry(table, fresh.registry.render()));

    assert.deepEqual(samplesOf(exposition, 'responses_total'), ['responses_total{partner="quiet"} 5']);
  });
});
