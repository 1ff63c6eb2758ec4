import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BuddyAllocator, MIN_BLOCK } from './buddy.js'

describe('BuddyAllocator', () => {
  it('rejects sizes that are not MIN_BLOCK times a power of two', () => {
    for (const size of [0, 63, 100, MIN_BLOCK * 3, -64, 1.5, Number.NaN]) {
      expect(() => new BuddyAllocator(size)).toThrow(RangeError)
    }
  })

  it('hands out the whole pool, then nothing, then the whole pool again', () => {
    const pool = new BuddyAllocator(1 << 16)
    expect(pool.allocate(1 << 16)).toBe(0)
    expect(pool.allocate(1)).toBe(-1)
    expect(pool.free(0)).toBe(true)
    expect(pool.free(0)).toBe(false)
    expect(pool.allocate((1 << 16) + 1)).toBe(-1)
    expect(pool.allocate(1 << 16)).toBe(0)
  })

  it('rounds to blocks and never frees what it did not allocate', () => {
    const pool = new BuddyAllocator(1024)
    const a = pool.allocate(0)
    const b = pool.allocate(65)
    expect(pool.used).toBe(MIN_BLOCK + 128)
    expect(pool.free(a + 1)).toBe(false)
    expect(pool.free(b)).toBe(true)
    expect(pool.free(b)).toBe(false)
    expect(BuddyAllocator.blockSize(65)).toBe(128)
    expect(BuddyAllocator.blockSize(0)).toBe(MIN_BLOCK)
  })

  it('keeps blocks disjoint and in range, and coalesces everything back (property)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('alloc' as const), length: fc.integer({ min: 0, max: 5000 }) }),
      fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const size = 1 << 14
        const pool = new BuddyAllocator(size)
        const live = new Map<number, number>() // offset -> block size
        for (const o of ops) {
          if (o.kind === 'alloc') {
            const offset = pool.allocate(o.length)
            if (offset === -1) {
              // Refused only when no free block of that size exists: check by brute force
              // that the block size does not fit in any aligned free gap.
              const block = BuddyAllocator.blockSize(o.length)
              if (block <= size) {
                for (let start = 0; start < size; start += block) {
                  const overlaps = [...live].some(([at, len]) => at < start + block && start < at + len)
                  expect(overlaps).toBe(true)
                }
              }
              continue
            }
            const block = BuddyAllocator.blockSize(o.length)
            expect(offset % block).toBe(0)
            expect(offset + block).toBeLessThanOrEqual(size)
            for (const [at, len] of live) expect(offset + block <= at || at + len <= offset).toBe(true)
            live.set(offset, block)
          } else if (live.size > 0) {
            const offsets = [...live.keys()]
            const offset = offsets[o.pick % offsets.length] as number
            expect(pool.free(offset)).toBe(true)
            live.delete(offset)
          }
          expect(pool.used).toBe([...live.values()].reduce((a, b) => a + b, 0))
          expect(pool.count).toBe(live.size)
        }
        for (const offset of live.keys()) pool.free(offset)
        expect(pool.used).toBe(0)
        expect(pool.allocate(size)).toBe(0)
      }),
      { numRuns: 300 },
    )
  })
})
