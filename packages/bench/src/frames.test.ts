import { describe, expect, it } from 'vitest'
import { mulberry32 } from '../test/prng.js'
import { FRAME_HEADER, FrameReader, frameHeader, MAX_FRAME } from './frames.js'


function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length)
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256)
  return bytes
}

/** Header + body of each frame, back to back, as a stream socket would carry them. */
function encode(frames: readonly Uint8Array[]): Buffer {
  return Buffer.concat(frames.flatMap((f) => [frameHeader(f.length), f]))
}

/** Cuts `stream` at the given offsets (ascending, inside the stream) into chunks. */
function cut(stream: Uint8Array, offsets: readonly number[]): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let from = 0
  for (const to of [...offsets, stream.length]) {
    chunks.push(stream.subarray(from, to))
    from = to
  }
  return chunks
}

function feed(reader: FrameReader, chunks: readonly Uint8Array[]): Uint8Array[] {
  return chunks.flatMap((chunk) => reader.push(chunk))
}

const asArrays = (frames: readonly Uint8Array[]): number[][] => frames.map((f) => [...f])

describe('frameHeader', () => {
  it('is the length as a u32 little-endian', () => {
    expect(FRAME_HEADER).toBe(4)
    expect([...frameHeader(0)]).toEqual([0, 0, 0, 0])
    expect([...frameHeader(1)]).toEqual([1, 0, 0, 0])
    expect([...frameHeader(0x01020304)]).toEqual([4, 3, 2, 1])
    expect([...frameHeader(MAX_FRAME)]).toEqual([0xff, 0xff, 0xff, 0xff])
  })

  it('rejects lengths that are negative, fractional, too large or not numbers', () => {
    for (const length of [-1, 1.5, MAX_FRAME + 1, 2 ** 40, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => frameHeader(length)).toThrow(RangeError)
    }
  })
})

