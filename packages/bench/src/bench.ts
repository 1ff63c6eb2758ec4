// One bench run, end to end: plan, micro-costs, the interleaved schedule, idle, the report.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { TRANSPORTS } from '@ipc-pubsub/pubsub'
import { BASELINE, type CaseKind, type Placement, type TransportId } from './job.js'
import { allowedCpus, machineInfo } from './machine.js'
import { MIN_MESSAGE_SIZE } from './payload.js'
import { planCases, schedule } from './plan.js'
import { Progress, type ProgressStream } from './progress.js'
import { aggregate, type BenchReport, formatNumber, formatSize, REPORT_SCHEMA, renderMarkdown } from './report.js'
import { Coordinator, type RunRecord } from './runner.js'
import { renderChart } from './svg.js'

/**
 * Every transport the bench knows, ipc-pubsub's first. `ipc-pubsub:pool+spin50` is the pool
 * transport with `spinMicroseconds: 50` on every subscription and publisher: a core traded for latency.
 */
export const ALL_TRANSPORTS: readonly TransportId[] = [
  ...TRANSPORTS.map((name): TransportId => `ipc-pubsub:${name}`),
  'ipc-pubsub:pool+spin50',
  'node:net',
  'child_process',
  'zeromq',
]

export type PlacementMode = 'split' | 'same' | 'none'

/** Largest message size the bench accepts: 256 MiB. */
export const MAX_MESSAGE_SIZE = 256 * 1024 * 1024

export interface BenchOptions {
  quick?: boolean
  /** Repeats per case and transport (default 3, quick 1). */
  repeats?: number
  kinds?: readonly CaseKind[]
  sizes?: readonly number[]
  transports?: readonly TransportId[]
  /** split (default with 2+ CPUs): publisher and subscribers on different CPUs; same: one CPU; none: unpinned. */
  placement?: PlacementMode
  /** Idle window (default 10 s, quick 2 s). */
  idleSeconds?: number
  /** Measure the micro-costs (default true). */
  micro?: boolean
  /** A run that takes longer is killed and reported as failed (default 180 s, quick 60 s). */
  timeoutMs?: number
  /** Where progress goes (default stderr). */
  progress?: ProgressStream
}

/** Resolves a placement mode into CPUs and a sentence for the report. */
export function resolvePlacement(mode: PlacementMode | undefined, cpus: readonly number[] = allowedCpus()): Placement & { description: string } {
  const chosen = mode ?? (cpus.length >= 2 ? 'split' : 'none')
  if (chosen === 'split') {
    const [a, b] = cpus
    if (a === undefined || b === undefined) throw new RangeError('placement split needs two CPUs; this process may use fewer')
    return { publisher: a, subscriber: b, description: `split: publisher on CPU ${a}, every subscriber on CPU ${b} (pinned with sched_setaffinity)` }
  }
  if (chosen === 'same') {
    const [a] = cpus
    if (a === undefined) throw new RangeError('no CPU to pin to')
    return { publisher: a, subscriber: a, description: `same: publisher and subscribers all on CPU ${a} (pinned with sched_setaffinity)` }
  }
  return { publisher: null, subscriber: null, description: 'none: not pinned, the scheduler places every process' }
}

function outcome(record: RunRecord): string {
  if (record.error) return `FAILED: ${record.error.split('\n')[0]}`
  if (record.latency) return `p50 ${formatNumber(record.latency.p50)} µs, p99 ${formatNumber(record.latency.p99)} µs`
  if (record.throughput) return `${record.throughput.map((t) => formatNumber(t.mbPerSec)).join(' / ')} MB/s`
  if (record.idle) return `CPU ${formatNumber(record.idle.publisherCpuPercent)} % / ${formatNumber(record.idle.subscriberCpuPercent)} %`
  return 'done'
}

