// A pubsub node: one per process (or more). It joins the topology with its own data address
// as the node endpoint, registers each publisher and subscription as a topology endpoint,
// and keeps direct links to the nodes it publishes to. Three parts, one job each: this file
// is the public API and the shutdown; routing.ts mirrors the topology and works out, per
// topic, the subscriptions publishers reach; links.ts makes, retries and ends the links.
//
// Nothing here runs without a counterpart: links exist only between a node with a publisher
// and a node with a subscription of the same topic, and the only timer is a link's retry
// after a failed connect (while the subscription it is for still exists).
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { type Authorize, listen, type Server } from '@ipc-pubsub/fdpass'
import { type Json, join, type TopologyChange, type TopologyClient } from '@ipc-pubsub/topology'
import { abortError, checkSignal, PubSubError } from './errors.js'
import type { MessageHeader } from './frames.js'
import { type InboundHost, type InboundLink, LINK_CHANNEL_OPTIONS } from './link.js'
import { Links } from './links.js'
import { Publisher, type PublisherHost, type PublisherOptions } from './publisher.js'
import { Routing } from './routing.js'
import { type SubscribeOptions, Subscription, type SubscriptionHost } from './subscription.js'
import { DEFAULT_POOL_SIZE, MAX_POOL_SIZE, MIN_POOL_SIZE } from './pool.js'
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

/**
 * How long close() lets links flush to peers before it cuts them: a peer that reads nothing
 * (a stopped process) cannot hold a closing node forever. Frames still queued then are dropped.
 */
