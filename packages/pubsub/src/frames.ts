// The data-path frames between a publishing node and a subscribing node (docs/PROTOCOL.md,
// "Data path"). Pure code: encode and decode only, every field checked on the way in.
//
// All integers are little-endian. Ids are UTF-8. A frame is one SOCK_SEQPACKET record, so its
// length is known; the kind is its first byte.
import { PubSubError } from './errors.js'

/** Version of the data-path protocol, sent in the link hello. */
export const DATA_PROTOCOL_VERSION = 1

/** Frame kinds (first byte). */
export const KIND_MESSAGE = 0x01 // publisher -> subscriber: one message for one subscription
export const KIND_CREDIT = 0x02 // subscriber -> publisher: room for more messages
export const KIND_HELLO = 0x03 // publisher -> subscriber: first frame of a link, again after a rejoin
export const KIND_ATTACH_RING = 0x04 // publisher -> subscriber: the link's pool ring and doorbells (3 fds)
export const KIND_ATTACH_POOL = 0x05 // publisher -> subscriber: one publisher's pool and its id (1 fd)
export const KIND_DETACH_POOL = 0x06 // publisher -> subscriber: that pool's publisher closed
export const KIND_BIND_LANE = 0x07 // publisher -> subscriber: the ring's number for one subscription

export const MESSAGE_HEADER_BYTES = 32 // fixed part of a message frame, before the two ids
export const CREDIT_HEADER_BYTES = 8 // fixed part of a credit frame, before the id
export const HELLO_HEADER_BYTES = 4 // fixed part of a hello frame, before the node id
export const POOL_FRAME_BYTES = 8 // attach-ring and detach-pool frames; the fixed part of attach-pool and bind-lane

/** Longest endpoint or node id on the wire (a topology id is far shorter). */
export const MAX_ID_BYTES = 255
/** Largest sequence number, payload length and credit grant: exact in a JS number. */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER
export const MAX_CREDITS = 0x7fffffff

export interface MessageHeader {
  /** Transport id: how the payload travels (1 = one sealed memfd per message). */
  readonly transport: number
  /** Descriptors the frame carries. */
  readonly fdCount: number
  /** Payload bytes. */
  readonly length: number
  /** The publisher's sequence number, from 1. */
  readonly seq: number
  /** CLOCK_MONOTONIC nanoseconds when the publisher published. */
  readonly timestamp: bigint
  /** The publisher endpoint id. */
  readonly publisher: string
  /** The subscription endpoint id the message is for. */
  readonly target: string
}

export type Frame =
  | ({ readonly kind: typeof KIND_MESSAGE } & MessageHeader)
  | { readonly kind: typeof KIND_CREDIT; readonly target: string; readonly credits: number }
  | { readonly kind: typeof KIND_HELLO; readonly protocol: number; readonly node: string }
  | { readonly kind: typeof KIND_ATTACH_RING; readonly transport: number }
  | { readonly kind: typeof KIND_ATTACH_POOL; readonly pool: number; readonly publisher: string }
  | { readonly kind: typeof KIND_DETACH_POOL; readonly pool: number }
  | { readonly kind: typeof KIND_BIND_LANE; readonly lane: number; readonly target: string }

const encoder = new TextEncoder()
// ignoreBOM: a leading U+FEFF is part of the id, not a mark to strip (ids must round-trip).
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function protocolError(message: string): PubSubError {
  return new PubSubError('ERR_PUBSUB_PROTOCOL', message)
}

function isByte(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 255
}

function idBytes(id: string, what: string): Uint8Array {
  const bytes = encoder.encode(id)
  if (bytes.length === 0 || bytes.length > MAX_ID_BYTES) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `${what} must be 1-${MAX_ID_BYTES} bytes of UTF-8`)
  }
  return bytes
}

/**
 * The fixed part of a publisher's message frames: the publisher id never changes between
 * messages, so it is encoded once. `encode` fills in the per-message fields.
 */
export class MessageEncoder {
  readonly #publisher: Uint8Array
  readonly #targets = new Map<string, Uint8Array>()

  constructor(publisher: string) {
    this.#publisher = idBytes(publisher, 'publisher id')
  }

  /** A fresh frame (the channel may queue it, so it is never reused). */
  encode(transport: number, fdCount: number, length: number, seq: number, timestamp: bigint, target: string): Uint8Array {
    if (!isByte(transport) || !isByte(fdCount) || !Number.isSafeInteger(length) || length < 0 || !Number.isSafeInteger(seq) || seq < 1) {
      throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'message header field out of range')
    }
    let targetBytes = this.#targets.get(target)
    if (targetBytes === undefined) {
      targetBytes = idBytes(target, 'target id')
      // Subscriptions come and go: keep the cache from growing without bound.
      if (this.#targets.size >= 1024) this.#targets.clear()
      this.#targets.set(target, targetBytes)
    }
    const publisher = this.#publisher
    const frame = new Uint8Array(MESSAGE_HEADER_BYTES + publisher.length + targetBytes.length)
    const view = new DataView(frame.buffer)
    frame[0] = KIND_MESSAGE
    frame[1] = transport
    frame[2] = fdCount
    frame[3] = publisher.length
    view.setUint16(4, targetBytes.length, true)
    // 6..7 reserved, zero
    view.setBigUint64(8, BigInt(length), true)
    view.setBigUint64(16, BigInt(seq), true)
    view.setBigUint64(24, timestamp, true)
    frame.set(publisher, MESSAGE_HEADER_BYTES)
    frame.set(targetBytes, MESSAGE_HEADER_BYTES + publisher.length)
    return frame
  }
}

