// The topology client: one per node. It takes part in the election, runs the hub when it
// wins, keeps the history the hub sends, and reports changes of the derived state.
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { basename } from 'node:path'
import { isMainThread } from 'node:worker_threads'
import { type Authorize, type Channel, connect, type Message, type PeerCredentials } from '@ipc-pubsub/fdpass'
import { ChangeTracker, type TopologyChange } from './changes.js'
import { abstractRendezvous, checkDomain, directoryRendezvous, type Rendezvous } from './election.js'
import { TopologyError } from './errors.js'
import { type EndpointInfo, type EndpointRole, History, type Json, type NodeInfo, type NodeState, type TopologyEvent } from './history.js'
import type { ClaimRequest } from './hub-messages.js'
import { createHubHost, type HubHost } from './hub-thread.js'
import { processIdentity, processState } from './liveness.js'
import { closeFd } from './native.js'
import { type HubMessage, jsonObject, PROTOCOL_VERSION, parseHubMessage } from './protocol.js'
import { decode, send } from './wire.js'

/** Options of `join()`. */
export interface JoinOptions {
  /** The domain to join: 1-64 characters of [A-Za-z0-9_.-]. Default `default`. */
  domain?: string
  /** A human-readable name for this node (not unique). Default: the script's name and pid. */
  name?: string
  /** This node's data endpoint (an fdpass address), published in its NodeInfo. Default null. */
  endpoint?: string | null
  /** JSON data published with this node (at most 16 KiB serialized). */
  metadata?: { [key: string]: Json }
  /**
   * Directory mode: the hub socket is `<directory>/<domain>.hub`, the election lock
   * `<directory>/<domain>.lock`. For processes in different network namespaces that share a
   * volume. Default: abstract mode (the socket name includes the uid).
   */
  directory?: string
  /**
   * Who may take part, checked on both sides of every hub connection (the hub checks each
   * client, each client checks the hub). Default: the same uid (a client also trusts root).
   */
  authorize?: Authorize
  /** Aborts the initial join. */
  signal?: AbortSignal
  /**
   * How long the initial join may take (ms), until synced with a hub. Past it, join() rejects
   * with ERR_TOPOLOGY_TIMEOUT naming the pid of the hub that did not answer (a stopped
   * process, say). 0 or Infinity: no limit. Default 5000. A joined client is not affected:
   * it waits for its hub (or elects a new one when the hub's process dies).
   */
  timeout?: number
  /** After a failover, how long a new hub waits for a node that may be alive. Default 1000 ms. */
  reconnectGrace?: number
  /** Departed nodes/endpoints the hub keeps in the history (bounded tail). Default 1000. */
  historyTail?: number
}

/** The hub a client is synced with. */
export interface HubInfo {
  /** The hub node's id. */
  readonly id: string
  /** The hub's epoch: greater than every epoch before it in this domain. */
  readonly epoch: number
  /** True if the hub runs in this process. */
  readonly self: boolean
}

/** The current state as `snapshot()` returns it. */
export interface TopologySnapshot {
  /** The hub this client is synced with, or null between hubs. */
  readonly hub: HubInfo | null
  /** Live nodes in join order, each with its live endpoints. */
  readonly nodes: readonly NodeState[]
}

/** Events of a TopologyClient and their arguments. */
export interface TopologyClientEvents {
  /** Every change, in order. */
  event: [change: TopologyChange]
  'node-up': [change: Extract<TopologyChange, { type: 'node-up' }>]
  'node-down': [change: Extract<TopologyChange, { type: 'node-down' }>]
  'endpoint-up': [change: Extract<TopologyChange, { type: 'endpoint-up' }>]
  'endpoint-down': [change: Extract<TopologyChange, { type: 'endpoint-down' }>]
  /** Synced with a (new) hub. */
  hub: [hub: HubInfo]
  /** The hub declared this node gone (it missed a failover's grace period); it rejoined as `id`. */
  rejoin: [info: { previous: string; id: string }]
  /** Problems that do not stop the client (a peer's protocol error, an untrusted hub). Only with a listener. */
  error: [error: Error]
}

