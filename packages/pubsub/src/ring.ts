// The shared-memory rings of a pool link (docs/PROTOCOL.md §9.7): one memfd, created by the
// publishing node, mapped read-write by both ends of the link. This is the only file that
// uses Atomics on memory another process writes.
//
// Layout (little-endian, byte offsets; each index word on its own 64-byte line so the two
// processes never write the same cache line):
//     0  u32 magic 0x31525049 ("IPR1")     written once by the publisher, before the attach
//     4  u32 S: submission entries          (power of two, 16..65536)
//     8  u32 C: completion entries          (power of two, 16..65536)
//    64  u32 subTail      written by the publisher only
//   128  u32 subHead      written by the subscriber only
//   192  i32 subSleeping  the subscriber sets 1; the publisher swaps 1 -> 0 and rings
//   256  u32 compTail     written by the subscriber only
//   320  u32 compHead     written by the publisher only
//   384  i32 pubSleeping  the publisher sets 1; the subscriber swaps 1 -> 0 and rings
//   512  S submission entries of 32 bytes: i32 pool, u32 offset, u32 length, u32 target,
//        u32 seq low, u32 seq high, i64 timestamp (ns)
//   512 + 32 S: C completion entries of 8 bytes: i32 a, u32 b
//        a >= 0: release of the block at offset b of pool a
//        a <  0: b credits for subscription -(a + 1)
//
// Indices are free-running u32 counters; an entry lives at (index mod capacity). format()
// sets all four (to 0) and both flags before the attach; from then on each has one writer.
// A writer fills entries first and publishes them with one sequentially consistent store of
// its tail; a reader loads the tail, reads entries, then stores its head. Every index read
// from the other side is checked: a ring a peer corrupted fails with ERR_PUBSUB_PROTOCOL,
// never with an out-of-range read.
//
// Sleep/wake (no lost wake-up): a side waits for entries from the other side or for room in
// its own outgoing ring. It stores sleeping = 1, then reloads the other side's tail AND the
// other side's head of its outgoing ring; if either moved since it last looked, it stores its
// flag back to 0 and carries on. The other side stores its tail (publish/publishCompletions)
// or its head (drainCompletions/commit, announced by the next publish/publishCompletions,
// which re-store the tail and then check the flag), then loads the flag, and rings the
// doorbell only if it wins the swap 1 -> 0. With both sides sequentially consistent, at
// least one of them sees the other's store: either the sleeper sees the moved index, or the
// writer sees the flag. (Reloading only the tail would lose the wake-up of a publisher that
// waits for submission room, or of a subscriber that waits for completion room.)
// (V8 compiles Atomics.load/store/compareExchange on non-shared buffers to the same
// sequentially consistent instructions as on shared ones on x64; test/ring-hammer.test.ts
// checks two processes stay exact.)
import { PubSubError } from './errors.js'

export const RING_MAGIC = 0x31525049
export const RING_HEADER_BYTES = 512
export const SUBMISSION_BYTES = 32
export const COMPLETION_BYTES = 8
export const MIN_RING_ENTRIES = 16
export const MAX_RING_ENTRIES = 65536

// Int32 indices of the header words.
const MAGIC = 0
const SUB_CAPACITY = 1
const COMP_CAPACITY = 2
const SUB_TAIL = 16
const SUB_HEAD = 32
const SUB_SLEEPING = 48
const COMP_TAIL = 64
const COMP_HEAD = 80
const PUB_SLEEPING = 96
const ENTRIES = RING_HEADER_BYTES / 4

const TWO_32 = 2 ** 32

/** Bytes of a ring memfd with these capacities. */
export function ringBytes(submissions: number, completions: number): number {
  return RING_HEADER_BYTES + submissions * SUBMISSION_BYTES + completions * COMPLETION_BYTES
}

function isCapacity(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_RING_ENTRIES && n <= MAX_RING_ENTRIES && (n & (n - 1)) === 0
}

function corrupt(what: string): PubSubError {
  return new PubSubError('ERR_PUBSUB_PROTOCOL', `pool link ring: ${what}`)
}

/** What a submission entry says. */
export interface Submission {
  pool: number
  offset: number
  length: number
  target: number
  seq: number
  timestamp: bigint
}

