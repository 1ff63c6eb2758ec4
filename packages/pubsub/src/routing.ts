// Routing: a node's mirror of the domain's topology, and from it, per topic, the subscriptions
// its publishers reach now (their targets). Topology changes and link events come in; targets
// and link wishes ("link to node X", "drop the link to X if idle", "X is gone") go out to the
// link manager (links.ts) through `RoutingLinks`.
//
// Invariants:
// - A topic's targets are exactly its remote subscriptions whose node has an open link, and
//   only while the topic has a local publisher; they are recomputed (and every local publisher
//   of the topic told, `update()`) on every change that can alter them: a local publisher or
//   subscription added or removed, a remote subscription up or down, a link opened or closed,
//   a node down.
// - A link to a node is wanted while the node is up and one of its subscriptions is of a topic
//   with a local publisher (`linkWanted`). Routing asks for one when a local publisher or a
//   remote subscription makes that true, and offers to drop it when either goes.
// - A topic's state exists while anything local or remote refers to it; an empty one is
//   dropped (`#pruneTopic`), so the maps do not grow with topics that came and went.
import type { EndpointInfo, NodeInfo, TopologyChange } from '@ipc-pubsub/topology'
import type { OutboundLink, RemoteSubscription } from './link.js'
import type { Publisher, Target } from './publisher.js'
import { DEFAULT_QUEUE_SIZE, MAX_QUEUE_SIZE, QUEUE_POLICIES, type Subscription } from './subscription.js'

/** @internal What routing asks of the link manager. */
export interface RoutingLinks {
  /** The outbound link to `node` (connecting or open), if there is one. */
  get(node: string): OutboundLink | undefined
  /** A link to `node` is wanted: connect one unless it exists or a retry is pending. */
  ensure(node: string): void
  /** Close the link to `node` (and stop retrying) unless it is still wanted. */
  dropIfIdle(node: string): void
  /** `node` left the domain: destroy its link, cancel its retry. */
  gone(node: string): void
}

/** Everything a node knows about one topic. */
class Topic {
  readonly publishers = new Set<Publisher>()
  readonly subscriptions = new Set<Subscription>()
  /** Subscriptions in the domain (from the topology), by endpoint id. */
  readonly remoteSubscriptions = new Map<string, RemoteSubscription>()
  /** Publisher endpoint ids in the domain (from the topology). */
  readonly publisherEndpoints = new Set<string>()
  /** The subscriptions reachable now (open link), recomputed on every change. */
  targets: Target[] = []

  get empty(): boolean {
    return (
      this.publishers.size === 0 &&
      this.subscriptions.size === 0 &&
      this.remoteSubscriptions.size === 0 &&
      this.publisherEndpoints.size === 0
    )
  }
}

// A subscription's flow-control terms as its endpoint announces them. Anything malformed
// counts as the default (lossy, default window): a bad announcement cannot block publishers.
function remoteSubscription(endpoint: EndpointInfo): RemoteSubscription {
  const options = endpoint.options as { policy?: unknown; queueSize?: unknown }
  const policy = QUEUE_POLICIES.includes(options.policy as never) ? options.policy : 'drop-oldest'
  const size = options.queueSize
  const window = typeof size === 'number' && Number.isInteger(size) && size >= 1 && size <= MAX_QUEUE_SIZE ? size : DEFAULT_QUEUE_SIZE
  // Nodes that predate the pool transport list no `transports`: they get segments.
  const transports = (endpoint.options as { transports?: unknown }).transports
  const pool = Array.isArray(transports) && transports.includes('pool')
  return { id: endpoint.id, node: endpoint.node, topic: endpoint.topic, lossless: policy === 'wait', window, pool }
}

/** @internal The topology as one node routes by it: topics, remote subscriptions by node, nodes. */
export class Routing {
  readonly #links: RoutingLinks
  readonly #topics = new Map<string, Topic>()
  readonly #remoteByNode = new Map<string, Set<RemoteSubscription>>()
  readonly #nodes = new Map<string, NodeInfo>()

  constructor(links: RoutingLinks) {
    this.#links = links
  }

  // ---- what the node, its publishers and subscriptions read ----

  /** The subscriptions `topic`'s publishers reach now. */
  targets(topic: string): readonly Target[] {
    return this.#topics.get(topic)?.targets ?? []
  }

  /** Publisher endpoints of `topic` in the domain. */
  publisherCount(topic: string): number {
    return this.#topics.get(topic)?.publisherEndpoints.size ?? 0
  }

  /** Whether the topology lists this publisher endpoint of `topic` as live now. */
  publisherLive(topic: string, publisher: string): boolean {
    return this.#topics.get(topic)?.publisherEndpoints.has(publisher) ?? false
  }

  /** The topology's record of node `id`, while it is up. */
  node(id: string): NodeInfo | undefined {
    return this.#nodes.get(id)
  }