describe('FrameReader', () => {
  const body = (n: number, seed = n): Uint8Array => randomBytes(mulberry32(seed), n)

  it('starts idle', () => {
    expect(new FrameReader().idle).toBe(true)
  })

  it('hands out a frame that arrives whole as a view of the chunk', () => {
    const frame = body(100)
    const chunk = encode([frame])
    const reader = new FrameReader()
    const frames = reader.push(chunk)
    expect(frames).toHaveLength(1)
    const [only] = frames
    expect(only).toBeDefined()
    expect([...(only as Uint8Array)]).toEqual([...frame])
    expect((only as Uint8Array).buffer).toBe(chunk.buffer)
    expect((only as Uint8Array).byteOffset).toBe(chunk.byteOffset + FRAME_HEADER)
    expect(reader.idle).toBe(true)
  })

  it('returns many frames from one chunk, in order, all views of it', () => {
    const sent = [body(1), body(0), body(10), body(300), body(0), body(4), body(5)]
    const chunk = encode(sent)
    const reader = new FrameReader()
    const frames = reader.push(chunk)
    expect(asArrays(frames)).toEqual(asArrays(sent))
    for (const f of frames) expect(f.buffer).toBe(chunk.buffer)
    expect(reader.idle).toBe(true)
  })

  it('delivers zero-length frames, alone and in a row', () => {
    const reader = new FrameReader()
    expect(asArrays(reader.push(frameHeader(0)))).toEqual([[]])
    expect(asArrays(reader.push(Buffer.concat([frameHeader(0), frameHeader(0), frameHeader(0)])))).toEqual([[], [], []])
    expect(reader.idle).toBe(true)
  })

  it('delivers a zero-length frame whose header is split across chunks', () => {
    const reader = new FrameReader()
    const header = frameHeader(0)
    expect(reader.push(header.subarray(0, 2))).toEqual([])
    expect(reader.idle).toBe(false)
    expect(asArrays(reader.push(header.subarray(2)))).toEqual([[]])
    expect(reader.idle).toBe(true)
  })

  it('returns nothing for an empty chunk', () => {
    const reader = new FrameReader()
    expect(reader.push(new Uint8Array(0))).toEqual([])
    expect(reader.idle).toBe(true)
    reader.push(frameHeader(5).subarray(0, 1))
    expect(reader.push(new Uint8Array(0))).toEqual([])
    expect(reader.idle).toBe(false)
  })

  it('reassembles frames split at every possible byte boundary, header bytes included', () => {
    const sent = [body(7), body(0), body(1), body(9)]
    const stream = encode(sent)
    for (let at = 0; at <= stream.length; at++) {
      const reader = new FrameReader()
      const frames = feed(reader, cut(stream, [at]))
      expect(asArrays(frames), `split at ${at}`).toEqual(asArrays(sent))
      expect(reader.idle).toBe(true)
    }
  })

  it('reassembles frames split at every pair of boundaries', () => {
    const sent = [body(6), body(0), body(3)]
    const stream = encode(sent)
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b++) {
        const frames = feed(new FrameReader(), cut(stream, [a, b]))
        expect(asArrays(frames), `split at ${a} and ${b}`).toEqual(asArrays(sent))
      }
    }
  })

  it('reassembles a stream fed one byte at a time', () => {
    const sent = [body(3), body(0), body(17), body(1)]
    const stream = encode(sent)
    const reader = new FrameReader()
    const frames: Uint8Array[] = []
    for (let i = 0; i < stream.length; i++) {
      frames.push(...reader.push(stream.subarray(i, i + 1)))
    }
    expect(asArrays(frames)).toEqual(asArrays(sent))
    expect(reader.idle).toBe(true)
  })

  it('is idle exactly between frames', () => {
    const reader = new FrameReader()
    const stream = encode([body(10)])
    reader.push(stream.subarray(0, 3)) // inside the header
    expect(reader.idle).toBe(false)
    reader.push(stream.subarray(3, 8)) // inside the body
    expect(reader.idle).toBe(false)
    expect(reader.push(stream.subarray(8))).toHaveLength(1)
    expect(reader.idle).toBe(true)
  })

  it('an assembled frame does not alias the chunks it came from', () => {
    const sent = body(50)
    const stream = encode([sent])
    const reader = new FrameReader()
    const first = Buffer.from(stream.subarray(0, 20))
    const second = Buffer.from(stream.subarray(20))
    reader.push(first)
    const [frame] = reader.push(second)
    first.fill(0)
    second.fill(0)
    expect([...(frame as Uint8Array)]).toEqual([...sent])
  })

  it('decodes multi-byte lengths the same whether the header arrives whole or split', () => {
    const sent = body(0x010203, 5) // every byte of the length but the top one is non-zero
    const stream = encode([sent])
    expect([...stream.subarray(0, 4)]).toEqual([0x03, 0x02, 0x01, 0x00])
    const whole = new FrameReader().push(stream)
    expect(whole).toHaveLength(1)
    expect(whole[0]?.length).toBe(0x010203)
    for (const at of [1, 2, 3, 4, 5, 1000]) {
      const frames = feed(new FrameReader(), cut(stream, [at]))
      expect(frames).toHaveLength(1)
      expect(Buffer.compare(frames[0] as Uint8Array, sent), `split at ${at}`).toBe(0)
    }
  })

  it('reassembles identically under random chunkings of a random stream (seeded)', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const random = mulberry32(seed)
      const count = 1 + Math.floor(random() * 25)
      const sent: Uint8Array[] = []
      for (let i = 0; i < count; i++) {
        const kind = random()
        // zero-length, tiny (shorter than a header), small and a few larger frames
        const length = kind < 0.15 ? 0 : kind < 0.35 ? 1 + Math.floor(random() * 4) : kind < 0.9 ? Math.floor(random() * 200) : Math.floor(random() * 5000)
        sent.push(randomBytes(random, length))
      }
      const stream = encode(sent)
      for (let chunking = 0; chunking < 8; chunking++) {
        const offsets: number[] = []
        let at = 0
        const maxChunk = [1, 3, 5, 17, 64, 500, 4096, stream.length][chunking] as number
        for (;;) {
          at += 1 + Math.floor(random() * maxChunk)
          if (at >= stream.length) break
          offsets.push(at)
        }
        const reader = new FrameReader()
        const frames = feed(reader, cut(stream, offsets))
        expect(asArrays(frames), `seed ${seed}, chunking ${chunking}`).toEqual(asArrays(sent))
        expect(reader.idle).toBe(true)
      }
    }
  })
})
