// From raw runs to the report: medians over repeats, ratios to the baseline measured in the
// same run, and the markdown that `pnpm bench` prints and RESULTS.md keeps.
import { DEFAULT_QUEUE_SIZE } from '@ipc-pubsub/pubsub'
import type { Case, CaseKind, MicroResults, Placement, TransportId } from './job.js'
import type { MachineInfo } from './machine.js'
import type { RunRecord } from './runner.js'
import { median } from './stats.js'

export const REPORT_SCHEMA = 1

/** One transport x kind x size, aggregated over its repeats. */
export interface Row {
  transport: TransportId
  kind: CaseKind
  size: number
  /** Repeats that succeeded (the figures are medians over them). */
  repeats: number
  p50Us?: number
  p99Us?: number
  maxUs?: number
  /** Per subscriber: the median subscriber, then the median over repeats. */
  msgsPerSec?: number
  mbPerSec?: number
  /** Fan-out: the slowest subscriber's MB/s (median over repeats). */
  slowestMbPerSec?: number
  publisherCpuPercent?: number
  subscriberCpuPercent?: number
  /** Largest over the repeats, KiB. */
  peakRssKiB?: { publisher: number; subscriber: number }
  /** p50 / the baseline's p50 (lower is better). */
  latencyRatio?: number
  /** MB/s / the baseline's MB/s (higher is better). */
  throughputRatio?: number
  errors: string[]
}

export interface BenchReport {
  schema: typeof REPORT_SCHEMA
  /** ISO date of the start of the run. */
  date: string
  mode: 'quick' | 'full'
  durationSeconds: number
  machine: MachineInfo
  placement: Placement & { description: string }
  repeats: number
  idleSeconds: number
  baseline: TransportId
  transports: TransportId[]
  cases: Case[]
  results: Row[]
  micro: MicroResults | null
  runs: RunRecord[]
}

/** Medians over repeats per transport x kind x size, with ratios to `baseline`. */
export function aggregate(runs: readonly RunRecord[], baseline: TransportId): Row[] {
  const groups = new Map<string, RunRecord[]>()
  for (const run of runs) {
    const key = `${run.kind}\u0000${run.size}\u0000${run.transport}`
    const group = groups.get(key)
    if (group) group.push(run)
    else groups.set(key, [run])
  }
  const rows: Row[] = []
  for (const group of groups.values()) {
    const first = group[0] as RunRecord
    const ok = group.filter((run) => run.error === undefined)
    const row: Row = { transport: first.transport, kind: first.kind, size: first.size, repeats: ok.length, errors: group.flatMap((run) => (run.error === undefined ? [] : [run.error])) }
    const latency = ok.flatMap((run) => (run.latency ? [run.latency] : []))
    if (latency.length > 0) {
      row.p50Us = median(latency.map((l) => l.p50))
      row.p99Us = median(latency.map((l) => l.p99))
      row.maxUs = Math.max(...latency.map((l) => l.max))
    }
    const throughput = ok.flatMap((run) => (run.throughput && run.throughput.length > 0 ? [run.throughput] : []))
    if (throughput.length > 0) {
      row.msgsPerSec = median(throughput.map((subs) => median(subs.map((s) => s.msgsPerSec))))
      row.mbPerSec = median(throughput.map((subs) => median(subs.map((s) => s.mbPerSec))))
      if (first.kind === 'fanout') row.slowestMbPerSec = median(throughput.map((subs) => Math.min(...subs.map((s) => s.mbPerSec))))
    }
    const idle = ok.flatMap((run) => (run.idle ? [run.idle] : []))
    if (idle.length > 0) {
      row.publisherCpuPercent = median(idle.map((i) => i.publisherCpuPercent))
      row.subscriberCpuPercent = median(idle.map((i) => i.subscriberCpuPercent))
    }
    const rss = ok.flatMap((run) => (run.peakRssKiB ? [run.peakRssKiB] : []))
    if (rss.length > 0) row.peakRssKiB = { publisher: Math.max(...rss.map((r) => r.publisher)), subscriber: Math.max(...rss.map((r) => r.subscriber)) }
    rows.push(row)
  }
  for (const row of rows) {
    const base = rows.find((r) => r.transport === baseline && r.kind === row.kind && r.size === row.size)
    if (!base) continue
    if (row.p50Us !== undefined && base.p50Us) row.latencyRatio = row.p50Us / base.p50Us
    if (row.mbPerSec !== undefined && base.mbPerSec) row.throughputRatio = row.mbPerSec / base.mbPerSec
  }
  return rows
}

