import { describe, expect, it } from 'vitest'
import type { Case, MicroResults, TransportId } from './job.js'
import { aggregate, type BenchReport, formatNumber, formatRatio, formatSize, REPORT_SCHEMA, type Row, renderMarkdown, TRANSPORT_NOTES } from './report.js'
import type { RunRecord } from './runner.js'
import type { Summary } from './stats.js'

const KiB = 1024
const MiB = 1024 * KiB
const SHM: TransportId = 'ipc-pubsub:shm'
const NET: TransportId = 'node:net'
const ZMQ: TransportId = 'zeromq'

const lat = (p50: number, p99: number, max: number): Summary => ({ n: 100, min: p50 / 2, p50, p99, max, mean: p50 })
const tput = (...mbPerSec: number[]): { msgsPerSec: number; mbPerSec: number }[] => mbPerSec.map((mb) => ({ msgsPerSec: mb * 10, mbPerSec: mb }))

/** A hand-built set of runs covering every kind, an errored repeat and a size without a baseline. */
function sampleRuns(): RunRecord[] {
  return [
    // latency 64 B: node:net p50 10/20/30 -> 20, p99 50/40/60 -> 50, max 100/300/200 -> 300
    { transport: NET, kind: 'latency', size: 64, repeat: 1, latency: lat(10, 50, 100), peakRssKiB: { publisher: 1000, subscriber: 2000 } },
    { transport: SHM, kind: 'latency', size: 64, repeat: 1, latency: lat(4, 8, 9) },
    { transport: NET, kind: 'latency', size: 64, repeat: 2, latency: lat(20, 40, 300), peakRssKiB: { publisher: 3000, subscriber: 500 } },
    { transport: SHM, kind: 'latency', size: 64, repeat: 2, latency: lat(6, 12, 20) },
    { transport: NET, kind: 'latency', size: 64, repeat: 3, latency: lat(30, 60, 200) },
    // an errored repeat whose figures must not count
    { transport: SHM, kind: 'latency', size: 64, repeat: 3, latency: lat(1000, 1000, 99_999), peakRssKiB: { publisher: 999_999, subscriber: 999_999 }, error: 'boom: worker died\n    at somewhere (stack)' },
    // throughput 4 KiB: node:net 100/200/300 -> 200, shm 400/500/600 -> 500
    { transport: NET, kind: 'throughput', size: 4 * KiB, repeat: 1, throughput: tput(100) },
    { transport: SHM, kind: 'throughput', size: 4 * KiB, repeat: 1, throughput: tput(600) },
    { transport: NET, kind: 'throughput', size: 4 * KiB, repeat: 2, throughput: tput(300) },
    { transport: SHM, kind: 'throughput', size: 4 * KiB, repeat: 2, throughput: tput(400), peakRssKiB: { publisher: 10_240, subscriber: 20_480 } },
    { transport: NET, kind: 'throughput', size: 4 * KiB, repeat: 3, throughput: tput(200) },
    { transport: SHM, kind: 'throughput', size: 4 * KiB, repeat: 3, throughput: tput(500) },
    // throughput 64 B measured for zeromq only: no baseline, no ratio
    { transport: ZMQ, kind: 'throughput', size: 64, repeat: 1, throughput: tput(5) },
    // fan-out 1 MiB, 4 subscribers: medians 250 and 200 -> 225; slowest 100 and 50 -> 75
    { transport: NET, kind: 'fanout', size: MiB, repeat: 1, throughput: tput(400, 100, 300, 200) },
    { transport: NET, kind: 'fanout', size: MiB, repeat: 2, throughput: tput(50, 150, 250, 350) },
    { transport: SHM, kind: 'fanout', size: MiB, repeat: 1, throughput: tput(900, 1000, 1100, 800) },
    { transport: SHM, kind: 'fanout', size: MiB, repeat: 2, throughput: tput(900, 1000, 1100, 800) },
    // idle
    { transport: NET, kind: 'idle', size: 64, repeat: 1, idle: { publisherCpuPercent: 1, subscriberCpuPercent: 2 } },
    { transport: SHM, kind: 'idle', size: 64, repeat: 1, idle: { publisherCpuPercent: 0.5, subscriberCpuPercent: 0.1 } },
  ]
}

