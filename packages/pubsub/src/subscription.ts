import { EventEmitter } from 'node:events'
import { checkSignal, guarded, PubSubError, waitUntil } from './errors.js'
import type { MessageHeader } from './frames.js'
import type { InboundLink } from './link.js'
import { type HeldToken, type HeldTracker, Message } from './message.js'
import type { Incoming } from './transport.js'

/**
 * What a full queue does with the next message:
 * - 'drop-oldest' (default): the oldest queued message is dropped; the gap shows in the next
 *   message's `lost`. A slow subscriber never slows its publishers or other subscribers.
 * - 'wait': lossless. Publishers hold back: `publish()` returns false until there is room
 *   (`await publisher.ready()`).
 * - 'fail': the subscription ends with ERR_PUBSUB_OVERFLOW at the first missed message.
 */
export type QueuePolicy = 'drop-oldest' | 'wait' | 'fail'

export const QUEUE_POLICIES: readonly QueuePolicy[] = ['drop-oldest', 'wait', 'fail']
// 128, not 16: the queue is also the publisher's window, and a lossless stream stalls on a
// credit round trip (two cross-core wake-ups) every half window. Measured here at 64 B over
// the pool transport: 21k msgs/s with 16, 197k with 256 (same run, same load).
export const DEFAULT_QUEUE_SIZE = 128
export const MAX_QUEUE_SIZE = 65536
export const DEFAULT_MAX_HELD = 1024
/** Departed publishers whose last delivered seq a subscription remembers (the most recent). */
export const MAX_DEPARTED = 1024

/** Options of `node.subscribe()`. */
export interface SubscribeOptions {
  /** What happens when the queue is full. Default 'drop-oldest'. */
  policy?: QueuePolicy
  /**
   * Messages queued for the consumer, at most (under 'wait': from each publishing process).
   * Also the number of messages a publisher may have in flight to this subscription (so a
   * larger queue streams faster). Default 128. With the segment transport each message in
   * flight or queued holds an fd: keep `queueSize` x publishing processes well under the
   * fd limit (`ulimit -n`).
   */
  queueSize?: number
  /**
   * Messages handed out and not yet released, at most. Each holds an fd and a mapping; past
   * this bound the oldest held message is released (its `data` then reads zeros) and a
   * process warning (code IPC_PUBSUB_HELD_MESSAGES) is emitted once. Default 1024.
   */
  maxHeld?: number
  /**
   * Pool transport: how long (µs) this node polls a link's ring for the next message before
   * it sleeps on its doorbell. Off (0) by default. Polling costs up to one core while it
   * runs and buys latency: a wake-up from sleep costs tens of µs on this kind of machine, a
   * poll a few. The largest value of a node's subscriptions applies to its links.
   */
  spinMicroseconds?: number
  /**
   * Ends the subscription when aborted, with an AbortError (name 'AbortError', code
   * ERR_PUBSUB_ABORTED): `closed` settles with it and a `for await` loop throws it.
   */
  signal?: AbortSignal
}

/** Events of a Subscription and their arguments. */
export interface SubscriptionEvents {
  /** A message (callback style: with a listener, messages are delivered here as they arrive). */
  message: [message: Message]
  /** The number of live publishers of the topic changed. */
  publishers: [count: number]
  /** The subscription failed (ERR_PUBSUB_OVERFLOW under 'fail'). Only with a listener. */
  error: [error: Error]
  /** The subscription closed; the reason is undefined after close(). */
  close: [reason: Error | undefined]
}

interface Entry {
  readonly header: MessageHeader
  readonly incoming: Incoming
  readonly link: InboundLink | undefined
}

/** @internal What a subscription needs from its node. */
export interface SubscriptionHost {
  publisherCount(topic: string): number
  /** Whether the topology lists this publisher endpoint as live now. */
  publisherLive(topic: string, publisher: string): boolean
  removed(subscription: Subscription): void
}

const createToken = Symbol('Subscription.create')

/**
 * A subscription to one topic: an async iterable of Messages, or 'message' events. Its queue
 * is bounded (`queueSize`); `policy` says what a full queue does. Breaking out of a
 * `for await` loop closes the subscription, as with a Node stream.
 */
export class Subscription extends EventEmitter<SubscriptionEvents> implements AsyncIterable<Message>, AsyncDisposable {
  readonly topic: string
  readonly policy: QueuePolicy
  readonly queueSize: number
  readonly maxHeld: number
  /** See SubscribeOptions.spinMicroseconds. */
  readonly spinMicroseconds: number
  /** Settles when the subscription closes: undefined after close(), else the error. Never rejects. */
  readonly closed: Promise<Error | undefined>

