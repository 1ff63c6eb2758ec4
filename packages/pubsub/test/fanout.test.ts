// 1 publisher -> 3 subscribers, each in its own process: every message arrives, in order,
// with the right bytes, for payloads from 0 B to 64 MiB. For every transport: with 'pool',
// 64 MiB is beyond the default pool (a message larger than half of it travels as a segment),
// so both of its paths are taken.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TRANSPORTS } from '../src/index.ts'
import { killAll, Peer, uniqueDomain } from './helpers.ts'

const MiB = 1024 * 1024

describe.each(TRANSPORTS)('1 publisher -> 3 subscribers (separate processes, %s)', (transport) => {
  const domain = uniqueDomain(`fanout-${transport}`)
  let publisher: Peer
  let subscribers: Peer[]
  let pubKey: string

  beforeAll(async () => {
    publisher = await Peer.start('publisher', [], { transport })
    subscribers = await Promise.all([1, 2, 3].map((n) => Peer.start(`subscriber-${n}`)))
    await publisher.connect(domain)
    await Promise.all(subscribers.map((peer) => peer.connect(domain)))
    pubKey = await publisher.publisher('frames')
  })

  afterAll(killAll)

  // Each size gets fresh subscriptions, so per-size counts start at zero.
  it.each([
    { size: 0, count: 200 },
    { size: 1, count: 200 },
    { size: 4096, count: 200 },
    { size: MiB, count: 40 },
    { size: 64 * MiB, count: 3 },
  ])('$size B x $count: all delivered in order with the right bytes', async ({ size, count }) => {
    // Lossless, so "every message arrives" holds however slow a subscriber is.
    const keys = await Promise.all(subscribers.map((peer) => peer.subscribe('frames', { policy: 'wait', queueSize: 8 })))
    await publisher.request('wait-subscribers', { key: pubKey, count: 3 })
    const result = await publisher.publish(pubKey, size, count, { lossless: true }, 120_000)
    expect(result.published).toBe(count)
    for (const [index, peer] of subscribers.entries()) {
      const key = keys[index] as string
      let stats = await peer.stats(key)
      const deadline = Date.now() + 60_000
      while (stats.received < count && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        stats = await peer.stats(key)
      }
      expect(stats, peer.label).toMatchObject({
        received: count,
        lost: 0,
        bad: 0,
        outOfOrder: 0,
        firstSeq: result.firstSeq,
        lastSeq: result.lastSeq,
        sizes: [size],
        held: 0,
      })
      await peer.request('unsubscribe', { key })
    }
    // The publisher sees the subscriptions go.
    await publisher.waitFor(() => publisher.countEvents.at(-1)?.count === 0, 'subscriber count back to 0')
  })
})
