// kill -9 mid-stream, of a publisher, of a subscriber and of the process that runs the
// topology hub, for every transport. The survivors notice (how fast is printed, not asserted:
// the target is 100 ms), keep going, and keep nothing of the dead: no fd, no memfd mapping, no
// eventfd, no /dev/shm entry. With 'pool', what a publisher keeps while it lives is exactly its
// pool (and the ring and doorbells of each link it still has), and the pool blocks a killed
// subscriber held come back at once.
import { readdirSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { TRANSPORTS } from '../src/index.ts'
import {
  type CountEvent,
  expectSettled,
  type HubEvent,
  hubThreadsUp,
  killAll,
  monotonic,
  Peer,
  plusPool,
  type SubStats,
  uniqueDomain,
} from './helpers.ts'

const SIZE = 64 * 1024
/** A small pool where a test needs it to run out: 16 blocks of SIZE. */
const SMALL_POOL = 16 * SIZE
const INTERVAL_MS = 3
const TOPIC = 'frames'
/** Messages of the lossless publish a subscriber is killed in the middle of. */
const COUNT = 250

/** The subscriber's received count at a moment (CLOCK_MONOTONIC ns). */
interface Sample {
  t: bigint
  received: number
}

const devShmEntries = (): number => readdirSync('/dev/shm').length
const millis = (ns: bigint): string => (Number(ns) / 1e6).toFixed(1)

/** Polls a subscription's stats until `done` holds. */
async function statsUntil(
  peer: Peer,
  key: string,
  done: (stats: SubStats) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<SubStats> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const stats = await peer.stats(key)
    if (done(stats)) return stats
    if (Date.now() > deadline) throw new Error(`${peer.label}: ${what} did not happen within ${timeoutMs} ms: ${JSON.stringify(stats)}`)
    await sleep(20)
  }
}

/** Polls a peer's topology until its live nodes are exactly `ids`. */
async function nodesUntil(peer: Peer, ids: string[], timeoutMs = 10_000): Promise<void> {
  const want = [...ids].sort()
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const nodes = (await peer.request<string[]>('nodes')).sort()
    if (JSON.stringify(nodes) === JSON.stringify(want)) return
    if (Date.now() > deadline) throw new Error(`${peer.label}: live nodes are ${nodes.join(',')}, expected ${want.join(',')}`)
    await sleep(20)
  }
}

/** The first count event of `kind` reaching `count` after `after`. */
function countEvent(peer: Peer, kind: CountEvent['kind'], count: number, after: bigint): CountEvent | undefined {
  return peer.countEvents.find((event) => event.kind === kind && event.count === count && event.t > after)
}

/** The first hub change after `after` to a hub other than `old`. */
function newHub(peer: Peer, old: string, after: bigint): HubEvent | undefined {
  return peer.hubEvents.find((event) => event.t > after && event.hub.id !== old)
}

