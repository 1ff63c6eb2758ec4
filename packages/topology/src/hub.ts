// The hub: runs inside the process that won the election, accepts every node of the domain
// (its own process included, over the same socket), and is the only minter of events.
import { type Channel, connect, FdpassError, type Message } from '@ipc-pubsub/fdpass'
import { TopologyError } from './errors.js'
import type { Claim } from './election.js'
import type { Forget, LeaveReason, TopologyEvent } from './history.js'
import { type Hello, Ledger } from './ledger.js'
import { processIdentity, processState } from './liveness.js'
import { type ClientMessage, PROTOCOL_VERSION, parseClientMessage } from './protocol.js'
import { encode, send, sendEncoded, decode } from './wire.js'

/** A connection that has not said hello within this long is closed. */
const HELLO_TIMEOUT_MS = 5000
/** How long a graceful close waits for peers' queues to drain before dropping them. */
const CLOSE_FLUSH_MS = 1000
/** While a node that looked alive is verified, its pid is looked at again this often. */
const RECHECK_INTERVAL_MS = 10
/** How long an endpoint probe may take before it counts as "cannot tell". */
const PROBE_TIMEOUT_MS = 250

export interface HubOptions {
  /** The hub node's id (the minter). */
  readonly id: string
  /** The epoch to start minting with (raised past the history's). */
  readonly epoch: number
  /** The hub node's history when it won the election. */
  readonly history: readonly TopologyEvent[]
  /** Departed entities kept (Ledger tail). */
  readonly tail: number
  /** How long a node that may be alive gets to reconnect after a failover. */
  readonly grace: number
  /** Called with errors worth reporting (a peer's protocol violation). */
  readonly onError: (error: Error) => void
}

interface Peer {
  readonly channel: Channel
  /** Set by the peer's accepted hello; undefined before (or after it was superseded). */
  node: string | undefined
  bye: boolean
  evicted: boolean
  helloTimer: NodeJS.Timeout | undefined
}

/**
 * Invariants:
 * - Every event reaches every synced peer (one that got its welcome) exactly in mint order:
 *   the welcome carries the whole history, then `events` broadcasts follow on the same
 *   ordered channel.
 * - A node is up in the ledger only while its peer is connected, or while it is being
 *   verified after a failover (grace timer or probe running); every other path mints its
 *   `node-left`.
 */
export class Hub {
  readonly #claim: Claim
  readonly #ledger: Ledger
  readonly #options: HubOptions
  readonly #peers = new Set<Peer>()
  readonly #byNode = new Map<string, Peer>()
  // Nodes being verified after a failover: the grace timer, and the pid re-check.
  readonly #verifying = new Map<string, { grace: NodeJS.Timeout; recheck: NodeJS.Timeout | undefined }>()
  #closing: Promise<void> | undefined
  // Aborts endpoint probes in flight when the hub stops: their sockets close with it, at once.
  readonly #probes = new AbortController()

