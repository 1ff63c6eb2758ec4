import { describe, expect, it } from 'vitest'
import type { Case, TransportId } from './job.js'
import { FANOUT_SIZE, FANOUT_SUBSCRIBERS, KINDS, LATENCY_SIZES, planCases, schedule, THROUGHPUT_SIZES } from './plan.js'

const KiB = 1024
const MiB = 1024 * KiB

const ofKind = (cases: readonly Case[], kind: Case['kind']): Case[] => cases.filter((c) => c.kind === kind)

describe('planCases', () => {
  it('plans every kind by default: 4 latency sizes, 5 throughput sizes, one fan-out, one idle', () => {
    const cases = planCases()
    expect(ofKind(cases, 'latency').map((c) => c.size)).toEqual([64, 4 * KiB, 64 * KiB, MiB])
    expect(ofKind(cases, 'throughput').map((c) => c.size)).toEqual([64, 4 * KiB, 64 * KiB, MiB, 16 * MiB])
    const fanout = ofKind(cases, 'fanout')
    expect(fanout).toHaveLength(1)
    expect(fanout[0]).toMatchObject({ kind: 'fanout', size: MiB, subscribers: 4 })
    expect(ofKind(cases, 'idle')).toHaveLength(1)
    expect(cases).toHaveLength(4 + 5 + 1 + 1)
    expect(LATENCY_SIZES).toEqual([64, 4 * KiB, 64 * KiB, MiB])
    expect(THROUGHPUT_SIZES).toEqual([64, 4 * KiB, 64 * KiB, MiB, 16 * MiB])
    expect(FANOUT_SIZE).toBe(MiB)
    expect(FANOUT_SUBSCRIBERS).toBe(4)
    expect(KINDS).toEqual(['latency', 'throughput', 'fanout', 'idle'])
  })

  it('orders cases latency, throughput, fan-out, idle, sizes ascending', () => {
    const cases = planCases()
    const order = cases.map((c) => KINDS.indexOf(c.kind))
    expect(order).toEqual([...order].sort((a, b) => a - b))
    for (const kind of KINDS) {
      const sizes = ofKind(cases, kind).map((c) => c.size)
      expect(sizes).toEqual([...sizes].sort((a, b) => a - b))
    }
  })

  it('uses one subscriber everywhere but fan-out, and positive counts and warm-ups for measured cases', () => {
    for (const c of planCases()) {
      if (c.kind !== 'fanout') expect(c.subscribers).toBe(1)
      expect(Number.isInteger(c.count)).toBe(true)
      expect(Number.isInteger(c.warmup)).toBe(true)
      expect(c.warmup).toBeGreaterThanOrEqual(1)
      if (c.kind !== 'idle') expect(c.count).toBeGreaterThan(0)
    }
    const idle = ofKind(planCases(), 'idle')[0]
    expect(idle).toMatchObject({ kind: 'idle', count: 0, subscribers: 1 })
  })

  it('quick mode plans the same cases with smaller counts, each above its minimum', () => {
    const full = planCases()
    const quick = planCases({ quick: true })
    expect(quick.map((c) => [c.kind, c.size, c.subscribers])).toEqual(full.map((c) => [c.kind, c.size, c.subscribers]))
    const minimum: Record<Case['kind'], number> = { latency: 20, throughput: 6, fanout: 10, idle: 0 }
    quick.forEach((q, i) => {
      const f = full[i] as Case
      expect(q.count).toBeLessThanOrEqual(f.count)
      expect(q.count).toBeGreaterThanOrEqual(minimum[q.kind])
      expect(q.warmup).toBeGreaterThanOrEqual(1)
      if (q.kind !== 'idle') {
        expect(q.count).toBeGreaterThan(0)
        // smaller unless the full count was already at the minimum
        if (f.count > minimum[q.kind]) expect(q.count).toBeLessThan(f.count)
      }
    })
  })

  it('quick mode keeps the smallest count at its minimum (16 MiB throughput)', () => {
    const big = planCases({ quick: true, kinds: ['throughput'], sizes: [16 * MiB] })
    expect(big).toHaveLength(1)
    expect(big[0]?.count).toBeGreaterThanOrEqual(6)
    expect(big[0]?.warmup).toBeGreaterThanOrEqual(1)
  })

  it('filters by kind', () => {
    expect(planCases({ kinds: ['latency'] }).map((c) => c.kind)).toEqual(['latency', 'latency', 'latency', 'latency'])
    expect(planCases({ kinds: ['idle'] }).map((c) => c.kind)).toEqual(['idle'])
    expect(planCases({ kinds: ['fanout', 'throughput'] }).map((c) => c.kind)).toEqual(['throughput', 'throughput', 'throughput', 'throughput', 'throughput', 'fanout'])
    expect(planCases({ kinds: [] })).toEqual([])
  })

  it('filters by size, where a kind has the size', () => {
    const small = planCases({ sizes: [64] })
    expect(small.filter((c) => c.kind !== 'idle').map((c) => [c.kind, c.size])).toEqual([
      ['latency', 64],
      ['throughput', 64],
    ])
    expect(ofKind(small, 'fanout')).toEqual([])

    const mib = planCases({ sizes: [MiB] })
    expect(mib.filter((c) => c.kind !== 'idle').map((c) => [c.kind, c.size])).toEqual([
      ['latency', MiB],
      ['throughput', MiB],
      ['fanout', MiB],
    ])

    // 16 MiB is a throughput size only
    expect(planCases({ sizes: [16 * MiB], kinds: ['latency', 'throughput'] }).map((c) => [c.kind, c.size])).toEqual([['throughput', 16 * MiB]])
  })

  it('keeps the same counts for a standard size whether filtered or not', () => {
    const full = planCases()
    for (const c of planCases({ sizes: [4 * KiB] })) {
      if (c.kind === 'idle') continue
      expect(c).toEqual(full.find((f) => f.kind === c.kind && f.size === c.size))
    }
  })

  it('plans a non-standard size for latency and throughput with a bounded count', () => {
    for (const size of [1000, 8 * MiB, 100, 3 * MiB + 5]) {
      const cases = planCases({ sizes: [size], kinds: ['latency', 'throughput', 'fanout'] })
      expect(cases.map((c) => [c.kind, c.size])).toEqual([
        ['latency', size],
        ['throughput', size],
      ])
      for (const c of cases) {
        expect(Number.isInteger(c.count)).toBe(true)
        expect(c.count).toBeGreaterThanOrEqual(10)
        expect(c.count).toBeLessThanOrEqual(40_000)
        expect(c.warmup).toBeGreaterThanOrEqual(1)
      }
    }
  })
})

