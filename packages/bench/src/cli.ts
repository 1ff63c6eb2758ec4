#!/usr/bin/env node
// `pnpm bench [--quick] [...]`: runs the bench, prints the markdown report on stdout and
// progress on stderr, and writes JSON, SVG and markdown (see --help).
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ALL_TRANSPORTS, type PlacementMode, runBench, writeReport } from './bench.js'
import type { CaseKind, TransportId } from './job.js'
import { KINDS } from './plan.js'
import { renderMarkdown } from './report.js'

const PACKAGE = fileURLToPath(new URL('..', import.meta.url))
const RESULTS = join(PACKAGE, 'results')

const HELP = `Usage: pnpm bench [options]

Measures ipc-pubsub against node:net, child_process IPC and ZeroMQ, between separate
processes: latency, throughput, fan-out, idle CPU, peak memory, and micro-costs.

  --quick               smaller counts, 1 repeat, 2 s idle: under a minute
  --repeats <n>         interleaved repeats per case (default 3; quick 1)
  --kinds <list>        ${KINDS.join(',')} (default: all)
  --sizes <list>        message sizes in bytes, e.g. 64,4096 (default: all)
  --transports <list>   ${ALL_TRANSPORTS.join(',')}
  --placement <mode>    split (default): publisher and subscribers on two CPUs;
                        same: all on one CPU; none: not pinned
  --idle-seconds <n>    idle window (default 10; quick 2)
  --no-micro            skip the micro-costs
  --out <dir>           where to write <mode>.json, <mode>.svg and <mode>.md
                        (default packages/bench/results; a full run there also
                        writes packages/bench/RESULTS.md instead of full.md)
  -h, --help            this text
`

function list(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
}

function positive(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer, got '${value}'`)
  return n
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      repeats: { type: 'string' },
      kinds: { type: 'string' },
      sizes: { type: 'string' },
      transports: { type: 'string' },
      placement: { type: 'string' },
      'idle-seconds': { type: 'string' },
      'no-micro': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  const kinds = list(values.kinds)
  for (const kind of kinds ?? []) if (!KINDS.includes(kind as CaseKind)) throw new RangeError(`--kinds: unknown kind '${kind}'; known: ${KINDS.join(', ')}`)
  const sizes = list(values.sizes)?.map((s) => positive('sizes', s) as number)
  const transports = list(values.transports)
  for (const t of transports ?? []) if (!ALL_TRANSPORTS.includes(t as TransportId)) throw new RangeError(`--transports: unknown transport '${t}'; known: ${ALL_TRANSPORTS.join(', ')}`)
  const placement = values.placement
  if (placement !== undefined && !['split', 'same', 'none'].includes(placement)) throw new RangeError(`--placement must be split, same or none, got '${placement}'`)
  const repeats = positive('repeats', values.repeats)
  const idleSeconds = positive('idle-seconds', values['idle-seconds'])

  const report = await runBench({
    quick: values.quick,
    micro: !values['no-micro'],
    ...(repeats !== undefined && { repeats }),
    ...(kinds && { kinds: kinds as CaseKind[] }),
    ...(sizes && { sizes }),
    ...(transports && { transports: transports as TransportId[] }),
    ...(placement !== undefined && { placement: placement as PlacementMode }),
    ...(idleSeconds !== undefined && { idleSeconds }),
  })
  const dir = values.out ?? RESULTS
  const written =
    report.mode === 'full' && values.out === undefined
      ? writeReport(report, dir, join(PACKAGE, 'RESULTS.md'), 'results/full.svg')
      : writeReport(report, dir)
  process.stdout.write(renderMarkdown(report))
  process.stderr.write(`\nwrote ${written.markdown}, ${written.json} and ${written.svg}\n`)
  const failed = report.results.filter((r) => r.errors.length > 0).length
  if (failed > 0) process.stderr.write(`${failed} case(s) failed: see the Failures section\n`)
  return failed > 0 ? 1 : 0
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: Error) => {
    process.stderr.write(`bench: ${error.message}\n`)
    process.exitCode = error instanceof RangeError || error instanceof TypeError ? 2 : 1
  },
)
