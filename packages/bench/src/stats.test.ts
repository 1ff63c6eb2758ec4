import { describe, expect, it } from 'vitest'
import { mulberry32 } from '../test/prng.js'
import { median, percentile, summarize } from './stats.js'


const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Shuffles a copy (Fisher-Yates) with the given random source. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = out[i] as T
    out[i] = out[j] as T
    out[j] = tmp
  }
  return out
}

describe('median', () => {
  it('takes the middle sample of an odd count, whatever the order', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([5])).toBe(5)
    expect(median([9, -1, 4, 4, 100])).toBe(4)
  })

  it('takes the mean of the two middle samples of an even count', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([10, 20])).toBe(15)
    expect(median([7, 7])).toBe(7)
  })

  it('does not reorder its input', () => {
    const samples = [3, 1, 2]
    median(samples)
    expect(samples).toEqual([3, 1, 2])
  })

  it('sorts numerically, not as strings', () => {
    expect(median([10, 9, 100])).toBe(10)
  })

  it('rejects empty input and non-finite samples with a RangeError', () => {
    expect(() => median([])).toThrow(RangeError)
    expect(() => median([1, Number.NaN, 3])).toThrow(RangeError)
    expect(() => median([1, Number.POSITIVE_INFINITY])).toThrow(RangeError)
    expect(() => median([Number.NEGATIVE_INFINITY, 1])).toThrow(RangeError)
  })
})

describe('percentile (nearest rank)', () => {
  const hundred = range(1, 100)

  it('p99 of 100 samples is the 99th smallest', () => {
    expect(percentile(shuffled(hundred, mulberry32(1)), 99)).toBe(99)
  })

  it('p0 is the smallest and p100 the largest sample', () => {
    const samples = shuffled(hundred, mulberry32(2))
    expect(percentile(samples, 0)).toBe(1)
    expect(percentile(samples, 100)).toBe(100)
  })

  it('p50 of 1..100 is 50 and p1 is 1', () => {
    expect(percentile(hundred, 50)).toBe(50)
    expect(percentile(hundred, 1)).toBe(1)
    expect(percentile(hundred, 1.5)).toBe(2)
  })

  it('any percentile of a single sample is that sample', () => {
    for (const p of [0, 1, 50, 99, 100]) expect(percentile([42], p)).toBe(42)
  })

  it('follows nearest rank on small sets (never interpolates)', () => {
    // 4 samples: p25 -> rank 1, p26 -> rank 2, p50 -> rank 2, p51 -> rank 3, p75 -> rank 3, p76 -> rank 4.
    const s = [40, 10, 30, 20]
    expect(percentile(s, 25)).toBe(10)
    expect(percentile(s, 26)).toBe(20)
    expect(percentile(s, 50)).toBe(20)
    expect(percentile(s, 51)).toBe(30)
    expect(percentile(s, 75)).toBe(30)
    expect(percentile(s, 76)).toBe(40)
  })

  it('is exact for integer percentiles where p/100*n is not exact in floating point', () => {
    // Nearest rank: the smallest sample with at least p% of the samples at or below it.
    // 7 of 1..100 has exactly 7% at or below it, so p7 is 7 (the source computes
    // Math.ceil((7 / 100) * 100) = Math.ceil(7.000000000000001) = 8 and returns 8).
    expect(percentile(hundred, 7)).toBe(7)
    expect(percentile(hundred, 14)).toBe(14)
    expect(percentile(hundred, 28)).toBe(28)
    expect(percentile(hundred, 55)).toBe(55)
    // p99.9 of 1000 samples is the 999th: (99.9 / 100) * 1000 = 999.0000000000001 in floating point.
    expect(percentile(range(1, 1000), 99.9)).toBe(999)
  })

  it('rejects a percentile outside 0..100 or NaN', () => {
    expect(() => percentile([1, 2], -0.01)).toThrow(RangeError)
    expect(() => percentile([1, 2], 100.01)).toThrow(RangeError)
    expect(() => percentile([1, 2], Number.NaN)).toThrow(RangeError)
  })

  it('rejects empty input and non-finite samples with a RangeError', () => {
    expect(() => percentile([], 50)).toThrow(RangeError)
    expect(() => percentile([Number.NaN], 50)).toThrow(RangeError)
    expect(() => percentile([1, Number.POSITIVE_INFINITY], 50)).toThrow(RangeError)
  })

  it('always returns a member of the samples, and is monotonic in p (seeded random sets)', () => {
    const random = mulberry32(0xbe7c)
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(random() * 60)
      const samples = Array.from({ length: n }, () => Math.round((random() - 0.3) * 1e6) / 100)
      let previous = Number.NEGATIVE_INFINITY
      for (const p of [0, 1, 10, 25, 33.3, 50, 66.7, 75, 90, 99, 99.9, 100]) {
        const value = percentile(samples, p)
        expect(samples).toContain(value)
        expect(value).toBeGreaterThanOrEqual(previous)
        previous = value
      }
      expect(percentile(samples, 0)).toBe(Math.min(...samples))
      expect(percentile(samples, 100)).toBe(Math.max(...samples))
    }
  })

  it('agrees with an exact integer nearest-rank reference at p50 and p99 (seeded random sets)', () => {
    const random = mulberry32(99)
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(random() * 500)
      const samples = Array.from({ length: n }, () => Math.floor(random() * 1000))
      const ordered = [...samples].sort((a, b) => a - b)
      for (const p of [50, 99]) {
        // smallest k (1-based) with k * 100 >= p * n
        const exactK = Math.max(1, Math.floor((p * n + 99) / 100))
        expect(percentile(samples, p)).toBe(ordered[exactK - 1])
      }
    }
  })
})

