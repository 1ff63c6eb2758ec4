// Order statistics over samples. Percentiles use the nearest-rank rule (the smallest sample
// with at least p% of the samples at or below it), so a p99 is always a value that was
// actually measured, never an interpolation between two.

/** Summary of one set of samples. */
export interface Summary {
  n: number
  min: number
  p50: number
  p99: number
  max: number
  mean: number
}

function sorted(samples: readonly number[]): number[] {
  if (samples.length === 0) throw new RangeError('no samples')
  for (const x of samples) if (!Number.isFinite(x)) throw new RangeError(`sample ${x} is not a finite number`)
  return [...samples].sort((a, b) => a - b)
}

function rank(ordered: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside 0..100`)
  // p * n / 100, not p / 100 * n: for whole p and n that is exact (7 / 100 * 100 is 7.000000000000001,
  // whose ceiling would skip a rank); the small tolerance covers fractional p such as 99.9.
  const index = Math.max(0, Math.ceil((p * ordered.length) / 100 - 1e-9) - 1)
  return ordered[index] as number
}

/** The p-th percentile (0..100) by nearest rank. */
export function percentile(samples: readonly number[], p: number): number {
  return rank(sorted(samples), p)
}

/**
 * The median. With an even count it is the mean of the two middle samples, the usual
 * definition for the median of repeated runs (three or four of them, typically).
 */
export function median(samples: readonly number[]): number {
  const ordered = sorted(samples)
  const mid = ordered.length >> 1
  if (ordered.length % 2 === 1) return ordered[mid] as number
  return ((ordered[mid - 1] as number) + (ordered[mid] as number)) / 2
}

/** n, min, p50 (median), p99, max and mean of the samples. */
export function summarize(samples: readonly number[]): Summary {
  const ordered = sorted(samples)
  let sum = 0
  for (const x of ordered) sum += x
  return {
    n: ordered.length,
    min: ordered[0] as number,
    p50: median(ordered),
    p99: rank(ordered, 99),
    max: ordered[ordered.length - 1] as number,
    mean: sum / ordered.length,
  }
}
