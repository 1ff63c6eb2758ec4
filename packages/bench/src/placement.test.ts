import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ALL_TRANSPORTS, resolvePlacement, throughputChart, writeReport } from './bench.js'
import type { TransportId } from './job.js'
import { allowedCpus } from './machine.js'
import { aggregate, type BenchReport, REPORT_SCHEMA, renderMarkdown } from './report.js'
import type { RunRecord } from './runner.js'

describe('resolvePlacement', () => {
  it('split puts the publisher on the first CPU and every subscriber on the second', () => {
    const placement = resolvePlacement('split', [0, 1])
    expect(placement.publisher).toBe(0)
    expect(placement.subscriber).toBe(1)
    expect(placement.description).toMatch(/^split: /)
    expect(placement.description).toContain('CPU 0')
    expect(placement.description).toContain('CPU 1')
  })

  it('split uses the first two allowed CPUs, whatever their numbers', () => {
    const placement = resolvePlacement('split', [4, 6, 7])
    expect(placement).toMatchObject({ publisher: 4, subscriber: 6 })
    expect(placement.description).toContain('CPU 4')
    expect(placement.description).toContain('CPU 6')
  })

  it('defaults to split with two or more CPUs', () => {
    expect(resolvePlacement(undefined, [2, 5])).toEqual(resolvePlacement('split', [2, 5]))
    expect(resolvePlacement(undefined, [2, 5]).description).toMatch(/^split: /)
  })

  it('defaults to none with one CPU or none', () => {
    for (const cpus of [[0], [3], []]) {
      const placement = resolvePlacement(undefined, cpus)
      expect(placement.publisher).toBeNull()
      expect(placement.subscriber).toBeNull()
      expect(placement.description).toMatch(/^none: /)
    }
  })

  it('split with fewer than two CPUs is a RangeError', () => {
    expect(() => resolvePlacement('split', [0])).toThrow(RangeError)
    expect(() => resolvePlacement('split', [])).toThrow(RangeError)
  })

  it('same pins publisher and subscribers to the first CPU', () => {
    const placement = resolvePlacement('same', [3, 4])
    expect(placement).toMatchObject({ publisher: 3, subscriber: 3 })
    expect(placement.description).toMatch(/^same: /)
    expect(placement.description).toContain('CPU 3')
    expect(resolvePlacement('same', [0])).toMatchObject({ publisher: 0, subscriber: 0 })
  })

  it('same with no CPU is a RangeError', () => {
    expect(() => resolvePlacement('same', [])).toThrow(RangeError)
  })

  it('none does not pin, whatever the CPUs', () => {
    for (const cpus of [[0, 1], [0], []]) {
      const placement = resolvePlacement('none', cpus)
      expect(placement).toMatchObject({ publisher: null, subscriber: null })
      expect(placement.description).toMatch(/^none: /)
      expect(placement.description).not.toMatch(/CPU \d/)
    }
  })

  it('defaults to the CPUs this process may use', () => {
    const cpus = allowedCpus()
    const placement = resolvePlacement(undefined)
    if (cpus.length >= 2) expect(placement).toMatchObject({ publisher: cpus[0], subscriber: cpus[1] })
    else expect(placement).toMatchObject({ publisher: null, subscriber: null })
  })
})

describe('ALL_TRANSPORTS', () => {
  it("lists ipc-pubsub's transports first, then the baselines, without duplicates", () => {
    expect(ALL_TRANSPORTS.slice(-3)).toEqual(['node:net', 'child_process', 'zeromq'])
    expect(ALL_TRANSPORTS.length).toBeGreaterThan(3)
    for (const t of ALL_TRANSPORTS.slice(0, -3)) expect(t.startsWith('ipc-pubsub:')).toBe(true)
    expect(new Set(ALL_TRANSPORTS).size).toBe(ALL_TRANSPORTS.length)
  })
})

// throughputChart and writeReport are pure functions of a report (writeReport writes files).
const SHM: TransportId = 'ipc-pubsub:shm'
const NET: TransportId = 'node:net'

