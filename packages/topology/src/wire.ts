// Framing of protocol messages on an fdpass channel (docs/PROTOCOL.md, "Framing"): one
// message per SOCK_SEQPACKET frame, UTF-8 JSON. A message too big for a frame travels in a
// memfd: the frame is the envelope {"type":"large","bytes":N} with that one fd attached, and
// the fd holds the N bytes of the message's JSON at offset 0.
import { fstatSync, readSync } from 'node:fs'
import type { Channel, Message } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import { TopologyError } from './errors.js'
import { closeFd } from './native.js'

/** Largest message accepted through the memfd envelope (a whole history). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Serializes once, for sending the same message to many channels. */
export function encode(message: object): Uint8Array {
  return encoder.encode(JSON.stringify(message))
}

/**
 * Sends an encoded message: inline if it fits a frame, else through a memfd. Returns what
 * Channel.send returns (false: queue above its high-water mark). Throws what it throws.
 */
export function sendEncoded(channel: Channel, bytes: Uint8Array): boolean {
  if (bytes.length <= channel.limits.maxFrameSize) return channel.send(bytes)
  if (bytes.length > MAX_MESSAGE_BYTES) {
    throw new TopologyError('ERR_TOPOLOGY_PROTOCOL', `message of ${bytes.length} bytes exceeds ${MAX_MESSAGE_BYTES}`)
  }
  const segment = Segment.create(bytes.length)
  try {
    segment.bytes.set(bytes)
    // The kernel holds its own reference to the memfd once send returns (queued or sent).
    return channel.send(encode({ type: 'large', bytes: bytes.length }), [segment.fd])
  } finally {
    segment.close()
  }
}

/** Sends one message. */
export function send(channel: Channel, message: object): boolean {
  return sendEncoded(channel, encode(message))
}

/**
 * Decodes one received frame into the JSON value it carries, closing any fd it came with.
 * Throws ERR_TOPOLOGY_PROTOCOL for anything that is not a well-formed frame.
 */
export function decode(message: Message): unknown {
  const fds = message.fds
  try {
    const value = parseJson(message.data)
    const envelope = value as { type?: unknown; bytes?: unknown }
    if (typeof envelope !== 'object' || envelope === null || envelope.type !== 'large') {
      if (fds.length !== 0) fail('only a "large" envelope may carry a file descriptor')
      return value
    }
    const bytes = envelope.bytes
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0 || bytes > MAX_MESSAGE_BYTES) {
      fail(`"large".bytes must be an integer in 0..${MAX_MESSAGE_BYTES}`)
    }
    const fd = fds[0]
    if (fds.length !== 1 || fd === undefined) fail('a "large" envelope carries exactly one file descriptor')
    // read(2), not mmap: a peer that shrinks the file cannot SIGBUS us, only fail the check.
    const stat = fstatSync(fd)
    if (!stat.isFile() || stat.size < bytes) fail('the "large" descriptor must be a regular file (memfd) of at least "bytes" bytes')
    const buffer = Buffer.allocUnsafe(bytes)
    let done = 0
    while (done < bytes) {
      const n = readSync(fd, buffer, done, bytes - done, done)
      if (n === 0) fail('the "large" descriptor ended early')
      done += n
    }
    return parseJson(buffer)
  } finally {
    // close(2) itself, not fs.closeSync: in a worker thread Node warns about closing an fd
    // that fs did not open (these came from recvmsg).
    for (const fd of fds) closeFd(fd)
  }
}

function parseJson(bytes: Uint8Array): unknown {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    fail('frame is not valid UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch {
    fail('frame is not valid JSON')
  }
}

function fail(message: string): never {
  throw new TopologyError('ERR_TOPOLOGY_PROTOCOL', message)
}
