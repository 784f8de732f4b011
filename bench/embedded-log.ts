/**
 * Throughput of the embedded log: publishes N 1 KB messages in batches of 100, then consumes them
 * with one consumer. Run: ./node_modules/.bin/node bench/embedded-log.ts [messages] [partitions]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BusMessage } from '../src/common/ports/bus.ts';
import { EmbeddedLog } from '../src/engines/embedded/log.ts';

const total = Number(process.argv[2] ?? 200_000);
const partitions = Number(process.argv[3] ?? 4);
const batchSize = 100;
const dir = await mkdtemp(join(tmpdir(), 'bench-log-'));
const log = new EmbeddedLog(join(dir, 'bus.db'));
const topic = 'bench.orders.created.v1';
await log.ensureTopic(topic, { partitions });
const body = JSON.stringify({ data: 'x'.repeat(1000) });
let peakRss = 0;
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
// Sampled from the loops: they rarely yield to timers.
const sampleRss = () => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
};

let started = performance.now();
for (let sent = 0; sent < total; sent += batchSize) {
  const batch: BusMessage[] = [];
  for (let i = 0; i < batchSize; i++)
    batch.push({ topic, key: `k${sent + i}`, value: body, headers: { n: `${sent + i}` } });
  await log.publish(batch);
  if (sent % 10_000 === 0) sampleRss();
}
const publishSeconds = (performance.now() - started) / 1000;
console.log(
  `publish: ${total} messages in ${publishSeconds.toFixed(2)} s = ${Math.round(total / publishSeconds)} msg/s (peak rss ${mb(peakRss)} MB)`,
);
peakRss = 0;
started = performance.now();
let received = 0;
await new Promise<void>((done) => {
  const consumer = log.consume({
    group: 'bench',
    topicPrefixes: ['bench.'],
    handler: async (batch) => {
      received += batch.length;
      if (received % 10_000 === 0) sampleRss();
      if (received >= total) setImmediate(() => consumer.stop().then(done));
      return undefined;
    },
  });
});
const consumeSeconds = (performance.now() - started) / 1000;
console.log(
  `consume: ${received} messages in ${consumeSeconds.toFixed(2)} s = ${Math.round(received / consumeSeconds)} msg/s (peak rss ${mb(peakRss)} MB)`,
);
started = performance.now();
const deleted = await log.retention();
console.log(
  `retention: ${deleted} records deleted in ${((performance.now() - started) / 1000).toFixed(2)} s`,
);

// Latency at a steady 1,000 messages/s: 10 messages every 10 ms for 5 s, publish → handler.
const latencyTopic = 'bench.latency.v1';
await log.ensureTopic(latencyTopic, { partitions });
const latencies: number[] = [];
const latencyConsumer = log.consume({
  group: 'bench-latency',
  topicPrefixes: [latencyTopic],
  handler: async (batch) => {
    const now = Date.now();
    for (const m of batch) latencies.push(now - Number(m.headers.sent));
    return undefined;
  },
});
for (let tick = 0; tick < 500; tick++) {
  const sent = `${Date.now()}`;
  await log.publish(
    Array.from({ length: 10 }, (_, i) => ({
      topic: latencyTopic,
      key: `k${i}`,
      value: body,
      headers: { sent },
    })),
  );
  await sleep(10);
}
await sleep(200);
await latencyConsumer.stop();
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))];
console.log(
  `latency at 1,000 msg/s: ${latencies.length} messages, p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${pct(100)} ms`,
);
await log.close();
await rm(dir, { recursive: true, force: true });
