import { EventEmitter } from 'node:events'
import { Segment } from '@ipc-pubsub/shm'
import { checkSignal, guarded, PubSubError, waitUntil } from './errors.js'
import { MessageEncoder } from './frames.js'
import type { Lane, OutboundLink, RemoteSubscription } from './link.js'
import { PublisherPool } from './pool.js'
import { type Outgoing, segmentTransport, type TransportName } from './transport.js'

/** @internal One subscription a publisher can reach now: its link is open. */
export interface Target {
  readonly subscription: RemoteSubscription
  readonly link: OutboundLink
  /** The link's lane for this subscription: credits and per-target constants. */
  readonly lane: Lane
}

/** Options of `node.publisher()`. */
export interface PublisherOptions {
  /**
   * Pool transport: bytes of shared memory this publisher allocates once (mapped lazily, as
   * it is used) and reuses for its messages. It bounds the memory in flight to subscribers.
   * A message larger than half of it travels as a segment. Default 64 MiB; a power of two
   * from 64 KiB to 1 GiB.
   */
  poolSize?: number
  /**
   * Pool transport: when `publish()` is refused for back-pressure, how long (µs) the
   * publisher polls for the grants and blocks that let it go on before it sleeps until a
   * subscriber rings. Off (0) by default; costs up to a core while it polls.
   */
  spinMicroseconds?: number
}

const encoder = new TextEncoder()
// Numbers each send, so per-link ring room and skipped lanes are counted per publish.
let publishRound = 0
// Pool ids on the wire: unique per process, so per link.
let poolCounter = 0

/** @internal What a publisher needs from its node. */
export interface PublisherHost {
  targets(topic: string): readonly Target[]
  /** Detaches `pool` from every link it is attached to (the publisher closes). */
  detachPool(pool: PublisherPool): void
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
  /** The transport payloads travel by (links or messages the pool cannot serve use segments). */
  readonly transport: TransportName

  #id: string
  #encoder: MessageEncoder
  readonly #poolSize: number
  readonly #spinNs: bigint
  #spinning = false
  // Pool transport: made at the first message that can use it, closed with the publisher.
  #pool: PublisherPool | undefined
  readonly #host: PublisherHost
  #seq = 0
  #lastCount = 0
  #blocked = false
  // A lossless publish was refused for pool memory or ring room, which `writable` cannot see
  // from credits: false again at the next wake-up (update()). Without it, ready() would
  // resolve at once and `while (!publish()) await ready()` would spin.
  #waitingForMemory = false
  readonly #watchers = new Set<() => void>()
  #closed = false
  #resolveClosed!: () => void
  /** Settles when the publisher is closed. */
  readonly closed: Promise<void>

  /** @internal Publishers come from `node.publisher()`. */
  constructor(token: typeof createToken, id: string, topic: string, transport: TransportName, host: PublisherHost, options: Required<PublisherOptions>) {
    if (token !== createToken) throw new TypeError('use node.publisher()')
    super()
    this.#id = id
    this.topic = topic
    this.#poolSize = options.poolSize
    this.#spinNs = BigInt(Math.round(options.spinMicroseconds * 1000))
    this.transport = transport
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
    if (this.#closed || this.#waitingForMemory) return false
    const targets = this.#host.targets(this.topic)
    if (targets.length === 0) return false
    for (const { subscription, lane, link } of targets) {
      if (subscription.lossless && lane.credits <= 0) {
        link.reap()
        if (lane.credits <= 0) return false
      }
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
    if (length > segmentTransport.maxLength) {
      throw new PubSubError('ERR_PUBSUB_TOO_LARGE', `publish(): ${length} bytes is more than the largest message (${segmentTransport.maxLength})`)
    }
    return this.#send(length, (into) => {
      if (typeof payload === 'string') encoder.encodeInto(payload, into)
      else into.set(payload)
    }, payload)
  }

