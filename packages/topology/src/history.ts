// The domain's event history and the state derived from it. Pure code: no sockets, no
// clock, no process state, so the merge rules can be property-tested (history.test.ts).
//
// The model (docs/PROTOCOL.md, "History"):
// - Every event has an order key (epoch, seq, uid) and a unique `uid`. A history is a set of
//   events keyed by uid, listed in order-key order.
// - Node and endpoint ids are never reused, and each one only moves forward:
//   unknown -> up -> down. So the derived state is a join of the events, whatever order they
//   arrived in: a node is up when some `node-joined` names it and no `node-left` does; an
//   endpoint is up when some `endpoint-added` names it, no `endpoint-removed` does, and its
//   node is up. Merging two histories is set union: commutative, associative, idempotent.
// - Compaction (`forget`) removes whole entities (a departed node with all its endpoint
//   events, or a removed endpoint), never single events, so a history never shows half of an
//   entity's life.

/** JSON values: what metadata and endpoint options may hold. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** A node as it announced itself in its hello. Immutable for the node's lifetime. */
export interface NodeInfo {
  /** Unique, never reused: a node that rejoins gets a new id. */
  readonly id: string
  /** Human-readable; not unique. */
  readonly name: string
  /** The node's pid in its own pid namespace. */
  readonly pid: number
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot): tells a reused pid apart. Null if unknown. */
  readonly startTime: number | null
  /** readlink(/proc/self/ns/pid), e.g. `pid:[4026531836]`: pid checks only within the same one. Null if unknown. */
  readonly pidNamespace: string | null
  /** Where the node accepts data connections (an fdpass address), or null. */
  readonly endpoint: string | null
  /** User data, as given to join(). */
  readonly metadata: { readonly [key: string]: Json }
}

/** A publisher or subscriber a node registered. */
export type EndpointRole = 'publisher' | 'subscriber'

/** One registered endpoint. `id` is `<node id>/<suffix>`, unique, never reused. */
export interface EndpointInfo {
  readonly id: string
  readonly node: string
  readonly topic: string
  readonly role: EndpointRole
  readonly options: { readonly [key: string]: Json }
}

/**
 * Why a node left: `closed` (it said bye), `exited` (its hub connection closed without a
 * bye: the process died or dropped the socket), `died` (a new hub found its process gone),
 * `unreachable` (a new hub found its endpoint refusing connections), `lost` (it did not
 * reconnect to a new hub within the grace period), `evicted` (the hub closed its connection:
 * a protocol violation or a stalled reader).
 */
export type LeaveReason = 'closed' | 'exited' | 'died' | 'unreachable' | 'lost' | 'evicted'
export const LEAVE_REASONS: readonly LeaveReason[] = ['closed', 'exited', 'died', 'unreachable', 'lost', 'evicted']

/** The order key and identity every event carries, assigned by the hub that minted it. */
export interface EventStamp {
  /** The minting hub's epoch: greater than every epoch that hub had seen when elected. */
  readonly epoch: number
  /** Position in the minting hub's sequence, from 1. */
  readonly seq: number
  /** Unique id: `<minting hub's node id>:<epoch>:<seq>`. */
  readonly uid: string
}

export type NodeJoined = EventStamp & { readonly type: 'node-joined'; readonly node: NodeInfo }
export type NodeLeft = EventStamp & { readonly type: 'node-left'; readonly node: string; readonly reason: LeaveReason }
export type EndpointAdded = EventStamp & { readonly type: 'endpoint-added'; readonly endpoint: EndpointInfo }
export type EndpointRemoved = EventStamp & {
  readonly type: 'endpoint-removed'
  readonly endpoint: string
  readonly node: string
}

/** One entry of the history. */
export type TopologyEvent = NodeJoined | NodeLeft | EndpointAdded | EndpointRemoved