class RingView {
  protected readonly words: Int32Array
  protected readonly stamps: BigInt64Array
  readonly submissions: number
  readonly completions: number
  protected readonly completionBase: number

  constructor(buffer: ArrayBuffer, byteOffset: number, byteLength: number, submissions: number, completions: number) {
    this.words = new Int32Array(buffer, byteOffset, byteLength / 4)
    this.stamps = new BigInt64Array(buffer, byteOffset, byteLength / 8)
    this.submissions = submissions
    this.completions = completions
    this.completionBase = ENTRIES + submissions * (SUBMISSION_BYTES / 4)
  }
}

/**
 * The publisher's end: writes submissions, reads completions. It trusts nothing the
 * subscriber wrote: subHead and compTail are checked on every load.
 */
export class RingPublisherEnd extends RingView {
  #subTail = 0
  #subHead = 0 // the last head the subscriber showed us
  #compHead = 0

  /**
   * Initialises a new ring in `buffer` (ringBytes(S, C) bytes at `byteOffset`; the entries
   * need not be zeroed). Every index starts at `start` (0; tests start near 2^32 to cover
   * the wrap-around), and the subscriber's open() takes its own indices from the header.
   */
  static format(buffer: ArrayBuffer, byteOffset: number, submissions: number, completions: number, start = 0): RingPublisherEnd {
    if (!isCapacity(submissions) || !isCapacity(completions)) throw new RangeError('ring capacities must be powers of two in 16..65536')
    if (!Number.isInteger(start) || start < 0 || start >= TWO_32) throw new RangeError('the start index must be a u32')
    const ring = new RingPublisherEnd(buffer, byteOffset, ringBytes(submissions, completions), submissions, completions)
    ring.words[SUB_CAPACITY] = submissions
    ring.words[COMP_CAPACITY] = completions
    // Written, not assumed zero: open() adopts what the header holds, so both ends agree.
    for (const index of [SUB_TAIL, SUB_HEAD, COMP_TAIL, COMP_HEAD]) ring.words[index] = start | 0
    ring.words[SUB_SLEEPING] = 0
    ring.words[PUB_SLEEPING] = 0
    ring.#subTail = start
    ring.#subHead = start
    ring.#compHead = start
    Atomics.store(ring.words, MAGIC, RING_MAGIC)
    return ring
  }

