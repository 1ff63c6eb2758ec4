// The data-path codec: exact round trips at the limits, a coded ERR_PUBSUB_PROTOCOL for every
// malformed frame, and properties over arbitrary bytes (a hostile peer chooses every byte).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PubSubError } from './errors.js'
import {
  CREDIT_HEADER_BYTES,
  DATA_PROTOCOL_VERSION,
  decodeFrame,
  encodeAttachRing,
  encodeCredit,
  encodeHello,
  encodeMessage,
  encodeAttachPool,
  encodeBindLane,
  encodeDetachPool,
  type Frame,
  HELLO_HEADER_BYTES,
  KIND_ATTACH_POOL,
  KIND_ATTACH_RING,
  KIND_BIND_LANE,
  KIND_CREDIT,
  KIND_DETACH_POOL,
  KIND_HELLO,
  KIND_MESSAGE,
  MAX_CREDITS,
  MAX_ID_BYTES,
  MAX_SAFE,
  MESSAGE_HEADER_BYTES,
  type MessageHeader,
} from './frames.js'

const utf8 = new TextEncoder()
const U64_MAX = 2n ** 64n - 1n

const header: MessageHeader = {
  transport: 1,
  fdCount: 1,
  length: 4096,
  seq: 7,
  timestamp: 123_456_789n,
  publisher: 'node-a/1',
  target: 'node-b/2',
}

/** The error decodeFrame threw, or a failure if it returned. */
function decodeError(bytes: Uint8Array): unknown {
  try {
    decodeFrame(bytes)
  } catch (error) {
    return error
  }
  throw new Error(`decodeFrame accepted ${Buffer.from(bytes).toString('hex')}`)
}

function expectProtocolError(bytes: Uint8Array): void {
  const error = decodeError(bytes)
  expect(PubSubError.isInstance(error), String(error)).toBe(true)
  expect(error).toBeInstanceOf(PubSubError)
  expect((error as PubSubError).code).toBe('ERR_PUBSUB_PROTOCOL')
}

function expectInvalidArgument(fn: () => unknown): void {
  expect(fn).toThrow(expect.objectContaining({ name: 'PubSubError', code: 'ERR_PUBSUB_INVALID_ARGUMENT' }))
}

/** A copy of `frame` with `patch` applied to its bytes (DataView, little-endian as on the wire). */
function patched(frame: Uint8Array, patch: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const copy = frame.slice()
  patch(new DataView(copy.buffer), copy)
  return copy
}

/** Builds a message frame by hand, so lengths and ids can disagree with the header. */
function rawMessage(fields: {
  publisherLength?: number
  targetLength?: number
  reserved?: number
  length?: bigint
  seq?: bigint
  publisher?: Uint8Array
  target?: Uint8Array
}): Uint8Array {
  const publisher = fields.publisher ?? utf8.encode('p/1')
  const target = fields.target ?? utf8.encode('s/1')
  const frame = new Uint8Array(MESSAGE_HEADER_BYTES + publisher.length + target.length)
  const view = new DataView(frame.buffer)
  frame[0] = KIND_MESSAGE
  frame[1] = 1
  frame[2] = 1
  frame[3] = fields.publisherLength ?? publisher.length
  view.setUint16(4, fields.targetLength ?? target.length, true)
  view.setUint16(6, fields.reserved ?? 0, true)
  view.setBigUint64(8, fields.length ?? 16n, true)
  view.setBigUint64(16, fields.seq ?? 1n, true)
  view.setBigUint64(24, 99n, true)
  frame.set(publisher, MESSAGE_HEADER_BYTES)
  frame.set(target, MESSAGE_HEADER_BYTES + publisher.length)
  return frame
}

function rawCredit(fields: { reserved?: number; idLength?: number; credits?: number; id?: Uint8Array }): Uint8Array {
  const id = fields.id ?? utf8.encode('s/1')
  const frame = new Uint8Array(CREDIT_HEADER_BYTES + id.length)
  const view = new DataView(frame.buffer)
  frame[0] = KIND_CREDIT
  frame[1] = fields.reserved ?? 0
  view.setUint16(2, fields.idLength ?? id.length, true)
  view.setUint32(4, fields.credits ?? 1, true)
  frame.set(id, CREDIT_HEADER_BYTES)
  return frame
}

