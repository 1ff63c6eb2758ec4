// Issue 13, "slot reuse under a slow, lossy subscriber never shows a subscriber bytes of
// another message". Three processes: a publisher with a small pool (256 KiB, so blocks are
// reused all the time and the largest messages, beyond half the pool, go as segments), a
// fast lossless subscriber and a slow lossy one that holds a few messages a while before it
// releases them. Every message carries its seq, its length and a checksum of its bytes
// (fixtures/pool-msg.ts); both subscribers check each one at receipt, and the slow one checks
// the messages it holds again just before it releases them: a block handed to the next
// message while still held would show there.
import { afterEach, describe, expect, it } from 'vitest'
import { uniqueDomain } from './helpers.ts'
import { killPoolChildren, PoolChild } from './fixtures/pool-driver.ts'
import type { SizeRanges } from './fixtures/pool-msg.ts'

const TOPIC = 'reuse'
const POOL_SIZE = 256 * 1024
const COUNT = 100_000
const SEED = 0x13
// 0 B to 192 KiB: mostly small, some beyond half the pool (128 KiB), which take the segment path.
const RANGES: SizeRanges = [
  [40, 0, 256],
  [40, 257, 8 * 1024],
  [16, 8 * 1024 + 1, 64 * 1024],
  [4, 64 * 1024 + 1, 192 * 1024],
]

describe('pool transport: slot reuse', () => {
  afterEach(killPoolChildren)

  it(`${COUNT} messages of 0 B..192 KiB through a 256 KiB pool: the fast subscriber gets all, exact and in order; the slow lossy one only exact ones, its gaps equal to lost`, async () => {
    const domain = uniqueDomain('pool-reuse')
    const [pub, fast, slow] = await Promise.all([PoolChild.start('publisher'), PoolChild.start('fast'), PoolChild.start('slow')])
    await pub.connect(domain)
    await Promise.all([fast.connect(domain), slow.connect(domain)])
    const check = { seed: SEED, ranges: RANGES, poolSize: POOL_SIZE }
    const fastKey = await fast.subscribe(TOPIC, { policy: 'wait', queueSize: 64, ...check })
    // Slow: a task per message, and each of (up to) 4 messages held 3 ms before release.
    const slowKey = await slow.subscribe(TOPIC, { policy: 'drop-oldest', queueSize: 8, hold: { count: 4, ms: 3 }, ...check })
    const pubKey = await pub.publisher(TOPIC, { poolSize: POOL_SIZE })
    await pub.request('wait-subscribers', { key: pubKey, count: 2 })

    const started = performance.now()
    const result = await pub.request<{ published: number; refused: number; lastSeq: number; ms: number }>(
      'publish',
      { key: pubKey, count: COUNT, seed: SEED, ranges: RANGES },
      120_000,
    )
    expect(result.published).toBe(COUNT)
    const fastStats = await fast.statsUntil(fastKey, (stats) => stats.received >= COUNT, `all ${COUNT} messages`, 60_000)
    // The slow one may miss the last messages too (skipped while behind): it is done once it
    // holds nothing and its count stops moving.
    let previous = -1
    const slowStats = await slow.statsUntil(
      slowKey,
      (stats) => {
        const settled = stats.held === 0 && stats.received === previous
        previous = stats.received
        return settled
      },
      'the slow subscriber to settle',
      30_000,
    )
    const ms = performance.now() - started
    console.log(
      `[pool-reuse] ${COUNT} msgs, ${(fastStats.bytes / 2 ** 20).toFixed(0)} MiB in ${ms.toFixed(0)} ms ` +
        `(publish ${result.ms.toFixed(0)} ms, refused ${result.refused}); fast: ${fastStats.poolMessages} via the pool; ` +
        `slow: received ${slowStats.received}, lost ${slowStats.lost}, ${slowStats.poolMessages} via the pool`,
    )

    expect(fastStats).toMatchObject({
      received: COUNT,
      lost: 0,
      bad: 0,
      badDetail: [],
      outOfOrder: 0,
      lostMismatch: 0,
      firstSeq: 1,
      lastSeq: COUNT,
      closedWith: null,
    })
    expect(slowStats).toMatchObject({ bad: 0, badDetail: [], outOfOrder: 0, lostMismatch: 0, closedWith: null })
    // Every seq up to its last is accounted for: received or counted in `lost`.
    expect(slowStats.received + slowStats.lost).toBe(slowStats.lastSeq - slowStats.firstSeq + 1)
    expect(slowStats.lastSeq).toBeLessThanOrEqual(result.lastSeq)
    expect(slowStats.received).toBeGreaterThan(0)
    // Both paths were taken: pool blocks (reused many times over) and segments.
    expect(fastStats.poolMessages).toBeGreaterThan(COUNT / 2)
    expect(fastStats.poolMessages).toBeLessThan(COUNT)
    expect(pub.nodeErrors).toEqual([])
    expect(fast.nodeErrors).toEqual([])
    expect(slow.nodeErrors).toEqual([])
  })
})