/** Changes an async iterator may buffer before it fails with ERR_TOPOLOGY_ITERATOR_OVERFLOW. */
const MAX_ITERATOR_BACKLOG = 65536
const MAX_BACKOFF_MS = 50
/** Default `timeout` of join(). */
const DEFAULT_JOIN_TIMEOUT_MS = 5000
/**
 * After the hub is lost, how long the other nodes leave the election to the successor (whose
 * hub thread is already running) before they take part themselves: its main thread may be
 * busy, or it may have died with the hub.
 */
const SUCCESSOR_WAIT_MS = 250
/**
 * How long a node that became the successor waits before it starts its standby thread: a
 * thread start costs tens of ms of CPU (hundreds on a loaded machine), which must not slow
 * down the failover that made this node the successor.
 */
const STANDBY_DELAY_MS = 500
/** How long an exiting thread waits for its hub threads to close their sockets. */
const EXIT_WAIT_MS = 500
/** A failed connect that took this long was held by someone (see #loop). */
const HELD_MS = 5
/** Retry period while the hub address is held by a process we do not trust. */
const UNTRUSTED_BACKOFF_MS = 1000

/** The default check of the hub's process: our uid, or root. */
function sameUidOrRoot(peer: PeerCredentials): boolean {
  return peer.uid === 0 || peer.uid === process.getuid?.()
}

function newNodeId(): string {
  return randomBytes(8).toString('hex')
}

function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

