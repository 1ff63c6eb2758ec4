// The process holding the hub is stopped (kill -STOP, a debugger pause): nodes already joined
// keep exchanging data (the hub is not on the data path), and a new connect() fails with the
// hub's pid after its `timeout` instead of hanging.
import { afterEach, describe, expect, it } from 'vitest'
import { connect, PubSubError, TopologyError } from '../src/index.ts'
import { killAll, Peer, type SubStats, uniqueDomain } from './helpers.ts'

const stopped: Peer[] = []

afterEach(async () => {
  for (const peer of stopped.splice(0)) if (peer.alive) peer.process.kill('SIGCONT')
  await killAll()
})

/** Polls a subscription's stats until `done` holds (the deadline turns a hang into a failure). */
async function statsUntil(peer: Peer, key: string, done: (stats: SubStats) => boolean, what: string): Promise<SubStats> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const stats = await peer.stats(key)
    if (done(stats)) return stats
    if (Date.now() > deadline) throw new Error(`${peer.label}: ${what} did not happen: ${JSON.stringify(stats)}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  )
}

describe('connect() timeout', () => {
  it('is checked: ERR_PUBSUB_INVALID_ARGUMENT', async () => {
    for (const timeout of [-1, Number.NaN, '100', null]) {
      const error = await rejection(connect({ domain: uniqueDomain('timeout-arg'), timeout: timeout as number }))
      expect(PubSubError.isInstance(error), String(timeout)).toBe(true)
      expect((error as PubSubError).code).toBe('ERR_PUBSUB_INVALID_ARGUMENT')
    }
  })
})

describe('a stopped hub', () => {
  it('does not stop data between joined nodes; a new connect() times out naming its pid', async () => {
    const domain = uniqueDomain('hub-stopped')
    const [hub, pub, sub] = await Promise.all([Peer.start('hub'), Peer.start('publisher'), Peer.start('subscriber')])
    expect((await hub.connect(domain)).isHub).toBe(true)
    await pub.connect(domain)
    await sub.connect(domain)
    // Lossless: any message the stop cost would show as missing.
    const subKey = await sub.subscribe('ticks', { policy: 'wait', queueSize: 16 })
    const pubKey = await pub.publisher('ticks')
    await pub.request('wait-subscribers', { key: pubKey, count: 1 })

    hub.process.kill('SIGSTOP')
    stopped.push(hub)
    const count = 300
    const published = await pub.publish(pubKey, 4096, count, { lossless: true })
    expect(published).toMatchObject({ published: count, lastSeq: count })
    const stats = await statsUntil(sub, subKey, (s) => s.received >= count, `${count} messages`)
    expect(stats).toMatchObject({ received: count, lost: 0, bad: 0, outOfOrder: 0, lastSeq: count })

    // Meanwhile nobody new gets in, and says why.
    const startedAt = Date.now()
    const error = await rejection(connect({ domain, name: 'late', timeout: 300 }))
    const elapsed = Date.now() - startedAt
    expect(TopologyError.isInstance(error)).toBe(true)
    expect(error).toMatchObject({ code: 'ERR_TOPOLOGY_TIMEOUT', hubPid: hub.pid })
    expect((error as Error).message).toContain(String(hub.pid))
    // Generous: 300 ms was asked for; the topology's default would have waited 5000.
    expect(elapsed).toBeLessThan(4000)

    hub.process.kill('SIGCONT')
    const late = await connect({ domain, name: 'late-after-cont' })
    await late.close()
    const more = await pub.publish(pubKey, 4096, 10, { lossless: true })
    expect(more.lastSeq).toBe(count + 10)
    expect(await statsUntil(sub, subKey, (s) => s.received >= count + 10, 'the rest')).toMatchObject({ lost: 0, bad: 0 })
    expect([...pub.nodeErrors, ...sub.nodeErrors]).toEqual([])
  })
})