  constructor(claim: Claim, options: HubOptions) {
    this.#claim = claim
    this.#options = options
    this.#ledger = new Ledger({ minter: options.id, epoch: options.epoch, history: options.history, tail: options.tail })
    claim.server.on('connection', (channel) => this.#accept(channel))
    // Accept errors (EMFILE) are retried by the server; nothing to do but not crash.
    claim.server.on('error', () => {})
  }

  get epoch(): number {
    return this.#ledger.epoch
  }

  /**
   * Graceful: mints `leaving`'s node-left (the hub's own node, closing), lets every peer's
   * queue drain, then closes the socket and gives up the claim. Idempotent.
   */
  close(leaving?: string): Promise<void> {
    if (this.#closing) return this.#closing
    this.#stopTimers()
    if (leaving !== undefined) {
      const event = this.#ledger.nodeLeft(leaving, 'closed')
      if (event) this.#broadcast([event])
    }
    this.#closing = (async () => {
      await this.#claim.server.close()
      // A peer that stopped reading must not hold the hand-over up: flush what drains in time.
      const peers = [...this.#peers]
      const flushed = Promise.all(peers.map((peer) => peer.channel.close()))
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_FLUSH_MS)
      })
      await Promise.race([flushed, late])
      clearTimeout(timer)
      await Promise.all(peers.map((peer) => peer.channel.destroy()))
      this.#claim.release()
    })()
    return this.#closing
  }

  /**
   * Immediate: closes everything without waiting for queues to drain. `leaving`'s node-left
   * (`exited`, as for any node that leaves without a bye) is still handed to the kernel
   * first where socket buffers have room, so survivors need not wait out a grace period for
   * a process that is in fact alive. Idempotent.
   */
  destroy(leaving?: string): Promise<void> {
    if (this.#closing === undefined) {
      this.#stopTimers()
      if (leaving !== undefined) {
        const event = this.#ledger.nodeLeft(leaving, 'exited')
        if (event) this.#broadcast([event])
      }
    }
    const previous = this.#closing
    // Every socket closes before the first await: a thread that is exiting (no later turn
    // runs) calls this from its 'exit' listener and relies on it (hub-thread.ts).
    const closed = [this.#claim.server.destroy(), ...[...this.#peers].map((peer) => peer.channel.destroy())]
    this.#closing = (async () => {
      await Promise.all(closed)
      await previous
      this.#claim.release()
    })()
    return this.#closing
  }

  #stopTimers(): void {
    this.#probes.abort()
    for (const id of [...this.#verifying.keys()]) this.#stopVerifying(id)
    for (const peer of this.#peers) clearTimeout(peer.helloTimer)
  }

  #accept(channel: Channel): void {
    if (this.#closing) {
      void channel.destroy()
      return
    }
    const peer: Peer = { channel, node: undefined, bye: false, evicted: false, helloTimer: undefined }
    peer.helloTimer = setTimeout(() => {
      this.#evict(peer, new TopologyError('ERR_TOPOLOGY_PROTOCOL', `no hello within ${HELLO_TIMEOUT_MS} ms`))
    }, HELLO_TIMEOUT_MS).unref()
    this.#peers.add(peer)
    channel.on('message', (message) => this.#onMessage(peer, message))
    void channel.closed.then(() => this.#onClosed(peer))
  }

  #onMessage(peer: Peer, frame: Message): void {
    let message: ClientMessage
    try {
      message = parseClientMessage(decode(frame), peer.node)
    } catch (error) {
      this.#evict(peer, error as Error)
      return
    }
    if (this.#closing) return
    if (peer.node === undefined) {
      if (message.type !== 'hello') {
        this.#evict(peer, new TopologyError('ERR_TOPOLOGY_PROTOCOL', `expected hello, got ${message.type}`))
        return
      }
      this.#hello(peer, message)
      return
    }
    const node = peer.node
    switch (message.type) {
      case 'hello':
        this.#evict(peer, new TopologyError('ERR_TOPOLOGY_PROTOCOL', 'a second hello on one connection'))
        return
      case 'endpoint-add': {
        const event = this.#ledger.addEndpoint(message.endpoint)
        if (event) this.#broadcast([event])
        return
      }
      case 'endpoint-remove': {
        const event = this.#ledger.removeEndpoint(node, message.endpoint)
        if (event) {
          this.#broadcast([event])
          this.#compact()
        }
        return
      }
      case 'bye': {
        peer.bye = true
        const event = this.#ledger.nodeLeft(node, 'closed')
        if (event) {
          this.#broadcast([event])
          this.#compact()
        }
        return
      }
    }
  }

  #hello(peer: Peer, hello: Hello): void {
    clearTimeout(peer.helloTimer)
    const me = processIdentity()
    // In our pid namespace the kernel's word on the pid beats the node's.
    if (hello.node.pidNamespace === me.pidNamespace && hello.node.pid !== peer.channel.peer.pid) {
      this.#evict(peer, new TopologyError('ERR_TOPOLOGY_PROTOCOL', `hello claims pid ${hello.node.pid}, the socket says ${peer.channel.peer.pid}`))
      return
    }
    const previous = this.#byNode.get(hello.node.id)
    if (previous !== undefined && previous.channel.peer.pid !== peer.channel.peer.pid) {
      // Only the same process may take over a connected node's id (a reconnect racing the
      // old connection's close); anyone else is impersonating it.
      this.#evict(peer, new TopologyError('ERR_TOPOLOGY_PROTOCOL', `node id ${hello.node.id} is connected from another process`))
      return
    }
    const result = this.#ledger.integrate(hello)
    if (!result.accepted) {
      try {
        send(peer.channel, {
          type: 'rejected',
          code: 'ERR_TOPOLOGY_NODE_LEFT',
          message: `node ${hello.node.id} has left the domain; rejoin with a new id`,
        })
      } catch {}
      void peer.channel.close()
      this.#broadcast(result.events)
      return
    }
    const id = hello.node.id
    if (previous !== undefined && previous !== peer) {
      // The node reconnected before we saw its old connection close: retire the old one quietly.
      previous.node = undefined
      void previous.channel.destroy()
    }
    peer.node = id
    this.#byNode.set(id, peer)
    this.#stopVerifying(id)
    try {
      send(peer.channel, {
        type: 'welcome',
        protocol: PROTOCOL_VERSION,
        hub: this.#options.id,
        epoch: this.#ledger.epoch,
        history: this.#ledger.history.events(),
      })
    } catch (error) {
      this.#evict(peer, error as Error)
    }
    this.#broadcast(result.events, undefined, peer)
    this.#verify()
  }

  /**
   * After a failover the history lists nodes that have not reconnected. Verifiably dead ones
   * (pid gone, zombie or reused in our pid namespace) get their node-left now; the others get
   * `grace` ms to reconnect, and an endpoint probe when we cannot see their pid.
   */
  #verify(): void {
    const left: TopologyEvent[] = []
    for (const id of this.#ledger.history.upNodes()) {
      if (this.#byNode.has(id) || this.#verifying.has(id)) continue
      const info = this.#ledger.history.nodeInfo(id)
      if (info === undefined) continue
      const state = processState(info)
      if (state === 'dead') {
        const event = this.#ledger.nodeLeft(id, 'died')
        if (event) left.push(event)
        continue
      }
      const grace = setTimeout(() => this.#graceExpired(id), this.#options.grace).unref()
      const recheck =
        state === 'alive' ? setInterval(() => this.#recheck(id), RECHECK_INTERVAL_MS).unref() : undefined
      this.#verifying.set(id, { grace, recheck })
      if (state === 'unknown' && info.endpoint !== null) void this.#probe(id, info.endpoint)
    }
    if (left.length > 0) {
      this.#broadcast(left)
      this.#compact()
    }
  }

  #stopVerifying(id: string): void {
    const timers = this.#verifying.get(id)
    if (timers === undefined) return
    clearTimeout(timers.grace)
    clearInterval(timers.recheck)
    this.#verifying.delete(id)
  }

  // A killed process's sockets close a moment before /proc shows it as a zombie (it can
  // still read 'R' then), so a pid that looked alive is looked at again until the grace ends.
  #recheck(id: string): void {
    if (this.#closing || this.#byNode.has(id)) {
      this.#stopVerifying(id)
      return
    }
    const info = this.#ledger.history.nodeInfo(id)
    if (info === undefined || processState(info) !== 'dead') return
    this.#stopVerifying(id)
    this.#leave(id, 'died')
  }

  #graceExpired(id: string): void {
    this.#stopVerifying(id)
    if (this.#closing || this.#byNode.has(id)) return
    const info = this.#ledger.history.nodeInfo(id)
    const reason: LeaveReason = info !== undefined && processState(info) === 'dead' ? 'died' : 'lost'
    this.#leave(id, reason)
  }

  async #probe(id: string, endpoint: string): Promise<void> {
    let refused = false
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(PROBE_TIMEOUT_MS), this.#probes.signal])
      const channel = await connect(endpoint, { signal, authorize: () => true })
      void channel.destroy()
    } catch (error) {
      refused =
        FdpassError.isInstance(error) &&
        (error.code === 'ERR_FDPASS_ECONNREFUSED' || error.code === 'ERR_FDPASS_ENOENT')
    }
    if (!refused || this.#closing || this.#byNode.has(id) || !this.#verifying.has(id)) return
    this.#stopVerifying(id)
    this.#leave(id, 'unreachable')
  }

  #leave(id: string, reason: LeaveReason): void {
    const event = this.#ledger.nodeLeft(id, reason)
    if (event) {
      this.#broadcast([event])
      this.#compact()
    }
  }

  #onClosed(peer: Peer): void {
    clearTimeout(peer.helloTimer)
    this.#peers.delete(peer)
    const id = peer.node
    if (id === undefined || this.#byNode.get(id) !== peer) return
    this.#byNode.delete(id)
    if (this.#closing) return
    this.#leave(id, peer.bye ? 'closed' : peer.evicted ? 'evicted' : 'exited')
  }

  #evict(peer: Peer, error: Error): void {
    if (peer.evicted) return
    peer.evicted = true
    if (!this.#closing) this.#options.onError(error)
    void peer.channel.destroy(error)
  }

  #compact(): void {
    const forget = this.#ledger.compact()
    if (forget) this.#broadcast([], forget)
  }

  /** Sends events (and a forget list) to every synced peer but `except`. A peer that cannot take it is evicted. */
  #broadcast(events: readonly TopologyEvent[], forget?: Forget, except?: Peer): void {
    if (events.length === 0 && forget === undefined) return
    const bytes = encode(forget === undefined ? { type: 'events', events } : { type: 'events', events, forget })
    for (const peer of this.#peers) {
      if (peer === except || peer.node === undefined || peer.evicted) continue
      try {
        sendEncoded(peer.channel, bytes)
      } catch (error) {
        // ERR_FDPASS_QUEUE_FULL: a peer that stopped reading loses its connection, not us.
        if (!(FdpassError.isInstance(error) && error.code === 'ERR_FDPASS_CLOSED')) this.#evict(peer, error as Error)
      }
    }
  }
}
