// No leaks after heavy two-way traffic: 10,000 messages each way between two processes
// (1 KiB and 64 KiB mixed, both directions at once), for every transport.
// - While the publishers live, each process holds exactly the steady state of its transport:
//   'segment' nothing per message (back to the baseline taken with the links up); 'pool' its
//   own pool, the peer's pool (mapped read-only), one ring and two doorbells per link, whatever
//   the number of messages.
// - Once the publishers closed, every process, the hub's too, is back to its baseline from
//   before any link: fds, memfd fds, memfd mappings, eventfds; /dev/shm is unchanged.
import { afterAll, describe, expect, it } from 'vitest'
import { TRANSPORTS } from '../src/index.ts'
import { brief, type Counts, hubThreadsUp, killAll, Peer, plusPool, type SubStats, uniqueDomain } from './helpers.ts'

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

describe.each(TRANSPORTS)('10,000 messages each way between two processes (%s)', (transport) => {
  afterAll(killAll)

  it('leaves no fd, memfd, mapping, eventfd or /dev/shm entry behind in any process', async () => {
    const domain = uniqueDomain(`leak-${transport}`)
    // The hub in a process of its own, so its bookkeeping is checked apart from the data path.
    const [hub, a, b] = await Promise.all([
      Peer.start('hub', [], { transport }),
      Peer.start('a', [], { transport }),
      Peer.start('b', [], { transport }),
    ])
    expect((await hub.connect(domain)).isHub).toBe(true)
    expect((await a.connect(domain)).isHub).toBe(false)
    expect((await b.connect(domain)).isHub).toBe(false)
    const peers = [hub, a, b]
    await hubThreadsUp(peers.map((peer) => peer.pid))

    // Subscriptions first: no publisher yet, so no link. What every process comes back to.
    const bSub = await b.subscribe('a-to-b', { policy: 'wait', queueSize: 16 })
    const aSub = await a.subscribe('b-to-a', { policy: 'wait', queueSize: 16 })
    const unlinked = await Promise.all(peers.map((peer) => peer.counts()))
    const unlinkedFds = await Promise.all(peers.map((peer) => peer.fdTargets()))

    const aPub = await a.publisher('a-to-b')
    const bPub = await b.publisher('b-to-a')
    // Links up both ways before this baseline: they are part of the steady state.
    expect(await a.request('wait-subscribers', { key: aPub, count: 1 })).toBe(1)
    expect(await b.request('wait-subscribers', { key: bPub, count: 1 })).toBe(1)
    const linked = await Promise.all(peers.map((peer) => peer.counts()))
    const linkedFds = await Promise.all(peers.map((peer) => peer.fdTargets()))

    const [aLast, bLast] = await Promise.all([publishMixed(a, aPub), publishMixed(b, bPub)])
    for (const [peer, key, lastSeq] of [
      [b, bSub, aLast],
      [a, aSub, bLast],
    ] as const) {
      const stats = await receivedAll(peer, key)
      expect(stats, peer.label).toMatchObject({ received: TOTAL, lost: 0, bad: 0, outOfOrder: 0, lastSeq, held: 0, closedWith: null })
      expect([...stats.sizes].sort((x, y) => x - y), peer.label).toEqual([KiB, 64 * KiB])
    }

    // The steady state: nothing per message. With 'pool', each of a and b holds its own pool,
    // the other's pool and the rings of its two links (one each way); the hub is not on the
    // data path. Closes still in flight (the last frames' fds) get a moment to land.
    const steady = linked.map((base, index) => (transport === 'pool' && index > 0 ? plusPool(base as Counts, 2, 2) : (base as Counts)))
    const during = await Promise.all(peers.map((peer, index) => peer.settleTo(steady[index] as Counts, linkedFds[index] as string[])))
    for (const [index, peer] of peers.entries()) {
      const { counts, fds } = during[index] as { counts: Counts; fds: string }
      console.log(`[leak ${transport}] ${peer.label}: linked: ${brief(linked[index] as Counts)}; after traffic: ${brief(counts)}`)
      expect(counts, `${peer.label} ${fds}`).toEqual(steady[index])
    }

    // Publishers closed: the links go, and with them everything the data path held.
    await a.request('close-publisher', { key: aPub })
    await b.request('close-publisher', { key: bPub })
    const after = await Promise.all(peers.map((peer, index) => peer.settleTo(unlinked[index] as Counts, unlinkedFds[index] as string[])))
    for (const [index, peer] of peers.entries()) {
      const { counts, fds } = after[index] as { counts: Counts; fds: string }
      console.log(`[leak ${transport}] ${peer.label}: unlinked: ${brief(unlinked[index] as Counts)}; publishers closed: ${brief(counts)}`)
      expect(counts, `${peer.label} ${fds}`).toEqual(unlinked[index])
    }
    for (const peer of peers) expect(peer.nodeErrors, peer.label).toEqual([])
  })
})
