// The hub's pure logic: minting, integrating a client's hello, compaction. No sockets and no
// clock (the epoch is given), so ledger.test.ts can drive it through any interleaving.
import {
  type EndpointInfo,
  type EventBody,
  type Forget,
  History,
  compareEvents,
  type LeaveReason,
  type NodeInfo,
  type TopologyEvent,
  eventEndpoint,
  eventNode,
} from './history.js'

/** What a client tells the hub when it connects: its history and itself (PROTOCOL.md, `hello`). */
export interface Hello {
  readonly node: NodeInfo
  /** The node's own endpoints, as it holds them now: the hub makes the history match. */
  readonly endpoints: readonly EndpointInfo[]
  readonly history: readonly TopologyEvent[]
}

/** The outcome of integrating a hello. */
export type Integration =
  /** `events`: every event that is new to the hub, in order (to broadcast to other clients). */
  | { readonly accepted: true; readonly events: TopologyEvent[] }
  /** The hub already holds this node's `node-left` (or forgot it): it must rejoin with a new id. */
  | { readonly accepted: false; readonly events: TopologyEvent[] }

export interface LedgerOptions {
  /** The hub node's id: part of every uid it mints. */
  readonly minter: string
  /** The epoch to mint with. Raised past any epoch the ledger later sees. */
  readonly epoch: number
  /** The history the hub starts from (its own, from when it was a client). */
  readonly history?: Iterable<TopologyEvent>
  /** Departed entities kept after compaction. Default 1000. */
  readonly tail?: number
}

/** Departed-entity count, as a multiple of `tail`, that triggers compaction (amortizes its count and sort). */
const COMPACT_SLACK = 1.25
/** Forgotten ids remembered, as a multiple of `tail`, so stale histories cannot resurrect them. */
const TOMBSTONE_FACTOR = 16

/**
 * The hub's history plus the minting counters. Invariants:
 * - Only `mint` creates events, stamped (epoch, ++seq, `<minter>:<epoch>:<seq>`), so this
 *   ledger's events are in mint order.
 * - `epoch` is above every epoch in the history: when a merge brings an epoch >= ours, the
 *   ledger moves to that epoch + 1 before minting again, so new events order after it.
 * - A node or endpoint the ledger forgot (tombstone) is never let back in by a merge.
 * - For a node whose hello was integrated (until its node-left), the endpoints up in the
 *   history are exactly those it holds, and it is up: merges can neither resurrect an
 *   endpoint it removed nor bring a node-left or endpoint-removed that contradicts it.
 */
export class Ledger {
  readonly history: History
  readonly minter: string
  readonly tail: number
  #epoch: number
  #seq = 0
  readonly #tombstones = new Set<string>()
  // Endpoint ids each node that said hello holds now (its hello's list, then its adds and removes).
  readonly #owned = new Map<string, Set<string>>()
  readonly #tombstoneLimit: number
  // An upper bound on history.departed().length: set by each exact count, raised by every
  // departure event added. compact() counts (and sorts) only once it passes the threshold.
  #departedBound: number

  constructor(options: LedgerOptions) {
    this.minter = options.minter
    this.tail = options.tail ?? 1000
    this.#tombstoneLimit = Math.max(1024, this.tail * TOMBSTONE_FACTOR)
    this.history = new History(options.history ?? [])
    this.#epoch = Math.max(options.epoch, this.history.maxEpoch + 1)
    this.#departedBound = this.history.departed().length
  }

  get epoch(): number {
    return this.#epoch
  }