/** Runs the bench and returns its report. Failed runs are in the report, not thrown. */
export async function runBench(options: BenchOptions = {}): Promise<BenchReport> {
  const started = Date.now()
  const quick = options.quick === true
  const repeats = options.repeats ?? (quick ? 1 : 3)
  const idleSeconds = options.idleSeconds ?? (quick ? 2 : 10)
  const transports = options.transports ? [...options.transports] : [...ALL_TRANSPORTS]
  for (const t of transports) if (!ALL_TRANSPORTS.includes(t)) throw new RangeError(`unknown transport ${t}; known: ${ALL_TRANSPORTS.join(', ')}`)
  for (const size of options.sizes ?? []) {
    if (!Number.isInteger(size) || size < MIN_MESSAGE_SIZE || size > MAX_MESSAGE_SIZE) {
      throw new RangeError(`message sizes must be integers from ${MIN_MESSAGE_SIZE} to ${MAX_MESSAGE_SIZE} bytes, got ${size}`)
    }
  }
  const placement = resolvePlacement(options.placement)
  const cases = planCases({ quick, ...(options.kinds && { kinds: options.kinds }), ...(options.sizes && { sizes: options.sizes }) })
  const steps = schedule(cases, transports, repeats)
  const idleCases = cases.filter((c) => c.kind === 'idle')
  const micro = options.micro !== false
  const progress = new Progress(steps.length + idleCases.length + (micro ? 1 : 0), options.progress)
  const coordinator = await Coordinator.start({ placement, timeoutMs: options.timeoutMs ?? (quick ? 60_000 : 180_000), idleMs: idleSeconds * 1000, quick })
  const runs: RunRecord[] = []
  let microResults: BenchReport['micro'] = null
  try {
    if (micro) {
      progress.start('micro-costs')
      try {
        microResults = await coordinator.micro()
        progress.finish('micro-costs', `koffi call ${formatNumber(microResults.koffiCallNs)} ns, fd round trip ${formatNumber(microResults.fdRoundTripUs)} µs`)
      } catch (error) {
        progress.finish('micro-costs', `FAILED: ${(error as Error).message}`)
        throw error
      }
    }
    for (const step of steps) {
      const label = `${step.case.kind} ${formatSize(step.case.size)} ${step.transport}${repeats > 1 ? ` (${step.repeat}/${repeats})` : ''}`
      progress.start(label)
      const record = await coordinator.run(step.transport, step.case, step.repeat)
      runs.push(record)
      progress.finish(label, outcome(record))
    }
    for (const idle of idleCases) {
      const label = `idle ${idleSeconds} s, every transport at once`
      progress.start(label)
      const records = await Promise.all(transports.map((t) => coordinator.run(t, idle, 1)))
      runs.push(...records)
      progress.finish(label, records.map((r) => `${r.transport} ${outcome(r)}`).join('; '))
    }
  } finally {
    progress.end()
    await coordinator.close()
  }
  return {
    schema: REPORT_SCHEMA,
    date: new Date(started).toISOString(),
    mode: quick ? 'quick' : 'full',
    durationSeconds: (Date.now() - started) / 1000,
    machine: machineInfo(),
    placement,
    repeats,
    idleSeconds,
    baseline: BASELINE,
    transports,
    cases,
    results: aggregate(runs, BASELINE),
    micro: microResults,
    runs,
  }
}

/** The throughput chart of a report. */
export function throughputChart(report: BenchReport): string {
  const series = report.transports.map((transport) => ({
    name: transport,
    points: report.results.filter((r) => r.kind === 'throughput' && r.transport === transport && r.mbPerSec !== undefined).map((r) => ({ size: r.size, value: r.mbPerSec as number })),
  }))
  return renderChart(series, { title: `One-way throughput by message size (${report.machine.cores} cores, ${report.date.slice(0, 10)})`, yLabel: 'MB/s, one subscriber (log scale)' })
}

/** Where a report's files went. */
export interface Written {
  json: string
  svg: string
  markdown: string
}

/**
 * Writes `<mode>.json` and `<mode>.svg` into `dir`, and the markdown to `markdownPath`
 * (default `<dir>/<mode>.md`), linking the chart relative to it.
 */
export function writeReport(report: BenchReport, dir: string, markdownPath = join(dir, `${report.mode}.md`), chartLink = `${report.mode}.svg`): Written {
  mkdirSync(dir, { recursive: true })
  const json = join(dir, `${report.mode}.json`)
  const svg = join(dir, `${report.mode}.svg`)
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(svg, throughputChart(report))
  writeFileSync(markdownPath, renderMarkdown(report, chartLink))
  return { json, svg, markdown: markdownPath }
}
