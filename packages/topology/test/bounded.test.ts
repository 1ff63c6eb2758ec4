// 10,000 join/leave cycles against one long-lived hub: the history every client holds stays
// bounded (live nodes' events plus a tail of departed ones, set by historyTail), a client that
// joins afterwards receives only that bounded history, and no process leaks an fd per cycle.
import { afterAll, describe, expect, it } from 'vitest'
import { type NodeProcess, sleep, spawnNode, stopAll, uniqueDomain } from './helpers.ts'

const CYCLES = 10_000
const TAIL = 100

afterAll(stopAll)

interface HistoryInfo {
  length: number
  changeCounts: Record<string, number>
}

/** The node's history length and change counts, once it has seen all CYCLES node-downs (at most 10 s). */
async function settledHistory(node: NodeProcess): Promise<HistoryInfo> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const info = await node.request<HistoryInfo>('history')
    if ((info.changeCounts['node-down'] ?? 0) >= CYCLES || Date.now() > deadline) return info
    await sleep(20)
  }
}

describe('bounded history under join/leave churn', () => {
  it(`${CYCLES} join()+close() cycles leave a history of live nodes plus a tail of ${TAIL}`, async () => {
    const domain = uniqueDomain('bounded')
    const options = { domain, historyTail: TAIL }
    // quiet: the hub and the observer count their 20,000 changes instead of forwarding each.
    const hub = spawnNode('hub', { join: { ...options, name: 'hub' }, quiet: true })
    const observer = spawnNode('observer')
    const churner = spawnNode('churner')
    const late = spawnNode('late')
    await Promise.all([hub, observer, churner, late].map((proc) => proc.ready))
    const hubJoin = await hub.joined()
    expect(hubJoin.snapshot.isHub).toBe(true)
    await observer.join({ join: { ...options, name: 'observer' }, quiet: true })
    const hubFds = await hub.counts(false)

    const result = await churner.request<{ count: number; ms: number }>('churn', { count: CYCLES, options }, 120_000)
    console.log(`${CYCLES} join()+close() cycles: ${result.ms.toFixed(0)} ms (${((CYCLES / result.ms) * 1000).toFixed(0)}/s)`)

    // The observer saw every short-lived node come and go, each exactly once (the last
    // node-left may still be on its way when the churner's close() resolves)...
    const observed = await settledHistory(observer)
    expect(observed.changeCounts).toEqual({ 'node-up': CYCLES + 2, 'node-down': CYCLES })
    // ...and holds the 2 live nodes' node-joined plus at most the tail: each departed node
    // leaves 2 events (joined, left), and the hub compacts once 1.25 x tail have departed.
    const liveEvents = 2
    expect(observed.length).toBeGreaterThan(liveEvents)
    expect(observed.length).toBeLessThanOrEqual(liveEvents + 3 * TAIL)
    const atHub = await settledHistory(hub)
    expect(atHub.length).toBeLessThanOrEqual(liveEvents + 3 * TAIL)
    expect(atHub.changeCounts).toEqual({ 'node-up': CYCLES + 2, 'node-down': CYCLES })

    // A node joining now gets only the bounded history (its welcome), and sees just the live nodes.
    const lateJoin = await late.join({ join: { ...options, name: 'late' } })
    expect(lateJoin.initialHistory).toBeLessThanOrEqual(liveEvents + 1 + 3 * TAIL)
    expect(lateJoin.snapshot.nodes.map((node) => node.id).sort()).toEqual([hubJoin.id, observer.id, lateJoin.id].sort())
    console.log(`history after churn: observer ${observed.length}, hub ${atHub.length}, late joiner ${lateJoin.initialHistory} events`)

    // No fd per cycle: the hub is back where it was before the churn (plus the late joiner's
    // connection), the churner back at its pre-join baseline.
    const churned = await churner.counts()
    expect({ fds: churned.fds, sockets: churned.sockets }).toEqual(churned.baseline)
    const hubAfter = await hub.counts(true, { fds: hubFds.fds + 1, sockets: hubFds.sockets + 1 })
    expect({ fds: hubAfter.fds, sockets: hubAfter.sockets }).toEqual({ fds: hubFds.fds + 1, sockets: hubFds.sockets + 1 })
  })
})
