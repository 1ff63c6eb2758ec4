// Idle costs nothing: a connected publisher and subscriber (and the hub's process) use no
// measurable CPU while nothing is published. No heartbeat, poll or timer runs between messages.
// For every transport: a pool link's reader must go to sleep on its doorbell once the ring is
// empty, not keep polling.
import { afterAll, describe, expect, it } from 'vitest'
import { TRANSPORTS } from '../src/index.ts'
import { cpuTicks, hubThreadsUp, killAll, Peer, uniqueDomain } from './helpers.ts'

const IDLE_MS = 2000
// utime+stime are counted in 100 Hz ticks: one tick is the resolution, not a cost.
const MAX_TICKS = 1

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

describe.each(TRANSPORTS)('an idle publisher and subscriber (separate processes, %s)', (transport) => {
  afterAll(killAll)

  it('use no measurable CPU while nothing is published', async () => {
    const domain = uniqueDomain(`idle-${transport}`)
    const [hub, publisher, subscriber] = await Promise.all([
      Peer.start('hub', [], { transport }),
      Peer.start('publisher', [], { transport }),
      Peer.start('subscriber', [], { transport }),
    ])
    expect((await hub.connect(domain)).isHub).toBe(true)
    await publisher.connect(domain)
    await subscriber.connect(domain)
    const pubKey = await publisher.publisher('quiet')
    const subKey = await subscriber.subscribe('quiet', { policy: 'wait' })
    expect(await publisher.request('wait-subscribers', { key: pubKey, count: 1 })).toBe(1)
    // The topology's threads are up (starting one costs CPU): the window measures idling only.
    await hubThreadsUp([hub.pid, publisher.pid, subscriber.pid])

    // Some traffic first: the link, the credits and the mappings have all been exercised.
    const result = await publisher.publish(pubKey, 4096, 200, { lossless: true })
    const deadline = Date.now() + 30_000
    while ((await subscriber.stats(subKey)).received < result.published && Date.now() < deadline) await sleep(20)
    expect(await subscriber.stats(subKey)).toMatchObject({ received: 200, bad: 0, held: 0 })
    expect(await publisher.request('counts-of', { key: pubKey })).toBe(1)
    // The transport under test is the one that carried it: with 'pool', the link has its ring
    // (and doorbells, at both ends), whose reader must now sleep.
    const rings = transport === 'pool' ? 1 : 0
    expect(await subscriber.counts(), 'subscriber').toMatchObject({ ringMaps: rings, poolMaps: rings, segmentMaps: 0 })
    expect(await publisher.counts(), 'publisher').toMatchObject({ ringMaps: rings, poolMaps: rings, segmentMaps: 0 })
    // Let the replies above and any post-traffic GC finish before the window opens.
    await sleep(300)

    const peers = [hub, publisher, subscriber]
    const before = peers.map((peer) => cpuTicks(peer.pid))
    // No command to the children while measuring: the IPC channel itself would cost CPU.
    await sleep(IDLE_MS)
    const after = peers.map((peer) => cpuTicks(peer.pid))

    const deltas = peers.map((peer, index) => ({ peer: peer.label, ticks: (after[index] as number) - (before[index] as number) }))
    console.log(`CPU ticks over ${IDLE_MS} ms idle: ${deltas.map(({ peer, ticks }) => `${peer} ${ticks}`).join(', ')}`)
    for (const { peer, ticks } of deltas) expect(ticks, peer).toBeLessThanOrEqual(MAX_TICKS)

    // Still connected and working after the quiet spell.
    expect(await publisher.request('counts-of', { key: pubKey })).toBe(1)
    const more = await publisher.publish(pubKey, 4096, 10, { lossless: true })
    expect(more).toMatchObject({ published: 10, lastSeq: 210 })
    while ((await subscriber.stats(subKey)).received < 210 && Date.now() < deadline) await sleep(20)
    expect(await subscriber.stats(subKey)).toMatchObject({ received: 210, lost: 0, bad: 0, lastSeq: 210 })
  })
})
