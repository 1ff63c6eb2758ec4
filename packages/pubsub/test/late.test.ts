// Late joiners: a subscriber sees only what is published after it subscribed, and
// waitForSubscribers / waitForPublishers resolve when the counterpart appears (in this
// process or another) and reject with an AbortError when their signal aborts. For every
// transport (the publishing nodes' connect() option).
import { afterEach, describe, expect, it } from 'vitest'
import { connect, type PubSubNode, TRANSPORTS, type TransportName } from '../src/index.ts'
import { killAll, Peer, type SubStats, uniqueDomain } from './helpers.ts'

const nodes: PubSubNode[] = []

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()))
  await killAll()
})

async function node(domain: string, name: string, transport: TransportName): Promise<PubSubNode> {
  const created = await connect({ domain, name, transport })
  nodes.push(created)
  return created
}

/** Polls a peer's subscription stats until `received` reaches `count` (or 30 s pass). */
async function received(peer: Peer, key: string, count: number): Promise<SubStats> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const stats = await peer.stats(key)
    if (stats.received >= count || Date.now() > deadline) return stats
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A macrotask: anything already deliverable (topology events, IPC) has been handled. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

const ABORTED = { name: 'AbortError', code: 'ERR_PUBSUB_ABORTED' }

/** Tracks a promise's settlement without letting a rejection go unhandled. */
function track(promise: Promise<void>): { settled: () => string | undefined } {
  let state: string | undefined
  promise.then(
    () => {
      state = 'resolved'
    },
    () => {
      state = 'rejected'
    },
  )
  return { settled: () => state }
}

