// Framing over a real fdpass channel pair (docs/PROTOCOL.md §2): inline JSON frames, the memfd
// envelope for big messages, rejection of malformed frames, and no leaked descriptors.
import { once } from 'node:events'
import { closeSync, openSync, readdirSync, readlinkSync } from 'node:fs'
import { type Channel, connect, listen, type Message, type Server } from '@ipc-pubsub/fdpass'
import { Segment } from '@ipc-pubsub/shm'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TopologyError } from './errors.js'
import type { TopologyEvent } from './history.js'
import { decode, encode, MAX_MESSAGE_BYTES, send, sendEncoded } from './wire.js'

// ---- helpers (self-contained) ----

let n = 0
const address = () => `@topology-wire-test-${process.pid}-${++n}`
const fdCount = () => readdirSync('/proc/self/fd').length

interface Pair {
  readonly server: Server
  readonly client: Channel
  readonly accepted: Channel
}

async function pair(): Promise<Pair> {
  const server = listen(address())
  const accepted = once(server, 'connection') as Promise<[Channel]>
  const client = await connect(server.address)
  const [channel] = await accepted
  return { server, client, accepted: channel }
}

async function closePair(p: Pair): Promise<void> {
  await p.client.close()
  await p.accepted.close()
  await p.server.close()
}

function next(channel: Channel): Promise<Message> {
  return (once(channel, 'message') as Promise<[Message]>).then(([message]) => message)
}

/** Sends raw data (and fds, closed here right after the send) and returns the received frame. */
async function roundTrip(from: Channel, to: Channel, data: Uint8Array, fds: number[] = []): Promise<Message> {
  const received = next(to)
  from.send(data, fds)
  for (const fd of fds) closeSync(fd)
  return received
}

function decodeError(message: Message): TopologyError {
  try {
    decode(message)
  } catch (error) {
    expect(error).toBeInstanceOf(TopologyError)
    return error as TopologyError
  }
  throw new Error('decode accepted the frame')
}

/** A memfd holding `content` (not empty). */
function memfd(content: Uint8Array): number {
  const segment = Segment.create(content.length)
  segment.bytes.set(content)
  // Keep an fd of our own: the segment's is closed with it.
  const fd = openSync(`/proc/self/fd/${segment.fd}`, 'r')
  segment.close()
  return fd
}

const text = (value: string) => new TextEncoder().encode(value)

/** A history of roughly `bytes` bytes of JSON. */
function bigHistory(bytes: number): TopologyEvent[] {
  const events: TopologyEvent[] = []
  for (let seq = 1; JSON.stringify(events).length < bytes; seq++) {
    events.push({
      type: 'node-joined',
      epoch: 7,
      seq,
      uid: `hub:7:${seq}`,
      node: {
        id: `node-${seq}`,
        name: `näme ✓ ${seq}`,
        pid: seq,
        startTime: null,
        pidNamespace: null,
        endpoint: null,
        metadata: { pad: 'x'.repeat(900), seq },
      },
    })
  }
  return events
}

/** A message whose JSON is exactly `bytes` bytes. */
function exactly(bytes: number): object {
  const base = JSON.stringify({ type: 'events', pad: '' }).length
  return { type: 'events', pad: 'p'.repeat(bytes - base) }
}

// ---- tests ----

