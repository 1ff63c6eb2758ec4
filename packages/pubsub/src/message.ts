import type { Incoming } from './transport.js'

const decoder = new TextDecoder()

/** @internal How a message reports its end to the subscription that handed it out. */
export interface HeldTracker {
  /** The message was released (by the user, by a bound, or by GC). Called at most once. */
  released(token: HeldToken): void
}

/**
 * @internal What the GC fallback needs to account for a message nobody released. It must not
 * reference the message or its data, or neither could be collected.
 */
export interface HeldToken {
  readonly tracker: HeldTracker
  /** Gives the transport's memory back (Incoming.reclaim), if it needs that. */
  readonly reclaim: (() => void) | undefined
  done: boolean
}

// GC fallback: a message whose data the user dropped without release() is accounted for here.
// A segment's memory is released by @ipc-pubsub/shm's own finalizer (fd closed, range
// unmapped) once V8 collects the mapping's ArrayBuffer; a pool block goes back to its
// publisher through `reclaim` once the message's view is collected (the pool's ArrayBuffer
// lives on). This registry also keeps the held count right.
const collected = new FinalizationRegistry<HeldToken>((token) => {
  if (token.done) return
  token.done = true
  token.reclaim?.()
  token.tracker.released(token)
})

const createToken = Symbol('Message.create')

/**
 * One received message. `data` is a zero-copy view of shared memory, valid until `release()`
 * (or the end of a `using` block). Touching `data` after release is safe (it reads zeros),
 * never a crash. Release what you are done with: each unreleased message holds an fd and a
 * mapping until GC reclaims it.
 */
export class Message implements Disposable {
  /** The topic it was published on. */
  readonly topic: string
  /** The payload, zero-copy. Copy it (`slice()`) to keep it past `release()`. */
  readonly data: Uint8Array
  /** The publisher's sequence number: 1 for its first message, +1 for each one after. */
  readonly seq: number
  /** When it was published: CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint() in any process here). */
  readonly timestamp: bigint
  /** The publisher's endpoint id (`<node id>/<n>`; `node.topology` tells the node's name and pid). */
  readonly publisher: string
  /** Messages from this publisher that this subscription missed since its previous one. */
  readonly lost: number
  readonly #incoming: Incoming
  #token: HeldToken | undefined

  /** @internal Messages come from a Subscription. */
  constructor(
    token: typeof createToken,
    fields: { topic: string; seq: number; timestamp: bigint; publisher: string; lost: number },
    incoming: Incoming,
    tracker: HeldTracker | undefined,
  ) {
    if (token !== createToken) throw new TypeError('Message cannot be constructed directly')
    this.topic = fields.topic
    this.seq = fields.seq
    this.timestamp = fields.timestamp
    this.publisher = fields.publisher
    this.lost = fields.lost
    this.data = incoming.data
    this.#incoming = incoming
    if (tracker !== undefined) this.track(tracker)
  }

  /**
   * @internal Puts the message under the GC fallback and returns its token (undefined if it
   * holds nothing or is released already). Subscriptions call it only for messages still
   * unreleased one event-loop turn after they were handed out: registering every message
   * (a FinalizationRegistry entry and a WeakRef) would cost more than the message itself,
   * and most are released at once.
   */
  track(tracker: HeldTracker): HeldToken | undefined {
    if (this.#released || this.#token !== undefined) return this.#token
    const incoming = this.#incoming
    const reclaim = incoming.reclaim
    if (reclaim === undefined && incoming.data.byteLength === 0) return undefined
    this.#token = { tracker, reclaim, done: false }
    // A pool message's view is its own (the buffer is the whole pool); a segment's buffer is.
    collected.register(reclaim === undefined ? incoming.data.buffer : incoming.data, this.#token, this.#token)
    return this.#token
  }

  /** @internal */
  static create(...args: ConstructorParameters<typeof Message> extends [unknown, ...infer R] ? R : never): Message {
    return new Message(createToken, ...args)
  }

  /** @internal The token the held bound tracks (undefined for payloads that hold nothing). */
  get heldToken(): HeldToken | undefined {
    return this.#token
  }

  /** True once released (by `release()`, or by the subscription's `maxHeld` bound). */
  get released(): boolean {
    return this.#released
  }
  #released = false

  /** The payload decoded as UTF-8 (a copy). */
  text(): string {
    return decoder.decode(this.data)
  }

  /** Frees the shared memory now; idempotent. `data` reads zeros afterwards. */
  release(): void {
    if (this.#released) return
    this.#released = true
    this.#incoming.release()
    const token = this.#token
    if (token !== undefined && !token.done) {
      token.done = true
      collected.unregister(token)
      token.tracker.released(token)
    }
  }

  [Symbol.dispose](): void {
    this.release()
  }
}
