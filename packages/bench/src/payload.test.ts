import { describe, expect, it } from 'vitest'
import { HEADER_SIZE, MIN_MESSAGE_SIZE, SAMPLE_STRIDE, type Stamp, samplePositions, stamp, verify } from './payload.js'

const SIZES = [MIN_MESSAGE_SIZE, 64, 4096, 4097, 65536 + 7, 1 << 20]

function expectStamp(result: Stamp | string): Stamp {
  if (typeof result === 'string') throw new Error(`verify failed: ${result}`)
  return result
}

describe('constants', () => {
  it('a message needs a header and at least one byte', () => {
    expect(HEADER_SIZE).toBe(24)
    expect(MIN_MESSAGE_SIZE).toBe(25)
    expect(SAMPLE_STRIDE).toBe(4096)
  })
})

describe('samplePositions', () => {
  it('samples one byte per page after the header, and the last byte', () => {
    expect(samplePositions(25)).toEqual([24])
    expect(samplePositions(64)).toEqual([24, 63])
    expect(samplePositions(4097)).toEqual([24, 4096])
    expect(samplePositions(24 + 4096 + 1)).toEqual([24, 4120])
    expect(samplePositions(24 + 4096 + 2)).toEqual([24, 4120, 4121])
  })

  it('is strictly ascending, inside the message, starts after the header and ends on the last byte', () => {
    for (const size of [...SIZES, 100, 8192, 8193, 12_345]) {
      const positions = samplePositions(size)
      expect(positions[0]).toBe(HEADER_SIZE)
      expect(positions[positions.length - 1]).toBe(size - 1)
      for (let i = 1; i < positions.length; i++) {
        const here = positions[i] as number
        const before = positions[i - 1] as number
        expect(here).toBeGreaterThan(before)
        expect(here - before).toBeLessThanOrEqual(SAMPLE_STRIDE)
      }
    }
  })
})

