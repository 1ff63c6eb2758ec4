// What a bench run measures, how much, and in which order.
import type { Case, CaseKind, TransportId } from './job.js'

const KiB = 1024
const MiB = 1024 * KiB

export const LATENCY_SIZES = [64, 4 * KiB, 64 * KiB, MiB]
export const THROUGHPUT_SIZES = [64, 4 * KiB, 64 * KiB, MiB, 16 * MiB]
export const FANOUT_SIZE = MiB
export const FANOUT_SUBSCRIBERS = 4
export const KINDS: readonly CaseKind[] = ['latency', 'throughput', 'fanout', 'idle']

// Full-run counts: each case ends by itself after this many messages, about a second for the
// slowest transport. Quick mode divides them by QUICK_DIVISOR (and keeps at least a few).
const LATENCY_COUNTS: Record<number, number> = { 64: 4000, [4 * KiB]: 4000, [64 * KiB]: 2000, [MiB]: 400 }
const THROUGHPUT_COUNTS: Record<number, number> = { 64: 40_000, [4 * KiB]: 40_000, [64 * KiB]: 10_000, [MiB]: 1000, [16 * MiB]: 60 }
const FANOUT_COUNT = 400
const QUICK_DIVISOR = 10

export interface PlanOptions {
  quick?: boolean
  /** Only these kinds (default: all). */
  kinds?: readonly CaseKind[]
  /** Only these sizes, where a kind has them (default: all). */
  sizes?: readonly number[]
}

/** Counts for a size that is not one of the standard ones: about the same bytes as its neighbours. */
function countFor(table: Record<number, number>, size: number): number {
  const known = table[size]
  if (known !== undefined) return known
  const bytes = Math.max(...Object.entries(table).map(([s, n]) => Number(s) * n))
  return Math.max(10, Math.min(40_000, Math.round(bytes / size / 4)))
}

/** The cases of a run, in the order they are measured. */
export function planCases(options: PlanOptions = {}): Case[] {
  const quick = options.quick === true
  const kinds = options.kinds ?? KINDS
  const scale = (n: number, min: number): number => (quick ? Math.max(min, Math.round(n / QUICK_DIVISOR)) : n)
  const pick = (sizes: number[]): number[] => (options.sizes ? options.sizes.filter((s) => sizes.includes(s) || !isStandard(s)) : sizes)
  const cases: Case[] = []
  if (kinds.includes('latency')) {
    for (const size of pick(LATENCY_SIZES)) {
      const count = scale(countFor(LATENCY_COUNTS, size), 20)
      cases.push({ kind: 'latency', size, count, warmup: Math.max(5, Math.round(count / 10)), subscribers: 1 })
    }
  }
  if (kinds.includes('throughput')) {
    for (const size of pick(THROUGHPUT_SIZES)) {
      const count = scale(countFor(THROUGHPUT_COUNTS, size), 6)
      cases.push({ kind: 'throughput', size, count, warmup: Math.max(2, Math.round(count / 10)), subscribers: 1 })
    }
  }
  if (kinds.includes('fanout') && (!options.sizes || options.sizes.includes(FANOUT_SIZE))) {
    const count = scale(FANOUT_COUNT, 10)
    cases.push({ kind: 'fanout', size: FANOUT_SIZE, count, warmup: Math.max(2, Math.round(count / 10)), subscribers: FANOUT_SUBSCRIBERS })
  }
  if (kinds.includes('idle')) cases.push({ kind: 'idle', size: 64, count: 0, warmup: 10, subscribers: 1 })
  return cases
}

function isStandard(size: number): boolean {
  return LATENCY_SIZES.includes(size) || THROUGHPUT_SIZES.includes(size)
}

/** One run of the schedule. */
export interface Step {
  case: Case
  transport: TransportId
  /** 1-based. */
  repeat: number
}

/**
 * Interleaves transports and repeats: for each case, A B C A B C ... so slow drift of the
 * machine (thermal, a noisy neighbour) hits every transport alike, and the repeats of one
 * transport are spread over the case's whole span. Idle cases are not in it: they run once,
 * every transport at the same time (idle processes do not disturb each other).
 */
export function schedule(cases: readonly Case[], transports: readonly TransportId[], repeats: number): Step[] {
  if (!Number.isInteger(repeats) || repeats < 1) throw new RangeError(`repeats must be a positive integer, got ${repeats}`)
  const steps: Step[] = []
  for (const c of cases) {
    if (c.kind === 'idle') continue
    for (let repeat = 1; repeat <= repeats; repeat++) {
      for (const transport of transports) steps.push({ case: c, transport, repeat })
    }
  }
  return steps
}