export const CLOSE_TIMEOUT_MS = 5000

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
  // This node's subscriptions by id: where inbound links deliver.
  readonly #subscriptions = new Map<string, Subscription>()
  readonly #routing: Routing
  readonly #links: Links
  #closing: Promise<void> | undefined
  // Set once the links are being cut (destroy(), or close() past CLOSE_TIMEOUT_MS).
  #cut = false
  #finished = false
  #reason: Error | undefined
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
    // Routing and links call each other only through these two small interfaces.
    this.#links = new Links(
      {
        self: () => this.id,
        closing: () => this.#closing !== undefined,
        wanted: (node) => this.#routing.linkWanted(node),
        address: (node) => this.#routing.node(node)?.endpoint,
        peerPid: (node) => this.#peerPid(node),
        linkChanged: (node) => this.#routing.linkChanged(node),
        credit: (node, subscription) => this.#routing.credit(node, subscription),
        error: (error) => this.#emitError(error),
      },
      this.#inboundHost,
      authorize,
    )
    this.#routing = new Routing(this.#links)
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    server.on('connection', (channel) => {
      if (this.#closing) {
        void channel.destroy()
        return
      }
      this.#links.accept(channel)
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
    const resolved = publisherOptions(options)
    const endpoint = this.topology.addEndpoint({ topic, role: 'publisher', options: { transport: this.#transport } })
    const publisher = Publisher.create(endpoint.id, topic, this.#transport, this.#publisherHost, resolved)
    this.#routing.addPublisher(publisher)
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
    this.#routing.addSubscription(subscription)
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

  // ---- hosts handed to publishers, subscriptions and inbound links ----

  readonly #publisherHost: PublisherHost = {
    targets: (topic) => this.#routing.targets(topic),
    detachPool: (pool) => this.#links.detach(pool),
    removed: (publisher) => {
      this.#removeEndpoint(publisher.id)
      this.#routing.removePublisher(publisher)
    },
  }

  readonly #subscriptionHost: SubscriptionHost = {
    publisherCount: (topic) => this.#routing.publisherCount(topic),
    publisherLive: (topic, publisher) => this.#routing.publisherLive(topic, publisher),
    removed: (subscription) => {
      this.#subscriptions.delete(subscription.id)
      this.#links.forget(subscription.id)
      this.#removeEndpoint(subscription.id)
      this.#routing.removeSubscription(subscription)
    },
  }

  readonly #inboundHost: InboundHost = {
    window: (subscription: string): number | undefined => this.#subscriptions.get(subscription)?.queueSize,
    subscriptionId: (n: number): string => `${this.id}/${n}`,
    spinMicroseconds: (): number => {
      let spin = 0
      for (const subscription of this.#subscriptions.values()) spin = Math.max(spin, subscription.spinMicroseconds)
      return spin
    },
    isPeer: (node: string, pid: number): boolean | undefined => {
      const peer = this.#peerPid(node)
      return peer === undefined ? undefined : peer === pid
    },
    deliver: (link: InboundLink, header: MessageHeader, incoming: Incoming): boolean =>
      this.#subscriptions.get(header.target)?.receive(link, header, incoming) ?? false,
    error: (error: Error): void => this.#emitError(error),
    // The link manager has already forgotten the link.
    closed: (link: InboundLink): void => {
      for (const subscription of this.#subscriptions.values()) subscription.linkClosed(link)
    },
  }

  // The pid of `node`'s process as seen here, if the topology knows the node.
  #peerPid(node: string): number | undefined {
    const info = this.#routing.node(node)
    if (info === undefined) return undefined
    // A pid from another pid namespace cannot be compared with SO_PEERCRED's view of it, nor looked up.
    if (info.pidNamespace !== null && info.pidNamespace !== this.topology.info.pidNamespace) return undefined
    return info.pid
  }

  // ---- topology ----

  #onChange(change: TopologyChange): void {
    if (this.#closing) return
    this.#routing.apply(change)
  }

  // The hub declared us gone during a failover and we rejoined under a new id: our endpoints
  // were re-registered under it. Rename them, and tell the nodes we link to who we are now.
  #onRejoin(previous: string, id: string): void {
    const rename = (old: string) => `${id}/${old.slice(previous.length + 1)}`
    for (const publisher of this.#routing.publishers()) publisher.rename(rename(publisher.id))
    for (const [old, subscription] of [...this.#subscriptions]) {
      if (!old.startsWith(`${previous}/`)) continue
      this.#subscriptions.delete(old)
      this.#links.forget(old)
      subscription.rename(rename(old))
      this.#subscriptions.set(subscription.id, subscription)
    }
    this.#links.hello(id)
  }

  // ---- bookkeeping ----

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
    this.#links.stop()
    this.#reason = error
    let deadline: NodeJS.Timeout | undefined
    if (graceful) {
      deadline = setTimeout(() => {
        if (this.#links.flushing) {
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
      this.#links.cancelRetries()
      const publishers = this.#routing.publishers()
      await Promise.all(publishers.map((publisher) => publisher.close()))
      await Promise.all([...this.#subscriptions.values()].map((subscription) => subscription.destroy(error)))
      await Promise.all([...this.#links.end(this.#cut), this.#cut ? this.#server.destroy() : this.#server.close()])
      this.#links.ended()
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
    this.#links.cut()
    void this.#server.destroy()
    void this.topology.destroy()
  }
}

function publisherOptions(options: PublisherOptions): Required<PublisherOptions> {
  if (typeof options !== 'object' || options === null) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'options must be an object')
  }
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE
  if (!Number.isSafeInteger(poolSize) || poolSize < MIN_POOL_SIZE || poolSize > MAX_POOL_SIZE || (poolSize & (poolSize - 1)) !== 0) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `poolSize must be a power of two from ${MIN_POOL_SIZE} to ${MAX_POOL_SIZE}`)
  }
  const spinMicroseconds = options.spinMicroseconds ?? 0
  if (typeof spinMicroseconds !== 'number' || !Number.isFinite(spinMicroseconds) || spinMicroseconds < 0 || spinMicroseconds > 1_000_000) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'spinMicroseconds must be a number in 0..1000000')
  }
  return { poolSize, spinMicroseconds }
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