function row(rows: readonly Row[], transport: TransportId, kind: Row['kind'], size: number): Row {
  const found = rows.find((r) => r.transport === transport && r.kind === kind && r.size === size)
  if (!found) throw new Error(`no row ${transport} ${kind} ${size}`)
  return found
}

const MICRO: MicroResults = {
  koffiCallNs: 55.5,
  segmentCycleUs: [
    { size: 4 * KiB, us: 12.25, majorGcsPerOp: 0 },
    { size: MiB, us: 40, majorGcsPerOp: 0 },
    { size: 16 * MiB, us: 500, majorGcsPerOp: 0.125 },
  ],
  firstTouchWriteUsPerMiB: 61,
  secondTouchWriteUsPerMiB: 9.5,
  firstTouchReadUsPerMiB: 33,
  fdRoundTripUs: 21,
  frameRoundTripUs: 14,
  netRoundTripUs: 17,
}

const CASES: Case[] = [
  { kind: 'latency', size: 64, count: 400, warmup: 40, subscribers: 1 },
  { kind: 'throughput', size: 64, count: 4000, warmup: 400, subscribers: 1 },
  { kind: 'throughput', size: 4 * KiB, count: 4000, warmup: 400, subscribers: 1 },
  { kind: 'fanout', size: MiB, count: 40, warmup: 4, subscribers: 4 },
  { kind: 'idle', size: 64, count: 0, warmup: 10, subscribers: 1 },
]

function sampleReport(overrides: Partial<BenchReport> = {}): BenchReport {
  const runs = sampleRuns()
  return {
    schema: REPORT_SCHEMA,
    date: '2024-05-06T07:08:09.000Z',
    mode: 'full',
    durationSeconds: 123.4,
    machine: { cpu: 'Test CPU @ 3.0GHz', cores: 8, kernel: '6.1.0-test', node: 'v20.19.0', memoryGiB: 15.5, arch: 'x64', clockTicksPerSecond: 100 },
    placement: { publisher: 0, subscriber: 1, description: 'split: publisher on CPU 0, every subscriber on CPU 1 (pinned with sched_setaffinity)' },
    repeats: 3,
    idleSeconds: 10,
    baseline: NET,
    transports: [SHM, NET, ZMQ],
    cases: CASES,
    results: aggregate(runs, NET),
    micro: MICRO,
    runs,
    ...overrides,
  }
}