function report(): BenchReport {
  const runs: RunRecord[] = [
    { transport: SHM, kind: 'throughput', size: 64, repeat: 1, throughput: [{ msgsPerSec: 1e6, mbPerSec: 64 }] },
    { transport: NET, kind: 'throughput', size: 64, repeat: 1, throughput: [{ msgsPerSec: 5e5, mbPerSec: 32 }] },
    { transport: SHM, kind: 'throughput', size: 4096, repeat: 1, throughput: [{ msgsPerSec: 1e5, mbPerSec: 409.6 }] },
    { transport: NET, kind: 'throughput', size: 4096, repeat: 1, error: 'timed out' },
    { transport: SHM, kind: 'latency', size: 64, repeat: 1, latency: { n: 10, min: 1, p50: 2, p99: 3, max: 4, mean: 2 } },
    { transport: NET, kind: 'latency', size: 64, repeat: 1, latency: { n: 10, min: 4, p50: 8, p99: 12, max: 16, mean: 8 } },
  ]
  return {
    schema: REPORT_SCHEMA,
    date: '2025-01-02T03:04:05.000Z',
    mode: 'quick',
    durationSeconds: 12,
    machine: { cpu: 'Test CPU', cores: 4, kernel: '6.0', node: 'v22.0.0', memoryGiB: 8, arch: 'x64', clockTicksPerSecond: 100 },
    placement: { ...resolvePlacement('split', [0, 1]) },
    repeats: 1,
    idleSeconds: 2,
    baseline: NET,
    transports: [SHM, NET],
    cases: [
      { kind: 'latency', size: 64, count: 400, warmup: 40, subscribers: 1 },
      { kind: 'throughput', size: 64, count: 4000, warmup: 400, subscribers: 1 },
      { kind: 'throughput', size: 4096, count: 4000, warmup: 400, subscribers: 1 },
    ],
    results: aggregate(runs, NET),
    micro: null,
    runs,
  }
}

describe('throughputChart', () => {
  it('draws one line per transport with throughput figures, titled with cores and date', () => {
    const svg = throughputChart(report())
    expect(svg.startsWith('<svg')).toBe(true)
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true)
    expect(svg).toContain('One-way throughput by message size (4 cores, 2025-01-02)')
    const lines = [...svg.matchAll(/<polyline data-series="([^"]*)" points="([^"]*)"/g)]
    expect(lines.map((m) => m[1])).toEqual(['ipc-pubsub:shm', 'node:net'])
    expect((lines[0]?.[2] ?? '').split(' ')).toHaveLength(2)
    // node:net failed at 4 KiB: only its 64 B point is drawn
    expect((lines[1]?.[2] ?? '').split(' ')).toHaveLength(1)
    // latency rows are not throughput points
    expect(svg.match(/<circle /g)).toHaveLength(3)
  })

  it('is deterministic', () => {
    expect(throughputChart(report())).toBe(throughputChart(report()))
  })
})

describe('writeReport', () => {
  const dirs: string[] = []
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  })

  it('writes <mode>.json, <mode>.svg and <mode>.md, the markdown linking the chart', () => {
    const root = mkdtempSync(join(tmpdir(), 'ipc-pubsub-bench-report-'))
    dirs.push(root)
    const dir = join(root, 'results', 'nested')
    const r = report()
    const written = writeReport(r, dir)
    expect(written).toEqual({ json: join(dir, 'quick.json'), svg: join(dir, 'quick.svg'), markdown: join(dir, 'quick.md') })
    const json = readFileSync(written.json, 'utf8')
    expect(json.endsWith('\n')).toBe(true)
    expect(JSON.parse(json)).toEqual(JSON.parse(JSON.stringify(r)))
    expect(readFileSync(written.svg, 'utf8')).toBe(throughputChart(r))
    const md = readFileSync(written.markdown, 'utf8')
    expect(md).toBe(renderMarkdown(r, 'quick.svg'))
    expect(md).toContain('![Throughput by message size, log scale](quick.svg)')
    expect(md).toContain('## Failures')
    expect(md).toContain('- `node:net` throughput 4 KiB: timed out')
  })

  it('writes the markdown where asked, with the given chart link', () => {
    const root = mkdtempSync(join(tmpdir(), 'ipc-pubsub-bench-report-'))
    dirs.push(root)
    const markdown = join(root, 'RESULTS.md')
    const written = writeReport(report(), join(root, 'results'), markdown, 'results/quick.svg')
    expect(written.markdown).toBe(markdown)
    expect(readFileSync(markdown, 'utf8')).toContain('](results/quick.svg)')
  })
})
