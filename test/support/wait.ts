/**
 * Waiting for facts, never for time. A test waits until something it can observe holds — a
 * sentinel delivered, a counter reached, a record written — polling it under a generous overall
 * timeout that only turns a hang into a failure; it never sleeps a fixed time and then asserts
 * that "nothing else" happened.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ADMIN_TOKEN, type TestServer } from './server.ts';

type Found<T> = T | undefined | null | false;

/**
 * Polls `check` until it returns something other than undefined, null or false, and returns that.
 * Fails after `timeoutMs` (an overall bound against hangs, not a threshold under test), naming `what`.
 */
export async function waitFor<T>(
  what: string,
  check: () => Found<T> | Promise<Found<T>>,
  timeoutMs = 20_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found !== undefined && found !== null && found !== false) return found;
    if (Date.now() >= deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * GET /metrics as a map from series (name and labels, as rendered) to value; with the test admin
 * token, so the series labelled by partner are in it (`null`: as an anonymous scraper sees it).
 */
export async function scrapeMetrics(
  baseUrl: string,
  token: string | null = ADMIN_TOKEN,
): Promise<Map<string, number>> {
  const res = await fetch(
    `${baseUrl}/metrics`,
    token === null ? {} : { headers: { authorization: `Bearer ${token}` } },
  );
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** One series of /metrics, e.g. `webhook_deliveries_total{outcome="skipped"}` (0 while absent). */
export async function metric(baseUrl: string, series: string): Promise<number> {
  return (await scrapeMetrics(baseUrl)).get(series) ?? 0;
}

/**
 * Waits until the processor has routed each event (recorded its route: the last thing it writes
 * for an event, after publishing the event's delivery tasks).
 */
export async function waitRouted(
  server: TestServer,
  ...events: Array<{ id: string; source: string }>
): Promise<void> {
  const refs = events.map((e) => ({ id: e.id, source: e.source }));
  await waitFor(`the processor to route ${refs.map((r) => r.id).join(', ')}`, async () =>
    (await server.running.platform.store.deliveries.routed(refs)).every(Boolean),
  );
}

/** A gate the test opens: `opened` settles once `open()` is called. */
export function latch(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}
