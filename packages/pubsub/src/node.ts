// A pubsub node: one per process (or more). It joins the topology with its own data address
// as the node endpoint, registers each publisher and subscription as a topology endpoint,
// and keeps direct links to the nodes it publishes to (see link.ts).
//
// Nothing here runs without a counterpart: links exist only between a node with a publisher
// and a node with a subscription of the same topic, and the only timer is a link's retry
// after a failed connect (while the subscription it is for still exists).
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { type Authorize, FdpassError, listen, type Server } from '@ipc-pubsub/fdpass'
import { type EndpointInfo, type Json, join, type NodeInfo, type TopologyChange, type TopologyClient } from '@ipc-pubsub/topology'
import { abortError, checkSignal, PubSubError } from './errors.js'
import type { MessageHeader } from './frames.js'
import { InboundLink, LINK_CHANNEL_OPTIONS, OutboundLink, type RemoteSubscription } from './link.js'
import { Publisher, type PublisherOptions, type Target } from './publisher.js'
import { DEFAULT_QUEUE_SIZE, MAX_QUEUE_SIZE, QUEUE_POLICIES, type SubscribeOptions, Subscription } from './subscription.js'
import { DEFAULT_POOL_SIZE, MAX_POOL_SIZE, MIN_POOL_SIZE, type PublisherPool } from './pool.js'
import { checkTopic } from './topic.js'
import type { Incoming, TransportName } from './transport.js'
import { TRANSPORTS } from './transport.js'

/** Options of `connect()`. */
export interface ConnectOptions {
  /** The domain to join: 1-64 characters of [A-Za-z0-9_.-]. Default `default`. */
  domain?: string
  /** A human-readable name for this node. Default: the script's name and pid. */
  name?: string
  /** JSON data published with this node in the topology. */
  metadata?: { [key: string]: Json }
  /**
   * How this node's publishers move payloads. Default 'pool': each publisher's shared-memory
   * pool, announced through a ring per link (no syscall per message while both sides are
   * busy). 'segment': one sealed memfd per message. Links to nodes that accept only segments
   * use segments whatever this says.
   */
  transport?: TransportName
  /**
   * Which processes may take part (hub connections and data links, both directions).
   * Default: the same uid (a client also trusts root).
   */
  authorize?: Authorize
  /** Aborts connect(). */
  signal?: AbortSignal
  /**
   * How long joining the domain may take (ms). Past it, connect() rejects with a TopologyError
   * ERR_TOPOLOGY_TIMEOUT naming the pid of the hub that did not answer (a stopped or busy
   * process). 0 or Infinity: no limit. Default 5000 (the topology's). A joined node is not
   * affected: its links keep carrying data while the hub does not answer.
   */
  timeout?: number
}

/** Events of a PubSubNode. */
export interface PubSubNodeEvents {
  /** A peer broke the protocol or a link failed (its link is closed). Only with a listener. */
  error: [error: Error]
  close: [reason: Error | undefined]
}

const LINK_RETRY_MIN_MS = 20
const LINK_RETRY_MAX_MS = 1000
const STABLE_LINK_MS = 1000
/**
 * How long close() lets links flush to peers before it cuts them: a peer that reads nothing
 * (a stopped process) cannot hold a closing node forever. Frames still queued then are dropped.
 */
export const CLOSE_TIMEOUT_MS = 5000

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

const createToken = Symbol('PubSubNode.create')

/**
 * A process's membership in a pubsub domain. Create with `connect()`; make publishers and
 * subscriptions from it; close it when done (or `await using`).
 */
export class PubSubNode extends EventEmitter<PubSubNodeEvents> implements AsyncDisposable {
  /** The topology client: node and endpoint events, snapshot, hub. */
  readonly topology: TopologyClient
  /** Where publishers reach this node's subscriptions (an fdpass address). */
  readonly address: string
  /** Settles when the node is closed: undefined after close(), else the error. Never rejects. */
  readonly closed: Promise<Error | undefined>