/** An event before the hub stamps it. */
export type EventBody =
  | { readonly type: 'node-joined'; readonly node: NodeInfo }
  | { readonly type: 'node-left'; readonly node: string; readonly reason: LeaveReason }
  | { readonly type: 'endpoint-added'; readonly endpoint: EndpointInfo }
  | { readonly type: 'endpoint-removed'; readonly endpoint: string; readonly node: string }

/** Total order of events: epoch, then seq, then uid (code-unit order). */
export function compareEvents(a: EventStamp, b: EventStamp): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1
  return a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0
}

/** The node id an event is about. */
export function eventNode(event: TopologyEvent | EventBody): string {
  switch (event.type) {
    case 'node-joined':
      return event.node.id
    case 'node-left':
      return event.node
    case 'endpoint-added':
      return event.endpoint.node
    case 'endpoint-removed':
      return event.node
  }
}

/** The endpoint id an event is about, if it is an endpoint event. */
export function eventEndpoint(event: TopologyEvent | EventBody): string | undefined {
  if (event.type === 'endpoint-added') return event.endpoint.id
  if (event.type === 'endpoint-removed') return event.endpoint
  return undefined
}

interface NodeRecord {
  joined: NodeJoined | undefined
  left: NodeLeft | undefined
  endpoints: Set<string>
}

interface EndpointRecord {
  readonly node: string
  added: EndpointAdded | undefined
  removed: EndpointRemoved | undefined
}

/** Ids to drop from a history: whole nodes (with their endpoints) and single endpoints. */
export interface Forget {
  readonly nodes: readonly string[]
  readonly endpoints: readonly string[]
}

/** A live node with its live endpoints, as `TopologyClient.snapshot()` lists it. */
export interface NodeState {
  readonly node: NodeInfo
  readonly endpoints: readonly EndpointInfo[]
}

/**
 * A set of events with the derived state. Adding an event the set already holds (same uid)
 * is a no-op, so replaying any history any number of times gives the same result.
 */
export class History {
  readonly #byUid = new Map<string, TopologyEvent>()
  // Kept sorted by compareEvents. Appends are the common case (binary search from the end).
  #ordered: TopologyEvent[] = []
  readonly #nodes = new Map<string, NodeRecord>()
  readonly #endpoints = new Map<string, EndpointRecord>()
  #maxEpoch = 0

  constructor(events: Iterable<TopologyEvent> = []) {
    for (const event of events) this.add(event)
  }

  /** Number of events held. */
  get size(): number {
    return this.#ordered.length
  }

  /** The highest epoch of any event held (0 when empty). */
  get maxEpoch(): number {
    return this.#maxEpoch
  }

  /** The events in order. A copy. */
  events(): TopologyEvent[] {
    return this.#ordered.slice()
  }

  has(uid: string): boolean {
    return this.#byUid.has(uid)
  }