function rawHello(fields: { idLength?: number; id?: Uint8Array }): Uint8Array {
  const id = fields.id ?? utf8.encode('node')
  const frame = new Uint8Array(HELLO_HEADER_BYTES + id.length)
  frame[0] = KIND_HELLO
  frame[1] = DATA_PROTOCOL_VERSION
  new DataView(frame.buffer).setUint16(2, fields.idLength ?? id.length, true)
  frame.set(id, HELLO_HEADER_BYTES)
  return frame
}

/** Encodes a decoded frame again with the public encoders. */
function reencode(frame: Frame): Uint8Array {
  switch (frame.kind) {
    case KIND_MESSAGE:
      return encodeMessage({
        transport: frame.transport,
        fdCount: frame.fdCount,
        length: frame.length,
        seq: frame.seq,
        timestamp: frame.timestamp,
        publisher: frame.publisher,
        target: frame.target,
      })
    case KIND_CREDIT:
      return encodeCredit(frame.target, frame.credits)
    case KIND_HELLO:
      return encodeHello(frame.node, frame.protocol)
    case KIND_ATTACH_RING:
      return encodeAttachRing(frame.transport)
    case KIND_ATTACH_POOL:
      return encodeAttachPool(frame.pool, frame.publisher)
    case KIND_DETACH_POOL:
      return encodeDetachPool(frame.pool)
    case KIND_BIND_LANE:
      return encodeBindLane(frame.lane, frame.target)
  }
}

// Not-UTF-8 byte sequences a fatal decoder must refuse.
const badUtf8: [string, number[]][] = [
  ['0xff', [0xff]],
  ['lone continuation byte', [0x61, 0x80]],
  ['truncated 2-byte sequence', [0xc3]],
  ['overlong NUL', [0xc0, 0x80]],
  ['UTF-16 surrogate', [0xed, 0xa0, 0x80]],
  ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
]

/** An id of exactly MAX_ID_BYTES bytes made of `char` (padded with ASCII). */
function max(char: string): string {
  const size = utf8.encode(char).length
  return char.repeat(Math.floor(MAX_ID_BYTES / size)) + 'x'.repeat(MAX_ID_BYTES % size)
}

describe('round trips', () => {
  it('message: every field comes back', () => {
    const frame = encodeMessage(header)
    expect(frame.length).toBe(MESSAGE_HEADER_BYTES + header.publisher.length + header.target.length)
    expect(decodeFrame(frame)).toEqual({ kind: KIND_MESSAGE, ...header })
  })

  it('message: limits (255-byte ids, seq and length 2^53-1, timestamp 2^64-1, byte fields 255)', () => {
    // 255 bytes each: 85 three-byte characters, and 255 ASCII.
    const limits: MessageHeader = {
      transport: 255,
      fdCount: 255,
      length: MAX_SAFE,
      seq: MAX_SAFE,
      timestamp: U64_MAX,
      publisher: max('€'),
      target: max('t'),
    }
    expect(utf8.encode(limits.publisher).length).toBe(MAX_ID_BYTES)
    const frame = encodeMessage(limits)
    expect(frame.length).toBe(MESSAGE_HEADER_BYTES + 2 * MAX_ID_BYTES)
    expect(decodeFrame(frame)).toEqual({ kind: KIND_MESSAGE, ...limits })
  })

  it('message: smallest values (empty payload, seq 1, timestamp 0, no fds, 1-byte ids)', () => {
    const small: MessageHeader = { transport: 0, fdCount: 0, length: 0, seq: 1, timestamp: 0n, publisher: 'p', target: 's' }
    expect(decodeFrame(encodeMessage(small))).toEqual({ kind: KIND_MESSAGE, ...small })
  })

  it('message: UTF-8 ids (multi-byte, astral, combining)', () => {
    const ids: MessageHeader = { ...header, publisher: 'nœud-🐱/1', target: 'a\u0300b/ж' }
    const frame = encodeMessage(ids)
    expect(frame.length).toBe(MESSAGE_HEADER_BYTES + utf8.encode(ids.publisher).length + utf8.encode(ids.target).length)
    expect(decodeFrame(frame)).toEqual({ kind: KIND_MESSAGE, ...ids })
  })

  it('message: timestamp is a bigint, exact above 2^53', () => {
    const timestamp = 2n ** 63n + 12345n
    const decoded = decodeFrame(encodeMessage({ ...header, timestamp }))
    expect(decoded.kind === KIND_MESSAGE && decoded.timestamp).toBe(timestamp)
  })

  it('credit: 1 and the maximum grant, 255-byte UTF-8 id', () => {
    for (const credits of [1, 2, MAX_CREDITS]) {
      expect(decodeFrame(encodeCredit('sub/1', credits))).toEqual({ kind: KIND_CREDIT, target: 'sub/1', credits })
    }
    const target = max('é')
    const frame = encodeCredit(target, 9)
    expect(frame.length).toBe(CREDIT_HEADER_BYTES + MAX_ID_BYTES)
    expect(decodeFrame(frame)).toEqual({ kind: KIND_CREDIT, target, credits: 9 })
  })

  it('hello: default protocol, any protocol byte, 255-byte UTF-8 id', () => {
    expect(decodeFrame(encodeHello('node-1'))).toEqual({ kind: KIND_HELLO, protocol: DATA_PROTOCOL_VERSION, node: 'node-1' })
    // The codec carries any version byte; refusing a foreign one is the link's job.
    for (const protocol of [0, 2, 99, 255]) {
      expect(decodeFrame(encodeHello('n', protocol))).toEqual({ kind: KIND_HELLO, protocol, node: 'n' })
    }
    const node = max('x')
    expect(decodeFrame(encodeHello(node))).toEqual({ kind: KIND_HELLO, protocol: DATA_PROTOCOL_VERSION, node })
  })

  it('decodes a frame that is a view at an odd offset of a larger buffer', () => {
    // fdpass may hand out views into a shared receive buffer.
    for (const frame of [encodeMessage(header), encodeCredit('s/1', 5), encodeHello('n')]) {
      const backing = new Uint8Array(frame.length + 11).fill(0xee)
      backing.set(frame, 3)
      const view = backing.subarray(3, 3 + frame.length)
      expect(decodeFrame(view)).toEqual(decodeFrame(frame))
    }
  })

  it('keeps a leading U+FEFF in ids (it is data, not a byte-order mark)', () => {
    // The decoder must not strip a BOM: the id would change under the frame's length check.
    expect(decodeFrame(encodeHello('\uFEFFnode'))).toEqual({ kind: KIND_HELLO, protocol: DATA_PROTOCOL_VERSION, node: '\uFEFFnode' })
    const message = decodeFrame(encodeMessage({ ...header, publisher: '\uFEFFp/1' }))
    expect(message.kind === KIND_MESSAGE && message.publisher).toBe('\uFEFFp/1')
  })
})