describe('aggregate', () => {
  const rows = aggregate(sampleRuns(), NET)

  it('makes one row per transport x kind x size', () => {
    expect(rows).toHaveLength(2 + 2 + 1 + 2 + 2)
    const keys = rows.map((r) => `${r.transport} ${r.kind} ${r.size}`)
    expect(new Set(keys).size).toBe(keys.length)
  })

  it('takes medians over repeats for latency, and the largest max', () => {
    const net = row(rows, NET, 'latency', 64)
    expect(net.repeats).toBe(3)
    expect(net.p50Us).toBe(20)
    expect(net.p99Us).toBe(50)
    expect(net.maxUs).toBe(300)
    expect(net.errors).toEqual([])
  })

  it('leaves errored repeats out of the figures but lists their errors', () => {
    const shm = row(rows, SHM, 'latency', 64)
    expect(shm.repeats).toBe(2)
    expect(shm.p50Us).toBe(5) // median of 4 and 6, not of 4, 6 and 1000
    expect(shm.p99Us).toBe(10)
    expect(shm.maxUs).toBe(20)
    expect(shm.peakRssKiB).toBeUndefined()
    expect(shm.errors).toEqual(['boom: worker died\n    at somewhere (stack)'])
  })

  it('gives a row whose every repeat failed no figures and no ratio', () => {
    const failed = aggregate(
      [
        { transport: NET, kind: 'latency', size: 64, repeat: 1, latency: lat(10, 20, 30) },
        { transport: ZMQ, kind: 'latency', size: 64, repeat: 1, error: 'a' },
        { transport: ZMQ, kind: 'latency', size: 64, repeat: 2, error: 'b' },
      ],
      NET,
    )
    const zmq = row(failed, ZMQ, 'latency', 64)
    expect(zmq).toEqual({ transport: ZMQ, kind: 'latency', size: 64, repeats: 0, errors: ['a', 'b'] })
  })

  it('divides p50 by the baseline p50 for the latency ratio', () => {
    expect(row(rows, SHM, 'latency', 64).latencyRatio).toBe(5 / 20)
    expect(row(rows, NET, 'latency', 64).latencyRatio).toBe(1)
  })

  it('takes medians over repeats for throughput and divides MB/s by the baseline MB/s', () => {
    const net = row(rows, NET, 'throughput', 4 * KiB)
    const shm = row(rows, SHM, 'throughput', 4 * KiB)
    expect(net.mbPerSec).toBe(200)
    expect(net.msgsPerSec).toBe(2000)
    expect(shm.mbPerSec).toBe(500)
    expect(shm.throughputRatio).toBe(2.5)
    expect(net.throughputRatio).toBe(1)
    expect(shm.latencyRatio).toBeUndefined()
    expect(shm.slowestMbPerSec).toBeUndefined()
  })

  it('gives no ratio where the baseline did not measure the case', () => {
    const zmq = row(rows, ZMQ, 'throughput', 64)
    expect(zmq.mbPerSec).toBe(5)
    expect(zmq.throughputRatio).toBeUndefined()
    expect(zmq.latencyRatio).toBeUndefined()
  })

  it('gives no ratio when no baseline transport ran at all', () => {
    const noBase = aggregate(sampleRuns().filter((r) => r.transport !== NET), NET)
    for (const r of noBase) {
      expect(r.latencyRatio).toBeUndefined()
      expect(r.throughputRatio).toBeUndefined()
    }
  })

  it('fan-out: median subscriber per repeat, median over repeats, and the slowest subscriber', () => {
    const net = row(rows, NET, 'fanout', MiB)
    expect(net.mbPerSec).toBe(225)
    expect(net.slowestMbPerSec).toBe(75)
    const shm = row(rows, SHM, 'fanout', MiB)
    expect(shm.mbPerSec).toBe(950)
    expect(shm.slowestMbPerSec).toBe(800)
    expect(shm.throughputRatio).toBe(950 / 225)
  })

  it('idle: median CPU percentages, no ratio', () => {
    const net = row(rows, NET, 'idle', 64)
    expect(net.publisherCpuPercent).toBe(1)
    expect(net.subscriberCpuPercent).toBe(2)
    expect(net.latencyRatio).toBeUndefined()
    expect(net.throughputRatio).toBeUndefined()
    expect(row(rows, SHM, 'idle', 64).publisherCpuPercent).toBe(0.5)
  })

  it('peak RSS is the largest over successful repeats, publisher and subscriber separately', () => {
    expect(row(rows, NET, 'latency', 64).peakRssKiB).toEqual({ publisher: 3000, subscriber: 2000 })
    expect(row(rows, SHM, 'throughput', 4 * KiB).peakRssKiB).toEqual({ publisher: 10_240, subscriber: 20_480 })
    expect(row(rows, NET, 'throughput', 4 * KiB).peakRssKiB).toBeUndefined()
  })

  it('does not depend on the order of the runs', () => {
    const reversed = aggregate([...sampleRuns()].reverse(), NET)
    const key = (r: Row): string => `${r.transport} ${r.kind} ${r.size}`
    const sort = (rs: Row[]): Row[] => [...rs].sort((a, b) => key(a).localeCompare(key(b)))
    expect(sort(reversed)).toEqual(sort(rows))
  })

  it('is empty for no runs', () => {
    expect(aggregate([], NET)).toEqual([])
  })
})

