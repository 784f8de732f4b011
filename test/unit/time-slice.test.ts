import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TimeSlicer } from '../../src/common/time-slice.ts';

/** Burns CPU for about `ms` milliseconds without handing the event loop back. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* spin */
  }
}

test('a loop that calls maybeYield lets other work run once a slice is used up, not only at its end', async () => {
  let ranAt = -1;
  let step = 0;
  setImmediate(() => {
    ranAt = step;
  });
  const slicer = new TimeSlicer(5);
  for (step = 0; step < 20; step++) {
    busy(2);
    await slicer.maybeYield();
  }
  assert.ok(ranAt >= 0 && ranAt < 19, `the waiting callback ran at step ${ranAt} of 20`);
});

test('within a slice maybeYield does not wait for the event loop', async () => {
  let ran = false;
  setImmediate(() => {
    ran = true;
  });
  const slicer = new TimeSlicer(60_000);
  for (let i = 0; i < 100; i++) await slicer.maybeYield();
  assert.equal(ran, false, 'microtask-only: the immediate has not had its turn');
});
