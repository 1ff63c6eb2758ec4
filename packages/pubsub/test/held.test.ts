// Messages a subscriber holds on to: kept past release() they read zeros and never crash;
// dropped without release() GC reclaims their fd and mapping; and the maxHeld bound caps
// what a forgetful consumer can pin, with one warning.
import { afterEach, describe, expect, it } from 'vitest'
import { type Counts, killAll, Peer, type SubStats, uniqueDomain } from './helpers.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Touched {
  count: number
  released: number
  intact: number
  zeroed: number
}

/** A publisher process and a subscriber process in a fresh domain. */
async function pair(tag: string, subscriberArgs: string[] = []): Promise<{ pub: Peer; sub: Peer; pubKey: string }> {
  const domain = uniqueDomain(tag)
  const [pub, sub] = await Promise.all([Peer.start('publisher'), Peer.start('subscriber', subscriberArgs)])
  await pub.connect(domain)
  await sub.connect(domain)
  return { pub, sub, pubKey: await pub.publisher('held') }
}

async function received(peer: Peer, key: string, count: number): Promise<SubStats> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const stats = await peer.stats(key)
    if (stats.received >= count || Date.now() > deadline) return stats
    await sleep(20)
  }
}

const sameAs = (baseline: Counts) => (now: Counts) =>
  now.fds === baseline.fds && now.memfdFds === baseline.memfdFds && now.memfdMaps === baseline.memfdMaps

afterEach(killAll)

describe('held messages (separate processes)', () => {
  it('kept past release(), their data reads zeros and touching it never crashes', async () => {
    const { pub, sub, pubKey } = await pair('held-release')
    const key = await sub.subscribe('held', { policy: 'wait', keep: true })
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    const baseline = await sub.counts()

    const COUNT = 10
    await pub.publish(pubKey, 64 * 1024, COUNT, { lossless: true })
    expect(await received(sub, key, COUNT)).toMatchObject({ received: COUNT, bad: 0, held: COUNT })
    // Held: one fd and one mapping each, the bytes as published.
    const holding = await sub.counts()
    expect(holding.memfdFds - baseline.memfdFds).toBe(COUNT)
    expect(holding.memfdMaps - baseline.memfdMaps).toBe(COUNT)
    expect(await sub.request<Touched>('touch-kept', { key })).toEqual({ count: COUNT, released: 0, intact: COUNT, zeroed: 0 })

    // Released but still referenced: zeros, then written to, and the process lives on.
    expect(await sub.request<Touched>('touch-kept', { key, release: true })).toEqual({
      count: COUNT,
      released: COUNT,
      intact: 0,
      zeroed: COUNT,
    })
    expect((await sub.stats(key)).held).toBe(0)
    // The fds and shared pages went at release(), while the views still exist.
    const released = await sub.settleCounts(sameAs(baseline))
    expect({ memfdFds: released.memfdFds, memfdMaps: released.memfdMaps }).toEqual({
      memfdFds: baseline.memfdFds,
      memfdMaps: baseline.memfdMaps,
    })
    // Touching them again (after the writes) is still fine.
    expect((await sub.request<Touched>('touch-kept', { key })).count).toBe(COUNT)
    await sub.request('release-held', { key })

    // Healthy: it goes on receiving.
    await pub.publish(pubKey, 64 * 1024, COUNT, { lossless: true })
    expect(await received(sub, key, 2 * COUNT)).toMatchObject({ received: 2 * COUNT, bad: 0, lost: 0, closedWith: null })
    expect(sub.alive).toBe(true)
    expect(sub.nodeErrors).toEqual([])
  })

  it('dropped without release(), GC reclaims their fds and mappings and the held count', async () => {
    const { pub, sub, pubKey } = await pair('held-gc', ['--expose-gc'])
    const key = await sub.subscribe('held', { policy: 'wait', keep: true })
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    const baseline = await sub.counts()

    const COUNT = 20
    await pub.publish(pubKey, 16 * 1024, COUNT, { lossless: true })
    // V8 keeps the value of a suspended `for await` loop's last iteration reachable (the
    // fixture's consumer loop): an empty message last, which holds no fd, makes that harmless.
    await pub.publish(pubKey, 0, 1, { lossless: true })
    expect(await received(sub, key, COUNT + 1)).toMatchObject({ received: COUNT + 1, bad: 0, held: COUNT })
    const holding = await sub.counts()
    expect(holding.memfdFds - baseline.memfdFds).toBe(COUNT)
    expect(holding.memfdMaps - baseline.memfdMaps).toBe(COUNT)

    await sub.request('drop-held', { key })
    // Finalizers run after a collection, as tasks of their own: collect until they have.
    let counts = holding
    let held = COUNT
    const deadline = Date.now() + 10_000
    while ((held > 0 || !sameAs(baseline)(counts)) && Date.now() < deadline) {
      await sub.request('gc')
      counts = await sub.counts()
      held = (await sub.stats(key)).held
    }
    expect(held).toBe(0)
    expect(counts).toEqual(baseline)

    // Healthy, and new messages are tracked again.
    await pub.publish(pubKey, 16 * 1024, 5, { lossless: true })
    expect(await received(sub, key, COUNT + 6)).toMatchObject({ received: COUNT + 6, bad: 0, lost: 0, held: 5, closedWith: null })
    await sub.request('release-held', { key })
    expect((await sub.stats(key)).held).toBe(0)
    expect(sub.warnings).toEqual([])
  })

  it('maxHeld bounds what a consumer that never releases can pin, with one warning', async () => {
    const { pub, sub, pubKey } = await pair('held-max')
    const MAX_HELD = 8
    const QUEUE = 16
    const key = await sub.subscribe('held', { policy: 'wait', queueSize: QUEUE, keep: true, maxHeld: MAX_HELD })
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    const baseline = await sub.counts()

    // Two rounds: the bound holds throughout, and the warning is not repeated.
    for (const total of [20, 40]) {
      await pub.publish(pubKey, 4096, 20, { lossless: true })
      const stats = await received(sub, key, total)
      expect(stats).toMatchObject({ received: total, bad: 0, lost: 0, closedWith: null })
      expect(stats.held).toBeLessThanOrEqual(MAX_HELD)
      const counts = await sub.counts()
      expect(counts.memfdFds - baseline.memfdFds).toBeLessThanOrEqual(MAX_HELD + QUEUE)
      expect(counts.memfdMaps - baseline.memfdMaps).toBeLessThanOrEqual(MAX_HELD + QUEUE)
      // Everything is delivered, so only the held ones pin an fd and a mapping.
      expect(counts.memfdFds - baseline.memfdFds).toBe(stats.held)
      // The fixture still references every message: the newest MAX_HELD are intact, the
      // ones the bound released read zeros.
      expect(await sub.request<Touched>('touch-kept', { key })).toEqual({
        count: total,
        released: total - MAX_HELD,
        intact: MAX_HELD,
        zeroed: total - MAX_HELD,
      })
    }

    await sub.waitFor(() => sub.warnings.length > 0, 'the held-messages warning')
    const held = sub.warnings.filter((warning) => warning.code === 'IPC_PUBSUB_HELD_MESSAGES')
    expect(held).toHaveLength(1)
    expect(held[0]?.message).toContain(`more than ${MAX_HELD}`)

    // Still healthy: releasing returns to baseline, and it answers and receives.
    await sub.request('release-held', { key })
    expect((await sub.stats(key)).held).toBe(0)
    expect(await sub.settleCounts(sameAs(baseline))).toEqual(baseline)
    expect(sub.alive).toBe(true)
    expect(sub.nodeErrors).toEqual([])
  })
})