describe('schedule', () => {
  const transports: TransportId[] = ['ipc-pubsub:shm', 'node:net', 'zeromq']

  it('interleaves: for each case, every transport in order for repeat 1 before repeat 2 starts', () => {
    const cases = planCases({ quick: true, kinds: ['latency', 'throughput', 'fanout'] })
    const steps = schedule(cases, transports, 3)
    expect(steps).toHaveLength(cases.length * 3 * transports.length)
    let i = 0
    for (const c of cases) {
      for (let repeat = 1; repeat <= 3; repeat++) {
        for (const transport of transports) {
          const step = steps[i++]
          expect(step).toEqual({ case: c, transport, repeat })
        }
      }
    }
  })

  it('spreads the repeats of one transport over the whole span of a case', () => {
    const cases = planCases({ kinds: ['latency'], sizes: [64] })
    const steps = schedule(cases, transports, 4)
    expect(steps.map((s) => `${s.transport}#${s.repeat}`)).toEqual([
      'ipc-pubsub:shm#1',
      'node:net#1',
      'zeromq#1',
      'ipc-pubsub:shm#2',
      'node:net#2',
      'zeromq#2',
      'ipc-pubsub:shm#3',
      'node:net#3',
      'zeromq#3',
      'ipc-pubsub:shm#4',
      'node:net#4',
      'zeromq#4',
    ])
  })

  it('leaves idle cases out', () => {
    const cases = planCases()
    const steps = schedule(cases, transports, 2)
    expect(steps.some((s) => s.case.kind === 'idle')).toBe(false)
    expect(steps).toHaveLength((cases.length - 1) * 2 * transports.length)
    expect(schedule(planCases({ kinds: ['idle'] }), transports, 1)).toEqual([])
  })

  it('is empty without transports or cases', () => {
    expect(schedule(planCases(), [], 3)).toEqual([])
    expect(schedule([], transports, 3)).toEqual([])
  })

  it('rejects repeats that are not positive integers', () => {
    for (const repeats of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => schedule(planCases(), transports, repeats)).toThrow(RangeError)
    }
  })
})