  #id: string
  readonly #host: SubscriptionHost
  readonly #queue: Entry[] = []
  #queueHead = 0
  // Per publisher: the last seq handed out (or one before the first seen), for `lost`. Seq is
  // per publisher, so this outlives links (a reconnect keeps the baseline: what vanished in
  // the flap shows in `lost`) and the publisher itself, whose messages may still be queued or
  // unread on the socket when the topology reports it gone. Memory bound: entries of live
  // publishers, plus the MAX_DEPARTED most recent departures (#departed, oldest first).
  readonly #delivered = new Map<string, number>()
  readonly #departed = new Set<string>()
  // Per publisher: the last seq received and the link it came on, for the order check and the
  // 'fail' policy's gap check. A publisher's node has one link to us at a time; a message on
  // another link (a reconnect) starts a new baseline, so no link can poison another's order.
  readonly #received = new Map<string, { seq: number; link: InboundLink | undefined }>()
  readonly #held = new Map<HeldToken, WeakRef<Message>>()
  // Handed out since the last turn of the event loop, not yet tracked (see Message.track).
  // A strong reference: nothing here can be collected before it is tracked.
  #fresh: Message[] = []
  #trackScheduled = false
  readonly #tracker: HeldTracker
  #warnedHeld = false
  #waiter: { resolve: (result: IteratorResult<Message>) => void; reject: (error: Error) => void } | undefined
  readonly #countWatchers = new Set<() => void>()
  #lastCount: number
  #state: 'open' | 'closed' = 'open'
  #reason: Error | undefined
  #resolveClosed!: (reason: Error | undefined) => void