describe('formatSize', () => {
  it('uses the largest unit that divides the size', () => {
    expect(formatSize(64)).toBe('64 B')
    expect(formatSize(0)).toBe('0 B')
    expect(formatSize(1023)).toBe('1023 B')
    expect(formatSize(1024)).toBe('1 KiB')
    expect(formatSize(4096)).toBe('4 KiB')
    expect(formatSize(64 * KiB)).toBe('64 KiB')
    expect(formatSize(1536)).toBe('1536 B')
    expect(formatSize(MiB)).toBe('1 MiB')
    expect(formatSize(16 * MiB)).toBe('16 MiB')
    expect(formatSize(3 * MiB + KiB)).toBe('3073 KiB')
  })
})

describe('formatNumber', () => {
  it('keeps three significant figures with thousands separators', () => {
    expect(formatNumber(0.1234)).toBe('0.123')
    expect(formatNumber(1.234)).toBe('1.23')
    expect(formatNumber(12.34)).toBe('12.3')
    expect(formatNumber(123.4)).toBe('123')
    expect(formatNumber(12_345)).toBe('12,345')
    expect(formatNumber(1_234_567.8)).toBe('1,234,568')
    expect(formatNumber(-12.34)).toBe('-12.3')
    expect(formatNumber(0)).toBe('0')
    expect(formatNumber(0.0004)).toBe('0.000')
  })

  it('decides the decimals on the rounded value, so the edges keep three figures', () => {
    expect(formatNumber(99.99)).toBe('100')
    expect(formatNumber(9.999)).toBe('10.0')
    expect(formatNumber(0.9999)).toBe('1.00')
  })

  it('shows a dash for missing or non-finite values', () => {
    expect(formatNumber(undefined)).toBe('–')
    expect(formatNumber(Number.NaN)).toBe('–')
    expect(formatNumber(Number.POSITIVE_INFINITY)).toBe('–')
    expect(formatNumber(Number.NEGATIVE_INFINITY)).toBe('–')
  })
})

describe('formatRatio', () => {
  it('shows two decimals below 10, none from 10 up, with a times sign', () => {
    expect(formatRatio(1)).toBe('1.00×')
    expect(formatRatio(0.25)).toBe('0.25×')
    expect(formatRatio(2.5)).toBe('2.50×')
    expect(formatRatio(9.994)).toBe('9.99×')
    expect(formatRatio(12.4)).toBe('12×')
    expect(formatRatio(150)).toBe('150×')
  })

  it('shows a dash for missing or non-finite ratios', () => {
    expect(formatRatio(undefined)).toBe('–')
    expect(formatRatio(Number.NaN)).toBe('–')
    expect(formatRatio(Number.POSITIVE_INFINITY)).toBe('–')
  })
})