  /**
   * Lends a writable view of `size` bytes of shared memory: fill `loan.data`, then
   * `loan.publish()` sends it with no copy at all. Undefined when `publish()` would refuse
   * (nobody subscribes, or a lossless subscriber has no room): nothing is allocated then.
   * With the pool transport the view is a block of this publisher's pool; otherwise (or when
   * `size` is beyond the pool) it is a fresh segment. A loan that is never published is
   * given back by `loan.cancel()` (or `using`), or by GC.
   */
  loan(size: number): Loan | undefined {
    if (this.#closed) throw new PubSubError('ERR_PUBSUB_CLOSED', `loan(): the publisher of ${this.topic} is closed`)
    if (!Number.isSafeInteger(size) || size < 0) throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'loan(): size must be a non-negative integer')
    if (size > segmentTransport.maxLength) {
      throw new PubSubError('ERR_PUBSUB_TOO_LARGE', `loan(): ${size} bytes is more than the largest message (${segmentTransport.maxLength})`)
    }
    if (!this.writable) return undefined
    const pool = this.transport === 'pool' ? this.#ensurePool() : undefined
    if (pool !== undefined && size <= pool.maxLength / 2) {
      const offset = this.#allocate(pool, size, this.#host.targets(this.topic))
      if (offset >= 0) return Loan.create(this, pool.bytes.subarray(offset, offset + size), { pool, offset })
      return undefined
    }
    const segment = size === 0 ? undefined : Segment.create(size, { name: 'ipc-pubsub' })
    return Loan.create(this, segment?.bytes ?? new Uint8Array(0), { segment })
  }

  /** @internal A loan's publish(). */
  publishLoan(loan: Loan, memory: LoanMemory): boolean {
    if (this.#closed) throw new PubSubError('ERR_PUBSUB_CLOSED', `loan.publish(): the publisher of ${this.topic} is closed`)
    return this.#send(loan.data.byteLength, undefined, undefined, memory)
  }

  // The one send path of publish() and loans: checks credits, spends a seq, writes the
  // payload once (into the pool, or a segment when the pool cannot take it or a link does not
  // speak pool), then hands each reachable subscription its entry or frame.
  #send(length: number, fill: ((into: Uint8Array) => void) | undefined, payload: Uint8Array | string | undefined, loan?: LoanMemory): boolean {
    const targets = this.#host.targets(this.topic)
    if (targets.length === 0) return false
    let receivers = 0
    let poolTargets = 0
    const round = ++publishRound
    for (const target of targets) {
      const { subscription, lane, link } = target
      // Completions first (one shared-memory load when there are none): they return
      // credits and blocks, so a pool link never waits for a drain only we could do.
      link.reap()
      // A lane without credit, or whose link's ring is full, is skipped this time; so is a
      // lossy one whose subscriber holds half the pool (it loses this message, and the pool
      // stays available to the others: a lossy subscriber never stalls anyone).
      if (lane.credits > 0 && !this.#overBudget(target) && link.takeSlot(round)) {
        receivers++
        if (subscription.pool) poolTargets++
      } else {
        lane.skipRound = round
        if (subscription.lossless) {
          // Credits are visible to `writable`; a full ring is not: remember it.
          if (lane.credits > 0) this.#waitingForMemory = true
          this.#block(targets)
          return false
        }
      }
    }
    // Where the payload goes: a pool block (written once, whatever the number of
    // subscribers) if any receiver takes the pool and the message fits.
    let pool: PublisherPool | undefined
    let offset = -1
    if (loan?.pool !== undefined) {
      pool = loan.pool
      offset = loan.offset
    } else if (receivers > 0 && poolTargets > 0 && this.transport === 'pool') {
      pool = this.#ensurePool()
      if (pool !== undefined && length <= pool.maxLength / 2) {
        offset = this.#allocate(pool, length, targets)
        if (offset < 0) {
          // Full: held by lossless subscribers (back-pressure) or lossy ones (segments carry
          // this message instead, so a lossy holder never stalls anyone).
          for (const { subscription, lane } of targets) {
            if (subscription.lossless && subscription.pool && lane.credits > 0) {
              this.#waitingForMemory = true
              this.#block(targets)
              return false
            }
          }
        }
      }
    }
    this.#blocked = false
    const seq = ++this.#seq
    const timestamp = process.hrtime.bigint()
    // Every lossy subscriber is behind: the seq is spent (they will see the gap), no work done.
    if (receivers === 0) {
      // The writer's hold (a loan's too: it counts as published) goes; nothing else holds it.
      if (offset >= 0) pool?.letGo(offset)
      return true
    }
    let outgoing: Outgoing | undefined
    try {
      if (offset >= 0 && fill !== undefined) fill((pool as PublisherPool).bytes.subarray(offset, offset + length))
      for (const { subscription, lane, link } of targets) {
        if (lane.skipRound === round || lane.credits <= 0) continue
        if (offset >= 0 && subscription.pool) {
          const sender = link.pool()
          if (sender !== undefined && link.attach(sender, pool as PublisherPool, this.#id) && link.bind(lane)) {
            lane.credits--
            sender.submit(pool as PublisherPool, offset, length, lane.number, seq, timestamp)
            sender.flush()
            continue
          }
        }
        outgoing ??= this.#segment(length, payload, pool, offset, loan)
        const frame = this.#encoder.encode(segmentTransport.id, outgoing.fds.length, length, seq, timestamp, subscription.id)
        link.sendMessage(lane, frame, outgoing.fds)
      }
    } finally {
      // The writer's hold: the block stays only while some ring entry carries it.
      if (offset >= 0) pool?.letGo(offset)
      // The kernel (or the channel's queue) holds its own copies of the fds now.
      outgoing?.dispose()
    }
    return true
  }

  // The payload as a segment, for links (or messages) the pool does not serve.
  #segment(length: number, payload: Uint8Array | string | undefined, pool: PublisherPool | undefined, offset: number, loan: LoanMemory | undefined): Outgoing {
    // Nothing to carry: a frame without fds (a 0-byte loan outside the pool has no memory).
    if (length === 0) return segmentTransport.prepare('', 0)
    if (loan?.segment !== undefined) {
      const segment = loan.segment
      segment.seal('shrink', 'grow', 'future-write', 'seal')
      return { fds: [segment.fd], dispose: () => segment.close() }
    }
    if (payload !== undefined) return segmentTransport.prepare(payload, length)
    return segmentTransport.prepare((pool as PublisherPool).bytes.subarray(offset, offset + length), length)
  }