describe.each(TRANSPORTS)('kill -9 mid-stream (%s)', (transport) => {
  afterEach(killAll)
  const start = (label: string): Promise<Peer> => Peer.start(label, [], { transport })

  it('publisher killed: the subscriber sees it go, got only intact messages, and keeps nothing of it', async () => {
    const domain = uniqueDomain(`kill-pub-${transport}`)
    const shmBefore = devShmEntries()
    const [hub, sub, pub] = await Promise.all([start('hub'), start('subscriber'), start('publisher')])
    // A separate hub: the kill takes down a publisher only, not the topology.
    const hubInfo = await hub.connect(domain)
    const subInfo = await sub.connect(domain)
    const pubInfo = await pub.connect(domain)
    expect([hubInfo.isHub, subInfo.isHub, pubInfo.isHub]).toEqual([true, false, false])
    // Before any baseline: the topology's threads (its hub's, and its successor's).
    await hubThreadsUp([hub.pid, sub.pid, pub.pid])

    // Lossless and a little slower than the stream: at the kill, messages are queued at the
    // subscriber and in flight on the link.
    const subKey = await sub.subscribe(TOPIC, { policy: 'wait', queueSize: 16, delayMs: INTERVAL_MS })
    // Before any link or message: what the subscriber must come back to.
    const baseline = await sub.counts()
    const baselineFds = await sub.fdTargets()
    expect(baseline).toMatchObject({ memfdFds: 0, memfdMaps: 0 })

    const pubKey = await pub.publisher(TOPIC)
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    await sub.request('wait-publishers', { key: subKey, count: 1 })
    await pub.request('stream', { key: pubKey, size: SIZE, intervalMs: INTERVAL_MS })
    await statsUntil(sub, subKey, (stats) => stats.received >= 50, '50 messages received')
    if (transport === 'pool') {
      // Mid-stream, nothing per message: the publisher's pool, the link's ring and doorbells.
      const streaming = await sub.counts()
      expect(streaming).toMatchObject({ memfdFds: 2, memfdMaps: 2, poolMaps: 1, ringMaps: 1, eventFds: baseline.eventFds + 2 })
    }

    const killedAt = pub.kill()
    await sub.waitFor(() => countEvent(sub, 'publishers', 0, killedAt) !== undefined, 'publisher count 0')
    const drop = countEvent(sub, 'publishers', 0, killedAt) as CountEvent
    console.log(`[kill] publisher killed -> subscriber sees 0 publishers after ${millis(drop.t - killedAt)} ms`)
    expect((await pub.exited).signal).toBe('SIGKILL')

    // What was queued when the publisher died is still handed out: contiguous and intact.
    const settled = await expectSettled(sub, baseline, baselineFds)
    const stats = await sub.stats(subKey)
    expect(stats).toMatchObject({ bad: 0, outOfOrder: 0, lost: 0, firstSeq: 1, held: 0, sizes: [SIZE], closedWith: null })
    expect(stats.received).toBeGreaterThanOrEqual(50)
    expect(stats.received).toBe(stats.lastSeq)
    expect(settled).toMatchObject({ fds: baseline.fds, memfdFds: 0, memfdMaps: 0, eventFds: baseline.eventFds })
    await nodesUntil(sub, [hubInfo.id, subInfo.id])
    expect(await sub.request('counts-of', { key: subKey })).toBe(0)
    // A publisher dying is not the subscriber's error.
    expect(sub.nodeErrors).toEqual([])
    expect(devShmEntries()).toBeLessThanOrEqual(shmBefore)
  })

  it('subscriber killed: the publisher sees it go and keeps serving the other subscriber', async () => {
    const domain = uniqueDomain(`kill-sub-${transport}`)
    const shmBefore = devShmEntries()
    const [hub, pub, victim, survivor] = await Promise.all([start('hub'), start('publisher'), start('victim'), start('survivor')])
    const hubInfo = await hub.connect(domain)
    const pubInfo = await pub.connect(domain)
    const victimInfo = await victim.connect(domain)
    const survivorInfo = await survivor.connect(domain)
    expect([hubInfo.isHub, pubInfo.isHub, victimInfo.isHub, survivorInfo.isHub]).toEqual([true, false, false, false])
    await hubThreadsUp([hub.pid, pub.pid, victim.pid, survivor.pid])

    // A small pool (16 blocks), so the blocks the victim holds when it dies matter (below).
    const pubKey = await pub.publisher(TOPIC, { poolSize: SMALL_POOL })
    const survivorKey = await survivor.subscribe(TOPIC, { policy: 'wait', queueSize: 16 })
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    // One link (to the survivor), nothing published: what the publisher must come back to.
    const baseline = await pub.counts()
    const baselineFds = await pub.fdTargets()
    expect(baseline).toMatchObject({ memfdFds: 0, memfdMaps: 0 })

    // A slow lossless victim: the publisher is held back by it (waiting in ready()), with
    // messages in flight to it, when it dies. It also holds messages: the newest VICTIM_HELD
    // (maxHeld releases older ones), and what waits in its queue.
    const VICTIM_HELD = 4
    const victimKey = await victim.subscribe(TOPIC, { policy: 'wait', queueSize: 4, delayMs: 15, keep: true, maxHeld: VICTIM_HELD })
    await pub.request('wait-subscribers', { key: pubKey, count: 2 })
    const streaming = pub.publish(pubKey, SIZE, COUNT, { lossless: true, intervalMs: INTERVAL_MS })
    await statsUntil(victim, victimKey, (stats) => stats.received >= 20, '20 messages received')

    const killedAt = victim.kill()
    await pub.waitFor(() => countEvent(pub, 'subscribers', 1, killedAt) !== undefined, 'subscriber count 1')
    const drop = countEvent(pub, 'subscribers', 1, killedAt) as CountEvent
    console.log(`[kill] subscriber killed -> publisher sees 1 subscriber (of 2) after ${millis(drop.t - killedAt)} ms`)
    expect((await victim.exited).signal).toBe('SIGKILL')

    // The publish under way (the kill came in its middle) finishes, to the survivor alone.
    const atDrop = await survivor.stats(survivorKey)
    expect(atDrop.lastSeq).toBeLessThan(COUNT)
    const streamed = await streaming
    expect(streamed).toMatchObject({ published: COUNT, firstSeq: 1, lastSeq: COUNT })
    // The victim did hold it back.
    expect(streamed.refused).toBeGreaterThan(0)
    console.log(`[kill] lossless publish of ${COUNT} across the kill: refused ${streamed.refused} times for back-pressure`)
    // A later publish returns normally and reaches the survivor.
    const more = await pub.publish(pubKey, SIZE, 20, { lossless: true })
    expect(more).toMatchObject({ published: 20, firstSeq: COUNT + 1, lastSeq: COUNT + 20 })
    expect(await statsUntil(survivor, survivorKey, (s) => s.lastSeq >= more.lastSeq, 'the later messages')).toMatchObject({
      lastSeq: more.lastSeq,
    })

    // What the victim held came back: the survivor now holds KEPT messages at once (a second
    // subscription that keeps them), which with 'pool' fit in the 16 blocks only if the
    // victim's (at least VICTIM_HELD) did. Else the lossless publish waits for room for ever.
    const KEPT = 16 - VICTIM_HELD + 1
    const keeperKey = await survivor.subscribe(TOPIC, { policy: 'wait', queueSize: 16, keep: true })
    await pub.request('wait-subscribers', { key: pubKey, count: 2 })
    const kept = await pub.publish(pubKey, SIZE, KEPT, { lossless: true }, 20_000)
    expect(kept).toMatchObject({ published: KEPT, lastSeq: more.lastSeq + KEPT })
    expect(await statsUntil(survivor, keeperKey, (s) => s.received >= KEPT, 'the kept messages')).toMatchObject({
      received: KEPT,
      held: KEPT,
      bad: 0,
      lost: 0,
      firstSeq: more.lastSeq + 1,
    })
    await survivor.request('release-held', { key: keeperKey })
    await survivor.request('unsubscribe', { key: keeperKey })

    const stats = await statsUntil(survivor, survivorKey, (s) => s.lastSeq >= kept.lastSeq, 'the kept messages')
    expect(stats).toMatchObject({ bad: 0, outOfOrder: 0, lost: 0, firstSeq: 1, lastSeq: kept.lastSeq, sizes: [SIZE] })
    expect(stats.received).toBe(kept.lastSeq)
    expect(BigInt(stats.lastAt)).toBeGreaterThan(killedAt)

    // Nothing of the victim stays at the publisher: no memfd, no mapping, no link. With
    // 'pool', it keeps its pool and the survivor's link (ring and doorbells); the victim's
    // ring and doorbells are gone.
    await expectSettled(pub, transport === 'pool' ? plusPool(baseline, 1, 1) : baseline, baselineFds)
    await nodesUntil(pub, [hubInfo.id, pubInfo.id, survivorInfo.id])
    expect(await pub.request('counts-of', { key: pubKey })).toBe(1)
    expect(pub.countEvents.filter((event) => event.kind === 'subscribers').at(-1)?.count).toBe(1)
    expect(pub.nodeErrors).toEqual([])
    expect(devShmEntries()).toBeLessThanOrEqual(shmBefore)
  })

  it('subscriber stopped, then killed: what the publisher queued or kept for it is freed', async () => {
    const domain = uniqueDomain(`kill-stopped-sub-${transport}`)
    const shmBefore = devShmEntries()
    const [hub, pub, victim] = await Promise.all([start('hub'), start('publisher'), start('victim')])
    const hubInfo = await hub.connect(domain)
    const pubInfo = await pub.connect(domain)
    expect([hubInfo.isHub, pubInfo.isHub, (await victim.connect(domain)).isHub]).toEqual([true, false, false])
    await hubThreadsUp([hub.pid, pub.pid, victim.pid])
    // A small pool (16 blocks), so what the stopped subscriber pins matters (below).
    const pubKey = await pub.publisher(TOPIC, { poolSize: SMALL_POOL })
    const baseline = await pub.counts()
    const baselineFds = await pub.fdTargets()

    // A lossy subscription with a wide window whose process stops reading.
    await victim.subscribe(TOPIC, { queueSize: 4096 })
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    victim.process.kill('SIGSTOP')
    await pub.request('stream', { key: pubKey, size: SIZE, intervalMs: 1 })
    let backlog: string
    if (transport === 'segment') {
      // Once its socket is full, the publisher queues frames, each holding a duplicate of its memfd.
      const queued = await pub.settleCounts((counts) => counts.memfdFds >= 100)
      expect(queued.memfdFds).toBeGreaterThanOrEqual(100)
      backlog = `${queued.memfdFds} frames queued for it`
    } else {
      // Its ring entries are never taken, so it pins blocks of the pool; once it holds half,
      // it is skipped (its `lost` would show it). The publisher queues nothing for it: it
      // holds its pool and the link's ring and doorbells, whatever it publishes.
      const deadline = Date.now() + 10_000
      while ((await pub.request<number>('seq', { key: pubKey })) < 200 && Date.now() < deadline) await sleep(20)
      const stalled = await pub.counts()
      expect(stalled).toMatchObject({ memfdFds: 2, memfdMaps: 2, poolMaps: 1, ringMaps: 1, segmentFds: 0, eventFds: baseline.eventFds + 2 })
      backlog = `nothing queued for it, ${await pub.request<number>('seq', { key: pubKey })} published`
    }

    const killedAt = victim.kill()
    await pub.waitFor(() => countEvent(pub, 'subscribers', 0, killedAt) !== undefined, 'subscriber count 0')
    const drop = countEvent(pub, 'subscribers', 0, killedAt) as CountEvent
    console.log(`[kill] stopped subscriber killed (${backlog}) -> publisher sees 0 subscribers after ${millis(drop.t - killedAt)} ms`)
    const stopped = await pub.request<{ published: number }>('stop', { key: pubKey })
    expect(stopped.published).toBeGreaterThanOrEqual(100)

    // What it pinned came back: a subscriber (in the hub's process) now holds KEPT messages at
    // once, which with 'pool' fit in the 16 blocks only if the victim's (up to half) did.
    const KEPT = 16 / 2 + 1
    const keeperKey = await hub.subscribe(TOPIC, { policy: 'wait', keep: true })
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    expect(await pub.publish(pubKey, SIZE, KEPT, { lossless: true }, 20_000)).toMatchObject({ published: KEPT })
    expect(await statsUntil(hub, keeperKey, (s) => s.received >= KEPT, 'the kept messages')).toMatchObject({
      received: KEPT,
      held: KEPT,
      bad: 0,
      lost: 0,
    })
    await hub.request('release-held', { key: keeperKey })
    await hub.request('unsubscribe', { key: keeperKey })
    await pub.waitFor(() => pub.countEvents.at(-1)?.count === 0, 'subscriber count 0')

    // With 'pool', the publisher keeps its pool while it lives, and nothing else.
    await expectSettled(pub, transport === 'pool' ? plusPool(baseline, 1, 0) : baseline, baselineFds)
    await nodesUntil(pub, [hubInfo.id, pubInfo.id])
    expect(pub.nodeErrors).toEqual([])
    expect(devShmEntries()).toBeLessThanOrEqual(shmBefore)
  })

  it('hub killed: data keeps flowing, losslessly, and both survivors agree on a new hub', async () => {
    const domain = uniqueDomain(`kill-hub-${transport}`)
    const shmBefore = devShmEntries()
    const [hub, pub, sub] = await Promise.all([start('hub'), start('publisher'), start('subscriber')])
    // The third peer connects first, so it runs the hub.
    const hubInfo = await hub.connect(domain)
    const pubInfo = await pub.connect(domain)
    const subInfo = await sub.connect(domain)
    expect([hubInfo.isHub, pubInfo.isHub, subInfo.isHub]).toEqual([true, false, false])
    // The first 'hub' event follows the connect reply.
    for (const peer of [pub, sub]) {
      await peer.waitFor(() => peer.hubEvents.length > 0, 'the first hub')
      expect(peer.hubEvents.map((event) => event.hub.id)).toEqual([hubInfo.id])
    }
    const oldEpoch = (sub.hubEvents.at(-1) as HubEvent).hub.epoch

    // Lossless, so any message lost in the failover shows as a gap.
    const subKey = await sub.subscribe(TOPIC, { policy: 'wait', queueSize: 16 })
    const pubKey = await pub.publisher(TOPIC)
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })
    await sub.request('wait-publishers', { key: subKey, count: 1 })
    await pub.request('stream', { key: pubKey, size: SIZE, intervalMs: INTERVAL_MS })
    const atKill = await statsUntil(sub, subKey, (stats) => stats.received >= 30, '30 messages received')

    const killedAt = hub.kill()
    // Sample the subscriber through the failover.
    const samples: Sample[] = [{ t: killedAt, received: atKill.received }]
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const stats = await sub.stats(subKey)
        samples.push({ t: monotonic(), received: stats.received })
        await sleep(20)
      }
    })()
    try {
      await Promise.all([
        pub.waitFor(() => newHub(pub, hubInfo.id, killedAt) !== undefined, 'a new hub'),
        sub.waitFor(() => newHub(sub, hubInfo.id, killedAt) !== undefined, 'a new hub'),
      ])
      // The failover is over once the new hub has declared the old one's node gone.
      await Promise.all([nodesUntil(pub, [pubInfo.id, subInfo.id]), nodesUntil(sub, [pubInfo.id, subInfo.id])])
      const settledAt = monotonic()
      // Watch as long again as the reconnect grace (1 s) a new hub may give a node.
      await sleep(1000)
      sampling = false
      await sampler
      const pubHub = newHub(pub, hubInfo.id, killedAt) as HubEvent
      const subHub = newHub(sub, hubInfo.id, killedAt) as HubEvent
      const where = pubHub.hub.id === pubInfo.id ? 'publisher' : 'subscriber'
      console.log(
        `[kill] hub killed -> new hub (in the ${where}) seen by publisher after ${millis(pubHub.t - killedAt)} ms, ` +
          `by subscriber after ${millis(subHub.t - killedAt)} ms; old hub's node gone after ${millis(settledAt - killedAt)} ms`,
      )

      // Both follow the same new hub, which runs in one of them.
      expect(subHub.hub.id).toBe(pubHub.hub.id)
      expect([pubInfo.id, subInfo.id]).toContain(pubHub.hub.id)
      expect(pubHub.hub.epoch).toBeGreaterThan(oldEpoch)
      expect(pubHub.hub.epoch).toBe(subHub.hub.epoch)
      const isHub = [await pub.request<boolean>('is-hub'), await sub.request<boolean>('is-hub')]
      expect(isHub).toEqual([pubHub.hub.id === pubInfo.id, subHub.hub.id === subInfo.id])
      expect([pubHub.hub.self, subHub.hub.self]).toEqual(isHub)

      // Deliveries never stopped: the count grew in every quarter of the watch.
      const end = samples.at(-1) as Sample
      const span = end.t - killedAt
      let stall = 0n
      let since = killedAt
      for (let i = 1; i < samples.length; i++) {
        const [prev, cur] = [samples[i - 1], samples[i]] as [Sample, Sample]
        expect(cur.received).toBeGreaterThanOrEqual(prev.received)
        if (cur.received > prev.received) {
          if (cur.t - since > stall) stall = cur.t - since
          since = cur.t
        }
      }
      console.log(
        `[kill] hub failover: ${end.received - atKill.received} messages in ${millis(span)} ms; ` +
          `longest time between samples that saw growth ${millis(stall)} ms`,
      )
      for (let quarter = 0n; quarter < 4n; quarter++) {
        const from = killedAt + (span * quarter) / 4n
        const to = killedAt + (span * (quarter + 1n)) / 4n
        const first = samples.filter((sample) => sample.t <= from).at(-1) as Sample
        const last = samples.filter((sample) => sample.t <= to).at(-1) as Sample
        expect(last.received, `growth in quarter ${quarter} of the watch`).toBeGreaterThan(first.received)
      }
    } finally {
      sampling = false
      await sampler
    }

    // Lossless across the failover: every message from seq 1 to the last, intact.
    const stopped = await pub.request<{ lastSeq: number }>('stop', { key: pubKey })
    const stats = await statsUntil(sub, subKey, (s) => s.lastSeq >= stopped.lastSeq && s.held === 0, 'the last message')
    expect(stats).toMatchObject({
      bad: 0,
      outOfOrder: 0,
      lost: 0,
      firstSeq: 1,
      lastSeq: stopped.lastSeq,
      sizes: [SIZE],
      closedWith: null,
    })
    expect(stats.received).toBe(stopped.lastSeq)
    expect(BigInt(stats.lastAt)).toBeGreaterThan(killedAt)

    // The counts never dropped, indeed never changed: no endpoint went down and came back.
    expect(pub.countEvents.filter((event) => event.kind === 'subscribers' && event.count === 0)).toEqual([])
    expect(sub.countEvents.filter((event) => event.kind === 'publishers' && event.count === 0)).toEqual([])
    expect(pub.countEvents.filter((event) => event.t > killedAt)).toEqual([])
    expect(sub.countEvents.filter((event) => event.t > killedAt)).toEqual([])
    expect(await pub.request('counts-of', { key: pubKey })).toBe(1)
    expect(await sub.request('counts-of', { key: subKey })).toBe(1)
    expect(pub.nodeErrors).toEqual([])
    expect(sub.nodeErrors).toEqual([])

    // With the stream stopped, neither holds a payload: with 'segment' no memfd at all; with
    // 'pool' each holds the publisher's pool and the link's ring, and no segment.
    const live = transport === 'pool' ? 1 : 0
    for (const peer of [pub, sub]) {
      const want = { memfdFds: 2 * live, memfdMaps: 2 * live, poolMaps: live, ringMaps: live, segmentFds: 0, segmentMaps: 0 }
      const counts = await peer.settleCounts((c) => c.memfdFds === want.memfdFds && c.memfdMaps === want.memfdMaps)
      expect(counts, peer.label).toMatchObject(want)
    }
    // The publisher closed, nothing of the data path stays in either.
    await pub.request('close-publisher', { key: pubKey })
    for (const peer of [pub, sub]) {
      const counts = await peer.settleCounts((c) => c.memfdFds === 0 && c.memfdMaps === 0)
      expect(counts, peer.label).toMatchObject({ memfdFds: 0, memfdMaps: 0 })
    }
    expect(devShmEntries()).toBeLessThanOrEqual(shmBefore)
  })
})
