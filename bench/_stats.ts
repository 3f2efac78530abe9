/**
 * Small helpers shared by the benchmarks: timing loops and percentiles. Benchmarks print
 * figures and ratios against a baseline measured in the same run; they never assert.
 *
 * @module
 */

/** Percentile `p` (0–100) of `samples`, nearest-rank. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Median of `samples`. */
export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** Runs `fn` `warmup` times unmeasured, then `n` times, returning each duration in ms. */
export async function timeRuns(
  n: number,
  fn: () => Promise<unknown>,
  warmup = 3,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

/** Formats milliseconds with two decimals. */
export function ms(v: number): string {
  return `${v.toFixed(2)} ms`;
}

/** Prints a "name: value" row with aligned names. */
export function row(name: string, value: string): void {
  // deno-lint-ignore no-console
  console.log(`  ${name.padEnd(52)} ${value}`);
}

/** Prints a section heading. */
export function heading(text: string): void {
  // deno-lint-ignore no-console
  console.log(`\n${text}`);
}