  /** Submission slots free now. Throws ERR_PUBSUB_PROTOCOL if the subscriber corrupted subHead. */
  room(): number {
    const head = Atomics.load(this.words, SUB_HEAD) >>> 0
    if (head !== this.#subHead && !this.#takeHead(head)) throw corrupt(`subHead moved to ${head} (tail ${this.#subTail}, was ${this.#subHead})`)
    return this.submissions - ((this.#subTail - head) >>> 0)
  }

  // Takes the subscriber's new head: false (nothing taken) unless it moved forward and not
  // past what we submitted.
  #takeHead(head: number): boolean {
    if (((head - this.#subHead) >>> 0) > ((this.#subTail - this.#subHead) >>> 0)) return false
    this.#subHead = head
    return true
  }

  /** Entries submitted and not yet taken by the subscriber. */
  get pending(): number {
    return (this.#subTail - this.#subHead) >>> 0
  }

  /** Writes one entry (call room() first). Invisible until publish(). */
  write(pool: number, offset: number, length: number, target: number, seq: number, timestamp: bigint): void {
    const slot = this.#subTail & (this.submissions - 1)
    const base = ENTRIES + slot * (SUBMISSION_BYTES / 4)
    const words = this.words
    words[base] = pool
    words[base + 1] = offset
    words[base + 2] = length
    words[base + 3] = target
    words[base + 4] = seq >>> 0
    words[base + 5] = Math.floor(seq / TWO_32)
    this.stamps[(base + 6) / 2] = timestamp
    this.#subTail = (this.#subTail + 1) >>> 0
  }

  /**
   * Makes the written entries visible. True if the subscriber was asleep and this call took
   * its flag: the caller must ring the subscriber's doorbell. Also announces the completion
   * slots drainCompletions() freed: call it after draining (with nothing written, it re-stores
   * the same tail) when the subscriber may be waiting for completion room.
   */
  publish(): boolean {
    Atomics.store(this.words, SUB_TAIL, this.#subTail | 0)
    return Atomics.load(this.words, SUB_SLEEPING) === 1 && Atomics.compareExchange(this.words, SUB_SLEEPING, 1, 0) === 1
  }

  /**
   * Calls `onEntry(a, b)` for every completion the subscriber pushed, then frees their slots.
   * Throws ERR_PUBSUB_PROTOCOL if the subscriber corrupted compTail (the callback may throw
   * the same for an entry that names something it was never given).
   */
  drainCompletions(onEntry: (a: number, b: number) => void): number {
    const tail = Atomics.load(this.words, COMP_TAIL) >>> 0
    let head = this.#compHead
    const count = (tail - head) >>> 0
    if (count === 0) return 0
    if (count > this.completions) throw corrupt(`compTail ${tail} is ${count} ahead of compHead ${head}`)
    const mask = this.completions - 1
    const words = this.words
    const base = this.completionBase
    for (let i = 0; i < count; i++) {
      const at = base + (head & mask) * 2
      head = (head + 1) >>> 0
      // Consumed before the callback: a throw leaves the link failed, not re-reading it.
      this.#compHead = head
      onEntry(words[at] as number, (words[at + 1] as number) >>> 0)
    }
    Atomics.store(words, COMP_HEAD, head | 0)
    return count
  }

  /**
   * Declares the publisher asleep (waiting for completions or for submission room). False,
   * with the flag cleared, if completions arrived or the subscriber freed slots since the
   * last room(): drain and look at room() instead of sleeping. Never throws: a corrupt
   * subHead is not taken (it wakes nobody) and room() reports it.
   */
  sleep(): boolean {
    Atomics.store(this.words, PUB_SLEEPING, 1)
    // Both loads come after the flag's store (see the header). A moved head is taken here, so
    // one call returns false, not every call until the caller looks at room().
    const head = Atomics.load(this.words, SUB_HEAD) >>> 0
    const freed = head !== this.#subHead && this.#takeHead(head)
    if (!freed && ((Atomics.load(this.words, COMP_TAIL) >>> 0) - this.#compHead) >>> 0 === 0) return true
    Atomics.store(this.words, PUB_SLEEPING, 0)
    return false
  }

  /** No longer waiting for completions. */
  wake(): void {
    Atomics.store(this.words, PUB_SLEEPING, 0)
  }
}

/**
 * The subscriber's end: reads submissions, writes completions. It trusts nothing the
 * publisher wrote: the capacities are read once and checked against the mapping's size,
 * subTail is checked on every load, and the entries' fields are checked by the caller.
 */
export class RingSubscriberEnd extends RingView {
  #subHead = 0
  #compTail = 0
  #compHead = 0 // the last head the publisher showed us

  /** Opens a ring another process formatted in `buffer` (the whole mapping). */
  static open(buffer: ArrayBuffer): RingSubscriberEnd {
    if (buffer.byteLength < RING_HEADER_BYTES) throw corrupt(`the memfd is ${buffer.byteLength} bytes`)
    const header = new Int32Array(buffer, 0, 4)
    const magic = Atomics.load(header, MAGIC)
    const submissions = header[SUB_CAPACITY] as number
    const completions = header[COMP_CAPACITY] as number
    if (magic !== RING_MAGIC) throw corrupt(`bad magic ${magic >>> 0}`)
    if (!isCapacity(submissions) || !isCapacity(completions)) throw corrupt(`capacities ${submissions}/${completions}`)
    const bytes = ringBytes(submissions, completions)
    if (buffer.byteLength !== bytes) throw corrupt(`the memfd is ${buffer.byteLength} bytes, its header says ${bytes}`)
    const ring = new RingSubscriberEnd(buffer, 0, bytes, submissions, completions)
    // A fresh link starts from whatever the publisher's format() wrote (zero for a new ring).
    ring.#subHead = Atomics.load(ring.words, SUB_HEAD) >>> 0
    ring.#compTail = Atomics.load(ring.words, COMP_TAIL) >>> 0
    ring.#compHead = ring.#compTail
    return ring
  }

  /** Submissions waiting. Throws ERR_PUBSUB_PROTOCOL if the publisher corrupted subTail. */
  available(): number {
    const tail = Atomics.load(this.words, SUB_TAIL) >>> 0
    const count = (tail - this.#subHead) >>> 0
    if (count > this.submissions) throw corrupt(`subTail ${tail} is ${count} ahead of subHead ${this.#subHead}`)
    return count
  }

  /** Reads the oldest waiting submission into `into` (call available() first). */
  peek(into: Submission): Submission {
    const base = ENTRIES + (this.#subHead & (this.submissions - 1)) * (SUBMISSION_BYTES / 4)
    const words = this.words
    into.pool = words[base] as number
    into.offset = (words[base + 1] as number) >>> 0
    into.length = (words[base + 2] as number) >>> 0
    into.target = (words[base + 3] as number) >>> 0
    into.seq = ((words[base + 5] as number) >>> 0) * TWO_32 + ((words[base + 4] as number) >>> 0)
    into.timestamp = this.stamps[(base + 6) / 2] as bigint
    return into
  }

  /** Consumes the oldest submission (its slot is the publisher's again after commit()). */
  advance(): void {
    this.#subHead = (this.#subHead + 1) >>> 0
  }

  /**
   * Hands consumed submission slots back to the publisher. It does not ring: follow it with
   * publishCompletions() (even with no completion written) when the publisher may be waiting
   * for submission room.
   */
  commit(): void {
    Atomics.store(this.words, SUB_HEAD, this.#subHead | 0)
  }

  /** Completion slots free now. */
  completionRoom(): number {
    const head = Atomics.load(this.words, COMP_HEAD) >>> 0
    if (head !== this.#compHead && !this.#takeHead(head)) throw corrupt(`compHead moved to ${head} (tail ${this.#compTail})`)
    return this.completions - ((this.#compTail - head) >>> 0)
  }

  // Takes the publisher's new completion head: false (nothing taken) unless it moved forward
  // and not past what we pushed.
  #takeHead(head: number): boolean {
    if (((head - this.#compHead) >>> 0) > ((this.#compTail - this.#compHead) >>> 0)) return false
    this.#compHead = head
    return true
  }

  /** Writes one completion (call completionRoom() first). Invisible until publishCompletions(). */
  writeCompletion(a: number, b: number): void {
    const at = this.completionBase + (this.#compTail & (this.completions - 1)) * 2
    this.words[at] = a
    this.words[at + 1] = b | 0
    this.#compTail = (this.#compTail + 1) >>> 0
  }

  /**
   * Makes written completions (and slots commit() freed) visible. True if the publisher was
   * asleep and this call took its flag: the caller must ring the publisher's doorbell.
   */
  publishCompletions(): boolean {
    Atomics.store(this.words, COMP_TAIL, this.#compTail | 0)
    return Atomics.load(this.words, PUB_SLEEPING) === 1 && Atomics.compareExchange(this.words, PUB_SLEEPING, 1, 0) === 1
  }

  /**
   * Declares the subscriber asleep (waiting for submissions or for completion room). False,
   * with the flag cleared, if submissions arrived or the publisher freed completion slots
   * since the last completionRoom(): drain and write completions instead of sleeping. Never
   * throws: a corrupt compHead is not taken (it wakes nobody) and completionRoom() reports it.
   */
  sleep(): boolean {
    Atomics.store(this.words, SUB_SLEEPING, 1)
    // Both loads come after the flag's store (see the header). A moved head is taken here, so
    // one call returns false, not every call until the caller looks at completionRoom().
    const head = Atomics.load(this.words, COMP_HEAD) >>> 0
    const freed = head !== this.#compHead && this.#takeHead(head)
    if (!freed && (((Atomics.load(this.words, SUB_TAIL) >>> 0) - this.#subHead) >>> 0) === 0) return true
    Atomics.store(this.words, SUB_SLEEPING, 0)
    return false
  }

  /** Awake: the publisher need not ring. */
  wake(): void {
    Atomics.store(this.words, SUB_SLEEPING, 0)
  }
}