describe('wire over a real fdpass channel', () => {
  let p: Pair

  beforeAll(async () => {
    p = await pair()
  })

  afterAll(async () => {
    await closePair(p)
  })

  it('a small message arrives inline, without fds, and decodes equal', async () => {
    const message = { type: 'welcome', protocol: 1, hub: 'h', epoch: 3, history: bigHistory(2000) }
    const before = fdCount()
    const received = next(p.accepted)
    expect(send(p.client, message)).toBe(true)
    const frame = await received
    expect(frame.fds).toEqual([])
    expect(new TextDecoder().decode(frame.data)).toBe(JSON.stringify(message))
    expect(decode(frame)).toEqual(message)
    expect(fdCount()).toBe(before)
  })

  it('a 300 KB history arrives through the memfd envelope and decodes equal; the fd is closed', async () => {
    const message = { type: 'welcome', protocol: 1, hub: 'h', epoch: 3, history: bigHistory(300_000) }
    const bytes = encode(message)
    expect(bytes.length).toBeGreaterThan(p.client.limits.maxFrameSize)
    const before = fdCount()
    const received = next(p.accepted)
    send(p.client, message)
    // The sender's memfd is closed as soon as send returns.
    expect(fdCount()).toBe(before)
    const frame = await received
    expect(JSON.parse(new TextDecoder().decode(frame.data))).toEqual({ type: 'large', bytes: bytes.length })
    expect(frame.fds).toHaveLength(1)
    expect(readlinkSync(`/proc/self/fd/${frame.fds[0]}`)).toMatch(/^\/memfd:/)
    expect(fdCount()).toBe(before + 1)
    expect(decode(frame)).toEqual(message)
    expect(fdCount()).toBe(before)
  })

  it('inline up to the frame limit, memfd one byte above it', async () => {
    const limit = p.client.limits.maxFrameSize
    for (const size of [limit - 1, limit, limit + 1, 3 * limit]) {
      const message = exactly(size)
      expect(encode(message).length).toBe(size)
      const before = fdCount()
      const received = next(p.accepted)
      send(p.client, message)
      const frame = await received
      expect(frame.fds).toHaveLength(size > limit ? 1 : 0)
      expect(decode(frame)).toEqual(message)
      expect(fdCount()).toBe(before)
    }
  })

  it('sendEncoded sends pre-encoded bytes to many channels; both directions work', async () => {
    const other = await pair()
    try {
      const bytes = encode({ type: 'events', events: bigHistory(100_000) })
      const before = fdCount()
      const got = Promise.all([next(p.client), next(other.client)])
      sendEncoded(p.accepted, bytes)
      sendEncoded(other.accepted, bytes)
      const frames = await got
      for (const frame of frames) expect(decode(frame)).toEqual(JSON.parse(new TextDecoder().decode(bytes)))
      expect(fdCount()).toBe(before)
    } finally {
      await closePair(other)
    }
  })

  it(`refuses to send a message above ${MAX_MESSAGE_BYTES} bytes (nothing sent, no fd left)`, () => {
    const before = fdCount()
    const error = (() => {
      try {
        sendEncoded(p.client, new Uint8Array(MAX_MESSAGE_BYTES + 1))
      } catch (caught) {
        return caught
      }
      return undefined
    })()
    expect(error).toBeInstanceOf(TopologyError)
    expect((error as TopologyError).code).toBe('ERR_TOPOLOGY_PROTOCOL')
    expect(p.client.writableLength).toBe(0)
    expect(fdCount()).toBe(before)
  })

  it('random JSON messages, small and large, arrive equal', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), fc.nat({ max: 200_000 }), async (value, pad) => {
        const message = { type: 'x', value, pad: 'é'.repeat(pad % 7 === 0 ? pad : pad % 100) }
        const before = fdCount()
        const received = next(p.accepted)
        send(p.client, message)
        expect(decode(await received)).toEqual(JSON.parse(JSON.stringify(message)))
        expect(fdCount()).toBe(before)
      }),
      { numRuns: 40 },
    )
  })

  describe('decode rejects malformed frames with ERR_TOPOLOGY_PROTOCOL and closes their fds', () => {
    const cases: [string, () => { data: Uint8Array; fds: number[] }][] = [
      ['a frame that is not JSON', () => ({ data: text('not json {'), fds: [] })],
      ['a frame that is not valid UTF-8', () => ({ data: Uint8Array.of(0x7b, 0x7d, 0xff), fds: [] })],
      ['an overlong UTF-8 encoding', () => ({ data: Uint8Array.of(0x22, 0xc0, 0xaf, 0x22), fds: [] })],
      ['a lone surrogate encoded in UTF-8', () => ({ data: Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22), fds: [] })],
      ['a plain message that carries an fd', () => ({ data: encode({ type: 'bye' }), fds: [openSync('/dev/null', 'r')] })],
      ['a plain JSON array that carries an fd', () => ({ data: encode([1, 2]), fds: [memfd(text('[1]'))] })],
      ['a "large" envelope without an fd', () => ({ data: encode({ type: 'large', bytes: 2 }), fds: [] })],
      [
        'a "large" envelope with two fds',
        () => ({ data: encode({ type: 'large', bytes: 2 }), fds: [memfd(text('{}')), memfd(text('{}'))] }),
      ],
      [
        'a "large" envelope whose bytes exceed the file',
        () => ({ data: encode({ type: 'large', bytes: 100 }), fds: [memfd(text('{"type":"bye"}'))] }),
      ],
      [
        'a "large" envelope with negative bytes',
        () => ({ data: encode({ type: 'large', bytes: -1 }), fds: [memfd(text('{}'))] }),
      ],
      [
        'a "large" envelope with fractional bytes',
        () => ({ data: encode({ type: 'large', bytes: 1.5 }), fds: [memfd(text('{}'))] }),
      ],
      [
        'a "large" envelope with bytes as a string',
        () => ({ data: encode({ type: 'large', bytes: '2' }), fds: [memfd(text('{}'))] }),
      ],
      [
        'a "large" envelope above the message limit',
        () => ({ data: encode({ type: 'large', bytes: MAX_MESSAGE_BYTES + 1 }), fds: [memfd(text('{}'))] }),
      ],
      [
        'a "large" envelope whose fd is not a regular file',
        () => ({ data: encode({ type: 'large', bytes: 0 }), fds: [openSync('/dev/null', 'r')] }),
      ],
      [
        'a "large" envelope whose content is not JSON',
        () => ({ data: encode({ type: 'large', bytes: 5 }), fds: [memfd(text('hello'))] }),
      ],
      [
        'a "large" envelope whose content is not UTF-8',
        () => ({ data: encode({ type: 'large', bytes: 3 }), fds: [memfd(Uint8Array.of(0x22, 0xff, 0x22))] }),
      ],
      ['a "large" envelope of zero bytes', () => ({ data: encode({ type: 'large', bytes: 0 }), fds: [memfd(text(' '))] })],
    ]

    for (const [what, make] of cases) {
      it(what, async () => {
        const before = fdCount()
        const { data, fds } = make()
        const frame = await roundTrip(p.client, p.accepted, data, fds)
        expect(frame.fds).toHaveLength(fds.length)
        expect(decodeError(frame).code).toBe('ERR_TOPOLOGY_PROTOCOL')
        for (const fd of frame.fds) expect(() => readlinkSync(`/proc/self/fd/${fd}`)).toThrow()
        expect(fdCount()).toBe(before)
      })
    }

    it('a "large" envelope may point into a bigger file: only its first bytes count', async () => {
      const before = fdCount()
      const content = text('{"type":"bye"}trailing garbage')
      const frame = await roundTrip(p.client, p.accepted, encode({ type: 'large', bytes: 14 }), [memfd(content)])
      expect(decode(frame)).toEqual({ type: 'bye' })
      expect(fdCount()).toBe(before)
    })

    it('the channel stays usable after a rejected frame', async () => {
      const received = next(p.accepted)
      send(p.client, { type: 'bye' })
      expect(decode(await received)).toEqual({ type: 'bye' })
    })
  })
})

describe('decode without a channel', () => {
  it('returns any JSON value of a plain frame (validation is the parser’s job)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const expected = JSON.parse(JSON.stringify(value))
        expect(decode({ data: encode({ value }), fds: [] })).toEqual({ value: expected })
      }),
      { numRuns: 200 },
    )
  })

  it('never throws anything but ERR_TOPOLOGY_PROTOCOL on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (data) => {
        try {
          decode({ data, fds: [] })
        } catch (error) {
          expect(error).toBeInstanceOf(TopologyError)
          expect((error as TopologyError).code).toBe('ERR_TOPOLOGY_PROTOCOL')
        }
      }),
      { numRuns: 500 },
    )
  })

  it('closes fds it was given also when it succeeds', () => {
    const before = fdCount()
    const fd = memfd(text('{"type":"bye"}'))
    expect(decode({ data: encode({ type: 'large', bytes: 14 }), fds: [fd] })).toEqual({ type: 'bye' })
    expect(fdCount()).toBe(before)
  })
})
