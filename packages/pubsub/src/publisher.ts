import { EventEmitter } from 'node:events'
import { checkSignal, guarded, PubSubError, waitUntil } from './errors.js'
import { MessageEncoder } from './frames.js'
import type { OutboundLink, RemoteSubscription } from './link.js'
import type { Transport } from './transport.js'

/** @internal One subscription a publisher can reach now: its link is open. */
export interface Target {
  readonly subscription: RemoteSubscription
  readonly link: OutboundLink
}

/** @internal What a publisher needs from its node. */
export interface PublisherHost {
  targets(topic: string): readonly Target[]
  removed(publisher: Publisher): void
}

/** Events of a Publisher and their arguments. */
export interface PublisherEvents {
  /** The number of reachable subscriptions changed. */
  subscribers: [count: number]
  /** A publish() would now be accepted, after one was refused for back-pressure. */
  ready: []
  close: []
}

const createToken = Symbol('Publisher.create')

/**
 * Publishes to one topic. With no subscriber it does nothing at all: `publish()` returns
 * false before allocating, and no timer or syscall runs on its behalf.
 */
export class Publisher extends EventEmitter<PublisherEvents> implements AsyncDisposable {
  readonly topic: string
  /** The transport payloads travel by. */
  readonly transport: Transport['name']

  #id: string
  #encoder: MessageEncoder
  readonly #transport: Transport
  readonly #host: PublisherHost
  #seq = 0
  #lastCount = 0
  #blocked = false
  readonly #watchers = new Set<() => void>()
  #closed = false
  #resolveClosed!: () => void
  /** Settles when the publisher is closed. */
  readonly closed: Promise<void>

  /** @internal Publishers come from `node.publisher()`. */
  constructor(token: typeof createToken, id: string, topic: string, transport: Transport, host: PublisherHost) {
    if (token !== createToken) throw new TypeError('use node.publisher()')
    super()
    this.#id = id
    this.topic = topic
    this.#transport = transport
    this.transport = transport.name
    this.#encoder = new MessageEncoder(id)
    this.#host = host
    this.#lastCount = host.targets(topic).length
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
  }

  /** @internal */
  static create(...args: ConstructorParameters<typeof Publisher> extends [unknown, ...infer R] ? R : never): Publisher {
    return new Publisher(createToken, ...args)
  }

  /** This publisher's endpoint id in the topology (`<node id>/<n>`): `msg.publisher` at subscribers. */
  get id(): string {
    return this.#id
  }

  /** The sequence number of the last published message (0 before the first). */
  get seq(): number {
    return this.#seq
  }

  /** Subscriptions this publisher reaches now (across processes, this one included). */
  get subscriberCount(): number {
    return this.#closed ? 0 : this.#host.targets(this.topic).length
  }

  /**
   * True when `publish()` would be accepted now: someone subscribes and every lossless
   * ('wait') subscription has room.
   */
  get writable(): boolean {
    if (this.#closed) return false
    const targets = this.#host.targets(this.topic)
    if (targets.length === 0) return false
    for (const { subscription, link } of targets) {
      if (subscription.lossless && link.credits(subscription.id) <= 0) return false
    }
    return true
  }

  /**
   * Publishes one message to every current subscriber. Returns true when it was handed out
   * (a lossy subscriber that is behind may still miss it: its `lost` shows the gap), false
   * when it was not sent at all: nobody subscribes (then nothing was allocated), or a
   * lossless subscriber has no room (back-pressure: `await ready()` and publish again).
   * Strings are sent as UTF-8. The payload is copied once, into shared memory.
   */
  publish(data: ArrayBufferView | string): boolean {
    if (this.#closed) throw new PubSubError('ERR_PUBSUB_CLOSED', `publish(): the publisher of ${this.topic} is closed`)
    let payload: Uint8Array | string
    let length: number
    if (typeof data === 'string') {
      payload = data
      length = Buffer.byteLength(data, 'utf8')
    } else if (ArrayBuffer.isView(data)) {
      payload = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      length = payload.byteLength
    } else {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'publish(): data must be an ArrayBufferView or a string')
    }
    if (length > this.#transport.maxLength) {
      throw new PubSubError('ERR_PUBSUB_TOO_LARGE', `publish(): ${length} bytes is more than the ${this.#transport.name} transport's ${this.#transport.maxLength}`)
    }
    const targets = this.#host.targets(this.topic)
    if (targets.length === 0) return false
    let receivers = 0
    for (const { subscription, link } of targets) {
      const credits = link.credits(subscription.id)
      if (credits > 0) receivers++
      else if (subscription.lossless) {
        this.#blocked = true
        return false
      }
    }
    this.#blocked = false
    const seq = ++this.#seq
    const timestamp = process.hrtime.bigint()
    // Every lossy subscriber is behind: the seq is spent (they will see the gap), no work done.
    if (receivers === 0) return true
    const outgoing = this.#transport.prepare(payload, length)
    try {
      for (const { subscription, link } of targets) {
        if (link.credits(subscription.id) <= 0) continue
        const frame = this.#encoder.encode(this.#transport.id, outgoing.fds.length, length, seq, timestamp, subscription.id)
        link.sendMessage(subscription.id, frame, outgoing.fds)
      }
    } finally {
      // The kernel (or the channel's queue) holds its own copies of the fds now.
      outgoing.dispose()
    }
    return true
  }

  /** Resolves when `publish()` would be accepted (see `writable`). */
  ready(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#wait('ready()', () => this.writable, options.signal)
  }

  /** Resolves once at least `count` subscriptions (default 1) are reachable. */
  waitForSubscribers(options: { count?: number; signal?: AbortSignal } = {}): Promise<void> {
    const count = options.count ?? 1
    if (!Number.isInteger(count) || count < 1) {
      return Promise.reject(new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'count must be a positive integer'))
    }
    return this.#wait('waitForSubscribers()', () => this.subscriberCount >= count, options.signal)
  }

  /** Stops publishing and removes the endpoint. Frames already handed out are still delivered. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true
      this.#host.removed(this)
      for (const check of [...this.#watchers]) check()
      guarded(() => this.emit('close'))
      this.#resolveClosed()
    }
    return this.closed
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  // ---- from the node ----

  /** @internal The node renamed us after a topology rejoin. */
  rename(id: string): void {
    this.#id = id
    this.#encoder = new MessageEncoder(id)
  }

  /** @internal Targets or credits changed. */
  update(): void {
    if (this.#closed) return
    const count = this.subscriberCount
    if (count !== this.#lastCount) {
      this.#lastCount = count
      guarded(() => this.emit('subscribers', count))
    }
    if (this.#blocked && this.writable) {
      this.#blocked = false
      guarded(() => this.emit('ready'))
    }
    for (const check of [...this.#watchers]) check()
  }

  #wait(what: string, ready: () => boolean, signal: unknown): Promise<void> {
    let checked: AbortSignal | undefined
    try {
      checked = checkSignal(signal)
    } catch (error) {
      return Promise.reject(error)
    }
    return waitUntil(
      what,
      ready,
      () => (this.#closed ? new PubSubError('ERR_PUBSUB_CLOSED', `${what}: the publisher is closed`) : undefined),
      (check) => {
        this.#watchers.add(check)
        return () => this.#watchers.delete(check)
      },
      checked,
    )
  }
}