/** A one-off message frame (tests and other-language clients use the same layout). */
export function encodeMessage(header: MessageHeader): Uint8Array {
  return new MessageEncoder(header.publisher).encode(
    header.transport,
    header.fdCount,
    header.length,
    header.seq,
    header.timestamp,
    header.target,
  )
}

export function encodeCredit(target: string, credits: number): Uint8Array {
  if (!Number.isInteger(credits) || credits < 1 || credits > MAX_CREDITS) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `credits must be an integer in 1..${MAX_CREDITS}`)
  }
  const id = idBytes(target, 'target id')
  const frame = new Uint8Array(CREDIT_HEADER_BYTES + id.length)
  const view = new DataView(frame.buffer)
  frame[0] = KIND_CREDIT
  view.setUint16(2, id.length, true)
  view.setUint32(4, credits, true)
  frame.set(id, CREDIT_HEADER_BYTES)
  return frame
}

export function encodeHello(node: string, protocol = DATA_PROTOCOL_VERSION): Uint8Array {
  if (!isByte(protocol)) throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'protocol must be an integer in 0..255')
  const id = idBytes(node, 'node id')
  const frame = new Uint8Array(HELLO_HEADER_BYTES + id.length)
  frame[0] = KIND_HELLO
  frame[1] = protocol
  new DataView(frame.buffer).setUint16(2, id.length, true)
  frame.set(id, HELLO_HEADER_BYTES)
  return frame
}

/**
 * attach-ring: `04 tt 00 00 00 00 00 00` (tt: the transport id, 2), with the ring memfd, the
 * subscriber's doorbell and the publisher's doorbell attached, in that order.
 */
export function encodeAttachRing(transport: number): Uint8Array {
  if (!isByte(transport)) throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', 'transport must be an integer in 0..255')
  const frame = new Uint8Array(POOL_FRAME_BYTES)
  frame[0] = KIND_ATTACH_RING
  frame[1] = transport
  return frame
}

function checkNumber(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
    throw new PubSubError('ERR_PUBSUB_INVALID_ARGUMENT', `${what} must be an integer in 0..2^31-1`)
  }
}

/** detach-pool: `06 00 00 00` then the pool id (u32). */
export function encodeDetachPool(pool: number): Uint8Array {
  checkNumber(pool, 'pool id')
  const frame = new Uint8Array(POOL_FRAME_BYTES)
  frame[0] = KIND_DETACH_POOL
  new DataView(frame.buffer).setUint32(4, pool, true)
  return frame
}

// attach-pool and bind-lane: `kk 00 LL LL` (LL: the id's byte length, u16), a number (u32),
// then the id.
function encodeNumbered(kind: number, n: number, id: string, what: string): Uint8Array {
  const bytes = idBytes(id, what)
  const frame = new Uint8Array(POOL_FRAME_BYTES + bytes.length)
  const view = new DataView(frame.buffer)
  frame[0] = kind
  view.setUint16(2, bytes.length, true)
  view.setUint32(4, n, true)
  frame.set(bytes, POOL_FRAME_BYTES)
  return frame
}

/** attach-pool (one fd, the pool memfd): pool id `pool` belongs to publisher `publisher`. */
export function encodeAttachPool(pool: number, publisher: string): Uint8Array {
  checkNumber(pool, 'pool id')
  return encodeNumbered(KIND_ATTACH_POOL, pool, publisher, 'publisher id')
}

/** bind-lane: ring entries with target `lane` are for subscription `target`. */
export function encodeBindLane(lane: number, target: string): Uint8Array {
  checkNumber(lane, 'lane')
  return encodeNumbered(KIND_BIND_LANE, lane, target, 'target id')
}

function readId(frame: Uint8Array, offset: number, length: number, what: string): string {
  if (length === 0 || length > MAX_ID_BYTES) throw protocolError(`${what} length ${length} is outside 1..${MAX_ID_BYTES}`)
  try {
    return decoder.decode(frame.subarray(offset, offset + length))
  } catch {
    throw protocolError(`${what} is not UTF-8`)
  }
}

function readNumber(view: DataView, what: string): number {
  const n = view.getUint32(4, true)
  if (n > 0x7fffffff) throw protocolError(`${what} ${n} is outside 0..2^31-1`)
  return n
}