/** How each transport is driven, for the report. */
export const TRANSPORT_NOTES: Record<string, string> = {
  'ipc-pubsub': `@ipc-pubsub/pubsub, lossless subscriptions (policy 'wait', default queue size ${DEFAULT_QUEUE_SIZE}; '+spin50': spinMicroseconds 50 on every subscription and publisher)`,
  'node:net': 'Unix stream socket, u32 length-prefixed frames, drain back-pressure',
  child_process: "IPC with serialization 'advanced', the publisher forks its subscribers",
  zeromq: 'zeromq npm package, PUSH/PULL over ipc://, one PUSH socket per subscriber, default high-water marks of 1,000 messages',
}

// Formatting ----------------------------------------------------------------------------

/** 64 B, 4 KiB, 1 MiB, 16 MiB; other sizes in the largest unit that divides them. */
export function formatSize(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`
  return `${bytes} B`
}

/** Three significant figures, thousands separated: 0.123, 12.3, 123, 12,345. */
export function formatNumber(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '–'
  if (value === 0) return '0'
  const digitsFor = (abs: number): number => (abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3)
  // Decide on the rounded value, so 99.99 prints as 100, not 100.0.
  const digits = digitsFor(Number(Math.abs(value).toFixed(digitsFor(Math.abs(value)))))
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined || !Number.isFinite(ratio)) return '–'
  return `${ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(2)}×`
}

const mib = (kib: number | undefined): string => (kib === undefined ? '–' : formatNumber(kib / 1024))

/** A markdown table: the first `left` columns are labels, the rest right-aligned figures. */
function table(header: string[], rows: string[][], left = 2): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  const align = header.map((_, i) => (i < left ? '---' : '---:'))
  return [line(header), line(align), ...rows.map(line)].join('\n')
}

function byTransport(report: BenchReport): (a: Row, b: Row) => number {
  return (a, b) => a.size - b.size || report.transports.indexOf(a.transport) - report.transports.indexOf(b.transport)
}

/** The markdown report. `chart` is the chart's path relative to where the markdown will live. */
export function renderMarkdown(report: BenchReport, chart?: string): string {
  const { machine, baseline } = report
  const out: string[] = []
  const rows = [...report.results].sort(byTransport(report))
  out.push(`# ipc-pubsub benchmarks (${report.mode} run)`)
  out.push('')
  out.push(`- Date: ${report.date.slice(0, 10)}; took ${Math.round(report.durationSeconds)} s`)
  out.push(`- Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, ${machine.arch}, Node ${machine.node}`)
  out.push(`- Placement: ${report.placement.description}`)
  out.push(
    `- Latency, throughput and fan-out figures are medians of ${report.repeats} interleaved repeat${report.repeats === 1 ? '' : 's'} (transports alternate: A B C A B C), and ratios are to \`${baseline}\` measured in the same run. Peak RSS is the largest over the repeats; the idle case runs once.`,
  )
  out.push('- Publisher and subscribers are separate processes. Every message is written in full by the publisher and checked by each subscriber (one byte per 4 KiB page plus a checksum), delivered losslessly and in order. MB/s is 10⁶ bytes per second, per subscriber.')
  out.push(`- Transports: ${report.transports.map((t) => `\`${t}\` (${TRANSPORT_NOTES[t.startsWith('ipc-pubsub:') ? 'ipc-pubsub' : t] ?? 'see the bench README'})`).join('; ')}.`)
  out.push('')

  const latency = rows.filter((r) => r.kind === 'latency')
  const throughput = rows.filter((r) => r.kind === 'throughput')
  const sizes = [...new Set([...latency, ...throughput].map((r) => r.size))].sort((a, b) => a - b)
  if (sizes.length > 0) {
    out.push('## Latency and throughput')
    out.push('')
    out.push('Latency: ping-pong round trip of one message each way. Throughput: one publisher streaming to one subscriber, from the first message sent to the last one received.')
    out.push('')
    const cells: string[][] = []
    for (const size of sizes) {
      for (const transport of report.transports) {
        const l = latency.find((r) => r.size === size && r.transport === transport)
        const t = throughput.find((r) => r.size === size && r.transport === transport)
        if (!l && !t) continue
        cells.push([
          `\`${transport}\``,
          formatSize(size),
          formatNumber(l?.p50Us),
          formatNumber(l?.p99Us),
          formatNumber(l?.maxUs),
          formatNumber(t?.msgsPerSec),
          formatNumber(t?.mbPerSec),
          transport === baseline ? '1.00×' : formatRatio(l?.latencyRatio),
          transport === baseline ? '1.00×' : formatRatio(t?.throughputRatio),
        ])
      }
    }
    out.push(table(['transport', 'size', 'p50 µs', 'p99 µs', 'max µs', 'msgs/s', 'MB/s', `p50 vs ${baseline} (lower is better)`, `MB/s vs ${baseline} (higher is better)`], cells))
    out.push('')
  }
  if (chart) {
    out.push(`![Throughput by message size, log scale](${chart})`)
    out.push('')
  }

  const fanout = rows.filter((r) => r.kind === 'fanout')
  if (fanout.length > 0) {
    const subs = report.cases.find((c) => c.kind === 'fanout')?.subscribers ?? 0
    out.push(`## Fan-out: 1 publisher, ${subs} subscribers, ${formatSize(fanout[0]?.size ?? 0)}`)
    out.push('')
    out.push(
      table(
        ['transport', 'size', 'MB/s per subscriber', 'slowest subscriber MB/s', 'delivered MB/s (all)', `vs ${baseline}`],
        fanout.map((r) => [`\`${r.transport}\``, formatSize(r.size), formatNumber(r.mbPerSec), formatNumber(r.slowestMbPerSec), formatNumber(r.mbPerSec === undefined ? undefined : r.mbPerSec * subs), r.transport === baseline ? '1.00×' : formatRatio(r.throughputRatio)]),
      ),
    )
    out.push('')
  }

  const idle = rows.filter((r) => r.kind === 'idle')
  if (idle.length > 0) {
    out.push(`## Idle cost: connected, nothing sent, ${report.idleSeconds} s`)
    out.push('')
    const tick = 100 / (report.machine.clockTicksPerSecond * report.idleSeconds)
    out.push(`Every transport at the same time, once. CPU time comes from \`/proc/<pid>/stat\` in clock ticks: one tick is ${formatNumber(tick)} % of this window.`)
    out.push('')
    const percent = (x: number | undefined): string => (x === undefined ? '–' : x.toFixed(Math.max(1, Math.ceil(-Math.log10(tick)))))
    out.push(table(['transport', 'publisher CPU %', 'subscriber CPU %'], idle.map((r) => [`\`${r.transport}\``, percent(r.publisherCpuPercent), percent(r.subscriberCpuPercent)]), 1))
    out.push('')
  }

  const withRss = rows.filter((r) => r.peakRssKiB)
  if (withRss.length > 0) {
    out.push('## Memory: peak RSS (MiB), largest over every case of the transport')
    out.push('')
    const cells = report.transports.flatMap((transport) => {
      const mine = withRss.filter((r) => r.transport === transport)
      if (mine.length === 0) return []
      const pub = Math.max(...mine.map((r) => r.peakRssKiB?.publisher ?? 0))
      const sub = Math.max(...mine.map((r) => r.peakRssKiB?.subscriber ?? 0))
      const big = mine.find((r) => r.kind === 'throughput' && r.size === Math.max(...mine.filter((m) => m.kind === 'throughput').map((m) => m.size)))
      return [[`\`${transport}\``, mib(pub), mib(sub), big ? `${mib(big.peakRssKiB?.publisher)} / ${mib(big.peakRssKiB?.subscriber)} (${formatSize(big.size)})` : '–']]
    })
    out.push(table(['transport', 'publisher', 'subscriber', 'publisher / subscriber at the largest throughput size'], cells, 1))
    out.push('')
  }

  const micro = report.micro
  if (micro) {
    out.push('## Micro-costs')
    out.push('')
    const cells: string[][] = [
      ['koffi call (getpid)', '–', `${formatNumber(micro.koffiCallNs)} ns`],
      ...micro.segmentCycleUs.map((s) => [
        `segment create + map + close (mean${s.majorGcsPerOp > 0 ? `, ${formatNumber(s.majorGcsPerOp)} major GCs per op` : ''})`,
        formatSize(s.size),
        `${formatNumber(s.us)} µs`,
      ]),
      ['first touch, writing (fault in)', 'per MiB', `${formatNumber(micro.firstTouchWriteUsPerMiB)} µs`],
      ['second touch, writing (pages present)', 'per MiB', `${formatNumber(micro.secondTouchWriteUsPerMiB)} µs`],
      ['first touch, reading through a second read-only mapping', 'per MiB', `${formatNumber(micro.firstTouchReadUsPerMiB)} µs`],
      ['fdpass round trip, 64 B frame + 1 memfd each way', '64 B', `${formatNumber(micro.fdRoundTripUs)} µs`],
      ['fdpass round trip, 64 B frame, no fd', '64 B', `${formatNumber(micro.frameRoundTripUs)} µs`],
      ['node:net round trip, 64 B', '64 B', `${formatNumber(micro.netRoundTripUs)} µs`],
    ]
    out.push(table(['what', 'size', 'median (segment cycles: mean)'], cells))
    out.push('')
  }

  const failures = rows.filter((r) => r.errors.length > 0)
  if (failures.length > 0) {
    out.push('## Failures')
    out.push('')
    for (const row of failures) for (const error of row.errors) out.push(`- \`${row.transport}\` ${row.kind} ${formatSize(row.size)}: ${error.split('\n')[0]}`)
    out.push('')
  }
  return `${out.join('\n').trimEnd()}\n`
}
