// How payloads travel. Two transports:
// - 'pool' (id 2, pool.ts): each publisher owns a pool of shared memory, attached once per
//   link; a message is a block of it, announced by a 32-byte entry in the link's shared ring.
//   Links to nodes that do not accept it, and messages too large for the pool, use segments.
// - 'segment' (id 1, below): one sealed memfd per message, its fd sent with a message frame.
//   It is the design notes' data path, what every node accepts, and the pool's fallback.
// A `Transport` here is the frame-borne kind: `prepare` makes the fds a message frame carries
// and `open` maps them at the receiver.
import { closeSync } from 'node:fs'
import { MAX_SEGMENT_SIZE, Segment, ShmError } from '@ipc-pubsub/shm'
import { PubSubError } from './errors.js'

/** Names of the transports a node can publish with. */
export type TransportName = 'pool' | 'segment'

/** A payload ready to send: the fds to attach to every subscriber's frame. */
export interface Outgoing {
  readonly fds: readonly number[]
  /** Releases the publisher's own copy; call once every frame has been handed to its channel. */
  dispose(): void
}

/** A received payload, mapped. */
export interface Incoming {
  /** The payload, zero-copy. */
  readonly data: Uint8Array
  /**
   * Frees the memory now. `data` stays safe to touch afterwards (it reads zeros): the shm
   * package replaces a closed mapping with a private tombstone, never unmaps it under a view.
   */
  release(): void
  /**
   * Set by transports whose memory our code must give back when the message is collected
   * unreleased (the pool: the block goes back to its publisher). It must not reference
   * `data`. Segments need none: @ipc-pubsub/shm's finalizer unmaps them.
   */
  readonly reclaim?: () => void
}

export interface Transport {
  readonly name: TransportName
  /** The transport byte of message frames. */
  readonly id: number
  /** Largest payload. */
  readonly maxLength: number
  /** Puts `length` bytes of `payload` into shared memory (string payloads are UTF-8). */
  prepare(payload: Uint8Array | string, length: number): Outgoing
  /**
   * Maps a payload received with a frame. Owns `fds` from the call on: closes them if it
   * throws (ERR_PUBSUB_PROTOCOL for a payload that breaks the transport's rules).
   */
  open(length: number, fds: readonly number[]): Incoming
}

const EMPTY = new Uint8Array(0)
const NOTHING: Outgoing = { fds: [], dispose() {} }
const encoder = new TextEncoder()

/** @internal Closes received descriptors nobody will use. */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd)
    } catch {
      // Already closed: nothing to release.
    }
  }
}

/**
 * The seed's data path: one memfd per message. The publisher creates it, writes the payload,
 * seals it (no shrink, no grow, no new writers, no seal changes), sends its fd to every
 * subscriber and closes its copy. A subscriber maps it read-only and checks the seals first:
 * a file the sender could still shrink could kill the receiver with SIGBUS. An empty payload
 * carries no fd.
 */
export const segmentTransport: Transport = {
  name: 'segment',
  id: 1,
  maxLength: MAX_SEGMENT_SIZE,

  prepare(payload, length) {
    if (length === 0) return NOTHING
    const segment = Segment.create(length, { name: 'ipc-pubsub' })
    try {
      if (typeof payload === 'string') encoder.encodeInto(payload, segment.bytes)
      else segment.bytes.set(payload)
      // future-write, not write: our own writable mapping still exists until close().
      segment.seal('shrink', 'grow', 'future-write', 'seal')
    } catch (error) {
      segment.close()
      throw error
    }
    return { fds: [segment.fd], dispose: () => segment.close() }
  },

  open(length, fds) {
    if (length === 0) {
      if (fds.length !== 0) {
        closeFds(fds)
        throw new PubSubError('ERR_PUBSUB_PROTOCOL', 'segment transport: an empty payload carries no fd')
      }
      return { data: EMPTY, release() {} }
    }
    if (fds.length !== 1) {
      closeFds(fds)
      throw new PubSubError('ERR_PUBSUB_PROTOCOL', `segment transport: expected 1 fd, got ${fds.length}`)
    }
    let segment: Segment
    try {
      segment = Segment.fromFd(fds[0] as number, { readonly: true, requireSeals: true })
    } catch (error) {
      // fromFd closed the fd.
      const reason = ShmError.isInstance(error) ? error.code : String(error)
      throw new PubSubError('ERR_PUBSUB_PROTOCOL', `segment transport: unusable payload fd (${reason})`, { cause: error })
    }
    if (segment.size !== length) {
      segment.close()
      throw new PubSubError('ERR_PUBSUB_PROTOCOL', `segment transport: payload is ${segment.size} bytes, the frame says ${length}`)
    }
    return { data: segment.bytes, release: () => segment.close() }
  },
}

/** @internal Frame-borne transports by wire id (receiving message frames). */
export const transportsById: ReadonlyMap<number, Transport> = new Map([[segmentTransport.id, segmentTransport]])

/** The names of every transport a node can publish with, default first. */
export const TRANSPORTS: readonly TransportName[] = Object.freeze(['pool', 'segment'] as TransportName[])