  /** Stamps and records one event. */
  mint(body: EventBody): TopologyEvent {
    const seq = ++this.#seq
    const event = { ...body, epoch: this.#epoch, seq, uid: `${this.minter}:${this.#epoch}:${seq}` } as TopologyEvent
    this.history.add(event)
    this.#countDeparture(event)
    return event
  }

  /**
   * Merges events from elsewhere (a client's history): set union, minus forgotten entities.
   * Returns the events that were new, in order.
   */
  merge(events: Iterable<TopologyEvent>): TopologyEvent[] {
    const fresh: TopologyEvent[] = []
    let maxEpoch = 0
    for (const event of events) {
      if (this.#isTombstoned(event) || this.#contradictsOwner(event)) continue
      if (this.history.add(event)) {
        this.#countDeparture(event)
        fresh.push(event)
        if (event.epoch > maxEpoch) maxEpoch = event.epoch
      }
    }
    // Another hub minted at our epoch or later (clocks of other pid or time namespaces):
    // move past it so what we mint next still orders after everything we hold.
    if (maxEpoch >= this.#epoch) {
      this.#epoch = maxEpoch + 1
      this.#seq = 0
    }
    fresh.sort(compareEvents)
    // A node that said hello is the authority on its own endpoints: an endpoint another
    // client's (older) history brings back, which the node no longer holds, is removed again.
    for (const event of fresh.slice()) {
      if (event.type !== 'endpoint-added') continue
      const owned = this.#owned.get(event.endpoint.node)
      if (owned === undefined || owned.has(event.endpoint.id) || !this.history.isEndpointUp(event.endpoint.id)) continue
      fresh.push(this.mint({ type: 'endpoint-removed', endpoint: event.endpoint.id, node: event.endpoint.node }))
    }
    return fresh
  }

  /**
   * Integrates a client's hello: merges its history, then mints what the history lacks about
   * the node itself: its `node-joined`, an `endpoint-added` for each endpoint it holds that is
   * not up, and an `endpoint-removed` for each of its endpoints that is up but it no longer
   * holds (the node is the authority on its own endpoints).
   */
  integrate(hello: Hello): Integration {
    const merged = this.merge(hello.history)
    const id = hello.node.id
    if (this.history.hasLeft(id) || this.#tombstones.has(id)) {
      return { accepted: false, events: merged }
    }
    const minted: TopologyEvent[] = []
    if (!this.history.isNodeUp(id)) minted.push(this.mint({ type: 'node-joined', node: hello.node }))
    const held = new Set<string>()
    this.#owned.set(id, held)
    for (const endpoint of hello.endpoints) {
      held.add(endpoint.id)
      const event = this.addEndpoint(endpoint)
      if (event) minted.push(event)
    }
    for (const endpointId of this.history.upEndpoints(id)) {
      if (!held.has(endpointId)) minted.push(this.mint({ type: 'endpoint-removed', endpoint: endpointId, node: id }))
    }
    return { accepted: true, events: [...merged, ...minted] }
  }

  /** Mints `endpoint-added` unless the endpoint is already up, was removed, or was forgotten. */
  addEndpoint(endpoint: EndpointInfo): TopologyEvent | undefined {
    if (!this.history.isNodeUp(endpoint.node)) return undefined
    if (this.history.isEndpointUp(endpoint.id) || this.history.isEndpointRemoved(endpoint.id)) return undefined
    if (this.#tombstones.has(endpoint.id)) return undefined
    this.#owned.get(endpoint.node)?.add(endpoint.id)
    return this.mint({ type: 'endpoint-added', endpoint })
  }

  /** Mints `endpoint-removed` if the endpoint is up. */
  removeEndpoint(nodeId: string, endpointId: string): TopologyEvent | undefined {
    if (!this.history.isEndpointUp(endpointId)) return undefined
    if (this.history.endpointInfo(endpointId)?.node !== nodeId) return undefined
    this.#owned.get(nodeId)?.delete(endpointId)
    return this.mint({ type: 'endpoint-removed', endpoint: endpointId, node: nodeId })
  }

  /** Mints `node-left` if the node is up. Its endpoints go down with it (no events needed). */
  nodeLeft(nodeId: string, reason: LeaveReason): TopologyEvent | undefined {
    this.#owned.delete(nodeId)
    if (!this.history.isNodeUp(nodeId)) return undefined
    return this.mint({ type: 'node-left', node: nodeId, reason })
  }

  /**
   * Forgets the oldest departed entities once more than `tail * 1.25` have accumulated,
   * down to `tail`. Returns what was forgotten (for the clients), or undefined.
   */
  compact(): Forget | undefined {
    const threshold = this.tail * COMPACT_SLACK
    if (this.#departedBound <= threshold) return undefined
    const departed = this.history.departed()
    this.#departedBound = departed.length
    if (departed.length <= threshold) return undefined
    const nodes: string[] = []
    const endpoints: string[] = []
    for (const entry of departed.slice(0, departed.length - this.tail)) {
      if (entry.kind === 'node') nodes.push(entry.id)
      else endpoints.push(entry.id)
    }
    const forget = { nodes, endpoints }
    this.forget(forget)
    this.#departedBound = this.tail
    return forget
  }

  /** Drops entities and remembers their ids (bounded) so merges cannot bring them back. */
  forget(forget: Forget): void {
    this.history.forget(forget)
    for (const id of [...forget.nodes, ...forget.endpoints]) this.#tombstones.add(id)
    // Sets iterate in insertion order: drop the oldest tombstones first.
    for (const id of this.#tombstones) {
      if (this.#tombstones.size <= this.#tombstoneLimit) break
      this.#tombstones.delete(id)
    }
  }

  // A node that said hello (and has not left) speaks for itself: another history's claim that
  // it left, or that one of the endpoints it holds was removed, is stale and dropped.
  #contradictsOwner(event: TopologyEvent): boolean {
    if (event.type === 'node-left') return this.#owned.has(event.node)
    if (event.type === 'endpoint-removed') return this.#owned.get(event.node)?.has(event.endpoint) === true
    return false
  }

  #countDeparture(event: TopologyEvent): void {
    if (event.type === 'node-left' || event.type === 'endpoint-removed') this.#departedBound++
  }

  #isTombstoned(event: TopologyEvent): boolean {
    if (this.#tombstones.size === 0) return false
    if (this.#tombstones.has(eventNode(event))) return true
    const endpointId = eventEndpoint(event)
    return endpointId !== undefined && this.#tombstones.has(endpointId)
  }
}