  /** @internal Subscriptions come from `node.subscribe()`. */
  constructor(
    token: typeof createToken,
    id: string,
    topic: string,
    options: Required<Omit<SubscribeOptions, 'signal'>>,
    host: SubscriptionHost,
  ) {
    if (token !== createToken) throw new TypeError('use node.subscribe()')
    super()
    this.#id = id
    this.topic = topic
    this.policy = options.policy
    this.queueSize = options.queueSize
    this.maxHeld = options.maxHeld
    this.spinMicroseconds = options.spinMicroseconds
    this.#host = host
    this.#lastCount = host.publisherCount(topic)
    this.#tracker = { released: (held) => this.#held.delete(held) }
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve
    })
    const emitter = this as EventEmitter
    emitter.on('newListener', (event: string | symbol) => {
      // Messages that queued up before the first listener go to it, in order.
      if (event === 'message') process.nextTick(() => this.#flushToListeners())
    })
  }

  /** @internal */
  static create(...args: ConstructorParameters<typeof Subscription> extends [unknown, ...infer R] ? R : never): Subscription {
    return new Subscription(createToken, ...args)
  }

  /** @internal Resolves and checks options before anything happens. */
  static options(options: SubscribeOptions): Required<Omit<SubscribeOptions, 'signal'>> & { signal: AbortSignal | undefined } {
    if (typeof options !== 'object' || options === null) {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'options must be an object')
    }
    const policy = options.policy ?? 'drop-oldest'
    if (!QUEUE_POLICIES.includes(policy)) {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `policy must be one of ${QUEUE_POLICIES.join(', ')}`)
    }
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE
    if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > MAX_QUEUE_SIZE) {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `queueSize must be an integer in 1..${MAX_QUEUE_SIZE}`)
    }
    const maxHeld = options.maxHeld ?? DEFAULT_MAX_HELD
    if (!Number.isInteger(maxHeld) || maxHeld < 1 || maxHeld > 1_000_000) {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'maxHeld must be an integer in 1..1000000')
    }
    const spinMicroseconds = options.spinMicroseconds ?? 0
    if (typeof spinMicroseconds !== 'number' || !Number.isFinite(spinMicroseconds) || spinMicroseconds < 0 || spinMicroseconds > 1_000_000) {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'spinMicroseconds must be a number in 0..1000000')
    }
    return { policy, queueSize, maxHeld, spinMicroseconds, signal: checkSignal(options.signal) }
  }

  /** This subscription's endpoint id in the topology (`<node id>/<n>`). */
  get id(): string {
    return this.#id
  }

  /** Live publishers of the topic in the domain (this process included). */
  get publisherCount(): number {
    return this.#host.publisherCount(this.topic)
  }

  /** Messages waiting in the queue. */
  get queued(): number {
    return this.#queue.length - this.#queueHead
  }

  /** Messages handed out and not yet released (nor reclaimed by GC). */
  get held(): number {
    let fresh = 0
    for (const message of this.#fresh) if (!message.released) fresh++
    return this.#held.size + fresh
  }

  /** Resolves once the topic has at least `count` publishers (default 1). */
  waitForPublishers(options: { count?: number; signal?: AbortSignal } = {}): Promise<void> {
    const count = options.count ?? 1
    if (!Number.isInteger(count) || count < 1) {
      return Promise.reject(new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'count must be a positive integer'))
    }
    let signal: AbortSignal | undefined
    try {
      signal = checkSignal(options.signal)
    } catch (error) {
      return Promise.reject(error)
    }
    return waitUntil(
      'waitForPublishers()',
      () => this.publisherCount >= count,
      () => this.#closedError('waitForPublishers()'),
      (check) => {
        this.#countWatchers.add(check)
        return () => this.#countWatchers.delete(check)
      },
      signal,
    )
  }

  /** Stops receiving: the endpoint is removed, queued messages are dropped, iteration ends. Idempotent. */
  close(): Promise<void> {
    this.#end(undefined)
    return this.closed.then(() => undefined)
  }

  /** Same as close(), ending with `error` (iterators throw it). */
  destroy(error?: Error): Promise<void> {
    this.#end(error)
    return this.closed.then(() => undefined)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: () => {
        const message = this.#take()
        if (message !== undefined) return Promise.resolve({ value: message, done: false })
        if (this.#state === 'closed') {
          const reason = this.#reason
          this.#reason = undefined
          return reason ? Promise.reject(reason) : Promise.resolve({ value: undefined, done: true })
        }
        if (this.#waiter !== undefined) {
          return Promise.reject(new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'next() called while another next() is pending'))
        }
        return new Promise((resolve, reject) => {
          this.#waiter = { resolve, reject }
        })
      },
      return: async () => {
        await this.close()
        return { value: undefined, done: true }
      },
    }
  }

  // ---- from the node ----

  /** @internal The node renamed us after a topology rejoin. */
  rename(id: string): void {
    this.#id = id
  }

  /** @internal The topic's publisher count may have changed. */
  publishersChanged(): void {
    if (this.#state === 'closed') return
    const count = this.publisherCount
    if (count !== this.#lastCount) {
      this.#lastCount = count
      guarded(() => this.emit('publishers', count))
    }
    for (const check of [...this.#countWatchers]) check()
  }

  /** @internal A link closed: the order check of publishers that spoke on it starts again. */
  linkClosed(link: InboundLink): void {
    for (const [publisher, last] of this.#received) {
      if (last.link === link) this.#received.delete(publisher)
    }
  }

  /** @internal A publisher's endpoint is up (its messages may have come first). */
  publisherUp(publisher: string): void {
    this.#departed.delete(publisher)
  }

  /** @internal A publisher's endpoint went away. Its delivered seq stays among the departed. */
  publisherGone(publisher: string): void {
    this.#received.delete(publisher)
    if (this.#delivered.has(publisher)) this.#depart(publisher)
  }

  /** @internal One message from a link. Returns false (and keeps nothing) if closed. */
  receive(link: InboundLink | undefined, header: MessageHeader, incoming: Incoming): boolean {
    if (this.#state === 'closed') return false
    const last = this.#received.get(header.publisher)
    const previous = last?.link === link ? last?.seq : undefined
    if (previous !== undefined && header.seq <= previous) {
      // One channel per publisher node keeps order: a repeat or step back is a broken peer.
      incoming.release()
      link?.fail(new PubSubError('ERR_PUBSUB_PROTOCOL', `${header.publisher} sent seq ${header.seq} after ${previous}`))
      return true
    }
    this.#received.set(header.publisher, { seq: header.seq, link })
    if (!this.#delivered.has(header.publisher)) {
      this.#delivered.set(header.publisher, header.seq - 1)
      // Already gone (or not yet announced): bounded with the departed until announced.
      if (!this.#host.publisherLive(this.topic, header.publisher)) this.#depart(header.publisher)
    }
    if (this.policy === 'fail') {
      const gap = previous !== undefined && header.seq !== previous + 1
      if (gap || this.queued >= this.queueSize) {
        incoming.release()
        this.#end(new PubSubError('ERR_PUBSUB_OVERFLOW', `subscription to ${this.topic} missed messages from ${header.publisher} (policy 'fail')`))
        return true
      }
    }
    // Lossy policies give the credit back on receipt: the queue bound is enforced here.
    if (this.policy !== 'wait') link?.returnCredits(this.#id, this.queueSize)
    const entry: Entry = { header, incoming, link }
    if (this.queued === 0) {
      if (this.#waiter !== undefined) {
        const waiter = this.#waiter
        this.#waiter = undefined
        waiter.resolve({ value: this.#handOut(entry), done: false })
        return true
      }
      if (this.listenerCount('message') > 0) {
        this.#emitMessage(this.#handOut(entry))
        return true
      }
    }
    this.#queue.push(entry)
    if (this.policy === 'drop-oldest' && this.queued > this.queueSize) {
      const dropped = this.#shift()
      dropped?.incoming.release()
    }
    return true
  }

  // ---- internals ----

  #depart(publisher: string): void {
    this.#departed.delete(publisher)
    this.#departed.add(publisher)
    if (this.#departed.size <= MAX_DEPARTED) return
    const oldest = this.#departed.values().next().value as string
    this.#departed.delete(oldest)
    this.#delivered.delete(oldest)
  }

  #shift(): Entry | undefined {
    if (this.#queueHead >= this.#queue.length) return undefined
    const entry = this.#queue[this.#queueHead] as Entry
    this.#queue[this.#queueHead++] = undefined as unknown as Entry
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0
      this.#queueHead = 0
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead)
      this.#queueHead = 0
    }
    return entry
  }

  #take(): Message | undefined {
    const entry = this.#shift()
    return entry === undefined ? undefined : this.#handOut(entry)
  }

  #handOut(entry: Entry): Message {
    const { header } = entry
    const last = this.#delivered.get(header.publisher) ?? header.seq - 1
    this.#delivered.set(header.publisher, header.seq)
    const message = Message.create(
      {
        topic: this.topic,
        seq: header.seq,
        timestamp: header.timestamp,
        publisher: header.publisher,
        lost: Math.max(0, header.seq - last - 1),
      },
      entry.incoming,
      undefined,
    )
    // Lossless: room in the queue only now, when the user has the message.
    if (this.policy === 'wait') entry.link?.returnCredits(this.#id, this.queueSize)
    this.#fresh.push(message)
    if (this.#held.size + this.#fresh.length > this.maxHeld) {
      // The bound is exact: track now, then release the oldest past it.
      this.#trackFresh()
      while (this.#held.size > this.maxHeld) if (!this.#reclaimOldest()) break
    } else if (!this.#trackScheduled) {
      this.#trackScheduled = true
      setImmediate(this.#trackFreshLater)
    }
    return message
  }

  readonly #trackFreshLater = (): void => {
    this.#trackScheduled = false
    this.#trackFresh()
  }

  #trackFresh(): void {
    const fresh = this.#fresh
    if (fresh.length === 0) return
    this.#fresh = []
    for (const message of fresh) {
      const token = message.track(this.#tracker)
      if (token !== undefined) this.#held.set(token, new WeakRef(message))
    }
  }

  // A leak guard, not a way to release: see SubscribeOptions.maxHeld.
  #reclaimOldest(): boolean {
    if (!this.#warnedHeld) {
      this.#warnedHeld = true
      process.emitWarning(
        `subscription to ${this.topic} holds more than ${this.maxHeld} unreleased messages: the oldest are being released ` +
          '(their data is no longer theirs). Call message.release() (or `using`) when done with a message, or raise maxHeld.',
        { code: 'IPC_PUBSUB_HELD_MESSAGES' },
      )
    }
    for (const [token, ref] of this.#held) {
      const message = ref.deref()
      if (message === undefined) {
        // Collected, its finalizer not run yet: give its memory back here (a pool block;
        // shm's finalizer frees a segment once its data is collected too).
        if (!token.done) {
          token.done = true
          token.reclaim?.()
        }
        this.#held.delete(token)
        continue
      }
      message.release()
      return true
    }
    return false
  }


  #emitMessage(message: Message): void {
    // A throwing listener is the user's bug, reported as Node reports one: uncaught. It must
    // not break the link the message came on.
    guarded(() => this.emit('message', message))
  }

  #flushToListeners(): void {
    while (this.#state === 'open' && this.listenerCount('message') > 0) {
      const message = this.#take()
      if (message === undefined) return
      this.#emitMessage(message)
    }
  }

  #closedError(what: string): Error | undefined {
    if (this.#state === 'open') return undefined
    return new PubSubError('ERR_PUBSUB_CLOSED', `${what}: the subscription is closed`)
  }

  #end(reason: Error | undefined): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#reason = reason
    for (let entry = this.#shift(); entry !== undefined; entry = this.#shift()) entry.incoming.release()
    this.#host.removed(this)
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter
      this.#waiter = undefined
      // An iterator waiting in next() learns the reason there.
      if (reason) {
        this.#reason = undefined
        waiter.reject(reason)
      } else {
        waiter.resolve({ value: undefined, done: true })
      }
    }
    for (const check of [...this.#countWatchers]) check()
    if (reason && this.listenerCount('error') > 0) guarded(() => this.emit('error', reason))
    guarded(() => this.emit('close', reason))
    this.#resolveClosed(reason)
  }
}
