// Issue 13, "kill -9 of a subscriber that holds slots: the publisher reclaims them and the
// others keep their rate". Three processes: a publisher with a small pool (256 KiB), a
// lossless survivor that checks every message, and a lossless victim that takes the pool's
// blocks and never gives them back (it holds every message, or stops reading with a large
// queue). The victim is lossless, so once it holds the whole pool the publisher waits
// (back-pressure): a stall that only the reclaim of the victim's blocks can end. After the
// kill the survivor must get thousands more messages (the pool many times over), all through
// the pool, all intact and in order. Progress is asserted, not timing.
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { uniqueDomain } from './helpers.ts'
import { killPoolChildren, PoolChild, type Published } from './fixtures/pool-driver.ts'
import type { SizeRanges } from './fixtures/pool-msg.ts'

const TOPIC = 'kill-holder'
const POOL_SIZE = 256 * 1024
const SEED = 0x99
// 4..16 KiB: 16 to 64 messages fill the pool.
const RANGES: SizeRanges = [[1, 4 * 1024, 16 * 1024]]
/** Messages the survivor must get after the kill: ~40 times the pool. */
const AFTER = 1000

describe('pool transport: kill -9 of a subscriber that holds blocks', () => {
  afterEach(killPoolChildren)

  it.each([
    { how: 'holds every message it gets', victim: { keep: true, queueSize: 64 } },
    { how: 'stops reading (a large queue full of blocks)', victim: { stopAfter: 5, queueSize: 1024 } },
  ])('the victim $how: its blocks come back, the survivor goes on through the pool', async ({ victim: victimOptions }) => {
    const domain = uniqueDomain('pool-kill')
    const [pub, survivor, victim] = await Promise.all([PoolChild.start('publisher'), PoolChild.start('survivor'), PoolChild.start('victim')])
    await pub.connect(domain)
    await Promise.all([survivor.connect(domain), victim.connect(domain)])
    const check = { seed: SEED, ranges: RANGES, poolSize: POOL_SIZE }
    const survivorKey = await survivor.subscribe(TOPIC, { policy: 'wait', queueSize: 16, ...check })
    const victimKey = await victim.subscribe(TOPIC, { policy: 'wait', ...victimOptions, ...check })
    const pubKey = await pub.publisher(TOPIC, { poolSize: POOL_SIZE })
    await pub.request('wait-subscribers', { key: pubKey, count: 2 })
    await pub.request('stream', { key: pubKey, seed: SEED, ranges: RANGES })

    // The victim takes blocks until the pool is all its own: the stream stops.
    let last = -1
    const deadline = Date.now() + 20_000
    for (;;) {
      await sleep(300)
      const progress = await pub.request<Published>('progress', { key: pubKey })
      if (progress.lastSeq === last && progress.lastSeq > 0) break
      // A victim that never holds the pool up: its blocks went back while it still held them.
      if (Date.now() > deadline) throw new Error(`the stream never stalled (at seq ${progress.lastSeq})`)
      last = progress.lastSeq
    }
    const victimStats = await victim.stats(victimKey)
    expect(victimStats.received).toBeGreaterThan(0)
    expect(victimStats.bad).toBe(0)
    const atKill = await survivor.statsUntil(survivorKey, (s) => s.lastSeq === last, 'the survivor has all published before the kill')
    console.log(`[pool-kill] stalled at seq ${last}: the victim got ${victimStats.received}, holds ${victimStats.held}`)

    victim.kill()
    await victim.exited
    const after = await survivor.statsUntil(survivorKey, (s) => s.lastSeq >= last + AFTER, `${AFTER} more messages at the survivor`, 30_000)
    const result = await pub.request<Published>('stop', { key: pubKey })
    const final = await survivor.statsUntil(survivorKey, (s) => s.lastSeq === result.lastSeq, 'the last message at the survivor')

    // Lossless and intact from the first message to the last, across the kill.
    expect(final).toMatchObject({ lost: 0, bad: 0, badDetail: [], outOfOrder: 0, lostMismatch: 0, firstSeq: 1, closedWith: null })
    expect(final.received).toBe(result.lastSeq)
    // After the kill every message went through the pool: the victim's blocks came back
    // (without them, nothing fits and the stream stays stalled).
    expect(after.poolMessages - atKill.poolMessages).toBe(after.received - atKill.received)
    expect(pub.nodeErrors).toEqual([])
    expect(survivor.nodeErrors).toEqual([])
  })
})