describe('encoders refuse what the wire cannot carry', () => {
  it('ids of 0 or more than 255 bytes', () => {
    expectInvalidArgument(() => encodeHello(''))
    expectInvalidArgument(() => encodeHello('x'.repeat(MAX_ID_BYTES + 1)))
    // 128 two-byte characters: 128 UTF-16 units, but 256 bytes.
    expectInvalidArgument(() => encodeHello('é'.repeat(128)))
    expectInvalidArgument(() => encodeCredit('', 1))
    expectInvalidArgument(() => encodeMessage({ ...header, publisher: '' }))
    expectInvalidArgument(() => encodeMessage({ ...header, target: 't'.repeat(MAX_ID_BYTES + 1) }))
  })

  it('credit grants outside 1..2^31-1', () => {
    for (const credits of [0, -1, 1.5, MAX_CREDITS + 1, Number.NaN]) expectInvalidArgument(() => encodeCredit('s/1', credits))
  })
})

describe('pool frames', () => {
  it('round-trip', () => {
    expect(decodeFrame(encodeAttachRing(2))).toEqual({ kind: KIND_ATTACH_RING, transport: 2 })
    expect(decodeFrame(encodeAttachPool(7, 'node/1'))).toEqual({ kind: KIND_ATTACH_POOL, pool: 7, publisher: 'node/1' })
    expect(decodeFrame(encodeDetachPool(0x7fffffff))).toEqual({ kind: KIND_DETACH_POOL, pool: 0x7fffffff })
    expect(decodeFrame(encodeBindLane(3, 'node/a'))).toEqual({ kind: KIND_BIND_LANE, lane: 3, target: 'node/a' })
  })

  it('refuse wrong lengths, reserved bytes and out-of-range numbers', () => {
    for (const frame of [encodeAttachRing(2), encodeDetachPool(1), encodeAttachPool(1, 'n/1'), encodeBindLane(1, 'n/1')]) {
      expectProtocolError(frame.subarray(0, frame.length - 1))
      const longer = new Uint8Array(frame.length + 1)
      longer.set(frame)
      expectProtocolError(longer)
      expectProtocolError(patched(frame, (_, bytes) => (bytes[7] = 0x80)))
    }
    expectProtocolError(patched(encodeAttachRing(2), (_, bytes) => (bytes[5] = 1)))
    expectProtocolError(patched(encodeDetachPool(1), (_, bytes) => (bytes[1] = 1)))
    expectProtocolError(patched(encodeAttachPool(1, 'n/1'), (_, bytes) => (bytes[1] = 1)))
    expectProtocolError(patched(encodeBindLane(1, 'n/1'), (_, bytes) => (bytes[2] = 9)))
    expect(() => encodeDetachPool(-1)).toThrow(expect.objectContaining({ code: 'ERR_PUBSUB_INVALID_ARGUMENT' }))
    expect(() => encodeBindLane(1, '')).toThrow(expect.objectContaining({ code: 'ERR_PUBSUB_INVALID_ARGUMENT' }))
  })
})

