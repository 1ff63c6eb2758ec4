// A binary buddy allocator over the byte range [0, size) of a publisher's pool. Pure
// bookkeeping: it never touches the memory it hands out.
//
// Why buddy: pool blocks come back in any order (several subscribers, each releasing when its
// user is done, some holding messages for long), so a ring allocator would be blocked by its
// oldest held block. Buddy blocks are reusable as soon as they are freed, cost O(log size) to
// allocate and free, and waste at most half of a block to rounding.
//
// Invariant: every byte of [0, size) is in exactly one block, which is either free (in
// `#free[order]`) or allocated (in `#allocated`, offset -> order).
//
// Merging is lazy: a freed block stays at its order, ready for the next request of that size
// (a stream of same-size messages then costs two set operations per message, not a split
// and a merge of ~20 levels each). Free buddies are merged only when a request finds no
// block large enough (coalesce()), so a refusal still means no aligned free block of that
// size exists.

/** Smallest block: a cache line, so two messages never share one. */
export const MIN_BLOCK = 64

export class BuddyAllocator {
  /** Bytes managed: MIN_BLOCK << maxOrder. */
  readonly size: number
  readonly #maxOrder: number
  // Free blocks per order, by offset. Sets: O(1) insert, delete and buddy lookup. Each set
  // has a stack of its offsets for O(1) picking, most recently freed first (cache-warm, and
  // the pool's touched pages stay few); entries deleted from the set stay on the stack until
  // they come up, and are skipped then.
  readonly #free: Set<number>[]
  readonly #stacks: number[][]
  // Allocated blocks: order + 1 at offset / MIN_BLOCK (0: no allocated block starts there).
  readonly #allocated: Uint8Array
  #count = 0
  #used = 0

  /** `size` must be MIN_BLOCK times a power of two. */
  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < MIN_BLOCK || size % MIN_BLOCK !== 0 || !isPowerOfTwo(size / MIN_BLOCK)) {
      throw new RangeError(`pool size must be ${MIN_BLOCK} times a power of two, got ${size}`)
    }
    this.size = size
    this.#maxOrder = Math.log2(size / MIN_BLOCK)
    this.#allocated = new Uint8Array(size / MIN_BLOCK)
    this.#free = Array.from({ length: this.#maxOrder + 1 }, () => new Set<number>())
    this.#stacks = Array.from({ length: this.#maxOrder + 1 }, () => [])
    this.#push(this.#maxOrder, 0)
  }

  /** Bytes in allocated blocks (rounded up to block sizes). */
  get used(): number {
    return this.#used
  }

  /** Blocks allocated now. */
  get count(): number {
    return this.#count
  }

  /** The largest request that can ever succeed (the whole pool). */
  get maxLength(): number {
    return this.size
  }

  /** The bytes a request of `length` occupies. */
  static blockSize(length: number): number {
    let block = MIN_BLOCK
    while (block < length) block *= 2
    return block
  }

  /** Offset of a free block of at least `length` bytes, or -1 if none is free. */
  allocate(length: number): number {
    const order = orderFor(length)
    if (order > this.#maxOrder) return -1
    let from = this.#smallestFree(order)
    if (from < 0) {
      this.#coalesce()
      from = this.#smallestFree(order)
      if (from < 0) return -1
    }
    const offset = this.#pop(from)
    // Split down to the order asked for: the upper halves stay free.
    while (from > order) {
      from--
      this.#push(from, offset + (MIN_BLOCK << from))
    }
    this.#allocated[offset / MIN_BLOCK] = order + 1
    this.#count++
    this.#used += MIN_BLOCK << order
    return offset
  }

  /** True if `offset` is the start of an allocated block. */
  isAllocated(offset: number): boolean {
    const index = offset / MIN_BLOCK
    return Number.isInteger(index) && index >= 0 && index < this.#allocated.length && this.#allocated[index] !== 0
  }

  /** Bytes of the allocated block at `offset` (0 if none starts there). */
  sizeOf(offset: number): number {
    return this.isAllocated(offset) ? MIN_BLOCK << ((this.#allocated[offset / MIN_BLOCK] as number) - 1) : 0
  }

  /** Frees the block at `offset`. False (and nothing changes) if no block starts there. */
  free(offset: number): boolean {
    if (!this.isAllocated(offset)) return false
    const index = offset / MIN_BLOCK
    const order = (this.#allocated[index] as number) - 1
    this.#allocated[index] = 0
    this.#count--
    this.#used -= MIN_BLOCK << order
    this.#push(order, offset)
    return true
  }

  #smallestFree(order: number): number {
    for (let from = order; from <= this.#maxOrder; from++) if ((this.#free[from] as Set<number>).size > 0) return from
    return -1
  }

  // Merges every pair of free buddies, from the smallest order up (a merge can enable one
  // at the next order). O(free blocks).
  #coalesce(): void {
    for (let order = 0; order < this.#maxOrder; order++) {
      const set = this.#free[order] as Set<number>
      if (set.size < 2) continue
      const size = MIN_BLOCK << order
      for (const offset of [...set]) {
        if ((offset & size) !== 0 || !set.has(offset)) continue
        const buddy = offset + size
        if (!set.has(buddy)) continue
        set.delete(offset)
        set.delete(buddy)
        ;(this.#free[order + 1] as Set<number>).add(offset)
      }
      this.#stacks[order] = [...set]
      this.#stacks[order + 1] = [...(this.#free[order + 1] as Set<number>)]
    }
  }

  #push(order: number, offset: number): void {
    ;(this.#free[order] as Set<number>).add(offset)
    const stack = this.#stacks[order] as number[]
    stack.push(offset)
    // Stale entries (merged away) pile up under churn: rebuild from the set when they dominate.
    if (stack.length > 64 && stack.length > 4 * (this.#free[order] as Set<number>).size) {
      this.#stacks[order] = [...(this.#free[order] as Set<number>)]
    }
  }

  // The most recently freed block of `order` (the set is known not to be empty).
  #pop(order: number): number {
    const set = this.#free[order] as Set<number>
    const stack = this.#stacks[order] as number[]
    for (;;) {
      const offset = stack.pop() as number
      // A stale entry (merged into a larger block, or re-pushed) is skipped; a live one is
      // in the set exactly once, and popped off the stack before it could be pushed again.
      if (set.delete(offset)) return offset
    }
  }
}

function orderFor(length: number): number {
  let order = 0
  while (MIN_BLOCK << order < length) order++
  return order
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0
}