  // A block for `length` bytes. A full pool first takes back what subscribers released.
  #allocate(pool: PublisherPool, length: number, targets: readonly Target[]): number {
    let offset = pool.allocate(length)
    if (offset < 0) {
      for (const { link } of targets) link.reap()
      offset = pool.allocate(length)
    }
    return offset
  }

  #ensurePool(): PublisherPool | undefined {
    if (this.#pool === undefined) {
      try {
        this.#pool = new PublisherPool(++poolCounter & 0x7fffffff, this.#poolSize)
      } catch {
        // No memory or fds for a pool now: segments carry the messages (tried again next time).
        return undefined
      }
    }
    return this.#pool
  }

  #overBudget({ subscription, link }: Target): boolean {
    const pool = this.#pool
    return pool !== undefined && !subscription.lossless && subscription.pool && link.pinned(pool) > pool.size / 2
  }

  // Back-pressure: publish() was refused. Pool links are asked to ring us when their
  // subscribers give credits or blocks back; 'ready' follows from update().
  #block(targets: readonly Target[]): void {
    this.#blocked = true
    if (this.#spinNs > 0n) this.#spin()
    else for (const { link } of targets) link.waitForCompletions()
  }

  // Polls the links' completions from setImmediate (the event loop keeps running: the
  // subscriber's grant may come from this very process) until writable or the time is up,
  // then sleeps as without spinning.
  #spin(): void {
    if (this.#spinning) return
    this.#spinning = true
    const deadline = process.hrtime.bigint() + this.#spinNs
    const poll = (): void => {
      if (this.#closed || !this.#blocked) {
        this.#spinning = false
        return
      }
      const targets = this.#host.targets(this.topic)
      for (const { link } of targets) link.reap()
      this.#waitingForMemory = false
      if (this.writable || process.hrtime.bigint() >= deadline) {
        this.#spinning = false
        if (this.writable) this.update()
        else for (const { link } of targets) link.waitForCompletions()
        return
      }
      setImmediate(poll)
    }
    setImmediate(poll)
  }

  /** Resolves when `publish()` would be accepted (see `writable`). */
  ready(options: { signal?: AbortSignal } = {}): Promise<void> {
    // Pool links report credits through shared memory: ask them to ring us (update() then
    // re-checks, and asks again while not writable).
    if (!this.#closed && !this.writable) this.#block(this.#host.targets(this.topic))
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
      const pool = this.#pool
      if (pool !== undefined) {
        // Links forget its blocks and tell subscribers they may unmap it once released.
        for (const { link } of this.#host.targets(this.topic)) link.detach(pool)
        this.#host.detachPool(pool)
        pool.close()
      }
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
    // Woken by a pool link: blocks or ring slots may have come back (if not, the next
    // publish() finds out and waits for the next wake-up; no spin either way).
    this.#waitingForMemory = false
    if (this.#blocked) {
      if (this.writable) {
        this.#blocked = false
        guarded(() => this.emit('ready'))
      } else {
        // Woken for completions that did not free what we wait for: sleep again.
        for (const { link } of this.#host.targets(this.topic)) link.waitForCompletions()
      }
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

/** @internal Where a loan's bytes live: a pool block (held by the loan) or a segment. */
export interface LoanMemory {
  readonly pool?: PublisherPool
  readonly offset: number
  readonly segment?: Segment | undefined
}

const loanToken = Symbol('Loan.create')

// GC fallback: a loan dropped without publish() or cancel() gives its block back.
const abandonedLoans = new FinalizationRegistry<{ memory: LoanMemory; done: boolean }>((held) => {
  if (held.done) return
  held.done = true
  if (held.memory.pool !== undefined) held.memory.pool.letGo(held.memory.offset)
  else held.memory.segment?.close()
})

/**
 * Shared memory lent by `publisher.loan(size)`: write the message into `data`, then
 * `publish()`. No copy is made. Do not write to `data` once published: subscribers read it
 * in place.
 */
export class Loan implements Disposable {
  /** The bytes to fill, in shared memory. */
  readonly data: Uint8Array
  readonly #publisher: Publisher
  readonly #memory: LoanMemory
  readonly #held: { memory: LoanMemory; done: boolean }

  /** @internal */
  constructor(token: typeof loanToken, publisher: Publisher, data: Uint8Array, memory: { pool?: PublisherPool; offset?: number; segment?: Segment | undefined }) {
    if (token !== loanToken) throw new TypeError('use publisher.loan()')
    this.#publisher = publisher
    this.data = data
    this.#memory = { ...memory, offset: memory.offset ?? 0 }
    this.#held = { memory: this.#memory, done: false }
    abandonedLoans.register(this, this.#held, this.#held)
  }

  /** @internal */
  static create(publisher: Publisher, data: Uint8Array, memory: { pool?: PublisherPool; offset?: number; segment?: Segment | undefined }): Loan {
    return new Loan(loanToken, publisher, data, memory)
  }

  /** True once published or cancelled. */
  get done(): boolean {
    return this.#held.done
  }

  /**
   * Publishes the loan's bytes, as `publisher.publish()` would (same return value). On false
   * (back-pressure, or nobody subscribes any more) the loan stays yours: publish it again
   * after `ready()`, or cancel it. Throws ERR_PUBSUB_CLOSED once published or cancelled.
   */
  publish(): boolean {
    if (this.#held.done) throw new PubSubError('ERR_PUBSUB_CLOSED', 'loan.publish(): the loan was already published or cancelled')
    const sent = this.#publisher.publishLoan(this, this.#memory)
    if (sent) this.#finish(false)
    return sent
  }

  /** Gives the memory back without publishing. Idempotent. */
  cancel(): void {
    if (!this.#held.done) this.#finish(true)
  }

  #finish(release: boolean): void {
    this.#held.done = true
    abandonedLoans.unregister(this.#held)
    const { pool, offset, segment } = this.#memory
    // A published pool block was handed over (its writer's hold let go in the send path);
    // a published segment was closed there too.
    if (!release) return
    if (pool !== undefined) pool.letGo(offset)
    else segment?.close()
  }

  [Symbol.dispose](): void {
    this.cancel()
  }
}