describe('malformed frames throw ERR_PUBSUB_PROTOCOL', () => {
  const message = encodeMessage(header)
  const credit = encodeCredit('sub/1', 3)
  const hello = encodeHello('node')

  it('empty frame', () => expectProtocolError(new Uint8Array(0)))

  it('unknown kinds', () => {
    for (const kind of [0x00, 0x08, 0x7f, 0x80, 0xff]) {
      expectProtocolError(new Uint8Array([kind]))
      expectProtocolError(patched(message, (_, bytes) => (bytes[0] = kind)))
    }
  })

  describe('message', () => {
    it('truncated: shorter than the fixed header', () => {
      for (const length of [1, 2, 8, MESSAGE_HEADER_BYTES - 1]) expectProtocolError(message.subarray(0, length))
    })

    it('truncated: ids cut short, or extra bytes after them', () => {
      expectProtocolError(message.subarray(0, message.length - 1))
      expectProtocolError(message.subarray(0, MESSAGE_HEADER_BYTES))
      const longer = new Uint8Array(message.length + 1)
      longer.set(message)
      expectProtocolError(longer)
    })

    it('id lengths that disagree with the frame', () => {
      expectProtocolError(patched(message, (_, bytes) => (bytes[3] = (bytes[3] as number) + 1)))
      expectProtocolError(patched(message, (view) => view.setUint16(4, view.getUint16(4, true) - 1, true)))
      expectProtocolError(patched(message, (view) => view.setUint16(4, 0xffff, true)))
    })

    it('zero-length ids', () => {
      expectProtocolError(rawMessage({ publisher: new Uint8Array(0) }))
      expectProtocolError(rawMessage({ target: new Uint8Array(0) }))
    })

    it('target id over 255 bytes (the length field allows 65535)', () => {
      expectProtocolError(rawMessage({ target: new Uint8Array(MAX_ID_BYTES + 1).fill(0x74) }))
    })

    it.each(badUtf8)('non-UTF-8 ids: %s', (_, bytes) => {
      expectProtocolError(rawMessage({ publisher: Uint8Array.from(bytes) }))
      expectProtocolError(rawMessage({ target: Uint8Array.from(bytes) }))
    })

    it('reserved bytes not zero', () => {
      expectProtocolError(rawMessage({ reserved: 0x0001 }))
      expectProtocolError(rawMessage({ reserved: 0x0100 }))
      expectProtocolError(patched(message, (_, bytes) => (bytes[7] = 0x80)))
    })

    it('seq 0 and seq above 2^53-1', () => {
      expectProtocolError(rawMessage({ seq: 0n }))
      expectProtocolError(rawMessage({ seq: 2n ** 53n }))
      expectProtocolError(rawMessage({ seq: U64_MAX }))
      expect(decodeFrame(rawMessage({ seq: BigInt(MAX_SAFE) }))).toMatchObject({ seq: MAX_SAFE })
    })

    it('payload length above 2^53-1', () => {
      expectProtocolError(rawMessage({ length: 2n ** 53n }))
      expectProtocolError(rawMessage({ length: U64_MAX }))
    })
  })

  describe('credit', () => {
    it('truncated and extra bytes', () => {
      for (const length of [1, CREDIT_HEADER_BYTES - 1, CREDIT_HEADER_BYTES, credit.length - 1]) {
        expectProtocolError(credit.subarray(0, length))
      }
      const longer = new Uint8Array(credit.length + 1)
      longer.set(credit)
      expectProtocolError(longer)
    })

    it('id length that disagrees with the frame', () => {
      expectProtocolError(rawCredit({ idLength: 2 }))
      expectProtocolError(rawCredit({ idLength: 4 }))
    })

    it('zero-length id, id over 255 bytes, non-UTF-8 id', () => {
      expectProtocolError(rawCredit({ id: new Uint8Array(0) }))
      expectProtocolError(rawCredit({ id: new Uint8Array(MAX_ID_BYTES + 1).fill(0x73) }))
      for (const [, bytes] of badUtf8) expectProtocolError(rawCredit({ id: Uint8Array.from(bytes) }))
    })

    it('reserved byte not zero', () => expectProtocolError(rawCredit({ reserved: 1 })))

    it('grants of 0 and above 2^31-1', () => {
      expectProtocolError(rawCredit({ credits: 0 }))
      expectProtocolError(rawCredit({ credits: MAX_CREDITS + 1 }))
      expectProtocolError(rawCredit({ credits: 0xffffffff }))
    })
  })

  describe('hello', () => {
    it('truncated and extra bytes', () => {
      for (const length of [1, HELLO_HEADER_BYTES - 1, HELLO_HEADER_BYTES, hello.length - 1]) expectProtocolError(hello.subarray(0, length))
      const longer = new Uint8Array(hello.length + 1)
      longer.set(hello)
      expectProtocolError(longer)
    })

    it('id length that disagrees with the frame', () => {
      expectProtocolError(rawHello({ idLength: 3 }))
      expectProtocolError(rawHello({ idLength: 0xffff }))
    })

    it('zero-length id, id over 255 bytes, non-UTF-8 id', () => {
      expectProtocolError(rawHello({ id: new Uint8Array(0) }))
      expectProtocolError(rawHello({ id: new Uint8Array(MAX_ID_BYTES + 1).fill(0x6e) }))
      for (const [, bytes] of badUtf8) expectProtocolError(rawHello({ id: Uint8Array.from(bytes) }))
    })
  })
})