describe('stamp / verify', () => {
  it.each(SIZES)('round-trips a %i-byte message', (size) => {
    const bytes = new Uint8Array(size)
    expect(stamp(bytes, 7)).toBe(bytes)
    const result = expectStamp(verify(bytes))
    expect(result.seq).toBe(7)
    expect(typeof result.sentAt).toBe('bigint')
  })

  it('round-trips sequence numbers across the whole u32 range', () => {
    for (const seq of [0, 1, 255, 256, 65_537, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff]) {
      const bytes = stamp(new Uint8Array(200), seq)
      expect(expectStamp(verify(bytes)).seq).toBe(seq)
    }
  })

  it('writes every byte after the header', () => {
    const size = 3 * 4096 + 100
    const bytes = new Uint8Array(size).fill(0xaa)
    stamp(bytes, 0x1234)
    const sampled = new Set(samplePositions(size))
    for (let p = HEADER_SIZE; p < size; p++) {
      if (!sampled.has(p)) expect(bytes[p]).toBe(0x34)
    }
  })

  it('stamps the header fields little-endian: magic, seq, size', () => {
    const bytes = stamp(new Uint8Array(100), 0x01020304)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
    expect(String.fromCharCode(...bytes.subarray(0, 4))).toBe('IPBS')
    expect(view.getUint32(4, true)).toBe(0x01020304)
    expect(view.getUint32(20, true)).toBe(100)
  })

  it('sentAt is process.hrtime.bigint() at the time of the stamp', () => {
    const before = process.hrtime.bigint()
    const bytes = stamp(new Uint8Array(4096), 1)
    const after = process.hrtime.bigint()
    const { sentAt } = expectStamp(verify(bytes))
    expect(typeof sentAt).toBe('bigint')
    expect(sentAt >= before).toBe(true)
    expect(sentAt <= after).toBe(true)
  })

  it('works on a view with a non-zero (and unaligned) byteOffset, leaving the rest of the buffer alone', () => {
    const backing = new Uint8Array(5000).fill(0xee)
    const view = new Uint8Array(backing.buffer, 3, 4097)
    stamp(view, 42)
    expect(expectStamp(verify(view)).seq).toBe(42)
    expect(backing.subarray(0, 3).every((b) => b === 0xee)).toBe(true)
    expect(backing.subarray(3 + 4097).every((b) => b === 0xee)).toBe(true)
    // The same bytes copied to an aligned buffer verify as well.
    expect(expectStamp(verify(view.slice())).seq).toBe(42)
  })

  it('works on a Buffer', () => {
    const buffer = Buffer.alloc(1000)
    stamp(buffer, 9)
    expect(expectStamp(verify(buffer)).seq).toBe(9)
  })

  it('rejects sizes below MIN_MESSAGE_SIZE with a RangeError', () => {
    for (const size of [0, 1, HEADER_SIZE - 1, HEADER_SIZE]) {
      expect(() => stamp(new Uint8Array(size), 1)).toThrow(RangeError)
    }
    expect(() => stamp(new Uint8Array(MIN_MESSAGE_SIZE), 1)).not.toThrow()
  })

  describe('detects a message that is not what it claims to be', () => {
    it.each(SIZES)('a flipped byte at any sampled position of a %i-byte message', (size) => {
      const bytes = stamp(new Uint8Array(size), 3)
      for (const p of samplePositions(size)) {
        const copy = bytes.slice()
        copy[p] = (copy[p] as number) ^ 0xff
        expect(verify(copy)).toMatch(/checksum mismatch in message 3/)
        copy[p] = (copy[p] as number) ^ 0x01 ^ 0xff // a single-bit flip as well
        expect(verify(copy)).toMatch(/checksum mismatch/)
      }
    })

    it('a wrong magic', () => {
      const bytes = stamp(new Uint8Array(64), 1)
      bytes[0] = (bytes[0] as number) ^ 0x20
      expect(verify(bytes)).toBe('bad magic')
    })

    it('an all-zero buffer', () => {
      expect(verify(new Uint8Array(64))).toBe('bad magic')
    })

    it.each(SIZES.filter((s) => s > MIN_MESSAGE_SIZE))('a truncated %i-byte message', (size) => {
      const bytes = stamp(new Uint8Array(size), 1)
      const result = verify(bytes.subarray(0, size - 1))
      expect(typeof result).toBe('string')
      expect(result).toBe(`size field ${size} but ${size - 1} bytes arrived`)
    })

    it('a message with extra bytes appended', () => {
      const bytes = new Uint8Array(101)
      stamp(bytes.subarray(0, 100), 1)
      expect(verify(bytes)).toMatch(/size field 100 but 101 bytes arrived/)
    })

    it("another seq's content (header seq rewritten from 1 to 2)", () => {
      for (const size of SIZES) {
        const bytes = stamp(new Uint8Array(size), 1)
        new DataView(bytes.buffer, bytes.byteOffset, bytes.length).setUint32(4, 2, true)
        expect(verify(bytes)).toBe('checksum mismatch in message 2')
      }
    })

    it('a stale buffer: stamped as seq 2, then the header of seq 1 copied over it', () => {
      const old = stamp(new Uint8Array(8192), 1)
      const fresh = stamp(new Uint8Array(8192), 2)
      fresh.set(old.subarray(0, HEADER_SIZE), 0)
      expect(verify(fresh)).toMatch(/checksum mismatch in message 1/)
    })

    it('a message shorter than the header', () => {
      for (const size of [0, 1, HEADER_SIZE - 1, HEADER_SIZE]) {
        expect(verify(new Uint8Array(size))).toBe(`message of ${size} bytes is shorter than a header`)
      }
      const stamped = stamp(new Uint8Array(64), 1)
      expect(verify(stamped.subarray(0, HEADER_SIZE))).toMatch(/shorter than a header/)
    })
  })
})
