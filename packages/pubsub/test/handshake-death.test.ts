// A subscribing node that dies while a publishing node is linking to it (between connect and
// admission) is not a peer that refused us: the publisher retries quietly, no 'error'.
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, type PubSubNode } from '../src/index.ts'
import { killAll, Peer, uniqueDomain } from './helpers.ts'

const nodes: PubSubNode[] = []

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.destroy()))
  await killAll()
})

/** Waits until `predicate` holds, checking every few ms (the deadline turns a hang into a failure). */
async function until(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('a subscriber that dies during the link handshake', () => {
  it('costs the publishing node no error event', async () => {
    const domain = uniqueDomain('handshake-death')
    const topic = 'doomed'
    // The hub runs in a third process, stopped while the victim dies: the publishing node
    // then learns of the death from the broken handshake alone, not from the topology.
    const hub = await Peer.start('hub')
    expect((await hub.connect(domain)).isHub).toBe(true)
    const node = await connect({ domain, name: 'publisher' })
    nodes.push(node)
    const errors: Error[] = []
    node.on('error', (error) => errors.push(error))
    const victim = await Peer.start('victim')
    const { id: victimId } = await victim.connect(domain)
    await victim.subscribe(topic)
    const endpoints = () => node.topology.snapshot().nodes.find((state) => state.node.id === victimId)?.endpoints ?? []
    await until(() => endpoints().length > 0, "the victim's subscription in the topology")

    // Stopped, it cannot admit the link: the publisher's connect is queued in its backlog, and
    // the handshake is pending (fdpass connects synchronously, before its first await).
    victim.process.kill('SIGSTOP')
    hub.process.kill('SIGSTOP')
    const pub = node.publisher(topic)
    victim.kill()
    await victim.exited
    // Room for the failed handshake to reach the node while the topology still lists the
    // victim (if it did not, the test could only pass, never fail for a wrong reason).
    await sleep(200)
    hub.process.kill('SIGCONT')
    await until(() => !node.topology.snapshot().nodes.some((state) => state.node.id === victimId), 'the victim gone')
    expect(pub.subscriberCount).toBe(0)
    const codes = (error: unknown): unknown[] =>
      error instanceof Error ? [(error as { code?: unknown }).code, ...codes(error.cause)] : []
    expect(errors.map(codes)).toEqual([])
  })
})