  /** Every local publisher, of every topic. */
  publishers(): Publisher[] {
    return [...this.#topics.values()].flatMap((state) => [...state.publishers])
  }

  /** Whether a link to `node` is wanted: it is up and subscribes to a topic published here. */
  linkWanted(node: string): boolean {
    if (!this.#nodes.has(node)) return false
    for (const remote of this.#remoteByNode.get(node) ?? []) {
      if ((this.#topics.get(remote.topic)?.publishers.size ?? 0) > 0) return true
    }
    return false
  }

  // ---- local publishers and subscriptions ----

  addPublisher(publisher: Publisher): void {
    const state = this.#topic(publisher.topic)
    state.publishers.add(publisher)
    // Links to the topic's existing subscribers (some may exist already, for other topics).
    for (const remote of state.remoteSubscriptions.values()) this.#links.ensure(remote.node)
    this.#refreshTopic(state)
  }

  removePublisher(publisher: Publisher): void {
    const state = this.#topics.get(publisher.topic)
    state?.publishers.delete(publisher)
    if (state) for (const remote of state.remoteSubscriptions.values()) this.#links.dropIfIdle(remote.node)
    this.#pruneTopic(publisher.topic)
  }

  addSubscription(subscription: Subscription): void {
    this.#topic(subscription.topic).subscriptions.add(subscription)
  }

  removeSubscription(subscription: Subscription): void {
    this.#topics.get(subscription.topic)?.subscriptions.delete(subscription)
    this.#pruneTopic(subscription.topic)
  }

  // ---- topology changes ----

  /** Applies a change of the domain (the node ignores changes once it is closing). */
  apply(change: TopologyChange): void {
    switch (change.type) {
      case 'node-up':
        this.#nodes.set(change.node.id, change.node)
        return
      case 'node-down': {
        this.#nodes.delete(change.node.id)
        this.#links.gone(change.node.id)
        this.#refreshNode(change.node.id)
        return
      }
      case 'endpoint-up': {
        const { endpoint, node } = change
        this.#nodes.set(node.id, node)
        const state = this.#topic(endpoint.topic)
        if (endpoint.role === 'subscriber') {
          const remote = remoteSubscription(endpoint)
          state.remoteSubscriptions.set(endpoint.id, remote)
          let set = this.#remoteByNode.get(endpoint.node)
          if (set === undefined) {
            set = new Set()
            this.#remoteByNode.set(endpoint.node, set)
          }
          set.add(remote)
          if (state.publishers.size > 0) this.#links.ensure(endpoint.node)
          this.#refreshTopic(state)
        } else {
          state.publisherEndpoints.add(endpoint.id)
          for (const subscription of state.subscriptions) {
            subscription.publisherUp(endpoint.id)
            subscription.publishersChanged()
          }
        }
        return
      }
      case 'endpoint-down': {
        const { endpoint } = change
        const state = this.#topics.get(endpoint.topic)
        if (state === undefined) return
        if (endpoint.role === 'subscriber') {
          const remote = state.remoteSubscriptions.get(endpoint.id)
          state.remoteSubscriptions.delete(endpoint.id)
          if (remote) this.#remoteByNode.get(endpoint.node)?.delete(remote)
          if (this.#remoteByNode.get(endpoint.node)?.size === 0) this.#remoteByNode.delete(endpoint.node)
          this.#links.get(endpoint.node)?.unserve(endpoint.id)
          this.#refreshTopic(state)
          this.#links.dropIfIdle(endpoint.node)
        } else {
          state.publisherEndpoints.delete(endpoint.id)
          for (const subscription of state.subscriptions) {
            subscription.publisherGone(endpoint.id)
            subscription.publishersChanged()
          }
        }
        this.#pruneTopic(endpoint.topic)
        return
      }
    }
  }

  // ---- link events ----

  /** The link to `node` opened or closed: the targets of every topic it subscribes to change. */
  linkChanged(node: string): void {
    this.#refreshNode(node)
  }

  /** Credits came back on the link to `node` (for `subscription`, or for any of the link's when undefined). */
  credit(node: string, subscription: string | undefined): void {
    if (subscription === undefined) {
      // Pool links report completions in batches: every topic the link serves may be ready.
      this.#refreshPublishers(node)
      return
    }
    const remote = this.#findRemote(subscription)
    if (remote === undefined) return
    for (const publisher of this.#topics.get(remote.topic)?.publishers ?? []) publisher.update()
  }

  // ---- targets ----

  #refreshNode(node: string): void {
    const topics = new Set<string>()
    for (const remote of this.#remoteByNode.get(node) ?? []) topics.add(remote.topic)
    for (const topic of topics) {
      const state = this.#topics.get(topic)
      if (state) this.#refreshTopic(state)
    }
  }

  #refreshTopic(state: Topic): void {
    const targets: Target[] = []
    if (state.publishers.size > 0) {
      for (const subscription of state.remoteSubscriptions.values()) {
        const link = this.#links.get(subscription.node)
        if (link === undefined || !link.open) continue
        targets.push({ subscription, link, lane: link.serve(subscription) })
      }
    }
    state.targets = targets
    for (const publisher of state.publishers) publisher.update()
  }

  #refreshPublishers(node: string): void {
    const topics = new Set<string>()
    for (const remote of this.#remoteByNode.get(node) ?? []) topics.add(remote.topic)
    for (const topic of topics) for (const publisher of this.#topics.get(topic)?.publishers ?? []) publisher.update()
  }

  #findRemote(subscription: string): RemoteSubscription | undefined {
    const node = subscription.slice(0, subscription.indexOf('/'))
    for (const remote of this.#remoteByNode.get(node) ?? []) if (remote.id === subscription) return remote
    return undefined
  }

  // ---- bookkeeping ----

  #topic(topic: string): Topic {
    let state = this.#topics.get(topic)
    if (state === undefined) {
      state = new Topic()
      this.#topics.set(topic, state)
    }
    return state
  }

  #pruneTopic(topic: string): void {
    const state = this.#topics.get(topic)
    if (state?.empty) this.#topics.delete(topic)
    else if (state) this.#refreshTopic(state)
  }
}