describe('properties', () => {
  /** Either a frame or ERR_PUBSUB_PROTOCOL, nothing else; a frame re-encodes to the same bytes. */
  function checkTotal(bytes: Uint8Array): void {
    let frame: Frame
    try {
      frame = decodeFrame(bytes)
    } catch (error) {
      if (!PubSubError.isInstance(error) || error.code !== 'ERR_PUBSUB_PROTOCOL') throw error
      return
    }
    expect(reencode(frame)).toEqual(Uint8Array.from(bytes))
  }

  // Random bytes mostly die at the kind byte; these reach deep into each decoder: a known kind,
  // header fields that are random or consistent, ids of random bytes.
  const idBytes = fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 8 }) },
    {
      weight: 3,
      arbitrary: fc
        .string({ unit: 'binary', minLength: 1, maxLength: 8 })
        .filter((s) => !s.startsWith('\uFEFF'))
        .map((s) => utf8.encode(s)),
    },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 250, maxLength: 260 }) },
  )
  const u64 = fc.oneof(fc.bigInt({ min: 0n, max: U64_MAX }), fc.constantFrom(0n, 1n, 2n ** 53n - 1n, 2n ** 53n, U64_MAX))
  // Mostly in range, so that a good share of the frames decode and the re-encoding is checked.
  const safeU64 = fc.oneof({ weight: 4, arbitrary: fc.bigInt({ min: 0n, max: BigInt(MAX_SAFE) }) }, { weight: 1, arbitrary: u64 })
  const lengthField = (actual: number, max: number) => fc.oneof({ weight: 3, arbitrary: fc.constant(actual) }, { weight: 1, arbitrary: fc.integer({ min: 0, max }) })
  const reservedField = (max: number) => fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(max) })

  const messageBytes = fc
    .record({ publisher: idBytes, target: idBytes, transport: fc.nat(255), fdCount: fc.nat(255), reserved: reservedField(0xffff) })
    .chain((f) =>
      fc.record({
        f: fc.constant(f),
        publisherLength: lengthField(f.publisher.length & 0xff, 255),
        targetLength: lengthField(f.target.length, 0xffff),
        length: safeU64,
        seq: safeU64,
        timestamp: u64,
      }),
    )
    .map(({ f, publisherLength, targetLength, length, seq, timestamp }) => {
      const frame = new Uint8Array(MESSAGE_HEADER_BYTES + f.publisher.length + f.target.length)
      const view = new DataView(frame.buffer)
      frame[0] = KIND_MESSAGE
      frame[1] = f.transport
      frame[2] = f.fdCount
      frame[3] = publisherLength
      view.setUint16(4, targetLength, true)
      view.setUint16(6, f.reserved, true)
      view.setBigUint64(8, length, true)
      view.setBigUint64(16, seq, true)
      view.setBigUint64(24, timestamp, true)
      frame.set(f.publisher, MESSAGE_HEADER_BYTES)
      frame.set(f.target, MESSAGE_HEADER_BYTES + f.publisher.length)
      return frame
    })

  const creditBytes = fc
    .record({ id: idBytes, reserved: reservedField(255), credits: fc.oneof(fc.nat(), fc.constantFrom(0, 1, MAX_CREDITS, MAX_CREDITS + 1, 0xffffffff)) })
    .chain((f) => fc.record({ f: fc.constant(f), idLength: lengthField(f.id.length, 0xffff) }))
    .map(({ f, idLength }) => rawCredit({ id: f.id, reserved: f.reserved, credits: f.credits, idLength }))

  const helloBytes = fc
    .record({ id: idBytes, protocol: fc.nat(255) })
    .chain((f) => fc.record({ f: fc.constant(f), idLength: lengthField(f.id.length, 0xffff) }))
    .map(({ f, idLength }) => {
      const frame = rawHello({ id: f.id, idLength })
      frame[1] = f.protocol
      return frame
    })

  // Any of the above with bytes cut off the end or appended.
  const mangled = fc
    .tuple(fc.oneof(messageBytes, creditBytes, helloBytes), fc.integer({ min: -40, max: 8 }), fc.uint8Array({ maxLength: 8 }))
    .map(([frame, delta, extra]) => {
      if (delta <= 0) return frame.subarray(0, Math.max(0, frame.length + delta))
      const longer = new Uint8Array(frame.length + extra.length)
      longer.set(frame)
      longer.set(extra, frame.length)
      return longer
    })

  it('decodeFrame on arbitrary bytes: a frame or ERR_PUBSUB_PROTOCOL, never anything else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), checkTotal), { numRuns: 2000 })
  })

  it('decodeFrame on near-valid frames: a frame (that re-encodes to the same bytes) or ERR_PUBSUB_PROTOCOL', () => {
    fc.assert(fc.property(fc.oneof(messageBytes, creditBytes, helloBytes, mangled), checkTotal), { numRuns: 3000 })
  })

  // Valid ids: 1-255 bytes of UTF-8. A leading U+FEFF is left to the test of its own above, so
  // this property fails on one bug at most once, deterministically.
  const id = fc
    .string({ unit: 'binary', minLength: 1, maxLength: 80 })
    .filter((s) => !s.startsWith('\uFEFF'))
    .filter((s) => utf8.encode(s).length <= MAX_ID_BYTES)

  it('valid frames: encode then decode gives back every field, and re-encodes to the same bytes', () => {
    const validMessage = fc.record({
      transport: fc.nat(255),
      fdCount: fc.nat(255),
      length: fc.nat(),
      seq: fc.integer({ min: 1, max: MAX_SAFE }),
      timestamp: fc.bigInt({ min: 0n, max: U64_MAX }),
      publisher: id,
      target: id,
    })
    fc.assert(
      fc.property(validMessage, (fields) => {
        const bytes = encodeMessage(fields)
        const frame = decodeFrame(bytes)
        expect(frame).toEqual({ kind: KIND_MESSAGE, ...fields })
        expect(reencode(frame)).toEqual(bytes)
      }),
      { numRuns: 1000 },
    )
    fc.assert(
      fc.property(id, fc.integer({ min: 1, max: MAX_CREDITS }), (target, credits) => {
        const bytes = encodeCredit(target, credits)
        const frame = decodeFrame(bytes)
        expect(frame).toEqual({ kind: KIND_CREDIT, target, credits })
        expect(reencode(frame)).toEqual(bytes)
      }),
      { numRuns: 500 },
    )
    fc.assert(
      fc.property(id, fc.nat(255), (node, protocol) => {
        const bytes = encodeHello(node, protocol)
        const frame = decodeFrame(bytes)
        expect(frame).toEqual({ kind: KIND_HELLO, protocol, node })
        expect(reencode(frame)).toEqual(bytes)
      }),
      { numRuns: 500 },
    )
  })
})
