// The pool transport (id 2, docs/PROTOCOL.md §9.7): each publisher owns one memfd (its pool),
// allocated once, kept mapped, sealed against shrinking, growing and other writers, and mapped by
// every subscribing node it links to (privately, read-only in effect). A message is a block of the pool; what travels per
// message is a 32-byte entry in a shared-memory ring per link (ring.ts), not a frame or an fd.
//
// Ownership, as in iceoryx2: the reference counts of blocks live in the publisher's process,
// never in memory a subscriber can write. Each link remembers which blocks it handed out and
// not yet got back, so a subscriber can release only what it was given (anything else closes
// its link with ERR_PUBSUB_PROTOCOL), and everything a dead or departed subscriber held comes
// back at once when its link closes.
import { closeSync } from 'node:fs'
import { Doorbell } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import { BuddyAllocator, MIN_BLOCK } from './buddy.js'
import { PubSubError } from './errors.js'
import { RingPublisherEnd, RingSubscriberEnd, ringBytes, type Submission } from './ring.js'
import type { Incoming } from './transport.js'

/** The transport byte of pool attach frames and ring entries. */
export const POOL_TRANSPORT_ID = 2
/** Default pool size of a publisher: 64 MiB of address space, touched only as it is used. */
export const DEFAULT_POOL_SIZE = 64 * 1024 * 1024
export const MIN_POOL_SIZE = 64 * 1024
export const MAX_POOL_SIZE = 1024 * 1024 * 1024
/** Submission and completion entries of a link's ring. */
export const RING_SUBMISSIONS = 4096
export const RING_COMPLETIONS = 8192
/** A ring entry whose pool is this says: the payload is the next segment frame on the socket. */
export const SEGMENT_MARKER = -1

function protocolError(message: string): PubSubError {
  return new PubSubError('ERR_PUBSUB_PROTOCOL', `pool transport: ${message}`)
}

// ---- publisher side ----

/**
 * A publisher's pool: the memory and who holds which block. A block is held by the writer
 * from allocate() until it lets go (after handing it to every link), and by each ring entry
 * that carries it until that subscriber releases it.
 */
export class PublisherPool {
  /** The pool's id on the wire (attach-pool frame): unique in this process. */
  readonly id: number
  readonly size: number
  readonly #segment: Segment
  readonly #allocator: BuddyAllocator
  // Holders per block, indexed by offset / MIN_BLOCK (typed: no Map work per message; the
  // array's pages are only touched where blocks are).
  readonly #holds: Uint32Array
  #closed = false

  constructor(id: number, size: number) {
    this.id = id
    this.size = size
    this.#allocator = new BuddyAllocator(size)
    this.#holds = new Uint32Array(size / MIN_BLOCK)
    this.#segment = Segment.create(size, { name: 'ipc-pubsub-pool' })
    // Shrink and grow are sealed so no mapping of it can ever SIGBUS. future-write: our own
    // mapping (made above) keeps writing, but no one else can ever map it writable or write()
    // it, not even by reopening /proc/<pid>/fd/<n>: a subscriber cannot change what others read.
    this.#segment.seal('shrink', 'grow', 'future-write', 'seal')
  }

  get fd(): number {
    return this.#segment.fd
  }

  /** The whole pool, writable (publisher side only). */
  get bytes(): Uint8Array {
    return this.#segment.bytes
  }

  /** Bytes in blocks that are held. */
  get used(): number {
    return this.#allocator.used
  }

  /** Bytes of the held block at `offset`. */
  blockSize(offset: number): number {
    return this.#allocator.sizeOf(offset)
  }

  /** The largest payload a block can hold. */
  get maxLength(): number {
    return this.#allocator.maxLength
  }