function intOption(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}`)
  }
  return value
}

interface IteratorQueue {
  readonly items: TopologyChange[]
  wake: (() => void) | undefined
  error: Error | undefined
  done: boolean
}

const createToken = Symbol('TopologyClient.create')

/**
 * A node's view of its domain. Create with `join()`.
 *
 * Delivery: changes follow the derived state (who is up, which endpoints exist), so each
 * node and endpoint is reported up at most once and down at most once, across hub
 * failovers too. Changes are delivered from the first macrotask after `join()` resolves:
 * attach listeners (or start iterating) right after `await join()`.
 */
export class TopologyClient
  extends EventEmitter<TopologyClientEvents>
  implements AsyncIterable<TopologyChange>, AsyncDisposable
{
  /** The domain this node joined. */
  readonly domain: string
  /** Where the domain's hub listens (an fdpass address). */
  readonly address: string
  /** Settles when the client is closed: undefined after close(), else the error. Never rejects. */
  readonly closed: Promise<Error | undefined>

  #info: NodeInfo
  readonly #rendezvous: Rendezvous
  readonly #authorize: Authorize | undefined
  readonly #grace: number
  readonly #tail: number
  #history = new History()
  readonly #tracker = new ChangeTracker()
  readonly #endpoints = new Map<string, EndpointInfo>()
  #endpointSeq = 0
  // What runs (or is claiming) our hub; undefined while another process's hub serves.
  #hubHost: HubHost | undefined
  // The pid of the process that holds the hub address, as the kernel told us on the last connect.
  #hubPid: number | undefined
  // The successor's idle hub thread (see #updateStandby), and the timer that will start it.
  #standby: HubHost | undefined
  #standbyTimer: NodeJS.Timeout | undefined
  // The hub (`<id>:<epoch>`) the standby watches, if armed.
  #armedFor: string | undefined
  // Every node id this client has had: a hub minting with one of them is ours.
  readonly #ownIds = new Set<string>()
  // performance.now() when a session with a hub that had welcomed us ended.
  #hubLostAt: number | undefined
  #hubInfo: HubInfo | null = null
  // The last hub synced with (kept between hubs): 'hub' fires only when it changes.
  #lastHub: HubInfo | null = null
  #channel: Channel | undefined
  #helloSent = false
  #stopping = false
  #closing: Promise<void> | undefined
  #resolveClosed!: (reason: Error | undefined) => void
  #wake = new AbortController()
  #run: Promise<void> | undefined
  readonly #iterators = new Set<IteratorQueue>()
  // Until the first flush after join() resolves, deliveries wait here (see class doc).
  #deferred: (() => void)[] | undefined = []
  #firstSync: { resolve: () => void; reject: (error: Error) => void } | undefined

  // The open clients of this thread, stopped synchronously when the thread exits (see
  // #onThreadExit). One 'exit' listener per thread, installed while there are any.
  static readonly #live = new Set<TopologyClient>()
  static #exitListener: (() => void) | undefined

  /** @internal Use join(). */
  constructor(token: typeof createToken, options: JoinOptions) {
    if (token !== createToken) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'TopologyClient cannot be constructed directly: use join()')
    }
    super()
    this.domain = checkDomain(options.domain ?? 'default')
    this.#rendezvous =
      options.directory === undefined ? abstractRendezvous(this.domain) : directoryRendezvous(options.directory, this.domain)
    this.address = this.#rendezvous.address
    if (options.authorize !== undefined && typeof options.authorize !== 'function') {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'authorize must be a function')
    }
    this.#authorize = options.authorize
    this.#grace = intOption(options.reconnectGrace, 'reconnectGrace', 1000, 0, 3_600_000)
    this.#tail = intOption(options.historyTail, 'historyTail', 1000, 1, 1_000_000)
    const name = options.name ?? `${basename(process.argv[1] ?? 'node')}[${process.pid}]`
    if (typeof name !== 'string' || name.length > 256) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'name must be a string of at most 256 characters')
    }
    const endpoint = options.endpoint ?? null
    if (endpoint !== null && (typeof endpoint !== 'string' || endpoint.length === 0)) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'endpoint must be a non-empty string or null')
    }
    let metadata: { [key: string]: Json }
    try {
      metadata = jsonObject(options.metadata ?? {}, 'metadata')
    } catch (error) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', (error as Error).message)
    }
    const me = processIdentity()
    this.#info = Object.freeze({
      id: newNodeId(),
      name,
      pid: me.pid,
      startTime: me.startTime,
      pidNamespace: me.pidNamespace,
      endpoint,
      metadata: structuredClone(metadata),
    })
    this.#ownIds.add(this.#info.id)
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
  }

  /** @internal */
  static async join(options: JoinOptions): Promise<TopologyClient> {
    if (typeof options !== 'object' || options === null) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'options must be an object')
    }
    const signal = options.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'signal must be an AbortSignal')
    }
    if (signal?.aborted) throw aborted(signal)
    const timeout = options.timeout === undefined ? DEFAULT_JOIN_TIMEOUT_MS : options.timeout
    if (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'timeout must be a number of ms >= 0 (0 or Infinity: none)')
    }
    const client = new TopologyClient(createToken, options)
    const synced = new Promise<void>((resolve, reject) => {
      client.#firstSync = { resolve, reject }
    })
    const onAbort = () => void client.destroy(aborted(signal as AbortSignal))
    signal?.addEventListener('abort', onAbort, { once: true })
    // setTimeout takes at most 2^31 - 1 ms; anything longer is as good as no limit.
    const timer =
      timeout > 0 && timeout < 2 ** 31 ? setTimeout(() => void client.destroy(client.#timedOut(timeout)), timeout) : undefined
    TopologyClient.#live.add(client)
    TopologyClient.#exitListener ??= () => TopologyClient.#onThreadExit()
    if (TopologyClient.#live.size === 1) process.on('exit', TopologyClient.#exitListener)
    client.#run = client.#loop()
    try {
      await synced
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    setImmediate(() => client.#flushDeferred())
    return client
  }

  /** This node's id. Changes only if the hub declared the node gone ('rejoin' event). */
  get id(): string {
    return this.#info.id
  }

  /** This node as the domain sees it. */
  get info(): NodeInfo {
    return this.#info
  }

  /** True while the domain's hub runs in this process. */
  get isHub(): boolean {
    return this.#hubInfo?.self === true
  }

  /** The hub this client is synced with, or null between hubs. */
  get hub(): HubInfo | null {
    return this.#hubInfo
  }

  /** The current state: the hub, and every live node with its live endpoints. */
  snapshot(): TopologySnapshot {
    return { hub: this.#hubInfo, nodes: this.#history.state() }
  }

  /** The history as the hub last sent it, in order (bounded: departed entities are compacted). */
  history(): TopologyEvent[] {
    return this.#history.events()
  }

  /** The live endpoints of `topic`, across the domain, in registration order. */
  endpoints(topic?: string): EndpointInfo[] {
    const list: EndpointInfo[] = []
    for (const { endpoints } of this.#history.state()) {
      for (const endpoint of endpoints) if (topic === undefined || endpoint.topic === topic) list.push(endpoint)
    }
    return list
  }

  /**
   * Registers an endpoint of this node. Returns its info at once; the domain sees it (an
   * 'endpoint-up' change, here too) once the hub has minted it. Survives failovers.
   */
  addEndpoint(endpoint: { topic: string; role: EndpointRole; options?: { [key: string]: Json } }): EndpointInfo {
    this.#checkOpen('addEndpoint')
    if (typeof endpoint !== 'object' || endpoint === null) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'endpoint must be an object')
    }
    const { topic, role } = endpoint
    if (typeof topic !== 'string' || topic.length === 0 || topic.length > 1024) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'topic must be a string of 1-1024 characters')
    }
    if (role !== 'publisher' && role !== 'subscriber') {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', 'role must be "publisher" or "subscriber"')
    }
    let options: { [key: string]: Json }
    try {
      options = jsonObject(endpoint.options ?? {}, 'options')
    } catch (error) {
      throw new TopologyError('ERR_TOPOLOGY_INVALID_ARGUMENT', (error as Error).message)
    }
    const suffix = (++this.#endpointSeq).toString(36)
    const info: EndpointInfo = Object.freeze({
      id: `${this.#info.id}/${suffix}`,
      node: this.#info.id,
      topic,
      role,
      options: structuredClone(options),
    })
    this.#endpoints.set(info.id, info)
    this.#sendToHub({ type: 'endpoint-add', endpoint: info })
    return info
  }

  /** Unregisters an endpoint of this node. Returns false if it is not registered. */
  removeEndpoint(id: string): boolean {
    this.#checkOpen('removeEndpoint')
    if (!this.#endpoints.delete(id)) return false
    this.#sendToHub({ type: 'endpoint-remove', endpoint: id })
    return true
  }

  /**
   * Leaves the domain: tells the hub (others see 'node-down' with reason `closed`), lets the
   * connection drain, and, if the hub runs here, hands it over (the others elect a new one).
   * Idempotent.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing
    this.#stopping = true
    const standby = this.#stopStandby()
    this.#closing = (async () => {
      const channel = this.#channel
      const thread = this.#hubHost
      if (thread?.holding) {
        await thread.close(this.#info.id)
        await channel?.destroy()
      } else if (channel) {
        if (this.#helloSent) this.#sendToHub({ type: 'bye' })
        await channel.close()
      }
      this.#wake.abort()
      await this.#run
      // A thread that was still claiming (or lost its claim) ends too.
      await Promise.all([this.#hubHost?.destroy(), standby])
      this.#finish(undefined)
    })()
    return this.#closing
  }

  /** Leaves at once, without a goodbye (others see reason `exited`). Idempotent. */
  destroy(error?: Error): Promise<void> {
    this.#stopping = true
    const standby = this.#stopStandby()
    const previous = this.#closing
    this.#closing = (async () => {
      const channel = this.#channel
      await Promise.all([this.#hubHost?.destroy(this.#info.id), channel?.destroy(), standby])
      this.#wake.abort()
      await this.#run
      // A claim that was under way when destroy() began has ended with the loop.
      await this.#hubHost?.destroy()
      await previous
      this.#finish(error)
    })()
    return this.#closing
  }

  #stopStandby(): Promise<void> | undefined {
    clearTimeout(this.#standbyTimer)
    this.#standbyTimer = undefined
    return this.#takeStandby()?.destroy()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Changes as an async iterable (from the moment of the call on; see the class doc). */
  [Symbol.asyncIterator](): AsyncIterator<TopologyChange> {
    const queue: IteratorQueue = { items: [], wake: undefined, error: undefined, done: this.#stopping }
    this.#iterators.add(queue)
    const finish = (): IteratorResult<TopologyChange> => {
      this.#iterators.delete(queue)
      queue.done = true
      return { value: undefined, done: true }
    }
    return {
      next: async () => {
        for (;;) {
          const item = queue.items.shift()
          if (item !== undefined) return { value: item, done: false }
          if (queue.error) {
            const error = queue.error
            finish()
            throw error
          }
          if (queue.done) return finish()
          await new Promise<void>((resolve) => {
            queue.wake = resolve
          })
          queue.wake = undefined
        }
      },
      return: async () => finish(),
    }
  }

  // ---- the connection loop ----

  async #loop(): Promise<void> {
    let backoff = 1
    while (!this.#stopping) {
      if (this.#hubHost === undefined && this.#mayClaim()) {
        try {
          await this.#claimHub()
        } catch (error) {
          if (this.#stopping) break
          this.#fail(error as Error)
          return
        }
        if (this.#stopping) break
      }
      let channel: Channel
      let refusedHub = false
      const authorize = this.#authorize ?? sameUidOrRoot
      const attemptStart = performance.now()
      try {
        channel = await connect(this.#rendezvous.address, {
          authorize: async (peer) => {
            // SO_PEERCRED names the listener even before it accepts (a stopped hub's backlog
            // still takes connects): the pid join()'s timeout reports.
            this.#hubPid = peer.pid
            // A throwing authorize refuses too.
            refusedHub = true
            const ok = (await authorize(peer)) === true
            refusedHub = !ok
            return ok
          },
          signal: this.#wake.signal,
        })
      } catch (error) {
        if (this.#stopping) break
        if (refusedHub) {
          const untrusted = new TopologyError(
            'ERR_TOPOLOGY_UNTRUSTED_HUB',
            `the hub address ${this.#rendezvous.address} is held by a process authorize() refused`,
            { cause: error },
          )
          // join() fails with it at once; a joined client reports it and retries each second
          // (the squatter may go away, and then the election resumes).
          if (this.#firstSync) {
            this.#fail(untrusted)
            return
          }
          this.#emitError(untrusted)
          backoff = UNTRUSTED_BACKOFF_MS
        } else if (performance.now() - attemptStart >= HELD_MS) {
          // Someone held our connection and then let it go: the election winner's placeholder,
          // whose hub thread now listens. Retry at once instead of after a grown back-off.
          backoff = 1
        }
        // Retryable: the name is free but not yet re-bound (ECONNREFUSED), the file is gone
        // (ENOENT), the backlog is full (EAGAIN), or the hub closed before its admission
        // hello (ERR_FDPASS_UNAUTHORIZED: it died during the handshake, or refused us).
        await this.#sleep(backoff + Math.random() * backoff)
        backoff = Math.min(backoff * 2, Math.max(backoff, MAX_BACKOFF_MS))
        continue
      }
      if (this.#stopping) {
        await channel.destroy()
        break
      }
      backoff = 1
      const clean = await this.#session(channel)
      if (!clean) {
        // The hub spoke nonsense: do not hammer it.
        await this.#sleep(100)
      }
    }
  }

  /**
   * Takes part in the election: reserves the hub address in this thread (cheap, so only the
   * winner starts a thread), then lets a hub thread claim it. Leaves #hubHost set only if
   * that thread runs our hub. Throws what is fatal: the address cannot be used (directory
   * errors) or the hub thread cannot start.
   */
  async #claimHub(): Promise<void> {
    const reservation = this.#rendezvous.reserve()
    if (reservation === undefined) return
    const thread = this.#takeStandby() ?? this.#newHubHost()
    this.#hubHost = thread
    let claimed = false
    try {
      claimed = await thread.claim(reservation, () => this.#claimRequest())
    } finally {
      if (!claimed) {
        if (this.#hubHost === thread) this.#hubHost = undefined
        // Another process won the gap: the thread is up and idle, keep it as the standby
        // (the next report stops it if this node is not the successor).
        if (!this.#stopping && thread.usable && this.#standby === undefined) this.#standby = thread
        else void thread.destroy()
      }
    }
  }

  #newHubHost(): HubHost {
    return createHubHost(isMainThread, {
      authorize: this.#authorize,
      onError: (error) => this.#emitError(error),
      onCrash: (crashed, error) => this.#onHubThreadCrash(crashed, error),
      onClaimed: (host) => {
        // Our armed standby saw the hub's process die and took over: it is our hub now.
        if (host !== this.#standby) return
        this.#standby = undefined
        this.#armedFor = undefined
        if (this.#hubHost === undefined && !this.#stopping) this.#hubHost = host
        else void host.destroy()
      },
    })
  }

  #takeStandby(): HubHost | undefined {
    const standby = this.#standby
    this.#standby = undefined
    return standby?.usable ? standby : undefined
  }

  /**
   * The node that takes over when the hub is lost: the first live node in join order that is
   * not the lost hub's and does not live in the hub's process (it dies with it).
   */
  #successor(): NodeInfo | undefined {
    const hubId = this.#lastHub?.id
    const hubNode = hubId === undefined ? undefined : this.#history.nodeInfo(hubId)
    for (const id of this.#history.upNodes()) {
      if (id === hubId) continue
      const node = this.#history.nodeInfo(id)
      if (node === undefined) continue
      if (hubNode !== undefined && node.pid === hubNode.pid && node.pidNamespace === hubNode.pidNamespace) continue
      return node
    }
    return undefined
  }

  /**
   * Whether to take part in the election now. A node that never had a hub, and the
   * successor, do at once. The others first give the successor SUCCESSOR_WAIT_MS (its hub
   * thread is already up, so it takes over in about a millisecond, where a new thread takes
   * 50-300 ms on a busy machine), unless its process is verifiably gone.
   */
  #mayClaim(): boolean {
    if (this.#hubLostAt === undefined) return true
    if (performance.now() - this.#hubLostAt >= SUCCESSOR_WAIT_MS) return true
    const successor = this.#successor()
    if (successor === undefined) return true
    if (successor.id !== this.#info.id) return processState(successor) === 'dead'
    // We are the successor. If our standby is armed and the hub's process died, the standby
    // claims on its own (it saw the death first): leave it to it, only connect meanwhile.
    const lost = this.#lastHub === null ? undefined : this.#history.nodeInfo(this.#lastHub.id)
    return !(this.#standby?.armed === true && lost !== undefined && processState(lost) === 'dead')
  }

  /**
   * Keeps an idle hub thread ready while this node is the successor, so that a failover does
   * not wait for a thread to start. One idle thread per domain, none elsewhere: a node that
   * is not the successor (or holds the hub) stops its standby. (A client in a worker thread
   * runs its hub on its own thread: it needs none.)
   */
  #updateStandby(): void {
    const wanted =
      isMainThread &&
      !this.#stopping &&
      this.#hubHost === undefined &&
      this.#hubInfo !== null &&
      this.#successor()?.id === this.#info.id
    if (!wanted) {
      clearTimeout(this.#standbyTimer)
      this.#standbyTimer = undefined
      this.#armedFor = undefined
      void this.#takeStandby()?.destroy()
      return
    }
    if (this.#standby?.usable) {
      this.#arm()
      return
    }
    if (this.#standbyTimer !== undefined) return
    this.#standbyTimer = setTimeout(() => {
      this.#standbyTimer = undefined
      if (this.#stopping || this.#hubHost !== undefined || this.#successor()?.id !== this.#info.id) return
      this.#standby = this.#newHubHost()
      this.#armedFor = undefined
      this.#arm()
    }, STANDBY_DELAY_MS)
    this.#standbyTimer.unref()
  }

  /**
   * Arms the standby on the current hub's process (the pid the kernel gave at connect), once
   * per hub: the standby then claims the moment that process dies, without waiting for this
   * thread. Not for a hub whose pid we cannot see (another pid namespace: pid 0).
   */
  #arm(): void {
    const hub = this.#hubInfo
    const pid = this.#hubPid
    const standby = this.#standby
    if (hub === null || hub.self || standby === undefined || pid === undefined || pid <= 0 || pid === process.pid) return
    const key = `${hub.id}:${hub.epoch}`
    if (this.#armedFor === key && standby.armed) return
    this.#armedFor = key
    standby.arm(pid, this.#claimRequest())
  }

  #claimRequest(): ClaimRequest {
    return {
      type: 'claim',
      address: this.#rendezvous.address,
      path: this.#rendezvous.path,
      lockPath: this.#rendezvous.lockPath,
      askAuthorize: this.#authorize !== undefined,
      hub: {
        id: this.#info.id,
        epoch: monotonicMicros(),
        history: this.#history.events(),
        tail: this.#tail,
        grace: this.#grace,
      },
    }
  }

  // Our hub thread died (a bug in it, or a resource limit): its sockets closed with it, so the
  // others elect a new hub. Our own connection to it may not have noticed yet: drop it.
  #onHubThreadCrash(thread: HubHost, error: TopologyError): void {
    if (this.#standby === thread) this.#standby = undefined
    if (this.#hubHost !== thread) return
    this.#hubHost = undefined
    if (this.#stopping) return
    this.#emitError(error)
    if (this.#hubInfo?.self) void this.#channel?.destroy()
  }

  #timedOut(timeout: number): TopologyError {
    const pid = this.#hubPid
    const who = pid === undefined ? `no hub answered on ${this.address}` : `the hub (pid ${pid}) did not answer`
    return new TopologyError('ERR_TOPOLOGY_TIMEOUT', `join() timed out after ${timeout} ms: ${who}`, { hubPid: pid })
  }

  /** One hub connection, from hello until it closes. Resolves false after a protocol error. */
  async #session(channel: Channel): Promise<boolean> {
    this.#channel = channel
    let clean = true
    let welcomed = false
    channel.on('message', (frame: Message) => {
      // Once close()/destroy() began, nothing more is reported: not even this node's own
      // node-left, which our hub thread mints and sends while our thread waits for it.
      if (this.#stopping) {
        for (const fd of frame.fds) closeFd(fd)
        return
      }
      let message: HubMessage
      try {
        message = parseHubMessage(decode(frame))
        if (!welcomed && message.type === 'events') {
          throw new TopologyError('ERR_TOPOLOGY_PROTOCOL', 'events before welcome')
        }
      } catch (error) {
        clean = false
        this.#emitError(error as Error)
        void channel.destroy(error as Error)
        return
      }
      if (message.type === 'welcome') welcomed = true
      this.#onHubMessage(channel, message)
    })
    try {
      send(channel, {
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        node: this.#info,
        endpoints: [...this.#endpoints.values()],
        history: this.#history.events(),
      })
      this.#helloSent = true
    } catch (error) {
      void channel.destroy(error as Error)
    }
    await channel.closed
    this.#channel = undefined
    this.#helloSent = false
    this.#hubInfo = null
    if (welcomed) this.#hubLostAt = performance.now()
    return clean
  }

  #onHubMessage(channel: Channel, message: HubMessage): void {
    switch (message.type) {
      case 'welcome': {
        // The hub is the source of truth: its history replaces ours, and the tracker reports
        // the difference to what we reported before.
        this.#history = new History(message.history)
        const previous = this.#lastHub
        // A hub mints with the id its claimer had: one of ours means our own hub (after a
        // 'rejoin' our id differs from the one we won with). This holds also before the news
        // of an armed standby's claim has reached this thread.
        const self = this.#ownIds.has(message.hub)
        if (self && this.#hubHost === undefined && this.#standby !== undefined) {
          // Our armed standby claimed, and its hub welcomed us before its own news arrived.
          this.#hubHost = this.#standby
          this.#standby = undefined
          this.#armedFor = undefined
        }
        this.#hubInfo = Object.freeze({ id: message.hub, epoch: message.epoch, self })
        this.#lastHub = this.#hubInfo
        this.#hubLostAt = undefined
        this.#report()
        if (previous?.id !== message.hub || previous.epoch !== message.epoch) {
          const info = this.#hubInfo
          this.#deliver(() => this.emit('hub', info))
        }
        if (this.#firstSync) {
          this.#firstSync.resolve()
          this.#firstSync = undefined
        }
        return
      }
      case 'events':
        this.#history.merge(message.events)
        if (message.forget) this.#history.forget(message.forget)
        this.#report()
        return
      case 'rejected': {
        if (message.code === 'ERR_TOPOLOGY_NODE_LEFT') this.#renewIdentity()
        void channel.close()
        return
      }
    }
  }

  // The hub minted our node-left while we were alive (we missed a failover's grace period):
  // node ids are never reused, so rejoin as a new node with the same endpoints.
  #renewIdentity(): void {
    const previous = this.#info.id
    const id = newNodeId()
    this.#info = Object.freeze({ ...this.#info, id })
    this.#ownIds.add(id)
    const endpoints = [...this.#endpoints.values()]
    this.#endpoints.clear()
    for (const endpoint of endpoints) {
      const suffix = endpoint.id.slice(endpoint.id.indexOf('/') + 1)
      this.#endpoints.set(`${id}/${suffix}`, Object.freeze({ ...endpoint, id: `${id}/${suffix}`, node: id }))
    }
    this.#deliver(() => this.emit('rejoin', { previous, id }))
  }

  #sendToHub(message: object): void {
    const channel = this.#channel
    if (channel === undefined || !this.#helloSent || channel.state !== 'open') return
    try {
      send(channel, message)
    } catch (error) {
      // The next hello carries our whole state, so a lost update is repaired on reconnect.
      void channel.destroy(error as Error)
    }
  }

  // ---- delivery ----

  #report(): void {
    this.#updateStandby()
    for (const change of this.#tracker.update(this.#history)) {
      this.#deliver(() => {
        this.emit('event', change)
        ;(this.emit as (event: string, change: TopologyChange) => boolean)(change.type, change)
        for (const queue of this.#iterators) this.#push(queue, change)
      })
    }
  }

  #deliver(action: () => void): void {
    if (this.#deferred) this.#deferred.push(action)
    else action()
  }

  #flushDeferred(): void {
    const deferred = this.#deferred
    this.#deferred = undefined
    for (const action of deferred ?? []) action()
  }

  #push(queue: IteratorQueue, change: TopologyChange): void {
    if (queue.done || queue.error) return
    if (queue.items.length >= MAX_ITERATOR_BACKLOG) {
      queue.error = new TopologyError('ERR_TOPOLOGY_ITERATOR_OVERFLOW', `iterator fell ${MAX_ITERATOR_BACKLOG} changes behind`)
      queue.items.length = 0
    } else {
      queue.items.push(change)
    }
    queue.wake?.()
  }

  #emitError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  #checkOpen(what: string): void {
    if (this.#stopping) throw new TopologyError('ERR_TOPOLOGY_CLOSED', `${what}: the client is closed`)
  }

  #sleep(ms: number): Promise<void> {
    const signal = this.#wake.signal
    if (signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      signal.addEventListener('abort', done, { once: true })
    })
  }

  // A fatal error in the loop (e.g. the directory is not writable).
  #fail(error: Error): void {
    this.#stopping = true
    if (this.#firstSync) {
      this.#firstSync.reject(error)
      this.#firstSync = undefined
    }
    this.#emitError(error)
    void this.destroy(error)
  }

  /**
   * The thread is exiting (process.exit(), an uncaught error): no later turn runs, and Node is
   * about to tear the thread down, hub threads first. Every socket must be closed before that
   * (hub-thread.ts says why): close ours now, stop our hubs, and wait (bounded) for hub
   * threads to confirm. The others see our nodes leave at once ('exited').
   */
  static #onThreadExit(): void {
    const deadline = Date.now() + EXIT_WAIT_MS
    const waits: ((ms: number) => void)[] = []
    for (const client of TopologyClient.#live) waits.push(...client.#exitNow())
    for (const wait of waits) wait(deadline - Date.now())
  }

  #exitNow(): ((ms: number) => void)[] {
    this.#stopping = true
    clearTimeout(this.#standbyTimer)
    // Aborts a connect in flight: its socket closes in the abort listener, synchronously.
    this.#wake.abort()
    void this.#channel?.destroy()
    const waits: ((ms: number) => void)[] = []
    for (const host of [this.#hubHost, this.#standby]) {
      const wait = host?.exitNow(this.#info.id)
      if (wait !== undefined) waits.push(wait)
    }
    return waits
  }

  #finish(error: Error | undefined): void {
    TopologyClient.#live.delete(this)
    const listener = TopologyClient.#exitListener
    if (TopologyClient.#live.size === 0 && listener !== undefined) process.off('exit', listener)
    if (this.#firstSync) {
      this.#firstSync.reject(error ?? new TopologyError('ERR_TOPOLOGY_CLOSED', 'closed before the first sync'))
      this.#firstSync = undefined
    }
    this.#flushDeferred()
    for (const queue of this.#iterators) {
      if (error) queue.error ??= error
      queue.done = true
      queue.wake?.()
    }
    this.#hubInfo = null
    this.#resolveClosed(error)
  }
}

function aborted(signal: AbortSignal): TopologyError {
  return new TopologyError('ERR_TOPOLOGY_ABORTED', 'join() was aborted', { cause: signal.reason })
}

/**
 * Joins a domain: takes part in the hub election (running the hub here if this process
 * wins), connects, and resolves once synced with the hub's history.
 */
export function join(options: JoinOptions = {}): Promise<TopologyClient> {
  return TopologyClient.join(options)
}
