// A node that leaves is seen as node-down by every other node within 100 ms, with the reason
// that says how it left: 'closed' for close(), 'exited' when a non-hub's connection just ends
// (process.exit, kill -9, destroy(), the hub's own destroy() and process.exit() too: the hub
// thread mints it before it goes), 'died' when the hub's process is gone (the new hub finds
// its pid dead). Measured from the observers' own CLOCK_MONOTONIC stamps against the time the
// leaver took just before leaving (or the parent took just before the kill).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { agreed, hubThreadUp, ms, type NodeProcess, spawnNode, stopAll, uniqueDomain } from './helpers.ts'

const OBSERVERS = 3
/** The bound: leave -> node-down everywhere. */
const LEAVE_BOUND_MS = 100

type How = 'close' | 'exit' | 'kill' | 'destroy'
type Role = 'hub' | 'non-hub'

const cases: { role: Role; how: How; reason: string }[] = [
  { role: 'non-hub', how: 'close', reason: 'closed' },
  { role: 'non-hub', how: 'exit', reason: 'exited' },
  { role: 'non-hub', how: 'kill', reason: 'exited' },
  { role: 'non-hub', how: 'destroy', reason: 'exited' },
  { role: 'hub', how: 'close', reason: 'closed' },
  // process.exit() of the hub's process: its client stops the hub thread on 'exit', and the
  // hub mints the node-left ('exited') before it goes, as for destroy().
  { role: 'hub', how: 'exit', reason: 'exited' },
  { role: 'hub', how: 'kill', reason: 'died' },
  // destroy() of the hub's own node: the hub hands its node-left ('exited') to the kernel
  // before it goes, so nobody waits out a grace period for a process that is alive.
  { role: 'hub', how: 'destroy', reason: 'exited' },
]

describe('leaving is seen at once, with its reason', () => {
  let observers: NodeProcess[]
  // One fresh leaver process per case, all started up front (in parallel).
  const leavers = new Map<string, NodeProcess>()

  beforeAll(async () => {
    observers = Array.from({ length: OBSERVERS }, (_, i) => spawnNode(`observer-${i}`))
    for (const { role, how } of cases) leavers.set(`${role}/${how}`, spawnNode(`leaver-${role}-${how}`))
    await Promise.all([...observers, ...leavers.values()].map((proc) => proc.ready))
  })

  afterAll(stopAll)
  // Whatever happened in a case, the observers leave its domain before the next one.
  afterEach(async () => {
    await Promise.all(observers.map((observer) => observer.close().catch(() => {})))
  })

  it.each(cases)('$role that leaves by $how: node-down ($reason) everywhere within 100 ms', async ({ role, how, reason }) => {
    await leave(role, how, reason)
  })

  async function leave(role: Role, how: How, reason: string): Promise<void> {
    const domain = uniqueDomain(`leave-${how}`)
    const leaver = leavers.get(`${role}/${how}`) as NodeProcess
    const config = { join: { domain } }
    // The first node to join becomes the hub.
    if (role === 'hub') {
      await leaver.join({ ...config, endpoints: [{ topic: 'leaving', role: 'publisher' }] })
      for (const observer of observers) await observer.join(config)
    } else {
      for (const observer of observers) await observer.join(config)
      await leaver.join({ ...config, endpoints: [{ topic: 'leaving', role: 'publisher' }] })
    }
    const leaverId = leaver.id as string
    // Everyone sees everyone (and the leaver's endpoint) before the leave.
    const marks = observers.map((observer) => observer.log.length)
    await Promise.all(
      observers.map(async (observer) => {
        await observer.waitForChange((change) => change.type === 'endpoint-up' && change.node === leaverId, 'the leaver endpoint')
        for (const other of observers) {
          await observer.waitForChange((change) => change.type === 'node-up' && change.node === other.id, 'node-up of every observer')
        }
      }),
    )
    const before = await leaver.snapshot()
    expect(before.isHub).toBe(role === 'hub')
    expect(before.nodes).toHaveLength(OBSERVERS + 1)
    // The successor (the first observer) has its hub thread standing by before the hub goes.
    if (role === 'hub') await hubThreadUp((observers[0] as NodeProcess).pid)

    let left: bigint
    switch (how) {
      case 'close':
        left = await leaver.close()
        break
      case 'destroy':
        left = await leaver.destroyClient()
        break
      case 'exit':
        left = await leaver.exit()
        break
      case 'kill':
        left = leaver.kill()
        break
    }

    const delays: number[] = []
    for (const [i, observer] of observers.entries()) {
      const down = await observer.waitForChange(
        (change) => change.type === 'node-down' && change.node === leaverId,
        `node-down of the leaver ${leaverId}`,
        marks[i],
      )
      expect(down.change.reason, `${observer.label}: reason`).toBe(reason)
      // Its endpoint went down with it (reported before the node, so no consumer sees an
      // endpoint of a node that is not up).
      const endpointDown = await observer.waitForChange(
        (change) => change.type === 'endpoint-down' && change.node === leaverId,
        'endpoint-down of the leaver endpoint',
        marks[i],
      )
      expect(endpointDown.change.reason).toBe('node-down')
      expect(endpointDown.t).toBeLessThanOrEqual(down.t)
      delays.push(ms(down.t - left))
    }
    // After the leave, the observers agree on the rest (a new hub among them if the hub left).
    const snapshots = await agreed(observers, observers.map((observer) => observer.id as string))
    const hub = snapshots[0]?.hub?.id
    if (role === 'hub') expect(observers.map((observer) => observer.id)).toContain(hub)
    else expect(hub).toBe(observers[0]?.id)
    console.log(`${role} ${how}: node-down after ${delays.map((delay) => delay.toFixed(1)).join(', ')} ms`)
    for (const delay of delays) expect(delay).toBeLessThanOrEqual(LEAVE_BOUND_MS)
    await leaver.stop()
  }
})
