// Links: the direct fdpass channels of the data path. A link is directed: the node that
// publishes a topic connects to the data address of each node that subscribes to it, sends a
// hello, then message frames (fds attached). The subscribing node answers only with credit
// frames. Messages never pass through the hub.
//
// Flow control (docs/PROTOCOL.md, "Credits"): per link and subscription, the publisher may
// have at most `window` (the subscription's queueSize) messages outstanding. A 'wait'
// subscription returns a credit when the user takes a message from its queue, the other
// policies when a message is read off the socket. So the fds and memory in flight to any
// subscriber are bounded under every policy, and a stalled subscriber process costs its
// publishers nothing but dropped messages (or, under 'wait', back-pressure).
import { type Authorize, type Channel, connect, type Message as Frame } from '@ipc-pubsub/fdpass'
import { guarded, PubSubError } from './errors.js'
import {
  DATA_PROTOCOL_VERSION,
  decodeFrame,
  encodeAttachPool,
  encodeAttachRing,
  encodeBindLane,
  encodeCredit,
  encodeDetachPool,
  encodeHello,
  KIND_ATTACH_RING,
  KIND_BIND_LANE,
  KIND_CREDIT,
  KIND_DETACH_POOL,
  KIND_HELLO,
  KIND_MESSAGE,
  type MessageHeader,
} from './frames.js'
import { POOL_TRANSPORT_ID, PoolReceiver, PoolSender, type PublisherPool } from './pool.js'
import type { Submission } from './ring.js'
import { closeFds, type Incoming, type Transport, transportsById } from './transport.js'

/** Channel limits of data links, on both ends: credits bound the queue, not these. */
export const LINK_CHANNEL_OPTIONS = {
  maxQueuedFrames: 1 << 20,
  maxQueuedBytes: 256 * 1024 * 1024,
  highWaterMark: 1 << 20,
} as const

/** A subscription as a publisher sees it (from the topology): where, and its flow-control terms. */
export interface RemoteSubscription {
  readonly id: string
  readonly node: string
  readonly topic: string
  readonly lossless: boolean
  readonly window: number
  /** It accepts the pool transport (its endpoint lists 'pool' in `transports`). */
  readonly pool: boolean
}

/** What an outbound link tells its node. */
export interface OutboundEvents {
  open(link: OutboundLink): void
  /** Credits came back (for `subscription`, or for any of the link's when undefined). */
  credit(link: OutboundLink, subscription: string | undefined): void
  closed(link: OutboundLink, error: Error | undefined): void
}

/**
 * One subscription as one link serves it: its credits, and what every message to it needs,
 * worked out once when the link starts serving it, not per message.
 */
export class Lane {
  readonly subscription: RemoteSubscription
  readonly link: OutboundLink
  /** How this link's ring entries name the subscription (bind-lane frame, sent once). */
  readonly number: number
  /** True once the bind-lane frame went out. */
  bound = false
  readonly window: number
  /** Messages the publisher may still send before the subscriber grants more. */
  credits: number
  /** The last publish that skipped this lane (no credit or no ring room): see Publisher. */
  skipRound = -1

  constructor(subscription: RemoteSubscription, link: OutboundLink, number: number) {
    this.subscription = subscription
    this.link = link
    this.number = number
    this.window = subscription.window
    this.credits = subscription.window
  }
}

/** Publisher side: our channel to one subscribing node. */
export class OutboundLink {
  readonly node: string
  readonly address: string
  #channel: Channel | undefined
  #state: 'connecting' | 'open' | 'closed' = 'connecting'
  readonly #lanes = new Map<string, Lane>()
  readonly #lanesByNumber = new Map<number, Lane>()
  #nextLane = 0
  readonly #events: OutboundEvents
  readonly #abort = new AbortController()
  // The pool transport's ring, once a publisher of this node offered it (see pool()).
  #pool: PoolSender | undefined

  constructor(node: string, address: string, events: OutboundEvents) {
    this.node = node
    this.address = address
    this.#events = events
  }