describe.each(TRANSPORTS)('transport %s', (transport) => {
  describe('a late subscriber (separate processes)', () => {
    it('receives exactly the messages published after it subscribed', async () => {
      const domain = uniqueDomain(`late-${transport}`)
      const [publisher, early, late] = await Promise.all([
        Peer.start('publisher', [], { transport }),
        Peer.start('early', [], { transport }),
        Peer.start('late', [], { transport }),
      ])
      await publisher.connect(domain)
      await Promise.all([early.connect(domain), late.connect(domain)])
      const pubKey = await publisher.publisher('news')
      // Lossless, so the counts below are exact whatever the scheduling.
      const earlyKey = await early.subscribe('news', { policy: 'wait', queueSize: 8 })
      await publisher.request('wait-subscribers', { key: pubKey, count: 1 })

      const N = 300
      const M = 200
      const first = await publisher.publish(pubKey, 512, N, { lossless: true })
      expect(first).toMatchObject({ published: N, firstSeq: 1, lastSeq: N })
      // The early subscriber has all of the first batch before the late one exists.
      expect(await received(early, earlyKey, N)).toMatchObject({ received: N, lastSeq: N, lost: 0, bad: 0 })

      const lateKey = await late.subscribe('news', { policy: 'wait', queueSize: 8 })
      // Also late, but in a process the publisher already has a link to.
      const lateSameKey = await early.subscribe('news', { policy: 'wait', queueSize: 8 })
      // Publishing again only once the publisher reaches all three: nothing of the second batch can be missed.
      expect(await publisher.request('wait-subscribers', { key: pubKey, count: 3 })).toBe(3)
      const second = await publisher.publish(pubKey, 512, M, { lossless: true })
      expect(second).toMatchObject({ published: M, firstSeq: N + 1, lastSeq: N + M })

      for (const [peer, key] of [
        [late, lateKey],
        [early, lateSameKey],
      ] as const) {
        const lateStats = await received(peer, key, M)
        expect(lateStats.firstSeq, peer.label).toBeGreaterThan(N)
        expect(lateStats, peer.label).toMatchObject({
          received: M,
          firstSeq: N + 1,
          lastSeq: N + M,
          lost: 0,
          bad: 0,
          outOfOrder: 0,
          held: 0,
          closedWith: null,
        })
      }
      expect(await received(early, earlyKey, N + M)).toMatchObject({ received: N + M, firstSeq: 1, lastSeq: N + M, lost: 0, bad: 0 })
      // Nothing more trickles in afterwards (a late replay of the first batch would show here).
      await turn()
      expect((await late.stats(lateKey)).received).toBe(M)
      expect((await early.stats(lateSameKey)).received).toBe(M)
    })
  })

  describe('waitForSubscribers / waitForPublishers (two nodes in this process)', () => {
    it('waitForSubscribers resolves when a subscriber appears', async () => {
      const domain = uniqueDomain('wfs')
      const a = await node(domain, 'a', transport)
      const b = await node(domain, 'b', transport)
      const pub = a.publisher('t')
      const one = pub.waitForSubscribers()
      const two = pub.waitForSubscribers({ count: 2 })
      const oneState = track(one)
      const twoState = track(two)
      await turn()
      expect(pub.subscriberCount).toBe(0)
      expect(oneState.settled()).toBeUndefined()

      b.subscribe('t')
      await one
      expect(pub.subscriberCount).toBe(1)
      expect(twoState.settled()).toBeUndefined()
      // A subscription in the publisher's own node counts too.
      a.subscribe('t')
      await two
      expect(pub.subscriberCount).toBe(2)
      // Already satisfied: resolves at once.
      await pub.waitForSubscribers({ count: 2 })
    })

    it('waitForSubscribers rejects with an AbortError when its signal aborts', async () => {
      const domain = uniqueDomain('wfs-abort')
      const a = await node(domain, 'a', transport)
      const pub = a.publisher('t')
      const controller = new AbortController()
      const waiting = pub.waitForSubscribers({ signal: controller.signal })
      const state = track(waiting)
      await turn()
      expect(state.settled()).toBeUndefined()
      controller.abort()
      await expect(waiting).rejects.toMatchObject(ABORTED)
      // An already aborted signal rejects at once, even when the count is already met.
      await expect(pub.waitForSubscribers({ signal: AbortSignal.abort() })).rejects.toMatchObject(ABORTED)
      a.subscribe('t')
      await pub.waitForSubscribers()
      await expect(pub.waitForSubscribers({ signal: AbortSignal.abort() })).rejects.toMatchObject(ABORTED)
    })

    it('waitForPublishers resolves when a publisher appears', async () => {
      const domain = uniqueDomain('wfp')
      const a = await node(domain, 'a', transport)
      const b = await node(domain, 'b', transport)
      const sub = b.subscribe('t')
      const one = sub.waitForPublishers()
      const two = sub.waitForPublishers({ count: 2 })
      const oneState = track(one)
      const twoState = track(two)
      await turn()
      expect(sub.publisherCount).toBe(0)
      expect(oneState.settled()).toBeUndefined()

      a.publisher('t')
      await one
      expect(sub.publisherCount).toBe(1)
      expect(twoState.settled()).toBeUndefined()
      b.publisher('t')
      await two
      expect(sub.publisherCount).toBe(2)
      await sub.waitForPublishers({ count: 2 })
    })

    it('waitForPublishers rejects with an AbortError when its signal aborts', async () => {
      const domain = uniqueDomain('wfp-abort')
      const a = await node(domain, 'a', transport)
      const sub = a.subscribe('t')
      const controller = new AbortController()
      const waiting = sub.waitForPublishers({ signal: controller.signal })
      const state = track(waiting)
      await turn()
      expect(state.settled()).toBeUndefined()
      controller.abort(new Error('enough'))
      const error = await waiting.then(
        () => undefined,
        (reason: unknown) => reason,
      )
      expect(error).toMatchObject(ABORTED)
      expect((error as Error).cause).toMatchObject({ message: 'enough' })
      await expect(sub.waitForPublishers({ signal: AbortSignal.abort() })).rejects.toMatchObject(ABORTED)
    })
  })

  describe('waitForSubscribers / waitForPublishers across processes', () => {
    it('resolve when the counterpart appears in another process, and abort cleanly', async () => {
      const domain = uniqueDomain('wait-x')
      const peer = await Peer.start('peer', [], { transport })
      const local = await node(domain, 'local', transport)
      await peer.connect(domain)

      // This process publishes, the peer subscribes.
      const pub = local.publisher('down')
      const subscribers = pub.waitForSubscribers()
      const subscribersState = track(subscribers)
      await turn()
      expect(subscribersState.settled()).toBeUndefined()
      await peer.subscribe('down')
      await subscribers
      expect(pub.subscriberCount).toBe(1)

      // The peer publishes, this process subscribes.
      const sub = local.subscribe('up')
      const publishers = sub.waitForPublishers()
      const publishersState = track(publishers)
      await turn()
      expect(publishersState.settled()).toBeUndefined()
      const peerPub = await peer.publisher('up')
      await publishers
      expect(sub.publisherCount).toBe(1)
      // And the peer's own wait sees this process's subscription.
      expect(await peer.request('wait-subscribers', { key: peerPub, count: 1 })).toBe(1)

      // Waiting for more than exist, then aborting: rejects with an AbortError.
      const controller = new AbortController()
      const tooMany = pub.waitForSubscribers({ count: 2, signal: controller.signal })
      const tooManyPublishers = sub.waitForPublishers({ count: 2, signal: controller.signal })
      const states = [track(tooMany), track(tooManyPublishers)]
      await turn()
      expect(states.map((state) => state.settled())).toEqual([undefined, undefined])
      controller.abort()
      await expect(tooMany).rejects.toMatchObject(ABORTED)
      await expect(tooManyPublishers).rejects.toMatchObject(ABORTED)
      // The aborted waits changed nothing: the counts are intact.
      expect(pub.subscriberCount).toBe(1)
      expect(sub.publisherCount).toBe(1)
    })
  })
})