describe('renderMarkdown', () => {
  const HEADER = '| transport | size | p50 µs | p99 µs | max µs | msgs/s | MB/s | p50 vs node:net (lower is better) | MB/s vs node:net (higher is better) |'

  /** The lines of the table that follows `header`, without the header and the alignment row. */
  function tableRows(markdown: string, header: string): string[] {
    const lines = markdown.split('\n')
    const start = lines.indexOf(header)
    expect(start).toBeGreaterThanOrEqual(0)
    const out: string[] = []
    for (let i = start + 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) out.push(lines[i] as string)
    return out
  }

  const cells = (line: string): string[] =>
    line
      .slice(1, -1)
      .split('|')
      .map((c) => c.trim())

  it('starts with a title and the run facts, and ends with one newline', () => {
    const md = renderMarkdown(sampleReport())
    expect(md.startsWith('# ipc-pubsub benchmarks (full run)\n')).toBe(true)
    expect(md).toContain('- Date: 2024-05-06; took 123 s')
    expect(md).toContain('Test CPU @ 3.0GHz, 8 cores, 15.5 GiB, Linux 6.1.0-test, x64, Node v20.19.0')
    expect(md).toContain('- Placement: split: publisher on CPU 0, every subscriber on CPU 1')
    expect(md).toContain('medians of 3 interleaved repeats')
    expect(md).toContain('Peak RSS is the largest over the repeats; the idle case runs once.')
    expect(md.endsWith('\n')).toBe(true)
    expect(md.endsWith('\n\n')).toBe(false)
  })

  it('describes how each transport is driven, ipc-pubsub transports sharing one note', () => {
    const md = renderMarkdown(sampleReport())
    const line = md.split('\n').find((l) => l.startsWith('- Transports: '))
    expect(line).toBeDefined()
    expect(line).toContain(`\`ipc-pubsub:shm\` (${TRANSPORT_NOTES['ipc-pubsub']})`)
    expect(line).toContain(`\`node:net\` (${TRANSPORT_NOTES['node:net']})`)
    expect(line).toContain(`\`zeromq\` (${TRANSPORT_NOTES.zeromq})`)
  })

  it('says "repeat" for a single repeat', () => {
    expect(renderMarkdown(sampleReport({ repeats: 1 }))).toContain('medians of 1 interleaved repeat (')
  })

  it('has the latency/throughput table with one row per transport x size, sizes ascending, transports in report order', () => {
    const md = renderMarkdown(sampleReport())
    expect(md).toContain('## Latency and throughput')
    expect(md).toContain(HEADER)
    const rows = tableRows(md, HEADER).map(cells)
    expect(rows.map((r) => [r[0], r[1]])).toEqual([
      ['`ipc-pubsub:shm`', '64 B'],
      ['`node:net`', '64 B'],
      ['`zeromq`', '64 B'],
      ['`ipc-pubsub:shm`', '4 KiB'],
      ['`node:net`', '4 KiB'],
    ])
    // shm 64 B: latency only
    expect(rows[0]).toEqual(['`ipc-pubsub:shm`', '64 B', '5.00', '10.0', '20.0', '–', '–', '0.25×', '–'])
    // node:net 64 B: baseline shows 1.00× in both ratio columns
    expect(rows[1]).toEqual(['`node:net`', '64 B', '20.0', '50.0', '300', '–', '–', '1.00×', '1.00×'])
    // zeromq 64 B: throughput only, no baseline to compare with
    expect(rows[2]).toEqual(['`zeromq`', '64 B', '–', '–', '–', '50.0', '5.00', '–', '–'])
    expect(rows[3]).toEqual(['`ipc-pubsub:shm`', '4 KiB', '–', '–', '–', '5,000', '500', '–', '2.50×'])
    expect(rows[4]).toEqual(['`node:net`', '4 KiB', '–', '–', '–', '2,000', '200', '1.00×', '1.00×'])
  })

  it('links the chart when given one, not otherwise', () => {
    expect(renderMarkdown(sampleReport(), 'full.svg')).toContain('![Throughput by message size, log scale](full.svg)')
    expect(renderMarkdown(sampleReport())).not.toContain('![')
  })

  it('has a fan-out table with the subscriber count, the slowest subscriber and the delivered total', () => {
    const md = renderMarkdown(sampleReport())
    expect(md).toContain('## Fan-out: 1 publisher, 4 subscribers, 1 MiB')
    const header = '| transport | size | MB/s per subscriber | slowest subscriber MB/s | delivered MB/s (all) | vs node:net |'
    const rows = tableRows(md, header).map(cells)
    expect(rows).toEqual([
      ['`ipc-pubsub:shm`', '1 MiB', '950', '800', '3,800', formatRatio(950 / 225)],
      ['`node:net`', '1 MiB', '225', '75.0', '900', '1.00×'],
    ])
  })

  it('has the idle table', () => {
    const md = renderMarkdown(sampleReport())
    expect(md).toContain('## Idle cost: connected, nothing sent, 10 s')
    // 100 ticks/s over 10 s: one tick is 0.1 %, so one decimal.
    expect(md).toContain('one tick is 0.100 % of this window')
    expect(tableRows(md, '| transport | publisher CPU % | subscriber CPU % |').map(cells)).toEqual([
      ['`ipc-pubsub:shm`', '0.5', '0.1'],
      ['`node:net`', '1.0', '2.0'],
    ])
  })

  it('has the memory table, largest over every case of the transport', () => {
    const md = renderMarkdown(sampleReport())
    expect(md).toContain('## Memory: peak RSS (MiB)')
    const rows = tableRows(md, '| transport | publisher | subscriber | publisher / subscriber at the largest throughput size |').map(cells)
    expect(rows).toEqual([
      ['`ipc-pubsub:shm`', '10.0', '20.0', '10.0 / 20.0 (4 KiB)'],
      ['`node:net`', '2.93', '1.95', '–'],
    ])
  })

  it('has a Failures section listing the first line of each error, only when a row has errors', () => {
    const md = renderMarkdown(sampleReport())
    expect(md).toContain('## Failures')
    expect(md).toContain('- `ipc-pubsub:shm` latency 64 B: boom: worker died')
    expect(md).not.toContain('at somewhere (stack)')
    const clean = sampleReport()
    clean.results = aggregate(
      clean.runs.filter((r) => r.error === undefined),
      NET,
    )
    expect(renderMarkdown(clean)).not.toContain('## Failures')
  })

  it('has the Micro-costs section only when micro is not null', () => {
    const md = renderMarkdown(sampleReport())
    expect(md).toContain('## Micro-costs')
    expect(md).toContain('| koffi call (getpid) | – | 55.5 ns |')
    expect(md).toContain('| segment create + map + close (mean) | 4 KiB | 12.3 µs |')
    expect(md).toContain('| segment create + map + close (mean) | 1 MiB | 40.0 µs |')
    expect(md).toContain('| segment create + map + close (mean, 0.125 major GCs per op) | 16 MiB | 500 µs |')
    expect(md).toContain('| node:net round trip, 64 B | 64 B | 17.0 µs |')
    expect(renderMarkdown(sampleReport({ micro: null }))).not.toContain('## Micro-costs')
  })

  it('leaves out the sections with nothing to show', () => {
    const md = renderMarkdown(sampleReport({ results: [], micro: null }))
    expect(md).not.toContain('## Latency and throughput')
    expect(md).not.toContain('## Fan-out')
    expect(md).not.toContain('## Idle cost')
    expect(md).not.toContain('## Memory')
    expect(md).not.toContain('## Failures')
    expect(md.startsWith('# ipc-pubsub benchmarks (full run)')).toBe(true)
  })

  it('renders a quick report', () => {
    expect(renderMarkdown(sampleReport({ mode: 'quick' })).startsWith('# ipc-pubsub benchmarks (quick run)\n')).toBe(true)
  })

  it('is deterministic', () => {
    expect(renderMarkdown(sampleReport(), 'x.svg')).toBe(renderMarkdown(sampleReport(), 'x.svg'))
  })
})