  /** Adds one event; returns false (and changes nothing) if its uid is already here. */
  add(event: TopologyEvent): boolean {
    if (this.#byUid.has(event.uid)) return false
    this.#byUid.set(event.uid, event)
    this.#insertOrdered(event)
    if (event.epoch > this.#maxEpoch) this.#maxEpoch = event.epoch
    const nodeId = eventNode(event)
    const node = this.#nodeRecord(nodeId)
    switch (event.type) {
      case 'node-joined':
        // Two hubs may have minted a join for the same node: the first in order speaks for it.
        if (node.joined === undefined || compareEvents(event, node.joined) < 0) node.joined = event
        break
      case 'node-left':
        if (node.left === undefined || compareEvents(event, node.left) < 0) node.left = event
        break
      case 'endpoint-added': {
        const endpoint = this.#endpointRecord(event.endpoint.id, nodeId)
        node.endpoints.add(event.endpoint.id)
        if (endpoint.added === undefined || compareEvents(event, endpoint.added) < 0) endpoint.added = event
        break
      }
      case 'endpoint-removed': {
        const endpoint = this.#endpointRecord(event.endpoint, nodeId)
        node.endpoints.add(event.endpoint)
        if (endpoint.removed === undefined || compareEvents(event, endpoint.removed) < 0) endpoint.removed = event
        break
      }
    }
    return true
  }

  /** Adds every event; returns those that were new, in order. */
  merge(events: Iterable<TopologyEvent>): TopologyEvent[] {
    const added: TopologyEvent[] = []
    for (const event of events) if (this.add(event)) added.push(event)
    return added.sort(compareEvents)
  }

  /** Drops whole entities. Returns how many events went. */
  forget(forget: Forget): number {
    const drop = new Set<string>()
    for (const nodeId of forget.nodes) {
      const node = this.#nodes.get(nodeId)
      if (node === undefined) continue
      for (const endpointId of node.endpoints) this.#collectEndpoint(endpointId, drop)
      this.#endpointsDeleteAll(node.endpoints)
      if (node.joined) drop.add(node.joined.uid)
      if (node.left) drop.add(node.left.uid)
      this.#nodes.delete(nodeId)
    }
    for (const endpointId of forget.endpoints) {
      const endpoint = this.#endpoints.get(endpointId)
      if (endpoint === undefined) continue
      this.#collectEndpoint(endpointId, drop)
      this.#endpoints.delete(endpointId)
      const node = this.#nodes.get(endpoint.node)
      node?.endpoints.delete(endpointId)
      // A node record that only this endpoint's events created goes with them.
      if (node && !node.joined && !node.left && node.endpoints.size === 0) this.#nodes.delete(endpoint.node)
    }
    if (drop.size === 0) return 0
    // Duplicate events (two hubs minted the same transition) are dropped with their entity.
    const kept: TopologyEvent[] = []
    let dropped = 0
    for (const event of this.#ordered) {
      if (drop.has(event.uid) || this.#orphaned(event)) {
        this.#byUid.delete(event.uid)
        dropped++
      } else {
        kept.push(event)
      }
    }
    this.#ordered = kept
    return dropped
  }

  // ---- derived state ----

  /** True if the node has joined and not left. */
  isNodeUp(nodeId: string): boolean {
    const node = this.#nodes.get(nodeId)
    return node !== undefined && node.joined !== undefined && node.left === undefined
  }

  /** True if the node has a `node-left` event. */
  hasLeft(nodeId: string): boolean {
    return this.#nodes.get(nodeId)?.left !== undefined
  }

  /** True if the endpoint has been added, not removed, and its node is up. */
  isEndpointUp(endpointId: string): boolean {
    const endpoint = this.#endpoints.get(endpointId)
    return (
      endpoint !== undefined &&
      endpoint.added !== undefined &&
      endpoint.removed === undefined &&
      this.isNodeUp(endpoint.node)
    )
  }

  /** True if the endpoint has an `endpoint-removed` event. */
  isEndpointRemoved(endpointId: string): boolean {
    return this.#endpoints.get(endpointId)?.removed !== undefined
  }

  /** The node's info, from its first `node-joined` (also after it left, until forgotten). */
  nodeInfo(nodeId: string): NodeInfo | undefined {
    return this.#nodes.get(nodeId)?.joined?.node
  }

  /** The endpoint's info, from its first `endpoint-added` (also after removal, until forgotten). */
  endpointInfo(endpointId: string): EndpointInfo | undefined {
    return this.#endpoints.get(endpointId)?.added?.endpoint
  }

  /** The reason of the node's `node-left`, if any. */
  leaveReason(nodeId: string): LeaveReason | undefined {
    return this.#nodes.get(nodeId)?.left?.reason
  }

  /** Ids of the nodes that are up, in the order of their `node-joined`. */
  upNodes(): string[] {
    const up: NodeJoined[] = []
    for (const node of this.#nodes.values()) if (node.joined && !node.left) up.push(node.joined)
    return up.sort(compareEvents).map((event) => event.node.id)
  }

  /** Ids of the node's endpoints that are up, in the order of their `endpoint-added`. */
  upEndpoints(nodeId: string): string[] {
    const node = this.#nodes.get(nodeId)
    if (node === undefined || !node.joined || node.left) return []
    const up: EndpointAdded[] = []
    for (const id of node.endpoints) {
      const endpoint = this.#endpoints.get(id)
      if (endpoint?.added && !endpoint.removed) up.push(endpoint.added)
    }
    return up.sort(compareEvents).map((event) => event.endpoint.id)
  }

  /** Ids of every endpoint that is up, across nodes, in the order of their `endpoint-added`. */
  allUpEndpoints(): string[] {
    const up: EndpointAdded[] = []
    for (const endpoint of this.#endpoints.values()) {
      if (endpoint.added && !endpoint.removed && this.isNodeUp(endpoint.node)) up.push(endpoint.added)
    }
    return up.sort(compareEvents).map((event) => event.endpoint.id)
  }

  /** Every live node with its live endpoints, in join order. */
  state(): NodeState[] {
    return this.upNodes().map((id) => ({
      node: this.nodeInfo(id) as NodeInfo,
      endpoints: this.upEndpoints(id).map((endpointId) => this.endpointInfo(endpointId) as EndpointInfo),
    }))
  }

  /** Every node id the history mentions (up, departed, or only referenced). */
  nodeIds(): IterableIterator<string> {
    return this.#nodes.keys()
  }

  /** Every endpoint id the history mentions. */
  endpointIds(): IterableIterator<string> {
    return this.#endpoints.keys()
  }

  /**
   * Departed entities in the order they departed: nodes by their `node-left`, and endpoints
   * removed while their node stayed up, by their `endpoint-removed`. Compaction forgets
   * from the front of this list.
   */
  departed(): { kind: 'node' | 'endpoint'; id: string; at: TopologyEvent }[] {
    const list: { kind: 'node' | 'endpoint'; id: string; at: TopologyEvent }[] = []
    for (const [id, node] of this.#nodes) if (node.left) list.push({ kind: 'node', id, at: node.left })
    for (const [id, endpoint] of this.#endpoints) {
      if (endpoint.removed && !this.#nodes.get(endpoint.node)?.left) {
        list.push({ kind: 'endpoint', id, at: endpoint.removed })
      }
    }
    return list.sort((a, b) => compareEvents(a.at, b.at))
  }

  // ---- internals ----

  #nodeRecord(id: string): NodeRecord {
    let record = this.#nodes.get(id)
    if (record === undefined) {
      record = { joined: undefined, left: undefined, endpoints: new Set() }
      this.#nodes.set(id, record)
    }
    return record
  }

  #endpointRecord(id: string, node: string): EndpointRecord {
    let record = this.#endpoints.get(id)
    if (record === undefined) {
      record = { node, added: undefined, removed: undefined }
      this.#endpoints.set(id, record)
    }
    return record
  }

  #collectEndpoint(id: string, drop: Set<string>): void {
    const endpoint = this.#endpoints.get(id)
    if (endpoint?.added) drop.add(endpoint.added.uid)
    if (endpoint?.removed) drop.add(endpoint.removed.uid)
  }

  #endpointsDeleteAll(ids: Set<string>): void {
    for (const id of ids) this.#endpoints.delete(id)
  }

  // An event whose entity record is gone: a duplicate of a forgotten entity's transition.
  #orphaned(event: TopologyEvent): boolean {
    const endpointId = eventEndpoint(event)
    if (endpointId !== undefined) return !this.#endpoints.has(endpointId)
    return !this.#nodes.has(eventNode(event))
  }

  #insertOrdered(event: TopologyEvent): void {
    const list = this.#ordered
    let low = 0
    let high = list.length
    // Fast path: newest event.
    const last = list[high - 1]
    if (last === undefined || compareEvents(last, event) < 0) {
      list.push(event)
      return
    }
    while (low < high) {
      const mid = (low + high) >>> 1
      if (compareEvents(list[mid] as TopologyEvent, event) < 0) low = mid + 1
      else high = mid
    }
    list.splice(low, 0, event)
  }
}