describe('summarize', () => {
  it('reports n, min, p50, p99, max and mean', () => {
    const s = summarize(shuffled(range(1, 100), mulberry32(3)))
    expect(s).toEqual({ n: 100, min: 1, p50: 50.5, p99: 99, max: 100, mean: 50.5 })
  })

  it('p50 is the median (mean of the middle two for an even count)', () => {
    expect(summarize([1, 2, 3, 10]).p50).toBe(2.5)
    expect(summarize([1, 2, 3]).p50).toBe(2)
  })

  it('summarizes a single sample', () => {
    expect(summarize([7])).toEqual({ n: 1, min: 7, p50: 7, p99: 7, max: 7, mean: 7 })
  })

  it('handles negative and fractional samples', () => {
    const s = summarize([-1.5, 0.5, 2.5])
    expect(s.min).toBe(-1.5)
    expect(s.max).toBe(2.5)
    expect(s.p50).toBe(0.5)
    expect(s.mean).toBeCloseTo(0.5, 12)
  })

  it('keeps min <= p50 <= p99 <= max and min <= mean <= max (seeded random sets)', () => {
    const random = mulberry32(7)
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(random() * 200)
      const samples = Array.from({ length: n }, () => random() * 1000)
      const s = summarize(samples)
      expect(s.n).toBe(n)
      expect(s.min).toBeLessThanOrEqual(s.p50)
      expect(s.p50).toBeLessThanOrEqual(s.p99)
      expect(s.p99).toBeLessThanOrEqual(s.max)
      expect(s.mean).toBeGreaterThanOrEqual(s.min)
      expect(s.mean).toBeLessThanOrEqual(s.max)
      expect(s.p50).toBe(median(samples))
      expect(s.p99).toBe(percentile(samples, 99))
    }
  })

  it('rejects empty input and non-finite samples with a RangeError', () => {
    expect(() => summarize([])).toThrow(RangeError)
    expect(() => summarize([1, Number.NaN])).toThrow(RangeError)
    expect(() => summarize([Number.POSITIVE_INFINITY])).toThrow(RangeError)
  })
})
