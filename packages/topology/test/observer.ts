// The exactly-once checker shared by the tracker and ledger property tests (PROTOCOL.md §7).
import { expect } from 'vitest'
import { ChangeTracker, type TopologyChange } from '../src/changes.ts'
import type { History } from '../src/history.ts'

export const idOf = (change: TopologyChange): string =>
  change.type === 'node-up' || change.type === 'node-down' ? change.node.id : change.endpoint.id

/**
 * A tracker plus everything it reported, checking after every update: per id a prefix of
 * [up, down]; the order of §7; endpoint-up only for a node reported up; reasons as the history
 * says; the reported-up sets equal the history's up sets.
 */
export class Observer {
  readonly tracker = new ChangeTracker()
  readonly reported = new Map<string, ('up' | 'down')[]>()
  readonly all: TopologyChange[] = []

  update(history: History): TopologyChange[] {
    const changes = this.tracker.update(history)
    const rank = { 'endpoint-down': 0, 'node-down': 1, 'node-up': 2, 'endpoint-up': 3 }
    for (let i = 1; i < changes.length; i++) expect(rank[changes[i - 1]!.type]).toBeLessThanOrEqual(rank[changes[i]!.type])
    for (const change of changes) {
      const id = idOf(change)
      const list = this.reported.get(id) ?? []
      list.push(change.type.endsWith('-up') ? 'up' : 'down')
      this.reported.set(id, list)
      expect(['up', 'up,down']).toContain(list.join(','))
      switch (change.type) {
        case 'node-up':
          expect(history.isNodeUp(id)).toBe(true)
          expect(change.node).toEqual(history.nodeInfo(id))
          break
        case 'node-down':
          expect(history.isNodeUp(id)).toBe(false)
          expect(change.reason).toBe(history.leaveReason(id) ?? 'forgotten')
          break
        case 'endpoint-up':
          expect(this.reported.get(change.node.id)).toEqual(['up'])
          expect(change.endpoint.node).toBe(change.node.id)
          expect(history.isEndpointUp(id)).toBe(true)
          expect(change.endpoint).toEqual(history.endpointInfo(id))
          break
        case 'endpoint-down':
          expect(history.isEndpointUp(id)).toBe(false)
          expect(change.reason).toBe(
            history.isEndpointRemoved(id) ? 'removed' : !history.isNodeUp(change.endpoint.node) ? 'node-down' : 'forgotten',
          )
          expect(change.node.id).toBe(change.endpoint.node)
          break
      }
    }
    this.all.push(...changes)
    // Node-ups come in join order.
    const ups = changes.filter((change) => change.type === 'node-up').map(idOf)
    const order = history.upNodes()
    expect(ups).toEqual(order.filter((id) => ups.includes(id)))
    // After every update, what is reported up is what the history says is up.
    expect(this.tracker.nodes().map((info) => info.id).sort()).toEqual(history.upNodes().sort())
    expect(this.tracker.endpoints().map((info) => info.id).sort()).toEqual(history.allUpEndpoints().sort())
    return changes
  }
}
