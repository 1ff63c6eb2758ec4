// Issue 13, "a publisher killed mid-message: subscribers never see a half-written message".
// A publisher process streams large self-checking messages (fixtures/pool-msg.ts: 1 KiB to
// 3 MiB, so filling one takes a while and a kill lands in the middle of a fill as often as
// not; those beyond half of its 4 MiB pool go as segments) and is killed -9 at a random
// moment; then again with a new publisher process, several times, half of them publishing
// through loans (filled in place in the pool the subscriber maps). The subscriber checks every
// message it gets, and again after holding some while the publisher dies: it must only ever
// see whole messages, in order and lossless ('wait'), then see the publisher go, with no
// error, and keep nothing of it.
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { uniqueDomain } from './helpers.ts'
import { killPoolChildren, PoolChild } from './fixtures/pool-driver.ts'
import type { SizeRanges } from './fixtures/pool-msg.ts'

const TOPIC = 'pub-kill'
const POOL_SIZE = 4 * 1024 * 1024
const RANGES: SizeRanges = [
  [3, 1024, 256 * 1024],
  [2, 256 * 1024 + 1, 2 * 1024 * 1024],
  [1, 2 * 1024 * 1024 + 1, 3 * 1024 * 1024],
]
const ROUNDS = 6

describe('pool transport: a publisher killed mid-message', () => {
  afterEach(killPoolChildren)

  it(`killed -9 at random moments, ${ROUNDS} times: the subscriber only ever sees whole messages, then sees the publisher go`, async () => {
    const domain = uniqueDomain('pool-pubkill')
    const sub = await PoolChild.start('subscriber')
    await sub.connect(domain)
    const subKey = await sub.subscribe(TOPIC, { policy: 'wait', queueSize: 16, hold: { count: 2, ms: 10 }, ranges: RANGES, poolSize: POOL_SIZE })
    const baseline = await sub.counts()

    for (let round = 1; round <= ROUNDS; round++) {
      const loans = round % 2 === 0
      const pub = await PoolChild.start(`publisher-${round}`)
      const { id } = await pub.connect(domain)
      const pubKey = await pub.publisher(TOPIC, { poolSize: POOL_SIZE })
      await pub.request('wait-subscribers', { key: pubKey, count: 1 })
      const countsBefore = sub.events.length
      await pub.request('stream', { key: pubKey, seed: round, ranges: RANGES, loans })
      await pub.waitFor(() => pub.events.some((e) => e.type === 'streaming'), 'the first message')
      const delay = 20 + Math.floor(Math.random() * 300)
      await sleep(delay)
      pub.kill()
      await pub.exited
      // The subscriber sees it go.
      await sub.waitFor(
        () => sub.events.slice(countsBefore).some((e) => e.type === 'count' && e.kind === 'publishers' && e.count === 0),
        `publisher ${round} gone`,
      )
      const stats = await sub.statsUntil(subKey, (s) => s.held === 0, 'held messages released')
      const from = stats.publishers[`${id}/1`] ?? Object.entries(stats.publishers).find(([key]) => key.startsWith(`${id}/`))?.[1]
      console.log(`[pool-pubkill] round ${round} (${loans ? 'loans' : 'publish'}): killed after ${delay} ms, ${from?.received ?? 0} messages`)
      expect(stats, `round ${round}`).toMatchObject({ bad: 0, badDetail: [], outOfOrder: 0, lostMismatch: 0, lost: 0, closedWith: null })
      // Whatever it got from this publisher is its stream from the first message on, no gap.
      if (from !== undefined) {
        expect(from.firstSeq).toBe(1)
        expect(from.received).toBe(from.lastSeq)
      }
    }
    const stats = await sub.stats(subKey)
    expect(Object.keys(stats.publishers).length).toBeGreaterThanOrEqual(ROUNDS - 1)
    // A publisher dying is not the subscriber's error.
    expect(sub.nodeErrors).toEqual([])
    // Nothing of the dead publishers stays: no pool mapping, no ring, no doorbell, no fd.
    const settled = await sub.request<typeof baseline>('counts')
    let now = settled
    const deadline = Date.now() + 5000
    while ((now.fds !== baseline.fds || now.memfdMaps !== baseline.memfdMaps) && Date.now() < deadline) {
      await sleep(50)
      now = await sub.counts()
    }
    expect({ fds: now.fds, memfdFds: now.memfdFds, memfdMaps: now.memfdMaps }).toEqual({
      fds: baseline.fds,
      memfdFds: baseline.memfdFds,
      memfdMaps: baseline.memfdMaps,
    })
  })
})
