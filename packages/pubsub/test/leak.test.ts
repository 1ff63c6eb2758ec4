// No leaks after heavy two-way traffic: 10,000 messages each way between two processes
// (1 KiB and 64 KiB mixed, both directions at once), then every process, the hub's too, is
// back to its baseline of fds, memfd fds and memfd mappings, and /dev/shm is unchanged.
import { afterAll, describe, expect, it } from 'vitest'
import { type Counts, killAll, Peer, type SubStats, uniqueDomain } from './helpers.ts'

const KiB = 1024
const TOTAL = 10_000
// Each round: many small messages, then a few large ones, so both sizes interleave over time.
const ROUNDS = 10
const SMALL_PER_ROUND = 900
const LARGE_PER_ROUND = 100

/** Publishes TOTAL messages of mixed sizes, lossless; resolves with the last seq. */
async function publishMixed(peer: Peer, key: string): Promise<number> {
  let published = 0
  let lastSeq = 0
  for (let round = 0; round < ROUNDS; round++) {
    for (const [size, count] of [
      [KiB, SMALL_PER_ROUND],
      [64 * KiB, LARGE_PER_ROUND],
    ] as const) {
      const result = await peer.publish(key, size, count, { lossless: true }, 120_000)
      published += result.published
      lastSeq = result.lastSeq
    }
  }
  expect(published, peer.label).toBe(TOTAL)
  return lastSeq
}

async function receivedAll(peer: Peer, key: string): Promise<SubStats> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const stats = await peer.stats(key)
    if (stats.received >= TOTAL || Date.now() > deadline) return stats
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const sameAs = (baseline: Counts) => (now: Counts) =>
  now.fds === baseline.fds && now.memfdFds === baseline.memfdFds && now.memfdMaps === baseline.memfdMaps

describe('10,000 messages each way between two processes', () => {
  afterAll(killAll)

  it('leaves no fd, memfd, mapping or /dev/shm entry behind in any process', async () => {
    const domain = uniqueDomain('leak')
    // The hub in a process of its own, so its bookkeeping is checked apart from the data path.
    const [hub, a, b] = await Promise.all([Peer.start('hub'), Peer.start('a'), Peer.start('b')])
    expect((await hub.connect(domain)).isHub).toBe(true)
    expect((await a.connect(domain)).isHub).toBe(false)
    expect((await b.connect(domain)).isHub).toBe(false)

    const aPub = await a.publisher('a-to-b')
    const bPub = await b.publisher('b-to-a')
    const bSub = await b.subscribe('a-to-b', { policy: 'wait', queueSize: 16 })
    const aSub = await a.subscribe('b-to-a', { policy: 'wait', queueSize: 16 })
    // Links up both ways before the baseline: they are part of the steady state.
    expect(await a.request('wait-subscribers', { key: aPub, count: 1 })).toBe(1)
    expect(await b.request('wait-subscribers', { key: bPub, count: 1 })).toBe(1)

    const peers = [hub, a, b]
    const baseline = await Promise.all(peers.map((peer) => peer.counts()))

    const [aLast, bLast] = await Promise.all([publishMixed(a, aPub), publishMixed(b, bPub)])
    for (const [peer, key, lastSeq] of [
      [b, bSub, aLast],
      [a, aSub, bLast],
    ] as const) {
      const stats = await receivedAll(peer, key)
      expect(stats, peer.label).toMatchObject({ received: TOTAL, lost: 0, bad: 0, outOfOrder: 0, lastSeq, held: 0, closedWith: null })
      expect([...stats.sizes].sort((x, y) => x - y), peer.label).toEqual([KiB, 64 * KiB])
    }

    // Closes still in flight (the last frames' fds) get a moment to land.
    const after = await Promise.all(peers.map((peer, index) => peer.settleCounts(sameAs(baseline[index] as Counts))))
    for (const [index, peer] of peers.entries()) {
      const before = baseline[index] as Counts
      const now = after[index] as Counts
      console.log(`${peer.label}: baseline ${JSON.stringify(before)} after ${JSON.stringify(now)}`)
      expect(now, peer.label).toEqual(before)
    }
    for (const peer of peers) expect(peer.nodeErrors, peer.label).toEqual([])
  })
})
