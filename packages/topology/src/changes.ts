// Turns a client's history into callbacks. Pure code (changes.test.ts).
//
// Callbacks follow the derived state, not the events: after every update the tracker
// compares what it has reported with what the history now says is up. Node and endpoint ids
// are never reused and only move unknown -> up -> down, so each id is reported up at most
// once and down at most once, however often the history is replaced, merged or replayed
// (hub failover resends everything). An id that is already down when the client first learns
// of it is never reported: callbacks describe the live domain, history() the past.
import type { EndpointInfo, History, LeaveReason, NodeInfo } from './history.js'

/** Why an endpoint went down. `node-down`: its node left; `forgotten`: the hub dropped it. */
export type EndpointDownReason = 'removed' | 'node-down' | 'forgotten'

/** One change of the derived state, as the client reports it. */
export type TopologyChange =
  | { readonly type: 'node-up'; readonly node: NodeInfo }
  | { readonly type: 'node-down'; readonly node: NodeInfo; readonly reason: LeaveReason | 'forgotten' }
  | { readonly type: 'endpoint-up'; readonly endpoint: EndpointInfo; readonly node: NodeInfo }
  | {
      readonly type: 'endpoint-down'
      readonly endpoint: EndpointInfo
      readonly node: NodeInfo
      readonly reason: EndpointDownReason
    }

/** Remembers what was reported, and reports the difference to a history. */
export class ChangeTracker {
  // Reported up and not yet down.
  readonly #nodes = new Map<string, NodeInfo>()
  readonly #endpoints = new Map<string, EndpointInfo>()
  // Reported down: never reported again. Pruned once the history no longer mentions the id.
  readonly #down = new Set<string>()
  #pruneAt = 1024

  /** The nodes reported up, in report order. */
  nodes(): NodeInfo[] {
    return [...this.#nodes.values()]
  }

  /** The endpoints reported up, in report order. */
  endpoints(): EndpointInfo[] {
    return [...this.#endpoints.values()]
  }

  /**
   * The changes from what was reported to what `history` says. Order: endpoints down, nodes
   * down, nodes up (join order), endpoints up (add order), so a consumer never sees an
   * endpoint of a node that is not up.
   */
  update(history: History): TopologyChange[] {
    const changes: TopologyChange[] = []
    for (const [id, endpoint] of this.#endpoints) {
      if (history.isEndpointUp(id)) continue
      const node = this.#nodes.get(endpoint.node) ?? history.nodeInfo(endpoint.node)
      const reason: EndpointDownReason = history.isEndpointRemoved(id)
        ? 'removed'
        : !history.isNodeUp(endpoint.node)
          ? 'node-down'
          : 'forgotten'
      this.#endpoints.delete(id)
      this.#down.add(id)
      if (node) changes.push({ type: 'endpoint-down', endpoint, node, reason })
    }
    for (const [id, node] of this.#nodes) {
      if (history.isNodeUp(id)) continue
      this.#nodes.delete(id)
      this.#down.add(id)
      changes.push({ type: 'node-down', node, reason: history.leaveReason(id) ?? 'forgotten' })
    }
    for (const id of history.upNodes()) {
      if (this.#nodes.has(id) || this.#down.has(id)) continue
      const node = history.nodeInfo(id) as NodeInfo
      this.#nodes.set(id, node)
      changes.push({ type: 'node-up', node })
    }
    for (const id of history.allUpEndpoints()) {
      if (this.#endpoints.has(id) || this.#down.has(id)) continue
      const endpoint = history.endpointInfo(id) as EndpointInfo
      const node = this.#nodes.get(endpoint.node)
      // Only endpoints of nodes reported up (a node reported down never comes back).
      if (node === undefined) continue
      this.#endpoints.set(id, endpoint)
      changes.push({ type: 'endpoint-up', endpoint, node })
    }
    this.#prune(history)
    return changes
  }

  // Forget reported-down ids the history no longer mentions: it was compacted, and the hub's
  // tombstones keep the id from coming back. Keeps the tracker as bounded as the history.
  #prune(history: History): void {
    if (this.#down.size <= this.#pruneAt) return
    const mentioned = new Set<string>([...history.nodeIds(), ...history.endpointIds()])
    for (const id of this.#down) if (!mentioned.has(id)) this.#down.delete(id)
    // Amortized: the next scan waits until the set has doubled.
    this.#pruneAt = Math.max(1024, this.#down.size * 2)
  }
}
