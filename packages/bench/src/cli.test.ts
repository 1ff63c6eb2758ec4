// End to end: the real CLI, real worker processes, every transport, one size, quick mode.
// Asserts what the run produced (shape, verified deliveries, files), never how fast it was.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ALL_TRANSPORTS } from './bench.js'
import type { BenchReport } from './report.js'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const out = mkdtempSync(join(tmpdir(), 'ipc-pubsub-bench-test-'))
afterAll(() => rmSync(out, { recursive: true, force: true }))

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 240_000 })
}

describe('pnpm bench --quick, one size', () => {
  let run: ReturnType<typeof cli>
  let report: BenchReport
  beforeAll(() => {
    run = cli('--quick', '--sizes', '4096', '--idle-seconds', '1', '--out', out)
    report = JSON.parse(readFileSync(join(out, 'quick.json'), 'utf8')) as BenchReport
  }, 240_000)

  it('exits 0 and prints the markdown report on stdout, progress on stderr', () => {
    expect(run.stderr).not.toMatch(/FAILED/)
    expect(run.status).toBe(0)
    expect(run.stdout).toMatch(/^# ipc-pubsub benchmarks \(quick run\)/)
    expect(run.stdout).toContain('| transport | size | p50 µs | p99 µs | max µs | msgs/s | MB/s |')
    // Not a terminal: plain progress lines, one per finished step.
    expect(run.stderr).toMatch(/^\[ ?1\/\d+\] micro-costs: /m)
    expect(run.stderr).not.toContain('\x1b[K')
  })

  it('measured every transport at that size, with ratios to node:net', () => {
    expect(report.schema).toBe(1)
    expect(report.mode).toBe('quick')
    expect(report.transports).toEqual([...ALL_TRANSPORTS])
    expect(report.machine.cores).toBeGreaterThan(0)
    expect(report.machine.node).toBe(process.version)
    for (const transport of report.transports) {
      const latency = report.results.find((r) => r.kind === 'latency' && r.transport === transport)
      const throughput = report.results.find((r) => r.kind === 'throughput' && r.transport === transport)
      const idle = report.results.find((r) => r.kind === 'idle' && r.transport === transport)
      expect(latency?.errors).toEqual([])
      expect(latency?.size).toBe(4096)
      expect(latency?.p50Us).toBeGreaterThan(0)
      expect(latency?.p99Us).toBeGreaterThanOrEqual(latency?.p50Us ?? Number.POSITIVE_INFINITY)
      expect(latency?.latencyRatio).toBeGreaterThan(0)
      expect(throughput?.errors).toEqual([])
      expect(throughput?.mbPerSec).toBeGreaterThan(0)
      expect(throughput?.msgsPerSec).toBeGreaterThan(0)
      expect(throughput?.throughputRatio).toBeGreaterThan(0)
      expect(throughput?.peakRssKiB?.publisher).toBeGreaterThan(0)
      expect(throughput?.peakRssKiB?.subscriber).toBeGreaterThan(0)
      expect(idle?.errors).toEqual([])
      expect(idle?.publisherCpuPercent).toBeGreaterThanOrEqual(0)
    }
    expect(report.results.find((r) => r.transport === 'node:net' && r.kind === 'latency')?.latencyRatio).toBe(1)
    // Only the asked-for size: no other sizes, no fan-out (it is 1 MiB).
    expect(new Set(report.results.filter((r) => r.kind !== 'idle').map((r) => r.size))).toEqual(new Set([4096]))
    expect(report.results.some((r) => r.kind === 'fanout')).toBe(false)
  })

  it('every message of every run was delivered and verified', () => {
    for (const record of report.runs) {
      expect(record.error).toBeUndefined()
      const c = report.cases.find((x) => x.kind === record.kind && x.size === record.size)
      if (!c) throw new Error(`no case for ${record.kind}`)
      // Latency: the publisher checks each echo and the subscriber each ping; throughput:
      // the subscriber checks each message; idle: the warm-up messages.
      const expected = record.kind === 'latency' ? 2 * (c.count + c.warmup) : c.count + c.warmup
      expect(record.verified, `${record.transport} ${record.kind}`).toBe(expected)
    }
  })

  it('measured the micro-costs', () => {
    expect(report.micro?.koffiCallNs).toBeGreaterThan(0)
    expect(report.micro?.fdRoundTripUs).toBeGreaterThan(0)
    expect(report.micro?.segmentCycleUs.map((s) => s.size)).toEqual([64, 4096, 65536, 1 << 20, 4 << 20, 8 << 20, 16 << 20])
  })

  it('wrote the markdown and a chart with one line per transport', () => {
    const markdown = readFileSync(join(out, 'quick.md'), 'utf8')
    expect(markdown).toContain('![Throughput by message size, log scale](quick.svg)')
    const svg = readFileSync(join(out, 'quick.svg'), 'utf8')
    expect(svg.match(/<polyline /g)).toHaveLength(ALL_TRANSPORTS.length)
  })
})

describe('bad arguments', () => {
  it('an unknown transport is a usage error (exit 2) that lists the known ones', () => {
    const run = cli('--transports', 'carrier-pigeon')
    expect(run.status).toBe(2)
    expect(run.stderr).toContain("unknown transport 'carrier-pigeon'")
    expect(run.stderr).toContain('node:net')
  })

  it('an unknown option is a usage error, not a crash with a stack', () => {
    const run = cli('--fast')
    expect(run.status).toBe(2)
    expect(run.stderr).toMatch(/^bench: .*--fast/)
  })

  it('--help prints usage and exits 0', () => {
    const run = cli('--help')
    expect(run.status).toBe(0)
    expect(run.stdout).toContain('--quick')
  })
})