  /** When the link opened (Date.now()), for the reconnect back-off. */
  openedAt = 0

  get open(): boolean {
    return this.#state === 'open'
  }

  /** Connects and sends the hello; resolves with the error if the connection failed (retry later). */
  async connect(self: () => string, authorize: Authorize | undefined): Promise<Error | undefined> {
    let channel: Channel
    try {
      channel = await connect(this.address, {
        ...LINK_CHANNEL_OPTIONS,
        ...(authorize ? { authorize } : {}),
        signal: this.#abort.signal,
      })
    } catch (error) {
      return new PubSubError('ERR_PUBSUB_LINK', `cannot link to node ${this.node} at ${this.address}`, { cause: error })
    }
    if (this.#state === 'closed') {
      await channel.destroy()
      return undefined
    }
    this.#channel = channel
    channel.on('message', (frame) => this.#onFrame(frame))
    void channel.closed.then((reason) => {
      const wasOpen = this.#state !== 'closed'
      this.#state = 'closed'
      this.#channel = undefined
      // Everything the subscriber held of our pools comes back now.
      this.#pool?.close()
      if (wasOpen) guarded(() => this.#events.closed(this, reason))
    })
    // The id at this moment: a rejoin during the connect renamed us.
    if (!this.hello(self())) return undefined
    this.#state = 'open'
    this.openedAt = Date.now()
    guarded(() => this.#events.open(this))
    return undefined
  }

  /** Sends (again, after a rejoin) who we are. False if the link broke. */
  hello(self: string): boolean {
    return this.#send(encodeHello(self), [])
  }

  /** The lane of `subscription`: credits start at its window the first time the link serves it. */
  serve(subscription: RemoteSubscription): Lane {
    let lane = this.#lanes.get(subscription.id)
    if (lane === undefined) {
      lane = new Lane(subscription, this, this.#nextLane++ & 0x7fffffff)
      this.#lanes.set(subscription.id, lane)
      this.#lanesByNumber.set(lane.number, lane)
    }
    return lane
  }

  /** Forgets a subscription that went away. */
  unserve(subscription: string): void {
    const lane = this.#lanes.get(subscription)
    if (lane === undefined) return
    this.#lanes.delete(subscription)
    if (this.#lanesByNumber.get(lane.number) === lane) this.#lanesByNumber.delete(lane.number)
    lane.credits = 0
  }

  credits(subscription: string): number {
    return this.#lanes.get(subscription)?.credits ?? 0
  }

  /** Sends one segment message frame on `lane`; spends a credit. */
  sendMessage(lane: Lane, frame: Uint8Array, fds: readonly number[]): void {
    if (lane.credits <= 0) return
    lane.credits--
    if (this.#pool !== undefined && !this.bind(lane)) return
    if (this.#send(frame, fds) && this.#pool !== undefined) {
      // On a pool link the ring orders everything: the marker says where this frame goes.
      this.#pool.marker(0, lane.number, 0, 0n)
      this.#pool.flush()
    }
  }

  // ---- the pool transport (pool.ts) ----

  /**
   * The link's pool sender, attaching the ring first if needed (the attach frame goes on the
   * socket before any entry can name it). Undefined if the link is not open or the ring could
   * not be made (then the segment transport carries this link's messages).
   */
  pool(): PoolSender | undefined {
    if (this.#pool !== undefined || this.#state !== 'open') return this.#pool
    let sender: PoolSender
    try {
      sender = new PoolSender(this.#poolEvents)
    } catch {
      // Out of fds or memory: the segment transport still works, one message at a time.
      return undefined
    }
    if (!this.#send(encodeAttachRing(POOL_TRANSPORT_ID), sender.attachFds)) {
      sender.close()
      return undefined
    }
    this.#pool = sender
    return sender
  }

  /**
   * Attaches `pool` (of publisher `publisher`) to this link if it is not yet: its fd travels
   * once. False if the link broke.
   */
  attach(sender: PoolSender, pool: PublisherPool, publisher: string): boolean {
    if (sender.isAttached(pool)) return true
    if (!this.#send(encodeAttachPool(pool.id, publisher), [pool.fd])) return false
    sender.attach(pool)
    return true
  }

  /** Tells the subscriber which subscription `lane.number` names, once. False if the link broke. */
  bind(lane: Lane): boolean {
    if (lane.bound) return true
    if (!this.#send(encodeBindLane(lane.number, lane.subscription.id), [])) return false
    lane.bound = true
    return true
  }

  /** The publisher of `pool` closed: the subscriber may unmap it once its messages are released. */
  detach(pool: PublisherPool): void {
    if (this.#pool?.detach(pool)) this.#send(encodeDetachPool(pool.id), [])
  }

  /**
   * Takes the completions the subscriber pushed (releases and credits). A corrupt ring closes
   * the link. Cheap when there are none: one shared-memory load.
   */
  reap(): void {
    const pool = this.#pool
    if (pool === undefined) return
    try {
      pool.drain()
    } catch (error) {
      this.#fail(error as Error)
    }
  }

  /**
   * Whether one more message of publish number `round` fits this link's ring (always true for
   * a link without one). The ring's room is read once per publish and counted down, so a
   * publish to several subscriptions of one node never overfills it.
   */
  takeSlot(round: number): boolean {
    const pool = this.#pool
    if (pool === undefined) return true
    if (this.#slotsRound !== round) {
      this.#slotsRound = round
      try {
        this.#slots = pool.room
      } catch (error) {
        this.#slots = 0
        this.#fail(error as Error)
      }
    }
    if (this.#slots <= 0) return false
    this.#slots--
    return true
  }
  #slotsRound = -1
  #slots = 0

  /** Bytes of `pool` the subscriber at the other end holds now. */
  pinned(pool: PublisherPool): number {
    return this.#pool?.pinned(pool) ?? 0
  }

  /** Asks to be told (events.credit) when the subscriber gives something back. */
  waitForCompletions(): void {
    const pool = this.#pool
    if (pool === undefined) return
    if (!pool.sleep()) queueMicrotask(() => this.#poolEvents.woke())
  }

  readonly #poolEvents = {
    credit: (target: number, count: number): void => {
      const lane = this.#lanesByNumber.get(target)
      // A grant for a subscription we no longer serve was in flight: ignore it.
      if (lane !== undefined) this.#grant(lane, count)
    },
    woke: (): void => {
      this.reap()
      guarded(() => this.#events.credit(this, undefined))
    },
  }

  #grant(lane: Lane, count: number): void {
    // Never more than the window outstanding: a subscriber cannot make us queue without bound.
    lane.credits = Math.min(lane.window, lane.credits + count)
  }

  #fail(error: Error): void {
    void this.#channel?.destroy(error)
  }

  #send(frame: Uint8Array, fds: readonly number[]): boolean {
    const channel = this.#channel
    if (channel === undefined || channel.state !== 'open') return false
    try {
      channel.send(frame, fds)
      return true
    } catch (error) {
      void channel.destroy(error as Error)
      return false
    }
  }

  #onFrame(frame: Frame): void {
    // Nothing but credits flows this way; a descriptor here is a protocol error too.
    let target: string
    try {
      if (frame.fds.length > 0) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'a subscriber sent descriptors')
      const decoded = decodeFrame(frame.data)
      if (decoded.kind !== KIND_CREDIT) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `a subscriber sent frame kind ${decoded.kind}`)
      target = decoded.target
      const lane = this.#lanes.get(target)
      // A grant for a subscription we no longer serve was in flight: ignore it.
      if (lane === undefined) return
      this.#grant(lane, decoded.credits)
    } catch (error) {
      closeFds(frame.fds)
      void this.#channel?.destroy(error as Error)
      return
    }
    // Outside the try: a throwing user listener downstream is not the peer's fault.
    guarded(() => this.#events.credit(this, target))
  }

  /**
   * Flushes queued frames, then closes. On a pool link, first waits until the subscriber has
   * taken every ring entry and released every block of a live pool it holds: our pools stay
   * in use after this link, so a block it still reads must not be reused under it. The
   * node's close deadline ends the wait by destroying the link (then its blocks come back
   * at once, as when a subscriber dies).
   */
  async close(): Promise<void> {
    this.#state = 'closed'
    this.#abort.abort()
    const pool = this.#pool
    if (pool !== undefined) {
      while (this.#channel?.state === 'open') {
        let busy = 0
        try {
          this.reap()
          busy = pool.unconsumed + pool.held
        } catch {
          break
        }
        if (busy === 0) break
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    }
    await this.#channel?.close()
    this.#pool?.close()
  }

  async destroy(error?: Error): Promise<void> {
    this.#state = 'closed'
    this.#abort.abort()
    await this.#channel?.destroy(error)
    this.#pool?.close()
  }
}

/** What an inbound link asks its node. */
export interface InboundHost {
  /** Delivers a message to the subscription `header.target`; false if there is none (then nothing is kept). */
  deliver(link: InboundLink, header: MessageHeader, incoming: Incoming): boolean
  /** The window of the subscription with this id here, or undefined if there is none. */
  window(subscription: string): number | undefined
  /** The id of this node's subscription number `n` (`<our node id>/<n>`). */
  subscriptionId(n: number): string
  /** How long a pool link's reader polls before it sleeps (the largest `spinMicroseconds` here). */
  spinMicroseconds(): number
  /**
   * Whether `node` is the process at the other end (pid from SO_PEERCRED): true or false
   * when the topology knows the node, undefined while it does not yet.
   */
  isPeer(node: string, pid: number): boolean | undefined
  error(error: Error): void
  closed(link: InboundLink): void
}

interface QueuedSegment {
  readonly header: MessageHeader
  readonly fds: readonly number[]
  /** Counted against a live subscription's window; false: its subscription is gone. */
  readonly admitted: boolean
}

/** Subscriber side: a channel a publishing node opened to us. */
export class InboundLink {
  readonly channel: Channel
  /** The publishing node, from its hello. */
  #node: string | undefined
  // The hello's node id checked against the topology (the peer's pid): a local process cannot
  // speak for another node. Checked at the hello, or at the first message the topology can tell.
  #verified = false
  readonly #pending = new Map<string, number>()
  // Per subscription: messages received on this link and not yet granted back. A publisher
  // that honours its credits never gets past the window; one that does is cut off, so no peer
  // can make our queue (and our fds and mappings) grow without bound.
  readonly #outstanding = new Map<string, number>()
  readonly #host: InboundHost
  // Pool transport: the ring, once the publisher attached one. While it exists, segment
  // message frames wait here until the ring's marker says where they go (the ring orders the
  // link's messages).
  #pool: PoolReceiver | undefined
  readonly #segments: QueuedSegment[] = []
  // What the publisher's frames named: publisher ids by pool id (attach-pool), subscription
  // ids by lane number (bind-lane) and back. A ring entry costs no string building.
  readonly #publishers = new Map<number, string>()
  readonly #lanes = new Map<number, string>()
  readonly #laneOf = new Map<string, number>()

  constructor(channel: Channel, host: InboundHost) {
    this.channel = channel
    this.#host = host
    channel.on('message', (frame) => this.#onFrame(frame))
    void channel.closed.then(() => {
      // Entries published before the publisher closed (or died) are complete: deliver them.
      this.#pool?.drain()
      this.#pool?.close()
      for (const queued of this.#segments.splice(0)) closeFds(queued.fds)
      host.closed(this)
    })
  }

  get node(): string | undefined {
    return this.#node
  }

  /**
   * Returns `count` credits for `subscription`. Grants are batched: sent once half a window
   * has come back, so the publisher never waits on a grant we are still holding.
   */
  returnCredits(subscription: string, window: number, count = 1): void {
    if (this.channel.state !== 'open') return
    const pending = (this.#pending.get(subscription) ?? 0) + count
    if (pending < Math.max(1, window >> 1)) {
      this.#pending.set(subscription, pending)
      return
    }
    this.#pending.delete(subscription)
    const outstanding = (this.#outstanding.get(subscription) ?? 0) - pending
    if (outstanding > 0) this.#outstanding.set(subscription, outstanding)
    else this.#outstanding.delete(subscription)
    const lane = this.#pool === undefined ? undefined : this.#laneOf.get(subscription)
    if (lane !== undefined) {
      ;(this.#pool as PoolReceiver).credit(lane, pending)
      return
    }
    try {
      this.channel.send(encodeCredit(subscription, pending))
    } catch (error) {
      void this.channel.destroy(error as Error)
    }
  }

  /** Drops the credit count of a subscription that closed. */
  forget(subscription: string): void {
    this.#pending.delete(subscription)
    this.#outstanding.delete(subscription)
  }

  #onFrame(frame: Frame): void {
    let fds = frame.fds
    try {
      // The version first: a future hello may have another layout.
      if (frame.data[0] === KIND_HELLO && frame.data.length >= 2 && frame.data[1] !== DATA_PROTOCOL_VERSION) {
        throw new PubSubError('ERR_PUBSUB_VERSION', `data protocol ${frame.data[1]}, we speak ${DATA_PROTOCOL_VERSION}`)
      }
      const decoded = decodeFrame(frame.data)
      if (decoded.kind === KIND_HELLO) {
        if (fds.length > 0) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'hello carried descriptors')
        if (decoded.protocol !== DATA_PROTOCOL_VERSION) {
          throw new PubSubError('ERR_PUBSUB_VERSION', `data protocol ${decoded.protocol}, we speak ${DATA_PROTOCOL_VERSION}`)
        }
        this.#node = decoded.node
        this.#verified = false
        this.#verify()
        return
      }
      if (decoded.kind === KIND_CREDIT) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'a publisher sent a credit frame')
      const node = this.#node
      if (node === undefined) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'message before hello')
      if (!this.#verified) this.#verify()
      if (decoded.kind === KIND_ATTACH_RING) {
        if (decoded.transport !== POOL_TRANSPORT_ID) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `attach-ring for transport ${decoded.transport}`)
        if (this.#pool !== undefined) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'a second attach-ring')
        if (fds.length !== 3) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `attach-ring carries ${fds.length} fds, not 3`)
        fds = []
        this.#pool = new PoolReceiver(frame.fds, this.#poolHost, this.#host.spinMicroseconds())
        return
      }
      if (decoded.kind !== KIND_MESSAGE) {
        const pool = this.#pool
        if (pool === undefined) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `frame kind ${decoded.kind} before attach-ring`)
        if (decoded.kind === KIND_DETACH_POOL) {
          if (fds.length > 0) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'detach-pool carried descriptors')
          pool.detachPool(decoded.pool)
          this.#publishers.delete(decoded.pool)
          return
        }
        if (decoded.kind === KIND_BIND_LANE) {
          if (fds.length > 0) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'bind-lane carried descriptors')
          const bound = this.#lanes.get(decoded.lane)
          if (bound !== undefined && bound !== decoded.target) {
            throw new PubSubError('ERR_PUBSUB_PROTOCOL', `lane ${decoded.lane} bound again, to ${decoded.target}`)
          }
          this.#lanes.set(decoded.lane, decoded.target)
          this.#laneOf.set(decoded.target, decoded.lane)
        } else {
          if (fds.length !== 1) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `attach-pool carries ${fds.length} fds, not 1`)
          // A node publishes under its own id only.
          if (!decoded.publisher.startsWith(`${node}/`)) {
            throw new PubSubError('ERR_PUBSUB_PROTOCOL', `node ${node} attached a pool as ${decoded.publisher}`)
          }
          fds = []
          pool.attachPool(decoded.pool, frame.fds[0] as number)
          this.#publishers.set(decoded.pool, decoded.publisher)
        }
        // Entries naming it may already wait in the ring.
        pool.resume()
        return
      }
      // A node publishes under its own id only.
      if (!decoded.publisher.startsWith(`${node}/`)) {
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `node ${node} sent a message as ${decoded.publisher}`)
      }
      if (decoded.fdCount !== fds.length) {
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `the frame says ${decoded.fdCount} fds, ${fds.length} came`)
      }
      if (decoded.transport === POOL_TRANSPORT_ID || !transportsById.has(decoded.transport)) {
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `unknown transport ${decoded.transport} in a message frame`)
      }
      const admitted = this.#admit(decoded)
      if (this.#pool !== undefined) {
        // Its place in the link's order is the ring's marker: wait for it. A frame for a
        // subscription that just closed waits too (dropped there), or its marker would
        // pair with the next frame.
        this.#segments.push({ header: decoded, fds, admitted })
        fds = []
        this.#pool.resume()
        return
      }
      if (!admitted) {
        closeFds(fds)
        return
      }
      fds = []
      this.#open(decoded, frame.fds)
    } catch (error) {
      closeFds(fds)
      this.#host.error(error as Error)
      void this.channel.destroy(error as Error)
    }
  }

  /**
   * Counts a message against its subscription's window. False if the subscription is gone
   * (in flight to one that just closed: not an error); throws past the window.
   */
  #admit(header: MessageHeader): boolean {
    const window = this.#host.window(header.target)
    if (window === undefined) return false
    const outstanding = (this.#outstanding.get(header.target) ?? 0) + 1
    if (outstanding > window) {
      throw new PubSubError('ERR_PUBSUB_PROTOCOL', `node ${this.#node} sent more than the window (${window}) to ${header.target}`)
    }
    this.#outstanding.set(header.target, outstanding)
    return true
  }

  // A segment message: map it and hand it up. Owns `fds`.
  #open(header: MessageHeader, fds: readonly number[]): void {
    const transport = transportsById.get(header.transport) as Transport
    const incoming = transport.open(header.length, fds)
    if (!this.#host.deliver(this, header, incoming)) incoming.release()
  }

  readonly #poolHost = {
    known: (entry: Submission): boolean => this.#lanes.has(entry.target) && this.#publishers.has(entry.pool),
    deliver: (entry: Submission, incoming: Incoming): void => {
      const header: MessageHeader = {
        transport: POOL_TRANSPORT_ID,
        fdCount: 0,
        length: entry.length,
        seq: entry.seq,
        timestamp: entry.timestamp,
        publisher: this.#publishers.get(entry.pool) as string,
        target: this.#lanes.get(entry.target) as string,
      }
      if (entry.seq < 1 || entry.seq > Number.MAX_SAFE_INTEGER) {
        incoming.release()
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `a ring entry has seq ${entry.seq}`)
      }
      let admitted = false
      try {
        admitted = this.#admit(header)
      } finally {
        if (!admitted) incoming.release()
      }
      if (admitted && !this.#host.deliver(this, header, incoming)) incoming.release()
    },
    marker: (entry: Submission): boolean => {
      if (this.#segments.length === 0 || !this.#lanes.has(entry.target)) return false
      const queued = this.#segments.shift() as QueuedSegment
      if (this.#lanes.get(entry.target) !== queued.header.target) {
        closeFds(queued.fds)
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `a ring marker for subscription ${entry.target} met a frame for ${queued.header.target}`)
      }
      if (queued.admitted) this.#open(queued.header, queued.fds)
      else closeFds(queued.fds)
      return true
    },
    fail: (error: Error): void => {
      this.fail(error)
    },
  }

  #verify(): void {
    const node = this.#node as string
    const matches = this.#host.isPeer(node, this.channel.peer.pid)
    if (matches === false) {
      throw new PubSubError('ERR_PUBSUB_PROTOCOL', `process ${this.channel.peer.pid} said it is node ${node}, which is another process`)
    }
    this.#verified = matches === true
  }

  /** Closes the link for a protocol error found above the framing (reported as 'error'). */
  fail(error: Error): void {
    this.#host.error(error)
    void this.channel.destroy(error)
  }

  close(): Promise<void> {
    return this.channel.close()
  }

  destroy(error?: Error): Promise<void> {
    return this.channel.destroy(error)
  }
}