describe('BenchReport as JSON', () => {
  it('keeps its shape through JSON.stringify and JSON.parse', () => {
    const report = sampleReport()
    const back = JSON.parse(JSON.stringify(report)) as BenchReport
    expect(back.schema).toBe(1)
    expect(REPORT_SCHEMA).toBe(1)
    expect(Object.keys(back).sort()).toEqual(
      ['baseline', 'cases', 'date', 'durationSeconds', 'idleSeconds', 'machine', 'micro', 'mode', 'placement', 'repeats', 'results', 'runs', 'schema', 'transports'].sort(),
    )
    expect(Object.keys(back.machine).sort()).toEqual(['arch', 'clockTicksPerSecond', 'cores', 'cpu', 'kernel', 'memoryGiB', 'node'])
    expect(Object.keys(back.placement).sort()).toEqual(['description', 'publisher', 'subscriber'])
    for (const r of back.results) {
      for (const key of ['transport', 'kind', 'size', 'repeats', 'errors']) expect(r).toHaveProperty(key)
    }
    expect(back).toEqual(report)
    // and it renders the same
    expect(renderMarkdown(back, 'full.svg')).toBe(renderMarkdown(report, 'full.svg'))
  })

  it('keeps a null micro and null placement CPUs as null', () => {
    const report = sampleReport({ micro: null, placement: { publisher: null, subscriber: null, description: 'none' } })
    const back = JSON.parse(JSON.stringify(report)) as BenchReport
    expect(back.micro).toBeNull()
    expect(back.placement.publisher).toBeNull()
    expect(back.placement.subscriber).toBeNull()
  })
})
