// Ending a node when a peer does not cooperate: a subscriber process that is stopped
// (kill -STOP) reads nothing, so a publishing node's links cannot flush.
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { CLOSE_TIMEOUT_MS } from '../src/node.ts'
import { connect, type PubSubNode } from '../src/index.ts'
import { killAll, Peer, uniqueDomain } from './helpers.ts'

const nodes: PubSubNode[] = []
const stopped: Peer[] = []

afterEach(async () => {
  for (const peer of stopped.splice(0)) if (peer.alive) peer.process.kill('SIGCONT')
  await Promise.all(nodes.splice(0).map((node) => node.destroy()))
  await killAll()
})

async function node(domain: string, name: string): Promise<PubSubNode> {
  const created = await connect({ domain, name })
  nodes.push(created)
  return created
}

/** Settles with how the promise ended, or 'pending' after `ms` (a hang becomes a failure). */
async function within(promise: Promise<unknown>, ms: number): Promise<'done' | 'pending'> {
  let timer: NodeJS.Timeout | undefined
  const result = await Promise.race([
    promise.then(() => 'done' as const),
    new Promise<'pending'>((resolve) => {
      timer = setTimeout(() => resolve('pending'), ms)
    }),
  ])
  clearTimeout(timer)
  return result
}

describe('close() and destroy() with a subscriber that reads nothing', () => {
  it('destroy() cuts a pending close() short; close() alone gives up at its deadline', async () => {
    const domain = uniqueDomain('stuck-close')
    const topic = 'stuck'
    // The hub stays in this process, on a node that is not part of the test.
    await node(domain, 'hub')
    const victim = await Peer.start('victim')
    await victim.connect(domain)
    // Lossy with a wide window: the publishers may send far more than the socket buffer
    // holds, so the rest waits in their channels' queues.
    await victim.subscribe(topic, { queueSize: 4096 })
    const rescued = await node(domain, 'rescued')
    const patient = await node(domain, 'patient')
    const errors: { code?: unknown }[] = []
    patient.on('error', (error) => errors.push(error as { code?: unknown }))
    const publishers = [rescued.publisher(topic), patient.publisher(topic)]
    await Promise.all(publishers.map((publisher) => publisher.waitForSubscribers()))

    victim.process.kill('SIGSTOP')
    stopped.push(victim)
    const payload = new Uint8Array(64)
    for (let n = 0; n < 1000; n++) {
      for (const publisher of publishers) expect(publisher.publish(payload)).toBe(true)
      if (n % 64 === 0) await sleep(0)
    }

    const patientClose = patient.close()
    const startedAt = Date.now()
    const rescuedClose = rescued.close()
    // Both wait for a peer that reads nothing (checked so the test exercises that case).
    expect(await within(rescuedClose, 200)).toBe('pending')

    const reason = new Error('cut')
    const destroyedAt = Date.now()
    const destroy = rescued.destroy(reason)
    // Generous bound, well under the close deadline: destroy() does not wait for the peer.
    expect(await within(Promise.all([destroy, rescuedClose]), CLOSE_TIMEOUT_MS - 1000)).toBe('done')
    console.log(`[lifecycle] destroy() ended a stuck close() in ${Date.now() - destroyedAt} ms`)
    expect(await rescued.closed).toBe(reason)

    // close() alone: the links are cut at the deadline, and that is reported.
    expect(await within(patientClose, CLOSE_TIMEOUT_MS + 10_000)).toBe('done')
    console.log(`[lifecycle] close() gave up on the stopped peer after ${Date.now() - startedAt} ms`)
    expect(await patient.closed).toBeUndefined()
    expect(errors.map((error) => error.code)).toContain('ERR_PUBSUB_LINK')
  })
})
