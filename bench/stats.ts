/** Percentiles and formatting for the benchmarks. */

/** The p-th percentile (0..100) of values (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** "p50 1.2 ms · p95 3.4 ms · p99 5.6 ms" */
export function latencyLine(values: readonly number[]): string {
  const f = (p: number) => `${percentile(values, p).toFixed(1)} ms`;
  return `p50 ${f(50)} · p95 ${f(95)} · p99 ${f(99)} · max ${f(100)}`;
}

export function rate(count: number, ms: number): string {
  return `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`;
}

export function mb(bytes: number): string {
  return `${Math.round(bytes / 1024 / 1024)} MB`;
}
