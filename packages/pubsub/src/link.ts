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
import { DATA_PROTOCOL_VERSION, decodeFrame, encodeCredit, encodeHello, KIND_CREDIT, KIND_HELLO, KIND_MESSAGE, type MessageHeader } from './frames.js'
import { closeFds, type Incoming, transportsById } from './transport.js'

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
}

/** What an outbound link tells its node. */
export interface OutboundEvents {
  open(link: OutboundLink): void
  credit(link: OutboundLink, subscription: string): void
  closed(link: OutboundLink, error: Error | undefined): void
}

/** Publisher side: our channel to one subscribing node. */
export class OutboundLink {
  readonly node: string
  readonly address: string
  #channel: Channel | undefined
  #state: 'connecting' | 'open' | 'closed' = 'connecting'
  readonly #credits = new Map<string, number>()
  readonly #windows = new Map<string, number>()
  readonly #events: OutboundEvents
  readonly #abort = new AbortController()

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

  /** Credits start at the subscription's window the first time the link serves it. */
  serve(subscription: RemoteSubscription): void {
    if (!this.#credits.has(subscription.id)) {
      this.#credits.set(subscription.id, subscription.window)
      this.#windows.set(subscription.id, subscription.window)
    }
  }

  /** Forgets a subscription that went away. */
  unserve(subscription: string): void {
    this.#credits.delete(subscription)
    this.#windows.delete(subscription)
  }

  credits(subscription: string): number {
    return this.#credits.get(subscription) ?? 0
  }

  /** Sends one message frame; spends a credit. */
  sendMessage(subscription: string, frame: Uint8Array, fds: readonly number[]): void {
    const credits = this.#credits.get(subscription)
    if (credits === undefined || credits <= 0) return
    this.#credits.set(subscription, credits - 1)
    this.#send(frame, fds)
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
      const window = this.#windows.get(target)
      // A grant for a subscription we no longer serve was in flight: ignore it.
      if (window === undefined) return
      // Never more than the window outstanding: a subscriber cannot make us queue without bound.
      this.#credits.set(target, Math.min(window, (this.#credits.get(target) ?? 0) + decoded.credits))
    } catch (error) {
      closeFds(frame.fds)
      void this.#channel?.destroy(error as Error)
      return
    }
    // Outside the try: a throwing user listener downstream is not the peer's fault.
    guarded(() => this.#events.credit(this, target))
  }

  /** Flushes queued frames, then closes. */
  async close(): Promise<void> {
    this.#state = 'closed'
    this.#abort.abort()
    await this.#channel?.close()
  }

  async destroy(error?: Error): Promise<void> {
    this.#state = 'closed'
    this.#abort.abort()
    await this.#channel?.destroy(error)
  }
}

/** What an inbound link asks its node. */
export interface InboundHost {
  /** Delivers a message to the subscription `header.target`; false if there is none (then nothing is kept). */
  deliver(link: InboundLink, header: MessageHeader, incoming: Incoming): boolean
  /** The window of the subscription with this id here, or undefined if there is none. */
  window(subscription: string): number | undefined
  /**
   * Whether `node` is the process at the other end (pid from SO_PEERCRED): true or false
   * when the topology knows the node, undefined while it does not yet.
   */
  isPeer(node: string, pid: number): boolean | undefined
  error(error: Error): void
  closed(link: InboundLink): void
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

  constructor(channel: Channel, host: InboundHost) {
    this.channel = channel
    this.#host = host
    channel.on('message', (frame) => this.#onFrame(frame))
    void channel.closed.then(() => host.closed(this))
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
      if (decoded.kind !== KIND_MESSAGE) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `frame kind ${decoded.kind} before the pool transport was offered`)
      const node = this.#node
      if (node === undefined) throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'message before hello')
      if (!this.#verified) this.#verify()
      // A node publishes under its own id only.
      if (!decoded.publisher.startsWith(`${node}/`)) {
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `node ${node} sent a message as ${decoded.publisher}`)
      }
      if (decoded.fdCount !== fds.length) {
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `the frame says ${decoded.fdCount} fds, ${fds.length} came`)
      }
      const transport = transportsById.get(decoded.transport)
      if (transport === undefined) throw new PubSubError('ERR_PUBSUB_PROTOCOL', `unknown transport ${decoded.transport}`)
      const window = this.#host.window(decoded.target)
      if (window === undefined) {
        // In flight to a subscription that has just closed: not an error.
        closeFds(fds)
        return
      }
      const outstanding = (this.#outstanding.get(decoded.target) ?? 0) + 1
      if (outstanding > window) {
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', `node ${node} sent more than the window (${window}) to ${decoded.target}`)
      }
      this.#outstanding.set(decoded.target, outstanding)
      fds = []
      const incoming = transport.open(decoded.length, frame.fds)
      if (!this.#host.deliver(this, decoded, incoming)) incoming.release()
    } catch (error) {
      closeFds(fds)
      this.#host.error(error as Error)
      void this.channel.destroy(error as Error)
    }
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