  /** A block of at least `length` bytes, held once by the caller; -1 if the pool is full. */
  allocate(length: number): number {
    if (this.#closed) return -1
    const offset = this.#allocator.allocate(length)
    if (offset >= 0) this.#holds[offset / MIN_BLOCK] = 1
    return offset
  }

  hold(offset: number): void {
    ;(this.#holds[offset / MIN_BLOCK] as number)++
  }

  /** Drops one hold; the block is free again when the last one goes. */
  letGo(offset: number): void {
    const index = offset / MIN_BLOCK
    const holds = this.#holds[index] as number
    if (holds === 0) return
    this.#holds[index] = holds - 1
    if (holds === 1) this.#allocator.free(offset)
  }

  /**
   * Unmaps the publisher's view (subscribers keep theirs until they let go). Views handed
   * out earlier (loans) read zeros afterwards, as with any closed segment. Idempotent.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#segment.close()
  }
}

/** What a link's pool sender reports. */
export interface PoolSenderEvents {
  /** The subscriber granted `count` credits to its subscription number `target`. */
  credit(target: number, count: number): void
  /** The subscriber rang us after we went to sleep (completions arrived). */
  woke(): void
}

interface Attached {
  readonly pool: PublisherPool
  // Blocks given to this link and not released yet: entries carrying each block, indexed by
  // offset / MIN_BLOCK, and their total.
  readonly given: Uint16Array
  count: number
  /** Bytes of the blocks given (a block given twice counts twice). */
  bytes: number
}

/**
 * The publisher's end of one pool link: the ring, both doorbells, the pools attached to the
 * link and what the link holds of each.
 */
export class PoolSender {
  readonly ring: RingPublisherEnd
  readonly #ringSegment: Segment
  readonly #subscriberBell: Doorbell
  readonly #publisherBell: Doorbell
  readonly #attached = new Map<number, Attached>()
  // Pools detached from this link: late releases of their blocks are not errors.
  readonly #detached = new Set<number>()
  readonly #events: PoolSenderEvents
  #closed = false

  constructor(events: PoolSenderEvents) {
    this.#events = events
    const bytes = ringBytes(RING_SUBMISSIONS, RING_COMPLETIONS)
    this.#ringSegment = Segment.create(bytes, { name: 'ipc-pubsub-ring' })
    try {
      this.#ringSegment.seal('shrink', 'grow', 'seal')
      this.ring = RingPublisherEnd.format(this.#ringSegment.buffer, 0, RING_SUBMISSIONS, RING_COMPLETIONS)
      this.#subscriberBell = Doorbell.create()
      try {
        this.#publisherBell = Doorbell.create()
      } catch (error) {
        this.#subscriberBell.close()
        throw error
      }
    } catch (error) {
      this.#ringSegment.close()
      throw error
    }
    // Always watched (an idle poll handle costs nothing): the subscriber rings when we asked
    // to be woken (sleep()), and when its completion ring fills up while we publish nothing.
    this.#publisherBell.watch(() => {
      this.ring.wake()
      this.#events.woke()
    })
  }

  /** The fds of the attach-ring frame: ring memfd, the subscriber's doorbell, ours. */
  get attachFds(): number[] {
    return [this.#ringSegment.fd, this.#subscriberBell.fd, this.#publisherBell.fd]
  }

  isAttached(pool: PublisherPool): boolean {
    return this.#attached.get(pool.id)?.pool === pool
  }

  /** Records `pool` as attached (the caller sends the attach-pool frame with its fd). */
  attach(pool: PublisherPool): void {
    this.#attached.set(pool.id, { pool, given: new Uint16Array(pool.size / MIN_BLOCK), count: 0, bytes: 0 })
    this.#detached.delete(pool.id)
  }

  /**
   * Forgets `pool` on this link (its publisher closed): blocks the link still holds are let
   * go (the subscriber's mapping keeps its own pages). The caller sends the detach frame.
   */
  detach(pool: PublisherPool): boolean {
    const attached = this.#attached.get(pool.id)
    if (attached?.pool !== pool) return false
    this.#attached.delete(pool.id)
    const given = attached.given
    for (let index = 0, left = attached.count; left > 0 && index < given.length; index++) {
      for (let n = given[index] as number; n > 0; n--, left--) pool.letGo(index * MIN_BLOCK)
    }
    this.#detached.add(pool.id)
    if (this.#detached.size > 1024) this.#detached.delete(this.#detached.values().next().value as number)
    return true
  }

  /** Writes one entry for `pool`'s block (the pool must be attached). Visible after flush(). */
  submit(pool: PublisherPool, offset: number, length: number, target: number, seq: number, timestamp: bigint): void {
    const attached = this.#attached.get(pool.id) as Attached
    // A block reaches one link once per subscription of its topic there: far below 65535.
    ;(attached.given[offset / MIN_BLOCK] as number)++
    attached.count++
    attached.bytes += pool.blockSize(offset)
    pool.hold(offset)
    this.ring.write(pool.id, offset, length, target, seq, timestamp)
  }

  /** Writes a marker: this target's next message is the next segment frame on the socket. */
  marker(length: number, target: number, seq: number, timestamp: bigint): void {
    this.ring.write(SEGMENT_MARKER, 0, length, target, seq, timestamp)
  }

  /**
   * Makes written entries (and completion slots freed by drain()) visible, ringing the
   * subscriber if it sleeps.
   */
  flush(): void {
    if (this.ring.publish()) this.#subscriberBell.ring()
  }

  /** Entries the subscriber has not taken yet (throws ERR_PUBSUB_PROTOCOL for a corrupt head). */
  get unconsumed(): number {
    this.ring.room()
    return this.ring.pending
  }

  /** Ring slots left for this publish (room() after the subscriber's last commit). */
  get room(): number {
    return this.ring.room()
  }

  /**
   * Takes every completion the subscriber pushed: releases let blocks go, credits go to the
   * events. Throws ERR_PUBSUB_PROTOCOL for a release of a block this link does not hold.
   */
  drain(): number {
    if (this.#closed) return 0
    return this.ring.drainCompletions(this.#completion)
  }

  readonly #completion = (a: number, b: number): void => {
    if (a < 0) {
      if (b === 0) throw protocolError('a credit entry of 0 credits')
      this.#events.credit(-(a + 1), b)
      return
    }
    const attached = this.#attached.get(a)
    if (attached === undefined) {
      if (this.#detached.has(a)) return
      throw protocolError(`release of pool ${a}, which was never attached`)
    }
    const index = b / MIN_BLOCK
    if (!Number.isInteger(index) || index >= attached.given.length || attached.given[index] === 0) {
      throw protocolError(`release of block ${b} of pool ${a}, which this link does not hold`)
    }
    ;(attached.given[index] as number)--
    attached.count--
    attached.bytes -= attached.pool.blockSize(b)
    attached.pool.letGo(b)
  }

  /**
   * Asks to be woken when completions arrive (back-pressure: no credit or no pool space).
   * Returns false if some arrived meanwhile: drain instead.
   */
  sleep(): boolean {
    if (this.#closed) return true
    return this.ring.sleep()
  }

  /** Bytes of `pool` this link's subscriber holds (received, queued or held, not released). */
  pinned(pool: PublisherPool): number {
    const attached = this.#attached.get(pool.id)
    return attached?.pool === pool ? attached.bytes : 0
  }

  /** Blocks this link holds (for tests and stats). */
  get held(): number {
    let count = 0
    for (const attached of this.#attached.values()) count += attached.count
    return count
  }

  /**
   * Lets go of everything the link holds (the subscriber is gone or unlinked) and closes the
   * ring and doorbells. Idempotent.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const attached of [...this.#attached.values()]) this.detach(attached.pool)
    this.#publisherBell.close()
    this.#subscriberBell.close()
    this.#ringSegment.close()
  }
}

// ---- subscriber side ----

/** A pool mapped at a subscriber: read-only, kept while messages of it are held. */
class MappedPool {
  readonly segment: Segment
  readonly bytes: Uint8Array
  readonly size: number
  held = 0
  detached = false

  constructor(segment: Segment) {
    this.segment = segment
    this.bytes = segment.bytes
    this.size = segment.size
  }

  maybeUnmap(): void {
    if (this.detached && this.held === 0) this.segment.close()
  }
}

/** What a pool receiver hands up. */
export interface PoolReceiverHost {
  /** Whether the entry's pool and lane were attached and bound (their frames may still be in the socket). */
  known(entry: Submission): boolean
  /** One message from the ring. Returns false if nobody wants it (its block is released). */
  deliver(entry: Submission, incoming: Incoming): void
  /**
   * A segment marker: the message is the next segment frame of this link. Returns false if
   * that frame has not been read off the socket yet: draining pauses until resume().
   */
  marker(entry: Submission): boolean
  /** The ring was found corrupt: the link must close. */
  fail(error: Error): void
}

/**
 * The subscriber's end of one pool link. Every entry is checked against the pools this link
 * attached before it is believed: a publisher can only ever corrupt its own stream.
 */
export class PoolReceiver {
  readonly #ringSegment: Segment
  readonly #ring: RingSubscriberEnd
  readonly #subscriberBell: Doorbell
  readonly #publisherBell: Doorbell
  readonly #pools = new Map<number, MappedPool>()
  // Recently detached pool ids: an entry naming one is a protocol error, not a wait.
  readonly #detachedIds = new Set<number>()
  readonly #host: PoolReceiverHost
  readonly #entry: Submission = { pool: 0, offset: 0, length: 0, target: 0, seq: 0, timestamp: 0n }
  // Completions that did not fit the ring; pushed as it frees.
  readonly #backlog: number[] = []
  #paused = false
  #draining = false
  #closed = false
  readonly #spinNs: bigint
  #spinning = false

  /**
   * Takes the three fds of an attach-ring frame (closes them all if it throws). With
   * `spinMicroseconds`, an empty ring is polled that long (from the event loop, between
   * other work) before the reader sleeps on its doorbell.
   */
  constructor(fds: readonly number[], host: PoolReceiverHost, spinMicroseconds = 0) {
    this.#host = host
    this.#spinNs = BigInt(Math.round(spinMicroseconds * 1000))
    const [ringFd, subscriberFd, publisherFd] = fds as [number, number, number]
    const opened: { close(): void }[] = []
    try {
      this.#ringSegment = Segment.fromFd(ringFd, { requireSeals: ['shrink', 'grow'], name: 'pool ring' })
      opened.push(this.#ringSegment)
      this.#ring = RingSubscriberEnd.open(this.#ringSegment.buffer)
      this.#subscriberBell = Doorbell.fromFd(subscriberFd)
      opened.push(this.#subscriberBell)
      this.#publisherBell = Doorbell.fromFd(publisherFd)
    } catch (error) {
      for (const item of opened) item.close()
      closeQuietly(fds.slice(opened.length))
      throw protocolError(`unusable attach-ring descriptors (${(error as { code?: string }).code ?? (error as Error).message})`)
    }
    this.#subscriberBell.watch(() => this.drain())
    // A fresh ring's subscriber counts as awake, so nothing rings it until it first sleeps:
    // take what is there already (or declare sleep) once the link has recorded us.
    queueMicrotask(() => this.drain())
  }

  /** Maps a pool the publisher attached (owns `fd` from the call on). */
  attachPool(id: number, fd: number): void {
    if (this.#pools.has(id)) {
      closeQuietly([fd])
      throw protocolError(`pool ${id} attached twice`)
    }
    let segment: Segment
    try {
      segment = Segment.fromFd(fd, { readonly: true, requireSeals: ['shrink', 'grow', 'future-write'], name: `pool ${id}` })
    } catch (error) {
      throw protocolError(`unusable pool fd (${(error as { code?: string }).code ?? (error as Error).message})`)
    }
    this.#pools.set(id, new MappedPool(segment))
  }

  /** The publisher closed pool `id`: take what is left of it in the ring, then let it go. */
  detachPool(id: number): void {
    this.drain()
    const pool = this.#pools.get(id)
    if (pool === undefined) throw protocolError(`detach of pool ${id}, which is not attached`)
    this.#pools.delete(id)
    this.#detachedIds.add(id)
    if (this.#detachedIds.size > 1024) this.#detachedIds.delete(this.#detachedIds.values().next().value as number)
    pool.detached = true
    pool.maybeUnmap()
  }

  /** Resumes a drain paused on a segment marker (its frame arrived). */
  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    this.drain()
  }

  /** Takes everything the ring holds, then sleeps (or carries on if more came meanwhile). */
  drain(): void {
    if (this.#closed || this.#draining || this.#paused) return
    this.#draining = true
    try {
      const ring = this.#ring
      const entry = this.#entry
      let took = 0
      for (;;) {
        let count = ring.available()
        took += count
        while (count > 0) {
          ring.peek(entry)
          // An entry may depend on a frame still in the socket (the marker's segment frame, or
          // the attach of its pool): wait for it; resume() comes with the next frame.
          const ready = entry.pool === SEGMENT_MARKER ? this.#host.marker(entry) : this.#take(entry)
          if (!ready) {
            this.#paused = true
            ring.commit()
            return
          }
          ring.advance()
          count--
          if (this.#closed) return
        }
        ring.commit()
        // A publisher waiting for ring room learns of the commit here.
        if (ring.publishCompletions()) this.#publisherBell.ring()
        if (this.#spinNs > 0n) {
          this.#spin()
          return
        }
        // Under a stream, the next entry is usually a few µs away: look once more after
        // one turn of the event loop before sleeping. A wake-up costs both sides a syscall
        // and tens of µs; this costs one loop turn after each burst, and nothing when idle.
        if (took > 0) {
          if (!this.#lingering) {
            this.#lingering = true
            setImmediate(this.#linger)
          }
          return
        }
        if (ring.sleep()) return
      }
    } catch (error) {
      this.#host.fail(error as Error)
    } finally {
      this.#draining = false
    }
  }

  #lingering = false
  readonly #linger = (): void => {
    this.#lingering = false
    this.drain()
  }

  // Polls the ring from setImmediate until something comes or the spin time is up, then
  // sleeps. Between polls the event loop runs (the user's handlers, which may publish the
  // reply we are waiting for): a synchronous busy loop here would starve them.
  #spin(): void {
    if (this.#spinning) return
    this.#spinning = true
    const ring = this.#ring
    ring.wake()
    const deadline = process.hrtime.bigint() + this.#spinNs
    const poll = (): void => {
      if (this.#closed) return
      try {
        if (ring.available() > 0) {
          this.#spinning = false
          this.drain()
          return
        }
        if (process.hrtime.bigint() < deadline) {
          setImmediate(poll)
          return
        }
        this.#spinning = false
        if (!ring.sleep()) this.drain()
      } catch (error) {
        this.#spinning = false
        this.#host.fail(error as Error)
      }
    }
    setImmediate(poll)
  }

  #take(entry: Submission): boolean {
    if (entry.pool < 0 || this.#detachedIds.has(entry.pool)) {
      throw protocolError(`an entry names pool ${entry.pool}, which is ${entry.pool < 0 ? 'not a pool id' : 'detached'}`)
    }
    const pool = this.#pools.get(entry.pool)
    // Not attached or bound yet (the frame is still in the socket), or never: then only this
    // link stalls.
    if (pool === undefined || !this.#host.known(entry)) return false
    const end = entry.offset + entry.length
    if (end > pool.size) throw protocolError(`block ${entry.offset}+${entry.length} is outside pool ${entry.pool} of ${pool.size} bytes`)
    const data = pool.bytes.subarray(entry.offset, end)
    pool.held++
    // Given back once: by release(), or by the message's GC fallback (reclaim), which must
    // not reference `data` (so neither closure does).
    const id = entry.pool
    const offset = entry.offset
    let given = false
    const giveBack = (): void => {
      if (given) return
      given = true
      this.release(pool, id, offset)
    }
    const incoming: Incoming = { data, release: giveBack, reclaim: giveBack }
    this.#host.deliver(entry, incoming)
    return true
  }

  /** Gives a block of `pool` (attached as `id`) back to the publisher. */
  release(pool: MappedPool, id: number, offset: number): void {
    pool.held--
    pool.maybeUnmap()
    // A detached pool's publisher is gone: nobody reads the completion, and the id may be
    // attached again to another pool.
    if (!pool.detached) this.#complete(id, offset)
  }

  /** Grants `count` credits to subscription number `target`. */
  credit(target: number, count: number): void {
    this.#complete(-(target + 1), count)
  }

  #complete(a: number, b: number): void {
    if (this.#closed) return
    try {
      const ring = this.#ring
      if (this.#backlog.length > 0 || ring.completionRoom() === 0) {
        this.#backlog.push(a, b)
        this.#flushBacklog()
        return
      }
      ring.writeCompletion(a, b)
      if (ring.publishCompletions()) this.#publisherBell.ring()
      // A publisher that publishes nothing does not drain: ask it to, before the ring fills.
      else if (ring.completionRoom() === ring.completions >> 1) this.#publisherBell.ring()
    } catch (error) {
      this.#host.fail(error as Error)
    }
  }

  #flushBacklog(): void {
    const ring = this.#ring
    let room = ring.completionRoom()
    let i = 0
    while (room > 0 && i < this.#backlog.length) {
      ring.writeCompletion(this.#backlog[i] as number, this.#backlog[i + 1] as number)
      i += 2
      room--
    }
    this.#backlog.splice(0, i)
    if (i > 0) ring.publishCompletions()
    // Full: the publisher drains when rung (its doorbell is always watched).
    if (this.#backlog.length > 0) {
      this.#publisherBell.ring()
      setImmediate(() => !this.#closed && this.#flushBacklog())
    }
  }

  /** Stops watching; held messages keep their pools mapped until released. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#subscriberBell.close()
    this.#publisherBell.close()
    this.#ringSegment.close()
    for (const pool of this.#pools.values()) {
      pool.detached = true
      pool.maybeUnmap()
    }
    this.#pools.clear()
  }
}

// Received fds are untracked (fdpass hands them over that way), so a plain close is right.
function closeQuietly(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd)
    } catch {}
  }
}
