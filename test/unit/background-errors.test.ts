/** Background failures: every one counted, each task's logged at most once a minute (fake clock). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackgroundErrors } from '../../src/common/background-errors.ts';
import { Logger } from '../../src/common/log.ts';
import { MetricsRegistry } from '../../src/common/metrics.ts';

test('every failure is counted by task; a task that keeps failing is logged once a minute, with the count in between', () => {
  let now = 1_000_000;
  const lines: Array<Record<string, unknown>> = [];
  const metrics = new MetricsRegistry();
  const errors = new BackgroundErrors(
    new Logger({ level: 'info', sink: { write: (line) => lines.push(JSON.parse(line)) } }),
    metrics,
    () => now,
  );
  const retention = errors.for('log_retention', { file: 'bus.db' });
  for (let i = 0; i < 30; i++) {
    retention(new Error(`disk I/O error ${i}`));
    now += 1000;
  }
  errors.report('store_purge', new Error('locked'));
  now += 31_000;
  retention(new Error('disk I/O error again'));

  const counter = metrics.counter('background_errors_total', '', ['task']);
  assert.equal(counter.get({ task: 'log_retention' }), 31);
  assert.equal(counter.get({ task: 'store_purge' }), 1);
  const logged = lines.map((l) => [l.msg, l.task, l.failedSinceLastLog]);
  assert.deepEqual(logged, [
    ['background work failed: log_retention', 'log_retention', undefined],
    ['background work failed: store_purge', 'store_purge', undefined],
    ['background work failed: log_retention', 'log_retention', 29],
  ]);
  assert.equal(lines[0]!.file, 'bus.db', 'with its context');
  assert.match(JSON.stringify(lines[0]!.err), /disk I\/O error 0/);
});