function readSafe(view: DataView, offset: number, what: string, min: number): number {
  const value = view.getBigUint64(offset, true)
  if (value < BigInt(min) || value > BigInt(MAX_SAFE)) throw protocolError(`${what} ${value} is outside ${min}..2^53-1`)
  return Number(value)
}

/** Decodes and checks one frame; throws ERR_PUBSUB_PROTOCOL for anything malformed. */
export function decodeFrame(frame: Uint8Array): Frame {
  if (frame.length === 0) throw protocolError('empty frame')
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  switch (frame[0]) {
    case KIND_MESSAGE: {
      if (frame.length < MESSAGE_HEADER_BYTES) throw protocolError(`message frame of ${frame.length} bytes is too short`)
      const publisherLength = frame[3] as number
      const targetLength = view.getUint16(4, true)
      if (frame.length !== MESSAGE_HEADER_BYTES + publisherLength + targetLength) {
        throw protocolError(`message frame is ${frame.length} bytes, its header says ${MESSAGE_HEADER_BYTES + publisherLength + targetLength}`)
      }
      if (view.getUint16(6, true) !== 0) throw protocolError('message frame: reserved bytes are not zero')
      return {
        kind: KIND_MESSAGE,
        transport: frame[1] as number,
        fdCount: frame[2] as number,
        length: readSafe(view, 8, 'payload length', 0),
        seq: readSafe(view, 16, 'seq', 1),
        timestamp: view.getBigUint64(24, true),
        publisher: readId(frame, MESSAGE_HEADER_BYTES, publisherLength, 'publisher id'),
        target: readId(frame, MESSAGE_HEADER_BYTES + publisherLength, targetLength, 'target id'),
      }
    }
    case KIND_CREDIT: {
      if (frame.length < CREDIT_HEADER_BYTES) throw protocolError(`credit frame of ${frame.length} bytes is too short`)
      if (frame[1] !== 0) throw protocolError('credit frame: reserved byte is not zero')
      const targetLength = view.getUint16(2, true)
      if (frame.length !== CREDIT_HEADER_BYTES + targetLength) throw protocolError('credit frame length does not match its header')
      const credits = view.getUint32(4, true)
      if (credits < 1 || credits > MAX_CREDITS) throw protocolError(`credit grant ${credits} is outside 1..${MAX_CREDITS}`)
      return { kind: KIND_CREDIT, credits, target: readId(frame, CREDIT_HEADER_BYTES, targetLength, 'target id') }
    }
    case KIND_HELLO: {
      if (frame.length < HELLO_HEADER_BYTES) throw protocolError(`hello frame of ${frame.length} bytes is too short`)
      const nodeLength = view.getUint16(2, true)
      if (frame.length !== HELLO_HEADER_BYTES + nodeLength) throw protocolError('hello frame length does not match its header')
      return { kind: KIND_HELLO, protocol: frame[1] as number, node: readId(frame, HELLO_HEADER_BYTES, nodeLength, 'node id') }
    }
    case KIND_ATTACH_RING: {
      if (frame.length !== POOL_FRAME_BYTES) throw protocolError(`attach-ring frame of ${frame.length} bytes (expected ${POOL_FRAME_BYTES})`)
      if (view.getUint16(2, true) !== 0 || view.getUint32(4, true) !== 0) throw protocolError('attach-ring frame: reserved bytes are not zero')
      return { kind: KIND_ATTACH_RING, transport: frame[1] as number }
    }
    case KIND_DETACH_POOL: {
      if (frame.length !== POOL_FRAME_BYTES) throw protocolError(`detach-pool frame of ${frame.length} bytes (expected ${POOL_FRAME_BYTES})`)
      if (frame[1] !== 0 || view.getUint16(2, true) !== 0) throw protocolError('detach-pool frame: reserved bytes are not zero')
      return { kind: KIND_DETACH_POOL, pool: readNumber(view, 'pool id') }
    }
    case KIND_ATTACH_POOL:
    case KIND_BIND_LANE: {
      const kind = frame[0]
      if (frame.length < POOL_FRAME_BYTES) throw protocolError(`frame kind ${kind} of ${frame.length} bytes is too short`)
      if (frame[1] !== 0) throw protocolError(`frame kind ${kind}: reserved byte is not zero`)
      const idLength = view.getUint16(2, true)
      if (frame.length !== POOL_FRAME_BYTES + idLength) throw protocolError(`frame kind ${kind} length does not match its header`)
      if (kind === KIND_ATTACH_POOL) {
        return { kind, pool: readNumber(view, 'pool id'), publisher: readId(frame, POOL_FRAME_BYTES, idLength, 'publisher id') }
      }
      return { kind: KIND_BIND_LANE, lane: readNumber(view, 'lane'), target: readId(frame, POOL_FRAME_BYTES, idLength, 'target id') }
    }
    default:
      throw protocolError(`unknown frame kind ${frame[0]}`)
  }
}
