// The coordinator's failure path with real processes: a run that overstays its time limit is
// reported as failed, its worker processes are killed, and the bench goes on.
import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
// The coordinator starts dist/worker.js next to it, so this test drives the built package.
import { runBench } from '../dist/index.js'
import { expectedVerified } from './runner.js'

/** Processes whose command line mentions this test process's runs (`ipb-<pid>-<n>`). */
function leftoverWorkers(): number[] {
  const marker = `ipb-${process.pid}-`
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) pids.push(Number(entry))
    } catch {
      // Gone meanwhile.
    }
  }
  return pids
}

describe('a run that does not finish in time', () => {
  it('is reported as failed, its processes are killed, and the next run still happens', async () => {
    const lines: string[] = []
    const report = await runBench({
      quick: true,
      kinds: ['latency', 'throughput'],
      sizes: [16 << 20],
      transports: ['node:net', 'child_process'],
      micro: false,
      timeoutMs: 50,
      progress: { write: (text: string) => lines.push(text) },
    })
    // 16 MiB has no latency case: two throughput runs, both far longer than 50 ms.
    expect(report.runs).toHaveLength(2)
    for (const run of report.runs) expect(run.error).toMatch(/did not finish within 0.05 s/)
    expect(report.results.every((row) => row.errors.length === 1 && row.mbPerSec === undefined)).toBe(true)
    expect(lines.filter((line) => line.includes('FAILED'))).toHaveLength(2)
    expect(leftoverWorkers()).toEqual([])
  })

  it('rejects a message size smaller than the header, before starting anything', async () => {
    await expect(runBench({ quick: true, sizes: [16], micro: false })).rejects.toThrow(/message sizes must be integers from 25/)
  })
})

describe('what a worker reports', () => {
  it("peak RSS is the worker's own, not inherited from a big coordinator", async () => {
    // ru_maxrss survives fork+exec, so a worker started by a 256 MiB coordinator would report
    // at least that; VmHWM starts afresh.
    const ballast = Buffer.alloc(256 << 20, 1)
    const report = await runBench({ quick: true, kinds: ['latency'], sizes: [64], transports: ['node:net'], micro: false, progress: { write: () => true } })
    expect(ballast[ballast.length - 1]).toBe(1)
    const run = report.runs[0]
    expect(run?.error).toBeUndefined()
    expect(run?.peakRssKiB?.publisher).toBeGreaterThan(0)
    expect(run?.peakRssKiB?.publisher).toBeLessThan(200 * 1024)
    expect(run?.peakRssKiB?.subscriber).toBeLessThan(200 * 1024)
  })

  it('expects every message to be verified: both ways for latency, per subscriber otherwise', () => {
    expect(expectedVerified({ kind: 'latency', size: 64, count: 100, warmup: 10, subscribers: 1 })).toBe(220)
    expect(expectedVerified({ kind: 'throughput', size: 64, count: 100, warmup: 10, subscribers: 1 })).toBe(110)
    expect(expectedVerified({ kind: 'fanout', size: 64, count: 100, warmup: 10, subscribers: 4 })).toBe(440)
    expect(expectedVerified({ kind: 'idle', size: 64, count: 0, warmup: 10, subscribers: 1 })).toBe(10)
  })
})