  readonly #server: Server
  readonly #transport: TransportName
  readonly #authorize: Authorize | undefined
  readonly #topics = new Map<string, Topic>()
  readonly #subscriptions = new Map<string, Subscription>()
  readonly #remoteByNode = new Map<string, Set<RemoteSubscription>>()
  readonly #nodes = new Map<string, NodeInfo>()
  readonly #outbound = new Map<string, OutboundLink>()
  readonly #retries = new Map<string, { timer: NodeJS.Timeout | undefined; delay: number }>()
  readonly #inbound = new Set<InboundLink>()
  #closing: Promise<void> | undefined
  #stopping = false
  // Set once the links are being cut (destroy(), or close() past CLOSE_TIMEOUT_MS).
  #cut = false
  #finished = false
  #reason: Error | undefined
  // Links shutdown is closing: destroy() or the close deadline cuts them.
  #ending: (OutboundLink | InboundLink)[] = []
  #resolveClosed!: (reason: Error | undefined) => void

  /** @internal Use connect(). */
  constructor(
    token: typeof createToken,
    topology: TopologyClient,
    server: Server,
    transport: TransportName,
    authorize: Authorize | undefined,
  ) {
    if (token !== createToken) throw new TypeError('use connect()')
    super()
    this.topology = topology
    this.#server = server
    this.address = server.address
    this.#transport = transport
    this.#authorize = authorize
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    server.on('connection', (channel) => {
      if (this.#closing) {
        void channel.destroy()
        return
      }
      this.#inbound.add(new InboundLink(channel, this.#inboundHost))
      // A link that breaks below the data protocol (this process ran out of fds: the kernel
      // dropped a frame's descriptors; or the peer broke fdpass framing) lost what was in
      // flight on it: said here; the subscriptions count the loss in the next `lost`.
      void channel.closed.then((reason) => {
        if (reason !== undefined && isLinkFailure(reason)) {
          this.#emitError(new PubSubError('ERR_PUBSUB_LINK', `a link from process ${channel.peer.pid} broke: ${reason.message}`, { cause: reason }))
        }
      })
    })
    // Connections we cannot accept (out of fds: fdpass backs off and retries by itself).
    server.on('error', (error) => {
      this.#emitError(new PubSubError('ERR_PUBSUB_LINK', `cannot accept links: ${error.message}`, { cause: error }))
    })
    // Changes are delivered from the first macrotask after join() resolved, so attaching now
    // sees the whole domain.
    topology.on('event', (change) => this.#onChange(change))
    topology.on('rejoin', ({ previous, id }) => this.#onRejoin(previous, id))
    void topology.closed.then((reason) => {
      // The topology only ends on its own after a fatal error: the node goes with it.
      if (reason && !this.#closing) void this.destroy(reason)
    })
  }

  /** @internal */
  static create(...args: ConstructorParameters<typeof PubSubNode> extends [unknown, ...infer R] ? R : never): PubSubNode {
    return new PubSubNode(createToken, ...args)
  }

  /** This node's id in the topology. */
  get id(): string {
    return this.topology.id
  }

  /** The domain this node joined. */
  get domain(): string {
    return this.topology.domain
  }

  /** Creates a publisher of `topic`. Several per topic are fine; each has its own sequence. */
  publisher(topic: string, options: PublisherOptions = {}): Publisher {
    this.#checkOpen('publisher()')
    checkTopic(topic)
    const poolSize = checkPoolSize(options)
    const endpoint = this.topology.addEndpoint({ topic, role: 'publisher', options: { transport: this.#transport } })
    const state = this.#topic(topic)
    const publisher = Publisher.create(endpoint.id, topic, this.#transport, this.#publisherHost, poolSize)
    state.publishers.add(publisher)
    // Links to the topic's existing subscribers (some may exist already, for other topics).
    for (const remote of state.remoteSubscriptions.values()) this.#ensureLink(remote.node)
    this.#refreshTopic(state)
    return publisher
  }

  /**
   * Subscribes to `topic`. Iterate it, or listen to 'message'. Nothing published before
   * arrives; a publisher delivers to the subscription once it has seen it in the topology and
   * linked to this node (its `subscriberCount` / `waitForSubscribers()` tell when).
   */
  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    this.#checkOpen('subscribe()')
    checkTopic(topic)
    const resolved = Subscription.options(options)
    const endpoint = this.topology.addEndpoint({
      topic,
      role: 'subscriber',
      // `transports`: what this node accepts, so each publisher picks per link (PROTOCOL §9.1).
      options: { policy: resolved.policy, queueSize: resolved.queueSize, transports: ['pool', 'segment'] },
    })
    const subscription = Subscription.create(endpoint.id, topic, resolved, this.#subscriptionHost)
    // Registered before the topology announces it: frames can never outrun the subscription.
    this.#subscriptions.set(endpoint.id, subscription)
    this.#topic(topic).subscriptions.add(subscription)
    const signal = resolved.signal
    if (signal !== undefined) {
      // Ended by its signal: an AbortError, not the quiet end of close().
      if (signal.aborted) void subscription.destroy(abortError('subscription', signal))
      else {
        const onAbort = () => void subscription.destroy(abortError('subscription', signal))
        signal.addEventListener('abort', onAbort, { once: true })
        void subscription.closed.then(() => signal.removeEventListener('abort', onAbort))
      }
    }
    return subscription
  }

  /**
   * Leaves the domain: closes publishers (frames already handed out are delivered) and
   * subscriptions, the links, the data socket, then the topology. A peer that reads nothing
   * does not hold it up for more than CLOSE_TIMEOUT_MS (5 s): links still flushing then are
   * cut and their queued frames dropped (reported as an ERR_PUBSUB_LINK 'error'). Idempotent.
   */
  close(): Promise<void> {
    return this.#shutdown(undefined, true)
  }

  /**
   * Leaves at once: links are cut, queued frames dropped. Also ends a close() in progress at
   * once (then `closed` settles with `error`). Idempotent.
   */
  destroy(error?: Error): Promise<void> {
    return this.#shutdown(error, false)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  // ---- hosts handed to publishers, subscriptions and links ----

  readonly #publisherHost = {
    targets: (topic: string): readonly Target[] => this.#topics.get(topic)?.targets ?? [],
    detachPool: (pool: PublisherPool): void => {
      for (const link of this.#outbound.values()) link.detach(pool)
    },
    removed: (publisher: Publisher): void => {
      const state = this.#topics.get(publisher.topic)
      state?.publishers.delete(publisher)
      this.#removeEndpoint(publisher.id)
      if (state) for (const remote of state.remoteSubscriptions.values()) this.#dropLinkIfIdle(remote.node)
      this.#pruneTopic(publisher.topic)
    },
  }

  readonly #subscriptionHost = {
    publisherCount: (topic: string): number => this.#topics.get(topic)?.publisherEndpoints.size ?? 0,
    publisherLive: (topic: string, publisher: string): boolean => this.#topics.get(topic)?.publisherEndpoints.has(publisher) ?? false,
    removed: (subscription: Subscription): void => {
      this.#subscriptions.delete(subscription.id)
      this.#topics.get(subscription.topic)?.subscriptions.delete(subscription)
      for (const link of this.#inbound) link.forget(subscription.id)
      this.#removeEndpoint(subscription.id)
      this.#pruneTopic(subscription.topic)
    },
  }

  readonly #inboundHost = {
    window: (subscription: string): number | undefined => this.#subscriptions.get(subscription)?.queueSize,
    subscriptionId: (n: number): string => `${this.id}/${n}`,
    spinMicroseconds: (): number => {
      let spin = 0
      for (const subscription of this.#subscriptions.values()) spin = Math.max(spin, subscription.spinMicroseconds)
      return spin
    },
    isPeer: (node: string, pid: number): boolean | undefined => {
      const info = this.#nodes.get(node)
      if (info === undefined) return undefined
      // A pid from another pid namespace cannot be compared with SO_PEERCRED's view of it.
      if (info.pidNamespace !== null && info.pidNamespace !== this.topology.info.pidNamespace) return undefined
      return info.pid === pid
    },
    deliver: (link: InboundLink, header: MessageHeader, incoming: Incoming): boolean =>
      this.#subscriptions.get(header.target)?.receive(link, header, incoming) ?? false,
    error: (error: Error): void => this.#emitError(error),
    closed: (link: InboundLink): void => {
      this.#inbound.delete(link)
      for (const subscription of this.#subscriptions.values()) subscription.linkClosed(link)
    },
  }

  readonly #outboundEvents = {
    open: (link: OutboundLink): void => {
      this.#refreshNode(link.node)
    },
    credit: (link: OutboundLink, subscription: string | undefined): void => {
      if (subscription === undefined) {
        // Pool links report completions in batches: every topic the link serves may be ready.
        this.#refreshPublishers(link.node)
        return
      }
      const remote = this.#findRemote(subscription)
      if (remote === undefined) return
      for (const publisher of this.#topics.get(remote.topic)?.publishers ?? []) publisher.update()
    },
    closed: (link: OutboundLink, error: Error | undefined): void => {
      if (this.#outbound.get(link.node) === link) this.#outbound.delete(link.node)
      if (error && !isPeerGone(error)) {
        this.#emitError(
          isLinkFailure(error) ? new PubSubError('ERR_PUBSUB_LINK', `the link to node ${link.node} broke: ${error.message}`, { cause: error }) : error,
        )
      }
      // The back-off starts again only after a link that lasted: a peer that hangs up right
      // after our hello (a version it does not speak, say) is retried ever more slowly.
      const retry = this.#retries.get(link.node)
      if (retry?.timer === undefined && Date.now() - link.openedAt >= STABLE_LINK_MS) this.#retries.delete(link.node)
      this.#refreshNode(link.node)
      // The subscriber's node may be gone (the topology says so shortly) or just have
      // dropped us; if it is still wanted, try again.
      if (!this.#closing && this.#linkWanted(link.node)) this.#scheduleRetry(link.node)
    },
  }

  // ---- topology ----

  #onChange(change: TopologyChange): void {
    if (this.#closing) return
    switch (change.type) {
      case 'node-up':
        this.#nodes.set(change.node.id, change.node)
        return
      case 'node-down': {
        this.#nodes.delete(change.node.id)
        const link = this.#outbound.get(change.node.id)
        if (link) {
          this.#outbound.delete(change.node.id)
          void link.destroy()
        }
        this.#cancelRetry(change.node.id)
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
          if (state.publishers.size > 0) this.#ensureLink(endpoint.node)
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
          this.#outbound.get(endpoint.node)?.unserve(endpoint.id)
          this.#refreshTopic(state)
          this.#dropLinkIfIdle(endpoint.node)
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

  // The hub declared us gone during a failover and we rejoined under a new id: our endpoints
  // were re-registered under it. Rename them, and tell the nodes we link to who we are now.
  #onRejoin(previous: string, id: string): void {
    const rename = (old: string) => `${id}/${old.slice(previous.length + 1)}`
    for (const state of this.#topics.values()) for (const publisher of state.publishers) publisher.rename(rename(publisher.id))
    for (const [old, subscription] of [...this.#subscriptions]) {
      if (!old.startsWith(`${previous}/`)) continue
      this.#subscriptions.delete(old)
      for (const link of this.#inbound) link.forget(old)
      subscription.rename(rename(old))
      this.#subscriptions.set(subscription.id, subscription)
    }
    for (const link of this.#outbound.values()) if (link.open) link.hello(id)
  }

  // ---- links ----

  #linkWanted(node: string): boolean {
    if (!this.#nodes.has(node)) return false
    for (const remote of this.#remoteByNode.get(node) ?? []) {
      if ((this.#topics.get(remote.topic)?.publishers.size ?? 0) > 0) return true
    }
    return false
  }

  #ensureLink(node: string): void {
    if (this.#closing || this.#outbound.has(node) || this.#retries.get(node)?.timer !== undefined) return
    const address = this.#nodes.get(node)?.endpoint
    // A topology node without a data endpoint (a plain topology client) cannot subscribe.
    if (typeof address !== 'string' || address.length === 0) return
    const link = new OutboundLink(node, address, this.#outboundEvents)
    this.#outbound.set(node, link)
    void link.connect(() => this.id, this.#authorize).then((error) => {
      if (error === undefined) return
      if (this.#outbound.get(node) === link) this.#outbound.delete(node)
      if (this.#closing || !this.#linkWanted(node)) return
      if (!isQuietLinkFailure(error) && !this.#diedDuringHandshake(node, error)) this.#emitError(error)
      this.#scheduleRetry(node)
    })
  }

  // A node that dies while we link to it closes the connection before admitting us, which
  // fdpass cannot tell from a refusal (authorize said no): the peer's process tells. Dead or
  // exiting, it did not refuse us, and the topology reports it down shortly.
  #diedDuringHandshake(node: string, error: Error): boolean {
    const cause = error.cause as { code?: unknown; cause?: { code?: unknown } } | undefined
    if (cause?.code !== 'ERR_FDPASS_UNAUTHORIZED' || cause.cause?.code !== 'ERR_FDPASS_PEER_CLOSED') return false
    const info = this.#nodes.get(node)
    // A pid from another pid namespace cannot be looked up here.
    if (info === undefined || (info.pidNamespace !== null && info.pidNamespace !== this.topology.info.pidNamespace)) return false
    return processGone(info.pid)
  }

  #scheduleRetry(node: string): void {
    const retry = this.#retries.get(node) ?? { timer: undefined, delay: LINK_RETRY_MIN_MS / 2 }
    if (retry.timer !== undefined) return
    retry.delay = Math.min(retry.delay * 2, LINK_RETRY_MAX_MS)
    retry.timer = setTimeout(() => {
      retry.timer = undefined
      if (!this.#closing && this.#linkWanted(node)) this.#ensureLink(node)
      else this.#retries.delete(node)
    }, retry.delay)
    retry.timer.unref()
    this.#retries.set(node, retry)
  }

  #cancelRetry(node: string): void {
    const retry = this.#retries.get(node)
    if (retry?.timer !== undefined) clearTimeout(retry.timer)
    this.#retries.delete(node)
  }

  #dropLinkIfIdle(node: string): void {
    // While shutting down, #shutdown closes (or cuts) every link itself, and waits for it.
    if (this.#stopping || this.#linkWanted(node)) return
    this.#cancelRetry(node)
    const link = this.#outbound.get(node)
    if (link === undefined) return
    this.#outbound.delete(node)
    void link.close()
  }

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
        const link = this.#outbound.get(subscription.node)
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

  #removeEndpoint(id: string): void {
    try {
      this.topology.removeEndpoint(id)
    } catch {
      // The topology is closing: the endpoint goes with the node.
    }
  }

  #emitError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  #checkOpen(what: string): void {
    if (this.#closing) throw new PubSubError('ERR_PUBSUB_CLOSED', `${what}: the node is closed`)
  }

  #shutdown(error: Error | undefined, graceful: boolean): Promise<void> {
    if (this.#closing) {
      // destroy() during a close(): cut what is still flushing (as fdpass Channel does).
      if (!graceful && !this.#finished) {
        if (error !== undefined) this.#reason = error
        this.#cutNow()
      }
      return this.#closing
    }
    this.#stopping = true
    this.#reason = error
    let deadline: NodeJS.Timeout | undefined
    if (graceful) {
      deadline = setTimeout(() => {
        if (this.#ending.length > 0) {
          this.#emitError(
            new PubSubError('ERR_PUBSUB_LINK', `close(): links still flushing after ${CLOSE_TIMEOUT_MS} ms were cut (a peer reads nothing)`),
          )
        }
        this.#cutNow()
      }, CLOSE_TIMEOUT_MS)
    } else {
      this.#cut = true
    }
    this.#closing = (async () => {
      for (const retry of this.#retries.values()) if (retry.timer !== undefined) clearTimeout(retry.timer)
      this.#retries.clear()
      const publishers = [...this.#topics.values()].flatMap((state) => [...state.publishers])
      await Promise.all(publishers.map((publisher) => publisher.close()))
      await Promise.all([...this.#subscriptions.values()].map((subscription) => subscription.destroy(error)))
      this.#ending = [...this.#outbound.values(), ...this.#inbound]
      this.#outbound.clear()
      await Promise.all([
        ...this.#ending.map((link) => (this.#cut ? link.destroy() : link.close())),
        this.#cut ? this.#server.destroy() : this.#server.close(),
      ])
      this.#ending = []
      await (this.#cut ? this.topology.destroy() : this.topology.close())
      clearTimeout(deadline)
      this.#finished = true
      const reason = this.#reason
      this.emit('close', reason)
      this.#resolveClosed(reason)
    })()
    return this.#closing
  }

  // Cuts every link, the data socket and the topology connection now. Each is idempotent and
  // ends a pending graceful close of its own, so the shutdown above then finishes at once.
  #cutNow(): void {
    if (this.#cut) return
    this.#cut = true
    for (const link of this.#ending) void link.destroy()
    void this.#server.destroy()
    void this.topology.destroy()
  }
}

function checkPoolSize(options: PublisherOptions): number {
  if (typeof options !== 'object' || options === null) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'options must be an object')
  }
  const size = options.poolSize ?? DEFAULT_POOL_SIZE
  if (!Number.isSafeInteger(size) || size < MIN_POOL_SIZE || size > MAX_POOL_SIZE || (size & (size - 1)) !== 0) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `poolSize must be a power of two from ${MIN_POOL_SIZE} to ${MAX_POOL_SIZE}`)
  }
  return size
}

// An fdpass failure of a link itself (not the peer leaving, not our own close).
function isLinkFailure(error: Error): boolean {
  if (!FdpassError.isInstance(error)) return false
  return error.code !== 'ERR_FDPASS_PEER_CLOSED' && error.code !== 'ERR_FDPASS_CLOSED' && error.code !== 'ERR_FDPASS_ABORTED'
}

function isPeerGone(error: Error): boolean {
  return (error as { code?: unknown }).code === 'ERR_FDPASS_PEER_CLOSED'
}

// A subscriber's node that just died refuses connections until the topology reports it down:
// retried quietly. Anything else (refused by authorize, out of fds) is worth an 'error'.
function isQuietLinkFailure(error: Error): boolean {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  return code === 'ERR_FDPASS_ECONNREFUSED' || code === 'ERR_FDPASS_ENOENT' || code === 'ERR_FDPASS_ABORTED'
}

// PF_EXITING in /proc/<pid>/stat's flags: the process is exiting (its fds are being closed).
const PF_EXITING = 0x4

/** True if process `pid` is gone, a zombie, or exiting. */
function processGone(pid: number): boolean {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return true
  }
  // Fields after the command name (which may hold spaces): state, ppid, pgrp, session, tty_nr, tpgid, flags.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  return state === 'Z' || state === 'X' || state === 'x' || (Number(fields[6]) & PF_EXITING) !== 0
}

function dataAddress(): string {
  // Abstract, so a killed node leaves nothing on disk; random, so it is never reused.
  return `@ipc-pubsub/1/${process.getuid?.() ?? 0}/data/${randomBytes(12).toString('hex')}`
}

/**
 * Joins (or, if first, creates) a domain and resolves with this process's node in it.
 *
 * ```ts
 * await using node = await connect({ domain: 'demo', name: 'camera' })
 * ```
 */
export async function connect(options: ConnectOptions = {}): Promise<PubSubNode> {
  if (typeof options !== 'object' || options === null) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'options must be an object')
  }
  const transport = options.transport ?? 'pool'
  if (!TRANSPORTS.includes(transport)) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `transport must be one of ${TRANSPORTS.join(', ')}`)
  }
  const signal = checkSignal(options.signal)
  const timeout = options.timeout
  if (timeout !== undefined && (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0)) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'timeout must be a number of ms >= 0 (0 or Infinity: no limit)')
  }
  const authorize = options.authorize
  if (authorize !== undefined && typeof authorize !== 'function') {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'authorize must be a function')
  }
  const server = listen(dataAddress(), { ...LINK_CHANNEL_OPTIONS, ...(authorize ? { authorize } : {}) })
  let topology: TopologyClient
  try {
    topology = await join({
      ...(options.domain === undefined ? {} : { domain: options.domain }),
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.metadata === undefined ? {} : { metadata: options.metadata }),
      ...(authorize ? { authorize } : {}),
      ...(signal ? { signal } : {}),
      ...(timeout === undefined ? {} : { timeout }),
      endpoint: server.address,
    })
  } catch (error) {
    await server.destroy()
    if ((error as { code?: unknown }).code === 'ERR_TOPOLOGY_ABORTED' && signal) {
      throw new PubSubError('ERR_PUBSUB_ABORTED', 'connect() was aborted', { cause: signal.reason })
    }
    throw error
  }
  return PubSubNode.create(topology, server, transport, authorize)
}
